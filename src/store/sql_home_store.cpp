#include "store/sql_home_store.h"

#include "common/clock.h"
#include "common/log.h"
#include "store/home_schema.h"
#include "store/postgres/session.h"
#include "store/sql/dialect.h"
#include "store/sql/migrate.h"
#include "store/sqlite/sql_session.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <utility>

namespace lifeline::store {
namespace {

using protocol::MessageType;
using protocol::Severity;
using sql::Row;
using sql::Session;
using sql::TxMode;

std::shared_ptr<spdlog::logger> Logger() {
  static const auto logger = log::Get("store");
  return logger;
}

/// Logs a database failure with the driver's own words; store errors (replay, unknown device, ...)
/// are answers, not failures, and are not logged here.
void LogIfDatabaseError(const std::error_code& ec, std::string_view what) {
  if (ec.category() == sql::ErrorCategory()) {
    Logger()->error("{} failed: {} ({})", what, ec.message(), sql::LastErrorDetail());
  }
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

/// 128 random bits as 32 hex digits: an identifier, not a secret.
std::string RandomId() {
  thread_local std::mt19937_64 random(std::random_device{}());
  return fmt::format("{:016x}{:016x}", random(), random());
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
  for (auto status : {NotificationStatus::kPending, NotificationStatus::kSent, NotificationStatus::kFailed}) {
    if (ToString(status) == text) {
      return status;
    }
  }
  return std::nullopt;
}

// ---- Row readers: each matches the column list right above it. ----

constexpr std::string_view kDeviceColumns =
    "customer, site, serial, model, signing_public_b64, cert_fingerprint, cert_pem, "
    "cert_not_after_ms, status, enrolled_at_ms, last_seen_ms, last_heartbeat_ms, "
    "last_heartbeat_interval_s, last_sequence";

Result<DeviceRecord> ReadDevice(const Row& row) {
  DeviceRecord device;
  device.identity = {row.Text(0), row.Text(1), row.Text(2), row.Text(3)};
  device.signing_public_b64 = row.Text(4);
  device.cert_fingerprint = row.Text(5);
  device.cert_pem = row.Text(6);
  device.cert_not_after_ms = row.Int(7);
  auto status = ParseDeviceStatus(row.Text(8));
  if (!status) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  device.status = *status;
  device.enrolled_at_ms = row.Int(9);
  device.last_seen_ms = row.OptionalInt(10);
  device.last_heartbeat_ms = row.OptionalInt(11);
  device.last_heartbeat_interval_s = row.Int(12);
  device.last_sequence = static_cast<std::uint64_t>(row.Int(13));
  return device;
}

constexpr std::string_view kTicketColumns =
    "number, state, customer, site, serial, code, severity, text, first_seen_ms, last_seen_ms, "
    "occurrences, resolved_at_ms";

/// `base` is the index of the first ticket column, for queries that select something before them.
Result<Ticket> ReadTicket(const Row& row, std::size_t base) {
  Ticket ticket;
  ticket.number = row.Text(base + 0);
  auto state = ParseTicketState(row.Text(base + 1));
  auto severity = protocol::ParseSeverity(row.Text(base + 6));
  if (!state || !severity) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  ticket.state = *state;
  ticket.device.customer = row.Text(base + 2);
  ticket.device.site = row.Text(base + 3);
  ticket.device.serial = row.Text(base + 4);
  ticket.code = row.Text(base + 5);
  ticket.severity = *severity;
  ticket.text = row.Text(base + 7);
  ticket.first_seen_ms = row.Int(base + 8);
  ticket.last_seen_ms = row.Int(base + 9);
  ticket.occurrences = row.Int(base + 10);
  ticket.resolved_at_ms = row.OptionalInt(base + 11);
  return ticket;
}

constexpr std::string_view kNotificationColumns =
    "n.id, n.kind, n.recipient, t.number, n.subject, n.body, n.status, n.attempts, n.last_error, "
    "n.created_at_ms, n.next_attempt_ms, n.sent_at_ms";

Result<Notification> ReadNotification(const Row& row) {
  Notification n;
  n.id = row.Int(0);
  n.kind = row.Text(1);
  n.recipient = row.Text(2);
  n.ticket_number = row.Text(3);
  n.subject = row.Text(4);
  n.body = row.Text(5);
  auto status = ParseNotificationStatus(row.Text(6));
  if (!status) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  n.status = *status;
  n.attempts = row.Int(7);
  n.last_error = row.Text(8);
  n.created_at_ms = row.Int(9);
  n.next_attempt_ms = row.Int(10);
  n.sent_at_ms = row.OptionalInt(11);
  return n;
}

constexpr std::string_view kEventColumns =
    "message_id, type, code, severity, text, payload_json, sequence, device_time_ms, received_at_ms";

Result<Event> ReadEvent(const Row& row) {
  Event event;
  event.message_id = row.Text(0);
  auto type = protocol::ParseMessageType(row.Text(1));
  if (!type) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  event.type = *type;
  event.code = row.Text(2);
  if (!row.IsNull(3)) {
    event.severity = protocol::ParseSeverity(row.Text(3));
    if (!event.severity) {
      return Fail(make_error_code(Errc::kCorrupt));
    }
  }
  event.text = row.Text(4);
  event.payload_json = row.Text(5);
  event.sequence = static_cast<std::uint64_t>(row.Int(6));
  event.device_time_ms = row.Int(7);
  event.received_at_ms = row.Int(8);
  return event;
}

/// Turns every row of a query's result into T through `read`.
template <class T, class Reader>
Result<std::vector<T>> ReadAll(Result<sql::Rows> rows, Reader read) {
  if (!rows) {
    return rows.error();
  }
  std::vector<T> out;
  out.reserve(rows->size());
  for (const Row& row : *rows) {
    auto value = read(row);
    if (!value) {
      return value.error();
    }
    out.push_back(std::move(*value));
  }
  return out;
}

// ---- Ingest: the per-message rules, run inside the batch's transaction. ----

struct DeviceRow {
  std::int64_t id = 0;
  DeviceStatus status = DeviceStatus::kActive;
  std::string model;
  std::uint64_t last_sequence = 0;
};

/// The device's row; with `lock`, locked until the transaction ends (see the file comment of
/// sql_home_store.h).
Result<std::optional<DeviceRow>> LoadDeviceRow(Session& s, const protocol::DeviceIdentity& id, bool lock) {
  auto row = s.QueryRow(fmt::format("SELECT id, status, model, last_sequence FROM devices "
                                    "WHERE customer = $1 AND site = $2 AND serial = $3{}",
                                    lock ? sql::ForUpdate(s.backend()) : ""),
                        id.customer, id.site, id.serial);
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<DeviceRow>();
  }
  auto status = ParseDeviceStatus((*row)->Text(1));
  if (!status) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  return std::optional<DeviceRow>(
      DeviceRow{(*row)->Int(0), *status, (*row)->Text(2), static_cast<std::uint64_t>((*row)->Int(3))});
}

/// What applying one message decided: its answer, and the ticket row it touched (if any).
struct Applied {
  protocol::MessageResult result;
  std::optional<std::int64_t> ticket_id;
};

std::string EmailSubject(const std::string& number, Severity severity, const std::string& code,
                         const protocol::DeviceIdentity& device) {
  return fmt::format("[Lifeline {}] {} {} on {}", number, protocol::ToString(severity), SubjectSafe(code, 64),
                     SubjectSafe(device.Key(), 400));
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
  Ingester(Session& s, const IngestRequest& request, const DeviceRow& device)
      : s_(s), request_(request), device_(device) {}

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
    auto updated = s_.Exec("UPDATE devices SET last_heartbeat_ms = $1, last_heartbeat_interval_s = $2 WHERE id = $3",
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
    auto row = s_.QueryRow("SELECT id, number, severity FROM tickets WHERE device_id = $1 AND code = $2 AND "
                           "state = 'open'",
                           device_.id, code);
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return std::optional<OpenTicket>();
    }
    auto severity = protocol::ParseSeverity((*row)->Text(2));
    if (!severity) {
      return Fail(make_error_code(Errc::kCorrupt));
    }
    return std::optional<OpenTicket>(OpenTicket{(*row)->Int(0), (*row)->Text(1), *severity});
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
      auto updated = s_.Exec(
          "UPDATE tickets SET occurrences = occurrences + 1, last_seen_ms = $1, text = $2, severity = $3 "
          "WHERE id = $4",
          request_.now_ms, msg.alert.text, protocol::ToString(severity), (*open)->id);
      if (!updated) {
        return updated.error();
      }
      return Accepted(msg, "occurrence added", std::pair((*open)->id, (*open)->number));
    }
    return OpenNewTicket(msg);
  }

