// SqlHomeStore, heartbeats and retention (store/home_store.h, "Heartbeats and retention"):
// missing-heartbeat and silent-site tickets through the shared ticket rules (store/sql_tickets.h),
// the retention job's deletes and performance downsampling, and the job lease that lets one home of
// many run a daily job.
#include "common/clock.h"
#include "common/log.h"
#include "store/sql/dialect.h"
#include "store/sql_home_store.h"
#include "store/sql_tickets.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <utility>

namespace lifeline::store {
namespace {

namespace json = boost::json;
using sql::Row;
using sql::Session;
using sql::TxMode;

constexpr std::int64_t kDayMs = 24 * 3600 * 1000;
constexpr std::string_view kActor = "heartbeat monitor";
// Rows per delete transaction: short enough that ingest waiting on SQLite's write lock (or on
// PostgreSQL's row locks) waits milliseconds, big enough that a day's deletes take few rounds.
constexpr int kDeleteChunk = 2000;
constexpr int kTicketChunk = 200;

std::shared_ptr<spdlog::logger> Logger() {
  static const auto logger = log::Get("store");
  return logger;
}

std::string FormatMs(std::int64_t ms) {
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

/// The same form as the default alert key, so a heartbeat ticket is found like any other.
std::string DeviceKey(std::string_view customer, std::string_view site, std::string_view serial) {
  return fmt::format("{}/{}/{}/{}", customer, site, serial, kHeartbeatMissingCode);
}
std::string SiteKey(std::string_view customer, std::string_view site) {
  return fmt::format("{}/{}/{}", customer, site, kSiteSilentCode);
}

struct DeviceRow {
  std::int64_t id = 0;
  protocol::DeviceIdentity identity;
  bool active = false;
  std::int64_t last_heartbeat_ms = 0;  // or enrollment
  std::int64_t interval_s = 0;
};

/// The device's row, locked until the transaction ends: an ingest of this device (which locks the
/// same row) cannot commit a heartbeat between our look at it and the ticket we open.
Result<std::optional<DeviceRow>> LockDevice(Session& s, std::int64_t device_id) {
  auto row = s.QueryRow(fmt::format("SELECT id, customer, site, serial, model, status, "
                                    "COALESCE(last_heartbeat_ms, enrolled_at_ms), last_heartbeat_interval_s "
                                    "FROM devices WHERE id = $1{}",
                                    sql::ForUpdate(s.backend())),
                        device_id);
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<DeviceRow>();
  }
  const Row& r = **row;
  return std::optional<DeviceRow>(DeviceRow{r.Int(0),
                                            {r.Text(1), r.Text(2), r.Text(3), r.Text(4)},
                                            r.Text(5) == "active",
                                            r.Int(6),
                                            r.Int(7)});
}

VoidResult QueueContacts(Session& s, const Ticket& ticket, const std::vector<std::string>& contacts,
                         const std::string& subject, const std::string& body, std::int64_t now_ms) {
  if (contacts.empty()) {
    return {};
  }
  std::vector<OutboxRow> rows;
  for (const auto& recipient : contacts) {
    rows.push_back({"email", recipient, subject, body});
  }
  return detail::QueueOutbox(s, ticket.id, rows, now_ms);
}

std::string OpenedBody(const Ticket& ticket, std::string_view what, std::string_view text) {
  return fmt::format(
      "Lifeline opened ticket {}: {}.\n\n{}\n\nTicket:        {}\n\nIt resolves by itself when heartbeats "
      "come again.\n",
      ticket.number, what, text, ticket.number);
}

class HeartbeatApplier {
 public:
  HeartbeatApplier(Session& s, const HeartbeatTicketOptions& options, std::int64_t now_ms)
      : s_(s), options_(options), now_ms_(now_ms) {}

