#include "agent/queue.h"

#include "store/sqlite/database.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>

namespace lifeline::agent {
namespace {

using store::sqlite::Database;
using store::sqlite::Statement;

// Schema steps: kMigrations[i] takes the file from version i to i + 1 (PRAGMA user_version).
constexpr std::array<std::string_view, 1> kMigrations = {
    R"sql(
CREATE TABLE messages (
  send_order     INTEGER PRIMARY KEY,  -- rowid: send order
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
)sql"};

constexpr std::string_view kMessageColumns =
    "id, type, sequence, timestamp_ms, alert_code, alert_severity, alert_text, alert_source, "
    "heartbeat_interval_seconds, heartbeat_status, payload_json";

std::int64_t AsStored(std::uint64_t value) { return static_cast<std::int64_t>(value); }
std::uint64_t AsLoaded(std::int64_t value) { return static_cast<std::uint64_t>(value); }

// 128 random bits as 32 lowercase hex characters, from the kernel's CSPRNG.
Result<std::string> RandomId() {
  std::array<unsigned char, 16> bytes{};
  std::size_t filled = 0;
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

Result<std::int64_t> ReadUserVersion(Database& db) {
  auto statement = db.Prepare("PRAGMA user_version");
  if (!statement) {
    return statement.error();
  }
  auto row = statement->Step();
  if (!row) {
    return row.error();
  }
  return statement->Int(0);
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

std::int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

AgentQueue::AgentQueue(std::unique_ptr<Database> db) : db_(std::move(db)) {}
AgentQueue::~AgentQueue() = default;

Result<std::unique_ptr<AgentQueue>> AgentQueue::Open(const std::filesystem::path& path) {
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
  if (auto migrated = (*db)->Migrate(kMigrations); !migrated) {
    return migrated.error();
  }
  return std::unique_ptr<AgentQueue>(new AgentQueue(std::move(*db)));
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
  return std::unique_ptr<AgentQueue>(new AgentQueue(std::move(*db)));
}

Result<std::vector<protocol::Message>> AgentQueue::Enqueue(
    std::vector<protocol::Message> drafts, std::optional<std::pair<std::string, FilePosition>> position) {
  std::lock_guard lock(mutex_);
  return db_->Transaction([&]() -> Result<std::vector<protocol::Message>> {
    if (!drafts.empty()) {
      auto next = db_->Prepare("SELECT value FROM state WHERE key = ?");
      if (!next) {
        return next.error();
      }
      next->BindAll(kNextSequenceKey);
      auto row = next->Step();
      if (!row) {
        return row.error();
      }
      std::uint64_t sequence = 0;
      const std::string stored = *row ? next->Text(0) : std::string();
      const auto parsed = std::from_chars(stored.data(), stored.data() + stored.size(), sequence);
      if (!*row || parsed.ec != std::errc() || parsed.ptr != stored.data() + stored.size() || sequence == 0) {
        return Fail(Errc::kQueueCorrupt);
      }
      auto insert = db_->Prepare(std::string("INSERT INTO messages (") + std::string(kMessageColumns) +
                                 ") VALUES (?,?,?,?,?,?,?,?,?,?,?)");
      if (!insert) {
        return insert.error();
      }
      for (auto& message : drafts) {
        auto id = RandomId();
        if (!id) {
          return id.error();
        }
        message.id = std::move(*id);
        message.sequence = sequence++;
        insert->Reset();
        insert->BindAll(message.id, protocol::ToString(message.type), AsStored(message.sequence),
                        message.timestamp_ms, message.alert.code, protocol::ToString(message.alert.severity),
                        message.alert.text, message.alert.source, message.heartbeat.interval_seconds,
                        message.heartbeat.status, message.payload_json);
        if (auto ran = insert->Run(); !ran) {
          return ran.error();
        }
      }
      if (auto saved = SetStateLocked(kNextSequenceKey, std::to_string(sequence)); !saved) {
        return saved.error();
      }
    }
    if (position) {
      if (auto saved = SavePositionLocked(position->first, position->second); !saved) {
        return saved.error();
      }
    }
    return std::move(drafts);
  });
}

Result<std::vector<protocol::Message>> AgentQueue::Peek(std::size_t max) {
  std::lock_guard lock(mutex_);
  auto select = db_->Prepare(std::string("SELECT ") + std::string(kMessageColumns) +
                             " FROM messages ORDER BY send_order LIMIT ?");
  if (!select) {
    return select.error();
  }
  select->BindAll(static_cast<std::int64_t>(std::min<std::size_t>(max, INT64_MAX)));
  std::vector<protocol::Message> messages;
  for (;;) {
    auto row = select->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      break;
    }
    auto message = ReadMessage(*select);
    if (!message) {
      return message.error();
    }
    messages.push_back(std::move(*message));
  }
  return messages;
}

VoidResult AgentQueue::Remove(const std::vector<std::string>& ids) {
  std::lock_guard lock(mutex_);
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
  auto count = db_->Prepare("SELECT count(*) FROM messages");
  if (!count) {
    return count.error();
  }
  auto row = count->Step();
  if (!row) {
    return row.error();
  }
  return count->Int(0);
}

VoidResult AgentQueue::Acknowledge(const protocol::BatchReply& reply) {
  return Acknowledge(reply, SystemNowMs());
}

VoidResult AgentQueue::Acknowledge(const protocol::BatchReply& reply, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
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
  if (key == kNextSequenceKey) {
    return Fail(Errc::kReservedStateKey);
  }
  std::lock_guard lock(mutex_);
  return SetStateLocked(key, value);
}

VoidResult AgentQueue::SetStateLocked(std::string_view key, const std::string& value) {
  auto upsert = db_->Prepare(
      "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  if (!upsert) {
    return upsert.error();
  }
  upsert->BindAll(key, value);
  return upsert->Run();
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
