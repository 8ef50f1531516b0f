#include "transport/https_server.h"

#include "transport/http_syntax.h"

#include "common/log.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>

namespace lifeline::transport {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
// One session coroutine serves both: the TLS steps (handshake, peer certificate, close_notify) are
// compiled in only for TlsStream, so the HTTPS path is exactly what it was before plain HTTP existed
// and the plain path cannot reach OpenSSL by accident. The templates stay private to this file so
// Beast and OpenSSL stay out of https_server.h (they would add seconds to every includer's build).
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using PlainStream = beast::tcp_stream;
template <typename Stream>
constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

template <typename Stream>
Stream MakeStream(tcp::socket socket, ssl::context& ssl_ctx) {
  if constexpr (kIsTls<Stream>) {
    return Stream(std::move(socket), ssl_ctx);
  } else {
    return Stream(std::move(socket));
  }
}

// Expected network outcomes (EOF, reset, timeout, cancel) come back as values, not exceptions.
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

// Beast's default is 8 KiB; client certificates do not travel in headers, so 16 KiB leaves ample
// room.
constexpr std::uint32_t kHeaderLimit = 16 * 1024;
// After an error response we read and discard what the client is still sending, so the kernel does
// not answer unread data with a reset that can destroy the response before the client has read it.
constexpr std::chrono::seconds kLingerTime{2};
constexpr std::size_t kLingerBytes = 16 * 1024 * 1024;
// Waiting for the client's close_notify is a courtesy; a client that never sends it costs at most
// this.
constexpr std::chrono::seconds kTlsShutdownTimeout{1};

std::string FormatEndpoint(const tcp::endpoint& endpoint) {
  asio::ip::address address = endpoint.address();
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  if (address.is_v6()) {
    return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
  }
  return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

// "host:port" or "[v6]:port"; the host is an IP literal or "localhost" (no DNS when binding).
Result<tcp::endpoint> ParseListen(std::string_view listen) {
  std::string_view host;
  std::string_view port_text;
  if (!listen.empty() && listen.front() == '[') {
    const std::size_t close = listen.find("]:");
    if (close == std::string_view::npos) {
      return Fail(Errc::kInvalidArgument);
    }
    host = listen.substr(1, close - 1);
    port_text = listen.substr(close + 2);
  } else {
    const std::size_t colon = listen.rfind(':');
    if (colon == std::string_view::npos) {
      return Fail(Errc::kInvalidArgument);
    }
    host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Fail(Errc::kInvalidArgument);  // an IPv6 literal needs brackets
    }
  }
  std::uint16_t port = 0;
  const auto [end, parse_error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || parse_error != std::errc() ||
      end != port_text.data() + port_text.size()) {
    return Fail(Errc::kInvalidArgument);
  }
  if (host == "localhost") {
    host = "127.0.0.1";
  }
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    return Fail(Errc::kInvalidArgument);
  }
  return tcp::endpoint(address, port);
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

// The client's leaf certificate as PEM, when it presented one that verified. With verify_peer a
// certificate that fails verification already aborted the handshake; checking the result again
// keeps this function honest if the verify mode ever changes.
std::optional<PeerCertificate> VerifiedPeer(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) {
    return std::nullopt;
  }
  std::optional<PeerCertificate> peer;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio != nullptr && PEM_write_bio_X509(bio, cert) == 1) {
      char* data = nullptr;
      const long size = BIO_get_mem_data(bio, &data);
      peer = PeerCertificate{std::string(data, static_cast<std::size_t>(size))};
    }
    BIO_free(bio);
  }
  X509_free(cert);
  return peer;
}

bool IsParseError(const beast::error_code& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_method).category()) {
    return false;
  }
  // The client going away is not a malformed request.
  return ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more && ec != http::error::need_buffer;
}

std::string ErrorJson(std::string_view error, std::string_view message) {
  // Both strings are ours and contain no characters that need JSON escaping.
  return fmt::format(R"({{"error":"{}","message":"{}"}})", error, message);
}

bool IsValidHeaderValue(std::string_view text) {
  for (char c : text) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return false;
    }
  }
  return true;
}


