#include "policy/policy_server.h"

#include "common/log.h"
#include "policy/audit_export.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <mutex>
#include <sstream>

namespace lifeline::policy {
namespace json = boost::json;
using transport::HttpRequest;
using transport::HttpResponse;

namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("policy"); }

constexpr std::string_view kBearer = "Bearer ";

HttpResponse Json(const json::value& value, int status = 200) {
  HttpResponse response;
  response.status = status;
  response.body = json::serialize(value);
  return response;
}

std::string Time(std::optional<std::int64_t> ms) {
  return ms ? FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms))) : std::string();
}

/// The path part of a request target ("/v1/x?y=1" -> "/v1/x").
std::string_view PathOf(std::string_view target) { return target.substr(0, target.find('?')); }

/// Paths with dot segments, empty segments or encoded characters are refused before routing, so a
/// prefix check cannot be walked around ("/v1/whoami/../admin").
bool IsPlainPath(std::string_view path) {
  return path.starts_with('/') && path.find("//") == std::string_view::npos &&
         path.find("/.") == std::string_view::npos && path.find('%') == std::string_view::npos;
}

bool Matches(std::string_view path, std::string_view prefix) {
  return path == prefix || (path.starts_with(prefix) && (prefix.ends_with('/') || path[prefix.size()] == '/'));
}

std::string RolesAtLeast(Role role) {
  std::string out;
  for (Role r : {Role::kAuditor, Role::kApprover, Role::kAdmin}) {
    if (r >= role) {
      out += out.empty() ? "" : " or ";
      out += ToString(r);
    }
  }
  return out;
}

}  // namespace

HttpResponse JsonError(int status, std::string_view error, std::string_view message) {
  return Json(json::object{{"error", error}, {"message", message}}, status);
}

PolicyServer::PolicyServer(PolicyUsers& users) : users_(users) {
  RoutePublic("POST", "/v1/login", [this](const HttpRequest& request) { return Login(request); });
  Route("GET", "/v1/whoami", Role::kAuditor, [](const HttpRequest&, const Caller& caller) {
    return Json(json::object{{"name", caller.name},
                             {"role", ToString(caller.role)},
                             {"via", caller.via == TokenKind::kSession ? "session" : "api"}});
  });
  Route("POST", "/v1/logout", Role::kAuditor, [this](const HttpRequest& request, const Caller& caller) {
    const std::string& auth = request.headers.at("authorization");
    if (caller.via != TokenKind::kSession) {
      return JsonError(400, "bad_request", "logout ends a login session; revoke API tokens with DELETE or the CLI");
    }
    if (auto out = users_.Logout(auth.substr(kBearer.size()), caller, request.remote); !out) {
      return JsonError(500, "internal", "the store failed; see the policy manager's log");
    }
    return Json(json::object{{"logged_out", caller.name}});
  });
}

PolicyServer::~PolicyServer() { Stop(std::chrono::milliseconds(0)); }

void PolicyServer::Route(std::string method, std::string prefix, Role min_role, RouteHandler handler) {
  std::unique_lock lock(routes_mutex_);
  routes_.push_back(Entry{std::move(method), std::move(prefix), min_role, std::move(handler), nullptr});
}

void PolicyServer::RoutePublic(std::string method, std::string prefix, PublicHandler handler) {
  std::unique_lock lock(routes_mutex_);
  routes_.push_back(Entry{std::move(method), std::move(prefix), Role::kAdmin, nullptr, std::move(handler)});
}

VoidResult PolicyServer::Start(transport::ServerOptions options) {
  if (options.name.empty()) {
    options.name = "policy";
  }
  auto server = transport::HttpsServer::Start(std::move(options), [this](const HttpRequest& r) { return Handle(r); });
  if (!server) {
    return server.error();
  }
  server_ = std::move(*server);
  return {};
}

VoidResult PolicyServer::StartPlainHttp(transport::ServerOptions options) {
  options.plain_http = true;
  if (options.name.empty()) {
    options.name = "policy-http";
  }
  auto server = transport::HttpsServer::Start(std::move(options), [this](const HttpRequest& r) { return Handle(r); });
  if (!server) {
    return server.error();
  }
  plain_server_ = std::move(*server);
  return {};
}

