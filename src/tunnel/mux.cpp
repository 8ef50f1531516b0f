#include "tunnel/mux.h"

#include "common/log.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstring>
#include <unordered_map>

namespace lifeline::tunnel {

namespace {

using SteadyClock = std::chrono::steady_clock;

const char* DescribeMuxErrc(MuxErrc code) {
  switch (code) {
    case MuxErrc::kClosed: return "the tunnel is closed";
    case MuxErrc::kDraining: return "the tunnel is draining: no new streams";
    case MuxErrc::kStreamReset: return "the peer reset the stream";
    case MuxErrc::kRefused: return "the peer refused the stream";
    case MuxErrc::kBodyTooLarge: return "the body exceeds the tunnel's limit";
    case MuxErrc::kInvalidArgument: return "invalid headers or stream state";
    case MuxErrc::kProtocol: return "HTTP/2 protocol error on the tunnel";
  }
  return "unknown tunnel error";
}

// A stream's local read buffer starts this small (an idle ssh session costs little) and doubles
// up to MuxOptions::stream_buffer_size while reads keep filling it.
constexpr std::size_t kMinStreamBuffer = 4 * 1024;
// Bytes read from the carrier per read (fed to nghttp2_session_mem_recv); a raw TLS carrier returns
// as many records as fit.
constexpr std::size_t kCarrierReadSize = 256 * 1024;
// One carrier write carries everything nghttp2 has to send, up to this much.
constexpr std::size_t kMaxWriteBatch = 1024 * 1024;
// Close(): how long the final GOAWAY may take to go out before the carrier is closed anyway.
constexpr std::chrono::milliseconds kCloseGrace{1000};

std::string Lower(std::string text) {
  for (char& c : text) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return text;
}

}  // namespace

const std::error_category& MuxErrorCategory() {
  static const EnumErrorCategory<MuxErrc> category("lifeline.tunnel.mux", &DescribeMuxErrc);
  return category;
}

std::string_view FindHeader(const Headers& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (key == name) {
      return value;
    }
  }
  return {};
}

const char* StreamEndName(StreamEnd end) {
  switch (end) {
    case StreamEnd::kClean: return "clean";
    case StreamEnd::kResetByPeer: return "reset by peer";
    case StreamEnd::kLocalError: return "local error";
    case StreamEnd::kIdleTimeout: return "idle timeout";
    case StreamEnd::kKilled: return "killed";
    case StreamEnd::kTunnelClosed: return "tunnel closed";
  }
  return "unknown";
}

// One HTTP/2 stream and, when spliced, its local ByteStream. Lives in MuxCore::streams_ until both
// nghttp2 has closed the stream (so nghttp2's data-source pointer to it stays valid) and we have
// finished it (report given, local side closed). Touched only on the strand.
struct MuxStreamState {
  std::int32_t id = 0;
  bool opened_by_us = false;
  Headers headers;  // request headers (server) or response headers (client)
  int status = 0;

  std::unique_ptr<ByteStream> local;
  bool spliced = false;    // bytes go between the HTTP/2 stream and `local`
  bool body_mode = false;  // incoming DATA is collected as a body (consumed at once, bounded)
  bool discard_in = false; // incoming DATA is dropped (server after Reply)
  bool answered = false;   // server: Reply/Accept done; client: response handed over
  OpenHandler on_response;
  StreamEndHandler on_end;
  std::function<void(Result<std::string>)> body_handler;

  // Peer -> local. `in` fills from DATA frames while `in_writing` is being written to `local`.
  std::string in;
  std::string in_writing;
  bool in_write_pending = false;
  bool local_write_queued = false;  // in MuxCore::local_writes_: written once the carrier read is parsed
  bool peer_ended = false;      // END_STREAM received
  bool shutdown_started = false;
  bool shutdown_done = false;

  // Local -> peer: bytes [out_begin, out_end) of `out` wait for nghttp2's data source callback;
  // reads land in [out_end, out_size).
  std::unique_ptr<char[]> out;
  std::size_t out_size = 0, out_begin = 0, out_end = 0;
  std::size_t last_read = 0;
  bool reading = false;
  bool local_eof = false;  // nothing more to send after the buffered bytes
  bool has_data_source = false;
  bool deferred = false;   // the data source returned NGHTTP2_ERR_DEFERRED and waits for a resume

  // Receive-window auto-tuning.
  std::uint32_t window = 0;
  std::uint64_t epoch_consumed = 0;
  SteadyClock::time_point epoch_start;
  SteadyClock::time_point last_epoch_end;  // when it last consumed half a window (it is busy)

  std::uint64_t bytes_to_peer = 0, bytes_from_peer = 0;
  SteadyClock::time_point last_activity;
  bool h2_closed = false;
  bool h2_clean = false;  // nghttp2 closed the stream after END_STREAM both ways (no reset)
  bool finished = false;
};

using StreamPtr = std::shared_ptr<MuxStreamState>;

class MuxCore : public std::enable_shared_from_this<MuxCore> {
 public:
  MuxCore(std::unique_ptr<ByteStream> carrier, MuxOptions options, MuxCallbacks callbacks)
      : carrier_(std::move(carrier)),
        strand_(asio::make_strand(carrier_->GetExecutor())),
        options_(std::move(options)),
        callbacks_(std::move(callbacks)),
        ping_timer_(strand_),
        sweep_timer_(strand_),
        close_timer_(strand_),
        log_(log::Get("tunnel")) {
    options_.max_frame_size = std::clamp<std::uint32_t>(options_.max_frame_size, 16384, 16777215);
    options_.initial_stream_window =
        std::clamp<std::uint32_t>(options_.initial_stream_window, 65535, (1u << 31) - 1);
    options_.max_stream_window =
        std::clamp<std::uint32_t>(options_.max_stream_window, options_.initial_stream_window, (1u << 31) - 1);
    options_.connection_window = std::clamp<std::uint32_t>(options_.connection_window, 65535, (1u << 31) - 1);
    options_.stream_buffer_size = std::max(options_.stream_buffer_size, kMinStreamBuffer);
    options_.ping_misses_allowed = std::max(options_.ping_misses_allowed, 1);
    if (options_.ping_interval.count() <= 0) {
      options_.ping_interval = std::chrono::milliseconds(20000);
    }
  }

  ~MuxCore() {
    if (session_ != nullptr) {
      nghttp2_session_del(session_);
    }
  }

  template <class F>
  void Post(F&& f) {
    asio::post(strand_, [self = shared_from_this(), f = std::forward<F>(f)]() mutable { f(*self); });
  }

