#include "home/notify/notify_config.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace lifeline::home::notify {

namespace {

using std::chrono::seconds;

const std::vector<std::string> kWeekdays = {"monday", "tuesday",  "wednesday", "thursday",
                                            "friday", "saturday", "sunday",    "any"};

[[noreturn]] void Fail(const std::string& origin, const std::string& key, const std::string& why) {
  throw config::ConfigError(fmt::format("{}: key '{}': {}", origin, key, why));
}

std::string Key(std::string_view table, std::size_t index, std::string_view field) {
  return fmt::format("notify.{}[{}].{}", table, index, field);
}

bool IsHttpUrl(const std::string& url) {
  return url.starts_with("http://") || url.starts_with("https://");
}

/// Checks that names are unique and not empty; returns them.
template <class T>
std::set<std::string, std::less<>> Names(const std::vector<T>& items, std::string_view table,
                                         const std::string& origin) {
  std::set<std::string, std::less<>> names;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (items[i].name.empty()) {
      Fail(origin, Key(table, i, "name"), "must not be empty");
    }
    if (!names.insert(items[i].name).second) {
      Fail(origin, Key(table, i, "name"), fmt::format("'{}' is declared twice", items[i].name));
    }
  }
  return names;
}

void CheckRefs(const std::vector<std::string>& refs, const std::set<std::string, std::less<>>& known,
               std::string_view what, const std::string& origin, const std::string& key) {
  for (const auto& ref : refs) {
    if (!known.contains(ref)) {
      Fail(origin, key, fmt::format("'{}' is not a declared {}", ref, what));
    }
  }
}

}  // namespace

