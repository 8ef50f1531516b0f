// The dialing end of a carrier: libcurl opens the TCP connection (directly, or through an HTTP
// CONNECT or SOCKS proxy, blocking on a small pool), then Asio and OpenSSL do TLS and Beast the
// WebSocket handshake on the caller's executor.
#include <curl/curl.h>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <exception>
#include <fstream>
#include <mutex>
#include <string_view>

#include "common/log.h"
#include "tunnel/carrier_internal.h"

namespace lifeline::tunnel {
namespace {

using namespace carrier_detail;  // NOLINT: this file's own helpers
namespace http = beast::http;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
using Clock = std::chrono::steady_clock;

struct Endpoint {
  bool websocket = false;
  std::string host;      // without brackets: what the certificate must name
  std::string url_host;  // with brackets for IPv6 literals
  std::uint16_t port = 0;
  std::string target;  // WebSocket request target
  bool host_is_ip = false;
};

// "tls://host:port" or "wss://host:port/path".
Result<Endpoint> ParseEndpoint(std::string_view url) {
  Endpoint endpoint;
  if (url.starts_with("tls://")) {
    url.remove_prefix(6);
  } else if (url.starts_with("wss://")) {
    endpoint.websocket = true;
    url.remove_prefix(6);
  } else {
    return Fail(CarrierErrc::kInvalidOptions);
  }
  const std::size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (endpoint.websocket) {
    endpoint.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  } else if (slash != std::string_view::npos && slash + 1 != url.size()) {
    return Fail(CarrierErrc::kInvalidOptions);  // raw TLS has no path
  }
  std::string_view host;
  std::string_view port_text;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find("]:");
    if (close == std::string_view::npos) {
      return Fail(CarrierErrc::kInvalidOptions);
    }
    host = authority.substr(1, close - 1);
    port_text = authority.substr(close + 2);
    endpoint.url_host = fmt::format("[{}]", host);
  } else {
    const std::size_t colon = authority.rfind(':');
    if (colon == std::string_view::npos) {
      return Fail(CarrierErrc::kInvalidOptions);
    }
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
    endpoint.url_host = std::string(host);
  }
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), endpoint.port);
  if (host.empty() || port_text.empty() || error != std::errc() ||
      end != port_text.data() + port_text.size() || endpoint.port == 0 ||
      host.find_first_of(std::string_view("@/?# \t\r\n\0", 10)) != std::string_view::npos ||
      endpoint.target.find_first_of(std::string_view(" \t\r\n\0", 5)) != std::string::npos) {
    return Fail(CarrierErrc::kInvalidOptions);
  }
  endpoint.host = std::string(host);
  ErrorCode ec;
  asio::ip::make_address(endpoint.host, ec);
  endpoint.host_is_ip = !ec;
  if (authority.starts_with('[') && !endpoint.host_is_ip) {
    return Fail(CarrierErrc::kInvalidOptions);
  }
  return endpoint;
}