  void Begin();
  void Open(Headers request_headers, std::unique_ptr<ByteStream> local, OpenHandler on_response,
            StreamEndHandler on_end, std::string request_body);
  void Drain();
  void Close(const std::string& reason);
  void KillStream(std::int32_t id);
  void Reply(std::int32_t id, int status, Headers headers, std::string body);
  void Accept(std::int32_t id, Headers headers, std::unique_ptr<ByteStream> device, StreamEndHandler on_end);
  void ReadBody(std::int32_t id, std::function<void(Result<std::string>)> handler);
  MuxStats Stats() const;

 private:
  // nghttp2 callbacks (user_data is the MuxCore).
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t flags, void* user_data);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data);
  static int OnDataChunkRecv(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                             size_t len, void* user_data);
  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data);
  static ssize_t DataSourceReadLength(nghttp2_session*, uint8_t frame_type, int32_t stream_id,
                                      int32_t session_remote_window_size, int32_t stream_remote_window_size,
                                      uint32_t remote_max_frame_size, void* user_data);
  static ssize_t ReadData(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source* source, void* user_data);
  static int SendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                      nghttp2_data_source* source, void* user_data);
  static int OnError(nghttp2_session*, int lib_error_code, const char* msg, size_t len, void* user_data);

  MuxStreamState* Lookup(std::int32_t id) {
    return static_cast<MuxStreamState*>(nghttp2_session_get_stream_user_data(session_, id));
  }
  StreamPtr Find(std::int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second;
  }
  std::shared_ptr<MuxStream> Handle(std::int32_t id) {
    return std::make_shared<MuxStream>(weak_from_this(), id);
  }

  void StartRead();
  void OnCarrierRead(ErrorCode ec, std::size_t n);
  void Flush();
  void OnCarrierWritten(ErrorCode ec, std::size_t n);
  void ArmPing();
  void OnPingTimer();
  void ArmSweep();
  void TrimIdleStreams();
  void Shutdown(const std::string& reason, bool drained = false);

  void OnRequestHeaders(MuxStreamState* s);
  void OnResponseHeaders(MuxStreamState* s);
  void OnPeerEnded(MuxStreamState* s);
  void StartLocalRead(const StreamPtr& s);
  void OnLocalRead(const StreamPtr& s, ErrorCode ec, std::size_t n);
  void WriteLocal(const StreamPtr& s);
  void WriteQueuedLocals();
  void OnLocalWritten(const StreamPtr& s, ErrorCode ec, std::size_t n);
  void Consume(MuxStreamState* s, std::size_t n);
  std::uint32_t FairWindow(SteadyClock::time_point now);
  void ResumeData(MuxStreamState* s);
  void MaybeFinishClean(const StreamPtr& s);
  // `quiet`: the tunnel is going away and logs one line for all its streams.
  void Finish(const StreamPtr& s, StreamEnd end, const std::string& detail, bool quiet = false);
  void EraseIfDone(const StreamPtr& s);
  void SetOutgoingBody(MuxStreamState* s, std::string_view body);
  std::vector<nghttp2_nv> MakeNva(const Headers& headers);

  std::unique_ptr<ByteStream> carrier_;
  asio::strand<asio::any_io_executor> strand_;
  MuxOptions options_;
  MuxCallbacks callbacks_;
  asio::steady_timer ping_timer_;
  asio::steady_timer sweep_timer_;
  asio::steady_timer close_timer_;
  std::shared_ptr<spdlog::logger> log_;
  nghttp2_session* session_ = nullptr;

  std::unordered_map<std::int32_t, StreamPtr> streams_;
  std::unique_ptr<char[]> read_buffer_;
  std::string write_batch_;
  // Streams that got DATA during the current carrier read: each is written to its local side once, after
  // the whole read is parsed, so a read carrying several frames for a stream becomes one local write.
  std::vector<std::int32_t> local_writes_;
  bool write_pending_ = false;
  bool closed_ = false;
  bool closing_ = false;  // Close(): GOAWAY on its way, carrier closes after it
  std::string close_reason_;
  bool draining_ = false;
  bool goaway_received_ = false;
  SteadyClock::time_point last_received_;
  std::chrono::microseconds rtt_{0};
  std::size_t busy_streams_ = 1;
  SteadyClock::time_point busy_counted_at_;

  std::atomic<std::size_t> active_streams_{0};
  std::atomic<std::uint64_t> streams_opened_{0};
  std::atomic<std::uint64_t> bytes_sent_{0};
  std::atomic<std::uint64_t> bytes_received_{0};
  std::atomic<std::int64_t> rtt_us_{0};
  std::atomic<std::uint32_t> largest_window_{0};
};

// ---------------------------------------------------------------------------------------------
// Start, carrier I/O, keepalive, shutdown

void MuxCore::Begin() {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &OnDataChunkRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &OnStreamClose);
  nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, &DataSourceReadLength);
  nghttp2_session_callbacks_set_send_data_callback(cbs, &SendData);
  nghttp2_session_callbacks_set_error_callback2(cbs, &OnError);

  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // Flow control is ours: a stream's window opens only after its bytes reached the local side
  // (see Consume), so a stream whose reader stops holds up only its own sender.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // The streams are tunnels, not web requests: no content-length or pseudo-header policing.
  nghttp2_option_set_no_http_messaging(opt, 1);
  nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);

  int rv = options_.role == MuxRole::kClient ? nghttp2_session_client_new2(&session_, cbs, this, opt)
                                              : nghttp2_session_server_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    Shutdown(std::string("cannot create the HTTP/2 session: ") + nghttp2_strerror(rv));
    return;
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, options_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  // The connection window is large: per-stream windows do the limiting, and the connection-level
  // window is consumed as soon as bytes arrive, so it never stalls a stream.
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(options_.connection_window));
  last_received_ = SteadyClock::now();
  read_buffer_ = std::make_unique_for_overwrite<char[]>(kCarrierReadSize);
  log_->info("mux {}: started as HTTP/2 {} over {}", options_.name,
             options_.role == MuxRole::kClient ? "client (opens streams)" : "server (accepts streams)",
             carrier_->Describe());
  // A first PING right away measures the RTT that window auto-tuning needs.
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          SteadyClock::now().time_since_epoch()).count();
  uint8_t payload[8];
  std::memcpy(payload, &now_us, sizeof payload);
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, payload);
  StartRead();
  Flush();
  ArmPing();
  ArmSweep();
}

void MuxCore::StartRead() {
  if (closed_) {
    return;
  }
  carrier_->AsyncReadSome(asio::buffer(read_buffer_.get(), kCarrierReadSize),
                          [self = shared_from_this()](ErrorCode ec, std::size_t n) {
                            asio::dispatch(self->strand_, [self, ec, n] { self->OnCarrierRead(ec, n); });
                          });
}

