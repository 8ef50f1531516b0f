#include "policy/approvals.h"

#include "common/log.h"
#include "policy/approval_email.h"
#include "policy/audit_log.h"
#include "policy/change_feed.h"
#include "policy/policy_rules.h"
#include "policy/policy_database.h"
#include "store/sql/database.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace lifeline::policy {
namespace json = boost::json;

namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("policy"); }

// Idempotent: the table lives in the users store's database but outside its numbered schema steps
// (as policy_versions does).
constexpr std::string_view kTable = R"sql(
CREATE TABLE IF NOT EXISTS approval_requests (
  id              TEXT PRIMARY KEY,
  gateway         TEXT NOT NULL,
  engineer        TEXT NOT NULL,
  device          TEXT NOT NULL,
  model           TEXT NOT NULL,
  activity        TEXT NOT NULL,
  application     TEXT NOT NULL,
  reason          TEXT NOT NULL,
  service_request TEXT NOT NULL,
  rule_id         INTEGER NOT NULL,
  timeout_s       INTEGER NOT NULL,
  requested_ms    INTEGER NOT NULL,
  received_ms     INTEGER NOT NULL,
  expires_ms      INTEGER NOT NULL,
  state           TEXT NOT NULL,
  decided_by      TEXT NOT NULL DEFAULT '',
  decided_ms      INTEGER,
  comment         TEXT NOT NULL DEFAULT '',
  decision_seq    INTEGER UNIQUE,
  emailed_ms      INTEGER
);
CREATE INDEX IF NOT EXISTS approval_requests_state ON approval_requests(state, expires_ms);
CREATE INDEX IF NOT EXISTS approval_requests_decisions ON approval_requests(gateway, decision_seq);
CREATE INDEX IF NOT EXISTS approval_requests_received ON approval_requests(received_ms);
)sql";
constexpr std::string_view kPostgresTable = R"sql(
CREATE TABLE IF NOT EXISTS approval_requests (
  id              TEXT PRIMARY KEY,
  gateway         TEXT NOT NULL,
  engineer        TEXT NOT NULL,
  device          TEXT NOT NULL,
  model           TEXT NOT NULL,
  activity        TEXT NOT NULL,
  application     TEXT NOT NULL,
  reason          TEXT NOT NULL,
  service_request TEXT NOT NULL,
  rule_id         BIGINT NOT NULL,
  timeout_s       BIGINT NOT NULL,
  requested_ms    BIGINT NOT NULL,
  received_ms     BIGINT NOT NULL,
  expires_ms      BIGINT NOT NULL,
  state           TEXT NOT NULL,
  decided_by      TEXT NOT NULL DEFAULT '',
  decided_ms      BIGINT,
  comment         TEXT NOT NULL DEFAULT '',
  decision_seq    BIGINT UNIQUE,
  emailed_ms      BIGINT
);
CREATE INDEX IF NOT EXISTS approval_requests_state ON approval_requests(state, expires_ms);
CREATE INDEX IF NOT EXISTS approval_requests_decisions ON approval_requests(gateway, decision_seq);
CREATE INDEX IF NOT EXISTS approval_requests_received ON approval_requests(received_ms);
)sql";

constexpr std::string_view kColumns =
    "id, gateway, engineer, device, model, activity, application, reason, service_request, rule_id, timeout_s, "
    "requested_ms, received_ms, expires_ms, state, decided_by, decided_ms, comment, decision_seq";

ApprovalRequest ReadRow(const store::sql::Row& s) {
  ApprovalRequest r;
  r.id = s.Text(0);
  r.gateway = s.Text(1);
  r.engineer = s.Text(2);
  r.device = s.Text(3);
  r.model = s.Text(4);
  r.activity = s.Text(5);
  r.application = s.Text(6);
  r.reason = s.Text(7);
  r.service_request = s.Text(8);
  r.rule_id = s.Int(9);
  r.timeout_s = s.Int(10);
  r.requested_ms = s.Int(11);
  r.received_ms = s.Int(12);
  r.expires_ms = s.Int(13);
  r.state = ParseRequestState(s.Text(14)).value_or(RequestState::kPending);
  r.decided_by = s.Text(15);
  r.decided_ms = s.OptionalInt(16);
  r.comment = s.Text(17);
  r.decision_seq = s.OptionalInt(18);
  return r;
}

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool IsRequestId(std::string_view id) {
  return id.size() == 32 &&
         std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

/// A name or free text from the gateway: at most `max` bytes, no control characters (they would
/// reach emails and terminals), no spaces at either end for names.
bool CheckText(std::string_view value, std::size_t max, bool name, bool required, std::string_view field,
               std::string* problem) {
  if (value.empty()) {
    if (required) {
      *problem = fmt::format("{} is missing or empty", field);
      return false;
    }
    return true;
  }
  if (value.size() > max) {
    *problem = fmt::format("{} is longer than {} bytes", field, max);
    return false;
  }
  if (std::any_of(value.begin(), value.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
      })) {
    *problem = fmt::format("{} contains control characters", field);
    return false;
  }
  if (name && (value.front() == ' ' || value.back() == ' ')) {
    *problem = fmt::format("{} has spaces at either end", field);
    return false;
  }
  return true;
}

