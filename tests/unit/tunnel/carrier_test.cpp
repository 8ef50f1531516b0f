// Carriers on loopback: raw TLS and WebSocket-in-TLS between AsyncDial and CarrierListener, mutual
// TLS, authorization of upgrades, refusals named by hop, real proxies (tinyproxy, microsocks), and
// 64 MiB through each kind with a checksum (the log shows MB/s).
#include "tunnel/carrier.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "support/proxies.h"
#include "support/temp_dir.h"
#include "unit/transport/test_pki.h"

namespace lifeline::tunnel {
namespace {

using namespace std::chrono_literals;
using transport::ClientCertPolicy;
using transport::ProxyKind;
using transport::testpki::SharedPki;

constexpr auto kWait = 30s;  // the longest any single step may take

struct Accepted {
  std::unique_ptr<ByteStream> stream;
  AcceptInfo info;
};

// One io_context on two threads, as a home or gateway runs it; the tests block on futures.
class CarrierTest : public ::testing::Test {
 protected:
  CarrierTest() : work_(asio::make_work_guard(io_)) {
    for (int i = 0; i < 2; ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
  }
  ~CarrierTest() override {
    listener_.reset();
    work_.reset();
    // Streams still held by the test close with it; give their handlers a moment, bounded.
    for (int i = 0; i < 100 && !io_.stopped(); ++i) {
      std::this_thread::sleep_for(10ms);
      if (i == 50) {
        io_.stop();
      }
    }
    io_.stop();
    for (auto& thread : threads_) {
      thread.join();
    }
  }

  ListenOptions Listen(ClientCertPolicy policy) {
    ListenOptions options;
    options.tls.cert_file = SharedPki().server_cert.string();
    options.tls.key_file = SharedPki().server_key.string();
    options.tls.client_ca_file = SharedPki().ca_cert.string();
    options.client_certs = policy;
    options.handshake_timeout = 5s;
    return options;
  }

  void StartListener(ListenOptions options) {
    auto listener =
        CarrierListener::Start(io_.get_executor(), std::move(options),
                               [this](std::unique_ptr<ByteStream> stream, AcceptInfo info) {
                                 std::lock_guard lock(mutex_);
                                 accepted_.push_back({std::move(stream), std::move(info)});
                                 cv_.notify_all();
                               });
    ASSERT_TRUE(listener) << listener.error().message();
    listener_ = std::move(*listener);
  }

  std::optional<Accepted> WaitAccepted(std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, timeout, [this] { return !accepted_.empty(); })) {
      return std::nullopt;
    }
    Accepted first = std::move(accepted_.front());
    accepted_.pop_front();
    return first;
  }

  std::size_t AcceptedCount() {
    std::lock_guard lock(mutex_);
    return accepted_.size();
  }

  DialOptions Dial(const std::string& scheme, bool client_cert, const std::string& path = "") {
    DialOptions options;
    options.endpoint = fmt::format("{}://127.0.0.1:{}{}", scheme, listener_->LocalPort(),
                                   scheme == "wss" ? path : "");
    options.ca_file = SharedPki().ca_cert.string();
    if (client_cert) {
      options.cert_file = SharedPki().client_cert.string();
      options.key_file = SharedPki().client_key.string();
    }
    options.connect_timeout = 10s;
    return options;
  }