  Result<HeartbeatApplied> Apply(const HeartbeatChange& change) {
    switch (change.kind) {
      case HeartbeatChangeKind::kDeviceMissing:
        return DeviceMissing(change);
      case HeartbeatChangeKind::kDeviceResumed:
        return DeviceResumed(change.device_id, "heartbeats resumed", /*revoked=*/false);
      case HeartbeatChangeKind::kSiteSilent:
        return SiteSilent(change);
      case HeartbeatChangeKind::kSiteResumed:
        return SiteResumed(change);
    }
    return HeartbeatApplied{HeartbeatOutcome::kNothingOpen, ""};
  }

  /// `revoked`: resolve whatever the heartbeats say.
  Result<HeartbeatApplied> DeviceResumed(std::int64_t device_id, std::string_view detail, bool revoked) {
    auto device = LockDevice(s_, device_id);
    if (!device) {
      return device.error();
    }
    if (!*device) {
      return HeartbeatApplied{HeartbeatOutcome::kDeviceInactive, ""};
    }
    const auto& id = (*device)->identity;
    return Resolve(DeviceKey(id.customer, id.site, id.serial), id.customer, id.site, id.serial, detail,
                   revoked ? std::optional<std::int64_t>() : (*device)->last_heartbeat_ms);
  }

 private:
  Result<HeartbeatApplied> DeviceMissing(const HeartbeatChange& change) {
    auto device = LockDevice(s_, change.device_id);
    if (!device) {
      return device.error();
    }
    if (!*device || !(*device)->active) {
      return HeartbeatApplied{HeartbeatOutcome::kDeviceInactive, ""};
    }
    const DeviceRow& d = **device;
    HeartbeatApplied applied;
    if (d.last_heartbeat_ms > change.last_heartbeat_ms) {
      // A heartbeat this home's tracker has not seen: another home took it (or it committed a
      // moment ago). The caller tells its tracker; the device is not missing by what is stored.
      applied.outcome = HeartbeatOutcome::kStale;
      applied.refreshed.push_back(
          {d.id, d.identity.customer, d.identity.site, d.interval_s, d.last_heartbeat_ms, false});
      return applied;
    }
    const std::string key = DeviceKey(d.identity.customer, d.identity.site, d.identity.serial);
    const std::string text = fmt::format(
        "No heartbeat since {} (it announced the next within {} s); overdue since {}.",
        FormatMs(change.last_heartbeat_ms), change.interval_s, FormatMs(change.deadline_ms));
    return Raise(d.id, d.identity, key, kHeartbeatMissingCode, "heartbeat", text,
                 fmt::format("no heartbeat from {}", d.identity.Key()));
  }

  Result<HeartbeatApplied> SiteSilent(const HeartbeatChange& change) {
    // Every active device of the site, locked (in id order, as ingest locks one at a time, so no
    // deadlock): a heartbeat another home took from any of them means the site is not silent.
    auto rows = s_.Query(fmt::format("SELECT id, serial, model, status, COALESCE(last_heartbeat_ms, enrolled_at_ms), "
                                     "last_heartbeat_interval_s FROM devices WHERE customer = $1 AND site = $2 "
                                     "ORDER BY id{}",
                                     sql::ForUpdate(s_.backend())),
                         change.customer, change.site);
    if (!rows) {
      return rows.error();
    }
    if (rows->empty()) {
      return HeartbeatApplied{HeartbeatOutcome::kDeviceInactive, ""};
    }
    HeartbeatApplied applied;
    for (const Row& r : *rows) {
      if (r.Text(3) == "active" && r.Int(4) > change.last_heartbeat_ms) {
        applied.refreshed.push_back({r.Int(0), change.customer, change.site, r.Int(5), r.Int(4), false});
      }
    }
    if (!applied.refreshed.empty()) {
      applied.outcome = HeartbeatOutcome::kStale;
      return applied;
    }
    // The ticket belongs to the site's first enrolled device (tickets need a device row); it names
    // the site, not that device.
    const Row& anchor = rows->front();
    const protocol::DeviceIdentity site{change.customer, change.site, "", ""};
    const std::string text = fmt::format(
        "{} of the {} devices of site {}/{} are overdue and nothing has been heard from the site since {}: "
        "the site looks down or cut off (power, network). Its devices get no tickets of their own while "
        "this one is open.",
        change.missing, change.tracked, change.customer, change.site,
        change.last_heartbeat_ms > 0 ? FormatMs(change.last_heartbeat_ms) : std::string("(never)"));
    return Raise(anchor.Int(0), site, SiteKey(change.customer, change.site), kSiteSilentCode, "site", text,
                 fmt::format("site {}/{} silent", change.customer, change.site));
  }

