#include "cli/gateway_devices_command.h"

#include "cli/admin_client.h"
#include "cli/commands.h"
#include "common/config.h"
#include "gateway/admin_access.h"
#include "gateway/device_registry.h"
#include "gateway/gateway_config.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;

namespace {

constexpr std::string_view kProgram = "lifeline gateway devices";

constexpr const char* kAbout =
    "Managed devices: the devices of this site that remote support may reach through this gateway.\n"
    "A device has a serial, a model, an address (host name or IP address) and one or more\n"
    "applications. An application is a name for one TCP port on the device, given as NAME:PORT\n"
    "(ssh:22, https:443, mgmt-ui:8443; names are lower-case letters, digits and '-'). A remote\n"
    "session names a device and an application, never an address or a port: the gateway maps it\n"
    "to the registered address and port and refuses everything else, so only registered ports of\n"
    "deployed, enabled devices are ever reachable. The gateway probes each registered port every\n"
    "probe.interval and reports reachability home. Every change is recorded with who made it.\n"
    "These commands talk to the running gateway (`lifeline gateway run`) on its local admin\n"
    "interface (listen.admin in gateway.toml) with the token in <data_dir>/admin.token, so run\n"
    "them on the gateway's host as its user (or root).";

std::string Apps(const json::object& device) {
  std::string out;
  if (const auto* apps = device.if_contains("apps"); apps != nullptr && apps->is_object()) {
    for (const auto& [name, port] : apps->as_object()) {
      out += fmt::format("{}{}:{}", out.empty() ? "" : " ", std::string_view(name), json::serialize(port));
    }
  }
  return out;
}

// "ssh up, https DOWN (connection refused)"; "-" before the first probe.
std::string Reachability(const json::object& device, bool with_errors) {
  std::string out;
  const auto* probes = device.if_contains("reachability");
  if (probes == nullptr || !probes->is_array()) {
    return "-";
  }
  for (const auto& p : probes->as_array()) {
    const auto& o = p.as_object();
    const auto state = JsonText(o, "state");
    std::string word = state == "reachable" ? "up" : state == "unreachable" ? "DOWN" : "?";
    if (with_errors && state == "unreachable" && !JsonText(o, "error").empty()) {
      word += fmt::format(" ({})", JsonText(o, "error"));
    }
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", JsonText(o, "app"), word);
  }
  return out.empty() ? "-" : out;
}

void PrintList(const json::value& root) {
  const auto& devices = root.at("devices").as_array();
  if (devices.empty()) {
    std::cout << "no managed devices (deploy one with `lifeline gateway devices add`)\n";
    return;
  }
  std::cout << fmt::format("{:<24} {:<14} {:<24} {:<8} {:<28} {}\n", "SERIAL", "MODEL", "ADDRESS",
                           "ENABLED", "APPLICATIONS", "REACHABILITY");
  for (const auto& d : devices) {
    const auto& o = d.as_object();
    std::cout << fmt::format("{:<24} {:<14} {:<24} {:<8} {:<28} {}\n", JsonText(o, "serial"),
                             JsonText(o, "model").empty() ? "-" : JsonText(o, "model"),
                             JsonText(o, "address"), JsonText(o, "enabled") == "true" ? "yes" : "NO",
                             Apps(o), Reachability(o, false));
  }
  std::cout << fmt::format("{} devices\n", devices.size());
}

void PrintDevice(const json::value& root) {
  const auto& o = root.as_object();
  auto line = [](std::string_view label, const std::string& value) {
    std::cout << fmt::format("{:<14}{}\n", label, value.empty() ? "-" : value);
  };
  line("serial:", JsonText(o, "serial"));
  line("model:", JsonText(o, "model"));
  line("address:", JsonText(o, "address"));
  line("enabled:", JsonText(o, "enabled") == "true" ? "yes" : "no (remote access to it is refused)");
  line("deployed:", JsonText(o, "created_at"));
  line("changed:", JsonText(o, "updated_at"));
  std::cout << "applications:\n";
  for (const auto& p : o.at("reachability").as_array()) {
    const auto& po = p.as_object();
    std::string state = JsonText(po, "state");
    if (state != "unknown") {
      state += fmt::format(" since {}, checked {}", JsonText(po, "since"), JsonText(po, "checked_at"));
    } else {
      state = "not probed yet";
    }
    if (!JsonText(po, "error").empty()) {
      state += ": " + JsonText(po, "error");
    }
    std::cout << fmt::format("  {:<12} port {:<6} {}\n", JsonText(po, "app"), JsonText(po, "port"), state);
  }
}

// What an edit changed: "address 10.0.0.5 -> 10.0.0.6; apps ssh:22 -> ssh:2222".
std::string Change(const json::object& entry) {
  const auto* before = entry.if_contains("before");
  const auto* after = entry.if_contains("after");
  if (before == nullptr || after == nullptr) {
    return "";
  }
  if (before->is_null() && after->is_object()) {
    return fmt::format("{} {}", JsonText(after->as_object(), "address"), Apps(after->as_object()));
  }
  if (before->is_object() && after->is_null()) {
    return fmt::format("was {} {}", JsonText(before->as_object(), "address"), Apps(before->as_object()));
  }
  if (!before->is_object() || !after->is_object()) {
    return "";
  }
  std::string out;
  for (const char* key : {"model", "address", "enabled", "apps"}) {
    const auto& b = before->as_object();
    const auto& a = after->as_object();
    const std::string was = std::string_view(key) == "apps" ? Apps(b) : JsonText(b, key);
    const std::string now = std::string_view(key) == "apps" ? Apps(a) : JsonText(a, key);
    if (was != now) {
      out += fmt::format("{}{} {} -> {}", out.empty() ? "" : "; ", key, was.empty() ? "\"\"" : was,
                         now.empty() ? "\"\"" : now);
    }
  }
  return out;
}

void PrintHistory(const json::value& root) {
  const auto& rows = root.at("history").as_array();
  if (rows.empty()) {
    std::cout << "no changes recorded\n";
    return;
  }
  std::cout << fmt::format("{:<25} {:<9} {:<24} {:<12} {}\n", "TIME", "ACTION", "SERIAL", "BY", "CHANGE");
  for (const auto& r : rows) {
    const auto& o = r.as_object();
    std::cout << fmt::format("{:<25} {:<9} {:<24} {:<12} {}\n", JsonText(o, "time"), JsonText(o, "action"),
                             JsonText(o, "serial"), JsonText(o, "actor"), Change(o));
  }
}

// One request to the local gateway; prints its answer with `print` (or the JSON with --json).
int Call(const GatewayDevicesOptions& options, std::string_view method, const std::string& target,
         const std::string& body, const std::function<void(const json::value&)>& print) {
  gateway::GatewayConfig config;
  try {
    config = gateway::GatewayConfig::Load(options.config_file);
  } catch (const config::ConfigError& e) {
    std::cerr << kProgram << ": " << e.what() << "\n";
    return kExitUsage;
  }
  std::string detail;
  auto response = gateway::CallGatewayAdmin(config, method, target, body, &detail);
  if (!response) {
    std::cerr << kProgram << ": " << detail << "\n";
    return kExitFailure;
  }
  boost::system::error_code ec;
  auto root = json::parse(response->body, ec);
  if (response->status < 200 || response->status >= 300) {
    std::string message = response->body;
    if (!ec && root.is_object()) {
      message = JsonText(root.as_object(), "message");
    }
    if (response->status == 401) {
      message += fmt::format(" ({} does not match the running gateway's token)",
                             config.AdminTokenPath().string());
    }
    std::cerr << fmt::format("{}: {}\n", kProgram, message);
    return kExitFailure;
  }
  if (options.json) {
    std::cout << response->body << "\n";
    return kExitOk;
  }
  if (ec) {
    std::cerr << kProgram << ": unreadable answer from the gateway\n";
    return kExitFailure;
  }
  print(root);
  return kExitOk;
}

// --app NAME:PORT values as a JSON object; "" or the reason.
std::string AppsJson(const std::vector<std::string>& apps, json::object* out) {
  for (const auto& text : apps) {
    gateway::AppPort app;
    if (auto why = gateway::ParseAppPort(text, &app); !why.empty()) {
      return "--app " + why;
    }
    (*out)[app.name] = app.port;
  }
  return "";
}

}  // namespace

