// SqlHomeStore: engineers' ticket changes, the escalation job's reads and steps, maintenance windows
// and inventory. The rules shared with ingest (open, reopen, resolve, notify) are in sql_tickets.
#include "store/sql_home_store.h"

#include "common/log.h"
#include "store/sql/dialect.h"
#include "store/sql_tickets.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace lifeline::store {
namespace {

using sql::Row;
using sql::Session;
using sql::TxMode;

constexpr std::string_view kMaintenanceColumns =
    "id, customer, site, serial, starts_at_ms, ends_at_ms, reason, created_by, created_at_ms, automatic, "
    "ended_at_ms, ended_by";

MaintenanceWindow ReadWindow(const Row& r) {
  return MaintenanceWindow{.id = r.Int(0),
                           .customer = r.Text(1),
                           .site = r.Text(2),
                           .serial = r.Text(3),
                           .starts_at_ms = r.Int(4),
                           .ends_at_ms = r.Int(5),
                           .reason = r.Text(6),
                           .created_by = r.Text(7),
                           .created_at_ms = r.Int(8),
                           .automatic = r.Int(9) != 0,
                           .ended_at_ms = r.OptionalInt(10),
                           .ended_by = r.Text(11)};
}

VoidResult Check(const Result<std::int64_t>& done) {
  if (!done) {
    return done.error();
  }
  return {};
}

/// The ticket after a change, read back in the same transaction.
Result<Ticket> Reload(Session& s, std::int64_t id) {
  auto ticket = detail::LoadTicket(s, id, /*lock=*/false);
  if (!ticket) {
    return ticket.error();
  }
  if (!*ticket) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  return std::move(**ticket);
}

Result<Ticket> ApplyChange(Session& s, const TicketChange& change) {
  auto loaded = detail::LoadTicketByNumber(s, change.number, /*lock=*/true);
  if (!loaded) {
    return loaded.error();
  }
  if (!*loaded) {
    return Fail(make_error_code(Errc::kNotFound));
  }
  const Ticket ticket = std::move(**loaded);
  const std::string from(ToString(ticket.status));
  const std::int64_t now = change.now_ms;
  auto conflict = [] { return Fail(make_error_code(Errc::kConflict)); };
  auto add_note = [&](std::string_view text) -> VoidResult {
    if (text.empty()) {
      return {};
    }
    return Check(s.Exec("INSERT INTO ticket_notes (ticket_id, at_ms, author, text) VALUES ($1, $2, $3, $4)",
                        ticket.id, now, change.actor, text));
  };
  auto in_maintenance = [&]() -> Result<bool> {
    auto state = detail::MaintenanceAt(s, ticket.device.customer, ticket.device.site, ticket.device.serial, now);
    if (!state) {
      return Fail(state.error());
    }
    return state->any();
  };

  switch (change.action) {
    case TicketAction::kAcknowledge: {
      if (ticket.status != TicketStatus::kNew && ticket.status != TicketStatus::kReopened) {
        return conflict();
      }
      if (auto u = Check(s.Exec("UPDATE tickets SET status = 'acknowledged', acknowledged_at_ms = $1, "
                                "acknowledged_by = $2 WHERE id = $3",
                                now, change.actor, ticket.id));
          !u) {
        return u.error();
      }
      if (auto h = detail::RecordHistory(s, ticket.id, now, change.actor, "acknowledged", from, "acknowledged",
                                         change.text);
          !h) {
        return h.error();
      }
      if (auto n = add_note(change.text); !n) {
        return n.error();
      }
      break;
    }
    case TicketAction::kResolve: {
      if (!IsOpen(ticket.status)) {
        return conflict();
      }
      auto quiet = in_maintenance();
      if (!quiet) {
        return quiet.error();
      }
      auto resolved = detail::ResolveTicket(s, ticket, now, change.actor,
                                            change.text.empty() ? "resolved by an engineer" : change.text, *quiet,
                                            &change.planner);
      if (!resolved) {
        return resolved.error();
      }
      if (auto n = add_note(change.text); !n) {
        return n.error();
      }
      break;
    }
    case TicketAction::kClose: {
      if (ticket.status == TicketStatus::kClosed) {
        return conflict();
      }
      if (IsOpen(ticket.status)) {
        // Closing an open ticket resolves it on the way: the people told hear that it is over.
        auto quiet = in_maintenance();
        if (!quiet) {
          return quiet.error();
        }
        auto resolved = detail::ResolveTicket(s, ticket, now, change.actor, "closed while open", *quiet,
                                              &change.planner);
        if (!resolved) {
          return resolved.error();
        }
      }
      if (auto u = Check(s.Exec(
              "UPDATE tickets SET status = 'closed', state = 'resolved', closed_at_ms = $1 WHERE id = $2", now,
              ticket.id));
          !u) {
        return u.error();
      }
      if (auto h = detail::RecordHistory(s, ticket.id, now, change.actor, "closed",
                                         IsOpen(ticket.status) ? "resolved" : from, "closed", change.text);
          !h) {
        return h.error();
      }
      if (auto n = add_note(change.text); !n) {
        return n.error();
      }
      break;
    }
    case TicketAction::kReopen: {
      if (IsOpen(ticket.status)) {
        return conflict();
      }
      // The key may have a newer open ticket: two open tickets for one key are never allowed.
      auto other = detail::FindOpenTicket(s, ticket.dedup_key, /*lock=*/false);
      if (!other) {
        return other.error();
      }
      if (*other) {
        return conflict();
      }
      auto quiet = in_maintenance();
      if (!quiet) {
        return quiet.error();
      }
      if (auto u = Check(s.Exec(
              "UPDATE tickets SET state = 'open', status = 'reopened', episode_started_ms = $1, resolved_at_ms = NULL, "
              "resolved_by = '', acknowledged_at_ms = NULL, acknowledged_by = '', closed_at_ms = NULL, "
              "suppressed = $2 WHERE id = $3",
              now, *quiet ? "maintenance" : "", ticket.id));
          !u) {
        return u.error();
      }
      if (auto h = detail::RecordHistory(s, ticket.id, now, change.actor, "reopened", from, "reopened", change.text);
          !h) {
        return h.error();
      }
      if (auto n = add_note(change.text); !n) {
        return n.error();
      }
      if (!*quiet) {
        auto reopened = Reload(s, ticket.id);
        if (!reopened) {
          return reopened.error();
        }
        if (auto z = Check(s.Exec("INSERT INTO ticket_escalations (ticket_id, level, last_sent_ms) VALUES ($1, 0, $2) "
                                  "ON CONFLICT (ticket_id, level) DO UPDATE SET last_sent_ms = excluded.last_sent_ms",
                                  ticket.id, now));
            !z) {
          return z.error();
        }
        if (auto q = detail::QueueTicketEvent(s, *reopened, TicketEventKind::kReopened, 0, now, &change.planner); !q) {
          return q.error();
        }
      }
      break;
    }
    case TicketAction::kNote: {
      if (change.text.empty()) {
        return Fail(make_error_code(Errc::kInvalidArgument));
      }
      if (auto n = add_note(change.text); !n) {
        return n.error();
      }
      break;
    }
    case TicketAction::kAssign: {
      if (auto u = Check(s.Exec("UPDATE tickets SET assignee = $1 WHERE id = $2", change.text, ticket.id)); !u) {
        return u.error();
      }
      const std::string detail = change.text.empty() ? "unassigned" : "to " + change.text;
      if (auto h = detail::RecordHistory(s, ticket.id, now, change.actor, "assigned", from, from, detail); !h) {
        return h.error();
      }
      break;
    }
  }
  return Reload(s, ticket.id);
}

}  // namespace

