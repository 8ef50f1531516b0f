#pragma once
// The home's storage seam: enrolled devices, ingested messages, tickets (lifecycle, notes, history,
// escalation progress), maintenance windows, the notification outbox and admin tokens. The home
// service only talks to this interface; SqlHomeStore (store/sql_home_store.h) implements it on SQLite
// and on PostgreSQL, so nothing here names SQL or a driver.
//
// Every operation is one transaction: an ingest either records the whole batch (batch id, message
// results, events, tickets, outbox rows) or nothing, so a reply the home sends always describes
// what is on disk. Times are Unix milliseconds from the home's clock unless a name says "device".
#include "common/result.h"
#include "protocol/message.h"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace lifeline::store {

enum class Errc {
  kTokenUnknown = 1,       // no enrollment token with this hash
  kTokenUsed,              // the token already enrolled a device
  kTokenExpired,           // the token's expiry time has passed
  kTokenIdentityMismatch,  // the token was issued for another customer/site/serial
  kReplayedBatch,          // this batch id was ingested before; nothing was changed
  kDeviceUnknown,          // no enrolled device with this identity
  kDeviceRevoked,          // the device was revoked; its messages are not taken
  kAlreadyExists,          // a token with this hash (or an admin token with this name) exists
  kNotFound,               // the row an update names does not exist
  kCorrupt,                // stored data failed to parse (a value outside its enum)
  kConflict,               // the ticket's status does not allow the change, or another ticket holds its key
  kInvalidArgument,        // a request the store refuses as given (empty note, window ending before it starts)
};

inline const char* Describe(Errc errc) {
  switch (errc) {
    case Errc::kTokenUnknown:
      return "enrollment token unknown";
    case Errc::kTokenUsed:
      return "enrollment token already used";
    case Errc::kTokenExpired:
      return "enrollment token expired";
    case Errc::kTokenIdentityMismatch:
      return "enrollment token was issued for another device";
    case Errc::kReplayedBatch:
      return "batch id was seen before (replay)";
    case Errc::kDeviceUnknown:
      return "device is not enrolled";
    case Errc::kDeviceRevoked:
      return "device is revoked";
    case Errc::kAlreadyExists:
      return "already exists";
    case Errc::kNotFound:
      return "not found";
    case Errc::kCorrupt:
      return "stored data is corrupt";
    case Errc::kConflict:
      return "not allowed in the ticket's current status";
    case Errc::kInvalidArgument:
      return "invalid argument";
  }
  return "unknown store error";
}

/// The category of store::Errc ("store"). Inline so the interface needs no library of its own; the
/// function-local static is still one object program-wide.
inline const std::error_category& ErrorCategory() {
  static const EnumErrorCategory<Errc> category("store", &Describe);
  return category;
}
inline std::error_code make_error_code(Errc errc) {
  return {static_cast<int>(errc), ErrorCategory()};
}

// ---- Devices and enrollment
// ----------------------------------------------------------------------

enum class DeviceStatus { kActive, kRevoked };
inline std::string_view ToString(DeviceStatus status) {
  return status == DeviceStatus::kActive ? "active" : "revoked";
}

/// What an enrollment token lets enroll, and what an enrolled row is: a device, or a gateway (its
/// name in identity.serial), whose certificate says so (crypto::PeerKind).
enum class EnrollmentKind { kDevice, kGateway };
inline std::string_view ToString(EnrollmentKind kind) {
  return kind == EnrollmentKind::kGateway ? "gateway" : "device";
}

struct DeviceRecord {
  protocol::DeviceIdentity identity;  // model as given at enrollment
  std::string signing_public_b64;     // Ed25519 public key the device signs batches with
  std::string cert_fingerprint;       // of the client certificate issued at enrollment
  std::string cert_pem;
  std::int64_t cert_not_after_ms = 0;
  DeviceStatus status = DeviceStatus::kActive;
  std::int64_t enrolled_at_ms = 0;
  std::optional<std::int64_t> last_seen_ms;       // last ingested batch
  std::optional<std::int64_t> last_heartbeat_ms;  // last heartbeat message
  std::int64_t last_heartbeat_interval_s = 0;     // interval that heartbeat announced
  std::uint64_t last_sequence = 0;                // highest message sequence ingested
  EnrollmentKind kind = EnrollmentKind::kDevice;
};

