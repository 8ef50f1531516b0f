#include "gateway/device_registry.h"

#include "common/log.h"
#include "store/sqlite/database.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>

namespace lifeline::gateway {
namespace json = boost::json;

struct DeviceRegistry::Entry {
  DeviceSpec spec;
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
};

namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("gateway"); }

const char* DescribeRegistryErrc(RegistryErrc code) {
  switch (code) {
    case RegistryErrc::kUnknownDevice:
      return "unknown device: no device with this serial is deployed on this gateway";
    case RegistryErrc::kUnknownApplication:
      return "application not registered for this device";
    case RegistryErrc::kUndeployed:
      return "device undeployed from this gateway";
    case RegistryErrc::kDisabled:
      return "device disabled on this gateway";
    case RegistryErrc::kInvalidDevice:
      return "invalid device";
    case RegistryErrc::kAlreadyDeployed:
      return "a device with this serial is already deployed";
    case RegistryErrc::kStoreFailed:
      return "the gateway's database failed";
  }
  return "unknown registry error";
}

constexpr std::size_t kMaxApps = 64;

// Version i -> i+1. Apps are stored as "https:443 ssh:22": names cannot hold ' ' or ':', and the
// column stays readable in the sqlite3 shell.
constexpr std::array<std::string_view, 1> kSchema = {
    R"sql(
CREATE TABLE devices (
  serial        TEXT PRIMARY KEY,
  model         TEXT NOT NULL,
  address       TEXT NOT NULL,
  apps          TEXT NOT NULL,
  enabled       INTEGER NOT NULL,
  created_ms    INTEGER NOT NULL,
  updated_ms    INTEGER NOT NULL,
  undeployed_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE device_history (
  id          INTEGER PRIMARY KEY,
  time_ms     INTEGER NOT NULL,
  serial      TEXT NOT NULL,
  action      TEXT NOT NULL,
  actor       TEXT NOT NULL,
  before_json TEXT NOT NULL,
  after_json  TEXT NOT NULL
);
CREATE INDEX device_history_by_serial ON device_history (serial, id);
CREATE TABLE probe_results (
  serial     TEXT NOT NULL,
  app        TEXT NOT NULL,
  port       INTEGER NOT NULL,
  state      TEXT NOT NULL,
  checked_ms INTEGER NOT NULL,
  since_ms   INTEGER NOT NULL,
  latency_ms INTEGER NOT NULL,
  error      TEXT NOT NULL,
  PRIMARY KEY (serial, app)
) WITHOUT ROWID;
)sql"};

std::string EncodeApps(const std::vector<AppPort>& apps) {
  std::string out;
  for (const auto& a : apps) {
    if (!out.empty()) {
      out += ' ';
    }
    out += fmt::format("{}:{}", a.name, a.port);
  }
  return out;
}

std::vector<AppPort> DecodeApps(std::string_view text) {
  std::vector<AppPort> apps;
  while (!text.empty()) {
    const auto space = text.find(' ');
    AppPort app;
    if (ParseAppPort(text.substr(0, space), &app).empty()) {
      apps.push_back(std::move(app));
    }
    if (space == std::string_view::npos) {
      break;
    }
    text.remove_prefix(space + 1);
  }
  return apps;
}

bool IsAppName(std::string_view name) {
  if (name.empty() || name.size() > 32) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

bool IsIpLiteral(const std::string& text) {
  std::array<unsigned char, 16> buffer{};
  return inet_pton(AF_INET, text.c_str(), buffer.data()) == 1 ||
         inet_pton(AF_INET6, text.c_str(), buffer.data()) == 1;
}

// RFC 1123 host name: dot-separated labels of letters, digits and '-', not starting or ending with
// '-', each 1-63 bytes, at most 253 in all.
bool IsHostName(std::string_view name) {
  if (name.empty() || name.size() > 253) {
    return false;
  }
  while (true) {
    const auto dot = name.find('.');
    const auto label = name.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-';
      if (!ok) {
        return false;
      }
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    name.remove_prefix(dot + 1);
  }
}

void SortApps(std::vector<AppPort>& apps) {
  std::sort(apps.begin(), apps.end(),
            [](const AppPort& a, const AppPort& b) { return a.name < b.name; });
}

ManagedDevice ToManaged(const DeviceRegistry::Entry& e) {
  return ManagedDevice{.spec = e.spec, .created_ms = e.created_ms, .updated_ms = e.updated_ms};
}

std::string Time(std::int64_t ms) {
  if (ms == 0) {
    return "";
  }
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

Reachability ParseState(std::string_view text) {
  if (text == "reachable") {
    return Reachability::kReachable;
  }
  if (text == "unreachable") {
    return Reachability::kUnreachable;
  }
  return Reachability::kUnknown;
}

std::error_code StoreFailure(const store::sqlite::Database& db, std::string_view what,
                             std::error_code ec) {
  Log()->error("gateway.db: {} failed: {} ({})", what, ec.message(), db.LastErrorMessage());
  return RegistryErrc::kStoreFailed;
}

}  // namespace

const std::error_category& RegistryCategory() {
  static const EnumErrorCategory<RegistryErrc> category("lifeline.gateway.registry",
                                                        &DescribeRegistryErrc);
  return category;
}

std::string_view ToString(Reachability r) {
  switch (r) {
    case Reachability::kReachable:
      return "reachable";
    case Reachability::kUnreachable:
      return "unreachable";
    case Reachability::kUnknown:
      break;
  }
  return "unknown";
}

std::string Target::HostPort() const {
  if (address.find(':') != std::string::npos) {
    return fmt::format("[{}]:{}", address, port);
  }
  return fmt::format("{}:{}", address, port);
}

std::string ParseAppPort(std::string_view text, AppPort* out) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return fmt::format("'{}' is not NAME:PORT (for example ssh:22)", text);
  }
  const auto name = text.substr(0, colon);
  const auto port_text = text.substr(colon + 1);
  if (!IsAppName(name)) {
    return fmt::format("application name '{}' must be 1-32 of a-z, 0-9 and '-'", name);
  }
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
    return fmt::format("port '{}' of application '{}' must be a number from 1 to 65535", port_text,
                       name);
  }
  out->name = std::string(name);
  out->port = static_cast<std::uint16_t>(port);
  return "";
}

