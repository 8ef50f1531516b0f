#pragma once
// The network pieces of bench_tunnel, all in the bench's process on 127.0.0.1 with blocking sockets
// and threads (simple, and fast enough to not be the limit): the "device" server at the far end of
// every path, a relay that delays each chunk (this kernel has no netem), and the client side of the
// figures (bulk streams, echo set-ups, idle streams).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace lifeline::bench::tunnel {

/// A connected TCP socket to 127.0.0.1:port, or -1 (errno kept). Receives time out after `timeout`.
int ConnectLoopback(int port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
bool WriteAll(int fd, const void* data, std::size_t size);
/// Reads exactly `size` bytes; false on EOF, error or the socket's receive timeout.
bool ReadExact(int fd, void* data, std::size_t size);
void CloseFd(int fd);

/// The managed device's application. Per connection, the first byte says what to do:
///   'E'           echo everything until EOF (set-up and idle streams);
///   'D' + u64 n   send n bytes (little endian count), then close: a download from the device.
/// Anything else, or EOF first (the gateway's prober connects and closes), closes the connection.
/// One thread per connection; every socket is shut down by the destructor.
class DeviceServer {
 public:
  DeviceServer();
  ~DeviceServer();
  DeviceServer(const DeviceServer&) = delete;
  int port() const { return port_; }
  bool ok() const { return listen_fd_ >= 0; }
  std::int64_t connections() const { return connections_; }

 private:
  void AcceptLoop();
  void Serve(int fd);
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> connections_{0};
  std::mutex mutex_;
  std::condition_variable idle_;
  std::set<int> open_;
  int serving_ = 0;
  std::thread acceptor_;
};

/// Forwards every connection on its port to 127.0.0.1:target_port, holding each chunk `one_way` in
/// each direction before writing it on. Buffering is unbounded (a reader never waits for its writer),
/// so only the endpoints' own windows limit what is in flight, as on a long fat link.
class DelayRelay {
 public:
  DelayRelay(int target_port, std::chrono::milliseconds one_way);
  ~DelayRelay();
  DelayRelay(const DelayRelay&) = delete;
  int port() const { return port_; }
  bool ok() const { return listen_fd_ >= 0; }
  /// The most bytes held at once in one direction of one connection, over the relay's life.
  std::int64_t peak_held_bytes() const { return *peak_held_; }

  struct Pipe;
  struct Link;

 private:
  void AcceptLoop();
  int listen_fd_ = -1;
  int port_ = 0;
  int target_port_ = 0;
  std::chrono::milliseconds one_way_;
  std::atomic<bool> stop_{false};
  std::shared_ptr<std::atomic<std::int64_t>> peak_held_ = std::make_shared<std::atomic<std::int64_t>>(0);
  std::mutex mutex_;
  std::vector<std::shared_ptr<Link>> links_;
  std::thread acceptor_;
};

/// Bulk downloads from the device through `port`, `streams` at once: each asks for `bytes_each`;
/// once every stream saw its first byte the window starts, and ends when all finished or `limit`
/// passed. Per-stream bytes are those received inside the window.
struct StreamsResult {
  std::string error;  // empty: every stream ran
  double seconds = 0;  // the window
  std::vector<std::uint64_t> bytes;  // per stream, inside the window
  std::vector<double> rates;         // per stream, bytes/s inside the window (its own finish time)
  double cpu_seconds = 0;            // CPU time of the path's processes over the whole run (set by the caller)
  std::uint64_t TotalBytes() const;  // sum of bytes
  double AggregateRate() const;      // sum of bytes / window
  double Jain() const;               // Jain's fairness index over rates
};
StreamsResult RunDownloads(int port, int streams, std::uint64_t bytes_each, std::chrono::milliseconds limit);

/// One echo set-up: connect, send "E" and one byte, wait for it back. Seconds, or <0 on failure.
double EchoSetup(int port, int* keep_fd = nullptr);

/// p-th percentile (0..100) of `values` (sorted copy, nearest rank).
double Percentile(std::vector<double> values, double p);

}  // namespace lifeline::bench::tunnel