  Result<HeartbeatApplied> SiteResumed(const HeartbeatChange& change) {
    auto latest = s_.QueryRow(
        "SELECT MAX(COALESCE(last_heartbeat_ms, enrolled_at_ms)) FROM devices WHERE customer = $1 AND site = $2 "
        "AND status = 'active'",
        change.customer, change.site);
    if (!latest) {
      return latest.error();
    }
    return Resolve(SiteKey(change.customer, change.site), change.customer, change.site, "",
                   fmt::format("heartbeats resumed from the site ({} of {} devices still missing)", change.missing,
                               change.tracked),
                   *latest ? (*latest)->Int(0) : 0);
  }

  Result<HeartbeatApplied> Raise(std::int64_t device_id, const protocol::DeviceIdentity& device,
                                 const std::string& key, std::string_view code, std::string_view kind,
                                 const std::string& text, const std::string& what) {
    auto open = detail::FindOpenTicket(s_, key, /*lock=*/false);
    if (!open) {
      return open.error();
    }
    if (*open) {
      return HeartbeatApplied{HeartbeatOutcome::kAlreadyOpen, (*open)->number};
    }
    auto maintenance = detail::MaintenanceAt(s_, device.customer, device.site, device.serial, now_ms_);
    if (!maintenance) {
      return maintenance.error();
    }
    detail::RaiseRequest request;
    request.device_id = device_id;
    request.device = device;
    request.key = key;
    request.code = std::string(code);
    request.severity = protocol::Severity::kError;
    request.text = text;
    request.kind = std::string(kind);
    request.now_ms = now_ms_;
    request.reopen_window_ms = options_.reopen_window_ms;
    request.suppressed = maintenance->any();
    request.actor = std::string(kActor);
    request.planner = options_.planner ? &options_.planner : nullptr;
    auto raised = detail::RaiseTicket(s_, request);
    if (!raised) {
      return raised.error();
    }
    const Ticket& ticket = raised->ticket;
    if (raised->what == detail::Raised::kJoined) {
      // Another home opened it between our look and our insert.
      return HeartbeatApplied{HeartbeatOutcome::kAlreadyOpen, ticket.number};
    }
    if (!maintenance->any()) {
      const std::string subject = fmt::format("[Lifeline {}] {} {}", ticket.number, code, what);
      if (auto queued = QueueContacts(s_, ticket, options_.contacts, subject, OpenedBody(ticket, what, text), now_ms_);
          !queued) {
        return queued.error();
      }
    }
    return HeartbeatApplied{HeartbeatOutcome::kOpened, ticket.number};
  }

  /// `heard_ms`: the latest stored heartbeat of the device (or site). A ticket opened after it stands:
  /// the resumption was this home's tracker catching up with heartbeats another home had taken
  /// before the ticket opened, not a heartbeat after it. nullopt: resolve regardless.
  Result<HeartbeatApplied> Resolve(const std::string& key, std::string_view customer, std::string_view site,
                                   std::string_view serial, std::string_view detail,
                                   std::optional<std::int64_t> heard_ms) {
    auto open = detail::FindOpenTicket(s_, key, /*lock=*/true);
    if (!open) {
      return open.error();
    }
    if (!*open) {
      return HeartbeatApplied{HeartbeatOutcome::kNothingOpen, ""};
    }
    if (heard_ms && *heard_ms < (*open)->episode_started_ms) {
      return HeartbeatApplied{HeartbeatOutcome::kStale, (*open)->number};
    }
    auto maintenance = detail::MaintenanceAt(s_, customer, site, serial, now_ms_);
    if (!maintenance) {
      return maintenance.error();
    }
    auto resolved = detail::ResolveTicket(s_, **open, now_ms_, kActor, detail, maintenance->any(),
                                          options_.planner ? &options_.planner : nullptr);
    if (!resolved) {
      return resolved.error();
    }
    return HeartbeatApplied{HeartbeatOutcome::kResolved, resolved->number};
  }