// One accepted connection as Stop() sees it. Every field is touched only on the connection's
// strand.
struct Connection {
  explicit Connection(asio::any_io_executor strand_executor)
      : executor(std::move(strand_executor)) {}
  asio::any_io_executor executor;
  beast::tcp_stream* stream = nullptr;  // null once the session has ended
  bool busy = false;  // from a complete request header until its response is written
};

}  // namespace

class HttpsServer::Impl {
 public:
  Impl(ServerOptions options, Handler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        log_(log::Get("transport")),
        label_(!options_.name.empty() ? options_.name
               : options_.plain_http  ? std::string("http")
                                      : std::string("https")),
        ssl_ctx_(ssl::context::tls_server) {}

  ~Impl() { Stop(std::chrono::milliseconds(0)); }

  VoidResult Init();
  void Run();
  void Stop(std::chrono::milliseconds grace);

  std::string LocalAddress() const { return FormatEndpoint(local_); }
  std::uint16_t LocalPort() const { return local_.port(); }
  ServerStats Stats() const;

 private:
  VoidResult InitTls();
  VoidResult InitAcceptor(const tcp::endpoint& endpoint);
  void OnAccepted(tcp::socket socket);
  void Unregister(std::uint64_t id);
  void LogEscapedException(std::exception_ptr error, std::string_view where) const;

  static asio::awaitable<void> AcceptLoop(Impl* impl);
  template <typename Stream>
  static asio::awaitable<void> Session(Impl* impl, tcp::socket socket, std::uint64_t id,
                                       std::shared_ptr<Connection> connection);
  static asio::awaitable<HttpResponse> RunHandler(Impl* impl, HttpRequest request,
                                                  std::uint64_t id);
  template <typename Stream>
  static asio::awaitable<void> SendAndClose(Impl* impl, Stream& stream,
                                            http::response<http::string_body> res, bool linger);

  http::response<http::string_body> BuildResponse(HttpResponse response, unsigned version,
                                                  bool keep_alive, std::uint64_t id);
  static http::response<http::string_body> ErrorResponse(http::status status,
                                                         std::string_view error,
                                                         std::string_view message,
                                                         unsigned version);

  const ServerOptions options_;
  const Handler handler_;
  const std::shared_ptr<spdlog::logger> log_;
  const std::string label_;
  ssl::context ssl_ctx_;
  // Owned through pointers so Stop() can destroy them in order (acceptor, pool, io_context) while
  // the fields that suspended sessions still refer to are alive.
  std::unique_ptr<asio::io_context> ioc_ = std::make_unique<asio::io_context>();
  std::unique_ptr<asio::thread_pool> pool_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::optional<asio::strand<asio::io_context::executor_type>> accept_strand_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  tcp::endpoint local_;
  std::vector<std::thread> io_threads_;

  std::atomic<bool> stopping_{false};
  std::mutex stop_mutex_;
  bool stopped_ = false;

  std::mutex connections_mutex_;
  std::condition_variable connections_cv_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> connections_;
  std::atomic<std::uint64_t> next_connection_id_{1};

  std::atomic<std::uint64_t> connections_accepted_{0};
  std::atomic<std::uint64_t> connections_rejected_{0};
  std::atomic<std::uint64_t> tls_handshake_failures_{0};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> handler_exceptions_{0};
  std::atomic<std::uint64_t> malformed_requests_{0};
  std::atomic<std::uint64_t> oversized_requests_{0};
};

VoidResult HttpsServer::Impl::Init() {
  if (options_.io_threads < 1 || options_.worker_threads < 1 || options_.max_connections < 1) {
    log_->error("[{}] io_threads, worker_threads and max_connections must be at least 1", label_);
    return Fail(Errc::kInvalidArgument);
  }
  auto endpoint = ParseListen(options_.listen);
  if (!endpoint) {
    log_->error(
        "[{}] invalid listen address '{}': expected host:port or [v6]:port with an IP address",
        label_, options_.listen);
    return endpoint.error();
  }
  if (options_.plain_http) {
    // Callers validate this too (policy.toml's listen.http); checked again here because this is
    // the last point before credentials would cross a network in the clear.
    if (!endpoint->address().is_loopback()) {
      log_->error("[{}] refusing plain HTTP on {}: only loopback addresses (127.0.0.0/8, ::1, "
                  "localhost) may serve without TLS",
                  label_, options_.listen);
      return Fail(Errc::kInvalidArgument);
    }
    return InitAcceptor(*endpoint);
  }
  if (auto tls = InitTls(); !tls) {
    return tls;
  }
  return InitAcceptor(*endpoint);
}

VoidResult HttpsServer::Impl::InitTls() {
  SSL_CTX* native = ssl_ctx_.native_handle();
  ssl_ctx_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::no_compression | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // Client-initiated renegotiation only serves CPU-exhaustion attacks.
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2: forward-secret AEAD suites only. TLS 1.3 suites (OpenSSL's defaults) all qualify.
  if (SSL_CTX_set_cipher_list(native, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL") != 1) {
    log_->error("[{}] OpenSSL accepts none of the configured TLS 1.2 cipher suites", label_);
    return Fail(Errc::kTlsSetupFailed);
  }

  auto readable = [this](const std::string& what, const std::string& path) {
    if (path.empty()) {
      log_->error("[{}] no TLS {} file configured", label_, what);
      return false;
    }
    if (!std::ifstream(path).good()) {
      log_->error("[{}] cannot read TLS {} file {}: {}", label_, what, path, std::strerror(errno));
      return false;
    }
    return true;
  };
  const TlsServerFiles& files = options_.tls;
  if (!readable("certificate", files.cert_file) || !readable("key", files.key_file)) {
    return Fail(Errc::kTlsSetupFailed);
  }
  boost::system::error_code ec;
  ssl_ctx_.use_certificate_chain_file(files.cert_file, ec);
  if (ec) {
    log_->error("[{}] {} is not a usable PEM certificate chain: {}", label_, files.cert_file,
                ec.message());
    return Fail(Errc::kTlsSetupFailed);
  }
  ssl_ctx_.use_private_key_file(files.key_file, ssl::context::pem, ec);
  if (ec) {
    log_->error("[{}] {} is not a usable PEM private key: {}", label_, files.key_file,
                ec.message());
    return Fail(Errc::kTlsSetupFailed);
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    log_->error("[{}] the private key {} does not match the certificate {}", label_, files.key_file,
                files.cert_file);
    return Fail(Errc::kTlsSetupFailed);
  }

  if (options_.client_certs == ClientCertPolicy::kNone) {
    ssl_ctx_.set_verify_mode(ssl::verify_none);
    return {};
  }
  if (!readable("client CA", files.client_ca_file)) {
    return Fail(Errc::kTlsSetupFailed);
  }
  ssl_ctx_.load_verify_file(files.client_ca_file, ec);
  if (ec) {
    log_->error("[{}] {} is not a usable PEM CA certificate: {}", label_, files.client_ca_file,
                ec.message());
    return Fail(Errc::kTlsSetupFailed);
  }
  // Tells clients which CA we accept, so one holding several certificates picks the right one.
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca_file.c_str())) {
    SSL_CTX_set_client_CA_list(native, names);
  }
  ssl::verify_mode mode = ssl::verify_peer;
  if (options_.client_certs == ClientCertPolicy::kRequired) {
    mode |= ssl::verify_fail_if_no_peer_cert;
  }
  ssl_ctx_.set_verify_mode(mode);
  // Session resumption with client certificates needs a session id context, or OpenSSL refuses it.
  static constexpr unsigned char kSessionContext[] = "lifeline";
  SSL_CTX_set_session_id_context(native, kSessionContext, sizeof(kSessionContext) - 1);
  return {};
}

VoidResult HttpsServer::Impl::InitAcceptor(const tcp::endpoint& endpoint) {
  acceptor_ = std::make_unique<tcp::acceptor>(*ioc_);
  boost::system::error_code ec;
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor_->bind(endpoint, ec);
  }
  if (!ec) {
    acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (!ec) {
    local_ = acceptor_->local_endpoint(ec);
  }
  if (ec) {
    log_->error("[{}] cannot listen on {}: {}", label_, options_.listen, ec.message());
    return Fail(Errc::kListenFailed);
  }
  return {};
}

void HttpsServer::Impl::Run() {
  pool_ = std::make_unique<asio::thread_pool>(static_cast<std::size_t>(options_.worker_threads));
  work_.emplace(ioc_->get_executor());
  accept_strand_.emplace(asio::make_strand(*ioc_));
  asio::co_spawn(*accept_strand_, AcceptLoop(this), [this](std::exception_ptr error) {
    if (error) {
      LogEscapedException(error, "accept loop");
    }
  });
  for (int i = 0; i < options_.io_threads; ++i) {
    io_threads_.emplace_back([this] {
      for (;;) {
        try {
          ioc_->run();
          return;
        } catch (...) {
          // Sessions catch their own exceptions; this is a last line that keeps the thread serving.
          LogEscapedException(std::current_exception(), "io thread");
        }
      }
    });
  }
  if (options_.plain_http) {
    log_->info("[{}] listening on {} (plain HTTP, no TLS)", label_, LocalAddress());
    return;
  }
  log_->info("[{}] listening on {} (client certificates {})", label_, LocalAddress(),
             options_.client_certs == ClientCertPolicy::kRequired   ? "required"
             : options_.client_certs == ClientCertPolicy::kOptional ? "optional"
                                                                    : "not requested");
}

asio::awaitable<void> HttpsServer::Impl::AcceptLoop(Impl* impl) {
  for (;;) {
    auto [ec, socket] =
        co_await impl->acceptor_->async_accept(asio::make_strand(*impl->ioc_), kAsTuple);
    if (impl->stopping_ || ec == asio::error::operation_aborted || !impl->acceptor_->is_open()) {
      co_return;
    }
    if (ec) {
      // Typically out of file descriptors: pause rather than spin.
      impl->log_->warn("[{}] accept failed: {}", impl->label_, ec.message());
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
      co_await pause.async_wait(kAsTuple);
      continue;
    }
    impl->OnAccepted(std::move(socket));
  }
}

void HttpsServer::Impl::OnAccepted(tcp::socket socket) {
  std::size_t open_connections = 0;
  {
    std::lock_guard lock(connections_mutex_);
    open_connections = connections_.size();
  }
  if (stopping_ || open_connections >= options_.max_connections) {
    ++connections_rejected_;
    boost::system::error_code ec;
    const tcp::endpoint remote = socket.remote_endpoint(ec);
    log_->debug("[{}] refusing connection from {}: {}", label_, ec ? "?" : FormatEndpoint(remote),
                stopping_ ? "server stopping" : "too many connections");
    socket.close(ec);
    return;
  }
  ++connections_accepted_;
  // Beast writes header and body as separate TLS records; Nagle would hold the second one back
  // until the client's delayed ACK (40 ms per response).
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  const std::uint64_t id = next_connection_id_++;
  auto executor = socket.get_executor();
  // Registered here rather than in the session, so max_connections counts sessions not yet started.
  auto connection = std::make_shared<Connection>(executor);
  {
    std::lock_guard lock(connections_mutex_);
    connections_.emplace(id, connection);
  }
  auto on_end = [this, id](std::exception_ptr error) {
    if (error) {
      LogEscapedException(error, fmt::format("conn {}: session", id));
    }
  };
  if (options_.plain_http) {
    asio::co_spawn(executor,
                   Session<PlainStream>(this, std::move(socket), id, std::move(connection)),
                   std::move(on_end));
  } else {
    asio::co_spawn(executor, Session<TlsStream>(this, std::move(socket), id, std::move(connection)),
                   std::move(on_end));
  }
}

void HttpsServer::Impl::LogEscapedException(std::exception_ptr error,
                                            std::string_view where) const {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    log_->error("[{}] {} ended by an exception: {}", label_, where, e.what());
  } catch (...) {
    log_->error("[{}] {} ended by a non-standard exception", label_, where);
  }
}

