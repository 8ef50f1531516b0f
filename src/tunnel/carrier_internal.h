#pragma once
// Shared between the carrier's .cpp files only (dial, listen, the two stream kinds): the Asio,
// Beast and OpenSSL types stay out of carrier.h.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <string>
#include <vector>

#include "tunnel/carrier.h"

namespace lifeline::tunnel::carrier_detail {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
struct TlsDirect;  // tls_stream.cpp

// A move-only callable (Beast's handlers are move-only; std::function needs copies, and Boost
// 1.81's any_completion_handler recurses when one of its lvalues is converted).
template <class Signature>
class UniqueFunction;
template <class... Args>
class UniqueFunction<void(Args...)> {
 public:
  UniqueFunction() = default;
  UniqueFunction(std::nullptr_t) {}
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, UniqueFunction>>>
  UniqueFunction(F&& f) : impl_(std::make_unique<Impl<std::decay_t<F>>>(std::forward<F>(f))) {}
  UniqueFunction(UniqueFunction&&) noexcept = default;
  UniqueFunction& operator=(UniqueFunction&&) noexcept = default;
  explicit operator bool() const { return impl_ != nullptr; }
  /// Calls once; the callable is released first (it may start the next operation).
  void operator()(Args... args) {
    auto impl = std::move(impl_);
    impl->Call(std::forward<Args>(args)...);
  }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void Call(Args... args) = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F&& f) : f(std::move(f)) {}
    explicit Impl(const F& f) : f(f) {}
    void Call(Args... args) override { std::move(f)(std::forward<Args>(args)...); }
    F f;
  };
  std::unique_ptr<Base> impl_;
};

// TLS on TCP: Beast's ssl_stream (Asio's SSL engine) for the handshake and the WebSocket upgrade,
// then, after StartDirect(), reads and writes that bypass Asio's engine: OpenSSL reads records from
// one 256 KiB socket read and appends what it encrypts to one buffer that goes out in one socket
// write. Asio's engine passes every 16 KiB record through a 17 KiB BIO pair, one more copy and one
// more syscall per record each way (docs/tunnel.md, "Carriers").
class TlsStream {
 public:
  using Impl = beast::ssl_stream<tcp::socket>;
  using executor_type = Impl::executor_type;
  using IoCompletion = UniqueFunction<void(ErrorCode, std::size_t)>;
  using DoneCompletion = UniqueFunction<void(ErrorCode)>;

  TlsStream(tcp::socket socket, ssl::context& context) : impl_(std::move(socket), context) {}
  TlsStream(TlsStream&&) = default;
  TlsStream& operator=(TlsStream&&) = default;
  ~TlsStream();

  executor_type get_executor() noexcept { return impl_.get_executor(); }
  SSL* native_handle() { return impl_.native_handle(); }
  tcp::socket& next_layer() noexcept { return impl_.next_layer(); }
  const tcp::socket& next_layer() const noexcept { return impl_.next_layer(); }

