#pragma once
// The home's admin API (docs/api.md): JSON over HTTPS for engineers, managers and tools: tickets
// (list, show, acknowledge, resolve, close, reopen, note, assign), devices (list, show, revoke),
// heartbeats, inventory, notifications, maintenance windows, escalation state and on-call. Every
// request carries a bearer token the home stores only as a SHA-256 hash; the token's role decides
// what it may do (Allowed), and a request its role may not make gets 403 naming the role needed.
#include "common/clock.h"
#include "home/notify/plan.h"
#include "store/home_store.h"
#include "transport/https_server.h"

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::home {

/// What a request needs. Roles: admin (everything), engineer (read, tickets, maintenance, remote
/// sessions), manager
/// (read, maintenance, escalation), read-only (read).
enum class Permission { kRead, kTickets, kMaintenance, kEscalation, kDevices, kConnect };
std::string_view ToString(Permission permission);
/// Whether `role` grants `permission`; unknown roles grant nothing.
bool Allowed(std::string_view role, Permission permission);
/// The roles `lifeline home admin-token --role` accepts.
const std::vector<std::string>& KnownRoles();

struct AdminOptions {
  /// Outbox rows for ticket changes (resolve, close, reopen notify like the device's own events).
  store::NotifyPlanner planner;
  /// For GET /v1/escalations and /v1/oncall (may be null: both answer empty lists).
  const notify::NotifyPlan* plan = nullptr;
  std::vector<std::string> groups;  // contact group names, for /v1/oncall
  /// Called after a change queued notifications (wakes the notifier).
  std::function<void()> on_notified;
  /// Called after a device was revoked (the missing-heartbeat monitor forgets it and resolves its ticket).
  std::function<void(const protocol::DeviceIdentity&)> on_device_revoked;
  /// /v1/sessions and /v1/gateways (remote access), after authentication and the role check: the
  /// caller's name, the hash of their token, the request. Unset: those paths answer 503.
  std::function<transport::HttpResponse(const std::string& caller, const std::string& token_hash,
                                        const transport::HttpRequest& request)>
      remote_access;
};

class AdminApi {
 public:
  AdminApi(store::HomeStore& store, const Clock& clock, AdminOptions options = {});
  explicit AdminApi(store::HomeStore& store);
  transport::HttpResponse Handle(const transport::HttpRequest& request);
  /// Sets AdminOptions::remote_access after construction (the hub starts after the API exists).
  void SetRemoteAccess(decltype(AdminOptions::remote_access) remote_access) {
    options_.remote_access = std::move(remote_access);
  }

 private:
  struct Caller;
  transport::HttpResponse Route(const Caller& caller, const transport::HttpRequest& request);

  store::HomeStore& store_;
  const Clock& clock_;
  AdminOptions options_;
};

}  // namespace lifeline::home
