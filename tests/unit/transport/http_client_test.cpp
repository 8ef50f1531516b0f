#include "transport/http_client.h"

#include "transport/https_server.h"
#include "unit/transport/test_pki.h"

#include <gtest/gtest.h>

#include <thread>

namespace lifeline::transport {
namespace {

using namespace std::chrono_literals;
using testpki::SharedPki;

std::unique_ptr<HttpsServer> StartServer(const std::string& cert, const std::string& key,
                                         Handler handler) {
  ServerOptions options;
  options.tls = {cert, key, SharedPki().ca_cert.string()};
  options.name = "client-test";
  auto server = HttpsServer::Start(std::move(options), std::move(handler));
  if (!server) {
    ADD_FAILURE() << "Start failed: " << server.error().message();
    return nullptr;
  }
  return std::move(*server);
}

HttpResponse Ok(const HttpRequest&) {
  HttpResponse response;
  response.body = "{}";
  return response;
}

TEST(HttpClientTest, RefusesAServerThatDoesNotChainToThePinnedCa) {
  const testpki::TestPki& pki = SharedPki();
  // A perfectly valid server, but under another CA.
  auto server = StartServer(pki.other_server_cert.string(), pki.other_server_key.string(), Ok);
  ASSERT_NE(server, nullptr);
  HttpClient client({pki.ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://" + server->LocalAddress() + "/";
  auto response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kTlsFailed);
  EXPECT_FALSE(client.LastErrorDetail().empty());
  EXPECT_EQ(server->Stats().requests, 0u);

  // The same client trusts a server under its own CA, and LastErrorDetail() clears.
  auto good_server = StartServer(pki.server_cert.string(), pki.server_key.string(), Ok);
  ASSERT_NE(good_server, nullptr);
  request.url = "https://" + good_server->LocalAddress() + "/";
  response = client.Send(request);
  ASSERT_TRUE(response) << client.LastErrorDetail();
  EXPECT_TRUE(client.LastErrorDetail().empty());
}

TEST(HttpClientTest, HostNameMustMatchTheCertificate) {
  const testpki::TestPki& pki = SharedPki();
  auto server = StartServer(pki.server_cert.string(), pki.server_key.string(), Ok);
  ASSERT_NE(server, nullptr);
  HttpClient client({pki.ca_cert.string(), "", ""});
  ClientRequest request;
  // 127.0.0.2 is loopback on Linux too, but not in the certificate's names.
  ServerOptions options;
  options.listen = "127.0.0.2:0";
  options.tls = {pki.server_cert.string(), pki.server_key.string(), ""};
  options.client_certs = ClientCertPolicy::kNone;
  auto other_address = HttpsServer::Start(options, Ok);
  if (!other_address) {
    GTEST_SKIP() << "cannot bind 127.0.0.2";
  }
  request.url = "https://" + (*other_address)->LocalAddress() + "/";
  auto response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kTlsFailed) << client.LastErrorDetail();
}

TEST(HttpClientTest, ClosedPortIsConnectFailedAtOnce) {
  HttpClient client({SharedPki().ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://127.0.0.1:" + std::to_string(testpki::UnusedPort()) + "/";
  const auto start = std::chrono::steady_clock::now();
  auto response = client.Send(request);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kConnectFailed);
  EXPECT_TRUE(IsRetryable(response.error()));
}

TEST(HttpClientTest, SlowServerIsTimeout) {
  const testpki::TestPki& pki = SharedPki();
  auto server =
      StartServer(pki.server_cert.string(), pki.server_key.string(), [](const HttpRequest&) {
        std::this_thread::sleep_for(1500ms);
        return HttpResponse{};
      });
  ASSERT_NE(server, nullptr);
  HttpClient client({pki.ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://" + server->LocalAddress() + "/";
  request.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  auto response = client.Send(request);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1200ms);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kTimeout);
  EXPECT_TRUE(IsRetryable(response.error()));
}

TEST(HttpClientTest, ResponseLargerThanTheLimitFails) {
  const testpki::TestPki& pki = SharedPki();
  auto server =
      StartServer(pki.server_cert.string(), pki.server_key.string(), [](const HttpRequest&) {
        HttpResponse response;
        response.body.assign(256 * 1024, 'z');
        return response;
      });
  ASSERT_NE(server, nullptr);
  HttpClient client({pki.ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://" + server->LocalAddress() + "/";
  request.max_response_bytes = 1024;
  auto response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kResponseTooLarge);
  EXPECT_FALSE(IsRetryable(response.error()));
  request.max_response_bytes = 256 * 1024;
  response = client.Send(request);
  ASSERT_TRUE(response) << client.LastErrorDetail();
  EXPECT_EQ(response->body.size(), 256u * 1024);
}

TEST(HttpClientTest, RejectsRequestsItMustNotSend) {
  HttpClient client({SharedPki().ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "http://127.0.0.1:1/";  // plain HTTP would expose the payload
  EXPECT_EQ(client.Send(request).error(), Errc::kInvalidArgument);
  request.url = "https://127.0.0.1:1/";
  request.headers.emplace_back("X-Evil", "a\r\nInjected: yes");
  EXPECT_EQ(client.Send(request).error(), Errc::kInvalidArgument);
  request.headers.clear();
  request.method = "GE T";
  EXPECT_EQ(client.Send(request).error(), Errc::kInvalidArgument);

  HttpClient no_ca({"", "", ""});  // no silent fallback to the system store
  request.method = "GET";
  EXPECT_EQ(no_ca.Send(request).error(), Errc::kInvalidArgument);
}

TEST(HttpClientTest, SendsOtherMethodsWithTheirBodies) {
  const testpki::TestPki& pki = SharedPki();
  auto server =
      StartServer(pki.server_cert.string(), pki.server_key.string(), [](const HttpRequest& r) {
        HttpResponse response;
        response.body = r.method + ":" + r.body;
        return response;
      });
  ASSERT_NE(server, nullptr);
  HttpClient client({pki.ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://" + server->LocalAddress() + "/x";
  for (const char* method : {"PUT", "DELETE", "PATCH"}) {
    request.method = method;
    request.body = std::string("b\0dy", 4);  // binary-safe
    auto response = client.Send(request);
    ASSERT_TRUE(response) << client.LastErrorDetail();
    EXPECT_EQ(response->body, std::string(method) + ":" + request.body);
  }
}

}  // namespace
}  // namespace lifeline::transport
