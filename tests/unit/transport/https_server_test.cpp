#include "transport/https_server.h"

#include "support/temp_dir.h"
#include "transport/http_client.h"
#include "unit/transport/test_pki.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace lifeline::transport {
namespace {

using namespace std::chrono_literals;
using testpki::RawTlsClient;
using testpki::SharedPki;

ServerOptions Options(ClientCertPolicy policy) {
  const testpki::TestPki& pki = SharedPki();
  ServerOptions options;
  options.tls = {pki.server_cert.string(), pki.server_key.string(), pki.ca_cert.string()};
  options.client_certs = policy;
  options.name = "test";
  return options;
}

std::unique_ptr<HttpsServer> StartOrDie(ServerOptions options, Handler handler) {
  auto server = HttpsServer::Start(std::move(options), std::move(handler));
  if (!server) {
    ADD_FAILURE() << "Start failed: " << server.error().message();
    return nullptr;
  }
  return std::move(*server);
}

std::string Url(const HttpsServer& server, const std::string& path) {
  return "https://" + server.LocalAddress() + path;
}

// A client that trusts the test CA and, if asked, presents the good client certificate.
HttpClient Client(bool with_certificate) {
  const testpki::TestPki& pki = SharedPki();
  ClientTls tls{pki.ca_cert.string(), "", ""};
  if (with_certificate) {
    tls.cert_file = pki.client_cert.string();
    tls.key_file = pki.client_key.string();
  }
  return HttpClient(tls);
}

HttpResponse Echo(const HttpRequest& request) {
  HttpResponse response;
  response.content_type = "text/plain";
  response.body = request.method + " " + request.target + " " + request.body;
  return response;
}

TEST(HttpsServerTest, GetAndPostRoundTripOnOneKeptAliveConnection) {
  std::mutex mutex;
  std::vector<HttpRequest> seen;
  auto server = StartOrDie(Options(ClientCertPolicy::kOptional), [&](const HttpRequest& request) {
    {
      std::lock_guard lock(mutex);
      seen.push_back(request);
    }
    HttpResponse response = Echo(request);
    response.status = request.method == "POST" ? 201 : 200;
    response.headers.emplace_back("X-Lifeline-Test", "yes");
    return response;
  });
  ASSERT_NE(server, nullptr);
  HttpClient client = Client(false);

  ClientRequest get;
  get.method = "GET";
  get.url = Url(*server, "/ping?x=1");
  auto got = client.Send(get);
  ASSERT_TRUE(got) << got.error().message() << ": " << client.LastErrorDetail();
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "GET /ping?x=1 ");
  EXPECT_EQ(got->headers["content-type"], "text/plain");
  EXPECT_EQ(got->headers["x-lifeline-test"], "yes");

  ClientRequest post;
  post.url = Url(*server, "/v1/batches");
  post.content_type = "application/json";
  post.body = R"({"alerts":[1,2,3]})";
  post.headers.emplace_back("X-Device", "dev-1");
  auto posted = client.Send(post);
  ASSERT_TRUE(posted) << posted.error().message() << ": " << client.LastErrorDetail();
  EXPECT_EQ(posted->status, 201);
  EXPECT_EQ(posted->body, std::string("POST /v1/batches ") + post.body);

  std::lock_guard lock(mutex);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].headers["content-type"], "application/json");
  EXPECT_EQ(seen[1].headers["x-device"], "dev-1");
  EXPECT_EQ(seen[1].headers["content-length"], std::to_string(post.body.size()));
  EXPECT_FALSE(seen[0].peer.has_value());
  // Same client port both times: the second request reused the first connection.
  EXPECT_EQ(seen[0].remote, seen[1].remote);
  EXPECT_TRUE(seen[0].remote.starts_with("127.0.0.1:")) << seen[0].remote;
  EXPECT_EQ(server->Stats().connections_accepted, 1u);
  EXPECT_EQ(server->Stats().requests, 2u);
}

TEST(HttpsServerTest, HandlerSeesTheVerifiedClientCertificate) {
  std::mutex mutex;
  std::optional<PeerCertificate> peer;
  auto server = StartOrDie(Options(ClientCertPolicy::kRequired), [&](const HttpRequest& request) {
    std::lock_guard lock(mutex);
    peer = request.peer;
    return HttpResponse{};
  });
  ASSERT_NE(server, nullptr);
  HttpClient client = Client(true);
  ClientRequest request;
  request.url = Url(*server, "/hello");
  auto response = client.Send(request);
  ASSERT_TRUE(response) << response.error().message() << ": " << client.LastErrorDetail();
  EXPECT_EQ(response->status, 200);

  std::lock_guard lock(mutex);
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->pem, lifeline::testing::ReadFile(SharedPki().client_cert));
  auto subject = PeerCertificateSubject(*peer);
  ASSERT_TRUE(subject);
  EXPECT_EQ(*subject, "CN=device-1");
  EXPECT_EQ(PeerCertificateSubject(PeerCertificate{"not a certificate"}).error(),
            Errc::kInvalidArgument);
}

