#include "transport/http_client.h"

#include "transport/https_server.h"
#include "unit/transport/test_pki.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

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

// --- Proxies: real tinyproxy and microsocks processes on loopback -------------------------------

// A proxy server child process, stopped (SIGTERM, then SIGKILL) when the test ends.
class ProxyProcess {
 public:
  ProxyProcess(std::vector<std::string> argv, std::filesystem::path log_file)
      : log_file_(std::move(log_file)) {
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> args;
      for (auto& arg : argv) {
        args.push_back(arg.data());
      }
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~ProxyProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      for (int i = 0; i < 100 && waitpid(pid_, nullptr, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (waitpid(pid_, nullptr, WNOHANG) == 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
  }
  ProxyProcess(const ProxyProcess&) = delete;
  ProxyProcess& operator=(const ProxyProcess&) = delete;
  std::string Log() const {
    std::ifstream in(log_file_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  pid_t pid_ = -1;
  std::filesystem::path log_file_;
};

// Proxy configs and logs, removed when the test process exits.
std::filesystem::path ProxyDir() {
  struct Dir {
    Dir() {
      char pattern[] = "/tmp/lifeline-proxy-test-XXXXXX";
      const char* made = mkdtemp(pattern);
      path = made != nullptr ? made : "";
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
    std::filesystem::path path;
  };
  static const Dir dir;
  return dir.path;
}

bool WaitForPort(std::uint16_t port) {
  for (int i = 0; i < 200; ++i) {
    const int fd = testpki::ConnectTcp(port);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// tinyproxy with basic authentication (alice / s3cret) on 127.0.0.1.
std::unique_ptr<ProxyProcess> StartTinyproxy(std::uint16_t* port) {
  *port = testpki::UnusedPort();
  const auto dir = ProxyDir();
  const auto conf = dir / ("tinyproxy-" + std::to_string(*port) + ".conf");
  std::ofstream(conf) << "Port " << *port << "\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\n"
                      << "LogLevel Connect\nBasicAuth alice s3cret\n";
  auto process = std::make_unique<ProxyProcess>(
      std::vector<std::string>{"tinyproxy", "-d", "-c", conf.string()},
      dir / ("tinyproxy-" + std::to_string(*port) + ".log"));
  if (!WaitForPort(*port)) {
    ADD_FAILURE() << "tinyproxy did not start: " << process->Log();
  }
  return process;
}

// microsocks with user bob / password pw.
std::unique_ptr<ProxyProcess> StartMicrosocks(const std::string& listen, std::uint16_t* port) {
  *port = testpki::UnusedPort();
  auto process = std::make_unique<ProxyProcess>(
      std::vector<std::string>{"microsocks", "-i", listen, "-p", std::to_string(*port), "-u", "bob",
                               "-P", "pw"},
      ProxyDir() / ("microsocks-" + std::to_string(*port) + ".log"));
  if (listen == "127.0.0.1" && !WaitForPort(*port)) {
    ADD_FAILURE() << "microsocks did not start: " << process->Log();
  }
  if (listen != "127.0.0.1") {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // no IPv6 probe helper
  }
  return process;
}

ProxySettings Proxy(ProxyKind kind, std::string address, std::string user = "",
                    std::string password = "") {
  ProxySettings proxy;
  proxy.kind = kind;
  proxy.address = std::move(address);
  proxy.username = std::move(user);
  proxy.password = std::move(password);
  return proxy;
}

TEST(HttpClientProxyTest, HttpsThroughAnHttpProxyWithBasicAuthentication) {
  const testpki::TestPki& pki = SharedPki();
  auto server = StartServer(pki.server_cert.string(), pki.server_key.string(), Ok);
  ASSERT_NE(server, nullptr);
  std::uint16_t proxy_port = 0;
  auto tinyproxy = StartTinyproxy(&proxy_port);
  const std::string proxy_address = "127.0.0.1:" + std::to_string(proxy_port);

  HttpClient client({pki.ca_cert.string(), pki.client_cert.string(), pki.client_key.string()});
  client.SetProxy(Proxy(ProxyKind::kHttp, proxy_address, "alice", "s3cret"));
  ClientRequest request;
  request.url = "https://" + server->LocalAddress() + "/";
  request.body = "hello";
  auto response = client.Send(request);
  ASSERT_TRUE(response) << client.LastErrorDetail();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(server->Stats().requests, 1u);
  // It really went through the proxy, as a CONNECT tunnel.
  EXPECT_NE(tinyproxy->Log().find("CONNECT 127.0.0.1:"), std::string::npos) << tinyproxy->Log();

  // Wrong credentials: said so, and retryable (a path failure, the next path may work).
  request.proxy = Proxy(ProxyKind::kHttp, proxy_address, "alice", "wrong");
  response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kConnectFailed);
  EXPECT_TRUE(IsRetryable(response.error()));
  EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kProxyAuth);
  EXPECT_NE(client.LastErrorDetail().find("proxy authentication failed at HTTP proxy " + proxy_address),
            std::string::npos)
      << client.LastErrorDetail();
  // No credentials at all.
  request.proxy = Proxy(ProxyKind::kHttp, proxy_address);
  response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kProxyAuth) << client.LastErrorDetail();
  EXPECT_EQ(server->Stats().requests, 1u);

  // The proxy cannot reach the server: that is the home being unreachable, not the proxy.
  request.proxy.reset();
  request.url = "https://127.0.0.1:" + std::to_string(testpki::UnusedPort()) + "/";
  response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kConnectFailed);
  EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kHomeUnreachable) << client.LastErrorDetail();
}

TEST(HttpClientProxyTest, HttpsThroughSocks5WithPassword) {
  const testpki::TestPki& pki = SharedPki();
  auto server = StartServer(pki.server_cert.string(), pki.server_key.string(), Ok);
  ASSERT_NE(server, nullptr);
  std::uint16_t proxy_port = 0;
  auto microsocks = StartMicrosocks("127.0.0.1", &proxy_port);
  const std::string proxy_address = "127.0.0.1:" + std::to_string(proxy_port);

  HttpClient client({pki.ca_cert.string(), pki.client_cert.string(), pki.client_key.string()});
  ClientRequest request;
  // "localhost" is resolved by the proxy (socks5h); the certificate names it too.
  request.url = "https://localhost:" + server->LocalAddress().substr(server->LocalAddress().rfind(':') + 1) + "/";
  request.proxy = Proxy(ProxyKind::kSocks5, proxy_address, "bob", "pw");
  auto response = client.Send(request);
  ASSERT_TRUE(response) << client.LastErrorDetail();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(server->Stats().requests, 1u);

  request.proxy = Proxy(ProxyKind::kSocks5, proxy_address, "bob", "wrong");
  response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kConnectFailed);
  EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kProxyAuth);
  EXPECT_NE(client.LastErrorDetail().find("proxy authentication failed at SOCKS5 proxy"),
            std::string::npos)
      << client.LastErrorDetail();

  request.proxy = Proxy(ProxyKind::kSocks5, proxy_address, "bob", "pw");
  request.url = "https://127.0.0.1:" + std::to_string(testpki::UnusedPort()) + "/";
  response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kHomeUnreachable) << client.LastErrorDetail();
}

