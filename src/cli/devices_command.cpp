#include "cli/devices_command.h"

#include "cli/commands.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;

namespace {

constexpr std::string_view kProgram = "lifeline devices";

std::string DeviceName(const json::object& o) {
  return fmt::format("{}/{}/{}", JsonText(o, "customer"), JsonText(o, "site"), JsonText(o, "serial"));
}

void PrintDevices(const json::value& root) {
  const auto& devices = root.at("devices").as_array();
  if (devices.empty()) {
    std::cout << "no devices\n";
    return;
  }
  std::cout << fmt::format("{:<40} {:<12} {:<8} {:<26} {}\n", "DEVICE", "MODEL", "STATUS", "LAST HEARTBEAT",
                           "INTERVAL");
  for (const auto& d : devices) {
    const auto& o = d.as_object();
    std::cout << fmt::format("{:<40} {:<12} {:<8} {:<26} {} s\n", DeviceName(o), JsonText(o, "model"),
                             JsonText(o, "status"), JsonText(o, "last_heartbeat").empty() ? "-" : JsonText(o, "last_heartbeat"),
                             JsonText(o, "heartbeat_interval_s"));
  }
}

void PrintDevice(const json::value& root) {
  const auto& o = root.as_object();
  auto line = [](std::string_view label, const std::string& value) {
    std::cout << fmt::format("{:<18}{}\n", label, value.empty() ? "-" : value);
  };
  line("device:", DeviceName(o));
  line("model:", JsonText(o, "model"));
  line("status:", JsonText(o, "status"));
  line("enrolled:", JsonText(o, "enrolled_at"));
  line("certificate until:", JsonText(o, "certificate_expires"));
  line("last seen:", JsonText(o, "last_seen"));
  line("last heartbeat:", JsonText(o, "last_heartbeat"));
  line("interval:", JsonText(o, "heartbeat_interval_s") + " s");
  line("next heartbeat by:", JsonText(o, "heartbeat_due"));
  line("inventory from:", JsonText(o, "inventory_at"));
  for (const auto& w : o.at("maintenance").as_array()) {
    const auto& wo = w.as_object();
    line("maintenance:", fmt::format("#{} {} to {}: {}", JsonText(wo, "id"), JsonText(wo, "start"), JsonText(wo, "end"),
                                     JsonText(wo, "reason")));
  }
  const auto& tickets = o.at("open_tickets").as_array();
  std::cout << fmt::format("open tickets:     {}\n", tickets.size());
  for (const auto& t : tickets) {
    const auto& to = t.as_object();
    std::cout << fmt::format("  {} {:<12} {} {}\n", JsonText(to, "number"), JsonText(to, "status"),
                             JsonText(to, "code"), JsonText(to, "text"));
  }
}

void PrintHeartbeats(const json::value& root) {
  std::cout << fmt::format("{:<40} {:<26} {:>9} {:<26} {}\n", "DEVICE", "LAST HEARTBEAT", "INTERVAL", "DUE BY", "");
  for (const auto& d : root.at("devices").as_array()) {
    const auto& o = d.as_object();
    std::cout << fmt::format("{:<40} {:<26} {:>7} s {:<26} {}\n", DeviceName(o),
                             JsonText(o, "last_heartbeat").empty() ? "-" : JsonText(o, "last_heartbeat"),
                             JsonText(o, "interval_s"), JsonText(o, "due").empty() ? "-" : JsonText(o, "due"),
                             JsonText(o, "overdue") == "true" ? "OVERDUE" : "");
  }
}

void PrintInventory(const json::value& root) {
  for (const auto& r : root.at("inventory").as_array()) {
    const auto& o = r.as_object();
    std::cout << fmt::format("{} (received {}):\n{}\n", DeviceName(o.at("device").as_object()),
                             JsonText(o, "received_at"), json::serialize(o.at("inventory")));
  }
}

}  // namespace

CLI::App* AddDevicesCommand(CLI::App& app, DevicesOptions& options) {
  auto* cmd = app.add_subcommand("devices", "List, show and revoke devices through the home's admin API")
                  ->require_subcommand(1);
  AddAdminOptions(cmd, options.connection);
  cmd->add_subcommand("list", "List enrolled devices with their last heartbeat");
  auto* show = cmd->add_subcommand("show", "Show one device: heartbeat, open tickets, maintenance");
  show->add_option("device", options.device, "customer/site/serial")->required();
  auto* revoke = cmd->add_subcommand("revoke", "Revoke a device: its batches are refused from now on (role admin)");
  revoke->add_option("device", options.device, "customer/site/serial")->required();
  cmd->add_subcommand("heartbeats", "Each device's last heartbeat, interval and whether it is overdue");
  auto* inventory = cmd->add_subcommand("inventory", "The latest inventory each device sent");
  inventory->add_option("device", options.device, "customer/site/serial (default: every device)");
  return cmd;
}

int RunDevicesCommand(CLI::App& command, const DevicesOptions& options) {
  const auto& c = options.connection;
  std::string device_path;
  std::vector<std::string> parts;
  if (!options.device.empty()) {
    std::string_view rest = options.device;
    while (true) {
      const auto slash = rest.find('/');
      parts.emplace_back(rest.substr(0, slash));
      if (slash == std::string_view::npos) {
        break;
      }
      rest = rest.substr(slash + 1);
    }
    if (parts.size() != 3) {
      std::cerr << kProgram << ": name the device as customer/site/serial\n";
      return kExitUsage;
    }
    device_path = fmt::format("/v1/devices/{}/{}/{}", UrlEncode(parts[0]), UrlEncode(parts[1]), UrlEncode(parts[2]));
  }
  if (command.got_subcommand("list")) {
    return AdminCall(c, kProgram, "GET", "/v1/devices", "", PrintDevices);
  }
  if (command.got_subcommand("show")) {
    return AdminCall(c, kProgram, "GET", device_path, "", PrintDevice);
  }
  if (command.got_subcommand("revoke")) {
    return AdminCall(c, kProgram, "POST", device_path + "/revoke", "",
                     [&](const json::value&) { std::cout << options.device << " is revoked\n"; });
  }
  if (command.got_subcommand("heartbeats")) {
    return AdminCall(c, kProgram, "GET", "/v1/heartbeats", "", PrintHeartbeats);
  }
  if (command.got_subcommand("inventory")) {
    const std::string path =
        parts.empty() ? "/v1/inventory"
                      : fmt::format("/v1/inventory?customer={}&site={}&serial={}", UrlEncode(parts[0]),
                                    UrlEncode(parts[1]), UrlEncode(parts[2]));
    return AdminCall(c, kProgram, "GET", path, "", PrintInventory);
  }
  return kExitUsage;
}

}  // namespace lifeline::cli
