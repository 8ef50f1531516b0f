// Raw TLS as a ByteStream, and the TLS helpers both carrier ends share.
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <functional>

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

// The buffers between OpenSSL and the socket once the handshake is done: OpenSSL appends encrypted
// records to `out` (one SSL_write of a whole carrier write, up to the mux's 1 MiB batch, becomes one
// socket write) and reads records from `in` (filled by socket reads of up to 256 KiB). Asio's engine
// instead passes every 16 KiB record through a 17 KiB BIO pair: one more copy and one more syscall
// per record each way.
struct DirectIo {
  std::string out;
  std::unique_ptr<char[]> in;
  std::size_t in_size = 0, in_begin = 0, in_end = 0;
};
constexpr std::size_t kDirectReadSize = 256 * 1024;

int DirectBioWrite(BIO* bio, const char* data, int length) {
  static_cast<DirectIo*>(BIO_get_data(bio))->out.append(data, static_cast<std::size_t>(length));
  return length;
}

int DirectBioRead(BIO* bio, char* data, int length) {
  auto* io = static_cast<DirectIo*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const std::size_t n = std::min(io->in_end - io->in_begin, static_cast<std::size_t>(std::max(length, 0)));
  if (n == 0) {
    BIO_set_retry_read(bio);  // SSL_ERROR_WANT_READ: the stream reads the socket
    return -1;
  }
  std::memcpy(data, io->in.get() + io->in_begin, n);
  io->in_begin += n;
  return static_cast<int>(n);
}

long DirectBioCtrl(BIO* bio, int command, long, void*) {
  switch (command) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_PENDING: {
      auto* io = static_cast<DirectIo*>(BIO_get_data(bio));
      return static_cast<long>(io->in_end - io->in_begin);
    }
    default:
      return 0;
  }
}

int DirectBioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO* NewDirectBio(DirectIo* io) {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "lifeline direct");
    if (m != nullptr) {
      BIO_meth_set_write(m, &DirectBioWrite);
      BIO_meth_set_read(m, &DirectBioRead);
      BIO_meth_set_ctrl(m, &DirectBioCtrl);
      BIO_meth_set_create(m, &DirectBioCreate);
    }
    return m;
  }();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  if (bio != nullptr) {
    BIO_set_data(bio, io);
  }
  return bio;
}

// Asio's SSL engine may have read ciphertext past the handshake (the peer's first records) into its
// stream_core's input buffer without handing it to OpenSSL yet; taking reads over means taking those
// bytes too. Neither Beast's ssl_stream nor Asio's ssl::stream exposes them, so their members are
// reached by the explicit-instantiation rule (access checks do not apply to template arguments of an
// explicit instantiation). A Boost that renames them fails to compile here rather than lose bytes.
using AsioSslStream = ssl::stream<tcp::socket>;
template <class Tag, typename Tag::type Member>
struct PrivateMember {
  friend typename Tag::type Get(Tag) { return Member; }
};
struct BeastImplTag {
  using type = std::unique_ptr<beast::flat_stream<AsioSslStream>> TlsStream::*;
  friend type Get(BeastImplTag);
};
template struct PrivateMember<BeastImplTag, &TlsStream::p_>;
struct AsioCoreTag {
  using type = asio::ssl::detail::stream_core AsioSslStream::*;
  friend type Get(AsioCoreTag);
};
template struct PrivateMember<AsioCoreTag, &AsioSslStream::core_>;

// Moves what Asio's engine holds unread (in its BIO pair, then in its input buffer, in that order)
// into `io->in`, and points OpenSSL at `bio` both ways.
void TakeOverFromAsio(TlsStream& stream, SSL* ssl, DirectIo* io, BIO* bio) {
  asio::ssl::detail::stream_core& core = ((stream.*Get(BeastImplTag{}))->next_layer()).*Get(AsioCoreTag{});
  BIO* pair = SSL_get_rbio(ssl);
  const std::size_t in_pair = BIO_ctrl_pending(pair);
  const std::size_t in_asio = core.input_.size();
  io->in_size = std::max(kDirectReadSize, in_pair + in_asio);
  io->in = std::make_unique_for_overwrite<char[]>(io->in_size);
  if (in_pair > 0) {
    io->in_end = static_cast<std::size_t>(std::max(BIO_read(pair, io->in.get(), static_cast<int>(in_pair)), 0));
  }
  std::memcpy(io->in.get() + io->in_end, core.input_.data(), in_asio);
  io->in_end += in_asio;
  core.input_ = asio::const_buffer();
  BIO_up_ref(bio);
  SSL_set0_rbio(ssl, bio);
  SSL_set0_wbio(ssl, bio);
}

