#pragma once
// Log files as a detection source: follows each file (rotation included), matches new lines against the
// rules, and stores the alerts together with the position reached, so every line counts exactly once.
#include "agent/alert_gate.h"
#include "agent/log_follower.h"
#include "agent/rules.h"
#include "agent/source.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace lifeline::agent {

class AgentQueue;

class LogSource final : public Source {
 public:
  /// `followers` start where the queue says the previous run stopped. `gates[i]` holds rule i's gate
  /// options (defaults when missing).
  LogSource(std::vector<std::unique_ptr<LogFollower>> followers, RuleSet rules, AgentQueue& queue,
            std::chrono::milliseconds poll_interval, std::vector<GateOptions> gates = {});
  ~LogSource() override;
  std::string name() const override { return "logs"; }
  void Start(DetectionSink& sink) override;
  void Stop() override;
  /// One pass over every file (the thread calls this; tests may too).
  void PollOnce(DetectionSink& sink);

 private:
  std::vector<std::unique_ptr<LogFollower>> followers_;
  // The position each follower last had stored: a quiet file's starting point is stored too, or a
  // restart would begin at the end again and skip what was written while the agent was down.
  std::vector<FilePosition> stored_positions_;
  RuleSet rules_;
  std::vector<GateOptions> gates_;
  AlertGate gate_;
  AgentQueue& queue_;
  std::chrono::milliseconds poll_interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace lifeline::agent
