// The pure parts of notifications: routing, on-call rotation, escalation, the delivery plan, the
// config schema, the rendered bodies and the retry classification. Times move on a FakeClock.
#include "home/notify/escalation.h"
#include "home/notify/event.h"
#include "home/notify/kinds.h"
#include "home/notify/notify_config.h"
#include "home/notify/oncall.h"
#include "home/notify/outcome.h"
#include "home/notify/plan.h"
#include "home/notify/routing.h"
#include "home/notify/webhook.h"
#include "support/fake_clock.h"
#include "support/temp_dir.h"
#include "transport/mailer.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>

namespace lifeline::home::notify {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using protocol::Severity;
using std::chrono::sys_days;
using transport::MailErrc;

TimePoint Utc(int y, unsigned m, unsigned d, int hh = 0, int mm = 0, int ss = 0) {
  return TimePoint(sys_days(std::chrono::year{y} / m / d)) + std::chrono::hours(hh) +
         std::chrono::minutes(mm) + std::chrono::seconds(ss);
}

std::int64_t Ms(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

protocol::DeviceIdentity Device(std::string customer = "ACME", std::string site = "plant-1",
                                std::string model = "X-200") {
  return {std::move(customer), std::move(site), "SN123", std::move(model)};
}

// ---- Routing ------------------------------------------------------------------------------------

TEST(Glob, StarQuestionCaseAndEmpty) {
  EXPECT_TRUE(GlobMatch("", "anything"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("X-2*", "x-200"));
  EXPECT_TRUE(GlobMatch("*-200", "X-200"));
  EXPECT_TRUE(GlobMatch("X-?00", "X-300"));
  EXPECT_TRUE(GlobMatch("a*b*c", "a-bb-cc-c"));
  EXPECT_FALSE(GlobMatch("X-?00", "X-30"));
  EXPECT_FALSE(GlobMatch("X-200", "X-2000"));
  EXPECT_FALSE(GlobMatch("acme", "acme-east"));
  EXPECT_TRUE(GlobMatch("acme*", "acme-east"));
  // Many stars against a long text stays quick (no exponential backtracking).
  EXPECT_FALSE(GlobMatch("*a*a*a*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST(Router, FirstMatchWinsContinueAddsDefaultsWhenNothingMatches) {
  Router router({{.customer = "ACME", .model = "X-*", .min_severity = Severity::kCritical,
                  .groups = {"acme-critical"}},
                 {.customer = "ACME", .groups = {"acme"}, .continue_matching = true},
                 {.site = "plant-*", .groups = {"plants", "acme"}},
                 {.customer = "*", .min_severity = Severity::kError, .groups = {"everyone-else"}}},
                {"fallback"});
  using V = std::vector<std::string>;
  EXPECT_EQ(router.GroupsFor(Device(), Severity::kCritical), V{"acme-critical"});
  // Below critical: the continue route adds "acme", then the plant route matches and stops.
  EXPECT_EQ(router.GroupsFor(Device(), Severity::kError), (V{"acme", "plants"}));
  EXPECT_EQ(router.GroupsFor(Device("Other", "hq"), Severity::kError), V{"everyone-else"});
  EXPECT_EQ(router.GroupsFor(Device("Other", "hq"), Severity::kWarning), V{"fallback"});
  EXPECT_EQ(router.GroupsFor(Device("acme", "hq", "Y"), Severity::kInfo), V{"acme"});
}

// ---- On-call rotation ---------------------------------------------------------------------------

RotationSettings Weekly() {
  return {.name = "support",
          .engineers = {"alice", "bob", "carol"},
          .period = std::chrono::hours(24 * 7),
          .handover_time = 9h,
          .handover_weekday = 0,  // Monday
          .utc_offset = 60min,    // hand-over at 09:00 local = 08:00 UTC
          .start = sys_days(std::chrono::year{2026} / 1 / 1)};  // a Thursday
}

TEST(Rotation, HandOverAtTheExactBoundaryOnAFakeClock) {
  const Rotation rotation(Weekly());
  // The first Monday on or after the start, 09:00 at +01:00.
  EXPECT_EQ(rotation.anchor(), Utc(2026, 1, 5, 8));
  testing::FakeClock clock(Utc(2026, 1, 5, 8) - 1ms);
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "carol");  // the turn before the first counts back
  clock.Advance(1ms);
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "alice");
  EXPECT_EQ(rotation.NextHandover(clock.Now()), Utc(2026, 1, 12, 8));
  clock.Advance(std::chrono::hours(24 * 7) - 1ms);
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "alice");
  clock.Advance(1ms);
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "bob");
  clock.Advance(std::chrono::hours(24 * 7));
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "carol");
  clock.Advance(std::chrono::hours(24 * 7));
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "alice");
  // A year later the weeks still count from the anchor: 2027-01-04 is 52 weeks on, 52 % 3 = 1.
  EXPECT_EQ(rotation.OnCallAt(Utc(2027, 1, 4, 8)), "bob");
  EXPECT_EQ(rotation.OnCallAt(Utc(2027, 1, 4, 7, 59, 59)), "alice");
}

