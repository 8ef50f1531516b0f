#include "agent/syslog_source.h"

#include "agent/syslog_parser.h"
#include "common/log.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace lifeline::agent {
namespace {

// Drafts kept while the queue refuses them; beyond this the oldest are dropped (and counted).
constexpr std::size_t kMaxPending = 10000;

std::string Describe(const sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = {};
  int port = 0;
  if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
    return fmt::format("[{}]:{}", host, port);
  }
  const auto* in4 = reinterpret_cast<const sockaddr_in*>(&address);
  ::inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
  port = ntohs(in4->sin_port);
  return fmt::format("{}:{}", host, port);
}

// Binds a socket of `type` to "host:port" or "[v6]:port" (numeric addresses only). -1 and `error` on failure.
int Bind(const std::string& address, int type, std::string* error, int* bound_port) {
  std::string host;
  std::string port;
  if (address.starts_with("[")) {
    const auto close = address.find("]:");
    if (close == std::string::npos) {
      *error = fmt::format("'{}' is not [ADDRESS]:PORT", address);
      return -1;
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos || address.find(':') != colon) {
      *error = fmt::format("'{}' is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)", address);
      return -1;
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = type;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0 || found == nullptr) {
    *error = fmt::format("'{}' is not a numeric address and port: {}", address, ::gai_strerror(rc));
    return -1;
  }
  const int fd = ::socket(found->ai_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = fmt::format("cannot create a socket for {}: {}", address, std::strerror(errno));
    ::freeaddrinfo(found);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || (type == SOCK_STREAM && ::listen(fd, 64) != 0)) {
    *error = fmt::format("cannot listen on {}: {}", address, std::strerror(errno));
    ::freeaddrinfo(found);
    ::close(fd);
    return -1;
  }
  ::freeaddrinfo(found);
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
  *bound_port = local.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port)
                                            : ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
  return fd;
}

}  // namespace

struct SyslogSource::Connection {
  Connection(int fd, std::string peer, std::size_t max_bytes) : fd(fd), peer(std::move(peer)), framer(max_bytes) {}
  ~Connection() { ::close(fd); }
  int fd;
  std::string peer;
  SyslogFramer framer;
  std::chrono::steady_clock::time_point last_data = std::chrono::steady_clock::now();
};

SyslogSource::SyslogSource(SyslogOptions options, RuleSet rules, std::vector<GateOptions> gates, const Clock& clock)
    : options_(std::move(options)), rules_(std::move(rules)), gates_(std::move(gates)), clock_(clock), gate_(clock) {
  gates_.resize(rules_.size());
}

