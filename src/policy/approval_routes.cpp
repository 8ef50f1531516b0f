// The HTTP side of the approvals (approvals.h): /v1/requests for users' tokens and
// POST /v1/gateway/requests for gateways' certificates.
#include "policy/approvals.h"

#include "common/log.h"
#include "policy/policy_server.h"

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

constexpr std::string_view kPrefix = "/v1/requests";
constexpr std::size_t kDefaultListLimit = 500;
constexpr std::size_t kMaxListLimit = 10000;
constexpr std::size_t kMaxCommentBytes = 1000;

HttpResponse JsonText(std::string body, int status = 200) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

HttpResponse StoreFailed() { return JsonError(500, "internal", "the store failed; see the policy manager's log"); }

/// The query's parameters, split but not decoded: the values these routes take are plain words and
/// numbers, so anything encoded is refused as malformed by the caller's checks.
std::vector<std::pair<std::string_view, std::string_view>> QueryParams(std::string_view target) {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  const auto question = target.find('?');
  if (question == std::string_view::npos) {
    return out;
  }
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    out.emplace_back(pair.substr(0, eq), eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
  }
  return out;
}

/// "/v1/requests/ID[/ACTION]" -> {ID, ACTION}; the path part only.
std::pair<std::string_view, std::string_view> SplitRequestPath(std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  path.remove_prefix(std::min(path.size(), kPrefix.size()));
  if (path.starts_with('/')) {
    path.remove_prefix(1);
  }
  const auto slash = path.find('/');
  if (slash == std::string_view::npos) {
    return {path, {}};
  }
  return {path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

void Approvals::Register(PolicyServer& server, const GatewayAccess& access) {
  server.Route("GET", std::string(kPrefix), Role::kAuditor,
               [this](const HttpRequest& request, const Caller&) { return HandleGet(request); });
  server.Route("POST", std::string(kPrefix), Role::kApprover,
               [this](const HttpRequest& request, const Caller& caller) { return HandleDecide(request, caller.name); });
  server.RoutePublic("POST", "/v1/gateway/requests",
                     [this, &access](const HttpRequest& request) { return HandleGatewayPost(request, access); });
}

HttpResponse Approvals::HandleGet(const HttpRequest& request) {
  const auto [id, rest] = SplitRequestPath(request.target);
  if (!id.empty()) {
    if (!rest.empty()) {
      return JsonError(404, "not_found", "GET /v1/requests or /v1/requests/{id}");
    }
    auto found = Find(id);
    if (!found) {
      return StoreFailed();
    }
    if (!*found) {
      return JsonError(404, "not_found", fmt::format("no approval request {}", id.substr(0, 64)));
    }
    return JsonText(ApprovalRequestJson(**found));
  }
  std::optional<RequestState> state;
  std::size_t limit = kDefaultListLimit;
  for (const auto& [key, value] : QueryParams(request.target)) {
    if (key == "state") {
      state = ParseRequestState(value);
      if (!state) {
        return JsonError(400, "bad_request", "state is one of pending, approved, denied, expired");
      }
    } else if (key == "limit") {
      std::size_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n == 0 || n > kMaxListLimit) {
        return JsonError(400, "bad_request", fmt::format("limit is from 1 to {}", kMaxListLimit));
      }
      limit = n;
    } else {
      return JsonError(400, "bad_request", "the parameters are state and limit");
    }
  }
  auto listed = List(state, limit);
  if (!listed) {
    return StoreFailed();
  }
  std::string body = "{\"requests\":[";
  for (std::size_t i = 0; i < listed->size(); ++i) {
    body += i == 0 ? "" : ",";
    body += ApprovalRequestJson((*listed)[i]);
  }
  body += "]}";
  return JsonText(std::move(body));
}

HttpResponse Approvals::HandleDecide(const HttpRequest& request, std::string_view caller) {
  const auto [id, action] = SplitRequestPath(request.target);
  if (id.empty() || (action != "approve" && action != "deny")) {
    return JsonError(404, "not_found", "POST /v1/requests/{id}/approve or /v1/requests/{id}/deny");
  }
  std::string comment;
  if (request.body.find_first_not_of(" \t\r\n") != std::string::npos) {
    boost::system::error_code ec;
    const json::value body = json::parse(request.body, ec);
    const json::object* object = !ec ? body.if_object() : nullptr;
    const json::value* value = object != nullptr ? object->if_contains("comment") : nullptr;
    if (object == nullptr || (value != nullptr && !value->is_string() && !value->is_null())) {
      return JsonError(400, "bad_request", "send {\"comment\": \"...\"} or nothing");
    }
    if (value != nullptr && value->is_string()) {
      comment = std::string(value->get_string());
    }
  }
  if (comment.size() > kMaxCommentBytes) {
    return JsonError(400, "bad_request", fmt::format("the comment is longer than {} bytes", kMaxCommentBytes));
  }
  // The comment reaches the gateway, the engineer's terminal and the audit log: one line of text.
  if (std::any_of(comment.begin(), comment.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
      })) {
    return JsonError(400, "bad_request", "the comment must not contain control characters (one line of text)");
  }
  auto decided = Decide(id, action == "approve", caller, comment);
  if (!decided) {
    return StoreFailed();
  }
  switch (decided->status) {
    case DecideStatus::kDecided:
      return JsonText(ApprovalRequestJson(decided->request));
    case DecideStatus::kNotFound:
      return JsonError(404, "not_found", fmt::format("no approval request {}", id.substr(0, 64)));
    case DecideStatus::kOwnRequest:
      Log()->warn("refused: {} tried to {} their own approval request {}", caller, action, id);
      return JsonError(403, "own_request", "nobody approves or denies their own request");
    case DecideStatus::kNotPending:
      return JsonText(json::serialize(json::object{
                          {"error", "not_pending"},
                          {"message", fmt::format("the request is {} already", WireName(decided->request.state))},
                          {"state", WireName(decided->request.state)}}),
                      409);
  }
  return StoreFailed();
}

HttpResponse Approvals::HandleGatewayPost(const HttpRequest& request, const GatewayAccess& access) {
  auto auth = AuthenticateGateway(request, access);
  if (!auth) {
    return *auth.refusal;
  }
  std::string problem;
  auto decoded = DecodeNewRequest(request.body, &problem);
  if (!decoded) {
    Log()->warn("refused an approval request from {}: {}", auth.gateway, problem);
    return JsonError(400, "bad_request", problem);
  }
  auto added = Add(auth.gateway, *decoded);
  if (!added) {
    return StoreFailed();
  }
  switch (added->status) {
    case AddStatus::kCreated:
      return JsonText(ApprovalRequestJson(added->request), 201);
    case AddStatus::kExisting:
      return JsonText(ApprovalRequestJson(added->request), 200);
    case AddStatus::kIdTaken:
      Log()->warn("refused an approval request from {}: id {} belongs to gateway {}", auth.gateway, decoded->id,
                  added->request.gateway);
      return JsonError(409, "id_in_use", "another gateway's request has this id");
  }
  return StoreFailed();
}

}  // namespace lifeline::policy
