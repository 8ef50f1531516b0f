#include "agent/queue.h"

#include "store/sqlite/database.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace lifeline::agent {
namespace {

using lifeline::testing::TempDir;
using protocol::Message;
using protocol::MessageType;
using protocol::Severity;

std::unique_ptr<AgentQueue> MustOpen(const std::filesystem::path& path) {
  auto queue = AgentQueue::Open(path);
  EXPECT_TRUE(queue) << queue.error().message();
  return queue ? std::move(*queue) : nullptr;
}

Message Alert(const std::string& code, const std::string& text = "text") {
  Message message;
  message.type = MessageType::kAlert;
  message.timestamp_ms = 1'700'000'000'000;
  message.alert = {code, Severity::kCritical, text, "/var/log/app.log"};
  return message;
}

bool IsId(const std::string& id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::vector<Message> MustPeek(AgentQueue& queue, std::size_t max = 1000) {
  auto messages = queue.Peek(max);
  EXPECT_TRUE(messages) << messages.error().message();
  return messages ? std::move(*messages) : std::vector<Message>();
}

TEST(AgentQueue, EnqueueAssignsFreshIdsAndIncreasingSequences) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  Message draft = Alert("A");
  draft.id = "caller-supplied";
  draft.sequence = 999;
  auto stored = queue->Enqueue({draft, Alert("B"), Alert("C")});
  ASSERT_TRUE(stored) << stored.error().message();
  ASSERT_EQ(stored->size(), 3u);
  std::set<std::string> ids;
  for (std::size_t i = 0; i < stored->size(); ++i) {
    EXPECT_TRUE(IsId((*stored)[i].id)) << (*stored)[i].id;
    ids.insert((*stored)[i].id);
    EXPECT_EQ((*stored)[i].sequence, i + 1);
  }
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(*queue->Depth(), 3);
}

TEST(AgentQueue, PeekReturnsOldestFirstWithEveryField) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  Message heartbeat;
  heartbeat.type = MessageType::kHeartbeat;
  heartbeat.timestamp_ms = 42;
  heartbeat.heartbeat = {300, "ok; queue 0"};
  Message inventory;
  inventory.type = MessageType::kInventory;
  inventory.timestamp_ms = 43;
  inventory.payload_json = R"({"disks":["sda"]})";
  Message alert = Alert("SIM-1", "caf\xC3\xA9 text");
  alert.alert.severity = Severity::kWarning;
  ASSERT_TRUE(queue->Enqueue({alert}));
  ASSERT_TRUE(queue->Enqueue({heartbeat, inventory}));

  const auto two = MustPeek(*queue, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].alert.code, "SIM-1");
  EXPECT_EQ(two[1].type, MessageType::kHeartbeat);

  const auto all = MustPeek(*queue);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].type, MessageType::kAlert);
  EXPECT_EQ(all[0].timestamp_ms, alert.timestamp_ms);
  EXPECT_EQ(all[0].alert.severity, Severity::kWarning);
  EXPECT_EQ(all[0].alert.text, "caf\xC3\xA9 text");
  EXPECT_EQ(all[0].alert.source, "/var/log/app.log");
  EXPECT_EQ(all[1].heartbeat.interval_seconds, 300);
  EXPECT_EQ(all[1].heartbeat.status, "ok; queue 0");
  EXPECT_EQ(all[1].timestamp_ms, 42);
  EXPECT_EQ(all[2].type, MessageType::kInventory);
  EXPECT_EQ(all[2].payload_json, R"({"disks":["sda"]})");
  EXPECT_LT(all[0].sequence, all[1].sequence);
  EXPECT_LT(all[1].sequence, all[2].sequence);
}

TEST(AgentQueue, SequencesKeepIncreasingAfterRemoveAndReopen) {
  TempDir dir;
  const auto path = dir / "queue.db";
  {
    auto queue = MustOpen(path);
    ASSERT_TRUE(queue);
    auto stored = queue->Enqueue({Alert("A"), Alert("B"), Alert("C")});
    ASSERT_TRUE(stored);
    std::vector<std::string> ids;
    for (const auto& m : *stored) {
      ids.push_back(m.id);
    }
    ASSERT_TRUE(queue->Remove(ids));
    EXPECT_EQ(*queue->Depth(), 0);
    auto next = queue->Enqueue({Alert("D")});
    ASSERT_TRUE(next);
    EXPECT_EQ((*next)[0].sequence, 4u);
    ASSERT_TRUE(queue->Remove({(*next)[0].id, "no-such-id"}));
  }
  auto reopened = MustOpen(path);
  ASSERT_TRUE(reopened);
  auto after = reopened->Enqueue({Alert("E")});
  ASSERT_TRUE(after);
  EXPECT_EQ((*after)[0].sequence, 5u);
}