TEST(HttpsServerTest, RequiredPolicyRefusesMissingAndForeignCertificates) {
  std::atomic<int> calls{0};
  auto server = StartOrDie(Options(ClientCertPolicy::kRequired), [&](const HttpRequest&) {
    ++calls;
    return HttpResponse{};
  });
  ASSERT_NE(server, nullptr);
  ClientRequest request;
  request.url = Url(*server, "/");

  HttpClient without_certificate = Client(false);
  auto refused = without_certificate.Send(request);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Errc::kTlsFailed) << without_certificate.LastErrorDetail();

  const testpki::TestPki& pki = SharedPki();
  HttpClient foreign(
      {pki.ca_cert.string(), pki.other_client_cert.string(), pki.other_client_key.string()});
  auto refused_foreign = foreign.Send(request);
  ASSERT_FALSE(refused_foreign);
  EXPECT_EQ(refused_foreign.error(), Errc::kTlsFailed) << foreign.LastErrorDetail();

  HttpClient good = Client(true);
  auto accepted = good.Send(request);
  ASSERT_TRUE(accepted) << accepted.error().message() << ": " << good.LastErrorDetail();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(server->Stats().tls_handshake_failures, 2u);
}

TEST(HttpsServerTest, OptionalPolicyAdmitsCertlessClientsButNotForeignCertificates) {
  std::mutex mutex;
  std::vector<std::optional<PeerCertificate>> peers;
  auto server = StartOrDie(Options(ClientCertPolicy::kOptional), [&](const HttpRequest& request) {
    std::lock_guard lock(mutex);
    peers.push_back(request.peer);
    return HttpResponse{};
  });
  ASSERT_NE(server, nullptr);
  ClientRequest request;
  request.url = Url(*server, "/");

  HttpClient certless = Client(false);
  auto response = certless.Send(request);
  ASSERT_TRUE(response) << response.error().message() << ": " << certless.LastErrorDetail();

  HttpClient with_certificate = Client(true);
  response = with_certificate.Send(request);
  ASSERT_TRUE(response) << response.error().message() << ": " << with_certificate.LastErrorDetail();

  const testpki::TestPki& pki = SharedPki();
  HttpClient foreign(
      {pki.ca_cert.string(), pki.other_client_cert.string(), pki.other_client_key.string()});
  auto refused = foreign.Send(request);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Errc::kTlsFailed) << foreign.LastErrorDetail();

  std::lock_guard lock(mutex);
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_FALSE(peers[0].has_value());
  EXPECT_TRUE(peers[1].has_value());
}

TEST(HttpsServerTest, NonePolicyIgnoresClientCertificates) {
  std::mutex mutex;
  std::optional<PeerCertificate> peer{PeerCertificate{"unset"}};
  ServerOptions options = Options(ClientCertPolicy::kNone);
  options.tls.client_ca_file.clear();
  auto server = StartOrDie(options, [&](const HttpRequest& request) {
    std::lock_guard lock(mutex);
    peer = request.peer;
    return HttpResponse{};
  });
  ASSERT_NE(server, nullptr);
  HttpClient client = Client(true);
  ClientRequest request;
  request.url = Url(*server, "/");
  auto response = client.Send(request);
  ASSERT_TRUE(response) << response.error().message() << ": " << client.LastErrorDetail();
  std::lock_guard lock(mutex);
  EXPECT_FALSE(peer.has_value());
}

TEST(HttpsServerTest, RefusesTls11AndAcceptsTls12) {
  auto server = StartOrDie(Options(ClientCertPolicy::kOptional), Echo);
  ASSERT_NE(server, nullptr);
  const std::string ca = SharedPki().ca_cert.string();

  std::string error;
  auto old_client = RawTlsClient::Connect("127.0.0.1", server->LocalPort(),
                                          {ca, TLS1_VERSION, TLS1_1_VERSION}, &error);
  EXPECT_EQ(old_client, nullptr);
  // The server refused: our own library did offer TLS 1.1 (a local refusal says "no protocols").
  EXPECT_EQ(error.find("no protocols available"), std::string::npos) << error;
  EXPECT_NE(error.find("alert"), std::string::npos) << error;

  auto tls12_client = RawTlsClient::Connect("127.0.0.1", server->LocalPort(),
                                            {ca, TLS1_VERSION, TLS1_2_VERSION}, &error);
  EXPECT_NE(tls12_client, nullptr) << error;
}

