#pragma once
// Config of the durable queue ([queue]) and the one place that opens it for the agent.
#include "agent/queue.h"
#include "common/config.h"

#include <cstdint>
#include <memory>

namespace lifeline::agent {

struct AgentConfig;

struct QueueConfig {
  /// Below this the eviction alert, heartbeats and a day of alerts would not fit beside the schema.
  static constexpr std::int64_t kMinMaxBytes = 2LL * 1024 * 1024;
  /// [queue] max_bytes: disk budget of queue.db (pages in use; the -wal comes on top, a few MiB).
  std::int64_t max_bytes = QueueOptions::kDefaultMaxBytes;
  /// [review]: hold outgoing messages until a local operator approves them (`lifeline agent review`).
  bool review = false;
  std::vector<std::string> review_kinds = {"alert", "clear", "inventory", "configuration", "performance"};
};

void DeclareQueueOptions(config::Schema& schema, QueueConfig& queue);

/// The queue options `config` asks for.
QueueOptions MakeQueueOptions(const AgentConfig& config);

/// Opens the agent's queue as `config` says (creating the state directory's file when new).
[[nodiscard]] Result<std::unique_ptr<AgentQueue>> OpenQueue(const AgentConfig& config);

}  // namespace lifeline::agent
