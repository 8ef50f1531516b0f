#include "store/sqlite/home_store.h"

#include "common/clock.h"
#include "common/log.h"
#include "store/sqlite/database.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <utility>

namespace lifeline::store {
namespace {

using protocol::MessageType;
using protocol::Severity;
using sqlite::Database;
using sqlite::Statement;

// Migration i moves the schema from version i to i+1. Never edit a shipped step: append a new one.
constexpr std::array<std::string_view, 2> kMigrations = {
    R"sql(
CREATE TABLE enrollment_tokens (
  token_hash     TEXT PRIMARY KEY,
  customer       TEXT NOT NULL,
  site           TEXT NOT NULL,
  serial         TEXT NOT NULL,
  model          TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  expires_at_ms  INTEGER NOT NULL,
  used_at_ms     INTEGER
);

CREATE TABLE devices (
  id                        INTEGER PRIMARY KEY,
  customer                  TEXT NOT NULL,
  site                      TEXT NOT NULL,
  serial                    TEXT NOT NULL,
  model                     TEXT NOT NULL,
  signing_public_b64        TEXT NOT NULL,
  cert_fingerprint          TEXT NOT NULL,
  cert_pem                  TEXT NOT NULL,
  cert_not_after_ms         INTEGER NOT NULL,
  status                    TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
  enrolled_at_ms            INTEGER NOT NULL,
  last_seen_ms              INTEGER,
  last_heartbeat_ms         INTEGER,
  last_heartbeat_interval_s INTEGER NOT NULL DEFAULT 0,
  last_sequence             INTEGER NOT NULL DEFAULT 0,
  UNIQUE (customer, site, serial)
);

-- Batch ids seen, for replay detection; pruned by age.
CREATE TABLE batches (
  batch_id        TEXT PRIMARY KEY,
  device_id       INTEGER NOT NULL REFERENCES devices (id),
  received_at_ms  INTEGER NOT NULL
);
CREATE INDEX batches_by_time ON batches (received_at_ms);

CREATE TABLE tickets (
  id              INTEGER PRIMARY KEY,
  number          TEXT NOT NULL UNIQUE,
  state           TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
  device_id       INTEGER NOT NULL REFERENCES devices (id),
  customer        TEXT NOT NULL,
  site            TEXT NOT NULL,
  serial          TEXT NOT NULL,
  code            TEXT NOT NULL,
  severity        TEXT NOT NULL,
  text            TEXT NOT NULL,
  first_seen_ms   INTEGER NOT NULL,
  last_seen_ms    INTEGER NOT NULL,
  occurrences     INTEGER NOT NULL,
  resolved_at_ms  INTEGER
);
-- At most one open ticket per device and alert code: repeats join it instead of opening another.
CREATE UNIQUE INDEX tickets_one_open ON tickets (device_id, code) WHERE state = 'open';

-- Every ingested message with the answer the home gave, so a repeated message id gets the same one.
CREATE TABLE events (
  id              INTEGER PRIMARY KEY,
  device_id       INTEGER NOT NULL REFERENCES devices (id),
  message_id      TEXT NOT NULL,
  batch_id        TEXT NOT NULL,
  type            TEXT NOT NULL,
  sequence        INTEGER NOT NULL,
  code            TEXT NOT NULL,
  severity        TEXT,
  text            TEXT NOT NULL,
  payload_json    TEXT NOT NULL,
  device_time_ms  INTEGER NOT NULL,
  received_at_ms  INTEGER NOT NULL,
  ticket_id       INTEGER REFERENCES tickets (id),
  result_status   TEXT NOT NULL,
  result_reason   TEXT NOT NULL,
  result_ticket   TEXT NOT NULL,
  UNIQUE (device_id, message_id)
);
CREATE INDEX events_by_ticket ON events (ticket_id);

CREATE TABLE notifications (
  id               INTEGER PRIMARY KEY,
  kind             TEXT NOT NULL,
  recipient        TEXT NOT NULL,
  ticket_id        INTEGER NOT NULL REFERENCES tickets (id),
  subject          TEXT NOT NULL,
  body             TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  last_error       TEXT NOT NULL DEFAULT '',
  created_at_ms    INTEGER NOT NULL,
  next_attempt_ms  INTEGER NOT NULL,
  sent_at_ms       INTEGER
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_ms);

CREATE TABLE admin_tokens (
  id             INTEGER PRIMARY KEY,
  name           TEXT NOT NULL UNIQUE,
  token_hash     TEXT NOT NULL UNIQUE,
  role           TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL
);

-- Named sequences: ticket numbers are LL-<counter>, never reused even when rows are deleted.
CREATE TABLE counters (
  name   TEXT PRIMARY KEY,
  value  INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('ticket', 0);
)sql",
    // 2: instructions from home to devices, delivered in replies until the device reports on them.
    R"sql(
CREATE TABLE instructions (
  id              TEXT PRIMARY KEY,
  device_id       INTEGER NOT NULL REFERENCES devices (id),
  kind            TEXT NOT NULL,
  config_toml     TEXT NOT NULL DEFAULT '',
  created_at_ms   INTEGER NOT NULL,
  status          TEXT NOT NULL DEFAULT 'pending',  -- pending, done, refused, failed
  detail          TEXT NOT NULL DEFAULT '',
  completed_at_ms INTEGER
);
CREATE INDEX instructions_by_device ON instructions (device_id, status, created_at_ms);
)sql",
};

std::shared_ptr<spdlog::logger> Logger() {
  static const auto logger = log::Get("store");
  return logger;
}

bool IsConstraintViolation(const std::error_code& ec) {
  return ec == sqlite::MakeError(SQLITE_CONSTRAINT);
}

/// Runs one statement that returns no rows.
template <class... Args>
VoidResult Run(Database& db, std::string_view sql, const Args&... args) {
  auto stmt = db.Prepare(sql);
  if (!stmt) {
    return stmt.error();
  }
  stmt->BindAll(args...);
  return stmt->Run();
}

/// Runs a statement that yields one integer (COUNT(*) and the like).
template <class... Args>
Result<std::int64_t> QueryInt(Database& db, std::string_view sql, const Args&... args) {
  auto stmt = db.Prepare(sql);
  if (!stmt) {
    return stmt.error();
  }
  stmt->BindAll(args...);
  auto row = stmt->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return Fail(make_error_code(Errc::kNotFound));
  }
  return stmt->Int(0);
}