  Result<std::unique_ptr<ByteStream>> DialSync(DialOptions options) {
    std::promise<Result<std::unique_ptr<ByteStream>>> promise;
    auto future = promise.get_future();
    AsyncDial(io_.get_executor(), std::move(options),
              [&promise](Result<std::unique_ptr<ByteStream>> result) {
                promise.set_value(std::move(result));
              });
    if (future.wait_for(kWait) != std::future_status::ready) {
      ADD_FAILURE() << "dial did not complete";
      return Fail(CarrierErrc::kTimeout);
    }
    return future.get();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  std::unique_ptr<CarrierListener> listener_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Accepted> accepted_;
};

// Blocking helpers: each starts the operation on the stream's executor and waits (bounded).
ErrorCode WriteAll(ByteStream& stream, const std::string& bytes) {
  std::promise<ErrorCode> done;
  asio::dispatch(stream.GetExecutor(), [&] {
    stream.AsyncWrite(asio::buffer(bytes),
                      [&done](ErrorCode ec, std::size_t) { done.set_value(ec); });
  });
  auto future = done.get_future();
  if (future.wait_for(kWait) != std::future_status::ready) {
    return asio::error::timed_out;
  }
  return future.get();
}

ErrorCode ShutdownWrite(ByteStream& stream) {
  std::promise<ErrorCode> done;
  asio::dispatch(stream.GetExecutor(),
                 [&] { stream.AsyncShutdownWrite([&done](ErrorCode ec) { done.set_value(ec); }); });
  auto future = done.get_future();
  if (future.wait_for(kWait) != std::future_status::ready) {
    return asio::error::timed_out;
  }
  return future.get();
}

// Reads until end of input or an error (returned in `error`), at most `limit` bytes.
std::string ReadToEnd(ByteStream& stream, ErrorCode* error, std::size_t limit = 1 << 20) {
  std::string text;
  std::array<char, 4096> chunk{};
  for (int reads = 0; reads < 10000 && text.size() < limit; ++reads) {
    std::promise<std::pair<ErrorCode, std::size_t>> done;
    asio::dispatch(stream.GetExecutor(), [&] {
      stream.AsyncReadSome(asio::buffer(chunk), [&done](ErrorCode ec, std::size_t n) {
        done.set_value({ec, n});
      });
    });
    auto future = done.get_future();
    if (future.wait_for(kWait) != std::future_status::ready) {
      *error = asio::error::timed_out;
      stream.Close();
      future.wait();
      return text;
    }
    auto [ec, n] = future.get();
    text.append(chunk.data(), n);
    if (ec) {
      *error = ec;
      return text;
    }
  }
  *error = {};
  return text;
}

void CloseOn(ByteStream& stream) {
  std::promise<void> done;
  asio::dispatch(stream.GetExecutor(), [&] {
    stream.Close();
    done.set_value();
  });
  done.get_future().wait_for(kWait);
}

// Both directions, each ended by a half-close that the other side sees as end of input.
void ExpectExchangeWithHalfClose(ByteStream& client, ByteStream& server) {
  ASSERT_FALSE(WriteAll(client, "hello from the dialer"));
  ASSERT_FALSE(ShutdownWrite(client));
  ErrorCode error;
  EXPECT_EQ(ReadToEnd(server, &error), "hello from the dialer");
  EXPECT_EQ(error, asio::error::eof) << error.message();
  // The listener's side still writes after the dialer ended its direction.
  ASSERT_FALSE(WriteAll(server, "and back from the listener"));
  ASSERT_FALSE(ShutdownWrite(server));
  EXPECT_EQ(ReadToEnd(client, &error), "and back from the listener");
  EXPECT_EQ(error, asio::error::eof) << error.message();
}

TEST_F(CarrierTest, RawTlsWithMutualTlsCarriesBothWaysAndHalfCloses) {
  StartListener(Listen(ClientCertPolicy::kRequired));
  auto client = DialSync(Dial("tls", true));
  ASSERT_TRUE(client) << client.error().message();
  EXPECT_EQ((*client)->Describe(), fmt::format("tls 127.0.0.1:{}", listener_->LocalPort()));
  // Raw TLS: the dialer speaks first, and the listener hands its first bytes back through the
  // stream.
  ASSERT_FALSE(WriteAll(**client, "H"));
  auto server = WaitAccepted();
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->info.peer.has_value());
  EXPECT_NE(server->info.peer->pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_TRUE(server->info.target.empty());
  EXPECT_TRUE(server->info.remote.starts_with("127.0.0.1:")) << server->info.remote;
  std::array<char, 1> first{};
  std::promise<std::size_t> got;
  asio::dispatch(server->stream->GetExecutor(), [&] {
    server->stream->AsyncReadSome(asio::buffer(first),
                                  [&](ErrorCode ec, std::size_t n) { got.set_value(ec ? 0 : n); });
  });
  ASSERT_EQ(got.get_future().get(), 1u);
  EXPECT_EQ(first[0], 'H');
  ExpectExchangeWithHalfClose(**client, *server->stream);
  CloseOn(**client);
  CloseOn(*server->stream);
}

TEST_F(CarrierTest, RawTlsPeekKeepsPartialUpgradeLookalike) {
  // "GE" then something else: not an upgrade, and every byte reaches the stream.
  StartListener(Listen(ClientCertPolicy::kRequired));
  auto client = DialSync(Dial("tls", true));
  ASSERT_TRUE(client) << client.error().message();
  ASSERT_FALSE(WriteAll(**client, "GE"));
  std::this_thread::sleep_for(50ms);
  ASSERT_FALSE(WriteAll(**client, "TX and more"));
  ASSERT_FALSE(ShutdownWrite(**client));
  auto server = WaitAccepted();
  ASSERT_TRUE(server);
  ErrorCode error;
  EXPECT_EQ(ReadToEnd(*server->stream, &error), "GETX and more");
  EXPECT_EQ(error, asio::error::eof);
}

ListenOptions WithBearer(ListenOptions options, std::vector<AcceptInfo>* seen, std::mutex* mutex) {
  options.authorize = [seen, mutex](const AcceptInfo& info) {
    {
      std::lock_guard lock(*mutex);
      seen->push_back(info);
    }
    auto it = info.headers.find("authorization");
    if (it == info.headers.end() || it->second != "Bearer good-token") {
      return 401;
    }
    return info.target == "/v1/tunnel" ? 101 : 404;
  };
  return options;
}

TEST_F(CarrierTest, WebSocketWithBearerTokenCarriesBothWaysAndHalfCloses) {
  std::vector<AcceptInfo> seen;
  std::mutex seen_mutex;
  StartListener(WithBearer(Listen(ClientCertPolicy::kNone), &seen, &seen_mutex));
  DialOptions options = Dial("wss", false, "/v1/tunnel");
  options.headers = {{"Authorization", "Bearer good-token"}, {"X-Lifeline-Engineer", "erin"}};
  auto client = DialSync(options);
  ASSERT_TRUE(client) << client.error().message();
  auto server = WaitAccepted();
  ASSERT_TRUE(server);
  EXPECT_FALSE(server->info.peer.has_value());
  EXPECT_EQ(server->info.target, "/v1/tunnel");
  EXPECT_EQ(server->info.headers["x-lifeline-engineer"], "erin");
  EXPECT_EQ((*client)->Describe(),
            fmt::format("wss 127.0.0.1:{}/v1/tunnel", listener_->LocalPort()));
  ExpectExchangeWithHalfClose(**client, *server->stream);
  // Both directions ended: the side that ends last sends a real close frame.
  CloseOn(**client);
  CloseOn(*server->stream);
}

TEST_F(CarrierTest, WebSocketWithWrongTokenIsRefusedWith401) {
  std::vector<AcceptInfo> seen;
  std::mutex seen_mutex;
  StartListener(WithBearer(Listen(ClientCertPolicy::kNone), &seen, &seen_mutex));
  DialOptions options = Dial("wss", false, "/v1/tunnel");
  options.headers = {{"Authorization", "Bearer stolen"}};
  auto client = DialSync(options);
  ASSERT_FALSE(client);
  EXPECT_EQ(UpgradeRefusedStatus(client.error()), 401) << client.error().message();
  const std::string line = DescribeDialError(options, client.error());
  EXPECT_NE(line.find("refused with HTTP 401"), std::string::npos) << line;
  EXPECT_EQ(AcceptedCount(), 0u);
  std::lock_guard lock(seen_mutex);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].headers["authorization"], "Bearer stolen");
}

