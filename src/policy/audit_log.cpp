#include "policy/audit_log.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "common/utf8.h"
#include "crypto/errors.h"
#include "policy/audit_export.h"
#include "policy/policy_database.h"
#include "store/sql/database.h"

namespace lifeline::policy {
namespace {

const char* Describe(AuditErrc code) {
  switch (code) {
    case AuditErrc::kBadRecord:
      return "audit record refused (empty source or kind, details not a JSON object, invalid UTF-8 or too long)";
    case AuditErrc::kCorruptLog:
      return "the audit log's stored chain head is unreadable";
    case AuditErrc::kBadExport:
      return "the audit export cannot be read";
  }
  return "unknown audit error";
}

// Tables of their own (prefix audit_), created with IF NOT EXISTS rather than PRAGMA user_version,
// so the log can share a database file with the policy store. The triggers keep the application
// (and a careless operator) from changing records; they do not stop someone with the file, which is
// what the chain and the signed checkpoints are for.
constexpr std::string_view kSchema = R"sql(
CREATE TABLE IF NOT EXISTS audit_records (
  sequence INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  record_id TEXT NOT NULL UNIQUE,
  source TEXT NOT NULL,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  subject TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  sequence INTEGER PRIMARY KEY,
  hash TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  signature TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
)sql";
// The same on PostgreSQL (BIGINT: INTEGER is 32 bits there). Triggers have no IF NOT EXISTS before
// PostgreSQL 14, hence the catalog check; TRUNCATE is refused as well.
constexpr std::string_view kPostgresSchema = R"sql(
CREATE TABLE IF NOT EXISTS audit_records (
  sequence BIGINT PRIMARY KEY,
  time_ms BIGINT NOT NULL,
  received_ms BIGINT NOT NULL,
  record_id TEXT NOT NULL UNIQUE,
  source TEXT NOT NULL,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  subject TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  sequence BIGINT PRIMARY KEY,
  hash TEXT NOT NULL,
  time_ms BIGINT NOT NULL,
  signature TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME;
END
$$;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_records_append_only') THEN
    CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
      FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
      FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_checkpoints_append_only') THEN
    CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
      FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
      FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
  END IF;
END
$$;
)sql";

void AppendField(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
  out += '\n';
}

bool ValidText(const std::string& text, std::size_t max_bytes) {
  return text.size() <= max_bytes && CleanUtf8(text, max_bytes) == text;
}

bool ValidKind(const std::string& kind) {
  if (kind.empty() || kind.size() > 32) {
    return false;
  }
  for (const char c : kind) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

/// Checks an incoming record and puts its details into canonical text (Boost.JSON's serialization
/// of the parsed object), so the hashed text is the same however the writer spaced it.
VoidResult Normalize(AuditRecord& record) {
  if (record.source.empty() || !ValidKind(record.kind) ||
      !ValidText(record.source, kMaxAuditFieldBytes) || !ValidText(record.actor, kMaxAuditFieldBytes) ||
      !ValidText(record.subject, kMaxAuditFieldBytes) ||
      !ValidText(record.record_id, kMaxAuditFieldBytes) ||
      record.details.size() > kMaxAuditDetailsBytes) {
    return Fail(AuditErrc::kBadRecord);
  }
  boost::system::error_code ec;
  auto parsed = boost::json::parse(record.details.empty() ? std::string_view("{}") : record.details, ec);
  if (ec || !parsed.is_object()) {
    return Fail(AuditErrc::kBadRecord);
  }
  record.details = boost::json::serialize(parsed);
  if (!ValidText(record.details, kMaxAuditDetailsBytes)) {
    return Fail(AuditErrc::kBadRecord);
  }
  return {};
}

AuditRecord RecordFromRow(const store::sql::Row& row) {
  AuditRecord r;
  r.sequence = row.Int(0);
  r.time_ms = row.Int(1);
  r.received_ms = row.Int(2);
  r.record_id = row.Text(3);
  r.source = row.Text(4);
  r.kind = row.Text(5);
  r.actor = row.Text(6);
  r.subject = row.Text(7);
  r.details = row.Text(8);
  r.prev_hash = row.Text(9);
  r.hash = row.Text(10);
  return r;
}

constexpr std::string_view kRecordColumns =
    "sequence, time_ms, received_ms, record_id, source, kind, actor, subject, details, prev_hash, hash";

}  // namespace

const std::error_category& AuditErrorCategory() {
  static const EnumErrorCategory<AuditErrc> category("lifeline.audit", Describe);
  return category;
}

std::string AuditRecordEncoding(const AuditRecord& r) {
  std::string out = "lifeline-audit-record-v1\n";
  AppendField(out, std::to_string(r.sequence));
  AppendField(out, std::to_string(r.time_ms));
  AppendField(out, std::to_string(r.received_ms));
  AppendField(out, r.record_id);
  AppendField(out, r.source);
  AppendField(out, r.kind);
  AppendField(out, r.actor);
  AppendField(out, r.subject);
  AppendField(out, r.details);
  AppendField(out, r.prev_hash);
  return out;
}

std::string AuditCheckpointEncoding(const AuditCheckpoint& c) {
  std::string out = "lifeline-audit-checkpoint-v1\n";
  AppendField(out, std::to_string(c.sequence));
  AppendField(out, c.hash);
  AppendField(out, std::to_string(c.time_ms));
  return out;
}

std::string Sha256Hex(std::string_view bytes) {
  static const bool initialized = sodium_init() >= 0;
  (void)initialized;
  std::array<std::uint8_t, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return crypto::HexEncode(digest);
}

std::string ComputeAuditHash(const AuditRecord& record) {
  return Sha256Hex(AuditRecordEncoding(record));
}

struct AuditLog::Impl {
  Options options;
  std::shared_ptr<store::sql::Database> db;
  std::unique_ptr<SyslogForwarder> syslog;
  std::mutex timer_mutex;
  std::condition_variable timer_wake;
  bool stopping = false;
  std::thread timer;
};

AuditLog::AuditLog(std::unique_ptr<Impl> impl, crypto::SigningKeyPair key)
    : impl_(std::move(impl)), key_(key) {}

AuditLog::~AuditLog() {
  if (impl_->timer.joinable()) {
    {
      std::lock_guard lock(impl_->timer_mutex);
      impl_->stopping = true;
    }
    impl_->timer_wake.notify_all();
    impl_->timer.join();
  }
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(Options options) {
  auto logger = log::Get("policy");
  if (!std::filesystem::exists(options.signing_key_path)) {
    // data_dir may not exist yet: on PostgreSQL no database file made it.
    if (const auto dir = options.signing_key_path.parent_path(); !dir.empty() && !std::filesystem::exists(dir)) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) {
        logger->error("cannot create {}: {}", dir.string(), ec.message());
        return ec;
      }
      ::chmod(dir.c_str(), 0700);
    }
    const auto key = crypto::GenerateSigningKeyPair();
    if (auto written = crypto::WriteSecretKeyFile(options.signing_key_path, key);
        !written && written.error() != crypto::Errc::kAlreadyExists) {
      return written.error();
    }
    auto public_path = options.signing_key_path;
    public_path += ".pub";
    if (auto written = crypto::WritePublicKeyFile(public_path, key);
        !written && written.error() != crypto::Errc::kAlreadyExists) {
      return written.error();
    }
    logger->info("created the audit signing key {} (public half {}: give it to auditors)",
                 options.signing_key_path.string(), public_path.string());
  }
  auto key = crypto::ReadSigningKeyPair(options.signing_key_path);
  if (!key) {
    logger->error("cannot read the audit signing key {}: {}", options.signing_key_path.string(),
                  key.error().message());
    return key.error();
  }
  // A SQLite file is 0600 from the start (OpenPolicySqlite): nobody else reads the audit trail.
  auto opened = OpenWithTables(options.db, options.db_path, kSchema, kPostgresSchema, "audit tables");
  if (!opened) {
    return opened.error();
  }
  std::shared_ptr<store::sql::Database> db = std::move(*opened);
  auto impl = std::make_unique<Impl>();
  impl->db = std::move(db);
  if (options.syslog) {
    impl->syslog = std::make_unique<SyslogForwarder>(*options.syslog);
  }
  impl->options = std::move(options);
  std::unique_ptr<AuditLog> log(new AuditLog(std::move(impl), *key));
  if (log->impl_->options.checkpoint_timer && log->impl_->options.checkpoint_every.count() > 0) {
    AuditLog* self = log.get();
    log->impl_->timer = std::thread([self] {
      const auto period = std::min<std::chrono::milliseconds>(self->impl_->options.checkpoint_every,
                                                               std::chrono::seconds(1));
      std::unique_lock lock(self->impl_->timer_mutex);
      while (!self->impl_->stopping) {
        self->impl_->timer_wake.wait_for(lock, period);
        if (self->impl_->stopping) {
          break;
        }
        lock.unlock();
        if (auto due = self->CheckpointIfDue(); !due) {
          log::Get("policy")->warn("audit checkpoint failed: {}", due.error().message());
        }
        lock.lock();
      }
    });
  }
  return log;
}

namespace {

struct Head {
  std::int64_t sequence = 0;
  std::string hash = std::string(kAuditGenesisHash);
};

Result<Head> ReadHead(store::sql::Session& s) {
  auto row = s.QueryRow("SELECT sequence, hash FROM audit_records ORDER BY sequence DESC LIMIT 1");
  if (!row) {
    return row.error();
  }
  Head head;
  if (*row) {
    head.sequence = (*row)->Int(0);
    head.hash = (*row)->Text(1);
  }
  return head;
}

struct LastCheckpoint {
  std::int64_t sequence = 0;
  std::int64_t time_ms = 0;
};

Result<LastCheckpoint> ReadLastCheckpoint(store::sql::Session& s) {
  auto row = s.QueryRow("SELECT sequence, time_ms FROM audit_checkpoints ORDER BY sequence DESC LIMIT 1");
  if (!row) {
    return row.error();
  }
  LastCheckpoint last;
  if (*row) {
    last.sequence = (*row)->Int(0);
    last.time_ms = (*row)->Int(1);
  }
  return last;
}

Result<std::optional<AuditRecord>> FindByRecordId(store::sql::Session& s, const std::string& id) {
  auto row = s.QueryRow(fmt::format("SELECT {} FROM audit_records WHERE record_id = $1", kRecordColumns), id);
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<AuditRecord>();
  }
  return std::optional<AuditRecord>(RecordFromRow(**row));
}

VoidResult InsertRecord(store::sql::Session& s, const AuditRecord& r) {
  auto inserted = s.Exec(
      fmt::format("INSERT INTO audit_records ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                  kRecordColumns),
      r.sequence, r.time_ms, r.received_ms, r.record_id, r.source, r.kind, r.actor, r.subject, r.details,
      r.prev_hash, r.hash);
  if (!inserted) {
    return inserted.error();
  }
  return {};
}

VoidResult InsertCheckpoint(store::sql::Session& s, const AuditCheckpoint& c) {
  auto inserted = s.Exec(
      "INSERT INTO audit_checkpoints (sequence, hash, time_ms, signature) VALUES ($1, $2, $3, $4) "
      "ON CONFLICT (sequence) DO NOTHING",
      c.sequence, c.hash, c.time_ms, c.signature);
  if (!inserted) {
    return inserted.error();
  }
  return {};
}

AuditCheckpoint SignCheckpoint(const Head& head, std::int64_t now_ms, const crypto::SigningKeyPair& key) {
  AuditCheckpoint c{.sequence = head.sequence, .hash = head.hash, .time_ms = now_ms};
  const std::string message = AuditCheckpointEncoding(c);
  c.signature = crypto::Base64Encode(crypto::Sign(crypto::AsBytes(message), key));
  return c;
}

}  // namespace

Result<AuditRecord> AuditLog::Append(AuditRecord record) {
  if (record.time_ms == 0) {
    record.time_ms = impl_->options.clock->NowUnixMillis();
  }
  const std::string record_id = record.record_id;
  std::vector<AuditRecord> one;
  one.push_back(std::move(record));
  auto appended = AppendMany(std::move(one));
  if (!appended) {
    return appended.error();
  }
  auto stored = Read(appended->front().sequence, appended->front().sequence, 1);
  if (!stored) {
    return stored.error();
  }
  if (stored->empty()) {
    return Fail(AuditErrc::kCorruptLog);
  }
  return stored->front();
}

Result<std::vector<AuditLog::Appended>> AuditLog::AppendMany(std::vector<AuditRecord> records) {
  for (auto& record : records) {
    if (record.time_ms == 0) {
      return Fail(AuditErrc::kBadRecord);
    }
    if (auto normalized = Normalize(record); !normalized) {
      log::Get("policy")->warn("audit record from '{}' of kind '{}' refused: {}",
                               CleanUtf8(record.source, 64), CleanUtf8(record.kind, 64),
                               normalized.error().message());
      return normalized.error();
    }
    if (record.record_id.empty()) {
      record.record_id = crypto::RandomHex(16);
    }
  }
  const std::int64_t now_ms = impl_->options.clock->NowUnixMillis();
  std::vector<Appended> answers;
  std::vector<AuditRecord> written;
  auto& db = *impl_->db;
  auto done = db.Transaction(store::sql::TxMode::kWrite, [&](store::sql::Session& s) -> VoidResult {
    answers.clear();
    written.clear();
    // The chain's next sequence and prev_hash come from the head read below: another AuditLog on
    // the same PostgreSQL database must not read the same head before this one commits.
    if (auto locked = LockForWrite(s, lock_key::kAuditChain); !locked) {
      return locked;
    }
    auto head = ReadHead(s);
    if (!head) {
      return head.error();
    }
    for (auto record : records) {
      auto existing = FindByRecordId(s, record.record_id);
      if (!existing) {
        return existing.error();
      }
      if (*existing) {
        answers.push_back({.sequence = (*existing)->sequence, .duplicate = true});
        continue;
      }
      // Two records with one id inside this batch: the second is a duplicate of the first.
      bool repeated = false;
      for (const auto& w : written) {
        if (w.record_id == record.record_id) {
          answers.push_back({.sequence = w.sequence, .duplicate = true});
          repeated = true;
          break;
        }
      }
      if (repeated) {
        continue;
      }
      record.sequence = head->sequence + 1;
      record.received_ms = now_ms;
      record.prev_hash = head->hash;
      record.hash = ComputeAuditHash(record);
      if (auto inserted = InsertRecord(s, record); !inserted) {
        return inserted.error();
      }
      head->sequence = record.sequence;
      head->hash = record.hash;
      answers.push_back({.sequence = record.sequence, .duplicate = false});
      written.push_back(std::move(record));
    }
    if (written.empty()) {
      return {};
    }
    auto last = ReadLastCheckpoint(s);
    if (!last) {
      return last.error();
    }
    const bool by_count = head->sequence - last->sequence >= impl_->options.checkpoint_every_records;
    const bool by_time = impl_->options.checkpoint_every.count() > 0 &&
                         now_ms - last->time_ms >=
                             std::chrono::duration_cast<std::chrono::milliseconds>(impl_->options.checkpoint_every).count();
    if (by_count || by_time) {
      return InsertCheckpoint(s, SignCheckpoint(*head, now_ms, key_));
    }
    return {};
  });
  if (!done) {
    log::Get("policy")->error("audit append failed: {} ({})", done.error().message(), store::sql::LastErrorDetail());
    return done.error();
  }
  if (impl_->syslog) {
    for (const auto& record : written) {
      impl_->syslog->Send(record);
    }
  }
  return answers;
}

Result<std::vector<AuditRecord>> SelectAuditRecords(store::sql::Database& db, std::int64_t first,
                                                    std::int64_t last, std::size_t limit) {
  // No limit: -1 on SQLite, NULL on PostgreSQL (which refuses a negative LIMIT).
  std::optional<std::int64_t> bound = static_cast<std::int64_t>(limit);
  if (limit == 0) {
    bound = db.backend() == store::sql::Backend::kSqlite ? std::optional<std::int64_t>(-1) : std::nullopt;
  }
  auto rows = db.WithSession([&](store::sql::Session& s) {
    return s.Query(fmt::format("SELECT {} FROM audit_records WHERE sequence >= $1 AND ($2 = 0 OR sequence <= $2) "
                               "ORDER BY sequence LIMIT $3",
                               kRecordColumns),
                   first, last, bound);
  });
  if (!rows) {
    return rows.error();
  }
  std::vector<AuditRecord> records;
  records.reserve(rows->size());
  for (const auto& row : *rows) {
    records.push_back(RecordFromRow(row));
  }
  return records;
}

Result<std::vector<AuditCheckpoint>> SelectAuditCheckpoints(store::sql::Database& db) {
  auto rows = db.WithSession([](store::sql::Session& s) {
    return s.Query("SELECT sequence, hash, time_ms, signature FROM audit_checkpoints ORDER BY sequence");
  });
  if (!rows) {
    return rows.error();
  }
  std::vector<AuditCheckpoint> checkpoints;
  for (const auto& r : *rows) {
    checkpoints.push_back({.sequence = r.Int(0), .hash = r.Text(1), .time_ms = r.Int(2), .signature = r.Text(3)});
  }
  return checkpoints;
}

Result<std::vector<AuditRecord>> AuditLog::Read(std::int64_t first, std::int64_t last, std::size_t limit) {
  return SelectAuditRecords(*impl_->db, first, last, limit);
}

Result<std::vector<AuditCheckpoint>> AuditLog::Checkpoints() { return SelectAuditCheckpoints(*impl_->db); }

Result<std::int64_t> AuditLog::LastSequence() {
  auto head = impl_->db->WithSession([](store::sql::Session& s) { return ReadHead(s); });
  if (!head) {
    return head.error();
  }
  return head->sequence;
}

Result<std::int64_t> AuditLog::Checkpoint() {
  const std::int64_t now_ms = impl_->options.clock->NowUnixMillis();
  std::int64_t sequence = 0;
  auto done = impl_->db->Transaction(store::sql::TxMode::kWrite, [&](store::sql::Session& s) -> VoidResult {
    if (auto locked = LockForWrite(s, lock_key::kAuditChain); !locked) {
      return locked;
    }
    auto head = ReadHead(s);
    if (!head) {
      return head.error();
    }
    sequence = head->sequence;
    if (head->sequence == 0) {
      return {};
    }
    return InsertCheckpoint(s, SignCheckpoint(*head, now_ms, key_));
  });
  if (!done) {
    return done.error();
  }
  return sequence;
}

VoidResult AuditLog::CheckpointIfDue() {
  const std::int64_t now_ms = impl_->options.clock->NowUnixMillis();
  const std::int64_t every_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(impl_->options.checkpoint_every).count();
  return impl_->db->Transaction(store::sql::TxMode::kWrite, [&](store::sql::Session& s) -> VoidResult {
    if (auto locked = LockForWrite(s, lock_key::kAuditChain); !locked) {
      return locked;
    }
    auto head = ReadHead(s);
    if (!head) {
      return head.error();
    }
    auto last = ReadLastCheckpoint(s);
    if (!last) {
      return last.error();
    }
    if (head->sequence == last->sequence || now_ms - last->time_ms < every_ms) {
      return {};
    }
    return InsertCheckpoint(s, SignCheckpoint(*head, now_ms, key_));
  });
}

std::int64_t AuditLog::syslog_dropped() const {
  return impl_->syslog ? impl_->syslog->dropped() : 0;
}

}  // namespace lifeline::policy
