#include "agent/heartbeat_source.h"

#include "common/clock.h"
#include "common/log.h"

namespace lifeline::agent {

HeartbeatSource::HeartbeatSource(std::chrono::seconds interval, std::function<std::string()> status)
    : interval_(interval), status_(std::move(status)) {}

HeartbeatSource::~HeartbeatSource() { Stop(); }

void HeartbeatSource::Start(DetectionSink& sink) {
  thread_ = std::thread([this, &sink] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      protocol::Message heartbeat;
      heartbeat.type = protocol::MessageType::kHeartbeat;
      heartbeat.timestamp_ms = SystemClock::Instance().NowUnixMillis();
      heartbeat.heartbeat.interval_seconds = interval_.count();
      heartbeat.heartbeat.status = status_ ? status_() : "ok";
      const bool stored = sink.Emit({heartbeat});
      lock.lock();
      // A heartbeat that could not be stored is tried again soon rather than a whole interval later.
      const auto wait = stored ? std::chrono::duration_cast<std::chrono::milliseconds>(interval_)
                               : std::chrono::milliseconds(1000);
      wake_.wait_for(lock, wait, [this] { return stopping_; });
    }
  });
}

void HeartbeatSource::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace lifeline::agent