constexpr std::size_t kMaxReasonBytes = 1000;

}  // namespace

std::string_view WireName(RequestState state) {
  switch (state) {
    case RequestState::kPending:
      return "pending";
    case RequestState::kApproved:
      return "approved";
    case RequestState::kDenied:
      return "denied";
    case RequestState::kExpired:
      return "expired";
  }
  return "pending";
}

std::optional<RequestState> ParseRequestState(std::string_view name) {
  for (RequestState s : {RequestState::kPending, RequestState::kApproved, RequestState::kDenied, RequestState::kExpired}) {
    if (WireName(s) == name) {
      return s;
    }
  }
  return std::nullopt;
}

std::string ApprovalRequestJson(const ApprovalRequest& r) {
  json::object o{{"id", r.id},
                 {"gateway", r.gateway},
                 {"engineer", r.engineer},
                 {"device", r.device},
                 {"model", r.model},
                 {"activity", r.activity},
                 {"application", r.application},
                 {"reason", r.reason},
                 {"service_request", r.service_request},
                 {"rule_id", r.rule_id},
                 {"timeout_s", r.timeout_s},
                 {"requested_ms", r.requested_ms},
                 {"received_ms", r.received_ms},
                 {"expires_ms", r.expires_ms},
                 {"state", WireName(r.state)},
                 {"decided_by", r.decided_by},
                 {"comment", r.comment}};
  o["decided_ms"] = r.decided_ms ? json::value(*r.decided_ms) : json::value(nullptr);
  return json::serialize(o);
}

std::optional<NewApprovalRequest> DecodeNewRequest(std::string_view body, std::string* problem) {
  boost::system::error_code ec;
  const json::value parsed = json::parse(body, ec);
  const json::object* o = !ec ? parsed.if_object() : nullptr;
  if (o == nullptr) {
    *problem = "the body is not a JSON object";
    return std::nullopt;
  }
  NewApprovalRequest r;
  auto text = [&](std::string_view key, std::string* out) {
    const json::value* v = o->if_contains(key);
    if (v == nullptr || v->is_null()) {
      return true;
    }
    if (!v->is_string()) {
      *problem = fmt::format("{} must be a string", key);
      return false;
    }
    *out = std::string(v->get_string());
    return true;
  };
  auto integer = [&](std::string_view key, std::int64_t* out, bool required) {
    const json::value* v = o->if_contains(key);
    if (v == nullptr || v->is_null()) {
      if (required) {
        *problem = fmt::format("{} is missing", key);
      }
      return !required;
    }
    if (!v->is_int64() && !v->is_uint64()) {
      *problem = fmt::format("{} must be an integer", key);
      return false;
    }
    if (v->is_uint64() && v->get_uint64() > static_cast<std::uint64_t>(INT64_MAX)) {
      *problem = fmt::format("{} is out of range", key);
      return false;
    }
    *out = v->is_int64() ? v->get_int64() : static_cast<std::int64_t>(v->get_uint64());
    return true;
  };
  if (!text("request_id", &r.id) || !text("engineer", &r.engineer) || !text("device", &r.device) ||
      !text("model", &r.model) || !text("activity", &r.activity) || !text("application", &r.application) ||
      !text("reason", &r.reason) || !text("service_request", &r.service_request) ||
      !integer("rule_id", &r.rule_id, false) || !integer("timeout_s", &r.timeout_s, true) ||
      !integer("requested_ms", &r.requested_ms, false)) {
    return std::nullopt;
  }
  if (!IsRequestId(r.id)) {
    *problem = "request_id must be 32 lowercase hex digits";
    return std::nullopt;
  }
  if (!CheckText(r.engineer, kMaxNameBytes, true, true, "engineer", problem) ||
      !CheckText(r.device, kMaxNameBytes, true, true, "device", problem) ||
      !CheckText(r.model, kMaxNameBytes, true, false, "model", problem) ||
      !CheckText(r.application, kMaxNameBytes, true, false, "application", problem) ||
      !CheckText(r.reason, kMaxReasonBytes, false, false, "reason", problem) ||
      !CheckText(r.service_request, kMaxNameBytes, true, false, "service_request", problem)) {
    return std::nullopt;
  }
  const auto activity = ParseActivity(r.activity);
  if (!activity) {
    *problem = fmt::format("activity '{}' is not one of remote_session, file_transfer, connect_home, "
                           "script_execution, configuration_change",
                           r.activity.substr(0, kMaxNameBytes));
    return std::nullopt;
  }
  if (*activity != Activity::kRemoteSession && !r.application.empty() && r.application != "*") {
    *problem = "only a remote_session names an application";
    return std::nullopt;
  }
  if (r.application == "*") {
    r.application.clear();
  }
  if (r.timeout_s < kMinAskTimeout.count() || r.timeout_s > kMaxAskTimeout.count()) {
    *problem = fmt::format("timeout_s must be from {} to {}", kMinAskTimeout.count(), kMaxAskTimeout.count());
    return std::nullopt;
  }
  if (r.rule_id < 0 || r.requested_ms < 0) {
    *problem = "rule_id and requested_ms must not be negative";
    return std::nullopt;
  }
  return r;
}