void MuxCore::OnCarrierRead(ErrorCode ec, std::size_t n) {
  if (closed_) {
    return;
  }
  if (ec) {
    if (ec == asio::error::eof && (goaway_received_ || draining_)) {
      // Expected after a drain: whichever side finished its last stream first closes.
      Shutdown("drained: the peer closed the carrier after GOAWAY", /*drained=*/true);
    } else {
      Shutdown(ec == asio::error::eof ? std::string("the peer closed the carrier")
                                      : "carrier read failed: " + ec.message());
    }
    return;
  }
  last_received_ = SteadyClock::now();
  bytes_received_.fetch_add(n, std::memory_order_relaxed);
  const ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(read_buffer_.get()), n);
  if (rv < 0) {
    Shutdown(std::string("HTTP/2 error in what the peer sent: ") + nghttp2_strerror(static_cast<int>(rv)));
    return;
  }
  if (closed_) {
    return;
  }
  WriteQueuedLocals();
  Flush();
  StartRead();
}

void MuxCore::WriteQueuedLocals() {
  std::vector<std::int32_t> ids;
  ids.swap(local_writes_);
  for (const std::int32_t id : ids) {
    if (StreamPtr s = Find(id)) {
      s->local_write_queued = false;
      WriteLocal(s);
    }
  }
  ids.clear();
  if (local_writes_.empty()) {
    local_writes_.swap(ids);  // keeps the capacity
  }
}

void MuxCore::Flush() {
  if (closed_ || write_pending_) {
    return;
  }
  write_batch_.clear();
  // Everything nghttp2 has queued goes out in one carrier write: one TLS record run and one
  // syscall instead of one per frame.
  while (write_batch_.size() < kMaxWriteBatch) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      Shutdown(std::string("HTTP/2 send failed: ") + nghttp2_strerror(static_cast<int>(n)));
      return;
    }
    if (n == 0) {
      break;
    }
    write_batch_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    if (closed_) {
      return;
    }
  }
  if (write_batch_.empty()) {
    if (closing_) {
      Shutdown(close_reason_);
    } else if (streams_.empty() && nghttp2_session_want_read(session_) == 0 &&
               nghttp2_session_want_write(session_) == 0) {
      // A GOAWAY went one way or the other and the last stream has ended: the tunnel has drained.
      Shutdown("drained: GOAWAY exchanged and the last stream ended", /*drained=*/true);
    }
    return;
  }
  write_pending_ = true;
  carrier_->AsyncWrite(asio::buffer(write_batch_), [self = shared_from_this()](ErrorCode ec, std::size_t n) {
    asio::dispatch(self->strand_, [self, ec, n] { self->OnCarrierWritten(ec, n); });
  });
}

void MuxCore::OnCarrierWritten(ErrorCode ec, std::size_t n) {
  write_pending_ = false;
  if (closed_) {
    return;
  }
  if (ec) {
    Shutdown("carrier write failed: " + ec.message());
    return;
  }
  bytes_sent_.fetch_add(n, std::memory_order_relaxed);
  if (write_batch_.capacity() > 2 * kMaxWriteBatch) {
    std::string().swap(write_batch_);
  }
  Flush();
}

void MuxCore::ArmPing() {
  ping_timer_.expires_after(options_.ping_interval);
  ping_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
    if (!ec) {
      self->OnPingTimer();
    }
  });
}

void MuxCore::OnPingTimer() {
  if (closed_) {
    return;
  }
  const auto silent = SteadyClock::now() - last_received_;
  const auto limit = options_.ping_interval * options_.ping_misses_allowed;
  if (silent >= limit) {
    Shutdown(fmt::format("peer silent for {} ms ({} pings at {} ms intervals unanswered): declared dead",
                         std::chrono::duration_cast<std::chrono::milliseconds>(silent).count(),
                         options_.ping_misses_allowed, options_.ping_interval.count()));
    return;
  }
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          SteadyClock::now().time_since_epoch()).count();
  uint8_t payload[8];
  std::memcpy(payload, &now_us, sizeof payload);
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, payload);
  TrimIdleStreams();
  Flush();
  ArmPing();
}

void MuxCore::TrimIdleStreams() {
  // Streams quiet for a whole ping interval give back the buffers a burst left them, so 1,000
  // idle sessions cost little (docs/tunnel.md, memory).
  const auto quiet_since = SteadyClock::now() - options_.ping_interval;
  for (const auto& [id, s] : streams_) {
    if (s->last_activity > quiet_since) {
      continue;
    }
    if (s->in.empty() && s->in.capacity() > 0) {
      std::string().swap(s->in);
    }
    if (!s->in_write_pending && s->in_writing.capacity() > 0) {
      std::string().swap(s->in_writing);
    }
  }
}

void MuxCore::ArmSweep() {
  if (options_.stream_idle_timeout.count() <= 0) {
    return;
  }
  const auto period = std::clamp<std::chrono::milliseconds>(options_.stream_idle_timeout / 4,
                                                            std::chrono::milliseconds(10),
                                                            std::chrono::milliseconds(1000));
  sweep_timer_.expires_after(period);
  sweep_timer_.async_wait([self = shared_from_this()](ErrorCode ec) {
    if (ec || self->closed_) {
      return;
    }
    const auto now = SteadyClock::now();
    std::vector<StreamPtr> idle;
    for (const auto& [id, s] : self->streams_) {
      if (s->spliced && !s->finished && now - s->last_activity >= self->options_.stream_idle_timeout) {
        idle.push_back(s);
      }
    }
    for (const auto& s : idle) {
      self->Finish(s, StreamEnd::kIdleTimeout,
                   fmt::format("no bytes either way for {} ms", self->options_.stream_idle_timeout.count()));
    }
    self->Flush();
    self->ArmSweep();
  });
}

void MuxCore::Shutdown(const std::string& reason, bool drained) {
  if (closed_) {
    return;
  }
  closed_ = true;
  std::vector<StreamPtr> open;
  for (const auto& [id, s] : streams_) {
    open.push_back(s);
  }
  for (const auto& s : open) {
    if (s->h2_clean && s->spliced) {
      // Everything arrived; only the local side still has bytes or a half-close to write (a
      // drained peer closes the carrier as soon as its own side is done). It finishes by itself:
      // its pending handlers hold it.
      continue;
    }
    s->h2_closed = true;  // nghttp2 is not called again
    Finish(s, StreamEnd::kTunnelClosed, reason, /*quiet=*/true);
  }
  streams_.clear();
  ping_timer_.cancel();
  sweep_timer_.cancel();
  close_timer_.cancel();
  carrier_->Close();
  log_->log(closing_ || drained ? spdlog::level::info : spdlog::level::warn,
            "mux {}: tunnel over {} closed: {} ({} streams ended with it; {} bytes sent, {} received)",
            options_.name, carrier_->Describe(), reason, open.size(), bytes_sent_.load(),
            bytes_received_.load());
  if (callbacks_.on_closed) {
    auto on_closed = std::move(callbacks_.on_closed);
    on_closed(reason);
  }
  // Break cycles through user callbacks that may hold the Mux.
  callbacks_ = {};
}

