#pragma once
// Config of the reports the agent sends on its own: [heartbeat], [inventory], [configuration] with
// [[config_files]], and [performance] (`lifeline agent run --help-config` lists them).
#include "common/config.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace lifeline::agent {

/// One configuration file to report ([[config_files]]).
struct ConfigFileConfig {
  std::string path;
  /// Extra ECMAScript regular expressions, matched line by line (case-insensitive). With a capture
  /// group only group 1 is replaced by "[REDACTED]", otherwise the whole match.
  std::vector<std::string> redact;
};

struct ReportsConfig {
  std::chrono::seconds heartbeat_interval{6 * 3600};
  /// Each wait is the interval times a random factor in [1 - p/100, 1 + p/100].
  std::int64_t heartbeat_jitter_percent = 10;

  bool inventory_enabled = true;
  std::chrono::seconds inventory_interval{24 * 3600};       // full reports
  std::chrono::seconds inventory_check_interval{15 * 60};   // deltas between them
  bool inventory_packages = true;

  std::vector<ConfigFileConfig> config_files;
  std::chrono::seconds config_files_interval{15 * 60};
  std::int64_t config_files_max_bytes = 64 * 1024;

  bool performance_enabled = true;
  std::chrono::seconds performance_sample_interval{60};
  std::chrono::seconds performance_report_interval{15 * 60};
};

void DeclareReportOptions(config::Schema& schema, ReportsConfig& reports);

}  // namespace lifeline::agent