/// One enrollment attempt. The caller has already hashed the presented token: tokens are never
/// stored or passed to the store in clear.
struct EnrollmentRequest {
  std::string token_hash;
  protocol::DeviceIdentity identity;
  std::int64_t now_ms = 0;
  std::string device_signing_public_b64;
  std::string cert_fingerprint;
  std::string cert_pem;
  std::int64_t cert_not_after_ms = 0;
  /// Must be the token's kind (else kTokenIdentityMismatch): a device token never makes a gateway.
  EnrollmentKind kind = EnrollmentKind::kDevice;
};

// ---- Ingest
// -----------------------------------------------------------------------------------------

// ---- Tickets
// ----------------------------------------------------------------------------------------

/// Whether the ticket's episode is running: an open ticket takes the alerts of its deduplication key
/// (at most one open ticket per key). `status` says where it is in its lifecycle.
enum class TicketState { kOpen, kResolved };
inline std::string_view ToString(TicketState state) {
  return state == TicketState::kOpen ? "open" : "resolved";
}

/// The lifecycle: new -> acknowledged -> resolved -> closed; a resolved ticket whose alert comes back
/// within the reopen window becomes reopened (open again, a new episode). new, acknowledged and
/// reopened are open states; resolved and closed are not. A closed ticket never reopens by itself.
enum class TicketStatus { kNew, kAcknowledged, kReopened, kResolved, kClosed };
inline std::string_view ToString(TicketStatus status) {
  switch (status) {
    case TicketStatus::kNew:
      return "new";
    case TicketStatus::kAcknowledged:
      return "acknowledged";
    case TicketStatus::kReopened:
      return "reopened";
    case TicketStatus::kResolved:
      return "resolved";
    case TicketStatus::kClosed:
      return "closed";
  }
  return "new";
}
inline std::optional<TicketStatus> ParseTicketStatus(std::string_view text) {
  for (auto status : {TicketStatus::kNew, TicketStatus::kAcknowledged, TicketStatus::kReopened,
                      TicketStatus::kResolved, TicketStatus::kClosed}) {
    if (ToString(status) == text) {
      return status;
    }
  }
  return std::nullopt;
}
inline bool IsOpen(TicketStatus status) {
  return status == TicketStatus::kNew || status == TicketStatus::kAcknowledged ||
         status == TicketStatus::kReopened;
}

/// The code of the summary ticket storm control opens for a device (one per device, its own key).
inline constexpr std::string_view kStormTicketCode = "LIFELINE-STORM";

struct Ticket {
  std::int64_t id = 0;  // row id: orders tickets by creation; the API shows `number`
  std::string number;   // "LL-000001"
  TicketState state = TicketState::kOpen;
  TicketStatus status = TicketStatus::kNew;
  std::string kind = "alert";  // "alert", or "storm" for a storm control summary ticket
  protocol::DeviceIdentity device;  // the device whose alert opened it
  std::string code;
  std::string dedup_key;  // what repeats are matched by ("ACME/site-1/SN1/SIM-3A21" by default)
  protocol::Severity severity = protocol::Severity::kError;  // highest seen while open
  std::string text;                                          // latest occurrence's text
  std::int64_t first_seen_ms = 0;  // home time of the first and latest occurrence
  std::int64_t last_seen_ms = 0;
  std::int64_t occurrences = 0;
  std::int64_t episode_started_ms = 0;  // opened, or last reopened: where escalation counts from
  std::optional<std::int64_t> resolved_at_ms;
  std::string resolved_by;
  std::optional<std::int64_t> acknowledged_at_ms;  // in the current episode
  std::string acknowledged_by;
  std::optional<std::int64_t> closed_at_ms;
  std::string assignee;  // engineer it is assigned to; empty: nobody
  /// Why the current episode sends no notifications: "" (it does), "maintenance" (it opened or
  /// reopened while its device was in a maintenance window, declared or from storm control).
  std::string suppressed;
};

struct TicketFilter {
  std::optional<TicketState> state;   // nullopt: any state
  std::vector<TicketStatus> statuses; // empty: any status
  std::string customer;               // each: empty matches any
  std::string site;
  std::string serial;
  std::string code;
  std::string assignee;
  /// Only tickets that are open, or that changed (resolved, closed, saw an alert) at or after this.
  std::optional<std::int64_t> open_or_changed_since_ms;
  int limit = 100;  // newest first
};