TEST_F(CarrierTest, ClientWithoutCertificateIsRefusedWhenRequired) {
  StartListener(Listen(ClientCertPolicy::kRequired));
  // wss: the refusal arrives during the upgrade, so the dial reports it.
  auto ws = DialSync(Dial("wss", false, "/v1/tunnel"));
  ASSERT_FALSE(ws);
  EXPECT_EQ(ws.error(), CarrierErrc::kTlsFailed) << ws.error().message();
  // Raw TLS: with TLS 1.3 the client's handshake may finish before the server checks; the first
  // read then fails. Either way nothing is accepted.
  auto raw = DialSync(Dial("tls", false));
  if (raw) {
    WriteAll(**raw, "hello");
    ErrorCode error;
    EXPECT_EQ(ReadToEnd(**raw, &error), "");
    EXPECT_TRUE(error && error != asio::error::eof) << error.message();
  } else {
    EXPECT_EQ(raw.error(), CarrierErrc::kTlsFailed) << raw.error().message();
  }
  // A certificate from another CA is refused too.
  DialOptions intruder = Dial("wss", false, "/v1/tunnel");
  intruder.cert_file = SharedPki().other_client_cert.string();
  intruder.key_file = SharedPki().other_client_key.string();
  auto other = DialSync(intruder);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error(), CarrierErrc::kTlsFailed) << other.error().message();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(AcceptedCount(), 0u);
}

TEST_F(CarrierTest, ServerCertificateFromAnotherCaIsRefusedByTheDialer) {
  ListenOptions options = Listen(ClientCertPolicy::kNone);
  options.tls.cert_file = SharedPki().other_server_cert.string();
  options.tls.key_file = SharedPki().other_server_key.string();
  StartListener(options);
  for (const char* scheme : {"tls", "wss"}) {
    auto client = DialSync(Dial(scheme, true, "/x"));
    ASSERT_FALSE(client) << scheme;
    EXPECT_EQ(client.error(), CarrierErrc::kTlsFailed) << client.error().message();
  }
  EXPECT_EQ(AcceptedCount(), 0u);
}

TEST_F(CarrierTest, ServerNameMustMatchTheEndpoint) {
  // The test server certificate names 127.0.0.1, ::1 and localhost. By name (with SNI):
  StartListener(Listen(ClientCertPolicy::kNone));
  DialOptions options = Dial("tls", false);
  options.endpoint = fmt::format("tls://localhost:{}", listener_->LocalPort());
  auto by_name = DialSync(options);
  ASSERT_TRUE(by_name) << by_name.error().message();
  CloseOn(**by_name);
  // The same certificate served on another loopback address it does not name.
  ListenOptions other = Listen(ClientCertPolicy::kNone);
  other.listen = "127.0.0.2:0";
  StartListener(other);
  options.endpoint = fmt::format("tls://127.0.0.2:{}", listener_->LocalPort());
  auto mismatch = DialSync(options);
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error(), CarrierErrc::kTlsFailed) << mismatch.error().message();
}

