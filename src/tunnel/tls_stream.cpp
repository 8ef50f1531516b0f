// Raw TLS as a ByteStream, and the TLS helpers both carrier ends share.
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
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
  bool last_read_filled = false;  // the last socket read filled the free space: data is flowing
};
// The socket read buffer starts at 32 KiB (two records: an idle engineer's carrier costs little)
// and doubles up to 256 KiB while reads fill it.
constexpr std::size_t kDirectReadStart = 32 * 1024;
constexpr std::size_t kDirectReadSize = 256 * 1024;
// What a corked stream holds at most before it sends anyway (TlsStream::Cork).
constexpr std::size_t kCorkLimit = 256 * 1024;
// A send buffer larger than this is given back once everything is sent.
constexpr std::size_t kKeptSendBuffer = 256 * 1024;

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
  using type = std::unique_ptr<beast::flat_stream<AsioSslStream>> TlsStream::Impl::*;
  friend type Get(BeastImplTag);
};
template struct PrivateMember<BeastImplTag, &TlsStream::Impl::p_>;
struct AsioCoreTag {
  using type = asio::ssl::detail::stream_core AsioSslStream::*;
  friend type Get(AsioCoreTag);
};
template struct PrivateMember<AsioCoreTag, &AsioSslStream::core_>;

// Moves what Asio's engine holds unread (in its BIO pair, then in its input buffer, in that order)
// into `io->in`, and points OpenSSL at `bio` both ways.
void TakeOverFromAsio(TlsStream::Impl& stream, SSL* ssl, DirectIo* io, BIO* bio) {
  asio::ssl::detail::stream_core& core = ((stream.*Get(BeastImplTag{}))->next_layer()).*Get(AsioCoreTag{});
  BIO* pair = SSL_get_rbio(ssl);
  const std::size_t in_pair = BIO_ctrl_pending(pair);
  const std::size_t in_asio = core.input_.size();
  io->in_size = std::max(kDirectReadStart, in_pair + in_asio);
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

}  // namespace

// The state of a TlsStream in direct mode. Pending operations hold it; the SSL object and the socket
// it points at belong to the TlsStream, whose owner (a ByteStream's state) outlives every pending
// operation (see TlsByteStream::State).
struct TlsDirect {
  SSL* ssl = nullptr;
  tcp::socket* socket = nullptr;
  DirectIo io;
  bool in_eof = false;  // the socket reached its end (after any bytes still in io.in)
  bool read_pending = false;
  std::string sending;  // the socket write in flight
  bool send_pending = false;
  bool corked = false;  // TlsStream::Cork
  // Completes a write (or close_notify) once everything it produced is written.
  TlsStream::DoneCompletion on_sent;
};

