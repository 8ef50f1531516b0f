// Remote sessions end to end with real processes on loopback: `lifeline home`, `lifeline gateway run`
// (enrolled with a gateway token, its tunnel dialled to the home), Debian's sshd and an openssl
// s_server playing a managed device's applications, and `lifeline connect` for the engineer.
#include "support/gateway_harness.h"
#include "support/harness.h"
#include "support/proxies.h"

#include <gtest/gtest.h>
#include <fmt/format.h>

#include <algorithm>
#include <future>
#include <sstream>

namespace lifeline::testing {
namespace {

using namespace std::chrono_literals;

class RemoteSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    home_.emplace(dir_ / "home", FreePort());
    home_->Start();
    sshd_.emplace(dir_ / "sshd");
    web_.emplace(dir_ / "web");
    gateway_.emplace(dir_ / "gateway", *home_);
  }

  void StartGateway() {
    gateway_->Enroll();
    gateway_->Start();
    auto added = gateway_->Run({"devices", "add", "--serial", "array-1", "--model", "VSP G900", "--address",
                                "127.0.0.1", "--app", fmt::format("ssh:{}", sshd_->port()), "--app",
                                fmt::format("https:{}", web_->port())});
    ASSERT_EQ(added.exit_code, 0) << added.output;
  }

  // Fetches the device's web page through a session's local port.
  CommandResult Https(int port) {
    return RunCommand({"/usr/bin/curl", "-sS", "-k", "--max-time", "20", fmt::format("https://127.0.0.1:{}/", port)},
                      30s);
  }

  TempDir dir_;
  std::optional<TestHome> home_;
  std::optional<TestSshd> sshd_;
  std::optional<TestHttpsServer> web_;
  std::optional<TestGateway> gateway_;
};

