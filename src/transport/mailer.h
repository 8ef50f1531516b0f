#pragma once
// Sends emails over SMTP (libcurl): the home's notifications and the policy manager's approval
// requests. One connection per email: senders send a handful at a time, and a fresh connection
// cannot inherit a broken session from the last one.
#include "common/result.h"

#include <chrono>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

namespace lifeline::transport {

enum class MailErrc {
  kSmtpFailed = 1,  // curl or the server refused; the log line has curl's message and reply code
  kInvalidMessage,  // no recipient, or an address or header that would corrupt the message
};
const std::error_category& MailCategory();
inline std::error_code make_error_code(MailErrc errc) {
  return {static_cast<int>(errc), MailCategory()};
}

struct SmtpSettings {
  /// smtp://host:port (STARTTLS per `starttls`) or smtps://host:port (implicit TLS).
  std::string url;
  std::string from;      // "lifeline@example.com" or "Lifeline <lifeline@example.com>"
  std::string username;  // empty: no SMTP AUTH
  std::string password;
  /// STARTTLS on smtp:// URLs. kOpportunistic upgrades when the server offers it (and then verifies
  /// it); kRequired fails when it does not; kOff never upgrades.
  enum class Tls { kOpportunistic, kRequired, kOff } starttls = Tls::kOpportunistic;
  std::string ca_file;      // verify the server against this CA bundle; empty: the system store
  bool verify_peer = true;  // false only for tests against a throwaway certificate
  std::chrono::seconds timeout{30};  // whole transfer, connect included
};

struct Email {
  std::vector<std::string> to;  // bare addresses: "ops@example.com"
  std::string subject;          // UTF-8; encoded per RFC 2047 when not plain ASCII
  std::string body;             // UTF-8 plain text; any line ending
};

/// The seam senders are written against (the home's outbox dispatcher), so their tests can count
/// sends without a server.
class Mailer {
 public:
  virtual ~Mailer() = default;
  /// Sends one email; on failure `error_detail` (when given) gets curl's message and the server's
  /// reply code, fit for the outbox's last_error column.
  [[nodiscard]] virtual VoidResult Send(const Email& email,
                                        std::string* error_detail = nullptr) const = 0;
};

class SmtpMailer final : public Mailer {
 public:
  explicit SmtpMailer(SmtpSettings settings);

  /// Blocking, for at most settings.timeout: call it from a worker thread, never an I/O thread.
  [[nodiscard]] VoidResult Send(const Email& email,
                                std::string* error_detail = nullptr) const override;

  const SmtpSettings& settings() const { return settings_; }

 private:
  SmtpSettings settings_;
};

/// The full RFC 5322 message Send transmits (CRLF line endings, before SMTP dot-stuffing). Exposed
/// for tests. `date` is the Date header's time; `message_id` the Message-ID without angle brackets.
[[nodiscard]] Result<std::string> ComposeMessage(const SmtpSettings& settings, const Email& email,
                                                 std::chrono::system_clock::time_point date,
                                                 const std::string& message_id);

}  // namespace lifeline::transport

template <>
struct std::is_error_code_enum<lifeline::transport::MailErrc> : std::true_type {};
