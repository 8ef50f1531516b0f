#pragma once
// Shared between the carrier's .cpp files only (dial, listen, the two stream kinds): the Asio,
// Beast and OpenSSL types stay out of carrier.h.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <memory>
#include <string>

#include "tunnel/carrier.h"

namespace lifeline::tunnel::carrier_detail {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
// Beast's ssl_stream coalesces small buffers of a write into one TLS record (a WebSocket frame
// header and its payload would otherwise go out as two records).
using TlsStream = beast::ssl_stream<tcp::socket>;
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