TEST_F(RemoteSessionTest, SshAndHttpsSessionsRunThroughTheTunnelAtTheSameTime) {
  StartGateway();
  TestSession ssh(dir_ / "ssh-session", *home_, "array-1", "ssh", "SR-1001 disk replacement");
  TestSession web(dir_ / "web-session", *home_, "array-1", "https", "SR-1002 check the console");
  ASSERT_TRUE(ssh.WaitOpen()) << ssh.Output() << gateway_->LogText();
  ASSERT_TRUE(web.WaitOpen()) << web.Output();

  auto ssh_result = std::async(std::launch::async, [&] { return sshd_->Ssh(ssh.local_port(), "echo hello-from-array"); });
  auto web_result = std::async(std::launch::async, [&] { return Https(web.local_port()); });
  const auto over_ssh = ssh_result.get();
  const auto over_https = web_result.get();
  EXPECT_EQ(over_ssh.exit_code, 0) << over_ssh.output << ssh.Output() << gateway_->LogText();
  EXPECT_NE(over_ssh.output.find("hello-from-array"), std::string::npos) << over_ssh.output;
  EXPECT_EQ(over_https.exit_code, 0) << over_https.output << web.Output();
  EXPECT_NE(over_https.output.find("s_server"), std::string::npos) << over_https.output;

  // The gateway lists both sessions; ending them from the engineer's side is audited with bytes.
  auto listed = gateway_->Run({"sessions", "list", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find(ssh.id()), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find(web.id()), std::string::npos) << listed.output;
  EXPECT_EQ(ssh.Terminate(), 0) << ssh.Output();
  EXPECT_EQ(web.Terminate(), 0) << web.Output();
  auto all = gateway_->Run({"sessions", "list", "--all", "--json"});
  ASSERT_EQ(all.exit_code, 0) << all.output;
  const auto records = boost::json::parse(all.output.substr(all.output.find('{')));
  int ended = 0;
  for (const auto& record : records.at("sessions").as_array()) {
    const auto& r = record.as_object();
    if (r.at("id").as_string() == ssh.id() || r.at("id").as_string() == web.id()) {
      EXPECT_EQ(r.at("outcome").as_string(), "ended by engineer");
      EXPECT_GT(r.at("bytes_to_device").to_number<std::int64_t>(), 0);
      EXPECT_GT(r.at("bytes_from_device").to_number<std::int64_t>(), 0);
      EXPECT_TRUE(std::string_view(r.at("engineer").as_string()).starts_with("tests-"));
      ++ended;
    }
  }
  EXPECT_EQ(ended, 2) << all.output;
}

// The gateway probes each registered port and the home sees the result (GET /v1/gateways).
TEST_F(RemoteSessionTest, HomeSeesTheReachabilityTheGatewayProbed) {
  StartGateway();
  auto added = gateway_->Run({"devices", "add", "--serial", "array-2", "--address", "127.0.0.1", "--app",
                              fmt::format("ssh:{}", FreePort())});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  // Probes run every 5 s here: array-1's ports answer, array-2's does not.
  std::string gateways;
  ASSERT_TRUE(Eventually(
      [&] {
        gateways = boost::json::serialize(home_->Admin("/v1/gateways"));
        return gateways.find("\"unreachable\"") != std::string::npos &&
               gateways.find("\"reachable\"") != std::string::npos;
      },
      20s))
      << gateways;
  EXPECT_NE(gateways.find("acme/lab/gw-1"), std::string::npos) << gateways;
  EXPECT_NE(gateways.find("array-2"), std::string::npos) << gateways;
}

TEST_F(RemoteSessionTest, UnregisteredDeviceOrApplicationIsRefusedAtTheGateway) {
  StartGateway();
  TestSession telnet(dir_ / "telnet", *home_, "array-1", "telnet");
  EXPECT_FALSE(telnet.WaitOpen()) << telnet.Output();
  EXPECT_NE(telnet.Wait(10s).value_or(-1), 0);
  EXPECT_NE(telnet.Output().find("'telnet'"), std::string::npos) << telnet.Output();

  TestSession unknown(dir_ / "unknown", *home_, "acme/lab/array-9", "ssh");
  EXPECT_FALSE(unknown.WaitOpen()) << unknown.Output();
  EXPECT_NE(unknown.Wait(10s).value_or(-1), 0);
  EXPECT_NE(unknown.Output().find("array-9"), std::string::npos) << unknown.Output();

  // Both refusals are audit records at the gateway.
  auto all = gateway_->Run({"sessions", "list", "--all", "--json"});
  ASSERT_EQ(all.exit_code, 0) << all.output;
  EXPECT_NE(all.output.find("refused: "), std::string::npos) << all.output;
}

TEST_F(RemoteSessionTest, EndingASessionAtTheGatewayClosesIt) {
  StartGateway();
  TestSession ssh(dir_ / "ssh-session", *home_, "array-1", "ssh");
  ASSERT_TRUE(ssh.WaitOpen()) << ssh.Output();
  // A long-running command keeps a connection open while the customer ends the session.
  auto running = std::async(std::launch::async, [&] { return sshd_->Ssh(ssh.local_port(), "sleep 60"); });
  ASSERT_TRUE(Eventually(
      [&] {
        return gateway_->Run({"sessions", "list", "--json"}).output.find("\"open_connections\":1") != std::string::npos;
      },
      20s))
      << gateway_->LogText();
  auto killed = gateway_->Run({"sessions", "kill", ssh.id()});
  ASSERT_EQ(killed.exit_code, 0) << killed.output;
  // The open connection is cut at once, and `lifeline connect` leaves, saying why.
  ASSERT_EQ(running.wait_for(20s), std::future_status::ready);
  EXPECT_NE(running.get().exit_code, 0);
  EXPECT_TRUE(ssh.Wait(20s).has_value()) << ssh.Output();
  EXPECT_NE(ssh.Output().find("ended at the gateway by"), std::string::npos) << ssh.Output();
}

TEST_F(RemoteSessionTest, RemoteAccessSwitchedOffRefusesSessions) {
  StartGateway();
  auto off = gateway_->Run({"remote-access", "off"});
  ASSERT_EQ(off.exit_code, 0) << off.output;
  TestSession ssh(dir_ / "ssh-session", *home_, "array-1", "ssh");
  EXPECT_FALSE(ssh.WaitOpen());
  EXPECT_NE(ssh.Output().find("remote access is switched off"), std::string::npos) << ssh.Output();
  auto on = gateway_->Run({"remote-access", "on"});
  ASSERT_EQ(on.exit_code, 0) << on.output;
  TestSession again(dir_ / "again", *home_, "array-1", "ssh");
  EXPECT_TRUE(again.WaitOpen()) << again.Output();
}

TEST_F(RemoteSessionTest, GatewayReconnectsAfterTheHomeRestartsAndNewSessionsWork) {
  StartGateway();
  home_->Stop();
  // The home asked the gateway to move (GOAWAY) and went; nothing answers on its port now.
  ASSERT_TRUE(Eventually([&] { return gateway_->CountInLog("no route to the home worked") >= 1; }, 20s))
      << gateway_->LogText();
  const int up_before = gateway_->CountInLog("to the home is up");
  home_->Start();
  ASSERT_TRUE(Eventually([&] { return gateway_->CountInLog("to the home is up") > up_before; }, 30s))
      << gateway_->LogText();
  TestSession ssh(dir_ / "ssh-session", *home_, "array-1", "ssh");
  ASSERT_TRUE(ssh.WaitOpen()) << ssh.Output() << gateway_->LogText();
  auto result = sshd_->Ssh(ssh.local_port(), "echo back-again");
  EXPECT_NE(result.output.find("back-again"), std::string::npos) << result.output;
}

// The same serial at two sites: a bare serial is refused as ambiguous, the full name works.
TEST_F(RemoteSessionTest, SerialManagedAtTwoSitesMustBeNamedInFull) {
  StartGateway();
  TestGateway other(dir_ / "gateway-2", *home_, "gw-2", "lab-2");
  other.Enroll();
  other.Start();
  auto added = other.Run({"devices", "add", "--serial", "array-1", "--address", "127.0.0.1", "--app",
                          fmt::format("ssh:{}", sshd_->port())});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  TestSession bare(dir_ / "bare", *home_, "array-1", "ssh");
  EXPECT_FALSE(bare.WaitOpen()) << bare.Output();
  EXPECT_NE(bare.Output().find("several sites"), std::string::npos) << bare.Output();
  TestSession full(dir_ / "full", *home_, "acme/lab-2/array-1", "ssh");
  ASSERT_TRUE(full.WaitOpen()) << full.Output();
  auto listed = other.Run({"sessions", "list", "--json"});
  EXPECT_NE(listed.output.find(full.id()), std::string::npos) << listed.output;
}

// Nothing at the gateway listens but its device-facing port and its loopback admin interface: the
// tunnel is dialled out, and sessions arrive inside it.
TEST_F(RemoteSessionTest, GatewayListensOnlyOnItsDevicePortAndLoopbackAdmin) {
  StartGateway();
  TestSession ssh(dir_ / "ssh-session", *home_, "array-1", "ssh");
  ASSERT_TRUE(ssh.WaitOpen()) << ssh.Output();
  auto listening = RunCommand({"/usr/bin/ss", "-H", "-ltnp"});
  ASSERT_EQ(listening.exit_code, 0) << listening.output;
  std::vector<std::string> ours;
  std::istringstream lines(listening.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(fmt::format("pid={},", gateway_->pid())) != std::string::npos) {
      std::istringstream fields(line);
      std::string state, recv_q, send_q, local;
      fields >> state >> recv_q >> send_q >> local;
      ours.push_back(local);
    }
  }
  ASSERT_EQ(ours.size(), 2u) << listening.output;
  for (const auto& local : ours) {
    EXPECT_TRUE(local.starts_with("127.0.0.1:")) << local;  // the test puts the device port on loopback too
  }
  EXPECT_TRUE(std::find(ours.begin(), ours.end(), fmt::format("127.0.0.1:{}", gateway_->admin_port())) != ours.end())
      << listening.output;
}

