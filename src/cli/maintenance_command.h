#pragma once
// `lifeline maintenance list|add|end`: customer-declared maintenance windows (per device or per
// site) through the home's admin API: alerts are recorded and ticketed, tickets notify nobody.
#include "cli/admin_client.h"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace lifeline::cli {

struct MaintenanceOptions {
  AdminConnection connection;
  bool all = false;
  std::string customer;
  std::string site;
  std::string serial;
  std::string start;
  std::string end;
  std::string duration;
  std::string reason;
  std::int64_t id = 0;
};

CLI::App* AddMaintenanceCommand(CLI::App& app, MaintenanceOptions& options);
int RunMaintenanceCommand(CLI::App& command, const MaintenanceOptions& options);

}  // namespace lifeline::cli
