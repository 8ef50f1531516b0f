// A new matching log line on a device becomes a ticket at the home, an email with the ticket number at a
// real SMTP server, and a log line with the ticket number at the agent. The same line again adds an
// occurrence and sends no second email.
#include "support/harness.h"

#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

TEST(AlertToEmail, NewLineOpensTicketEmailsAndReportsTicketNumber) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port(), {"oncall@example.com"});
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-1001");
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  agent.Start();

  agent.AppendLine("2026-11-21T10:00:00Z SVP INFO all good");  // matches no rule
  agent.AppendLine("2026-11-21T10:00:01Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");

  // The email arrives, with the ticket number and the alert's details.
  ASSERT_TRUE(Eventually([&] { return mail.Messages().size() == 1; }, std::chrono::seconds(30)))
      << ReadFile(home.log_file());
  const std::string email = mail.Messages()[0];
  EXPECT_NE(email.find("LL-000001"), std::string::npos) << email;
  EXPECT_NE(email.find("SIM-3A21F4"), std::string::npos) << email;
  EXPECT_NE(email.find("Drive failure HDD 00-12"), std::string::npos) << email;
  EXPECT_NE(email.find("SN-1001"), std::string::npos) << email;
  EXPECT_NE(email.find("berlin-1"), std::string::npos) << email;
  EXPECT_NE(email.find("oncall@example.com"), std::string::npos) << email;

  // The home has one open ticket for it.
  auto tickets = home.Admin("/v1/tickets?state=open").at("tickets").as_array();
  ASSERT_EQ(tickets.size(), 1u);
  EXPECT_EQ(tickets[0].at("number").as_string(), "LL-000001");
  EXPECT_EQ(tickets[0].at("occurrences").to_number<int>(), 1);

  // The agent logs the ticket number it was given.
  ASSERT_TRUE(Eventually([&] { return agent.AgentLogText().find("ticket LL-000001") != std::string::npos; },
                         std::chrono::seconds(10)))
      << agent.AgentLogText();

  // The same alert again: one more occurrence on the same ticket, no new ticket, no second email.
  agent.AppendLine("2026-11-21T10:05:00Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");
  ASSERT_TRUE(Eventually(
      [&] {
        auto t = home.Admin("/v1/tickets").at("tickets").as_array();
        return t.size() == 1 && t[0].at("occurrences").to_number<int>() == 2;
      },
      std::chrono::seconds(30)));
  ASSERT_TRUE(Eventually([&] { return agent.AgentLogText().find("occurrence added") != std::string::npos; },
                         std::chrono::seconds(10)))
      << agent.AgentLogText();
  std::this_thread::sleep_for(std::chrono::seconds(2));  // give a wrong second email time to show up
  EXPECT_EQ(mail.Messages().size(), 1u);
  EXPECT_EQ(home.Stat("tickets"), 1);
  EXPECT_EQ(home.Stat("emails_sent"), 1);

  // `lifeline agent status` shows the ticket and an empty queue.
  auto status = RunLifeline({"agent", "status", "--config", agent.config().string()});
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("LL-000001"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("queue depth:   0"), std::string::npos) << status.output;

  // `lifeline tickets list` and `show` read it through the admin API.
  WriteFile(dir / "token", home.admin_token());
  auto listed = RunLifeline({"tickets", "--home", home.admin_url(), "--ca", (home.pki_dir() / "ca.crt").string(),
                             "--token-file", (dir / "token").string(), "list"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find("LL-000001"), std::string::npos) << listed.output;
  auto shown = RunLifeline({"tickets", "--home", home.admin_url(), "--ca", (home.pki_dir() / "ca.crt").string(),
                            "--token-file", (dir / "token").string(), "show", "LL-000001"});
  EXPECT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_NE(shown.output.find("occurrences:  2"), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("sent"), std::string::npos) << shown.output;

  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
