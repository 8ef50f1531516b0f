#include "home/admin_api.h"

#include "common/config.h"
#include "common/log.h"
#include "crypto/token.h"
#include "home/ingest_handler.h"
#include "home/notify/escalation.h"
#include "home/notify/oncall.h"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>

namespace lifeline::home {
namespace json = boost::json;
using protocol::Reject;
using transport::HttpRequest;
using transport::HttpResponse;

namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("admin"); }

std::string Time(std::optional<std::int64_t> ms) {
  if (!ms) {
    return "";
  }
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms)));
}

HttpResponse Json(json::value value, int status = 200) {
  HttpResponse response;
  response.status = status;
  response.body = json::serialize(value);
  return response;
}

/// Errors the protocol's table has no row for (403, 409) use the same body shape.
HttpResponse Error(int status, std::string_view name, std::string_view message) {
  return Json(json::object{{"error", name}, {"message", message}}, status);
}
HttpResponse BadRequest(std::string_view message) { return ErrorResponse(Reject::kMalformedBody, message); }
HttpResponse NotFound(std::string_view message) { return ErrorResponse(Reject::kNotFound, message); }

HttpResponse StoreFailure(std::error_code ec) {
  Log()->error("store failed: {}", ec.message());
  return ErrorResponse(Reject::kInternal, "the store failed; see the home's log");
}

json::object DeviceJson(const protocol::DeviceIdentity& d) {
  return {{"customer", d.customer}, {"site", d.site}, {"serial", d.serial}, {"model", d.model}};
}

json::object TicketJson(const store::Ticket& t) {
  return {{"number", t.number},
          {"state", store::ToString(t.state)},
          {"status", store::ToString(t.status)},
          {"kind", t.kind},
          {"device", DeviceJson(t.device)},
          {"code", t.code},
          {"dedup_key", t.dedup_key},
          {"severity", protocol::ToString(t.severity)},
          {"text", t.text},
          {"first_seen", Time(t.first_seen_ms)},
          {"last_seen", Time(t.last_seen_ms)},
          {"occurrences", t.occurrences},
          {"episode_started", Time(t.episode_started_ms)},
          {"acknowledged_at", Time(t.acknowledged_at_ms)},
          {"acknowledged_by", t.acknowledged_by},
          {"resolved_at", Time(t.resolved_at_ms)},
          {"resolved_by", t.resolved_by},
          {"closed_at", Time(t.closed_at_ms)},
          {"assignee", t.assignee},
          {"suppressed", t.suppressed}};
}

json::object NotificationJson(const store::Notification& n) {
  return {{"id", n.id},
          {"ticket", n.ticket_number},
          {"kind", n.kind},
          {"recipient", n.recipient},
          {"subject", n.subject},
          {"status", store::ToString(n.status)},
          {"attempts", n.attempts},
          {"last_error", n.last_error},
          {"created_at", Time(n.created_at_ms)},
          {"next_attempt", n.status == store::NotificationStatus::kPending ? Time(n.next_attempt_ms) : ""},
          {"sent_at", Time(n.sent_at_ms)}};
}

json::object WindowJson(const store::MaintenanceWindow& w, std::int64_t now_ms) {
  return {{"id", w.id},
          {"customer", w.customer},
          {"site", w.site},
          {"serial", w.serial},
          {"scope", w.serial.empty() ? "site" : "device"},
          {"start", Time(w.starts_at_ms)},
          {"end", Time(w.ends_at_ms)},
          {"active", w.starts_at_ms <= now_ms && now_ms < w.ends_at_ms},
          {"reason", w.reason},
          {"created_by", w.created_by},
          {"created_at", Time(w.created_at_ms)},
          {"automatic", w.automatic},
          {"ended_at", Time(w.ended_at_ms)},
          {"ended_by", w.ended_by}};
}