struct TicketNote {
  std::int64_t at_ms = 0;
  std::string author;
  std::string text;
};

/// One change of a ticket, as its history keeps it: who ("device ACME/site-1/SN1", "storm control",
/// an admin token's name), what ("opened", "acknowledged", "assigned", "escalated", ...) and the
/// status before and after.
struct TicketHistoryEntry {
  std::int64_t at_ms = 0;
  std::string actor;
  std::string action;
  std::string from_status;  // "" for "opened"
  std::string to_status;
  std::string detail;
};

/// What a notification is about; mirrors home::notify::EventKind (the store does not depend on
/// the home).
enum class TicketEventKind { kOpened, kReopened, kEscalated, kReminder, kResolved };

/// One outbox row to queue for a ticket event (kinds: home/notify/kinds.h).
struct OutboxRow {
  std::string kind;       // "email", "sms", "sms-email", "webhook"
  std::string recipient;  // address, number or webhook name
  std::string subject;
  std::string body;
  friend bool operator==(const OutboxRow&, const OutboxRow&) = default;
};

/// Turns a ticket event into outbox rows. The store calls it inside the transaction that changes the
/// ticket and queues what it returns in that same transaction, so a ticket event and its
/// notifications are committed together or not at all, once, whichever home process ran it. It may
/// run more than once for one event (a transaction retried after a serialization failure), so it
/// must only compute. `level` is the escalation level (for kResolved: the highest level notified in
/// the episode).
using NotifyPlanner = std::function<std::vector<OutboxRow>(const Ticket& ticket, TicketEventKind kind,
                                                           int level, std::int64_t now_ms)>;

/// Maps an alert to its deduplication key: alerts with one key share one open ticket. Keys must
/// not span customers. The default is "<customer>/<site>/<serial>/<code>".
using DedupKeyFunction =
    std::function<std::string(const protocol::DeviceIdentity& device, std::string_view code)>;

/// Storm control: more than `max_alerts` ticket-worthy alerts from one device within `window_ms`
/// put the device into automatic maintenance for `maintenance_ms` with one summary ticket; the
/// alerts during it become occurrences of that ticket and notify nobody.
struct StormSettings {
  std::int64_t max_alerts = 0;  // 0: off
  std::int64_t window_ms = 60 * 60 * 1000;
  std::int64_t maintenance_ms = 30 * 60 * 1000;
};

// ---- Ingest
// -----------------------------------------------------------------------------------------

struct IngestRequest {
  protocol::Batch batch;  // already authenticated and validated by the caller
  std::int64_t now_ms = 0;
  /// Alerts at or above this severity open (or join) a ticket; below it they are only recorded.
  protocol::Severity ticket_min_severity = protocol::Severity::kError;
  /// Email recipients notified when a ticket opens or reopens: one outbox row each, with the store's
  /// own plain text. The home leaves this empty and uses `planner`.
  std::vector<std::string> contacts;
  /// Outbox rows for ticket events (opened, reopened, resolved); empty: none besides `contacts`.
  NotifyPlanner planner;
  /// Empty: the default key (device and alert code).
  DedupKeyFunction dedup_key;
  /// A resolved ticket whose key alerts again within this long is reopened; 0: a new ticket.
  std::int64_t reopen_window_ms = 0;
  StormSettings storm;
};

/// One ingested message, as the events table keeps it.
struct Event {
  std::string message_id;
  protocol::MessageType type = protocol::MessageType::kHeartbeat;
  std::string code;  // alert and clear only
  std::optional<protocol::Severity> severity;
  std::string text;  // alert text, heartbeat status
  std::string payload_json;
  std::uint64_t sequence = 0;
  std::int64_t device_time_ms = 0;
  std::int64_t received_at_ms = 0;
};

// ---- Outbox
// -----------------------------------------------------------------------------------------

enum class NotificationStatus { kPending, kSent, kFailed };
inline std::string_view ToString(NotificationStatus status) {
  switch (status) {
    case NotificationStatus::kPending:
      return "pending";
    case NotificationStatus::kSent:
      return "sent";
    case NotificationStatus::kFailed:
      return "failed";
  }
  return "pending";
}

