// Raw TLS as a ByteStream, and the TLS helpers both carrier ends share.
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cstring>

#include "tunnel/carrier_internal.h"

namespace lifeline::tunnel::carrier_detail {

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

void TuneSocket(tcp::socket& socket) {
  // Failures only cost speed: the kernel's defaults still work.
  ErrorCode ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::send_buffer_size(kSocketBuffer), ignored);
  socket.set_option(asio::socket_base::receive_buffer_size(kSocketBuffer), ignored);
}

bool HardenContext(ssl::context& context) {
  SSL_CTX* native = context.native_handle();
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                      ssl::context::no_compression | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
  // Bulk data: release the per-connection read and write buffers between records is a malloc per
  // record; keep them.
  SSL_CTX_clear_mode(native, SSL_MODE_RELEASE_BUFFERS);
  // TLS 1.3: AES-128-GCM first, a third faster than OpenSSL's default AES-256-GCM on bulk data
  // (with AES-NI). TLS 1.2: forward-secret AEAD suites only.
  return SSL_CTX_set_ciphersuites(native,
                                  "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                  "TLS_CHACHA20_POLY1305_SHA256") == 1 &&
         SSL_CTX_set_cipher_list(native, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL") == 1;
}

std::string TlsErrorText(const ErrorCode& error, SSL* ssl) {
  std::string text = error.message();
  if (ssl != nullptr) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      text += fmt::format(" ({})", X509_verify_cert_error_string(verify));
    }
  }
  return text;
}

namespace {

class TlsByteStream final : public ByteStream {
 public:
  TlsByteStream(std::shared_ptr<ssl::context> context, std::unique_ptr<TlsStream> stream,
                std::string prefix, std::string description, std::shared_ptr<void> token)
      : state_(std::make_shared<State>(State{std::move(context), std::move(stream)})),
        stream_(state_->stream.get()),
        prefix_(std::move(prefix)),
        description_(std::move(description)),
        token_(std::move(token)) {}

  ~TlsByteStream() override { Close(); }

  asio::any_io_executor GetExecutor() override { return stream_->get_executor(); }

  void AsyncReadSome(asio::mutable_buffer buffer, IoHandler handler) override {
    if (prefix_used_ < prefix_.size() && buffer.size() > 0) {
      // The listener's peek: hand back what it read before anything new.
      const std::size_t n = std::min(buffer.size(), prefix_.size() - prefix_used_);
      std::memcpy(buffer.data(), prefix_.data() + prefix_used_, n);
      prefix_used_ += n;
      if (prefix_used_ == prefix_.size()) {
        prefix_.clear();
        prefix_.shrink_to_fit();
        prefix_used_ = 0;
      }
      asio::post(stream_->get_executor(), [handler = std::move(handler), n] { handler({}, n); });
      return;
    }
    stream_->async_read_some(buffer, [keep = state_, handler = std::move(handler)](
                                         ErrorCode ec, std::size_t n) { handler(ec, n); });
  }

  void AsyncWrite(asio::const_buffer buffer, IoHandler handler) override {
    asio::async_write(*stream_, buffer,
                      [keep = state_, handler = std::move(handler)](ErrorCode ec, std::size_t n) {
                        handler(ec, n);
                      });
  }

  void AsyncShutdownWrite(DoneHandler handler) override {
    // A TLS half-close: send close_notify and keep reading. Asio's async_shutdown would also wait
    // for (and read until) the peer's close_notify, so OpenSSL is told for one call that the peer's
    // already arrived: SSL_shutdown then only sends ours, which Asio writes out; the flag is put
    // back at once (the engine's step ran inside the initiating call), so reads go on until the
    // peer's close_notify, which they report as eof.
    SSL* ssl = stream_->native_handle();
    const int before = SSL_get_shutdown(ssl);
    SSL_set_shutdown(ssl, before | SSL_RECEIVED_SHUTDOWN);
    stream_->async_shutdown(
        [keep = state_, handler = std::move(handler)](ErrorCode ec) { handler(ec); });
    SSL_set_shutdown(
        ssl, (SSL_get_shutdown(ssl) & ~SSL_RECEIVED_SHUTDOWN) | (before & SSL_RECEIVED_SHUTDOWN));
  }

  void Close() override {
    ErrorCode ignored;
    beast::get_lowest_layer(*stream_).close(ignored);
  }

  std::string Describe() const override { return description_; }

 private:
  // Pending operations hold the state: a stream destroyed (after Close) before its handlers ran
  // must not free what Asio's SSL operations still use.
  struct State {
    std::shared_ptr<ssl::context> context;  // outlives the SSL object made from it
    std::unique_ptr<TlsStream> stream;
  };
  std::shared_ptr<State> state_;
  TlsStream* stream_;
  std::string prefix_;
  std::size_t prefix_used_ = 0;
  std::string description_;
  std::shared_ptr<void> token_;
};

}  // namespace

std::unique_ptr<ByteStream> MakeTlsByteStream(std::shared_ptr<ssl::context> context,
                                              std::unique_ptr<TlsStream> stream, std::string prefix,
                                              std::string description,
                                              std::shared_ptr<void> token) {
  return std::make_unique<TlsByteStream>(std::move(context), std::move(stream), std::move(prefix),
                                         std::move(description), std::move(token));
}

}  // namespace lifeline::tunnel::carrier_detail
