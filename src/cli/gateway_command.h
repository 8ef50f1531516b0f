#pragma once
// `lifeline gateway run|sessions|remote-access`: the gateway service and the customer's controls over
// remote sessions (through the running gateway's local admin interface).
#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct GatewayOptions {
  std::string config_file = "/etc/lifeline/gateway.toml";
  bool json = false;
  bool all = false;
  bool help_config = false;
  std::string session_id;
  std::string switch_to;  // remote-access: on | off | status
};

struct GatewayCommands {
  CLI::App* run = nullptr;
  CLI::App* sessions_list = nullptr;
  CLI::App* sessions_kill = nullptr;
  CLI::App* remote_access = nullptr;
  CLI::App* policy_status = nullptr;
};

/// Adds run, sessions list|kill, remote-access and policy status under `gateway`.
GatewayCommands AddGatewayCommands(CLI::App& gateway, GatewayOptions& options);
/// Runs whichever of them was parsed; -1 when none was.
int RunGatewayCommands(const GatewayCommands& commands, const GatewayOptions& options);

}  // namespace lifeline::cli
