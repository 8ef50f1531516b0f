#include "agent/rules.h"

#include "agent/log_follower.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace lifeline::agent {
namespace {

using protocol::Severity;

RuleSet MustCompile(std::vector<LogRule> rules) {
  std::string error;
  auto compiled = RuleSet::Compile(std::move(rules), &error);
  EXPECT_TRUE(compiled) << error;
  return compiled ? std::move(*compiled) : RuleSet();
}

std::string CompileError(std::vector<LogRule> rules) {
  std::string error;
  auto compiled = RuleSet::Compile(std::move(rules), &error);
  EXPECT_FALSE(compiled);
  if (!compiled) {
    EXPECT_EQ(compiled.error(), make_error_code(Errc::kBadRule));
  }
  return error;
}

// True when `text` is valid UTF-8 (what the home's JSON decoder insists on).
bool IsUtf8(const std::string& text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    std::size_t length = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > text.size()) {
      return false;
    }
    for (std::size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) {
        return false;
      }
    }
    i += length;
  }
  return true;
}

TEST(RuleSet, SubstitutesCaptureGroupsLineAndWholeMatch) {
  const RuleSet rules = MustCompile({{"disk", R"(disk (sd[a-z]+) failed: (\w+))", "DISK-{1}", Severity::kCritical,
                                      "{1} failed ({2}); match [{0}]; line [{line}]"}});
  const auto alert = rules.Match("kernel: disk sdb failed: EIO at 12:00", "/var/log/kern.log");
  ASSERT_TRUE(alert);
  EXPECT_EQ(alert->code, "DISK-sdb");
  EXPECT_EQ(alert->severity, Severity::kCritical);
  EXPECT_EQ(alert->text,
            "sdb failed (EIO); match [disk sdb failed: EIO]; line [kernel: disk sdb failed: EIO at 12:00]");
  EXPECT_EQ(alert->source, "/var/log/kern.log");
}

TEST(RuleSet, BracesAndUnknownPlaceholders) {
  const RuleSet rules = MustCompile(
      {{"braces", R"(value=(\d+))", "V", Severity::kInfo, "{{literal}} {1} {name} {7} {} { }} {{{1}}}"}});
  const auto alert = rules.Match("value=42", "src");
  ASSERT_TRUE(alert);
  // {7} does not exist in a one-group pattern, so it stays as written, like {name}.
  EXPECT_EQ(alert->text, "{literal} 42 {name} {7} {} { } {42}");
}

TEST(RuleSet, GroupThatDidNotParticipateIsEmpty) {
  const RuleSet rules = MustCompile({{"opt", R"(error(?: code (\d+))?)", "E{1}", Severity::kError, "[{1}]"}});
  const auto with = rules.Match("error code 7", "s");
  ASSERT_TRUE(with);
  EXPECT_EQ(with->code, "E7");
  const auto without = rules.Match("error", "s");
  ASSERT_TRUE(without);
  EXPECT_EQ(without->code, "E");
  EXPECT_EQ(without->text, "[]");
}

TEST(RuleSet, CodeThatExpandsToNothingFallsBackToItsTemplate) {
  const RuleSet rules = MustCompile({{"only-group", R"(fail(\d*))", "{1}", Severity::kError, "{line}"}});
  const auto alert = rules.Match("fail", "s");
  ASSERT_TRUE(alert);
  EXPECT_EQ(alert->code, "{1}");  // the home refuses an empty code
}

TEST(RuleSet, FirstMatchingRuleWins) {
  const RuleSet rules = MustCompile({
      {"specific", "disk sda failed", "DISK-SDA", Severity::kCritical, "specific"},
      {"general", "failed", "GENERIC", Severity::kWarning, "general"},
  });
  EXPECT_EQ(rules.Match("disk sda failed", "s")->code, "DISK-SDA");
  EXPECT_EQ(rules.Match("disk sdb failed", "s")->code, "GENERIC");
  EXPECT_FALSE(rules.Match("all good", "s"));
  EXPECT_EQ(rules.size(), 2u);
}

TEST(RuleSet, FindsTheLeftmostMatchAndHonoursAnchors) {
  const RuleSet rules = MustCompile({
      {"anchored", "^ERR (\\d)", "A{1}", Severity::kError, "{0}"},
      {"code", R"(code=(\d))", "C{1}", Severity::kError, "{0}"},
  });
  EXPECT_EQ(rules.Match("code=1 code=2", "s")->code, "C1");
  EXPECT_EQ(rules.Match("ERR 5 code=3", "s")->code, "A5");
  EXPECT_EQ(rules.Match("x ERR 5 code=3", "s")->code, "C3");  // ^ only at the line start
  const RuleSet alternation = MustCompile({{"alt", "(o|oo)(.*)", "X", Severity::kInfo, "{1}|{2}"}});
  EXPECT_EQ(alternation.Match("foo bar", "s")->text, "o|o bar");  // leftmost-first, as in Perl
}

