#include "agent/queue.h"

#include "common/log.h"
#include "store/sqlite/database.h"

#include <fmt/format.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <ctime>

namespace lifeline::agent {
namespace {

using store::sqlite::Database;
using store::sqlite::Statement;

// Schema steps: kMigrations[i] takes the file from version i to i + 1 (PRAGMA user_version).
constexpr std::array<std::string_view, 3> kMigrations = {
    R"sql(
CREATE TABLE messages (
  send_order     INTEGER PRIMARY KEY,  -- rowid: capture order
  id             TEXT NOT NULL UNIQUE,
  type           TEXT NOT NULL,
  sequence       INTEGER NOT NULL UNIQUE,
  timestamp_ms   INTEGER NOT NULL,
  alert_code     TEXT NOT NULL,
  alert_severity TEXT NOT NULL,
  alert_text     TEXT NOT NULL,
  alert_source   TEXT NOT NULL,
  heartbeat_interval_seconds INTEGER NOT NULL,
  heartbeat_status TEXT NOT NULL,
  payload_json   TEXT NOT NULL
);
CREATE TABLE log_positions (
  path   TEXT PRIMARY KEY,
  device INTEGER NOT NULL,  -- uint64 values stored bit for bit in SQLite's int64
  inode  INTEGER NOT NULL,
  offset INTEGER NOT NULL
);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tickets (
  message_id     TEXT PRIMARY KEY,
  ticket         TEXT NOT NULL,
  alert_code     TEXT NOT NULL,
  received_at_ms INTEGER NOT NULL
);
INSERT INTO state (key, value) VALUES ('next_sequence', '1');
)sql",
    // Priorities (QueuePriority) and the estimated stored size of each row (EstimatedBytes).
    R"sql(
ALTER TABLE messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET
  priority = CASE type WHEN 'alert' THEN 0 WHEN 'clear' THEN 0 WHEN 'heartbeat' THEN 1
                       WHEN 'performance' THEN 3 ELSE 2 END,
  size = 160 + length(CAST(id AS BLOB)) + length(CAST(type AS BLOB)) + length(CAST(alert_code AS BLOB))
       + length(CAST(alert_text AS BLOB)) + length(CAST(alert_source AS BLOB))
       + length(CAST(heartbeat_status AS BLOB)) + length(CAST(payload_json AS BLOB));
CREATE INDEX messages_by_priority ON messages (priority, send_order);
)sql",
    // Review before sending: held messages wait for a local operator's approval.
    R"sql(
ALTER TABLE messages ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
)sql"};

constexpr std::string_view kMessageColumns =
    "id, type, sequence, timestamp_ms, alert_code, alert_severity, alert_text, alert_source, "
    "heartbeat_interval_seconds, heartbeat_status, payload_json";

// State keys of the queue's own (SetState refuses the "queue." prefix).
constexpr std::string_view kEvictedPrefix = "queue.evicted.";                // total per type
constexpr std::string_view kUnreportedPrefix = "queue.evicted_unreported.";  // not yet taken
constexpr std::string_view kUnalertedPrefix = "queue.evicted_unalerted.";    // not yet in an alert
constexpr std::string_view kEvictionAlertKey = "queue.eviction_alert_ms";

// A row's record, its cell and its three index entries beside the text it holds. Deliberately a
// little generous: the budget is checked against real page use at the start of each call and this
// estimate only carries it through the call.
constexpr std::int64_t kRowOverheadBytes = 160;

constexpr int kSqliteCorrupt = SQLITE_CORRUPT;
constexpr int kSqliteNotADb = SQLITE_NOTADB;
constexpr int kSqliteFull = SQLITE_FULL;

constexpr auto kLoudLogInterval = std::chrono::minutes(1);

std::shared_ptr<spdlog::logger> Log() { return log::Get("agent"); }

std::int64_t AsStored(std::uint64_t value) { return static_cast<std::int64_t>(value); }
std::uint64_t AsLoaded(std::int64_t value) { return static_cast<std::uint64_t>(value); }

bool IsSqlite(const std::error_code& ec, int code) {
  return ec.category() == store::sqlite::Category() && ec.value() == code;
}
bool IsCorruption(const std::error_code& ec) {
  return IsSqlite(ec, kSqliteCorrupt) || IsSqlite(ec, kSqliteNotADb);
}

std::int64_t EstimatedBytes(const protocol::Message& m) {
  return kRowOverheadBytes + static_cast<std::int64_t>(m.id.size() + protocol::ToString(m.type).size() +
                                                       m.alert.code.size() + m.alert.text.size() +
                                                       m.alert.source.size() + m.heartbeat.status.size() +
                                                       m.payload_json.size());
}

// 128 random bits as 32 lowercase hex characters, from the kernel's CSPRNG.
// Time-ordered: 48 bits of Unix milliseconds, then 80 random bits. New ids land at the end of the
// UNIQUE index instead of all over it (measured: it keeps group commits fast as the queue grows), and
// 80 random bits per millisecond keep them unique and unguessable enough for ids (they are not secrets).
Result<std::string> RandomId() {
  std::array<unsigned char, 16> bytes{};
  const auto now_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  for (int i = 0; i < 6; ++i) {
    bytes[i] = static_cast<unsigned char>(now_ms >> (8 * (5 - i)));
  }
  std::size_t filled = 6;
  while (filled < bytes.size()) {
    const ssize_t n = ::getrandom(bytes.data() + filled, bytes.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Fail(Errc::kNoRandomness);
    }
    filled += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    id[2 * i] = kHex[bytes[i] >> 4];
    id[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  return id;
}

Result<std::int64_t> QueryInt(Database& db, std::string_view sql) {
  auto statement = db.Prepare(sql);
  if (!statement) {
    return statement.error();
  }
  auto row = statement->Step();
  if (!row) {
    return row.error();
  }
  return *row ? statement->Int(0) : 0;
}

Result<std::int64_t> ReadUserVersion(Database& db) { return QueryInt(db, "PRAGMA user_version"); }

bool ParseInt(const std::string& text, std::int64_t* out) {
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), *out);
  return parsed.ec == std::errc() && parsed.ptr == text.data() + text.size();
}

