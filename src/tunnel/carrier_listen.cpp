// The listening end of a carrier: TLS, then the first bytes decide between a WebSocket upgrade
// ("GET ") and raw TLS (anything else; those bytes are handed back by the stream's first reads).
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "common/log.h"
#include "tunnel/carrier_internal.h"

namespace lifeline::tunnel {

using namespace carrier_detail;  // NOLINT: this file's own helpers
namespace http = beast::http;

namespace {

constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t kHeaderLimit = 16 * 1024;
constexpr std::string_view kUpgradeMethod = "GET ";

// "host:port" or "[v6]:port" with an IP literal (or localhost); no DNS when binding.
Result<tcp::endpoint> ParseListen(std::string_view listen) {
  std::string_view host;
  std::string_view port_text;
  if (listen.starts_with('[')) {
    const std::size_t close = listen.find("]:");
    if (close == std::string_view::npos) {
      return Fail(CarrierErrc::kInvalidOptions);
    }
    host = listen.substr(1, close - 1);
    port_text = listen.substr(close + 2);
  } else {
    const std::size_t colon = listen.rfind(':');
    if (colon == std::string_view::npos ||
        listen.substr(0, colon).find(':') != std::string_view::npos) {
      return Fail(CarrierErrc::kInvalidOptions);
    }
    host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
  }
  std::uint16_t port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size()) {
    return Fail(CarrierErrc::kInvalidOptions);
  }
  if (host == "localhost") {
    host = "127.0.0.1";
  }
  ErrorCode ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    return Fail(CarrierErrc::kInvalidOptions);
  }
  return tcp::endpoint(address, port);
}

// The client's leaf certificate as PEM, when it presented one that verified.
std::optional<transport::PeerCertificate> VerifiedPeer(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) {
    return std::nullopt;
  }
  std::optional<transport::PeerCertificate> peer;
  if (SSL_get_verify_result(ssl) == X509_V_OK) {
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio != nullptr && PEM_write_bio_X509(bio, cert) == 1) {
      char* data = nullptr;
      const long size = BIO_get_mem_data(bio, &data);
      peer = transport::PeerCertificate{std::string(data, static_cast<std::size_t>(size))};
    }
    BIO_free(bio);
  }
  X509_free(cert);
  return peer;
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

// One accepted connection until it is handed over (or refused), on its own strand.
struct Pending {
  explicit Pending(asio::any_io_executor strand_executor)
      : strand(std::move(strand_executor)), timer(strand) {}
  asio::any_io_executor strand;
  asio::steady_timer timer;
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
};

}  // namespace

struct CarrierListener::Impl : std::enable_shared_from_this<CarrierListener::Impl> {
  Impl(asio::any_io_executor executor, ListenOptions listen_options, AcceptHandler handler)
      : ex(executor),
        acceptor_strand(asio::make_strand(executor)),
        acceptor(acceptor_strand),
        options(std::move(listen_options)),
        on_accept(std::move(handler)),
        log(log::Get("tunnel")),
        context(std::make_shared<ssl::context>(ssl::context::tls_server)),
        live(std::make_shared<std::atomic<std::size_t>>(0)) {}

  VoidResult InitTls();
  VoidResult Bind();
  void Accept();
  void Serve(tcp::socket socket);
  asio::awaitable<void> Handshake(std::shared_ptr<Pending> pending, std::shared_ptr<void> token,
                                  std::string remote);
  asio::awaitable<void> Refuse(std::shared_ptr<Pending> pending, unsigned version, int status);

  asio::any_io_executor ex;
  asio::any_io_executor acceptor_strand;
  tcp::acceptor acceptor;
  ListenOptions options;
  AcceptHandler on_accept;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<ssl::context> context;
  std::shared_ptr<std::atomic<std::size_t>> live;  // handshakes plus streams not yet destroyed
  std::uint16_t port = 0;

  std::mutex mutex;  // guards the two below
  bool stopped = false;
  std::unordered_map<Pending*, std::weak_ptr<Pending>> pending;
};