std::string TicketNumber(std::int64_t sequence) { return fmt::format("LL-{:06d}", sequence); }

std::string FormatMs(std::int64_t ms) {
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

/// Device-supplied text goes into an email subject: no control characters, bounded length.
std::string SubjectSafe(std::string_view text, std::size_t max_bytes) {
  std::string out;
  for (char c : text.substr(0, max_bytes)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  return out;
}

std::optional<DeviceStatus> ParseDeviceStatus(std::string_view text) {
  if (text == "active") {
    return DeviceStatus::kActive;
  }
  if (text == "revoked") {
    return DeviceStatus::kRevoked;
  }
  return std::nullopt;
}

std::optional<TicketState> ParseTicketState(std::string_view text) {
  if (text == "open") {
    return TicketState::kOpen;
  }
  if (text == "resolved") {
    return TicketState::kResolved;
  }
  return std::nullopt;
}

std::optional<NotificationStatus> ParseNotificationStatus(std::string_view text) {
  for (auto status :
       {NotificationStatus::kPending, NotificationStatus::kSent, NotificationStatus::kFailed}) {
    if (ToString(status) == text) {
      return status;
    }
  }
  return std::nullopt;
}

std::optional<std::int64_t> OptionalInt(const Statement& stmt, int column) {
  return stmt.IsNull(column) ? std::nullopt : std::optional<std::int64_t>(stmt.Int(column));
}

// ---- Row readers: each matches the column list right above it. ----

constexpr std::string_view kDeviceColumns =
    "customer, site, serial, model, signing_public_b64, cert_fingerprint, cert_pem, "
    "cert_not_after_ms, status, enrolled_at_ms, last_seen_ms, last_heartbeat_ms, "
    "last_heartbeat_interval_s, last_sequence";

Result<DeviceRecord> ReadDevice(const Statement& stmt) {
  DeviceRecord device;
  device.identity = {stmt.Text(0), stmt.Text(1), stmt.Text(2), stmt.Text(3)};
  device.signing_public_b64 = stmt.Text(4);
  device.cert_fingerprint = stmt.Text(5);
  device.cert_pem = stmt.Text(6);
  device.cert_not_after_ms = stmt.Int(7);
  auto status = ParseDeviceStatus(stmt.Text(8));
  if (!status) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  device.status = *status;
  device.enrolled_at_ms = stmt.Int(9);
  device.last_seen_ms = OptionalInt(stmt, 10);
  device.last_heartbeat_ms = OptionalInt(stmt, 11);
  device.last_heartbeat_interval_s = stmt.Int(12);
  device.last_sequence = static_cast<std::uint64_t>(stmt.Int(13));
  return device;
}

constexpr std::string_view kTicketColumns =
    "number, state, customer, site, serial, code, severity, text, first_seen_ms, last_seen_ms, "
    "occurrences, resolved_at_ms";

/// `base` is the index of the first ticket column, for queries that select something before them.
Result<Ticket> ReadTicket(const Statement& stmt, int base) {
  Ticket ticket;
  ticket.number = stmt.Text(base + 0);
  auto state = ParseTicketState(stmt.Text(base + 1));
  auto severity = protocol::ParseSeverity(stmt.Text(base + 6));
  if (!state || !severity) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  ticket.state = *state;
  ticket.device.customer = stmt.Text(base + 2);
  ticket.device.site = stmt.Text(base + 3);
  ticket.device.serial = stmt.Text(base + 4);
  ticket.code = stmt.Text(base + 5);
  ticket.severity = *severity;
  ticket.text = stmt.Text(base + 7);
  ticket.first_seen_ms = stmt.Int(base + 8);
  ticket.last_seen_ms = stmt.Int(base + 9);
  ticket.occurrences = stmt.Int(base + 10);
  ticket.resolved_at_ms = OptionalInt(stmt, base + 11);
  return ticket;
}

constexpr std::string_view kNotificationColumns =
    "n.id, n.kind, n.recipient, t.number, n.subject, n.body, n.status, n.attempts, n.last_error, "
    "n.created_at_ms, n.next_attempt_ms, n.sent_at_ms";

Result<Notification> ReadNotification(const Statement& stmt) {
  Notification n;
  n.id = stmt.Int(0);
  n.kind = stmt.Text(1);
  n.recipient = stmt.Text(2);
  n.ticket_number = stmt.Text(3);
  n.subject = stmt.Text(4);
  n.body = stmt.Text(5);
  auto status = ParseNotificationStatus(stmt.Text(6));
  if (!status) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  n.status = *status;
  n.attempts = stmt.Int(7);
  n.last_error = stmt.Text(8);
  n.created_at_ms = stmt.Int(9);
  n.next_attempt_ms = stmt.Int(10);
  n.sent_at_ms = OptionalInt(stmt, 11);
  return n;
}

constexpr std::string_view kEventColumns =
    "message_id, type, code, severity, text, payload_json, sequence, device_time_ms, "
    "received_at_ms";

Result<Event> ReadEvent(const Statement& stmt) {
  Event event;
  event.message_id = stmt.Text(0);
  auto type = protocol::ParseMessageType(stmt.Text(1));
  if (!type) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  event.type = *type;
  event.code = stmt.Text(2);
  if (!stmt.IsNull(3)) {
    event.severity = protocol::ParseSeverity(stmt.Text(3));
    if (!event.severity) {
      return Fail(make_error_code(Errc::kCorrupt));
    }
  }
  event.text = stmt.Text(4);
  event.payload_json = stmt.Text(5);
  event.sequence = static_cast<std::uint64_t>(stmt.Int(6));
  event.device_time_ms = stmt.Int(7);
  event.received_at_ms = stmt.Int(8);
  return event;
}

/// Collects every row of a prepared, bound statement through `read`.
template <class T, class Reader>
Result<std::vector<T>> ReadAll(Statement& stmt, Reader read) {
  std::vector<T> rows;
  while (true) {
    auto row = stmt.Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return rows;
    }
    auto value = read(stmt);
    if (!value) {
      return value.error();
    }
    rows.push_back(std::move(*value));
  }
}

// ---- Ingest: the per-message rules, run inside the batch's transaction. ----

struct DeviceRow {
  std::int64_t id = 0;
  DeviceStatus status = DeviceStatus::kActive;
  std::string model;
  std::uint64_t last_sequence = 0;
};

/// What applying one message decided: its answer, and the ticket row it touched (if any).
struct Applied {
  protocol::MessageResult result;
  std::optional<std::int64_t> ticket_id;
};

std::string EmailSubject(const std::string& number, Severity severity, const std::string& code,
                         const protocol::DeviceIdentity& device) {
  return fmt::format("[Lifeline {}] {} {} on {}", number, protocol::ToString(severity),
                     SubjectSafe(code, 64), SubjectSafe(device.Key(), 400));
}

std::string EmailBody(const std::string& number, const protocol::Message& msg,
                      const protocol::DeviceIdentity& device, std::int64_t received_ms) {
  std::string body;
  auto line = [&body](std::string_view label, std::string_view value) {
    body += fmt::format("{:<15}{}\n", label, value);
  };
  body += fmt::format("Lifeline opened ticket {} for an alert from {}.\n\n", number, device.Key());
  line("Customer:", device.customer);
  line("Site:", device.site);
  line("Serial:", device.serial);
  line("Model:", device.model.empty() ? "(unknown)" : device.model);
  body += "\n";
  line("Alert code:", msg.alert.code);
  line("Severity:", protocol::ToString(msg.alert.severity));
  line("Message:", msg.alert.text);
  if (!msg.alert.source.empty()) {
    line("Source:", msg.alert.source);
  }
  line("Device time:", FormatMs(msg.timestamp_ms));
  line("Received:", FormatMs(received_ms));
  body += "\n";
  line("Ticket:", number);
  body += "\nRepeats of this alert are added to the ticket until the device clears it.\n";
  return body;
}

class Ingester {
 public:
  Ingester(Database& db, const IngestRequest& request, const DeviceRow& device)
      : db_(db), request_(request), device_(device) {}

  Result<Applied> Apply(const protocol::Message& msg) {
    switch (msg.type) {
      case MessageType::kHeartbeat:
        return Heartbeat(msg);
      case MessageType::kAlert:
        return Alert(msg);
      case MessageType::kClear:
        return Clear(msg);
      case MessageType::kInventory:
      case MessageType::kPerformance:
      case MessageType::kBundleManifest:
      case MessageType::kConfiguration:
        return Accepted(msg, "", std::nullopt);
    }
    return Rejected(msg, "unknown message type");
  }

 private:
  static Applied Accepted(const protocol::Message& msg, std::string reason,
                          std::optional<std::pair<std::int64_t, std::string>> ticket) {
    Applied applied;
    applied.result.message_id = msg.id;
    applied.result.status = protocol::MessageStatus::kAccepted;
    applied.result.reason = std::move(reason);
    if (ticket) {
      applied.ticket_id = ticket->first;
      applied.result.ticket = std::move(ticket->second);
    }
    return applied;
  }
  static Applied Rejected(const protocol::Message& msg, std::string reason) {
    Applied applied;
    applied.result.message_id = msg.id;
    applied.result.status = protocol::MessageStatus::kRejected;
    applied.result.reason = std::move(reason);
    return applied;
  }

  Result<Applied> Heartbeat(const protocol::Message& msg) {
    auto updated = Run(db_,
                       "UPDATE devices SET last_heartbeat_ms = ?, last_heartbeat_interval_s = ? "
                       "WHERE id = ?",
                       request_.now_ms, msg.heartbeat.interval_seconds, device_.id);
    if (!updated) {
      return updated.error();
    }
    return Accepted(msg, "", std::nullopt);
  }

  struct OpenTicket {
    std::int64_t id = 0;
    std::string number;
    Severity severity = Severity::kError;
  };

  Result<std::optional<OpenTicket>> FindOpenTicket(const std::string& code) {
    auto stmt = db_.Prepare(
        "SELECT id, number, severity FROM tickets WHERE device_id = ? AND code = ? AND state = "
        "'open'");
    if (!stmt) {
      return stmt.error();
    }
    stmt->BindAll(device_.id, code);
    auto row = stmt->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return std::optional<OpenTicket>();
    }
    auto severity = protocol::ParseSeverity(stmt->Text(2));
    if (!severity) {
      return Fail(make_error_code(Errc::kCorrupt));
    }
    return std::optional<OpenTicket>(OpenTicket{stmt->Int(0), stmt->Text(1), *severity});
  }

  Result<Applied> Alert(const protocol::Message& msg) {
    if (msg.alert.code.empty()) {
      return Rejected(msg, "alert code missing");
    }
    if (static_cast<int>(msg.alert.severity) < static_cast<int>(request_.ticket_min_severity)) {
      return Accepted(msg, "recorded; below ticket severity", std::nullopt);
    }
    auto open = FindOpenTicket(msg.alert.code);
    if (!open) {
      return open.error();
    }
    if (*open) {
      // A repeat while the ticket is open: count it, keep the worst severity, no new email.
      const Severity severity = std::max(msg.alert.severity, (*open)->severity);
      auto updated =
          Run(db_,
              "UPDATE tickets SET occurrences = occurrences + 1, last_seen_ms = ?, "
              "text = ?, severity = ? WHERE id = ?",
              request_.now_ms, msg.alert.text, protocol::ToString(severity), (*open)->id);
      if (!updated) {
        return updated.error();
      }
      return Accepted(msg, "occurrence added", std::pair((*open)->id, (*open)->number));
    }
    return OpenNewTicket(msg);
  }

  Result<Applied> OpenNewTicket(const protocol::Message& msg) {
    if (auto bumped = Run(db_, "UPDATE counters SET value = value + 1 WHERE name = 'ticket'");
        !bumped) {
      return bumped.error();
    }
    auto sequence = QueryInt(db_, "SELECT value FROM counters WHERE name = 'ticket'");
    if (!sequence) {
      return sequence.error();
    }
    const std::string number = TicketNumber(*sequence);
    const auto& device = request_.batch.device;
    auto inserted = Run(
        db_,
        "INSERT INTO tickets (number, state, device_id, customer, site, serial, code, "
        "severity, text, first_seen_ms, last_seen_ms, occurrences) "
        "VALUES (?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        number, device_.id, device.customer, device.site, device.serial, msg.alert.code,
        protocol::ToString(msg.alert.severity), msg.alert.text, request_.now_ms, request_.now_ms);
    if (!inserted) {
      return inserted.error();
    }
    const std::int64_t ticket_id = db_.LastInsertRowId();

    // The model on file is the one enrollment vouched for; the batch's copy is only a fallback.
    protocol::DeviceIdentity described = device;
    if (!device_.model.empty()) {
      described.model = device_.model;
    }
    const std::string subject = EmailSubject(number, msg.alert.severity, msg.alert.code, described);
    const std::string body = EmailBody(number, msg, described, request_.now_ms);
    for (const auto& recipient : request_.contacts) {
      auto queued = Run(db_,
                        "INSERT INTO notifications (kind, recipient, ticket_id, subject, body, "
                        "status, created_at_ms, next_attempt_ms) "
                        "VALUES ('email', ?, ?, ?, ?, 'pending', ?, ?)",
                        recipient, ticket_id, subject, body, request_.now_ms, request_.now_ms);
      if (!queued) {
        return queued.error();
      }
    }
    return Accepted(msg, "ticket opened", std::pair(ticket_id, number));
  }

  Result<Applied> Clear(const protocol::Message& msg) {
    if (msg.alert.code.empty()) {
      return Rejected(msg, "alert code missing");
    }
    auto open = FindOpenTicket(msg.alert.code);
    if (!open) {
      return open.error();
    }
    if (!*open) {
      return Accepted(msg, "no open ticket", std::nullopt);
    }
    auto resolved =
        Run(db_,
            "UPDATE tickets SET state = 'resolved', resolved_at_ms = ?, last_seen_ms = ? "
            "WHERE id = ?",
            request_.now_ms, request_.now_ms, (*open)->id);
    if (!resolved) {
      return resolved.error();
    }
    return Accepted(msg, "ticket resolved", std::pair((*open)->id, (*open)->number));
  }

  Database& db_;
  const IngestRequest& request_;
  const DeviceRow& device_;
};