Result<protocol::Message> ReadMessage(const Statement& row) {
  protocol::Message message;
  message.id = row.Text(0);
  const auto type = protocol::ParseMessageType(row.Text(1));
  const auto severity = protocol::ParseSeverity(row.Text(5));
  if (!type || !severity) {
    return Fail(Errc::kQueueCorrupt);
  }
  message.type = *type;
  message.sequence = AsLoaded(row.Int(2));
  message.timestamp_ms = row.Int(3);
  message.alert.code = row.Text(4);
  message.alert.severity = *severity;
  message.alert.text = row.Text(6);
  message.alert.source = row.Text(7);
  message.heartbeat.interval_seconds = row.Int(8);
  message.heartbeat.status = row.Text(9);
  message.payload_json = row.Text(10);
  return message;
}

// Reads every row of a SELECT of kMessageColumns into `out`.
VoidResult AppendRows(Statement& select, std::vector<protocol::Message>* out) {
  for (;;) {
    auto row = select.Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return {};
    }
    auto message = ReadMessage(select);
    if (!message) {
      return message.error();
    }
    out->push_back(std::move(*message));
  }
}

VoidResult InsertMessage(Statement& insert, const protocol::Message& message) {
  insert.Reset();
  insert.BindAll(message.id, protocol::ToString(message.type), AsStored(message.sequence), message.timestamp_ms,
                 message.alert.code, protocol::ToString(message.alert.severity), message.alert.text,
                 message.alert.source, message.heartbeat.interval_seconds, message.heartbeat.status,
                 message.payload_json, static_cast<std::int64_t>(PriorityOf(message.type)),
                 EstimatedBytes(message));
  return insert.Run();
}

Result<Statement> PrepareInsert(Database& db) {
  return db.Prepare(std::string("INSERT INTO messages (") + std::string(kMessageColumns) +
                    ", priority, size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
}

VoidResult UpsertState(Database& db, std::string_view key, const std::string& value) {
  auto upsert = db.Prepare(
      "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  if (!upsert) {
    return upsert.error();
  }
  upsert->BindAll(key, value);
  return upsert->Run();
}

// Counters stored under `prefix` + type name, as a map by type name.
Result<EvictionCounts> ReadCounts(Database& db, std::string_view prefix) {
  auto select = db.Prepare("SELECT key, value FROM state WHERE substr(key, 1, ?) = ?");
  if (!select) {
    return select.error();
  }
  select->BindAll(static_cast<std::int64_t>(prefix.size()), prefix);
  EvictionCounts counts;
  for (;;) {
    auto row = select->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      break;
    }
    std::int64_t value = 0;
    if (ParseInt(select->Text(1), &value) && value != 0) {
      counts[select->Text(0).substr(prefix.size())] = value;
    }
  }
  return counts;
}

VoidResult ClearCounts(Database& db, std::string_view prefix) {
  auto remove = db.Prepare("DELETE FROM state WHERE substr(key, 1, ?) = ?");
  if (!remove) {
    return remove.error();
  }
  remove->BindAll(static_cast<std::int64_t>(prefix.size()), prefix);
  return remove->Run();
}

VoidResult AddCounts(Database& db, std::string_view prefix, const EvictionCounts& counts) {
  auto add = db.Prepare(
      "INSERT INTO state (key, value) VALUES (?1, ?2) "
      "ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + ?2 AS TEXT)");
  if (!add) {
    return add.error();
  }
  for (const auto& [type, count] : counts) {
    add->Reset();
    add->BindAll(std::string(prefix) + type, count);
    if (auto ran = add->Run(); !ran) {
      return ran;
    }
  }
  return {};
}

std::string UtcStamp(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  std::array<char, 32> text{};
  std::strftime(text.data(), text.size(), "%Y%m%dT%H%M%SZ", &tm);
  return text.data();
}

// What could still be read from a corrupt queue file.
struct Salvage {
  std::vector<protocol::Message> messages;
  std::vector<std::pair<std::string, FilePosition>> positions;
  std::vector<std::pair<std::string, std::string>> state;
  bool read_state = false;
};

// Reads row by row and keeps what came before the first error: a damaged page ends a table's
// salvage, not the recovery.
Salvage SalvageFrom(const std::filesystem::path& aside) {
  Salvage salvage;
  // Read-only: the pragmas a writer sets need the schema, and a root page lost to truncation makes
  // SQLite refuse the whole schema. With writable_schema on it skips the bad entry and the tables whose
  // pages are still there can be read.
  Database::Options read_only;
  read_only.read_only = true;
  auto db = Database::Open(aside, read_only);
  if (!db) {
    return salvage;
  }
  (void)(*db)->Exec("PRAGMA writable_schema=ON");
  if (auto select = (*db)->Prepare(std::string("SELECT ") + std::string(kMessageColumns) +
                                   " FROM messages ORDER BY send_order")) {
    for (;;) {
      auto row = select->Step();
      if (!row || !*row) {
        break;
      }
      if (auto message = ReadMessage(*select)) {
        salvage.messages.push_back(std::move(*message));
      }
    }
  }
  if (auto select = (*db)->Prepare("SELECT path, device, inode, offset FROM log_positions")) {
    for (;;) {
      auto row = select->Step();
      if (!row || !*row) {
        break;
      }
      salvage.positions.emplace_back(
          select->Text(0), FilePosition{AsLoaded(select->Int(1)), AsLoaded(select->Int(2)),
                                        AsLoaded(select->Int(3))});
    }
  }
  if (auto select = (*db)->Prepare("SELECT key, value FROM state")) {
    for (;;) {
      auto row = select->Step();
      if (!row) {
        break;
      }
      if (!*row) {
        salvage.read_state = true;
        break;
      }
      salvage.state.emplace_back(select->Text(0), select->Text(1));
    }
  }
  return salvage;
}

}  // namespace