TEST_F(CarrierTest, Ipv6Loopback) {
  if (!transport::testpki::HasIpv6Loopback()) {
    GTEST_SKIP() << "no ::1 on this machine";
  }
  ListenOptions options = Listen(ClientCertPolicy::kRequired);
  options.listen = "[::1]:0";
  StartListener(options);
  for (const char* scheme : {"tls", "wss"}) {
    DialOptions dial = Dial(scheme, true);
    dial.endpoint = fmt::format("{}://[::1]:{}{}", scheme, listener_->LocalPort(),
                                std::string(scheme) == "wss" ? "/v1/tunnel" : "");
    auto client = DialSync(dial);
    ASSERT_TRUE(client) << client.error().message();
    ASSERT_FALSE(WriteAll(**client, "six"));
    auto server = WaitAccepted();
    ASSERT_TRUE(server);
    EXPECT_TRUE(server->info.remote.starts_with("[::1]:")) << server->info.remote;
    CloseOn(**client);
    CloseOn(*server->stream);
  }
}

TEST_F(CarrierTest, BadSetupIsRefusedUpFront) {
  auto handler = [](std::unique_ptr<ByteStream>, AcceptInfo) {};
  ListenOptions no_key = Listen(ClientCertPolicy::kRequired);
  no_key.tls.key_file = "/nonexistent/key.pem";
  auto started = CarrierListener::Start(io_.get_executor(), no_key, handler);
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error(), CarrierErrc::kTlsSetupFailed);
  ListenOptions bad_address = Listen(ClientCertPolicy::kRequired);
  bad_address.listen = "example.com:0";
  started = CarrierListener::Start(io_.get_executor(), bad_address, handler);
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error(), CarrierErrc::kInvalidOptions);
  StartListener(Listen(ClientCertPolicy::kRequired));
  ListenOptions taken = Listen(ClientCertPolicy::kRequired);
  taken.listen = fmt::format("127.0.0.1:{}", listener_->LocalPort());
  started = CarrierListener::Start(io_.get_executor(), taken, handler);
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error(), CarrierErrc::kListenFailed);

  DialOptions no_ca = Dial("tls", true);
  no_ca.ca_file = "/nonexistent/ca.pem";
  auto dialed = DialSync(no_ca);
  ASSERT_FALSE(dialed);
  EXPECT_EQ(dialed.error(), CarrierErrc::kTlsSetupFailed);
  DialOptions bad_header = Dial("wss", false, "/v1/tunnel");
  bad_header.headers = {{"Authorization", "Bearer x\r\nX-Injected: 1"}};
  dialed = DialSync(bad_header);
  ASSERT_FALSE(dialed);
  EXPECT_EQ(dialed.error(), CarrierErrc::kInvalidOptions);
}

TEST_F(CarrierTest, UnreachableHopsAreNamed) {
  DialOptions options;
  options.ca_file = SharedPki().ca_cert.string();
  options.endpoint = fmt::format("tls://127.0.0.1:{}", transport::testpki::UnusedPort());
  auto direct = DialSync(options);
  ASSERT_FALSE(direct);
  EXPECT_EQ(direct.error(), CarrierErrc::kHomeUnreachable) << direct.error().message();

  options.proxy = {ProxyKind::kHttp, fmt::format("127.0.0.1:{}", transport::testpki::UnusedPort()),
                   "alice", "s3cret"};
  auto no_proxy = DialSync(options);
  ASSERT_FALSE(no_proxy);
  EXPECT_EQ(no_proxy.error(), CarrierErrc::kProxyUnreachable) << no_proxy.error().message();
  const std::string line = DescribeDialError(options, no_proxy.error());
  EXPECT_NE(line.find("via HTTP proxy 127.0.0.1:"), std::string::npos) << line;
  EXPECT_NE(line.find("the proxy is unreachable"), std::string::npos) << line;

  options.proxy.kind = ProxyKind::kSocks5;
  auto no_socks = DialSync(options);
  ASSERT_FALSE(no_socks);
  EXPECT_EQ(no_socks.error(), CarrierErrc::kProxyUnreachable) << no_socks.error().message();

  options.endpoint = "https://127.0.0.1:1";
  auto bad = DialSync(options);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), CarrierErrc::kInvalidOptions);
}

class CarrierProxyTest : public CarrierTest {
 protected:
  testing::TempDir dir_;
};