// The same through the site's proxies: the tunnel through an HTTP CONNECT proxy (squid) and through
// a SOCKS5 server (microsocks), started by the test.
TEST_F(RemoteSessionTest, TunnelThroughHttpConnectProxy) {
  auto squid = StartSquid(dir_ / "squid");
  gateway_->SetExtraConfig(fmt::format("[[paths]]\nkind = \"http\"\nproxy = \"{}\"\nusername = \"carol\"\n"
                                       "password = \"letmein\"\n",
                                       squid->address()));
  StartGateway();
  TestSession ssh(dir_ / "ssh-session", *home_, "array-1", "ssh");
  ASSERT_TRUE(ssh.WaitOpen()) << ssh.Output();
  auto result = sshd_->Ssh(ssh.local_port(), "echo via-squid");
  EXPECT_NE(result.output.find("via-squid"), std::string::npos) << result.output << gateway_->LogText();
  EXPECT_NE(gateway_->LogText().find("via HTTP proxy " + squid->address()), std::string::npos) << gateway_->LogText();
}

TEST_F(RemoteSessionTest, TunnelInsideWebSocketThroughSocks5) {
  auto socks = StartMicrosocks(dir_ / "socks");
  gateway_->SetExtraConfig(
      fmt::format("[[paths]]\nkind = \"socks5\"\nproxy = \"{}\"\nusername = \"bob\"\npassword = \"pw\"\n", socks->address()),
      {fmt::format("wss://127.0.0.1:{}/tunnel", home_->tunnel_port())});
  StartGateway();
  TestSession web(dir_ / "web-session", *home_, "array-1", "https");
  ASSERT_TRUE(web.WaitOpen()) << web.Output();
  auto page = Https(web.local_port());
  EXPECT_NE(page.output.find("s_server"), std::string::npos) << page.output << gateway_->LogText();
  EXPECT_NE(gateway_->LogText().find("via SOCKS5 proxy " + socks->address()), std::string::npos) << gateway_->LogText();
}

