#pragma once
// home.toml's notification sections: webhooks, the SMS gateway, contacts, contact groups, routes,
// on-call rotations and the escalation policy. AddNotifySchema declares the keys into the home's
// schema (beside notify.email and notify.retry_max, which home_config owns); CompileNotifyConfig
// checks the references between them and builds what the planner and dispatcher use.
#include "common/config.h"
#include "home/notify/dispatcher.h"
#include "home/notify/plan.h"

#include <chrono>
#include <string>
#include <vector>

namespace lifeline::home::notify {

struct NotifyConfig {
  struct Webhook {
    std::string name;
    std::string url;
    std::string secret;
    std::string format = "generic";
    std::chrono::seconds timeout{10};
    std::string ca_file;
  };
  struct Sms {
    std::string gateway_url;
    std::string format = "form";
    std::string to_field = "to";
    std::string text_field = "text";
    std::string from;
    std::string from_field = "from";
    std::string token;
    std::string username;
    std::string password;
    std::chrono::seconds timeout{10};
    std::string ca_file;
  };
  struct ContactEntry {
    std::string name;
    std::string email;
    std::string sms;
    std::string sms_email;
    std::vector<std::string> webhooks;
  };
  struct Group {
    std::string name;
    std::vector<std::string> members;
    std::string rotation;
    std::vector<std::string> management;
    std::string management_notify = "escalation";
    std::vector<std::string> webhooks;
  };
  struct RouteEntry {
    std::string customer = "*";
    std::string site = "*";
    std::string model = "*";
    std::string min_severity = "info";
    std::vector<std::string> groups;
    bool continue_matching = false;
  };
  struct Override {
    std::string engineer;
    std::string from;
    std::string until;
  };
  struct RotationEntry {
    std::string name;
    std::vector<std::string> engineers;
    std::chrono::seconds period = std::chrono::hours(24 * 7);
    std::string handover_time = "09:00";
    std::string handover_weekday = "monday";
    std::string utc_offset = "UTC";
    std::string start = "2024-01-01";
    std::vector<Override> overrides;
  };
  struct Level {
    std::chrono::seconds after{0};
    std::vector<std::string> groups;
    bool everyone = false;
  };

  std::vector<Webhook> webhooks;
  Sms sms;
  std::vector<ContactEntry> contacts;
  std::vector<Group> groups;
  std::vector<RouteEntry> routes;
  std::vector<std::string> default_groups;
  std::vector<RotationEntry> rotations;
  std::chrono::seconds escalation_repeat{0};
  std::vector<Level> escalation_levels;
  std::chrono::seconds give_up_after = std::chrono::hours(48);
};

/// Declares notify.webhook, notify.sms.*, notify.contact, notify.group, notify.route,
/// notify.default_groups, notify.rotation, notify.escalation.* and notify.give_up_after, bound to
/// `config` (which must outlive the schema's Load).
void AddNotifySchema(config::Schema& schema, NotifyConfig& config);

struct CompiledNotify {
  NotifyPlan plan;
  DispatcherSettings dispatcher;
  std::chrono::seconds give_up_after{0};
};

/// Checks names and references (a group naming an unknown contact, a route naming an unknown
/// group, a malformed hand-over time, escalation levels out of order, ...) and throws
/// config::ConfigError "ORIGIN: key 'notify.group[1].members': ..." on the first problem.
CompiledNotify CompileNotifyConfig(const NotifyConfig& config, const std::string& origin);

}  // namespace lifeline::home::notify
