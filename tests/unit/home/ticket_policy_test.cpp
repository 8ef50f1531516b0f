// [tickets] in home.toml: deduplication rules (templates, first match wins, refused templates), storm
// and reopen settings, and the [notify] sections loading through HomeConfig.
#include "home/home_config.h"
#include "home/ticket_policy.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

namespace lifeline::home {
namespace {

const protocol::DeviceIdentity kDevice{"ACME", "berlin-1", "SN-42", "X-200"};

TEST(TicketPolicy, DedupKeysExpandTheFirstMatchingRule) {
  const std::vector<DedupRule> rules = {{"LINK-*", "{site}/{code}"},
                                        {"fan-?", "{device}/fans"},
                                        {"*", "{customer}/{model}/{serial}:{code}"}};
  EXPECT_EQ(DedupKey(rules, kDevice, "LINK-DOWN"), "ACME/berlin-1/LINK-DOWN");
  EXPECT_EQ(DedupKey(rules, kDevice, "FAN-1"), "ACME/berlin-1/SN-42/fans");  // globs ignore case
  EXPECT_EQ(DedupKey(rules, kDevice, "SIM-3A"), "ACME/X-200/SN-42:SIM-3A");
  EXPECT_EQ(DedupKey({}, kDevice, "SIM-3A"), "ACME/berlin-1/SN-42/SIM-3A");
  // A code that looks like a placeholder is data, not a template.
  EXPECT_EQ(DedupKey({}, kDevice, "{site}"), "ACME/berlin-1/SN-42/{site}");
}

TEST(TicketPolicy, TemplatesThatCouldSpanCustomersOrHaveTyposAreRefused) {
  EXPECT_NO_THROW(CheckDedupRules({{"*", "{site}/{code}"}}, "home.toml"));
  try {
    CheckDedupRules({{"*", "{device}/{code}"}, {"X*", "{code}"}}, "home.toml");
    FAIL() << "a key without the customer was accepted";
  } catch (const config::ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "home.toml: key 'tickets.dedup[1].key': must contain {device}, {site} or {customer}: a ticket never "
                 "spans customers");
  }
  EXPECT_THROW(CheckDedupRules({{"*", "{devise}/{code}"}}, "home.toml"), config::ConfigError);
  EXPECT_THROW(CheckDedupRules({{"", "{device}"}}, "home.toml"), config::ConfigError);
}

TEST(TicketPolicy, HomeTomlTicketsAndNotifySections) {
  testing::TempDir dir;
  const auto file = dir / "home.toml";
  testing::WriteFile(file, R"(
[notify]
email = ["oncall@example.com"]
default_groups = ["team"]
[[notify.contact]]
name = "alice"
email = "alice@example.com"
[[notify.group]]
name = "team"
members = ["alice"]
[[notify.escalation.level]]
after = "15m"
[tickets]
reopen_window = "2h"
storm.max_alerts = 25
storm.window = "10m"
storm.maintenance = "1h"
escalation_check = "5s"
[[tickets.dedup]]
code = "LINK-*"
key = "{site}/{code}"
)");
  const HomeConfig config = HomeConfig::Load(file);
  EXPECT_EQ(config.reopen_window, std::chrono::hours(2));
  EXPECT_EQ(config.storm_max_alerts, 25);
  EXPECT_EQ(config.storm_window, std::chrono::minutes(10));
  EXPECT_EQ(config.storm_maintenance, std::chrono::hours(1));
  EXPECT_EQ(config.escalation_check, std::chrono::seconds(5));
  ASSERT_EQ(config.dedup.size(), 1u);
  EXPECT_EQ(DedupKey(config.dedup, kDevice, "LINK-7"), "ACME/berlin-1/LINK-7");
  ASSERT_NE(config.compiled_notify.plan.FindGroup("team"), nullptr);
  EXPECT_EQ(config.compiled_notify.plan.escalation().levels.size(), 1u);

  // The seeds' defaults when [tickets] is absent.
  testing::WriteFile(file, "[notify]\nemail = []\n");
  const HomeConfig defaults = HomeConfig::Load(file);
  EXPECT_EQ(defaults.storm_max_alerts, 10);
  EXPECT_EQ(defaults.storm_window, std::chrono::minutes(60));
  EXPECT_EQ(defaults.storm_maintenance, std::chrono::minutes(30));
  EXPECT_EQ(defaults.reopen_window, std::chrono::hours(24));

  testing::WriteFile(file, "[[tickets.dedup]]\ncode = \"*\"\nkey = \"{code}\"\n");
  EXPECT_THROW(HomeConfig::Load(file), config::ConfigError);
  testing::WriteFile(file, "[[notify.group]]\nname = \"g\"\nmembers = [\"nobody\"]\n");
  EXPECT_THROW(HomeConfig::Load(file), config::ConfigError);
}

}  // namespace
}  // namespace lifeline::home
