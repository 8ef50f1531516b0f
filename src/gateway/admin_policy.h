#pragma once
// Local admin route for the policy manager's state at this gateway (docs/gateway.md, "Policy"):
//   GET /v1/policy   {"mode": "managed"|"disabled"|"none", "url", "policy_version", "synced_ms",
//                     "reachable", "last_error", "outbox", "watches_answered", "records_delivered",
//                     "requests_posted"}
// What an operator asks first when sessions are refused: which policy is cached, when the policy
// manager last answered, and how many audit records wait for it.
#include "gateway/admin_server.h"
#include "gateway/policy_cache.h"
#include "gateway/policy_client.h"
#include "gateway/session_manager.h"

#include <functional>
#include <optional>
#include <string>

namespace lifeline::gateway {

/// `client_status` returns the policy client's counters, or nullopt when there is no client (no url).
void AddPolicyRoutes(AdminServer& server, PolicyMode mode, std::string url, PolicyCache& cache,
                     std::function<std::optional<PolicyClientStatus>()> client_status);

}  // namespace lifeline::gateway