Result<std::optional<DeviceRow>> LoadDeviceRow(Database& db, const protocol::DeviceIdentity& id) {
  auto stmt = db.Prepare(
      "SELECT id, status, model, last_sequence FROM devices "
      "WHERE customer = ? AND site = ? AND serial = ?");
  if (!stmt) {
    return stmt.error();
  }
  stmt->BindAll(id.customer, id.site, id.serial);
  auto row = stmt->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<DeviceRow>();
  }
  auto status = ParseDeviceStatus(stmt->Text(1));
  if (!status) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  return std::optional<DeviceRow>(
      DeviceRow{stmt->Int(0), *status, stmt->Text(2), static_cast<std::uint64_t>(stmt->Int(3))});
}

/// The stored answer for a message id this device sent before, if any.
Result<std::optional<protocol::MessageResult>> StoredResult(Database& db, std::int64_t device_id,
                                                            const std::string& message_id) {
  auto stmt = db.Prepare(
      "SELECT result_status, result_reason, result_ticket FROM events "
      "WHERE device_id = ? AND message_id = ?");
  if (!stmt) {
    return stmt.error();
  }
  stmt->BindAll(device_id, message_id);
  auto row = stmt->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<protocol::MessageResult>();
  }
  protocol::MessageResult result;
  result.message_id = message_id;
  result.status = stmt->Text(0) == "accepted" ? protocol::MessageStatus::kAccepted
                                              : protocol::MessageStatus::kRejected;
  result.reason = stmt->Text(1);
  result.ticket = stmt->Text(2);
  result.duplicate = true;
  return std::optional<protocol::MessageResult>(std::move(result));
}

