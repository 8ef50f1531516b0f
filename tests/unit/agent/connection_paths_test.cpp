#include "agent/connection_paths.h"

#include "agent/agent_config.h"
#include "agent/paths_config.h"
#include "protocol/codec.h"
#include "support/fake_clock.h"
#include "support/temp_dir.h"
#include "transport/errors.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace lifeline::agent {
namespace {

using namespace std::chrono_literals;
using lifeline::testing::FakeClock;
using lifeline::testing::TempDir;
using lifeline::testing::WriteFile;
using transport::ProxyKind;
using transport::ProxySettings;

ProxySettings Path(ProxyKind kind, std::string address = "") {
  ProxySettings path;
  path.kind = kind;
  path.address = std::move(address);
  return path;
}

// A network where each "endpoint via path" is up, down or answers something else; records every try.
class FakeNetwork {
 public:
  enum class State { kUp, kDown, kHomeRefuses, kServiceUnavailable, kNotOurHome, kBadRequest };

  void Set(const std::string& endpoint, const std::string& path, State state) {
    states_[endpoint + " " + path] = state;
  }
  std::vector<std::string>& tries() { return tries_; }

  ConnectionPaths::SendFunction Function() {
    return [this](const ProxySettings& path, const std::string& endpoint, std::string* detail)
               -> Result<transport::ClientResponse> {
      const std::string key = endpoint + " " + path.Describe();
      tries_.push_back(key);
      auto it = states_.find(key);
      const State state = it == states_.end() ? State::kUp : it->second;
      transport::ClientResponse response;
      switch (state) {
        case State::kUp:
          response.status = 200;
          response.body = "{}";
          return response;
        case State::kDown:
          *detail = "cannot connect to " + key;
          return transport::make_error_code(transport::Errc::kConnectFailed);
        case State::kHomeRefuses:
          response.status = 403;
          response.body = protocol::EncodeError(protocol::Reject::kDeviceRevoked, "revoked");
          return response;
        case State::kServiceUnavailable:
          response.status = 503;
          return response;
        case State::kNotOurHome:
          response.status = 404;
          response.body = "<html>not found</html>";
          return response;
        case State::kBadRequest:
          *detail = "invalid URL";
          return transport::make_error_code(transport::Errc::kInvalidArgument);
      }
      return transport::make_error_code(transport::Errc::kOther);
    };
  }

 private:
  std::map<std::string, State> states_;
  std::vector<std::string> tries_;
};

const std::string kPrimary = "https://a:9455";
const std::string kDr = "https://dr:9455";

TEST(ConnectionPathsTest, UsesTheFirstRouteWhileItWorks) {
  FakeClock clock;
  FakeNetwork net;
  ConnectionPaths paths({Path(ProxyKind::kNone), Path(ProxyKind::kHttp, "p:3128")}, {kPrimary, kDr},
                        60s, clock);
  EXPECT_EQ(paths.route_count(), 4u);
  for (int i = 0; i < 3; ++i) {
    auto response = paths.Send(net.Function());
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
  }
  EXPECT_EQ(net.tries(), (std::vector<std::string>(3, kPrimary + " direct")));
  EXPECT_TRUE(paths.LastFailure().empty());
}

TEST(ConnectionPathsTest, DeadFirstPathFallsOverToTheNextAndStaysThere) {
  FakeClock clock;
  FakeNetwork net;
  net.Set(kPrimary, "HTTP proxy p:3128", FakeNetwork::State::kDown);
  ConnectionPaths paths({Path(ProxyKind::kHttp, "p:3128"), Path(ProxyKind::kSocks5, "s:1080")},
                        {kPrimary}, 60s, clock);
  auto response = paths.Send(net.Function());
  ASSERT_TRUE(response);
  EXPECT_EQ(paths.Current(), (Route{.path = 1, .endpoint = 0}));
  EXPECT_NE(paths.LastFailure().find("home https://a:9455 unreachable via HTTP proxy p:3128"),
            std::string::npos)
      << paths.LastFailure();
  // The next sends go straight to the working path: no time lost on the dead one.
  net.tries().clear();
  clock.Advance(30s);
  ASSERT_TRUE(paths.Send(net.Function()));
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kPrimary + " SOCKS5 proxy s:1080"}));
}

