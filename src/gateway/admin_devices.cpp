#include "gateway/admin_devices.h"

#include "common/clock.h"
#include "common/log.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <charconv>

namespace lifeline::gateway {
namespace json = boost::json;
using transport::HttpResponse;

namespace {

constexpr std::size_t kDefaultHistoryLimit = 100;
constexpr std::size_t kMaxHistoryLimit = 10000;

std::string Time(std::int64_t ms) {
  if (ms == 0) {
    return "";
  }
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

json::object DeviceJson(const ManagedDevice& d) {
  json::object apps;
  for (const auto& a : d.spec.apps) {
    apps[a.name] = a.port;
  }
  json::array probes;
  for (const auto& p : d.probes) {
    probes.push_back(json::object{{"app", p.app},
                                  {"port", p.port},
                                  {"state", ToString(p.state)},
                                  {"checked_at", Time(p.checked_ms)},
                                  {"since", Time(p.since_ms)},
                                  {"latency_ms", p.latency_ms},
                                  {"error", p.error}});
  }
  return json::object{{"serial", d.spec.serial},
                      {"model", d.spec.model},
                      {"address", d.spec.address},
                      {"enabled", d.spec.enabled},
                      {"apps", std::move(apps)},
                      {"created_at", Time(d.created_ms)},
                      {"updated_at", Time(d.updated_ms)},
                      {"reachability", std::move(probes)}};
}

json::object HistoryJson(const HistoryEntry& h) {
  boost::system::error_code ec;
  auto before = json::parse(h.before_json, ec);
  auto after = json::parse(h.after_json, ec);
  return json::object{{"id", h.id},          {"time", Time(h.time_ms)}, {"serial", h.serial},
                      {"action", h.action},  {"actor", h.actor},        {"before", std::move(before)},
                      {"after", std::move(after)}};
}

HttpResponse BadRequest(std::string_view message) { return AdminError(400, "bad_request", message); }

HttpResponse RegistryFailure(std::error_code ec, std::string_view serial) {
  if (ec == RegistryErrc::kUnknownDevice || ec == RegistryErrc::kUndeployed) {
    return AdminError(404, "not_found", fmt::format("device '{}': {}", serial, ec.message()));
  }
  if (ec == RegistryErrc::kAlreadyDeployed) {
    return AdminError(409, "conflict",
                      fmt::format("device '{}' is already deployed; change it with PUT (`lifeline "
                                  "gateway devices edit`)",
                                  serial));
  }
  return AdminError(500, "internal", "the gateway's database failed; see the gateway's log");
}

// Reads {"ssh": 22, ...} into apps; "" or the reason it is not one.
std::string ParseApps(const json::value& value, std::vector<AppPort>* apps) {
  if (!value.is_object()) {
    return "'apps' must be an object of application name to TCP port, e.g. {\"ssh\": 22}";
  }
  apps->clear();
  for (const auto& [name, port] : value.as_object()) {
    if (!port.is_int64() || port.as_int64() < 1 || port.as_int64() > 65535) {
      return fmt::format("port of application '{}' must be a number from 1 to 65535",
                         std::string_view(name));
    }
    apps->push_back(AppPort{.name = std::string(name), .port = static_cast<std::uint16_t>(port.as_int64())});
  }
  return "";
}

// Parses the request body as a JSON object; "" or the reason.
std::string ParseBody(const std::string& body, json::object* out) {
  boost::system::error_code ec;
  auto value = json::parse(body, ec);
  if (ec || !value.is_object()) {
    return "the body must be a JSON object";
  }
  *out = std::move(value.as_object());
  return "";
}

std::string TextField(const json::object& o, std::string_view key, std::optional<std::string>* out) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) {
    return "";
  }
  if (!v->is_string()) {
    return fmt::format("'{}' must be a string", key);
  }
  *out = std::string(v->as_string());
  return "";
}

std::string CheckKeys(const json::object& o, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : o) {
    if (std::find(allowed.begin(), allowed.end(), std::string_view(key)) == allowed.end()) {
      return fmt::format("unknown field '{}'", std::string_view(key));
    }
  }
  return "";
}

// Reads every field an edit or a deploy may carry.
std::string ParseEdit(const json::object& o, DeviceEdit* edit) {
  if (auto why = CheckKeys(o, {"serial", "model", "address", "apps", "enabled"}); !why.empty()) {
    return why;
  }
  if (auto why = TextField(o, "model", &edit->model); !why.empty()) {
    return why;
  }
  if (auto why = TextField(o, "address", &edit->address); !why.empty()) {
    return why;
  }
  if (const auto* apps = o.if_contains("apps")) {
    std::vector<AppPort> parsed;
    if (auto why = ParseApps(*apps, &parsed); !why.empty()) {
      return why;
    }
    edit->apps = std::move(parsed);
  }
  if (const auto* enabled = o.if_contains("enabled")) {
    if (!enabled->is_bool()) {
      return "'enabled' must be true or false";
    }
    edit->enabled = enabled->as_bool();
  }
  return "";
}

std::size_t Limit(std::string_view query) {
  // "limit=N" anywhere in the query; anything unreadable is the default.
  std::size_t limit = kDefaultHistoryLimit;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    if (pair.starts_with("limit=")) {
      const auto text = pair.substr(6);
      std::size_t value = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc() && end == text.data() + text.size() && value > 0) {
        limit = std::min(value, kMaxHistoryLimit);
      }
    }
    if (amp == std::string_view::npos) {
      break;
    }
    query.remove_prefix(amp + 1);
  }
  return limit;
}

