#include "home/admin_api.h"

#include "common/clock.h"
#include "common/log.h"
#include "crypto/token.h"
#include "home/ingest_handler.h"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <charconv>

namespace lifeline::home {
namespace json = boost::json;
using protocol::Reject;

namespace {

std::string Time(std::optional<std::int64_t> ms) {
  if (!ms) {
    return "";
  }
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(*ms)));
}

json::object DeviceJson(const protocol::DeviceIdentity& d) {
  return {{"customer", d.customer}, {"site", d.site}, {"serial", d.serial}, {"model", d.model}};
}

json::object TicketJson(const store::Ticket& t) {
  return {{"number", t.number},
          {"state", store::ToString(t.state)},
          {"device", DeviceJson(t.device)},
          {"code", t.code},
          {"severity", protocol::ToString(t.severity)},
          {"text", t.text},
          {"first_seen", Time(t.first_seen_ms)},
          {"last_seen", Time(t.last_seen_ms)},
          {"occurrences", t.occurrences},
          {"resolved_at", Time(t.resolved_at_ms)}};
}

transport::HttpResponse Json(json::value value) {
  transport::HttpResponse response;
  response.body = json::serialize(value);
  return response;
}

transport::HttpResponse StoreFailure(std::error_code ec) {
  log::Get("admin")->error("store failed: {}", ec.message());
  return ErrorResponse(Reject::kInternal, "the store failed; see the home's log");
}

}  // namespace

transport::HttpResponse AdminApi::Handle(const transport::HttpRequest& request) {
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
    log::Get("admin")->warn("refused admin request from {}: unknown token", request.remote);
    return ErrorResponse(Reject::kUnauthorized, "unknown admin token");
  }
  if (request.method != "GET") {
    return ErrorResponse(Reject::kNotFound, "the admin API is read-only for now");
  }
  auto url = boost::urls::parse_origin_form(request.target);
  if (!url) {
    return ErrorResponse(Reject::kMalformedBody, "bad request target");
  }
  const std::string path = url->path();

  if (path == "/v1/tickets") {
    store::TicketFilter filter;
    for (auto param : url->params()) {
      if (param.key == "state") {
        if (param.value == "open") {
          filter.state = store::TicketState::kOpen;
        } else if (param.value == "resolved") {
          filter.state = store::TicketState::kResolved;
        } else if (param.value != "all") {
          return ErrorResponse(Reject::kMalformedBody, "state must be open, resolved or all");
        }
      } else if (param.key == "limit") {
        int limit = 0;
        auto [end, ec] = std::from_chars(param.value.data(), param.value.data() + param.value.size(), limit);
        if (ec != std::errc() || limit < 1 || limit > 10000) {
          return ErrorResponse(Reject::kMalformedBody, "limit must be 1 to 10000");
        }
        filter.limit = limit;
      }
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

  constexpr std::string_view kTicketPrefix = "/v1/tickets/";
  if (path.starts_with(kTicketPrefix)) {
    auto detail = store_.GetTicket(path.substr(kTicketPrefix.size()));
    if (!detail) {
      return StoreFailure(detail.error());
    }
    if (!detail->has_value()) {
      return ErrorResponse(Reject::kNotFound, "no such ticket");
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
      notifications.push_back(json::object{{"kind", n.kind},
                                           {"recipient", n.recipient},
                                           {"status", store::ToString(n.status)},
                                           {"attempts", n.attempts},
                                           {"last_error", n.last_error},
                                           {"sent_at", Time(n.sent_at_ms)}});
    }
    ticket["events"] = std::move(events);
    ticket["notifications"] = std::move(notifications);
    return Json(std::move(ticket));
  }

  if (path == "/v1/devices") {
    auto devices = store_.ListDevices();
    if (!devices) {
      return StoreFailure(devices.error());
    }
    json::array items;
    for (const auto& d : *devices) {
      json::object o = DeviceJson(d.identity);
      o["status"] = store::ToString(d.status);
      o["enrolled_at"] = Time(d.enrolled_at_ms);
      o["last_seen"] = Time(d.last_seen_ms);
      o["last_heartbeat"] = Time(d.last_heartbeat_ms);
      o["heartbeat_interval_s"] = d.last_heartbeat_interval_s;
      items.push_back(std::move(o));
    }
    return Json(json::object{{"devices", std::move(items)}});
  }

  if (path == "/v1/stats") {
    auto stats = store_.Stats();
    if (!stats) {
      return StoreFailure(stats.error());
    }
    return Json(json::object{{"devices", stats->devices},
                             {"alerts", stats->alerts},
                             {"tickets", stats->tickets},
                             {"emails_sent", stats->emails_sent},
                             {"emails_pending", stats->emails_pending}});
  }
  return ErrorResponse(Reject::kNotFound, "no such endpoint: " + path);
}

}  // namespace lifeline::home
