#include "cli/policy_command.h"

#include "cli/commands.h"
#include "cli/signals.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "policy/policy_config.h"
#include "policy/policy_server.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>

#include <unistd.h>

namespace lifeline::cli {
namespace {

namespace json = boost::json;
constexpr std::string_view kLocalAdmin = "local-admin";

std::optional<policy::PolicyConfig> Load(const std::string& path, std::string_view program) {
  try {
    return policy::PolicyConfig::Load(path);
  } catch (const config::ConfigError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return std::nullopt;
  }
}

std::string Time(std::optional<std::int64_t> ms) {
  return ms ? FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms))) : std::string("-");
}

/// The password from --password-file, LIFELINE_POLICY_PASSWORD or one line of stdin: never from
/// the command line, where other users of the machine would see it in the process list.
std::optional<std::string> ReadPassword(const PolicyOptions& options, std::string_view program) {
  std::string password;
  if (!options.password_file.empty()) {
    std::ifstream in(options.password_file);
    if (!in || !std::getline(in, password)) {
      std::cerr << program << ": cannot read a password from " << options.password_file << "\n";
      return std::nullopt;
    }
  } else if (const char* env = std::getenv("LIFELINE_POLICY_PASSWORD"); env != nullptr) {
    password = env;
  } else {
    if (::isatty(STDIN_FILENO) != 0) {
      std::cerr << "password: " << std::flush;
    }
    if (!std::getline(std::cin, password)) {
      std::cerr << program << ": no password on stdin\n";
      return std::nullopt;
    }
  }
  while (!password.empty() && (password.back() == '\r' || password.back() == '\n')) {
    password.pop_back();
  }
  return password;
}

int Explain(std::string_view program, std::error_code ec, const policy::PolicyConfig& config) {
  if (ec == policy::ServiceErrc::kWeakPassword) {
    std::cerr << fmt::format("{}: the password must have at least {} characters (login.min_password_length)\n",
                             program, config.min_password_length);
  } else {
    std::cerr << program << ": " << ec.message() << "\n";
  }
  return ec == policy::ServiceErrc::kStoreFailed ? kExitFailure : kExitUsage;
}

int RunService(const PolicyOptions& options) {
  if (options.help_config) {
    policy::PolicyConfig config;
    std::cout << "policy.toml keys (TOML; unknown keys are errors; secrets also accept KEY_file and KEY_env):\n"
              << config.MakeSchema().Describe();
    return kExitOk;
  }
  auto config = Load(options.config_file, "lifeline policy run");
  if (!config) {
    return kExitUsage;
  }
  BlockStopSignals();
  auto service = policy::PolicyService::Start(*config);
  if (!service) {
    std::cerr << "lifeline policy run: cannot start: " << service.error().message() << " (see the log above)\n";
    return kExitFailure;
  }
  const auto signal = WaitForStopSignal();
  log::Get("policy")->info("received signal {}, shutting down", signal.value_or(0));
  (*service)->Stop();
  return kExitOk;
}

