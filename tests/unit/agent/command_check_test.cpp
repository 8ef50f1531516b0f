#include "agent/command_check.h"

#include "support/fake_clock.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <signal.h>

#include <mutex>

namespace lifeline::agent {
namespace {

using protocol::MessageType;
using protocol::Severity;
using std::chrono::milliseconds;
using std::chrono::seconds;

class RecordingSink final : public DetectionSink {
 public:
  bool Emit(std::vector<protocol::Message> drafts,
            std::optional<std::pair<std::string, FilePosition>> /*position*/) override {
    std::lock_guard lock(mutex_);
    if (fail_) {
      return false;
    }
    for (auto& d : drafts) {
      messages_.push_back(std::move(d));
    }
    return true;
  }
  std::vector<protocol::Message> Take() {
    std::lock_guard lock(mutex_);
    return std::exchange(messages_, {});
  }
  void set_fail(bool fail) {
    std::lock_guard lock(mutex_);
    fail_ = fail;
  }

 private:
  std::mutex mutex_;
  bool fail_ = false;
  std::vector<protocol::Message> messages_;
};

CommandCheckSpec Spec(std::string name, std::vector<std::string> argv) {
  CommandCheckSpec spec;
  spec.name = name;
  spec.code = "CHK-" + name;
  spec.argv = std::move(argv);
  spec.interval = seconds(10);
  spec.timeout = seconds(5);
  std::string why;
  EXPECT_TRUE(ExitStatusMap::Parse("0=ok 1=warning 2=critical *=error", &spec.exit_map, &why)) << why;
  return spec;
}

TEST(RunCommand, CapturesOutputAndExitStatus) {
  auto out = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, seconds(5));
  ASSERT_TRUE(out);
  EXPECT_EQ(out->exit_status, 3);
  EXPECT_FALSE(out->timed_out);
  EXPECT_NE(out->output.find("out"), std::string::npos);
  EXPECT_NE(out->output.find("err"), std::string::npos);
}

TEST(RunCommand, BoundsTheOutput) {
  auto out = RunCommand({"/bin/sh", "-c", "head -c 1000000 /dev/zero"}, seconds(5), 1000);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->output.size(), 1000u);
  EXPECT_TRUE(out->truncated);
  EXPECT_EQ(out->exit_status, 0);
}

TEST(RunCommand, TimeoutKillsTheWholeProcessGroup) {
  testing::TempDir dir;
  const auto pid_file = dir / "child.pid";
  const auto start = std::chrono::steady_clock::now();
  auto out = RunCommand({"/bin/sh", "-c", "sleep 30 & echo $! > " + pid_file.string() + "; wait"}, milliseconds(300));
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
  const int child = std::stoi(testing::ReadFile(pid_file));
  // The grandchild (sleep) went with the group; it may linger as a zombie of init for a moment.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = ::kill(child, 0) != 0 || testing::ReadFile("/proc/" + std::to_string(child) + "/stat").find(" Z ") !=
                                        std::string::npos;
    if (!gone) {
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  EXPECT_TRUE(gone);
}

TEST(RunCommand, MissingProgramIsAnError) {
  auto out = RunCommand({"/nonexistent/lifeline-no-such-program"}, seconds(5));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error(), std::errc::no_such_file_or_directory);
}

TEST(ExitStatusMap, ParsesAndRefuses) {
  ExitStatusMap map;
  std::string why;
  ASSERT_TRUE(ExitStatusMap::Parse("0=ok 3=critical *=warning", &map, &why));
  EXPECT_EQ(map.Lookup(0), std::nullopt);
  EXPECT_EQ(map.Lookup(3), Severity::kCritical);
  EXPECT_EQ(map.Lookup(9), Severity::kWarning);
  EXPECT_FALSE(ExitStatusMap::Parse("0=fine", &map, &why));
  EXPECT_NE(why.find("0=fine"), std::string::npos);
  EXPECT_FALSE(ExitStatusMap::Parse("x=ok", &map, &why));
  EXPECT_FALSE(ExitStatusMap::Parse("256=ok", &map, &why));
}

TEST(CommandCheck, ExitStatusMapsToSeverityAndMessage) {
  auto spec = Spec("raid", {"/bin/sh", "-c", "echo degraded array md0; exit 2"});
  spec.message = "{name} says {output} ({status})";
  CommandCheck check(std::move(spec));
  const auto outcome = check.Run({});
  ASSERT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.alert.code, "CHK-raid");
  EXPECT_EQ(outcome.alert.severity, Severity::kCritical);
  EXPECT_EQ(outcome.alert.text, "raid says degraded array md0 (2)");
  EXPECT_EQ(outcome.alert.source, "check raid");
  EXPECT_TRUE(CommandCheck(Spec("fine", {"true"})).Run({}).ok);
}

