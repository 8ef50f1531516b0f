#include "cli/gateway_command.h"

#include "cli/admin_client.h"
#include "cli/commands.h"
#include "cli/signals.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "gateway/admin_access.h"
#include "gateway/gateway_config.h"
#include "gateway/gateway_service.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <optional>

namespace lifeline::cli {
namespace {

namespace json = boost::json;

std::optional<gateway::GatewayConfig> Load(const std::string& path, std::string_view program) {
  try {
    return gateway::GatewayConfig::Load(path);
  } catch (const config::ConfigError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return std::nullopt;
  }
}

// One request to the running gateway; prints its error, or returns the parsed answer.
std::optional<json::value> Call(const gateway::GatewayConfig& config, std::string_view program, std::string_view method,
                                const std::string& target, const std::string& body) {
  std::string detail;
  auto response = gateway::CallGatewayAdmin(config, method, target, body, &detail);
  if (!response) {
    std::cerr << program << ": " << detail << "\n";
    return std::nullopt;
  }
  boost::system::error_code ec;
  auto root = json::parse(response->body, ec);
  if (response->status < 200 || response->status >= 300 || ec) {
    std::string message = !ec && root.is_object() ? JsonText(root.as_object(), "message") : response->body;
    std::cerr << fmt::format("{}: {} (HTTP {})\n", program, message, response->status);
    return std::nullopt;
  }
  return root;
}

std::string HumanBytes(std::int64_t bytes) {
  if (bytes < 10 * 1024) {
    return fmt::format("{} B", bytes);
  }
  if (bytes < 10 * 1024 * 1024) {
    return fmt::format("{} KiB", bytes / 1024);
  }
  return fmt::format("{} MiB", bytes / (1024 * 1024));
}

int RunService(const GatewayOptions& options) {
  if (options.help_config) {
    gateway::GatewayConfig config;
    std::cout << "gateway.toml keys (TOML; unknown keys are errors; secrets also accept KEY_file and KEY_env):\n"
              << config.MakeSchema().Describe();
    return kExitOk;
  }
  auto config = Load(options.config_file, "lifeline gateway run");
  if (!config) {
    return kExitUsage;
  }
  BlockStopSignals();
  auto service = gateway::GatewayService::Start(*config);
  if (!service) {
    std::cerr << "lifeline gateway run: cannot start: " << service.error().message() << " (see the log above)\n";
    return kExitFailure;
  }
  const auto signal = WaitForStopSignal();
  log::Get("gateway")->info("received signal {}, shutting down", signal.value_or(0));
  (*service)->Stop();
  return kExitOk;
}

int ListSessions(const GatewayOptions& options) {
  constexpr std::string_view kProgram = "lifeline gateway sessions list";
  auto config = Load(options.config_file, kProgram);
  if (!config) {
    return kExitUsage;
  }
  auto answer = Call(*config, kProgram, "GET", options.all ? "/v1/sessions?all=1" : "/v1/sessions", "");
  if (!answer) {
    return kExitFailure;
  }
  if (options.json) {
    std::cout << json::serialize(*answer) << "\n";
    return kExitOk;
  }
  const auto* list = answer->as_object().if_contains("sessions");
  if (list == nullptr || !list->is_array() || list->as_array().empty()) {
    std::cout << (options.all ? "no sessions recorded\n" : "no open sessions\n");
    return kExitOk;
  }
  std::cout << fmt::format("{:<32}  {:<16}  {:<14}  {:<8}  {:<20}  {:>9}  {:>9}  {}\n", "SESSION", "ENGINEER", "DEVICE",
                           "APP", "STARTED", "TO DEVICE", "FROM DEV.", "OUTCOME / REASON");
  for (const auto& item : list->as_array()) {
    const auto& s = item.as_object();
    std::cout << fmt::format("{:<32}  {:<16}  {:<14}  {:<8}  {:<20}  {:>9}  {:>9}  {} / {}\n", JsonText(s, "id"),
                             JsonText(s, "engineer"), JsonText(s, "device"), JsonText(s, "app"),
                             JsonText(s, "started_at").substr(0, 19), HumanBytes(s.at("bytes_to_device").to_number<std::int64_t>()),
                             HumanBytes(s.at("bytes_from_device").to_number<std::int64_t>()), JsonText(s, "outcome"),
                             JsonText(s, "reason"));
  }
  return kExitOk;
}

int KillSession(const GatewayOptions& options) {
  constexpr std::string_view kProgram = "lifeline gateway sessions kill";
  auto config = Load(options.config_file, kProgram);
  if (!config) {
    return kExitUsage;
  }
  auto answer = Call(*config, kProgram, "DELETE", "/v1/sessions/" + UrlEncode(options.session_id), "");
  if (!answer) {
    return kExitFailure;
  }
  const auto& s = answer->as_object();
  std::cout << fmt::format("session {} of {} to {} {} ended: {}\n", JsonText(s, "id"), JsonText(s, "engineer"),
                           JsonText(s, "device"), JsonText(s, "app"), JsonText(s, "outcome"));
  return kExitOk;
}

int RemoteAccess(const GatewayOptions& options) {
  constexpr std::string_view kProgram = "lifeline gateway remote-access";
  auto config = Load(options.config_file, kProgram);
  if (!config) {
    return kExitUsage;
  }
  std::optional<json::value> answer;
  if (options.switch_to == "status") {
    answer = Call(*config, kProgram, "GET", "/v1/remote-access", "");
  } else {
    const bool on = options.switch_to == "on";
    answer = Call(*config, kProgram, "PUT", "/v1/remote-access", json::serialize(json::object{{"enabled", on}}));
  }
  if (!answer) {
    return kExitFailure;
  }
  const bool enabled = answer->as_object().at("enabled").as_bool();
  std::cout << (enabled ? "remote access is ON: engineers can open sessions to registered applications\n"
                        : "remote access is OFF: every session request is refused\n");
  return kExitOk;
}

// What the gateway knows of its policy manager: the first thing to look at when sessions are refused.
int PolicyStatus(const GatewayOptions& options) {
  constexpr std::string_view kProgram = "lifeline gateway policy status";
  auto config = Load(options.config_file, kProgram);
  if (!config) {
    return kExitUsage;
  }
  auto answer = Call(*config, kProgram, "GET", "/v1/policy", "");
  if (!answer) {
    return kExitFailure;
  }
  if (options.json) {
    std::cout << json::serialize(*answer) << "\n";
    return kExitOk;
  }
  const auto& s = answer->as_object();
  const std::string mode = JsonText(s, "mode");
  if (mode == "disabled") {
    std::cout << "policy manager DISABLED ([policy] disabled = true): every remote session is allowed\n";
  } else if (mode == "none") {
    std::cout << "no policy manager configured ([policy] url): every remote session is refused\n";
  } else {
    std::cout << fmt::format("policy manager: {}\n", JsonText(s, "url"));
  }
  const auto version = s.at("policy_version").to_number<std::int64_t>();
  const auto synced_ms = s.at("synced_ms").to_number<std::int64_t>();
  std::cout << (version > 0 ? fmt::format("cached policy: version {}\n", version)
                            : std::string("cached policy: none yet (sessions are refused until one arrives)\n"));
  if (mode != "none" && !JsonText(s, "url").empty()) {
    const std::int64_t now_ms = SystemClock::Instance().NowUnixMillis();
    std::cout << (synced_ms > 0 ? fmt::format("last answer: {} s ago\n", std::max<std::int64_t>(0, now_ms - synced_ms) / 1000)
                                : std::string("last answer: never\n"));
    std::cout << (s.at("reachable").as_bool() ? std::string("reachable: yes\n")
                                              : fmt::format("reachable: NO ({})\n", JsonText(s, "last_error")));
  }
  if (s.at("outbox").is_number()) {
    std::cout << fmt::format("audit records waiting for the policy manager: {}\n",
                             s.at("outbox").to_number<std::int64_t>());
  }
  return kExitOk;
}

}  // namespace

GatewayCommands AddGatewayCommands(CLI::App& gateway, GatewayOptions& options) {
  GatewayCommands commands;
  commands.run = gateway.add_subcommand(
      "run",
      "Run the gateway: the local admin interface, probes of managed devices, and the outbound tunnel to the "
      "home through which engineers reach registered applications (nothing listens for the internet)");
  commands.run->add_option("--config", options.config_file, "gateway.toml")->capture_default_str();
  commands.run->add_flag("--help-config", options.help_config, "List every gateway.toml key with its default");

  auto* sessions = gateway.add_subcommand("sessions", "Remote sessions at this gateway: list them, end one");
  sessions->require_subcommand(1);
  commands.sessions_list = sessions->add_subcommand("list", "Open sessions (--all: the audit records of all)");
  commands.sessions_list->add_flag("--all", options.all,
                                   "Every recorded session, ended and refused ones too, newest first");
  commands.sessions_list->add_flag("--json", options.json, "Print the JSON");
  commands.sessions_kill =
      sessions->add_subcommand("kill", "End a session now: its connections are cut and it cannot be used again");
  commands.sessions_kill->add_option("session", options.session_id, "Session id (from `sessions list`)")->required();
  for (auto* command : {commands.sessions_list, commands.sessions_kill}) {
    command->add_option("--config", options.config_file, "gateway.toml")->capture_default_str();
  }
  commands.remote_access = gateway.add_subcommand(
      "remote-access",
      "Switch remote access on or off for this whole site (off ends every open session and refuses new ones; "
      "the setting survives restarts)");
  commands.remote_access->add_option("state", options.switch_to, "on, off or status")
      ->required()
      ->check(CLI::IsMember({"on", "off", "status"}));
  commands.remote_access->add_option("--config", options.config_file, "gateway.toml")->capture_default_str();
  auto* policy = gateway.add_subcommand("policy", "This gateway's policy manager: cached policy, last answer, audit "
                                                  "records waiting");
  policy->require_subcommand(1);
  commands.policy_status = policy->add_subcommand(
      "status", "Which policy version is cached, when the policy manager last answered, whether it is reachable, "
                "and how many audit records wait for it");
  commands.policy_status->add_flag("--json", options.json, "Print the JSON");
  commands.policy_status->add_option("--config", options.config_file, "gateway.toml")->capture_default_str();
  return commands;
}

int RunGatewayCommands(const GatewayCommands& commands, const GatewayOptions& options) {
  if (commands.run->parsed()) {
    return RunService(options);
  }
  if (commands.sessions_list->parsed()) {
    return ListSessions(options);
  }
  if (commands.sessions_kill->parsed()) {
    return KillSession(options);
  }
  if (commands.remote_access->parsed()) {
    return RemoteAccess(options);
  }
  if (commands.policy_status->parsed()) {
    return PolicyStatus(options);
  }
  return -1;
}

}  // namespace lifeline::cli
