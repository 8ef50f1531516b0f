#include "home/notify/plan.h"

#include "home/notify/kinds.h"
#include "home/notify/sms.h"

#include <algorithm>
#include <set>
#include <utility>

namespace lifeline::home::notify {

namespace {

void AddOnce(std::vector<std::string>& out, const std::string& name) {
  if (std::find(out.begin(), out.end(), name) == out.end()) {
    out.push_back(name);
  }
}

}  // namespace

NotifyPlan::NotifyPlan(std::vector<Contact> contacts, std::vector<ContactGroup> groups,
                       Router router, std::vector<Rotation> rotations,
                       EscalationPolicy escalation, std::vector<WebhookSettings> webhooks)
    : contacts_(std::move(contacts)),
      groups_(std::move(groups)),
      router_(std::move(router)),
      rotations_(std::move(rotations)),
      escalation_(std::move(escalation)) {
  for (const auto& hook : webhooks) {
    webhook_formats_.emplace(hook.name, hook.format);
  }
}

const Contact* NotifyPlan::FindContact(std::string_view name) const {
  auto it = std::find_if(contacts_.begin(), contacts_.end(),
                         [name](const Contact& c) { return c.name == name; });
  return it == contacts_.end() ? nullptr : &*it;
}

const ContactGroup* NotifyPlan::FindGroup(std::string_view name) const {
  auto it = std::find_if(groups_.begin(), groups_.end(),
                         [name](const ContactGroup& g) { return g.name == name; });
  return it == groups_.end() ? nullptr : &*it;
}

const Rotation* NotifyPlan::FindRotation(std::string_view name) const {
  auto it = std::find_if(rotations_.begin(), rotations_.end(),
                         [name](const Rotation& r) { return r.settings().name == name; });
  return it == rotations_.end() ? nullptr : &*it;
}

std::vector<std::string> NotifyPlan::GroupsFor(const TicketEvent& event) const {
  return router_.GroupsFor(event.device, event.severity);
}

std::optional<std::string> NotifyPlan::OnCall(std::string_view group, TimePoint t) const {
  const ContactGroup* g = FindGroup(group);
  if (g == nullptr || g->rotation.empty()) {
    return std::nullopt;
  }
  const Rotation* rotation = FindRotation(g->rotation);
  if (rotation == nullptr) {
    return std::nullopt;
  }
  return rotation->OnCallAt(t);
}

void NotifyPlan::AddAudience(const TicketEvent& event, int level, TimePoint now,
                             std::vector<std::string>& people,
                             std::vector<std::string>& group_names) const {
  const int top = static_cast<int>(escalation_.levels.size());
  level = std::clamp(level, 0, top);
  std::vector<std::string> groups = GroupsFor(event);
  bool everyone = false;
  if (level > 0) {
    const EscalationLevel& l = escalation_.levels[level - 1];
    if (!l.groups.empty()) {
      groups = l.groups;
    }
    everyone = l.everyone;
  }
  for (const auto& name : groups) {
    const ContactGroup* group = FindGroup(name);
    if (group == nullptr) {
      continue;
    }
    AddOnce(group_names, group->name);
    const Rotation* rotation = group->rotation.empty() ? nullptr : FindRotation(group->rotation);
    if (rotation == nullptr || everyone) {
      for (const auto& member : group->members) {
        AddOnce(people, member);
      }
    }
    if (rotation != nullptr) {
      AddOnce(people, rotation->OnCallAt(now));
      if (everyone) {
        for (const auto& engineer : rotation->settings().engineers) {
          AddOnce(people, engineer);
        }
      }
    }
    if (group->management_notify == ManagementNotify::kAlways || level > 0) {
      for (const auto& manager : group->management) {
        AddOnce(people, manager);
      }
    }
  }
}

std::vector<Delivery> NotifyPlan::Plan(const TicketEvent& event, TimePoint now) const {
  std::vector<std::string> people;
  std::vector<std::string> group_names;
  const int top = std::clamp(event.escalation_level, 0,
                             static_cast<int>(escalation_.levels.size()));
  if (event.kind == EventKind::kResolved) {
    for (int level = 0; level <= top; ++level) {
      AddAudience(event, level, now, people, group_names);
    }
  } else {
    AddAudience(event, top, now, people, group_names);
  }

  std::vector<Delivery> out;
  std::set<std::pair<std::string, std::string>> seen;
  auto add = [&](Delivery d) {
    if (d.recipient.empty() || !seen.emplace(d.kind, d.recipient).second) {
      return;
    }
    out.push_back(std::move(d));
  };
  const std::string sms_text = SmsText(event, kSmsMaxChars);
  auto add_webhook = [&](const std::string& hook, const std::string& who) {
    auto format = webhook_formats_.find(hook);
    if (format == webhook_formats_.end()) {
      return;
    }
    add({.kind = std::string(kKindWebhook),
         .recipient = hook,
         .body = format->second == WebhookFormat::kSlack ? SlackJson(event) : GenericJson(event),
         .contact = who});
  };
  for (const auto& name : people) {
    const Contact* c = FindContact(name);
    if (c == nullptr) {
      continue;
    }
    if (!c->email.empty()) {
      add({.kind = std::string(kKindEmail),
           .recipient = c->email,
           .subject = EmailSubject(event),
           .body = EmailBody(event),
           .contact = c->name});
    }
    if (!c->sms.empty()) {
      add({.kind = std::string(kKindSms), .recipient = c->sms, .body = sms_text, .contact = c->name});
    }
    if (!c->sms_email.empty()) {
      add({.kind = std::string(kKindSmsEmail),
           .recipient = c->sms_email,
           .body = sms_text,
           .contact = c->name});
    }
    for (const auto& hook : c->webhooks) {
      add_webhook(hook, c->name);
    }
  }
  for (const auto& name : group_names) {
    for (const auto& hook : FindGroup(name)->webhooks) {
      add_webhook(hook, "group " + name);
    }
  }
  return out;
}

}  // namespace lifeline::home::notify
