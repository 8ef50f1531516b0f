#pragma once
// How the home turns alerts into tickets beyond the store's defaults: deduplication rules
// ([[tickets.dedup]]: alert code glob -> key template) and the planner that turns ticket events into
// outbox rows (routing, on-call, escalation level; docs/notifications.md).
#include "common/clock.h"
#include "home/notify/plan.h"
#include "protocol/message.h"
#include "store/home_store.h"

#include <string>
#include <string_view>
#include <vector>

namespace lifeline::home {

/// One [[tickets.dedup]] entry.
struct DedupRule {
  std::string code = "*";               // glob on the alert code, ASCII case-insensitive
  std::string key = "{device}/{code}";  // the template alerts of those codes are keyed by
};

/// The default key template: one ticket per device and alert code.
inline constexpr std::string_view kDefaultDedupKey = "{device}/{code}";

/// Checks each rule: a known placeholder set, and a key scoped to a customer ({device}, {site} or
/// {customer}), so tickets never join alerts of two customers. Throws config::ConfigError
/// "ORIGIN: key 'tickets.dedup[i].key': ..." on the first problem.
void CheckDedupRules(const std::vector<DedupRule>& rules, const std::string& origin);

/// The key template expanded for an alert: {device} = customer/site/serial, {site} = customer/site,
/// {customer}, {serial}, {model}, {code}. The first rule whose code glob matches wins; none: the
/// default. Precondition: CheckDedupRules accepted the rules.
std::string DedupKey(const std::vector<DedupRule>& rules, const protocol::DeviceIdentity& device,
                     std::string_view code);

/// Ticket events -> outbox rows through the notification plan (pure, as the store requires).
class TicketEventPlanner {
 public:
  explicit TicketEventPlanner(notify::NotifyPlan plan) : plan_(std::move(plan)) {}

  std::vector<store::OutboxRow> Plan(const store::Ticket& ticket, store::TicketEventKind kind, int level,
                                     std::int64_t now_ms) const;
  /// A planner for the store; it refers to this object, which must outlive its use.
  store::NotifyPlanner AsPlanner() const;
  const notify::NotifyPlan& plan() const { return plan_; }

 private:
  notify::NotifyPlan plan_;
};

notify::EventKind ToEventKind(store::TicketEventKind kind);

}  // namespace lifeline::home
