#include "agent/queue_config.h"

#include "agent/agent_config.h"

namespace lifeline::agent {

void DeclareQueueOptions(config::Schema& /*schema*/, QueueConfig& /*queue*/) {}

Result<std::unique_ptr<AgentQueue>> OpenQueue(const AgentConfig& config) { return AgentQueue::Open(config.QueuePath()); }

}  // namespace lifeline::agent
