#include "transport/http_client.h"

#include "transport/http_syntax.h"

#include "common/log.h"

#include <curl/curl.h>

#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <mutex>
#include <string_view>

namespace lifeline::transport {
namespace {

// curl_global_init is not thread-safe and must run before the first easy handle.
void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r' ||
                           text.back() == '\n')) {
    text.remove_suffix(1);
  }
  return text;
}

std::string ToLower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return lower;
}

bool HasLineBreak(std::string_view text) {
  return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}


struct Receiver {
  ClientResponse* response;
  std::size_t limit;
  bool too_large = false;
};

std::size_t OnBody(char* data, std::size_t size, std::size_t count, void* user) {
  auto* receiver = static_cast<Receiver*>(user);
  const std::size_t bytes = size * count;
  if (receiver->response->body.size() + bytes > receiver->limit) {
    receiver->too_large = true;
    return 0;  // makes curl stop with CURLE_WRITE_ERROR
  }
  receiver->response->body.append(data, bytes);
  return bytes;
}

std::size_t OnHeader(char* data, std::size_t size, std::size_t count, void* user) {
  auto* receiver = static_cast<Receiver*>(user);
  const std::size_t bytes = size * count;
  const std::string_view line(data, bytes);
  if (line.starts_with("HTTP/")) {
    // A new status line: the fields seen so far belonged to an interim response (100 Continue).
    receiver->response->headers.clear();
    return bytes;
  }
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return bytes;
  }
  std::string name = ToLower(Trim(line.substr(0, colon)));
  const std::string_view value = Trim(line.substr(colon + 1));
  auto [it, inserted] = receiver->response->headers.try_emplace(std::move(name), value);
  if (!inserted) {
    it->second.append(", ").append(value);
  }
  return bytes;
}

// ClientRequest::abort: a non-zero return makes curl stop with CURLE_ABORTED_BY_CALLBACK.
int OnProgress(void* data, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto& abort = *static_cast<const std::function<bool()>*>(data);
  return abort() ? 1 : 0;
}

// Sorts curl's result into the few outcomes a caller acts on differently (see IsRetryable).
Errc MapCurlError(CURLcode code, std::string_view detail) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return Errc::kConnectFailed;
    case CURLE_OPERATION_TIMEDOUT:
      return Errc::kTimeout;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
      return Errc::kTlsFailed;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      // With TLS 1.3 the client finishes its side of the handshake before the server has checked
      // the client certificate, so a refusal arrives as an alert on the first read or write.
      if (detail.find("alert") != std::string_view::npos) {
        return Errc::kTlsFailed;
      }
      return Errc::kConnectionLost;
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return Errc::kConnectionLost;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Errc::kInvalidArgument;
    default:
      return Errc::kOther;
  }
}

const char* ProxyScheme(ProxyKind kind) {
  switch (kind) {
    case ProxyKind::kHttp:
      return "http://";
    case ProxyKind::kSocks4:
      return "socks4a://";  // the proxy resolves the home's name
    case ProxyKind::kSocks5:
      return "socks5h://";  // likewise
    case ProxyKind::kNone:
      break;
  }
  return "";
}

// The host[:port] of an https URL, for messages.
std::string_view UrlHost(std::string_view url) {
  if (const std::size_t scheme = url.find("://"); scheme != std::string_view::npos) {
    url.remove_prefix(scheme + 3);
  }
  return url.substr(0, url.find('/'));
}

// A small PEM file's text, or nullopt.
std::optional<std::string> ReadPem(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return std::nullopt;
  }
  std::string text;
  std::array<char, 4096> chunk{};
  std::size_t got = 0;
  while ((got = std::fread(chunk.data(), 1, chunk.size(), file)) > 0 && text.size() < (1u << 20)) {
    text.append(chunk.data(), got);
  }
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed || text.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return std::nullopt;
  }
  return text;
}

