// The queue's priorities, disk budget and eviction accounting, and the group-commit smoke check.
#include "agent/queue.h"

#include "store/sqlite/database.h"
#include "support/fake_clock.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

namespace lifeline::agent {
namespace {

using lifeline::testing::FakeClock;
using lifeline::testing::TempDir;
using protocol::Message;
using protocol::MessageType;
using protocol::Severity;

constexpr std::int64_t kBudget = 1024 * 1024;

Message Alert(const std::string& code) {
  Message message;
  message.type = MessageType::kAlert;
  message.timestamp_ms = 1'700'000'000'000;
  message.alert = {code, Severity::kCritical, "text", "/var/log/app.log"};
  return message;
}

Message Heartbeat() {
  Message message;
  message.type = MessageType::kHeartbeat;
  message.timestamp_ms = 1'700'000'000'000;
  message.heartbeat = {300, "ok"};
  return message;
}

Message Bulk(MessageType type, std::size_t bytes = 2000) {
  Message message;
  message.type = type;
  message.timestamp_ms = 1'700'000'000'000;
  message.payload_json = "{\"x\":\"" + std::string(bytes, 'p') + "\"}";
  return message;
}

std::unique_ptr<AgentQueue> MustOpen(const std::filesystem::path& path, QueueOptions options = {}) {
  auto queue = AgentQueue::Open(path, options);
  EXPECT_TRUE(queue) << queue.error().message();
  return queue ? std::move(*queue) : nullptr;
}

std::vector<Message> All(AgentQueue& queue) {
  auto messages = queue.Peek(1'000'000);
  EXPECT_TRUE(messages) << messages.error().message();
  return messages ? std::move(*messages) : std::vector<Message>();
}

std::size_t CountType(const std::vector<Message>& messages, MessageType type) {
  std::size_t n = 0;
  for (const auto& m : messages) {
    n += m.type == type ? 1 : 0;
  }
  return n;
}

std::size_t CountCode(const std::vector<Message>& messages, const std::string& code) {
  std::size_t n = 0;
  for (const auto& m : messages) {
    n += m.type == MessageType::kAlert && m.alert.code == code ? 1 : 0;
  }
  return n;
}

// Enqueues `count` drafts of `draft` in batches of 50.
void Flood(AgentQueue& queue, const Message& draft, int count) {
  for (int done = 0; done < count; done += 50) {
    auto stored = queue.Enqueue(std::vector<Message>(std::min(50, count - done), draft));
    ASSERT_TRUE(stored) << stored.error().message();
  }
}

TEST(AgentQueuePriority, PeekReturnsHigherPrioritiesFirstThenCaptureOrder) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  Message clear = Alert("C1");
  clear.type = MessageType::kClear;
  ASSERT_TRUE(queue->Enqueue({Bulk(MessageType::kPerformance, 10), Bulk(MessageType::kInventory, 10),
                              Bulk(MessageType::kConfiguration, 10), Heartbeat(), Alert("A1"), clear,
                              Bulk(MessageType::kPerformance, 11), Alert("A2")}));
  const auto all = All(*queue);
  ASSERT_EQ(all.size(), 8u);
  const std::vector<MessageType> expected = {
      MessageType::kAlert,     MessageType::kClear,         MessageType::kAlert,       MessageType::kHeartbeat,
      MessageType::kInventory, MessageType::kConfiguration, MessageType::kPerformance, MessageType::kPerformance};
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].type, expected[i]) << i;
  }
  EXPECT_EQ(all[0].alert.code, "A1");
  EXPECT_EQ(all[2].alert.code, "A2");
  // Sequence numbers stay in capture order: the first performance message was captured first.
  EXPECT_EQ(all[6].sequence, 1u);
  EXPECT_LT(all[6].sequence, all[7].sequence);
  EXPECT_LT(all[0].sequence, all[2].sequence);
  // A limited peek takes the top of that order.
  auto two = queue->Peek(2);
  ASSERT_TRUE(two);
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[1].type, MessageType::kClear);

  auto stats = queue->Stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->depth[static_cast<int>(QueuePriority::kAlert)], 3);
  EXPECT_EQ(stats->depth[static_cast<int>(QueuePriority::kHeartbeat)], 1);
  EXPECT_EQ(stats->depth[static_cast<int>(QueuePriority::kReport)], 2);
  EXPECT_EQ(stats->depth[static_cast<int>(QueuePriority::kPerformance)], 2);
  EXPECT_EQ(stats->Depth(), 8);
  EXPECT_GT(stats->bytes_used, 0);
  EXPECT_GE(stats->file_bytes, stats->bytes_used);
  EXPECT_TRUE(stats->evicted.empty());
}

