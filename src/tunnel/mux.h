#pragma once
// The tunnel multiplexer: many streams over one carrier (a ByteStream: TLS, WebSocket in TLS, TCP),
// framed as HTTP/2 by nghttp2 with the roles reversed as cloudflared does: the HOME is the HTTP/2
// client (it opens streams) and the GATEWAY is the HTTP/2 server (it accepts them), although the
// gateway dialled the connection. A stream is either spliced to a local ByteStream (an engineer's
// connection at the home, the device's socket at the gateway) or a small request/response call
// (GET /v1/devices over the tunnel). Design notes: docs/tunnel.md, "Multiplexer".
//
// Threading: the mux runs on a strand of the carrier's executor. Every public method may be called
// from any thread (it posts to the strand). Every callback (MuxCallbacks, OpenHandler,
// StreamEndHandler, ReadBody's handler) runs on that strand: it must not block.
#include "common/result.h"
#include "tunnel/byte_stream.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace lifeline::tunnel {

enum class MuxErrc {
  kClosed = 1,      // the tunnel is closed (carrier lost, peer silent, Close())
  kDraining,        // a GOAWAY was sent or received: no new streams on this tunnel
  kStreamReset,     // the peer reset the stream before it answered
  kRefused,         // the peer refused the stream (too many streams, or it is going away)
  kBodyTooLarge,    // a request or response body exceeded MuxOptions::max_body_size
  kInvalidArgument, // bad headers, or a call that does not fit the stream's state
  kProtocol,        // the peer broke HTTP/2 (details in the tunnel log)
};
const std::error_category& MuxErrorCategory();
inline std::error_code make_error_code(MuxErrc code) {
  return {static_cast<int>(code), MuxErrorCategory()};
}

enum class MuxRole {
  kClient,  // the home: opens streams
  kServer,  // the gateway: accepts streams
};

struct MuxOptions {
  MuxRole role = MuxRole::kClient;
  /// For log lines: "gateway site-7 via tls 10.0.0.1:443".
  std::string name = "mux";
  /// Each stream starts with this receive window and grows it (doubling) while its reader keeps up
  /// with a whole window per round trip, up to max_stream_window (docs/tunnel.md).
  std::uint32_t initial_stream_window = 256 * 1024;
  std::uint32_t max_stream_window = 16 * 1024 * 1024;
  /// The shortest round trip the window tuning assumes. A WINDOW_UPDATE takes the network's round
  /// trip plus the time either process waits for a CPU: on a busy host a few scheduler slices (3 to
  /// 4 ms each), which an idle PING across loopback or a LAN (0.1 ms) does not see. Tuning to the
  /// PING alone kept a loopback stream at 1 MiB and 474 MB/s on the 2-core bench host; with this
  /// floor it reaches the maximum and 555 MB/s (bench_tunnel, docs/tunnel.md). Windows still grow
  /// only for streams whose reader takes half a window within two of these: a slow reader keeps a
  /// small one.
  std::chrono::milliseconds window_rtt_floor{10};
  /// The connection-level window: large, because per-stream windows do the limiting.
  std::uint32_t connection_window = (1u << 30) - 1;
  /// A PING every interval; the peer is declared dead after `ping_misses_allowed` intervals in which
  /// nothing at all arrived from it.
  std::chrono::milliseconds ping_interval{20000};
  int ping_misses_allowed = 3;
  std::uint32_t max_concurrent_streams = 10000;
  /// Largest DATA frame we accept (SETTINGS_MAX_FRAME_SIZE, 16 KiB to 16 MiB - 1).
  std::uint32_t max_frame_size = 64 * 1024;
  /// Largest buffer per stream for bytes read from its local side; a stream starts with a small one
  /// and grows it only while data flows, so idle streams stay small.
  std::size_t stream_buffer_size = 128 * 1024;
  /// Request and response bodies of non-spliced calls are collected up to this size.
  std::size_t max_body_size = 1024 * 1024;
  /// A spliced stream with no bytes either way for this long is ended (0: never).
  std::chrono::milliseconds stream_idle_timeout{0};
};

using Headers = std::vector<std::pair<std::string, std::string>>;

/// The first value of header `name` (lower case), or "" when absent.
std::string_view FindHeader(const Headers& headers, std::string_view name);

enum class StreamEnd {
  kClean,         // both directions ended with a half-close (END_STREAM / FIN)
  kResetByPeer,   // the peer reset the stream (RST_STREAM)
  kLocalError,    // the local side failed (connection reset, write error)
  kIdleTimeout,   // no bytes either way for MuxOptions::stream_idle_timeout
  kKilled,        // Reset() was called (the customer ended the session)
  kTunnelClosed,  // the carrier closed or the peer went silent
};
const char* StreamEndName(StreamEnd end);