  Result<Applied> OpenNewTicket(const protocol::Message& msg) {
    // SQLite counts in a table (under its single write lock); PostgreSQL takes a sequence value,
    // which never blocks a concurrent home.
    auto sequence = s_.QueryRow(
        sql::Pick(s_.backend(), "UPDATE counters SET value = value + 1 WHERE name = 'ticket' RETURNING value",
                  "SELECT nextval('ticket_numbers')"));
    if (!sequence) {
      return sequence.error();
    }
    if (!*sequence) {
      return Fail(make_error_code(Errc::kCorrupt));  // the counter row is missing
    }
    const std::string number = TicketNumber((*sequence)->Int(0));
    const auto& device = request_.batch.device;
    auto inserted = s_.QueryRow(
        "INSERT INTO tickets (number, state, device_id, customer, site, serial, code, severity, text, "
        "first_seen_ms, last_seen_ms, occurrences) "
        "VALUES ($1, 'open', $2, $3, $4, $5, $6, $7, $8, $9, $9, 1) RETURNING id",
        number, device_.id, device.customer, device.site, device.serial, msg.alert.code,
        protocol::ToString(msg.alert.severity), msg.alert.text, request_.now_ms);
    if (!inserted) {
      return inserted.error();
    }
    const std::int64_t ticket_id = (*inserted)->Int(0);

    // The model on file is the one enrollment vouched for; the batch's copy is only a fallback.
    protocol::DeviceIdentity described = device;
    if (!device_.model.empty()) {
      described.model = device_.model;
    }
    const std::string subject = EmailSubject(number, msg.alert.severity, msg.alert.code, described);
    const std::string body = EmailBody(number, msg, described, request_.now_ms);
    for (const auto& recipient : request_.contacts) {
      auto queued = s_.Exec(
          "INSERT INTO notifications (kind, recipient, ticket_id, subject, body, status, created_at_ms, "
          "next_attempt_ms) VALUES ('email', $1, $2, $3, $4, 'pending', $5, $5)",
          recipient, ticket_id, subject, body, request_.now_ms);
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
    auto resolved = s_.Exec(
        "UPDATE tickets SET state = 'resolved', resolved_at_ms = $1, last_seen_ms = $1 WHERE id = $2",
        request_.now_ms, (*open)->id);
    if (!resolved) {
      return resolved.error();
    }
    return Accepted(msg, "ticket resolved", std::pair((*open)->id, (*open)->number));
  }

  Session& s_;
  const IngestRequest& request_;
  const DeviceRow& device_;
};

/// The stored answer for a message id this device sent before, if any.
Result<std::optional<protocol::MessageResult>> StoredResult(Session& s, std::int64_t device_id,
                                                            const std::string& message_id) {
  auto row = s.QueryRow(
      "SELECT result_status, result_reason, result_ticket FROM events WHERE device_id = $1 AND message_id = $2",
      device_id, message_id);
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<protocol::MessageResult>();
  }
  protocol::MessageResult result;
  result.message_id = message_id;
  result.status = (*row)->Text(0) == "accepted" ? protocol::MessageStatus::kAccepted
                                                : protocol::MessageStatus::kRejected;
  result.reason = (*row)->Text(1);
  result.ticket = (*row)->Text(2);
  result.duplicate = true;
  return std::optional<protocol::MessageResult>(std::move(result));
}

