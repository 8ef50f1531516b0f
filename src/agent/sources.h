#pragma once
// Builds the detection sources the config asks for (log files with rules; more kinds join here).
#include "agent/agent_config.h"
#include "agent/queue.h"
#include "agent/source.h"

#include <memory>
#include <string>
#include <vector>

namespace lifeline::agent {

/// The detection sources for `config`. On a bad rule or source, returns an error and says why in `error`.
/// `queue` gives log sources the positions saved by the previous run.
[[nodiscard]] Result<std::vector<std::unique_ptr<Source>>> MakeDetectionSources(const AgentConfig& config,
                                                                                AgentQueue& queue,
                                                                                std::string* error);

}  // namespace lifeline::agent
