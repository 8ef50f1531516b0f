#include "bench/tunnel_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>

namespace lifeline::bench::tunnel {
namespace {

using Clock = std::chrono::steady_clock;

void SetReceiveTimeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

void SetNoDelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A listening socket on 127.0.0.1 with an ephemeral port; -1 on failure.
int ListenLoopback(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 4096) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// Threads that serve connections hold no big stacks: 256 KiB is plenty for a read buffer pointer.
template <typename F>
bool StartDetached(F&& body) {
  try {
    std::thread(std::forward<F>(body)).detach();
    return true;
  } catch (const std::system_error&) {
    return false;
  }
}

}  // namespace

int ConnectLoopback(int port, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  SetReceiveTimeout(fd, timeout);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  SetNoDelay(fd);
  return fd;
}

bool WriteAll(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool ReadExact(int fd, void* data, std::size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t n = ::recv(fd, p, size, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

void CloseFd(int fd) {
  if (fd >= 0) {
    ::close(fd);
  }
}

// ---- DeviceServer

DeviceServer::DeviceServer() {
  listen_fd_ = ListenLoopback(&port_);
  if (listen_fd_ >= 0) {
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
}

DeviceServer::~DeviceServer() {
  stop_ = true;
  if (listen_fd_ >= 0) {
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
  }
  std::unique_lock lock(mutex_);
  for (int fd : open_) {
    ::shutdown(fd, SHUT_RDWR);
  }
  idle_.wait_for(lock, std::chrono::seconds(10), [this] { return serving_ == 0; });
}

void DeviceServer::AcceptLoop() {
  while (!stop_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
        if (errno == EMFILE || errno == ENFILE) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        continue;
      }
      return;
    }
    ++connections_;
    {
      std::lock_guard lock(mutex_);
      open_.insert(fd);
      ++serving_;
    }
    if (!StartDetached([this, fd] { Serve(fd); })) {
      std::lock_guard lock(mutex_);
      open_.erase(fd);
      --serving_;
      ::close(fd);
    }
  }
}

void DeviceServer::Serve(int fd) {
  SetNoDelay(fd);
  char mode = 0;
  if (ReadExact(fd, &mode, 1)) {
    if (mode == 'E') {
      std::vector<char> buffer(64 * 1024);
      for (;;) {
        const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
        if (n < 0 && errno == EINTR) {
          continue;
        }
        if (n <= 0 || !WriteAll(fd, buffer.data(), static_cast<std::size_t>(n))) {
          break;
        }
      }
    } else if (mode == 'D') {
      std::uint64_t count = 0;
      if (ReadExact(fd, &count, sizeof count)) {
        static const std::vector<char> block(256 * 1024, 'x');
        while (count > 0) {
          const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(count, block.size()));
          if (!WriteAll(fd, block.data(), n)) {
            break;
          }
          count -= n;
        }
        // Half-close and wait for the client's end, so the last bytes are never cut by a reset.
        ::shutdown(fd, SHUT_WR);
        SetReceiveTimeout(fd, std::chrono::seconds(30));
        char sink[4096];
        while (::recv(fd, sink, sizeof sink, 0) > 0) {
        }
      }
    }
  }
  std::lock_guard lock(mutex_);
  open_.erase(fd);
  ::close(fd);
  if (--serving_ == 0) {
    idle_.notify_all();
  }
}

// ---- DelayRelay

struct DelayRelay::Pipe {
  struct Chunk {
    Clock::time_point due;
    std::vector<char> data;  // empty: end of input
  };
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<Chunk> chunks;
  std::int64_t held = 0;
};

struct DelayRelay::Link {
  int fds[2] = {-1, -1};  // accepted side, target side
  Pipe pipes[2];          // [0]: fds[0] -> fds[1], [1]: fds[1] -> fds[0]
  std::mutex mutex;
  int running = 4;
  bool closed = false;
  void Shutdown() {
    std::lock_guard lock(mutex);
    if (!closed) {
      ::shutdown(fds[0], SHUT_RDWR);
      ::shutdown(fds[1], SHUT_RDWR);
    }
  }
  void Done() {
    std::lock_guard lock(mutex);
    if (--running == 0) {
      closed = true;
      ::close(fds[0]);
      ::close(fds[1]);
    }
  }
};

DelayRelay::DelayRelay(int target_port, std::chrono::milliseconds one_way)
    : target_port_(target_port), one_way_(one_way) {
  listen_fd_ = ListenLoopback(&port_);
  if (listen_fd_ >= 0) {
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
}

DelayRelay::~DelayRelay() {
  stop_ = true;
  if (listen_fd_ >= 0) {
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
  }
  std::lock_guard lock(mutex_);
  for (auto& link : links_) {
    link->Shutdown();
  }
  // The links' threads hold their Link alive and end on their own once the sockets are shut down;
  // they touch nothing of the relay.
}

void DelayRelay::AcceptLoop() {
  while (!stop_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      return;
    }
    const int target = ConnectLoopback(target_port_, std::chrono::hours(1));
    if (target < 0) {
      ::close(fd);
      continue;
    }
    SetReceiveTimeout(target, std::chrono::milliseconds(0));
    SetNoDelay(fd);
    auto link = std::make_shared<Link>();
    link->fds[0] = fd;
    link->fds[1] = target;
    const auto delay = one_way_;
    auto peak = peak_held_;  // shared: the threads may outlive the relay by a moment
    for (int direction = 0; direction < 2; ++direction) {
      const int from = link->fds[direction];
      const int to = link->fds[1 - direction];
      Pipe* pipe = &link->pipes[direction];
      StartDetached([link, from, pipe, delay, peak] {
        std::vector<char> buffer(256 * 1024);
        for (;;) {
          const ssize_t n = ::recv(from, buffer.data(), buffer.size(), 0);
          if (n < 0 && errno == EINTR) {
            continue;
          }
          std::lock_guard lock(pipe->mutex);
          if (n <= 0) {
            pipe->chunks.push_back({Clock::now() + delay, {}});
            pipe->ready.notify_one();
            break;
          }
          pipe->chunks.push_back({Clock::now() + delay, std::vector<char>(buffer.data(), buffer.data() + n)});
          pipe->held += n;
          if (pipe->held > peak->load(std::memory_order_relaxed)) {
            peak->store(pipe->held, std::memory_order_relaxed);
          }
          pipe->ready.notify_one();
        }
        link->Done();
      });
      StartDetached([link, to, from, pipe] {
        bool failed = false;
        for (;;) {
          Pipe::Chunk chunk;
          {
            std::unique_lock lock(pipe->mutex);
            pipe->ready.wait(lock, [pipe] { return !pipe->chunks.empty(); });
            const auto due = pipe->chunks.front().due;
            lock.unlock();
            std::this_thread::sleep_until(due);
            lock.lock();
            chunk = std::move(pipe->chunks.front());
            pipe->chunks.pop_front();
            pipe->held -= static_cast<std::int64_t>(chunk.data.size());
          }
          if (chunk.data.empty()) {
            ::shutdown(to, SHUT_WR);
            break;
          }
          if (!failed && !WriteAll(to, chunk.data.data(), chunk.data.size())) {
            // The far side is gone: stop reading this direction; the reader's EOF ends the loop.
            failed = true;
            ::shutdown(from, SHUT_RD);
          }
        }
        link->Done();
      });
    }
    std::lock_guard lock(mutex_);
    links_.push_back(std::move(link));
  }
}

// ---- Clients

std::uint64_t StreamsResult::TotalBytes() const {
  std::uint64_t total = 0;
  for (auto b : bytes) {
    total += b;
  }
  return total;
}

double StreamsResult::AggregateRate() const {
  std::uint64_t total = 0;
  for (auto b : bytes) {
    total += b;
  }
  return seconds > 0 ? static_cast<double>(total) / seconds : 0;
}

double StreamsResult::Jain() const {
  double sum = 0;
  double squares = 0;
  for (double r : rates) {
    sum += r;
    squares += r * r;
  }
  return squares > 0 ? sum * sum / (static_cast<double>(rates.size()) * squares) : 0;
}

StreamsResult RunDownloads(int port, int streams, std::uint64_t bytes_each, std::chrono::milliseconds limit) {
  StreamsResult result;
  result.bytes.assign(static_cast<std::size_t>(streams), 0);
  result.rates.assign(static_cast<std::size_t>(streams), 0);
  std::vector<Clock::time_point> ends(static_cast<std::size_t>(streams));
  std::mutex mutex;
  std::condition_variable all_arrived;
  int arrived = 0;
  Clock::time_point start;
  std::string error;
  std::vector<std::thread> threads;
  for (int i = 0; i < streams; ++i) {
    threads.emplace_back([&, i] {
      std::string failure;
      const int fd = ConnectLoopback(port, std::chrono::seconds(30));
      std::vector<char> buffer(1024 * 1024);
      std::uint64_t received = 0;
      if (fd < 0) {
        failure = std::string("connect: ") + std::strerror(errno);
      } else {
        char request[9];
        request[0] = 'D';
        std::memcpy(request + 1, &bytes_each, sizeof bytes_each);
        const ssize_t n = WriteAll(fd, request, sizeof request) ? ::recv(fd, buffer.data(), buffer.size(), 0) : -1;
        if (n <= 0) {
          failure = "no first byte from the device";
        } else {
          received = static_cast<std::uint64_t>(n);
        }
      }
      // Everyone starts counting together, once every stream runs (or failed).
      Clock::time_point window_start;
      {
        std::unique_lock lock(mutex);
        if (!failure.empty() && error.empty()) {
          error = failure;
        }
        if (++arrived == streams) {
          start = Clock::now();
          all_arrived.notify_all();
        } else {
          all_arrived.wait_for(lock, std::chrono::seconds(60), [&] { return arrived == streams; });
          if (arrived != streams && error.empty()) {
            error = "streams did not all start within 60 s";
          }
        }
        window_start = arrived == streams ? start : Clock::now();
      }
      const auto deadline = window_start + limit;
      std::uint64_t in_window = 0;
      if (failure.empty()) {
        SetReceiveTimeout(fd, std::chrono::milliseconds(100));
        while (received < bytes_each && Clock::now() < deadline) {
          const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
          if (n > 0) {
            received += static_cast<std::uint64_t>(n);
            in_window += static_cast<std::uint64_t>(n);
          } else if (n == 0) {
            break;
          } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            break;
          }
        }
      }
      const auto end = Clock::now();
      CloseFd(fd);
      std::lock_guard lock(mutex);
      result.bytes[static_cast<std::size_t>(i)] = in_window;
      ends[static_cast<std::size_t>(i)] = end;
      const double seconds = std::chrono::duration<double>(end - window_start).count();
      result.rates[static_cast<std::size_t>(i)] = seconds > 0 ? static_cast<double>(in_window) / seconds : 0;
      if (failure.empty() && received < bytes_each && end < deadline && error.empty()) {
        error = "a stream ended early";
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  result.error = error;
  Clock::time_point last = start;
  for (const auto& e : ends) {
    last = std::max(last, e);
  }
  result.seconds = std::chrono::duration<double>(last - start).count();
  return result;
}

double EchoSetup(int port, int* keep_fd) {
  const auto begin = Clock::now();
  const int fd = ConnectLoopback(port, std::chrono::seconds(20));
  if (fd < 0) {
    return -1;
  }
  char echo = 0;
  const bool ok = WriteAll(fd, "Ex", 2) && ReadExact(fd, &echo, 1) && echo == 'x';
  const double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  if (ok && keep_fd != nullptr) {
    *keep_fd = fd;
  } else {
    ::close(fd);
  }
  return ok ? seconds : -1;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace lifeline::bench::tunnel