VoidResult RecordEvent(Session& s, std::int64_t device_id, const IngestRequest& request,
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
  auto inserted = s.Exec(
      "INSERT INTO events (device_id, message_id, batch_id, type, sequence, code, severity, text, "
      "payload_json, device_time_ms, received_at_ms, ticket_id, result_status, result_reason, result_ticket) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
      device_id, msg.id, request.batch.batch_id, protocol::ToString(msg.type),
      static_cast<std::int64_t>(msg.sequence), has_alert ? msg.alert.code : std::string(), severity, text,
      msg.payload_json, msg.timestamp_ms, request.now_ms, applied.ticket_id,
      protocol::ToString(applied.result.status), applied.result.reason, applied.result.ticket);
  if (!inserted) {
    return inserted.error();
  }
  return {};
}

/// The batch's whole effect, inside its transaction.
Result<protocol::BatchReply> ApplyBatch(Session& s, const IngestRequest& request) {
  const auto& batch = request.batch;
  auto device = LoadDeviceRow(s, batch.device, /*lock=*/true);
  if (!device) {
    return device.error();
  }
  if (!*device) {
    return Fail(make_error_code(Errc::kDeviceUnknown));
  }
  if ((*device)->status != DeviceStatus::kActive) {
    return Fail(make_error_code(Errc::kDeviceRevoked));
  }
  auto recorded = s.Exec(
      "INSERT INTO batches (batch_id, device_id, received_at_ms) VALUES ($1, $2, $3) "
      "ON CONFLICT (batch_id) DO NOTHING",
      batch.batch_id, (*device)->id, request.now_ms);
  if (!recorded) {
    return recorded.error();
  }
  if (*recorded == 0) {
    return Fail(make_error_code(Errc::kReplayedBatch));
  }

  protocol::BatchReply out;
  out.batch_id = batch.batch_id;
  out.received_at_ms = request.now_ms;
  std::uint64_t last_sequence = (*device)->last_sequence;
  Ingester ingester(s, request, **device);
  for (const auto& msg : batch.messages) {
    if (msg.id.empty()) {
      // Without an id there is nothing to key the answer on; the codec should not let this through.
      out.results.push_back({msg.id, protocol::MessageStatus::kRejected, "message id missing"});
      continue;
    }
    auto stored = StoredResult(s, (*device)->id, msg.id);
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
    if (auto saved = RecordEvent(s, (*device)->id, request, msg, *applied); !saved) {
      return saved.error();
    }
    last_sequence = std::max(last_sequence, msg.sequence);
    out.results.push_back(std::move(applied->result));
  }
  // The device's reports on earlier instructions, then what is still pending for it, in this same
  // transaction: a reply never offers an instruction the device has already answered.
  for (const auto& result : batch.instruction_results) {
    auto done = s.Exec(
        "UPDATE instructions SET status = $1, detail = $2, completed_at_ms = $3 "
        "WHERE id = $4 AND device_id = $5 AND status = 'pending'",
        result.status, result.detail, request.now_ms, result.id, (*device)->id);
    if (!done) {
      return done.error();
    }
  }
  auto pending = s.Query(
      "SELECT id, kind, config_toml FROM instructions WHERE device_id = $1 AND status = 'pending' "
      "ORDER BY created_at_ms, id LIMIT 10",
      (*device)->id);
  if (!pending) {
    return pending.error();
  }
  for (const Row& row : *pending) {
    out.instructions.push_back({row.Text(0), row.Text(1), row.Text(2)});
  }
  auto seen = s.Exec("UPDATE devices SET last_seen_ms = $1, last_sequence = $2 WHERE id = $3", request.now_ms,
                     static_cast<std::int64_t>(last_sequence), (*device)->id);
  if (!seen) {
    return seen.error();
  }
  return out;
}

}  // namespace