QueuePriority PriorityOf(protocol::MessageType type) {
  switch (type) {
    case protocol::MessageType::kAlert:
    case protocol::MessageType::kClear:
      return QueuePriority::kAlert;
    case protocol::MessageType::kHeartbeat:
      return QueuePriority::kHeartbeat;
    case protocol::MessageType::kPerformance:
      return QueuePriority::kPerformance;
    case protocol::MessageType::kInventory:
    case protocol::MessageType::kConfiguration:
    case protocol::MessageType::kBundleManifest:
      return QueuePriority::kReport;
  }
  return QueuePriority::kReport;
}

std::string FormatEvictionCounts(const EvictionCounts& counts) {
  std::string text;
  for (const auto& [type, count] : counts) {
    if (count == 0) {
      continue;
    }
    text += fmt::format("{}{}={}", text.empty() ? "" : ", ", type, count);
  }
  return text;
}

std::int64_t QueueStats::Depth() const {
  std::int64_t total = 0;
  for (const auto d : depth) {
    total += d;
  }
  return total;
}

AgentQueue::AgentQueue(std::unique_ptr<Database> db, QueueOptions options)
    : db_(std::move(db)), options_(options) {}
AgentQueue::~AgentQueue() = default;

// Opens, checks the file is readable through and brings the schema up to date. Any error SQLite
// reports as corruption comes back as is, for Open to recover from.
Result<std::unique_ptr<Database>> AgentQueue::OpenChecked(const std::filesystem::path& path) {
  auto db = Database::Open(path);
  if (!db) {
    return db.error();
  }
  auto version = ReadUserVersion(**db);
  if (!version) {
    return version.error();
  }
  if (*version > static_cast<std::int64_t>(kMigrations.size())) {
    return Fail(Errc::kQueueTooNew);
  }
  // A power cut can leave a file shorter than its header says, or pages half written on a disk that
  // lies about flushes. quick_check reads every page once (about a second for a full 256 MiB queue,
  // only at start-up) so such damage is found now, not in the middle of a send.
  {
    auto check = (*db)->Prepare("PRAGMA quick_check(1)");
    if (!check) {
      return check.error();
    }
    auto row = check->Step();
    if (!row) {
      return row.error();
    }
    if (!*row || check->Text(0) != "ok") {
      return store::sqlite::MakeError(kSqliteCorrupt);
    }
  }
  if (auto migrated = (*db)->Migrate(kMigrations); !migrated) {
    return migrated.error();
  }
  return db;
}

Result<std::unique_ptr<AgentQueue>> AgentQueue::Open(const std::filesystem::path& path, QueueOptions options) {
  return OpenOrRecover(path, options, /*may_recover=*/true);
}

Result<std::unique_ptr<AgentQueue>> AgentQueue::OpenOrRecover(const std::filesystem::path& path,
                                                              QueueOptions options, bool may_recover) {
  auto db = OpenChecked(path);
  if (!db) {
    if (may_recover && IsCorruption(db.error())) {
      if (auto recovered = Recover(path, options, db.error()); !recovered) {
        return recovered.error();
      }
      return OpenOrRecover(path, options, /*may_recover=*/false);
    }
    return db.error();
  }
  // A WAL of at most about 1 MiB between checkpoints (SQLite's default is 4 MiB): on a nearly full
  // disk the WAL competes with the queue for space, and a checkpoint that cannot finish keeps it growing.
  (void)(*db)->Exec("PRAGMA wal_autocheckpoint=256");
  auto queue = std::unique_ptr<AgentQueue>(new AgentQueue(std::move(*db), options));
  auto unalerted = ReadCounts(*queue->db_, kUnalertedPrefix);
  auto last_alert = queue->StateIntLocked(kEvictionAlertKey);
  if (!unalerted) {
    return unalerted.error();
  }
  if (!last_alert) {
    return last_alert.error();
  }
  queue->evictions_unalerted_ = !unalerted->empty();
  queue->last_eviction_alert_ms_ = *last_alert;
  queue->MaybeCreateReservesLocked();
  return queue;
}

VoidResult AgentQueue::Recover(const std::filesystem::path& path, const QueueOptions& options,
                               std::error_code why) {
  namespace fs = std::filesystem;
  const auto stamp = UtcStamp(options.clock->Now());
  fs::path aside = path.string() + ".corrupt-" + stamp;
  std::error_code ec;
  for (int n = 2; fs::exists(aside, ec); ++n) {
    aside = path.string() + ".corrupt-" + stamp + "-" + std::to_string(n);
  }
  fs::rename(path, aside, ec);
  if (ec) {
    Log()->error("queue {} is corrupt ({}) and cannot be moved aside: {}", path.string(), why.message(),
                 ec.message());
    return why;
  }
  // The -wal belongs to the damaged file (it may hold its last commits); the -shm is only an index of
  // it and would confuse a fresh file of the same name.
  fs::rename(path.string() + "-wal", aside.string() + "-wal", ec);
  fs::remove(path.string() + "-shm", ec);

  Salvage salvage = SalvageFrom(aside);
  auto db = OpenChecked(path);
  if (!db) {
    return db.error();
  }
  // Sequence numbers are never reused: continue after the salvaged counter, or, when it is lost,
  // from the clock in microseconds, which a counter of one per message cannot have reached.
  std::uint64_t next_sequence = 1;
  bool have_counter = false;
  for (const auto& [key, value] : salvage.state) {
    std::int64_t parsed = 0;
    if (key == kNextSequenceKey && ParseInt(value, &parsed) && parsed > 0) {
      next_sequence = AsLoaded(parsed);
      have_counter = true;
    }
  }
  if (!have_counter) {
    next_sequence = AsLoaded(options.clock->NowUnixMillis()) * 1000;
  }
  for (const auto& message : salvage.messages) {
    next_sequence = std::max(next_sequence, message.sequence + 1);
  }
  auto copied = (*db)->Transaction([&]() -> VoidResult {
    auto insert = PrepareInsert(**db);
    if (!insert) {
      return insert.error();
    }
    for (const auto& message : salvage.messages) {
      if (auto ran = InsertMessage(*insert, message); !ran) {
        return ran;
      }
    }
    auto save = (*db)->Prepare("INSERT OR REPLACE INTO log_positions (path, device, inode, offset) VALUES (?,?,?,?)");
    if (!save) {
      return save.error();
    }
    for (const auto& [file, position] : salvage.positions) {
      save->Reset();
      save->BindAll(file, AsStored(position.device), AsStored(position.inode), AsStored(position.offset));
      if (auto ran = save->Run(); !ran) {
        return ran;
      }
    }
    for (const auto& [key, value] : salvage.state) {
      if (key == kNextSequenceKey) {
        continue;
      }
      if (auto ran = UpsertState(**db, key, value); !ran) {
        return ran;
      }
    }
    return UpsertState(**db, kNextSequenceKey, std::to_string(next_sequence));
  });
  if (!copied) {
    return copied.error();
  }
  Log()->error(
      "queue {} was corrupt ({}): moved aside to {}; salvaged {} message(s), {} log position(s){}; "
      "a fresh queue continues (anything else in the damaged file is lost)",
      path.string(), why.message(), aside.string(), salvage.messages.size(), salvage.positions.size(),
      salvage.read_state ? "" : ", the state table only in part");
  return {};
}