TEST(AgentQueuePriority, MigratesAVersionOneFileAndOrdersItsMessages) {
  TempDir dir;
  {
    auto db = store::sqlite::Database::Open(dir / "queue.db");
    ASSERT_TRUE(db);
    ASSERT_TRUE((*db)->Exec(R"sql(
CREATE TABLE messages (send_order INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
  sequence INTEGER NOT NULL UNIQUE, timestamp_ms INTEGER NOT NULL, alert_code TEXT NOT NULL,
  alert_severity TEXT NOT NULL, alert_text TEXT NOT NULL, alert_source TEXT NOT NULL,
  heartbeat_interval_seconds INTEGER NOT NULL, heartbeat_status TEXT NOT NULL, payload_json TEXT NOT NULL);
CREATE TABLE log_positions (path TEXT PRIMARY KEY, device INTEGER NOT NULL, inode INTEGER NOT NULL,
  offset INTEGER NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tickets (message_id TEXT PRIMARY KEY, ticket TEXT NOT NULL, alert_code TEXT NOT NULL,
  received_at_ms INTEGER NOT NULL);
INSERT INTO state (key, value) VALUES ('next_sequence', '3');
INSERT INTO messages VALUES (1, 'aaaa', 'performance', 1, 5, '', 'error', '', '', 0, '', '{}');
INSERT INTO messages VALUES (2, 'bbbb', 'alert', 2, 6, 'X-1', 'critical', 't', 's', 0, '', '');
PRAGMA user_version = 1;
)sql"));
  }
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  auto all = All(*queue);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, "bbbb");
  EXPECT_EQ(all[1].id, "aaaa");
  auto stored = queue->Enqueue({Alert("X-2")});
  ASSERT_TRUE(stored);
  EXPECT_EQ((*stored)[0].sequence, 3u);
}

TEST(AgentQueueBudget, PerformanceFloodStaysWithinBudgetAndEvictsOldestFirst) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db", {.max_bytes = kBudget});
  ASSERT_TRUE(queue);
  ASSERT_TRUE(queue->Enqueue({Alert("EARLY-1"), Heartbeat(), Alert("EARLY-2")}));
  Flood(*queue, Bulk(MessageType::kPerformance), 2000);  // about 4 MiB offered to a 1 MiB budget

  auto stats = queue->Stats();
  ASSERT_TRUE(stats) << stats.error().message();
  // Bounded by the file: pages in use stay at the budget (plus at most one call's estimate error).
  EXPECT_LE(stats->bytes_used, kBudget + 128 * 1024);
  EXPECT_LE(stats->file_bytes, kBudget + 256 * 1024);
  EXPECT_GT(stats->evicted["performance"], 1000);
  EXPECT_EQ(stats->depth[static_cast<int>(QueuePriority::kPerformance)] + stats->evicted["performance"], 2000);

  const auto all = All(*queue);
  EXPECT_EQ(CountCode(all, "EARLY-1"), 1u);
  EXPECT_EQ(CountCode(all, "EARLY-2"), 1u);
  EXPECT_EQ(CountType(all, MessageType::kHeartbeat), 1u);
  // What is left is the newest performance data, without a gap.
  std::vector<std::uint64_t> sequences;
  for (const auto& m : all) {
    if (m.type == MessageType::kPerformance) {
      sequences.push_back(m.sequence);
    }
  }
  ASSERT_FALSE(sequences.empty());
  for (std::size_t i = 1; i < sequences.size(); ++i) {
    EXPECT_EQ(sequences[i], sequences[i - 1] + 1);
  }
  EXPECT_GE(sequences.back(), 2003u);  // the newest survived (eviction alert may take one number)
}

TEST(AgentQueueBudget, BulkNeverPushesOutAlertsOrHeartbeats) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db", {.max_bytes = kBudget});
  ASSERT_TRUE(queue);
  std::vector<Message> drafts;
  for (int i = 0; i < 200; ++i) {
    drafts.push_back(Alert("KEEP-" + std::to_string(i)));
    drafts.push_back(Heartbeat());
  }
  ASSERT_TRUE(queue->Enqueue(drafts));
  Flood(*queue, Bulk(MessageType::kPerformance), 1000);
  Flood(*queue, Bulk(MessageType::kInventory), 1000);
  const auto all = All(*queue);
  EXPECT_EQ(CountType(all, MessageType::kHeartbeat), 200u);
  std::set<std::string> codes;
  for (const auto& m : all) {
    if (m.type == MessageType::kAlert && m.alert.code.starts_with("KEEP-")) {
      codes.insert(m.alert.code);
    }
  }
  EXPECT_EQ(codes.size(), 200u);
}