std::string ValidateDeviceSpec(const DeviceSpec& spec) {
  if (spec.serial.empty() || spec.serial.size() > 128) {
    return "serial must be 1 to 128 bytes";
  }
  for (unsigned char c : spec.serial) {
    if (c < 0x20 || c == 0x7f || c == '/') {
      return "serial must not contain '/' or control characters";
    }
  }
  if (spec.model.size() > 128) {
    return "model must be at most 128 bytes";
  }
  for (unsigned char c : spec.model) {
    if (c < 0x20 || c == 0x7f) {
      return "model must not contain control characters";
    }
  }
  if (spec.address.empty()) {
    return "address is required: the device's host name or IP address";
  }
  if (!IsIpLiteral(spec.address) && !IsHostName(spec.address)) {
    return fmt::format(
        "address '{}' is neither an IP address nor a host name (give no port or brackets: the "
        "ports are the applications')",
        spec.address);
  }
  if (spec.apps.empty()) {
    return "at least one application is required (NAME:PORT, for example ssh:22): only registered "
           "ports are ever reachable";
  }
  if (spec.apps.size() > kMaxApps) {
    return fmt::format("at most {} applications per device", kMaxApps);
  }
  for (std::size_t i = 0; i < spec.apps.size(); ++i) {
    const auto& app = spec.apps[i];
    if (!IsAppName(app.name)) {
      return fmt::format("application name '{}' must be 1-32 of a-z, 0-9 and '-'", app.name);
    }
    if (app.port == 0) {
      return fmt::format("port of application '{}' must be from 1 to 65535", app.name);
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (spec.apps[j].name == app.name) {
        return fmt::format("application '{}' is given twice", app.name);
      }
    }
  }
  return "";
}

std::string DeviceSpecJson(const DeviceSpec& spec) {
  json::object apps;
  for (const auto& a : spec.apps) {
    apps[a.name] = a.port;
  }
  return json::serialize(json::object{{"serial", spec.serial},
                                      {"model", spec.model},
                                      {"address", spec.address},
                                      {"enabled", spec.enabled},
                                      {"apps", std::move(apps)}});
}

DeviceRegistry::DeviceRegistry(std::unique_ptr<store::sqlite::Database> db, const Clock& clock)
    : clock_(clock), db_(std::move(db)) {}

DeviceRegistry::~DeviceRegistry() = default;