TEST(ConnectionPathsTest, PrimaryDownUsesDrThenMovesBackWhenPrimaryReturns) {
  FakeClock clock;
  FakeNetwork net;
  ConnectionPaths paths({Path(ProxyKind::kNone)}, {kPrimary, kDr}, 60s, clock);
  net.Set(kPrimary, "direct", FakeNetwork::State::kDown);
  ASSERT_TRUE(paths.Send(net.Function()));
  EXPECT_EQ(paths.Current().endpoint, 1u);
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kPrimary + " direct", kDr + " direct"}));

  // Before the retry-after time, the primary is not tried again.
  net.tries().clear();
  clock.Advance(59s);
  ASSERT_TRUE(paths.Send(net.Function()));
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kDr + " direct"}));

  // After it, the primary is probed first; still down, so DR keeps serving, and the probe waits again.
  net.tries().clear();
  clock.Advance(2s);
  ASSERT_TRUE(paths.Send(net.Function()));
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kPrimary + " direct", kDr + " direct"}));
  EXPECT_EQ(paths.Current().endpoint, 1u);
  net.tries().clear();
  clock.Advance(30s);
  ASSERT_TRUE(paths.Send(net.Function()));
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kDr + " direct"}));

  // The primary returns: the next probe moves back, and it stays there.
  net.Set(kPrimary, "direct", FakeNetwork::State::kUp);
  clock.Advance(31s);
  net.tries().clear();
  ASSERT_TRUE(paths.Send(net.Function()));
  ASSERT_TRUE(paths.Send(net.Function()));
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kPrimary + " direct", kPrimary + " direct"}));
  EXPECT_EQ(paths.Current(), (Route{}));
}

TEST(ConnectionPathsTest, PrefersEveryPathToThePrimaryBeforeTheDrSite) {
  FakeClock clock;
  FakeNetwork net;
  net.Set(kPrimary, "direct", FakeNetwork::State::kDown);
  ConnectionPaths paths({Path(ProxyKind::kNone), Path(ProxyKind::kSocks4, "s:1080")}, {kPrimary, kDr},
                        60s, clock);
  ASSERT_TRUE(paths.Send(net.Function()));
  EXPECT_EQ(net.tries(),
            (std::vector<std::string>{kPrimary + " direct", kPrimary + " SOCKS4 proxy s:1080"}));
}

TEST(ConnectionPathsTest, ARefusalByTheHomeIsNotAPathFailure) {
  FakeClock clock;
  FakeNetwork net;
  net.Set(kPrimary, "direct", FakeNetwork::State::kHomeRefuses);
  ConnectionPaths paths({Path(ProxyKind::kNone)}, {kPrimary, kDr}, 60s, clock);
  auto response = paths.Send(net.Function());
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 403);
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kPrimary + " direct"}));
  EXPECT_EQ(paths.Current(), (Route{}));
}

TEST(ConnectionPathsTest, ServiceUnavailableOrAForeignServerIsAPathFailure) {
  FakeClock clock;
  FakeNetwork net;
  net.Set(kPrimary, "direct", FakeNetwork::State::kServiceUnavailable);
  net.Set(kPrimary, "HTTP proxy p:3128", FakeNetwork::State::kNotOurHome);
  ConnectionPaths paths({Path(ProxyKind::kNone), Path(ProxyKind::kHttp, "p:3128")}, {kPrimary, kDr},
                        60s, clock);
  auto response = paths.Send(net.Function());
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(paths.Current(), (Route{.path = 0, .endpoint = 1}));
  EXPECT_NE(paths.LastFailure().find("HTTP 503"), std::string::npos) << paths.LastFailure();
  EXPECT_NE(paths.LastFailure().find("HTTP 404"), std::string::npos) << paths.LastFailure();
}