TEST(HttpClientProxyTest, DeadProxyIsProxyUnreachable) {
  HttpClient client({SharedPki().ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://127.0.0.1:9/";
  for (ProxyKind kind : {ProxyKind::kHttp, ProxyKind::kSocks4, ProxyKind::kSocks5}) {
    request.proxy = Proxy(kind, "127.0.0.1:" + std::to_string(testpki::UnusedPort()));
    const auto start = std::chrono::steady_clock::now();
    auto response = client.Send(request);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error(), Errc::kConnectFailed);
    EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kProxyUnreachable) << client.LastErrorDetail();
    EXPECT_NE(client.LastErrorDetail().find("proxy unreachable"), std::string::npos)
        << client.LastErrorDetail();
  }
}

TEST(HttpClientProxyTest, NamesATlsInspectingProxyAndTrustsItsCaWhenTold) {
  const testpki::TestPki& pki = SharedPki();
  // What a TLS-inspecting proxy does, seen from the client: the certificate that arrives through the
  // tunnel is valid for the name but made under another CA.
  auto impostor = StartServer(pki.other_server_cert.string(), pki.other_server_key.string(), Ok);
  ASSERT_NE(impostor, nullptr);
  std::uint16_t proxy_port = 0;
  auto tinyproxy = StartTinyproxy(&proxy_port);
  const std::string proxy_address = "127.0.0.1:" + std::to_string(proxy_port);

  HttpClient client({pki.ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://" + impostor->LocalAddress() + "/";
  request.proxy = Proxy(ProxyKind::kHttp, proxy_address, "alice", "s3cret");
  auto response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error(), Errc::kTlsFailed);
  EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kTlsInspected);
  EXPECT_NE(client.LastErrorDetail().find("the proxy at " + proxy_address +
                                          " appears to inspect TLS: the certificate presented"),
            std::string::npos)
      << client.LastErrorDetail();
  EXPECT_NE(client.LastErrorDetail().find("issuer:"), std::string::npos) << client.LastErrorDetail();
  EXPECT_EQ(impostor->Stats().requests, 0u);

  // Directly, the same failure is a plain TLS failure: no proxy to blame.
  request.proxy.reset();
  response = client.Send(request);
  ASSERT_FALSE(response);
  EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kTls);

  // proxy_ca_file: the proxy's CA is trusted for the transport, beside the home CA.
  request.proxy = Proxy(ProxyKind::kHttp, proxy_address, "alice", "s3cret");
  request.proxy->ca_file = pki.other_ca_cert.string();
  response = client.Send(request);
  ASSERT_TRUE(response) << client.LastErrorDetail();
  EXPECT_EQ(response->status, 200);
  // ... and the home CA still is.
  auto home = StartServer(pki.server_cert.string(), pki.server_key.string(), Ok);
  ASSERT_NE(home, nullptr);
  request.url = "https://" + home->LocalAddress() + "/";
  response = client.Send(request);
  ASSERT_TRUE(response) << client.LastErrorDetail();

  request.proxy->ca_file = (ProxyDir() / "missing.pem").string();
  EXPECT_EQ(client.Send(request).error(), Errc::kInvalidArgument);
}

