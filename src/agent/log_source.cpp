#include "agent/log_source.h"

#include "agent/queue.h"
#include "common/clock.h"
#include "common/log.h"

namespace lifeline::agent {

LogSource::LogSource(std::vector<std::unique_ptr<LogFollower>> followers, RuleSet rules, AgentQueue& queue,
                     std::chrono::milliseconds poll_interval, std::vector<GateOptions> gates)
    : followers_(std::move(followers)),
      rules_(std::move(rules)),
      gates_(std::move(gates)),
      gate_(SystemClock::Instance()),
      queue_(queue),
      poll_interval_(poll_interval) {
  gates_.resize(rules_.size());
}

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
  stored_positions_.resize(followers_.size());
  for (std::size_t i = 0; i < followers_.size(); ++i) {
    auto& follower = followers_[i];
    auto lines = follower->Poll(1000);
    if (!lines) {
      log->warn("cannot read {}: {}", follower->path().string(), lines.error().message());
      continue;
    }
    if (lines->empty()) {
      // Nothing new, but the follower may have opened the file (or moved to a rotated one) since the
      // position was last stored: store it, so a restart resumes here and reads what arrives meanwhile.
      const FilePosition now_at = follower->position();
      if (now_at.inode != 0 && !(now_at == stored_positions_[i])) {
        if (queue_.SavePosition(follower->path().string(), now_at)) {
          stored_positions_[i] = now_at;
        }
      }
      continue;
    }
    std::vector<protocol::Message> drafts;
    const std::int64_t now_ms = SystemClock::Instance().NowUnixMillis();
    for (const auto& line : *lines) {
      auto match = rules_.Evaluate(line.text, follower->path().string());
      if (!match) {
        continue;
      }
      if (auto draft = GateMatch(gate_, *match, rules_.rule(match->rule), gates_[match->rule], now_ms)) {
        log->info("{} {} ({}) in {}: {}", match->clear ? "clear" : "alert", draft->alert.code,
                  protocol::ToString(draft->alert.severity), follower->path().string(), draft->alert.text);
        drafts.push_back(std::move(*draft));
      }
    }
    if (sink.Emit(std::move(drafts), std::make_pair(follower->path().string(), lines->back().after))) {
      stored_positions_[i] = lines->back().after;
    } else {
      // The position was not saved either: start this file again from the last committed position, as
      // after a restart, so these lines are read again and nothing is lost.
      auto saved = queue_.LoadPosition(follower->path().string());
      follower = std::make_unique<LogFollower>(follower->path(), saved ? *saved : std::nullopt,
                                               StartPolicy::kFromBeginning);
    }
  }
}

}  // namespace lifeline::agent
