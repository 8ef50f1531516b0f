// Heartbeats: jitter stays within its bounds (fixed seed), the first beat goes out at start, and the
// status carries the agent version, uptime and the queue part the service supplies.
#include "agent/heartbeat_source.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <thread>

namespace lifeline::agent {
namespace {

using namespace std::chrono_literals;

class CollectingSink final : public DetectionSink {
 public:
  bool Emit(std::vector<protocol::Message> drafts, std::optional<std::pair<std::string, FilePosition>>) override {
    std::lock_guard lock(mutex_);
    for (auto& draft : drafts) {
      messages_.push_back(std::move(draft));
    }
    return true;
  }
  std::vector<protocol::Message> messages() {
    std::lock_guard lock(mutex_);
    return messages_;
  }

 private:
  std::mutex mutex_;
  std::vector<protocol::Message> messages_;
};

template <class F>
bool PollFor(F condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

TEST(Jitter, StaysWithinTheFractionAndSpreads) {
  std::mt19937_64 random(42);
  const auto interval = std::chrono::milliseconds(6 * 3600 * 1000);
  std::int64_t low = interval.count();
  std::int64_t high = 0;
  double sum = 0;
  constexpr int kDraws = 10000;
  for (int i = 0; i < kDraws; ++i) {
    const auto wait = JitteredInterval(interval, 0.1, random).count();
    ASSERT_GE(wait, interval.count() * 9 / 10);
    ASSERT_LE(wait, interval.count() * 11 / 10);
    low = std::min(low, wait);
    high = std::max(high, wait);
    sum += static_cast<double>(wait);
  }
  // Spread over nearly the whole range, centred on the interval: a fleet does not beat in lockstep.
  EXPECT_LT(low, interval.count() * 0.91);
  EXPECT_GT(high, interval.count() * 1.09);
  EXPECT_NEAR(sum / kDraws / static_cast<double>(interval.count()), 1.0, 0.01);
}

TEST(Jitter, SameSeedSameSequenceAndZeroMeansExact) {
  std::mt19937_64 a(7);
  std::mt19937_64 b(7);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(JitteredInterval(60s, 0.1, a), JitteredInterval(60s, 0.1, b));
  }
  std::mt19937_64 random(1);
  EXPECT_EQ(JitteredInterval(60s, 0.0, random), std::chrono::milliseconds(60000));
  // Out-of-range fractions are clamped, never negative waits.
  for (int i = 0; i < 1000; ++i) {
    EXPECT_GE(JitteredInterval(1ms, 5.0, random).count(), 1);
  }
}

TEST(HeartbeatStatus, NamesVersionUptimeAndQueue) {
  EXPECT_EQ(FormatUptime(45s), "45s");
  EXPECT_EQ(FormatUptime(12min + 5s), "12m 5s");
  EXPECT_EQ(FormatUptime(3h + 4min + 1s), "3h 4m");
  EXPECT_EQ(FormatUptime(std::chrono::hours(51)), "2d 3h");
  EXPECT_EQ(HeartbeatStatus("1.2.3", 3h + 4min, "queue depth 5, evicted 0"),
            "ok; agent 1.2.3; up 3h 4m; queue depth 5, evicted 0");
  EXPECT_EQ(HeartbeatStatus("1.2.3", 5s, ""), "ok; agent 1.2.3; up 5s");
  EXPECT_LE(HeartbeatStatus("1", 1s, std::string(20000, 'x')).size(), 8192u);
}

TEST(HeartbeatSource, FirstBeatAtStartWithStatusAndLatestDueTime) {
  CollectingSink sink;
  HeartbeatSource source({.interval = 3600s, .jitter = 0.1, .queue_status = [] { return std::string("queue depth 7"); },
                          .seed = 1});
  const auto started = std::chrono::steady_clock::now();
  source.Start(sink);
  ASSERT_TRUE(PollFor([&] { return !sink.messages().empty(); }, 2s));
  source.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);  // Stop does not wait out the hour
  const auto messages = sink.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].type, protocol::MessageType::kHeartbeat);
  EXPECT_EQ(messages[0].heartbeat.interval_seconds, 3960);  // the interval plus the most jitter can add
  EXPECT_NE(messages[0].heartbeat.status.find("ok; agent " LIFELINE_VERSION "; up "), std::string::npos)
      << messages[0].heartbeat.status;
  EXPECT_NE(messages[0].heartbeat.status.find("queue depth 7"), std::string::npos);
}

TEST(HeartbeatSource, BeatsAgainAfterTheJitteredInterval) {
  CollectingSink sink;
  HeartbeatSource source({.interval = 1s, .jitter = 0.2, .queue_status = {}, .seed = 3});
  source.Start(sink);
  EXPECT_TRUE(PollFor([&] { return sink.messages().size() >= 3; }, 4s));
  source.Stop();
  const auto messages = sink.messages();
  for (std::size_t i = 1; i < messages.size(); ++i) {
    const auto gap = messages[i].timestamp_ms - messages[i - 1].timestamp_ms;
    EXPECT_GE(gap, 790) << i;   // 1 s - 20 %, a little timer slack
    EXPECT_LE(gap, 1400) << i;  // 1 s + 20 %, and scheduling
  }
}

}  // namespace
}  // namespace lifeline::agent