  Session& s_;
  const HeartbeatTicketOptions& options_;
  std::int64_t now_ms_;
};

// ---- Retention ----

/// A kind of data the job deletes: `where` selects its rows in `table` (cutoff is $1).
struct DeleteKind {
  std::string_view kind;
  std::int64_t RetentionPolicy::*keep;
  std::string_view table;
  std::string_view where;
  std::string_view key = "id";  // the columns a chunk's rows are deleted by
};

// Inventory and configuration keep each device's newest report of the type, whatever its age: the
// API shows it, and a device that stopped reporting is still described.
constexpr DeleteKind kDeleteKinds[] = {
    {"alerts", &RetentionPolicy::alerts_ms, "events",
     "type IN ('alert', 'clear') AND ticket_id IS NULL AND received_at_ms < $1"},
    {"heartbeats", &RetentionPolicy::heartbeats_ms, "events", "type = 'heartbeat' AND received_at_ms < $1"},
    {"inventory", &RetentionPolicy::inventory_ms, "events",
     "type IN ('inventory', 'configuration') AND received_at_ms < $1 AND id < (SELECT MAX(n.id) FROM events n "
     "WHERE n.device_id = events.device_id AND n.type = events.type)"},
    {"problem_data", &RetentionPolicy::problem_data_ms, "events",
     "type = 'bundle_manifest' AND received_at_ms < $1"},
    {"performance_daily", &RetentionPolicy::performance_daily_ms, "performance_daily", "day_ms < $1",
     "device_id, day_ms"},
    {"notifications", &RetentionPolicy::notifications_ms, "notifications",
     "status IN ('sent', 'failed') AND created_at_ms < $1"},
};
constexpr std::string_view kPerformanceWhere = "type = 'performance' AND received_at_ms < $1";
constexpr std::string_view kTicketsWhere =
    "state = 'resolved' AND resolved_at_ms < $1 AND COALESCE(closed_at_ms, resolved_at_ms) < $1";
// Rows that point at a ticket, deleted with it (the problem report is the ticket and all of these).
constexpr std::string_view kTicketChildren[] = {"ticket_history", "ticket_notes", "ticket_escalations",
                                                "notifications", "events"};

std::int64_t Cutoff(std::int64_t now_ms, std::int64_t keep_ms) { return keep_ms > 0 ? now_ms - keep_ms : 0; }

/// Replay protection needs batch ids for the clock-skew window; the policy's value is at least that
/// (home_config checks), and 0 keeps them for ever.
std::int64_t BatchCutoff(const RetentionPolicy& policy, std::int64_t now_ms) {
  return Cutoff(now_ms, policy.batch_ids_ms);
}

Result<std::int64_t> Count(Session& s, std::string_view table, std::string_view where, std::int64_t cutoff) {
  auto row = s.QueryRow(fmt::format("SELECT COUNT(*) FROM {} WHERE {}", table, where), cutoff);
  if (!row) {
    return row.error();
  }
  return *row ? (*row)->Int(0) : 0;
}

std::string IdList(const std::vector<std::int64_t>& ids) { return fmt::format("{}", fmt::join(ids, ", ")); }

// ---- Performance downsampling: a device's reports of one UTC day become one row. ----

struct MetricDay {
  double min = 0;
  double max = 0;
  double sum = 0;  // avg * samples, added up
  std::int64_t samples = 0;
};

struct PerformanceDay {
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;
  std::int64_t reports = 0;
  std::int64_t samples = 0;
  std::map<std::string, MetricDay> metrics;