Result<std::unique_ptr<AgentQueue>> AgentQueue::OpenForStatus(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Fail(Errc::kQueueMissing);
  }
  Database::Options options;
  options.read_only = true;
  auto db = Database::Open(path, options);
  if (!db) {
    return db.error();
  }
  auto version = ReadUserVersion(**db);
  if (!version) {
    return version.error();
  }
  if (*version > static_cast<std::int64_t>(kMigrations.size())) {
    return Fail(Errc::kQueueTooNew);
  }
  if (*version < static_cast<std::int64_t>(kMigrations.size())) {
    // Created but never brought up to date by an agent (or an older one): nothing to report from.
    return Fail(Errc::kQueueMissing);
  }
  auto queue = std::unique_ptr<AgentQueue>(new AgentQueue(std::move(*db), QueueOptions{}));
  queue->read_only_ = true;
  return queue;
}

Result<std::int64_t> AgentQueue::BytesUsedLocked() {
  auto pages = QueryInt(*db_, "PRAGMA page_count");
  auto free_pages = QueryInt(*db_, "PRAGMA freelist_count");
  auto page_size = QueryInt(*db_, "PRAGMA page_size");
  if (!pages) {
    return pages.error();
  }
  if (!free_pages) {
    return free_pages.error();
  }
  if (!page_size) {
    return page_size.error();
  }
  return (*pages - *free_pages) * *page_size;
}

std::int64_t AgentQueue::LimitLocked(std::int64_t used) {
  // The disk is part of the budget: bulk data gives way before the file system fills, so there is
  // always room left for the WAL, the reserve's job and the alerts that are stored beyond any budget.
  struct statvfs fs_stats {};
  if (::statvfs(db_->path().parent_path().c_str(), &fs_stats) != 0) {
    return options_.max_bytes;
  }
  auto free_pages = QueryInt(*db_, "PRAGMA freelist_count");
  auto page_size = QueryInt(*db_, "PRAGMA page_size");
  const std::int64_t inside = free_pages && page_size ? *free_pages * *page_size : 0;
  const std::int64_t available =
      static_cast<std::int64_t>(fs_stats.f_bavail) * static_cast<std::int64_t>(fs_stats.f_frsize);
  return std::min(options_.max_bytes, used + inside + available - kDiskHeadroomBytes);
}

Result<std::int64_t> AgentQueue::EvictLocked(QueuePriority floor, std::int64_t need, EvictionCounts* evicted) {
  std::int64_t freed = 0;
  auto select = db_->Prepare("SELECT send_order, type, size FROM messages WHERE priority = ? "
                             "ORDER BY send_order LIMIT 256");
  auto remove = db_->Prepare("DELETE FROM messages WHERE send_order = ?");
  if (!select) {
    return select.error();
  }
  if (!remove) {
    return remove.error();
  }
  const int lowest = static_cast<int>(QueuePriority::kPerformance);
  const int highest = std::max(static_cast<int>(floor), static_cast<int>(QueuePriority::kReport));
  for (int priority = lowest; priority >= highest && freed < need; --priority) {
    while (freed < need) {
      // Read a page of victims first: deleting under a running SELECT on the same table is not defined.
      struct Victim {
        std::int64_t send_order;
        std::string type;
        std::int64_t size;
      };
      std::vector<Victim> victims;
      select->Reset();
      select->BindAll(static_cast<std::int64_t>(priority));
      for (;;) {
        auto row = select->Step();
        if (!row) {
          return row.error();
        }
        if (!*row) {
          break;
        }
        victims.push_back({select->Int(0), select->Text(1), select->Int(2)});
      }
      select->Reset();
      if (victims.empty()) {
        break;
      }
      for (const auto& victim : victims) {
        if (freed >= need) {
          break;
        }
        remove->Reset();
        remove->BindAll(victim.send_order);
        if (auto ran = remove->Run(); !ran) {
          return ran.error();
        }
        freed += std::max<std::int64_t>(victim.size, 1);
        ++(*evicted)[victim.type];
      }
    }
  }
  return freed;
}

Result<std::uint64_t> AgentQueue::NextSequenceLocked() {
  auto value = StateIntLocked(kNextSequenceKey);
  if (!value) {
    return value.error();
  }
  if (*value <= 0) {
    return Fail(Errc::kQueueCorrupt);
  }
  return AsLoaded(*value);
}

Result<std::int64_t> AgentQueue::StateIntLocked(std::string_view key) {
  auto select = db_->Prepare("SELECT value FROM state WHERE key = ?");
  if (!select) {
    return select.error();
  }
  select->BindAll(key);
  auto row = select->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return 0;
  }
  std::int64_t value = 0;
  if (!ParseInt(select->Text(0), &value)) {
    return Fail(Errc::kQueueCorrupt);
  }
  return value;
}

