// Crash test (issue 3 acceptance): 1,000 alerts are raised over time while the agent is SIGKILLed at
// random moments (at least 20 kills, restarted each time) and the home goes down and up; in the end every
// alert has arrived exactly once in effect: 1,000 alerts, 1,000 tickets with one occurrence each, and one
// email each.
#include "support/harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

namespace lifeline::testing {
namespace {

constexpr int kAlerts = 1000;
constexpr int kRounds = 25;  // one SIGKILL per round
constexpr int kAlertsPerRound = kAlerts / kRounds;

TEST(Crash, ThousandAlertsSurviveTwentyFiveKillsAndHomeOutages) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port(), {"oncall@example.com"});
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-3001");
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  agent.Start();

  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> kill_after_ms(0, 400);
  std::uniform_int_distribution<int> lines_between_pauses(1, 10);
  int kills = 0;
  int next = 0;
  for (int round = 0; round < kRounds; ++round) {
    // The home is down for rounds 4-7, 12-14 and 19-21: the agent keeps capturing and retrying.
    if (round == 4 || round == 12 || round == 19) {
      home.Stop();
    }
    if (round == 8 || round == 15 || round == 22) {
      home.Start();
    }
    // Lines arrive over time, in small bursts, while the agent captures and sends.
    const int end = next + kAlertsPerRound;
    while (next < end) {
      const int burst = std::min(end - next, lines_between_pauses(random));
      for (int i = 0; i < burst; ++i, ++next) {
        agent.AppendLine(fmt::format("CRIT SIM={:06X} controller fault number {}", 0xC00000 + next, next));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms(random) / 20));
    }
    // Killed at an arbitrary moment: mid-capture, mid-send, or between the home's commit and the ack.
    std::this_thread::sleep_for(std::chrono::milliseconds(kill_after_ms(random)));
    agent.Kill();
    ++kills;
    agent.Start();
  }
  ASSERT_GE(kills, 20);
  ASSERT_TRUE(home.Running());

  ASSERT_TRUE(Eventually([&] { return home.Stat("alerts") >= kAlerts && home.Stat("emails_pending") == 0; },
                         std::chrono::seconds(40)))
      << "alerts at home: " << home.Stat("alerts") << "\n"
      << ReadFile(home.log_file());
  std::this_thread::sleep_for(std::chrono::seconds(1));  // room for a wrong extra to arrive

  EXPECT_EQ(home.Stat("alerts"), kAlerts);
  EXPECT_EQ(home.Stat("tickets"), kAlerts);
  auto tickets = home.Admin("/v1/tickets?limit=2000").at("tickets").as_array();
  std::set<std::string> codes;
  for (const auto& t : tickets) {
    codes.insert(std::string(t.at("code").as_string()));
    EXPECT_EQ(t.at("occurrences").to_number<int>(), 1) << t.at("code").as_string();
  }
  EXPECT_EQ(codes.size(), static_cast<std::size_t>(kAlerts));
  for (int i = 0; i < kAlerts; ++i) {
    EXPECT_EQ(codes.count(fmt::format("SIM-{:06X}", 0xC00000 + i)), 1u) << i;
  }
  EXPECT_EQ(mail.Messages().size(), static_cast<std::size_t>(kAlerts));

  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
