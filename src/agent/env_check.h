#pragma once
// `lifeline check`: the environment check an installer runs before trusting the agent with alerts. It
// checks the device's certificate, then for every home endpoint name resolution and TCP reach, and for
// every (connection path, endpoint) the TLS handshake with the pinned CA and the clock against the home's;
// finally one real, signed and sealed test message round trip.
#include "agent/agent_config.h"

#include <string>
#include <vector>

namespace lifeline::agent {

struct CheckItem {
  enum class Outcome { kPass, kWarn, kFail };
  Outcome outcome = Outcome::kPass;
  std::string what;    // "TLS and CA pin: https://home:9455 direct"
  std::string detail;  // what was found, or what is wrong and how to fix it
};

struct CheckReport {
  std::vector<CheckItem> items;
  bool Passed() const;  // no kFail
  /// The readable report: one line per item, then a summary line.
  std::string Render() const;
};

CheckReport RunEnvironmentCheck(const AgentConfig& config);

}  // namespace lifeline::agent