VoidResult RecordEvent(Database& db, std::int64_t device_id, const IngestRequest& request,
                       const protocol::Message& msg, const Applied& applied) {
  const bool has_alert = msg.type == MessageType::kAlert || msg.type == MessageType::kClear;
  std::optional<std::string> severity;
  std::string text;
  if (has_alert) {
    severity = std::string(protocol::ToString(msg.alert.severity));
    text = msg.alert.text;
  } else if (msg.type == MessageType::kHeartbeat) {
    text = msg.heartbeat.status;
  }
  auto stmt = db.Prepare(
      "INSERT INTO events (device_id, message_id, batch_id, type, sequence, code, severity, text, "
      "payload_json, device_time_ms, received_at_ms, ticket_id, result_status, result_reason, "
      "result_ticket) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!stmt) {
    return stmt.error();
  }
  stmt->BindAll(device_id, msg.id, request.batch.batch_id, protocol::ToString(msg.type),
                static_cast<std::int64_t>(msg.sequence), has_alert ? msg.alert.code : std::string(),
                severity, text, msg.payload_json, msg.timestamp_ms, request.now_ms,
                applied.ticket_id, protocol::ToString(applied.result.status), applied.result.reason,
                applied.result.ticket);
  return stmt->Run();
}

}  // namespace

