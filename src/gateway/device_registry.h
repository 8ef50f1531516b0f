#pragma once
// The gateway's managed devices (docs/gateway.md, "Managed devices"): the devices of this gateway's
// site that remote support may reach, each with the applications (name -> TCP port) registered for
// it. Nothing else on the site is ever reachable through the gateway: a session names a device and
// an application, and Lookup() is the only way from that to an address.
//
// Storage: gateway.db (SQLite, WAL, synchronous=FULL, mode 0600): the devices, a history row for
// every change (who, when, before and after as JSON) and the latest probe results. Every device is
// also kept in memory, so Lookup() (called for every stream) never touches SQLite.
//
// Threads: every method is thread-safe. Lookups and List() share a reader lock; changes are
// serialised, committed to SQLite first, then published to the in-memory index.
#include "common/clock.h"
#include "common/result.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace lifeline::store::sqlite {
class Database;
}

namespace lifeline::gateway {

enum class RegistryErrc {
  kUnknownDevice = 1,   // no device with that serial was ever deployed here
  kUnknownApplication,  // the device exists but that application is not registered for it
  kUndeployed,          // the device was undeployed
  kDisabled,            // the device is deployed but disabled: remote access to it is off
  kInvalidDevice,       // serial, model, address or applications fail validation
  kAlreadyDeployed,     // deploy of a serial that is already deployed
  kStoreFailed,         // SQLite failed; the log has SQLite's words
};
const std::error_category& RegistryCategory();
inline std::error_code make_error_code(RegistryErrc code) {
  return {static_cast<int>(code), RegistryCategory()};
}

/// One application registered for a device: a name operators and engineers use ("ssh", "https")
/// and the TCP port it is on. Names are [a-z0-9-]{1,32}; ports 1-65535.
struct AppPort {
  std::string name;
  std::uint16_t port = 0;
  bool operator==(const AppPort&) const = default;
};

/// What an operator deploys: the device and what may be reached on it.
struct DeviceSpec {
  std::string serial;   // [A-Za-z0-9._:-]{1,128}, unique per gateway
  std::string model;    // free text for people, up to 128 bytes (may be empty)
  std::string address;  // hostname (RFC 1123) or IPv4/IPv6 literal, without brackets or port
  std::vector<AppPort> apps;  // at least one; names unique; kept sorted by name
  bool enabled = true;        // false: Lookup refuses, the prober skips it
  bool operator==(const DeviceSpec&) const = default;
};

/// An edit: only the fields that are set change.
struct DeviceEdit {
  std::optional<std::string> model;
  std::optional<std::string> address;
  std::optional<std::vector<AppPort>> apps;
  std::optional<bool> enabled;
};

enum class Reachability { kUnknown, kReachable, kUnreachable };
std::string_view ToString(Reachability r);  // "unknown", "reachable", "unreachable"

/// The latest probe of one registered application of one device.
struct ProbeResult {
  std::string app;
  std::uint16_t port = 0;
  Reachability state = Reachability::kUnknown;
  std::int64_t checked_ms = 0;  // Unix ms of the probe; 0 = never probed
  std::int64_t since_ms = 0;    // Unix ms the current state began
  std::int64_t latency_ms = 0;  // connect time when reachable
  std::string error;            // why it was unreachable ("connection refused", "timed out")
};

struct ManagedDevice {
  DeviceSpec spec;
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
  std::vector<ProbeResult> probes;  // one per registered app, in spec.apps order
};

struct HistoryEntry {
  std::int64_t id = 0;
  std::int64_t time_ms = 0;
  std::string serial;
  std::string action;  // "deploy", "edit", "undeploy"
  std::string actor;   // the admin token's name, or "local"
  std::string before_json;  // the device before the change as JSON; "null" for a deploy
  std::string after_json;   // after; "null" for an undeploy
};

/// Where a session's stream goes: the device's registered address and the app's port.
struct Target {
  std::string address;
  std::uint16_t port = 0;
  // What the policy decides on: the device's model, and when it was deployed (Unix ms; a device
  // deployed after the policy manager last answered is refused until it answers again).
  std::string model;
  std::int64_t deployed_ms = 0;
  /// "10.0.0.5:22", "[fd00::5]:22", "dev1.site.example:443".
  std::string HostPort() const;
};

/// What a change listener is told (after the change is committed).
struct RegistryChange {
  std::string action;  // "deploy", "edit", "undeploy"
  std::string serial;
  std::uint64_t generation = 0;
};

/// What the prober probes: one registered port of one enabled device.
struct ProbeTarget {
  std::string serial;
  std::string address;
  std::string app;
  std::uint16_t port = 0;
};

/// A probe's outcome handed to RecordProbes.
struct ProbeObservation {
  std::string serial;
  std::string app;
  std::uint16_t port = 0;
  bool reachable = false;
  std::int64_t checked_ms = 0;
  std::int64_t latency_ms = 0;
  std::string error;
};

/// A change of state found by RecordProbes (for the prober's log lines).
struct ProbeTransition {
  ProbeObservation observation;
  Reachability before = Reachability::kUnknown;
};

/// "" when the spec is valid, else one sentence saying what to fix (for 400 answers and the CLI).
std::string ValidateDeviceSpec(const DeviceSpec& spec);
/// Parses "ssh:22"; "" and sets *out, or the reason it is not NAME:PORT.
std::string ParseAppPort(std::string_view text, AppPort* out);
/// The device as a JSON object (serial, model, address, enabled, apps {name: port}): the form
/// history rows and the admin interface use.
std::string DeviceSpecJson(const DeviceSpec& spec);

class DeviceRegistry {
 public:
  /// Opens (creating) the database at `path` (mode 0600, its directory 0700 when created), brings
  /// its schema up to date and loads every device and probe result into memory.
  [[nodiscard]] static Result<std::unique_ptr<DeviceRegistry>> Open(
      const std::filesystem::path& path, const Clock& clock = SystemClock::Instance());
  ~DeviceRegistry();
  DeviceRegistry(const DeviceRegistry&) = delete;
  DeviceRegistry& operator=(const DeviceRegistry&) = delete;

