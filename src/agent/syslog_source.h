#pragma once
// A syslog receiver for devices that can only send syslog: UDP and/or TCP (RFC 6587 framing) on the
// configured local addresses only, RFC 5424 and RFC 3164 messages, matched against [[syslog_rules]].
// One thread polls every socket (plain POSIX sockets and poll()). Untrusted input: messages are bounded
// (max_message_bytes), connections are bounded (max_connections, idle_timeout), and malformed input is
// counted with one log line per 100, never a crash.
#include "agent/alert_gate.h"
#include "agent/rules.h"
#include "agent/source.h"
#include "common/clock.h"
#include "common/result.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace lifeline::agent {

struct SyslogOptions {
  std::string udp;  // "127.0.0.1:5514", "[::1]:5514"; empty: no UDP. Port 0 picks a free port.
  std::string tcp;  // same for TCP
  std::size_t max_message_bytes = 64 * 1024;
  std::size_t max_connections = 64;
  std::chrono::seconds idle_timeout{300};
};

class SyslogSource final : public Source {
 public:
  /// Binds the sockets now, so a taken or invalid address fails the agent's start with `error`.
  /// `gates[i]` holds the gate options of rule i.
  [[nodiscard]] static Result<std::unique_ptr<SyslogSource>> Open(SyslogOptions options, RuleSet rules,
                                                                 std::vector<GateOptions> gates, std::string* error,
                                                                 const Clock& clock = SystemClock::Instance());
  ~SyslogSource() override;
  std::string name() const override;
  void Start(DetectionSink& sink) override;
  void Stop() override;

  /// The bound ports (0 when that transport is off); useful with port 0 in the config.
  int udp_port() const { return udp_port_; }
  int tcp_port() const { return tcp_port_; }
  std::uint64_t received() const { return received_; }
  std::uint64_t malformed() const { return malformed_; }

 private:
  struct Connection;
  SyslogSource(SyslogOptions options, RuleSet rules, std::vector<GateOptions> gates, const Clock& clock);
  void Run(DetectionSink& sink);
  void Handle(std::string_view message, const std::string& peer);
  void Malformed(const std::string& peer, std::string_view why);
  void Flush(DetectionSink& sink);

  SyslogOptions options_;
  RuleSet rules_;
  std::vector<GateOptions> gates_;
  const Clock& clock_;
  AlertGate gate_;
  int udp_fd_ = -1;
  int tcp_fd_ = -1;
  int wake_read_ = -1;
  int wake_write_ = -1;
  int udp_port_ = 0;
  int tcp_port_ = 0;
  std::string udp_address_;
  std::string tcp_address_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::deque<protocol::Message> pending_;  // matched, not yet stored
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> malformed_{0};
  std::uint64_t dropped_ = 0;
  std::uint64_t refused_connections_ = 0;
  std::thread thread_;
};

}  // namespace lifeline::agent