// ---- Engineers' changes -------------------------------------------------------------------------

Result<Ticket> SqlHomeStore::ChangeTicket(const TicketChange& change) {
  auto changed = db_->Transaction(TxMode::kWrite, [&](Session& s) { return ApplyChange(s, change); });
  if (!changed && changed.error() == sql::Errc::kUniqueViolation) {
    // Another home opened a ticket for the key while this one was being reopened.
    return Fail(make_error_code(Errc::kConflict));
  }
  return changed;
}

// ---- Escalation ---------------------------------------------------------------------------------

Result<std::vector<EscalationCandidate>> SqlHomeStore::ListEscalationCandidates(std::int64_t now_ms,
                                                                                std::int64_t after_id, int limit) {
  return db_->Transaction(TxMode::kSnapshot, [&](Session& s) -> Result<std::vector<EscalationCandidate>> {
    auto rows = s.Query(fmt::format("{} WHERE t.state = 'open' AND t.status <> 'acknowledged' AND t.suppressed = '' "
                                    "AND t.id > $1 AND NOT EXISTS (SELECT 1 FROM maintenance_windows m "
                                    "WHERE m.customer = t.customer AND m.site = t.site "
                                    "AND (m.serial = '' OR m.serial = t.serial) AND m.starts_at_ms <= $2 "
                                    "AND m.ends_at_ms > $2) ORDER BY t.id LIMIT $3",
                                    detail::kSelectTickets),
                        after_id, now_ms, std::max(limit, 0));
    if (!rows) {
      return rows.error();
    }
    std::vector<EscalationCandidate> out;
    for (const Row& row : *rows) {
      auto ticket = detail::ReadTicket(row);
      if (!ticket) {
        return ticket.error();
      }
      out.push_back({std::move(*ticket), {}});
    }
    if (out.empty()) {
      return out;
    }
    auto levels = s.Query(
        "SELECT ticket_id, level, last_sent_ms FROM ticket_escalations WHERE ticket_id >= $1 AND ticket_id <= $2",
        out.front().ticket.id, out.back().ticket.id);
    if (!levels) {
      return levels.error();
    }
    for (const Row& row : *levels) {
      auto it = std::lower_bound(out.begin(), out.end(), row.Int(0),
                                 [](const EscalationCandidate& c, std::int64_t id) { return c.ticket.id < id; });
      if (it != out.end() && it->ticket.id == row.Int(0)) {
        it->last_sent_ms[static_cast<int>(row.Int(1))] = row.Int(2);
      }
    }
    return out;
  });
}

