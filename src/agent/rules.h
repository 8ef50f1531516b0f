#pragma once
// Turns log lines into alerts. Each rule is a regular expression (std::regex, ECMAScript grammar) with
// an alert code, a severity and a message template; the first rule that matches a line wins.
//
// Templates (message and code) use {line} (the whole line), {0} (the whole match), {1}..{9} (capture
// groups; empty when the group took no part in the match); {{ and }} are literal braces; any other
// {...} is left as it is.
//
// Log lines are untrusted input, so matching must stay cheap and must not crash whatever a line holds.
// libstdc++'s default (backtracking) matcher recurses once per character and overflows the stack on
// long lines, and can take exponential time; rules therefore run in libstdc++'s polynomial mode (a
// Thompson NFA: time linear in the line for a given rule, stack bounded by the pattern). The cost is
// that back-references (\1 in a pattern) are not supported: Compile rejects them. Only the first
// kMaxMatchBytes of a line are matched against. Alerts are cut to the protocol's limits and invalid
// UTF-8 is replaced, so a strange line never makes a message the home would refuse.
#include "agent/log_follower.h"  // Errc
#include "common/result.h"
#include "protocol/message.h"

#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::agent {

struct LogRule {
  std::string name;     // names the rule in errors and logs; unique within a set
  std::string pattern;  // ECMAScript regular expression, searched anywhere in the line
  std::string code;     // alert code template, e.g. "SIM-{1}"
  protocol::Severity severity = protocol::Severity::kError;
  std::string message = "{line}";  // alert text template
};

class RuleSet {
 public:
  /// Rules see at most this many bytes of a line (a line may be up to LogFollower::kMaxLineBytes).
  static constexpr std::size_t kMaxMatchBytes = 8 * 1024;
  /// Limits the home's decoder enforces on an alert (see protocol/codec.cpp).
  static constexpr std::size_t kMaxCodeBytes = 128;
  static constexpr std::size_t kMaxTextBytes = 8192;
  static constexpr std::size_t kMaxSourceBytes = 1024;

  RuleSet() = default;

  /// Compiles every rule. On the first invalid one (empty or duplicate name, empty pattern or code,
  /// a pattern std::regex refuses) returns Errc::kBadRule and puts one line naming the rule and its
  /// pattern in `error` (when not null).
  [[nodiscard]] static Result<RuleSet> Compile(std::vector<LogRule> rules, std::string* error);

  /// The alert for `line` from the first matching rule, or nullopt. `source` is where the line came
  /// from (the log path). Never throws.
  std::optional<protocol::AlertBody> Match(std::string_view line, std::string_view source) const;

  std::size_t size() const { return compiled_.size(); }

 private:
  struct Compiled {
    LogRule rule;
    std::regex regex;          // "[\s\S]*?(" + pattern + ")": one left-to-right pass finds the first match
    std::size_t groups = 0;    // capture groups of the rule's own pattern
  };
  std::vector<Compiled> compiled_;
};

}  // namespace lifeline::agent