TEST_F(CarrierProxyTest, ThroughTinyproxyWithBasicAuth) {
  auto proxy = testing::StartTinyproxy(dir_ / "tinyproxy");
  StartListener(Listen(ClientCertPolicy::kRequired));
  for (const char* scheme : {"tls", "wss"}) {
    SCOPED_TRACE(scheme);
    DialOptions options = Dial(scheme, true, "/v1/tunnel");
    options.proxy = {ProxyKind::kHttp, proxy->address(), "alice", "s3cret"};
    auto client = DialSync(options);
    ASSERT_TRUE(client) << client.error().message();
    ASSERT_FALSE(WriteAll(**client, "through the proxy"));
    ASSERT_FALSE(ShutdownWrite(**client));
    auto server = WaitAccepted();
    ASSERT_TRUE(server);
    ErrorCode error;
    EXPECT_EQ(ReadToEnd(*server->stream, &error), "through the proxy");
    EXPECT_EQ(error, asio::error::eof) << error.message();
    CloseOn(**client);
    CloseOn(*server->stream);
  }
  EXPECT_NE(proxy->Log().find(fmt::format("CONNECT 127.0.0.1:{}", listener_->LocalPort())),
            std::string::npos)
      << proxy->Log();

  DialOptions wrong = Dial("wss", true, "/v1/tunnel");
  wrong.proxy = {ProxyKind::kHttp, proxy->address(), "alice", "wrong"};
  auto refused = DialSync(wrong);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), CarrierErrc::kProxyAuth) << refused.error().message();
  const std::string line = DescribeDialError(wrong, refused.error());
  EXPECT_NE(line.find("the proxy refused our credentials"), std::string::npos) << line;
}

TEST_F(CarrierProxyTest, ThroughSquidWithBasicAuth) {
  auto proxy = testing::StartSquid(dir_ / "squid");
  StartListener(Listen(ClientCertPolicy::kRequired));
  for (const char* scheme : {"tls", "wss"}) {
    SCOPED_TRACE(scheme);
    DialOptions options = Dial(scheme, true, "/v1/tunnel");
    options.proxy = {ProxyKind::kHttp, proxy->address(), "carol", "letmein"};
    auto client = DialSync(options);
    ASSERT_TRUE(client) << client.error().message();
    ASSERT_FALSE(WriteAll(**client, "through squid"));
    ASSERT_FALSE(ShutdownWrite(**client));
    auto server = WaitAccepted();
    ASSERT_TRUE(server);
    ErrorCode error;
    EXPECT_EQ(ReadToEnd(*server->stream, &error), "through squid");
    CloseOn(**client);
    CloseOn(*server->stream);
  }
  DialOptions wrong = Dial("tls", true);
  wrong.proxy = {ProxyKind::kHttp, proxy->address(), "carol", "wrong"};
  auto refused = DialSync(wrong);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), CarrierErrc::kProxyAuth) << refused.error().message();
  // Squid answers 503 when it cannot reach the home.
  DialOptions dead = Dial("tls", true);
  dead.endpoint = fmt::format("tls://127.0.0.1:{}", transport::testpki::UnusedPort());
  dead.proxy = {ProxyKind::kHttp, proxy->address(), "carol", "letmein"};
  auto unreachable = DialSync(dead);
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error(), CarrierErrc::kHomeUnreachable) << unreachable.error().message();
}

TEST_F(CarrierProxyTest, ThroughMicrosocksWithUsernameAndPassword) {
  auto proxy = testing::StartMicrosocks(dir_ / "microsocks");
  StartListener(Listen(ClientCertPolicy::kRequired));
  for (const char* scheme : {"tls", "wss"}) {
    SCOPED_TRACE(scheme);
    DialOptions options = Dial(scheme, true, "/v1/tunnel");
    options.proxy = {ProxyKind::kSocks5, proxy->address(), "bob", "pw"};
    auto client = DialSync(options);
    ASSERT_TRUE(client) << client.error().message();
    EXPECT_NE((*client)->Describe().find("via SOCKS5 proxy " + proxy->address()), std::string::npos)
        << (*client)->Describe();
    ASSERT_FALSE(WriteAll(**client, "through socks"));
    ASSERT_FALSE(ShutdownWrite(**client));
    auto server = WaitAccepted();
    ASSERT_TRUE(server);
    ErrorCode error;
    EXPECT_EQ(ReadToEnd(*server->stream, &error), "through socks");
    CloseOn(**client);
    CloseOn(*server->stream);
  }
  DialOptions wrong = Dial("tls", true);
  wrong.proxy = {ProxyKind::kSocks5, proxy->address(), "bob", "nope"};
  auto refused = DialSync(wrong);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), CarrierErrc::kProxyAuth) << refused.error().message();

  // The proxy works, the home does not answer.
  DialOptions dead = Dial("tls", true);
  dead.endpoint = fmt::format("tls://127.0.0.1:{}", transport::testpki::UnusedPort());
  dead.proxy = {ProxyKind::kSocks5, proxy->address(), "bob", "pw"};
  auto unreachable = DialSync(dead);
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error(), CarrierErrc::kHomeUnreachable) << unreachable.error().message();
}

