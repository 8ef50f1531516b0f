#pragma once
// Inventory: what the device is (OS and kernel, CPU, memory, block devices, filesystems, network
// interfaces and addresses, installed packages, agent version). Only slowly changing facts go in (total
// memory, not free memory), so a difference between two inventories is a real change.
//
// Payloads (kInventory):
//   {"kind":"full","sha256":S,"inventory":{section:{...},...}}
//   {"kind":"delta","base_sha256":B,"sha256":S,"changed":{...},"removed":[[section],[section,key],...]}
// where S is the SHA-256 of the inventory after the report (its canonical JSON) and B the one before.
// A delta applies per section: an object section changes key by key (changed.packages.openssl = "3.0.2",
// removed [["packages","libfoo"]]); any other section is replaced whole.
#include "agent/queue.h"
#include "agent/reports.h"

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::agent {

// Parsers of /proc, /etc and command output. Pure; they skip what they cannot read and never throw.
struct CpuInfo {
  std::string model;
  std::int64_t count = 0;  // logical processors
};
CpuInfo ParseCpuinfo(std::string_view text);
/// KEY=value lines of /etc/os-release, quotes removed.
std::map<std::string, std::string> ParseOsRelease(std::string_view text);
/// /proc/meminfo in bytes ("MemTotal: 16 kB" -> {"MemTotal", 16384}).
std::map<std::string, std::int64_t> ParseMeminfo(std::string_view text);
struct MountEntry {
  std::string device;
  std::string mount_point;  // octal escapes (\040) decoded
  std::string type;
};
std::vector<MountEntry> ParseMounts(std::string_view text);
/// Kernel and virtual filesystems (proc, sysfs, cgroup, tmpfs, ...) that say nothing about the device.
bool IsPseudoFilesystem(std::string_view type);
/// "name<TAB>version" lines (the output of our dpkg-query/rpm formats); other lines are skipped.
std::map<std::string, std::string> ParsePackageList(std::string_view text);

struct InventoryOptions {
  bool packages = true;
  std::size_t payload_budget = kReportPayloadBudget;
};

/// Reads this machine's inventory. Sections that cannot be read are left out (and logged once per call).
/// Packages beyond what fits `payload_budget` are left out (in name order), and "packages_omitted"
/// says how many.
boost::json::object CollectInventory(const InventoryOptions& options);

/// Cuts `inventory["packages"]` (an object) so that the serialized inventory fits `budget`; sets
/// "packages_omitted". Deterministic: the same input gives the same output.
void FitInventory(boost::json::object& inventory, std::size_t budget);

struct InventoryDelta {
  boost::json::object changed;
  boost::json::array removed;  // each a path: [section] or [section, key]
  bool empty() const { return changed.empty() && removed.empty(); }
};
InventoryDelta ComputeDelta(const boost::json::object& before, const boost::json::object& after);
/// `before` with `delta` applied (what the home does with a delta).
boost::json::object ApplyDelta(boost::json::object before, const InventoryDelta& delta);
/// SHA-256 of the canonical JSON (keys sorted at every level).
std::string InventoryHash(const boost::json::object& inventory);

/// Runs `argv` (argv[0] an absolute path) with no stdin and a minimal environment; returns its stdout
/// (at most `max_bytes`; the child is killed at the deadline or when it writes more). Error when it
/// cannot start, times out or exits non-zero.
[[nodiscard]] Result<std::string> RunBounded(const std::vector<std::string>& argv, std::size_t max_bytes,
                                             std::chrono::milliseconds timeout);

struct InventorySourceOptions {
  std::chrono::seconds interval{24 * 3600};
  std::chrono::seconds check_interval{15 * 60};
  bool packages = true;
};

/// Sends a full inventory every `interval` and a delta when a check finds a change. What was last sent
/// is kept in the queue's state (keys kStateKey, kLastFullKey), so a restart neither resends nor misses.
class InventorySource final : public PeriodicSource {
 public:
  static constexpr std::string_view kStateKey = "inventory.sent";         // canonical JSON last sent
  static constexpr std::string_view kLastFullKey = "inventory.full_ms";   // Unix ms of the last full

  using Collector = std::function<boost::json::object()>;
  /// `collect` defaults to CollectInventory with options.packages.
  InventorySource(InventorySourceOptions options, AgentQueue& queue, Collector collect = {});
  ~InventorySource() override;
  std::string name() const override { return "inventory"; }

  enum class Sent { kNothing, kFull, kDelta, kFailed };
  /// One check at `now_ms`: a full report when one is due (or forced), else a delta when the inventory
  /// changed. Public for tests; the thread calls it every check_interval.
  Sent Check(DetectionSink& sink, std::int64_t now_ms, bool force_full = false);
  /// "Send inventory now" (an instruction from home): a full report at the next moment.
  void RequestFull();
  /// Source::SendNow (the home's "send inventory now"): RequestFull.
  bool SendNow() override {
    RequestFull();
    return true;
  }

 protected:
  std::chrono::milliseconds Tick(DetectionSink& sink) override;

 private:
  InventorySourceOptions options_;
  AgentQueue& queue_;
  Collector collect_;
  std::atomic<bool> full_requested_{false};
};

}  // namespace lifeline::agent
