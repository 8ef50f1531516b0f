#pragma once
// A duplex byte stream, type-erased so that the multiplexer (mux.h) and the session code do not care
// what carries the bytes: TLS on TCP, WebSocket inside TLS (carrier.h), or plain TCP (the device
// side of a session, and tests). Every implementation runs its handlers on its own executor.
//
// Rules for callers: at most one read and one write outstanding at a time; buffers stay valid until
// their handler runs; handlers run on GetExecutor() (never inline from the initiating call).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <string>

namespace lifeline::tunnel {

namespace asio = boost::asio;
using ErrorCode = boost::system::error_code;
using IoHandler = std::function<void(ErrorCode, std::size_t)>;
using DoneHandler = std::function<void(ErrorCode)>;

class ByteStream {
 public:
  virtual ~ByteStream() = default;

  virtual asio::any_io_executor GetExecutor() = 0;
  /// Reads at least one byte into `buffer`; asio::error::eof when the peer ended its side.
  virtual void AsyncReadSome(asio::mutable_buffer buffer, IoHandler handler) = 0;
  /// Writes all of `buffer` (the handler gets its size) or fails.
  virtual void AsyncWrite(asio::const_buffer buffer, IoHandler handler) = 0;
  /// Ends our direction (TCP shutdown(SHUT_WR), TLS close_notify, WebSocket close) while reads go on
  /// where the carrier allows it: a TCP half-close is what ssh or an HTTPS client expect to see when
  /// the other end of a session finished sending.
  virtual void AsyncShutdownWrite(DoneHandler handler) = 0;
  /// Closes at once; outstanding operations end with asio::error::operation_aborted.
  virtual void Close() = 0;
  /// For log lines: "tls 127.0.0.1:9458", "tcp 10.0.0.5:22".
  virtual std::string Describe() const = 0;
};

/// A completion condition for asio::async_write on a socket: each send() is offered all that is left.
/// Asio's transfer_all offers at most 64 KiB per call, and every send() on loopback is a pass through
/// the receiver's TCP stack and a wake-up of the receiving process: a 400 KiB batch was 7 of them.
struct TransferAllAtOnce {
  std::size_t operator()(const ErrorCode& ec, std::size_t) const {
    return ec ? 0 : std::numeric_limits<std::size_t>::max() / 2;
  }
};

/// A connected TCP socket as a ByteStream.
std::unique_ptr<ByteStream> MakeTcpByteStream(asio::ip::tcp::socket socket);

}  // namespace lifeline::tunnel
