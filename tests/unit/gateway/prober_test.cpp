#include "gateway/prober.h"

#include "support/temp_dir.h"
#include "../transport/test_pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <thread>

namespace lifeline::gateway {
namespace {

using namespace std::chrono_literals;

/// A TCP listener on 127.0.0.1 that never accepts. With `saturate`, its accept queue (backlog 0)
/// is filled first, so the kernel drops further SYNs and connects hang until their deadline: a
/// real unanswered port on loopback.
class Listener {
 public:
  explicit Listener(bool saturate = false) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, saturate ? 0 : SOMAXCONN), 0);  // connections wait unaccepted
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    if (saturate) {
      for (int i = 0; i < 3; ++i) {
        const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        (void)::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        fillers_.push_back(c);
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  ~Listener() { Close(); }
  void Close() {
    for (int c : fillers_) {
      ::close(c);
    }
    fillers_.clear();
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> fillers_;
};

class ProberTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto registry = DeviceRegistry::Open(dir_ / "gateway.db");
    ASSERT_TRUE(registry);
    registry_ = std::move(*registry);
  }
  void Deploy(const std::string& serial, std::string address, std::vector<AppPort> apps) {
    ASSERT_TRUE(registry_->Deploy(
        DeviceSpec{.serial = serial, .address = std::move(address), .apps = std::move(apps)}, "test"));
  }
  ProbeResult Result(const std::string& serial, const std::string& app) {
    auto device = registry_->Get(serial);
    EXPECT_TRUE(device);
    for (const auto& p : device->probes) {
      if (p.app == app) {
        return p;
      }
    }
    ADD_FAILURE() << "no app " << app;
    return {};
  }
  testing::TempDir dir_;
  std::unique_ptr<DeviceRegistry> registry_;
};

TEST_F(ProberTest, OpenAndClosedPortsAndTransitions) {
  Listener open;
  const auto closed = transport::testpki::UnusedPort();
  Deploy("A", "127.0.0.1", {{"ssh", open.port()}, {"https", closed}});
  Deploy("B", "localhost", {{"web", open.port()}});  // a host name, resolved per probe
  Deploy("OFF", "127.0.0.1", {{"ssh", open.port()}});
  ASSERT_TRUE(registry_->Edit("OFF", DeviceEdit{.enabled = false}, "test"));

  Prober prober(*registry_, ProberOptions{.timeout = 2000ms, .concurrency = 8});
  auto first = prober.SweepOnce();
  EXPECT_EQ(first.probes, 3u);  // the disabled device is not probed
  EXPECT_EQ(first.reachable, 2u);
  EXPECT_EQ(first.unreachable, 1u);
  EXPECT_EQ(first.transitions, 3u);
  EXPECT_FALSE(first.interrupted);
  EXPECT_EQ(Result("A", "ssh").state, Reachability::kReachable);
  EXPECT_EQ(Result("B", "web").state, Reachability::kReachable);
  const auto refused = Result("A", "https");
  EXPECT_EQ(refused.state, Reachability::kUnreachable);
  EXPECT_NE(refused.error.find("refused"), std::string::npos) << refused.error;
  EXPECT_GT(refused.checked_ms, 0);

  EXPECT_EQ(prober.SweepOnce().transitions, 0u);  // same states: nothing new to log

  open.Close();
  auto third = prober.SweepOnce();
  EXPECT_EQ(third.transitions, 2u);  // A ssh and B web went down
  EXPECT_EQ(Result("A", "ssh").state, Reachability::kUnreachable);
  ASSERT_TRUE(prober.LastSweep());
  EXPECT_EQ(prober.LastSweep()->unreachable, 3u);

  auto report = boost::json::parse(prober.ReachabilityJson());
  EXPECT_EQ(report.at("devices").as_array().size(), 3u);
  EXPECT_EQ(report.at("devices").at(0).at("apps").at(1).at("state"), "unreachable");

  // Results are on disk after a change of state.
  registry_.reset();
  auto reopened = DeviceRegistry::Open(dir_ / "gateway.db");
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->Get("A")->probes[1].state, Reachability::kUnreachable);
}

TEST_F(ProberTest, UnansweredPortsTimeOutWithinTheConcurrencyBound) {
  Listener silent(/*saturate=*/true);
  for (int i = 0; i < 9; ++i) {
    Deploy(fmt::format("S{}", i), "127.0.0.1", {{"ssh", silent.port()}});
  }
  Prober prober(*registry_, ProberOptions{.timeout = 300ms, .concurrency = 3});
  const auto stats = prober.SweepOnce();
  EXPECT_EQ(stats.probes, 9u);
  EXPECT_EQ(stats.unreachable, 9u);
  EXPECT_EQ(stats.max_in_flight, 3);
  // Three rounds of three, each waiting out its deadline.
  EXPECT_GE(stats.duration, 850ms);
  EXPECT_LT(stats.duration, 5000ms);
  EXPECT_NE(Result("S0", "ssh").error.find("no answer within 300 ms"), std::string::npos)
      << Result("S0", "ssh").error;
}

TEST_F(ProberTest, ManyPortsStayWithinConcurrency) {
  Listener open;
  std::vector<DeviceSpec> specs;
  for (int i = 0; i < 200; ++i) {
    specs.push_back(DeviceSpec{
        .serial = fmt::format("D{:03}", i), .address = "127.0.0.1", .apps = {{"ssh", open.port()}}});
  }
  ASSERT_TRUE(registry_->DeployMany(specs, "test"));
  Prober prober(*registry_, ProberOptions{.timeout = 2000ms, .concurrency = 16});
  const auto stats = prober.SweepOnce();
  EXPECT_EQ(stats.reachable, 200u);
  EXPECT_LE(stats.max_in_flight, 16);
  EXPECT_GE(stats.max_in_flight, 1);
}

TEST_F(ProberTest, StartSweepsPeriodicallyAndStopInterruptsASlowSweep) {
  Listener open;
  Deploy("A", "127.0.0.1", {{"ssh", open.port()}});
  {
    Prober prober(*registry_, ProberOptions{.interval = 50ms, .timeout = 1000ms, .concurrency = 2});
    prober.Start();
    for (int i = 0; i < 200 && Result("A", "ssh").state != Reachability::kReachable; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(Result("A", "ssh").state, Reachability::kReachable);
    prober.Stop();
    prober.Stop();  // idempotent
  }

  Listener silent(/*saturate=*/true);
  for (int i = 0; i < 4; ++i) {
    Deploy(fmt::format("S{}", i), "127.0.0.1", {{"ssh", silent.port()}});
  }
  Prober slow(*registry_, ProberOptions{.interval = 60000ms, .timeout = 10000ms, .concurrency = 2});
  slow.Start();
  std::this_thread::sleep_for(200ms);
  const auto stop_start = std::chrono::steady_clock::now();
  slow.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_start, 2000ms);
  ASSERT_TRUE(slow.LastSweep());
  EXPECT_TRUE(slow.LastSweep()->interrupted);
}

}  // namespace
}  // namespace lifeline::gateway
