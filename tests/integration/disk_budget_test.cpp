// Disk budget test (issue 3 acceptance): with the home down, performance data fills the agent's queue
// past its budget ([queue] max_bytes = 2 MiB); alerts raised meanwhile and the agent's heartbeat are never
// pushed out and get through when the home comes back; the evictions are counted in the queue and
// reported home as a LIFELINE-QUEUE-EVICTION alert.
//
// The performance data is written through AgentQueue by this test process into the agent's own queue file
// (before the agent starts and again while it runs: SQLite lets both processes write it), since no report
// source of the agent produces 6 MiB on demand; the budget, eviction and delivery are the agent's own.
#include "agent/queue.h"
#include "store/sqlite/database.h"
#include "support/harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

namespace lifeline::testing {
namespace {

constexpr std::int64_t kBudget = 2 * 1024 * 1024;

protocol::Message Performance(int n) {
  protocol::Message message;
  message.type = protocol::MessageType::kPerformance;
  message.timestamp_ms = 1'700'000'000'000 + n;
  message.payload_json = fmt::format(R"({{"sample":{},"cpu":"{}"}})", n, std::string(2000, '7'));
  return message;
}

void FloodPerformance(const fs::path& queue_path, int count) {
  auto queue = agent::AgentQueue::Open(queue_path, {.max_bytes = kBudget});
  ASSERT_TRUE(queue) << queue.error().message();
  for (int done = 0; done < count; done += 100) {
    std::vector<protocol::Message> drafts;
    for (int i = done; i < done + 100; ++i) {
      drafts.push_back(Performance(i));
    }
    auto stored = (*queue)->Enqueue(std::move(drafts));
    ASSERT_TRUE(stored) << stored.error().message();
  }
}

agent::QueueStats QueueStatsOf(const fs::path& queue_path) {
  auto queue = agent::AgentQueue::Open(queue_path, {.max_bytes = kBudget});
  EXPECT_TRUE(queue) << queue.error().message();
  auto stats = (*queue)->Stats();
  EXPECT_TRUE(stats) << stats.error().message();
  return stats ? *stats : agent::QueueStats{};
}

// Accepted events at the home by type, and the texts of the eviction alerts.
struct HomeEvents {
  std::map<std::string, std::int64_t> by_type;
  std::vector<std::string> eviction_texts;
  std::set<std::string> alert_codes;
};

HomeEvents ReadHomeEvents(const TestHome& home) {
  HomeEvents events;
  auto db = store::sqlite::Database::Open(home.dir() / "home.db", {.read_only = true});
  EXPECT_TRUE(db) << db.error().message();
  if (!db) {
    return events;
  }
  auto select = (*db)->Prepare("SELECT type, code, text FROM events WHERE result_status = 'accepted'");
  EXPECT_TRUE(select);
  while (select) {
    auto row = select->Step();
    if (!row || !*row) {
      break;
    }
    const auto type = select->Text(0);
    ++events.by_type[type];
    if (type == "alert") {
      events.alert_codes.insert(select->Text(1));
      if (select->Text(1) == agent::AgentQueue::kEvictionAlertCode) {
        events.eviction_texts.push_back(select->Text(2));
      }
    }
  }
  return events;
}

TEST(DiskBudget, PerformanceFloodEvictsBulkOnlyAndAlertsHeartbeatsAndTheEvictionReportGetThrough) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port(), {"oncall@example.com"});
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-4001", fmt::format("[queue]\nmax_bytes = {}\n", kBudget));
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  home.Stop();  // unreachable from here on

  const fs::path queue_path = dir / "agent" / "state" / "queue.db";
  fs::create_directories(queue_path.parent_path());
  // About 6 MiB of performance data offered to a 2 MiB budget.
  FloodPerformance(queue_path, 3000);
  auto stats = QueueStatsOf(queue_path);
  EXPECT_GT(stats.evicted["performance"], 1000);
  EXPECT_LE(stats.bytes_used, kBudget + 256 * 1024);

  agent.Start();  // queues its start-up heartbeat
  for (int i = 0; i < 20; ++i) {
    agent.AppendLine(fmt::format("CRIT SIM={:06X} disk budget alert {}", 0xD00000 + i, i));
  }
  ASSERT_TRUE(Eventually(
      [&] {
        auto s = QueueStatsOf(queue_path);
        // 20 alerts and the eviction alert; the heartbeat.
        return s.depth[static_cast<int>(agent::QueuePriority::kAlert)] >= 21 &&
               s.depth[static_cast<int>(agent::QueuePriority::kHeartbeat)] >= 1;
      },
      std::chrono::seconds(20)))
      << agent.AgentLogText();
  // More performance data while the agent runs and the home is still down: it evicts older performance
  // data again and never the alerts or the heartbeat.
  FloodPerformance(queue_path, 2000);
  stats = QueueStatsOf(queue_path);
  EXPECT_GE(stats.depth[static_cast<int>(agent::QueuePriority::kAlert)], 21);
  EXPECT_GE(stats.depth[static_cast<int>(agent::QueuePriority::kHeartbeat)], 1);
  EXPECT_GT(stats.evicted["performance"], 2500);
  EXPECT_LE(stats.bytes_used, kBudget + 256 * 1024);
  const auto performance_left = stats.depth[static_cast<int>(agent::QueuePriority::kPerformance)];
  EXPECT_GT(performance_left, 0);

  home.Start();
  ASSERT_TRUE(Eventually(
      [&] {
        auto s = QueueStatsOf(queue_path);
        return s.Depth() == 0;
      },
      std::chrono::seconds(40)))
      << agent.AgentLogText();

  const auto events = ReadHomeEvents(home);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(events.alert_codes.count(fmt::format("SIM-{:06X}", 0xD00000 + i)), 1u) << i;
  }
  EXPECT_GE(events.by_type.count("heartbeat") ? events.by_type.at("heartbeat") : 0, 1);
  EXPECT_EQ(events.by_type.count("performance") ? events.by_type.at("performance") : 0, performance_left);
  // The evictions were reported home: an alert naming the counts (one per hour at most, so one here).
  ASSERT_EQ(events.eviction_texts.size(), 1u);
  EXPECT_NE(events.eviction_texts[0].find("performance="), std::string::npos) << events.eviction_texts[0];
  EXPECT_EQ(home.Stat("alerts"), 21);

  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