bool IsToken(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::shared_ptr<spdlog::logger> Log() { return log::Get("tunnel"); }

// The dial's blocking part runs here: a few threads, so dials to a dead proxy do not hold up
// others for long. Never destroyed (a dial may still run while the process exits).
asio::thread_pool& DialPool() {
  static auto* pool = new asio::thread_pool(4);
  return *pool;
}

void CurlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

const char* ProxyScheme(transport::ProxyKind kind) {
  switch (kind) {
    case transport::ProxyKind::kHttp:
      return "http://";
    case transport::ProxyKind::kSocks4:
      return "socks4a://";  // the proxy resolves the home's name
    case transport::ProxyKind::kSocks5:
      return "socks5h://";  // likewise
    case transport::ProxyKind::kNone:
      break;
  }
  return "";
}

// What the blocking part hands back: a connected socket, or which hop failed and curl's words.
struct Connected {
  int fd = -1;
  std::error_code error;
  std::string detail;
};

// Sorts a failed connect into the hop that failed, naming the proxy (as transport's HttpClient
// does for requests).
Connected Classify(CURL* curl, CURLcode code, const DialOptions& options, const Endpoint& endpoint,
                   const std::string& words) {
  const transport::ProxySettings& proxy = options.proxy;
  const std::string home = fmt::format("{}:{}", endpoint.url_host, endpoint.port);
  if (code == CURLE_OPERATION_TIMEDOUT) {
    return {-1, CarrierErrc::kTimeout,
            fmt::format("no connection to {}{} within {} ms ({})", home,
                        proxy.kind == transport::ProxyKind::kNone ? "" : " via " + proxy.Describe(),
                        options.connect_timeout.count(), words)};
  }
  if (proxy.kind == transport::ProxyKind::kNone) {
    return {-1, CarrierErrc::kHomeUnreachable,
            fmt::format("cannot connect to {} ({})", home, words)};
  }
  const std::string proxy_name = proxy.Describe();
  long connect_code = 0;
  curl_easy_getinfo(curl, CURLINFO_HTTP_CONNECTCODE, &connect_code);
  long proxy_code = CURLPX_OK;
  curl_easy_getinfo(curl, CURLINFO_PROXY_ERROR, &proxy_code);
  // 407 is the standard answer; tinyproxy's BasicAuth answers CONNECT with 401.
  if (connect_code == 407 || connect_code == 401) {
    return {-1, CarrierErrc::kProxyAuth,
            fmt::format("{} refused our credentials (HTTP {} to CONNECT{}) ({})", proxy_name,
                        connect_code,
                        proxy.username.empty() ? ", and no username is configured" : "", words)};
  }
  if (connect_code != 0 && (connect_code < 200 || connect_code > 299)) {
    return {-1, CarrierErrc::kHomeUnreachable,
            fmt::format("{} could not open a tunnel to {} (HTTP {} to CONNECT) ({})", proxy_name,
                        home, connect_code, words)};
  }
  if (code == CURLE_PROXY) {
    switch (static_cast<CURLproxycode>(proxy_code)) {
      case CURLPX_USER_REJECTED:
      case CURLPX_NO_AUTH:
      case CURLPX_SEND_AUTH:
      case CURLPX_RECV_AUTH:
      case CURLPX_LONG_USER:
      case CURLPX_LONG_PASSWD:
        return {-1, CarrierErrc::kProxyAuth,
                fmt::format("{} refused our credentials ({})", proxy_name, words)};
      case CURLPX_REPLY_CONNECTION_REFUSED:
      case CURLPX_REPLY_HOST_UNREACHABLE:
      case CURLPX_REPLY_NETWORK_UNREACHABLE:
      case CURLPX_REPLY_GENERAL_SERVER_FAILURE:
      case CURLPX_REPLY_TTL_EXPIRED:
      case CURLPX_REPLY_NOT_ALLOWED:
      case CURLPX_REQUEST_FAILED:
      case CURLPX_RESOLVE_HOST:
        return {-1, CarrierErrc::kHomeUnreachable,
                fmt::format("{} could not reach {} ({})", proxy_name, home, words)};
      default:
        return {-1, CarrierErrc::kProxyUnreachable,
                fmt::format("{} failed: {}", proxy_name, words)};
    }
  }
  if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_PROXY) {
    return {-1, CarrierErrc::kProxyUnreachable,
            fmt::format("cannot connect to {} ({})", proxy_name, words)};
  }
  return {-1, CarrierErrc::kHomeUnreachable, fmt::format("via {}: {}", proxy_name, words)};
}