CLI::App* AddGatewayDevicesCommand(CLI::App& gateway, GatewayDevicesOptions& options) {
  auto* cmd = gateway.add_subcommand("devices", "Deploy, edit and undeploy the devices this gateway may reach")
                  ->require_subcommand(1);
  cmd->footer(kAbout);
  cmd->add_option("--config", options.config_file, "gateway.toml of the running gateway (listen.admin, data_dir)")
      ->envname("LIFELINE_GATEWAY_CONFIG")
      ->capture_default_str();
  cmd->add_flag("--json", options.json, "Print the admin interface's JSON instead of a table");

  auto* list = cmd->add_subcommand("list", "List the managed devices with their applications and reachability");
  auto* show = cmd->add_subcommand("show", "Show one device: address, applications, last probe of each");
  show->add_option("serial", options.serial, "The device's serial")->required();

  auto* add = cmd->add_subcommand(
      "add", "Deploy a device: from now on sessions may reach its registered applications, and nothing else");
  add->add_option("--serial", options.serial, "Serial number (unique on this gateway)")->required();
  add->add_option("--model", options.model, "Model, for people (e.g. VNX5400)");
  add->add_option("--address", options.address, "Host name or IP address the gateway reaches it at (no port)")
      ->required();
  add->add_option("--app", options.apps,
                  "An application as NAME:PORT (ssh:22, https:443); repeat for each; at least one. Only these "
                  "ports are ever reachable")
      ->required();
  add->footer("Example: lifeline gateway devices add --serial APM00123 --model VNX5400 --address 10.1.2.3 "
              "--app ssh:22 --app https:443");

  auto* edit = cmd->add_subcommand("edit", "Change a device: only the options given change");
  edit->add_option("serial", options.serial, "The device's serial")->required();
  edit->add_option("--model", options.model, "New model");
  edit->add_option("--address", options.address, "New host name or IP address");
  edit->add_option("--app", options.apps,
                   "The new full set of applications as NAME:PORT, repeated (replaces the old set)");
  auto* enable = edit->add_flag("--enable", options.enable, "Allow remote access to it again");
  edit->add_flag("--disable", options.disable,
                 "Refuse remote access to it (and stop probing it) while keeping its registration")
      ->excludes(enable);

  auto* remove = cmd->add_subcommand("remove", "Undeploy a device: sessions to it are refused from now on");
  remove->add_option("serial", options.serial, "The device's serial")->required();

  auto* history = cmd->add_subcommand("history", "Every deploy, edit and undeploy, newest first, with who made it");
  history->add_option("serial", options.serial, "Only this device (default: all)");
  history->add_option("--limit", options.limit, "At most this many changes")->check(CLI::Range(1, 10000));

  for (auto* sub : {list, show, add, edit, remove, history}) {
    sub->fallthrough();  // --config and --json may follow the subcommand
  }
  return cmd;
}