bool SetProxyOptions(CURL* curl, const ProxySettings& proxy, std::string* proxy_url) {
  bool ok = true;
  auto set = [&ok](CURLcode code) { ok &= code == CURLE_OK; };
  if (proxy.kind == ProxyKind::kNone) {
    set(curl_easy_setopt(curl, CURLOPT_PROXY, ""));  // ignore https_proxy & co. from the environment
    return ok;
  }
  *proxy_url = std::string(ProxyScheme(proxy.kind)) + proxy.address;
  set(curl_easy_setopt(curl, CURLOPT_PROXY, proxy_url->c_str()));
  set(curl_easy_setopt(curl, CURLOPT_NOPROXY, ""));
  if (proxy.kind == ProxyKind::kHttp) {
    // Always a CONNECT tunnel: TLS runs end to end between us and the home.
    set(curl_easy_setopt(curl, CURLOPT_HTTPPROXYTUNNEL, 1L));
    set(curl_easy_setopt(curl, CURLOPT_PROXYAUTH, static_cast<long>(CURLAUTH_BASIC)));
  }
  if (proxy.kind == ProxyKind::kSocks5) {
    set(curl_easy_setopt(curl, CURLOPT_SOCKS5_AUTH, static_cast<long>(CURLAUTH_BASIC)));
  }
  if (!proxy.username.empty()) {
    set(curl_easy_setopt(curl, CURLOPT_PROXYUSERNAME, proxy.username.c_str()));
    set(curl_easy_setopt(curl, CURLOPT_PROXYPASSWORD, proxy.password.c_str()));
  }
  return ok;
}

