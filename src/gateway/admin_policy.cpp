#include "gateway/admin_policy.h"

#include <boost/json.hpp>

namespace lifeline::gateway {

namespace json = boost::json;

namespace {

std::string_view ModeName(PolicyMode mode) {
  switch (mode) {
    case PolicyMode::kManaged:
      return "managed";
    case PolicyMode::kDisabled:
      return "disabled";
    case PolicyMode::kNone:
      break;
  }
  return "none";
}

}  // namespace

void AddPolicyRoutes(AdminServer& server, PolicyMode mode, std::string url, PolicyCache& cache,
                     std::function<std::optional<PolicyClientStatus>()> client_status) {
  server.Route("GET", "/v1/policy", [mode, url, &cache, client_status](const AdminRequest&) {
    json::object state{{"mode", ModeName(mode)},
                       {"url", url},
                       {"policy_version", cache.Version()},
                       {"synced_ms", cache.SyncedMs()}};
    auto outbox = cache.OutboxSize();
    state["outbox"] = outbox ? json::value(static_cast<std::uint64_t>(*outbox)) : json::value(nullptr);
    const auto status = client_status ? client_status() : std::nullopt;
    state["reachable"] = status && status->reachable;
    state["last_error"] = status ? status->last_error : std::string();
    state["watches_answered"] = status ? status->watches_answered : 0;
    state["records_delivered"] = status ? status->records_delivered : 0;
    state["requests_posted"] = status ? status->requests_posted : 0;
    return AdminJson(json::serialize(state));
  });
}

}  // namespace lifeline::gateway
