// Instructions from home, still outbound only: they ride on the home's signed replies; the agent acts on
// its allow-list only, reports each result in a later batch, and applies a new configuration atomically.
#include "common/clock.h"
#include "store/sqlite/home_store.h"
#include "support/harness.h"

#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

std::string Status(const TestHome& home, const protocol::DeviceIdentity& device, const std::string& id) {
  auto store = store::SqliteHomeStore::Open(home.dir() / "home.db");
  if (!store) {
    return "store unreadable";
  }
  auto records = (*store)->ListInstructions(device);
  if (!records) {
    return "unlisted";
  }
  for (const auto& r : *records) {
    if (r.id == id) {
      return r.status + (r.detail.empty() ? "" : ": " + r.detail);
    }
  }
  return "missing";
}

std::string Queue(const TestHome& home, const protocol::DeviceIdentity& device, const std::vector<std::string>& what) {
  std::vector<std::string> args = {"home", "instruct", "--config", home.config().string(), "--customer",
                                   device.customer, "--site", device.site, "--serial", device.serial};
  args.insert(args.end(), what.begin(), what.end());
  auto result = RunLifeline(args);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  const auto at = result.output.find("instruction ");
  return at == std::string::npos ? "" : result.output.substr(at + 12, 32);
}

TEST(Instructions, AllowListedInstructionsAreCarriedOutAndOthersRefused) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-INSTR");
  ASSERT_EQ(agent.Enroll(home.EnrollToken(agent.identity())).exit_code, 0);
  const auto device = agent.identity();

  // Queued before the agent starts: its first heartbeat's reply carries them.
  const std::string test_alert = Queue(home, device, {"--send-test-alert"});
  std::string unknown;
  {
    auto store = store::SqliteHomeStore::Open(home.dir() / "home.db");
    ASSERT_TRUE(store);
    auto id = (*store)->QueueInstruction(device, "reboot_now", "", SystemClock::Instance().NowUnixMillis());
    ASSERT_TRUE(id);
    unknown = *id;
  }
  agent.Start();

  // The test alert travels the whole path: a ticket and an email.
  ASSERT_TRUE(Eventually([&] { return mail.Messages().size() == 1; }, std::chrono::seconds(30)))
      << agent.AgentLogText();
  EXPECT_NE(mail.Messages()[0].find("LIFELINE-TEST"), std::string::npos);
  ASSERT_TRUE(Eventually([&] { return Status(home, device, test_alert) == "done"; }, std::chrono::seconds(20)))
      << Status(home, device, test_alert);
  EXPECT_NE(Status(home, device, unknown).find("refused: 'reboot_now' is not on this agent's allow-list"),
            std::string::npos)
      << Status(home, device, unknown);
  EXPECT_NE(agent.AgentLogText().find("kind 'reboot_now' is not on the allow-list"), std::string::npos);

  // A valid new configuration: applied atomically (the old one kept), the agent restarts with it.
  std::string next = agent.ConfigText();
  next.replace(next.find("interval = \"1h\""), 15, "interval = \"2h\"");
  WriteFile(dir / "next.toml", next);
  const std::string apply = Queue(home, device, {"--apply-config", (dir / "next.toml").string()});
  agent.AppendLine("CRIT SIM=00AA01 nudge");  // any send brings the instruction back in its reply
  ASSERT_TRUE(Eventually([&] { return Status(home, device, apply) == "done"; }, std::chrono::seconds(30)))
      << Status(home, device, apply) << "\n" << agent.AgentLogText();
  EXPECT_NE(ReadFile(agent.config()).find("interval = \"2h\""), std::string::npos);
  EXPECT_NE(ReadFile(agent.config().string() + ".previous").find("interval = \"1h\""), std::string::npos);
  EXPECT_NE(agent.AgentLogText().find("heartbeat every 7200 s"), std::string::npos) << agent.AgentLogText();

  // An invalid one (unknown key) and one that changes the device's identity are refused, file untouched.
  WriteFile(dir / "bad.toml", next + "\n[nonsense]\nx = 1\n");
  const std::string bad = Queue(home, device, {"--apply-config", (dir / "bad.toml").string()});
  std::string other = next;
  other.replace(other.find("SN-INSTR"), 8, "SN-OTHER");
  WriteFile(dir / "other.toml", other);
  const std::string identity = Queue(home, device, {"--apply-config", (dir / "other.toml").string()});
  agent.AppendLine("CRIT SIM=00AA02 nudge");
  ASSERT_TRUE(Eventually([&] { return Status(home, device, bad).starts_with("refused") &&
                                      Status(home, device, identity).starts_with("refused"); },
                         std::chrono::seconds(30)))
      << Status(home, device, bad) << " / " << Status(home, device, identity);
  EXPECT_NE(Status(home, device, bad).find("nonsense"), std::string::npos) << Status(home, device, bad);
  EXPECT_NE(Status(home, device, identity).find("device identity"), std::string::npos);
  EXPECT_EQ(ReadFile(agent.config()), next);

  agent.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
