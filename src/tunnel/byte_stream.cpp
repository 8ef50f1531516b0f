#include "tunnel/byte_stream.h"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

namespace lifeline::tunnel {
namespace {

class TcpByteStream final : public ByteStream {
 public:
  explicit TcpByteStream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
    ErrorCode ec;
    socket_.set_option(asio::ip::tcp::no_delay(true), ec);
    const auto remote = socket_.remote_endpoint(ec);
    description_ = ec ? std::string("tcp") : "tcp " + remote.address().to_string() + ":" + std::to_string(remote.port());
  }

  asio::any_io_executor GetExecutor() override { return socket_.get_executor(); }
  void AsyncReadSome(asio::mutable_buffer buffer, IoHandler handler) override {
    socket_.async_read_some(buffer, std::move(handler));
  }
  void AsyncWrite(asio::const_buffer buffer, IoHandler handler) override {
    asio::async_write(socket_, buffer, TransferAllAtOnce(), std::move(handler));
  }
  void AsyncShutdownWrite(DoneHandler handler) override {
    ErrorCode ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    asio::post(socket_.get_executor(), [handler = std::move(handler), ec] { handler(ec); });
  }
  void Close() override {
    ErrorCode ec;
    socket_.close(ec);
  }
  std::string Describe() const override { return description_; }

 private:
  asio::ip::tcp::socket socket_;
  std::string description_;
};

}  // namespace

std::unique_ptr<ByteStream> MakeTcpByteStream(asio::ip::tcp::socket socket) {
  return std::make_unique<TcpByteStream>(std::move(socket));
}

}  // namespace lifeline::tunnel