TEST(AgentQueue, AcknowledgeRemovesAnsweredMessagesAndRecordsTickets) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  auto stored = queue->Enqueue({Alert("DISK-1"), Alert("FAN-2"), Alert("PSU-3")});
  ASSERT_TRUE(stored);
  const auto& m = *stored;

  protocol::BatchReply reply;
  reply.batch_id = "b1";
  reply.results.push_back({m[0].id, protocol::MessageStatus::kAccepted, "", "T-100", false});
  reply.results.push_back({m[1].id, protocol::MessageStatus::kRejected, "below ticket severity", "", false});
  reply.results.push_back({"unknown-id", protocol::MessageStatus::kAccepted, "", "", false});
  ASSERT_TRUE(queue->Acknowledge(reply, 1'700'000'123'456));

  const auto left = MustPeek(*queue);
  ASSERT_EQ(left.size(), 1u);  // the unanswered one stays, whatever the reply said about others
  EXPECT_EQ(left[0].id, m[2].id);
  auto tickets = queue->RecentTickets(10);
  ASSERT_TRUE(tickets);
  ASSERT_EQ(tickets->size(), 1u);
  EXPECT_EQ((*tickets)[0].message_id, m[0].id);
  EXPECT_EQ((*tickets)[0].ticket, "T-100");
  EXPECT_EQ((*tickets)[0].alert_code, "DISK-1");
  EXPECT_EQ((*tickets)[0].received_at_ms, 1'700'000'123'456);
  auto contact = queue->GetState(std::string(AgentQueue::kLastContactKey));
  ASSERT_TRUE(contact);
  EXPECT_EQ(*contact, std::optional<std::string>("1700000123456"));

  // The same answer again (a duplicate reply) keeps the recorded alert code.
  ASSERT_TRUE(queue->Acknowledge(reply, 1'700'000'200'000));
  tickets = queue->RecentTickets(10);
  ASSERT_TRUE(tickets);
  ASSERT_EQ(tickets->size(), 1u);
  EXPECT_EQ((*tickets)[0].alert_code, "DISK-1");
}

TEST(AgentQueue, RecentTicketsNewestFirst) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  ASSERT_TRUE(queue->RecordTicket("m1", "A", "T-1", 1));
  ASSERT_TRUE(queue->RecordTicket("m2", "B", "T-2", 2));
  ASSERT_TRUE(queue->RecordTicket("m3", "C", "T-3", 3));
  auto tickets = queue->RecentTickets(2);
  ASSERT_TRUE(tickets);
  ASSERT_EQ(tickets->size(), 2u);
  EXPECT_EQ((*tickets)[0].ticket, "T-3");
  EXPECT_EQ((*tickets)[1].ticket, "T-2");
}

TEST(AgentQueue, PositionIsSavedAtomicallyWithTheMessages) {
  TempDir dir;
  const auto path = dir / "queue.db";
  const FilePosition position{12, 345, 6789};
  {
    auto queue = MustOpen(path);
    ASSERT_TRUE(queue);
    auto none = queue->LoadPosition("/var/log/app.log");
    ASSERT_TRUE(none);
    EXPECT_FALSE(none->has_value());
    ASSERT_TRUE(queue->Enqueue({Alert("A"), Alert("B")}, std::make_pair(std::string("/var/log/app.log"), position)));
  }
  auto reopened = MustOpen(path);
  ASSERT_TRUE(reopened);
  auto loaded = reopened->LoadPosition("/var/log/app.log");
  ASSERT_TRUE(loaded);
  EXPECT_EQ(*loaded, std::optional<FilePosition>(position));
  EXPECT_EQ(*reopened->Depth(), 2);

  // Lines that matched no rule: only the position moves. Large values survive SQLite's int64.
  const FilePosition big{~0ULL, (1ULL << 63) + 5, 1ULL << 40};
  ASSERT_TRUE(reopened->Enqueue({}, std::make_pair(std::string("/var/log/app.log"), big)));
  EXPECT_EQ(*reopened->LoadPosition("/var/log/app.log"), std::optional<FilePosition>(big));
  EXPECT_EQ(*reopened->Depth(), 2);
}

TEST(AgentQueue, StateRoundTripsAndTheSequenceCounterIsNotSettable) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  EXPECT_FALSE(queue->GetState("enrolled_at")->has_value());
  ASSERT_TRUE(queue->SetState("enrolled_at", "123"));
  ASSERT_TRUE(queue->SetState("enrolled_at", "456"));
  EXPECT_EQ(*queue->GetState("enrolled_at"), std::optional<std::string>("456"));
  auto refused = queue->SetState(std::string(AgentQueue::kNextSequenceKey), "1");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), make_error_code(Errc::kReservedStateKey));
}