TEST(HttpClientProxyTest, Socks5OverIpv6) {
  if (!testpki::HasIpv6Loopback()) {
    GTEST_SKIP() << "no IPv6 loopback";
  }
  const testpki::TestPki& pki = SharedPki();
  ServerOptions options;
  options.listen = "[::1]:0";
  options.tls = {pki.server_cert.string(), pki.server_key.string(), pki.ca_cert.string()};
  auto server = HttpsServer::Start(options, Ok);
  ASSERT_TRUE(server) << server.error().message();
  std::uint16_t proxy_port = 0;
  auto microsocks = StartMicrosocks("::1", &proxy_port);
  HttpClient client({pki.ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://" + (*server)->LocalAddress() + "/";
  ASSERT_EQ(request.url.rfind("https://[::1]:", 0), 0u) << request.url;
  request.proxy = Proxy(ProxyKind::kSocks5, "[::1]:" + std::to_string(proxy_port), "bob", "pw");
  std::optional<Result<ClientResponse>> response;
  for (int i = 0; i < 50; ++i) {  // microsocks may still be binding
    response.emplace(client.Send(request));
    if (*response || client.LastFailurePoint() != FailurePoint::kProxyUnreachable) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(*response) << client.LastErrorDetail();
  EXPECT_EQ((**response).status, 200);
}

TEST(HttpClientProxyTest, RejectsMalformedProxyAddresses) {
  EXPECT_TRUE(IsValidProxyAddress("10.0.0.1:3128"));
  EXPECT_TRUE(IsValidProxyAddress("proxy.example.com:8080"));
  EXPECT_TRUE(IsValidProxyAddress("[::1]:1080"));
  EXPECT_FALSE(IsValidProxyAddress(""));
  EXPECT_FALSE(IsValidProxyAddress("http://10.0.0.1:3128"));
  EXPECT_FALSE(IsValidProxyAddress("user:pw@10.0.0.1:3128"));
  EXPECT_FALSE(IsValidProxyAddress("10.0.0.1"));
  EXPECT_FALSE(IsValidProxyAddress("::1:1080"));
  EXPECT_FALSE(IsValidProxyAddress("10.0.0.1:80a"));
  HttpClient client({SharedPki().ca_cert.string(), "", ""});
  ClientRequest request;
  request.url = "https://127.0.0.1:9/";
  request.proxy = Proxy(ProxyKind::kSocks5, "socks5://127.0.0.1:1080");
  EXPECT_EQ(client.Send(request).error(), Errc::kInvalidArgument);
  EXPECT_EQ(client.LastFailurePoint(), FailurePoint::kRequest);
}

}  // namespace
}  // namespace lifeline::transport
