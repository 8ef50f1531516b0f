#pragma once
// Config of the detection sources: [[logs]], [[rules]], [watch], [[checks.command]], [[checks.health]],
// [syslog] and [[syslog_rules]].
#include "common/config.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace lifeline::agent {

struct WatchedLog {
  std::string path;
  bool from_beginning = false;  // first start only: read what the file already holds
};

/// Rule options every source shares (see alert_gate.h).
struct GateConfig {
  std::int64_t min_count = 1;
  std::chrono::seconds window{60};
  std::int64_t max_per_window = 0;
};

struct RuleConfig {
  std::string name;
  std::string pattern;
  std::string code;
  std::string severity = "error";
  std::string message = "{line}";
  std::string clear_pattern;
  GateConfig gate;
};

struct OutputPatternConfig {
  std::string pattern;
  std::string code;
  std::string severity = "error";
  std::string message = "{line}";
};

struct CommandCheckConfig {
  std::string name;
  std::vector<std::string> command;
  bool shell = false;
  std::chrono::seconds interval{60};
  std::chrono::seconds timeout{10};
  std::string code;  // default: the name
  std::string exit_status = "0=ok 1=warning 2=critical *=error";
  std::string message = "{name}: exit status {status}: {output}";
  std::vector<OutputPatternConfig> patterns;
  GateConfig gate;
};

struct HealthCheckConfig {
  std::string name;
  std::string kind;
  std::string path;
  std::string process;
  std::string unit;
  std::int64_t max_percent = 90;
  std::int64_t min_available_mb = 100;
  std::string max_load = "0";
  std::chrono::seconds max_age{3600};
  std::chrono::seconds interval{60};
  std::string code;  // default: the name
  std::string severity = "error";
  GateConfig gate;
};

struct SyslogConfig {
  std::string udp;
  std::string tcp;
  std::int64_t max_message_bytes = 64 * 1024;
  std::int64_t max_connections = 64;
  std::chrono::seconds idle_timeout{300};
};

struct SourcesConfig {
  std::int64_t poll_interval_ms = 250;
  std::vector<WatchedLog> logs;
  std::vector<RuleConfig> rules;
  std::vector<CommandCheckConfig> command_checks;
  std::vector<HealthCheckConfig> health_checks;
  SyslogConfig syslog;
  std::vector<RuleConfig> syslog_rules;
};

/// Adds the sources' keys to the agent's schema.
void DeclareSourceOptions(config::Schema& schema, SourcesConfig& sources);

}  // namespace lifeline::agent