// One attempt, inside a transaction. `staged` receives what the in-memory caches become if it commits.
struct AgentQueue::Staged {
  EvictionCounts evicted;
  bool over_budget = false;
  bool evictions_unalerted = false;
  std::int64_t last_eviction_alert_ms = 0;
};

Result<std::vector<protocol::Message>> AgentQueue::EnqueueLocked(
    const std::vector<protocol::Message>& drafts,
    const std::optional<std::pair<std::string, FilePosition>>& position, Staged* staged) {
  staged->evictions_unalerted = evictions_unalerted_;
  staged->last_eviction_alert_ms = last_eviction_alert_ms_;
  std::vector<protocol::Message> stored;
  if (!drafts.empty()) {
    auto sequence = NextSequenceLocked();
    if (!sequence) {
      return sequence.error();
    }
    auto used = BytesUsedLocked();
    if (!used) {
      return used.error();
    }
    const std::int64_t limit = LimitLocked(*used);
    auto insert = PrepareInsert(*db_);
    if (!insert) {
      return insert.error();
    }
    // Evicting a little more than needed keeps a flood from paying for an eviction on every insert.
    const std::int64_t slack = std::clamp<std::int64_t>(options_.max_bytes / 64, 16 * 1024, 1024 * 1024);
    stored.reserve(drafts.size());
    for (const auto& draft : drafts) {
      const QueuePriority priority = PriorityOf(draft.type);
      const std::int64_t size = EstimatedBytes(draft) + 32;  // + the id not yet assigned
      if (*used + size > limit) {
        auto freed = EvictLocked(priority, *used + size - limit + slack, &staged->evicted);
        if (!freed) {
          return freed.error();
        }
        *used -= *freed;
        if (*used + size > limit) {
          if (IsBulk(priority)) {
            // Nothing of its own or a lower priority is left to give way: the newest bulk data is the
            // one dropped, never an alert, heartbeat or report of a higher priority.
            ++staged->evicted[std::string(protocol::ToString(draft.type))];
            continue;
          }
          staged->over_budget = true;
        }
      }
      protocol::Message message = draft;
      auto id = RandomId();
      if (!id) {
        return id.error();
      }
      message.id = std::move(*id);
      message.sequence = (*sequence)++;
      if (auto ran = InsertMessage(*insert, message); !ran) {
        return ran.error();
      }
      if (std::find(options_.held_for_review.begin(), options_.held_for_review.end(), message.type) !=
          options_.held_for_review.end()) {
        auto hold = db_->Prepare("UPDATE messages SET held = 1 WHERE id = ?");
        if (!hold) {
          return hold.error();
        }
        hold->Bind(1, message.id);
        if (auto ran = hold->Run(); !ran) {
          return ran.error();
        }
      }
      *used += size;
      stored.push_back(std::move(message));
    }
    if (!staged->evicted.empty()) {
      for (const auto prefix : {kEvictedPrefix, kUnreportedPrefix, kUnalertedPrefix}) {
        if (auto added = AddCounts(*db_, prefix, staged->evicted); !added) {
          return added.error();
        }
      }
      staged->evictions_unalerted = true;
    }
    const std::int64_t now_ms = options_.clock->NowUnixMillis();
    const std::int64_t interval_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.eviction_alert_interval).count();
    if (staged->evictions_unalerted &&
        (staged->last_eviction_alert_ms == 0 || now_ms - staged->last_eviction_alert_ms >= interval_ms ||
         now_ms < staged->last_eviction_alert_ms)) {
      auto counts = ReadCounts(*db_, kUnalertedPrefix);
      if (!counts) {
        return counts.error();
      }
      if (!counts->empty()) {
        protocol::Message alert;
        alert.type = protocol::MessageType::kAlert;
        alert.timestamp_ms = now_ms;
        alert.alert.code = std::string(kEvictionAlertCode);
        alert.alert.severity = protocol::Severity::kWarning;
        alert.alert.source = std::string(kEvictionAlertSource);
        alert.alert.text = fmt::format(
            "the agent's queue reached its disk budget of {} bytes while the home was unreachable and "
            "evicted the oldest lower-priority data: {} message(s) ({}); alerts and heartbeats are kept",
            options_.max_bytes, [&] {
              std::int64_t total = 0;
              for (const auto& [type, count] : *counts) {
                total += count;
              }
              return total;
            }(),
            FormatEvictionCounts(*counts));
        auto id = RandomId();
        if (!id) {
          return id.error();
        }
        alert.id = std::move(*id);
        alert.sequence = (*sequence)++;
        if (auto ran = InsertMessage(*insert, alert); !ran) {
          return ran.error();
        }
        stored.push_back(std::move(alert));
        if (auto cleared = ClearCounts(*db_, kUnalertedPrefix); !cleared) {
          return cleared.error();
        }
      }
      staged->evictions_unalerted = false;
      staged->last_eviction_alert_ms = now_ms;
      if (auto saved = UpsertState(*db_, kEvictionAlertKey, std::to_string(now_ms)); !saved) {
        return saved.error();
      }
    }
    if (auto saved = SetStateLocked(kNextSequenceKey, std::to_string(*sequence)); !saved) {
      return saved.error();
    }
  }
  if (position) {
    if (auto saved = SavePositionLocked(position->first, position->second); !saved) {
      return saved.error();
    }
  }
  return stored;
}

