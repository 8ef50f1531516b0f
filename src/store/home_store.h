#pragma once
// The home's storage seam: enrolled devices, ingested messages, tickets, the email outbox and admin
// tokens. The home service only talks to this interface; SQLite (store/sqlite/home_store.h) is the
// first backend and PostgreSQL comes later behind the same calls, so nothing here names SQL or a
// driver.
//
// Every operation is one transaction: an ingest either records the whole batch (batch id, message
// results, events, tickets, outbox rows) or nothing, so a reply the home sends always describes
// what is on disk. Times are Unix milliseconds from the home's clock unless a name says "device".
#include "common/result.h"
#include "protocol/message.h"

#include <cstdint>
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
};

// ---- Ingest
// -----------------------------------------------------------------------------------------

struct IngestRequest {
  protocol::Batch batch;  // already authenticated and validated by the caller
  std::int64_t now_ms = 0;
  /// Alerts at or above this severity open (or join) a ticket; below it they are only recorded.
  protocol::Severity ticket_min_severity = protocol::Severity::kError;
  /// Email recipients notified when a ticket opens: one outbox row each.
  std::vector<std::string> contacts;
};

// ---- Tickets
// ----------------------------------------------------------------------------------------

enum class TicketState { kOpen, kResolved };
inline std::string_view ToString(TicketState state) {
  return state == TicketState::kOpen ? "open" : "resolved";
}

struct Ticket {
  std::string number;  // "LL-000001"
  TicketState state = TicketState::kOpen;
  protocol::DeviceIdentity device;
  std::string code;
  protocol::Severity severity = protocol::Severity::kError;  // highest seen while open
  std::string text;                                          // latest occurrence's text
  std::int64_t first_seen_ms = 0;  // home time of the first and latest occurrence
  std::int64_t last_seen_ms = 0;
  std::int64_t occurrences = 0;
  std::optional<std::int64_t> resolved_at_ms;
};

struct TicketFilter {
  std::optional<TicketState> state;  // nullopt: any state
  int limit = 100;                   // newest first
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
  std::string kind;  // "email"
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

struct TicketDetail {
  Ticket ticket;
  std::vector<Event> events;  // the messages that opened, joined or resolved it, oldest first
  std::vector<Notification> notifications;
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
  std::int64_t emails_sent = 0;
  std::int64_t emails_pending = 0;
};

/// The home's storage. Implementations are safe to call from several threads at once.
class HomeStore {
 public:
  virtual ~HomeStore() = default;

  /// Stores a single-use enrollment token for `identity` (customer/site/serial must match at use).
  /// Fails with kAlreadyExists when the hash is already stored.
  [[nodiscard]] virtual VoidResult CreateEnrollmentToken(std::string_view token_hash,
                                                         const protocol::DeviceIdentity& identity,
                                                         std::int64_t expires_at_ms,
                                                         std::int64_t now_ms) = 0;

  /// Consumes the token and enrolls (or re-enrolls) the device as active, atomically: of two
  /// concurrent calls with one token at most one succeeds. Errors: kTokenUnknown, kTokenUsed,
  /// kTokenExpired, kTokenIdentityMismatch (checked in that order); on error nothing changes.
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

}  // namespace lifeline::store

template <>
struct std::is_error_code_enum<lifeline::store::Errc> : std::true_type {};