// ---- Opening ------------------------------------------------------------------------------------

std::span<const sql::Migration> SqlHomeStore::Migrations() { return HomeMigrations(); }

Result<std::unique_ptr<SqlHomeStore>> SqlHomeStore::Open(std::shared_ptr<sql::Database> db) {
  if (auto migrated = sql::Migrate(*db, HomeMigrations(), kHomeMigrationLock); !migrated) {
    Logger()->error("cannot migrate the home store in {}: {} ({})", db->description(),
                    migrated.error().message(), sql::LastErrorDetail());
    return migrated.error();
  }
  return std::unique_ptr<SqlHomeStore>(new SqlHomeStore(std::move(db)));
}

Result<std::unique_ptr<SqlHomeStore>> SqlHomeStore::Open(const std::filesystem::path& path) {
  auto db = sqlite::OpenSqlDatabase(path);
  if (!db) {
    Logger()->error("cannot open home database {}: {}", path.string(), sql::LastErrorDetail());
    return db.error();
  }
  return Open(std::move(*db));
}

Result<std::unique_ptr<SqlHomeStore>> SqlHomeStore::Open(const HomeStoreOptions& options) {
  if (options.backend == sql::Backend::kSqlite) {
    return Open(options.sqlite_path);
  }
  auto db = postgres::Open({.conninfo = options.postgres_conninfo, .pool_size = options.postgres_pool_size});
  if (!db) {
    return db.error();  // the caller names the config key; LastErrorDetail() has libpq's reason
  }
  return Open(std::move(*db));
}