// ---- Approvals ---------------------------------------------------------------------------------------

Approvals::Approvals(std::shared_ptr<store::sql::Database> db, ApprovalsOptions options, AuditLog& audit,
                     ChangeFeed& feed, std::unique_ptr<transport::Mailer> mailer)
    : db_(std::move(db)),
      options_(std::move(options)),
      clock_(*options_.clock),
      audit_(audit),
      feed_(feed),
      mailer_(std::move(mailer)) {}

Approvals::~Approvals() { Stop(); }

Result<std::unique_ptr<Approvals>> Approvals::Open(ApprovalsOptions options, AuditLog& audit, ChangeFeed& feed,
                                                   std::unique_ptr<transport::Mailer> mailer) {
  auto opened = OpenWithTables(options.db, options.db_path, kTable, kPostgresTable, "approval_requests table");
  if (!opened) {
    return opened.error();
  }
  std::shared_ptr<store::sql::Database> db = std::move(*opened);
  if (!options.notify.empty() && mailer == nullptr) {
    return Fail(std::make_error_code(std::errc::invalid_argument));
  }
  if (options.notify.empty()) {
    Log()->warn("approvals.notify is empty: nobody is emailed about approval requests (they show in "
                "`lifeline policy requests list`)");
  }
  std::unique_ptr<Approvals> approvals(new Approvals(std::move(db), std::move(options), audit, feed, std::move(mailer)));
  approvals->StartThreads();
  return approvals;
}

void Approvals::StartThreads() {
  if (!options_.notify.empty()) {
    // Requests that arrived before a restart and were never emailed (the server was down, or the
    // service stopped first) get their email now.
    if (auto ids = PendingNotEmailed(); ids) {
      for (const auto& id : *ids) {
        QueueEmail(id);
      }
    } else {
      Log()->error("cannot read the requests waiting for their email: {}", ids.error().message());
    }
    mail_thread_ = std::thread([this] { MailLoop(); });
  }
  expiry_thread_ = std::thread([this] { ExpiryLoop(); });
}

void Approvals::Stop() {
  {
    std::lock_guard lock(thread_mutex_);
    stopping_ = true;
  }
  expiry_wake_.notify_all();
  mail_wake_.notify_all();
  if (expiry_thread_.joinable()) {
    expiry_thread_.join();
  }
  if (mail_thread_.joinable()) {
    mail_thread_.join();
  }
}

std::int64_t Approvals::emails_sent() const {
  std::lock_guard lock(thread_mutex_);
  return emails_sent_;
}