void HttpsServer::Impl::Unregister(std::uint64_t id) {
  std::lock_guard lock(connections_mutex_);
  connections_.erase(id);
  connections_cv_.notify_all();
}

asio::awaitable<HttpResponse> HttpsServer::Impl::RunHandler(Impl* impl, HttpRequest request,
                                                            std::uint64_t id) {
  try {
    co_return impl->handler_(request);
  } catch (const std::exception& e) {
    ++impl->handler_exceptions_;
    impl->log_->error("[{}] conn {} {}: handler failed on {} {}: {}", impl->label_, id,
                      request.remote, request.method, request.target, e.what());
  } catch (...) {
    // Handlers are other modules' code; whatever they throw must not take the server down.
    ++impl->handler_exceptions_;
    impl->log_->error("[{}] conn {} {}: handler threw a non-standard exception on {} {}",
                      impl->label_, id, request.remote, request.method, request.target);
  }
  HttpResponse failure;
  failure.status = 500;
  failure.body = ErrorJson("internal_error", "the server failed to handle the request");
  co_return failure;
}

http::response<http::string_body> HttpsServer::Impl::ErrorResponse(http::status status,
                                                                   std::string_view error,
                                                                   std::string_view message,
                                                                   unsigned version) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::server, "lifeline");
  res.set(http::field::content_type, "application/json");
  res.body() = ErrorJson(error, message);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