std::span<const std::string_view> SqliteHomeStore::Migrations() { return kMigrations; }

Result<std::unique_ptr<SqliteHomeStore>> SqliteHomeStore::Open(const std::filesystem::path& path) {
  auto db = Database::Open(path);
  if (!db) {
    Logger()->error("cannot open home database {}: {}", path.string(), db.error().message());
    return db.error();
  }
  if (auto migrated = (*db)->Migrate(kMigrations); !migrated) {
    Logger()->error("cannot migrate home database {}: {} ({})", path.string(),
                    migrated.error().message(), (*db)->LastErrorMessage());
    return migrated.error();
  }
  return std::unique_ptr<SqliteHomeStore>(new SqliteHomeStore(std::move(*db)));
}

SqliteHomeStore::SqliteHomeStore(std::unique_ptr<sqlite::Database> db) : db_(std::move(db)) {}
SqliteHomeStore::~SqliteHomeStore() = default;

VoidResult SqliteHomeStore::CreateEnrollmentToken(std::string_view token_hash,
                                                  const protocol::DeviceIdentity& identity,
                                                  std::int64_t expires_at_ms, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto inserted = Run(*db_,
                      "INSERT INTO enrollment_tokens (token_hash, customer, site, serial, model, "
                      "created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      token_hash, identity.customer, identity.site, identity.serial, identity.model,
                      now_ms, expires_at_ms);
  if (!inserted && IsConstraintViolation(inserted.error())) {
    return make_error_code(Errc::kAlreadyExists);
  }
  return inserted;
}