  /// One report ({"start_ms","end_ms","samples","metrics":{name:{"min","avg","max"}}}, the agent's
  /// form) or an earlier daily row (whose metrics also carry "samples"). Malformed parts are skipped:
  /// the data is the device's.
  void Add(const json::value& value, std::int64_t reports_in_it) {
    const auto* object = value.if_object();
    if (object == nullptr) {
      return;
    }
    auto number = [](const json::object& o, std::string_view key) -> std::optional<double> {
      const auto* v = o.if_contains(key);
      if (v == nullptr) {
        return std::nullopt;
      }
      if (v->is_int64()) {
        return static_cast<double>(v->get_int64());
      }
      if (v->is_uint64()) {
        return static_cast<double>(v->get_uint64());
      }
      if (v->is_double()) {
        return v->get_double();
      }
      return std::nullopt;
    };
    const auto start = number(*object, "start_ms");
    const auto end = number(*object, "end_ms");
    if (start && (start_ms == 0 || *start < start_ms)) {
      start_ms = static_cast<std::int64_t>(*start);
    }
    if (end && *end > end_ms) {
      end_ms = static_cast<std::int64_t>(*end);
    }
    const auto report_samples = static_cast<std::int64_t>(std::max(number(*object, "samples").value_or(1), 1.0));
    samples += report_samples;
    reports += reports_in_it;
    const auto* metrics_value = object->if_contains("metrics");
    if (metrics_value == nullptr || !metrics_value->is_object()) {
      return;
    }
    for (const auto& [name, stats_value] : metrics_value->get_object()) {
      const auto* stats = stats_value.if_object();
      if (stats == nullptr) {
        continue;
      }
      const auto min = number(*stats, "min");
      const auto avg = number(*stats, "avg");
      const auto max = number(*stats, "max");
      if (!min || !avg || !max) {
        continue;
      }
      const auto n = static_cast<std::int64_t>(std::max(number(*stats, "samples").value_or(report_samples), 1.0));
      auto [it, inserted] = metrics.try_emplace(std::string(name), MetricDay{*min, *max, 0, 0});
      MetricDay& m = it->second;
      m.min = std::min(m.min, *min);
      m.max = std::max(m.max, *max);
      m.sum += *avg * static_cast<double>(n);
      m.samples += n;
    }
  }