struct StreamReport {
  std::int32_t stream_id = 0;
  std::uint64_t bytes_to_peer = 0;    // read from the local side, sent into the tunnel
  std::uint64_t bytes_from_peer = 0;  // received from the tunnel, written to the local side
  StreamEnd end = StreamEnd::kClean;
  std::string detail;  // operator-readable: "RST_STREAM CANCEL", "local: Connection reset by peer"
};
/// Called once when a spliced stream has ended and its local side is closed.
using StreamEndHandler = std::function<void(const StreamReport&)>;

class MuxCore;

/// A handle on one stream, valid from any thread even after the stream or the mux is gone.
class MuxStream {
 public:
  MuxStream(std::weak_ptr<MuxCore> core, std::int32_t id) : core_(std::move(core)), id_(id) {}
  std::int32_t Id() const { return id_; }
  /// Ends the stream at once (RST_STREAM CANCEL to the peer, local side closed); its report says
  /// kKilled. No effect if it already ended.
  void Reset();

 protected:
  std::weak_ptr<MuxCore> core_;
  std::int32_t id_;
};

struct MuxResponse {
  int status = 0;
  Headers headers;
  std::string body;  // collected when the stream is not spliced (non-200, or no local stream)
  std::shared_ptr<MuxStream> stream;
};
using OpenHandler = std::function<void(Result<MuxResponse>)>;

/// Server role: a stream the peer opened. Answer it once, with Reply or Accept, from any thread.
class IncomingStream : public MuxStream {
 public:
  IncomingStream(std::weak_ptr<MuxCore> core, std::int32_t id, Headers request_headers)
      : MuxStream(std::move(core), id), request_headers_(std::move(request_headers)) {}
  const Headers& RequestHeaders() const { return request_headers_; }
  std::string_view Header(std::string_view name) const { return FindHeader(request_headers_, name); }
  /// Collects the request body (up to MuxOptions::max_body_size) until the peer ends its side.
  void ReadBody(std::function<void(Result<std::string>)> handler);
  /// Answers with `status` and `body` and ends our side of the stream.
  void Reply(int status, Headers headers = {}, std::string body = {});
  /// Answers 200 and splices the stream with `device` both ways until both directions ended;
  /// `on_end` gets the report. If the stream is already gone, `device` is closed and `on_end` runs.
  void Accept(Headers headers, std::unique_ptr<ByteStream> device, StreamEndHandler on_end = {});

 private:
  Headers request_headers_;
};

struct MuxCallbacks {
  /// Server role: a new stream with its request headers.
  std::function<void(std::shared_ptr<IncomingStream>)> on_stream;
  /// Once, when the tunnel is gone (carrier closed or failed, peer silent, Close()).
  std::function<void(const std::string& reason)> on_closed;
  /// The peer sent GOAWAY: it takes no new streams here; existing ones go on.
  std::function<void()> on_goaway;
};

struct MuxStats {
  std::size_t active_streams = 0;
  std::uint64_t streams_opened = 0;  // opened by us or accepted from the peer, since the start
  std::uint64_t bytes_sent = 0;      // carrier bytes written (frames included)
  std::uint64_t bytes_received = 0;  // carrier bytes read
  std::chrono::microseconds last_rtt{0};  // from the latest PING acknowledgement; 0 before it
  std::uint32_t largest_stream_window = 0;  // the largest receive window any stream reached
};

class Mux {
 public:
  /// Starts the multiplexer on `carrier` (already connected and authenticated): sends the HTTP/2
  /// preface and settings, then reads and pings until closed. Dropping the last shared_ptr closes it.
  static std::shared_ptr<Mux> Start(std::unique_ptr<ByteStream> carrier, MuxOptions options,
                                    MuxCallbacks callbacks);
  ~Mux();
  Mux(const Mux&) = delete;
  Mux& operator=(const Mux&) = delete;

  /// Client role: opens a stream with `request_headers` (":method" defaults to POST with a local
  /// stream or body, GET otherwise; ":scheme", ":path", ":authority" get defaults). With `local` and
  /// a 200 answer the stream is spliced to `local` and `on_end` reports its end; otherwise (non-200,
  /// or no `local`) the response body is collected and handed to `on_response`, `local` is closed,
  /// and `on_end` is not called. `request_body` is sent only when `local` is null.
  void Open(Headers request_headers, std::unique_ptr<ByteStream> local, OpenHandler on_response,
            StreamEndHandler on_end = {}, std::string request_body = {});
  /// Sends GOAWAY: no new streams either way (Open fails with kDraining; the peer's on_goaway runs);
  /// streams already open go on.
  void Drain();
  /// Ends every stream (kTunnelClosed), sends GOAWAY where possible and closes the carrier.
  void Close();
  MuxStats Stats() const;

 private:
  explicit Mux(std::shared_ptr<MuxCore> core) : core_(std::move(core)) {}
  std::shared_ptr<MuxCore> core_;
};

}  // namespace lifeline::tunnel

template <>
struct std::is_error_code_enum<lifeline::tunnel::MuxErrc> : std::true_type {};
