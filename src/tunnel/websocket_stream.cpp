// A WebSocket inside TLS as a ByteStream: binary messages carry the bytes; message boundaries mean
// nothing (a read returns message bytes as they arrive).
#include <boost/asio/post.hpp>

#include "tunnel/carrier_internal.h"

namespace lifeline::tunnel::carrier_detail {

void ConfigureWebSocket(WsStream& ws, bool client) {
  ws.binary(true);
  // Reads never gather a whole message (read_some), so the message size needs no limit.
  ws.read_message_max(0);
  // The client masks its payload through this buffer; fragments of this size are one TLS write.
  ws.write_buffer_bytes(kWebSocketWriteBuffer);
  // The server sends each write as one frame: its payload goes out without a copy.
  ws.auto_fragment(client);
  ws.set_option(websocket::permessage_deflate{});  // off: tunnelled data is usually encrypted
}

namespace {

class WebSocketByteStream final : public ByteStream {
 public:
  WebSocketByteStream(std::shared_ptr<ssl::context> context, std::unique_ptr<WsStream> ws,
                      std::string description, std::shared_ptr<void> token)
      : state_(std::make_shared<State>(State{std::move(context), std::move(ws)})),
        ws_(state_->ws.get()),
        description_(std::move(description)),
        token_(std::move(token)) {
    // The upgrade is done: TLS reads and writes bypass Asio's engine from here on (carrier_internal.h).
    ws_->next_layer().StartDirect();
  }

  ~WebSocketByteStream() override { Close(); }

  asio::any_io_executor GetExecutor() override { return ws_->get_executor(); }

  void AsyncReadSome(asio::mutable_buffer buffer, IoHandler handler) override {
    ReadSome(state_, buffer, std::move(handler));
  }

  void AsyncWrite(asio::const_buffer buffer, IoHandler handler) override {
    // The message's pieces leave together (TlsStream::Cork); the write completes once they are sent.
    ws_->next_layer().Cork();
    ws_->async_write(buffer, [keep = state_, handler = std::move(handler)](ErrorCode ec, std::size_t n) mutable {
      keep->ws->next_layer().Uncork([keep, handler = std::move(handler), ec, n](ErrorCode send_ec) {
        handler(ec ? ec : send_ec, ec || send_ec ? 0 : n);
      });
    });
  }

  void AsyncShutdownWrite(DoneHandler handler) override {
    // Beast discards data frames once it has sent a close frame (RFC 6455 lets it), and its close
    // completes only when the peer answers, so a close frame is no half-close. Our end of data is
    // an empty text message instead (data only ever travels in binary ones); once both directions
    // have ended, Close() ends the connection.
    ws_->text(true);
    ws_->async_write(asio::const_buffer(),
                     [keep = state_, handler = std::move(handler)](ErrorCode ec, std::size_t) {
                       keep->ws->binary(true);
                       handler(ec);
                     });
  }

  void Close() override {
    ErrorCode ignored;
    beast::get_lowest_layer(*ws_).close(ignored);
  }

  std::string Describe() const override { return description_; }

 private:
  // Pending operations hold the state (see TlsByteStream).
  struct State {
    std::shared_ptr<ssl::context> context;
    std::unique_ptr<WsStream> ws;
    bool peer_ended = false;  // its empty text message or its close frame arrived
  };
  std::shared_ptr<State> state_;
  WsStream* ws_;

  static void ReadSome(std::shared_ptr<State> state, asio::mutable_buffer buffer,
                       IoHandler handler) {
    if (state->peer_ended) {
      WsStream& ws = *state->ws;
      asio::post(ws.get_executor(),
                 [handler = std::move(handler)] { handler(asio::error::eof, 0); });
      return;
    }
    WsStream& ws = *state->ws;
    ws.async_read_some(buffer, [state = std::move(state), buffer, handler = std::move(handler)](
                                   ErrorCode ec, std::size_t n) mutable {
      if (ec == websocket::error::closed) {
        state->peer_ended = true;  // a close frame ends the peer's direction, like a TCP FIN
        ec = asio::error::eof;
      } else if (!ec && state->ws->got_text()) {
        // The peer's end of data (see AsyncShutdownWrite). A longer text message is not ours; it
        // ends the data just the same once it has been read.
        if (!state->ws->is_message_done()) {
          ReadSome(std::move(state), buffer, std::move(handler));
          return;
        }
        state->peer_ended = true;
        ec = asio::error::eof;
        n = 0;
      } else if (!ec && n == 0 && buffer.size() > 0) {
        // An empty binary message (or frame) is not a byte of data, and a ByteStream read returns
        // at least one. Our writer never sends one; another peer might.
        ReadSome(std::move(state), buffer, std::move(handler));
        return;
      }
      handler(ec, n);
    });
  }

  std::string description_;
  std::shared_ptr<void> token_;
};

}  // namespace

std::unique_ptr<ByteStream> MakeWebSocketByteStream(std::shared_ptr<ssl::context> context,
                                                    std::unique_ptr<WsStream> ws,
                                                    std::string description,
                                                    std::shared_ptr<void> token) {
  return std::make_unique<WebSocketByteStream>(std::move(context), std::move(ws),
                                               std::move(description), std::move(token));
}

}  // namespace lifeline::tunnel::carrier_detail