struct Notification {
  std::int64_t id = 0;
  std::string kind;  // "email", "sms", "sms-email", "webhook"
  std::string recipient;
  std::string ticket_number;
  std::string subject;
  std::string body;
  NotificationStatus status = NotificationStatus::kPending;
  std::int64_t attempts = 0;  // failed attempts so far
  std::string last_error;
  std::int64_t created_at_ms = 0;
  std::int64_t next_attempt_ms = 0;
  std::optional<std::int64_t> sent_at_ms;
};

struct NotificationFilter {
  std::optional<NotificationStatus> status;  // nullopt: any
  std::string kind;                          // empty: any
  std::string ticket_number;                 // empty: any
  int limit = 100;                           // newest first
};

struct TicketDetail {
  Ticket ticket;
  std::vector<Event> events;  // the messages that opened, joined or resolved it, oldest first
  std::vector<Notification> notifications;
  std::vector<TicketNote> notes;             // oldest first
  std::vector<TicketHistoryEntry> history;   // oldest first
  std::map<int, std::int64_t> escalation_sent_ms;  // level -> when it was last notified (any episode)
};

/// An engineer's change to a ticket through the admin API.
enum class TicketAction { kAcknowledge, kResolve, kClose, kReopen, kNote, kAssign };
inline std::string_view ToString(TicketAction action) {
  switch (action) {
    case TicketAction::kAcknowledge:
      return "acknowledge";
    case TicketAction::kResolve:
      return "resolve";
    case TicketAction::kClose:
      return "close";
    case TicketAction::kReopen:
      return "reopen";
    case TicketAction::kNote:
      return "note";
    case TicketAction::kAssign:
      return "assign";
  }
  return "note";
}

struct TicketChange {
  std::string number;
  TicketAction action = TicketAction::kNote;
  std::string actor;  // who, for the history (the admin token's name)
  /// kNote: the note (required); kAssign: the engineer (empty: unassign); others: an optional note
  /// stored with the change.
  std::string text;
  std::int64_t now_ms = 0;
  /// Outbox rows for the change: kResolve notifies kResolved, kReopen notifies kReopened.
  NotifyPlanner planner;
};

// ---- Maintenance windows ------------------------------------------------------------------------

/// A span in which a device's (or a whole site's) alerts are recorded and ticketed but notify
/// nobody. Customers declare them; storm control adds automatic ones for one device.
struct MaintenanceWindow {
  std::int64_t id = 0;
  std::string customer;
  std::string site;
  std::string serial;  // empty: every device of the site
  std::int64_t starts_at_ms = 0;
  std::int64_t ends_at_ms = 0;  // exclusive
  std::string reason;
  std::string created_by;
  std::int64_t created_at_ms = 0;
  bool automatic = false;  // storm control
  std::optional<std::int64_t> ended_at_ms;  // set when someone ended it early (or cancelled it)
  std::string ended_by;
};

struct MaintenanceFilter {
  /// Only windows not yet over at this time (active or planned); nullopt: every window.
  std::optional<std::int64_t> current_at_ms;
  std::string customer;  // empty: any
  std::string site;
  std::string serial;
  int limit = 1000;
};

// ---- Escalation ---------------------------------------------------------------------------------

/// An open, unacknowledged ticket that may need escalating, with when each level was last notified
/// (raw: entries from earlier episodes are included; escalation ignores those older than
/// ticket.episode_started_ms).
struct EscalationCandidate {
  Ticket ticket;
  std::map<int, std::int64_t> last_sent_ms;
};

struct EscalationStep {
  std::int64_t ticket_id = 0;
  std::int64_t episode_started_ms = 0;  // as the candidate showed it: a reopen since voids the step
  int level = 0;
  bool reminder = false;
  /// The level's last-sent time as the candidate showed it (nullopt: none). The step applies only
  /// if it is unchanged, so of two homes running the job at once exactly one sends.
  std::optional<std::int64_t> previous_sent_ms;
};

// ---- Inventory ----------------------------------------------------------------------------------

struct InventoryRecord {
  protocol::DeviceIdentity device;
  std::string message_id;
  std::int64_t device_time_ms = 0;
  std::int64_t received_at_ms = 0;
  std::string payload_json;
};

/// How long a claimed notification stays invisible to other claims. A sender that dies mid-send
/// leaves the row pending, so it is claimed again after this (at-least-once delivery).
inline constexpr std::int64_t kNotificationClaimLeaseMs = 5 * 60 * 1000;

