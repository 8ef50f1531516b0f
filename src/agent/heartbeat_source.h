#pragma once
// Heartbeats: one at start, then every interval (with jitter, so a fleet started together does not beat
// in lockstep), so the home can tell a silent device from a dead one. Each carries a short status:
// agent version, uptime and the queue's state.
#include "agent/reports.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <string_view>

namespace lifeline::agent {

struct HeartbeatOptions {
  std::chrono::seconds interval{6 * 3600};
  double jitter = 0.1;  // fraction of the interval, see JitteredInterval
  /// The queue part of the status ("queue depth 3"); empty: no queue part.
  std::function<std::string()> queue_status;
  std::uint64_t seed = std::random_device{}();
};

/// "ok; agent 0.1.0; up 1d 2h 3m; queue depth 3" (the queue part left out when empty). Cut to the
/// protocol's text limit.
std::string HeartbeatStatus(std::string_view agent_version, std::chrono::seconds uptime,
                            std::string_view queue_status);

/// "45s", "12m 5s", "3h 4m", "2d 3h".
std::string FormatUptime(std::chrono::seconds uptime);

class HeartbeatSource final : public PeriodicSource {
 public:
  explicit HeartbeatSource(HeartbeatOptions options);
  ~HeartbeatSource() override;
  std::string name() const override { return "heartbeat"; }

 protected:
  std::chrono::milliseconds Tick(DetectionSink& sink) override;

 private:
  HeartbeatOptions options_;
  std::mt19937_64 random_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace lifeline::agent
