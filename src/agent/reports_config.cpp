#include "agent/reports_config.h"

namespace lifeline::agent {

void DeclareReportOptions(config::Schema& schema, ReportsConfig& reports) {
  using std::chrono::hours;
  using std::chrono::seconds;
  schema
      .Duration("heartbeat.interval", &reports.heartbeat_interval, seconds(1), hours(24 * 7),
                "time between heartbeats (the first is sent at start)")
      .Int("heartbeat.jitter_percent", &reports.heartbeat_jitter_percent, 0, 50,
           "each wait varies randomly by up to this percentage, so a fleet does not beat in lockstep")
      .Bool("inventory.enabled", &reports.inventory_enabled,
            "report OS, kernel, CPU, memory, disks, filesystems, network interfaces, packages")
      .Duration("inventory.interval", &reports.inventory_interval, seconds(1), hours(24 * 30),
                "time between full inventory reports")
      .Duration("inventory.check_interval", &reports.inventory_check_interval, seconds(1), hours(24),
                "how often the inventory is compared with the last one sent; a change is sent as a delta")
      .Bool("inventory.packages", &reports.inventory_packages,
            "include installed packages (dpkg-query or rpm, when present)")
      .Duration("configuration.interval", &reports.config_files_interval, seconds(1), hours(24 * 7),
                "how often [[config_files]] are read; a file is sent only when its redacted content changed")
      .Int("configuration.max_bytes", &reports.config_files_max_bytes, 1024, 192 * 1024,
           "a longer configuration file is cut to this many bytes (and marked truncated)")
      .TableArray<ConfigFileConfig>(
          "config_files", &reports.config_files,
          [](config::Schema& item, ConfigFileConfig& file) {
            item.RequiredString("path", &file.path, "configuration file to report")
                .StringList("redact", &file.redact,
                            "extra regular expressions (ECMAScript, case-insensitive, per line) whose match "
                            "(or capture group 1) is replaced by [REDACTED], on top of the built-in ones "
                            "(passwords, secrets, tokens, API keys, private key blocks, AWS keys, URL "
                            "credentials, bearer tokens)");
          },
          "configuration files reported with secrets redacted before they leave the machine")
      .Bool("performance.enabled", &reports.performance_enabled,
            "sample CPU, memory, disk and network rates and report min/avg/max")
      .Duration("performance.sample_interval", &reports.performance_sample_interval, seconds(1), hours(1),
                "time between samples")
      .Duration("performance.report_interval", &reports.performance_report_interval, seconds(1), hours(24),
                "time between performance reports (each aggregates the samples since the last)");
}

}  // namespace lifeline::agent