/// When the device's next heartbeat is due, grace included (docs/architecture.md, "Missing
/// heartbeats": interval 0 means 6 h; grace 10 %, at least 300 s, at most 1 h).
std::int64_t HeartbeatDeadline(std::int64_t last_ms, std::int64_t interval_s) {
  const std::int64_t interval = std::clamp<std::int64_t>(interval_s == 0 ? 6 * 3600 : interval_s, 1, 14 * 86400);
  const std::int64_t grace = std::clamp<std::int64_t>(interval / 10, 300, 3600);
  return last_ms + (interval + grace) * 1000;
}

json::object DeviceRecordJson(const store::DeviceRecord& d) {
  json::object o = DeviceJson(d.identity);
  o["status"] = store::ToString(d.status);
  o["enrolled_at"] = Time(d.enrolled_at_ms);
  o["certificate_expires"] = Time(d.cert_not_after_ms);
  o["last_seen"] = Time(d.last_seen_ms);
  o["last_heartbeat"] = Time(d.last_heartbeat_ms);
  o["heartbeat_interval_s"] = d.last_heartbeat_interval_s;
  o["last_sequence"] = d.last_sequence;
  return o;
}

std::optional<int> ParseInt(std::string_view text, int min, int max) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

/// "2026-11-21T10:00:00Z", "2026-11-21T11:00+01:00" (no zone: UTC) -> Unix ms.
std::optional<std::int64_t> ParseTime(std::string_view text) {
  auto t = notify::ParseDateTime(text, std::chrono::minutes(0));
  if (!t) {
    return std::nullopt;
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
}

std::string Field(const json::object& body, std::string_view key) {
  const auto* v = body.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

// ---- Roles --------------------------------------------------------------------------------------

std::string_view ToString(Permission permission) {
  switch (permission) {
    case Permission::kRead:
      return "read";
    case Permission::kTickets:
      return "change tickets";
    case Permission::kMaintenance:
      return "manage maintenance windows";
    case Permission::kEscalation:
      return "read escalation and on-call state";
    case Permission::kDevices:
      return "revoke devices";
    case Permission::kConnect:
      return "open remote sessions";
  }
  return "read";
}

bool Allowed(std::string_view role, Permission permission) {
  if (role == "admin") {
    return true;
  }
  if (role == "engineer") {
    return permission == Permission::kRead || permission == Permission::kTickets ||
           permission == Permission::kMaintenance || permission == Permission::kConnect;
  }
  if (role == "manager") {
    return permission == Permission::kRead || permission == Permission::kMaintenance ||
           permission == Permission::kEscalation;
  }
  if (role == "read-only") {
    return permission == Permission::kRead;
  }
  return false;
}

const std::vector<std::string>& KnownRoles() {
  static const std::vector<std::string> roles = {"admin", "engineer", "manager", "read-only"};
  return roles;
}

// ---- Requests -----------------------------------------------------------------------------------

struct AdminApi::Caller {
  std::string name;
  std::string role;
  std::string token_hash;
};

AdminApi::AdminApi(store::HomeStore& store, const Clock& clock, AdminOptions options)
    : store_(store), clock_(clock), options_(std::move(options)) {}

AdminApi::AdminApi(store::HomeStore& store) : AdminApi(store, SystemClock::Instance()) {}

HttpResponse AdminApi::Handle(const HttpRequest& request) {
  auto auth = request.headers.find("authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth == request.headers.end() || !auth->second.starts_with(kBearer)) {
    return ErrorResponse(Reject::kUnauthorized, "send 'Authorization: Bearer <admin token>'");
  }
  auto token = store_.FindAdminToken(crypto::HashToken(auth->second.substr(kBearer.size())));
  if (!token) {
    return StoreFailure(token.error());
  }
  if (!token->has_value()) {
    Log()->warn("refused admin request from {}: unknown token", request.remote);
    return ErrorResponse(Reject::kUnauthorized, "unknown admin token");
  }
  return Route(Caller{(*token)->name, (*token)->role, crypto::HashToken(auth->second.substr(kBearer.size()))},
               request);
}

HttpResponse AdminApi::Route(const Caller& caller, const HttpRequest& request) {
  auto url = boost::urls::parse_origin_form(request.target);
  if (!url) {
    return BadRequest("bad request target");
  }
  std::vector<std::string> seg;
  for (auto s : url->segments()) {
    seg.push_back(std::string(s));
  }
  std::map<std::string, std::string, std::less<>> query;
  for (auto param : url->params()) {
    query[std::string(param.key)] = std::string(param.value);
  }
  auto q = [&query](std::string_view key) {
    auto it = query.find(key);
    return it == query.end() ? std::string() : it->second;
  };
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  const std::int64_t now_ms = clock_.NowUnixMillis();

  // What this request needs, decided before anything is read or changed.
  auto forbidden = [&](Permission needed) -> std::optional<HttpResponse> {
    if (Allowed(caller.role, needed)) {
      return std::nullopt;
    }
    std::vector<std::string> roles;
    for (const auto& role : KnownRoles()) {
      if (Allowed(role, needed)) {
        roles.push_back(role);
      }
    }
    Log()->warn("refused {} {} from '{}' (role {}): may not {}", request.method, url->path(), caller.name,
                caller.role, ToString(needed));
    return Error(403, "forbidden",
                 fmt::format("role '{}' may not {} (roles that may: {})", caller.role, ToString(needed),
                             fmt::join(roles, ", ")));
  };
  json::object body;
  if (post && !request.body.empty()) {
    boost::system::error_code ec;
    auto parsed = json::parse(request.body, ec);
    if (ec || !parsed.is_object()) {
      return BadRequest("the body must be a JSON object");
    }
    body = std::move(parsed.get_object());
  }
  auto after_change = [this](const store::Ticket& ticket) {
    if (options_.on_notified) {
      options_.on_notified();
    }
    return Json(TicketJson(ticket));
  };

  if (seg.size() < 2 || seg[0] != "v1") {
    return NotFound("no such endpoint: " + std::string(url->path()));
  }
  const std::string& what = seg[1];

  // Remote access (home/remote_access.h): reading gateways needs kRead, sessions kConnect.
  if (what == "sessions" || what == "gateways") {
    if (auto refused = forbidden(what == "gateways" ? Permission::kRead : Permission::kConnect)) {
      return *refused;
    }
    if (!options_.remote_access) {
      return HttpResponse{503, "application/json",
                          R"({"error":"unavailable","message":"remote access is switched off at this home"})", {}};
    }
    return options_.remote_access(caller.name, caller.token_hash, request);
  }

  // ---- Tickets
  if (what == "tickets" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kRead)) {
      return *refused;
    }
    store::TicketFilter filter;
    const std::string state = q("state");
    if (state == "open") {
      filter.state = store::TicketState::kOpen;
    } else if (state == "resolved") {
      filter.state = store::TicketState::kResolved;
    } else if (!state.empty() && state != "all") {
      return BadRequest("state must be open, resolved or all");
    }
    std::string_view statuses = query.contains("status") ? std::string_view(query.find("status")->second) : "";
    while (!statuses.empty()) {
      const auto comma = statuses.find(',');
      const auto name = statuses.substr(0, comma);
      auto status = store::ParseTicketStatus(name);
      if (!status) {
        return BadRequest("status must be new, acknowledged, reopened, resolved or closed (comma-separated)");
      }
      filter.statuses.push_back(*status);
      statuses = comma == std::string_view::npos ? "" : statuses.substr(comma + 1);
    }
    filter.customer = q("customer");
    filter.site = q("site");
    filter.serial = q("serial");
    if (!filter.serial.empty() && (filter.customer.empty() || filter.site.empty())) {
      return BadRequest("serial needs customer and site");
    }
    filter.code = q("code");
    filter.assignee = q("assignee");
    if (query.contains("limit")) {
      auto limit = ParseInt(q("limit"), 1, 10000);
      if (!limit) {
        return BadRequest("limit must be 1 to 10000");
      }
      filter.limit = *limit;
    }
    auto tickets = store_.ListTickets(filter);
    if (!tickets) {
      return StoreFailure(tickets.error());
    }
    json::array items;
    for (const auto& t : *tickets) {
      items.push_back(TicketJson(t));
    }
    return Json(json::object{{"tickets", std::move(items)}});
  }

  if (what == "tickets" && seg.size() == 3 && get) {
    if (auto refused = forbidden(Permission::kRead)) {
      return *refused;
    }
    auto detail = store_.GetTicket(seg[2]);
    if (!detail) {
      return StoreFailure(detail.error());
    }
    if (!detail->has_value()) {
      return NotFound("no such ticket");
    }
    json::object ticket = TicketJson((*detail)->ticket);
    json::array events;
    for (const auto& e : (*detail)->events) {
      events.push_back(json::object{{"message_id", e.message_id},
                                    {"type", protocol::ToString(e.type)},
                                    {"code", e.code},
                                    {"text", e.text},
                                    {"sequence", e.sequence},
                                    {"device_time", Time(e.device_time_ms)},
                                    {"received_at", Time(e.received_at_ms)}});
    }
    json::array notifications;
    for (const auto& n : (*detail)->notifications) {
      notifications.push_back(NotificationJson(n));
    }
    json::array notes;
    for (const auto& n : (*detail)->notes) {
      notes.push_back(json::object{{"at", Time(n.at_ms)}, {"author", n.author}, {"text", n.text}});
    }
    json::array history;
    for (const auto& h : (*detail)->history) {
      history.push_back(json::object{{"at", Time(h.at_ms)},
                                     {"actor", h.actor},
                                     {"action", h.action},
                                     {"from", h.from_status},
                                     {"to", h.to_status},
                                     {"detail", h.detail}});
    }
    json::array escalation;
    for (const auto& [level, at] : (*detail)->escalation_sent_ms) {
      escalation.push_back(json::object{{"level", level},
                                        {"last_sent", Time(at)},
                                        {"this_episode", at >= (*detail)->ticket.episode_started_ms}});
    }
    ticket["events"] = std::move(events);
    ticket["notifications"] = std::move(notifications);
    ticket["notes"] = std::move(notes);
    ticket["history"] = std::move(history);
    ticket["escalation"] = std::move(escalation);
    return Json(std::move(ticket));
  }

  if (what == "tickets" && seg.size() == 4 && post) {
    static const std::map<std::string, store::TicketAction, std::less<>> kActions = {
        {"acknowledge", store::TicketAction::kAcknowledge}, {"resolve", store::TicketAction::kResolve},
        {"close", store::TicketAction::kClose},             {"reopen", store::TicketAction::kReopen},
        {"notes", store::TicketAction::kNote},              {"assign", store::TicketAction::kAssign}};
    auto action = kActions.find(seg[3]);
    if (action == kActions.end()) {
      return NotFound("no such ticket action: " + seg[3]);
    }
    if (auto refused = forbidden(Permission::kTickets)) {
      return *refused;
    }
    std::string text = Field(body, "note");
    if (action->second == store::TicketAction::kNote) {
      text = Field(body, "text");
      if (text.empty()) {
        return BadRequest("a note needs {\"text\": \"...\"}");
      }
    } else if (action->second == store::TicketAction::kAssign) {
      if (!body.contains("engineer")) {
        return BadRequest("assign needs {\"engineer\": \"name\"} (\"\" unassigns)");
      }
      text = Field(body, "engineer");
    }
    if (text.size() > 16 * 1024) {
      return BadRequest("text is limited to 16 KiB");
    }
    auto changed = store_.ChangeTicket({.number = seg[2],
                                        .action = action->second,
                                        .actor = caller.name,
                                        .text = text,
                                        .now_ms = now_ms,
                                        .planner = options_.planner});
    if (!changed) {
      if (changed.error() == store::Errc::kNotFound) {
        return NotFound("no such ticket");
      }
      if (changed.error() == store::Errc::kConflict) {
        std::string status = "?";
        bool open = false;
        if (auto current = store_.GetTicket(seg[2]); current && current->has_value()) {
          status = std::string(store::ToString((*current)->ticket.status));
          open = store::IsOpen((*current)->ticket.status);
        }
        std::string why = fmt::format("cannot {} ticket {}: it is {}", store::ToString(action->second), seg[2], status);
        if (action->second == store::TicketAction::kReopen && !open) {
          why += ", and another ticket is open for its deduplication key";
        }
        return Error(409, "conflict", why);
      }
      if (changed.error() == store::Errc::kInvalidArgument) {
        return BadRequest(changed.error().message());
      }
      return StoreFailure(changed.error());
    }
    Log()->info("ticket {}: {} by '{}'", seg[2], store::ToString(action->second), caller.name);
    return after_change(*changed);
  }

  // ---- Devices and heartbeats
  if (what == "devices" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kRead)) {
      return *refused;
    }
    auto devices = store_.ListDevices();
    if (!devices) {
      return StoreFailure(devices.error());
    }
    json::array items;
    for (const auto& d : *devices) {
      items.push_back(DeviceRecordJson(d));
    }
    return Json(json::object{{"devices", std::move(items)}});
  }

  if (what == "devices" && (seg.size() == 5 || seg.size() == 6)) {
    const protocol::DeviceIdentity id{seg[2], seg[3], seg[4], ""};
    const bool revoke = seg.size() == 6 && seg[5] == "revoke" && post;
    if (!(seg.size() == 5 && get) && !revoke) {
      return NotFound("no such endpoint: " + std::string(url->path()));
    }
    if (auto refused = forbidden(revoke ? Permission::kDevices : Permission::kRead)) {
      return *refused;
    }
    auto device = store_.FindDevice(id.customer, id.site, id.serial);
    if (!device) {
      return StoreFailure(device.error());
    }
    if (!device->has_value()) {
      return NotFound("no such device: " + id.Key());
    }
    if (revoke) {
      if (auto revoked = store_.RevokeDevice(id.customer, id.site, id.serial); !revoked) {
        return StoreFailure(revoked.error());
      }
      Log()->warn("device {} revoked by '{}'", id.Key(), caller.name);
      if (options_.on_device_revoked) {
        options_.on_device_revoked(id);
      }
      (*device)->status = store::DeviceStatus::kRevoked;
      return Json(DeviceRecordJson(**device));
    }
    json::object o = DeviceRecordJson(**device);
    o["heartbeat_due"] =
        (*device)->last_heartbeat_ms
            ? Time(HeartbeatDeadline(*(*device)->last_heartbeat_ms, (*device)->last_heartbeat_interval_s))
            : "";
    auto tickets = store_.ListTickets(
        {.state = store::TicketState::kOpen, .customer = id.customer, .site = id.site, .serial = id.serial});
    auto windows = store_.ListMaintenanceWindows(
        {.current_at_ms = now_ms, .customer = id.customer, .site = id.site, .serial = id.serial});
    auto inventory = store_.LatestInventory(id);
    if (!tickets || !windows || !inventory) {
      return StoreFailure(!tickets ? tickets.error() : !windows ? windows.error() : inventory.error());
    }
    json::array open;
    for (const auto& t : *tickets) {
      open.push_back(TicketJson(t));
    }
    json::array maintenance;
    for (const auto& w : *windows) {
      maintenance.push_back(WindowJson(w, now_ms));
    }
    o["open_tickets"] = std::move(open);
    o["maintenance"] = std::move(maintenance);
    o["inventory_at"] = inventory->empty() ? "" : Time(inventory->front().received_at_ms);
    return Json(std::move(o));
  }

  if (what == "heartbeats" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kRead)) {
      return *refused;
    }
    auto devices = store_.ListDevices();
    if (!devices) {
      return StoreFailure(devices.error());
    }
    json::array items;
    for (const auto& d : *devices) {
      json::object o{{"customer", d.identity.customer},
                     {"site", d.identity.site},
                     {"serial", d.identity.serial},
                     {"status", store::ToString(d.status)},
                     {"last_heartbeat", Time(d.last_heartbeat_ms)},
                     {"interval_s", d.last_heartbeat_interval_s},
                     {"last_seen", Time(d.last_seen_ms)}};
      if (d.last_heartbeat_ms) {
        const std::int64_t due = HeartbeatDeadline(*d.last_heartbeat_ms, d.last_heartbeat_interval_s);
        o["due"] = Time(due);
        o["overdue"] = d.status == store::DeviceStatus::kActive && now_ms > due;
      } else {
        o["due"] = "";
        o["overdue"] = false;
      }
      items.push_back(std::move(o));
    }
    return Json(json::object{{"devices", std::move(items)}});
  }

  if (what == "inventory" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kRead)) {
      return *refused;
    }
    std::optional<protocol::DeviceIdentity> device;
    if (!q("serial").empty()) {
      device = protocol::DeviceIdentity{q("customer"), q("site"), q("serial"), ""};
    }
    auto records = store_.LatestInventory(device);
    if (!records) {
      return StoreFailure(records.error());
    }
    json::array items;
    for (const auto& r : *records) {
      boost::system::error_code ec;
      json::value payload = json::parse(r.payload_json, ec);
      if (ec) {
        payload = r.payload_json;  // stored as sent; show it as text rather than fail the listing
      }
      items.push_back(json::object{{"device", DeviceJson(r.device)},
                                   {"message_id", r.message_id},
                                   {"device_time", Time(r.device_time_ms)},
                                   {"received_at", Time(r.received_at_ms)},
                                   {"inventory", std::move(payload)}});
    }
    return Json(json::object{{"inventory", std::move(items)}});
  }

  // ---- Notifications
  if (what == "notifications" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kRead)) {
      return *refused;
    }
    store::NotificationFilter filter;
    const std::string status = q("status");
    for (auto s : {store::NotificationStatus::kPending, store::NotificationStatus::kSent,
                   store::NotificationStatus::kFailed}) {
      if (status == store::ToString(s)) {
        filter.status = s;
      }
    }
    if (!status.empty() && !filter.status) {
      return BadRequest("status must be pending, sent or failed");
    }
    filter.kind = q("kind");
    filter.ticket_number = q("ticket");
    if (query.contains("limit")) {
      auto limit = ParseInt(q("limit"), 1, 10000);
      if (!limit) {
        return BadRequest("limit must be 1 to 10000");
      }
      filter.limit = *limit;
    }
    auto rows = store_.ListNotifications(filter);
    if (!rows) {
      return StoreFailure(rows.error());
    }
    json::array items;
    for (const auto& n : *rows) {
      items.push_back(NotificationJson(n));
    }
    return Json(json::object{{"notifications", std::move(items)}});
  }

  // ---- Maintenance windows
  if (what == "maintenance" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kRead)) {
      return *refused;
    }
    store::MaintenanceFilter filter{.customer = q("customer"), .site = q("site"), .serial = q("serial")};
    if (q("all") != "1" && q("all") != "true") {
      filter.current_at_ms = now_ms;
    }
    auto windows = store_.ListMaintenanceWindows(filter);
    if (!windows) {
      return StoreFailure(windows.error());
    }
    json::array items;
    for (const auto& w : *windows) {
      items.push_back(WindowJson(w, now_ms));
    }
    return Json(json::object{{"windows", std::move(items)}});
  }

  if (what == "maintenance" && seg.size() == 2 && post) {
    if (auto refused = forbidden(Permission::kMaintenance)) {
      return *refused;
    }
    store::MaintenanceWindow w{.customer = Field(body, "customer"),
                               .site = Field(body, "site"),
                               .serial = Field(body, "serial"),
                               .reason = Field(body, "reason"),
                               .created_by = caller.name};
    if (w.customer.empty() || w.site.empty()) {
      return BadRequest("a window needs customer and site (and serial for one device)");
    }
    w.starts_at_ms = now_ms;
    if (const std::string start = Field(body, "start"); !start.empty()) {
      auto t = ParseTime(start);
      if (!t) {
        return BadRequest("start must be a time like 2026-11-21T10:00:00Z");
      }
      w.starts_at_ms = *t;
    }
    const std::string end = Field(body, "end");
    const std::string duration = Field(body, "duration");
    if (end.empty() == duration.empty()) {
      return BadRequest("give either end (a time) or duration (like \"2h\")");
    }
    if (!end.empty()) {
      auto t = ParseTime(end);
      if (!t) {
        return BadRequest("end must be a time like 2026-11-21T12:00:00Z");
      }
      w.ends_at_ms = *t;
    } else {
      std::chrono::seconds length{0};
      if (!config::ParseDuration(duration, &length) || length.count() <= 0) {
        return BadRequest("duration must be like \"90m\", \"2h\" or \"1d\"");
      }
      w.ends_at_ms = w.starts_at_ms + length.count() * 1000;
    }
    if (w.ends_at_ms <= w.starts_at_ms || w.ends_at_ms <= now_ms) {
      return BadRequest("the window must end after it starts, and in the future");
    }
    auto added = store_.AddMaintenanceWindow(w, now_ms);
    if (!added) {
      if (added.error() == store::Errc::kDeviceUnknown) {
        return NotFound(fmt::format("no such device: {}/{}/{}", w.customer, w.site, w.serial));
      }
      if (added.error() == store::Errc::kInvalidArgument) {
        return BadRequest("the window must end after it starts");
      }
      return StoreFailure(added.error());
    }
    Log()->info("maintenance window {} for {}/{}{} from {} to {} declared by '{}': {}", added->id, w.customer, w.site,
                w.serial.empty() ? "" : "/" + w.serial, Time(w.starts_at_ms), Time(w.ends_at_ms), caller.name,
                w.reason);
    return Json(WindowJson(*added, now_ms), 201);
  }

  if (what == "maintenance" && seg.size() == 4 && seg[3] == "end" && post) {
    if (auto refused = forbidden(Permission::kMaintenance)) {
      return *refused;
    }
    std::int64_t id = 0;
    auto [end, ec] = std::from_chars(seg[2].data(), seg[2].data() + seg[2].size(), id);
    if (ec != std::errc() || end != seg[2].data() + seg[2].size()) {
      return NotFound("no such maintenance window");
    }
    auto ended = store_.EndMaintenanceWindow(id, caller.name, now_ms);
    if (!ended) {
      if (ended.error() == store::Errc::kNotFound) {
        return NotFound("no such maintenance window");
      }
      if (ended.error() == store::Errc::kConflict) {
        return Error(409, "conflict", fmt::format("maintenance window {} is already over", id));
      }
      return StoreFailure(ended.error());
    }
    Log()->info("maintenance window {} ended by '{}'", id, caller.name);
    return Json(WindowJson(*ended, now_ms));
  }

  // ---- Escalation and on-call (managers)
  if (what == "escalations" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kEscalation)) {
      return *refused;
    }
    json::array items;
    std::int64_t after = 0;
    for (int page = 0; page < 20; ++page) {
      auto candidates = store_.ListEscalationCandidates(now_ms, after, 500);
      if (!candidates) {
        return StoreFailure(candidates.error());
      }
      for (const auto& c : *candidates) {
        after = c.ticket.id;
        int level = 0;
        for (const auto& [l, at] : c.last_sent_ms) {
          if (at >= c.ticket.episode_started_ms) {
            level = std::max(level, l);
          }
        }
        json::object o = TicketJson(c.ticket);
        o["level"] = level;
        std::string next;
        bool due_now = false;
        if (options_.plan != nullptr) {
          // As the escalation job sees it: level 0 went out when the episode began.
          notify::TicketProgress progress{.opened_ms = c.ticket.episode_started_ms, .last_sent_ms = c.last_sent_ms};
          auto& zero = progress.last_sent_ms[0];
          zero = std::max(zero, c.ticket.episode_started_ms);
          due_now = !notify::DueEscalations(options_.plan->escalation(), progress, now_ms).empty();
          if (auto at = notify::NextEscalationCheck(options_.plan->escalation(), progress, now_ms)) {
            next = Time(*at);
          }
        }
        o["due_now"] = due_now;
        o["next_escalation"] = next;
        items.push_back(std::move(o));
      }
      if (candidates->size() < 500) {
        break;
      }
    }
    return Json(json::object{{"tickets", std::move(items)}});
  }

  if (what == "oncall" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kEscalation)) {
      return *refused;
    }
    json::array groups;
    const auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(now_ms));
    for (const auto& name : options_.groups) {
      json::object o{{"group", name}};
      const notify::ContactGroup* group = options_.plan ? options_.plan->FindGroup(name) : nullptr;
      const notify::Rotation* rotation =
          group && !group->rotation.empty() ? options_.plan->FindRotation(group->rotation) : nullptr;
      o["rotation"] = group ? group->rotation : "";
      o["on_call"] = rotation ? rotation->OnCallAt(now) : "";
      o["next_handover"] =
          rotation ? Time(std::chrono::duration_cast<std::chrono::milliseconds>(
                              rotation->NextHandover(now).time_since_epoch())
                              .count())
                   : "";
      json::array members;
      for (const auto& m : group ? group->members : std::vector<std::string>{}) {
        members.push_back(json::string(m));
      }
      o["members"] = std::move(members);
      groups.push_back(std::move(o));
    }
    return Json(json::object{{"groups", std::move(groups)}, {"time", Time(now_ms)}});
  }

  // ---- Totals and the caller
  if (what == "stats" && seg.size() == 2 && get) {
    if (auto refused = forbidden(Permission::kRead)) {
      return *refused;
    }
    auto stats = store_.Stats();
    if (!stats) {
      return StoreFailure(stats.error());
    }
    json::object sent_by_kind;
    for (const auto& [kind, count] : stats->sent_by_kind) {
      sent_by_kind[kind] = count;
    }
    return Json(json::object{{"devices", stats->devices},
                             {"alerts", stats->alerts},
                             {"tickets", stats->tickets},
                             {"open_tickets", stats->open_tickets},
                             {"emails_sent", stats->emails_sent},
                             {"emails_pending", stats->emails_pending},
                             {"notifications_sent", stats->notifications_sent},
                             {"notifications_pending", stats->notifications_pending},
                             {"notifications_failed", stats->notifications_failed},
                             {"sent_by_kind", std::move(sent_by_kind)}});
  }

  if (what == "whoami" && seg.size() == 2 && get) {
    json::array allowed;
    for (auto p : {Permission::kRead, Permission::kTickets, Permission::kMaintenance, Permission::kEscalation,
                   Permission::kDevices, Permission::kConnect}) {
      if (Allowed(caller.role, p)) {
        allowed.push_back(json::string(ToString(p)));
      }
    }
    return Json(json::object{{"name", caller.name}, {"role", caller.role}, {"may", std::move(allowed)}});
  }
  return NotFound(fmt::format("no such endpoint: {} {}", request.method, std::string(url->path())));
}

}  // namespace lifeline::home