void AddNotifySchema(config::Schema& schema, NotifyConfig& c) {
  using std::chrono::hours;
  schema
      .TableArray<NotifyConfig::Webhook>(
          "notify.webhook", &c.webhooks,
          [](config::Schema& s, NotifyConfig::Webhook& w) {
            s.RequiredString("name", &w.name, "what contacts, groups and the outbox call it")
                .RequiredString("url", &w.url, "http:// or https:// address the JSON is POSTed to")
                .Secret("secret", &w.secret,
                        "HMAC-SHA256 key signing each request (X-Lifeline-Signature); empty: unsigned")
                .Choice("format", &w.format, {"generic", "slack"},
                        "body: Lifeline's JSON, or Slack-compatible {text, blocks}")
                .Duration("timeout", &w.timeout, seconds(1), seconds(120),
                          "longest wait for the receiver, connect included")
                .String("ca_file", &w.ca_file, "CA bundle to verify an https receiver (empty: system store)");
          },
          "webhooks notified about tickets")
      .String("notify.sms.gateway_url", &c.sms.gateway_url,
              "HTTP SMS gateway: http(s) URL each text message is POSTed to (empty: none)")
      .Choice("notify.sms.format", &c.sms.format, {"form", "json"},
              "gateway request body: form-encoded or a JSON object")
      .String("notify.sms.to_field", &c.sms.to_field, "the gateway's name for the phone number")
      .String("notify.sms.text_field", &c.sms.text_field, "the gateway's name for the text")
      .String("notify.sms.from", &c.sms.from, "sender id sent to the gateway (empty: none)")
      .String("notify.sms.from_field", &c.sms.from_field, "the gateway's name for the sender id")
      .Secret("notify.sms.token", &c.sms.token, "bearer token for the gateway (Authorization: Bearer)")
      .String("notify.sms.username", &c.sms.username, "basic authentication user for the gateway")
      .Secret("notify.sms.password", &c.sms.password, "basic authentication password for the gateway")
      .Duration("notify.sms.timeout", &c.sms.timeout, seconds(1), seconds(120),
                "longest wait for the gateway, connect included")
      .String("notify.sms.ca_file", &c.sms.ca_file, "CA bundle to verify an https gateway (empty: system store)")
      .TableArray<NotifyConfig::ContactEntry>(
          "notify.contact", &c.contacts,
          [](config::Schema& s, NotifyConfig::ContactEntry& e) {
            s.RequiredString("name", &e.name, "how groups and rotations name this person")
                .String("email", &e.email, "email address")
                .String("sms", &e.sms, "phone number for the SMS gateway, e.g. +4917012345678")
                .String("sms_email", &e.sms_email, "email-to-SMS address of the person's carrier")
                .StringList("webhooks", &e.webhooks, "names of [[notify.webhook]] that reach this person");
          },
          "people who can be notified")
      .TableArray<NotifyConfig::Group>(
          "notify.group", &c.groups,
          [](config::Schema& s, NotifyConfig::Group& g) {
            s.RequiredString("name", &g.name, "what routes and escalation levels call it")
                .StringList("members", &g.members,
                            "contacts; all are notified unless the group has a rotation")
                .String("rotation", &g.rotation,
                        "a [[notify.rotation]]: only its on-call engineer is notified (empty: none)")
                .StringList("management", &g.management, "contacts told per management_notify")
                .Choice("management_notify", &g.management_notify, {"always", "escalation"},
                        "management hears of every notification, or only from escalation level 1")
                .StringList("webhooks", &g.webhooks, "the group's own webhooks (a team chat room)");
          },
          "contact groups")
      .TableArray<NotifyConfig::RouteEntry>(
          "notify.route", &c.routes,
          [](config::Schema& s, NotifyConfig::RouteEntry& r) {
            s.String("customer", &r.customer, "glob on the device's customer (* and ?, any case)")
                .String("site", &r.site, "glob on the device's site")
                .String("model", &r.model, "glob on the device's model")
                .Choice("min_severity", &r.min_severity, {"info", "warning", "error", "critical"},
                        "tickets below this severity do not match")
                .StringList("groups", &r.groups, "contact groups notified")
                .Bool("continue", &r.continue_matching,
                      "after matching, keep trying later routes (default: the first match wins)");
          },
          "routing rules, tried in order")
      .StringList("notify.default_groups", &c.default_groups,
                  "contact groups for tickets no route matches")
      .TableArray<NotifyConfig::RotationEntry>(
          "notify.rotation", &c.rotations,
          [](config::Schema& s, NotifyConfig::RotationEntry& r) {
            s.RequiredString("name", &r.name, "what groups call it")
                .StringList("engineers", &r.engineers, "contacts, in turn order")
                .Duration("period", &r.period, hours(1), hours(24 * 366), "length of one turn")
                .String("handover_time", &r.handover_time, "local time of the hand-over, HH:MM")
                .Choice("handover_weekday", &r.handover_weekday, kWeekdays,
                        "weekday of the first hand-over on or after `start` (any: `start` itself)")
                .String("utc_offset", &r.utc_offset, "local time as UTC or a fixed offset: +01:00, -05:00")
                .String("start", &r.start, "local date (YYYY-MM-DD) from which engineers[0] has the first turn")
                .TableArray<NotifyConfig::Override>(
                    "override", &r.overrides,
                    [](config::Schema& o, NotifyConfig::Override& v) {
                      o.RequiredString("engineer", &v.engineer, "contact on call instead")
                          .RequiredString("from", &v.from,
                                          "start, YYYY-MM-DDTHH:MM[Z|+HH:MM] (no zone: utc_offset)")
                          .RequiredString("until", &v.until, "end (exclusive), same form");
                    },
                    "cover for a time span; the first covering override wins");
          },
          "on-call rotations")
      .Duration("notify.escalation.repeat", &c.escalation_repeat, seconds(0), hours(24 * 7),
                "remind the highest level reached this often while unacknowledged (0: never)")
      .TableArray<NotifyConfig::Level>(
          "notify.escalation.level", &c.escalation_levels,
          [](config::Schema& s, NotifyConfig::Level& l) {
            s.Duration("after", &l.after, seconds(60), hours(24 * 7),
                       "time since the ticket opened without an acknowledgement")
                .StringList("groups", &l.groups, "groups told at this level (empty: the routed groups)")
                .Bool("everyone", &l.everyone,
                      "every member of rotation groups, not only the engineer on call");
          },
          "escalation levels 1, 2, ... in order (level 0 is the notification at open)")
      .Duration("notify.give_up_after", &c.give_up_after, std::chrono::minutes(10), hours(24 * 30),
                "a notification still undelivered this long after it was queued is marked failed");
}

