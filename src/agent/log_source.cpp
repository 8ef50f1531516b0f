#include "agent/log_source.h"

#include "agent/queue.h"
#include "common/clock.h"
#include "common/log.h"

namespace lifeline::agent {

LogSource::LogSource(std::vector<std::unique_ptr<LogFollower>> followers, RuleSet rules, AgentQueue& queue,
                     std::chrono::milliseconds poll_interval)
    : followers_(std::move(followers)), rules_(std::move(rules)), queue_(queue), poll_interval_(poll_interval) {}

LogSource::~LogSource() { Stop(); }

void LogSource::Start(DetectionSink& sink) {
  thread_ = std::thread([this, &sink] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      PollOnce(sink);
      lock.lock();
      wake_.wait_for(lock, poll_interval_, [this] { return stopping_; });
    }
  });
}

void LogSource::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void LogSource::PollOnce(DetectionSink& sink) {
  auto log = log::Get("agent");
  for (auto& follower : followers_) {
    auto lines = follower->Poll(1000);
    if (!lines) {
      log->warn("cannot read {}: {}", follower->path().string(), lines.error().message());
      continue;
    }
    if (lines->empty()) {
      continue;
    }
    std::vector<protocol::Message> drafts;
    const std::int64_t now_ms = SystemClock::Instance().NowUnixMillis();
    for (const auto& line : *lines) {
      if (auto alert = rules_.Match(line.text, follower->path().string())) {
        protocol::Message draft;
        draft.type = protocol::MessageType::kAlert;
        draft.timestamp_ms = now_ms;
        draft.alert = *alert;
        log->info("alert {} ({}) in {}: {}", alert->code, protocol::ToString(alert->severity),
                  follower->path().string(), alert->text);
        drafts.push_back(std::move(draft));
      }
    }
    if (!sink.Emit(std::move(drafts), std::make_pair(follower->path().string(), lines->back().after))) {
      // The position was not saved either: start this file again from the last committed position, as
      // after a restart, so these lines are read again and nothing is lost.
      auto saved = queue_.LoadPosition(follower->path().string());
      follower = std::make_unique<LogFollower>(follower->path(), saved ? *saved : std::nullopt,
                                               StartPolicy::kFromBeginning);
    }
  }
}

}  // namespace lifeline::agent
