#pragma once
// Heartbeats: one at start, then every interval, so the home can tell a silent device from a dead one.
#include "agent/source.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace lifeline::agent {

class HeartbeatSource final : public Source {
 public:
  /// `status` gives the short summary each heartbeat carries (e.g. the queue depth).
  HeartbeatSource(std::chrono::seconds interval, std::function<std::string()> status);
  ~HeartbeatSource() override;
  std::string name() const override { return "heartbeat"; }
  void Start(DetectionSink& sink) override;
  void Stop() override;

 private:
  std::chrono::seconds interval_;
  std::function<std::string()> status_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace lifeline::agent
