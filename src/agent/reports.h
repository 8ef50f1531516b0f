#pragma once
// Builds the report sources (heartbeat; more kinds join here).
#include "agent/agent_config.h"
#include "agent/queue.h"
#include "agent/source.h"

#include <memory>
#include <string>
#include <vector>

namespace lifeline::agent {

[[nodiscard]] Result<std::vector<std::unique_ptr<Source>>> MakeReportSources(const AgentConfig& config,
                                                                             AgentQueue& queue, std::string* error);

}  // namespace lifeline::agent