  std::string ToJson(std::int64_t day_ms) const {
    json::object out;
    out["day"] = FormatMs(day_ms).substr(0, 10);
    out["start_ms"] = start_ms;
    out["end_ms"] = end_ms;
    out["reports"] = reports;
    out["samples"] = samples;
    json::object by_name;
    for (const auto& [name, m] : metrics) {
      by_name[name] = json::object{{"min", m.min},
                                   {"avg", m.sum / static_cast<double>(std::max<std::int64_t>(m.samples, 1))},
                                   {"max", m.max},
                                   {"samples", m.samples}};
    }
    out["metrics"] = std::move(by_name);
    return json::serialize(out);
  }
};

/// Folds up to kDeleteChunk performance reports older than `cutoff` into their days' rows and
/// deletes them, in the caller's transaction; how many went.
Result<std::int64_t> DownsampleChunk(Session& s, std::int64_t cutoff) {
  auto rows = s.Query(fmt::format("SELECT id, device_id, device_time_ms, payload_json FROM events WHERE {} LIMIT {}",
                                  kPerformanceWhere, kDeleteChunk),
                      cutoff);
  if (!rows) {
    return rows.error();
  }
  if (rows->empty()) {
    return 0;
  }
  std::map<std::pair<std::int64_t, std::int64_t>, PerformanceDay> days;  // (device, day start) -> day
  std::vector<std::int64_t> ids;
  for (const Row& r : *rows) {
    ids.push_back(r.Int(0));
    const std::int64_t time = r.Int(2);
    const std::int64_t day = (time >= 0 ? time / kDayMs : (time - kDayMs + 1) / kDayMs) * kDayMs;
    boost::system::error_code ec;
    const json::value payload = json::parse(r.Text(3), ec);
    days[{r.Int(1), day}].Add(ec ? json::value() : payload, 1);
  }
  for (auto& [key, day] : days) {
    auto existing = s.QueryRow(
        fmt::format("SELECT payload_json FROM performance_daily WHERE device_id = $1 AND day_ms = $2{}",
                    sql::ForUpdate(s.backend())),
        key.first, key.second);
    if (!existing) {
      return existing.error();
    }
    if (*existing) {
      boost::system::error_code ec;
      const json::value earlier = json::parse((*existing)->Text(0), ec);
      if (!ec && earlier.is_object()) {
        const auto* reports = earlier.get_object().if_contains("reports");
        day.Add(earlier, reports != nullptr && reports->is_int64() ? reports->get_int64() : 1);
      }
    }
    auto upserted = s.Exec(
        "INSERT INTO performance_daily (device_id, day_ms, reports, payload_json) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (device_id, day_ms) DO UPDATE SET reports = excluded.reports, "
        "payload_json = excluded.payload_json",
        key.first, key.second, day.reports, day.ToJson(key.second));
    if (!upserted) {
      return upserted.error();
    }
  }
  auto deleted = s.Exec(fmt::format("DELETE FROM events WHERE id IN ({})", IdList(ids)));
  if (!deleted) {
    return deleted.error();
  }
  return *deleted;
}

/// Deletes up to kTicketChunk tickets selected by kTicketsWhere, with every row that points at
/// them, in the caller's transaction; how many tickets went.
Result<std::int64_t> DeleteTicketChunk(Session& s, std::int64_t cutoff) {
  auto rows = s.Query(fmt::format("SELECT id FROM tickets WHERE {} ORDER BY id LIMIT {}{}", kTicketsWhere,
                                  kTicketChunk, sql::ForUpdate(s.backend())),
                      cutoff);
  if (!rows) {
    return rows.error();
  }
  if (rows->empty()) {
    return 0;
  }
  std::vector<std::int64_t> ids;
  for (const Row& r : *rows) {
    ids.push_back(r.Int(0));
  }
  const std::string list = IdList(ids);
  for (const auto table : kTicketChildren) {
    auto deleted = s.Exec(fmt::format("DELETE FROM {} WHERE ticket_id IN ({})", table, list));
    if (!deleted) {
      return deleted.error();
    }
  }
  return s.Exec(fmt::format("DELETE FROM tickets WHERE id IN ({})", list));
}

}  // namespace

// ---- Heartbeats ---------------------------------------------------------------------------------

Result<HeartbeatState> SqlHomeStore::LoadHeartbeatState() {
  return db_->Transaction(TxMode::kSnapshot, [&](Session& s) -> Result<HeartbeatState> {
    HeartbeatState state;
    auto open = s.Query("SELECT device_id FROM tickets WHERE code = $1 AND state = 'open'", kHeartbeatMissingCode);
    if (!open) {
      return open.error();
    }
    std::set<std::int64_t> missing;
    for (const Row& r : *open) {
      missing.insert(r.Int(0));
    }
    auto devices = s.Query(
        "SELECT id, customer, site, last_heartbeat_interval_s, COALESCE(last_heartbeat_ms, enrolled_at_ms) "
        "FROM devices WHERE status = 'active' ORDER BY id");
    if (!devices) {
      return devices.error();
    }
    state.devices.reserve(devices->size());
    for (const Row& r : *devices) {
      state.devices.push_back(
          {r.Int(0), r.Text(1), r.Text(2), r.Int(3), r.Int(4), missing.erase(r.Int(0)) == 1});
    }
    state.inactive_with_ticket.assign(missing.begin(), missing.end());
    auto sites = s.Query("SELECT customer, site, episode_started_ms FROM tickets WHERE code = $1 AND state = 'open' "
                         "ORDER BY id",
                         kSiteSilentCode);
    if (!sites) {
      return sites.error();
    }
    for (const Row& r : *sites) {
      state.silent_sites.push_back({r.Text(0), r.Text(1), r.Int(2)});
    }
    return state;
  });
}

Result<std::optional<std::int64_t>> SqlHomeStore::DeviceRowId(const protocol::DeviceIdentity& device) {
  auto row = db_->WithSession([&](Session& s) {
    return s.QueryRow("SELECT id FROM devices WHERE customer = $1 AND site = $2 AND serial = $3", device.customer,
                      device.site, device.serial);
  });
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<std::int64_t>();
  }
  return std::optional<std::int64_t>((*row)->Int(0));
}

