// Subcommand wiring: parse the command line, load the role's config, run it. No logic of its own.
#include "cli/commands.h"

#include "agent/agent_service.h"
#include "agent/enroll.h"
#include "agent/send_service.h"
#include "cli/agent_run.h"
#include "cli/subprocess.h"
#include "agent/env_check.h"
#include "agent/queue_config.h"
#include "common/clock.h"
#include "cli/demo.h"
#include "cli/signals.h"
#include "cli/retention_command.h"
#include "cli/simulate_command.h"
#include "cli/agent_tickets.h"
#include "cli/audit_command.h"
#include "cli/connect_command.h"
#include "cli/devices_command.h"
#include "cli/gateway_command.h"
#include "cli/gateway_devices_command.h"
#include "cli/gateway_enroll_command.h"
#include "cli/gateway_relay_command.h"
#include "cli/maintenance_command.h"
#include "cli/policy_command.h"
#include "cli/tickets_command.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/ports.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "crypto/token.h"
#include "home/home_service.h"
#include "protocol/codec.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <iostream>

namespace lifeline::cli {
namespace {

/// Loads a role's config file; on any problem prints the one line that names the file and key and
/// returns nullopt (the caller exits with kExitUsage).
template <class Config>
std::optional<Config> LoadConfig(const std::string& path) {
  try {
    return Config::Load(path);
  } catch (const config::ConfigError& e) {
    std::cerr << "lifeline: " << e.what() << "\n";
    return std::nullopt;
  }
}

/// Prints a role's accepted config keys, for --help-config.
template <class Config>
void PrintConfigHelp(const char* file) {
  Config config;
  std::cout << file << " keys (TOML; unknown keys are errors; secrets also accept KEY_file and KEY_env):\n"
            << config.MakeSchema().Describe();
}

int RunHome(const std::string& config_path) {
  auto loaded = LoadConfig<home::HomeConfig>(config_path);
  if (!loaded) {
    return kExitUsage;
  }
  const home::HomeConfig& config = *loaded;
  BlockStopSignals();
  auto service = home::HomeService::Start(config);
  if (!service) {
    std::cerr << "lifeline home: cannot start: " << service.error().message() << " (see the log above)\n";
    return kExitFailure;
  }
  const auto signal = WaitForStopSignal();
  log::Get("home")->info("received signal {}, shutting down", signal.value_or(0));
  (*service)->Stop();
  return kExitOk;
}

int CreateEnrollToken(const std::string& config_path, const protocol::DeviceIdentity& device,
                      const std::string& ttl_text, bool gateway) {
  std::chrono::seconds ttl{};
  auto loaded = LoadConfig<home::HomeConfig>(config_path);
  if (!loaded) {
    return kExitUsage;
  }
  const home::HomeConfig& config = *loaded;
  if (!config::ParseDuration(ttl_text, &ttl) || ttl.count() < 60 || ttl.count() > 30 * 86400) {
    std::cerr << "lifeline: --ttl must be a duration from 60s to 30d, e.g. 30m, 24h, 7d\n";
    return kExitUsage;
  }
  std::string why;
  if (!protocol::IsValidIdentity(device, &why)) {
    std::cerr << "lifeline: " << why << "\n";
    return kExitUsage;
  }
  auto store = home::OpenHomeStore(config);
  if (!store) {
    return kExitFailure;
  }
  const std::string token = crypto::GenerateToken("llt");
  const auto now_ms = SystemClock::Instance().NowUnixMillis();
  const auto kind = gateway ? store::EnrollmentKind::kGateway : store::EnrollmentKind::kDevice;
  if (auto created =
          (*store)->CreateEnrollmentToken(crypto::HashToken(token), device, now_ms + ttl.count() * 1000, now_ms, kind);
      !created) {
    std::cerr << "lifeline: cannot store the token: " << created.error().message() << "\n";
    return kExitFailure;
  }
  std::cerr << fmt::format("enrollment token for {} {} (model '{}'), single use, valid for {} s{}:\n",
                           gateway ? "gateway" : "device", device.Key(), device.model, ttl.count(),
                           gateway ? "; use it with `lifeline gateway enroll`" : "");
  std::cout << token << "\n";
  return kExitOk;
}

int CreateAdminToken(const std::string& config_path, const std::string& name, const std::string& role) {
  auto loaded = LoadConfig<home::HomeConfig>(config_path);
  if (!loaded) {
    return kExitUsage;
  }
  const home::HomeConfig& config = *loaded;
  auto store = home::OpenHomeStore(config);
  if (!store) {
    return kExitFailure;
  }
  const std::string token = crypto::GenerateToken("lla");
  if (auto created = (*store)->CreateAdminToken(name, crypto::HashToken(token), role,
                                                SystemClock::Instance().NowUnixMillis());
      !created) {
    std::cerr << "lifeline: cannot store the admin token '" << name << "': " << created.error().message() << "\n";
    return kExitFailure;
  }
  std::cerr << fmt::format("admin token '{}' (role {}); the home keeps only its hash, so save it now:\n", name, role);
  std::cout << token << "\n";
  return kExitOk;
}

struct InstructOptions {
  protocol::DeviceIdentity device;
  bool send_inventory = false;
  bool send_test_alert = false;
  std::string apply_config;
};

int Instruct(const std::string& config_path, const InstructOptions& options) {
  auto loaded = LoadConfig<home::HomeConfig>(config_path);
  if (!loaded) {
    return kExitUsage;
  }
  const int chosen = options.send_inventory + options.send_test_alert + !options.apply_config.empty();
  if (chosen != 1) {
    std::cerr << "lifeline home instruct: choose exactly one of --send-inventory, --send-test-alert, --apply-config\n";
    return kExitUsage;
  }
  std::string kind;
  std::string config_toml;
  if (options.send_inventory) {
    kind = protocol::kInstructionSendInventory;
  } else if (options.send_test_alert) {
    kind = protocol::kInstructionSendTestAlert;
  } else {
    kind = protocol::kInstructionApplyConfig;
    auto text = crypto::ReadSmallFile(options.apply_config, protocol::kMaxConfigBytes);
    if (!text) {
      std::cerr << "lifeline home instruct: cannot read " << options.apply_config << ": " << text.error().message()
                << " (at most " << protocol::kMaxConfigBytes << " bytes)\n";
      return kExitUsage;
    }
    config_toml = *text;
  }
  auto store = home::OpenHomeStore(*loaded);
  if (!store) {
    return kExitFailure;
  }
  auto id = (*store)->QueueInstruction(options.device, kind, config_toml, SystemClock::Instance().NowUnixMillis());
  if (!id) {
    std::cerr << "lifeline home instruct: " << id.error().message() << " (" << options.device.Key() << ")\n";
    return kExitFailure;
  }
  std::cout << fmt::format("instruction {} ({}) queued for {}; it goes out with the next reply to the device\n", *id,
                           kind, options.device.Key());
  return kExitOk;
}

int EnrollAgent(const std::string& config_path, std::string token, const std::string& token_file, bool force) {
  auto loaded = LoadConfig<agent::AgentConfig>(config_path);
  if (!loaded) {
    return kExitUsage;
  }
  const agent::AgentConfig& config = *loaded;
  std::string problem;
  token = agent::ResolveEnrollToken(std::move(token), token_file, &problem);
  if (token.empty()) {
    std::cerr << "lifeline: " << problem << "\n";
    return kExitUsage;
  }
  std::string refusal;
  auto outcome = agent::Enroll(config, token, force, &refusal);
  if (!outcome) {
    std::cerr << "lifeline agent enroll: " << refusal << "\n";
    return kExitFailure;
  }
  std::cout << outcome->message << "\n";
  return kExitOk;
}

int CheckEnvironment(const std::string& config_path) {
  auto loaded = LoadConfig<agent::AgentConfig>(config_path);
  if (!loaded) {
    return kExitUsage;
  }
  const auto report = agent::RunEnvironmentCheck(*loaded);
  std::cout << "Lifeline environment check for " << loaded->device.Key() << "\n\n" << report.Render();
  return report.Passed() ? kExitOk : kExitFailure;
}

struct ReviewOptions {
  std::vector<std::string> ids;
  bool all = false;
};

/// `lifeline agent review`: what waits for approval, exactly as it will leave, and the decision on it.
int ReviewMessages(const std::string& config_path, const std::string& action, const ReviewOptions& options) {
  auto loaded = LoadConfig<agent::AgentConfig>(config_path);
  if (!loaded) {
    return kExitUsage;
  }
  auto queue = agent::OpenQueue(*loaded);
  if (!queue) {
    std::cerr << "lifeline agent review: cannot open " << loaded->QueuePath().string() << ": "
              << queue.error().message() << "\n";
    return kExitFailure;
  }
  if (action == "list" || action == "show") {
    auto held = (*queue)->Held(10000);
    if (!held) {
      std::cerr << "lifeline agent review: " << held.error().message() << "\n";
      return kExitFailure;
    }
    if (action == "list") {
      if (held->empty()) {
        std::cout << (loaded->queue.review ? "nothing waits for review\n"
                                           : "nothing waits for review (review.enabled is off)\n");
      }
      for (const auto& m : *held) {
        std::cout << fmt::format("{}  {:<13} {}  {}\n", m.id, protocol::ToString(m.type),
                                 FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(m.timestamp_ms))),
                                 m.type == protocol::MessageType::kAlert || m.type == protocol::MessageType::kClear
                                     ? m.alert.code + " " + m.alert.text
                                     : fmt::format("{} bytes of {}", m.payload_json.size(), protocol::ToString(m.type)));
      }
      return kExitOk;
    }
    for (const auto& m : *held) {
      if (std::find(options.ids.begin(), options.ids.end(), m.id) != options.ids.end()) {
        // Exactly the document that leaves the machine (inside the sealed envelope), but for the batch
        // id and send time, which are set when it is sent.
        protocol::Batch batch{.batch_id = std::string(32, '0'), .device = loaded->device, .agent_version = LIFELINE_VERSION};
        batch.messages.push_back(m);
        std::cout << protocol::EncodeBatch(batch) << "\n";
        return kExitOk;
      }
    }
    std::cerr << "lifeline agent review show: no held message with that id\n";
    return kExitFailure;
  }
  if (options.ids.empty() && !options.all) {
    std::cerr << "lifeline agent review " << action << ": name message ids, or --all\n";
    return kExitUsage;
  }
  auto changed = (*queue)->Review(options.all ? std::vector<std::string>{} : options.ids, action == "approve");
  if (!changed) {
    std::cerr << "lifeline agent review: " << changed.error().message() << "\n";
    return kExitFailure;
  }
  std::cout << fmt::format("{} {} message(s){}\n", action == "approve" ? "approved" : "rejected", *changed,
                           action == "approve" ? "; the agent sends them with its next batch" : "; they will not be sent");
  return kExitOk;
}

