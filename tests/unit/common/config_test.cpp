#include "common/config.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace lifeline::config {
namespace {

struct Rule {
  std::string pattern;
  std::int64_t count = 1;
};

struct Sample {
  std::string name = "default-name";
  std::int64_t port = 9455;
  bool enabled = true;
  std::chrono::seconds interval{60};
  std::string password;
  std::string mode = "auto";
  std::vector<std::string> contacts;
  std::vector<Rule> rules;

  Schema MakeSchema() {
    Schema s;
    s.String("name", &name, "a name")
        .Int("listen.port", &port, 1, 65535, "a port")
        .Bool("listen.enabled", &enabled, "on or off")
        .Duration("interval", &interval, std::chrono::seconds(1), std::chrono::hours(24), "how often")
        .Secret("smtp.password", &password, "a secret")
        .StringList("contacts", &contacts, "who")
        .Choice("mode", &mode, {"auto", "on", "off"}, "a choice")
        .TableArray<Rule>("rules", &rules,
                          [](Schema& item, Rule& rule) {
                            item.RequiredString("pattern", &rule.pattern, "regex")
                                .Int("count", &rule.count, 1, 100, "how many");
                          },
                          "rules");
    return s;
  }
};

std::string LoadError(const std::string& toml) {
  Sample sample;
  auto schema = sample.MakeSchema();
  try {
    schema.LoadString(toml, "/etc/lifeline/test.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsStayWhenKeysAreAbsent) {
  Sample sample;
  auto schema = sample.MakeSchema();
  schema.LoadString("", "empty.toml");
  EXPECT_EQ(sample.name, "default-name");
  EXPECT_EQ(sample.port, 9455);
  EXPECT_EQ(sample.interval, std::chrono::seconds(60));
}

TEST(Config, ReadsEveryKind) {
  Sample sample;
  auto schema = sample.MakeSchema();
  schema.LoadString(R"(
name = "n"
interval = "15m"
contacts = ["a@example.com", "b@example.com"]
[listen]
port = 8443
enabled = false
[smtp]
password = "inline"
[[rules]]
pattern = "ERR"
[[rules]]
pattern = "WARN"
count = 3
)", "x.toml");
  EXPECT_EQ(sample.name, "n");
  EXPECT_EQ(sample.port, 8443);
  EXPECT_FALSE(sample.enabled);
  EXPECT_EQ(sample.interval, std::chrono::minutes(15));
  EXPECT_EQ(sample.password, "inline");
  ASSERT_EQ(sample.contacts.size(), 2u);
  ASSERT_EQ(sample.rules.size(), 2u);
  EXPECT_EQ(sample.rules[1].pattern, "WARN");
  EXPECT_EQ(sample.rules[1].count, 3);
}

TEST(Config, UnknownKeyNamesKeyAndFile) {
  const auto error = LoadError("[listen]\nprot = 1\n");
  EXPECT_NE(error.find("/etc/lifeline/test.toml"), std::string::npos) << error;
  EXPECT_NE(error.find("'listen.prot'"), std::string::npos) << error;
  EXPECT_NE(error.find("unknown key"), std::string::npos) << error;
}

TEST(Config, UnknownTopLevelTableIsRejected) {
  EXPECT_NE(LoadError("[nonsense]\na = 1\n").find("'nonsense'"), std::string::npos);
}

TEST(Config, OutOfRangeValueNamesKeyAndBounds) {
  const auto error = LoadError("[listen]\nport = 70000\n");
  EXPECT_NE(error.find("'listen.port'"), std::string::npos) << error;
  EXPECT_NE(error.find("out of range"), std::string::npos) << error;
  EXPECT_NE(error.find("/etc/lifeline/test.toml"), std::string::npos) << error;
}

TEST(Config, WrongTypeIsRejected) {
  EXPECT_NE(LoadError("name = 5\n").find("must be a string"), std::string::npos);
  EXPECT_NE(LoadError("[listen]\nenabled = \"yes\"\n").find("true or false"), std::string::npos);
  EXPECT_NE(LoadError("interval = \"soon\"\n").find("'interval'"), std::string::npos);
  EXPECT_NE(LoadError("interval = \"2d\"\n").find("out of range"), std::string::npos);
}

TEST(Config, ChoiceMustBeOneOfTheAllowed) {
  const auto error = LoadError("mode = \"sometimes\"\n");
  EXPECT_NE(error.find("'mode'"), std::string::npos) << error;
  EXPECT_NE(error.find("auto, on, off"), std::string::npos) << error;
  Sample sample;
  auto schema = sample.MakeSchema();
  schema.LoadString("mode = \"off\"\n", "x.toml");
  EXPECT_EQ(sample.mode, "off");
}

TEST(Config, ErrorsInsideTableArraysNameTheElement) {
  const auto error = LoadError("[[rules]]\npattern = \"x\"\ncolour = 1\n");
  EXPECT_NE(error.find("'rules[0].colour'"), std::string::npos) << error;
  EXPECT_NE(LoadError("[[rules]]\ncount = 2\n").find("'rules[0].pattern': is required"),
            std::string::npos);
}

TEST(Config, SyntaxErrorNamesFileAndLine) {
  const auto error = LoadError("name = \"unterminated\n");
  EXPECT_NE(error.find("/etc/lifeline/test.toml:1"), std::string::npos) << error;
}

TEST(Config, NumbersTakeFloatsAndIntegersWithinBounds) {
  double fraction = 0.5;
  Schema s;
  s.Number("site.fraction", &fraction, 0.0, 2.0, "a fraction");
  s.LoadString("[site]\nfraction = 0.75\n", "t.toml");
  EXPECT_DOUBLE_EQ(fraction, 0.75);
  s.LoadString("[site]\nfraction = 1\n", "t.toml");
  EXPECT_DOUBLE_EQ(fraction, 1.0);
  EXPECT_THROW(s.LoadString("[site]\nfraction = 2.5\n", "t.toml"), ConfigError);
  EXPECT_THROW(s.LoadString("[site]\nfraction = \"half\"\n", "t.toml"), ConfigError);
  EXPECT_NE(s.Describe().find("site.fraction"), std::string::npos);
}

TEST(Config, SecretFromFileDropsTrailingNewline) {
  testing::TempDir dir;
  testing::WriteFile(dir / "pw", "s3cret\n");
  Sample sample;
  auto schema = sample.MakeSchema();
  schema.LoadString("[smtp]\npassword_file = \"" + (dir / "pw").string() + "\"\n", "x.toml");
  EXPECT_EQ(sample.password, "s3cret");
}

TEST(Config, SecretFromEnvironment) {
  ::setenv("LIFELINE_TEST_SECRET", "from-env", 1);
  Sample sample;
  auto schema = sample.MakeSchema();
  schema.LoadString("[smtp]\npassword_env = \"LIFELINE_TEST_SECRET\"\n", "x.toml");
  EXPECT_EQ(sample.password, "from-env");
  EXPECT_NE(LoadError("[smtp]\npassword_env = \"LIFELINE_TEST_UNSET_VAR\"\n").find("is not set"),
            std::string::npos);
}

TEST(Config, SecretGivenTwiceIsRejected) {
  EXPECT_NE(LoadError("[smtp]\npassword = \"a\"\npassword_env = \"B\"\n").find("set only one"),
            std::string::npos);
}

TEST(Config, MissingSecretFileIsAnError) {
  EXPECT_NE(LoadError("[smtp]\npassword_file = \"/nonexistent/pw\"\n").find("cannot read secret file"),
            std::string::npos);
}

TEST(Config, MissingConfigFileIsAnError) {
  Sample sample;
  auto schema = sample.MakeSchema();
  EXPECT_THROW(schema.Load("/nonexistent/lifeline.toml"), ConfigError);
}

TEST(Config, DescribeListsEveryKey) {
  Sample sample;
  const auto text = sample.MakeSchema().Describe();
  for (const char* key : {"name", "listen.port", "interval", "smtp.password", "rules", "pattern"}) {
    EXPECT_NE(text.find(key), std::string::npos) << key;
  }
}

TEST(Duration, Parses) {
  std::chrono::seconds s{};
  EXPECT_TRUE(ParseDuration("90", &s));
  EXPECT_EQ(s.count(), 90);
  EXPECT_TRUE(ParseDuration("2h", &s));
  EXPECT_EQ(s.count(), 7200);
  EXPECT_FALSE(ParseDuration("h", &s));
  EXPECT_FALSE(ParseDuration("-5s", &s));
  EXPECT_FALSE(ParseDuration("", &s));
}

}  // namespace
}  // namespace lifeline::config