  /// Deploys a new device (or a serial undeployed earlier, which starts afresh). Errors:
  /// kInvalidDevice, kAlreadyDeployed, kStoreFailed.
  [[nodiscard]] Result<ManagedDevice> Deploy(DeviceSpec spec, std::string_view actor);
  /// Deploys many devices in one transaction: all or none (same errors; the first bad one stops it).
  [[nodiscard]] VoidResult DeployMany(std::vector<DeviceSpec> specs, std::string_view actor);
  /// Changes the fields `edit` sets. kUnknownDevice, kUndeployed, kInvalidDevice, kStoreFailed.
  /// An edit that changes nothing succeeds without a history row.
  [[nodiscard]] Result<ManagedDevice> Edit(std::string_view serial, const DeviceEdit& edit,
                                           std::string_view actor);
  /// Removes a device: Lookup refuses it (kUndeployed) from now on. kUnknownDevice, kUndeployed.
  [[nodiscard]] VoidResult Undeploy(std::string_view serial, std::string_view actor);

  /// The registered address and port of `app` on `serial`, or why not: kUnknownDevice,
  /// kUndeployed, kDisabled, kUnknownApplication. From memory; no I/O.
  [[nodiscard]] Result<Target> Lookup(std::string_view serial, std::string_view app) const;

  /// One deployed device with its latest probe results; kUnknownDevice / kUndeployed.
  [[nodiscard]] Result<ManagedDevice> Get(std::string_view serial) const;
  /// Every deployed device ordered by serial, with its latest probe results.
  std::vector<ManagedDevice> List() const;
  std::size_t size() const;

  /// History, newest first: of one device (`serial` non-empty) or of all; at most `limit` rows.
  [[nodiscard]] Result<std::vector<HistoryEntry>> History(std::string_view serial,
                                                          std::size_t limit = 1000) const;

  /// Increases with every committed change (starts at 1 after Open). Cheap to poll.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  /// `listener` is called after each committed change, on the changing thread, without the
  /// registry's locks held (it may call Lookup/List). Returns an id for RemoveListener.
  std::uint64_t AddListener(std::function<void(const RegistryChange&)> listener);
  void RemoveListener(std::uint64_t id);

  /// Every registered port of every enabled device, for a probe sweep.
  std::vector<ProbeTarget> ProbeTargets() const;
  /// Records probe outcomes in memory; results for apps no longer registered are ignored. Returns
  /// the state changes.
  std::vector<ProbeTransition> RecordProbes(std::span<const ProbeObservation> observations);
  /// Writes every probe result in memory to gateway.db in one transaction.
  [[nodiscard]] VoidResult PersistProbes();
  /// The latest probe results as JSON, for reporting home:
  /// {"generated_at": RFC 3339, "devices": [{"serial", "address", "enabled", "apps": [{"app",
  ///  "port", "state", "checked_at", "since", "latency_ms", "error"}]}]}
  std::string ReachabilityJson() const;

  struct Entry;  // one device in memory (device_registry.cpp)

 private:
  DeviceRegistry(std::unique_ptr<store::sqlite::Database> db, const Clock& clock);
  VoidResult Load();
  /// The deployed device's entry, or kUndeployed / kUnknownDevice (takes the index lock shared).
  Result<std::shared_ptr<const Entry>> DeployedEntry(std::string_view serial) const;
  void Publish(const std::string& action, const std::string& serial);

  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Index = std::unordered_map<std::string, std::shared_ptr<const Entry>, StringHash,
                                   std::equal_to<>>;

  const Clock& clock_;
  mutable std::mutex db_mutex_;  // the one SQLite connection; also serialises changes
  std::unique_ptr<store::sqlite::Database> db_;

  mutable std::shared_mutex index_mutex_;
  Index devices_;                                      // deployed devices
  std::unordered_map<std::string, std::int64_t, StringHash, std::equal_to<>> undeployed_;  // serial -> when

  mutable std::mutex probes_mutex_;
  // serial -> app -> latest result
  std::unordered_map<std::string, std::unordered_map<std::string, ProbeResult>, StringHash,
                     std::equal_to<>>
      probes_;

  std::atomic<std::uint64_t> generation_{1};
  std::mutex listeners_mutex_;
  std::uint64_t next_listener_ = 1;
  std::vector<std::pair<std::uint64_t, std::function<void(const RegistryChange&)>>> listeners_;
};

}  // namespace lifeline::gateway

template <>
struct std::is_error_code_enum<lifeline::gateway::RegistryErrc> : std::true_type {};
