// Nothing captured is lost: with the home down, 100 alerts are raised, the agent is SIGKILLed in the middle
// and restarted; when the home comes back exactly 100 distinct alerts arrive, none twice in effect.
#include "support/harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

namespace lifeline::testing {
namespace {

long QueueDepth(const TestAgent& agent) {
  auto status = RunLifeline({"agent", "status", "--config", agent.config().string()});
  const auto at = status.output.find("queue depth:");
  return at == std::string::npos ? -1 : std::stol(status.output.substr(at + 12));
}

TEST(StoreAndForward, HundredAlertsSurviveHomeOutageAndAgentKill) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port(), {"oncall@example.com"});
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-2001");
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  home.Stop();  // the home is unreachable from here on

  agent.Start();
  for (int i = 0; i < 50; ++i) {
    agent.AppendLine(fmt::format("CRIT SIM={:06X} failure number {}", 0xA00000 + i, i));
  }
  // Killed at an arbitrary moment while it captures and retries.
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  agent.Kill();
  // Raised while the agent is down: must be picked up from the saved position.
  for (int i = 50; i < 100; ++i) {
    agent.AppendLine(fmt::format("CRIT SIM={:06X} failure number {}", 0xA00000 + i, i));
  }
  agent.Start();
  ASSERT_TRUE(Eventually(
      [&] {
        // 100 alerts plus the heartbeats of both runs wait in the queue.
        return QueueDepth(agent) >= 102;
      },
      std::chrono::seconds(30)));

  home.Start();
  ASSERT_TRUE(Eventually([&] { return home.Stat("alerts") >= 100 && home.Stat("emails_pending") == 0; },
                         std::chrono::seconds(60)))
      << ReadFile(home.log_file());
  std::this_thread::sleep_for(std::chrono::seconds(2));  // room for a wrong extra to arrive

  EXPECT_EQ(home.Stat("alerts"), 100);
  EXPECT_EQ(home.Stat("tickets"), 100);
  auto tickets = home.Admin("/v1/tickets?limit=1000").at("tickets").as_array();
  std::set<std::string> codes;
  for (const auto& t : tickets) {
    codes.insert(std::string(t.at("code").as_string()));
    EXPECT_EQ(t.at("occurrences").to_number<int>(), 1) << t.at("code").as_string();
  }
  EXPECT_EQ(codes.size(), 100u);
  EXPECT_EQ(mail.Messages().size(), 100u);

  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
