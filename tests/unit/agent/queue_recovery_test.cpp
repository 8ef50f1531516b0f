// The queue after a power cut (a truncated queue file, a lost or cut -wal) and on a full disk.
#include "agent/queue.h"

#include "store/sqlite/database.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace lifeline::agent {
namespace {

namespace fs = std::filesystem;
using lifeline::testing::TempDir;
using protocol::Message;
using protocol::MessageType;
using protocol::Severity;

Message Alert(const std::string& code, std::size_t text_bytes = 200) {
  Message message;
  message.type = MessageType::kAlert;
  message.timestamp_ms = 1'700'000'000'000;
  message.alert = {code, Severity::kCritical, std::string(text_bytes, 't'), "/var/log/app.log"};
  return message;
}

Message Performance(std::size_t bytes = 2000) {
  Message message;
  message.type = MessageType::kPerformance;
  message.timestamp_ms = 1'700'000'000'000;
  message.payload_json = "{\"x\":\"" + std::string(bytes, 'p') + "\"}";
  return message;
}

std::vector<fs::path> AsideFiles(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with("queue.db.corrupt-") && !name.ends_with("-wal") && !name.ends_with("-shm")) {
      found.push_back(entry.path());
    }
  }
  return found;
}

// Builds a checkpointed queue of 300 alerts (about 150 KiB) with a saved log position; returns the
// highest sequence it used.
std::uint64_t BuildQueue(const fs::path& path) {
  auto queue = AgentQueue::Open(path);
  EXPECT_TRUE(queue);
  std::uint64_t last = 0;
  for (int batch = 0; batch < 3; ++batch) {
    std::vector<Message> drafts;
    for (int i = 0; i < 100; ++i) {
      drafts.push_back(Alert("SIM-" + std::to_string(batch * 100 + i)));
    }
    auto stored = (*queue)->Enqueue(drafts, std::make_pair(std::string("/var/log/app.log"),
                                                           FilePosition{1, 2, 1000u * (batch + 1)}));
    EXPECT_TRUE(stored);
    last = stored->back().sequence;
  }
  return last;  // closing the last connection checkpoints the WAL into the file
}