void MuxCore::Close(const std::string& reason) {
  if (closed_ || closing_) {
    return;
  }
  closing_ = true;
  close_reason_ = reason;
  std::vector<StreamPtr> open;
  for (const auto& [id, s] : streams_) {
    open.push_back(s);
  }
  for (const auto& s : open) {
    Finish(s, StreamEnd::kTunnelClosed, reason, /*quiet=*/true);
  }
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  close_timer_.expires_after(kCloseGrace);
  close_timer_.async_wait([self = shared_from_this(), reason](ErrorCode ec) {
    if (!ec) {
      self->Shutdown(reason + " (final GOAWAY not written within the grace period)");
    }
  });
  Flush();
}

void MuxCore::Drain() {
  if (closed_ || closing_ || draining_) {
    return;
  }
  draining_ = true;
  // As a server, streams the client opened after this id are refused (it retries elsewhere); as a
  // client, the GOAWAY tells the gateway to build a tunnel to another home node.
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  log_->info("mux {}: draining: GOAWAY sent, {} streams continue", options_.name, active_streams_.load());
  Flush();
}

MuxStats MuxCore::Stats() const {
  MuxStats stats;
  stats.active_streams = active_streams_.load(std::memory_order_relaxed);
  stats.streams_opened = streams_opened_.load(std::memory_order_relaxed);
  stats.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  stats.bytes_received = bytes_received_.load(std::memory_order_relaxed);
  stats.last_rtt = std::chrono::microseconds(rtt_us_.load(std::memory_order_relaxed));
  stats.largest_stream_window = largest_window_.load(std::memory_order_relaxed);
  return stats;
}

// ---------------------------------------------------------------------------------------------
// nghttp2 callbacks

int MuxCore::OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<MuxCore*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  const int32_t id = frame->hd.stream_id;
  if (self->options_.role != MuxRole::kServer || self->draining_ || self->closing_) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  auto s = std::make_shared<MuxStreamState>();
  s->id = id;
  s->window = self->options_.initial_stream_window;
  s->epoch_start = s->last_activity = SteadyClock::now();
  self->streams_[id] = s;
  self->active_streams_.fetch_add(1, std::memory_order_relaxed);
  self->streams_opened_.fetch_add(1, std::memory_order_relaxed);
  nghttp2_session_set_stream_user_data(session, id, s.get());
  return 0;
}

int MuxCore::OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
  auto* self = static_cast<MuxCore*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS) {
    return 0;
  }
  MuxStreamState* s = self->Lookup(frame->hd.stream_id);
  if (s == nullptr || frame->headers.cat == NGHTTP2_HCAT_HEADERS) {
    return 0;  // unknown stream, or trailers: ignored
  }
  s->headers.emplace_back(std::string(reinterpret_cast<const char*>(name), namelen),
                          std::string(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int MuxCore::OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<MuxCore*>(user_data);
  switch (frame->hd.type) {
    case NGHTTP2_PING:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
        std::int64_t sent_us = 0;
        std::memcpy(&sent_us, frame->ping.opaque_data, sizeof sent_us);
        const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                SteadyClock::now().time_since_epoch()).count();
        if (now_us >= sent_us) {
          self->rtt_ = std::chrono::microseconds(now_us - sent_us);
          self->rtt_us_.store(now_us - sent_us, std::memory_order_relaxed);
        }
      }
      return 0;
    case NGHTTP2_GOAWAY:
      if (!self->goaway_received_) {
        self->goaway_received_ = true;
        self->log_->info("mux {}: the peer sent GOAWAY (error {}): no new streams; {} streams continue",
                         self->options_.name, nghttp2_http2_strerror(frame->goaway.error_code),
                         self->active_streams_.load());
        if (self->callbacks_.on_goaway) {
          self->callbacks_.on_goaway();
        }
      }
      return 0;
    case NGHTTP2_HEADERS: {
      MuxStreamState* s = self->Lookup(frame->hd.stream_id);
      if (s == nullptr) {
        return 0;
      }
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        self->OnRequestHeaders(s);
      } else if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        self->OnResponseHeaders(s);
      }
      // OnRequestHeaders/OnResponseHeaders may have finished the stream; look it up again.
      s = self->Lookup(frame->hd.stream_id);
      if (s != nullptr && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        self->OnPeerEnded(s);
      }
      return 0;
    }
    case NGHTTP2_DATA: {
      MuxStreamState* s = self->Lookup(frame->hd.stream_id);
      if (s != nullptr && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        self->OnPeerEnded(s);
      }
      return 0;
    }
    default:
      return 0;
  }
}

int MuxCore::OnDataChunkRecv(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                             size_t len, void* user_data) {
  auto* self = static_cast<MuxCore*>(user_data);
  // The connection window opens at once: per-stream windows bound what we buffer, and a
  // connection-level stall would stop every stream for the sake of one.
  nghttp2_session_consume_connection(session, len);
  MuxStreamState* s = self->Lookup(stream_id);
  if (s == nullptr || s->finished || s->discard_in) {
    nghttp2_session_consume_stream(session, stream_id, len);
    return 0;
  }
  s->last_activity = SteadyClock::now();
  s->in.append(reinterpret_cast<const char*>(data), len);
  if (s->body_mode) {
    nghttp2_session_consume_stream(session, stream_id, len);
    if (s->in.size() > self->options_.max_body_size) {
      self->log_->warn("mux {}: stream {}: body over {} bytes: stream reset", self->options_.name, stream_id,
                       self->options_.max_body_size);
      StreamPtr sp = self->Find(stream_id);
      if (s->on_response) {
        auto handler = std::move(s->on_response);
        s->on_response = nullptr;
        handler(Fail(MuxErrc::kBodyTooLarge));
      }
      if (s->body_handler) {
        auto handler = std::move(s->body_handler);
        s->body_handler = nullptr;
        handler(Fail(MuxErrc::kBodyTooLarge));
      }
      if (sp) {
        self->Finish(sp, StreamEnd::kLocalError, "body too large");
      }
    }
    return 0;
  }
  if (s->spliced && !s->local_write_queued) {
    s->local_write_queued = true;
    self->local_writes_.push_back(stream_id);
  }
  // Otherwise (server, not answered yet) the bytes wait unconsumed: the stream window bounds them.
  return 0;
}

