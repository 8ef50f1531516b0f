#include "cli/maintenance_command.h"

#include "cli/commands.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;

namespace {

constexpr std::string_view kProgram = "lifeline maintenance";

std::string Scope(const json::object& o) {
  return JsonText(o, "serial").empty()
             ? fmt::format("{}/{} (site)", JsonText(o, "customer"), JsonText(o, "site"))
             : fmt::format("{}/{}/{}", JsonText(o, "customer"), JsonText(o, "site"), JsonText(o, "serial"));
}

void PrintWindows(const json::value& root) {
  const auto& windows = root.at("windows").as_array();
  if (windows.empty()) {
    std::cout << "no maintenance windows\n";
    return;
  }
  std::cout << fmt::format("{:>5} {:<36} {:<25} {:<25} {:<7} {:<14} {}\n", "ID", "SCOPE", "START", "END", "ACTIVE",
                           "BY", "REASON");
  for (const auto& w : windows) {
    const auto& o = w.as_object();
    std::cout << fmt::format("{:>5} {:<36} {:<25} {:<25} {:<7} {:<14} {}\n", JsonText(o, "id"), Scope(o),
                             JsonText(o, "start"), JsonText(o, "end"), JsonText(o, "active") == "true" ? "yes" : "no",
                             JsonText(o, "created_by"), JsonText(o, "reason"));
  }
}

void PrintWindow(const json::value& root) {
  const auto& o = root.as_object();
  std::cout << fmt::format("maintenance window {} for {}: {} to {}{}\n", JsonText(o, "id"), Scope(o),
                           JsonText(o, "start"), JsonText(o, "end"),
                           JsonText(o, "ended_by").empty() ? "" : " (ended by " + JsonText(o, "ended_by") + ")");
}

}  // namespace

CLI::App* AddMaintenanceCommand(CLI::App& app, MaintenanceOptions& options) {
  auto* cmd = app.add_subcommand("maintenance",
                                 "Maintenance windows: alerts are recorded and ticketed but notify nobody")
                  ->require_subcommand(1);
  AddAdminOptions(cmd, options.connection);
  auto* list = cmd->add_subcommand("list", "Active and planned windows (--all: also past ones)");
  list->add_flag("--all", options.all, "Include windows that are over");
  list->add_option("--customer", options.customer, "Only this customer's");
  list->add_option("--site", options.site, "Only this site's");
  list->add_option("--serial", options.serial, "Only windows covering this device");
  auto* add = cmd->add_subcommand("add", "Declare a window for a site, or one device of it");
  add->add_option("--customer", options.customer, "Customer")->required();
  add->add_option("--site", options.site, "Site")->required();
  add->add_option("--serial", options.serial, "One device (default: the whole site)");
  add->add_option("--start", options.start, "Start, e.g. 2026-11-21T22:00:00Z (default: now)");
  auto* end = add->add_option("--end", options.end, "End, e.g. 2026-11-22T02:00:00Z");
  auto* duration = add->add_option("--duration", options.duration, "Length instead of --end, e.g. 4h");
  end->excludes(duration);
  add->add_option("--reason", options.reason, "Why (shown to engineers)");
  auto* end_cmd = cmd->add_subcommand("end", "End a window now (a planned one is cancelled)");
  end_cmd->add_option("id", options.id, "Window id (from `maintenance list`)")->required();
  return cmd;
}

int RunMaintenanceCommand(CLI::App& command, const MaintenanceOptions& options) {
  const auto& c = options.connection;
  if (command.got_subcommand("list")) {
    std::string path = fmt::format("/v1/maintenance?all={}", options.all ? 1 : 0);
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"customer", options.customer}, {"site", options.site}, {"serial", options.serial}}) {
      if (!value.empty()) {
        path += fmt::format("&{}={}", key, UrlEncode(value));
      }
    }
    return AdminCall(c, kProgram, "GET", path, "", PrintWindows);
  }
  if (command.got_subcommand("add")) {
    if (options.end.empty() && options.duration.empty()) {
      std::cerr << kProgram << ": give --end or --duration\n";
      return kExitUsage;
    }
    json::object body{{"customer", options.customer}, {"site", options.site}, {"reason", options.reason}};
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"serial", options.serial}, {"start", options.start}, {"end", options.end}, {"duration", options.duration}}) {
      if (!value.empty()) {
        body[key] = value;
      }
    }
    return AdminCall(c, kProgram, "POST", "/v1/maintenance", json::serialize(body), PrintWindow);
  }
  if (command.got_subcommand("end")) {
    return AdminCall(c, kProgram, "POST", fmt::format("/v1/maintenance/{}/end", options.id), "", PrintWindow);
  }
  return kExitUsage;
}

}  // namespace lifeline::cli