TEST(ConnectionPathsTest, AllDownReturnsTheLastErrorAndTriesEveryRouteOnce) {
  FakeClock clock;
  FakeNetwork net;
  for (const auto& endpoint : {kPrimary, kDr}) {
    for (const auto& path : {"direct", "HTTP proxy p:3128"}) {
      net.Set(endpoint, path, FakeNetwork::State::kDown);
    }
  }
  ConnectionPaths paths({Path(ProxyKind::kNone), Path(ProxyKind::kHttp, "p:3128")}, {kPrimary, kDr},
                        60s, clock);
  for (int round = 0; round < 2; ++round) {  // the second round: every route is cooling down
    net.tries().clear();
    auto response = paths.Send(net.Function());
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error(), transport::Errc::kConnectFailed);
    EXPECT_EQ(net.tries().size(), 4u);
    EXPECT_EQ(net.tries().front(), kPrimary + " direct");
  }
  // Then one comes back.
  net.Set(kDr, "HTTP proxy p:3128", FakeNetwork::State::kUp);
  ASSERT_TRUE(paths.Send(net.Function()));
  EXPECT_EQ(paths.Current(), (Route{.path = 1, .endpoint = 1}));
}

TEST(ConnectionPathsTest, NonRetryableErrorStopsWithoutMarkingTheRoute) {
  FakeClock clock;
  FakeNetwork net;
  net.Set(kPrimary, "direct", FakeNetwork::State::kBadRequest);
  ConnectionPaths paths({Path(ProxyKind::kNone)}, {kPrimary, kDr}, 60s, clock);
  auto response = paths.Send(net.Function());
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), transport::Errc::kInvalidArgument);
  EXPECT_EQ(net.tries().size(), 1u);
  EXPECT_EQ(paths.Current(), (Route{}));
}

TEST(ConnectionPathsTest, TheLastGoodRouteSurvivesARestart) {
  TempDir dir;
  FakeClock clock;
  FakeNetwork net;
  net.Set(kPrimary, "direct", FakeNetwork::State::kDown);
  {
    auto queue = AgentQueue::Open(dir / "queue.db");
    ASSERT_TRUE(queue);
    ConnectionPaths paths({Path(ProxyKind::kNone)}, {kPrimary, kDr}, 60s, clock, queue->get());
    ASSERT_TRUE(paths.Send(net.Function()));
    EXPECT_EQ(paths.Current().endpoint, 1u);
  }
  auto queue = AgentQueue::Open(dir / "queue.db");
  ASSERT_TRUE(queue);
  ConnectionPaths restarted({Path(ProxyKind::kNone)}, {kPrimary, kDr}, 60s, clock, queue->get());
  EXPECT_EQ(restarted.Current().endpoint, 1u);
  net.tries().clear();
  ASSERT_TRUE(restarted.Send(net.Function()));
  // The remembered route is preferred, but the primary has never failed in this process: probed first.
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kPrimary + " direct", kDr + " direct"}));
  net.tries().clear();
  ASSERT_TRUE(restarted.Send(net.Function()));
  EXPECT_EQ(net.tries(), (std::vector<std::string>{kDr + " direct"}));

  // A changed config does not resurrect a route that no longer exists.
  ConnectionPaths changed({Path(ProxyKind::kNone)}, {kPrimary, "https://other:9455"}, 60s, clock,
                          queue->get());
  EXPECT_EQ(changed.Current(), (Route{}));
}

// --- Config -------------------------------------------------------------------------------------

std::string BaseConfig() {
  return R"([device]
customer = "ACME"
site = "berlin-1"
serial = "SN1"
[home]
url = "https://home.example.com:9455"
)";
}

AgentConfig LoadText(const TempDir& dir, const std::string& text) {
  WriteFile(dir / "agent.toml", text);
  return AgentConfig::Load(dir / "agent.toml");
}

void ExpectConfigError(const std::string& text, const std::string& needle) {
  TempDir dir;
  try {
    LoadText(dir, text);
    ADD_FAILURE() << "accepted:\n" << text;
  } catch (const config::ConfigError& error) {
    EXPECT_NE(std::string(error.what()).find(needle), std::string::npos) << error.what();
  }
}