VoidResult SqliteHomeStore::Enroll(const EnrollmentRequest& request) {
  std::lock_guard lock(mutex_);
  // BEGIN IMMEDIATE takes the write lock before the token is read, so a second process racing on
  // the same file waits here and then sees used_at_ms set.
  auto enrolled = db_->Transaction([&]() -> VoidResult {
    auto stmt = db_->Prepare(
        "SELECT customer, site, serial, expires_at_ms, used_at_ms FROM enrollment_tokens "
        "WHERE token_hash = ?");
    if (!stmt) {
      return stmt.error();
    }
    stmt->BindAll(request.token_hash);
    auto row = stmt->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return make_error_code(Errc::kTokenUnknown);
    }
    if (!stmt->IsNull(4)) {
      return make_error_code(Errc::kTokenUsed);
    }
    if (stmt->Int(3) <= request.now_ms) {
      return make_error_code(Errc::kTokenExpired);
    }
    const auto& id = request.identity;
    if (stmt->Text(0) != id.customer || stmt->Text(1) != id.site || stmt->Text(2) != id.serial) {
      return make_error_code(Errc::kTokenIdentityMismatch);
    }
    auto used = Run(*db_,
                    "UPDATE enrollment_tokens SET used_at_ms = ? "
                    "WHERE token_hash = ? AND used_at_ms IS NULL",
                    request.now_ms, request.token_hash);
    if (!used) {
      return used;
    }
    if (db_->Changes() != 1) {
      return make_error_code(Errc::kTokenUsed);
    }
    // Re-enrolling an existing device (new certificate, new key) keeps its history and reactivates
    // it: the fresh token is the operator's decision to trust it again.
    return Run(*db_,
               "INSERT INTO devices (customer, site, serial, model, signing_public_b64, "
               "cert_fingerprint, cert_pem, cert_not_after_ms, status, enrolled_at_ms) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?) "
               "ON CONFLICT (customer, site, serial) DO UPDATE SET model = excluded.model, "
               "signing_public_b64 = excluded.signing_public_b64, "
               "cert_fingerprint = excluded.cert_fingerprint, cert_pem = excluded.cert_pem, "
               "cert_not_after_ms = excluded.cert_not_after_ms, status = 'active', "
               "enrolled_at_ms = excluded.enrolled_at_ms",
               id.customer, id.site, id.serial, id.model, request.device_signing_public_b64,
               request.cert_fingerprint, request.cert_pem, request.cert_not_after_ms,
               request.now_ms);
  });
  if (!enrolled && enrolled.error().category() == sqlite::Category()) {
    Logger()->error("enrollment of {} failed: {} ({})", request.identity.Key(),
                    enrolled.error().message(), db_->LastErrorMessage());
  }
  return enrolled;
}

Result<std::optional<DeviceRecord>> SqliteHomeStore::FindDevice(std::string_view customer,
                                                                std::string_view site,
                                                                std::string_view serial) {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare(fmt::format(
      "SELECT {} FROM devices WHERE customer = ? AND site = ? AND serial = ?", kDeviceColumns));
  if (!stmt) {
    return stmt.error();
  }
  stmt->BindAll(customer, site, serial);
  auto rows = ReadAll<DeviceRecord>(*stmt, ReadDevice);
  if (!rows) {
    return rows.error();
  }
  if (rows->empty()) {
    return std::optional<DeviceRecord>();
  }
  return std::optional<DeviceRecord>(std::move(rows->front()));
}

VoidResult SqliteHomeStore::RevokeDevice(std::string_view customer, std::string_view site,
                                         std::string_view serial) {
  std::lock_guard lock(mutex_);
  auto updated = Run(*db_,
                     "UPDATE devices SET status = 'revoked' "
                     "WHERE customer = ? AND site = ? AND serial = ?",
                     customer, site, serial);
  if (!updated) {
    return updated;
  }
  if (db_->Changes() == 0) {
    return make_error_code(Errc::kDeviceUnknown);
  }
  return {};
}

Result<std::vector<DeviceRecord>> SqliteHomeStore::ListDevices() {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare(
      fmt::format("SELECT {} FROM devices ORDER BY customer, site, serial", kDeviceColumns));
  if (!stmt) {
    return stmt.error();
  }
  return ReadAll<DeviceRecord>(*stmt, ReadDevice);
}

Result<protocol::BatchReply> SqliteHomeStore::IngestBatch(const IngestRequest& request) {
  std::lock_guard lock(mutex_);
  const auto& batch = request.batch;
  auto reply = db_->Transaction([&]() -> Result<protocol::BatchReply> {
    auto device = LoadDeviceRow(*db_, batch.device);
    if (!device) {
      return device.error();
    }
    if (!*device) {
      return Fail(make_error_code(Errc::kDeviceUnknown));
    }
    if ((*device)->status != DeviceStatus::kActive) {
      return Fail(make_error_code(Errc::kDeviceRevoked));
    }
    auto recorded =
        Run(*db_,
            "INSERT INTO batches (batch_id, device_id, received_at_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (batch_id) DO NOTHING",
            batch.batch_id, (*device)->id, request.now_ms);
    if (!recorded) {
      return recorded.error();
    }
    if (db_->Changes() == 0) {
      return Fail(make_error_code(Errc::kReplayedBatch));
    }

    protocol::BatchReply out;
    out.batch_id = batch.batch_id;
    out.received_at_ms = request.now_ms;
    std::uint64_t last_sequence = (*device)->last_sequence;
    Ingester ingester(*db_, request, **device);
    for (const auto& msg : batch.messages) {
      if (msg.id.empty()) {
        // Without an id there is nothing to key the answer on; the codec should not let this
        // through.
        out.results.push_back({msg.id, protocol::MessageStatus::kRejected, "message id missing"});
        continue;
      }
      auto stored = StoredResult(*db_, (*device)->id, msg.id);
      if (!stored) {
        return stored.error();
      }
      if (*stored) {
        out.results.push_back(std::move(**stored));
        continue;
      }
      auto applied = ingester.Apply(msg);
      if (!applied) {
        return applied.error();
      }
      if (auto saved = RecordEvent(*db_, (*device)->id, request, msg, *applied); !saved) {
        return saved.error();
      }
      last_sequence = std::max(last_sequence, msg.sequence);
      out.results.push_back(std::move(applied->result));
    }
    // The device's reports on earlier instructions, then what is still pending for it, in this same
    // transaction: a reply never offers an instruction the device has already answered.
    for (const auto& result : batch.instruction_results) {
      auto done = Run(*db_,
                      "UPDATE instructions SET status = ?, detail = ?, completed_at_ms = ? "
                      "WHERE id = ? AND device_id = ? AND status = 'pending'",
                      result.status, result.detail, request.now_ms, result.id, (*device)->id);
      if (!done) {
        return done.error();
      }
    }
    auto pending = db_->Prepare(
        "SELECT id, kind, config_toml FROM instructions WHERE device_id = ? AND status = 'pending' "
        "ORDER BY created_at_ms, id LIMIT 10");
    if (!pending) {
      return pending.error();
    }
    pending->Bind(1, (*device)->id);
    for (;;) {
      auto row = pending->Step();
      if (!row) {
        return row.error();
      }
      if (!*row) {
        break;
      }
      out.instructions.push_back({pending->Text(0), pending->Text(1), pending->Text(2)});
    }
    auto seen = Run(*db_, "UPDATE devices SET last_seen_ms = ?, last_sequence = ? WHERE id = ?",
                    request.now_ms, static_cast<std::int64_t>(last_sequence), (*device)->id);
    if (!seen) {
      return seen.error();
    }
    return out;
  });
  if (!reply && reply.error().category() == sqlite::Category()) {
    Logger()->error("ingest of batch {} from {} failed: {} ({})", batch.batch_id,
                    batch.device.Key(), reply.error().message(), db_->LastErrorMessage());
  }
  return reply;
}