Result<std::vector<protocol::Message>> AgentQueue::Enqueue(
    std::vector<protocol::Message> drafts, std::optional<std::pair<std::string, FilePosition>> position) {
  std::lock_guard lock(mutex_);
  Staged staged;
  auto attempt = [&] {
    staged = Staged{};
    return db_->Transaction(
        [&]() -> Result<std::vector<protocol::Message>> { return EnqueueLocked(drafts, position, &staged); });
  };
  auto stored = attempt();
  if (!stored && IsSqlite(stored.error(), kSqliteFull)) {
    // The disk (or the file system's quota) is full. Release the reserve so the eviction can be
    // written, evict bulk data (its pages become free inside the file for the retry to reuse), fold the
    // WAL back into the file and try once more. If nothing helps, the caller keeps its data and tries
    // again later. The reserve comes back once the file system has room for it twice over.
    //
    // The reserve is released only when there is bulk data to evict. With only alerts and heartbeats
    // left, releasing it would let the next few alerts take its space, and then nothing would be left
    // for the acknowledgements that make room: the queue would be stuck full.
    auto evictable = HasBulkLocked();
    if (!evictable || !*evictable) {
      LogDiskFullLocked(0, {}, VoidResult{}, false);
      return stored;
    }
    ReleaseReserveLocked(Reserve::kEvict);
    // RESTART, not TRUNCATE: the WAL file keeps its size and is written again from its start, so its
    // space serves the next transactions instead of going back to a file system that has none.
    (void)db_->Exec("PRAGMA wal_checkpoint(RESTART)");
    std::int64_t need = 256 * 1024;
    for (const auto& draft : drafts) {
      need += 2 * EstimatedBytes(draft);
    }
    EvictionCounts evicted;
    auto freed = db_->Transaction([&]() -> Result<std::int64_t> {
      auto bytes = EvictLocked(QueuePriority::kReport, need, &evicted);
      if (!bytes || evicted.empty()) {
        return bytes;
      }
      for (const auto prefix : {kEvictedPrefix, kUnreportedPrefix, kUnalertedPrefix}) {
        if (auto added = AddCounts(*db_, prefix, evicted); !added) {
          return added.error();
        }
      }
      return bytes;
    });
    (void)db_->Exec("PRAGMA wal_checkpoint(RESTART)");
    std::int64_t total = 0;
    for (const auto& [type, count] : evicted) {
      total += count;
    }
    if (freed && !evicted.empty()) {
      evictions_unalerted_ = true;
      stored = attempt();
    }
    LogDiskFullLocked(total, evicted, freed ? VoidResult{} : VoidResult(Fail(freed.error())), stored.has_value());
  }
  if (!stored) {
    return stored;
  }
  evictions_unalerted_ = staged.evictions_unalerted;
  last_eviction_alert_ms_ = staged.last_eviction_alert_ms;
  MaybeCreateReservesLocked();
  const auto now = std::chrono::steady_clock::now();
  if ((staged.over_budget || !staged.evicted.empty()) &&
      (last_over_budget_log_ == std::chrono::steady_clock::time_point{} ||
       now - last_over_budget_log_ >= kLoudLogInterval)) {
    last_over_budget_log_ = now;
    if (staged.over_budget) {
      Log()->error("queue {} is at its budget of {} bytes with only alerts and heartbeats left; keeping them "
                   "over the budget (nothing is dropped until the home is reachable again)",
                   db_->path().string(), options_.max_bytes);
    } else {
      Log()->warn("queue {} is at its budget of {} bytes: evicted {} (oldest lowest-priority first)",
                  db_->path().string(), options_.max_bytes, FormatEvictionCounts(staged.evicted));
    }
  }
  return stored;
}

void AgentQueue::LogDiskFullLocked(std::int64_t total, const EvictionCounts& evicted, const VoidResult& eviction,
                                   bool stored) {
  const auto now = std::chrono::steady_clock::now();
  if (last_disk_full_log_ != std::chrono::steady_clock::time_point{} &&
      now - last_disk_full_log_ < kLoudLogInterval) {
    return;
  }
  last_disk_full_log_ = now;
  Log()->error("queue {}: the disk is full; evicted {} bulk message(s){}{}; {}", db_->path().string(), total,
               total > 0 ? " (" + FormatEvictionCounts(evicted) + ")" : "",
               eviction ? "" : fmt::format(" (eviction failed: {})", eviction.error().message()),
               stored ? "stored after all" : "nothing stored: the source keeps its data and retries");
}

Result<bool> AgentQueue::HasBulkLocked() {
  auto select = db_->Prepare("SELECT EXISTS(SELECT 1 FROM messages WHERE priority >= ?)");
  if (!select) {
    return Fail(select.error());
  }
  select->Bind(1, static_cast<int>(QueuePriority::kReport));
  auto row = select->Step();
  if (!row) {
    return Fail(row.error());
  }
  return *row && select->Int(0) != 0;
}

std::filesystem::path AgentQueue::ReservePath(Reserve which) const {
  return db_->path().string() + (which == Reserve::kDrain ? ".reserve" : ".reserve-evict");
}

void AgentQueue::MaybeCreateReservesLocked() {
  if (read_only_ || (reserve_present_[0] && reserve_present_[1])) {
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (last_reserve_attempt_ != std::chrono::steady_clock::time_point{} &&
      now - last_reserve_attempt_ < std::chrono::seconds(10)) {
    return;
  }
  last_reserve_attempt_ = now;
  // The drain reserve first: without it a full disk could stop acknowledgements, and so the queue.
  for (const Reserve which : {Reserve::kDrain, Reserve::kEvict}) {
    bool& present = reserve_present_[static_cast<int>(which)];
    if (present) {
      continue;
    }
    const auto path = ReservePath(which);
    // Only with room to spare: taking the last free bytes back would make the next write fail.
    struct statvfs fs_stats {};
    if (::statvfs(path.parent_path().c_str(), &fs_stats) != 0 ||
        static_cast<std::int64_t>(fs_stats.f_bavail) * static_cast<std::int64_t>(fs_stats.f_frsize) <
            3 * kReserveBytes) {
      return;
    }
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return;
    }
    const int rc = ::posix_fallocate(fd, 0, kReserveBytes);
    ::close(fd);
    if (rc != 0) {
      std::error_code ec;
      std::filesystem::remove(path, ec);  // a partial reserve would only take space
      return;
    }
    present = true;
  }
}

bool AgentQueue::ReleaseReserveLocked(Reserve which) {
  std::error_code ec;
  bool& present = reserve_present_[static_cast<int>(which)];
  const bool released = std::filesystem::remove(ReservePath(which), ec);
  if (released) {
    Log()->error("queue {}: the disk is full; released the {}-byte {} reserve beside the queue so it can {}",
                 db_->path().string(), kReserveBytes, which == Reserve::kDrain ? "drain" : "eviction",
                 which == Reserve::kDrain ? "acknowledge and remove sent messages" : "evict bulk data");
  }
  present = false;
  return released;
}