TEST(Rotation, OverridesWinInsideTheirSpanOnly) {
  RotationSettings settings = Weekly();
  settings.overrides = {{"dave", Utc(2026, 1, 7, 17), Utc(2026, 1, 8, 8)}};
  const Rotation rotation(settings);
  testing::FakeClock clock(Utc(2026, 1, 7, 17) - 1s);
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "alice");
  clock.Advance(1s);
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "dave");
  clock.Advance(15h - 1ms);
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "dave");
  clock.Advance(1ms);
  EXPECT_EQ(rotation.OnCallAt(clock.Now()), "alice");
}

TEST(Rotation, ShortShiftsInUtcWithoutWeekday) {
  const Rotation rotation({.name = "follow-the-sun",
                           .engineers = {"emea", "amer"},
                           .period = 12h,
                           .handover_time = 6h,
                           .handover_weekday = std::nullopt,
                           .utc_offset = 0min,
                           .start = sys_days(std::chrono::year{2026} / 3 / 4)});
  EXPECT_EQ(rotation.anchor(), Utc(2026, 3, 4, 6));
  EXPECT_EQ(rotation.OnCallAt(Utc(2026, 3, 4, 6)), "emea");
  EXPECT_EQ(rotation.OnCallAt(Utc(2026, 3, 4, 17, 59, 59)), "emea");
  EXPECT_EQ(rotation.OnCallAt(Utc(2026, 3, 4, 18)), "amer");
  EXPECT_EQ(rotation.OnCallAt(Utc(2026, 3, 5, 5, 59, 59)), "amer");
  EXPECT_EQ(rotation.OnCallAt(Utc(2026, 3, 5, 6)), "emea");
  // Before the start, turns count backwards: 03-01 06:00 is turn -6 (emea), 18:00 turn -5.
  EXPECT_EQ(rotation.OnCallAt(Utc(2026, 3, 1, 12)), "emea");
  EXPECT_EQ(rotation.OnCallAt(Utc(2026, 3, 1, 20)), "amer");
}

TEST(Rotation, Parsers) {
  EXPECT_EQ(ParseTimeOfDay("09:00"), 9h);
  EXPECT_EQ(ParseTimeOfDay("9:30"), 9h + 30min);
  EXPECT_FALSE(ParseTimeOfDay("24:00"));
  EXPECT_FALSE(ParseTimeOfDay("0900"));
  EXPECT_EQ(ParseUtcOffset("UTC"), 0min);
  EXPECT_EQ(ParseUtcOffset("+02:00"), 120min);
  EXPECT_EQ(ParseUtcOffset("-0530"), -330min);
  EXPECT_FALSE(ParseUtcOffset("CET"));
  EXPECT_EQ(ParseWeekday("Sunday"), 6);
  EXPECT_EQ(ParseWeekday("tue"), 1);
  EXPECT_FALSE(ParseWeekday("someday"));
  EXPECT_FALSE(ParseDate("2026-02-30"));
  EXPECT_EQ(ParseDateTime("2026-03-01T09:00", 60min), Utc(2026, 3, 1, 8));
  EXPECT_EQ(ParseDateTime("2026-03-01 09:00:30Z", 60min), Utc(2026, 3, 1, 9, 0, 30));
  EXPECT_EQ(ParseDateTime("2026-03-01T09:00-05:00", 60min), Utc(2026, 3, 1, 14));
  EXPECT_FALSE(ParseDateTime("2026-03-01", 0min));
}

// ---- Escalation ---------------------------------------------------------------------------------