// The issuer of the certificate the server (or whatever answers through the proxy) presents, read
// with verification off on a connection that sends nothing: only used to name a TLS-inspecting proxy
// after the verified attempt failed.
std::string PresentedIssuer(const std::string& url, const ProxySettings& proxy,
                            std::chrono::milliseconds timeout) {
  CURL* probe = curl_easy_init();
  if (probe == nullptr) {
    return "";
  }
  std::string proxy_url;
  bool ok = SetProxyOptions(probe, proxy, &proxy_url);
  ok &= curl_easy_setopt(probe, CURLOPT_URL, url.c_str()) == CURLE_OK;
  ok &= curl_easy_setopt(probe, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(probe, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK;
  ok &= curl_easy_setopt(probe, CURLOPT_CONNECT_ONLY, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(probe, CURLOPT_SSL_VERIFYPEER, 0L) == CURLE_OK;
  ok &= curl_easy_setopt(probe, CURLOPT_SSL_VERIFYHOST, 0L) == CURLE_OK;
  ok &= curl_easy_setopt(probe, CURLOPT_CERTINFO, 1L) == CURLE_OK;
  ok &= curl_easy_setopt(probe, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count())) == CURLE_OK;
  std::string issuer;
  if (ok && curl_easy_perform(probe) == CURLE_OK) {
    curl_certinfo* info = nullptr;
    if (curl_easy_getinfo(probe, CURLINFO_CERTINFO, &info) == CURLE_OK && info != nullptr &&
        info->num_of_certs > 0) {
      for (curl_slist* field = info->certinfo[0]; field != nullptr; field = field->next) {
        const std::string_view line(field->data);
        if (line.starts_with("Issuer:")) {
          issuer = std::string(Trim(line.substr(7)));
        }
      }
    }
  }
  curl_easy_cleanup(probe);
  return issuer.substr(0, 300);
}

}  // namespace

struct HttpClient::Impl {
  explicit Impl(ClientTls tls_settings) : tls(std::move(tls_settings)), log(log::Get("transport")) {
    GlobalInit();
    curl = curl_easy_init();
  }
  ~Impl() {
    if (curl != nullptr) {
      curl_easy_cleanup(curl);
    }
  }

  // Records the failure for LastErrorDetail() and logs it once.
  std::error_code Failure(Errc errc, const ClientRequest& request, std::string detail,
                          FailurePoint point = FailurePoint::kRequest) {
    last_error = std::move(detail);
    last_point = point;
    const auto level = errc == Errc::kTlsFailed ? spdlog::level::warn : spdlog::level::debug;
    log->log(level, "{} {} failed: {} ({})", request.method, request.url,
             make_error_code(errc).message(), last_error);
    return errc;
  }

  // Sorts a failed perform into what the operator must fix, naming the proxy when there is one.
  std::error_code Classify(CURLcode code, const ClientRequest& request, const ProxySettings& proxy,
                           std::string detail);

  ClientTls tls;
  ProxySettings proxy;
  FailurePoint last_point = FailurePoint::kNone;
  std::shared_ptr<spdlog::logger> log;
  CURL* curl = nullptr;
  // curl keeps a pointer to this between calls, so it lives as long as the handle.
  std::array<char, CURL_ERROR_SIZE> error_buffer{};
  std::string last_error;
};

HttpClient::HttpClient(ClientTls tls) : impl_(std::make_unique<Impl>(std::move(tls))) {}
HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

const std::string& HttpClient::LastErrorDetail() const { return impl_->last_error; }
FailurePoint HttpClient::LastFailurePoint() const { return impl_->last_point; }
void HttpClient::SetProxy(ProxySettings proxy) { impl_->proxy = std::move(proxy); }

std::error_code HttpClient::Impl::Classify(CURLcode code, const ClientRequest& request,
                                           const ProxySettings& via, std::string detail) {
  const Errc errc = MapCurlError(code, detail);
  if (via.kind == ProxyKind::kNone) {
    const FailurePoint point = errc == Errc::kConnectFailed ? FailurePoint::kHomeUnreachable
                               : errc == Errc::kTlsFailed   ? FailurePoint::kTls
                               : errc == Errc::kInvalidArgument ? FailurePoint::kRequest
                                                                : FailurePoint::kExchange;
    return Failure(errc, request, std::move(detail), point);
  }
  const std::string proxy_name = via.Describe();
  const std::string_view home = UrlHost(request.url);
  long connect_code = 0;
  curl_easy_getinfo(curl, CURLINFO_HTTP_CONNECTCODE, &connect_code);
  long proxy_code = CURLPX_OK;
  curl_easy_getinfo(curl, CURLINFO_PROXY_ERROR, &proxy_code);
  // 407 is the standard answer; some proxies (tinyproxy's BasicAuth) answer CONNECT with 401.
  if (connect_code == 407 || connect_code == 401) {
    return Failure(Errc::kConnectFailed, request,
                   fmt::format("proxy authentication failed at {} (HTTP {} to CONNECT{}): check the "
                               "path's username and password ({})",
                               proxy_name, connect_code,
                               via.username.empty() ? ", and no username is configured" : "",
                               detail),
                   FailurePoint::kProxyAuth);
  }
  if (connect_code != 0 && (connect_code < 200 || connect_code > 299)) {
    return Failure(Errc::kConnectFailed, request,
                   fmt::format("{} could not open a tunnel to {} (HTTP {} to CONNECT): the home is "
                               "unreachable through the proxy, or the proxy does not allow it ({})",
                               proxy_name, home, connect_code, detail),
                   FailurePoint::kHomeUnreachable);
  }
  if (code == CURLE_PROXY) {
    switch (static_cast<CURLproxycode>(proxy_code)) {
      case CURLPX_USER_REJECTED:
      case CURLPX_NO_AUTH:
      case CURLPX_SEND_AUTH:
      case CURLPX_RECV_AUTH:
      case CURLPX_LONG_USER:
      case CURLPX_LONG_PASSWD:
        return Failure(Errc::kConnectFailed, request,
                       fmt::format("proxy authentication failed at {}: check the path's username and "
                                   "password ({})",
                                   proxy_name, detail),
                       FailurePoint::kProxyAuth);
      case CURLPX_REPLY_CONNECTION_REFUSED:
      case CURLPX_REPLY_HOST_UNREACHABLE:
      case CURLPX_REPLY_NETWORK_UNREACHABLE:
      case CURLPX_REPLY_GENERAL_SERVER_FAILURE:
      case CURLPX_REPLY_TTL_EXPIRED:
      case CURLPX_REPLY_NOT_ALLOWED:
      case CURLPX_REQUEST_FAILED:
      case CURLPX_RESOLVE_HOST:
        return Failure(Errc::kConnectFailed, request,
                       fmt::format("{} could not reach {}: the home is unreachable through the "
                                   "proxy, or the proxy does not allow it ({})",
                                   proxy_name, home, detail),
                       FailurePoint::kHomeUnreachable);
      default:
        return Failure(Errc::kConnectFailed, request,
                       fmt::format("{} failed: {}", proxy_name, detail),
                       FailurePoint::kProxyUnreachable);
    }
  }
  if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_PROXY) {
    return Failure(Errc::kConnectFailed, request,
                   fmt::format("cannot connect to {}: proxy unreachable ({})", proxy_name, detail),
                   FailurePoint::kProxyUnreachable);
  }
  if (code == CURLE_PEER_FAILED_VERIFICATION) {
    // Through a proxy, a certificate that does not chain to the pinned CA is almost always the
    // proxy's own, made up on the fly to read the traffic.
    const std::string issuer = PresentedIssuer(request.url, via, request.connect_timeout);
    return Failure(Errc::kTlsFailed, request,
                   fmt::format("the proxy at {} appears to inspect TLS: the certificate presented for "
                               "{} is not from the home's CA{}; exempt the home from inspection, or "
                               "set proxy_ca_file to trust the proxy's CA ({})",
                               via.address, home,
                               issuer.empty() ? "" : fmt::format(" (issuer: {})", issuer), detail),
                   FailurePoint::kTlsInspected);
  }
  const FailurePoint point = errc == Errc::kTlsFailed        ? FailurePoint::kTls
                             : errc == Errc::kInvalidArgument ? FailurePoint::kRequest
                             : errc == Errc::kConnectFailed   ? FailurePoint::kHomeUnreachable
                                                              : FailurePoint::kExchange;
  return Failure(errc, request, fmt::format("via {}: {}", proxy_name, detail), point);
}