int MuxCore::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
  auto* self = static_cast<MuxCore*>(user_data);
  StreamPtr s = self->Find(stream_id);
  if (!s) {
    return 0;
  }
  s->h2_closed = true;
  s->h2_clean = error_code == NGHTTP2_NO_ERROR && s->peer_ended;
  if (!s->finished) {
    if (!s->h2_clean) {
      if (s->on_response) {
        auto handler = std::move(s->on_response);
        s->on_response = nullptr;
        handler(Fail(error_code == NGHTTP2_REFUSED_STREAM ? MuxErrc::kRefused : MuxErrc::kStreamReset));
      }
      self->Finish(s, StreamEnd::kResetByPeer, std::string("RST_STREAM ") + nghttp2_http2_strerror(error_code));
    } else if (!s->spliced) {
      self->Finish(s, StreamEnd::kClean, "");
    } else {
      self->MaybeFinishClean(s);
    }
  }
  self->EraseIfDone(s);
  return 0;
}

ssize_t MuxCore::DataSourceReadLength(nghttp2_session*, uint8_t, int32_t, int32_t session_remote_window_size,
                                      int32_t stream_remote_window_size, uint32_t remote_max_frame_size,
                                      void*) {
  // nghttp2 cuts DATA at 16 KiB unless told otherwise; larger frames mean fewer headers and
  // callbacks per byte (docs/tunnel.md has the measurement).
  return std::min<ssize_t>({session_remote_window_size, stream_remote_window_size,
                            static_cast<ssize_t>(remote_max_frame_size)});
}

