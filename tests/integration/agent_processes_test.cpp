// The agent runs as two processes (docs/architecture.md, "Agent processes"): the resident `lifeline-agent`
// watches and queues; the `lifeline agent send` process it starts sends while there is work and leaves when
// the queue has been empty for a while. These tests hold the contract between them with real processes:
// the sender comes and goes with the work, dies with the agent, and a crashed sender is replaced without
// losing anything.
#include "support/harness.h"

#include <signal.h>

#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

using std::chrono::seconds;

// Running, not a zombie waiting to be reaped.
bool Alive(pid_t pid) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  return pid > 0 && !stat.empty() && stat.find(") Z ") == std::string::npos;
}

struct Fixture {
  explicit Fixture(TempDir& dir, std::string serial = "SN-PROC-1")
      : mail(dir / "mail"), home(dir / "home", mail.port(), {"oncall@example.com"}) {
    home.Start();
    agent.emplace(dir / "agent", home, std::move(serial));
    auto enrolled = agent->Enroll(home.EnrollToken(agent->identity()));
    EXPECT_EQ(enrolled.exit_code, 0) << enrolled.output;
  }
  MailSink mail;
  TestHome home;
  std::optional<TestAgent> agent;
};

TEST(AgentProcesses, SenderRunsWhileThereIsWorkAndLeavesWhenIdle) {
  TempDir dir;
  Fixture f(dir);
  TestAgent& agent = *f.agent;
  agent.Start();
  // The start-up heartbeat goes out through a sender, which then leaves the resident agent alone.
  auto delivered = [&] {
    auto status = RunLifeline({"agent", "status", "--config", agent.config().string()});
    return status.output.find("queue depth:   0") != std::string::npos &&
           status.output.find("last contact:  never") == std::string::npos;
  };
  ASSERT_TRUE(Eventually(delivered, seconds(30))) << agent.AgentLogText();
  ASSERT_TRUE(Eventually([&] { return agent.SenderPid() == -1; }, seconds(40))) << agent.AgentLogText();

  // An alert starts a new sender at once; it delivers and leaves again.
  agent.AppendLine("2026-11-21T10:00:01Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");
  ASSERT_TRUE(Eventually([&] { return f.mail.Messages().size() == 1; }, seconds(30))) << agent.AgentLogText();
  EXPECT_EQ(f.home.Stat("tickets"), 1);
  ASSERT_TRUE(Eventually([&] { return agent.SenderPid() == -1; }, seconds(40))) << agent.AgentLogText();
  agent.Stop();
}

TEST(AgentProcesses, FullBinaryRunsTheSameAgent) {
  TempDir dir;
  Fixture f(dir);
  f.agent->use_full_binary = true;  // `lifeline agent run`
  f.agent->Start();
  f.agent->AppendLine("2026-11-21T10:00:01Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");
  ASSERT_TRUE(Eventually([&] { return f.mail.Messages().size() == 1; }, seconds(30))) << f.agent->AgentLogText();
  f.agent->Stop();
}

TEST(AgentProcesses, SenderDiesWithTheAgent) {
  TempDir dir;
  Fixture f(dir);
  TestAgent& agent = *f.agent;
  f.home.Stop();  // the sender stays, backing off, while the home is away
  agent.Start();
  agent.AppendLine("2026-11-21T10:00:01Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");
  pid_t sender = -1;
  ASSERT_TRUE(Eventually([&] { return (sender = agent.SenderPid()) > 0; }, seconds(20))) << agent.AgentLogText();
  // Captured (in the queue) before the crash, or the test would be about the log source instead.
  ASSERT_TRUE(Eventually([&] { return agent.AgentLogText().find("alert SIM-3A21F4") != std::string::npos; }, seconds(10)))
      << agent.AgentLogText();
  agent.Kill();  // SIGKILL: no chance to stop the sender in an orderly way
  EXPECT_TRUE(Eventually([&] { return !Alive(sender); }, seconds(10))) << "sender " << sender << " outlived the agent";

  // Nothing was lost: a new agent delivers the alert once the home is back.
  f.home.Start();
  agent.Start();
  ASSERT_TRUE(Eventually([&] { return f.mail.Messages().size() == 1; }, seconds(40))) << agent.AgentLogText();
  agent.Stop();
}

TEST(AgentProcesses, CrashedSenderIsReplacedAndNothingIsLost) {
  TempDir dir;
  Fixture f(dir);
  TestAgent& agent = *f.agent;
  f.home.Stop();
  agent.Start();
  for (int i = 0; i < 5; ++i) {
    agent.AppendLine("2026-11-21T10:00:0" + std::to_string(i) + "Z SVP CRIT SIM=3A21F" + std::to_string(i) +
                     " Drive failure HDD 00-1" + std::to_string(i));
  }
  pid_t sender = -1;
  ASSERT_TRUE(Eventually([&] { return (sender = agent.SenderPid()) > 0; }, seconds(20))) << agent.AgentLogText();
  ::kill(sender, SIGKILL);
  ASSERT_TRUE(Eventually([&] { return agent.AgentLogText().find("sender process ended with status 137") != std::string::npos; },
                         seconds(10)))
      << agent.AgentLogText();
  f.home.Start();
  ASSERT_TRUE(Eventually([&] { return f.mail.Messages().size() == 5; }, seconds(60))) << agent.AgentLogText();
  EXPECT_EQ(f.home.Stat("tickets"), 5);
  const pid_t replacement = agent.SenderPid();
  EXPECT_NE(replacement, sender);
  agent.Stop();
}

TEST(AgentProcesses, LifelineAgentCommandLine) {
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), LIFELINE_AGENT_BINARY);
    return RunCommand(args, seconds(10));
  };
  auto help = run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--sender"), std::string::npos) << help.output;
  auto version = run({"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("lifeline-agent "), std::string::npos) << version.output;
  EXPECT_EQ(run({"jump"}).exit_code, 2);
  EXPECT_EQ(run({"run"}).exit_code, 2);
  EXPECT_EQ(run({"run", "--config"}).exit_code, 2);
  auto missing = run({"run", "--config", "/nonexistent/agent.toml"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("/nonexistent/agent.toml"), std::string::npos) << missing.output;
  TempDir dir;
  WriteFile(dir / "agent.toml", "");
  auto no_sender = run({"run", "--config", (dir / "agent.toml").string(), "--sender", (dir / "nope").string()});
  EXPECT_EQ(no_sender.exit_code, 2) << no_sender.output;
}

}  // namespace
}  // namespace lifeline::testing