// Blocking: opens the TCP connection (through the proxy) with curl and takes its socket.
Connected ConnectWithCurl(const DialOptions& options, const Endpoint& endpoint,
                          std::chrono::milliseconds timeout) {
  CurlGlobalInit();
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    return {-1, CarrierErrc::kInvalidOptions, "curl_easy_init failed"};
  }
  std::array<char, CURL_ERROR_SIZE> words{};
  // An http:// URL with CONNECT_ONLY: curl connects (through the proxy: CONNECT or the SOCKS
  // handshake) and stops before sending a request; the socket is then ours.
  const std::string url = fmt::format("http://{}:{}/", endpoint.url_host, endpoint.port);
  const std::string proxy_url =
      std::string(ProxyScheme(options.proxy.kind)) + options.proxy.address;
  const long timeout_ms = std::max<long>(1, static_cast<long>(timeout.count()));
  bool ok = true;
  auto set = [&ok](CURLcode code) { ok &= code == CURLE_OK; };
  set(curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, words.data()));
  set(curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(curl, CURLOPT_URL, url.c_str()));
  set(curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http"));
  set(curl_easy_setopt(curl, CURLOPT_CONNECT_ONLY, 1L));
  set(curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms));
  set(curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms));
  set(curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L));
  if (options.proxy.kind == transport::ProxyKind::kNone) {
    // The path is configuration, never https_proxy & co. from the environment.
    set(curl_easy_setopt(curl, CURLOPT_PROXY, ""));
  } else {
    set(curl_easy_setopt(curl, CURLOPT_PROXY, proxy_url.c_str()));
    set(curl_easy_setopt(curl, CURLOPT_NOPROXY, ""));
    if (options.proxy.kind == transport::ProxyKind::kHttp) {
      set(curl_easy_setopt(curl, CURLOPT_HTTPPROXYTUNNEL, 1L));
      set(curl_easy_setopt(curl, CURLOPT_PROXYAUTH, static_cast<long>(CURLAUTH_BASIC)));
    }
    if (options.proxy.kind == transport::ProxyKind::kSocks5) {
      set(curl_easy_setopt(curl, CURLOPT_SOCKS5_AUTH, static_cast<long>(CURLAUTH_BASIC)));
    }
    if (!options.proxy.username.empty()) {
      set(curl_easy_setopt(curl, CURLOPT_PROXYUSERNAME, options.proxy.username.c_str()));
      set(curl_easy_setopt(curl, CURLOPT_PROXYPASSWORD, options.proxy.password.c_str()));
    }
  }
  Connected result;
  if (!ok) {
    result = {-1, CarrierErrc::kInvalidOptions, "libcurl rejected an option"};
  } else if (const CURLcode code = curl_easy_perform(curl); code != CURLE_OK) {
    result = Classify(curl, code, options, endpoint,
                      words[0] != '\0' ? std::string(words.data()) : curl_easy_strerror(code));
  } else {
    curl_socket_t socket = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(curl, CURLINFO_ACTIVESOCKET, &socket) != CURLE_OK ||
        socket == CURL_SOCKET_BAD) {
      result = {-1, CarrierErrc::kHomeUnreachable, "curl connected but gave no socket"};
    } else {
      // curl closes its descriptor with the handle; ours stays open on the same connection.
      result.fd = ::dup(socket);
      if (result.fd < 0) {
        result = {-1, CarrierErrc::kHomeUnreachable,
                  fmt::format("dup of the connected socket failed: {}", std::strerror(errno))};
      }
    }
  }
  curl_easy_cleanup(curl);
  return result;
}

// One dial in progress, on its strand.
struct Dial : std::enable_shared_from_this<Dial> {
  Dial(asio::any_io_executor strand_executor, DialOptions dial_options, Endpoint parsed,
       std::shared_ptr<ssl::context> tls_context, DialHandler handler)
      : strand(std::move(strand_executor)),
        options(std::move(dial_options)),
        endpoint(std::move(parsed)),
        context(std::move(tls_context)),
        done(std::move(handler)),
        timer(strand),
        deadline(Clock::now() + options.connect_timeout) {}

  asio::any_io_executor strand;
  DialOptions options;
  Endpoint endpoint;
  std::shared_ptr<ssl::context> context;
  DialHandler done;
  asio::steady_timer timer;
  Clock::time_point deadline;
  std::unique_ptr<TlsStream> tls;
  std::unique_ptr<WsStream> ws;
  bool timed_out = false;

  void CloseSocket() {
    ErrorCode ignored;
    if (ws) {
      beast::get_lowest_layer(*ws).close(ignored);
    } else if (tls) {
      beast::get_lowest_layer(*tls).close(ignored);
    }
  }

  void Finish(Result<std::unique_ptr<ByteStream>> result, const std::string& detail) {
    timer.cancel();
    if (!result) {
      Log()->warn("carrier {} ({})", DescribeDialError(options, result.error()), detail);
    } else {
      Log()->debug("carrier {} connected ({})", options.endpoint, (*result)->Describe());
    }
    DialHandler handler = std::move(done);
    handler(std::move(result));
  }