TEST(RuleSet, BadRegexErrorNamesTheRuleAndPattern) {
  const std::string error = CompileError({
      {"good", "fine", "OK", Severity::kInfo, "{line}"},
      {"broken-rule", "disk (sd[a-z]+ failed", "D", Severity::kError, "{line}"},
  });
  EXPECT_NE(error.find("broken-rule"), std::string::npos) << error;
  EXPECT_NE(error.find("disk (sd[a-z]+ failed"), std::string::npos) << error;
}

TEST(RuleSet, UnbalancedPatternIsNotHiddenByTheWrapper) {
  // Wrapped naively as "...(" + pattern + ")" this would compile; it must not.
  const std::string error = CompileError({{"sneaky", "a)(b", "S", Severity::kInfo, "{line}"}});
  EXPECT_NE(error.find("sneaky"), std::string::npos) << error;
}

TEST(RuleSet, BackReferencesAreRefusedWithAReason) {
  const std::string error = CompileError({{"backref", R"((\w+) \1)", "B", Severity::kInfo, "{line}"}});
  EXPECT_NE(error.find("backref"), std::string::npos) << error;
  EXPECT_NE(error.find("Back-references are not supported"), std::string::npos) << error;
}

TEST(RuleSet, RefusesEmptyOrDuplicateNamesAndEmptyPatternsOrCodes) {
  EXPECT_NE(CompileError({{"", "x", "C", Severity::kInfo, ""}}).find("#1"), std::string::npos);
  EXPECT_NE(CompileError({{"r", "x", "C", Severity::kInfo, ""}, {"r", "y", "C", Severity::kInfo, ""}})
                .find("'r'"),
            std::string::npos);
  EXPECT_NE(CompileError({{"p", "", "C", Severity::kInfo, ""}}).find("pattern is empty"), std::string::npos);
  EXPECT_NE(CompileError({{"c", "x", "", Severity::kInfo, ""}}).find("code is empty"), std::string::npos);
}