TEST(CommandCheck, OutputPatternsWinOverTheExitStatus) {
  auto spec = Spec("ups", {"/bin/sh", "-c", "echo status ok; echo battery 12% left; exit 0"});
  std::string error;
  auto patterns = RuleSet::Compile({{"low battery", R"(battery (\d+)% left)", "UPS-BATT", Severity::kWarning,
                                     "{name}: battery at {1}%"}},
                                   &error);
  ASSERT_TRUE(patterns) << error;
  spec.patterns = std::move(*patterns);
  const auto outcome = CommandCheck(std::move(spec)).Run({});
  ASSERT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.alert.code, "UPS-BATT");
  EXPECT_EQ(outcome.alert.severity, Severity::kWarning);
  EXPECT_EQ(outcome.alert.text, "ups: battery at 12%");
}

TEST(CommandCheck, TimeoutAndMissingProgramAreErrorsOfTheCheck) {
  auto slow = Spec("slow", {"sleep", "10"});
  slow.timeout = milliseconds(200);
  const auto timed_out = CommandCheck(std::move(slow)).Run({});
  ASSERT_FALSE(timed_out.ok);
  EXPECT_EQ(timed_out.alert.severity, Severity::kError);
  EXPECT_NE(timed_out.alert.text.find("no result within 200 ms"), std::string::npos);
  const auto missing = CommandCheck(Spec("missing", {"lifeline-no-such-program"})).Run({});
  ASSERT_FALSE(missing.ok);
  EXPECT_NE(missing.alert.text.find("cannot run"), std::string::npos) << missing.alert.text;
}

TEST(CheckSource, AlertsOnceAndClearsWhenItPassesAgain) {
  testing::TempDir dir;
  const auto flag = dir / "failing";
  std::vector<std::unique_ptr<Check>> checks;
  checks.push_back(std::make_unique<CommandCheck>(
      Spec("flag", {"/bin/sh", "-c", "if [ -e " + flag.string() + " ]; then echo broken; exit 2; fi"})));
  testing::FakeClock clock;
  CheckSource source("check flag", std::move(checks), clock);
  RecordingSink sink;

  // First run passes: nothing is known about earlier runs, so one clear goes out.
  EXPECT_EQ(source.RunDue(sink), seconds(10));
  auto messages = sink.Take();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].type, MessageType::kClear);
  EXPECT_EQ(messages[0].alert.code, "CHK-flag");

  testing::WriteFile(flag, "");
  EXPECT_EQ(source.RunDue(sink), seconds(10));  // not due yet
  EXPECT_TRUE(sink.Take().empty());
  for (int i = 0; i < 3; ++i) {
    clock.Advance(seconds(10));
    source.RunDue(sink);
  }
  messages = sink.Take();
  ASSERT_EQ(messages.size(), 1u);  // once, not once per run
  EXPECT_EQ(messages[0].type, MessageType::kAlert);
  EXPECT_EQ(messages[0].alert.severity, Severity::kCritical);

  std::filesystem::remove(flag);
  clock.Advance(seconds(10));
  source.RunDue(sink);
  clock.Advance(seconds(10));
  source.RunDue(sink);
  messages = sink.Take();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].type, MessageType::kClear);
  EXPECT_EQ(messages[0].alert.code, "CHK-flag");
}

TEST(CheckSource, MinCountAndAFailedEmitIsRetried) {
  auto spec = Spec("down", {"false"});
  spec.gate.min_count = 2;
  std::vector<std::unique_ptr<Check>> checks;
  checks.push_back(std::make_unique<CommandCheck>(std::move(spec)));
  testing::FakeClock clock;
  CheckSource source("check down", std::move(checks), clock);
  RecordingSink sink;
  source.RunDue(sink);
  EXPECT_TRUE(sink.Take().empty());  // one failure: below min_count
  clock.Advance(seconds(10));
  sink.set_fail(true);
  source.RunDue(sink);  // second failure, but the queue refuses it
  sink.set_fail(false);
  clock.Advance(seconds(10));
  source.RunDue(sink);
  const auto messages = sink.Take();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].type, MessageType::kAlert);
  EXPECT_EQ(messages[0].alert.severity, Severity::kWarning);  // exit status 1
}

TEST(CheckSource, ThreadRunsChecksAndStopsPromptly) {
  auto spec = Spec("sleepy", {"sleep", "30"});
  spec.timeout = seconds(60);
  std::vector<std::unique_ptr<Check>> checks;
  checks.push_back(std::make_unique<CommandCheck>(std::move(spec)));
  CheckSource source("check sleepy", std::move(checks));
  RecordingSink sink;
  source.Start(sink);
  std::this_thread::sleep_for(milliseconds(200));  // let the command start
  const auto start = std::chrono::steady_clock::now();
  source.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
  EXPECT_TRUE(sink.Take().empty());  // a cancelled run is no verdict
}

}  // namespace
}  // namespace lifeline::agent