template <class Body>
VoidResult AgentQueue::RetryIfDiskFullLocked(Body&& body) {
  auto done = body();
  if (!done && IsSqlite(done.error(), kSqliteFull)) {
    // The freed space lets the checkpoint finish (the file may need to grow) and the WAL be written again
    // from its start.
    // The drain reserve is for exactly this; if an earlier drain took it, the eviction reserve serves.
    if (!ReleaseReserveLocked(Reserve::kDrain)) {
      (void)ReleaseReserveLocked(Reserve::kEvict);
    }
    (void)db_->Exec("PRAGMA wal_checkpoint(RESTART)");
    done = body();
  }
  return done;
}

Result<std::vector<protocol::Message>> AgentQueue::Peek(std::size_t max) {
  std::lock_guard lock(mutex_);
  auto select = db_->Prepare(std::string("SELECT ") + std::string(kMessageColumns) +
                             " FROM messages WHERE priority = ? AND held = 0 ORDER BY send_order LIMIT ?");
  if (!select) {
    return select.error();
  }
  std::vector<protocol::Message> messages;
  for (std::size_t priority = 0; priority < kQueuePriorityCount && messages.size() < max; ++priority) {
    select->Reset();
    select->BindAll(static_cast<std::int64_t>(priority),
                    static_cast<std::int64_t>(std::min<std::size_t>(max - messages.size(), INT64_MAX)));
    if (auto read = AppendRows(*select, &messages); !read) {
      return read.error();
    }
  }
  return messages;
}

Result<std::vector<protocol::Message>> AgentQueue::Held(std::size_t max) {
  std::lock_guard lock(mutex_);
  auto select = db_->Prepare(std::string("SELECT ") + std::string(kMessageColumns) +
                             " FROM messages WHERE held = 1 ORDER BY send_order LIMIT ?");
  if (!select) {
    return select.error();
  }
  select->Bind(1, static_cast<std::int64_t>(std::min<std::size_t>(max, INT64_MAX)));
  std::vector<protocol::Message> messages;
  if (auto read = AppendRows(*select, &messages); !read) {
    return read.error();
  }
  return messages;
}

Result<std::int64_t> AgentQueue::Review(const std::vector<std::string>& ids, bool approve) {
  std::lock_guard lock(mutex_);
  return db_->Transaction([&]() -> Result<std::int64_t> {
    const std::string action = approve ? "UPDATE messages SET held = 0 WHERE held = 1"
                                       : "DELETE FROM messages WHERE held = 1";
    std::int64_t changed = 0;
    if (ids.empty()) {
      if (auto ran = db_->Exec(action); !ran) {
        return ran.error();
      }
      return static_cast<std::int64_t>(db_->Changes());
    }
    auto statement = db_->Prepare(action + " AND id = ?");
    if (!statement) {
      return statement.error();
    }
    for (const auto& id : ids) {
      statement->Reset();
      statement->Bind(1, id);
      if (auto ran = statement->Run(); !ran) {
        return ran.error();
      }
      changed += db_->Changes();
    }
    return changed;
  });
}

VoidResult AgentQueue::Remove(const std::vector<std::string>& ids) {
  std::lock_guard lock(mutex_);
  return RetryIfDiskFullLocked([&] { return RemoveLocked(ids); });
}

VoidResult AgentQueue::RemoveLocked(const std::vector<std::string>& ids) {
  return db_->Transaction([&]() -> VoidResult {
    auto remove = db_->Prepare("DELETE FROM messages WHERE id = ?");
    if (!remove) {
      return remove.error();
    }
    for (const auto& id : ids) {
      remove->Reset();
      remove->BindAll(id);
      if (auto ran = remove->Run(); !ran) {
        return ran;
      }
    }
    return {};
  });
}

Result<std::int64_t> AgentQueue::Depth() {
  std::lock_guard lock(mutex_);
  return QueryInt(*db_, "SELECT count(*) FROM messages");
}

Result<QueueStats> AgentQueue::Stats() {
  std::lock_guard lock(mutex_);
  QueueStats stats;
  stats.max_bytes = options_.max_bytes;
  // One read transaction, so the figures agree with each other.
  if (auto begun = db_->Exec("BEGIN"); !begun) {
    return begun.error();
  }
  auto result = [&]() -> VoidResult {
    auto select = db_->Prepare("SELECT priority, count(*), total(size) FROM messages GROUP BY priority");
    if (!select) {
      return select.error();
    }
    for (;;) {
      auto row = select->Step();
      if (!row) {
        return row.error();
      }
      if (!*row) {
        break;
      }
      const auto priority = select->Int(0);
      if (priority >= 0 && priority < static_cast<std::int64_t>(kQueuePriorityCount)) {
        stats.depth[priority] = select->Int(1);
        stats.message_bytes[priority] = static_cast<std::int64_t>(select->Double(2));
      }
    }
    auto used = BytesUsedLocked();
    auto pages = QueryInt(*db_, "PRAGMA page_count");
    auto page_size = QueryInt(*db_, "PRAGMA page_size");
    if (!used) {
      return used.error();
    }
    if (!pages || !page_size) {
      return !pages ? pages.error() : page_size.error();
    }
    stats.bytes_used = *used;
    stats.file_bytes = *pages * *page_size;
    auto evicted = ReadCounts(*db_, kEvictedPrefix);
    if (!evicted) {
      return evicted.error();
    }
    stats.evicted = std::move(*evicted);
    return {};
  }();
  (void)db_->Exec("COMMIT");
  if (!result) {
    return result.error();
  }
  return stats;
}

Result<EvictionCounts> AgentQueue::TakeEvictionReport() {
  std::lock_guard lock(mutex_);
  return db_->Transaction([&]() -> Result<EvictionCounts> {
    auto counts = ReadCounts(*db_, kUnreportedPrefix);
    if (!counts) {
      return counts;
    }
    if (auto cleared = ClearCounts(*db_, kUnreportedPrefix); !cleared) {
      return cleared.error();
    }
    return counts;
  });
}