// ---- Instructions ---------------------------------------------------------------------------------

struct InstructionRecord {
  std::string id;
  std::string kind;
  std::string status;  // pending, done, refused, failed
  std::string detail;
  std::int64_t created_at_ms = 0;
  std::optional<std::int64_t> completed_at_ms;
};

// ---- Admin API tokens
// ------------------------------------------------------------------------------

struct AdminToken {
  std::int64_t id = 0;
  std::string name;
  std::string role;  // interpreted by the admin API, e.g. "admin" or "viewer"
  std::int64_t created_at_ms = 0;
};

struct HomeStats {
  std::int64_t devices = 0;
  std::int64_t alerts = 0;  // alert messages ingested (not counting duplicates)
  std::int64_t tickets = 0;
  std::int64_t open_tickets = 0;
  std::int64_t emails_sent = 0;     // kind "email" only
  std::int64_t emails_pending = 0;  // kind "email" only
  // Every kind (email, sms, sms-email, webhook):
  std::int64_t notifications_sent = 0;
  std::int64_t notifications_pending = 0;
  std::int64_t notifications_failed = 0;
  std::map<std::string, std::int64_t> sent_by_kind;  // kind -> rows sent
};

/// The home's storage. Implementations are safe to call from several threads at once.
class HomeStore {
 public:
  virtual ~HomeStore() = default;

  /// Stores a single-use enrollment token for `identity` (customer/site/serial must match at use)
  /// that enrolls a `kind` (a gateway token only a gateway, a device token only a device).
  /// Fails with kAlreadyExists when the hash is already stored.
  [[nodiscard]] virtual VoidResult CreateEnrollmentToken(std::string_view token_hash,
                                                         const protocol::DeviceIdentity& identity,
                                                         std::int64_t expires_at_ms,
                                                         std::int64_t now_ms,
                                                         EnrollmentKind kind = EnrollmentKind::kDevice) = 0;

  /// Consumes the token and enrolls (or re-enrolls) the device or gateway as active, atomically: of
  /// two concurrent calls with one token at most one succeeds. Errors: kTokenUnknown, kTokenUsed,
  /// kTokenExpired, kTokenIdentityMismatch (identity or kind; checked in that order); on error
  /// nothing changes.
  [[nodiscard]] virtual VoidResult Enroll(const EnrollmentRequest& request) = 0;

  [[nodiscard]] virtual Result<std::optional<DeviceRecord>> FindDevice(std::string_view customer,
                                                                       std::string_view site,
                                                                       std::string_view serial) = 0;
  /// Marks the device revoked; its batches are refused from then on. kDeviceUnknown if absent.
  [[nodiscard]] virtual VoidResult RevokeDevice(std::string_view customer, std::string_view site,
                                                std::string_view serial) = 0;
  [[nodiscard]] virtual Result<std::vector<DeviceRecord>> ListDevices() = 0;

  /// Applies one batch in one transaction and returns the per-message answers (see file comment).
  /// Errors: kReplayedBatch (batch id seen before; nothing changed), kDeviceUnknown,
  /// kDeviceRevoked. A message id seen before from this device gets its stored answer back with
  /// duplicate=true.
  [[nodiscard]] virtual Result<protocol::BatchReply> IngestBatch(const IngestRequest& request) = 0;
  /// Forgets batch ids recorded before `older_than_ms`; returns how many. Call it with a cutoff
  /// older than any batch the transport would still accept (its clock-skew window), or replays get
  /// through.
  [[nodiscard]] virtual Result<std::int64_t> PruneBatchIds(std::int64_t older_than_ms) = 0;

  /// Queues an instruction for the device; it rides on every reply to the device until the device
  /// reports on it (IngestBatch records the report). kDeviceUnknown if not enrolled. Returns its id.
  [[nodiscard]] virtual Result<std::string> QueueInstruction(const protocol::DeviceIdentity& device,
                                                             std::string_view kind, std::string_view config_toml,
                                                             std::int64_t now_ms) = 0;
  [[nodiscard]] virtual Result<std::vector<InstructionRecord>> ListInstructions(
      const protocol::DeviceIdentity& device) = 0;