http::response<http::string_body> HttpsServer::Impl::BuildResponse(HttpResponse response,
                                                                   unsigned version,
                                                                   bool keep_alive,
                                                                   std::uint64_t id) {
  if (response.status < 100 || response.status > 999) {
    log_->error("[{}] conn {}: handler returned invalid HTTP status {}; sending 500", label_, id,
                response.status);
    return ErrorResponse(http::status::internal_server_error, "internal_error",
                         "the server failed to handle the request", version);
  }
  http::response<http::string_body> res;
  res.version(version);
  res.result(static_cast<unsigned>(response.status));
  res.set(http::field::server, "lifeline");
  if (!response.content_type.empty() && IsValidHeaderValue(response.content_type)) {
    res.set(http::field::content_type, response.content_type);
  }
  for (const auto& [name, value] : response.headers) {
    const std::string lower = ToLower(name);
    // Framing and connection management belong to the server.
    if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection") {
      continue;
    }
    if (!IsHttpToken(name) || !IsValidHeaderValue(value)) {
      log_->error("[{}] conn {}: handler returned an invalid header field '{}'; dropped", label_,
                  id, name);
      continue;
    }
    res.insert(name, value);
  }
  res.body() = std::move(response.body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

// `stream` lives in the calling session's frame, which awaits this coroutine to completion, so the
// reference outlives every use here (the by-value rule for coroutine parameters guards against
// detached coroutines, which this is not).
template <typename Stream>
asio::awaitable<void> HttpsServer::Impl::SendAndClose(Impl* impl, Stream& stream,
                                                      http::response<http::string_body> res,
                                                      bool linger) {
  beast::tcp_stream& tcp_layer = beast::get_lowest_layer(stream);
  tcp_layer.expires_after(impl->options_.read_timeout);
  auto [write_ec, written] = co_await http::async_write(stream, res, kAsTuple);
  if (write_ec) {
    tcp_layer.close();
    co_return;
  }
  if (linger) {
    boost::system::error_code ignored;
    tcp_layer.socket().shutdown(tcp::socket::shutdown_send, ignored);
    tcp_layer.expires_after(kLingerTime);
    std::array<char, 16 * 1024> scratch;
    std::size_t drained = 0;
    while (drained < kLingerBytes) {
      auto [read_ec, n] = co_await tcp_layer.async_read_some(asio::buffer(scratch), kAsTuple);
      if (read_ec) {
        break;
      }
      drained += n;
    }
  } else if constexpr (kIsTls<Stream>) {
    tcp_layer.expires_after(kTlsShutdownTimeout);
    co_await stream.async_shutdown(kAsTuple);
  } else {
    // The request was read in full, so closing cannot reset unread data; the FIN tells the client
    // the response is complete.
    boost::system::error_code ignored;
    tcp_layer.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }
  tcp_layer.close();
}

template <typename Stream>
asio::awaitable<void> HttpsServer::Impl::Session(Impl* impl, tcp::socket socket, std::uint64_t id,
                                                 std::shared_ptr<Connection> connection) {
  const ServerOptions& options = impl->options_;
  const auto& log = impl->log_;
  const std::string& label = impl->label_;
  boost::system::error_code endpoint_ec;
  const tcp::endpoint remote_endpoint = socket.remote_endpoint(endpoint_ec);
  const std::string remote = endpoint_ec ? std::string("?") : FormatEndpoint(remote_endpoint);

  Stream stream = MakeStream<Stream>(std::move(socket), impl->ssl_ctx_);
  beast::tcp_stream& tcp_layer = beast::get_lowest_layer(stream);
  connection->stream = &tcp_layer;
  // Runs however the session ends, including destruction of the suspended frame at shutdown.
  struct RegistrationGuard {
    Impl* impl;
    std::uint64_t id;
    Connection* connection;
    ~RegistrationGuard() {
      connection->stream = nullptr;
      impl->Unregister(id);
    }
  } registration{impl, id, connection.get()};
  // Stop() cancels registered connections; one that registered after that pass sees the flag here.
  if (impl->stopping_) {
    co_return;
  }

  std::optional<PeerCertificate> peer;  // plain HTTP: never set
  if constexpr (kIsTls<Stream>) {
    tcp_layer.expires_after(options.handshake_timeout);
    auto [handshake_ec] = co_await stream.async_handshake(ssl::stream_base::server, kAsTuple);
    if (handshake_ec) {
      ++impl->tls_handshake_failures_;
      log->debug("[{}] conn {} {}: TLS handshake failed: {}", label, id, remote,
                 handshake_ec.message());
      co_return;
    }
    peer = VerifiedPeer(stream.native_handle());
  }

  beast::flat_buffer buffer;
  bool first_request = true;
  while (!impl->stopping_) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(options.max_body_bytes);
    tcp_layer.expires_after(first_request ? options.read_timeout : options.idle_timeout);
    first_request = false;

    auto [header_ec, header_bytes] =
        co_await http::async_read_header(stream, buffer, parser, kAsTuple);
    beast::error_code read_ec = header_ec;
    if (!read_ec) {
      connection->busy = true;
      const auto& header = parser.get();
      // A client that waits for "100 Continue" before sending its body would otherwise stall for
      // its own timeout. Oversized bodies are refused from the header alone, before this point.
      if (beast::iequals(header[http::field::expect], "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, header.version()};
        tcp_layer.expires_after(options.read_timeout);
        auto [continue_ec, n] = co_await http::async_write(stream, go_on, kAsTuple);
        read_ec = continue_ec;
      }
    }
    if (!read_ec && !parser.is_done()) {
      tcp_layer.expires_after(options.read_timeout);
      auto [body_ec, body_bytes] = co_await http::async_read(stream, buffer, parser, kAsTuple);
      read_ec = body_ec;
    }
    if (read_ec) {
      const unsigned version = parser.is_header_done() ? parser.get().version() : 11;
      if (read_ec == http::error::body_limit) {
        ++impl->oversized_requests_;
        log->warn("[{}] conn {} {}: request body larger than {} bytes refused with 413", label, id,
                  remote, options.max_body_bytes);
        co_await SendAndClose(
            impl, stream,
            ErrorResponse(http::status::payload_too_large, "body_too_large",
                          fmt::format("the request body exceeds {} bytes", options.max_body_bytes),
                          version),
            true);
      } else if (read_ec == http::error::header_limit) {
        ++impl->malformed_requests_;
        log->debug("[{}] conn {} {}: request header larger than {} bytes refused with 431", label,
                   id, remote, kHeaderLimit);
        co_await SendAndClose(
            impl, stream,
            ErrorResponse(http::status::request_header_fields_too_large, "headers_too_large",
                          "the request header is too large", version),
            true);
      } else if (IsParseError(read_ec)) {
        ++impl->malformed_requests_;
        log->debug("[{}] conn {} {}: malformed HTTP request: {}", label, id, remote,
                   read_ec.message());
        co_await SendAndClose(impl, stream,
                              ErrorResponse(http::status::bad_request, "malformed_http",
                                            "the request is not valid HTTP/1.1", version),
                              true);
      } else if (read_ec != http::error::end_of_stream && !impl->stopping_) {
        log->debug("[{}] conn {} {}: connection closed while reading: {}", label, id, remote,
                   read_ec.message());
      }
      co_return;
    }

    http::request<http::string_body> message = parser.release();
    const bool client_keep_alive = message.keep_alive();
    const unsigned version = message.version();
    HttpRequest request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    for (const auto& field : message) {
      std::string name = ToLower(field.name_string());
      auto [it, inserted] = request.headers.try_emplace(std::move(name), field.value());
      if (!inserted) {
        it->second.append(", ").append(field.value());
      }
    }
    request.body = std::move(message.body());
    request.peer = peer;
    request.remote = remote;

    ++impl->requests_;
    // The handler may block, so it runs on the worker pool; co_spawn delivers its result back on
    // this connection's strand.
    HttpResponse response = co_await asio::co_spawn(
        *impl->pool_, RunHandler(impl, std::move(request), id), asio::use_awaitable);

    const bool keep_alive = client_keep_alive && !impl->stopping_;
    http::response<http::string_body> res =
        impl->BuildResponse(std::move(response), version, keep_alive, id);
    if (!keep_alive) {
      co_await SendAndClose(impl, stream, std::move(res), false);
      co_return;
    }
    tcp_layer.expires_after(options.read_timeout);
    auto [write_ec, written] = co_await http::async_write(stream, res, kAsTuple);
    connection->busy = false;
    if (write_ec) {
      log->debug("[{}] conn {} {}: writing the response failed: {}", label, id, remote,
                 write_ec.message());
      co_return;
    }
  }
  // Stop() arrived while this connection was between requests.
  tcp_layer.close();
}

void HttpsServer::Impl::Stop(std::chrono::milliseconds grace) {
  std::lock_guard stop_lock(stop_mutex_);
  if (stopped_) {
    return;
  }
  stopped_ = true;
  stopping_ = true;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  if (accept_strand_) {
    asio::post(*accept_strand_, [this] {
      boost::system::error_code ignored;
      acceptor_->close(ignored);
    });
  }
  {
    std::unique_lock lock(connections_mutex_);
    for (const auto& [id, connection] : connections_) {
      // Idle connections (handshaking, or waiting for the next request) close now; busy ones finish
      // their request and then close because stopping_ is set.
      asio::post(connection->executor, [connection = connection] {
        if (connection->stream != nullptr && !connection->busy) {
          connection->stream->close();
        }
      });
    }
    connections_cv_.wait_until(lock, deadline, [this] { return connections_.empty(); });
  }
  work_.reset();
  ioc_->stop();
  for (std::thread& thread : io_threads_) {
    thread.join();
  }
  io_threads_.clear();
  if (pool_) {
    pool_->stop();
    pool_->join();  // waits for a handler that is still running: it cannot be interrupted
  }
  // Destroy suspended sessions and queued handlers now, while the fields they use still exist.
  acceptor_.reset();
  pool_.reset();
  const bool was_running = accept_strand_.has_value();
  accept_strand_.reset();
  ioc_.reset();
  if (was_running) {
    log_->info("[{}] stopped", label_);
  }
}

ServerStats HttpsServer::Impl::Stats() const {
  ServerStats stats;
  stats.connections_accepted = connections_accepted_;
  stats.connections_rejected = connections_rejected_;
  stats.tls_handshake_failures = tls_handshake_failures_;
  stats.requests = requests_;
  stats.handler_exceptions = handler_exceptions_;
  stats.malformed_requests = malformed_requests_;
  stats.oversized_requests = oversized_requests_;
  return stats;
}

Result<std::unique_ptr<HttpsServer>> HttpsServer::Start(ServerOptions options, Handler handler) {
  if (!handler) {
    log::Get("transport")->error("[{}] no request handler given", options.name);
    return Fail(Errc::kInvalidArgument);
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  if (auto init = impl->Init(); !init) {
    return init.error();
  }
  impl->Run();
  return std::unique_ptr<HttpsServer>(new HttpsServer(std::move(impl)));
}

HttpsServer::HttpsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpsServer::~HttpsServer() = default;

std::string HttpsServer::LocalAddress() const { return impl_->LocalAddress(); }
std::uint16_t HttpsServer::LocalPort() const { return impl_->LocalPort(); }
ServerStats HttpsServer::Stats() const { return impl_->Stats(); }
void HttpsServer::Stop(std::chrono::milliseconds grace) { impl_->Stop(grace); }

Result<std::string> PeerCertificateSubject(const PeerCertificate& peer) {
  BIO* bio = BIO_new_mem_buf(peer.pem.data(), static_cast<int>(peer.pem.size()));
  if (bio == nullptr) {
    return Fail(Errc::kOther);
  }
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) {
    return Fail(Errc::kInvalidArgument);
  }
  BIO* out = BIO_new(BIO_s_mem());
  std::string subject;
  if (out != nullptr && X509_NAME_print_ex(out, X509_get_subject_name(cert), 0,
                                           XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(out, &data);
    subject.assign(data, static_cast<std::size_t>(size));
  }
  BIO_free(out);
  X509_free(cert);
  return subject;
}

}  // namespace lifeline::transport