Result<std::unique_ptr<DeviceRegistry>> DeviceRegistry::Open(const std::filesystem::path& path,
                                                             const Clock& clock) {
  // 0600: the devices' addresses and the change history are the customer's business.
  auto db = store::sqlite::Database::Open(path, {.private_file = true});
  if (!db) {
    Log()->error("cannot open {}: {}", path.string(), db.error().message());
    return db.error();
  }
  if (auto migrated = (*db)->Migrate(kSchema); !migrated) {
    Log()->error("{}: schema update failed: {} ({})", path.string(), migrated.error().message(),
                 (*db)->LastErrorMessage());
    return migrated.error();
  }
  if (auto version = (*db)->Prepare("PRAGMA user_version"); version && version->Step() &&
                                                              version->Int(0) > std::ssize(kSchema)) {
    // Written by a newer lifeline: its tables may mean things this version does not know.
    Log()->error("{} has schema version {}, newer than this lifeline's {}: run the newer lifeline",
                 path.string(), version->Int(0), kSchema.size());
    return std::make_error_code(std::errc::not_supported);
  }
  std::unique_ptr<DeviceRegistry> registry(new DeviceRegistry(std::move(*db), clock));
  if (auto loaded = registry->Load(); !loaded) {
    return loaded.error();
  }
  return registry;
}

VoidResult DeviceRegistry::Load() {
  std::scoped_lock lock(db_mutex_);
  auto select = db_->Prepare(
      "SELECT serial, model, address, apps, enabled, created_ms, updated_ms, undeployed_ms "
      "FROM devices");
  if (!select) {
    return StoreFailure(*db_, "loading devices", select.error());
  }
  Index devices;
  decltype(undeployed_) undeployed;
  while (true) {
    auto row = select->Step();
    if (!row) {
      return StoreFailure(*db_, "loading devices", row.error());
    }
    if (!*row) {
      break;
    }
    if (!select->IsNull(7)) {
      undeployed.emplace(select->Text(0), select->Int(7));
      continue;
    }
    auto entry = std::make_shared<Entry>();
    entry->spec.serial = select->Text(0);
    entry->spec.model = select->Text(1);
    entry->spec.address = select->Text(2);
    entry->spec.apps = DecodeApps(select->Text(3));
    entry->spec.enabled = select->Int(4) != 0;
    entry->created_ms = select->Int(5);
    entry->updated_ms = select->Int(6);
    auto serial = entry->spec.serial;
    devices.emplace(std::move(serial), std::move(entry));
  }
  auto probes = db_->Prepare(
      "SELECT serial, app, port, state, checked_ms, since_ms, latency_ms, error FROM probe_results");
  if (!probes) {
    return StoreFailure(*db_, "loading probe results", probes.error());
  }
  decltype(probes_) results;
  while (true) {
    auto row = probes->Step();
    if (!row) {
      return StoreFailure(*db_, "loading probe results", row.error());
    }
    if (!*row) {
      break;
    }
    ProbeResult r{.app = probes->Text(1),
                  .port = static_cast<std::uint16_t>(probes->Int(2)),
                  .state = ParseState(probes->Text(3)),
                  .checked_ms = probes->Int(4),
                  .since_ms = probes->Int(5),
                  .latency_ms = probes->Int(6),
                  .error = probes->Text(7)};
    auto app = r.app;
    results[probes->Text(0)].emplace(std::move(app), std::move(r));
  }
  {
    std::unique_lock index_lock(index_mutex_);
    devices_ = std::move(devices);
    undeployed_ = std::move(undeployed);
  }
  std::scoped_lock probes_lock(probes_mutex_);
  probes_ = std::move(results);
  return {};
}

void DeviceRegistry::Publish(const std::string& action, const std::string& serial) {
  const auto generation = generation_.fetch_add(1, std::memory_order_acq_rel) + 1;
  std::vector<std::function<void(const RegistryChange&)>> listeners;
  {
    std::scoped_lock lock(listeners_mutex_);
    for (const auto& [id, listener] : listeners_) {
      listeners.push_back(listener);
    }
  }
  const RegistryChange change{.action = action, .serial = serial, .generation = generation};
  for (const auto& listener : listeners) {
    listener(change);
  }
}

std::uint64_t DeviceRegistry::AddListener(std::function<void(const RegistryChange&)> listener) {
  std::scoped_lock lock(listeners_mutex_);
  const auto id = next_listener_++;
  listeners_.emplace_back(id, std::move(listener));
  return id;
}