void PolicyServer::Stop(std::chrono::milliseconds grace) {
  if (plain_server_) {
    plain_server_->Stop(grace);
  }
  if (server_) {
    server_->Stop(grace);
  }
}

std::string PolicyServer::PlainHttpAddress() const {
  return plain_server_ ? plain_server_->LocalAddress() : std::string();
}

std::uint16_t PolicyServer::LocalPort() const { return server_ ? server_->LocalPort() : 0; }
std::string PolicyServer::LocalAddress() const { return server_ ? server_->LocalAddress() : std::string(); }

HttpResponse PolicyServer::Handle(const HttpRequest& request) {
  const std::string_view path = PathOf(request.target);
  if (!IsPlainPath(path)) {
    return JsonError(400, "bad_request", "the path must not contain '//', dot segments or percent-encoding");
  }
  Entry entry;
  bool path_known = false;
  {
    std::shared_lock lock(routes_mutex_);
    const Entry* best = nullptr;
    for (const auto& e : routes_) {
      if (!Matches(path, e.prefix)) {
        continue;
      }
      path_known = true;
      if (e.method == request.method && (best == nullptr || e.prefix.size() > best->prefix.size())) {
        best = &e;
      }
    }
    if (best != nullptr) {
      entry = *best;
    }
  }
  if (!entry.handler && !entry.public_handler) {
    return path_known ? JsonError(405, "method_not_allowed", fmt::format("{} is not allowed here", request.method))
                      : JsonError(404, "not_found", fmt::format("no such endpoint: {}", path));
  }
  if (entry.public_handler) {
    return entry.public_handler(request);
  }

  const auto auth = request.headers.find("authorization");
  if (auth == request.headers.end() || !auth->second.starts_with(kBearer)) {
    auto response = JsonError(401, "unauthorized", "send 'Authorization: Bearer <token>' (POST /v1/login gives one)");
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    return response;
  }
  auto caller = users_.Authenticate(std::string_view(auth->second).substr(kBearer.size()));
  if (!caller) {
    return JsonError(500, "internal", "the store failed; see the policy manager's log");
  }
  if (!*caller) {
    Log()->warn("refused {} {} from {}: unknown, expired or revoked token", request.method, path, request.remote);
    auto response = JsonError(401, "unauthorized", "unknown, expired or revoked token");
    response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
    return response;
  }
  const Caller& who = **caller;
  if (who.role < entry.min_role) {
    Log()->warn("refused {} {} from '{}' (role {}) at {}: needs {}", request.method, path, who.name,
                ToString(who.role), request.remote, RolesAtLeast(entry.min_role));
    users_.Report({"access_denied", who.name, who.name, request.remote,
                   fmt::format("{} {} needs role {}; has {}", request.method, path, ToString(entry.min_role),
                               ToString(who.role)),
                   {}});
    auto response = Json(json::object{{"error", "forbidden"},
                                      {"message", fmt::format("role '{}' may not {} {}; needs role {}",
                                                              ToString(who.role), request.method, path,
                                                              RolesAtLeast(entry.min_role))},
                                      {"needed_role", ToString(entry.min_role)}},
                         403);
    return response;
  }
  return entry.handler(request, who);
}

HttpResponse PolicyServer::Login(const HttpRequest& request) {
  boost::system::error_code ec;
  const json::value body = json::parse(request.body, ec);
  const json::object* object = !ec ? body.if_object() : nullptr;
  const json::value* user = object != nullptr ? object->if_contains("user") : nullptr;
  const json::value* password = object != nullptr ? object->if_contains("password") : nullptr;
  if (user == nullptr || password == nullptr || !user->is_string() || !password->is_string()) {
    return JsonError(400, "bad_request", "send {\"user\": \"...\", \"password\": \"...\"}");
  }
  login_slots_.acquire();
  struct Release {
    std::counting_semaphore<>& slots;
    ~Release() { slots.release(); }
  } release{login_slots_};
  auto issued = users_.Login(user->get_string(), password->get_string(), request.remote);
  if (!issued) {
    if (issued.error() == ServiceErrc::kBadCredentials) {
      return JsonError(401, "unauthorized", "wrong user name or password");
    }
    if (issued.error() == ServiceErrc::kLockedOut) {
      return JsonError(429, "locked", "too many wrong passwords: this user name or address is locked for a while");
    }
    return JsonError(500, "internal", "the store failed; see the policy manager's log");
  }
  return Json(json::object{{"token", issued->token},
                           {"user", issued->name},
                           {"role", ToString(issued->role)},
                           {"expires", Time(issued->expires_ms)}});
}