EscalationPolicy Policy() {
  return {.levels = {{.after = 15min}, {.after = 60min, .groups = {"management"}}},
          .repeat = 30min};
}

/// Plays the periodic job: what is due now, recorded as sent at now.
std::vector<DueEscalation> Tick(const EscalationPolicy& policy, TicketProgress& ticket,
                                const Clock& clock) {
  auto due = DueEscalations(policy, ticket, clock.NowUnixMillis());
  for (const auto& d : due) {
    ticket.last_sent_ms[d.level] = clock.NowUnixMillis();
  }
  return due;
}

TEST(Escalation, LevelsAndRepeatOnAFakeClock) {
  const EscalationPolicy policy = Policy();
  testing::FakeClock clock(Utc(2026, 5, 1, 10));
  TicketProgress ticket{.opened_ms = clock.NowUnixMillis()};
  using V = std::vector<DueEscalation>;
  EXPECT_EQ(Tick(policy, ticket, clock), (V{{0, false}}));  // the notification at open
  EXPECT_EQ(Tick(policy, ticket, clock), V{});
  EXPECT_EQ(NextEscalationCheck(policy, ticket, clock.NowUnixMillis()), Ms(Utc(2026, 5, 1, 10, 15)));
  clock.Advance(15min - 1ms);
  EXPECT_EQ(Tick(policy, ticket, clock), V{});
  clock.Advance(1ms);
  EXPECT_EQ(Tick(policy, ticket, clock), (V{{1, false}}));
  // Reminders repeat the highest level reached, 30 min after it was last told.
  clock.Advance(30min - 1ms);
  EXPECT_EQ(Tick(policy, ticket, clock), V{});
  clock.Advance(1ms);  // 10:45
  EXPECT_EQ(Tick(policy, ticket, clock), (V{{1, true}}));
  // Level 2 at 11:00 comes before the next reminder (11:15) and replaces it.
  EXPECT_EQ(NextEscalationCheck(policy, ticket, clock.NowUnixMillis()), Ms(Utc(2026, 5, 1, 11)));
  clock.Advance(15min);
  EXPECT_EQ(Tick(policy, ticket, clock), (V{{2, false}}));
  clock.Advance(30min);
  EXPECT_EQ(Tick(policy, ticket, clock), (V{{2, true}}));
  // Acknowledged: nothing more, ever.
  ticket.acknowledged = true;
  clock.Advance(5h);
  EXPECT_EQ(Tick(policy, ticket, clock), V{});
  EXPECT_EQ(NextEscalationCheck(policy, ticket, clock.NowUnixMillis()), std::nullopt);
}

TEST(Escalation, AJobThatWasDownCatchesUpAndAReopenStartsOver) {
  const EscalationPolicy policy = Policy();
  testing::FakeClock clock(Utc(2026, 5, 1, 10));
  TicketProgress ticket{.opened_ms = clock.NowUnixMillis()};
  ticket.last_sent_ms[0] = clock.NowUnixMillis();
  clock.Advance(2h);
  using V = std::vector<DueEscalation>;
  EXPECT_EQ(Tick(policy, ticket, clock), (V{{1, false}, {2, false}}));
  // Resolved: nothing due.
  ticket.open = false;
  clock.Advance(1h);
  EXPECT_EQ(Tick(policy, ticket, clock), V{});
  // Reopened: a new episode; earlier notifications do not count.
  ticket.open = true;
  ticket.opened_ms = clock.NowUnixMillis();
  EXPECT_EQ(Tick(policy, ticket, clock), (V{{0, false}}));
  clock.Advance(15min);
  EXPECT_EQ(Tick(policy, ticket, clock), (V{{1, false}}));
}

TEST(Escalation, NoLevelsNoRepeatMeansOnlyTheFirstNotification) {
  const EscalationPolicy policy;
  testing::FakeClock clock(Utc(2026, 5, 1, 10));
  TicketProgress ticket{.opened_ms = clock.NowUnixMillis()};
  EXPECT_EQ(Tick(policy, ticket, clock).size(), 1u);
  clock.Advance(24h);
  EXPECT_TRUE(Tick(policy, ticket, clock).empty());
  EXPECT_EQ(NextEscalationCheck(policy, ticket, clock.NowUnixMillis()), std::nullopt);
}