VoidResult CarrierListener::Impl::InitTls() {
  if (!HardenContext(*context)) {
    log->error("[{}] OpenSSL accepts none of the configured TLS 1.2 cipher suites", options.name);
    return Fail(CarrierErrc::kTlsSetupFailed);
  }
  const transport::TlsServerFiles& files = options.tls;
  ErrorCode ec;
  context->use_certificate_chain_file(files.cert_file, ec);
  if (!ec) {
    context->use_private_key_file(files.key_file, ssl::context::pem, ec);
  }
  if (ec || SSL_CTX_check_private_key(context->native_handle()) != 1) {
    log->error("[{}] TLS certificate {} or key {} unusable: {}", options.name, files.cert_file,
               files.key_file, ec ? ec.message() : "the key does not match the certificate");
    return Fail(CarrierErrc::kTlsSetupFailed);
  }
  if (options.client_certs == transport::ClientCertPolicy::kNone) {
    context->set_verify_mode(ssl::verify_none);
    return {};
  }
  context->load_verify_file(files.client_ca_file, ec);
  if (ec) {
    log->error("[{}] client CA {} unusable: {}", options.name, files.client_ca_file, ec.message());
    return Fail(CarrierErrc::kTlsSetupFailed);
  }
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca_file.c_str())) {
    SSL_CTX_set_client_CA_list(context->native_handle(), names);
  }
  ssl::verify_mode mode = ssl::verify_peer;
  if (options.client_certs == transport::ClientCertPolicy::kRequired) {
    mode |= ssl::verify_fail_if_no_peer_cert;
  }
  context->set_verify_mode(mode);
  static constexpr unsigned char kSessionContext[] = "lifeline-carrier";
  SSL_CTX_set_session_id_context(context->native_handle(), kSessionContext,
                                 sizeof(kSessionContext) - 1);
  return {};
}

VoidResult CarrierListener::Impl::Bind() {
  auto endpoint = ParseListen(options.listen);
  if (!endpoint) {
    log->error(
        "[{}] invalid listen address '{}': expected host:port or [v6]:port with an IP address",
        options.name, options.listen);
    return endpoint.error();
  }
  ErrorCode ec;
  acceptor.open(endpoint->protocol(), ec);
  if (!ec) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(*endpoint, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    log->error("[{}] cannot listen on {}: {}", options.name, options.listen, ec.message());
    return Fail(CarrierErrc::kListenFailed);
  }
  port = acceptor.local_endpoint(ec).port();
  return {};
}

void CarrierListener::Impl::Accept() {
  {
    std::lock_guard lock(mutex);
    if (stopped) {
      return;
    }
  }
  acceptor.async_accept(
      asio::make_strand(ex), [self = shared_from_this()](ErrorCode ec, tcp::socket socket) {
        {
          std::lock_guard lock(self->mutex);
          if (self->stopped) {
            return;
          }
        }
        if (ec == asio::error::operation_aborted) {
          return;
        }
        if (!ec) {
          self->Serve(std::move(socket));
          self->Accept();
          return;
        }
        // Out of descriptors and the like: pause instead of spinning on the error.
        self->log->warn("[{}] accept failed: {}; pausing 100 ms", self->options.name, ec.message());
        auto timer = std::make_shared<asio::steady_timer>(self->acceptor_strand,
                                                          std::chrono::milliseconds(100));
        timer->async_wait([self, timer](ErrorCode) { self->Accept(); });
      });
}