  [[nodiscard]] virtual Result<std::vector<Ticket>> ListTickets(const TicketFilter& filter) = 0;
  [[nodiscard]] virtual Result<std::optional<TicketDetail>> GetTicket(std::string_view number) = 0;
  /// Applies an engineer's change, records it in the ticket's history and queues the planner's rows,
  /// in one transaction; returns the ticket as changed. Errors: kNotFound; kConflict when the status
  /// does not allow it (acknowledge: only new or reopened; resolve: only open; close: not closed;
  /// reopen: only resolved or closed, and no other ticket open for its key); kInvalidArgument for an
  /// empty note.
  [[nodiscard]] virtual Result<Ticket> ChangeTicket(const TicketChange& change) = 0;

  /// Open tickets that are not acknowledged, not suppressed and whose device is not in a maintenance
  /// window at `now_ms`, by id from `after_id` (exclusive), at most `limit`: what the escalation job
  /// looks at.
  [[nodiscard]] virtual Result<std::vector<EscalationCandidate>> ListEscalationCandidates(
      std::int64_t now_ms, std::int64_t after_id, int limit) = 0;
  /// Sends one escalation step: in one transaction, checks the ticket is still open, unacknowledged,
  /// unsuppressed, out of maintenance and in the same episode, and that the level's last-sent time
  /// is still `step.previous_sent_ms`; then sets it to `now_ms`, records the history and queues the
  /// planner's rows (kEscalated, or kReminder). Returns false, changing nothing, when any check fails.
  [[nodiscard]] virtual Result<bool> Escalate(const EscalationStep& step, std::int64_t now_ms,
                                              const NotifyPlanner& planner) = 0;

  /// Declares a window (id and created_at_ms are assigned). kInvalidArgument unless it ends after
  /// it starts and names a customer and site. kDeviceUnknown when `serial` is given but not enrolled.
  [[nodiscard]] virtual Result<MaintenanceWindow> AddMaintenanceWindow(MaintenanceWindow window,
                                                                       std::int64_t now_ms) = 0;
  [[nodiscard]] virtual Result<std::vector<MaintenanceWindow>> ListMaintenanceWindows(
      const MaintenanceFilter& filter) = 0;
  /// Ends a window now (a planned one is cancelled). kNotFound; kConflict when it is already over.
  [[nodiscard]] virtual Result<MaintenanceWindow> EndMaintenanceWindow(std::int64_t id,
                                                                       std::string_view actor,
                                                                       std::int64_t now_ms) = 0;

  /// The newest inventory message of each device (or of the one device given), by device.
  [[nodiscard]] virtual Result<std::vector<InventoryRecord>> LatestInventory(
      const std::optional<protocol::DeviceIdentity>& device) = 0;
  [[nodiscard]] virtual Result<std::vector<Notification>> ListNotifications(
      const NotificationFilter& filter) = 0;

  /// Pending notifications due at `now_ms`, oldest first, at most `limit`. Each is leased for
  /// kNotificationClaimLeaseMs so a concurrent claim does not return it again.
  [[nodiscard]] virtual Result<std::vector<Notification>> ClaimNotifications(
      int limit, std::int64_t now_ms) = 0;
  [[nodiscard]] virtual VoidResult MarkNotificationSent(std::int64_t id, std::int64_t now_ms) = 0;
  /// Counts a failed attempt. With `next_attempt_ms` the row is retried from then; with nullopt the
  /// sender gives up and the row becomes failed.
  [[nodiscard]] virtual VoidResult MarkNotificationFailed(
      std::int64_t id, std::string_view error_text,
      std::optional<std::int64_t> next_attempt_ms) = 0;

  /// Stores an admin API token (hashed by the caller). kAlreadyExists for a taken name or hash.
  [[nodiscard]] virtual VoidResult CreateAdminToken(std::string_view name,
                                                    std::string_view token_hash,
                                                    std::string_view role, std::int64_t now_ms) = 0;
  [[nodiscard]] virtual Result<std::optional<AdminToken>> FindAdminToken(
      std::string_view token_hash) = 0;

  /// Totals for the demo summary and the admin API.
  [[nodiscard]] virtual Result<HomeStats> Stats() = 0;
};

// ==== Heartbeats and retention (issue 4, items 2 and 4) =========================================
// Missing-heartbeat tickets (home/heartbeat_monitor) and the retention job (home/retention_job).
// A separate interface, implemented by SqlHomeStore beside HomeStore.