ssize_t MuxCore::ReadData(nghttp2_session*, int32_t, uint8_t*, size_t length, uint32_t* data_flags,
                          nghttp2_data_source* source, void*) {
  auto* s = static_cast<MuxStreamState*>(source->ptr);
  const std::size_t avail = s->out_end - s->out_begin;
  if (avail == 0) {
    if (s->local_eof) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    // Nothing buffered: park the stream until a local read completes (ResumeData).
    s->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  // No copy into nghttp2's frame buffer: SendData (called next, within the same mem_send) puts the
  // frame header and these bytes straight into the carrier's write batch.
  const std::size_t n = std::min(avail, length);
  *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (n == avail && s->local_eof) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(n);
}

int MuxCore::SendData(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                      nghttp2_data_source* source, void* user_data) {
  auto* self = static_cast<MuxCore*>(user_data);
  auto* s = static_cast<MuxStreamState*>(source->ptr);
  // The frame's bytes are ReadData's [out_begin, out_begin + length); we never pad.
  if (frame->data.padlen > 0 || length > s->out_end - s->out_begin) {
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  self->write_batch_.append(reinterpret_cast<const char*>(framehd), 9);
  self->write_batch_.append(s->out.get() + s->out_begin, length);
  s->out_begin += length;
  s->bytes_to_peer += length;
  if (!s->reading && !s->local_eof && s->spliced) {
    // Room again in the buffer: reading the local side resumes (it stopped when the buffer was full).
    StreamPtr sp = self->Find(s->id);
    if (sp) {
      self->StartLocalRead(sp);
    }
  }
  // A full batch goes out first; mem_send returns and the next Flush continues.
  return self->write_batch_.size() >= kMaxWriteBatch ? NGHTTP2_ERR_PAUSE : 0;
}

int MuxCore::OnError(nghttp2_session*, int lib_error_code, const char* msg, size_t len, void* user_data) {
  auto* self = static_cast<MuxCore*>(user_data);
  self->log_->warn("mux {}: HTTP/2: {} ({})", self->options_.name, std::string_view(msg, len),
                   nghttp2_strerror(lib_error_code));
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Streams

std::vector<nghttp2_nv> MuxCore::MakeNva(const Headers& headers) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(headers.size());
  for (const auto& [name, value] : headers) {
    nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                             reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                             value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nva;
}

void MuxCore::SetOutgoingBody(MuxStreamState* s, std::string_view body) {
  s->out = std::make_unique_for_overwrite<char[]>(std::max<std::size_t>(body.size(), 1));
  s->out_size = body.size();
  std::memcpy(s->out.get(), body.data(), body.size());
  s->out_begin = 0;
  s->out_end = body.size();
  s->local_eof = true;
}

void MuxCore::Open(Headers request_headers, std::unique_ptr<ByteStream> local, OpenHandler on_response,
                   StreamEndHandler on_end, std::string request_body) {
  auto fail = [&](MuxErrc code) {
    if (local) {
      local->Close();
    }
    if (on_response) {
      on_response(Fail(code));
    }
  };
  if (options_.role != MuxRole::kClient) {
    return fail(MuxErrc::kInvalidArgument);
  }
  if (draining_ || goaway_received_) {
    return fail(MuxErrc::kDraining);
  }
  if (closed_ || closing_) {
    return fail(MuxErrc::kClosed);
  }
  // Pseudo-headers first (HTTP/2 requires it), then the caller's headers with lower-case names.
  Headers headers;
  const bool has_body = local != nullptr || !request_body.empty();
  for (auto [name, fallback] : {std::pair<const char*, const char*>{":method", has_body ? "POST" : "GET"},
                                {":scheme", "https"}, {":authority", "gateway"}, {":path", "/"}}) {
    const std::string_view given = FindHeader(request_headers, name);
    headers.emplace_back(name, given.empty() ? fallback : std::string(given));
  }
  for (auto& [name, value] : request_headers) {
    if (!name.empty() && name[0] != ':') {
      headers.emplace_back(Lower(std::move(name)), std::move(value));
    }
  }
  auto s = std::make_shared<MuxStreamState>();
  s->opened_by_us = true;
  s->window = options_.initial_stream_window;
  s->epoch_start = s->last_activity = SteadyClock::now();
  s->local = std::move(local);
  s->on_response = std::move(on_response);
  s->on_end = std::move(on_end);
  if (!s->local) {
    SetOutgoingBody(s.get(), request_body);
  }
  // With a local stream the request stays open: its data source is deferred until the gateway
  // answers 200 and we start reading the local side (no bytes go to a stream that gets refused).
  nghttp2_data_provider provider{};
  provider.source.ptr = s.get();
  provider.read_callback = &ReadData;
  s->has_data_source = s->local != nullptr || !request_body.empty();
  const auto nva = MakeNva(headers);
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                            s->has_data_source ? &provider : nullptr, s.get());
  if (id < 0) {
    log_->warn("mux {}: cannot open a stream: {}", options_.name, nghttp2_strerror(id));
    local = std::move(s->local);
    on_response = std::move(s->on_response);
    return fail(id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? MuxErrc::kDraining : MuxErrc::kInvalidArgument);
  }
  s->id = id;
  streams_[id] = s;
  active_streams_.fetch_add(1, std::memory_order_relaxed);
  streams_opened_.fetch_add(1, std::memory_order_relaxed);
  Flush();
}

void MuxCore::OnRequestHeaders(MuxStreamState* s) {
  if (callbacks_.on_stream) {
    callbacks_.on_stream(std::make_shared<IncomingStream>(weak_from_this(), s->id, s->headers));
  } else {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_REFUSED_STREAM);
  }
}

void MuxCore::OnResponseHeaders(MuxStreamState* s) {
  int status = 0;
  const std::string_view text = FindHeader(s->headers, ":status");
  if (std::from_chars(text.data(), text.data() + text.size(), status).ec != std::errc() ) {
    status = 0;  // a malformed status is "not 200": the stream is not spliced
  }
  if (status >= 100 && status < 200) {
    s->headers.clear();  // informational: the real answer follows
    return;
  }
  s->status = status;
  StreamPtr sp = Find(s->id);
  if (!sp) {
    return;
  }
  Headers headers;
  for (const auto& h : s->headers) {
    if (h.first.empty() || h.first[0] != ':') {
      headers.push_back(h);
    }
  }
  s->headers = std::move(headers);
  if (status == 200 && s->local) {
    s->spliced = true;
    s->answered = true;
    s->last_activity = SteadyClock::now();
    if (s->on_response) {
      auto handler = std::move(s->on_response);
      s->on_response = nullptr;
      handler(MuxResponse{status, s->headers, {}, Handle(s->id)});
    }
    if (!sp->finished) {
      StartLocalRead(sp);
    }
    return;
  }
  // Not spliced: collect the body; our side of the request ends now.
  s->body_mode = true;
  if (s->local) {
    s->local->Close();
    s->local.reset();
    s->local_eof = true;
    ResumeData(s);
  }
  if (!s->in.empty()) {
    Consume(s, s->in.size());
  }
}

void MuxCore::OnPeerEnded(MuxStreamState* s) {
  s->peer_ended = true;
  StreamPtr sp = Find(s->id);
  if (!sp || s->finished) {
    return;
  }
  if (s->body_mode) {
    if (s->on_response) {
      auto handler = std::move(s->on_response);
      s->on_response = nullptr;
      handler(MuxResponse{s->status, s->headers, std::move(s->in), Handle(s->id)});
      s->in.clear();
    }
    if (s->body_handler) {
      auto handler = std::move(s->body_handler);
      s->body_handler = nullptr;
      std::string body = std::move(s->in);
      s->in.clear();
      handler(std::move(body));
    }
    return;
  }
  if (s->spliced) {
    WriteLocal(sp);  // writes what is left, then half-closes the local side
  }
}

void MuxCore::StartLocalRead(const StreamPtr& s) {
  if (s->reading || s->local_eof || !s->local || s->finished || closed_) {
    return;
  }
  if (s->out_begin == s->out_end) {
    s->out_begin = s->out_end = 0;
    // An idle stream (the last read was small) goes back to a small buffer.
    if (s->out_size > kMinStreamBuffer && s->last_read < kMinStreamBuffer) {
      s->out = nullptr;
      s->out_size = 0;
    }
  }
  if (!s->out) {
    s->out = std::make_unique_for_overwrite<char[]>(kMinStreamBuffer);
    s->out_size = kMinStreamBuffer;
  }
  const std::size_t live = s->out_end - s->out_begin;
  // Grow while reads fill the buffer (data flows). When the tail is short, move the unsent bytes to
  // the front only if they are few (a quarter of the buffer at most); otherwise wait until nghttp2
  // has taken them (SendData restarts the read): moving half a buffer per read was a large share of
  // the gateway's CPU.
  if (s->last_read > 0 && s->last_read * 2 >= s->out_size && s->out_size < options_.stream_buffer_size &&
      live <= s->out_size / 4) {
    const std::size_t size = std::min(s->out_size * 2, options_.stream_buffer_size);
    auto bigger = std::make_unique_for_overwrite<char[]>(size);
    std::memcpy(bigger.get(), s->out.get() + s->out_begin, live);
    s->out = std::move(bigger);
    s->out_size = size;
    s->out_begin = 0;
    s->out_end = live;
  } else if (s->out_size - s->out_end < s->out_size / 4 && s->out_begin > 0) {
    if (live > s->out_size / 4) {
      return;
    }
    std::memmove(s->out.get(), s->out.get() + s->out_begin, live);
    s->out_begin = 0;
    s->out_end = live;
  }
  if (s->out_end == s->out_size) {
    return;  // full: the data source restarts reading once nghttp2 took bytes (backpressure)
  }
  s->reading = true;
  s->local->AsyncReadSome(asio::buffer(s->out.get() + s->out_end, s->out_size - s->out_end),
                          [self = shared_from_this(), s](ErrorCode ec, std::size_t n) {
                            asio::dispatch(self->strand_, [self, s, ec, n] { self->OnLocalRead(s, ec, n); });
                          });
}

void MuxCore::OnLocalRead(const StreamPtr& s, ErrorCode ec, std::size_t n) {
  s->reading = false;
  if (s->finished || closed_) {
    return;
  }
  if (ec == asio::error::eof) {
    s->local_eof = true;
  } else if (ec) {
    Finish(s, StreamEnd::kLocalError, "local read: " + ec.message());
    Flush();
    return;
  } else {
    s->out_end += n;
    s->last_read = n;
    s->last_activity = SteadyClock::now();
  }
  ResumeData(s.get());
  StartLocalRead(s);
  Flush();
}

void MuxCore::ResumeData(MuxStreamState* s) {
  if (s->deferred && !s->h2_closed) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, s->id);
  }
}

void MuxCore::WriteLocal(const StreamPtr& s) {
  if (s->in_write_pending || !s->local || !s->spliced || s->finished) {
    return;
  }
  if (s->in.empty()) {
    if (s->peer_ended && !s->shutdown_started) {
      // The peer finished sending: pass the half-close on (ssh and TLS clients wait for it).
      s->shutdown_started = true;
      s->local->AsyncShutdownWrite([self = shared_from_this(), s](ErrorCode ec) {
        asio::dispatch(self->strand_, [self, s, ec] {
          s->shutdown_done = true;
          if (s->finished) {
            return;  // (after Shutdown, only streams that arrived complete are not finished)
          }
          if (ec && ec != asio::error::not_connected) {
            self->Finish(s, StreamEnd::kLocalError, "local shutdown: " + ec.message());
            self->Flush();
            return;
          }
          self->MaybeFinishClean(s);
          self->Flush();  // a drained tunnel may now be done
        });
      });
    }
    return;
  }
  s->in_writing.swap(s->in);
  s->in.clear();
  s->in_write_pending = true;
  s->local->AsyncWrite(asio::buffer(s->in_writing), [self = shared_from_this(), s](ErrorCode ec, std::size_t n) {
    asio::dispatch(self->strand_, [self, s, ec, n] { self->OnLocalWritten(s, ec, n); });
  });
}

