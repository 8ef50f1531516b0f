#include "policy/gateway_api.h"

#include "common/log.h"
#include "crypto/pki.h"
#include "policy/policy_server.h"
#include "policy/policy_sets.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace lifeline::policy {
namespace json = boost::json;
using transport::HttpRequest;
using transport::HttpResponse;

namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("policy"); }

HttpResponse Json(const json::value& value, int status = 200) {
  HttpResponse response;
  response.status = status;
  response.body = json::serialize(value);
  return response;
}

HttpResponse Forbidden() { return Json(json::object{{"error", "forbidden"}}, 403); }

/// The value of `key` in the request target's query ("" when absent), undecoded: the watch's
/// parameters are plain integers.
std::optional<std::string_view> QueryValue(std::string_view target, std::string_view key) {
  const auto question = target.find('?');
  if (question == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
  }
  return std::nullopt;
}

/// A non-negative integer parameter: `fallback` when absent, nullopt when malformed.
std::optional<std::int64_t> IntParam(std::string_view target, std::string_view key, std::int64_t fallback) {
  const auto text = QueryValue(target, key);
  if (!text) {
    return fallback;
  }
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < 0) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> StringField(const json::object& object, std::string_view key) {
  const auto* v = object.if_contains(key);
  if (v == nullptr || v->is_null()) {
    return std::string();
  }
  if (!v->is_string()) {
    return std::nullopt;
  }
  return std::string(v->get_string());
}

}  // namespace

GatewayAuth AuthenticateGateway(const HttpRequest& request, const GatewayAccess& access) {
  if (!request.peer) {
    // Also when the request carries a bearer token: users' tokens never open the gateway API.
    Log()->warn("refused {} {} from {}: no client certificate", request.method, request.target, request.remote);
    return {"", Json(json::object{{"error", "unauthorized"},
                                  {"message", "the gateway API needs the gateway's client certificate"}},
                     401)};
  }
  auto peer = crypto::PeerFromCertificatePem(request.peer->pem);
  if (!peer || peer->kind != crypto::PeerKind::kGateway) {
    Log()->warn("refused {} {} from {}: the client certificate is not a Lifeline gateway's ({})", request.method,
                request.target, request.remote,
                peer ? "a device: " + peer->identity.Key() : std::string("no Lifeline identity"));
    return {"", Forbidden()};
  }
  const protocol::DeviceIdentity& id = peer->identity;
  if (!access.sites.empty()) {
    const std::string site = id.customer + "/" + id.site;
    if (std::find(access.sites.begin(), access.sites.end(), site) == access.sites.end()) {
      Log()->warn("refused {} {} from gateway {} at {}: site {} is not in [gateways] sites", request.method,
                  request.target, id.Key(), request.remote, site);
      return {"", Forbidden()};
    }
  }
  return {id.Key(), std::nullopt};
}

GatewayApi::GatewayApi(PolicySets& sets, AuditLog& audit, ChangeFeed& feed, GatewayAccess access)
    : sets_(sets), audit_(audit), feed_(feed), access_(std::move(access)) {}

void GatewayApi::Register(PolicyServer& server) {
  server.RoutePublic("GET", "/v1/gateway/watch", [this](const HttpRequest& r) { return Watch(r); });
  server.RoutePublic("POST", "/v1/gateway/audit", [this](const HttpRequest& r) { return Audit(r); });
}

void GatewayApi::SetDecisionSource(DecisionSource source) {
  std::lock_guard lock(source_mutex_);
  source_ = std::move(source);
}

std::vector<DecisionEvent> GatewayApi::Decisions(const std::string& gateway, std::int64_t cursor) {
  DecisionSource source;
  {
    std::lock_guard lock(source_mutex_);
    source = source_;
  }
  return source ? source(gateway, cursor, kMaxWatchDecisions) : std::vector<DecisionEvent>{};
}