void CarrierListener::Impl::Serve(tcp::socket socket) {
  ErrorCode ec;
  const auto remote_endpoint = socket.remote_endpoint(ec);
  const std::string remote = ec ? std::string("?") : FormatEndpoint(remote_endpoint);
  if (live->load() >= options.max_connections) {
    log->warn("[{}] refused {}: {} connections already", options.name, remote,
              options.max_connections);
    socket.close(ec);
    return;
  }
  live->fetch_add(1);
  std::shared_ptr<void> token(live.get(), [live = live](void*) { live->fetch_sub(1); });
  auto pending = std::make_shared<Pending>(socket.get_executor());
  TuneSocket(socket);
  pending->tls = std::make_unique<TlsStream>(std::move(socket), *context);
  {
    std::lock_guard lock(mutex);
    this->pending.emplace(pending.get(), pending);
  }
  asio::co_spawn(pending->strand, Handshake(pending, std::move(token), remote),
                 [self = shared_from_this(), pending, remote](std::exception_ptr error) {
                   if (error) {
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       self->log->error("[{}] connection from {}: {}", self->options.name, remote,
                                        e.what());
                     }
                     pending->CloseSocket();
                   }
                   std::lock_guard lock(self->mutex);
                   self->pending.erase(pending.get());
                 });
}

asio::awaitable<void> CarrierListener::Impl::Refuse(std::shared_ptr<Pending> pending,
                                                    unsigned version, int status) {
  http::response<http::string_body> response{static_cast<http::status>(status), version};
  response.set(http::field::connection, "close");
  response.set(http::field::content_type, "text/plain");
  response.body() = std::string(http::obsolete_reason(static_cast<http::status>(status))) + "\n";
  response.prepare_payload();
  co_await http::async_write(*pending->tls, response, kAsTuple);
  // A courtesy close_notify; the handshake timer bounds it.
  co_await pending->tls->async_shutdown(kAsTuple);
  pending->CloseSocket();
}

asio::awaitable<void> CarrierListener::Impl::Handshake(std::shared_ptr<Pending> pending,
                                                       std::shared_ptr<void> token,
                                                       std::string remote) {
  pending->timer.expires_after(options.handshake_timeout);
  pending->timer.async_wait([weak = std::weak_ptr<Pending>(pending)](ErrorCode ec) {
    if (auto p = weak.lock(); p && !ec) {
      p->timed_out = true;
      p->CloseSocket();
    }
  });
  struct CancelTimer {
    Pending& p;
    ~CancelTimer() { p.timer.cancel(); }
  } cancel_timer{*pending};

  auto [ec] = co_await pending->tls->async_handshake(ssl::stream_base::server, kAsTuple);
  if (ec) {
    log->info("[{}] TLS handshake with {} failed: {}", options.name, remote,
              pending->timed_out ? std::string("timed out")
                                 : TlsErrorText(ec, pending->tls->native_handle()));
    pending->CloseSocket();
    co_return;
  }
  AcceptInfo info;
  info.peer = VerifiedPeer(pending->tls->native_handle());
  info.remote = remote;

  // Peek: enough bytes to tell "GET " from anything else.
  std::string first;
  std::array<char, 4096> chunk{};
  while (first.size() < kUpgradeMethod.size() && kUpgradeMethod.starts_with(first)) {
    std::size_t n = 0;
    std::tie(ec, n) = co_await pending->tls->async_read_some(asio::buffer(chunk), kAsTuple);
    if (ec) {
      log->info("[{}] {} closed before sending anything: {}", options.name, remote,
                pending->timed_out ? std::string("timed out") : ec.message());
      pending->CloseSocket();
      co_return;
    }
    first.append(chunk.data(), n);
  }

  if (!first.starts_with(kUpgradeMethod)) {
    const int status = options.authorize ? options.authorize(info) : 101;
    if (status != 101) {
      log->info("[{}] raw TLS connection from {} refused ({})", options.name, remote, status);
      pending->CloseSocket();
      co_return;
    }
    auto stream = MakeTlsByteStream(context, std::move(pending->tls), std::move(first),
                                    "tls " + remote, std::move(token));
    on_accept(std::move(stream), std::move(info));
    co_return;
  }

  beast::flat_buffer buffer;
  buffer.commit(asio::buffer_copy(buffer.prepare(first.size()), asio::buffer(first)));
  http::request_parser<http::empty_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(0);
  std::tie(ec, std::ignore) = co_await http::async_read(*pending->tls, buffer, parser, kAsTuple);
  if (ec) {
    log->info("[{}] bad upgrade request from {}: {}", options.name, remote,
              pending->timed_out ? std::string("timed out") : ec.message());
    if (!pending->timed_out &&
        ec.category() == http::make_error_code(http::error::bad_method).category()) {
      co_await Refuse(pending, 11, 400);
    }
    pending->CloseSocket();
    co_return;
  }
  http::request<http::empty_body> request = parser.release();
  info.target = std::string(request.target());
  for (const auto& field : request) {
    std::string name = ToLower(field.name_string());
    auto [it, inserted] = info.headers.try_emplace(std::move(name), field.value());
    if (!inserted) {
      it->second.append(", ").append(field.value());
    }
  }
  // The client sends frames only after our 101: bytes after the request mean it is no WebSocket
  // client we know.
  if (!websocket::is_upgrade(request) || buffer.size() != 0) {
    log->info("[{}] {} sent GET {} without a WebSocket upgrade", options.name, remote, info.target);
    co_await Refuse(pending, request.version(), 400);
    co_return;
  }
  const int status = options.authorize ? options.authorize(info) : 101;
  if (status != 101) {
    log->info("[{}] WebSocket upgrade from {} to {} refused with {}", options.name, remote,
              info.target, status);
    co_await Refuse(pending, request.version(), status < 200 || status > 599 ? 403 : status);
    co_return;
  }
  pending->ws = std::make_unique<WsStream>(std::move(*pending->tls));
  pending->tls.reset();
  ConfigureWebSocket(*pending->ws, false);
  pending->ws->set_option(websocket::stream_base::timeout{std::chrono::seconds(10),
                                                          websocket::stream_base::none(), false});
  pending->ws->set_option(websocket::stream_base::decorator(
      [](websocket::response_type& response) { response.set(http::field::server, "lifeline"); }));
  std::tie(ec) = co_await pending->ws->async_accept(request, kAsTuple);
  if (ec) {
    log->info("[{}] WebSocket accept for {} failed: {}", options.name, remote, ec.message());
    pending->CloseSocket();
    co_return;
  }
  auto stream = MakeWebSocketByteStream(context, std::move(pending->ws),
                                        "wss " + remote + info.target, std::move(token));
  on_accept(std::move(stream), std::move(info));
}