Result<std::vector<HeartbeatApplied>> SqlHomeStore::ApplyHeartbeatChanges(const std::vector<HeartbeatChange>& changes,
                                                                          const HeartbeatTicketOptions& options,
                                                                          std::int64_t now_ms) {
  auto applied = db_->Transaction(TxMode::kWrite, [&](Session& s) -> Result<std::vector<HeartbeatApplied>> {
    HeartbeatApplier applier(s, options, now_ms);
    std::vector<HeartbeatApplied> out;
    out.reserve(changes.size());
    for (const auto& change : changes) {
      auto one = applier.Apply(change);
      if (!one) {
        return one.error();
      }
      out.push_back(std::move(*one));
    }
    return out;
  });
  if (!applied && applied.error().category() == sql::ErrorCategory()) {
    Logger()->error("missing-heartbeat tickets ({} changes) failed: {} ({})", changes.size(),
                    applied.error().message(), sql::LastErrorDetail());
  }
  return applied;
}

Result<bool> SqlHomeStore::ResolveHeartbeatTicket(std::int64_t device_id, std::string_view reason,
                                                  const HeartbeatTicketOptions& options, std::int64_t now_ms) {
  auto applied = db_->Transaction(TxMode::kWrite, [&](Session& s) -> Result<HeartbeatApplied> {
    return HeartbeatApplier(s, options, now_ms).DeviceResumed(device_id, reason, /*revoked=*/true);
  });
  if (!applied) {
    return Fail(applied.error());
  }
  return applied->outcome == HeartbeatOutcome::kResolved;
}

// ---- Retention ----------------------------------------------------------------------------------

Result<std::vector<RetentionItem>> SqlHomeStore::PreviewRetention(const RetentionPolicy& policy, std::int64_t now_ms) {
  return db_->Transaction(TxMode::kSnapshot, [&](Session& s) -> Result<std::vector<RetentionItem>> {
    std::vector<RetentionItem> items;
    auto add = [&](std::string_view kind, std::string_view action, std::int64_t cutoff, std::string_view table,
                   std::string_view where) -> VoidResult {
      RetentionItem item{std::string(kind), cutoff > 0 ? std::string(action) : "keep", cutoff, 0};
      if (cutoff > 0) {
        auto rows = Count(s, table, where, cutoff);
        if (!rows) {
          return rows.error();
        }
        item.rows = *rows;
      }
      items.push_back(std::move(item));
      return {};
    };
    for (const auto& k : kDeleteKinds) {
      if (auto r = add(k.kind, "delete", Cutoff(now_ms, policy.*k.keep), k.table, k.where); !r) {
        return r.error();
      }
    }
    if (auto r = add("performance", "downsample", Cutoff(now_ms, policy.performance_raw_ms), "events",
                     kPerformanceWhere);
        !r) {
      return r.error();
    }
    if (auto r = add("tickets", "delete", Cutoff(now_ms, policy.tickets_ms), "tickets", kTicketsWhere); !r) {
      return r.error();
    }
    if (auto r = add("batch_ids", "delete", BatchCutoff(policy, now_ms), "batches", "received_at_ms < $1"); !r) {
      return r.error();
    }
    return items;
  });
}