Result<ClientResponse> HttpClient::Send(const ClientRequest& request) {
  Impl& impl = *impl_;
  impl.last_error.clear();
  impl.last_point = FailurePoint::kNone;
  const ProxySettings& proxy = request.proxy ? *request.proxy : impl.proxy;
  CURL* curl = impl.curl;
  if (curl == nullptr) {
    return impl.Failure(Errc::kOther, request, "curl_easy_init failed");
  }
  if (!ToLower(request.url).starts_with("https://")) {
    return impl.Failure(Errc::kInvalidArgument, request, "only https:// URLs are allowed");
  }
  if (!IsHttpToken(request.method)) {
    return impl.Failure(Errc::kInvalidArgument, request, "invalid HTTP method");
  }
  if (impl.tls.ca_file.empty()) {
    // Never fall back to the system store: the home's CA is pinned.
    return impl.Failure(Errc::kInvalidArgument, request, "no CA file configured");
  }
  if (proxy.kind != ProxyKind::kNone && !IsValidProxyAddress(proxy.address)) {
    return impl.Failure(Errc::kInvalidArgument, request,
                        "invalid proxy address '" + proxy.address + "' (want host:port or [v6]:port)");
  }
  // A TLS-inspecting proxy's CA is trusted beside the pinned home CA, for this request only.
  std::string ca_bundle;
  if (proxy.kind != ProxyKind::kNone && !proxy.ca_file.empty()) {
    auto home_ca = ReadPem(impl.tls.ca_file);
    auto proxy_ca = ReadPem(proxy.ca_file);
    if (!home_ca || !proxy_ca) {
      return impl.Failure(Errc::kInvalidArgument, request,
                          "cannot read a PEM certificate from " +
                              (!home_ca ? impl.tls.ca_file : proxy.ca_file));
    }
    ca_bundle = *home_ca + "\n" + *proxy_ca;
  }

  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(nullptr,
                                                                          &curl_slist_free_all);
  auto add_header = [&header_list](const std::string& line) {
    curl_slist* extended = curl_slist_append(header_list.get(), line.c_str());
    if (extended != nullptr) {
      header_list.release();
      header_list.reset(extended);
    }
    return extended != nullptr;
  };
  bool headers_ok = true;
  if (!request.content_type.empty()) {
    headers_ok &=
        !HasLineBreak(request.content_type) && add_header("Content-Type: " + request.content_type);
  }
  // Send the body at once: waiting for "100 Continue" costs a round trip (or curl's 1 s timeout).
  headers_ok &= add_header("Expect:");
  for (const auto& [name, value] : request.headers) {
    if (!IsHttpToken(name) || HasLineBreak(value)) {
      return impl.Failure(Errc::kInvalidArgument, request, "invalid header field '" + name + "'");
    }
    // curl drops "Name:" (empty value) lines; "Name;" sends the field with an empty value.
    headers_ok &= add_header(value.empty() ? name + ";" : name + ": " + value);
  }
  if (!headers_ok) {
    return impl.Failure(Errc::kOther, request, "could not build the header list");
  }

  // Clears the previous call's options but keeps the connection and TLS session caches.
  curl_easy_reset(curl);
  impl.error_buffer[0] = '\0';
  ClientResponse response;
  Receiver receiver{&response, request.max_response_bytes};

  bool options_ok = true;
  auto set = [&options_ok](CURLcode code) { options_ok &= code == CURLE_OK; };
  set(curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, impl.error_buffer.data()));
  set(curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str()));
  set(curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https"));
  set(curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L));
  std::string proxy_url;
  options_ok &= SetProxyOptions(curl, proxy, &proxy_url);
  set(curl_easy_setopt(curl, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2)));
  set(curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L));
  set(curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L));
  if (ca_bundle.empty()) {
    set(curl_easy_setopt(curl, CURLOPT_CAINFO, impl.tls.ca_file.c_str()));
  } else {
    curl_blob blob{ca_bundle.data(), ca_bundle.size(), CURL_BLOB_COPY};
    set(curl_easy_setopt(curl, CURLOPT_CAINFO, nullptr));
    set(curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &blob));
  }
  // No CA directory: only ca_file (and a configured proxy CA) is trusted.
  set(curl_easy_setopt(curl, CURLOPT_CAPATH, nullptr));
  if (!impl.tls.cert_file.empty()) {
    set(curl_easy_setopt(curl, CURLOPT_SSLCERT, impl.tls.cert_file.c_str()));
    set(curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM"));
    set(curl_easy_setopt(curl, CURLOPT_SSLKEY, impl.tls.key_file.c_str()));
    set(curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM"));
  }
  set(curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count())));
  set(curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                       static_cast<long>(request.connect_timeout.count())));
  set(curl_easy_setopt(curl, CURLOPT_HTTPHEADER, header_list.get()));
  set(curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnBody));
  set(curl_easy_setopt(curl, CURLOPT_WRITEDATA, &receiver));
  set(curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader));
  set(curl_easy_setopt(curl, CURLOPT_HEADERDATA, &receiver));
  if (request.abort) {
    set(curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &OnProgress));
    set(curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &request.abort));
    set(curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L));
  }
  if (request.method == "GET" && request.body.empty()) {
    set(curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L));
  } else if (request.method == "HEAD") {
    set(curl_easy_setopt(curl, CURLOPT_NOBODY, 1L));
  } else {
    // POSTFIELDS with an explicit size sends any bytes (NULs included) with a Content-Length.
    set(curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(request.body.size())));
    set(curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data()));
    if (request.method != "POST") {
      set(curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str()));
    }
  }
  if (!options_ok) {
    return impl.Failure(Errc::kOther, request, "libcurl rejected an option (built without HTTPS?)");
  }

  const CURLcode code = curl_easy_perform(curl);
  // The list dies with this call; curl must not keep a pointer to it.
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  if (code != CURLE_OK) {
    std::string detail = impl.error_buffer[0] != '\0' ? std::string(impl.error_buffer.data())
                                                      : std::string(curl_easy_strerror(code));
    if (code == CURLE_WRITE_ERROR && receiver.too_large) {
      return impl.Failure(
          Errc::kResponseTooLarge, request,
          "response body larger than " + std::to_string(request.max_response_bytes) + " bytes",
          FailurePoint::kExchange);
    }
    return impl.Classify(code, request, proxy, std::move(detail));
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  return response;
}

}  // namespace lifeline::transport