void MuxCore::OnLocalWritten(const StreamPtr& s, ErrorCode ec, std::size_t n) {
  s->in_write_pending = false;
  if (s->finished) {
    return;
  }
  if (ec) {
    Finish(s, StreamEnd::kLocalError, "local write: " + ec.message());
    Flush();
    return;
  }
  s->bytes_from_peer += n;
  s->last_activity = SteadyClock::now();
  Consume(s.get(), n);
  s->in_writing.clear();
  // The two buffers are swapped and reused while data flows (freeing them after every write cost
  // page faults on every burst: mmap'd sizes); TrimIdleStreams gives them back once it stops.
  WriteLocal(s);
  Flush();
}

void MuxCore::Consume(MuxStreamState* s, std::size_t n) {
  if (s->h2_closed) {
    return;
  }
  // Only now that the bytes reached the local side does the sender get window back: a stream
  // whose reader stopped stops its own sender, never the others.
  nghttp2_session_consume_stream(session_, s->id, n);
  if (!s->spliced) {
    return;
  }
  // Auto-tuning: nghttp2 sends WINDOW_UPDATE once half the window is consumed. If that half went
  // through in under two round trips, the window (not the reader) is what limits this stream:
  // double it, up to the maximum.
  s->epoch_consumed += n;
  if (s->epoch_consumed < s->window / 2) {
    return;
  }
  const auto now = SteadyClock::now();
  s->last_epoch_end = now;
  // Busy streams share a budget of twice the largest window: one stream alone may reach the
  // maximum, 64 at once get 512 KiB each. A stream above its share shrinks to it (nghttp2 sends
  // smaller WINDOW_UPDATEs), so streams that ramped up first do not keep larger windows (and a
  // larger share of a congested link) for long.
  const std::uint32_t fair = FairWindow(now);
  std::uint32_t window = s->window;
  if (window > fair) {
    window = fair;
  } else if (window < fair && rtt_.count() > 0 &&
             now - s->epoch_start < 2 * std::max<SteadyClock::duration>(rtt_, options_.window_rtt_floor)) {
    window = static_cast<std::uint32_t>(std::min<std::uint64_t>(std::uint64_t{window} * 2, fair));
  }
  if (window != s->window) {
    if (nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, s->id,
                                              static_cast<int32_t>(window)) == 0) {
      s->window = window;
      if (window > largest_window_.load(std::memory_order_relaxed)) {
        largest_window_.store(window, std::memory_order_relaxed);
      }
    }
  }
  s->epoch_consumed = 0;
  s->epoch_start = now;
}

std::uint32_t MuxCore::FairWindow(SteadyClock::time_point now) {
  // Busy: consumed half a window within the last 4 round trips (200 ms at least). Counted at most
  // every 50 ms (a walk over all streams); idle sessions do not shrink a bulk stream's share.
  if (now - busy_counted_at_ >= std::chrono::milliseconds(50)) {
    busy_counted_at_ = now;
    const auto horizon = std::max<SteadyClock::duration>(4 * rtt_, std::chrono::milliseconds(200));
    std::size_t busy = 0;
    for (const auto& [id, s] : streams_) {
      if (s->spliced && !s->finished && now - s->last_epoch_end < horizon) {
        ++busy;
      }
    }
    busy_streams_ = std::max<std::size_t>(busy, 1);
  }
  const std::uint64_t share = 2 * std::uint64_t{options_.max_stream_window} / busy_streams_;
  return static_cast<std::uint32_t>(
      std::clamp<std::uint64_t>(share, options_.initial_stream_window, options_.max_stream_window));
}

void MuxCore::MaybeFinishClean(const StreamPtr& s) {
  if (s->finished || !s->h2_closed) {
    return;
  }
  if (s->in_write_pending || !s->in.empty() || (s->peer_ended && !s->shutdown_done)) {
    return;
  }
  Finish(s, StreamEnd::kClean, "");
  EraseIfDone(s);
}

void MuxCore::Finish(const StreamPtr& s, StreamEnd end, const std::string& detail, bool quiet) {
  if (s->finished) {
    return;
  }
  s->finished = true;
  // On Close() the GOAWAY and the carrier's end tell the peer; no RST_STREAM per stream.
  if (!s->h2_closed && !closed_ && !closing_ && end != StreamEnd::kClean) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id,
                              end == StreamEnd::kLocalError ? NGHTTP2_INTERNAL_ERROR : NGHTTP2_CANCEL);
  }
  if (s->local) {
    // Pending local operations end with operation_aborted; their handlers hold `s`, so the buffers
    // stay valid until then.
    s->local->Close();
  }
  active_streams_.fetch_sub(1, std::memory_order_relaxed);
  if (quiet) {
  } else if (end == StreamEnd::kClean) {
    log_->debug("mux {}: stream {} ended cleanly ({} bytes to peer, {} from peer)", options_.name, s->id,
                s->bytes_to_peer, s->bytes_from_peer);
  } else {
    log_->info("mux {}: stream {} ended: {}{}{} ({} bytes to peer, {} from peer)", options_.name, s->id,
               StreamEndName(end), detail.empty() ? "" : ": ", detail, s->bytes_to_peer, s->bytes_from_peer);
  }
  if (s->on_response) {
    auto handler = std::move(s->on_response);
    s->on_response = nullptr;
    handler(Fail(end == StreamEnd::kTunnelClosed ? MuxErrc::kClosed : MuxErrc::kStreamReset));
  }
  if (s->body_handler) {
    auto handler = std::move(s->body_handler);
    s->body_handler = nullptr;
    handler(Fail(end == StreamEnd::kTunnelClosed ? MuxErrc::kClosed : MuxErrc::kStreamReset));
  }
  if (s->spliced && s->on_end) {
    auto on_end = std::move(s->on_end);
    s->on_end = nullptr;
    on_end(StreamReport{s->id, s->bytes_to_peer, s->bytes_from_peer, end, detail});
  }
  s->on_end = nullptr;
  // Buffers go now; the state object itself may wait for nghttp2 to close the stream.
  std::string().swap(s->in);
  if (!s->in_write_pending) {
    std::string().swap(s->in_writing);
  }
  EraseIfDone(s);
}

void MuxCore::EraseIfDone(const StreamPtr& s) {
  if (s->finished && s->h2_closed && !closed_) {
    streams_.erase(s->id);
  }
}

void MuxCore::KillStream(std::int32_t id) {
  StreamPtr s = Find(id);
  if (!s || s->finished || closed_) {
    return;
  }
  Finish(s, StreamEnd::kKilled, "ended from outside (Reset)");
  Flush();
}