CompiledNotify CompileNotifyConfig(const NotifyConfig& c, const std::string& origin) {
  CompiledNotify out;
  out.give_up_after = c.give_up_after;

  // Webhooks.
  const auto webhook_names = Names(c.webhooks, "webhook", origin);
  std::vector<WebhookSettings> webhooks;
  for (std::size_t i = 0; i < c.webhooks.size(); ++i) {
    const auto& w = c.webhooks[i];
    if (!IsHttpUrl(w.url)) {
      Fail(origin, Key("webhook", i, "url"), "must start with http:// or https://");
    }
    webhooks.push_back({.name = w.name,
                        .url = w.url,
                        .secret = w.secret,
                        .format = w.format == "slack" ? WebhookFormat::kSlack : WebhookFormat::kGeneric,
                        .timeout = w.timeout,
                        .ca_file = w.ca_file});
  }
  out.dispatcher.webhooks = webhooks;

  // SMS gateway.
  if (!c.sms.gateway_url.empty() && !IsHttpUrl(c.sms.gateway_url)) {
    Fail(origin, "notify.sms.gateway_url", "must start with http:// or https://");
  }
  if (!c.sms.token.empty() && !c.sms.username.empty()) {
    Fail(origin, "notify.sms.token", "set either a bearer token or a username and password, not both");
  }
  out.dispatcher.sms_gateway = {
      .url = c.sms.gateway_url,
      .format = c.sms.format == "json" ? SmsBodyFormat::kJson : SmsBodyFormat::kForm,
      .to_field = c.sms.to_field,
      .text_field = c.sms.text_field,
      .from = c.sms.from,
      .from_field = c.sms.from_field,
      .bearer_token = c.sms.token,
      .username = c.sms.username,
      .password = c.sms.password,
      .timeout = c.sms.timeout,
      .ca_file = c.sms.ca_file};

  // Contacts.
  const auto contact_names = Names(c.contacts, "contact", origin);
  std::vector<Contact> contacts;
  for (std::size_t i = 0; i < c.contacts.size(); ++i) {
    const auto& e = c.contacts[i];
    CheckRefs(e.webhooks, webhook_names, "[[notify.webhook]]", origin, Key("contact", i, "webhooks"));
    if (e.email.empty() && e.sms.empty() && e.sms_email.empty() && e.webhooks.empty()) {
      Fail(origin, Key("contact", i, "name"),
           fmt::format("contact '{}' has no channel (email, sms, sms_email or webhooks)", e.name));
    }
    if (!e.sms.empty() && c.sms.gateway_url.empty()) {
      Fail(origin, Key("contact", i, "sms"), "needs notify.sms.gateway_url (or use sms_email)");
    }
    contacts.push_back({e.name, e.email, e.sms, e.sms_email, e.webhooks});
  }

  // Rotations.
  const auto rotation_names = Names(c.rotations, "rotation", origin);
  std::vector<Rotation> rotations;
  for (std::size_t i = 0; i < c.rotations.size(); ++i) {
    const auto& r = c.rotations[i];
    if (r.engineers.empty()) {
      Fail(origin, Key("rotation", i, "engineers"), "must name at least one contact");
    }
    CheckRefs(r.engineers, contact_names, "[[notify.contact]]", origin, Key("rotation", i, "engineers"));
    RotationSettings settings{.name = r.name, .engineers = r.engineers, .period = r.period};
    auto time = ParseTimeOfDay(r.handover_time);
    if (!time) {
      Fail(origin, Key("rotation", i, "handover_time"), "must be HH:MM, e.g. \"09:00\"");
    }
    settings.handover_time = *time;
    settings.handover_weekday =
        r.handover_weekday == "any" ? std::nullopt : ParseWeekday(r.handover_weekday);
    auto offset = ParseUtcOffset(r.utc_offset);
    if (!offset) {
      Fail(origin, Key("rotation", i, "utc_offset"), "must be UTC or an offset such as +01:00");
    }
    settings.utc_offset = *offset;
    auto start = ParseDate(r.start);
    if (!start) {
      Fail(origin, Key("rotation", i, "start"), "must be a date YYYY-MM-DD");
    }
    settings.start = *start;
    for (std::size_t k = 0; k < r.overrides.size(); ++k) {
      const auto& o = r.overrides[k];
      const std::string key = fmt::format("notify.rotation[{}].override[{}]", i, k);
      if (!contact_names.contains(o.engineer)) {
        Fail(origin, key + ".engineer", fmt::format("'{}' is not a declared [[notify.contact]]", o.engineer));
      }
      auto from = ParseDateTime(o.from, *offset);
      auto until = ParseDateTime(o.until, *offset);
      if (!from) {
        Fail(origin, key + ".from", "must be YYYY-MM-DDTHH:MM with an optional Z or +HH:MM");
      }
      if (!until) {
        Fail(origin, key + ".until", "must be YYYY-MM-DDTHH:MM with an optional Z or +HH:MM");
      }
      if (*until <= *from) {
        Fail(origin, key + ".until", "must be after from");
      }
      settings.overrides.push_back({o.engineer, *from, *until});
    }
    rotations.emplace_back(std::move(settings));
  }

  // Groups.
  const auto group_names = Names(c.groups, "group", origin);
  std::vector<ContactGroup> groups;
  for (std::size_t i = 0; i < c.groups.size(); ++i) {
    const auto& g = c.groups[i];
    CheckRefs(g.members, contact_names, "[[notify.contact]]", origin, Key("group", i, "members"));
    CheckRefs(g.management, contact_names, "[[notify.contact]]", origin, Key("group", i, "management"));
    CheckRefs(g.webhooks, webhook_names, "[[notify.webhook]]", origin, Key("group", i, "webhooks"));
    if (!g.rotation.empty() && !rotation_names.contains(g.rotation)) {
      Fail(origin, Key("group", i, "rotation"),
           fmt::format("'{}' is not a declared [[notify.rotation]]", g.rotation));
    }
    if (g.members.empty() && g.rotation.empty() && g.management.empty() && g.webhooks.empty()) {
      Fail(origin, Key("group", i, "members"),
           fmt::format("group '{}' reaches nobody (no members, rotation, management or webhooks)", g.name));
    }
    groups.push_back({.name = g.name,
                      .members = g.members,
                      .rotation = g.rotation,
                      .management = g.management,
                      .management_notify = g.management_notify == "always" ? ManagementNotify::kAlways
                                                                           : ManagementNotify::kEscalation,
                      .webhooks = g.webhooks});
  }

  // Routes.
  std::vector<Route> routes;
  for (std::size_t i = 0; i < c.routes.size(); ++i) {
    const auto& r = c.routes[i];
    if (r.groups.empty()) {
      Fail(origin, Key("route", i, "groups"), "must name at least one group");
    }
    CheckRefs(r.groups, group_names, "[[notify.group]]", origin, Key("route", i, "groups"));
    routes.push_back({.customer = r.customer,
                      .site = r.site,
                      .model = r.model,
                      .min_severity = protocol::ParseSeverity(r.min_severity).value_or(protocol::Severity::kInfo),
                      .groups = r.groups,
                      .continue_matching = r.continue_matching});
  }
  CheckRefs(c.default_groups, group_names, "[[notify.group]]", origin, "notify.default_groups");

  // Escalation.
  EscalationPolicy policy{.repeat = c.escalation_repeat};
  for (std::size_t i = 0; i < c.escalation_levels.size(); ++i) {
    const auto& l = c.escalation_levels[i];
    const std::string key = fmt::format("notify.escalation.level[{}]", i);
    if (i > 0 && l.after <= c.escalation_levels[i - 1].after) {
      Fail(origin, key + ".after", "levels must come in order of increasing `after`");
    }
    CheckRefs(l.groups, group_names, "[[notify.group]]", origin, key + ".groups");
    policy.levels.push_back({l.after, l.groups, l.everyone});
  }

  out.plan = NotifyPlan(std::move(contacts), std::move(groups),
                        Router(std::move(routes), c.default_groups), std::move(rotations),
                        std::move(policy), std::move(webhooks));
  return out;
}

}  // namespace lifeline::home::notify
