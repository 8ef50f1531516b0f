#pragma once
// Configuration files named in agent.toml ([[config_files]]), sent as kConfiguration with secrets
// redacted BEFORE anything leaves the machine:
//   {"path":P,"sha256":H,"size_bytes":N,"truncated":B,"redactions":R,"content":C}
// (or {"path":P,"error":E} when the file cannot be read). H is the SHA-256 of C, the redacted text as
// sent, never of the original. A file is sent when that text changed since it was last sent (kept in
// the queue's state, so a restart does not resend).
//
// Redaction (std::regex, ECMAScript, case-insensitive, libstdc++'s linear-time executor as in rules.h;
// RE2 is not linked into the agent yet): private key blocks ("-----BEGIN ... PRIVATE KEY-----" up to
// "-----END ...") are replaced whole, then every pattern runs over each line. A pattern with a capture
// group has only group 1 replaced by "[REDACTED]" (so "password = [REDACTED]" keeps the key); one
// without, the whole match. Lines longer than kMaxLineBytes are replaced whole: they are not searched,
// so they cannot be shown.
#include "agent/queue.h"
#include "agent/reports.h"

#include <chrono>
#include <cstddef>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::agent {

class Redactor {
 public:
  static constexpr std::string_view kMarker = "[REDACTED]";
  static constexpr std::size_t kMaxLineBytes = 8 * 1024;

  /// The built-in patterns, always applied: key = value pairs whose key names a password, secret,
  /// token, API or access key, credential or authorization (":", "=", "=>" or whitespace after
  /// well-known keys), XML elements of such names, AWS access key ids, bearer tokens, credentials in
  /// URLs, GitHub and Slack tokens.
  static const std::vector<std::string>& DefaultPatterns();

  /// Compiles the defaults plus `extra`. Errc::kBadRule with one line in `error` for a pattern
  /// std::regex refuses or one with back-references.
  [[nodiscard]] static Result<Redactor> Compile(const std::vector<std::string>& extra, std::string* error);

  /// `text` with every secret replaced; `count` (when not null) gets the number of replacements.
  std::string Redact(std::string_view text, std::size_t* count = nullptr) const;

 private:
  std::shared_ptr<const std::vector<std::regex>> patterns_;
};

/// The payload for one file's (redacted) content, cut so that the serialized payload fits `budget`.
std::string ConfigurationPayload(const std::string& path, std::string_view redacted, std::size_t original_size,
                                 bool truncated, std::size_t redactions, std::size_t budget = kReportPayloadBudget);

struct ReportedFile {
  std::string path;
  Redactor redactor;
};

class ConfigFileSource final : public PeriodicSource {
 public:
  /// State key holding the SHA-256 of what was last sent for `path`.
  static std::string StateKey(const std::string& path) { return "config_file:" + path; }

  ConfigFileSource(std::vector<ReportedFile> files, std::chrono::seconds interval, std::size_t max_bytes,
                   AgentQueue& queue);
  ~ConfigFileSource() override;
  std::string name() const override { return "config files"; }

  /// Reads every file once and queues those that changed; returns how many were queued, or -1 when
  /// the queue refused (they are offered again next time). Public for tests.
  int Check(DetectionSink& sink, std::int64_t now_ms);

 protected:
  std::chrono::milliseconds Tick(DetectionSink& sink) override;

 private:
  std::vector<ReportedFile> files_;
  std::chrono::seconds interval_;
  std::size_t max_bytes_;
  AgentQueue& queue_;
};

}  // namespace lifeline::agent