TEST(AgentQueueBudget, LowerPriorityGoesFirstAndBulkNeverDisplacesHigherBulk) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db", {.max_bytes = kBudget});
  ASSERT_TRUE(queue);
  Flood(*queue, Bulk(MessageType::kPerformance), 200);
  Flood(*queue, Bulk(MessageType::kInventory), 100);  // past the budget: performance makes room
  auto stats = queue->Stats();
  ASSERT_TRUE(stats);
  EXPECT_GT(stats->evicted["performance"], 0);
  EXPECT_EQ(stats->evicted.count("inventory"), 0u) << FormatEvictionCounts(stats->evicted);
  const auto inventory_depth = stats->depth[static_cast<int>(QueuePriority::kReport)];
  EXPECT_EQ(inventory_depth, 100);

  // Fill with inventory until no performance is left, then offer performance: it is the one dropped.
  Flood(*queue, Bulk(MessageType::kInventory), 400);
  stats = queue->Stats();
  ASSERT_TRUE(stats);
  ASSERT_EQ(stats->depth[static_cast<int>(QueuePriority::kPerformance)], 0);
  const auto report_before = stats->depth[static_cast<int>(QueuePriority::kReport)];
  const auto perf_evicted_before = stats->evicted["performance"];
  // Performance offered now fills whatever room is left, then gives way to itself: the inventory stays.
  for (int i = 0; i < 200; ++i) {
    auto stored = queue->Enqueue({Bulk(MessageType::kPerformance)});
    ASSERT_TRUE(stored) << stored.error().message();
  }
  stats = queue->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->depth[static_cast<int>(QueuePriority::kReport)], report_before);
  EXPECT_GT(stats->evicted["performance"], perf_evicted_before + 150);
}

TEST(AgentQueueBudget, AlertsAreKeptOverTheBudget) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db", {.max_bytes = kBudget});
  ASSERT_TRUE(queue);
  Message big = Alert("BIG");
  big.alert.text = std::string(4000, 't');
  Flood(*queue, big, 500);  // about 2 MiB of alerts
  auto stats = queue->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->depth[static_cast<int>(QueuePriority::kAlert)], 500);
  EXPECT_GT(stats->bytes_used, kBudget);
  EXPECT_TRUE(stats->evicted.empty());
}

TEST(AgentQueueBudget, EvictionsAreCountedPersistedReportedAndAlertedHourly) {
  TempDir dir;
  FakeClock clock;
  const QueueOptions options{.max_bytes = kBudget, .clock = &clock};
  auto queue = MustOpen(dir / "queue.db", options);
  ASSERT_TRUE(queue);
  Flood(*queue, Bulk(MessageType::kPerformance), 1000);
  auto all = All(*queue);
  ASSERT_EQ(CountCode(all, std::string(AgentQueue::kEvictionAlertCode)), 1u);
  for (const auto& m : all) {
    if (m.alert.code == AgentQueue::kEvictionAlertCode) {
      EXPECT_EQ(m.alert.severity, Severity::kWarning);
      EXPECT_NE(m.alert.text.find("performance="), std::string::npos) << m.alert.text;
      EXPECT_EQ(m.timestamp_ms, clock.NowUnixMillis());
    }
  }
  // Within the hour: more evictions, no second alert.
  clock.Advance(std::chrono::minutes(30));
  Flood(*queue, Bulk(MessageType::kPerformance), 500);
  EXPECT_EQ(CountCode(All(*queue), std::string(AgentQueue::kEvictionAlertCode)), 1u);

  auto stats = queue->Stats();
  ASSERT_TRUE(stats);
  const auto total = stats->evicted["performance"];
  EXPECT_GT(total, 500);
  auto report = queue->TakeEvictionReport();
  ASSERT_TRUE(report);
  EXPECT_EQ((*report)["performance"], total);
  report = queue->TakeEvictionReport();
  ASSERT_TRUE(report);
  EXPECT_TRUE(report->empty());

  // The counts and the hour survive a restart; after the hour, the next eviction alerts again, with
  // the evictions since the first alert.
  queue.reset();
  queue = MustOpen(dir / "queue.db", options);
  ASSERT_TRUE(queue);
  stats = queue->Stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->evicted["performance"], total);
  EXPECT_TRUE(AgentQueue::kEvictionAlertCode.starts_with("LIFELINE-"));
  EXPECT_FALSE(queue->SetState("queue.evicted.performance", "0"));

  clock.Advance(std::chrono::minutes(31));
  Flood(*queue, Bulk(MessageType::kPerformance), 100);
  EXPECT_EQ(CountCode(All(*queue), std::string(AgentQueue::kEvictionAlertCode)), 2u);
  report = queue->TakeEvictionReport();
  ASSERT_TRUE(report);
  EXPECT_GT((*report)["performance"], 0);
  EXPECT_EQ(FormatEvictionCounts({{"inventory", 2}, {"performance", 5}}), "inventory=2, performance=5");
}

TEST(AgentQueueBudget, GroupCommitTenThousandMessagesInBatchesOfHundredUnderTwoSeconds) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  Message draft = Alert("SIM-3A21F4");
  draft.alert.text = "CRIT controller 0 battery failure, replace within 24 hours";
  const auto start = std::chrono::steady_clock::now();
  for (int batch = 0; batch < 100; ++batch) {
    auto stored = queue->Enqueue(std::vector<Message>(100, draft));
    ASSERT_TRUE(stored) << stored.error().message();
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(2))
      << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms";
  EXPECT_EQ(*queue->Depth(), 10'000);
  std::printf("[ info ] 10,000 messages in 100 commits: %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
}

}  // namespace
}  // namespace lifeline::agent
