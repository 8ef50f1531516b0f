#pragma once
// From a ticket event to outbox rows: routing picks the contact groups, each group's rotation picks
// the engineer on call, the escalation level decides who else hears of it, and each person's
// channels become one delivery each with its text already rendered. Pure: the caller writes the
// deliveries to the outbox (in the same transaction as the ticket change), and the Notifier sends
// them later.
#include "home/notify/escalation.h"
#include "home/notify/event.h"
#include "home/notify/oncall.h"
#include "home/notify/routing.h"
#include "home/notify/webhook.h"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::home::notify {

/// A person and the ways to reach them. Any channel may be empty.
struct Contact {
  std::string name;
  std::string email;
  std::string sms;        // phone number, through the SMS gateway
  std::string sms_email;  // an email-to-SMS address
  std::vector<std::string> webhooks;  // webhook names (a personal chat hook, a pager service)
};

enum class ManagementNotify {
  kAlways,      // management members hear of every notification of the group
  kEscalation,  // only from escalation level 1 on (and of the resolution of what they heard)
};

struct ContactGroup {
  std::string name;
  std::vector<std::string> members;  // contact names; with a rotation: extra members for `everyone`
  std::string rotation;  // empty: every member is notified; else only the rotation's on-call one
  std::vector<std::string> management;  // contact names
  ManagementNotify management_notify = ManagementNotify::kEscalation;
  std::vector<std::string> webhooks;  // the group's channels (a team chat room)
};

/// One outbox row to write.
struct Delivery {
  std::string kind;       // kinds.h
  std::string recipient;  // address, number or webhook name
  std::string subject;    // email only
  std::string body;       // email text, SMS text (≤ 160 characters) or the webhook's JSON
  std::string contact;    // who it is for, for logs: a contact name or "group <name>"
  friend bool operator==(const Delivery&, const Delivery&) = default;
};

class NotifyPlan {
 public:
  NotifyPlan() = default;
  /// References between the parts are assumed valid (CompileNotifyConfig checks them); a missing
  /// one is skipped.
  NotifyPlan(std::vector<Contact> contacts, std::vector<ContactGroup> groups, Router router,
             std::vector<Rotation> rotations, EscalationPolicy escalation,
             std::vector<WebhookSettings> webhooks);

  /// The groups a ticket is routed to.
  std::vector<std::string> GroupsFor(const TicketEvent& event) const;

  /// The deliveries for `event` at `now`. event.escalation_level says who: level 0 the routed
  /// groups' on-call members (and management set to "always"); level k the level's groups (or the
  /// routed ones), with management, and everyone in rotation groups when the level says so. For a
  /// kResolved event, everyone told at levels 0..escalation_level hears of it. Each (kind,
  /// recipient) appears once.
  std::vector<Delivery> Plan(const TicketEvent& event, TimePoint now) const;

  /// The contact on call for `group` at `t` (its rotation's, or nullopt without a rotation).
  std::optional<std::string> OnCall(std::string_view group, TimePoint t) const;

  const Contact* FindContact(std::string_view name) const;
  const ContactGroup* FindGroup(std::string_view name) const;
  const Rotation* FindRotation(std::string_view name) const;
  const EscalationPolicy& escalation() const { return escalation_; }
  const Router& router() const { return router_; }

 private:
  void AddAudience(const TicketEvent& event, int level, TimePoint now,
                   std::vector<std::string>& people, std::vector<std::string>& group_hooks) const;

  std::vector<Contact> contacts_;
  std::vector<ContactGroup> groups_;
  Router router_;
  std::vector<Rotation> rotations_;
  EscalationPolicy escalation_;
  std::map<std::string, WebhookFormat, std::less<>> webhook_formats_;
};

}  // namespace lifeline::home::notify