Result<std::unique_ptr<SyslogSource>> SyslogSource::Open(SyslogOptions options, RuleSet rules,
                                                         std::vector<GateOptions> gates, std::string* error,
                                                         const Clock& clock) {
  std::unique_ptr<SyslogSource> source(new SyslogSource(std::move(options), std::move(rules), std::move(gates), clock));
  const auto fail = [&](const std::string& why) -> Result<std::unique_ptr<SyslogSource>> {
    *error = "syslog: " + why;
    return Fail(std::make_error_code(std::errc::invalid_argument));
  };
  if (source->options_.udp.empty() && source->options_.tcp.empty()) {
    return fail("neither syslog.udp nor syslog.tcp is set");
  }
  std::string why;
  if (!source->options_.udp.empty()) {
    source->udp_fd_ = Bind(source->options_.udp, SOCK_DGRAM, &why, &source->udp_port_);
    if (source->udp_fd_ < 0) {
      return fail(why);
    }
    const auto colon = source->options_.udp.rfind(':');
    source->udp_address_ = fmt::format("{}:{}", source->options_.udp.substr(0, colon), source->udp_port_);
  }
  if (!source->options_.tcp.empty()) {
    source->tcp_fd_ = Bind(source->options_.tcp, SOCK_STREAM, &why, &source->tcp_port_);
    if (source->tcp_fd_ < 0) {
      return fail(why);
    }
    const auto colon = source->options_.tcp.rfind(':');
    source->tcp_address_ = fmt::format("{}:{}", source->options_.tcp.substr(0, colon), source->tcp_port_);
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return fail(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
  }
  source->wake_read_ = pipe_fds[0];
  source->wake_write_ = pipe_fds[1];
  auto log = log::Get("agent");
  if (source->udp_fd_ >= 0) {
    log->info("syslog listening on udp {}", source->udp_address_);
  }
  if (source->tcp_fd_ >= 0) {
    log->info("syslog listening on tcp {}", source->tcp_address_);
  }
  return source;
}

SyslogSource::~SyslogSource() {
  Stop();
  connections_.clear();
  for (int fd : {udp_fd_, tcp_fd_, wake_read_, wake_write_}) {
    if (fd >= 0) {
      ::close(fd);
    }
  }
}

std::string SyslogSource::name() const {
  std::string name = "syslog";
  if (udp_fd_ >= 0) {
    name += " udp " + udp_address_;
  }
  if (tcp_fd_ >= 0) {
    name += " tcp " + tcp_address_;
  }
  return name;
}

void SyslogSource::Start(DetectionSink& sink) {
  thread_ = std::thread([this, &sink] { Run(sink); });
}

void SyslogSource::Stop() {
  if (thread_.joinable()) {
    const char byte = 1;
    (void)!::write(wake_write_, &byte, 1);
    thread_.join();
  }
}

void SyslogSource::Malformed(const std::string& peer, std::string_view why) {
  const auto count = ++malformed_;
  if (count % 100 == 1) {
    log::Get("agent")->warn("syslog: malformed input from {} ({}); {} so far (one line per 100)", peer, why, count);
  }
}

void SyslogSource::Handle(std::string_view bytes, const std::string& peer) {
  ++received_;
  auto parsed = ParseSyslog(bytes);
  if (!parsed) {
    Malformed(peer, "no <PRI> header");
    return;
  }
  const std::string severity(SyslogSeverityName(parsed->severity));
  const std::string facility = std::to_string(parsed->facility);
  const std::vector<TemplateValue> values = {
      {"host", parsed->host}, {"app", parsed->app}, {"severity", severity}, {"facility", facility}};
  const std::string source = "syslog " + (parsed->host.empty() ? peer : parsed->host);
  auto match = rules_.Evaluate(parsed->text, source, values);
  if (!match) {
    return;
  }
  auto draft = GateMatch(gate_, *match, rules_.rule(match->rule), gates_[match->rule], clock_.NowUnixMillis());
  if (!draft) {
    return;
  }
  log::Get("agent")->info("{} {} ({}) from {}: {}", draft->type == protocol::MessageType::kClear ? "clear" : "alert",
                          draft->alert.code, protocol::ToString(draft->alert.severity), source, draft->alert.text);
  if (pending_.size() >= kMaxPending) {
    pending_.pop_front();
    if (++dropped_ % 100 == 1) {
      log::Get("agent")->error("syslog: the queue refuses alerts; {} dropped so far", dropped_);
    }
  }
  pending_.push_back(std::move(*draft));
}

void SyslogSource::Flush(DetectionSink& sink) {
  if (pending_.empty()) {
    return;
  }
  std::vector<protocol::Message> drafts(pending_.begin(), pending_.end());
  if (sink.Emit(std::move(drafts))) {
    pending_.clear();
  }
}

void SyslogSource::Run(DetectionSink& sink) {
  auto log = log::Get("agent");
  std::vector<char> buffer(options_.max_message_bytes + 1);
  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({wake_read_, POLLIN, 0});
    if (udp_fd_ >= 0) {
      fds.push_back({udp_fd_, POLLIN, 0});
    }
    if (tcp_fd_ >= 0) {
      fds.push_back({tcp_fd_, POLLIN, 0});
    }
    for (const auto& c : connections_) {
      fds.push_back({c->fd, POLLIN, 0});
    }
    const int timeout_ms = pending_.empty() ? 1000 : 200;
    const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) {
      log->error("syslog: poll failed: {}", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (fds[0].revents != 0) {
      break;  // Stop()
    }
    std::size_t index = 1;
    if (udp_fd_ >= 0) {
      if (fds[index].revents & POLLIN) {
        // Drain what is there, bounded so TCP peers get their turn.
        for (int n = 0; n < 256; ++n) {
          sockaddr_storage from{};
          socklen_t length = sizeof(from);
          const ssize_t got = ::recvfrom(udp_fd_, buffer.data(), buffer.size(), MSG_TRUNC,
                                         reinterpret_cast<sockaddr*>(&from), &length);
          if (got < 0) {
            break;
          }
          const std::string peer = Describe(from);
          if (static_cast<std::size_t>(got) > options_.max_message_bytes) {
            Malformed(peer, fmt::format("datagram of {} bytes, over {}", got, options_.max_message_bytes));
            continue;
          }
          Handle(std::string_view(buffer.data(), static_cast<std::size_t>(got)), peer);
        }
      }
      ++index;
    }
    if (tcp_fd_ >= 0) {
      if (fds[index].revents & POLLIN) {
        for (int n = 0; n < 64; ++n) {
          sockaddr_storage from{};
          socklen_t length = sizeof(from);
          const int fd = ::accept4(tcp_fd_, reinterpret_cast<sockaddr*>(&from), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) {
            break;
          }
          if (connections_.size() >= options_.max_connections) {
            ::close(fd);
            if (++refused_connections_ % 100 == 1) {
              log->warn("syslog: {} connections already open; refused {} so far", connections_.size(),
                        refused_connections_);
            }
            continue;
          }
          connections_.push_back(std::make_unique<Connection>(fd, Describe(from), options_.max_message_bytes));
        }
      }
      ++index;
    }
    // Connections: fds[index + k] belongs to connections_[k] as they were when polled (new ones are at the end).
    const auto now = std::chrono::steady_clock::now();
    const std::size_t polled = fds.size() - index;
    std::vector<bool> close(connections_.size(), false);
    for (std::size_t k = 0; k < polled; ++k) {
      Connection& c = *connections_[k];
      if (fds[index + k].revents == 0) {
        close[k] = now - c.last_data > options_.idle_timeout;
        continue;
      }
      const ssize_t got = ::recv(c.fd, buffer.data(), buffer.size(), 0);
      if (got > 0) {
        c.last_data = now;
        c.framer.Feed(std::string_view(buffer.data(), static_cast<std::size_t>(got)));
        while (auto message = c.framer.Next()) {
          Handle(*message, c.peer);
        }
        if (c.framer.broken()) {
          Malformed(c.peer, "bad octet count; connection closed");
          close[k] = true;
        }
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        if (auto last = c.framer.Finish()) {
          Handle(*last, c.peer);
        }
        close[k] = true;
      }
    }
    for (std::size_t k = close.size(); k-- > 0;) {
      if (close[k]) {
        connections_.erase(connections_.begin() + static_cast<std::ptrdiff_t>(k));
      }
    }
    Flush(sink);
  }
  Flush(sink);
}

}  // namespace lifeline::agent