SqlHomeStore::~SqlHomeStore() = default;

// ---- Enrollment and devices ---------------------------------------------------------------------

VoidResult SqlHomeStore::CreateEnrollmentToken(std::string_view token_hash, const protocol::DeviceIdentity& identity,
                                               std::int64_t expires_at_ms, std::int64_t now_ms) {
  auto inserted = db_->WithSession([&](Session& s) {
    return s.Exec(
        "INSERT INTO enrollment_tokens (token_hash, customer, site, serial, model, created_at_ms, "
        "expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        token_hash, identity.customer, identity.site, identity.serial, identity.model, now_ms, expires_at_ms);
  });
  if (!inserted) {
    if (inserted.error() == sql::Errc::kUniqueViolation) {
      return make_error_code(Errc::kAlreadyExists);
    }
    LogIfDatabaseError(inserted.error(), "storing an enrollment token");
    return inserted.error();
  }
  return {};
}

VoidResult SqlHomeStore::Enroll(const EnrollmentRequest& request) {
  // The token row is read locked (SQLite: the write lock taken at BEGIN IMMEDIATE), so of two racing
  // enrollments, in one process or two, the second waits and then finds used_at_ms set.
  auto enrolled = db_->Transaction(TxMode::kWrite, [&](Session& s) -> VoidResult {
    auto row = s.QueryRow(fmt::format("SELECT customer, site, serial, expires_at_ms, used_at_ms "
                                      "FROM enrollment_tokens WHERE token_hash = $1{}",
                                      sql::ForUpdate(s.backend())),
                          request.token_hash);
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return make_error_code(Errc::kTokenUnknown);
    }
    const Row& token = **row;
    if (!token.IsNull(4)) {
      return make_error_code(Errc::kTokenUsed);
    }
    if (token.Int(3) <= request.now_ms) {
      return make_error_code(Errc::kTokenExpired);
    }
    const auto& id = request.identity;
    if (token.Text(0) != id.customer || token.Text(1) != id.site || token.Text(2) != id.serial) {
      return make_error_code(Errc::kTokenIdentityMismatch);
    }
    auto used = s.Exec("UPDATE enrollment_tokens SET used_at_ms = $1 WHERE token_hash = $2 AND used_at_ms IS NULL",
                       request.now_ms, request.token_hash);
    if (!used) {
      return used.error();
    }
    if (*used != 1) {
      return make_error_code(Errc::kTokenUsed);
    }
    // Re-enrolling an existing device (new certificate, new key) keeps its history and reactivates
    // it: the fresh token is the operator's decision to trust it again.
    auto upserted = s.Exec(
        "INSERT INTO devices (customer, site, serial, model, signing_public_b64, cert_fingerprint, cert_pem, "
        "cert_not_after_ms, status, enrolled_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9) "
        "ON CONFLICT (customer, site, serial) DO UPDATE SET model = excluded.model, "
        "signing_public_b64 = excluded.signing_public_b64, cert_fingerprint = excluded.cert_fingerprint, "
        "cert_pem = excluded.cert_pem, cert_not_after_ms = excluded.cert_not_after_ms, status = 'active', "
        "enrolled_at_ms = excluded.enrolled_at_ms",
        id.customer, id.site, id.serial, id.model, request.device_signing_public_b64, request.cert_fingerprint,
        request.cert_pem, request.cert_not_after_ms, request.now_ms);
    if (!upserted) {
      return upserted.error();
    }
    return {};
  });
  if (!enrolled) {
    LogIfDatabaseError(enrolled.error(), "enrollment of " + request.identity.Key());
  }
  return enrolled;
}