TEST_F(CarrierTest, StopClosesConnectionsStillInTheirHandshake) {
  StartListener(Listen(ClientCertPolicy::kRequired));
  const int fd = transport::testpki::ConnectTcp(listener_->LocalPort());
  ASSERT_GE(fd, 0);
  std::this_thread::sleep_for(100ms);  // accepted, waiting for a ClientHello
  listener_->Stop();
  EXPECT_TRUE(transport::testpki::WaitForPeerClose(fd, 5s));
  ::close(fd);
  // The acceptor closes on the listener's executor, shortly after Stop() returned.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  int again = transport::testpki::ConnectTcp(listener_->LocalPort());
  while (again >= 0 && std::chrono::steady_clock::now() < deadline) {
    ::close(again);
    std::this_thread::sleep_for(50ms);
    again = transport::testpki::ConnectTcp(listener_->LocalPort());
  }
  EXPECT_LT(again, 0);
  if (again >= 0) {
    ::close(again);
  }
}

TEST_F(CarrierTest, HandshakeTimeoutAndConnectionLimit) {
  ListenOptions options = Listen(ClientCertPolicy::kRequired);
  options.handshake_timeout = 300ms;
  options.max_connections = 1;
  StartListener(options);
  const int silent = transport::testpki::ConnectTcp(listener_->LocalPort());
  ASSERT_GE(silent, 0);
  std::this_thread::sleep_for(50ms);
  // Over the limit while the first is handshaking: closed at once.
  const int second = transport::testpki::ConnectTcp(listener_->LocalPort());
  EXPECT_TRUE(transport::testpki::WaitForPeerClose(second, 2s));
  ::close(second);
  // The silent one is closed after the handshake timeout.
  EXPECT_TRUE(transport::testpki::WaitForPeerClose(silent, 3s));
  ::close(silent);
  // The slot is free again.
  std::this_thread::sleep_for(50ms);
  auto client = DialSync(Dial("tls", true));
  ASSERT_TRUE(client) << client.error().message();
  ASSERT_FALSE(WriteAll(**client, "x"));
  ASSERT_TRUE(WaitAccepted());
}

// --- Bulk data -------------------------------------------------------------------------------

// A streaming, order-sensitive checksum that works a word at a time (a byte-at-a-time hash would
// cost as much CPU as the TLS it checks), whatever sizes the reads come in.
class Checksum {
 public:
  void Add(const char* data, std::size_t size) {
    while (size > 0 && pending_bytes_ > 0) {
      Byte(*data++);
      --size;
    }
    for (; size >= 8; data += 8, size -= 8) {
      std::uint64_t word;
      std::memcpy(&word, data, 8);
      Mix(word);
    }
    while (size-- > 0) {
      Byte(*data++);
    }
  }
  std::uint64_t value() const { return hash_ ^ pending_ ^ pending_bytes_; }

 private:
  void Byte(char c) {
    pending_ |= std::uint64_t{static_cast<unsigned char>(c)} << (8 * pending_bytes_);
    if (++pending_bytes_ == 8) {
      Mix(pending_);
      pending_ = 0;
      pending_bytes_ = 0;
    }
  }
  void Mix(std::uint64_t word) {
    hash_ = (hash_ ^ word) * 0x100000001b3ull;
    hash_ ^= hash_ >> 29;
  }
  std::uint64_t hash_ = 14695981039346656037ull;
  std::uint64_t pending_ = 0;
  unsigned pending_bytes_ = 0;
};

// Writes `total` bytes of `pattern` (repeated) in `chunk`-sized writes, then half-closes; all on
// the stream's executor.
struct BulkWriter : std::enable_shared_from_this<BulkWriter> {
  ByteStream* stream;
  const std::string* pattern;
  std::size_t total, chunk, sent = 0;
  std::promise<ErrorCode> done;
  void Next() {
    if (sent == total) {
      stream->AsyncShutdownWrite(
          [self = shared_from_this()](ErrorCode ec) { self->done.set_value(ec); });
      return;
    }
    const std::size_t offset = sent % pattern->size();
    const std::size_t n = std::min({chunk, total - sent, pattern->size() - offset});
    stream->AsyncWrite(asio::buffer(pattern->data() + offset, n),
                       [self = shared_from_this()](ErrorCode ec, std::size_t n) {
                         if (ec) {
                           self->done.set_value(ec);
                           return;
                         }
                         self->sent += n;
                         self->Next();
                       });
  }
};

struct BulkReader : std::enable_shared_from_this<BulkReader> {
  ByteStream* stream;
  std::vector<char> buffer = std::vector<char>(256 * 1024);
  Checksum checksum;
  std::size_t received = 0;
  std::promise<ErrorCode> done;
  void Next() {
    stream->AsyncReadSome(asio::buffer(buffer),
                          [self = shared_from_this()](ErrorCode ec, std::size_t n) {
                            self->checksum.Add(self->buffer.data(), n);
                            self->received += n;
                            if (ec) {
                              self->done.set_value(ec);
                              return;
                            }
                            self->Next();
                          });
  }
};

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