CarrierListener::CarrierListener(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

CarrierListener::~CarrierListener() { Stop(); }

Result<std::unique_ptr<CarrierListener>> CarrierListener::Start(asio::any_io_executor ex,
                                                                ListenOptions options,
                                                                AcceptHandler on_accept) {
  if (!on_accept || options.max_connections < 1) {
    return Fail(CarrierErrc::kInvalidOptions);
  }
  auto impl = std::make_shared<Impl>(ex, std::move(options), std::move(on_accept));
  if (auto tls = impl->InitTls(); !tls) {
    return tls.error();
  }
  if (auto bound = impl->Bind(); !bound) {
    return bound.error();
  }
  impl->log->info("[{}] carrier listening on {} (client certificates {})", impl->options.name,
                  FormatEndpoint(impl->acceptor.local_endpoint()),
                  impl->options.client_certs == transport::ClientCertPolicy::kRequired ? "required"
                  : impl->options.client_certs == transport::ClientCertPolicy::kOptional
                      ? "optional"
                      : "not asked");
  asio::post(impl->acceptor_strand, [impl] { impl->Accept(); });
  return std::unique_ptr<CarrierListener>(new CarrierListener(std::move(impl)));
}

std::uint16_t CarrierListener::LocalPort() const { return impl_->port; }

void CarrierListener::Stop() {
  std::vector<std::shared_ptr<Pending>> handshaking;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopped) {
      return;
    }
    impl_->stopped = true;
    for (auto& [key, weak] : impl_->pending) {
      if (auto p = weak.lock()) {
        handshaking.push_back(std::move(p));
      }
    }
  }
  asio::post(impl_->acceptor_strand, [impl = impl_] {
    ErrorCode ignored;
    impl->acceptor.close(ignored);
  });
  for (auto& p : handshaking) {
    asio::post(p->strand, [p] { p->CloseSocket(); });
  }
}

}  // namespace lifeline::tunnel