HttpResponse GatewayApi::Watch(const HttpRequest& request) {
  auto auth = AuthenticateGateway(request, access_);
  if (!auth) {
    return *auth.refusal;
  }
  const auto known_version = IntParam(request.target, "policy_version", 0);
  const auto cursor = IntParam(request.target, "cursor", 0);
  const auto wait_s = IntParam(request.target, "wait_s", kDefaultWatchWaitSeconds);
  if (!known_version || !cursor || !wait_s || *wait_s > kMaxWatchWaitSeconds) {
    return JsonError(400, "bad_request",
                     fmt::format("policy_version and cursor are integers >= 0, wait_s from 0 to {}",
                                 kMaxWatchWaitSeconds));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(*wait_s);
  std::shared_ptr<const StoredPolicy> policy;
  std::vector<DecisionEvent> decisions;
  // Bounded by the deadline: each pass either answers or waits until a change or the deadline.
  for (;;) {
    // The generation is read before the state, so a change committed after the check wakes the wait.
    const std::uint64_t seen = feed_.Generation();
    policy = sets_.Current();
    decisions = Decisions(auth.gateway, *cursor);
    if (policy->info.version > *known_version || !decisions.empty()) {
      break;
    }
    if (!feed_.Wait(seen, deadline)) {
      // The deadline, or the service stopping: answer with what there is now.
      policy = sets_.Current();
      decisions = Decisions(auth.gateway, *cursor);
      break;
    }
  }
  std::int64_t next_cursor = *cursor;
  json::array events;
  for (const auto& d : decisions) {
    next_cursor = std::max(next_cursor, d.seq);
    events.push_back(json::object{{"request_id", d.request_id},
                                  {"state", d.state},
                                  {"decided_by", d.decided_by},
                                  {"comment", d.comment},
                                  {"decided_ms", d.decided_ms},
                                  {"seq", d.seq}});
  }
  json::object answer{{"policy_version", policy->info.version}};
  if (policy->info.version > *known_version) {
    boost::system::error_code ec;
    answer["policy"] = json::parse(policy->json, ec);
  }
  answer["decisions"] = std::move(events);
  answer["cursor"] = next_cursor;
  return Json(answer);
}

HttpResponse GatewayApi::Audit(const HttpRequest& request) {
  auto auth = AuthenticateGateway(request, access_);
  if (!auth) {
    return *auth.refusal;
  }
  boost::system::error_code ec;
  const json::value body = json::parse(request.body, ec);
  const json::object* object = !ec ? body.if_object() : nullptr;
  const json::value* list = object != nullptr ? object->if_contains("records") : nullptr;
  if (list == nullptr || !list->is_array()) {
    return JsonError(400, "bad_request", "send {\"records\": [...]}");
  }
  const json::array& items = list->get_array();
  if (items.size() > kMaxGatewayAuditRecords) {
    return JsonError(400, "bad_request",
                     fmt::format("at most {} records per request (got {})", kMaxGatewayAuditRecords, items.size()));
  }
  std::vector<AuditRecord> records;
  records.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto bad = [&](std::string_view what) {
      return JsonError(400, "bad_request", fmt::format("records[{}]: {}", i, what));
    };
    const json::object* item = items[i].if_object();
    if (item == nullptr) {
      return bad("must be an object");
    }
    AuditRecord record;
    record.source = auth.gateway;
    auto id = StringField(*item, "record_id");
    auto kind = StringField(*item, "kind");
    auto actor = StringField(*item, "actor");
    auto subject = StringField(*item, "subject");
    if (!id || id->empty()) {
      return bad("record_id must be a non-empty string (delivery is idempotent by it)");
    }
    if (!kind || kind->empty()) {
      return bad("kind must be a non-empty string");
    }
    if (!actor || !subject) {
      return bad("actor and subject must be strings when present");
    }
    const json::value* time = item->if_contains("time_ms");
    if (time == nullptr || !time->is_int64() || time->get_int64() <= 0) {
      return bad("time_ms must be a positive integer (Unix ms when it happened)");
    }
    const json::value* details = item->if_contains("details");
    if (details != nullptr && !details->is_null() && !details->is_object()) {
      return bad("details must be an object");
    }
    record.record_id = std::move(*id);
    record.kind = std::move(*kind);
    record.actor = std::move(*actor);
    record.subject = std::move(*subject);
    record.time_ms = time->get_int64();
    record.details = details != nullptr && details->is_object() ? json::serialize(*details) : "{}";
    records.push_back(std::move(record));
  }
  auto appended = audit_.AppendMany(std::move(records));
  if (!appended) {
    if (appended.error() == AuditErrc::kBadRecord) {
      return JsonError(400, "bad_request",
                       "a record was refused: kind must be a-z, 0-9 and _ (at most 32); fields at most 1024 bytes of "
                       "UTF-8 without control characters, details at most 64 KiB");
    }
    Log()->error("cannot append {}'s audit records: {}", auth.gateway, appended.error().message());
    return JsonError(500, "internal", "cannot append to the audit log; see the policy manager's log");
  }
  std::int64_t duplicates = 0;
  for (const auto& a : *appended) {
    duplicates += a.duplicate ? 1 : 0;
  }
  const auto added = static_cast<std::int64_t>(appended->size()) - duplicates;
  return Json(json::object{{"appended", added}, {"duplicates", duplicates}});
}

}  // namespace lifeline::policy
