// `lifeline check`: a readable report of the path home and a non-zero exit on any failure.
#include "support/harness.h"

#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

TEST(Check, ReportsEveryStepAndFailsWhenTheHomeIsDownOrNotTheOnePinned) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  TestAgent agent(dir / "agent", home, "SN-CHECK");
  ASSERT_EQ(agent.Enroll(home.EnrollToken(agent.identity())).exit_code, 0);

  auto good = RunLifeline({"check", "--config", agent.config().string()});
  EXPECT_EQ(good.exit_code, 0) << good.output;
  for (const char* step : {"[ok  ] device certificate", "[ok  ] name resolution: 127.0.0.1", "[ok  ] TCP reach",
                           "[ok  ] TLS and CA pin", "[ok  ] clock skew", "[ok  ] test message round trip",
                           "valid for", "checks passed"}) {
    EXPECT_NE(good.output.find(step), std::string::npos) << step << "\n" << good.output;
  }
  // The round trip was a real heartbeat: the home saw this device.
  auto devices = home.Admin("/v1/devices").at("devices").as_array();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_FALSE(devices[0].at("last_heartbeat").as_string().empty());

  home.Stop();
  auto down = RunLifeline({"check", "--config", agent.config().string()});
  EXPECT_EQ(down.exit_code, 1) << down.output;
  EXPECT_NE(down.output.find("[FAIL] TCP reach"), std::string::npos) << down.output;
  EXPECT_NE(down.output.find("checks FAILED"), std::string::npos) << down.output;

  // Another home's CA in place of the pinned one: the handshake is refused and the report says so.
  home.Start();
  TestHome stranger(dir / "stranger", mail.port());
  std::filesystem::copy_file(stranger.pki_dir() / "ca.crt", agent.pki_dir() / "ca.crt",
                             std::filesystem::copy_options::overwrite_existing);
  auto pinned = RunLifeline({"check", "--config", agent.config().string()});
  EXPECT_EQ(pinned.exit_code, 1) << pinned.output;
  EXPECT_NE(pinned.output.find("[FAIL] device certificate"), std::string::npos) << pinned.output;
  EXPECT_NE(pinned.output.find("[FAIL] TLS and CA pin"), std::string::npos) << pinned.output;
  home.Stop();
}

TEST(Check, ConfigErrorsExitTwo) {
  TempDir dir;
  WriteFile(dir / "agent.toml", "[device]\ncustomer = \"a\"\n");
  auto result = RunLifeline({"check", "--config", (dir / "agent.toml").string()});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("device.site"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace lifeline::testing
