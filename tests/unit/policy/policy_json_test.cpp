#include "policy/policy_json.h"

#include <boost/json.hpp>

#include <gtest/gtest.h>

namespace lifeline::policy {
namespace {

using namespace std::chrono_literals;

TimePoint Ms(std::int64_t ms) { return TimePoint(std::chrono::milliseconds(ms)); }

PolicySet SampleSet() {
  PolicySet set;
  set.version = 42;
  set.groups = {{"rack-a", {"SN41000", "SN41001"}}, {"empty", {}}};
  Rule ask;
  ask.id = 7;
  ask.activity = Activity::kRemoteSession;
  ask.application = "ssh";
  ask.scope = {ScopeKind::kDevice, "SN41000"};
  ask.action = Action::kAskForApproval;
  ask.ask_timeout = 20min;
  ask.windows = {{kWeekdays, 9 * 60, 17 * 60, 60}, {kFriday | kSunday, 22 * 60, 6 * 60, -330}};
  ask.description = "ssh to the \"primary\" array\nneeds approval";
  Rule never;
  never.id = 8;
  never.activity = Activity::kConfigurationChange;
  never.scope = {ScopeKind::kGroup, "rack-a"};
  never.action = Action::kNeverAllow;
  Rule site;
  site.id = 9;
  site.activity = Activity::kConnectHome;
  site.action = Action::kAlwaysAllow;
  Rule model;
  model.id = 10;
  model.scope = {ScopeKind::kModel, "VSP G900"};
  model.action = Action::kAlwaysAllow;
  model.windows = {{kEveryDay, 0, 24 * 60, 0}};
  set.rules = {ask, never, site, model};
  Grant g;
  g.id = 3;
  g.engineer = "alice";
  g.scope = {ScopeKind::kDevice, "SN41000"};
  g.activities = {Activity::kRemoteSession, Activity::kFileTransfer};
  g.starts_at = Ms(1'795'000'000'000);
  g.ends_at = g.starts_at + 48h;
  g.overrides_never_allow = true;
  g.granted_by = "carol";
  g.reason = "SR-1234";
  Grant any;
  any.id = 4;
  any.scope = {ScopeKind::kSite, ""};
  any.application = "https";
  any.starts_at = Ms(1'795'000'000'123);
  any.ends_at = any.starts_at + 4h;
  set.grants = {g, any};
  return set;
}

TEST(PolicyJson, PolicySetRoundTrip) {
  const PolicySet original = SampleSet();
  ASSERT_TRUE(Validate(original).empty());
  const std::string text = EncodePolicySet(original);
  EXPECT_EQ(text.find('\n'), std::string::npos);  // one line: fit for JSON lines
  std::string why;
  auto decoded = DecodePolicySet(text, &why);
  ASSERT_TRUE(decoded) << why;
  EXPECT_EQ(*decoded, original);
  EXPECT_EQ(EncodePolicySet(*decoded), text);
}

TEST(PolicyJson, ReadableForm) {
  const auto o = ToJson(SampleSet().rules[0]);
  EXPECT_EQ(boost::json::serialize(o.at("windows").at(0)),
            R"({"days":["mon","tue","wed","thu","fri"],"from":"09:00","to":"17:00","utc_offset":"+01:00"})");
  EXPECT_EQ(o.at("windows").at(1).at("utc_offset"), "-05:30");
  EXPECT_EQ(o.at("action"), "ask_for_approval");
  EXPECT_EQ(o.at("ask_timeout_s"), 1200);
  EXPECT_EQ(boost::json::serialize(ToJson(SampleSet().rules[2]).at("scope")), R"({"kind":"site"})");
  // Allow and Never rules carry no timeout; "any" is the absence of the field.
  EXPECT_FALSE(ToJson(SampleSet().rules[1]).contains("ask_timeout_s"));
  EXPECT_FALSE(ToJson(SampleSet().rules[1]).contains("application"));
  EXPECT_FALSE(ToJson(SampleSet().grants[1]).contains("engineer"));
}

TEST(PolicyJson, MinimalDocumentsTakeDefaults) {
  std::string why;
  auto rule = RuleFromJson(boost::json::parse(R"({"id":1,"activity":"remote_session",
      "application":"*","scope":{"kind":"site"},"action":"ask_for_approval"})"),
                           &why);
  ASSERT_TRUE(rule) << why;
  EXPECT_EQ(rule->application, "");
  EXPECT_EQ(rule->ask_timeout, kDefaultAskTimeout);
  EXPECT_TRUE(rule->windows.empty());