Result<std::vector<RetentionItem>> SqlHomeStore::ApplyRetention(const RetentionPolicy& policy, std::int64_t now_ms,
                                                                const std::function<bool()>& keep_going) {
  std::vector<RetentionItem> items;
  auto go_on = [&] { return !keep_going || keep_going(); };
  // Runs `chunk` in transactions of its own until it handles fewer than `full` rows (or stops).
  auto repeat = [&](RetentionItem item, std::int64_t full, auto chunk) -> VoidResult {
    if (item.cutoff_ms > 0) {
      while (go_on()) {
        auto done = db_->Transaction(TxMode::kWrite, [&](Session& s) { return chunk(s, item.cutoff_ms); });
        if (!done) {
          Logger()->error("retention of {} failed: {} ({})", item.kind, done.error().message(),
                          sql::LastErrorDetail());
          return done.error();
        }
        item.rows += *done;
        if (*done < full) {
          break;
        }
      }
    } else {
      item.action = "keep";
    }
    items.push_back(std::move(item));
    return {};
  };
  for (const auto& k : kDeleteKinds) {
    const std::string sql = fmt::format("DELETE FROM {0} WHERE ({3}) IN (SELECT {3} FROM {0} WHERE {1} LIMIT {2})",
                                        k.table, k.where, kDeleteChunk, k.key);
    auto deleted = repeat({std::string(k.kind), "delete", Cutoff(now_ms, policy.*k.keep), 0}, kDeleteChunk,
                          [&](Session& s, std::int64_t cutoff) { return s.Exec(sql, cutoff); });
    if (!deleted) {
      return deleted.error();
    }
  }
  if (auto r = repeat({"performance", "downsample", Cutoff(now_ms, policy.performance_raw_ms), 0}, kDeleteChunk,
                      [](Session& s, std::int64_t cutoff) { return DownsampleChunk(s, cutoff); });
      !r) {
    return r.error();
  }
  if (auto r = repeat({"tickets", "delete", Cutoff(now_ms, policy.tickets_ms), 0}, kTicketChunk,
                      [](Session& s, std::int64_t cutoff) { return DeleteTicketChunk(s, cutoff); });
      !r) {
    return r.error();
  }
  // Batch ids are primary-key rows with nothing pointing at them: one statement.
  if (auto r = repeat({"batch_ids", "delete", BatchCutoff(policy, now_ms), 0}, std::numeric_limits<std::int64_t>::max(),
                      [](Session& s, std::int64_t cutoff) {
                        return s.Exec("DELETE FROM batches WHERE received_at_ms < $1", cutoff);
                      });
      !r) {
    return r.error();
  }
  return items;
}

// ---- Jobs ---------------------------------------------------------------------------------------

Result<bool> SqlHomeStore::ClaimJob(std::string_view job, std::string_view holder, std::int64_t due_since_ms,
                                    std::int64_t lease_until_ms, std::int64_t now_ms) {
  return db_->Transaction(TxMode::kWrite, [&](Session& s) -> Result<bool> {
    auto created = s.Exec("INSERT INTO jobs (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", job);
    if (!created) {
      return Fail(created.error());
    }
    // One conditional update: of two homes claiming at once, the second finds the lease taken.
    auto claimed = s.Exec(
        "UPDATE jobs SET holder = $1, lease_until_ms = $2, last_started_ms = $3 "
        "WHERE name = $4 AND lease_until_ms <= $3 AND last_started_ms < $5",
        holder, lease_until_ms, now_ms, job, due_since_ms);
    if (!claimed) {
      return Fail(claimed.error());
    }
    return *claimed == 1;
  });
}

VoidResult SqlHomeStore::FinishJob(std::string_view job, std::string_view holder, bool succeeded,
                                   std::string_view result, std::int64_t now_ms) {
  auto updated = db_->WithSession([&](Session& s) {
    return s.Exec(
        "UPDATE jobs SET lease_until_ms = 0, last_finished_ms = $1, last_result = $2, "
        "last_started_ms = CASE WHEN $3 = 1 THEN last_started_ms ELSE 0 END WHERE name = $4 AND holder = $5",
        now_ms, result, succeeded ? 1 : 0, job, holder);
  });
  if (!updated) {
    return updated.error();
  }
  if (*updated == 0) {
    return make_error_code(Errc::kNotFound);  // the lease was lost (expired and taken by another)
  }
  return {};
}

Result<JobStatus> SqlHomeStore::GetJobStatus(std::string_view job) {
  auto row = db_->WithSession([&](Session& s) {
    return s.QueryRow(
        "SELECT holder, lease_until_ms, last_started_ms, last_finished_ms, last_result FROM jobs WHERE name = $1",
        job);
  });
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return JobStatus{};
  }
  const Row& r = **row;
  return JobStatus{r.Text(0), r.Int(1), r.Int(2), r.Int(3), r.Text(4)};
}

}  // namespace lifeline::store