int AgentStatus(const std::string& config_path) {
  auto loaded = LoadConfig<agent::AgentConfig>(config_path);
  if (!loaded) {
    return kExitUsage;
  }
  const agent::AgentConfig& config = *loaded;
  auto report = agent::StatusReport(config);
  if (!report) {
    std::cerr << "lifeline agent status: cannot read " << config.QueuePath().string() << ": "
              << report.error().message() << " (has the agent run yet?)\n";
    return kExitFailure;
  }
  std::cout << *report;
  return kExitOk;
}

}  // namespace

int Run(int argc, char** argv) {
  CLI::App app{"Lifeline: secure call-home and remote support.\n"
               "Agents watch devices and send alerts and heartbeats, outbound only, to the home, which opens\n"
               "tickets and emails engineers. Start with `lifeline demo` to see it all on one machine."};
  app.set_version_flag("--version", std::string("lifeline ") + LIFELINE_VERSION);
  app.require_subcommand(1);
  std::string log_format = "text";
  std::string log_level = "info";
  app.add_option("--log-format", log_format, "Log format: text (readable) or json (one object per line)")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", log_level, "Log level: trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  // ports
  auto* ports_cmd = app.add_subcommand("ports", "Print the port usage guide (for firewall planning)");
  bool markdown = false;
  ports_cmd->add_flag("--markdown", markdown, "Print Markdown (docs/ports.md is exactly this)");

  // pki
  auto* pki_cmd = app.add_subcommand("pki", "Manage the home's PKI")->require_subcommand(1);
  auto* pki_init = pki_cmd->add_subcommand(
      "init", "Create a root CA, the home's TLS certificate and the home's payload keys in a directory");
  std::string pki_dir;
  std::vector<std::string> home_names;
  pki_init->add_option("--dir", pki_dir, "Directory to create them in (must not hold a PKI yet)")->required();
  pki_init->add_option("--name", home_names,
                       "Host name or IP address agents use to reach the home (repeatable; default localhost, "
                       "127.0.0.1, ::1)");

  // home
  auto* home_cmd = app.add_subcommand("home", "The support center: ingest, tickets, notifications")->require_subcommand(1);
  std::string home_config;
  bool home_help_config = false;
  auto* home_run = home_cmd->add_subcommand("run", "Run the home until SIGINT/SIGTERM");
  home_run->add_option("--config", home_config, "home.toml");
  home_run->add_flag("--help-config", home_help_config, "List every home.toml key with its default");
  auto* home_token = home_cmd->add_subcommand("enroll-token", "Issue a single-use enrollment token for one device");
  protocol::DeviceIdentity token_device;
  std::string token_ttl = "24h";
  home_token->add_option("--config", home_config, "home.toml")->required();
  home_token->add_option("--customer", token_device.customer, "Customer")->required();
  home_token->add_option("--site", token_device.site, "Site")->required();
  home_token->add_option("--serial,--name", token_device.serial, "Device serial number (a gateway's name)")->required();
  home_token->add_option("--model", token_device.model, "Device model");
  home_token->add_option("--ttl", token_ttl, "How long the token stays valid (default 24h)");
  bool token_gateway = false;
  home_token->add_flag("--gateway", token_gateway,
                       "The token enrolls a gateway of the site (`lifeline gateway enroll`), not a device");
  auto* home_admin = home_cmd->add_subcommand("admin-token", "Create a token for the admin API (lifeline tickets)");
  std::string admin_name;
  std::string admin_role = "engineer";
  home_admin->add_option("--config", home_config, "home.toml")->required();
  home_admin->add_option("--name", admin_name, "Who the token is for (unique)")->required();
  home_admin->add_option("--role", admin_role, "engineer, manager, read-only or admin (docs/api.md: what each may do)")
      ->check(CLI::IsMember({"engineer", "manager", "read-only", "admin"}));

  auto* home_instruct = home_cmd->add_subcommand(
      "instruct", "Queue an instruction for a device; it rides on the next reply to it (outbound only)");
  InstructOptions instruct;
  home_instruct->add_option("--config", home_config, "home.toml")->required();
  home_instruct->add_option("--customer", instruct.device.customer, "Customer")->required();
  home_instruct->add_option("--site", instruct.device.site, "Site")->required();
  home_instruct->add_option("--serial", instruct.device.serial, "Device serial number")->required();
  home_instruct->add_flag("--send-inventory", instruct.send_inventory, "Ask for a full inventory report now");
  home_instruct->add_flag("--send-test-alert", instruct.send_test_alert,
                          "Ask for a test alert (opens a ticket and emails, end to end)");
  home_instruct->add_option("--apply-config", instruct.apply_config,
                            "Send this agent.toml; the agent validates it, applies it atomically, rolls back if it fails");

  RetentionOptions retention_options;
  auto* home_retention = AddRetentionCommand(*home_cmd, retention_options);

  // agent
  auto* agent_cmd = app.add_subcommand("agent", "The device agent: watch, queue, send home")->require_subcommand(1);
  std::string agent_config;
  bool agent_help_config = false;
  auto* agent_run = agent_cmd->add_subcommand("run", "Run the agent until SIGINT/SIGTERM");
  agent_run->add_option("--config", agent_config, "agent.toml");
  agent_run->add_flag("--help-config", agent_help_config, "List every agent.toml key with its default");
  // Started by `agent run` (or lifeline-agent) whenever the queue has work; hidden from --help.
  auto* agent_send = agent_cmd->add_subcommand("send", "Internal: the agent's sender process (started by the agent)");
  agent_send->group("");
  agent_send->add_option("--config", agent_config, "agent.toml")->required();
  auto* agent_enroll = agent_cmd->add_subcommand(
      "enroll", "Create this device's keys and get its certificate from the home with an enrollment token");
  std::string enroll_token;
  std::string enroll_token_file;
  bool enroll_force = false;
  agent_enroll->add_option("--config", agent_config, "agent.toml")->required();
  agent_enroll->add_option("--token", enroll_token, "Enrollment token (or LIFELINE_ENROLL_TOKEN)");
  agent_enroll->add_option("--token-file", enroll_token_file, "File holding the enrollment token");
  agent_enroll->add_flag("--force", enroll_force, "Enroll again although a certificate exists");
  auto* agent_review = agent_cmd->add_subcommand(
      "review", "Review before sending: list, show, approve or reject messages held for a local operator")
      ->require_subcommand(1);
  ReviewOptions review;
  std::string review_action;
  for (const char* action : {"list", "show", "approve", "reject"}) {
    const char* help = std::string_view(action) == "list"    ? "List held messages"
                       : std::string_view(action) == "show"  ? "Print exactly what a held message sends"
                       : std::string_view(action) == "approve" ? "Release held messages for sending"
                                                               : "Delete held messages unsent";
    auto* sub = agent_review->add_subcommand(action, help);
    sub->add_option("--config", agent_config, "agent.toml")->required();
    if (std::string_view(action) != "list") {
      sub->add_option("ids", review.ids, "Message ids (from `review list`)");
    }
    if (std::string_view(action) == "approve" || std::string_view(action) == "reject") {
      sub->add_flag("--all", review.all, "Every held message");
    }
    sub->callback([&review_action, action] { review_action = action; });
  }
  auto* agent_status = agent_cmd->add_subcommand("status", "Show queue depth, last contact and tickets received");
  agent_status->add_option("--config", agent_config, "agent.toml")->required();
  auto* agent_tickets = agent_cmd->add_subcommand("tickets", "Ask the home for this device's tickets (a signed answer)");
  bool agent_tickets_json = false;
  agent_tickets->add_option("--config", agent_config, "agent.toml")->required();
  agent_tickets->add_flag("--json", agent_tickets_json, "Print the home's JSON");

  auto* check_cmd = app.add_subcommand(
      "check", "Check this device's path home: certificate, name resolution, TCP reach, TLS and CA pin, clock skew,\n"
               "every connection path and endpoint, and a test message round trip (exit 1 on any failure)");
  std::string check_config;
  check_cmd->add_option("--config", check_config, "agent.toml")->required();

  TicketsOptions tickets_options;
  auto* tickets_cmd = AddTicketsCommand(app, tickets_options);
  DevicesOptions devices_options;
  auto* devices_cmd = AddDevicesCommand(app, devices_options);
  // gateway
  auto* gateway_cmd =
      app.add_subcommand("gateway", "A site's single way in and out: managed devices, relay, remote sessions")
          ->require_subcommand(1);
  GatewayDevicesOptions gateway_devices_options;
  auto* gateway_devices_cmd = AddGatewayDevicesCommand(*gateway_cmd, gateway_devices_options);
  GatewayOptions gateway_options;
  const GatewayCommands gateway_commands = AddGatewayCommands(*gateway_cmd, gateway_options);
  auto* gateway_enroll = gateway_cmd->add_subcommand(
      "enroll", "Create the gateway's keys and get its gateway certificate from the home with a gateway token");
  std::string gateway_config_path;
  gateway_enroll->add_option("--config", gateway_config_path, "gateway.toml")->required();
  gateway_enroll->add_option("--token", enroll_token, "Gateway enrollment token (or LIFELINE_ENROLL_TOKEN)");
  gateway_enroll->add_option("--token-file", enroll_token_file, "File holding the enrollment token");
  gateway_enroll->add_flag("--force", enroll_force, "Enroll again although a certificate exists");
  auto* gateway_relay = gateway_cmd->add_subcommand(
      "relay", "Run the relay alone (the site's agents send to the gateway, which forwards to the home) until "
               "SIGINT/SIGTERM; `gateway run` includes it");
  gateway_relay->add_option("--config", gateway_config_path, "gateway.toml")->required();
  ConnectOptions connect_options;
  auto* connect_cmd = AddConnectCommand(app, connect_options);
  MaintenanceOptions maintenance_options;
  auto* maintenance_cmd = AddMaintenanceCommand(app, maintenance_options);
  DemoOptions demo_options;
  auto* demo_cmd = AddDemoCommand(app, demo_options);
  SimulateOptions simulate_options;
  auto* simulate_cmd = AddSimulateCommand(app, simulate_options);
  AuditOptions audit_options;
  const AuditCommands audit_commands = AddAuditCommand(app, audit_options);
  PolicyOptions policy_options;
  const PolicyCommands policy_commands = AddPolicyCommands(app, policy_options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  log::Format format = log::Format::kText;
  log::ParseFormat(log_format, &format);
  log::Init(format, spdlog::level::from_str(log_level));

  if (ports_cmd->parsed()) {
    std::cout << (markdown ? ports::RenderPortGuideMarkdown() : ports::RenderPortGuideText());
    return kExitOk;
  }
  if (pki_init->parsed()) {
    crypto::InitPkiOptions options;
    if (!home_names.empty()) {
      options.home_names = home_names;
    }
    if (auto made = crypto::InitPki(pki_dir, options); !made) {
      std::cerr << "lifeline pki init: " << made.error().message() << " (" << pki_dir << ")\n";
      return kExitFailure;
    }
    std::cout << fmt::format(
        "created the PKI in {}:\n  ca.crt, home-seal.pub, home-sign.pub  public: copy them to every agent's pki dir\n"
        "  ca.key, home.key, home-seal.key, home-sign.key  private (0600): never copy them anywhere\n",
        pki_dir);
    return kExitOk;
  }
  if (home_run->parsed()) {
    if (home_help_config) {
      PrintConfigHelp<home::HomeConfig>("home.toml");
      return kExitOk;
    }
    if (home_config.empty()) {
      std::cerr << "lifeline home run: --config is required\n";
      return kExitUsage;
    }
    return RunHome(home_config);
  }
  if (home_token->parsed()) {
    return CreateEnrollToken(home_config, token_device, token_ttl, token_gateway);
  }
  if (home_instruct->parsed()) {
    return Instruct(home_config, instruct);
  }
  if (home_retention->parsed()) {
    return RunRetentionCommand(retention_options);
  }
  if (home_admin->parsed()) {
    return CreateAdminToken(home_config, admin_name, admin_role);
  }
  if (agent_run->parsed()) {
    if (agent_help_config) {
      PrintConfigHelp<agent::AgentConfig>("agent.toml");
      return kExitOk;
    }
    if (agent_config.empty()) {
      std::cerr << "lifeline agent run: --config is required\n";
      return kExitUsage;
    }
    return RunAgentProcess(agent_config, SenderCommand{SelfExecutable(), log_format, log_level}, "lifeline agent");
  }
  if (agent_send->parsed()) {
    auto loaded = LoadConfig<agent::AgentConfig>(agent_config);
    return loaded ? agent::RunSendService(*loaded, {}) : kExitUsage;
  }
  if (agent_enroll->parsed()) {
    return EnrollAgent(agent_config, enroll_token, enroll_token_file, enroll_force);
  }
  if (agent_review->parsed()) {
    return ReviewMessages(agent_config, review_action, review);
  }
  if (agent_status->parsed()) {
    return AgentStatus(agent_config);
  }
  if (agent_tickets->parsed()) {
    return AgentTickets(agent_config, agent_tickets_json);
  }
  if (check_cmd->parsed()) {
    return CheckEnvironment(check_config);
  }
  if (tickets_cmd->parsed()) {
    return RunTicketsCommand(*tickets_cmd, tickets_options);
  }
  if (devices_cmd->parsed()) {
    return RunDevicesCommand(*devices_cmd, devices_options);
  }
  if (gateway_relay->parsed()) {
    return RunGatewayRelay(gateway_config_path);
  }
  if (gateway_enroll->parsed()) {
    return RunGatewayEnroll(gateway_config_path, enroll_token, enroll_token_file, enroll_force);
  }
  if (const int gateway_exit = RunGatewayCommands(gateway_commands, gateway_options); gateway_exit >= 0) {
    return gateway_exit;
  }
  if (gateway_devices_cmd->parsed()) {
    return RunGatewayDevicesCommand(*gateway_devices_cmd, gateway_devices_options);
  }
  if (connect_cmd->parsed()) {
    return RunConnect(connect_options);
  }
  if (maintenance_cmd->parsed()) {
    return RunMaintenanceCommand(*maintenance_cmd, maintenance_options);
  }
  if (demo_cmd->parsed()) {
    return RunDemo(demo_options);
  }
  if (simulate_cmd->parsed()) {
    return RunSimulateCommand(simulate_options);
  }
  if (const int audit_exit = RunAuditCommand(audit_commands, audit_options); audit_exit >= 0) {
    return audit_exit;
  }
  if (const int policy_exit = RunPolicyCommands(policy_commands, policy_options); policy_exit >= 0) {
    return policy_exit;
  }
  return kExitUsage;
}

}  // namespace lifeline::cli