Result<bool> SqlHomeStore::Escalate(const EscalationStep& step, std::int64_t now_ms, const NotifyPlanner& planner) {
  return db_->Transaction(TxMode::kWrite, [&](Session& s) -> Result<bool> {
    auto loaded = detail::LoadTicket(s, step.ticket_id, /*lock=*/true);
    if (!loaded) {
      return Fail(loaded.error());
    }
    if (!*loaded) {
      return false;
    }
    const Ticket& ticket = **loaded;
    if (ticket.state != TicketState::kOpen || ticket.status == TicketStatus::kAcknowledged ||
        !ticket.suppressed.empty() || ticket.episode_started_ms != step.episode_started_ms) {
      return false;
    }
    auto maintenance =
        detail::MaintenanceAt(s, ticket.device.customer, ticket.device.site, ticket.device.serial, now_ms);
    if (!maintenance) {
      return Fail(maintenance.error());
    }
    if (maintenance->any()) {
      return false;
    }
    // Conditional on the value the job saw: of two homes escalating at once, one changes it.
    auto recorded =
        step.previous_sent_ms
            ? s.Exec("UPDATE ticket_escalations SET last_sent_ms = $1 WHERE ticket_id = $2 AND level = $3 "
                     "AND last_sent_ms = $4",
                     now_ms, ticket.id, step.level, *step.previous_sent_ms)
            : s.Exec("INSERT INTO ticket_escalations (ticket_id, level, last_sent_ms) VALUES ($1, $2, $3) "
                     "ON CONFLICT (ticket_id, level) DO NOTHING",
                     ticket.id, step.level, now_ms);
    if (!recorded) {
      return Fail(recorded.error());
    }
    if (*recorded != 1) {
      return false;
    }
    const char* action = step.reminder ? "reminder" : "escalated";
    if (auto h = detail::RecordHistory(s, ticket.id, now_ms, "escalation", action, ToString(ticket.status),
                                       ToString(ticket.status), fmt::format("level {}", step.level));
        !h) {
      return Fail(h.error());
    }
    if (auto q = detail::QueueTicketEvent(s, ticket, step.reminder ? TicketEventKind::kReminder : TicketEventKind::kEscalated,
                                          step.level, now_ms, &planner);
        !q) {
      return Fail(q.error());
    }
    return true;
  });
}

// ---- Maintenance windows ------------------------------------------------------------------------

Result<MaintenanceWindow> SqlHomeStore::AddMaintenanceWindow(MaintenanceWindow window, std::int64_t now_ms) {
  if (window.customer.empty() || window.site.empty() || window.ends_at_ms <= window.starts_at_ms) {
    return Fail(make_error_code(Errc::kInvalidArgument));
  }
  return db_->Transaction(TxMode::kWrite, [&](Session& s) -> Result<MaintenanceWindow> {
    if (!window.serial.empty()) {
      auto device = s.QueryRow("SELECT id FROM devices WHERE customer = $1 AND site = $2 AND serial = $3",
                               window.customer, window.site, window.serial);
      if (!device) {
        return device.error();
      }
      if (!*device) {
        return Fail(make_error_code(Errc::kDeviceUnknown));
      }
    }
    auto inserted = s.QueryRow(
        "INSERT INTO maintenance_windows (customer, site, serial, starts_at_ms, ends_at_ms, reason, created_by, "
        "created_at_ms, automatic) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        window.customer, window.site, window.serial, window.starts_at_ms, window.ends_at_ms, window.reason,
        window.created_by, now_ms, window.automatic ? 1 : 0);
    if (!inserted) {
      return inserted.error();
    }
    if (!*inserted) {
      return Fail(make_error_code(Errc::kCorrupt));
    }
    MaintenanceWindow added = window;
    added.id = (*inserted)->Int(0);
    added.created_at_ms = now_ms;
    return added;
  });
}