void DeviceRegistry::RemoveListener(std::uint64_t id) {
  std::scoped_lock lock(listeners_mutex_);
  std::erase_if(listeners_, [id](const auto& l) { return l.first == id; });
}

Result<ManagedDevice> DeviceRegistry::Deploy(DeviceSpec spec, std::string_view actor) {
  SortApps(spec.apps);
  std::vector<DeviceSpec> one{spec};
  if (auto deployed = DeployMany(std::move(one), actor); !deployed) {
    return deployed.error();
  }
  return Get(spec.serial);
}

VoidResult DeviceRegistry::DeployMany(std::vector<DeviceSpec> specs, std::string_view actor) {
  for (auto& spec : specs) {
    SortApps(spec.apps);
    if (const auto why = ValidateDeviceSpec(spec); !why.empty()) {
      Log()->warn("deploy of '{}' refused: {}", spec.serial, why);
      return RegistryErrc::kInvalidDevice;
    }
  }
  const auto now = clock_.NowUnixMillis();
  {
    std::scoped_lock lock(db_mutex_);
    {
      std::shared_lock index_lock(index_mutex_);
      std::unordered_map<std::string_view, bool> seen;
      for (const auto& spec : specs) {
        if (devices_.contains(spec.serial) || !seen.emplace(spec.serial, true).second) {
          Log()->warn("deploy of '{}' refused: already deployed", spec.serial);
          return RegistryErrc::kAlreadyDeployed;
        }
      }
    }
    auto done = db_->Transaction([&]() -> VoidResult {
      auto upsert = db_->Prepare(
          "INSERT INTO devices (serial, model, address, apps, enabled, created_ms, updated_ms, "
          "undeployed_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, NULL) ON CONFLICT (serial) DO UPDATE "
          "SET model = ?2, address = ?3, apps = ?4, enabled = ?5, created_ms = ?6, updated_ms = ?6, "
          "undeployed_ms = NULL");
      auto history = db_->Prepare(
          "INSERT INTO device_history (time_ms, serial, action, actor, before_json, after_json) "
          "VALUES (?1, ?2, 'deploy', ?3, 'null', ?4)");
      if (!upsert || !history) {
        return StoreFailure(*db_, "deploy", upsert ? history.error() : upsert.error());
      }
      for (const auto& spec : specs) {
        upsert->BindAll(spec.serial, spec.model, spec.address, EncodeApps(spec.apps),
                        spec.enabled ? 1 : 0, now);
        if (auto ran = upsert->Run(); !ran) {
          return StoreFailure(*db_, "deploy", ran.error());
        }
        upsert->Reset();
        history->BindAll(now, spec.serial, actor, DeviceSpecJson(spec));
        if (auto ran = history->Run(); !ran) {
          return StoreFailure(*db_, "deploy history", ran.error());
        }
        history->Reset();
      }
      return {};
    });
    if (!done) {
      return done.error();
    }
    std::unique_lock index_lock(index_mutex_);
    for (auto& spec : specs) {
      undeployed_.erase(spec.serial);
      auto entry = std::make_shared<Entry>(Entry{.spec = spec, .created_ms = now, .updated_ms = now});
      devices_.insert_or_assign(spec.serial, std::move(entry));
    }
  }
  {
    // A serial deployed again starts with no probe results.
    std::scoped_lock probes_lock(probes_mutex_);
    for (const auto& spec : specs) {
      probes_.erase(spec.serial);
    }
  }
  if (specs.size() == 1) {
    Log()->info("device {} deployed by {}: {} ({})", specs[0].serial, actor, specs[0].address,
                EncodeApps(specs[0].apps));
  } else {
    Log()->info("{} devices deployed by {}", specs.size(), actor);
  }
  for (const auto& spec : specs) {
    Publish("deploy", spec.serial);
  }
  return {};
}

