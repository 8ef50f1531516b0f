#pragma once
// Config of the detection sources: [[logs]], [[rules]], [watch]. (Command checks, health checks and
// syslog join here.)
#include "common/config.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lifeline::agent {

struct WatchedLog {
  std::string path;
  bool from_beginning = false;  // first start only: read what the file already holds
};

struct RuleConfig {
  std::string name;
  std::string pattern;
  std::string code;
  std::string severity = "error";
  std::string message = "{line}";
};

struct SourcesConfig {
  std::int64_t poll_interval_ms = 250;
  std::vector<WatchedLog> logs;
  std::vector<RuleConfig> rules;
};

/// Adds the sources' keys to the agent's schema.
void DeclareSourceOptions(config::Schema& schema, SourcesConfig& sources);

}  // namespace lifeline::agent