TEST(HttpsServerTest, OversizedBodyGets413AndTheServerKeepsServing) {
  std::atomic<int> calls{0};
  ServerOptions options = Options(ClientCertPolicy::kOptional);
  options.max_body_bytes = 64 * 1024;
  auto server = StartOrDie(options, [&](const HttpRequest& request) {
    ++calls;
    return Echo(request);
  });
  ASSERT_NE(server, nullptr);
  HttpClient client = Client(false);
  ClientRequest request;
  request.url = Url(*server, "/upload");
  request.body.assign(2 * 1024 * 1024, 'x');
  auto response = client.Send(request);
  ASSERT_TRUE(response) << response.error().message() << ": " << client.LastErrorDetail();
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(response->headers["content-type"], "application/json");
  EXPECT_NE(response->body.find(R"("error":"body_too_large")"), std::string::npos)
      << response->body;
  EXPECT_EQ(calls.load(), 0);
  EXPECT_FALSE(IsRetryableStatus(response->status));

  // A body of exactly the limit passes, on a fresh connection.
  request.body.assign(options.max_body_bytes, 'y');
  response = client.Send(request);
  ASSERT_TRUE(response) << response.error().message() << ": " << client.LastErrorDetail();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(server->Stats().oversized_requests, 1u);
}

TEST(HttpsServerTest, MalformedRequestGets400AndTheConnectionCloses) {
  std::atomic<int> calls{0};
  auto server = StartOrDie(Options(ClientCertPolicy::kOptional), [&](const HttpRequest&) {
    ++calls;
    return HttpResponse{};
  });
  ASSERT_NE(server, nullptr);
  for (const std::string garbage :
       {"THIS IS NOT HTTP\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n"}) {
    std::string error;
    auto raw = RawTlsClient::Connect("127.0.0.1", server->LocalPort(),
                                     {SharedPki().ca_cert.string()}, &error);
    ASSERT_NE(raw, nullptr) << error;
    ASSERT_TRUE(raw->Write(garbage));
    const auto start = std::chrono::steady_clock::now();
    const std::string answer = raw->ReadUntilClose(3s);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2500ms) << "the server did not close";
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 400")) << answer;
    EXPECT_NE(answer.find(R"({"error":"malformed_http")"), std::string::npos) << answer;
  }
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(server->Stats().malformed_requests, 3u);
}

TEST(HttpsServerTest, AnswersExpect100ContinueBeforeTheBody) {
  auto server = StartOrDie(Options(ClientCertPolicy::kOptional), Echo);
  ASSERT_NE(server, nullptr);
  std::string error;
  auto raw = RawTlsClient::Connect("127.0.0.1", server->LocalPort(), {SharedPki().ca_cert.string()},
                                   &error);
  ASSERT_NE(raw, nullptr) << error;
  ASSERT_TRUE(
      raw->Write("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: "
                 "100-continue\r\nConnection: close\r\n\r\n"));
  // The interim response arrives before the body is sent (the read would block for 3 s otherwise).
  std::string answer = raw->ReadUntil("\r\n\r\n");
  EXPECT_EQ(answer, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(raw->Write("hello"));
  answer += raw->ReadUntilClose(3s);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 100 Continue\r\n")) << answer;
  EXPECT_NE(answer.find("HTTP/1.1 200 OK"), std::string::npos) << answer;
  EXPECT_TRUE(answer.ends_with("POST /e hello")) << answer;
}

TEST(HttpsServerTest, HandlerExceptionGets500AndTheServerKeepsServing) {
  auto server = StartOrDie(Options(ClientCertPolicy::kOptional), [](const HttpRequest& request) {
    if (request.target == "/boom") {
      throw std::runtime_error("database on fire");
    }
    if (request.target == "/odd") {
      throw 42;
    }
    return Echo(request);
  });
  ASSERT_NE(server, nullptr);
  HttpClient client = Client(false);
  ClientRequest request;
  request.method = "GET";
  for (const char* path : {"/boom", "/odd"}) {
    request.url = Url(*server, path);
    auto response = client.Send(request);
    ASSERT_TRUE(response) << response.error().message();
    EXPECT_EQ(response->status, 500);
    EXPECT_NE(response->body.find("internal_error"), std::string::npos);
    EXPECT_EQ(response->body.find("fire"), std::string::npos) << "internal details leaked";
  }
  request.url = Url(*server, "/fine");
  auto response = client.Send(request);
  ASSERT_TRUE(response) << response.error().message();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(server->Stats().handler_exceptions, 2u);
}

TEST(HttpsServerTest, StopFinishesTheInFlightRequestAndClosesIdleConnections) {
  std::latch handler_entered(1);
  auto server = StartOrDie(Options(ClientCertPolicy::kOptional), [&](const HttpRequest& request) {
    if (request.target == "/slow") {
      handler_entered.count_down();
      std::this_thread::sleep_for(700ms);
      HttpResponse response;
      response.body = "done";
      return response;
    }
    return Echo(request);
  });
  ASSERT_NE(server, nullptr);
  // An idle kept-alive connection: Stop() must not wait for its 60 s idle timeout.
  HttpClient idle_client = Client(false);
  ClientRequest quick;
  quick.url = Url(*server, "/quick");
  ASSERT_TRUE(idle_client.Send(quick));

  Result<ClientResponse> slow_result = Fail(Errc::kOther);
  std::thread slow_thread([&] {
    HttpClient client = Client(false);
    ClientRequest slow;
    slow.url = Url(*server, "/slow");
    slow_result = client.Send(slow);
  });
  handler_entered.wait();
  const auto start = std::chrono::steady_clock::now();
  server->Stop(3s);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  slow_thread.join();

  ASSERT_TRUE(slow_result) << slow_result.error().message();
  EXPECT_EQ(slow_result->status, 200);
  EXPECT_EQ(slow_result->body, "done");
  EXPECT_EQ(slow_result->headers["connection"], "close");
  EXPECT_LT(elapsed, 2500ms);

  // Nothing listens any more.
  HttpClient late = Client(false);
  ClientRequest after;
  after.url = quick.url;
  after.connect_timeout = 1s;
  auto refused = late.Send(after);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Errc::kConnectFailed);
  server->Stop(0ms);  // idempotent
}