// ---- PolicyService --------------------------------------------------------------------------------

UsersOptions MakeUsersOptions(const PolicyConfig& config) {
  UsersOptions options;
  options.min_password_length = static_cast<std::size_t>(config.min_password_length);
  options.max_failures_per_user = config.max_failures_per_user;
  options.max_failures_per_address = config.max_failures_per_address;
  options.failure_window = config.failure_window;
  options.lockout = config.lockout;
  options.session_lifetime = config.session_lifetime;
  options.max_token_lifetime = config.max_token_lifetime;
  return options;
}

SecurityEventSink AuditSecurityEvents(AuditLog& audit) {
  return [&audit](const SecurityEvent& event) {
    AuditRecord record;
    record.time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(event.at.time_since_epoch()).count();
    record.source = "policy";
    record.kind = event.kind.starts_with("login") || event.kind == "logout" || event.kind == "lockout"
                      ? std::string(audit_kind::kLogin)
                      : std::string(audit_kind::kAdminAction);
    record.actor = event.actor;
    record.subject = event.subject;
    record.details = boost::json::serialize(
        boost::json::object{{"event", event.kind}, {"remote", event.remote}, {"detail", event.detail}});
    if (auto appended = audit.Append(std::move(record)); !appended) {
      Log()->error("cannot append a '{}' event to the audit log: {}", event.kind, appended.error().message());
    }
  };
}

AuditLog::Options AuditLogOptions(const PolicyConfig& config, const Clock& clock) {
  const std::filesystem::path data_dir(config.data_dir);
  return {.db_path = data_dir / "audit.db", .signing_key_path = data_dir / "audit-sign.key", .clock = &clock};
}

Result<std::unique_ptr<PolicyStore>> OpenPolicyStore(const PolicyDatabases& databases) {
  return OpenSqlPolicyStore(databases.store);
}