Result<ManagedDevice> DeviceRegistry::Edit(std::string_view serial, const DeviceEdit& edit,
                                           std::string_view actor) {
  DeviceSpec before;
  DeviceSpec after;
  {
    std::scoped_lock lock(db_mutex_);
    auto found = DeployedEntry(serial);
    if (!found) {
      return found.error();
    }
    std::shared_ptr<const Entry> current = std::move(*found);
    before = current->spec;
    after = before;
    if (edit.model) {
      after.model = *edit.model;
    }
    if (edit.address) {
      after.address = *edit.address;
    }
    if (edit.apps) {
      after.apps = *edit.apps;
      SortApps(after.apps);
    }
    if (edit.enabled) {
      after.enabled = *edit.enabled;
    }
    if (const auto why = ValidateDeviceSpec(after); !why.empty()) {
      Log()->warn("edit of '{}' refused: {}", serial, why);
      return RegistryErrc::kInvalidDevice;
    }
    if (after == before) {
      return Get(serial);
    }
    const auto now = clock_.NowUnixMillis();
    auto done = db_->Transaction([&]() -> VoidResult {
      auto update = db_->Prepare(
          "UPDATE devices SET model = ?2, address = ?3, apps = ?4, enabled = ?5, updated_ms = ?6 "
          "WHERE serial = ?1");
      auto history = db_->Prepare(
          "INSERT INTO device_history (time_ms, serial, action, actor, before_json, after_json) "
          "VALUES (?1, ?2, 'edit', ?3, ?4, ?5)");
      if (!update || !history) {
        return StoreFailure(*db_, "edit", update ? history.error() : update.error());
      }
      update->BindAll(after.serial, after.model, after.address, EncodeApps(after.apps),
                      after.enabled ? 1 : 0, now);
      if (auto ran = update->Run(); !ran) {
        return StoreFailure(*db_, "edit", ran.error());
      }
      history->BindAll(now, after.serial, actor, DeviceSpecJson(before), DeviceSpecJson(after));
      if (auto ran = history->Run(); !ran) {
        return StoreFailure(*db_, "edit history", ran.error());
      }
      return {};
    });
    if (!done) {
      return done.error();
    }
    std::unique_lock index_lock(index_mutex_);
    devices_.insert_or_assign(
        after.serial,
        std::make_shared<Entry>(Entry{.spec = after, .created_ms = current->created_ms, .updated_ms = now}));
  }
  {
    // Results of apps no longer registered, or of a moved device, say nothing about it any more.
    std::scoped_lock probes_lock(probes_mutex_);
    if (auto it = probes_.find(serial); it != probes_.end()) {
      std::erase_if(it->second, [&](const auto& kv) {
        return before.address != after.address ||
               std::none_of(after.apps.begin(), after.apps.end(), [&](const AppPort& a) {
                 return a.name == kv.first && a.port == kv.second.port;
               });
      });
    }
  }
  Log()->info("device {} edited by {}: {} -> {}", after.serial, actor, DeviceSpecJson(before),
              DeviceSpecJson(after));
  Publish("edit", after.serial);
  return Get(after.serial);
}

VoidResult DeviceRegistry::Undeploy(std::string_view serial, std::string_view actor) {
  std::string serial_text(serial);
  {
    std::scoped_lock lock(db_mutex_);
    auto found = DeployedEntry(serial);
    if (!found) {
      return found.error();
    }
    std::shared_ptr<const Entry> current = std::move(*found);
    const auto now = clock_.NowUnixMillis();
    auto done = db_->Transaction([&]() -> VoidResult {
      auto mark = db_->Prepare("UPDATE devices SET undeployed_ms = ?2, updated_ms = ?2 WHERE serial = ?1");
      auto forget = db_->Prepare("DELETE FROM probe_results WHERE serial = ?1");
      if (!mark || !forget) {
        return StoreFailure(*db_, "undeploy", mark ? forget.error() : mark.error());
      }
      mark->BindAll(serial_text, now);
      forget->BindAll(serial_text);
      if (auto ran = mark->Run(); !ran) {
        return StoreFailure(*db_, "undeploy", ran.error());
      }
      if (auto ran = forget->Run(); !ran) {
        return StoreFailure(*db_, "undeploy", ran.error());
      }
      auto history = db_->Prepare(
          "INSERT INTO device_history (time_ms, serial, action, actor, before_json, after_json) "
          "VALUES (?1, ?2, 'undeploy', ?3, ?4, 'null')");
      if (!history) {
        return StoreFailure(*db_, "undeploy history", history.error());
      }
      history->BindAll(now, serial_text, actor, DeviceSpecJson(current->spec));
      if (auto ran = history->Run(); !ran) {
        return StoreFailure(*db_, "undeploy history", ran.error());
      }
      return {};
    });
    if (!done) {
      return done.error();
    }
    std::unique_lock index_lock(index_mutex_);
    devices_.erase(serial_text);
    undeployed_.insert_or_assign(serial_text, now);
  }
  {
    std::scoped_lock probes_lock(probes_mutex_);
    probes_.erase(serial_text);
  }
  Log()->info("device {} undeployed by {}", serial_text, actor);
  Publish("undeploy", serial_text);
  return {};
}