// Whatever survived must be whole: every message readable, the queue writable, sequences fresh.
void ExpectUsable(const fs::path& path, std::uint64_t last_sequence, const std::string& what) {
  auto queue = AgentQueue::Open(path);
  ASSERT_TRUE(queue) << what << ": " << queue.error().message();
  auto messages = (*queue)->Peek(10'000);
  ASSERT_TRUE(messages) << what;
  std::set<std::string> ids;
  for (const auto& m : *messages) {
    EXPECT_EQ(m.alert.text.size(), 200u) << what;
    ids.insert(m.id);
  }
  EXPECT_EQ(ids.size(), messages->size()) << what;
  auto stored = (*queue)->Enqueue({Alert("AFTER")});
  ASSERT_TRUE(stored) << what << ": " << stored.error().message();
  EXPECT_GT((*stored)[0].sequence, last_sequence) << what;
  auto depth = (*queue)->Depth();
  ASSERT_TRUE(depth);
  EXPECT_EQ(*depth, static_cast<std::int64_t>(messages->size()) + 1) << what;
}

TEST(AgentQueueRecovery, TruncatedQueueFileIsMovedAsideSalvagedAndReplaced) {
  TempDir dir;
  const auto original = dir / "original.db";
  const std::uint64_t last = BuildQueue(original);
  const auto full_size = fs::file_size(original);
  ASSERT_GT(full_size, 100'000u);
  for (const std::uintmax_t length : {std::uintmax_t{0}, std::uintmax_t{50}, std::uintmax_t{100},
                                      std::uintmax_t{4096}, full_size / 3, full_size / 2,
                                      full_size - 5000, full_size - 1}) {
    TempDir case_dir;
    const auto path = case_dir / "queue.db";
    fs::copy_file(original, path);
    fs::resize_file(path, length);
    const std::string what = "truncated to " + std::to_string(length);
    ExpectUsable(path, length == 0 ? 0 : last, what);
    if (length >= 100 && length <= full_size / 2) {
      // Damage that SQLite can see is moved aside, never deleted.
      EXPECT_EQ(AsideFiles(case_dir.path()).size(), 1u) << what;
    }
  }
}

TEST(AgentQueueRecovery, SalvagesReadableMessagesAndTheLogPosition) {
  TempDir dir;
  const auto path = dir / "queue.db";
  const std::uint64_t last = BuildQueue(path);
  // Cut off the last pages: the first ones (the schema, the state, the oldest rows) stay readable.
  fs::resize_file(path, fs::file_size(path) - 8192);
  auto queue = AgentQueue::Open(path);
  ASSERT_TRUE(queue) << queue.error().message();
  auto position = (*queue)->LoadPosition("/var/log/app.log");
  ASSERT_TRUE(position);
  auto messages = (*queue)->Peek(10'000);
  ASSERT_TRUE(messages);
  // Rows on the cut pages are lost; the rest, the position and the sequence counter come back exact.
  ASSERT_TRUE(position->has_value());
  EXPECT_EQ((*position)->inode, 2u);
  EXPECT_EQ((*position)->offset, 3000u);
  EXPECT_GT(messages->size(), 250u);
  EXPECT_LT(messages->size(), 300u);
  EXPECT_EQ(AsideFiles(dir.path()).size(), 1u);
  auto stored = (*queue)->Enqueue({Alert("AFTER")});
  ASSERT_TRUE(stored);
  EXPECT_GT((*stored)[0].sequence, last);
  std::printf("[ info ] salvaged %zu of 300 messages, position %s\n", messages->size(),
              position->has_value() ? "kept" : "lost");
}

TEST(AgentQueueRecovery, GarbageFileIsReplaced) {
  TempDir dir;
  const auto path = dir / "queue.db";
  lifeline::testing::WriteFile(path, std::string(10'000, 'x'));
  ExpectUsable(path, 0, "garbage");
  EXPECT_EQ(AsideFiles(dir.path()).size(), 1u);
}

TEST(AgentQueueRecovery, LostOrCutWalAfterAPowerCut) {
  TempDir dir;
  const auto live = dir / "live.db";
  auto queue = AgentQueue::Open(live);
  ASSERT_TRUE(queue);
  std::uint64_t last = 0;
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<Message> drafts(100, Alert("W-" + std::to_string(batch)));
    auto stored = (*queue)->Enqueue(drafts);
    ASSERT_TRUE(stored);
    last = stored->back().sequence;
  }
  // The open connection has not checkpointed everything: copy the files as a power cut would leave them.
  const fs::path wal = live.string() + "-wal";
  ASSERT_TRUE(fs::exists(wal));
  const auto wal_size = fs::file_size(wal);
  ASSERT_GT(wal_size, 0u);
  for (const std::uintmax_t cut : {std::uintmax_t{0}, std::uintmax_t{31}, wal_size / 2, wal_size - 100}) {
    for (const bool delete_wal : {false, true}) {
      TempDir case_dir;
      const auto path = case_dir / "queue.db";
      fs::copy_file(live, path);
      if (!delete_wal) {
        fs::copy_file(wal, path.string() + "-wal");
        fs::resize_file(path.string() + "-wal", cut);
      }
      // Losing the -wal loses its last commits (the file is older, not broken); sequence numbers may
      // then be given again, which the home tolerates: messages are told apart by their random ids.
      ExpectUsable(path, 0, (delete_wal ? "deleted wal" : "wal cut to " + std::to_string(cut)));
    }
  }
  EXPECT_GT(last, 0u);
}

// A real full file system: an 8 MiB tmpfs (needs root; skipped, and said so, where mounting is refused).
class MountedTmpfs {
 public:
  explicit MountedTmpfs(const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir_);
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=8m") == 0;
  }
  ~MountedTmpfs() {
    if (mounted_) {
      ::umount2(dir_.c_str(), MNT_DETACH);
    }
  }
  bool mounted() const { return mounted_; }

 private:
  fs::path dir_;
  bool mounted_ = false;
};

TEST(AgentQueueRecovery, FullDiskEvictsBulkFirstThenRefusesWithoutDamage) {
  TempDir dir;
  MountedTmpfs disk(dir / "small");
  if (!disk.mounted()) {
    GTEST_SKIP() << "mount -t tmpfs is not permitted here; full-disk test skipped";
  }
  const auto path = dir / "small" / "queue.db";
  // A budget far above the disk: only the disk stops it.
  auto queue = AgentQueue::Open(path, {.max_bytes = 1LL << 30});
  ASSERT_TRUE(queue) << queue.error().message();

  // Performance data fills the disk; each further batch makes room by evicting older performance data.
  int refused = 0;
  for (int i = 0; i < 100; ++i) {
    auto stored = (*queue)->Enqueue(std::vector<Message>(20, Performance()));
    refused += stored ? 0 : 1;
  }
  auto stats = (*queue)->Stats();
  ASSERT_TRUE(stats);
  EXPECT_GT(stats->evicted["performance"], 0) << "the disk never filled";
  EXPECT_LT(refused, 100);

  // Alerts are never evicted: they fill the disk until the queue says it is full.
  int alerts_stored = 0;
  std::error_code full;
  for (int i = 0; i < 5000 && !full; ++i) {
    auto stored = (*queue)->Enqueue({Alert("FULL-" + std::to_string(i), 2000)});
    if (stored) {
      ++alerts_stored;
    } else {
      full = stored.error();
    }
  }
  ASSERT_TRUE(full) << "5000 alerts of 2 KiB fit on an 8 MiB disk?";
  EXPECT_EQ(full, store::sqlite::MakeError(13 /* SQLITE_FULL */)) << full.message();
  // Every alert stored is there, beside the one eviction alert; the performance data made room first.
  auto full_stats = (*queue)->Stats();
  ASSERT_TRUE(full_stats) << full_stats.error().message();
  EXPECT_EQ(full_stats->depth[static_cast<int>(QueuePriority::kAlert)], alerts_stored + 1);
  EXPECT_EQ(full_stats->depth[static_cast<int>(QueuePriority::kPerformance)], 0);
  EXPECT_GT(alerts_stored, 500);

  // Nothing is damaged: what was stored reads back, sending (removal) works, then new alerts fit again.
  auto head = (*queue)->Peek(50);
  ASSERT_TRUE(head) << head.error().message();
  std::vector<std::string> ids;
  for (const auto& m : *head) {
    ids.push_back(m.id);
  }
  auto removed = (*queue)->Remove(ids);
  ASSERT_TRUE(removed) << removed.error().message();
  auto again = (*queue)->Enqueue({Alert("AFTER-ROOM", 2000)});
  EXPECT_TRUE(again) << again.error().message();
  queue->reset();
  auto reopened = AgentQueue::Open(path);
  ASSERT_TRUE(reopened) << reopened.error().message();
  EXPECT_TRUE(AsideFiles(dir / "small").empty());
  auto depth = (*reopened)->Depth();
  ASSERT_TRUE(depth);
  EXPECT_GE(*depth, alerts_stored - 50);
}

}  // namespace
}  // namespace lifeline::agent