// The engineer's side through the vendor's proxy: `lifeline connect --proxy` sends its API calls and
// every connection's WebSocket through squid (with basic authentication, the password from
// LIFELINE_PROXY_PASSWORD). Pointed at a proxy that is not there, it fails saying so: the proxy is
// really on the path.
TEST_F(RemoteSessionTest, EngineerConnectsThroughAnHttpProxy) {
  auto squid = StartSquid(dir_ / "squid");
  StartGateway();
  ::setenv("LIFELINE_PROXY_PASSWORD", "letmein", 1);
  TestSession ssh(dir_ / "ssh-session", *home_, "array-1", "ssh", "SR-1 via proxy",
                  {"--proxy", fmt::format("http://carol@{}", squid->address())});
  TestSession dead(dir_ / "dead-session", *home_, "array-1", "ssh", "SR-2 via no proxy",
                   {"--proxy", fmt::format("http://carol@127.0.0.1:{}", UnusedLoopbackPort())});
  ::unsetenv("LIFELINE_PROXY_PASSWORD");
  ASSERT_TRUE(ssh.WaitOpen()) << ssh.Output();
  auto result = sshd_->Ssh(ssh.local_port(), "echo engineer-via-squid");
  EXPECT_NE(result.output.find("engineer-via-squid"), std::string::npos) << result.output << ssh.Output();
  EXPECT_EQ(ssh.Terminate(), 0) << ssh.Output();
  // squid logs each tunnel when it closes: the API's and the session's WebSocket's.
  ASSERT_TRUE(Eventually(
      [&] {
        const std::string log = ReadFile(dir_ / "squid" / "access.log");
        return log.find(fmt::format("CONNECT 127.0.0.1:{}", home_->sessions_port())) != std::string::npos &&
               log.find("CONNECT " + home_->admin_url().substr(8)) != std::string::npos;
      },
      std::chrono::seconds(10)))
      << ReadFile(dir_ / "squid" / "access.log");

  EXPECT_FALSE(dead.WaitOpen()) << dead.Output();
  EXPECT_NE(dead.Output().find("through HTTP proxy 127.0.0.1:"), std::string::npos) << dead.Output();

  auto malformed = RunLifeline({"connect", "--home", home_->admin_url(), "--ca", (home_->pki_dir() / "ca.crt").string(),
                                "--token-file", (dir_ / "ssh-session" / "token").string(), "--device", "array-1",
                                "--app", "ssh", "--reason", "x", "--proxy", "http://carol:letmein@127.0.0.1:3128"});
  EXPECT_NE(malformed.exit_code, 0);
  EXPECT_NE(malformed.output.find("LIFELINE_PROXY_PASSWORD"), std::string::npos) << malformed.output;
}

}  // namespace
}  // namespace lifeline::testing