Result<std::optional<DeviceRecord>> SqlHomeStore::FindDevice(std::string_view customer, std::string_view site,
                                                             std::string_view serial) {
  auto devices = db_->WithSession([&](Session& s) {
    return ReadAll<DeviceRecord>(
        s.Query(fmt::format("SELECT {} FROM devices WHERE customer = $1 AND site = $2 AND serial = $3",
                            kDeviceColumns),
                customer, site, serial),
        ReadDevice);
  });
  if (!devices) {
    return devices.error();
  }
  if (devices->empty()) {
    return std::optional<DeviceRecord>();
  }
  return std::optional<DeviceRecord>(std::move(devices->front()));
}

VoidResult SqlHomeStore::RevokeDevice(std::string_view customer, std::string_view site, std::string_view serial) {
  auto updated = db_->WithSession([&](Session& s) {
    return s.Exec("UPDATE devices SET status = 'revoked' WHERE customer = $1 AND site = $2 AND serial = $3",
                  customer, site, serial);
  });
  if (!updated) {
    return updated.error();
  }
  if (*updated == 0) {
    return make_error_code(Errc::kDeviceUnknown);
  }
  return {};
}

Result<std::vector<DeviceRecord>> SqlHomeStore::ListDevices() {
  return db_->WithSession([&](Session& s) {
    return ReadAll<DeviceRecord>(
        s.Query(fmt::format("SELECT {} FROM devices ORDER BY customer, site, serial", kDeviceColumns)),
        ReadDevice);
  });
}

// ---- Ingest and instructions --------------------------------------------------------------------

Result<protocol::BatchReply> SqlHomeStore::IngestBatch(const IngestRequest& request) {
  auto reply = db_->Transaction(TxMode::kWrite, [&](Session& s) { return ApplyBatch(s, request); });
  if (!reply) {
    LogIfDatabaseError(reply.error(),
                       fmt::format("ingest of batch {} from {}", request.batch.batch_id, request.batch.device.Key()));
  }
  return reply;
}

Result<std::string> SqlHomeStore::QueueInstruction(const protocol::DeviceIdentity& device, std::string_view kind,
                                                   std::string_view config_toml, std::int64_t now_ms) {
  return db_->Transaction(TxMode::kWrite, [&](Session& s) -> Result<std::string> {
    auto row = LoadDeviceRow(s, device, /*lock=*/false);
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return Fail(make_error_code(Errc::kDeviceUnknown));
    }
    std::string id = RandomId();
    auto inserted = s.Exec(
        "INSERT INTO instructions (id, device_id, kind, config_toml, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        id, (*row)->id, kind, config_toml, now_ms);
    if (!inserted) {
      return inserted.error();
    }
    return id;
  });
}