  asio::awaitable<void> Handshake(int fd);
};

asio::awaitable<void> Dial::Handshake(int fd) {
  auto self = shared_from_this();
  tcp::socket socket(strand);
  ErrorCode ec;
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
  socket.assign(local.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    Finish(Fail(CarrierErrc::kHomeUnreachable), "cannot adopt the socket: " + ec.message());
    co_return;
  }
  TuneSocket(socket);
  // Through a proxy the socket's peer is the proxy: name the endpoint and the way instead.
  const auto remote = socket.remote_endpoint(ec);
  const std::string peer =
      options.proxy.kind != transport::ProxyKind::kNone
          ? fmt::format("{}:{} via {}", endpoint.url_host, endpoint.port, options.proxy.Describe())
      : ec ? fmt::format("{}:{}", endpoint.url_host, endpoint.port)
           : FormatEndpoint(remote);

  timer.expires_at(deadline);
  timer.async_wait([weak = weak_from_this()](ErrorCode wait_error) {
    auto dial = weak.lock();
    if (!wait_error && dial) {
      dial->timed_out = true;
      dial->CloseSocket();
    }
  });

  tls = std::make_unique<TlsStream>(std::move(socket), *context);
  SSL* ssl = tls->native_handle();
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (endpoint.host_is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, endpoint.host.c_str());
  } else {
    // SNI carries names only (RFC 6066).
    SSL_set_tlsext_host_name(ssl, endpoint.host.c_str());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, endpoint.host.c_str(), 0);
  }
  std::tie(ec) = co_await tls->async_handshake(ssl::stream_base::client, kAsTuple);
  if (ec) {
    if (timed_out) {
      Finish(Fail(CarrierErrc::kTimeout), "during the TLS handshake with " + peer);
    } else {
      Finish(Fail(CarrierErrc::kTlsFailed),
             fmt::format("TLS handshake with {}: {}", peer, TlsErrorText(ec, ssl)));
    }
    co_return;
  }
  if (!endpoint.websocket) {
    auto stream = MakeTlsByteStream(context, std::move(tls), "", "tls " + peer, nullptr);
    Finish(std::move(stream), "");
    co_return;
  }

  ws = std::make_unique<WsStream>(std::move(*tls));
  tls.reset();
  ConfigureWebSocket(*ws, true);
  // Our timer bounds the opening handshake; Beast's bounds the closing one.
  ws->set_option(websocket::stream_base::timeout{std::chrono::seconds(10),
                                                 websocket::stream_base::none(), false});
  ws->set_option(websocket::stream_base::decorator(
      [headers = options.headers](websocket::request_type& request) {
        request.set(http::field::user_agent, "lifeline");
        for (const auto& [name, value] : headers) {
          request.set(name, value);
        }
      }));
  const std::string host_field = endpoint.port == 443
                                     ? endpoint.url_host
                                     : fmt::format("{}:{}", endpoint.url_host, endpoint.port);
  websocket::response_type response;
  std::tie(ec) = co_await ws->async_handshake(response, host_field, endpoint.target, kAsTuple);
  if (ec) {
    if (timed_out) {
      Finish(Fail(CarrierErrc::kTimeout), "during the WebSocket upgrade at " + peer);
    } else if (ec == websocket::error::upgrade_declined && response.result_int() != 0) {
      Finish(
          Fail(std::error_code(static_cast<int>(response.result_int()), UpgradeRefusedCategory())),
          fmt::format("{} answered {} {}", peer, response.result_int(),
                      std::string(response.reason())));
    } else if (ec.category() == asio::error::get_ssl_category() ||
               ec == ssl::error::stream_truncated) {
      // With TLS 1.3 the server checks our certificate after our side of the handshake, so its
      // refusal arrives here.
      Finish(Fail(CarrierErrc::kTlsFailed),
             fmt::format("TLS with {}: {}", peer, TlsErrorText(ec, ssl)));
    } else {
      Finish(Fail(CarrierErrc::kUpgradeFailed),
             fmt::format("WebSocket upgrade at {}{}: {}", peer, endpoint.target, ec.message()));
    }
    co_return;
  }
  const std::string description =
      options.proxy.kind == transport::ProxyKind::kNone
          ? fmt::format("wss {}{}", peer, endpoint.target)
          : fmt::format("wss {}:{}{} via {}", endpoint.url_host, endpoint.port, endpoint.target,
                        options.proxy.Describe());
  auto stream = MakeWebSocketByteStream(context, std::move(ws), description, nullptr);
  Finish(std::move(stream), "");
}

