#include "agent/reports.h"

#include "agent/heartbeat_source.h"

#include <fmt/format.h>

namespace lifeline::agent {

Result<std::vector<std::unique_ptr<Source>>> MakeReportSources(const AgentConfig& config, AgentQueue& queue,
                                                               std::string* /*error*/) {
  std::vector<std::unique_ptr<Source>> sources;
  AgentQueue* q = &queue;
  sources.push_back(std::make_unique<HeartbeatSource>(config.reports.heartbeat_interval, [q] {
    auto depth = q->Depth();
    return fmt::format("ok; queue depth {}", depth ? *depth : -1);
  }));
  return sources;
}

}  // namespace lifeline::agent
