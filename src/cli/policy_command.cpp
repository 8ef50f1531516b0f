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
  std::unique_ptr<policy::PolicyUsers> users;
};
std::optional<Local> OpenLocal(const PolicyOptions& options, std::string_view program, int* exit_code) {
  auto config = Load(options.config_file, program);
  if (!config) {
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  auto store = policy::OpenPolicyStore(*config);
  if (!store) {
    std::cerr << program << ": cannot open the store " << config->StorePath().string() << ": "
              << store.error().message() << "\n";
    *exit_code = kExitFailure;
    return std::nullopt;
  }
  Local local{*config, std::move(*store), nullptr};
  local.users = std::make_unique<policy::PolicyUsers>(*local.store, SystemClock::Instance(),
                                                      policy::MakeUsersOptions(local.config));
  // Changes made here are security events like those made over the API: they are logged, and the
  // audit log picks them up where the service wires its sink.
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
  auto local = OpenLocal(options, program, &exit_code);
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
  auto local = OpenLocal(options, program, &exit_code);
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

  for (CLI::App* sub : {c.users_add, c.users_list, c.users_passwd, c.users_remove, c.tokens_create, c.tokens_list,
                        c.tokens_revoke}) {
    sub->add_option("--config", options.config_file, "policy.toml (default /etc/lifeline/policy.toml)");
  }
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
  return -1;
}

}  // namespace lifeline::cli
