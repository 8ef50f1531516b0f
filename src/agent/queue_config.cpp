#include "agent/queue_config.h"

#include "agent/agent_config.h"

namespace lifeline::agent {

void DeclareQueueOptions(config::Schema& schema, QueueConfig& queue) {
  schema.Int("queue.max_bytes", &queue.max_bytes, QueueConfig::kMinMaxBytes, 1LL << 40,
             "disk budget of the queue in bytes (default 256 MiB); when full, the oldest performance, then "
             "inventory and configuration data is evicted (counted and reported home); alerts and "
             "heartbeats are never evicted");
  schema.Bool("review.enabled", &queue.review,
              "hold outgoing messages until a local operator approves them (`lifeline agent review`)")
      .StringList("review.kinds", &queue.review_kinds,
                  "message types that wait for review: alert, clear, heartbeat, inventory, configuration, "
                  "performance (heartbeats are not held by default: holding them opens missing-heartbeat tickets)");
}

QueueOptions MakeQueueOptions(const AgentConfig& config) {
  QueueOptions options;
  options.max_bytes = config.queue.max_bytes;
  if (config.queue.review) {
    for (const auto& kind : config.queue.review_kinds) {
      if (auto type = protocol::ParseMessageType(kind)) {
        options.held_for_review.push_back(*type);
      }
    }
  }
  return options;
}

Result<std::unique_ptr<AgentQueue>> OpenQueue(const AgentConfig& config) {
  return AgentQueue::Open(config.QueuePath(), MakeQueueOptions(config));
}

}  // namespace lifeline::agent
