// Two `lifeline home run` processes on one real PostgreSQL database (store.backend = "postgresql"):
// a device's alert through either home becomes one ticket, visible from both, and one email, though
// both homes' notifiers poll the shared outbox.
#include "support/harness.h"
#include "support/postgres_server.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <thread>

namespace lifeline::testing {
namespace {

const auto* const postgres_environment = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

TEST(PostgresAlertToEmail, TwoHomesOnOneDatabaseMakeOneTicketAndOneEmail) {
  PostgresServer* server = SharedPostgres();
  ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start";
  TempDir dir;
  MailSink mail(dir / "mail");
  // The connection string is a secret: given here through a file, as an operator would.
  WriteFile(dir / "store-url", server->CreateDatabase() + "\n");
  const std::string store_config = fmt::format(
      "backend = \"postgresql\"\npostgresql.url_file = \"{}\"\npostgresql.pool_size = 3", (dir / "store-url").string());
  TestHome home_a(dir / "home-a", mail.port(), {"oncall@example.com"}, store_config);
  TestHome home_b(dir / "home-b", mail.port(), {"oncall@example.com"}, store_config);
  home_a.Start();
  home_b.Start();
  EXPECT_EQ(ReadFile(home_a.dir() / "home.db"), "");  // no SQLite file: the data is in PostgreSQL

  // Enrolled through home A, reporting to home A; the token and the device are in the shared database.
  TestAgent agent(dir / "agent", home_a, "SN-2001");
  auto enrolled = agent.Enroll(home_a.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  agent.Start();
  agent.AppendLine("2026-11-21T10:00:01Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");

  ASSERT_TRUE(Eventually([&] { return mail.Messages().size() == 1; }, std::chrono::seconds(30)))
      << ReadFile(home_a.log_file()) << ReadFile(home_b.log_file());
  const std::string email = mail.Messages()[0];
  EXPECT_NE(email.find("LL-000001"), std::string::npos) << email;
  EXPECT_NE(email.find("SIM-3A21F4"), std::string::npos) << email;
  EXPECT_NE(email.find("SN-2001"), std::string::npos) << email;
  ASSERT_TRUE(Eventually([&] { return agent.AgentLogText().find("ticket LL-000001") != std::string::npos; },
                         std::chrono::seconds(10)))
      << agent.AgentLogText();

  // Home B sees the ticket home A opened, and the email as sent.
  auto tickets = home_b.Admin("/v1/tickets?state=open").at("tickets").as_array();
  ASSERT_EQ(tickets.size(), 1u);
  EXPECT_EQ(tickets[0].at("number").as_string(), "LL-000001");
  ASSERT_TRUE(Eventually([&] { return home_b.Stat("emails_sent") == 1; }, std::chrono::seconds(10)));

  // The same alert again: an occurrence on the same ticket, and still one email after both
  // notifiers had time to (wrongly) send another.
  agent.AppendLine("2026-11-21T10:05:00Z SVP CRIT SIM=3A21F4 Drive failure HDD 00-12");
  ASSERT_TRUE(Eventually(
      [&] {
        auto t = home_b.Admin("/v1/tickets").at("tickets").as_array();
        return t.size() == 1 && t[0].at("occurrences").to_number<int>() == 2;
      },
      std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(mail.Messages().size(), 1u);
  EXPECT_EQ(home_a.Stat("tickets"), 1);
  EXPECT_EQ(home_a.Stat("emails_sent"), 1);

  agent.Stop();
  home_a.Stop();
  home_b.Stop();
}

TEST(PostgresAlertToEmail, UnreachableDatabaseIsOneClearLineNamingTheKey) {
  TempDir dir;
  WriteFile(dir / "home.toml", fmt::format(R"([pki]
dir = "{0}/pki"
[store]
backend = "postgresql"
postgresql.url = "host={0} port=1 dbname=lifeline connect_timeout=2"
)",
                                           dir.path().string()));
  auto run = RunLifeline({"home", "run", "--config", (dir / "home.toml").string()});
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("store.postgresql.url"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("connection to server"), std::string::npos) << run.output;

  // A postgresql backend without a URL is a config error naming the key.
  WriteFile(dir / "home.toml", "[store]\nbackend = \"postgresql\"\n");
  auto missing = RunLifeline({"home", "run", "--config", (dir / "home.toml").string()});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("store.postgresql.url"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace lifeline::testing
