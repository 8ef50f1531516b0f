// Connection paths through real proxies started on loopback: tinyproxy (HTTP CONNECT with basic
// authentication) and microsocks (SOCKS5 with username and password). Delivery through each, a dead
// first path falling over to the next, and wrong credentials named as such in the agent's log.
#include "support/harness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace lifeline::testing {
namespace {

// A port on 127.0.0.1 nobody listens on (bound, read back, closed): for the proxies, which cannot
// bind port 0 and report it, and for a dead proxy.
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

bool Listening(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

// One proxy server process with its log.
class Proxy {
 public:
  Proxy(const fs::path& dir, std::vector<std::string> argv, int port) : log_(dir / "proxy.log"), port_(port) {
    auto process = cli::Subprocess::Spawn(argv, log_);
    EXPECT_TRUE(process) << argv[0];
    if (process) {
      process_.emplace(std::move(*process));
    }
    EXPECT_TRUE(Eventually([&] { return Listening(port_); }, std::chrono::seconds(10))) << Log();
  }
  ~Proxy() {
    if (process_) {
      process_->Terminate(std::chrono::seconds(5));
    }
  }
  std::string address() const { return fmt::format("127.0.0.1:{}", port_); }
  std::string Log() const { return ReadFile(log_); }

 private:
  fs::path log_;
  int port_;
  std::optional<cli::Subprocess> process_;
};

// tinyproxy with BasicAuth alice / s3cret.
std::unique_ptr<Proxy> StartTinyproxy(const fs::path& dir) {
  fs::create_directories(dir);
  const int port = UnusedPort();
  WriteFile(dir / "tinyproxy.conf", fmt::format("Port {}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\n"
                                                "LogLevel Connect\nBasicAuth alice s3cret\n",
                                                port));
  return std::make_unique<Proxy>(dir, std::vector<std::string>{"tinyproxy", "-d", "-c", (dir / "tinyproxy.conf").string()},
                                 port);
}

// microsocks with user bob / password pw.
std::unique_ptr<Proxy> StartMicrosocks(const fs::path& dir) {
  fs::create_directories(dir);
  const int port = UnusedPort();
  return std::make_unique<Proxy>(
      dir,
      std::vector<std::string>{"microsocks", "-i", "127.0.0.1", "-p", std::to_string(port), "-u", "bob", "-P", "pw"},
      port);
}

std::string PathTable(const std::string& kind, const std::string& address, const std::string& user,
                      const std::string& password) {
  std::string table = fmt::format("\n[[paths]]\nkind = \"{}\"\nproxy = \"{}\"\n", kind, address);
  if (!user.empty()) {
    table += fmt::format("username = \"{}\"\npassword = \"{}\"\n", user, password);
  }
  return table;
}

// A home and one agent whose config gets `paths` appended; enrolled through those paths.
struct ProxyScene {
  explicit ProxyScene(const TempDir& dir, const std::string& serial)
      : mail(dir / "mail"), home(dir / "home", mail.port()) {
    home.Start();  // first: the agent's config names the home's address
    agent = std::make_unique<TestAgent>(dir / "agent", home, serial);
    base_config = agent->ConfigText();
  }
  void UsePaths(const std::string& paths) { agent->SetConfig(base_config + paths); }
  // TestAgent::Start returns once the log says "started", which an earlier run's line already does;
  // wait for this run's own line so that alerts appended next are not before its log follower.
  void StartAgent() {
    const auto runs = [&] {
      const std::string log = agent->AgentLogText();
      std::size_t count = 0;
      for (auto at = log.find("started: home"); at != std::string::npos; at = log.find("started: home", at + 1)) {
        ++count;
      }
      return count;
    };
    const std::size_t before = runs();
    agent->Start();
    ASSERT_TRUE(Eventually([&] { return runs() > before; }, std::chrono::seconds(20))) << agent->AgentLogText();
  }
  bool LogSays(const std::string& text) {
    return Eventually([&] { return agent->AgentLogText().find(text) != std::string::npos; }, std::chrono::seconds(10));
  }
  void Enroll() {
    auto enrolled = agent->Enroll(home.EnrollToken(agent->identity()));
    ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  }
  bool AlertArrives(const std::string& code) {
    agent->AppendLine(fmt::format("CRIT SIM={} proxy test", code));
    return Eventually(
        [&] {
          auto tickets = home.Admin("/v1/tickets?limit=1000");
          if (!tickets.is_object()) {
            return false;
          }
          for (const auto& t : tickets.at("tickets").as_array()) {
            if (t.at("code").as_string() == "SIM-" + code) {
              return true;
            }
          }
          return false;
        },
        std::chrono::seconds(20));
  }

  MailSink mail;
  TestHome home;
  std::unique_ptr<TestAgent> agent;
  std::string base_config;
};

TEST(ProxyPaths, DeliveryThroughAnHttpProxyWithBasicAuthAndThroughSocks5) {
  TempDir dir;
  auto tinyproxy = StartTinyproxy(dir / "tinyproxy");
  auto microsocks = StartMicrosocks(dir / "microsocks");
  ProxyScene setup(dir, "SN-PROXY-1");

  // Enrollment and delivery through the HTTP proxy, the only path.
  setup.UsePaths(PathTable("http", tinyproxy->address(), "alice", "s3cret"));
  setup.Enroll();
  EXPECT_NE(tinyproxy->Log().find("CONNECT 127.0.0.1:"), std::string::npos) << tinyproxy->Log();
  setup.StartAgent();
  EXPECT_TRUE(setup.AlertArrives("A1")) << setup.agent->AgentLogText();
  EXPECT_TRUE(setup.LogSays("reaching home " + setup.home.ingest_url() + " via HTTP proxy " + tinyproxy->address()))
      << setup.agent->AgentLogText();
  setup.agent->Stop();

  // The same through SOCKS5 with username and password.
  setup.UsePaths(PathTable("socks5", microsocks->address(), "bob", "pw"));
  setup.StartAgent();
  EXPECT_TRUE(setup.AlertArrives("A2")) << setup.agent->AgentLogText();
  EXPECT_TRUE(setup.LogSays("reaching home " + setup.home.ingest_url() + " via SOCKS5 proxy " + microsocks->address()))
      << setup.agent->AgentLogText();
  setup.agent->Stop();
  setup.home.Stop();
}

TEST(ProxyPaths, DeadFirstPathFallsOverToTheNext) {
  TempDir dir;
  auto microsocks = StartMicrosocks(dir / "microsocks");
  ProxyScene setup(dir, "SN-PROXY-2");
  const std::string dead = fmt::format("127.0.0.1:{}", UnusedPort());
  setup.UsePaths(PathTable("http", dead, "alice", "s3cret") + PathTable("socks5", microsocks->address(), "bob", "pw"));
  setup.Enroll();
  setup.StartAgent();
  EXPECT_TRUE(setup.AlertArrives("B1")) << setup.agent->AgentLogText();
  const std::string log = setup.agent->AgentLogText();
  // One clear line: what failed, why, and what is used instead.
  EXPECT_NE(log.find(fmt::format("unreachable via HTTP proxy {}: cannot connect to HTTP proxy {}: proxy unreachable",
                                 dead, dead)),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("; using " + setup.home.ingest_url() + " SOCKS5 proxy " + microsocks->address()),
            std::string::npos)
      << log;
  setup.agent->Stop();
  setup.home.Stop();
}

TEST(ProxyPaths, WrongProxyCredentialsAreNamedInTheAgentLog) {
  TempDir dir;
  auto tinyproxy = StartTinyproxy(dir / "tinyproxy");
  auto microsocks = StartMicrosocks(dir / "microsocks");
  ProxyScene setup(dir, "SN-PROXY-3");
  // Enrolled directly; then only proxies with wrong passwords remain.
  setup.Enroll();
  setup.UsePaths(PathTable("http", tinyproxy->address(), "alice", "wrong") +
                 PathTable("socks5", microsocks->address(), "bob", "wrong"));
  setup.StartAgent();
  setup.agent->AppendLine("CRIT SIM=C0 raised while the credentials are wrong");
  ASSERT_TRUE(Eventually(
      [&] {
        const std::string log = setup.agent->AgentLogText();
        return log.find("alert SIM-C0 (critical)") != std::string::npos &&  // captured, queued
               log.find("proxy authentication failed at HTTP proxy " + tinyproxy->address()) != std::string::npos &&
               log.find("proxy authentication failed at SOCKS5 proxy " + microsocks->address()) != std::string::npos;
      },
      std::chrono::seconds(20)))
      << setup.agent->AgentLogText();
  EXPECT_NE(setup.agent->AgentLogText().find("cannot reach the home"), std::string::npos);
  EXPECT_EQ(setup.home.Stat("alerts"), 0);

  // Fixing the password (a config change and restart) delivers what waited in the queue.
  setup.agent->Stop();
  setup.UsePaths(PathTable("http", tinyproxy->address(), "alice", "s3cret"));
  setup.StartAgent();
  EXPECT_TRUE(setup.LogSays("home accepted alert SIM-C0")) << setup.agent->AgentLogText();
  EXPECT_TRUE(setup.AlertArrives("C1")) << setup.agent->AgentLogText();
  setup.agent->Stop();
  setup.home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
