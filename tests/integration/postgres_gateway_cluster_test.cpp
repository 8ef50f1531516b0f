// A gateway in front of a cluster: two `lifeline home run` nodes on one PostgreSQL database and one
// PKI. The gateway keeps a tunnel to each node, so an engineer reaches a device through either; when
// a node stops it first asks the gateway to move (GOAWAY), sessions through the other node go on,
// and the gateway comes back to the node when it returns.
#include "support/gateway_harness.h"
#include "support/harness.h"
#include "support/postgres_server.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

using namespace std::chrono_literals;

const auto* const postgres_environment = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

// The gateways a home lists (GET /v1/gateways).
std::string GatewaysOf(TestHome& home) { return boost::json::serialize(home.Admin("/v1/gateways")); }

TEST(PostgresGatewayCluster, TunnelToEachNodeSessionsThroughEitherAndDrainOnStop) {
  PostgresServer* server = SharedPostgres();
  ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start";
  TempDir dir;
  const std::string conninfo = server->CreateDatabase();
  WriteFile(dir / "store-url", conninfo + "\n");
  const std::string store_config =
      fmt::format("backend = \"postgresql\"\npostgresql.url_file = \"{}\"\npostgresql.pool_size = 4",
                  (dir / "store-url").string());
  TestHome home_a(dir / "home-a", FreePort(), {"oncall@example.com"}, store_config);
  TestHome home_b(dir / "home-b", FreePort(), {"oncall@example.com"}, store_config);
  std::filesystem::remove_all(home_b.pki_dir());
  std::filesystem::copy(home_a.pki_dir(), home_b.pki_dir(), std::filesystem::copy_options::recursive);
  home_a.Start();
  home_b.Start();

  TestSshd sshd(dir / "sshd");
  TestGateway gateway(dir / "gateway", home_a);
  gateway.SetExtraConfig("", {fmt::format("tls://127.0.0.1:{}", home_a.tunnel_port()),
                              fmt::format("tls://127.0.0.1:{}", home_b.tunnel_port())});
  gateway.Enroll();
  gateway.Start(/*tunnels_up=*/2);
  auto added = gateway.Run({"devices", "add", "--serial", "array-1", "--address", "127.0.0.1", "--app",
                            fmt::format("ssh:{}", sshd.port())});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  ASSERT_TRUE(Eventually([&] { return GatewaysOf(home_a).find("acme/lab/gw-1") != std::string::npos; }, 10s));
  ASSERT_TRUE(Eventually([&] { return GatewaysOf(home_b).find("acme/lab/gw-1") != std::string::npos; }, 10s));

  // A session through each node.
  for (TestHome* home : {&home_a, &home_b}) {
    TestSession session(dir / fmt::format("session-{}", home == &home_a ? "a" : "b"), *home, "array-1", "ssh");
    ASSERT_TRUE(session.WaitOpen()) << session.Output() << gateway.LogText();
    auto result = sshd.Ssh(session.local_port(), "echo through-either-node");
    EXPECT_NE(result.output.find("through-either-node"), std::string::npos) << result.output;
    EXPECT_EQ(session.Terminate(), 0);
  }

  // Node A stops: it tells the gateway to move first; node B keeps serving.
  home_a.Stop();
  EXPECT_GE(gateway.CountInLog("the home is draining"), 1) << gateway.LogText();
  TestSession during(dir / "session-during", home_b, "array-1", "ssh");
  ASSERT_TRUE(during.WaitOpen()) << during.Output();
  auto result = sshd.Ssh(during.local_port(), "echo node-b-alone");
  EXPECT_NE(result.output.find("node-b-alone"), std::string::npos) << result.output;
  EXPECT_EQ(during.Terminate(), 0);

  // Node A returns and gets its tunnel back.
  const int up_before = gateway.CountInLog("to the home is up");
  home_a.Start();
  ASSERT_TRUE(Eventually([&] { return gateway.CountInLog("to the home is up") > up_before; }, 30s)) << gateway.LogText();
  ASSERT_TRUE(Eventually([&] { return GatewaysOf(home_a).find("acme/lab/gw-1") != std::string::npos; }, 10s));
  TestSession after(dir / "session-after", home_a, "array-1", "ssh");
  ASSERT_TRUE(after.WaitOpen()) << after.Output() << gateway.LogText();
  result = sshd.Ssh(after.local_port(), "echo node-a-back");
  EXPECT_NE(result.output.find("node-a-back"), std::string::npos) << result.output;
  EXPECT_EQ(after.Terminate(), 0);
}

}  // namespace
}  // namespace lifeline::testing
