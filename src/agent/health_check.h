#pragma once
// Built-in health checks, run by a CheckSource like command checks: filesystem usage, available
// memory, load average, a process or a systemd unit not running, a file not updated for too long.
#include "agent/command_check.h"

#include <chrono>
#include <string>

namespace lifeline::agent {

enum class HealthKind { kFilesystem, kMemory, kLoad, kProcess, kUnit, kFileAge };

struct HealthCheckSpec {
  std::string name;
  HealthKind kind = HealthKind::kFilesystem;
  std::string path;              // kFilesystem: a path on the filesystem; kFileAge: the file
  std::string target;            // kProcess: process name; kUnit: systemd unit
  std::int64_t max_percent = 90;        // kFilesystem: used space above this alerts
  std::int64_t min_available_mb = 100;  // kMemory: MemAvailable below this alerts
  double max_load = 0;                  // kLoad: 1-minute load average above this alerts
  std::chrono::seconds max_age{3600};   // kFileAge: a file not modified for longer alerts
  std::chrono::milliseconds interval{60000};
  std::string code;  // defaults to the name
  protocol::Severity severity = protocol::Severity::kError;
  GateOptions gate;
  std::string proc_root = "/proc";  // tests point it elsewhere
};

/// Parses a kind name: filesystem, memory, load, process, unit, file_age.
std::optional<HealthKind> ParseHealthKind(std::string_view text);

class HealthCheck final : public Check {
 public:
  explicit HealthCheck(HealthCheckSpec spec) : spec_(std::move(spec)) {}
  const std::string& name() const override { return spec_.name; }
  std::chrono::milliseconds interval() const override { return spec_.interval; }
  const GateOptions& gate() const override { return spec_.gate; }
  const std::string& base_code() const override { return spec_.code; }
  CheckOutcome Run(const std::function<bool()>& cancelled) override;

 private:
  /// nullopt when healthy; otherwise what is wrong.
  std::optional<std::string> Problem(const std::function<bool()>& cancelled) const;
  HealthCheckSpec spec_;
};

/// Reads MemAvailable from a /proc/meminfo text, in KiB; nullopt when absent.
std::optional<std::int64_t> ParseMemAvailableKib(std::string_view meminfo);
/// Reads the 1-minute load average from a /proc/loadavg text.
std::optional<double> ParseLoadAverage(std::string_view loadavg);

}  // namespace lifeline::agent
