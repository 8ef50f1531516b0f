#include "home/home_service.h"

#include "home/remote_access.h"

#include "common/log.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "home/admin_api.h"
#include "home/escalation_job.h"
#include "home/home_upkeep.h"
#include "home/ingest_handler.h"
#include "home/notifier.h"
#include "home/ticket_policy.h"
#include "store/sql_home_store.h"

#include <fmt/format.h>

#include <condition_variable>
#include <thread>

namespace lifeline::home {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("home"); }

Result<HomeKeys> LoadKeys(const std::filesystem::path& dir) {
  const crypto::PkiPaths paths(dir);
  HomeKeys keys;
  auto seal = crypto::ReadSealingKeyPair(paths.home_seal_key);
  if (!seal) {
    Log()->error("cannot read {}: {}", paths.home_seal_key.string(), seal.error().message());
    return seal.error();
  }
  auto sign = crypto::ReadSigningKeyPair(paths.home_sign_key);
  if (!sign) {
    Log()->error("cannot read {}: {}", paths.home_sign_key.string(), sign.error().message());
    return sign.error();
  }
  auto ca_cert = crypto::ReadSmallFile(paths.ca_cert, 1 << 20);
  auto ca_key = crypto::ReadSmallFile(paths.ca_key, 1 << 20, /*require_private=*/true);
  if (!ca_cert || !ca_key) {
    const auto ec = !ca_cert ? ca_cert.error() : ca_key.error();
    Log()->error("cannot read the CA in {}: {}", dir.string(), ec.message());
    return ec;
  }
  keys.seal = *seal;
  keys.sign = *sign;
  keys.ca_cert_pem = std::move(*ca_cert);
  keys.ca_key_pem = std::move(*ca_key);
  return keys;
}

}  // namespace

struct HomeService::Parts {
  std::unique_ptr<store::HomeStore> store;
  std::unique_ptr<Notifier> notifier;
  std::unique_ptr<TicketEventPlanner> planner;
  std::unique_ptr<EscalationJob> escalation;
  // Missing heartbeats and retention (old batch ids included): threads of their own, stopped before
  // the store closes.
  std::unique_ptr<HomeUpkeep> upkeep;
  std::unique_ptr<IngestHandler> ingest;
  std::unique_ptr<RemoteAccessHub> remote;  // gateways' tunnels and engineers' sessions
  std::unique_ptr<AdminApi> admin;
  std::unique_ptr<transport::HttpsServer> ingest_server;
  std::unique_ptr<transport::HttpsServer> admin_server;
};

Result<std::unique_ptr<store::HomeStore>> OpenHomeStore(const HomeConfig& config) {
  const bool postgres = config.store_backend == "postgresql";
  const store::HomeStoreOptions options{
      .backend = postgres ? store::sql::Backend::kPostgres : store::sql::Backend::kSqlite,
      .sqlite_path = config.store_path,
      .postgres_conninfo = config.store_postgresql_url,
      .postgres_pool_size = static_cast<int>(config.store_postgresql_pool_size)};
  auto store = store::SqlHomeStore::Open(options);
  if (!store) {
    // Name the key to fix; never the URL itself, which may hold a password.
    if (postgres) {
      Log()->error("cannot open the store on PostgreSQL (store.postgresql.url): {}: {}", store.error().message(),
                   store::sql::LastErrorDetail());
    } else {
      Log()->error("cannot open the store {} (store.path): {}: {}", config.store_path, store.error().message(),
                   store::sql::LastErrorDetail());
    }
    return store.error();
  }
  return std::unique_ptr<store::HomeStore>(std::move(*store));
}