Result<std::vector<InstructionRecord>> SqlHomeStore::ListInstructions(const protocol::DeviceIdentity& device) {
  return db_->WithSession([&](Session& s) -> Result<std::vector<InstructionRecord>> {
    auto row = LoadDeviceRow(s, device, /*lock=*/false);
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return Fail(make_error_code(Errc::kDeviceUnknown));
    }
    auto rows = s.Query(
        "SELECT id, kind, status, detail, created_at_ms, completed_at_ms FROM instructions WHERE device_id = $1 "
        "ORDER BY created_at_ms, id",
        (*row)->id);
    if (!rows) {
      return rows.error();
    }
    std::vector<InstructionRecord> records;
    for (const Row& r : *rows) {
      records.push_back({.id = r.Text(0),
                         .kind = r.Text(1),
                         .status = r.Text(2),
                         .detail = r.Text(3),
                         .created_at_ms = r.Int(4),
                         .completed_at_ms = r.OptionalInt(5)});
    }
    return records;
  });
}

Result<std::int64_t> SqlHomeStore::PruneBatchIds(std::int64_t older_than_ms) {
  return db_->WithSession(
      [&](Session& s) { return s.Exec("DELETE FROM batches WHERE received_at_ms < $1", older_than_ms); });
}

// ---- Tickets ------------------------------------------------------------------------------------

Result<std::vector<Ticket>> SqlHomeStore::ListTickets(const TicketFilter& filter) {
  std::optional<std::string> state;
  if (filter.state) {
    state = std::string(ToString(*filter.state));
  }
  return db_->WithSession([&](Session& s) {
    return ReadAll<Ticket>(
        s.Query(fmt::format("SELECT {} FROM tickets WHERE ($1 IS NULL OR state = $1) ORDER BY id DESC LIMIT $2",
                            kTicketColumns),
                state, std::max(filter.limit, 0)),
        [](const Row& row) { return ReadTicket(row, 0); });
  });
}

Result<std::optional<TicketDetail>> SqlHomeStore::GetTicket(std::string_view number) {
  // One snapshot, so the ticket, its events and its notifications agree with each other.
  return db_->Transaction(TxMode::kSnapshot, [&](Session& s) -> Result<std::optional<TicketDetail>> {
    auto row = s.QueryRow(fmt::format("SELECT id, {} FROM tickets WHERE number = $1", kTicketColumns), number);
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return std::optional<TicketDetail>();
    }
    const std::int64_t ticket_id = (*row)->Int(0);
    auto ticket = ReadTicket(**row, 1);
    if (!ticket) {
      return ticket.error();
    }
    TicketDetail detail;
    detail.ticket = std::move(*ticket);
    auto events = ReadAll<Event>(
        s.Query(fmt::format("SELECT {} FROM events WHERE ticket_id = $1 ORDER BY id", kEventColumns), ticket_id),
        ReadEvent);
    if (!events) {
      return events.error();
    }
    detail.events = std::move(*events);
    auto notes = ReadAll<Notification>(
        s.Query(fmt::format("SELECT {} FROM notifications n JOIN tickets t ON t.id = n.ticket_id "
                            "WHERE n.ticket_id = $1 ORDER BY n.id",
                            kNotificationColumns),
                ticket_id),
        ReadNotification);
    if (!notes) {
      return notes.error();
    }
    detail.notifications = std::move(*notes);
    return std::optional<TicketDetail>(std::move(detail));
  });
}

// ---- Outbox -------------------------------------------------------------------------------------

Result<std::vector<Notification>> SqlHomeStore::ClaimNotifications(int limit, std::int64_t now_ms) {
  return db_->Transaction(TxMode::kWrite, [&](Session& s) -> Result<std::vector<Notification>> {
    // PostgreSQL: rows another home is claiming right now are skipped, not waited for.
    auto due = ReadAll<Notification>(
        s.Query(fmt::format("SELECT {} FROM notifications n JOIN tickets t ON t.id = n.ticket_id "
                            "WHERE n.status = 'pending' AND n.next_attempt_ms <= $1 "
                            "ORDER BY n.next_attempt_ms, n.id LIMIT $2{}",
                            kNotificationColumns, sql::ForUpdateSkipLocked(s.backend(), "n")),
                now_ms, std::max(limit, 0)),
        ReadNotification);
    if (!due) {
      return due.error();
    }
    const std::int64_t lease_until = now_ms + kNotificationClaimLeaseMs;
    std::vector<Notification> claimed;
    for (auto& n : *due) {
      // The condition repeats the claim's test, so a row claimed meanwhile is not taken twice.
      auto leased = s.Exec(
          "UPDATE notifications SET next_attempt_ms = $1 WHERE id = $2 AND status = 'pending' "
          "AND next_attempt_ms <= $3",
          lease_until, n.id, now_ms);
      if (!leased) {
        return leased.error();
      }
      if (*leased == 1) {
        n.next_attempt_ms = lease_until;
        claimed.push_back(std::move(n));
      }
    }
    return claimed;
  });
}