Result<std::vector<MaintenanceWindow>> SqlHomeStore::ListMaintenanceWindows(const MaintenanceFilter& filter) {
  return db_->WithSession([&](Session& s) -> Result<std::vector<MaintenanceWindow>> {
    auto rows = s.Query(fmt::format("SELECT {} FROM maintenance_windows WHERE ($1 IS NULL OR ends_at_ms > $1) "
                                    "AND ($2 = '' OR customer = $2) AND ($3 = '' OR site = $3) "
                                    "AND ($4 = '' OR serial = $4 OR serial = '') "
                                    "ORDER BY starts_at_ms, id LIMIT $5",
                                    kMaintenanceColumns),
                        filter.current_at_ms, filter.customer, filter.site, filter.serial,
                        std::max(filter.limit, 0));
    if (!rows) {
      return rows.error();
    }
    std::vector<MaintenanceWindow> out;
    for (const Row& row : *rows) {
      out.push_back(ReadWindow(row));
    }
    return out;
  });
}

Result<MaintenanceWindow> SqlHomeStore::EndMaintenanceWindow(std::int64_t id, std::string_view actor,
                                                             std::int64_t now_ms) {
  return db_->Transaction(TxMode::kWrite, [&](Session& s) -> Result<MaintenanceWindow> {
    auto row = s.QueryRow(fmt::format("SELECT {} FROM maintenance_windows WHERE id = $1{}", kMaintenanceColumns,
                                      sql::ForUpdate(s.backend())),
                          id);
    if (!row) {
      return row.error();
    }
    if (!*row) {
      return Fail(make_error_code(Errc::kNotFound));
    }
    MaintenanceWindow window = ReadWindow(**row);
    if (window.ends_at_ms <= now_ms) {
      return Fail(make_error_code(Errc::kConflict));
    }
    // A planned window that has not begun is cancelled: it becomes empty, and never covers anything.
    window.ends_at_ms = std::max(window.starts_at_ms, now_ms);
    window.ended_at_ms = now_ms;
    window.ended_by = std::string(actor);
    auto updated = s.Exec("UPDATE maintenance_windows SET ends_at_ms = $1, ended_at_ms = $2, ended_by = $3 WHERE id = $4",
                          window.ends_at_ms, now_ms, actor, id);
    if (!updated) {
      return updated.error();
    }
    return window;
  });
}

// ---- Inventory ----------------------------------------------------------------------------------

Result<std::vector<InventoryRecord>> SqlHomeStore::LatestInventory(
    const std::optional<protocol::DeviceIdentity>& device) {
  const protocol::DeviceIdentity none;
  const protocol::DeviceIdentity& d = device ? *device : none;
  return db_->WithSession([&](Session& s) -> Result<std::vector<InventoryRecord>> {
    auto rows = s.Query(
        "SELECT d.customer, d.site, d.serial, d.model, e.message_id, e.device_time_ms, e.received_at_ms, "
        "e.payload_json FROM devices d JOIN events e ON e.id = (SELECT e2.id FROM events e2 WHERE "
        "e2.device_id = d.id AND e2.type = 'inventory' AND e2.result_status = 'accepted' "
        "ORDER BY e2.received_at_ms DESC, e2.id DESC LIMIT 1) "
        "WHERE ($1 = '' OR (d.customer = $1 AND d.site = $2 AND d.serial = $3)) "
        "ORDER BY d.customer, d.site, d.serial",
        d.customer, d.site, d.serial);
    if (!rows) {
      return rows.error();
    }
    std::vector<InventoryRecord> out;
    for (const Row& r : *rows) {
      out.push_back({.device = {r.Text(0), r.Text(1), r.Text(2), r.Text(3)},
                     .message_id = r.Text(4),
                     .device_time_ms = r.Int(5),
                     .received_at_ms = r.Int(6),
                     .payload_json = r.Text(7)});
    }
    return out;
  });
}

}  // namespace lifeline::store