namespace {

// Writes direct->io.out to the socket (one write at a time); when all is written, completes on_sent.
void SendDirect(const std::shared_ptr<TlsDirect>& direct) {
  if (direct->send_pending || direct->io.out.empty()) {
    return;
  }
  direct->send_pending = true;
  direct->sending.swap(direct->io.out);
  direct->io.out.clear();
  asio::async_write(*direct->socket, asio::buffer(direct->sending), TransferAllAtOnce(),
                    [direct](ErrorCode ec, std::size_t) {
    direct->send_pending = false;
    direct->sending.clear();
    if (!ec && !direct->io.out.empty()) {
      SendDirect(direct);
      return;
    }
    if (direct->sending.capacity() > kKeptSendBuffer) {
      // A burst is over: an idle carrier does not keep its largest write's buffer.
      std::string().swap(direct->sending);
    }
    if (direct->on_sent) {
      auto on_sent = std::move(direct->on_sent);
      direct->on_sent = nullptr;
      std::move(on_sent)(ec);
    }
  });
}

// Completes `on_sent` once what OpenSSL produced is written (at once, posted, when nothing is).
void FinishWrite(const std::shared_ptr<TlsDirect>& direct, TlsStream::DoneCompletion done) {
  if (direct->io.out.empty() && !direct->send_pending) {
    asio::post(direct->socket->get_executor(), [done = std::move(done)]() mutable { std::move(done)(ErrorCode()); });
    return;
  }
  direct->on_sent = std::move(done);
  SendDirect(direct);
}

// Decrypts what io.in holds into `buffer` (as many records as fit); reads the socket when that is
// not even one byte. Ends as Asio's reads do: eof after the peer's close_notify, stream_truncated
// when the connection ended without one.
void ReadDirect(std::shared_ptr<TlsDirect> direct, asio::mutable_buffer buffer, TlsStream::IoCompletion handler,
                bool in_completion) {
  auto* data = static_cast<char*>(buffer.data());
  std::size_t got = 0;
  ErrorCode ec;
  ERR_clear_error();
  while (got < buffer.size()) {
    std::size_t n = 0;
    const int rv = SSL_read_ex(direct->ssl, data + got, buffer.size() - got, &n);
    if (rv == 1) {
      got += n;
      continue;
    }
    const int error = SSL_get_error(direct->ssl, rv);
    if (error == SSL_ERROR_ZERO_RETURN) {
      ec = asio::error::eof;
    } else if (error != SSL_ERROR_WANT_READ) {
      ec = LastSslError();
    } else if (direct->in_eof && got == 0) {
      ec = ssl::error::stream_truncated;
    }
    break;
  }
  SendDirect(direct);  // reading can make OpenSSL answer (a TLS 1.3 KeyUpdate)
  if (got > 0 || ec || buffer.size() == 0) {
    if (got > 0) {
      ec = {};  // the error comes again with the next read
    }
    direct->read_pending = false;
    if (in_completion) {
      std::move(handler)(ec, got);
    } else {
      asio::post(direct->socket->get_executor(),
                 [handler = std::move(handler), ec, got]() mutable { std::move(handler)(ec, got); });
    }
    return;
  }
  DirectIo& io = direct->io;
  const std::size_t live = io.in_end - io.in_begin;  // part of a record
  if (io.last_read_filled && io.in_size < kDirectReadSize) {
    const std::size_t size = std::min(io.in_size * 2, kDirectReadSize);
    auto bigger = std::make_unique_for_overwrite<char[]>(size);
    std::memcpy(bigger.get(), io.in.get() + io.in_begin, live);
    io.in = std::move(bigger);
    io.in_size = size;
    io.in_begin = 0;
    io.in_end = live;
  } else if (live == 0) {
    io.in_begin = io.in_end = 0;
  } else if (io.in_size - io.in_end < io.in_size / 4) {
    // Less than a record's worth is left over: move it to the front.
    std::memmove(io.in.get(), io.in.get() + io.in_begin, live);
    io.in_end = live;
    io.in_begin = 0;
  }
  direct->read_pending = true;
  direct->socket->async_read_some(
      asio::buffer(io.in.get() + io.in_end, io.in_size - io.in_end),
      [direct, buffer, handler = std::move(handler)](ErrorCode read_ec, std::size_t n) mutable {
        if (read_ec == asio::error::eof) {
          direct->in_eof = true;
        } else if (read_ec) {
          direct->read_pending = false;
          std::move(handler)(read_ec, 0);
          return;
        }
        direct->io.last_read_filled = n > 0 && direct->io.in_end + n == direct->io.in_size;
        direct->io.in_end += n;
        ReadDirect(std::move(direct), buffer, std::move(handler), /*in_completion=*/true);
      });
}

}  // namespace

TlsStream::~TlsStream() = default;

bool TlsStream::StartDirect() {
  if (direct_) {
    return true;
  }
  SSL* ssl = impl_.native_handle();
  auto direct = std::make_shared<TlsDirect>();
  BIO* bio = NewDirectBio(&direct->io);
  if (bio == nullptr) {
    return false;
  }
  // Asio turns this on for every SSL object: a malloc and free of the record buffers per record.
  SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  TakeOverFromAsio(impl_, ssl, &direct->io, bio);
  direct->ssl = ssl;
  direct->socket = &impl_.next_layer();
  direct_ = std::move(direct);
  return true;
}

void TlsStream::DirectRead(asio::mutable_buffer buffer, IoCompletion handler) {
  ReadDirect(direct_, buffer, std::move(handler), /*in_completion=*/false);
}

