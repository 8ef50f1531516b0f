#pragma once
// `lifeline gateway devices list|show|add|edit|remove|history`: the managed devices of a running
// gateway, through its local admin interface (gateway/admin_access.h).
#include <CLI/CLI.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace lifeline::cli {

struct GatewayDevicesOptions {
  std::string config_file = "/etc/lifeline/gateway.toml";
  bool json = false;
  std::string serial;  // show, edit, remove, history (positional) and add (--serial)
  std::string model;    // edit: changes only when given
  std::string address;  // edit: changes only when given
  std::vector<std::string> apps;  // NAME:PORT, repeatable
  bool enable = false;
  bool disable = false;
  std::size_t limit = 50;
};

/// Adds `devices` under `gateway` (the `lifeline gateway` command).
CLI::App* AddGatewayDevicesCommand(CLI::App& gateway, GatewayDevicesOptions& options);
int RunGatewayDevicesCommand(CLI::App& command, const GatewayDevicesOptions& options);

}  // namespace lifeline::cli
