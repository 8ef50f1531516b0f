#pragma once
// `lifeline devices list|show|revoke|heartbeats|inventory` through the home's admin API.
#include "cli/admin_client.h"

#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct DevicesOptions {
  AdminConnection connection;
  std::string device;  // customer/site/serial
};

CLI::App* AddDevicesCommand(CLI::App& app, DevicesOptions& options);
int RunDevicesCommand(CLI::App& command, const DevicesOptions& options);

}  // namespace lifeline::cli