void TlsStream::DirectWrite(std::vector<asio::const_buffer> buffers, IoCompletion handler) {
  // Asio's engine set SSL_MODE_ENABLE_PARTIAL_WRITE: each SSL_write_ex returns after one record.
  auto write = [&](const char* data, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      std::size_t written = 0;
      if (SSL_write_ex(direct_->ssl, data + done, size - done, &written) != 1) {
        return false;
      }
      done += written;
    }
    return true;
  };
  ERR_clear_error();
  std::size_t total = 0;
  std::string joined;  // small buffers (a frame header) go into one record with what follows
  constexpr std::size_t kSmall = 1024, kRecord = 16 * 1024;
  bool ok = true;
  for (const auto& b : buffers) {
    total += b.size();
    if (b.size() < kSmall || (!joined.empty() && joined.size() + b.size() <= kRecord)) {
      joined.append(static_cast<const char*>(b.data()), b.size());
      continue;
    }
    if (!joined.empty()) {
      // Fill the joined record from this buffer, then write the rest of it directly.
      const std::size_t take = std::min(b.size(), kRecord - joined.size());
      joined.append(static_cast<const char*>(b.data()), take);
      ok = write(joined.data(), joined.size()) &&
           write(static_cast<const char*>(b.data()) + take, b.size() - take);
      joined.clear();
    } else {
      ok = write(static_cast<const char*>(b.data()), b.size());
    }
    if (!ok) {
      break;
    }
  }
  if (ok && !joined.empty()) {
    ok = write(joined.data(), joined.size());
  }
  if (!ok) {
    asio::post(direct_->socket->get_executor(),
               [handler = std::move(handler), ec = LastSslError()]() mutable { std::move(handler)(ec, 0); });
    return;
  }
  if (direct_->corked && direct_->io.out.size() < kCorkLimit) {
    asio::post(direct_->socket->get_executor(),
               [handler = std::move(handler), total]() mutable { std::move(handler)(ErrorCode(), total); });
    return;
  }
  FinishWrite(direct_, [handler = std::move(handler), total](ErrorCode ec) mutable {
    std::move(handler)(ec, ec ? 0 : total);
  });
}

void TlsStream::Cork() {
  if (direct_) {
    direct_->corked = true;
  }
}

void TlsStream::Uncork(DoneCompletion handler) {
  if (!direct_) {
    asio::post(impl_.get_executor(), [handler = std::move(handler)]() mutable { std::move(handler)(ErrorCode()); });
    return;
  }
  direct_->corked = false;
  FinishWrite(direct_, std::move(handler));
}

void TlsStream::DirectShutdownWrite(DoneCompletion handler) {
  // Sends close_notify and returns without reading: reads go on until the peer's close_notify,
  // which they report as eof.
  ERR_clear_error();
  if (SSL_shutdown(direct_->ssl) < 0) {
    asio::post(direct_->socket->get_executor(),
               [handler = std::move(handler), ec = LastSslError()]() mutable { std::move(handler)(ec); });
    return;
  }
  FinishWrite(direct_, std::move(handler));
}

void teardown(beast::role_type role, TlsStream& stream, ErrorCode& ec) {
  if (!stream.Direct()) {
    beast::teardown(role, stream.SslImpl(), ec);
    return;
  }
  stream.next_layer().close(ec);
}

void AsyncTeardownImpl(beast::role_type role, TlsStream& stream, TlsStream::DoneCompletion handler) {
  // Our WebSocket carriers end with an empty text message and Close(); a closing handshake (from
  // another peer, or a refused upgrade) ends the connection here: close_notify when the stream is
  // direct, then the socket closes.
  if (stream.Direct()) {
    tcp::socket* socket = &stream.next_layer();
    stream.DirectShutdownWrite([socket, handler = std::move(handler)](ErrorCode ec) mutable {
      ErrorCode ignored;
      socket->close(ignored);
      std::move(handler)(ec);
    });
    return;
  }
  beast::async_teardown(role, stream.SslImpl(),
                        asio::bind_executor(stream.get_executor(), [handler = std::move(handler)](ErrorCode ec) mutable {
                          std::move(handler)(ec);
                        }));
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
        token_(std::move(token)) {
    stream_->StartDirect();
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
    stream_->async_read_some(buffer, [keep = state_, handler = std::move(handler)](
                                         ErrorCode ec, std::size_t n) { handler(ec, n); });
  }

  void AsyncWrite(asio::const_buffer buffer, IoHandler handler) override {
    if (stream_->Direct()) {
      // A direct write takes all of it at once (asio::async_write would hand it over 64 KiB at a time).
      stream_->async_write_some(buffer, [keep = state_, handler = std::move(handler)](ErrorCode ec, std::size_t n) {
        handler(ec, n);
      });
      return;
    }
    asio::async_write(*stream_, buffer,
                      [keep = state_, handler = std::move(handler)](ErrorCode ec, std::size_t n) {
                        handler(ec, n);
                      });
  }

  void AsyncShutdownWrite(DoneHandler handler) override {
    if (stream_->Direct()) {
      stream_->DirectShutdownWrite([keep = state_, handler = std::move(handler)](ErrorCode ec) { handler(ec); });
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
  // must not free what its operations still use.
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