Result<Approvals::AddOutcome> Approvals::Add(const std::string& gateway, const NewApprovalRequest& n) {
  AddOutcome outcome;
  auto stored = db_->Transaction(store::sql::TxMode::kWrite, [&](store::sql::Session& s) -> VoidResult {
    // Under the lock a retry of the same request from a gateway talking to two policy managers finds
    // the first one's row instead of meeting its primary key.
    if (auto locked = LockForWrite(s, lock_key::kApprovals); !locked) {
      return locked;
    }
    auto found = FindOn(s, n.id);
    if (!found) {
      return found.error();
    }
    if (*found) {
      outcome.request = std::move(**found);
      outcome.status = outcome.request.gateway == gateway ? AddStatus::kExisting : AddStatus::kIdTaken;
      return {};
    }
    ApprovalRequest& r = outcome.request;
    r = ApprovalRequest{};
    r.id = n.id;
    r.gateway = gateway;
    r.engineer = n.engineer;
    r.device = n.device;
    r.model = n.model;
    r.activity = n.activity;
    r.application = n.application;
    r.reason = n.reason;
    r.service_request = n.service_request;
    r.rule_id = n.rule_id;
    r.timeout_s = n.timeout_s;
    r.requested_ms = n.requested_ms;
    r.received_ms = clock_.NowUnixMillis();
    // The policy manager's receipt time, not the gateway's: the deadline is this service's to keep.
    r.expires_ms = r.received_ms + n.timeout_s * 1000;
    r.state = RequestState::kPending;
    outcome.status = AddStatus::kCreated;
    if (auto inserted = s.Exec(
            "INSERT INTO approval_requests (id, gateway, engineer, device, model, activity, application, reason, "
            "service_request, rule_id, timeout_s, requested_ms, received_ms, expires_ms, state) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'pending')",
            r.id, r.gateway, r.engineer, r.device, r.model, r.activity, r.application, r.reason,
            r.service_request, r.rule_id, r.timeout_s, r.requested_ms, r.received_ms, r.expires_ms);
        !inserted) {
      return inserted.error();
    }
    return {};
  });
  if (!stored) {
    Log()->error("cannot store approval request {} of {}: {} ({})", n.id, gateway, stored.error().message(),
                 store::sql::LastErrorDetail());
    return stored.error();
  }
  if (outcome.status != AddStatus::kCreated) {
    return outcome;
  }
  const ApprovalRequest& r = outcome.request;
  Log()->info("approval request {} from {}: {} -> {} {} {} (expires in {} s)", r.id, gateway, r.engineer, r.device,
              r.activity, r.application, r.timeout_s);
  AuditRecord record;
  record.time_ms = r.received_ms;
  record.record_id = "approval-request-" + r.id;
  record.source = gateway;
  record.kind = std::string(audit_kind::kApprovalRequest);
  record.actor = r.engineer;
  record.subject = r.device;
  record.details = json::serialize(json::object{{"request_id", r.id},
                                                {"model", r.model},
                                                {"activity", r.activity},
                                                {"application", r.application},
                                                {"reason", r.reason},
                                                {"service_request", r.service_request},
                                                {"rule_id", r.rule_id},
                                                {"timeout_s", r.timeout_s},
                                                {"requested_ms", r.requested_ms},
                                                {"expires_ms", r.expires_ms}});
  if (auto appended = audit_.Append(std::move(record)); !appended) {
    Log()->error("cannot audit approval request {}: {}", r.id, appended.error().message());
  }
  {
    std::lock_guard lock(thread_mutex_);
    expiry_changed_ = true;
  }
  expiry_wake_.notify_all();
  if (!options_.notify.empty()) {
    QueueEmail(r.id);
  }
  return outcome;
}