TEST(HttpsServerTest, SilentConnectionIsClosedAfterTheHandshakeTimeout) {
  ServerOptions options = Options(ClientCertPolicy::kOptional);
  options.handshake_timeout = 1s;
  auto server = StartOrDie(options, Echo);
  ASSERT_NE(server, nullptr);
  const int fd = testpki::ConnectTcp(server->LocalPort());
  ASSERT_GE(fd, 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(testpki::WaitForPeerClose(fd, 3s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 800ms);
  ::close(fd);
}

TEST(HttpsServerTest, ConnectionsBeyondTheLimitAreClosed) {
  ServerOptions options = Options(ClientCertPolicy::kOptional);
  options.max_connections = 1;
  auto server = StartOrDie(options, Echo);
  ASSERT_NE(server, nullptr);
  std::string error;
  auto first = RawTlsClient::Connect("127.0.0.1", server->LocalPort(),
                                     {SharedPki().ca_cert.string()}, &error);
  ASSERT_NE(first, nullptr) << error;
  const int second = testpki::ConnectTcp(server->LocalPort());
  ASSERT_GE(second, 0);
  EXPECT_TRUE(testpki::WaitForPeerClose(second, 2s));
  ::close(second);
  EXPECT_EQ(server->Stats().connections_rejected, 1u);
  // The first connection still works.
  ASSERT_TRUE(first->Write("GET /one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_TRUE(first->ReadUntilClose(3s).ends_with("GET /one ")) << "first connection broken";
}

TEST(HttpsServerTest, ListensOnIpv6Loopback) {
  if (!testpki::HasIpv6Loopback()) {
    GTEST_SKIP() << "no ::1 on this machine";
  }
  ServerOptions options = Options(ClientCertPolicy::kOptional);
  options.listen = "[::1]:0";
  auto server = StartOrDie(options, Echo);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->LocalAddress(), "[::1]:" + std::to_string(server->LocalPort()));
  HttpClient client = Client(false);
  ClientRequest request;
  request.method = "GET";
  request.url = Url(*server, "/six");
  auto response = client.Send(request);
  ASSERT_TRUE(response) << response.error().message() << ": " << client.LastErrorDetail();
  EXPECT_EQ(response->body, "GET /six ");
}

TEST(HttpsServerTest, StartReportsConfigurationErrors) {
  const testpki::TestPki& pki = SharedPki();
  auto start = [](ServerOptions options) { return HttpsServer::Start(std::move(options), Echo); };

  ServerOptions missing_cert = Options(ClientCertPolicy::kOptional);
  missing_cert.tls.cert_file = "/nonexistent/server.crt";
  EXPECT_EQ(start(missing_cert).error(), Errc::kTlsSetupFailed);

  ServerOptions not_pem = Options(ClientCertPolicy::kOptional);
  not_pem.tls.cert_file = pki.ca_key.string();  // a key where a certificate belongs
  EXPECT_EQ(start(not_pem).error(), Errc::kTlsSetupFailed);

  ServerOptions mismatch = Options(ClientCertPolicy::kOptional);
  mismatch.tls.key_file = pki.client_key.string();
  EXPECT_EQ(start(mismatch).error(), Errc::kTlsSetupFailed);

  ServerOptions no_client_ca = Options(ClientCertPolicy::kRequired);
  no_client_ca.tls.client_ca_file.clear();
  EXPECT_EQ(start(no_client_ca).error(), Errc::kTlsSetupFailed);

  for (const char* listen :
       {"127.0.0.1", "::1:80", "[::1]80", "host.example:80", "127.0.0.1:99999", ""}) {
    ServerOptions bad_listen = Options(ClientCertPolicy::kOptional);
    bad_listen.listen = listen;
    EXPECT_EQ(start(bad_listen).error(), Errc::kInvalidArgument) << listen;
  }

  ServerOptions first_options = Options(ClientCertPolicy::kOptional);
  auto first = StartOrDie(first_options, Echo);
  ASSERT_NE(first, nullptr);
  ServerOptions same_port = Options(ClientCertPolicy::kOptional);
  same_port.listen = first->LocalAddress();
  EXPECT_EQ(start(same_port).error(), Errc::kListenFailed);

  ServerOptions localhost = Options(ClientCertPolicy::kOptional);
  localhost.listen = "localhost:0";
  auto by_name = start(localhost);
  ASSERT_TRUE(by_name);
  EXPECT_TRUE((*by_name)->LocalAddress().starts_with("127.0.0.1:"));
}

// What the raw TCP client has read when `received` contains `marker`, the peer closes, or `timeout`
// passes (each poll waits at most what is left).
std::string ReadPlain(int fd, std::string_view marker, std::chrono::milliseconds timeout) {
  std::string received;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (marker.empty() || received.find(marker) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      break;
    }
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, static_cast<int>(left.count())) <= 0) {
      break;
    }
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) {
      break;
    }
    received.append(chunk, static_cast<std::size_t>(n));
  }
  return received;
}

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// transport::HttpClient speaks https only, so a raw socket plays the local reverse proxy. No TLS
// files are configured: plain mode must not need them.
TEST(HttpsServerTest, PlainHttpOnLoopbackServesWithoutTls) {
  std::atomic<bool> saw_peer{false};
  ServerOptions options;
  options.plain_http = true;
  options.name = "plain";
  auto server = StartOrDie(options, [&](const HttpRequest& request) {
    if (request.peer) {
      saw_peer = true;
    }
    return Echo(request);
  });
  ASSERT_NE(server, nullptr);
  const int fd = testpki::ConnectTcp(server->LocalPort());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WriteAll(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string first = ReadPlain(fd, "\r\n\r\nGET / ", 5s);
  EXPECT_TRUE(first.starts_with("HTTP/1.1 200 OK\r\n")) << first;
  EXPECT_NE(first.find("Content-Length: 6\r\n"), std::string::npos) << first;
  // Kept alive: a second request on the same connection, which then closes as asked.
  ASSERT_TRUE(WriteAll(fd, "POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                           "Connection: close\r\n\r\nhi"));
  const std::string second = ReadPlain(fd, "", 5s);
  ::close(fd);
  EXPECT_TRUE(second.starts_with("HTTP/1.1 200 OK\r\n")) << second;
  EXPECT_TRUE(second.ends_with("\r\n\r\nPOST /two hi")) << second;
  EXPECT_FALSE(saw_peer);
  const ServerStats stats = server->Stats();
  EXPECT_EQ(stats.requests, 2u);
  EXPECT_EQ(stats.tls_handshake_failures, 0u);
}

TEST(HttpsServerTest, PlainHttpOffLoopbackIsRefused) {
  for (const char* listen : {"0.0.0.0:0", "[::]:0", "192.0.2.1:0"}) {
    ServerOptions options;
    options.plain_http = true;
    options.listen = listen;
    auto server = HttpsServer::Start(options, Echo);
    ASSERT_FALSE(server) << listen;
    EXPECT_EQ(server.error(), Errc::kInvalidArgument) << listen;
  }
  ServerOptions localhost;
  localhost.plain_http = true;
  localhost.listen = "localhost:0";
  auto by_name = StartOrDie(localhost, Echo);
  ASSERT_NE(by_name, nullptr);
  EXPECT_TRUE(by_name->LocalAddress().starts_with("127.0.0.1:"));
}

}  // namespace
}  // namespace lifeline::transport
