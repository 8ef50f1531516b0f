#pragma once
// Rule options shared by every detection source: how many occurrences make an alert, how many alerts
// a window may carry, and when a clear is due.
//
// A key is one alert condition (a rule's expanded code, a check's name). An occurrence is admitted as
// an alert once `min_count` occurrences fell within `window`, and at most `max_per_window` alerts go
// out per window; the rest are counted, not sent. A clear is sent when the gate does not know the
// condition to be clear already: after an alert, and also when it knows nothing (a fresh start), so a
// ticket opened before a restart still gets its clear; a second clear in a row is not sent.
//
// State lives in memory only: a restart resets the counting windows. Not thread-safe: each source
// owns its gate and uses it from its own thread.
#include "agent/rules.h"
#include "common/clock.h"
#include "protocol/message.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>

namespace lifeline::agent {

struct GateOptions {
  std::int64_t min_count = 1;       // occurrences within `window` before the first alert
  std::chrono::seconds window{60};  // the counting window of min_count and max_per_window
  std::int64_t max_per_window = 0;  // alerts per window and key; 0: no cap
};

class AlertGate {
 public:
  /// At most `max_keys` conditions are tracked; beyond that, idle ones are forgotten first.
  explicit AlertGate(const Clock& clock, std::size_t max_keys = 10000);

  /// Records one occurrence of `key`; true when it should be sent as an alert now.
  bool Admit(const std::string& key, const GateOptions& options);
  /// Call once the alert for `key` is stored.
  void MarkAlerted(const std::string& key);
  /// True unless `key` is known to be clear already.
  bool ShouldClear(const std::string& key) const;
  /// Call once the clear for `key` is stored: counting starts again from nothing.
  void MarkCleared(const std::string& key);
  /// The condition passed without a clear being due (never alerted): min_count starts again.
  void ResetCount(const std::string& key);
  /// True when an alert for `key` was stored and not cleared since.
  bool IsAlerted(const std::string& key) const;

  /// Occurrences not sent because min_count was not reached yet / because max_per_window was.
  std::uint64_t below_count() const { return below_count_; }
  std::uint64_t over_cap() const { return over_cap_; }

 private:
  enum class State { kUnknown, kAlerted, kClear };
  struct Entry {
    State state = State::kUnknown;
    std::deque<std::int64_t> occurrences_ms;  // within the window, at most min_count kept
    std::deque<std::int64_t> sent_ms;         // alerts admitted within the window
    std::int64_t last_ms = 0;
  };
  Entry& Get(const std::string& key);
  void Prune();
  const Clock& clock_;
  std::size_t max_keys_;
  std::unordered_map<std::string, Entry> entries_;
  std::uint64_t below_count_ = 0;
  std::uint64_t over_cap_ = 0;
};

/// For line sources (logs, syslog): the alert or clear to store for `match`, or nullopt when the gate
/// holds it back. The gate is told at once that it was sent; a line source whose store fails offers
/// the same lines again (logs) or keeps the drafts (syslog), so nothing is lost by that.
std::optional<protocol::Message> GateMatch(AlertGate& gate, const RuleMatch& match, const LogRule& rule,
                                           const GateOptions& options, std::int64_t now_ms);

}  // namespace lifeline::agent