Result<Approvals::DecideOutcome> Approvals::Decide(std::string_view id, bool approve, std::string_view approver,
                                                   std::string_view comment) {
  DecideOutcome outcome;
  bool expired_here = false;
  auto done = db_->Transaction(store::sql::TxMode::kWrite, [&](store::sql::Session& s) -> VoidResult {
    // The lock orders decisions (and expiries) across policy managers sharing one database: each
    // takes the next decision sequence number after the other's commit.
    if (auto locked = LockForWrite(s, lock_key::kApprovals); !locked) {
      return locked;
    }
    outcome = DecideOutcome{};
    expired_here = false;
    auto found = FindOn(s, id);
    if (!found) {
      return found.error();
    }
    if (!*found) {
      outcome.status = DecideStatus::kNotFound;
      return {};
    }
    ApprovalRequest& r = outcome.request;
    r = std::move(**found);
    if (EqualsIgnoringCase(r.engineer, approver)) {
      outcome.status = DecideStatus::kOwnRequest;
      return {};
    }
    if (r.state != RequestState::kPending) {
      outcome.status = DecideStatus::kNotPending;
      return {};
    }
    const std::int64_t now = clock_.NowUnixMillis();
    auto seq = s.QueryRow("SELECT COALESCE(MAX(decision_seq), 0) + 1 FROM approval_requests");
    if (!seq) {
      return seq.error();
    }
    r.decision_seq = *seq ? (*seq)->Int(0) : 1;
    r.decided_ms = now;
    if (now >= r.expires_ms) {
      // Past its deadline: the expiry thread has not reached it yet, but it is no longer open.
      r.state = RequestState::kExpired;
      r.decided_by.clear();
      r.comment.clear();
      outcome.status = DecideStatus::kNotPending;
      expired_here = true;
    } else {
      r.state = approve ? RequestState::kApproved : RequestState::kDenied;
      r.decided_by = std::string(approver);
      r.comment = std::string(comment);
      outcome.status = DecideStatus::kDecided;
    }
    if (auto updated = s.Exec(
            "UPDATE approval_requests SET state = $1, decided_by = $2, decided_ms = $3, comment = $4, "
            "decision_seq = $5 WHERE id = $6 AND state = 'pending'",
            std::string(WireName(r.state)), r.decided_by, *r.decided_ms, r.comment, *r.decision_seq, r.id);
        !updated) {
      return updated.error();
    }
    return {};
  });
  if (!done) {
    Log()->error("cannot decide approval request {}: {} ({})", id, done.error().message(),
                 store::sql::LastErrorDetail());
    return done.error();
  }
  if (outcome.status == DecideStatus::kDecided || expired_here) {
    AuditDecision(outcome.request);
    feed_.Notify();
  }
  return outcome;
}

void Approvals::AuditDecision(const ApprovalRequest& r) {
  AuditRecord record;
  record.time_ms = r.decided_ms.value_or(clock_.NowUnixMillis());
  record.source = "policy";
  record.subject = r.device;
  if (r.state == RequestState::kExpired) {
    Log()->info("approval request {} ({} -> {}) expired unanswered", r.id, r.engineer, r.device);
    record.record_id = "approval-expired-" + r.id;
    record.kind = std::string(audit_kind::kApprovalExpired);
    record.details = json::serialize(json::object{{"request_id", r.id},
                                                  {"gateway", r.gateway},
                                                  {"engineer", r.engineer},
                                                  {"expires_ms", r.expires_ms},
                                                  {"seq", r.decision_seq.value_or(0)}});
  } else {
    Log()->info("approval request {} ({} -> {}) {} by {}", r.id, r.engineer, r.device, WireName(r.state),
                r.decided_by);
    record.record_id = "approval-decision-" + r.id;
    record.kind = std::string(audit_kind::kApprovalDecision);
    record.actor = r.decided_by;
    record.details = json::serialize(json::object{{"request_id", r.id},
                                                  {"state", WireName(r.state)},
                                                  {"comment", r.comment},
                                                  {"gateway", r.gateway},
                                                  {"engineer", r.engineer},
                                                  {"seq", r.decision_seq.value_or(0)}});
  }
  if (auto appended = audit_.Append(std::move(record)); !appended) {
    Log()->error("cannot audit the decision of approval request {}: {}", r.id, appended.error().message());
  }
}