  auto window = TimeWindowFromJson(boost::json::parse(R"({"days":["sat","sun"],"from":"22:00",
      "to":"24:00"})"),
                                   &why);
  ASSERT_TRUE(window) << why;
  EXPECT_EQ(window->days, kSaturday | kSunday);
  EXPECT_EQ(window->to_minute, 1440);
  EXPECT_EQ(window->utc_offset_minutes, 0);

  auto set = DecodePolicySet(R"({"version":1})", &why);
  ASSERT_TRUE(set) << why;
  EXPECT_TRUE(set->rules.empty());
}

TEST(PolicyJson, MalformedDocumentsSayWhat) {
  const std::pair<const char*, const char*> cases[] = {
      {"[1,2]", "policy must be a JSON object"},
      {"{\"version\":", "not valid JSON"},
      {R"({"rules":[]})", "policy.version is missing"},
      {R"({"version":-1})", "policy.version must not be negative"},
      {R"({"version":1,"rules":{}})", "policy.rules must be an array"},
      {R"({"version":1,"rules":[{"id":"7"}]})", "policy.rules[0] rule.id must be an integer"},
      {R"({"version":1,"rules":[{"id":7,"activity":"telnet"}]})",
       "policy.rules[0] rule.activity has an unknown value 'telnet'"},
      {R"({"version":1,"rules":[{"id":7,"activity":"file_transfer","scope":{"kind":"device"}}]})",
       "policy.rules[0] rule.scope.name is missing"},
      {R"({"version":1,"rules":[{"id":7,"activity":"file_transfer","scope":{"kind":"site"},
          "action":"maybe"}]})",
       "policy.rules[0] rule.action has an unknown value 'maybe'"},
      {R"({"version":1,"rules":[{"id":7,"activity":"file_transfer","scope":{"kind":"site"},
          "action":"never_allow","windows":[{"days":["mon"],"from":"9:00","to":"17:00"}]}]})",
       "policy.rules[0] rule.windows[0] window.from must be HH:MM"},
      {R"({"version":1,"rules":[{"id":7,"activity":"file_transfer","scope":{"kind":"site"},
          "action":"never_allow","windows":[{"days":["monday"],"from":"09:00","to":"17:00"}]}]})",
       "policy.rules[0] rule.windows[0] window.days has an unknown day 'monday' (mon, tue, ... sun)"},
      {R"({"version":1,"rules":[{"id":7,"activity":"file_transfer","scope":{"kind":"site"},
          "action":"never_allow","windows":[{"days":["mon"],"from":"09:00","to":"24:30"}]}]})",
       "policy.rules[0] rule.windows[0] window.to must be HH:MM (24:00 for the end of the day)"},
      {R"({"version":1,"grants":[{"id":1,"scope":{"kind":"site"},"activities":["scp"],
          "starts_at_ms":0,"ends_at_ms":1}]})",
       "policy.grants[0] grant.activities has an unknown activity 'scp'"},
      {R"({"version":1,"grants":[{"id":1,"scope":{"kind":"site"},"activities":[],
          "starts_at_ms":1e300,"ends_at_ms":1}]})",
       "policy.grants[0] grant.starts_at_ms must be an integer"},
      {R"({"version":1,"grants":[{"id":1,"scope":{"kind":"site"},"activities":[],
          "starts_at_ms":9223372036854775807,"ends_at_ms":1}]})",
       "policy.grants[0] grant.starts_at_ms is out of range"},
      {R"({"version":1,"groups":[{"name":"a","serials":[1]}]})",
       "policy.groups[0] group.serials[0] must be a short string"},
  };
  for (const auto& [text, expected] : cases) {
    std::string why;
    auto decoded = DecodePolicySet(text, &why);
    ASSERT_FALSE(decoded) << text;
    EXPECT_EQ(decoded.error(), make_error_code(PolicyError::kMalformed));
    EXPECT_EQ(why.substr(0, std::string_view(expected).size()), expected) << text;
  }
  // Shape is not meaning: an unknown group decodes, and Validate names it.
  std::string why;
  auto set = DecodePolicySet(R"({"version":1,"rules":[{"id":7,"activity":"file_transfer",
      "scope":{"kind":"group","name":"racks"},"action":"never_allow"}]})",
                             &why);
  ASSERT_TRUE(set) << why;
  ASSERT_EQ(Validate(*set).size(), 1u);
  EXPECT_EQ(Validate(*set)[0].error, PolicyError::kUnknownGroup);
}