Result<std::string> SqliteHomeStore::QueueInstruction(const protocol::DeviceIdentity& device, std::string_view kind,
                                                     std::string_view config_toml, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  return db_->Transaction([&]() -> Result<std::string> {
    auto row = LoadDeviceRow(*db_, device);
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return Fail(make_error_code(Errc::kDeviceUnknown));
    }
    // An identifier, not a secret: SQLite's randomblob is enough.
    auto random = db_->Prepare("SELECT lower(hex(randomblob(16)))");
    if (!random) {
      return random.error();
    }
    if (auto stepped = random->Step(); !stepped) {
      return stepped.error();
    }
    const std::string id = random->Text(0);
    auto inserted = Run(*db_,
                        "INSERT INTO instructions (id, device_id, kind, config_toml, created_at_ms) "
                        "VALUES (?, ?, ?, ?, ?)",
                        id, (*row)->id, std::string(kind), std::string(config_toml), now_ms);
    if (!inserted) {
      return inserted.error();
    }
    return id;
  });
}

Result<std::vector<InstructionRecord>> SqliteHomeStore::ListInstructions(const protocol::DeviceIdentity& device) {
  std::lock_guard lock(mutex_);
  auto row = LoadDeviceRow(*db_, device);
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return Fail(make_error_code(Errc::kDeviceUnknown));
  }
  auto select = db_->Prepare(
      "SELECT id, kind, status, detail, created_at_ms, completed_at_ms FROM instructions WHERE device_id = ? "
      "ORDER BY created_at_ms, id");
  if (!select) {
    return select.error();
  }
  select->Bind(1, (*row)->id);
  std::vector<InstructionRecord> records;
  for (;;) {
    auto step = select->Step();
    if (!step) {
      return step.error();
    }
    if (!*step) {
      break;
    }
    InstructionRecord r{.id = select->Text(0), .kind = select->Text(1), .status = select->Text(2),
                        .detail = select->Text(3), .created_at_ms = select->Int(4)};
    if (!select->IsNull(5)) {
      r.completed_at_ms = select->Int(5);
    }
    records.push_back(std::move(r));
  }
  return records;
}

Result<std::int64_t> SqliteHomeStore::PruneBatchIds(std::int64_t older_than_ms) {
  std::lock_guard lock(mutex_);
  auto deleted = Run(*db_, "DELETE FROM batches WHERE received_at_ms < ?", older_than_ms);
  if (!deleted) {
    return deleted.error();
  }
  return static_cast<std::int64_t>(db_->Changes());
}

Result<std::vector<Ticket>> SqliteHomeStore::ListTickets(const TicketFilter& filter) {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare(fmt::format(
      "SELECT {} FROM tickets WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2",
      kTicketColumns));
  if (!stmt) {
    return stmt.error();
  }
  std::optional<std::string> state;
  if (filter.state) {
    state = std::string(ToString(*filter.state));
  }
  stmt->BindAll(state, std::max(filter.limit, 0));
  return ReadAll<Ticket>(*stmt, [](const Statement& row) { return ReadTicket(row, 0); });
}