Result<std::size_t> Approvals::ExpireDue() {
  std::vector<ApprovalRequest> expired;
  const std::int64_t now = clock_.NowUnixMillis();
  auto done = db_->Transaction(store::sql::TxMode::kWrite, [&](store::sql::Session& s) -> VoidResult {
    if (auto locked = LockForWrite(s, lock_key::kApprovals); !locked) {
      return locked;
    }
    expired.clear();
    auto due = s.Query(fmt::format("SELECT {} FROM approval_requests WHERE state = 'pending' AND expires_ms <= $1 "
                                   "ORDER BY expires_ms, id",
                                   kColumns),
                       now);
    if (!due) {
      return due.error();
    }
    for (const auto& row : *due) {
      expired.push_back(ReadRow(row));
    }
    if (expired.empty()) {
      return {};
    }
    auto seq = s.QueryRow("SELECT COALESCE(MAX(decision_seq), 0) FROM approval_requests");
    if (!seq) {
      return seq.error();
    }
    std::int64_t next = *seq ? (*seq)->Int(0) : 0;
    for (auto& r : expired) {
      r.state = RequestState::kExpired;
      r.decided_ms = now;
      r.decision_seq = ++next;
      if (auto updated = s.Exec(
              "UPDATE approval_requests SET state = 'expired', decided_ms = $1, decision_seq = $2 "
              "WHERE id = $3 AND state = 'pending'",
              now, next, r.id);
          !updated) {
        return updated.error();
      }
    }
    return {};
  });
  if (!done) {
    Log()->error("cannot expire approval requests: {} ({})", done.error().message(), store::sql::LastErrorDetail());
    return done.error();
  }
  for (const auto& r : expired) {
    AuditDecision(r);
  }
  if (!expired.empty()) {
    feed_.Notify();
  }
  return expired.size();
}

Result<std::optional<std::int64_t>> Approvals::NextExpiry() {
  auto row = db_->WithSession([](store::sql::Session& s) {
    return s.QueryRow("SELECT MIN(expires_ms) FROM approval_requests WHERE state = 'pending'");
  });
  if (!row) {
    return row.error();
  }
  if (!*row || (*row)->IsNull(0)) {
    return std::optional<std::int64_t>();
  }
  return std::optional<std::int64_t>((*row)->Int(0));
}

void Approvals::ExpiryLoop() {
  // Sleeps until the earliest deadline, a new request (whose deadline may be earlier) or Stop. The
  // wait is capped, so a clock step or a store hiccup costs at most that long.
  constexpr auto kMaxSleep = std::chrono::seconds(30);
  for (;;) {
    {
      std::lock_guard lock(thread_mutex_);
      if (stopping_) {
        return;
      }
      expiry_changed_ = false;
    }
    (void)ExpireDue();  // failures are logged; the next pass tries again
    auto next = NextExpiry();
    auto sleep = std::chrono::duration_cast<std::chrono::milliseconds>(kMaxSleep);
    if (next && *next) {
      const std::int64_t until = **next - clock_.NowUnixMillis();
      sleep = std::clamp(std::chrono::milliseconds(until), std::chrono::milliseconds(0),
                         std::chrono::duration_cast<std::chrono::milliseconds>(kMaxSleep));
    }
    std::unique_lock lock(thread_mutex_);
    expiry_wake_.wait_for(lock, sleep, [this] { return stopping_ || expiry_changed_; });
  }
}

Result<std::vector<std::string>> Approvals::PendingNotEmailed() {
  auto rows = db_->WithSession([](store::sql::Session& s) {
    return s.Query(
        "SELECT id FROM approval_requests WHERE state = 'pending' AND emailed_ms IS NULL ORDER BY received_ms");
  });
  if (!rows) {
    return rows.error();
  }
  std::vector<std::string> ids;
  for (const auto& row : *rows) {
    ids.push_back(row.Text(0));
  }
  return ids;
}

VoidResult Approvals::MarkEmailed(const std::string& id, std::int64_t at_ms) {
  auto updated = db_->WithSession([&](store::sql::Session& s) {
    return s.Exec("UPDATE approval_requests SET emailed_ms = $1 WHERE id = $2", at_ms, id);
  });
  if (!updated) {
    return updated.error();
  }
  return {};
}

void Approvals::QueueEmail(const std::string& id) {
  {
    std::lock_guard lock(thread_mutex_);
    mail_queue_.emplace(id, MailAttempt{0, std::chrono::steady_clock::now()});
  }
  mail_wake_.notify_all();
}