HttpResponse HistoryResponse(const DeviceRegistry& registry, std::string_view serial,
                             std::string_view query) {
  auto history = registry.History(serial, Limit(query));
  if (!history) {
    return RegistryFailure(history.error(), serial);
  }
  json::array rows;
  for (const auto& h : *history) {
    rows.push_back(HistoryJson(h));
  }
  return AdminJson(json::serialize(json::object{{"history", std::move(rows)}}));
}

}  // namespace

void AddDeviceRoutes(AdminServer& server, DeviceRegistry& registry) {
  DeviceRegistry* r = &registry;
  server.Route("GET", "/v1/devices", [r](const AdminRequest& request) -> HttpResponse {
    if (request.rest.empty()) {
      json::array devices;
      for (const auto& d : r->List()) {
        devices.push_back(DeviceJson(d));
      }
      return AdminJson(json::serialize(json::object{
          {"devices", std::move(devices)}, {"generation", r->generation()}}));
    }
    const auto& serial = request.rest[0];
    if (request.rest.size() == 2 && request.rest[1] == "history") {
      // An undeployed device's history is still there.
      return HistoryResponse(*r, serial, request.query);
    }
    if (request.rest.size() != 1) {
      return AdminError(404, "not_found", fmt::format("no such path: {}", request.path));
    }
    auto device = r->Get(serial);
    if (!device) {
      return RegistryFailure(device.error(), serial);
    }
    return AdminJson(json::serialize(DeviceJson(*device)));
  });

  server.Route("POST", "/v1/devices", [r](const AdminRequest& request) -> HttpResponse {
    if (!request.rest.empty()) {
      return AdminError(404, "not_found",
                        "deploy with POST /v1/devices; change a device with PUT /v1/devices/{serial}");
    }
    json::object body;
    if (auto why = ParseBody(request.http.body, &body); !why.empty()) {
      return BadRequest(why);
    }
    std::optional<std::string> serial;
    DeviceEdit fields;
    if (auto why = TextField(body, "serial", &serial); !why.empty()) {
      return BadRequest(why);
    }
    if (auto why = ParseEdit(body, &fields); !why.empty()) {
      return BadRequest(why);
    }
    DeviceSpec spec{.serial = serial.value_or(""),
                    .model = fields.model.value_or(""),
                    .address = fields.address.value_or(""),
                    .apps = fields.apps.value_or(std::vector<AppPort>{}),
                    .enabled = fields.enabled.value_or(true)};
    if (auto why = ValidateDeviceSpec(spec); !why.empty()) {
      return BadRequest(why);
    }
    auto deployed = r->Deploy(std::move(spec), request.actor);
    if (!deployed) {
      return RegistryFailure(deployed.error(), serial.value_or(""));
    }
    return AdminJson(json::serialize(DeviceJson(*deployed)), 201);
  });

  server.Route("PUT", "/v1/devices", [r](const AdminRequest& request) -> HttpResponse {
    if (request.rest.size() != 1) {
      return AdminError(404, "not_found", "change a device with PUT /v1/devices/{serial}");
    }
    const auto& serial = request.rest[0];
    json::object body;
    if (auto why = ParseBody(request.http.body, &body); !why.empty()) {
      return BadRequest(why);
    }
    DeviceEdit edit;
    if (auto why = ParseEdit(body, &edit); !why.empty()) {
      return BadRequest(why);
    }
    if (const auto* given = body.if_contains("serial");
        given != nullptr && (!given->is_string() || given->as_string() != serial)) {
      return BadRequest("a device's serial cannot change: undeploy it and deploy the new serial");
    }
    auto current = r->Get(serial);
    if (!current) {
      return RegistryFailure(current.error(), serial);
    }
    // Validated here too, for the message; the registry checks again under its lock.
    DeviceSpec after = current->spec;
    after.model = edit.model.value_or(after.model);
    after.address = edit.address.value_or(after.address);
    after.apps = edit.apps.value_or(after.apps);
    after.enabled = edit.enabled.value_or(after.enabled);
    if (auto why = ValidateDeviceSpec(after); !why.empty()) {
      return BadRequest(why);
    }
    auto edited = r->Edit(serial, edit, request.actor);
    if (!edited) {
      if (edited.error() == RegistryErrc::kInvalidDevice) {
        return BadRequest("the device changed meanwhile and the edit no longer validates; try again");
      }
      return RegistryFailure(edited.error(), serial);
    }
    return AdminJson(json::serialize(DeviceJson(*edited)));
  });

  server.Route("DELETE", "/v1/devices", [r](const AdminRequest& request) -> HttpResponse {
    if (request.rest.size() != 1) {
      return AdminError(404, "not_found", "undeploy a device with DELETE /v1/devices/{serial}");
    }
    const auto& serial = request.rest[0];
    if (auto done = r->Undeploy(serial, request.actor); !done) {
      return RegistryFailure(done.error(), serial);
    }
    return AdminJson(json::serialize(json::object{{"serial", serial}, {"undeployed", true}}));
  });

  server.Route("GET", "/v1/history", [r](const AdminRequest& request) -> HttpResponse {
    if (!request.rest.empty()) {
      return AdminError(404, "not_found", fmt::format("no such path: {}", request.path));
    }
    return HistoryResponse(*r, "", request.query);
  });
}

}  // namespace lifeline::gateway
