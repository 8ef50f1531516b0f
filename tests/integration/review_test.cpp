// Review before sending: with review on, outgoing messages wait until a local operator approves them;
// `lifeline agent review` shows exactly what will leave the machine. Heartbeats are not held by default.
#include "support/harness.h"

#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

std::vector<std::string> HeldIds(const TestAgent& agent) {
  auto listed = RunLifeline({"agent", "review", "list", "--config", agent.config().string()});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  std::vector<std::string> ids;
  std::istringstream lines(listed.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > 32 && line[32] == ' ') {
      ids.push_back(line.substr(0, 32));
    }
  }
  return ids;
}

TEST(Review, HeldMessagesLeaveOnlyWhenApproved) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-REVIEW");
  agent.SetConfig(agent.ConfigText() + "\n[review]\nenabled = true\nkinds = [\"alert\"]\n");
  ASSERT_EQ(agent.Enroll(home.EnrollToken(agent.identity())).exit_code, 0);
  agent.Start();

  agent.AppendLine("CRIT SIM=00BB01 drive failed, needs approval");
  agent.AppendLine("CRIT SIM=00BB02 not for sending");
  ASSERT_TRUE(Eventually([&] { return HeldIds(agent).size() == 2; }, std::chrono::seconds(20))) << agent.AgentLogText();
  // The heartbeat went home; the alerts did not.
  ASSERT_TRUE(Eventually([&] { return !home.Admin("/v1/devices").at("devices").as_array().empty(); },
                         std::chrono::seconds(10)));
  EXPECT_EQ(home.Stat("alerts"), 0);

  const auto ids = HeldIds(agent);
  auto shown = RunLifeline({"agent", "review", "show", "--config", agent.config().string(), ids[0]});
  EXPECT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_NE(shown.output.find("\"code\":\"SIM-00BB01\""), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("\"serial\":\"SN-REVIEW\""), std::string::npos) << shown.output;

  auto rejected = RunLifeline({"agent", "review", "reject", "--config", agent.config().string(), ids[1]});
  EXPECT_EQ(rejected.exit_code, 0) << rejected.output;
  auto approved = RunLifeline({"agent", "review", "approve", "--config", agent.config().string(), "--all"});
  EXPECT_EQ(approved.exit_code, 0) << approved.output;
  EXPECT_NE(approved.output.find("approved 1 message"), std::string::npos) << approved.output;

  ASSERT_TRUE(Eventually([&] { return home.Stat("alerts") == 1; }, std::chrono::seconds(20))) << agent.AgentLogText();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto tickets = home.Admin("/v1/tickets").at("tickets").as_array();
  ASSERT_EQ(tickets.size(), 1u);
  EXPECT_EQ(tickets[0].at("code").as_string(), "SIM-00BB01");
  EXPECT_TRUE(HeldIds(agent).empty());

  auto usage = RunLifeline({"agent", "review", "approve", "--config", agent.config().string()});
  EXPECT_EQ(usage.exit_code, 2) << usage.output;
  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