TEST(PathsConfigTest, LoadsPathsEndpointsAndSecrets) {
  TempDir dir;
  WriteFile(dir / "proxy.pw", "from-file\n");
  WriteFile(dir / "proxy-ca.pem", "-----BEGIN CERTIFICATE-----\n");
  const auto config = LoadText(dir, BaseConfig() + R"(fallback_urls = ["https://dr.example.com:9455"]
retry_preferred_after = "2m"
[[paths]]
kind = "http"
proxy = "10.0.0.1:3128"
username = "alice"
password_file = ")" + (dir / "proxy.pw").string() + R"("
proxy_ca_file = ")" + (dir / "proxy-ca.pem").string() + R"("
[[paths]]
kind = "socks5"
proxy = "[::1]:1080"
[[paths]]
kind = "direct"
)");
  ASSERT_EQ(config.paths.paths.size(), 3u);
  const auto proxies = ProxyPaths(config.paths);
  ASSERT_EQ(proxies.size(), 3u);
  EXPECT_EQ(proxies[0].kind, ProxyKind::kHttp);
  EXPECT_EQ(proxies[0].address, "10.0.0.1:3128");
  EXPECT_EQ(proxies[0].username, "alice");
  EXPECT_EQ(proxies[0].password, "from-file");
  EXPECT_EQ(proxies[0].ca_file, (dir / "proxy-ca.pem").string());
  EXPECT_EQ(proxies[1].kind, ProxyKind::kSocks5);
  EXPECT_EQ(proxies[1].address, "[::1]:1080");
  EXPECT_EQ(proxies[2].kind, ProxyKind::kNone);
  EXPECT_EQ(HomeEndpoints(config.paths, config.home_url),
            (std::vector<std::string>{"https://home.example.com:9455", "https://dr.example.com:9455"}));
  EXPECT_EQ(config.paths.retry_preferred_after, 120s);
  auto paths = MakeConnectionPaths(config, nullptr);
  EXPECT_EQ(paths->route_count(), 6u);
}

TEST(PathsConfigTest, NoPathsMeansDirect) {
  TempDir dir;
  const auto config = LoadText(dir, BaseConfig());
  const auto proxies = ProxyPaths(config.paths);
  ASSERT_EQ(proxies.size(), 1u);
  EXPECT_EQ(proxies[0].kind, ProxyKind::kNone);
  EXPECT_EQ(HomeEndpoints(config.paths, config.home_url).size(), 1u);
}

TEST(PathsConfigTest, RejectsWhatCannotWork) {
  const std::string path = "\n[[paths]]\nkind = \"direct\"\n";
  ExpectConfigError(BaseConfig() + path + path + path + path, "key 'paths': 4 paths given; at most 3");
  ExpectConfigError(BaseConfig() + "[[paths]]\nkind = \"http\"\n", "key 'paths[0].proxy': required for kind \"http\"");
  ExpectConfigError(BaseConfig() + "[[paths]]\nkind = \"socks5\"\nproxy = \"socks5://p:1080\"\n",
                    "key 'paths[0].proxy': 'socks5://p:1080' is not host:port");
  ExpectConfigError(BaseConfig() + "[[paths]]\nkind = \"direct\"\nproxy = \"p:1\"\n",
                    "key 'paths[0]': a direct path takes no proxy");
  ExpectConfigError(BaseConfig() + "[[paths]]\nkind = \"http\"\nproxy = \"p:1\"\npassword = \"x\"\n",
                    "key 'paths[0].password': a password needs a username");
  ExpectConfigError(BaseConfig() + "[[paths]]\nkind = \"socks4\"\nproxy = \"p:1\"\nusername = \"u\"\npassword = \"x\"\n",
                    "SOCKS4 has no passwords");
  ExpectConfigError(BaseConfig() + "[[paths]]\nkind = \"http\"\nproxy = \"p:1\"\nproxy_ca_file = \"/nonexistent/ca.pem\"\n",
                    "key 'paths[0].proxy_ca_file'");
  ExpectConfigError(BaseConfig() + "[[paths]]\nkind = \"ftp\"\n", "paths[0].kind");
  ExpectConfigError(BaseConfig() + "[[paths]]\nkind = \"http\"\nproxy = \"p:1\"\nport = 3\n", "port");
  ExpectConfigError(R"([device]
customer = "ACME"
site = "berlin-1"
serial = "SN1"
[home]
url = "https://a:1"
fallback_urls = ["http://dr:1"]
)",
                    "key 'home.fallback_urls': 'http://dr:1' must start with https://");
}

TEST(PathsConfigTest, HelpDescribesTheOptions) {
  AgentConfig config;
  const std::string help = config.MakeSchema().Describe();
  for (const char* key : {"home.fallback_urls", "home.retry_preferred_after", "paths", "kind", "proxy",
                          "username", "password", "proxy_ca_file"}) {
    EXPECT_NE(help.find(key), std::string::npos) << key << "\n" << help;
  }
}

}  // namespace
}  // namespace lifeline::agent
