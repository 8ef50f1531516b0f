#pragma once
// Turns lines of text (log lines, syslog messages, command output) into alerts and clears. Each rule is
// an RE2 regular expression with an alert code, a severity, a message template and, optionally, a
// clear pattern; the first rule whose pattern (or clear pattern) matches a line wins.
//
// Templates (message and code) use {line} (the whole line), {0} (the whole match), {1}..{9} (capture
// groups; empty when the group took no part in the match), and any named value the caller passes
// (syslog passes {host}, {app}, {severity}, {facility}); {{ and }} are literal braces; any other {...}
// is left as it is. A clear line expands the rule's code template with the clear pattern's groups, so
// `disk (\w+) failed` / `disk (\w+) recovered` with code "DISK-{1}" clears exactly the disk that failed.
//
// Lines are untrusted input, so matching must stay cheap and must not crash whatever a line holds.
// RE2 runs in time linear in the line and never recurses on the input. All patterns of a set are also
// compiled into one RE2::Set, so a line that matches no rule (almost every line) costs one DFA pass
// however many rules there are; only a line the set flags is matched again by that rule alone to get
// its capture groups. Back-references (\1 in a pattern) do not exist in RE2: Compile refuses them with
// an error naming the rule. Patterns see bytes (Latin-1 mode), so any byte of a line can be matched and
// invalid UTF-8 never stops a match; only the first kMaxMatchBytes of a line are looked at (`$` does not
// match at that cut). Alerts are cut to the protocol's limits and invalid UTF-8 is replaced, so a
// strange line never makes a message the home would refuse.
#include "agent/log_follower.h"  // Errc
#include "common/result.h"
#include "protocol/message.h"

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}  // namespace re2

namespace lifeline::agent {

struct LogRule {
  std::string name;     // names the rule in errors and logs; unique within a set
  std::string pattern;  // RE2 regular expression, searched anywhere in the line
  std::string code;     // alert code template, e.g. "SIM-{1}"
  protocol::Severity severity = protocol::Severity::kError;
  std::string message = "{line}";  // alert text template
  std::string clear_pattern;       // optional: a line matching it clears the rule's alert (same code)
};

/// A named template value, e.g. {"host", "array-1"}.
using TemplateValue = std::pair<std::string_view, std::string_view>;

/// What a line matched: an alert, or the clear of an earlier alert (same code).
struct RuleMatch {
  std::size_t rule = 0;  // index of the rule in the set
  bool clear = false;
  protocol::AlertBody alert;  // for a clear: the code, the rule's severity, the text of the clear line
};

/// Expands a template (see the file comment) with named values only; used for check messages.
std::string ExpandTemplate(std::string_view text, std::span<const TemplateValue> values, std::size_t limit);

/// Valid UTF-8 of at most `max_bytes`: invalid bytes become U+FFFD, the cut falls between characters.
std::string CleanText(std::string_view in, std::size_t max_bytes);

class RuleSet {
 public:
  /// Rules see at most this many bytes of a line (a line may be up to LogFollower::kMaxLineBytes).
  static constexpr std::size_t kMaxMatchBytes = 8 * 1024;
  /// Limits the home's decoder enforces on an alert (see protocol/codec.cpp).
  static constexpr std::size_t kMaxCodeBytes = 128;
  static constexpr std::size_t kMaxTextBytes = 8192;
  static constexpr std::size_t kMaxSourceBytes = 1024;

  RuleSet();
  ~RuleSet();
  RuleSet(RuleSet&&) noexcept;
  RuleSet& operator=(RuleSet&&) noexcept;

  /// Compiles every rule. On the first invalid one (empty or duplicate name, empty pattern or code,
  /// a pattern RE2 refuses) returns Errc::kBadRule and puts one line naming the rule and its pattern
  /// in `error` (when not null).
  [[nodiscard]] static Result<RuleSet> Compile(std::vector<LogRule> rules, std::string* error);

  /// The alert for `line` from the first matching rule (clear patterns ignored), or nullopt. `source`
  /// is where the line came from (the log path). Never throws.
  std::optional<protocol::AlertBody> Match(std::string_view line, std::string_view source) const;

  /// The first rule whose pattern or clear pattern matches `line`, with `values` available to its
  /// templates. A rule's clear pattern is tried before its alert pattern
  /// (a clear pattern is usually the narrower of the two). Never throws.
  std::optional<RuleMatch> Evaluate(std::string_view line, std::string_view source,
                                    std::span<const TemplateValue> values = {}) const;

  std::size_t size() const { return compiled_.size(); }
  const LogRule& rule(std::size_t index) const { return compiled_[index].rule; }

 private:
  struct Compiled {
    LogRule rule;
    std::unique_ptr<re2::RE2> regex;
    std::unique_ptr<re2::RE2> clear;  // null without a clear pattern
  };
  std::optional<RuleMatch> Find(std::string_view line, std::string_view source,
                                std::span<const TemplateValue> values, bool include_clears) const;
  std::optional<RuleMatch> Build(const Compiled& compiled, std::size_t index, bool clear,
                                 std::string_view line, std::string_view source,
                                 std::span<const TemplateValue> values) const;
  std::vector<Compiled> compiled_;
  // Every pattern in one automaton, in priority order (rule 0's clear pattern, its pattern, rule 1's
  // clear pattern, ...); set_entries_[k] says which rule and which of its patterns entry k is.
  struct Automaton;  // wraps RE2::Set (a nested class, which cannot be declared here)
  std::unique_ptr<Automaton> set_;
  std::vector<std::pair<std::size_t, bool>> set_entries_;
};

}  // namespace lifeline::agent