Result<std::unique_ptr<HomeService>> HomeService::Start(const HomeConfig& config) {
  auto parts = std::make_unique<Parts>();
  auto store = OpenHomeStore(config);
  if (!store) {
    return store.error();
  }
  parts->store = std::move(*store);
  auto keys = LoadKeys(config.pki_dir);
  if (!keys) {
    return keys.error();
  }

  const Clock& clock = SystemClock::Instance();
  const notify::CompiledNotify& notify = config.compiled_notify;
  parts->notifier = std::make_unique<Notifier>(
      *parts->store,
      std::make_unique<notify::Dispatcher>(std::make_unique<transport::SmtpMailer>(config.smtp),
                                           notify.dispatcher, clock),
      clock,
      NotifierOptions{.retry_max = config.notify_retry_max, .give_up_after = notify.give_up_after});
  parts->planner = std::make_unique<TicketEventPlanner>(notify.plan);
  if (config.email_contacts.empty() && config.notify.contacts.empty()) {
    Log()->warn("notify.email and [[notify.contact]] are empty: tickets will open but nobody is notified");
  }
  Notifier* notifier = parts->notifier.get();
  parts->escalation =
      std::make_unique<EscalationJob>(*parts->store, notify.plan.escalation(), parts->planner->AsPlanner(), clock);
  const std::vector<DedupRule> dedup = config.dedup;
  IngestSettings settings{.max_clock_skew = config.max_clock_skew,
                          .ticket_min_severity = config.TicketMinSeverity(),
                          .email_contacts = config.email_contacts,
                          .planner = parts->planner->AsPlanner(),
                          .dedup_key = [dedup](const protocol::DeviceIdentity& device,
                                               std::string_view code) { return DedupKey(dedup, device, code); },
                          .reopen_window = config.reopen_window,
                          .storm = {.max_alerts = config.storm_max_alerts,
                                    .window_ms = config.storm_window.count() * 1000,
                                    .maintenance_ms = config.storm_maintenance.count() * 1000},
                          .certificate_days = static_cast<int>(config.certificate_days),
                          .require_client_certificate = config.require_client_certificate};
  if (!config.require_client_certificate) {
    Log()->warn("ingest.require_client_certificate is false: batches without a client certificate are "
                "accepted when their signature verifies with the enrolled device's key");
  }
  parts->ingest = std::make_unique<IngestHandler>(*parts->store, std::move(*keys), settings, clock,
                                                  [notifier] { notifier->Wake(); });
  std::vector<std::string> groups;
  for (const auto& group : config.notify.groups) {
    groups.push_back(group.name);
  }
  auto upkeep = HomeUpkeep::Create(*parts->store, SystemClock::Instance(),
                                   UpkeepOptions{.heartbeats = config.heartbeats,
                                                 .retention = config.retention,
                                                 .max_clock_skew = config.max_clock_skew,
                                                 .tickets = {.planner = parts->planner->AsPlanner(),
                                                             .contacts = config.email_contacts,
                                                             .reopen_window_ms = config.reopen_window.count() * 1000}});
  if (!upkeep) {
    return upkeep.error();
  }
  parts->upkeep = std::move(*upkeep);
  HomeUpkeep* upkeep_part = parts->upkeep.get();
  parts->ingest->SetBatchObserver([upkeep_part](const protocol::Batch& batch, const protocol::BatchReply& reply,
                                                std::int64_t now_ms) {
    upkeep_part->OnBatchCommitted(batch, reply, now_ms);
  });
  const crypto::PkiPaths paths(config.pki_dir);
  if (config.remote_access) {
    RemoteAccessOptions remote_options;
    remote_options.tunnel_listen = config.tunnel_listen;
    remote_options.sessions_listen = config.sessions_listen;
    remote_options.tls = {paths.home_cert.string(), paths.home_key.string(), paths.ca_cert.string()};
    auto remote = RemoteAccessHub::Start(remote_options);
    if (!remote) {
      return remote.error();
    }
    parts->remote = std::move(*remote);
  }
  RemoteAccessHub* remote_part = parts->remote.get();
  parts->admin = std::make_unique<AdminApi>(*parts->store, clock,
                                            AdminOptions{.planner = parts->planner->AsPlanner(),
                                                         .plan = &parts->planner->plan(),
                                                         .groups = std::move(groups),
                                                         .on_notified = [notifier] { notifier->Wake(); },
                                                         .on_device_revoked =
                                                             [upkeep_part, notifier](const protocol::DeviceIdentity& id) {
                                                               if (auto* monitor = upkeep_part->heartbeats()) {
                                                                 if (auto done = monitor->OnDeviceRevoked(id); !done) {
                                                                   log::Get("home")->error(
                                                                       "device {} revoked, but its missing-heartbeat "
                                                                       "ticket could not be resolved: {}",
                                                                       id.Key(), done.error().message());
                                                                 }
                                                               }
                                                               notifier->Wake();
                                                             },
                                                         .remote_access = nullptr});
  if (remote_part != nullptr) {
    parts->admin->SetRemoteAccess([remote_part](const std::string& caller, const std::string& token_hash,
                                                const transport::HttpRequest& request) {
      return remote_part->HandleAdmin(RemoteCaller{caller, token_hash}, request);
    });
  }

  transport::ServerOptions ingest_options;
  ingest_options.name = "ingest";
  ingest_options.listen = config.ingest_listen;
  ingest_options.tls = {paths.home_cert.string(), paths.home_key.string(), paths.ca_cert.string()};
  // Optional, not required: enrollment happens before a device has a certificate. /v1/batches
  // refuses requests without one.
  ingest_options.client_certs = transport::ClientCertPolicy::kOptional;
  ingest_options.max_body_bytes = static_cast<std::size_t>(config.max_body_bytes);
  ingest_options.worker_threads = static_cast<int>(config.worker_threads);
  IngestHandler* ingest = parts->ingest.get();
  auto ingest_server = transport::HttpsServer::Start(
      ingest_options, [ingest](const transport::HttpRequest& r) { return ingest->Handle(r); });
  if (!ingest_server) {
    Log()->error("cannot listen for agents on {}: {}", config.ingest_listen, ingest_server.error().message());
    return ingest_server.error();
  }
  parts->ingest_server = std::move(*ingest_server);

  transport::ServerOptions admin_options;
  admin_options.name = "admin";
  admin_options.listen = config.admin_listen;
  admin_options.tls = {paths.home_cert.string(), paths.home_key.string(), paths.ca_cert.string()};
  admin_options.client_certs = transport::ClientCertPolicy::kNone;
  admin_options.max_body_bytes = 64 * 1024;
  AdminApi* admin = parts->admin.get();
  auto admin_server = transport::HttpsServer::Start(
      admin_options, [admin, upkeep_part](const transport::HttpRequest& r) {
        if (auto handled = upkeep_part->HandleAdmin(r)) {  // GET /v1/retention/preview
          return std::move(*handled);
        }
        return admin->Handle(r);
      });
  if (!admin_server) {
    Log()->error("cannot listen for the admin API on {}: {}", config.admin_listen,
                 admin_server.error().message());
    return admin_server.error();
  }
  parts->admin_server = std::move(*admin_server);

  parts->notifier->Start();
  parts->upkeep->Start();
  parts->escalation->Start(std::chrono::duration_cast<std::chrono::milliseconds>(config.escalation_check),
                           [notifier] { notifier->Wake(); });

  std::unique_ptr<HomeService> service(new HomeService(std::move(parts)));
  if (!config.address_file.empty()) {
    const std::string addresses =
        fmt::format(R"({{"ingest":"{}","admin":"{}","tunnel_port":{},"sessions_port":{}}})" "\n",
                    service->IngestAddress(), service->AdminAddress(), service->TunnelPort(), service->SessionsPort());
    if (auto written = crypto::WriteFileAtomically(config.address_file, addresses, 0644); !written) {
      Log()->error("cannot write {}: {}", config.address_file, written.error().message());
      return written.error();
    }
  }
  Log()->info("home ready: agents on {}, admin API on {}, store {}, {} email contact(s), {} contact(s), "
              "{} escalation level(s), storm control {}",
              service->IngestAddress(), service->AdminAddress(),
              config.store_backend == "postgresql" ? std::string("on PostgreSQL") : config.store_path,
              config.email_contacts.size(), config.notify.contacts.size(), config.notify.escalation_levels.size(),
              config.storm_max_alerts > 0 ? fmt::format("at more than {} alerts in {} s", config.storm_max_alerts,
                                                        config.storm_window.count())
                                          : std::string("off"));
  return service;
}

HomeService::HomeService(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

HomeService::~HomeService() { Stop(); }

std::string HomeService::IngestAddress() const { return parts_->ingest_server->LocalAddress(); }
std::string HomeService::AdminAddress() const { return parts_->admin_server->LocalAddress(); }
std::uint16_t HomeService::TunnelPort() const { return parts_->remote ? parts_->remote->TunnelPort() : 0; }
std::uint16_t HomeService::SessionsPort() const { return parts_->remote ? parts_->remote->SessionsPort() : 0; }

void HomeService::Stop() {
  if (!parts_) {
    return;
  }
  Log()->info("home stopping");
  if (parts_->ingest_server) {
    parts_->ingest_server->Stop(std::chrono::seconds(5));
  }
  if (parts_->admin_server) {
    parts_->admin_server->Stop(std::chrono::seconds(2));
  }
  if (parts_->remote) {
    parts_->remote->Stop();
  }
  if (parts_->escalation) {
    parts_->escalation->Stop();
  }
  if (parts_->upkeep) {
    parts_->upkeep->Stop();
  }
  if (parts_->notifier) {
    parts_->notifier->Stop();
  }
  parts_.reset();
  Log()->info("home stopped");
}

}  // namespace lifeline::home