void Approvals::MailLoop() {
  std::unique_lock lock(thread_mutex_);
  while (!stopping_) {
    const auto now = std::chrono::steady_clock::now();
    auto due = std::find_if(mail_queue_.begin(), mail_queue_.end(), [&](const auto& e) { return e.second.next <= now; });
    if (due == mail_queue_.end()) {
      auto next = std::chrono::steady_clock::time_point::max();
      for (const auto& [id, attempt] : mail_queue_) {
        next = std::min(next, attempt.next);
      }
      if (next == std::chrono::steady_clock::time_point::max()) {
        mail_wake_.wait(lock, [this] { return stopping_ || !mail_queue_.empty(); });
      } else {
        mail_wake_.wait_until(lock, next);
      }
      continue;
    }
    const std::string id = due->first;
    lock.unlock();

    // Sent only while the request is pending: once decided or expired, an email would only mislead.
    bool sent = false;
    bool retry = false;
    auto found = Find(id);
    if (!found) {
      retry = true;  // the store failed (logged): try again later
    } else if (*found && (*found)->state == RequestState::kPending) {
      const transport::Email email = ComposeApprovalEmail(**found, options_.notify, options_.api_url);
      std::string detail;
      if (auto delivered = mailer_->Send(email, &detail); delivered) {
        sent = true;
        Log()->info("approval request {}: emailed {}", id, fmt::join(options_.notify, ", "));
        if (auto marked = MarkEmailed(id, clock_.NowUnixMillis()); !marked) {
          Log()->error("approval request {}: cannot record that it was emailed: {}", id, marked.error().message());
        }
      } else {
        retry = true;
        Log()->warn("approval request {}: the email failed ({}); trying again while it is pending", id, detail);
      }
    }

    lock.lock();
    emails_sent_ += sent ? 1 : 0;
    auto it = mail_queue_.find(id);
    if (it == mail_queue_.end()) {
      continue;
    }
    if (!retry) {
      mail_queue_.erase(it);
      continue;
    }
    it->second.failures = std::min(it->second.failures + 1, 16);
    const auto delay = options_.mail_retry_min * (1LL << std::min(it->second.failures - 1, 10));
    it->second.next = std::chrono::steady_clock::now() + std::min<std::chrono::seconds>(delay, options_.mail_retry_max);
  }
}

Result<std::optional<ApprovalRequest>> Approvals::Find(std::string_view id) {
  return db_->WithSession([&](store::sql::Session& s) { return FindOn(s, id); });
}

Result<std::optional<ApprovalRequest>> Approvals::FindOn(store::sql::Session& session, std::string_view id) {
  auto row = session.QueryRow(fmt::format("SELECT {} FROM approval_requests WHERE id = $1", kColumns), id);
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<ApprovalRequest>();
  }
  return std::optional<ApprovalRequest>(ReadRow(**row));
}

Result<std::vector<ApprovalRequest>> Approvals::List(std::optional<RequestState> state, std::size_t limit) {
  auto rows = db_->WithSession([&](store::sql::Session& s) {
    if (state) {
      return s.Query(fmt::format("SELECT {} FROM approval_requests WHERE state = $1 "
                                 "ORDER BY received_ms DESC, id LIMIT $2",
                                 kColumns),
                     std::string(WireName(*state)), static_cast<std::int64_t>(limit));
    }
    return s.Query(fmt::format("SELECT {} FROM approval_requests ORDER BY received_ms DESC, id LIMIT $1", kColumns),
                   static_cast<std::int64_t>(limit));
  });
  if (!rows) {
    return rows.error();
  }
  std::vector<ApprovalRequest> out;
  for (const auto& row : *rows) {
    out.push_back(ReadRow(row));
  }
  return out;
}

Result<std::vector<DecisionEvent>> Approvals::Decisions(const std::string& gateway, std::int64_t cursor,
                                                        std::size_t limit) {
  auto rows = db_->WithSession([&](store::sql::Session& s) {
    return s.Query(
        "SELECT id, state, decided_by, comment, decided_ms, decision_seq FROM approval_requests "
        "WHERE gateway = $1 AND decision_seq > $2 ORDER BY decision_seq LIMIT $3",
        gateway, cursor, static_cast<std::int64_t>(limit));
  });
  if (!rows) {
    return rows.error();
  }
  std::vector<DecisionEvent> out;
  for (const auto& r : *rows) {
    out.push_back(DecisionEvent{r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Int(4), r.Int(5)});
  }
  return out;
}

DecisionSource Approvals::MakeDecisionSource() {
  return [this](const std::string& gateway, std::int64_t cursor, std::size_t limit) {
    auto decisions = Decisions(gateway, cursor, limit);
    if (!decisions) {
      Log()->error("cannot read the decisions for gateway {}: {}", gateway, decisions.error().message());
      return std::vector<DecisionEvent>{};
    }
    return std::move(*decisions);
  };
}

}  // namespace lifeline::policy
