// Missing heartbeats end to end with real processes: an agent beating every 2 s is killed, the home
// opens a LIFELINE-HEARTBEAT-MISSING ticket and emails it through a real SMTP server; the agent
// comes back and the ticket resolves by itself. The retention preview and `lifeline home retention`
// answer on the same home.
#include "support/harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <thread>

namespace lifeline::testing {
namespace {

TEST(MissingHeartbeat, AKilledAgentOpensATicketAndEmailAndItsReturnResolvesIt) {
  TempDir dir;
  MailSink mail(dir / "mail");
  // [heartbeats] rides after the [store] body: a short grace, no start delay, a sweep a second.
  TestHome home(dir / "home", mail.port(), {"oncall@example.com"},
                fmt::format("path = \"{}/home.db\"\n[heartbeats]\ngrace = \"2s\"\nstart_delay = 0\n"
                            "sweep_interval = \"1s\"",
                            (dir / "home").string()));
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-HB1");
  std::string config = agent.ConfigText();
  const std::string hourly = "[heartbeat]\ninterval = \"1h\"";
  ASSERT_NE(config.find(hourly), std::string::npos);
  config.replace(config.find(hourly), hourly.size(), "[heartbeat]\ninterval = \"2s\"\njitter_percent = 0");
  agent.SetConfig(config);
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  agent.Start();

  // Beating: the device's last heartbeat moves, and no ticket opens.
  ASSERT_TRUE(Eventually(
      [&] {
        auto devices = home.Admin("/v1/devices").at("devices").as_array();
        return devices.size() == 1 && !devices[0].at("last_heartbeat").as_string().empty();
      },
      std::chrono::seconds(30)))
      << ReadFile(home.log_file());
  std::this_thread::sleep_for(std::chrono::seconds(6));
  EXPECT_EQ(home.Stat("tickets"), 0) << ReadFile(home.log_file());

  // Killed: within interval + grace (4 s) and a sweep, one ticket, and its email.
  agent.Kill();
  ASSERT_TRUE(Eventually([&] { return mail.Messages().size() == 1; }, std::chrono::seconds(30)))
      << ReadFile(home.log_file());
  const std::string email = mail.Messages()[0];
  EXPECT_NE(email.find("LIFELINE-HEARTBEAT-MISSING"), std::string::npos) << email;
  EXPECT_NE(email.find("SN-HB1"), std::string::npos) << email;
  auto open = home.Admin("/v1/tickets?state=open").at("tickets").as_array();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].at("code").as_string(), "LIFELINE-HEARTBEAT-MISSING");
  const std::string number(open[0].at("number").as_string());

  // Back: its first heartbeat resolves the ticket; no second ticket, no second email.
  agent.Start();
  ASSERT_TRUE(Eventually([&] { return home.Admin("/v1/tickets?state=open").at("tickets").as_array().empty(); },
                         std::chrono::seconds(30)))
      << ReadFile(home.log_file());
  auto all = home.Admin("/v1/tickets").at("tickets").as_array();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].at("number").as_string(), number);
  EXPECT_NE(ReadFile(home.log_file()).find("resolved"), std::string::npos);
  EXPECT_EQ(mail.Messages().size(), 1u);

  // What retention would delete next, through the admin API and the command line.
  auto preview = home.Admin("/v1/retention/preview");
  EXPECT_FALSE(preview.at("kinds").as_array().empty());
  auto dry_run = RunLifeline({"home", "retention", "--config", home.config().string(), "--dry-run"});
  EXPECT_EQ(dry_run.exit_code, 0) << dry_run.output;
  EXPECT_NE(dry_run.output.find("heartbeats"), std::string::npos) << dry_run.output;

  // Gone again, and this time for good: revoking the device resolves its reopened ticket, and the
  // home stops expecting its heartbeats.
  agent.Kill();
  ASSERT_TRUE(Eventually([&] { return home.Admin("/v1/tickets?state=open").at("tickets").as_array().size() == 1; },
                         std::chrono::seconds(30)))
      << ReadFile(home.log_file());
  auto admin = RunLifeline({"home", "admin-token", "--config", home.config().string(), "--name", "hb-admin", "--role",
                            "admin"});
  ASSERT_EQ(admin.exit_code, 0) << admin.output;
  std::string token = admin.output.substr(0, admin.output.find_last_not_of("\n") + 1);
  token = token.substr(token.find_last_of('\n') + 1);  // the token is the last line
  WriteFile(dir / "token", token);
  auto revoked = RunLifeline({"devices", "--home", home.admin_url(), "--ca", (home.pki_dir() / "ca.crt").string(),
                              "--token-file", (dir / "token").string(), "revoke", "ACME/berlin-1/SN-HB1"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
  ASSERT_TRUE(Eventually([&] { return home.Admin("/v1/tickets?state=open").at("tickets").as_array().empty(); },
                         std::chrono::seconds(10)))
      << ReadFile(home.log_file());
  std::this_thread::sleep_for(std::chrono::seconds(4));  // interval + grace: no new ticket for a revoked device
  EXPECT_TRUE(home.Admin("/v1/tickets?state=open").at("tickets").as_array().empty());
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