void Bulk(ByteStream& from, ByteStream& to, const char* label) {
  constexpr std::size_t kTotal = 64u << 20;
  std::string pattern(1 << 20, '\0');
  std::mt19937_64 random(42);
  for (std::size_t i = 0; i + 8 <= pattern.size(); i += 8) {
    const std::uint64_t value = random();
    std::memcpy(pattern.data() + i, &value, 8);
  }
  Checksum expected;
  for (std::size_t i = 0; i < kTotal / pattern.size(); ++i) {
    expected.Add(pattern.data(), pattern.size());
  }
  auto writer = std::make_shared<BulkWriter>();
  writer->stream = &from;
  writer->pattern = &pattern;
  writer->total = kTotal;
  writer->chunk = 256 * 1024;
  auto reader = std::make_shared<BulkReader>();
  reader->stream = &to;
  auto wrote = writer->done.get_future();
  auto read = reader->done.get_future();
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = CpuSeconds();
  asio::dispatch(to.GetExecutor(), [reader] { reader->Next(); });
  asio::dispatch(from.GetExecutor(), [writer] { writer->Next(); });
  ASSERT_EQ(read.wait_for(120s), std::future_status::ready);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = CpuSeconds() - cpu_start;
  ASSERT_EQ(wrote.wait_for(kWait), std::future_status::ready);
  EXPECT_FALSE(wrote.get());
  EXPECT_EQ(read.get(), asio::error::eof);
  EXPECT_EQ(reader->received, kTotal);
  EXPECT_EQ(reader->checksum.value(), expected.value()) << "checksum mismatch";
  // Both ends run in this process, so the CPU time is encryption plus decryption (plus the
  // checksum); on a shared machine MB per CPU second says more than the wall clock.
  std::printf(
      "[ carrier  ] %s: 64 MiB in %.3f s = %.0f MB/s; %.3f CPU s for both ends = %.0f MB "
      "per CPU s (checksum checked)\n",
      label, seconds, kTotal / seconds / 1e6, cpu, kTotal / cpu / 1e6);
}

TEST_F(CarrierTest, SixtyFourMebibytesThroughRawTls) {
  StartListener(Listen(ClientCertPolicy::kRequired));
  auto client = DialSync(Dial("tls", true));
  ASSERT_TRUE(client) << client.error().message();
  ASSERT_FALSE(WriteAll(**client, "x"));  // the dialer speaks first
  auto server = WaitAccepted();
  ASSERT_TRUE(server);
  std::array<char, 1> first{};
  std::promise<void> got;
  asio::dispatch(server->stream->GetExecutor(), [&] {
    server->stream->AsyncReadSome(asio::buffer(first),
                                  [&](ErrorCode, std::size_t) { got.set_value(); });
  });
  got.get_future().wait();
  Bulk(**client, *server->stream, "raw TLS, dialer to listener");
  Bulk(*server->stream, **client, "raw TLS, listener to dialer");
}

TEST_F(CarrierTest, SixtyFourMebibytesThroughWebSocket) {
  StartListener(Listen(ClientCertPolicy::kRequired));
  auto client = DialSync(Dial("wss", true, "/v1/tunnel"));
  ASSERT_TRUE(client) << client.error().message();
  auto server = WaitAccepted();
  ASSERT_TRUE(server);
  Bulk(**client, *server->stream, "WebSocket, dialer (masking) to listener");
  Bulk(*server->stream, **client, "WebSocket, listener to dialer");
}