TEST(RuleSet, LongHostileLinesNeitherCrashNorTakeLong) {
  // With libstdc++'s backtracking matcher these patterns overflow the stack on a 64 KiB line.
  const RuleSet rules = MustCompile({
      {"greedy", R"((.*)code=(\d+))", "G{2}", Severity::kError, "{2}"},
      {"nested", R"(^(a|b)*$)", "N", Severity::kError, "{line}"},
      {"exponential", R"((a+)+$)", "X", Severity::kError, "{line}"},
  });
  const std::string line(LogFollower::kMaxLineBytes, 'a');
  const auto start = std::chrono::steady_clock::now();
  // Only the first kMaxMatchBytes are examined and that window's end is not the line's end, so the
  // $-anchored rules cannot match a line of 64 KiB of 'a'.
  EXPECT_FALSE(rules.Match(line, "s"));
  const auto short_alert = rules.Match(std::string(3000, 'a') + " code=42", "s");
  ASSERT_TRUE(short_alert);
  EXPECT_EQ(short_alert->code, "G42");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

TEST(RuleSet, AlertsStayWithinTheProtocolLimitsAndValidUtf8) {
  const RuleSet rules = MustCompile({{"all", R"(^(.*)$)", "CODE-{1}", Severity::kError, "{line}{line}{line}"}});
  std::string line = "caf\xC3\xA9 \xFF\xFE broken \xE2\x82 end ";
  while (line.size() < 20000) {
    line += "\xE2\x82\xAC";  // euro signs: three bytes each, so cuts can fall inside one
  }
  const std::string source = std::string(3000, 's') + "\xC3";
  const auto alert = rules.Match(line.substr(0, RuleSet::kMaxMatchBytes - 1), source);
  ASSERT_TRUE(alert);
  EXPECT_LE(alert->code.size(), RuleSet::kMaxCodeBytes);
  EXPECT_LE(alert->text.size(), RuleSet::kMaxTextBytes);
  EXPECT_LE(alert->source.size(), RuleSet::kMaxSourceBytes);
  EXPECT_TRUE(IsUtf8(alert->code));
  EXPECT_TRUE(IsUtf8(alert->text));
  EXPECT_TRUE(IsUtf8(alert->source));
  EXPECT_EQ(alert->text.rfind("caf\xC3\xA9 \xEF\xBF\xBD\xEF\xBF\xBD broken \xEF\xBF\xBD", 0), 0u) << alert->text.substr(0, 40);
}

TEST(RuleSet, ClearPatternClearsTheSameCode) {
  LogRule rule{"disk", R"(disk (sd[a-z]+) failed)", "DISK-{1}", Severity::kCritical, "{1} failed"};
  rule.clear_pattern = R"(disk (sd[a-z]+) recovered)";
  const RuleSet rules = MustCompile({rule, {"other", "recovered", "OTHER", Severity::kInfo, "{line}"}});
  const auto alert = rules.Evaluate("kernel: disk sdb failed", "s");
  ASSERT_TRUE(alert);
  EXPECT_FALSE(alert->clear);
  EXPECT_EQ(alert->alert.code, "DISK-sdb");
  const auto clear = rules.Evaluate("kernel: disk sdb recovered", "s");
  ASSERT_TRUE(clear);
  EXPECT_TRUE(clear->clear);
  EXPECT_EQ(clear->rule, 0u);
  EXPECT_EQ(clear->alert.code, "DISK-sdb");
  EXPECT_EQ(clear->alert.text, "kernel: disk sdb recovered");
  // Match() only reports alerts: the clear line falls through to the next rule.
  EXPECT_EQ(rules.Match("kernel: disk sdb recovered", "s")->code, "OTHER");
}

TEST(RuleSet, BadClearPatternNamesTheRule) {
  LogRule rule{"flappy", "down", "F", Severity::kError, "{line}"};
  rule.clear_pattern = "up(";
  const std::string error = CompileError({rule});
  EXPECT_NE(error.find("flappy"), std::string::npos) << error;
  EXPECT_NE(error.find("clear_pattern"), std::string::npos) << error;
}

TEST(RuleSet, NamedValuesFillPlaceholders) {
  const RuleSet rules = MustCompile({{"auth", R"(failed for (\w+))", "AUTH-{host}", Severity::kWarning,
                                      "{app}@{host} ({severity}): {1} {unknown}"}});
  const std::vector<TemplateValue> values = {{"host", "array-1"}, {"app", "sshd"}, {"severity", "err"}};
  const auto match = rules.Evaluate("login failed for root", "syslog", values);
  ASSERT_TRUE(match);
  EXPECT_EQ(match->alert.code, "AUTH-array-1");
  EXPECT_EQ(match->alert.text, "sshd@array-1 (err): root {unknown}");
}

TEST(RuleSet, InvalidUtf8BytesStillMatch) {
  const RuleSet rules = MustCompile({{"bytes", R"(id=(.) end)", "B", Severity::kInfo, "[{1}]"}});
  const auto alert = rules.Match("id=\xFF end", "s");
  ASSERT_TRUE(alert);
  EXPECT_EQ(alert->text, "[\xEF\xBF\xBD]");
}

TEST(RuleSet, TenRulesAreFastOnOrdinaryLines) {
  // The benchmark in bench/ measures throughput; this only catches an absurd slowdown.
  std::vector<LogRule> rules;
  for (int i = 0; i < 10; ++i) {
    rules.push_back({"rule" + std::to_string(i), "CRIT.*SIM=(" + std::to_string(i) + "[0-9A-F]{5}) (.*)",
                     "SIM-{1}", Severity::kCritical, "{2}"});
  }
  const RuleSet set = MustCompile(std::move(rules));
  std::vector<std::string> lines;
  for (int i = 0; i < 100; ++i) {
    lines.push_back("2026-11-21T10:00:" + std::to_string(10 + i % 50) +
                    "Z svp-controller-1 INFO component=cache-" + std::to_string(i) +
                    " state=nominal temperature=41C fan=3120rpm latency_us=" + std::to_string(i * 37) +
                    " note=all systems within expected operating range");
  }
  lines.push_back("2026-11-21T10:00:01Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");
  const auto start = std::chrono::steady_clock::now();
  std::size_t alerts = 0;
  for (int round = 0; round < 1000; ++round) {
    for (const auto& line : lines) {
      alerts += set.Match(line, "s").has_value() ? 1 : 0;
    }
  }
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(alerts, 1000u);
  EXPECT_LT(took, std::chrono::seconds(5)) << "101,000 lines";
}

TEST(RuleSet, EmptyRuleSetMatchesNothing) {
  const RuleSet rules = MustCompile({});
  EXPECT_FALSE(rules.Match("anything", "s"));
}

}  // namespace
}  // namespace lifeline::agent
