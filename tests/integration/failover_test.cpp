// Redundant home sites: with the primary home down and the disaster-recovery home up, delivery
// continues to the second endpoint, and moves back when the primary returns. Both homes share one PKI
// (the DR site is a copy of the primary's keys) and each has the device enrolled in its own store.
#include "support/harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>

namespace lifeline::testing {
namespace {

std::set<std::string> TicketCodes(TestHome& home) {
  std::set<std::string> codes;
  auto tickets = home.Admin("/v1/tickets?limit=1000");
  if (tickets.is_object()) {
    for (const auto& t : tickets.at("tickets").as_array()) {
      codes.insert(std::string(t.at("code").as_string()));
    }
  }
  return codes;
}

// Replaces `key = ...` line of [home] (the first line starting with `key =`) with `replacement`.
std::string ReplaceLine(std::string text, const std::string& key, const std::string& replacement) {
  const auto at = text.find("\n" + key + " = ");
  EXPECT_NE(at, std::string::npos) << key;
  const auto end = text.find('\n', at + 1);
  return text.replace(at + 1, end - at - 1, replacement);
}

TEST(Failover, PrimaryDownDeliveryContinuesToDrAndMovesBack) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome primary(dir / "primary", mail.port());
  TestHome dr(dir / "dr", mail.port());
  // The DR site runs with the primary's keys: same CA, same sealing and signing keys.
  fs::copy(primary.pki_dir(), dr.pki_dir(), fs::copy_options::overwrite_existing | fs::copy_options::recursive);
  primary.Start();
  dr.Start();

  TestAgent agent(dir / "agent", primary, "SN-DR-1");
  const std::string base = agent.ConfigText();
  // Enrolled on each site with its own token (the device keys are kept, so both know the same key).
  agent.SetConfig(ReplaceLine(base, "url", fmt::format("url = \"{}\"", dr.ingest_url())));
  auto on_dr = agent.Enroll(dr.EnrollToken(agent.identity()));
  ASSERT_EQ(on_dr.exit_code, 0) << on_dr.output;
  agent.SetConfig(base);
  auto on_primary = RunLifeline({"agent", "enroll", "--config", agent.config().string(), "--force", "--token",
                                 primary.EnrollToken(agent.identity())});
  ASSERT_EQ(on_primary.exit_code, 0) << on_primary.output;

  agent.SetConfig(ReplaceLine(base, "url",
                              fmt::format("url = \"{}\"\nfallback_urls = [\"{}\"]\nretry_preferred_after = \"1s\"",
                                          primary.ingest_url(), dr.ingest_url())));
  agent.Start();

  // 1. Both up: the primary gets it.
  agent.AppendLine("CRIT SIM=D00001 both sites up");
  ASSERT_TRUE(Eventually([&] { return TicketCodes(primary).count("SIM-D00001") == 1; }, std::chrono::seconds(20)))
      << agent.AgentLogText();
  EXPECT_EQ(TicketCodes(dr).count("SIM-D00001"), 0u);

  // 2. Primary down: delivery continues to DR, and the switch is said once, clearly.
  primary.Stop();
  agent.AppendLine("CRIT SIM=D00002 primary down");
  ASSERT_TRUE(Eventually([&] { return TicketCodes(dr).count("SIM-D00002") == 1; }, std::chrono::seconds(30)))
      << agent.AgentLogText();
  const std::string switched = fmt::format("home {} unreachable via direct", primary.ingest_url());
  const std::string using_dr = fmt::format("; using {} direct", dr.ingest_url());
  EXPECT_NE(agent.AgentLogText().find(switched), std::string::npos) << agent.AgentLogText();
  EXPECT_NE(agent.AgentLogText().find(using_dr), std::string::npos) << agent.AgentLogText();

  // More while the primary is down: all to DR.
  agent.AppendLine("CRIT SIM=D00003 still down");
  ASSERT_TRUE(Eventually([&] { return TicketCodes(dr).count("SIM-D00003") == 1; }, std::chrono::seconds(20)))
      << agent.AgentLogText();

  // 3. The primary returns (same address): the agent moves back on its next send.
  primary.Start();
  int sent = 4;
  ASSERT_TRUE(Eventually(
      [&] {
        const auto codes = TicketCodes(primary);
        for (int i = 4; i < sent; ++i) {
          if (codes.count(fmt::format("SIM-D{:05}", i)) == 1) {
            return true;
          }
        }
        agent.AppendLine(fmt::format("CRIT SIM=D{:05} after the primary returned", sent++));
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        return false;
      },
      std::chrono::seconds(30)))
      << agent.AgentLogText();
  EXPECT_NE(agent.AgentLogText().find(fmt::format("home {} reachable again via direct; moving back from {} via direct",
                                                  primary.ingest_url(), dr.ingest_url())),
            std::string::npos)
      << agent.AgentLogText();
  // Everything raised arrived, each alert at exactly one site.
  ASSERT_TRUE(Eventually(
      [&] {
        auto a = TicketCodes(primary);
        auto b = TicketCodes(dr);
        return a.size() + b.size() == static_cast<std::size_t>(sent - 1);
      },
      std::chrono::seconds(20)));
  auto at_primary = TicketCodes(primary);
  for (const auto& code : TicketCodes(dr)) {
    EXPECT_EQ(at_primary.count(code), 0u) << code;
  }
  // Once back, later alerts keep going to the primary.
  agent.AppendLine(fmt::format("CRIT SIM=D{:05} back on primary", sent));
  EXPECT_TRUE(Eventually([&] { return TicketCodes(primary).count(fmt::format("SIM-D{:05}", sent)) == 1; },
                         std::chrono::seconds(20)))
      << agent.AgentLogText();

  agent.Stop();
  primary.Stop();
  dr.Stop();
}

}  // namespace
}  // namespace lifeline::testing
