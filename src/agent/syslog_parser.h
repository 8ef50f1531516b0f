#pragma once
// Syslog messages as devices send them: RFC 5424 ("<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG") and
// the older BSD format of RFC 3164 ("<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG"), and the framing of
// syslog over TCP (RFC 6587: octet counting or one message per line). Pure functions over untrusted
// bytes: a malformed message is an error value, never a crash.
#include "common/result.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace lifeline::agent {

struct SyslogMessage {
  int facility = 1;  // user
  int severity = 5;  // notice
  bool rfc5424 = false;
  std::string timestamp;  // as sent
  std::string host;       // "" when the sender gave none
  std::string app;        // APP-NAME or the BSD tag
  std::string procid;
  std::string msgid;
  std::string text;       // the free-form message
};

/// "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug".
std::string_view SyslogSeverityName(int severity);

/// Parses one message. Fails (std::errc::bad_message) without a valid <PRI> header.
[[nodiscard]] Result<SyslogMessage> ParseSyslog(std::string_view message);

/// Splits a TCP byte stream into messages: octet-counted ("LEN SP MSG") when a frame starts with a
/// digit, else up to a newline. A frame longer than max_bytes is an error (octet counting: the
/// connection cannot be resynchronised) or cut (newline framing: the rest up to the newline dropped).
class SyslogFramer {
 public:
  explicit SyslogFramer(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  void Feed(std::string_view bytes) { buffer_.append(bytes); }
  /// The next complete message, or nullopt when more bytes are needed.
  std::optional<std::string> Next();
  /// The stream is broken (a bad octet count); the connection should be closed.
  bool broken() const { return broken_; }
  /// Messages cut to max_bytes so far.
  std::size_t cut() const { return cut_; }
  /// Whatever is left when the peer closes (a last line without a newline).
  std::optional<std::string> Finish();

 private:
  std::size_t max_bytes_;
  std::string buffer_;
  bool discarding_ = false;  // dropping the rest of an overlong line
  bool broken_ = false;
  std::size_t cut_ = 0;
};

}  // namespace lifeline::agent