// Both directions at once (one read and one write outstanding on each end, as the multiplexer
// runs a carrier), each ended by a half-close.
void Duplex(ByteStream& a, ByteStream& b) {
  constexpr std::size_t kTotal = 16u << 20;
  std::string pattern_a(1 << 20, 'a');
  std::string pattern_b(1 << 20, 'b');
  for (std::size_t i = 0; i < pattern_a.size(); ++i) {
    pattern_a[i] = static_cast<char>(i * 7 + i / 4096);
    pattern_b[i] = static_cast<char>(i * 13 + i / 1000);
  }
  Checksum expected_a;
  Checksum expected_b;
  for (std::size_t i = 0; i < kTotal / pattern_a.size(); ++i) {
    expected_a.Add(pattern_a.data(), pattern_a.size());
    expected_b.Add(pattern_b.data(), pattern_b.size());
  }
  auto make_writer = [](ByteStream& stream, const std::string& pattern, std::size_t chunk) {
    auto writer = std::make_shared<BulkWriter>();
    writer->stream = &stream;
    writer->pattern = &pattern;
    writer->total = kTotal;
    writer->chunk = chunk;
    return writer;
  };
  auto writer_a = make_writer(a, pattern_a, 100 * 1000);  // sizes that do not line up with records
  auto writer_b = make_writer(b, pattern_b, 7 * 1024 + 3);
  auto reader_a = std::make_shared<BulkReader>();
  reader_a->stream = &a;
  auto reader_b = std::make_shared<BulkReader>();
  reader_b->stream = &b;
  std::vector<std::future<ErrorCode>> results;
  for (auto* promise : {&writer_a->done, &writer_b->done, &reader_a->done, &reader_b->done}) {
    results.push_back(promise->get_future());
  }
  asio::dispatch(a.GetExecutor(), [writer_a, reader_a] {
    reader_a->Next();
    writer_a->Next();
  });
  asio::dispatch(b.GetExecutor(), [writer_b, reader_b] {
    reader_b->Next();
    writer_b->Next();
  });
  for (auto& result : results) {
    ASSERT_EQ(result.wait_for(120s), std::future_status::ready);
  }
  EXPECT_FALSE(results[0].get());
  EXPECT_FALSE(results[1].get());
  EXPECT_EQ(results[2].get(), asio::error::eof);
  EXPECT_EQ(results[3].get(), asio::error::eof);
  EXPECT_EQ(reader_b->received, kTotal);
  EXPECT_EQ(reader_a->received, kTotal);
  EXPECT_EQ(reader_b->checksum.value(), expected_a.value());
  EXPECT_EQ(reader_a->checksum.value(), expected_b.value());
}

TEST_F(CarrierTest, BothDirectionsAtOnce) {
  StartListener(Listen(ClientCertPolicy::kRequired));
  for (const char* scheme : {"tls", "wss"}) {
    SCOPED_TRACE(scheme);
    auto client = DialSync(Dial(scheme, true, "/v1/tunnel"));
    ASSERT_TRUE(client) << client.error().message();
    ASSERT_FALSE(WriteAll(**client, "x"));  // the dialer speaks first on raw TLS
    auto server = WaitAccepted();
    ASSERT_TRUE(server);
    std::array<char, 1> first{};
    std::promise<std::size_t> got;
    asio::dispatch(server->stream->GetExecutor(), [&] {
      server->stream->AsyncReadSome(asio::buffer(first),
                                    [&](ErrorCode ec, std::size_t n) { got.set_value(ec ? 0 : n); });
    });
    ASSERT_EQ(got.get_future().get(), 1u);
    Duplex(**client, *server->stream);
    CloseOn(**client);
    CloseOn(*server->stream);
  }
}

TEST_F(CarrierTest, CloseAbortsAPendingReadAndTheStreamMayGoAtOnce) {
  StartListener(Listen(ClientCertPolicy::kRequired));
  for (const char* scheme : {"tls", "wss"}) {
    SCOPED_TRACE(scheme);
    auto client = DialSync(Dial(scheme, true, "/v1/tunnel"));
    ASSERT_TRUE(client) << client.error().message();
    ASSERT_FALSE(WriteAll(**client, "x"));
    auto server = WaitAccepted();
    ASSERT_TRUE(server);
    // A read waits on each end; the dialer's stream is closed and destroyed at once, on its strand,
    // before its read handler has run.
    std::promise<ErrorCode> client_read;
    std::promise<ErrorCode> server_read;
    auto buffer = std::make_shared<std::array<char, 4096>>();
    auto server_buffer = std::make_shared<std::array<char, 4096>>();
    std::shared_ptr<ByteStream> stream = std::move(*client);
    asio::dispatch(server->stream->GetExecutor(), [&, server_buffer] {
      // Skip the "x" first, then wait for what never comes.
      server->stream->AsyncReadSome(asio::buffer(*server_buffer), [&, server_buffer](ErrorCode, std::size_t) {
        server->stream->AsyncReadSome(asio::buffer(*server_buffer),
                                      [&, server_buffer](ErrorCode ec, std::size_t) { server_read.set_value(ec); });
      });
    });
    asio::dispatch(stream->GetExecutor(), [&client_read, buffer, stream]() mutable {
      stream->AsyncReadSome(asio::buffer(*buffer),
                            [&client_read, buffer](ErrorCode ec, std::size_t) { client_read.set_value(ec); });
      stream->Close();
      stream.reset();
    });
    stream.reset();
    auto client_result = client_read.get_future();
    ASSERT_EQ(client_result.wait_for(kWait), std::future_status::ready);
    EXPECT_TRUE(client_result.get());
    // The listener's end sees the connection end (an error: no close_notify or close frame came).
    auto server_result = server_read.get_future();
    ASSERT_EQ(server_result.wait_for(kWait), std::future_status::ready);
    EXPECT_TRUE(server_result.get());
    CloseOn(*server->stream);
  }
}

}  // namespace
}  // namespace lifeline::tunnel