VoidResult SqlHomeStore::MarkNotificationSent(std::int64_t id, std::int64_t now_ms) {
  auto updated = db_->WithSession([&](Session& s) {
    return s.Exec("UPDATE notifications SET status = 'sent', sent_at_ms = $1, last_error = '' WHERE id = $2",
                  now_ms, id);
  });
  if (!updated) {
    return updated.error();
  }
  if (*updated == 0) {
    return make_error_code(Errc::kNotFound);
  }
  return {};
}

VoidResult SqlHomeStore::MarkNotificationFailed(std::int64_t id, std::string_view error_text,
                                                std::optional<std::int64_t> next_attempt_ms) {
  auto updated = db_->WithSession([&](Session& s) {
    return s.Exec(
        "UPDATE notifications SET attempts = attempts + 1, last_error = $1, "
        "status = CASE WHEN $2 IS NULL THEN 'failed' ELSE 'pending' END, "
        "next_attempt_ms = COALESCE($2, next_attempt_ms) WHERE id = $3 AND status <> 'sent'",
        error_text, next_attempt_ms, id);
  });
  if (!updated) {
    return updated.error();
  }
  if (*updated == 0) {
    return make_error_code(Errc::kNotFound);
  }
  return {};
}

// ---- Admin tokens and totals --------------------------------------------------------------------

VoidResult SqlHomeStore::CreateAdminToken(std::string_view name, std::string_view token_hash, std::string_view role,
                                          std::int64_t now_ms) {
  auto inserted = db_->WithSession([&](Session& s) {
    return s.Exec("INSERT INTO admin_tokens (name, token_hash, role, created_at_ms) VALUES ($1, $2, $3, $4)", name,
                  token_hash, role, now_ms);
  });
  if (!inserted) {
    if (inserted.error() == sql::Errc::kUniqueViolation) {
      return make_error_code(Errc::kAlreadyExists);
    }
    return inserted.error();
  }
  return {};
}

Result<std::optional<AdminToken>> SqlHomeStore::FindAdminToken(std::string_view token_hash) {
  auto row = db_->WithSession([&](Session& s) {
    return s.QueryRow("SELECT id, name, role, created_at_ms FROM admin_tokens WHERE token_hash = $1", token_hash);
  });
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<AdminToken>();
  }
  return std::optional<AdminToken>(AdminToken{(*row)->Int(0), (*row)->Text(1), (*row)->Text(2), (*row)->Int(3)});
}

Result<HomeStats> SqlHomeStore::Stats() {
  auto row = db_->WithSession([&](Session& s) {
    return s.QueryRow(
        "SELECT (SELECT COUNT(*) FROM devices), "
        "(SELECT COUNT(*) FROM events WHERE type = 'alert' AND result_status = 'accepted'), "
        "(SELECT COUNT(*) FROM tickets), "
        "(SELECT COUNT(*) FROM notifications WHERE kind = 'email' AND status = 'sent'), "
        "(SELECT COUNT(*) FROM notifications WHERE kind = 'email' AND status = 'pending')");
  });
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return HomeStats{};
  }
  const Row& r = **row;
  return HomeStats{r.Int(0), r.Int(1), r.Int(2), r.Int(3), r.Int(4)};
}

}  // namespace lifeline::store