/// One ticket per device whose heartbeats stopped, resolved by itself when they resume.
inline constexpr std::string_view kHeartbeatMissingCode = "LIFELINE-HEARTBEAT-MISSING";
/// One ticket per site that fell silent as a whole, instead of one per device. Its deduplication
/// key is "<customer>/<site>/LIFELINE-SITE-SILENT"; its row names the site's first enrolled device
/// (tickets belong to a device row) and an empty serial.
inline constexpr std::string_view kSiteSilentCode = "LIFELINE-SITE-SILENT";

/// What the missing-heartbeat tracker is rebuilt from at start: the active devices.
struct HeartbeatDevice {
  std::int64_t device_id = 0;
  std::string customer;
  std::string site;
  std::int64_t interval_s = 0;         // announced by the last heartbeat (0: none yet)
  std::int64_t last_heartbeat_ms = 0;  // the last heartbeat, or the enrollment if none came
  bool missing_ticket_open = false;    // its LIFELINE-HEARTBEAT-MISSING ticket is open
};
struct SilentSite {
  std::string customer;
  std::string site;
  std::int64_t since_ms = 0;  // when its ticket opened (or reopened)
};
struct HeartbeatState {
  std::vector<HeartbeatDevice> devices;   // by device id
  std::vector<SilentSite> silent_sites;  // sites with an open LIFELINE-SITE-SILENT ticket
  /// Devices no longer active whose missing-heartbeat ticket is still open (to resolve).
  std::vector<std::int64_t> inactive_with_ticket;
};

enum class HeartbeatChangeKind { kDeviceMissing, kDeviceResumed, kSiteSilent, kSiteResumed };

/// One change the tracker found, to turn into a ticket opened or resolved.
struct HeartbeatChange {
  HeartbeatChangeKind kind = HeartbeatChangeKind::kDeviceMissing;
  std::int64_t device_id = 0;  // device changes
  std::string customer;        // site changes
  std::string site;
  std::int64_t last_heartbeat_ms = 0;  // device: its last; site: the site's last (0: none)
  std::int64_t deadline_ms = 0;        // kDeviceMissing: when it became overdue
  std::int64_t interval_s = 0;         // device changes: the announced interval
  std::int64_t missing = 0;            // site changes: devices missing, of those tracked
  std::int64_t tracked = 0;
};

struct HeartbeatTicketOptions {
  /// Outbox rows for ticket events, as for alert tickets (may be empty: no notifications).
  NotifyPlanner planner;
  /// Also an email with the store's plain text to each of these when a ticket opens (as
  /// IngestRequest::contacts), unless the device or site is in maintenance.
  std::vector<std::string> contacts;
  /// A resolved heartbeat ticket whose device (or site) goes missing again within this long is
  /// reopened instead of a new one opening; 0: always a new one.
  std::int64_t reopen_window_ms = 0;
};

enum class HeartbeatOutcome {
  kOpened,          // a ticket opened (or reopened)
  kAlreadyOpen,     // one was open already (another home, or an earlier run): nothing changed
  kResolved,        // its open ticket resolved
  kNothingOpen,     // a resumption with no open ticket: nothing changed
  kDeviceInactive,  // the device is revoked or gone: nothing opened; stop tracking it
  kStale,           // the store knows better than the tracker the change came from: later
                    // heartbeats another home took (nothing opened; `refreshed` has them), or a
                    // resumption that only caught up with heartbeats from before the ticket
                    // opened (nothing resolved)
};
struct HeartbeatApplied {
  HeartbeatOutcome outcome = HeartbeatOutcome::kOpened;
  std::string ticket_number;               // the ticket concerned, if any
  std::vector<HeartbeatDevice> refreshed;  // kStale: the devices with later stored heartbeats
};

/// How long each kind of data is kept (ms; 0: kept for ever). See docs/operations.md, "Retention".
struct RetentionPolicy {
  std::int64_t alerts_ms = 0;             // alert and clear messages that belong to no ticket
  std::int64_t heartbeats_ms = 0;         // heartbeat messages (the last one is on the device)
  std::int64_t inventory_ms = 0;          // inventory and configuration (each device's newest kept)
  std::int64_t problem_data_ms = 0;       // bundle manifests
  std::int64_t performance_raw_ms = 0;    // performance reports; older ones become daily aggregates
  std::int64_t performance_daily_ms = 0;  // the daily aggregates
  std::int64_t tickets_ms = 0;            // after a ticket was resolved or closed; with its events,
                                          // notes, history and notifications
  std::int64_t notifications_ms = 0;      // sent or failed notifications, by creation
  std::int64_t batch_ids_ms = 0;          // replay protection; never below the clock-skew window
};