TEST(AgentQueue, OpenForStatusNeverCreatesTheFile) {
  TempDir dir;
  const auto path = dir / "queue.db";
  auto missing = AgentQueue::OpenForStatus(path);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), make_error_code(Errc::kQueueMissing));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(AgentQueue, StatusReadsBesideARunningWriterAndAfterIt) {
  TempDir dir;
  const auto path = dir / "queue.db";
  {
    auto writer = MustOpen(path);
    ASSERT_TRUE(writer);
    ASSERT_TRUE(writer->Enqueue({Alert("A"), Alert("B")}));
    auto status = AgentQueue::OpenForStatus(path);
    ASSERT_TRUE(status) << status.error().message();
    EXPECT_EQ(*(*status)->Depth(), 2);
    ASSERT_TRUE(writer->Enqueue({Alert("C")}));
    EXPECT_EQ(*(*status)->Depth(), 3);  // sees new commits
    EXPECT_FALSE((*status)->SetState("x", "y"));  // read-only
  }
  auto status = AgentQueue::OpenForStatus(path);
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_EQ(*(*status)->Depth(), 3);
}

TEST(AgentQueue, ConcurrentEnqueueAndAcknowledgeFromTwoThreads) {
  TempDir dir;
  auto queue = MustOpen(dir / "queue.db");
  ASSERT_TRUE(queue);
  constexpr int kMessages = 60;
  std::thread capture([&] {
    for (int i = 0; i < kMessages; ++i) {
      EXPECT_TRUE(queue->Enqueue({Alert("A" + std::to_string(i))}));
    }
  });
  int acknowledged = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(8);
  while (acknowledged < kMessages && std::chrono::steady_clock::now() < deadline) {
    auto batch = queue->Peek(10);
    ASSERT_TRUE(batch);
    protocol::BatchReply reply;
    for (const auto& m : *batch) {
      reply.results.push_back({m.id, protocol::MessageStatus::kAccepted, "", "", false});
    }
    ASSERT_TRUE(queue->Acknowledge(reply, 1));
    acknowledged += static_cast<int>(batch->size());
  }
  capture.join();
  EXPECT_EQ(acknowledged, kMessages);
  EXPECT_EQ(*queue->Depth(), 0);
}

// The child process: appends batches of kBatch alerts, each with the log position that counts them,
// until it is killed. Text of each alert = its expected sequence number.
constexpr int kBatch = 3;
[[noreturn]] void EnqueueUntilKilled(const std::filesystem::path& path, int ready_fd) {
  auto queue = AgentQueue::Open(path);
  if (!queue) {
    _exit(2);
  }
  auto position = (*queue)->LoadPosition("app.log");
  if (!position) {
    _exit(3);
  }
  std::uint64_t count = position->has_value() ? (*position)->offset : 0;
  (void)!::write(ready_fd, "r", 1);
  for (;;) {
    std::vector<Message> drafts;
    for (int i = 0; i < kBatch; ++i) {
      drafts.push_back(Alert("CRASH", std::to_string(count + i + 1)));
    }
    if (!(*queue)->Enqueue(std::move(drafts),
                           std::make_pair(std::string("app.log"), FilePosition{1, 2, count + kBatch}))) {
      _exit(4);
    }
    count += kBatch;
  }
}

TEST(AgentQueueCrash, SigkillWhileEnqueueingLeavesAConsistentQueue) {
  TempDir dir;
  const auto path = dir / "queue.db";
  std::mt19937 random(20261121);
  std::uniform_int_distribution<int> delay_ms(0, 60);
  std::uint64_t committed = 0;
  for (int round = 0; round < 20; ++round) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(ready[0]);
      EnqueueUntilKilled(path, ready[1]);
    }
    ::close(ready[1]);
    // Every third round kills without waiting, possibly while the file is being opened or migrated.
    if (round % 3 != 0) {
      char byte = 0;
      ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child could not open the queue";
    }
    ::close(ready[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited with " << WEXITSTATUS(status);

    {
      auto db = store::sqlite::Database::Open(path);
      ASSERT_TRUE(db);
      auto check = (*db)->Prepare("PRAGMA integrity_check");
      ASSERT_TRUE(check);
      ASSERT_TRUE(*check->Step());
      EXPECT_EQ(check->Text(0), "ok");
    }
    auto queue = MustOpen(path);
    ASSERT_TRUE(queue) << "round " << round;
    const auto messages = MustPeek(*queue, 1'000'000);
    auto position = queue->LoadPosition("app.log");
    ASSERT_TRUE(position);
    const std::uint64_t saved = position->has_value() ? (*position)->offset : 0;
    // Messages and position come from the same transactions: both or neither.
    ASSERT_EQ(messages.size(), saved) << "round " << round;
    ASSERT_EQ(saved % kBatch, 0u);
    ASSERT_GE(saved, committed) << "committed data was lost";
    std::set<std::string> ids;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      ASSERT_EQ(messages[i].sequence, i + 1) << "round " << round;
      ASSERT_EQ(messages[i].alert.text, std::to_string(i + 1));
      ASSERT_TRUE(IsId(messages[i].id));
      ids.insert(messages[i].id);
    }
    ASSERT_EQ(ids.size(), messages.size());
    committed = saved;
  }
  RecordProperty("committed_messages", static_cast<int>(committed));
  EXPECT_GT(committed, 0u) << "no child ever committed anything; the test proved nothing";
}

}  // namespace
}  // namespace lifeline::agent