/// The store and users a local administrator works on, or the exit code to return.
struct Local {
  policy::PolicyConfig config;
  std::unique_ptr<policy::PolicyStore> store;
  std::unique_ptr<policy::AuditLog> audit;  // before users: their sink appends to it
  std::unique_ptr<policy::PolicyUsers> users;
};
/// `audited`: the command changes users or tokens, so its events go to the audit log.
std::optional<Local> OpenLocal(const PolicyOptions& options, std::string_view program, bool audited,
                               int* exit_code) {
  auto config = Load(options.config_file, program);
  if (!config) {
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  // The audit log is opened below, and only for commands that change something; on SQLite a
  // failure to open it is a warning there, as it always was.
  auto databases = policy::OpenPolicyDatabases(*config, /*open_audit=*/false);
  if (!databases) {
    std::cerr << program << ": cannot open the store "
              << (config->store_backend == "postgresql" ? std::string("(store.postgresql.url)")
                                                        : config->StorePath().string())
              << ": " << databases.error().message() << " (see the log above)\n";
    *exit_code = kExitFailure;
    return std::nullopt;
  }
  auto store = policy::OpenPolicyStore(*databases);
  if (!store) {
    std::cerr << program << ": cannot open the store " << (*databases).store->description() << ": "
              << store.error().message() << "\n";
    *exit_code = kExitFailure;
    return std::nullopt;
  }
  Local local{*config, std::move(*store), nullptr, nullptr};
  local.users = std::make_unique<policy::PolicyUsers>(*local.store, SystemClock::Instance(),
                                                      policy::MakeUsersOptions(local.config));
  // Changes made here are admin actions like those made over the API: records in the same audit log
  // (its appends are transactions on the database, so a running service and this process may both
  // write).
  // No timer thread: the service, or the next count-due append, signs the checkpoint.
  if (!audited) {
    return local;
  }
  auto audit_options = policy::AuditLogOptions(local.config);
  audit_options.db = databases->audit;  // PostgreSQL: the store's pool; SQLite: null, data_dir/audit.db
  audit_options.checkpoint_timer = false;
  auto audit = policy::AuditLog::Open(std::move(audit_options));
  if (!audit) {
    std::cerr << program << ": warning: cannot open the audit log in " << local.config.data_dir << " ("
              << audit.error().message() << "): this change will not be audited\n";
  } else {
    local.audit = std::move(*audit);
    local.users->SetSecurityEventSink(policy::AuditSecurityEvents(*local.audit));
  }
  return local;
}

std::optional<policy::Role> RoleOrComplain(const std::string& text, std::string_view program) {
  auto role = policy::ParseRole(text);
  if (!role) {
    std::cerr << program << ": --role must be admin, approver or auditor\n";
  }
  return role;
}

int Users(const PolicyCommands& c, const PolicyOptions& options) {
  const bool add = c.users_add->parsed();
  const bool passwd = c.users_passwd->parsed();
  const std::string program = add ? "lifeline policy users add" : passwd ? "lifeline policy users passwd"
                              : c.users_remove->parsed() ? "lifeline policy users remove"
                                                         : "lifeline policy users list";
  int exit_code = kExitOk;
  auto local = OpenLocal(options, program, !c.users_list->parsed(), &exit_code);
  if (!local) {
    return exit_code;
  }
  if (add || passwd) {
    std::optional<policy::Role> role;
    if (add && !(role = RoleOrComplain(options.role, program))) {
      return kExitUsage;
    }
    auto password = ReadPassword(options, program);
    if (!password) {
      return kExitUsage;
    }
    auto done = add ? local->users->AddUser(options.name, *role, *password, kLocalAdmin)
                    : local->users->SetPassword(options.name, *password, kLocalAdmin);
    if (!done) {
      return Explain(program, done.error(), local->config);
    }
    std::cout << (add ? fmt::format("added user '{}' (role {})\n", options.name, options.role)
                      : fmt::format("changed the password of '{}'\n", options.name));
    return kExitOk;
  }
  if (c.users_remove->parsed()) {
    if (auto removed = local->users->RemoveUser(options.name, kLocalAdmin); !removed) {
      return Explain(program, removed.error(), local->config);
    }
    std::cout << fmt::format("removed user '{}' and ended their sessions\n", options.name);
    return kExitOk;
  }
  auto users = local->users->ListUsers();
  if (!users) {
    return Explain(program, users.error(), local->config);
  }
  if (options.json) {
    json::array out;
    for (const auto& u : *users) {
      out.push_back(json::object{{"name", u.name},
                                 {"role", policy::ToString(u.role)},
                                 {"created", Time(u.created_ms)},
                                 {"password_changed", Time(u.password_changed_ms)}});
    }
    std::cout << json::serialize(out) << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<24} {:<9} {:<25} {}\n", "NAME", "ROLE", "CREATED", "PASSWORD CHANGED");
  for (const auto& u : *users) {
    std::cout << fmt::format("{:<24} {:<9} {:<25} {}\n", u.name, policy::ToString(u.role), Time(u.created_ms),
                             Time(u.password_changed_ms));
  }
  return kExitOk;
}

int Tokens(const PolicyCommands& c, const PolicyOptions& options) {
  const std::string program = c.tokens_create->parsed()   ? "lifeline policy tokens create"
                              : c.tokens_revoke->parsed() ? "lifeline policy tokens revoke"
                                                          : "lifeline policy tokens list";
  int exit_code = kExitOk;
  auto local = OpenLocal(options, program, !c.tokens_list->parsed(), &exit_code);
  if (!local) {
    return exit_code;
  }
  if (c.tokens_create->parsed()) {
    auto role = RoleOrComplain(options.role, program);
    if (!role) {
      return kExitUsage;
    }
    std::optional<std::chrono::seconds> ttl;
    if (!options.ttl.empty()) {
      std::chrono::seconds parsed{};
      if (!config::ParseDuration(options.ttl, &parsed)) {
        std::cerr << program << ": --ttl must look like 90d, 12h or 3600\n";
        return kExitUsage;
      }
      ttl = parsed;
    }
    auto issued = local->users->CreateToken(options.name, *role, ttl, kLocalAdmin);
    if (!issued) {
      if (issued.error() == policy::ServiceErrc::kInvalidArgument) {
        std::cerr << fmt::format("{}: invalid name, or --ttl beyond sessions.max_token_lifetime ({} s)\n", program,
                                 local->config.max_token_lifetime.count());
        return kExitUsage;
      }
      return Explain(program, issued.error(), local->config);
    }
    std::cerr << fmt::format("API token '{}' (role {}, expires {}); the policy manager keeps only its hash, so "
                             "save it now:\n",
                             issued->name, policy::ToString(issued->role),
                             issued->expires_ms ? Time(issued->expires_ms) : std::string("never"));
    std::cout << issued->token << "\n";
    return kExitOk;
  }
  if (c.tokens_revoke->parsed()) {
    if (auto revoked = local->users->RevokeToken(options.name, kLocalAdmin); !revoked) {
      return Explain(program, revoked.error(), local->config);
    }
    std::cout << fmt::format("revoked API token '{}'\n", options.name);
    return kExitOk;
  }
  auto tokens = local->users->ListTokens();
  if (!tokens) {
    return Explain(program, tokens.error(), local->config);
  }
  if (options.json) {
    json::array out;
    for (const auto& t : *tokens) {
      out.push_back(json::object{{"name", t.name},
                                 {"role", policy::ToString(t.role)},
                                 {"created_by", t.created_by},
                                 {"created", Time(t.created_ms)},
                                 {"expires", Time(t.expires_ms)},
                                 {"revoked", Time(t.revoked_ms)},
                                 {"last_used", Time(t.last_used_ms)}});
    }
    std::cout << json::serialize(out) << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:<24} {:<9} {:<25} {:<25} {}\n", "NAME", "ROLE", "EXPIRES", "REVOKED", "LAST USED");
  for (const auto& t : *tokens) {
    std::cout << fmt::format("{:<24} {:<9} {:<25} {:<25} {}\n", t.name, policy::ToString(t.role),
                             t.expires_ms ? Time(t.expires_ms) : std::string("never"), Time(t.revoked_ms),
                             Time(t.last_used_ms));
  }
  return kExitOk;
}

// ---- show, set: through the running service's API ----------------------------------------------

std::string Field(const json::object& object, std::string_view key) {
  const auto* v = object.if_contains(key);
  if (v == nullptr || v->is_null()) {
    return "";
  }
  return v->is_string() ? std::string(v->get_string()) : json::serialize(*v);
}

std::string ScopeText(const json::object& item) {
  const auto* scope = item.if_contains("scope");
  if (scope == nullptr || !scope->is_object()) {
    return "?";
  }
  const std::string kind = Field(scope->get_object(), "kind");
  return kind == "site" ? std::string("site default") : kind + " " + Field(scope->get_object(), "name");
}

std::string WindowsText(const json::object& rule) {
  const auto* windows = rule.if_contains("windows");
  if (windows == nullptr || !windows->is_array()) {
    return "";
  }
  std::string out;
  for (const auto& w : windows->get_array()) {
    if (!w.is_object()) {
      continue;
    }
    std::string days;
    if (const auto* d = w.get_object().if_contains("days"); d != nullptr && d->is_array()) {
      for (const auto& day : d->get_array()) {
        days += (days.empty() ? "" : ",") + (day.is_string() ? std::string(day.get_string()) : "?");
      }
    }
    out += fmt::format("{}{} {}-{} {}", out.empty() ? "" : "; ", days.empty() ? "every day" : days,
                       Field(w.get_object(), "from"), Field(w.get_object(), "to"), Field(w.get_object(), "utc_offset"));
  }
  return out;
}

const json::array& ArrayOf(const json::object& object, std::string_view key) {
  static const json::array kEmpty;
  const auto* v = object.if_contains(key);
  return v != nullptr && v->is_array() ? v->get_array() : kEmpty;
}

void PrintPolicy(const json::object& answer) {
  const std::int64_t version = answer.contains("version") && answer.at("version").is_int64()
                                   ? answer.at("version").get_int64()
                                   : 0;
  if (version == 0) {
    std::cout << "policy version 0: no policy set yet (every request is denied)\n";
    return;
  }
  std::cout << fmt::format("policy version {} (changed {} by {})\n", version,
                           Time(answer.at("changed_ms").is_int64() ? answer.at("changed_ms").get_int64() : 0),
                           Field(answer, "changed_by"));
  const auto* policy_value = answer.if_contains("policy");
  if (policy_value == nullptr || !policy_value->is_object()) {
    return;
  }
  const json::object& policy = policy_value->get_object();
  const auto& groups = ArrayOf(policy, "groups");
  std::cout << fmt::format("groups ({}):\n", groups.size());
  for (const auto& g : groups) {
    std::string serials;
    for (const auto& serial : ArrayOf(g.as_object(), "serials")) {
      serials += (serials.empty() ? "" : " ") + (serial.is_string() ? std::string(serial.get_string()) : "?");
    }
    std::cout << fmt::format("  {:<20} {}\n", Field(g.as_object(), "name"), serials);
  }
  const auto& rules = ArrayOf(policy, "rules");
  std::cout << fmt::format("rules ({}):\n", rules.size());
  for (const auto& r : rules) {
    const auto& rule = r.as_object();
    const std::string application = Field(rule, "application");
    std::string action = Field(rule, "action");
    if (action == "ask_for_approval") {
      const std::string timeout = Field(rule, "ask_timeout_s");
      action += fmt::format(" ({} s)", timeout.empty() ? "900" : timeout);
    }
    const std::string windows = WindowsText(rule);
    const std::string description = Field(rule, "description");
    std::cout << fmt::format("  {:>4}  {:<24} {:<22} {}{}{}\n", Field(rule, "id"), ScopeText(rule),
                             Field(rule, "activity") + (application.empty() ? "" : " " + application), action,
                             windows.empty() ? "" : "  [" + windows + "]",
                             description.empty() ? "" : "  # " + description);
  }
  const auto& grants = ArrayOf(policy, "grants");
  std::cout << fmt::format("grants ({}):\n", grants.size());
  for (const auto& g : grants) {
    const auto& grant = g.as_object();
    std::string activities;
    for (const auto& a : ArrayOf(grant, "activities")) {
      activities += (activities.empty() ? "" : ",") + (a.is_string() ? std::string(a.get_string()) : "?");
    }
    const std::string engineer = Field(grant, "engineer");
    const auto ms = [&grant](std::string_view key) {
      const auto* v = grant.if_contains(key);
      return v != nullptr && v->is_int64() ? std::optional<std::int64_t>(v->get_int64()) : std::nullopt;
    };
    std::cout << fmt::format("  {:>4}  {:<12} {:<24} {:<16} {} - {}{}  by {}: {}\n", Field(grant, "id"),
                             engineer.empty() ? "*" : engineer, ScopeText(grant), activities, Time(ms("starts_at_ms")),
                             Time(ms("ends_at_ms")),
                             Field(grant, "overrides_never_allow") == "true" ? "  overrides Never Allow" : "",
                             Field(grant, "granted_by"), Field(grant, "reason"));
  }
}

int Show(const PolicyOptions& options) {
  constexpr std::string_view program = "lifeline policy show";
  int exit_code = kExitFailure;
  auto answer = SendPolicyRequest(options.api, program, "GET", "/v1/policies", "", &exit_code);
  if (!answer) {
    return exit_code;
  }
  if (!answer->ok() || !answer->json.is_object()) {
    ReportPolicyApiError(program, *answer);
    return kExitFailure;
  }
  if (options.json) {
    // The set itself, as `policy set` takes it: its version makes a later set fail with 409 when
    // someone changed the policy in between.
    const auto* policy = answer->json.as_object().if_contains("policy");
    std::cout << (policy != nullptr ? json::serialize(*policy) : std::string("{}")) << "\n";
    return kExitOk;
  }
  PrintPolicy(answer->json.as_object());
  return kExitOk;
}

int Set(const PolicyOptions& options) {
  constexpr std::string_view program = "lifeline policy set";
  std::string body;
  if (options.policy_file == "-") {
    body.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(options.policy_file, std::ios::binary);
    if (!in) {
      std::cerr << fmt::format("{}: cannot read {}\n", program, options.policy_file);
      return kExitUsage;
    }
    body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  boost::system::error_code ec;
  const auto parsed = json::parse(body, ec);
  if (ec || !parsed.is_object()) {
    std::cerr << fmt::format("{}: {} is not a JSON object ({})\n", program, options.policy_file,
                             ec ? ec.message() : std::string("another JSON value"));
    return kExitUsage;
  }
  int exit_code = kExitFailure;
  auto answer = SendPolicyRequest(options.api, program, "PUT", "/v1/policies", body, &exit_code);
  if (!answer) {
    return exit_code;
  }
  if (!answer->ok()) {
    ReportPolicyApiError(program, *answer);
    return kExitFailure;
  }
  const auto* version = answer->json.is_object() ? answer->json.as_object().if_contains("version") : nullptr;
  std::cout << fmt::format("stored policy version {}\n", version != nullptr ? json::serialize(*version) : "?");
  return kExitOk;
}

}  // namespace

PolicyCommands AddPolicyCommands(CLI::App& app, PolicyOptions& options) {
  PolicyCommands c;
  c.policy = app.add_subcommand("policy", "The policy manager: who may reach the site's devices, approvals, audit")
                 ->require_subcommand(1);
  c.run = c.policy->add_subcommand("run", "Run the policy manager until SIGINT/SIGTERM");
  c.run->add_option("--config", options.config_file, "policy.toml");
  c.run->add_flag("--help-config", options.help_config, "List every policy.toml key with its default");

  auto* users = c.policy->add_subcommand("users", "Users of the policy manager (on the store, as a local admin)")
                    ->require_subcommand(1);
  const std::string password_help = "File whose first line is the password (else LIFELINE_POLICY_PASSWORD, else stdin)";
  c.users_add = users->add_subcommand("add", "Add a user with a role and a password");
  c.users_add->add_option("name", options.name, "User name")->required();
  c.users_add->add_option("--role", options.role, "admin, approver or auditor")->required();
  c.users_add->add_option("--password-file", options.password_file, password_help);
  c.users_list = users->add_subcommand("list", "List users and their roles");
  c.users_list->add_flag("--json", options.json, "Print JSON");
  c.users_passwd = users->add_subcommand("passwd", "Set a user's password");
  c.users_passwd->add_option("name", options.name, "User name")->required();
  c.users_passwd->add_option("--password-file", options.password_file, password_help);
  c.users_remove = users->add_subcommand("remove", "Remove a user and end their sessions");
  c.users_remove->add_option("name", options.name, "User name")->required();

  auto* tokens = c.policy->add_subcommand("tokens", "API tokens (on the store, as a local admin)")->require_subcommand(1);
  c.tokens_create = tokens->add_subcommand("create", "Create a named API token; prints it once");
  c.tokens_create->add_option("name", options.name, "Token name (unique)")->required();
  c.tokens_create->add_option("--role", options.role, "admin, approver or auditor")->required();
  c.tokens_create->add_option("--ttl", options.ttl, "Expiry: 90d, 12h, ... (default: none)");
  c.tokens_list = tokens->add_subcommand("list", "List API tokens (never their values)");
  c.tokens_list->add_flag("--json", options.json, "Print JSON");
  c.tokens_revoke = tokens->add_subcommand("revoke", "Revoke an API token");
  c.tokens_revoke->add_option("name", options.name, "Token name")->required();

  c.show = c.policy->add_subcommand("show", "Print the running policy manager's current policy (any role)");
  c.show->add_flag("--json", options.json, "Print the policy set as JSON, as `policy set` takes it");
  c.set = c.policy->add_subcommand("set", "Replace the policy with a policy set from a JSON file (admin)");
  c.set->add_option("file", options.policy_file, "PolicySet JSON (docs/policy.md); - reads stdin")->required();
  for (CLI::App* sub : {c.show, c.set}) {
    AddPolicyApiOptions(sub, options.api);
  }

  for (CLI::App* sub : {c.users_add, c.users_list, c.users_passwd, c.users_remove, c.tokens_create, c.tokens_list,
                        c.tokens_revoke}) {
    sub->add_option("--config", options.config_file, "policy.toml (default /etc/lifeline/policy.toml)");
  }
  c.requests = AddPolicyRequestsCommands(c.policy, options.requests);
  return c;
}

int RunPolicyCommands(const PolicyCommands& c, const PolicyOptions& options) {
  if (c.run == nullptr) {
    return -1;
  }
  if (c.run->parsed()) {
    return RunService(options);
  }
  if (c.users_add->parsed() || c.users_list->parsed() || c.users_passwd->parsed() || c.users_remove->parsed()) {
    return Users(c, options);
  }
  if (c.tokens_create->parsed() || c.tokens_list->parsed() || c.tokens_revoke->parsed()) {
    return Tokens(c, options);
  }
  if (c.show->parsed()) {
    return Show(options);
  }
  if (c.set->parsed()) {
    return Set(options);
  }
  if (const int requests_exit = RunPolicyRequestsCommands(c.requests, options.requests); requests_exit >= 0) {
    return requests_exit;
  }
  return -1;
}

}  // namespace lifeline::cli