/// One kind of data: what the job deletes (or folds into daily aggregates), older than `cutoff_ms`.
struct RetentionItem {
  std::string kind;    // "alerts", "heartbeats", "inventory", "problem_data", "performance", ...
  std::string action;  // "delete" or "downsample"
  std::int64_t cutoff_ms = 0;
  std::int64_t rows = 0;  // preview: rows that would go; apply: rows that went
};

/// A job only one home runs at a time (PostgreSQL: many homes share one database).
struct JobStatus {
  std::string holder;  // who holds or last held the lease
  std::int64_t lease_until_ms = 0;
  std::int64_t last_started_ms = 0;
  std::int64_t last_finished_ms = 0;
  std::string last_result;
};

class HeartbeatRetentionStore {
 public:
  virtual ~HeartbeatRetentionStore() = default;

  /// The active devices and the open site tickets, for HeartbeatTracker::Restore.
  [[nodiscard]] virtual Result<HeartbeatState> LoadHeartbeatState() = 0;
  /// The device row id of an enrolled device (active or not), nullopt if unknown.
  [[nodiscard]] virtual Result<std::optional<std::int64_t>> DeviceRowId(
      const protocol::DeviceIdentity& device) = 0;
  /// Opens or resolves the tickets the changes call for, all in one transaction, through the same
  /// ticket path as alerts (history, reopen window, maintenance, notifications). Opening relies on
  /// the one-open-ticket-per-key index, so two homes sweeping the same device open one ticket.
  /// Returns one outcome per change, in order.
  [[nodiscard]] virtual Result<std::vector<HeartbeatApplied>> ApplyHeartbeatChanges(
      const std::vector<HeartbeatChange>& changes, const HeartbeatTicketOptions& options,
      std::int64_t now_ms) = 0;
  /// Resolves the device's open missing-heartbeat ticket (it was revoked). False if none was open.
  [[nodiscard]] virtual Result<bool> ResolveHeartbeatTicket(std::int64_t device_id,
                                                            std::string_view reason,
                                                            const HeartbeatTicketOptions& options,
                                                            std::int64_t now_ms) = 0;

  /// What ApplyRetention would do at `now_ms`: one item per kind with its cutoff and row count.
  [[nodiscard]] virtual Result<std::vector<RetentionItem>> PreviewRetention(
      const RetentionPolicy& policy, std::int64_t now_ms) = 0;
  /// Deletes and downsamples, in many short transactions (so ingest is never blocked long).
  /// Stops early, with what it did so far, when `keep_going` returns false.
  [[nodiscard]] virtual Result<std::vector<RetentionItem>> ApplyRetention(
      const RetentionPolicy& policy, std::int64_t now_ms,
      const std::function<bool()>& keep_going) = 0;

  /// Takes the job's lease until `lease_until_ms` if nobody holds it (lease expired) and it has
  /// not started since `due_since_ms`. True: the caller runs the job, then calls FinishJob.
  [[nodiscard]] virtual Result<bool> ClaimJob(std::string_view job, std::string_view holder,
                                              std::int64_t due_since_ms, std::int64_t lease_until_ms,
                                              std::int64_t now_ms) = 0;
  /// Ends the lease. A failed run is marked not started, so the next check runs it again.
  [[nodiscard]] virtual VoidResult FinishJob(std::string_view job, std::string_view holder,
                                             bool succeeded, std::string_view result,
                                             std::int64_t now_ms) = 0;
  [[nodiscard]] virtual Result<JobStatus> GetJobStatus(std::string_view job) = 0;
};

/// The store's heartbeat and retention side (SqlHomeStore has one); nullptr for a store without.
inline HeartbeatRetentionStore* HeartbeatRetentionOf(HomeStore& store) {
  return dynamic_cast<HeartbeatRetentionStore*>(&store);
}

}  // namespace lifeline::store

template <>
struct std::is_error_code_enum<lifeline::store::Errc> : std::true_type {};
