#include "transport/http_client.h"

#include "transport/http_syntax.h"

#include "common/log.h"

#include <curl/curl.h>

#include <array>
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
  std::error_code Failure(Errc errc, const ClientRequest& request, std::string detail) {
    last_error = std::move(detail);
    const auto level = errc == Errc::kTlsFailed ? spdlog::level::warn : spdlog::level::debug;
    log->log(level, "{} {} failed: {} ({})", request.method, request.url,
             make_error_code(errc).message(), last_error);
    return errc;
  }

  ClientTls tls;
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

Result<ClientResponse> HttpClient::Send(const ClientRequest& request) {
  Impl& impl = *impl_;
  impl.last_error.clear();
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
  set(curl_easy_setopt(curl, CURLOPT_PROXY, ""));  // ignore https_proxy & co. from the environment
  set(curl_easy_setopt(curl, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2)));
  set(curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L));
  set(curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L));
  set(curl_easy_setopt(curl, CURLOPT_CAINFO, impl.tls.ca_file.c_str()));
  // No CA directory: only ca_file is trusted.
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
          "response body larger than " + std::to_string(request.max_response_bytes) + " bytes");
    }
    const Errc errc = MapCurlError(code, detail);
    return impl.Failure(errc, request, std::move(detail));
  }
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  return response;
}

}  // namespace lifeline::transport