// The client's TLS context: the pinned CA only, our certificate if any.
Result<std::shared_ptr<ssl::context>> ClientContext(const DialOptions& options,
                                                    std::string* detail) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (!HardenContext(*context)) {
    *detail = "OpenSSL accepts none of the TLS 1.2 cipher suites";
    return Fail(CarrierErrc::kTlsSetupFailed);
  }
  ErrorCode ec;
  context->load_verify_file(options.ca_file, ec);
  if (ec) {
    *detail =
        fmt::format("{} is not a readable PEM CA certificate: {}", options.ca_file, ec.message());
    return Fail(CarrierErrc::kTlsSetupFailed);
  }
  context->set_verify_mode(ssl::verify_peer);
  if (!options.cert_file.empty()) {
    context->use_certificate_chain_file(options.cert_file, ec);
    if (!ec) {
      context->use_private_key_file(options.key_file, ssl::context::pem, ec);
    }
    if (ec || SSL_CTX_check_private_key(context->native_handle()) != 1) {
      *detail = fmt::format("client certificate {} or key {} unusable{}", options.cert_file,
                            options.key_file, ec ? ": " + ec.message() : " (they do not match)");
      return Fail(CarrierErrc::kTlsSetupFailed);
    }
  }
  return context;
}

}  // namespace

void AsyncDial(asio::any_io_executor ex, DialOptions options, DialHandler done) {
  auto strand = asio::make_strand(ex);
  auto fail_now = [&](std::error_code error, std::string detail) {
    Log()->warn("carrier {} ({})", DescribeDialError(options, error), detail);
    asio::post(strand, [done = std::move(done), error] { done(Fail(error)); });
  };
  auto endpoint = ParseEndpoint(options.endpoint);
  if (!endpoint) {
    return fail_now(endpoint.error(), "want tls://host:port or wss://host:port/path");
  }
  if (options.ca_file.empty()) {
    return fail_now(CarrierErrc::kInvalidOptions, "no CA file configured");
  }
  if (options.proxy.kind != transport::ProxyKind::kNone &&
      !transport::IsValidProxyAddress(options.proxy.address)) {
    return fail_now(CarrierErrc::kInvalidOptions,
                    "invalid proxy address '" + options.proxy.address + "'");
  }
  if (!options.cert_file.empty() && options.key_file.empty()) {
    return fail_now(CarrierErrc::kInvalidOptions, "a client certificate needs its key file");
  }
  for (const auto& [name, value] : options.headers) {
    if (!IsToken(name) || value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return fail_now(CarrierErrc::kInvalidOptions, "invalid header field '" + name + "'");
    }
  }
  std::string detail;
  auto context = ClientContext(options, &detail);
  if (!context) {
    return fail_now(context.error(), detail);
  }
  auto dial = std::make_shared<Dial>(strand, std::move(options), std::move(*endpoint),
                                     std::move(*context), std::move(done));
  // The work guard keeps the caller's io_context running until the result is posted back.
  asio::post(DialPool(), [dial, work = asio::make_work_guard(ex)]() mutable {
    Connected connected =
        ConnectWithCurl(dial->options, dial->endpoint, dial->options.connect_timeout);
    asio::post(dial->strand, [dial, connected = std::move(connected)] {
      if (connected.fd < 0) {
        dial->Finish(Fail(connected.error), connected.detail);
        return;
      }
      asio::co_spawn(dial->strand, dial->Handshake(connected.fd), [dial](std::exception_ptr error) {
        if (error && dial->done) {
          dial->CloseSocket();
          dial->Finish(Fail(CarrierErrc::kHomeUnreachable),
                       "unexpected exception in the carrier handshake");
        }
      });
    });
    work.reset();
  });
}

}  // namespace lifeline::tunnel