// ---- Config and plan ----------------------------------------------------------------------------

constexpr const char* kConfig = R"(
[[notify.webhook]]
name = "ops-slack"
url = "https://hooks.example/services/T0/B0/x"
format = "slack"

[[notify.webhook]]
name = "pager"
url = "http://127.0.0.1:9/hook"
secret = "whsec-test"

[notify.sms]
gateway_url = "https://sms.example/send"
format = "json"
token = "tok"

[[notify.contact]]
name = "alice"
email = "alice@vendor.example"
sms = "+491701"

[[notify.contact]]
name = "bob"
email = "bob@vendor.example"
sms_email = "491702@sms.example"

[[notify.contact]]
name = "carol"
email = "carol@vendor.example"
webhooks = ["pager"]

[[notify.contact]]
name = "boss"
email = "boss@vendor.example"

[[notify.group]]
name = "oncall"
rotation = "support"
management = ["boss"]
webhooks = ["ops-slack"]

[[notify.group]]
name = "management"
members = ["boss"]

[[notify.route]]
customer = "ACME"
model = "X-*"
min_severity = "error"
groups = ["oncall"]

[notify]
default_groups = ["management"]

[[notify.rotation]]
name = "support"
engineers = ["alice", "bob", "carol"]
period = "7d"
handover_time = "09:00"
handover_weekday = "monday"
utc_offset = "+01:00"
start = "2026-01-01"
[[notify.rotation.override]]
engineer = "carol"
from = "2026-01-06T18:00"
until = "2026-01-07T09:00"

[notify.escalation]
repeat = "30m"
[[notify.escalation.level]]
after = "15m"
everyone = true
[[notify.escalation.level]]
after = "1h"
groups = ["management"]
)";

CompiledNotify Compile(const std::string& toml) {
  NotifyConfig config;
  config::Schema schema;
  AddNotifySchema(schema, config);
  schema.LoadString(toml, "home.toml");
  return CompileNotifyConfig(config, "home.toml");
}

TicketEvent Event(EventKind kind = EventKind::kOpened, int level = 0) {
  return {.kind = kind,
          .ticket_number = "LL-000042",
          .device = Device(),
          .code = "SIM-3A21",
          .severity = Severity::kCritical,
          .text = "disk <failing> & hot",
          .first_seen_ms = Ms(Utc(2026, 1, 6, 10)),
          .last_seen_ms = Ms(Utc(2026, 1, 6, 10, 5)),
          .occurrences = 3,
          .event_ms = Ms(Utc(2026, 1, 6, 10, 5)),
          .escalation_level = level};
}