void MuxCore::Reply(std::int32_t id, int status, Headers headers, std::string body) {
  StreamPtr s = Find(id);
  if (!s || s->finished || s->answered || closed_ || s->opened_by_us) {
    log_->debug("mux {}: stream {}: reply {} dropped (stream gone or already answered)", options_.name, id, status);
    return;
  }
  s->answered = true;
  if (!s->body_mode) {
    // Whatever else the client sends is not wanted any more.
    s->discard_in = true;
    if (!s->in.empty()) {
      Consume(s.get(), s->in.size());
      std::string().swap(s->in);
    }
  }
  Headers all;
  all.emplace_back(":status", std::to_string(status));
  for (auto& [name, value] : headers) {
    all.emplace_back(Lower(std::move(name)), std::move(value));
  }
  SetOutgoingBody(s.get(), body);
  nghttp2_data_provider provider{};
  provider.source.ptr = s.get();
  provider.read_callback = &ReadData;
  s->has_data_source = !body.empty();
  const auto nva = MakeNva(all);
  const int rv = nghttp2_submit_response(session_, id, nva.data(), nva.size(), body.empty() ? nullptr : &provider);
  if (rv != 0) {
    log_->warn("mux {}: stream {}: cannot send the reply: {}", options_.name, id, nghttp2_strerror(rv));
  }
  Flush();
}

void MuxCore::Accept(std::int32_t id, Headers headers, std::unique_ptr<ByteStream> device, StreamEndHandler on_end) {
  StreamPtr s = Find(id);
  if (!s || s->finished || s->answered || closed_ || s->opened_by_us) {
    log_->info("mux {}: stream {}: ended before it was accepted; closing {}", options_.name, id,
               device ? device->Describe() : std::string("(no device)"));
    if (device) {
      device->Close();
    }
    if (on_end) {
      on_end(StreamReport{id, 0, 0, closed_ ? StreamEnd::kTunnelClosed : StreamEnd::kResetByPeer,
                          "stream ended before it was accepted"});
    }
    return;
  }
  if (!device) {
    return Reply(id, 502, {}, "no device stream");
  }
  s->answered = true;
  s->spliced = true;
  s->local = std::move(device);
  s->on_end = std::move(on_end);
  s->last_activity = SteadyClock::now();
  Headers all;
  all.emplace_back(":status", "200");
  for (auto& [name, value] : headers) {
    all.emplace_back(Lower(std::move(name)), std::move(value));
  }
  nghttp2_data_provider provider{};
  provider.source.ptr = s.get();
  provider.read_callback = &ReadData;
  s->has_data_source = true;
  const auto nva = MakeNva(all);
  const int rv = nghttp2_submit_response(session_, id, nva.data(), nva.size(), &provider);
  if (rv != 0) {
    Finish(s, StreamEnd::kLocalError, std::string("cannot send the 200: ") + nghttp2_strerror(rv));
    Flush();
    return;
  }
  StartLocalRead(s);
  WriteLocal(s);  // bytes that arrived before the answer, and a half-close that came with them
  Flush();
}

void MuxCore::ReadBody(std::int32_t id, std::function<void(Result<std::string>)> handler) {
  StreamPtr s = Find(id);
  if (!s || s->finished || closed_ || s->spliced || s->body_handler) {
    handler(Fail(closed_ ? MuxErrc::kClosed : MuxErrc::kInvalidArgument));
    return;
  }
  s->body_mode = true;
  if (!s->in.empty()) {
    Consume(s.get(), s->in.size());
  }
  if (s->peer_ended) {
    std::string body = std::move(s->in);
    s->in.clear();
    handler(std::move(body));
    return;
  }
  if (s->in.size() > options_.max_body_size) {
    handler(Fail(MuxErrc::kBodyTooLarge));
    Finish(s, StreamEnd::kLocalError, "body too large");
    Flush();
    return;
  }
  s->body_handler = std::move(handler);
  Flush();
}

// ---------------------------------------------------------------------------------------------
// Public facades: each call hops onto the strand.

std::shared_ptr<Mux> Mux::Start(std::unique_ptr<ByteStream> carrier, MuxOptions options, MuxCallbacks callbacks) {
  auto core = std::make_shared<MuxCore>(std::move(carrier), std::move(options), std::move(callbacks));
  core->Post([](MuxCore& c) { c.Begin(); });
  return std::shared_ptr<Mux>(new Mux(std::move(core)));
}

Mux::~Mux() {
  core_->Post([](MuxCore& c) { c.Close("the mux was released"); });
}

void Mux::Open(Headers request_headers, std::unique_ptr<ByteStream> local, OpenHandler on_response,
               StreamEndHandler on_end, std::string request_body) {
  core_->Post([h = std::move(request_headers), l = std::move(local), r = std::move(on_response),
               e = std::move(on_end), b = std::move(request_body)](MuxCore& c) mutable {
    c.Open(std::move(h), std::move(l), std::move(r), std::move(e), std::move(b));
  });
}

void Mux::Drain() {
  core_->Post([](MuxCore& c) { c.Drain(); });
}

void Mux::Close() {
  core_->Post([](MuxCore& c) { c.Close("closed locally"); });
}

MuxStats Mux::Stats() const { return core_->Stats(); }

void MuxStream::Reset() {
  if (auto core = core_.lock()) {
    core->Post([id = id_](MuxCore& c) { c.KillStream(id); });
  }
}

void IncomingStream::ReadBody(std::function<void(Result<std::string>)> handler) {
  if (auto core = core_.lock()) {
    core->Post([id = id_, h = std::move(handler)](MuxCore& c) mutable { c.ReadBody(id, std::move(h)); });
  } else if (handler) {
    handler(Fail(MuxErrc::kClosed));
  }
}

void IncomingStream::Reply(int status, Headers headers, std::string body) {
  if (auto core = core_.lock()) {
    core->Post([id = id_, status, h = std::move(headers), b = std::move(body)](MuxCore& c) mutable {
      c.Reply(id, status, std::move(h), std::move(b));
    });
  }
}

void IncomingStream::Accept(Headers headers, std::unique_ptr<ByteStream> device, StreamEndHandler on_end) {
  if (auto core = core_.lock()) {
    core->Post([id = id_, h = std::move(headers), d = std::move(device), e = std::move(on_end)](MuxCore& c) mutable {
      c.Accept(id, std::move(h), std::move(d), std::move(e));
    });
    return;
  }
  if (device) {
    device->Close();
  }
  if (on_end) {
    on_end(StreamReport{id_, 0, 0, StreamEnd::kTunnelClosed, "the tunnel is gone"});
  }
}

}  // namespace lifeline::tunnel
