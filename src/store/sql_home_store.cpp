#include "store/sql_home_store.h"

#include "common/clock.h"
#include "common/log.h"
#include "store/home_schema.h"
#include "store/postgres/session.h"
#include "store/sql/dialect.h"
#include "store/sql/migrate.h"
#include "store/sql_tickets.h"
#include "store/sqlite/sql_session.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <string_view>
#include <tuple>
#include <unordered_map>
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
    "last_heartbeat_interval_s, last_sequence, kind";

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
  device.kind = row.Text(14) == "gateway" ? EnrollmentKind::kGateway : EnrollmentKind::kDevice;
  return device;
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

/// The plain email for IngestRequest::contacts (the home's planner renders its own).
std::string EmailSubject(const Ticket& ticket, bool reopened) {
  return fmt::format("[Lifeline {}] {}{} {} on {}", ticket.number, reopened ? "reopened: " : "",
                     protocol::ToString(ticket.severity), SubjectSafe(ticket.code, 64),
                     SubjectSafe(ticket.device.Key(), 400));
}

std::string EmailBody(const Ticket& ticket, bool reopened, const protocol::Message& msg, std::int64_t received_ms) {
  std::string body;
  auto line = [&body](std::string_view label, std::string_view value) {
    body += fmt::format("{:<15}{}\n", label, value);
  };
  const auto& device = ticket.device;
  if (reopened) {
    body += fmt::format("Ticket {} was resolved and has come back on {}.\n\n", ticket.number, device.Key());
  } else {
    body += fmt::format("Lifeline opened ticket {} for an alert from {}.\n\n", ticket.number, device.Key());
  }
  line("Customer:", device.customer);
  line("Site:", device.site);
  line("Serial:", device.serial);
  line("Model:", device.model.empty() ? "(unknown)" : device.model);
  body += "\n";
  line("Alert code:", ticket.code);
  line("Severity:", protocol::ToString(ticket.severity));
  line("Message:", ticket.text);
  if (!msg.alert.source.empty()) {
    line("Source:", msg.alert.source);
  }
  line("Device time:", FormatMs(msg.timestamp_ms));
  line("Received:", FormatMs(received_ms));
  body += "\n";
  line("Ticket:", ticket.number);
  body += "\nRepeats of this alert are added to the ticket until the device clears it.\n";
  return body;
}

std::string DefaultDedupKey(const protocol::DeviceIdentity& device, std::string_view code) {
  return device.Key() + "/" + std::string(code);
}