std::vector<std::string> Targets(const std::vector<Delivery>& deliveries) {
  std::vector<std::string> out;
  for (const auto& d : deliveries) {
    out.push_back(d.kind + ":" + d.recipient);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(NotifyPlan, OnCallAtOpenEveryoneAndManagementOnEscalation) {
  const CompiledNotify notify = Compile(kConfig);
  using V = std::vector<std::string>;
  const TimePoint tuesday = Utc(2026, 1, 6, 10);  // alice's week
  EXPECT_EQ(notify.plan.OnCall("oncall", tuesday), "alice");
  EXPECT_EQ(Targets(notify.plan.Plan(Event(), tuesday)),
            (V{"email:alice@vendor.example", "sms:+491701", "webhook:ops-slack"}));
  // The override: carol covers Tuesday evening; her webhook comes along.
  EXPECT_EQ(Targets(notify.plan.Plan(Event(), Utc(2026, 1, 6, 20))),
            (V{"email:carol@vendor.example", "webhook:ops-slack", "webhook:pager"}));
  // Level 1: everyone in the rotation, and management (the group says "escalation").
  EXPECT_EQ(Targets(notify.plan.Plan(Event(EventKind::kEscalated, 1), tuesday)),
            (V{"email:alice@vendor.example", "email:bob@vendor.example",
               "email:boss@vendor.example", "email:carol@vendor.example", "sms-email:491702@sms.example",
               "sms:+491701", "webhook:ops-slack", "webhook:pager"}));
  // Level 2: the management group only.
  EXPECT_EQ(Targets(notify.plan.Plan(Event(EventKind::kReminder, 2), tuesday)),
            V{"email:boss@vendor.example"});
  // Resolved after reaching level 2: everyone told at levels 0..2 hears of it, once each.
  const auto resolved = notify.plan.Plan(Event(EventKind::kResolved, 2), tuesday);
  EXPECT_EQ(resolved.size(), 8u);
  // Unrouted tickets go to the default group.
  TicketEvent other = Event();
  other.device.customer = "Globex";
  EXPECT_EQ(Targets(notify.plan.Plan(other, tuesday)), V{"email:boss@vendor.example"});
}

TEST(NotifyPlan, BodiesPerChannel) {
  const CompiledNotify notify = Compile(kConfig);
  for (const auto& d : notify.plan.Plan(Event(EventKind::kEscalated, 1), Utc(2026, 1, 6, 10))) {
    if (d.kind == kKindEmail) {
      EXPECT_EQ(d.subject, "[Lifeline LL-000042] escalated: critical SIM-3A21 on ACME/plant-1/SN123");
      EXPECT_NE(d.body.find("escalated to level 1"), std::string::npos) << d.body;
    } else if (d.kind == kKindSms || d.kind == kKindSmsEmail) {
      EXPECT_EQ(d.body, "LL-000042 escalated CRITICAL SIM-3A21 ACME/plant-1/SN123: disk <failing> & hot");
    } else if (d.recipient == "ops-slack") {
      EXPECT_TRUE(json::parse(d.body).as_object().contains("blocks")) << d.body;
    } else {
      EXPECT_EQ(json::parse(d.body).at("event"), "escalated") << d.body;
    }
  }
  EXPECT_EQ(notify.dispatcher.webhooks.size(), 2u);
  EXPECT_EQ(notify.dispatcher.webhooks[1].secret, "whsec-test");
  EXPECT_EQ(notify.dispatcher.sms_gateway.bearer_token, "tok");
  EXPECT_EQ(notify.dispatcher.sms_gateway.format, SmsBodyFormat::kJson);
  EXPECT_EQ(notify.give_up_after, 48h);
}

TEST(NotifyConfig, ReferencesAndValuesAreChecked) {
  auto error_of = [](const std::string& toml) -> std::string {
    try {
      Compile(toml);
    } catch (const config::ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_EQ(error_of("[[notify.contact]]\nname = \"a\"\nemail = \"a@x\"\n"
                     "[[notify.group]]\nname = \"g\"\nmembers = [\"a\", \"zed\"]\n"),
            "home.toml: key 'notify.group[0].members': 'zed' is not a declared [[notify.contact]]");
  EXPECT_EQ(error_of("[[notify.route]]\ngroups = [\"nope\"]\n"),
            "home.toml: key 'notify.route[0].groups': 'nope' is not a declared [[notify.group]]");
  EXPECT_EQ(error_of("[[notify.contact]]\nname = \"a\"\nemail = \"a@x\"\n"
                     "[[notify.rotation]]\nname = \"r\"\nengineers = [\"a\"]\nhandover_time = \"9h\"\n"),
            "home.toml: key 'notify.rotation[0].handover_time': must be HH:MM, e.g. \"09:00\"");
  EXPECT_EQ(error_of("[[notify.escalation.level]]\nafter = \"1h\"\n"
                     "[[notify.escalation.level]]\nafter = \"30m\"\n"),
            "home.toml: key 'notify.escalation.level[1].after': levels must come in order of "
            "increasing `after`");
  EXPECT_EQ(error_of("[[notify.webhook]]\nname = \"w\"\nurl = \"ftp://x\"\n"),
            "home.toml: key 'notify.webhook[0].url': must start with http:// or https://");
  EXPECT_EQ(error_of("[[notify.contact]]\nname = \"a\"\nsms = \"+1\"\n"),
            "home.toml: key 'notify.contact[0].sms': needs notify.sms.gateway_url (or use sms_email)");
  EXPECT_NE(error_of("[[notify.group]]\nname = \"g\"\nmembrs = [\"a\"]\n").find("unknown key"),
            std::string::npos);
  EXPECT_NE(error_of("[[notify.webhook]]\nname = \"w\"\nurl = \"http://x\"\nformat = \"teams\"\n")
                .find("not one of: generic, slack"),
            std::string::npos);
}

TEST(NotifyConfig, SecretsFromTheEnvironmentAndCoexistingKeys) {
  setenv("LIFELINE_TEST_HOOK_SECRET", "from-env", 1);
  NotifyConfig config;
  std::vector<std::string> emails;  // home_config's own notify.email lives beside ours
  config::Schema schema;
  schema.StringList("notify.email", &emails, "addresses");
  AddNotifySchema(schema, config);
  schema.LoadString(
      "[notify]\nemail = [\"ops@x\"]\ngive_up_after = \"1d\"\n"
      "[[notify.webhook]]\nname = \"w\"\nurl = \"http://x\"\nsecret_env = \"LIFELINE_TEST_HOOK_SECRET\"\n",
      "home.toml");
  EXPECT_EQ(emails, std::vector<std::string>{"ops@x"});
  const CompiledNotify notify = CompileNotifyConfig(config, "home.toml");
  ASSERT_EQ(notify.dispatcher.webhooks.size(), 1u);
  EXPECT_EQ(notify.dispatcher.webhooks[0].secret, "from-env");
  EXPECT_EQ(notify.give_up_after, 24h);
  EXPECT_NE(schema.Describe().find("notify.rotation"), std::string::npos);
}

TEST(NotifyConfig, TheDocumentedExampleLoads) {
  const std::string doc = lifeline::testing::ReadFile(std::string(LIFELINE_SOURCE_DIR) + "/docs/notifications.md");
  const std::size_t begin = doc.find("```toml\n");
  ASSERT_NE(begin, std::string::npos);
  const std::size_t end = doc.find("```", begin + 8);
  ASSERT_NE(end, std::string::npos);
  setenv("PAGER_HOOK_SECRET", "pager-secret", 1);
  setenv("SMS_GATEWAY_TOKEN", "sms-token", 1);
  const CompiledNotify notify = Compile(doc.substr(begin + 8, end - begin - 8));
  EXPECT_EQ(notify.dispatcher.webhooks.at(1).secret, "pager-secret");
  EXPECT_EQ(notify.dispatcher.sms_gateway.bearer_token, "sms-token");
  EXPECT_EQ(notify.give_up_after, 48h);
  // From Monday 2026-03-02 09:00 +01:00 it is alice's turn (week 8), but bob covers it.
  const Rotation* support = notify.plan.FindRotation("support");
  ASSERT_NE(support, nullptr);
  EXPECT_EQ(support->TurnAt(Utc(2026, 3, 2, 8)), 0u);
  EXPECT_EQ(notify.plan.OnCall("oncall", Utc(2026, 3, 2, 8)), "bob");
  EXPECT_EQ(notify.plan.OnCall("oncall", Utc(2026, 3, 9, 7, 59)), "bob");
  EXPECT_EQ(notify.plan.OnCall("oncall", Utc(2026, 3, 16, 8)), "alice");  // week 10
  EXPECT_EQ(notify.plan.escalation().levels.size(), 2u);
}

// ---- Rendering ----------------------------------------------------------------------------------

TEST(Render, GenericJsonCarriesTheTicket) {
  TicketEvent event = Event();
  event.resolved_at_ms = std::nullopt;
  const json::object body = json::parse(GenericJson(event)).as_object();
  EXPECT_EQ(body.at("version"), 1);
  EXPECT_EQ(body.at("event"), "opened");
  EXPECT_EQ(body.at("event_time"), "2026-01-06T10:05:00.000Z");
  const auto& ticket = body.at("ticket").as_object();
  EXPECT_EQ(ticket.at("number"), "LL-000042");
  EXPECT_EQ(ticket.at("state"), "open");
  EXPECT_EQ(ticket.at("code"), "SIM-3A21");
  EXPECT_EQ(ticket.at("severity"), "critical");
  EXPECT_EQ(ticket.at("text"), "disk <failing> & hot");
  EXPECT_EQ(ticket.at("first_seen"), "2026-01-06T10:00:00.000Z");
  EXPECT_TRUE(ticket.at("resolved_at").is_null());
  EXPECT_EQ(ticket.at("occurrences"), 3);
  const auto& device = body.at("device").as_object();
  EXPECT_EQ(device.at("customer"), "ACME");
  EXPECT_EQ(device.at("site"), "plant-1");
  EXPECT_EQ(device.at("serial"), "SN123");
  EXPECT_EQ(device.at("model"), "X-200");
}

TEST(Render, SlackEscapesMarkupAndRespectsLimits) {
  TicketEvent event = Event();
  event.text = "<!channel> " + std::string(5000, 'x');
  const json::object body = json::parse(SlackJson(event)).as_object();
  const std::string text(body.at("text").as_string());
  EXPECT_EQ(text.find("<!channel>"), std::string::npos) << text;
  EXPECT_NE(text.find("&lt;!channel&gt;"), std::string::npos);
  const auto& blocks = body.at("blocks").as_array();
  ASSERT_EQ(blocks.size(), 4u);
  EXPECT_EQ(blocks[0].at("type"), "header");
  EXPECT_LE(blocks[0].at("text").at("text").as_string().size(), 150u);
  const std::string section(blocks[2].at("text").at("text").as_string());
  EXPECT_LE(section.size(), 3000u);
  EXPECT_EQ(section.rfind("&lt;!channel&gt;", 0), 0u);
  EXPECT_EQ(blocks[1].at("fields").as_array().size(), 6u);
}

TEST(Render, SmsTextIsOneLineOfAtMost160Characters) {
  TicketEvent event = Event();
  event.text = "Lüfter ausgefallen\r\nTemperatur steigt " + std::string(300, 'z');
  const std::string text = SmsText(event);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  std::size_t chars = 0;
  for (unsigned char c : text) {
    chars += (c & 0xC0) != 0x80;
  }
  EXPECT_EQ(chars, 160u);
  EXPECT_TRUE(text.ends_with("…"));
  EXPECT_EQ(text.rfind("LL-000042 CRITICAL SIM-3A21 ACME/plant-1/SN123: Lüfter ausgefallen Temperatur", 0), 0u)
      << text;
  EXPECT_EQ(OneLine("short", 160), "short");
  EXPECT_EQ(OneLine("abcdef", 4), "abc…");
}

// ---- Classification and signature --------------------------------------------------------------

TEST(Outcome, OneFunctionPerChannelSortsRetryFromDrop) {
  EXPECT_EQ(ClassifyHttpStatus(200), Outcome::kSent);
  EXPECT_EQ(ClassifyHttpStatus(204), Outcome::kSent);
  for (int status : {408, 429, 500, 502, 503, 504}) {
    EXPECT_EQ(ClassifyHttpStatus(status), Outcome::kRetry) << status;
  }
  for (int status : {301, 400, 401, 403, 404, 410, 413, 422}) {
    EXPECT_EQ(ClassifyHttpStatus(status), Outcome::kPermanent) << status;
  }
  EXPECT_EQ(ClassifyTransferError(7), Outcome::kRetry);    // couldn't connect
  EXPECT_EQ(ClassifyTransferError(28), Outcome::kRetry);   // timeout
  EXPECT_EQ(ClassifyTransferError(6), Outcome::kRetry);    // couldn't resolve host
  EXPECT_EQ(ClassifyTransferError(60), Outcome::kRetry);   // peer certificate
  EXPECT_EQ(ClassifyTransferError(3), Outcome::kPermanent);  // malformed URL
  EXPECT_EQ(ClassifyTransferError(1), Outcome::kPermanent);  // unsupported protocol
  EXPECT_EQ(ClassifyMailFailure(MailErrc::kInvalidMessage, ""), Outcome::kPermanent);
  EXPECT_EQ(ClassifyMailFailure(MailErrc::kSmtpFailed,
                                "Failed sending data to the peer (curl error 55, server reply 550)"),
            Outcome::kPermanent);
  EXPECT_EQ(ClassifyMailFailure(MailErrc::kSmtpFailed,
                                "Couldn't connect to server (curl error 7, server reply 0)"),
            Outcome::kRetry);
  EXPECT_EQ(ClassifyMailFailure(MailErrc::kSmtpFailed, "Login denied (curl error 67, server reply 535)"),
            Outcome::kRetry);
}

TEST(Webhook, SignatureMatchesAnIndependentHmac) {
  // Python: hmac.new(b"whsec-test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
  EXPECT_EQ(WebhookSignature("whsec-test", 1700000000, R"({"a":1})"),
            "sha256=fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd1ded6565ac05cece");
  EXPECT_NE(WebhookSignature("whsec-test", 1700000001, R"({"a":1})"),
            WebhookSignature("whsec-test", 1700000000, R"({"a":1})"));
}

}  // namespace
}  // namespace lifeline::home::notify