Result<std::unique_ptr<PolicyService>> PolicyService::Start(const PolicyConfig& config, const Clock& clock) {
  std::unique_ptr<PolicyService> service(new PolicyService());
  // store.backend: SQLite files in data_dir, or one PostgreSQL database for everything.
  auto databases = OpenPolicyDatabases(config);
  if (!databases) {
    return databases.error();
  }
  auto store = OpenPolicyStore(*databases);
  if (!store) {
    return store.error();
  }
  service->store_ = std::move(*store);
  service->users_ = std::make_unique<PolicyUsers>(*service->store_, clock, MakeUsersOptions(config));
  service->server_ = std::make_unique<PolicyServer>(*service->users_);

  // Every login, failed login, lockout and change of users or tokens is an audit record.
  auto audit_options = AuditLogOptions(config, clock);
  audit_options.db = databases->audit;
  auto audit = AuditLog::Open(std::move(audit_options));
  if (!audit) {
    Log()->error("cannot open the audit log in {}: {}", databases->audit->description(), audit.error().message());
    return audit.error();
  }
  service->audit_ = std::move(*audit);
  AuditLog* audit_log = service->audit_.get();
  service->users_->SetSecurityEventSink(AuditSecurityEvents(*audit_log));
  // GET /v1/audit?format=jsonl|csv: the whole log with its checkpoints, for auditors (verify it
  // offline with `lifeline audit verify --export`).
  service->server_->Route("GET", "/v1/audit", Role::kAuditor,
                          [audit_log](const transport::HttpRequest& request, const Caller&) {
                            auto records = audit_log->Read(1, 0, 1'000'000);
                            auto checkpoints = audit_log->Checkpoints();
                            if (!records || !checkpoints) {
                              return JsonError(500, "internal", "cannot read the audit log");
                            }
                            std::ostringstream out;
                            const bool csv = request.target.find("format=csv") != std::string::npos;
                            if (csv) {
                              WriteAuditCsv(out, *records, *checkpoints);
                            } else {
                              WriteAuditJsonLines(out, *records, *checkpoints);
                            }
                            return transport::HttpResponse{200, csv ? "text/csv" : "application/jsonl", out.str(), {}};
                          });

  // Policy sets live in the users store's database (their own table; see policy_sets.h).
  auto policies = PolicySets::Open(databases->store, clock);
  if (!policies) {
    return policies.error();
  }
  service->policies_ = std::move(*policies);
  RegisterPolicyRoutes(*service->server_, *service->policies_, *service->audit_, service->feed_);
  // The gateways' API: client certificates against tls.client_ca_file; without one configured no
  // certificate is asked for, so every gateway route answers 401.
  service->gateway_api_ = std::make_unique<GatewayApi>(*service->policies_, *service->audit_, service->feed_,
                                                       GatewayAccess{config.gateway_sites});
  service->gateway_api_->Register(*service->server_);
  if (config.client_ca_file.empty()) {
    Log()->warn("tls.client_ca_file is not set: gateways cannot authenticate, so /v1/gateway/ refuses them all");
  } else if (config.gateway_sites.empty()) {
    // The vendor's CA signs the gateways of every customer: without the list, any of them that can
    // reach this port is answered.
    Log()->warn("[gateways] sites is empty: every gateway certified by {} is answered; list this customer's "
                "sites (\"customer/site\") to refuse the others",
                config.client_ca_file);
  }

  // Approval requests: their own table in the store's file, emails to approvals.notify through [smtp],
  // and the decisions the gateways' watches report.
  std::unique_ptr<transport::Mailer> mailer;
  if (!config.approvals_notify.empty()) {
    mailer = std::make_unique<transport::SmtpMailer>(config.Smtp());
  }
  auto approvals = Approvals::Open({.db = databases->store,
                                    .notify = config.approvals_notify,
                                    .api_url = config.approvals_url,
                                    .clock = &clock},
                                   *service->audit_, service->feed_, std::move(mailer));
  if (!approvals) {
    return approvals.error();
  }
  service->approvals_ = std::move(*approvals);
  service->approvals_->Register(*service->server_, service->gateway_api_->access());
  service->SetDecisionSource(service->approvals_->MakeDecisionSource());
  if (databases->store->backend() == store::sql::Backend::kPostgres) {
    service->peer_changes_ =
        std::make_unique<PeerChanges>(databases->store, *service->policies_, service->feed_);
  }

  transport::ServerOptions options;
  options.listen = config.https_listen;
  options.tls.cert_file = config.CertFile().string();
  options.tls.key_file = config.KeyFile().string();
  options.tls.client_ca_file = config.client_ca_file;
  options.client_certs =
      config.client_ca_file.empty() ? transport::ClientCertPolicy::kNone : transport::ClientCertPolicy::kOptional;
  // Each watching gateway holds a worker for up to 25 s. Logins (~0.1 s of CPU and 64 MiB each in
  // Argon2id) are bounded by PolicyServer's login slots, not by the pool.
  options.worker_threads = static_cast<int>(config.worker_threads);
  // A gateway's audit batch: up to 1,000 records.
  options.max_body_bytes = 8 * 1024 * 1024;
  options.name = "policy";
  // The plain listener shares the limits; the TLS fields are ignored there.
  transport::ServerOptions plain_options = options;
  if (auto started = service->server_->Start(std::move(options)); !started) {
    return started.error();
  }
  Log()->info("policy manager listening on https://{} (store {})", service->server_->LocalAddress(),
              databases->store->description());
  // listen.http: for a reverse proxy or a browser on this machine (issue 6). The config already
  // refused anything but loopback; HttpsServer refuses it again.
  if (!config.http_listen.empty()) {
    plain_options.listen = config.http_listen;
    plain_options.name = "policy-http";
    if (auto started = service->server_->StartPlainHttp(std::move(plain_options)); !started) {
      return started.error();
    }
    Log()->warn("policy manager also listening on plain HTTP on http://{}: passwords and tokens cross it "
                "unencrypted; keep it for a local reverse proxy or browser on this machine",
                service->server_->PlainHttpAddress());
  }
  return service;
}

PolicyService::~PolicyService() { Stop(); }

void PolicyService::Stop() {
  if (peer_changes_) {
    peer_changes_->Stop();
  }
  // Long polls return at once; otherwise Stop would wait out each watch's grace.
  feed_.Stop();
  // No request expires or is emailed once stopping; a handler still running may store one.
  if (approvals_) {
    approvals_->Stop();
  }
  if (server_) {
    server_->Stop(std::chrono::seconds(2));
  }
}

}  // namespace lifeline::policy