std::string FormatWindow(std::int64_t ms) {
  if (ms % 3'600'000 == 0) {
    return fmt::format("{} h", ms / 3'600'000);
  }
  if (ms % 60'000 == 0) {
    return fmt::format("{} min", ms / 60'000);
  }
  return fmt::format("{} s", ms / 1000);
}

class Ingester {
 public:
  Ingester(Session& s, const IngestRequest& request, const DeviceRow& device, detail::MaintenanceState maintenance)
      : s_(s), request_(request), device_(device), maintenance_(maintenance) {
    // The model on file is the one enrollment vouched for; the batch's copy is only a fallback.
    described_ = request.batch.device;
    if (!device_.model.empty()) {
      described_.model = device_.model;
    }
    actor_ = detail::DeviceActor(described_);
  }

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
  static Applied Accepted(const protocol::Message& msg, std::string reason, const Ticket* ticket) {
    Applied applied;
    applied.result.message_id = msg.id;
    applied.result.status = protocol::MessageStatus::kAccepted;
    applied.result.reason = std::move(reason);
    if (ticket != nullptr) {
      applied.ticket_id = ticket->id;
      applied.result.ticket = ticket->number;
    }
    return applied;
  }
  static Applied Accepted(const protocol::Message& msg, std::string reason, std::nullopt_t) {
    return Accepted(msg, std::move(reason), static_cast<const Ticket*>(nullptr));
  }
  static Applied Rejected(const protocol::Message& msg, std::string reason) {
    Applied applied;
    applied.result.message_id = msg.id;
    applied.result.status = protocol::MessageStatus::kRejected;
    applied.result.reason = std::move(reason);
    return applied;
  }

  Result<Applied> Heartbeat(const protocol::Message& msg) {
    // Written once, with the device's other columns at the end of the batch: every heartbeat of a
    // batch has the same receive time, and the last one's interval is the one that stays.
    heartbeat_interval_s_ = msg.heartbeat.interval_seconds;
    return Accepted(msg, "", std::nullopt);
  }

  std::string KeyFor(std::string_view code) const {
    return request_.dedup_key ? request_.dedup_key(described_, code) : DefaultDedupKey(described_, code);
  }

  detail::RaiseRequest Raise(const protocol::Message& msg) const {
    return {.device_id = device_.id,
            .device = described_,
            .key = KeyFor(msg.alert.code),
            .code = msg.alert.code,
            .severity = msg.alert.severity,
            .text = msg.alert.text,
            .now_ms = request_.now_ms,
            .reopen_window_ms = request_.reopen_window_ms,
            .suppressed = maintenance_.any(),
            .actor = actor_,
            .planner = &request_.planner};
  }

  /// Counts this ticket-worthy alert for storm control; true when it tips the device into a storm.
  Result<bool> CountForStorm() {
    const auto& storm = request_.storm;
    if (storm.max_alerts <= 0 || maintenance_.storm) {
      return false;
    }
    if (!recent_alerts_) {
      // Alerts of the window already stored (this batch's earlier ones included); bounded by LIMIT.
      auto row = s_.QueryRow(
          "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE device_id = $1 AND type = 'alert' "
          "AND result_ticket <> '' AND received_at_ms > $2 LIMIT $3) recent",
          device_.id, request_.now_ms - storm.window_ms, storm.max_alerts + 1);
      if (!row) {
        return Fail(row.error());
      }
      recent_alerts_ = *row ? (*row)->Int(0) : 0;
    }
    *recent_alerts_ += 1;
    return *recent_alerts_ > storm.max_alerts;
  }

  /// Puts the device into automatic maintenance: a window, and the summary ticket opened (notified
  /// unless a declared window covers the device) or joined.
  Result<Applied> StartStorm(const protocol::Message& msg) {
    const auto& storm = request_.storm;
    const std::int64_t until = request_.now_ms + storm.maintenance_ms;
    const std::string reason = fmt::format("alert storm: more than {} alerts within {}", storm.max_alerts,
                                           FormatWindow(storm.window_ms));
    auto added = s_.Exec(
        "INSERT INTO maintenance_windows (customer, site, serial, starts_at_ms, ends_at_ms, reason, created_by, "
        "created_at_ms, automatic) VALUES ($1, $2, $3, $4, $5, $6, 'storm control', $4, 1)",
        described_.customer, described_.site, described_.serial, request_.now_ms, until, reason);
    if (!added) {
      return added.error();
    }
    maintenance_.storm = true;
    maintenance_.storm_until_ms = until;
    auto raised = RaiseSummary(msg, /*suppressed=*/maintenance_.declared);
    if (!raised) {
      return raised.error();
    }
    if (auto h = detail::RecordHistory(s_, raised->ticket.id, request_.now_ms, "storm control", "storm",
                                       ToString(raised->ticket.status), ToString(raised->ticket.status),
                                       fmt::format("{}; automatic maintenance until {}", reason, FormatMs(until)));
        !h) {
      return h.error();
    }
    return Accepted(msg, "storm control: device in automatic maintenance; added to the summary ticket",
                    &raised->ticket);
  }

  Result<detail::RaiseResult> RaiseSummary(const protocol::Message& msg, bool suppressed) {
    auto r = Raise(msg);
    r.key = DefaultDedupKey(described_, kStormTicketCode);
    r.code = std::string(kStormTicketCode);
    r.kind = "storm";
    r.suppressed = suppressed;
    r.text = fmt::format(
        "Alert storm: more than {} alerts within {}; the device is in automatic maintenance until {} and its "
        "alerts are added here without notifications. Latest: {} ({}): {}",
        request_.storm.max_alerts, FormatWindow(request_.storm.window_ms), FormatMs(maintenance_.storm_until_ms),
        msg.alert.code, protocol::ToString(msg.alert.severity), msg.alert.text);
    r.actor = "storm control";
    return RaiseOrJoin(r);
  }

  Result<Applied> Alert(const protocol::Message& msg) {
    if (msg.alert.code.empty()) {
      return Rejected(msg, "alert code missing");
    }
    if (static_cast<int>(msg.alert.severity) < static_cast<int>(request_.ticket_min_severity)) {
      return Accepted(msg, "recorded; below ticket severity", std::nullopt);
    }
    auto tipped = CountForStorm();
    if (!tipped) {
      return tipped.error();
    }
    if (*tipped) {
      return StartStorm(msg);
    }
    if (maintenance_.storm) {
      // During a storm every alert is an occurrence of the summary ticket, which notifies nobody.
      auto raised = RaiseSummary(msg, /*suppressed=*/true);
      if (!raised) {
        return raised.error();
      }
      return Accepted(msg, "storm control: added to the summary ticket", &raised->ticket);
    }
    auto raised = RaiseOrJoin(Raise(msg));
    if (!raised) {
      return raised.error();
    }
    const Ticket& ticket = raised->ticket;
    if (raised->what == detail::Raised::kJoined) {
      return Accepted(msg, "occurrence added", &ticket);
    }
    const bool reopened = raised->what == detail::Raised::kReopened;
    if (!maintenance_.any() && !request_.contacts.empty()) {
      std::vector<OutboxRow> emails;
      const std::string subject = EmailSubject(ticket, reopened);
      const std::string body = EmailBody(ticket, reopened, msg, request_.now_ms);
      for (const auto& recipient : request_.contacts) {
        emails.push_back({"email", recipient, subject, body});
      }
      if (auto queued = detail::QueueOutbox(s_, ticket.id, emails, request_.now_ms); !queued) {
        return queued.error();
      }
    }
    std::string reason = reopened ? "ticket reopened" : "ticket opened";
    if (maintenance_.any()) {
      reason += "; in maintenance, nobody notified";
    }
    return Accepted(msg, std::move(reason), &ticket);
  }

  Result<Applied> Clear(const protocol::Message& msg) {
    if (msg.alert.code.empty()) {
      return Rejected(msg, "alert code missing");
    }
    const std::string key = KeyFor(msg.alert.code);
    // The ticket is read and resolved in the database: it must hold this batch's repeats first.
    if (auto it = held_.find(key); it != held_.end()) {
      if (auto written = WriteRepeats(it->second); !written) {
        return written.error();
      }
      held_.erase(it);
    }
    auto open = detail::FindOpenTicket(s_, key, /*lock=*/true);
    if (!open) {
      return open.error();
    }
    if (!*open) {
      return Accepted(msg, "no open ticket", std::nullopt);
    }
    auto resolved = detail::ResolveTicket(s_, **open, request_.now_ms, actor_, "cleared by the device",
                                          maintenance_.any(), &request_.planner);
    if (!resolved) {
      return resolved.error();
    }
    return Accepted(msg, "ticket resolved", &*resolved);
  }

  /// An open ticket this batch raised or joined, with the repeats not yet written to its row.
  struct Held {
    Ticket ticket;  // as its row will be once the repeats are written
    std::int64_t unwritten = 0;
  };

  /// detail::RaiseTicket, except that a key whose open ticket this batch already holds is joined in
  /// memory: the same change RaiseTicket's join makes (one occurrence more, the worst severity, the
  /// latest text and time), written once per ticket by WriteRepeats instead of once per alert. The
  /// held ticket cannot change meanwhile: the transaction has it locked (its row on PostgreSQL,
  /// taken when RaiseTicket found, opened or reopened it; the whole file on SQLite), and within the
  /// batch only Clear touches it again, after writing its repeats.
  Result<detail::RaiseResult> RaiseOrJoin(const detail::RaiseRequest& r) {
    if (auto it = held_.find(r.key); it != held_.end()) {
      Ticket& t = it->second.ticket;
      t.severity = std::max(t.severity, r.severity);
      t.occurrences += 1;
      t.last_seen_ms = r.now_ms;
      t.text = r.text;
      it->second.unwritten += 1;
      return detail::RaiseResult{t, detail::Raised::kJoined};
    }
    auto raised = detail::RaiseTicket(s_, r);
    if (raised) {
      held_.emplace(r.key, Held{raised->ticket, 0});
    }
    return raised;
  }

  VoidResult WriteRepeats(Held& held) {
    if (held.unwritten == 0) {
      return {};
    }
    const Ticket& t = held.ticket;
    auto updated = s_.Exec(
        "UPDATE tickets SET occurrences = occurrences + $1, last_seen_ms = $2, text = $3, severity = $4 "
        "WHERE id = $5",
        held.unwritten, t.last_seen_ms, t.text, protocol::ToString(t.severity), t.id);
    if (!updated) {
      return updated.error();
    }
    held.unwritten = 0;
    return {};
  }

 public:
  /// Writes what the batch's messages left in memory: held tickets' repeats.
  VoidResult Finish() {
    for (auto& [key, held] : held_) {
      if (auto written = WriteRepeats(held); !written) {
        return written;
      }
    }
    return {};
  }
  /// The interval the batch's last heartbeat announced, if it had one.
  std::optional<std::int64_t> heartbeat_interval_s() const { return heartbeat_interval_s_; }

 private:
  Session& s_;
  const IngestRequest& request_;
  const DeviceRow& device_;
  detail::MaintenanceState maintenance_;
  protocol::DeviceIdentity described_;
  std::string actor_;
  std::optional<std::int64_t> recent_alerts_;  // storm control's count, loaded at the first alert
  std::unordered_map<std::string, Held> held_;  // by dedup key
  std::optional<std::int64_t> heartbeat_interval_s_;
};

/// Rows per multi-row statement: a power of two up to this, so a batch of any size runs at most
/// log2(kMaxRowsPerStatement) + 1 distinct statement texts (each kept prepared by the driver), and
/// 256 rows of 15 parameters stay far below SQLite's 32766 and PostgreSQL's 65535 parameters.
constexpr std::size_t kMaxRowsPerStatement = 256;

/// The largest power of two not above min(left, kMaxRowsPerStatement).
std::size_t ChunkRows(std::size_t left) {
  std::size_t rows = kMaxRowsPerStatement;
  while (rows > left) {
    rows /= 2;
  }
  return rows;
}

/// `head` followed by `rows` groups of `columns` parameters ("($1, $2), ($3, $4)"), numbered
/// after `first_parameter` - 1; built once per shape and kept.
const std::string& RowsStatement(std::string_view head, std::size_t columns, std::size_t rows,
                                 std::size_t first_parameter, std::string_view tail) {
  thread_local std::map<std::tuple<std::string, std::size_t, std::size_t, std::size_t>, std::string> built;
  auto& text = built[{std::string(head) + std::string(tail), columns, rows, first_parameter}];
  if (text.empty()) {
    text = head;
    std::size_t n = first_parameter;
    for (std::size_t r = 0; r < rows; ++r) {
      text += r == 0 ? "(" : ", (";
      for (std::size_t c = 0; c < columns; ++c) {
        text += fmt::format("{}${}", c == 0 ? "" : ", ", n++);
      }
      text += ")";
    }
    text += tail;
  }
  return text;
}

/// The stored answers for the ids of `messages` this device sent before, by id: one query per
/// chunk of ids instead of one per message.
Result<std::unordered_map<std::string, protocol::MessageResult>> StoredResults(
    Session& s, std::int64_t device_id, const std::vector<protocol::Message>& messages) {
  std::vector<std::string_view> ids;
  ids.reserve(messages.size());
  for (const auto& msg : messages) {
    if (!msg.id.empty()) {
      ids.push_back(msg.id);
    }
  }
  std::unordered_map<std::string, protocol::MessageResult> stored;
  std::vector<sql::Value> params;
  for (std::size_t done = 0; done < ids.size();) {
    const std::size_t rows = ChunkRows(ids.size() - done);
    params.clear();
    params.emplace_back(device_id);
    for (std::size_t k = 0; k < rows; ++k) {
      params.emplace_back(ids[done + k]);
    }
    const std::string& sql = RowsStatement(
        "SELECT message_id, result_status, result_reason, result_ticket FROM events WHERE device_id = $1 "
        "AND message_id IN ",
        rows, 1, 2, "");
    auto found = s.QueryParams(sql, params);
    if (!found) {
      return found.error();
    }
    for (const Row& row : *found) {
      protocol::MessageResult result;
      result.message_id = row.Text(0);
      result.status = row.Text(1) == "accepted" ? protocol::MessageStatus::kAccepted
                                                : protocol::MessageStatus::kRejected;
      result.reason = row.Text(2);
      result.ticket = row.Text(3);
      result.duplicate = true;
      std::string id = result.message_id;
      stored.emplace(std::move(id), std::move(result));
    }
    done += rows;
  }
  return stored;
}

/// A message applied in this batch, to be recorded in events with its answer.
struct NewEvent {
  const protocol::Message* msg;
  std::size_t result;  // index in the reply's results
  std::optional<std::int64_t> ticket_id;
};

/// Records the batch's applied messages and their answers: a multi-row INSERT per chunk.
VoidResult RecordEvents(Session& s, std::int64_t device_id, const IngestRequest& request,
                        const std::vector<NewEvent>& events, const std::vector<protocol::MessageResult>& results) {
  constexpr std::size_t kColumns = 15;
  std::vector<sql::Value> params;
  for (std::size_t done = 0; done < events.size();) {
    const std::size_t rows = ChunkRows(events.size() - done);
    params.clear();
    params.reserve(rows * kColumns);
    for (std::size_t k = 0; k < rows; ++k) {
      const NewEvent& event = events[done + k];
      const protocol::Message& msg = *event.msg;
      const protocol::MessageResult& result = results[event.result];
      const bool has_alert = msg.type == MessageType::kAlert || msg.type == MessageType::kClear;
      std::optional<std::string_view> severity;
      std::string_view text;
      if (has_alert) {
        severity = protocol::ToString(msg.alert.severity);
        text = msg.alert.text;
      } else if (msg.type == MessageType::kHeartbeat) {
        text = msg.heartbeat.status;
      }
      params.emplace_back(device_id);
      params.emplace_back(msg.id);
      params.emplace_back(request.batch.batch_id);
      params.emplace_back(protocol::ToString(msg.type));
      params.emplace_back(static_cast<std::int64_t>(msg.sequence));
      params.emplace_back(has_alert ? std::string_view(msg.alert.code) : std::string_view(""));
      params.emplace_back(severity);
      params.emplace_back(text);
      params.emplace_back(msg.payload_json);
      params.emplace_back(msg.timestamp_ms);
      params.emplace_back(request.now_ms);
      params.emplace_back(event.ticket_id);
      params.emplace_back(protocol::ToString(result.status));
      params.emplace_back(result.reason);
      params.emplace_back(result.ticket);
    }
    const std::string& sql = RowsStatement(
        "INSERT INTO events (device_id, message_id, batch_id, type, sequence, code, severity, text, "
        "payload_json, device_time_ms, received_at_ms, ticket_id, result_status, result_reason, result_ticket) "
        "VALUES ",
        kColumns, rows, 1, "");
    auto inserted = s.ExecuteParams(sql, params);
    if (!inserted) {
      return inserted.error();
    }
    done += rows;
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
  auto maintenance =
      detail::MaintenanceAt(s, batch.device.customer, batch.device.site, batch.device.serial, request.now_ms);
  if (!maintenance) {
    return maintenance.error();
  }
  auto stored = StoredResults(s, (*device)->id, batch.messages);
  if (!stored) {
    return stored.error();
  }
  Ingester ingester(s, request, **device, *maintenance);
  std::vector<NewEvent> events;
  events.reserve(batch.messages.size());
  // Ids applied earlier in this batch, answered as a repeat the way a stored answer is.
  std::unordered_map<std::string_view, std::size_t> applied_here;
  out.results.reserve(batch.messages.size());
  for (const auto& msg : batch.messages) {
    if (msg.id.empty()) {
      // Without an id there is nothing to key the answer on; the codec should not let this through.
      out.results.push_back({msg.id, protocol::MessageStatus::kRejected, "message id missing"});
      continue;
    }
    if (auto it = stored->find(msg.id); it != stored->end()) {
      out.results.push_back(it->second);
      continue;
    }
    if (auto it = applied_here.find(msg.id); it != applied_here.end()) {
      protocol::MessageResult repeat = out.results[it->second];
      repeat.duplicate = true;
      out.results.push_back(std::move(repeat));
      continue;
    }
    auto applied = ingester.Apply(msg);
    if (!applied) {
      return applied.error();
    }
    applied_here.emplace(msg.id, out.results.size());
    events.push_back({&msg, out.results.size(), applied->ticket_id});
    last_sequence = std::max(last_sequence, msg.sequence);
    out.results.push_back(std::move(applied->result));
  }
  if (auto finished = ingester.Finish(); !finished) {
    return finished.error();
  }
  if (auto saved = RecordEvents(s, (*device)->id, request, events, out.results); !saved) {
    return saved.error();
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
  auto seen = s.Exec(
      "UPDATE devices SET last_seen_ms = $1, last_sequence = $2, "
      "last_heartbeat_ms = CASE WHEN $3 IS NULL THEN last_heartbeat_ms ELSE $1 END, "
      "last_heartbeat_interval_s = COALESCE($3, last_heartbeat_interval_s) WHERE id = $4",
      request.now_ms, static_cast<std::int64_t>(last_sequence), ingester.heartbeat_interval_s(), (*device)->id);
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
                                               std::int64_t expires_at_ms, std::int64_t now_ms,
                                               EnrollmentKind kind) {
  auto inserted = db_->WithSession([&](Session& s) {
    return s.Exec(
        "INSERT INTO enrollment_tokens (token_hash, customer, site, serial, model, created_at_ms, "
        "expires_at_ms, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        token_hash, identity.customer, identity.site, identity.serial, identity.model, now_ms, expires_at_ms,
        ToString(kind));
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
    auto row = s.QueryRow(fmt::format("SELECT customer, site, serial, expires_at_ms, used_at_ms, kind "
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
    if (token.Text(0) != id.customer || token.Text(1) != id.site || token.Text(2) != id.serial ||
        token.Text(5) != ToString(request.kind)) {
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
        "cert_not_after_ms, status, enrolled_at_ms, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, "
        "$10) ON CONFLICT (customer, site, serial) DO UPDATE SET model = excluded.model, "
        "signing_public_b64 = excluded.signing_public_b64, cert_fingerprint = excluded.cert_fingerprint, "
        "cert_pem = excluded.cert_pem, cert_not_after_ms = excluded.cert_not_after_ms, status = 'active', "
        "enrolled_at_ms = excluded.enrolled_at_ms, kind = excluded.kind",
        id.customer, id.site, id.serial, id.model, request.device_signing_public_b64, request.cert_fingerprint,
        request.cert_pem, request.cert_not_after_ms, request.now_ms, ToString(request.kind));
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
  // Batches ingested at the same time share a commit on SQLite (docs/architecture.md, "Store seam":
  // group commit); each is applied under its own savepoint, so one refused batch undoes only itself.
  auto reply = db_->GroupTransaction([&](Session& s) { return ApplyBatch(s, request); });
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
  // Statuses come from the enum, never from the caller's text, so they may be spliced in.
  std::string statuses;
  for (auto status : filter.statuses) {
    statuses += fmt::format("{}'{}'", statuses.empty() ? "" : ", ", ToString(status));
  }
  const std::string sql = fmt::format(
      "{} WHERE ($1 IS NULL OR t.state = $1) AND ($2 = '' OR t.customer = $2) AND ($3 = '' OR t.site = $3) "
      "AND ($4 = '' OR t.device_id = (SELECT id FROM devices WHERE customer = $2 AND site = $3 AND serial = $4)) "
      "AND ($5 = '' OR t.code = $5) AND ($6 = '' OR t.assignee = $6) "
      "AND ($7 IS NULL OR t.state = 'open' OR t.last_seen_ms >= $7 OR COALESCE(t.resolved_at_ms, 0) >= $7 "
      "OR COALESCE(t.closed_at_ms, 0) >= $7){} ORDER BY t.id DESC LIMIT $8",
      detail::kSelectTickets, statuses.empty() ? "" : fmt::format(" AND t.status IN ({})", statuses));
  return db_->WithSession([&](Session& s) {
    return ReadAll<Ticket>(s.Query(sql, state, filter.customer, filter.site, filter.serial, filter.code,
                                   filter.assignee, filter.open_or_changed_since_ms, std::max(filter.limit, 0)),
                           detail::ReadTicket);
  });
}

Result<std::optional<TicketDetail>> SqlHomeStore::GetTicket(std::string_view number) {
  // One snapshot, so the ticket, its events, notes, history and notifications agree with each other.
  return db_->Transaction(TxMode::kSnapshot, [&](Session& s) -> Result<std::optional<TicketDetail>> {
    auto ticket = detail::LoadTicketByNumber(s, number, /*lock=*/false);
    if (!ticket) {
      return ticket.error();
    }
    if (!*ticket) {
      return std::optional<TicketDetail>();
    }
    const std::int64_t ticket_id = (*ticket)->id;
    TicketDetail detail;
    detail.ticket = std::move(**ticket);
    auto events = ReadAll<Event>(
        s.Query(fmt::format("SELECT {} FROM events WHERE ticket_id = $1 ORDER BY id", kEventColumns), ticket_id),
        ReadEvent);
    if (!events) {
      return events.error();
    }
    detail.events = std::move(*events);
    auto notifications = ReadAll<Notification>(
        s.Query(fmt::format("SELECT {} FROM notifications n JOIN tickets t ON t.id = n.ticket_id "
                            "WHERE n.ticket_id = $1 ORDER BY n.id",
                            kNotificationColumns),
                ticket_id),
        ReadNotification);
    if (!notifications) {
      return notifications.error();
    }
    detail.notifications = std::move(*notifications);
    auto notes = ReadAll<TicketNote>(
        s.Query("SELECT at_ms, author, text FROM ticket_notes WHERE ticket_id = $1 ORDER BY id", ticket_id),
        [](const Row& r) -> Result<TicketNote> { return TicketNote{r.Int(0), r.Text(1), r.Text(2)}; });
    if (!notes) {
      return notes.error();
    }
    detail.notes = std::move(*notes);
    auto history = ReadAll<TicketHistoryEntry>(
        s.Query("SELECT at_ms, actor, action, from_status, to_status, detail FROM ticket_history "
                "WHERE ticket_id = $1 ORDER BY id",
                ticket_id),
        [](const Row& r) -> Result<TicketHistoryEntry> {
          return TicketHistoryEntry{r.Int(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5)};
        });
    if (!history) {
      return history.error();
    }
    detail.history = std::move(*history);
    auto levels = s.Query("SELECT level, last_sent_ms FROM ticket_escalations WHERE ticket_id = $1", ticket_id);
    if (!levels) {
      return levels.error();
    }
    for (const Row& r : *levels) {
      detail.escalation_sent_ms[static_cast<int>(r.Int(0))] = r.Int(1);
    }
    return std::optional<TicketDetail>(std::move(detail));
  });
}

Result<std::vector<Notification>> SqlHomeStore::ListNotifications(const NotificationFilter& filter) {
  std::optional<std::string> status;
  if (filter.status) {
    status = std::string(ToString(*filter.status));
  }
  return db_->WithSession([&](Session& s) {
    return ReadAll<Notification>(
        s.Query(fmt::format("SELECT {} FROM notifications n JOIN tickets t ON t.id = n.ticket_id "
                            "WHERE ($1 IS NULL OR n.status = $1) AND ($2 = '' OR n.kind = $2) "
                            "AND ($3 = '' OR t.number = $3) ORDER BY n.id DESC LIMIT $4",
                            kNotificationColumns),
                status, filter.kind, filter.ticket_number, std::max(filter.limit, 0)),
        ReadNotification);
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
  return db_->Transaction(TxMode::kSnapshot, [&](Session& s) -> Result<HomeStats> {
    auto row = s.QueryRow(
        "SELECT (SELECT COUNT(*) FROM devices WHERE kind = 'device'), "
        "(SELECT COUNT(*) FROM events WHERE type = 'alert' AND result_status = 'accepted'), "
        "(SELECT COUNT(*) FROM tickets), "
        "(SELECT COUNT(*) FROM tickets WHERE state = 'open'), "
        "(SELECT COUNT(*) FROM notifications WHERE kind = 'email' AND status = 'sent'), "
        "(SELECT COUNT(*) FROM notifications WHERE kind = 'email' AND status = 'pending')");
    if (!row) {
      return row.error();
    }
    HomeStats stats;
    if (*row) {
      const Row& r = **row;
      stats.devices = r.Int(0);
      stats.alerts = r.Int(1);
      stats.tickets = r.Int(2);
      stats.open_tickets = r.Int(3);
      stats.emails_sent = r.Int(4);
      stats.emails_pending = r.Int(5);
    }
    auto by_kind = s.Query("SELECT kind, status, COUNT(*) FROM notifications GROUP BY kind, status");
    if (!by_kind) {
      return by_kind.error();
    }
    for (const Row& r : *by_kind) {
      const std::string status = r.Text(1);
      const std::int64_t count = r.Int(2);
      if (status == "sent") {
        stats.notifications_sent += count;
        stats.sent_by_kind[r.Text(0)] += count;
      } else if (status == "pending") {
        stats.notifications_pending += count;
      } else {
        stats.notifications_failed += count;
      }
    }
    return stats;
  });
}

}  // namespace lifeline::store