ErrorCode LastSslError() {
  const unsigned long code = ERR_get_error();
  return code != 0 ? ErrorCode(static_cast<int>(code), asio::error::get_ssl_category())
                   : ErrorCode(asio::error::broken_pipe);
}

class TlsByteStream final : public ByteStream {
 public:
  TlsByteStream(std::shared_ptr<ssl::context> context, std::unique_ptr<TlsStream> stream,
                std::string prefix, std::string description, std::shared_ptr<void> token)
      : state_(std::make_shared<State>(std::move(context), std::move(stream))),
        stream_(state_->stream.get()),
        prefix_(std::move(prefix)),
        description_(std::move(description)),
        token_(std::move(token)) {
    SSL* ssl = stream_->native_handle();
    // Asio turns this on for every SSL object: a malloc and free of the record buffers per record.
    SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    // Reads and writes bypass Asio's engine from here on (the handshake is done and its output
    // written; no Asio operation is in progress).
    if (BIO* bio = NewDirectBio(&state_->io)) {
      TakeOverFromAsio(*stream_, ssl, &state_->io, bio);
      direct_write_ = true;
    }
  }

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
    if (direct_write_) {
      ReadDirect(state_, buffer, std::move(handler), /*in_completion=*/false);
      return;
    }
    stream_->async_read_some(buffer, [keep = state_, handler = std::move(handler)](
                                         ErrorCode ec, std::size_t n) {
      // Reading can make OpenSSL answer (a TLS 1.3 KeyUpdate): send that now.
      Send(keep);
      handler(ec, n);
    });
  }

  void AsyncWrite(asio::const_buffer buffer, IoHandler handler) override {
    if (direct_write_) {
      // Asio's engine set SSL_MODE_ENABLE_PARTIAL_WRITE: each SSL_write_ex returns after one record.
      SSL* ssl = stream_->native_handle();
      const auto* data = static_cast<const char*>(buffer.data());
      std::size_t done = 0;
      ERR_clear_error();
      while (done < buffer.size()) {
        std::size_t written = 0;
        if (SSL_write_ex(ssl, data + done, buffer.size() - done, &written) != 1) {
          asio::post(stream_->get_executor(),
                     [handler = std::move(handler), ec = LastSslError()] { handler(ec, 0); });
          return;
        }
        done += written;
      }
      state_->on_sent = [handler = std::move(handler), done](ErrorCode ec) { handler(ec, ec ? 0 : done); };
      if (state_->io.out.empty()) {  // nothing to write (an empty buffer)
        auto on_sent = std::move(state_->on_sent);
        state_->on_sent = nullptr;
        asio::post(stream_->get_executor(), [on_sent = std::move(on_sent)] { on_sent({}); });
        return;
      }
      Send(state_);
      return;
    }
    asio::async_write(*stream_, buffer,
                      [keep = state_, handler = std::move(handler)](ErrorCode ec, std::size_t n) {
                        handler(ec, n);
                      });
  }

  void AsyncShutdownWrite(DoneHandler handler) override {
    if (direct_write_) {
      // Sends close_notify (into state_->out) and returns without reading: reads go on until the
      // peer's close_notify, which they report as eof.
      ERR_clear_error();
      if (SSL_shutdown(stream_->native_handle()) < 0) {
        asio::post(stream_->get_executor(),
                   [handler = std::move(handler), ec = LastSslError()] { handler(ec); });
        return;
      }
      state_->on_sent = std::move(handler);
      if (state_->io.out.empty()) {
        auto on_sent = std::move(state_->on_sent);
        state_->on_sent = nullptr;
        asio::post(stream_->get_executor(), [on_sent = std::move(on_sent)] { on_sent({}); });
        return;
      }
      Send(state_);
      return;
    }
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
    State(std::shared_ptr<ssl::context> c, std::unique_ptr<TlsStream> s)
        : context(std::move(c)), stream(std::move(s)) {}
    ~State() { stream.reset(); }  // the SSL object (and its BIO pointing at `out`) goes first
    std::shared_ptr<ssl::context> context;  // outlives the SSL object made from it
    std::unique_ptr<TlsStream> stream;
    // Direct writes: records OpenSSL produced, not yet handed to the socket; the bytes of the
    // socket write in flight; and the completion of the caller's write (or shutdown) once
    // everything it produced is written.
    DirectIo io;
    bool in_eof = false;  // the socket reached its end (after any bytes still in io.in)
    std::string sending;
    bool send_pending = false;
    std::function<void(ErrorCode)> on_sent;
  };

  // Writes state->out to the socket (one write at a time); when all is written, completes on_sent.
  static void Send(const std::shared_ptr<State>& state) {
    if (state->send_pending || state->io.out.empty()) {
      return;
    }
    state->send_pending = true;
    state->sending.swap(state->io.out);
    state->io.out.clear();
    asio::async_write(beast::get_lowest_layer(*state->stream), asio::buffer(state->sending),
                      [state](ErrorCode ec, std::size_t) {
                        state->send_pending = false;
                        state->sending.clear();
                        if (!ec && !state->io.out.empty()) {
                          Send(state);
                          return;
                        }
                        if (state->on_sent) {
                          auto on_sent = std::move(state->on_sent);
                          state->on_sent = nullptr;
                          on_sent(ec);
                        }
                      });
  }

  // Decrypts what `io.in` holds into `buffer` (as many records as fit); reads the socket when that
  // is not even one byte. Ends as Asio's reads do: eof after the peer's close_notify,
  // stream_truncated when the connection ended without one.
  static void ReadDirect(std::shared_ptr<State> state, asio::mutable_buffer buffer, IoHandler handler,
                         bool in_completion) {
    SSL* ssl = state->stream->native_handle();
    auto* data = static_cast<char*>(buffer.data());
    std::size_t got = 0;
    ErrorCode ec;
    ERR_clear_error();
    while (got < buffer.size()) {
      std::size_t n = 0;
      const int rv = SSL_read_ex(ssl, data + got, buffer.size() - got, &n);
      if (rv == 1) {
        got += n;
        continue;
      }
      const int error = SSL_get_error(ssl, rv);
      if (error == SSL_ERROR_ZERO_RETURN) {
        ec = asio::error::eof;
      } else if (error != SSL_ERROR_WANT_READ) {
        ec = LastSslError();
      } else if (state->in_eof && got == 0) {
        ec = ssl::error::stream_truncated;
      }
      break;
    }
    Send(state);  // reading can make OpenSSL answer (a TLS 1.3 KeyUpdate)
    if (got > 0 || ec || buffer.size() == 0) {
      if (got > 0) {
        ec = {};  // the error comes again with the next read
      }
      if (in_completion) {
        handler(ec, got);
      } else {
        asio::post(state->stream->get_executor(), [handler = std::move(handler), ec, got] { handler(ec, got); });
      }
      return;
    }
    DirectIo& io = state->io;
    if (io.in_begin == io.in_end) {
      io.in_begin = io.in_end = 0;
    } else if (io.in_size - io.in_end < 64 * 1024) {
      // Less than a record's worth is left over: move it to the front.
      std::memmove(io.in.get(), io.in.get() + io.in_begin, io.in_end - io.in_begin);
      io.in_end -= io.in_begin;
      io.in_begin = 0;
    }
    beast::get_lowest_layer(*state->stream)
        .async_read_some(asio::buffer(io.in.get() + io.in_end, io.in_size - io.in_end),
                         [state, buffer, handler = std::move(handler)](ErrorCode read_ec, std::size_t n) mutable {
                           if (read_ec == asio::error::eof) {
                             state->in_eof = true;
                           } else if (read_ec) {
                             handler(read_ec, 0);
                             return;
                           }
                           state->io.in_end += n;
                           ReadDirect(std::move(state), buffer, std::move(handler), /*in_completion=*/true);
                         });
  }

  std::shared_ptr<State> state_;
  TlsStream* stream_;
  bool direct_write_ = false;  // reads and writes bypass Asio's engine
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
