#include "store/sql_tickets.h"

#include "store/sql/dialect.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <utility>

namespace lifeline::store::detail {
namespace {

using protocol::Severity;
using sql::Row;
using sql::Session;

std::string TicketNumber(std::int64_t sequence) { return fmt::format("LL-{:06d}", sequence); }

/// The next ticket number. SQLite counts in a table (under its single write lock); PostgreSQL takes
/// a sequence value, which never blocks a concurrent home (a rolled-back ticket leaves a gap).
Result<std::string> NextTicketNumber(Session& s) {
  auto sequence = s.QueryRow(
      sql::Pick(s.backend(), "UPDATE counters SET value = value + 1 WHERE name = 'ticket' RETURNING value",
                "SELECT nextval('ticket_numbers')"));
  if (!sequence) {
    return sequence.error();
  }
  if (!*sequence) {
    return Fail(make_error_code(Errc::kCorrupt));  // the counter row is missing
  }
  return TicketNumber((*sequence)->Int(0));
}

/// Level 0 of escalation is the notification at open or reopen: recorded so the escalation job
/// counts the next levels from it and does not send it again.
VoidResult RecordLevelZero(Session& s, std::int64_t ticket_id, std::int64_t now_ms) {
  auto upserted = s.Exec(
      "INSERT INTO ticket_escalations (ticket_id, level, last_sent_ms) VALUES ($1, 0, $2) "
      "ON CONFLICT (ticket_id, level) DO UPDATE SET last_sent_ms = excluded.last_sent_ms",
      ticket_id, now_ms);
  if (!upserted) {
    return upserted.error();
  }
  return {};
}

Result<std::optional<Ticket>> LoadOne(Session& s, std::string_view where, const sql::Value& arg, bool lock) {
  auto rows = s.QueryParams(
      fmt::format("{} WHERE {}{}", kSelectTickets, where, lock ? LockTicketRow(s.backend()) : ""),
      std::span<const sql::Value>(&arg, 1));
  if (!rows) {
    return rows.error();
  }
  if (rows->empty()) {
    return std::optional<Ticket>();
  }
  auto ticket = ReadTicket(rows->front());
  if (!ticket) {
    return ticket.error();
  }
  return std::optional<Ticket>(std::move(*ticket));
}

}  // namespace

const std::string_view kSelectTickets =
    "SELECT t.id, t.number, t.state, t.status, t.kind, t.customer, t.site, t.serial, d.model, t.code, "
    "t.dedup_key, t.severity, t.text, t.first_seen_ms, t.last_seen_ms, t.occurrences, "
    "t.episode_started_ms, t.resolved_at_ms, t.resolved_by, t.acknowledged_at_ms, t.acknowledged_by, "
    "t.closed_at_ms, t.assignee, t.suppressed FROM tickets t JOIN devices d ON d.id = t.device_id";

Result<Ticket> ReadTicket(const Row& row) {
  Ticket t;
  t.id = row.Int(0);
  t.number = row.Text(1);
  const std::string state = row.Text(2);
  auto status = ParseTicketStatus(row.Text(3));
  auto severity = protocol::ParseSeverity(row.Text(11));
  if ((state != "open" && state != "resolved") || !status || !severity) {
    return Fail(make_error_code(Errc::kCorrupt));
  }
  t.state = state == "open" ? TicketState::kOpen : TicketState::kResolved;
  t.status = *status;
  t.kind = row.Text(4);
  t.device = {row.Text(5), row.Text(6), row.Text(7), row.Text(8)};
  t.code = row.Text(9);
  t.dedup_key = row.Text(10);
  t.severity = *severity;
  t.text = row.Text(12);
  t.first_seen_ms = row.Int(13);
  t.last_seen_ms = row.Int(14);
  t.occurrences = row.Int(15);
  t.episode_started_ms = row.Int(16);
  t.resolved_at_ms = row.OptionalInt(17);
  t.resolved_by = row.Text(18);
  t.acknowledged_at_ms = row.OptionalInt(19);
  t.acknowledged_by = row.Text(20);
  t.closed_at_ms = row.OptionalInt(21);
  t.assignee = row.Text(22);
  t.suppressed = row.Text(23);
  return t;
}

std::string_view LockTicketRow(sql::Backend backend) { return sql::Pick(backend, "", " FOR UPDATE OF t"); }

Result<std::optional<Ticket>> LoadTicket(Session& s, std::int64_t id, bool lock) {
  return LoadOne(s, "t.id = $1", sql::Value(id), lock);
}

Result<std::optional<Ticket>> LoadTicketByNumber(Session& s, std::string_view number, bool lock) {
  return LoadOne(s, "t.number = $1", sql::Value(number), lock);
}

Result<std::optional<Ticket>> FindOpenTicket(Session& s, std::string_view key, bool lock) {
  return LoadOne(s, "t.dedup_key = $1 AND t.state = 'open'", sql::Value(key), lock);
}

std::string DeviceActor(const protocol::DeviceIdentity& device) { return "device " + device.Key(); }

Result<MaintenanceState> MaintenanceAt(Session& s, std::string_view customer, std::string_view site,
                                       std::string_view serial, std::int64_t now_ms) {
  auto rows = s.Query(
      "SELECT automatic, ends_at_ms FROM maintenance_windows WHERE customer = $1 AND site = $2 "
      "AND (serial = '' OR serial = $3) AND starts_at_ms <= $4 AND ends_at_ms > $4",
      customer, site, serial, now_ms);
  if (!rows) {
    return rows.error();
  }
  MaintenanceState state;
  for (const Row& row : *rows) {
    if (row.Int(0) != 0) {
      state.storm = true;
      state.storm_until_ms = std::max(state.storm_until_ms, row.Int(1));
    } else {
      state.declared = true;
    }
  }
  return state;
}

VoidResult RecordHistory(Session& s, std::int64_t ticket_id, std::int64_t at_ms, std::string_view actor,
                         std::string_view action, std::string_view from_status, std::string_view to_status,
                         std::string_view detail) {
  auto inserted = s.Exec(
      "INSERT INTO ticket_history (ticket_id, at_ms, actor, action, from_status, to_status, detail) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7)",
      ticket_id, at_ms, actor, action, from_status, to_status, detail);
  if (!inserted) {
    return inserted.error();
  }
  return {};
}

VoidResult QueueOutbox(Session& s, std::int64_t ticket_id, const std::vector<OutboxRow>& rows,
                       std::int64_t now_ms) {
  std::set<std::pair<std::string, std::string>> queued;
  for (const auto& row : rows) {
    if (row.recipient.empty() || !queued.emplace(row.kind, row.recipient).second) {
      continue;
    }
    auto inserted = s.Exec(
        "INSERT INTO notifications (kind, recipient, ticket_id, subject, body, status, created_at_ms, "
        "next_attempt_ms) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
        row.kind, row.recipient, ticket_id, row.subject, row.body, now_ms);
    if (!inserted) {
      return inserted.error();
    }
  }
  return {};
}

VoidResult QueueTicketEvent(Session& s, const Ticket& ticket, TicketEventKind kind, int level,
                            std::int64_t now_ms, const NotifyPlanner* planner,
                            const std::vector<OutboxRow>& extra) {
  std::vector<OutboxRow> rows = extra;
  if (planner != nullptr && *planner) {
    auto planned = (*planner)(ticket, kind, level, now_ms);
    rows.insert(rows.end(), std::make_move_iterator(planned.begin()), std::make_move_iterator(planned.end()));
  }
  return QueueOutbox(s, ticket.id, rows, now_ms);
}

Result<int> HighestLevelThisEpisode(Session& s, const Ticket& ticket) {
  auto row = s.QueryRow(
      "SELECT COALESCE(MAX(level), 0) FROM ticket_escalations WHERE ticket_id = $1 AND last_sent_ms >= $2",
      ticket.id, ticket.episode_started_ms);
  if (!row) {
    return row.error();
  }
  return *row ? static_cast<int>((*row)->Int(0)) : 0;
}

Result<RaiseResult> RaiseTicket(Session& s, const RaiseRequest& r) {
  // Bounded: a second round happens only when another home opened the key's ticket between our
  // look and our insert (possible when a key spans devices, whose batches do not share a lock).
  for (int round = 0; round < 3; ++round) {
    auto open = FindOpenTicket(s, r.key, /*lock=*/true);
    if (!open) {
      return open.error();
    }
    if (*open) {
      // A repeat while open: count it, keep the worst severity, notify nobody.
      Ticket t = std::move(**open);
      t.severity = std::max(t.severity, r.severity);
      t.occurrences += 1;
      t.last_seen_ms = r.now_ms;
      t.text = r.text;
      auto updated = s.Exec(
          "UPDATE tickets SET occurrences = occurrences + 1, last_seen_ms = $1, text = $2, severity = $3 "
          "WHERE id = $4",
          r.now_ms, r.text, protocol::ToString(t.severity), t.id);
      if (!updated) {
        return updated.error();
      }
      return RaiseResult{std::move(t), Raised::kJoined};
    }

    const std::string suppressed = r.suppressed ? "maintenance" : "";
    if (r.reopen_window_ms > 0) {
      auto latest = LoadOne(s, "t.dedup_key = $1 ORDER BY t.id DESC LIMIT 1", sql::Value(r.key), false);
      if (!latest) {
        return latest.error();
      }
      if (*latest && (*latest)->status == TicketStatus::kResolved && (*latest)->resolved_at_ms &&
          *(*latest)->resolved_at_ms >= r.now_ms - r.reopen_window_ms) {
        // A new episode of the same ticket: acknowledgement and severity start over.
        auto reopened = s.Exec(
            "UPDATE tickets SET state = 'open', status = 'reopened', episode_started_ms = $1, "
            "occurrences = occurrences + 1, last_seen_ms = $1, text = $2, severity = $3, "
            "resolved_at_ms = NULL, resolved_by = '', acknowledged_at_ms = NULL, acknowledged_by = '', "
            "suppressed = $4 WHERE id = $5 AND status = 'resolved'",
            r.now_ms, r.text, protocol::ToString(r.severity), suppressed, (*latest)->id);
        if (!reopened) {
          return reopened.error();
        }
        if (*reopened == 1) {
          auto ticket = LoadTicket(s, (*latest)->id, false);
          if (!ticket) {
            return ticket.error();
          }
          if (!*ticket) {
            return Fail(make_error_code(Errc::kCorrupt));
          }
          const std::string detail =
              fmt::format("alert came back within the reopen window{}", r.suppressed ? "; in maintenance" : "");
          if (auto h = RecordHistory(s, (*ticket)->id, r.now_ms, r.actor, "reopened", "resolved", "reopened", detail);
              !h) {
            return h.error();
          }
          if (!r.suppressed) {
            if (auto z = RecordLevelZero(s, (*ticket)->id, r.now_ms); !z) {
              return z.error();
            }
            if (auto q = QueueTicketEvent(s, **ticket, TicketEventKind::kReopened, 0, r.now_ms, r.planner); !q) {
              return q.error();
            }
          }
          return RaiseResult{std::move(**ticket), Raised::kReopened};
        }
        continue;  // someone changed it meanwhile: look again
      }
    }

    auto number = NextTicketNumber(s);
    if (!number) {
      return number.error();
    }
    auto inserted = s.QueryRow(
        "INSERT INTO tickets (number, state, status, kind, device_id, customer, site, serial, code, dedup_key, "
        "severity, text, first_seen_ms, last_seen_ms, occurrences, episode_started_ms, suppressed) "
        "VALUES ($1, 'open', 'new', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, 1, $11, $12) "
        "ON CONFLICT (dedup_key) WHERE state = 'open' DO NOTHING RETURNING id",
        *number, r.kind, r.device_id, r.device.customer, r.device.site, r.device.serial, r.code, r.key,
        protocol::ToString(r.severity), r.text, r.now_ms, suppressed);
    if (!inserted) {
      return inserted.error();
    }
    if (!*inserted) {
      continue;  // another home opened it first: join that one
    }
    Ticket t;
    t.id = (*inserted)->Int(0);
    t.number = *number;
    t.kind = r.kind;
    t.device = r.device;
    t.code = r.code;
    t.dedup_key = r.key;
    t.severity = r.severity;
    t.text = r.text;
    t.first_seen_ms = t.last_seen_ms = t.episode_started_ms = r.now_ms;
    t.occurrences = 1;
    t.suppressed = suppressed;
    if (auto h = RecordHistory(s, t.id, r.now_ms, r.actor, "opened", "", "new",
                               r.suppressed ? "in maintenance: nobody notified" : "");
        !h) {
      return h.error();
    }
    if (!r.suppressed) {
      if (auto z = RecordLevelZero(s, t.id, r.now_ms); !z) {
        return z.error();
      }
      if (auto q = QueueTicketEvent(s, t, TicketEventKind::kOpened, 0, r.now_ms, r.planner); !q) {
        return q.error();
      }
    }
    return RaiseResult{std::move(t), Raised::kOpened};
  }
  return Fail(make_error_code(Errc::kConflict));
}

Result<Ticket> ResolveTicket(Session& s, const Ticket& ticket, std::int64_t now_ms, std::string_view actor,
                             std::string_view detail, bool suppressed_now, const NotifyPlanner* planner) {
  auto updated = s.Exec(
      "UPDATE tickets SET state = 'resolved', status = 'resolved', resolved_at_ms = $1, resolved_by = $2, "
      "last_seen_ms = CASE WHEN last_seen_ms > $1 THEN last_seen_ms ELSE $1 END WHERE id = $3 AND state = 'open'",
      now_ms, actor, ticket.id);
  if (!updated) {
    return updated.error();
  }
  if (*updated != 1) {
    return Fail(make_error_code(Errc::kConflict));
  }
  Ticket t = ticket;
  t.state = TicketState::kResolved;
  t.status = TicketStatus::kResolved;
  t.resolved_at_ms = now_ms;
  t.resolved_by = std::string(actor);
  t.last_seen_ms = std::max(t.last_seen_ms, now_ms);
  if (auto h = RecordHistory(s, t.id, now_ms, actor, "resolved", ToString(ticket.status), "resolved", detail); !h) {
    return h.error();
  }
  if (t.suppressed.empty() && !suppressed_now) {
    auto level = HighestLevelThisEpisode(s, t);
    if (!level) {
      return level.error();
    }
    if (auto q = QueueTicketEvent(s, t, TicketEventKind::kResolved, *level, now_ms, planner); !q) {
      return q.error();
    }
  }
  return t;
}

}  // namespace lifeline::store::detail
