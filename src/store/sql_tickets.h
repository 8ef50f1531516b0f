#pragma once
// Internal to the store: the ticket rules, run inside the caller's transaction by every path that
// opens, joins, reopens, resolves or escalates a ticket (ingest, engineers' changes through the
// admin API, the escalation job, missing-heartbeat tickets). Deduplication, the reopen window,
// maintenance suppression, the history and the notifications of each event are decided here once,
// so a ticket behaves the same whichever path touched it.
//
// Callers hold what serialises their work (IngestBatch: the device's row); these functions lock the
// ticket rows they change (FOR UPDATE OF t on PostgreSQL), and opening relies on the partial unique
// index tickets_one_open_key, so two home processes never open two tickets for one key.
#include "store/home_store.h"
#include "store/sql/session.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::store::detail {

/// "SELECT <every ticket column> FROM tickets t JOIN devices d ...": append " WHERE ...". The model
/// comes from the device row (routing matches on it).
extern const std::string_view kSelectTickets;
Result<Ticket> ReadTicket(const sql::Row& row);

/// " FOR UPDATE OF t" on PostgreSQL (only the ticket row, not the joined device), "" on SQLite.
std::string_view LockTicketRow(sql::Backend backend);

Result<std::optional<Ticket>> LoadTicket(sql::Session& s, std::int64_t id, bool lock);
Result<std::optional<Ticket>> LoadTicketByNumber(sql::Session& s, std::string_view number, bool lock);

/// "device ACME/site-1/SN1": the actor of changes a device's messages make.
std::string DeviceActor(const protocol::DeviceIdentity& device);

/// Which maintenance windows cover a device at a moment.
struct MaintenanceState {
  bool declared = false;  // a customer's window (device or site)
  bool storm = false;     // storm control's automatic window
  std::int64_t storm_until_ms = 0;
  bool any() const { return declared || storm; }
};
Result<MaintenanceState> MaintenanceAt(sql::Session& s, std::string_view customer,
                                       std::string_view site, std::string_view serial,
                                       std::int64_t now_ms);

VoidResult RecordHistory(sql::Session& s, std::int64_t ticket_id, std::int64_t at_ms,
                         std::string_view actor, std::string_view action,
                         std::string_view from_status, std::string_view to_status,
                         std::string_view detail);

/// Inserts pending outbox rows for the ticket, each (kind, recipient) once.
VoidResult QueueOutbox(sql::Session& s, std::int64_t ticket_id, const std::vector<OutboxRow>& rows,
                       std::int64_t now_ms);

/// Queues `extra` and what `planner` returns for the event (either may be empty).
VoidResult QueueTicketEvent(sql::Session& s, const Ticket& ticket, TicketEventKind kind, int level,
                            std::int64_t now_ms, const NotifyPlanner* planner,
                            const std::vector<OutboxRow>& extra = {});

/// The highest escalation level notified in the ticket's current episode; 0 when none was.
Result<int> HighestLevelThisEpisode(sql::Session& s, const Ticket& ticket);

/// An alert raised on a deduplication key.
struct RaiseRequest {
  std::int64_t device_id = 0;
  protocol::DeviceIdentity device;  // with the enrolled model
  std::string key;
  std::string code;
  protocol::Severity severity = protocol::Severity::kError;
  std::string text;
  std::string kind = "alert";
  std::int64_t now_ms = 0;
  std::int64_t reopen_window_ms = 0;
  /// True while the device is in maintenance: the ticket opens or reopens quietly (no notification,
  /// no escalation in this episode).
  bool suppressed = false;
  std::string actor;
  const NotifyPlanner* planner = nullptr;  // may be null
};

enum class Raised { kOpened, kJoined, kReopened };
struct RaiseResult {
  Ticket ticket;  // as it is after the change
  Raised what = Raised::kOpened;
};

/// Adds an occurrence to the key's open ticket; else reopens the key's latest ticket if it was
/// resolved (not closed) within the reopen window; else opens a new one. Opening and reopening
/// record the history, notify (kOpened / kReopened at level 0, recorded as sent) unless suppressed.
Result<RaiseResult> RaiseTicket(sql::Session& s, const RaiseRequest& request);

/// The key's open ticket, if any.
Result<std::optional<Ticket>> FindOpenTicket(sql::Session& s, std::string_view key, bool lock);

/// Resolves an open ticket: history, and kResolved to everyone told in this episode unless the
/// episode was suppressed or `suppressed_now` (the device is in maintenance).
Result<Ticket> ResolveTicket(sql::Session& s, const Ticket& ticket, std::int64_t now_ms,
                             std::string_view actor, std::string_view detail, bool suppressed_now,
                             const NotifyPlanner* planner);

}  // namespace lifeline::store::detail