VoidResult AgentQueue::Acknowledge(const protocol::BatchReply& reply) {
  return Acknowledge(reply, SystemClock::Instance().NowUnixMillis());
}

VoidResult AgentQueue::Acknowledge(const protocol::BatchReply& reply, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  // Deleting needs a little room for the WAL too: on a full disk the reserve makes it, so the queue
  // drains (and frees space) instead of resending the same batch forever.
  return RetryIfDiskFullLocked([&] { return AcknowledgeLocked(reply, now_ms); });
}

VoidResult AgentQueue::AcknowledgeLocked(const protocol::BatchReply& reply, std::int64_t now_ms) {
  return db_->Transaction([&]() -> VoidResult {
    auto code_of = db_->Prepare("SELECT alert_code FROM messages WHERE id = ?");
    auto remove = db_->Prepare("DELETE FROM messages WHERE id = ?");
    if (!code_of) {
      return code_of.error();
    }
    if (!remove) {
      return remove.error();
    }
    for (const auto& result : reply.results) {
      if (!result.ticket.empty()) {
        code_of->Reset();
        code_of->BindAll(result.message_id);
        auto row = code_of->Step();
        if (!row) {
          return row.error();
        }
        // A message already gone (a repeated answer) keeps the code recorded the first time.
        const std::string code = *row ? code_of->Text(0) : std::string();
        if (auto recorded = RecordTicketLocked(result.message_id, code, result.ticket, now_ms); !recorded) {
          return recorded;
        }
      }
      remove->Reset();
      remove->BindAll(result.message_id);
      if (auto ran = remove->Run(); !ran) {
        return ran;
      }
    }
    return SetStateLocked(kLastContactKey, std::to_string(now_ms));
  });
}

VoidResult AgentQueue::SavePosition(const std::string& path, const FilePosition& position) {
  std::lock_guard lock(mutex_);
  return SavePositionLocked(path, position);
}

VoidResult AgentQueue::SavePositionLocked(const std::string& path, const FilePosition& position) {
  auto save = db_->Prepare(
      "INSERT INTO log_positions (path, device, inode, offset) VALUES (?,?,?,?) "
      "ON CONFLICT(path) DO UPDATE SET device = excluded.device, inode = excluded.inode, "
      "offset = excluded.offset");
  if (!save) {
    return save.error();
  }
  save->BindAll(path, AsStored(position.device), AsStored(position.inode), AsStored(position.offset));
  return save->Run();
}

Result<std::optional<FilePosition>> AgentQueue::LoadPosition(const std::string& path) {
  std::lock_guard lock(mutex_);
  auto load = db_->Prepare("SELECT device, inode, offset FROM log_positions WHERE path = ?");
  if (!load) {
    return load.error();
  }
  load->BindAll(path);
  auto row = load->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<FilePosition>();
  }
  return std::optional<FilePosition>(
      FilePosition{AsLoaded(load->Int(0)), AsLoaded(load->Int(1)), AsLoaded(load->Int(2))});
}

VoidResult AgentQueue::RecordTicket(const std::string& message_id, const std::string& alert_code,
                                    const std::string& ticket, std::int64_t when_ms) {
  std::lock_guard lock(mutex_);
  return db_->Transaction(
      [&]() -> VoidResult { return RecordTicketLocked(message_id, alert_code, ticket, when_ms); });
}

VoidResult AgentQueue::RecordTicketLocked(const std::string& message_id, const std::string& alert_code,
                                          const std::string& ticket, std::int64_t when_ms) {
  auto upsert = db_->Prepare(
      "INSERT INTO tickets (message_id, ticket, alert_code, received_at_ms) VALUES (?,?,?,?) "
      "ON CONFLICT(message_id) DO UPDATE SET ticket = excluded.ticket, "
      "alert_code = CASE WHEN excluded.alert_code = '' THEN tickets.alert_code "
      "ELSE excluded.alert_code END");
  if (!upsert) {
    return upsert.error();
  }
  upsert->BindAll(message_id, ticket, alert_code, when_ms);
  if (auto ran = upsert->Run(); !ran) {
    return ran;
  }
  // Status shows the recent ones; the queue file must not grow with every ticket ever opened.
  auto prune = db_->Prepare("DELETE FROM tickets WHERE rowid <= (SELECT max(rowid) FROM tickets) - ?");
  if (!prune) {
    return prune.error();
  }
  prune->BindAll(static_cast<std::int64_t>(kTicketsKept));
  return prune->Run();
}

Result<std::vector<TicketRecord>> AgentQueue::RecentTickets(std::size_t max) {
  std::lock_guard lock(mutex_);
  auto select = db_->Prepare(
      "SELECT message_id, alert_code, ticket, received_at_ms FROM tickets ORDER BY rowid DESC LIMIT ?");
  if (!select) {
    return select.error();
  }
  select->BindAll(static_cast<std::int64_t>(std::min<std::size_t>(max, INT64_MAX)));
  std::vector<TicketRecord> records;
  for (;;) {
    auto row = select->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      break;
    }
    records.push_back({select->Text(0), select->Text(1), select->Text(2), select->Int(3)});
  }
  return records;
}

VoidResult AgentQueue::SetState(const std::string& key, const std::string& value) {
  if (key == kNextSequenceKey || key.starts_with(kReservedStatePrefix)) {
    return Fail(Errc::kReservedStateKey);
  }
  std::lock_guard lock(mutex_);
  return SetStateLocked(key, value);
}

VoidResult AgentQueue::SetStateLocked(std::string_view key, const std::string& value) {
  return UpsertState(*db_, key, value);
}

Result<std::optional<std::string>> AgentQueue::GetState(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto select = db_->Prepare("SELECT value FROM state WHERE key = ?");
  if (!select) {
    return select.error();
  }
  select->BindAll(key);
  auto row = select->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(select->Text(0));
}

}  // namespace lifeline::agent