TEST(PolicyJson, DecisionAndRequestRoundTrip) {
  std::string why;
  auto compiled = CompiledPolicy::Compile(SampleSet(), &why);
  ASSERT_TRUE(compiled) << why;
  DecisionRequest q;
  q.activity = Activity::kRemoteSession;
  q.application = "ssh";
  q.device_serial = "SN41000";
  q.device_model = "VSP G900";
  q.engineer = "bob";
  q.time = Ms(1'795'000'000'000);  // Wednesday 2026-11-18T11:06:40Z: in rule 7's office window
  auto request = DecisionRequestFromJson(ToJson(q), &why);
  ASSERT_TRUE(request) << why;
  EXPECT_EQ(request->device_serial, q.device_serial);
  EXPECT_EQ(request->time, q.time);
  EXPECT_EQ(request->application, "ssh");

  for (const auto& [engineer, time] : {std::pair{"bob", Ms(1'795'000'000'000)},
                                       std::pair{"alice", Ms(1'795'000'000'000)},
                                       std::pair{"bob", Ms(1'795'100'000'000)}}) {
    q.engineer = engineer;
    q.time = time;
    const Decision d = (*compiled)->Decide(q);
    auto decoded = DecodeDecision(EncodeDecision(d), &why);
    ASSERT_TRUE(decoded) << why;
    EXPECT_EQ(*decoded, d) << d.reason;
  }
  q.engineer = "alice";
  q.time = Ms(1'795'000'000'000);
  const auto o = ToJson((*compiled)->Decide(q));
  EXPECT_EQ(o.at("decided_by"), "grant");
  EXPECT_EQ(o.at("grant_id"), 3);
  EXPECT_EQ(o.at("rule_id"), 7);
}

TEST(PolicyJson, TimeTextHelpers) {
  EXPECT_EQ(ParseMinuteOfDay("00:00"), 0);
  EXPECT_EQ(ParseMinuteOfDay("23:59"), 1439);
  EXPECT_EQ(ParseMinuteOfDay("24:00"), 1440);
  EXPECT_FALSE(ParseMinuteOfDay("24:01"));
  EXPECT_FALSE(ParseMinuteOfDay("12:60"));
  EXPECT_FALSE(ParseMinuteOfDay("1200"));
  EXPECT_EQ(FormatMinuteOfDay(1440), "24:00");
  EXPECT_EQ(ParseUtcOffset("Z"), 0);
  EXPECT_EQ(ParseUtcOffset("+05:45"), 345);
  EXPECT_EQ(ParseUtcOffset("-09:30"), -570);
  EXPECT_FALSE(ParseUtcOffset("05:00"));
  EXPECT_EQ(FormatUtcOffset(-570), "-09:30");
  EXPECT_EQ(FormatUtcOffset(0), "Z");
}

}  // namespace
}  // namespace lifeline::policy