int RunGatewayDevicesCommand(CLI::App& command, const GatewayDevicesOptions& options) {
  const std::string device_path = "/v1/devices/" + UrlEncode(options.serial);
  if (command.got_subcommand("list")) {
    return Call(options, "GET", "/v1/devices", "", PrintList);
  }
  if (command.got_subcommand("show")) {
    return Call(options, "GET", device_path, "", PrintDevice);
  }
  if (command.got_subcommand("add")) {
    json::object apps;
    if (auto why = AppsJson(options.apps, &apps); !why.empty()) {
      std::cerr << kProgram << ": " << why << "\n";
      return kExitUsage;
    }
    const auto body = json::serialize(json::object{{"serial", options.serial},
                                                   {"model", options.model},
                                                   {"address", options.address},
                                                   {"apps", std::move(apps)}});
    return Call(options, "POST", "/v1/devices", body, [](const json::value& root) {
      std::cout << fmt::format("deployed {}: {} {}\n", JsonText(root.as_object(), "serial"),
                               JsonText(root.as_object(), "address"), Apps(root.as_object()));
    });
  }
  if (auto* edit = command.get_subcommand("edit"); edit->parsed()) {
    json::object body;
    if (edit->count("--model") > 0) {
      body["model"] = options.model;
    }
    if (edit->count("--address") > 0) {
      body["address"] = options.address;
    }
    if (edit->count("--app") > 0) {
      json::object apps;
      if (auto why = AppsJson(options.apps, &apps); !why.empty()) {
        std::cerr << kProgram << ": " << why << "\n";
        return kExitUsage;
      }
      body["apps"] = std::move(apps);
    }
    if (options.enable || options.disable) {
      body["enabled"] = options.enable;
    }
    if (body.empty()) {
      std::cerr << kProgram << ": nothing to change: give --model, --address, --app, --enable or --disable\n";
      return kExitUsage;
    }
    return Call(options, "PUT", device_path, json::serialize(body), [](const json::value& root) {
      std::cout << fmt::format("changed {}: {} {}{}\n", JsonText(root.as_object(), "serial"),
                               JsonText(root.as_object(), "address"), Apps(root.as_object()),
                               JsonText(root.as_object(), "enabled") == "true" ? "" : " (disabled)");
    });
  }
  if (command.got_subcommand("remove")) {
    return Call(options, "DELETE", device_path, "", [&](const json::value&) {
      std::cout << fmt::format("undeployed {}: sessions to it are refused from now on\n", options.serial);
    });
  }
  if (command.got_subcommand("history")) {
    const std::string base = options.serial.empty() ? "/v1/history" : device_path + "/history";
    return Call(options, "GET", fmt::format("{}?limit={}", base, options.limit), "", PrintHistory);
  }
  return kExitUsage;
}

}  // namespace lifeline::cli