Result<std::shared_ptr<const DeviceRegistry::Entry>> DeviceRegistry::DeployedEntry(std::string_view serial) const {
  std::shared_lock index_lock(index_mutex_);
  if (auto it = devices_.find(serial); it != devices_.end()) {
    return it->second;
  }
  return undeployed_.contains(serial) ? RegistryErrc::kUndeployed : RegistryErrc::kUnknownDevice;
}

Result<Target> DeviceRegistry::Lookup(std::string_view serial, std::string_view app) const {
  std::shared_lock lock(index_mutex_);
  const auto it = devices_.find(serial);
  if (it == devices_.end()) {
    return undeployed_.contains(serial) ? RegistryErrc::kUndeployed : RegistryErrc::kUnknownDevice;
  }
  const auto& spec = it->second->spec;
  if (!spec.enabled) {
    return RegistryErrc::kDisabled;
  }
  for (const auto& a : spec.apps) {
    if (a.name == app) {
      return Target{.address = spec.address, .port = a.port, .model = spec.model,
                    .deployed_ms = it->second->created_ms};
    }
  }
  return RegistryErrc::kUnknownApplication;
}

Result<ManagedDevice> DeviceRegistry::Get(std::string_view serial) const {
  ManagedDevice device;
  {
    std::shared_lock lock(index_mutex_);
    const auto it = devices_.find(serial);
    if (it == devices_.end()) {
      return undeployed_.contains(serial) ? RegistryErrc::kUndeployed : RegistryErrc::kUnknownDevice;
    }
    device = ToManaged(*it->second);
  }
  std::scoped_lock probes_lock(probes_mutex_);
  const auto results = probes_.find(serial);
  for (const auto& app : device.spec.apps) {
    ProbeResult r{.app = app.name, .port = app.port};
    if (results != probes_.end()) {
      if (auto found = results->second.find(app.name);
          found != results->second.end() && found->second.port == app.port) {
        r = found->second;
      }
    }
    device.probes.push_back(std::move(r));
  }
  return device;
}

std::vector<ManagedDevice> DeviceRegistry::List() const {
  std::vector<std::shared_ptr<const Entry>> entries;
  {
    std::shared_lock lock(index_mutex_);
    entries.reserve(devices_.size());
    for (const auto& [serial, entry] : devices_) {
      entries.push_back(entry);
    }
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a->spec.serial < b->spec.serial; });
  std::vector<ManagedDevice> out;
  out.reserve(entries.size());
  std::scoped_lock probes_lock(probes_mutex_);
  for (const auto& entry : entries) {
    auto device = ToManaged(*entry);
    const auto results = probes_.find(entry->spec.serial);
    for (const auto& app : device.spec.apps) {
      ProbeResult r{.app = app.name, .port = app.port};
      if (results != probes_.end()) {
        if (auto found = results->second.find(app.name);
            found != results->second.end() && found->second.port == app.port) {
          r = found->second;
        }
      }
      device.probes.push_back(std::move(r));
    }
    out.push_back(std::move(device));
  }
  return out;
}

std::size_t DeviceRegistry::size() const {
  std::shared_lock lock(index_mutex_);
  return devices_.size();
}

Result<std::vector<HistoryEntry>> DeviceRegistry::History(std::string_view serial,
                                                          std::size_t limit) const {
  std::scoped_lock lock(db_mutex_);
  auto select = db_->Prepare(
      serial.empty()
          ? "SELECT id, time_ms, serial, action, actor, before_json, after_json FROM device_history "
            "WHERE ?1 = '' ORDER BY id DESC LIMIT ?2"
          : "SELECT id, time_ms, serial, action, actor, before_json, after_json FROM device_history "
            "WHERE serial = ?1 ORDER BY id DESC LIMIT ?2");
  if (!select) {
    return StoreFailure(*db_, "history", select.error());
  }
  select->BindAll(serial, static_cast<std::int64_t>(limit));
  std::vector<HistoryEntry> out;
  while (true) {
    auto row = select->Step();
    if (!row) {
      return StoreFailure(*db_, "history", row.error());
    }
    if (!*row) {
      break;
    }
    out.push_back(HistoryEntry{.id = select->Int(0),
                               .time_ms = select->Int(1),
                               .serial = select->Text(2),
                               .action = select->Text(3),
                               .actor = select->Text(4),
                               .before_json = select->Text(5),
                               .after_json = select->Text(6)});
  }
  return out;
}