Result<std::optional<TicketDetail>> SqliteHomeStore::GetTicket(std::string_view number) {
  std::lock_guard lock(mutex_);
  // One read transaction, so the ticket, its events and its notifications are one snapshot.
  return db_->Transaction([&]() -> Result<std::optional<TicketDetail>> {
    auto stmt =
        db_->Prepare(fmt::format("SELECT id, {} FROM tickets WHERE number = ?", kTicketColumns));
    if (!stmt) {
      return stmt.error();
    }
    stmt->BindAll(number);
    auto row = stmt->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return std::optional<TicketDetail>();
    }
    const std::int64_t ticket_id = stmt->Int(0);
    auto ticket = ReadTicket(*stmt, 1);
    if (!ticket) {
      return ticket.error();
    }
    TicketDetail detail;
    detail.ticket = std::move(*ticket);

    auto events = db_->Prepare(
        fmt::format("SELECT {} FROM events WHERE ticket_id = ? ORDER BY id", kEventColumns));
    if (!events) {
      return events.error();
    }
    events->BindAll(ticket_id);
    auto event_rows = ReadAll<Event>(*events, ReadEvent);
    if (!event_rows) {
      return event_rows.error();
    }
    detail.events = std::move(*event_rows);

    auto notes = db_->Prepare(
        fmt::format("SELECT {} FROM notifications n JOIN tickets t ON t.id = n.ticket_id "
                    "WHERE n.ticket_id = ? ORDER BY n.id",
                    kNotificationColumns));
    if (!notes) {
      return notes.error();
    }
    notes->BindAll(ticket_id);
    auto note_rows = ReadAll<Notification>(*notes, ReadNotification);
    if (!note_rows) {
      return note_rows.error();
    }
    detail.notifications = std::move(*note_rows);
    return std::optional<TicketDetail>(std::move(detail));
  });
}

Result<std::vector<Notification>> SqliteHomeStore::ClaimNotifications(int limit,
                                                                      std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  return db_->Transaction([&]() -> Result<std::vector<Notification>> {
    auto stmt = db_->Prepare(
        fmt::format("SELECT {} FROM notifications n JOIN tickets t ON t.id = n.ticket_id "
                    "WHERE n.status = 'pending' AND n.next_attempt_ms <= ? "
                    "ORDER BY n.next_attempt_ms, n.id LIMIT ?",
                    kNotificationColumns));
    if (!stmt) {
      return stmt.error();
    }
    stmt->BindAll(now_ms, std::max(limit, 0));
    auto claimed = ReadAll<Notification>(*stmt, ReadNotification);
    if (!claimed) {
      return claimed.error();
    }
    const std::int64_t lease_until = now_ms + kNotificationClaimLeaseMs;
    for (auto& n : *claimed) {
      auto leased =
          Run(*db_, "UPDATE notifications SET next_attempt_ms = ? WHERE id = ?", lease_until, n.id);
      if (!leased) {
        return leased.error();
      }
      n.next_attempt_ms = lease_until;
    }
    return claimed;
  });
}

VoidResult SqliteHomeStore::MarkNotificationSent(std::int64_t id, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto updated = Run(*db_,
                     "UPDATE notifications SET status = 'sent', sent_at_ms = ?, last_error = '' "
                     "WHERE id = ?",
                     now_ms, id);
  if (!updated) {
    return updated;
  }
  if (db_->Changes() == 0) {
    return make_error_code(Errc::kNotFound);
  }
  return {};
}

VoidResult SqliteHomeStore::MarkNotificationFailed(std::int64_t id, std::string_view error_text,
                                                   std::optional<std::int64_t> next_attempt_ms) {
  std::lock_guard lock(mutex_);
  auto updated = Run(*db_,
                     "UPDATE notifications SET attempts = attempts + 1, last_error = ?1, "
                     "status = CASE WHEN ?2 IS NULL THEN 'failed' ELSE 'pending' END, "
                     "next_attempt_ms = COALESCE(?2, next_attempt_ms) "
                     "WHERE id = ?3 AND status <> 'sent'",
                     error_text, next_attempt_ms, id);
  if (!updated) {
    return updated;
  }
  if (db_->Changes() == 0) {
    return make_error_code(Errc::kNotFound);
  }
  return {};
}

VoidResult SqliteHomeStore::CreateAdminToken(std::string_view name, std::string_view token_hash,
                                             std::string_view role, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto inserted = Run(*db_,
                      "INSERT INTO admin_tokens (name, token_hash, role, created_at_ms) "
                      "VALUES (?, ?, ?, ?)",
                      name, token_hash, role, now_ms);
  if (!inserted && IsConstraintViolation(inserted.error())) {
    return make_error_code(Errc::kAlreadyExists);
  }
  return inserted;
}

Result<std::optional<AdminToken>> SqliteHomeStore::FindAdminToken(std::string_view token_hash) {
  std::lock_guard lock(mutex_);
  auto stmt =
      db_->Prepare("SELECT id, name, role, created_at_ms FROM admin_tokens WHERE token_hash = ?");
  if (!stmt) {
    return stmt.error();
  }
  stmt->BindAll(token_hash);
  auto row = stmt->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<AdminToken>();
  }
  return std::optional<AdminToken>(
      AdminToken{stmt->Int(0), stmt->Text(1), stmt->Text(2), stmt->Int(3)});
}

Result<HomeStats> SqliteHomeStore::Stats() {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare(
      "SELECT (SELECT COUNT(*) FROM devices), "
      "(SELECT COUNT(*) FROM events WHERE type = 'alert' AND result_status = 'accepted'), "
      "(SELECT COUNT(*) FROM tickets), "
      "(SELECT COUNT(*) FROM notifications WHERE kind = 'email' AND status = 'sent'), "
      "(SELECT COUNT(*) FROM notifications WHERE kind = 'email' AND status = 'pending')");
  if (!stmt) {
    return stmt.error();
  }
  auto row = stmt->Step();
  if (!row) {
    return row.error();
  }
  return HomeStats{stmt->Int(0), stmt->Int(1), stmt->Int(2), stmt->Int(3), stmt->Int(4)};
}

}  // namespace lifeline::store