  template <class Token>
  auto async_handshake(ssl::stream_base::handshake_type type, Token&& token) {
    return impl_.async_handshake(type, std::forward<Token>(token));
  }
  /// Before StartDirect only (the listener's refusals).
  template <class Token>
  auto async_shutdown(Token&& token) {
    return impl_.async_shutdown(std::forward<Token>(token));
  }

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(ErrorCode, std::size_t)>(
        [this](auto handler, const MutableBufferSequence& b) {
          if (direct_) {
            asio::mutable_buffer first;
            for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b); ++it) {
              if (asio::mutable_buffer(*it).size() > 0) {
                first = *it;
                break;
              }
            }
            DirectRead(first, IoCompletion(std::move(handler)));
          } else {
            impl_.async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  /// In direct mode writes all of `buffers` (small ones, such as a WebSocket frame header, are
  /// joined with what follows into one record up to 16 KiB) before completing.
  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(ErrorCode, std::size_t)>(
        [this](auto handler, const ConstBufferSequence& b) {
          if (direct_) {
            std::vector<asio::const_buffer> list;
            for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b); ++it) {
              list.emplace_back(*it);
            }
            DirectWrite(std::move(list), IoCompletion(std::move(handler)));
          } else {
            impl_.async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  /// After the handshake (and upgrade), with no operation in progress: takes over the bytes Asio's
  /// engine holds unread. False (and nothing changed) if OpenSSL could not make the BIO.
  bool StartDirect();
  bool Direct() const { return direct_ != nullptr; }
  /// Beast's stream underneath, for its own teardown before StartDirect.
  Impl& SslImpl() { return impl_; }
  /// Direct mode: sends close_notify and completes once written; reads go on until the peer's.
  void DirectShutdownWrite(DoneCompletion handler);
  /// Direct mode, like TCP_CORK: until Uncork, writes are encrypted and held (up to kCorkLimit
  /// bytes, beyond which they go out as usual) and complete at once. Beast hands a WebSocket
  /// message to its stream 64 KiB at a time (asio::async_write's most per call); corked for the
  /// message, its pieces leave in one send() instead of one each.
  void Cork();
  /// Sends what the cork held; `handler` runs once it is written (posted, at once if nothing was).
  void Uncork(DoneCompletion handler);

 private:
  void DirectRead(asio::mutable_buffer buffer, IoCompletion handler);
  void DirectWrite(std::vector<asio::const_buffer> buffers, IoCompletion handler);

  Impl impl_;
  std::shared_ptr<TlsDirect> direct_;
};

// WebSocket closing handshakes end a TlsStream this way (Beast finds these by argument lookup).
void teardown(beast::role_type role, TlsStream& stream, ErrorCode& ec);
void AsyncTeardownImpl(beast::role_type role, TlsStream& stream, TlsStream::DoneCompletion handler);
template <class TeardownHandler>
void async_teardown(beast::role_type role, TlsStream& stream, TeardownHandler&& handler) {
  AsyncTeardownImpl(role, stream, TlsStream::DoneCompletion(std::forward<TeardownHandler>(handler)));
}

using WsStream = websocket::stream<TlsStream>;

// Sizes for bulk data: the TLS layer reads and writes records of up to 16 KiB whatever we ask; the
// WebSocket client masks its payload through a buffer of this size, and the socket buffers are
// raised so one carrier can keep a fast link full.
constexpr std::size_t kWebSocketWriteBuffer = 64 * 1024;
constexpr int kSocketBuffer = 4 * 1024 * 1024;

/// "127.0.0.1:9458", "[::1]:9458" (v4-mapped addresses shown as v4).
std::string FormatEndpoint(const tcp::endpoint& endpoint);

/// TCP_NODELAY and socket buffer sizes for a carrier's socket.
void TuneSocket(tcp::socket& socket);

/// TLS 1.2 minimum, forward-secret AEAD suites, no renegotiation or compression.
bool HardenContext(ssl::context& context);

/// OpenSSL's words for a failed handshake: "certificate verify failed (unable to get local issuer
/// certificate)".
std::string TlsErrorText(const ErrorCode& error, SSL* ssl);

/// Raw TLS as a ByteStream. `prefix` holds bytes already read from the stream (the listener's
/// peek); reads return them first. `token` is released when the stream is destroyed (the listener's
/// count of live connections).
std::unique_ptr<ByteStream> MakeTlsByteStream(std::shared_ptr<ssl::context> context,
                                              std::unique_ptr<TlsStream> stream, std::string prefix,
                                              std::string description, std::shared_ptr<void> token);

/// Binary options for bulk data on an open WebSocket (either role).
void ConfigureWebSocket(WsStream& ws, bool client);

/// A WebSocket whose handshake is done, as a ByteStream.
std::unique_ptr<ByteStream> MakeWebSocketByteStream(std::shared_ptr<ssl::context> context,
                                                    std::unique_ptr<WsStream> ws,
                                                    std::string description,
                                                    std::shared_ptr<void> token);

}  // namespace lifeline::tunnel::carrier_detail