std::vector<ProbeTarget> DeviceRegistry::ProbeTargets() const {
  std::vector<ProbeTarget> out;
  std::shared_lock lock(index_mutex_);
  for (const auto& [serial, entry] : devices_) {
    if (!entry->spec.enabled) {
      continue;
    }
    for (const auto& app : entry->spec.apps) {
      out.push_back(ProbeTarget{
          .serial = serial, .address = entry->spec.address, .app = app.name, .port = app.port});
    }
  }
  return out;
}

std::vector<ProbeTransition> DeviceRegistry::RecordProbes(
    std::span<const ProbeObservation> observations) {
  std::vector<ProbeTransition> transitions;
  std::shared_lock index_lock(index_mutex_);
  std::scoped_lock probes_lock(probes_mutex_);
  for (const auto& o : observations) {
    // Only what is still registered: a device edited or undeployed during the sweep is skipped.
    const auto device = devices_.find(o.serial);
    if (device == devices_.end() ||
        std::none_of(device->second->spec.apps.begin(), device->second->spec.apps.end(),
                     [&](const AppPort& a) { return a.name == o.app && a.port == o.port; })) {
      continue;
    }
    auto& r = probes_[o.serial][o.app];
    const auto before = r.port == o.port ? r.state : Reachability::kUnknown;
    const auto now_state = o.reachable ? Reachability::kReachable : Reachability::kUnreachable;
    if (before != now_state) {
      r.since_ms = o.checked_ms;
      transitions.push_back(ProbeTransition{.observation = o, .before = before});
    }
    r.app = o.app;
    r.port = o.port;
    r.state = now_state;
    r.checked_ms = o.checked_ms;
    r.latency_ms = o.latency_ms;
    r.error = o.error;
  }
  return transitions;
}

VoidResult DeviceRegistry::PersistProbes() {
  std::vector<std::pair<std::string, ProbeResult>> rows;
  {
    std::scoped_lock probes_lock(probes_mutex_);
    for (const auto& [serial, apps] : probes_) {
      for (const auto& [app, r] : apps) {
        rows.emplace_back(serial, r);
      }
    }
  }
  std::scoped_lock lock(db_mutex_);
  return db_->Transaction([&]() -> VoidResult {
    // Rewritten whole: rows of devices undeployed or edited since go with it.
    if (auto cleared = db_->Exec("DELETE FROM probe_results"); !cleared) {
      return StoreFailure(*db_, "saving probe results", cleared.error());
    }
    auto insert = db_->Prepare(
        "INSERT INTO probe_results (serial, app, port, state, checked_ms, since_ms, latency_ms, "
        "error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (!insert) {
      return StoreFailure(*db_, "saving probe results", insert.error());
    }
    for (const auto& [serial, r] : rows) {
      insert->BindAll(serial, r.app, static_cast<std::int64_t>(r.port), std::string(ToString(r.state)),
                      r.checked_ms, r.since_ms, r.latency_ms, r.error);
      if (auto ran = insert->Run(); !ran) {
        return StoreFailure(*db_, "saving probe results", ran.error());
      }
      insert->Reset();
    }
    return {};
  });
}

std::string DeviceRegistry::ReachabilityJson() const {
  json::array devices;
  for (const auto& d : List()) {
    json::array apps;
    for (const auto& p : d.probes) {
      apps.push_back(json::object{{"app", p.app},
                                  {"port", p.port},
                                  {"state", ToString(p.state)},
                                  {"checked_at", Time(p.checked_ms)},
                                  {"since", Time(p.since_ms)},
                                  {"latency_ms", p.latency_ms},
                                  {"error", p.error}});
    }
    devices.push_back(json::object{{"serial", d.spec.serial},
                                   {"address", d.spec.address},
                                   {"enabled", d.spec.enabled},
                                   {"apps", std::move(apps)}});
  }
  return json::serialize(
      json::object{{"generated_at", FormatRfc3339(clock_.Now())}, {"devices", std::move(devices)}});
}

}  // namespace lifeline::gateway
