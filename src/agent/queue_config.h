#pragma once
// Config of the durable queue ([queue]) and the one place that opens it for the agent.
#include "agent/queue.h"
#include "common/config.h"

#include <memory>

namespace lifeline::agent {

struct AgentConfig;

struct QueueConfig {};

void DeclareQueueOptions(config::Schema& schema, QueueConfig& queue);

/// Opens the agent's queue as `config` says (creating the state directory's file when new).
[[nodiscard]] Result<std::unique_ptr<AgentQueue>> OpenQueue(const AgentConfig& config);

}  // namespace lifeline::agent
