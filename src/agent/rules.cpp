#include "agent/rules.h"

#include "common/utf8.h"

#include "common/log.h"

#include <fmt/format.h>

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <array>
#include <set>

namespace lifeline::agent {
namespace {

struct Groups {
  std::array<std::optional<std::string_view>, 10> values;  // {0}..{9}; nullopt: did not take part
  std::size_t count = 0;                                    // how many exist in the pattern (+1 for {0})
};

// The longest placeholder name looked for; longer {...} runs are literal text.
constexpr std::size_t kMaxPlaceholderName = 32;

// Expands `text`, stopping early once `limit` bytes are out (the result is cut to the limit anyway;
// this only keeps "{line}{line}..." from building megabytes first).
std::string Expand(std::string_view text, const Groups& groups, std::span<const TemplateValue> values,
                   std::size_t limit) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size() && out.size() <= limit) {
    const char c = text[i];
    const std::string_view rest = text.substr(i);
    if (rest.starts_with("{{")) {
      out.push_back('{');
      i += 2;
      continue;
    }
    if (rest.starts_with("}}")) {
      out.push_back('}');
      i += 2;
      continue;
    }
    if (c == '{') {
      const std::size_t close = rest.find('}');
      if (close != std::string_view::npos && close > 1 && close <= kMaxPlaceholderName + 1) {
        const std::string_view name = rest.substr(1, close - 1);
        if (name.size() == 1 && name[0] >= '0' && name[0] <= '9') {
          const auto k = static_cast<std::size_t>(name[0] - '0');
          if (k < groups.count) {
            if (const auto& value = groups.values[k]) {
              out.append(value->substr(0, limit + 4));
            }
            i += close + 1;
            continue;
          }
        } else {
          const auto found = std::find_if(values.begin(), values.end(),
                                          [&](const TemplateValue& v) { return v.first == name; });
          if (found != values.end()) {
            out.append(found->second.substr(0, limit + 4));
            i += close + 1;
            continue;
          }
        }
      }
    }
    out.push_back(c);  // includes unknown placeholders, left as written
    ++i;
  }
  return out;
}

re2::RE2::Options PatternOptions() {
  re2::RE2::Options options;
  options.set_encoding(re2::RE2::Options::EncodingLatin1);  // bytes: invalid UTF-8 never blocks a match
  options.set_log_errors(false);                            // errors are reported once, by Compile
  return options;
}

// The length of the valid UTF-8 sequence starting at `s[0]`, or 0 when it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid, as in RFC 3629).
}  // namespace

std::string CleanText(std::string_view in, std::size_t max_bytes) { return CleanUtf8(in, max_bytes); }



std::string ExpandTemplate(std::string_view text, std::span<const TemplateValue> values, std::size_t limit) {
  return Expand(text, Groups{}, values, limit);
}

struct RuleSet::Automaton {
  re2::RE2::Set set{PatternOptions(), re2::RE2::UNANCHORED};
};

RuleSet::RuleSet() = default;
RuleSet::~RuleSet() = default;
RuleSet::RuleSet(RuleSet&&) noexcept = default;
RuleSet& RuleSet::operator=(RuleSet&&) noexcept = default;

Result<RuleSet> RuleSet::Compile(std::vector<LogRule> rules, std::string* error) {
  const auto refuse = [&](const std::string& why) -> Result<RuleSet> {
    if (error != nullptr) {
      *error = why;
    }
    return Fail(Errc::kBadRule);
  };
  const auto compile = [](const std::string& pattern, std::string* why) -> std::unique_ptr<re2::RE2> {
    auto regex = std::make_unique<re2::RE2>(pattern, PatternOptions());
    if (regex->ok()) {
      return regex;
    }
    *why = regex->error();
    // RE2 calls a back-reference a bad escape; say why it is not there.
    const auto slash = pattern.find('\\');
    if (regex->error_code() == re2::RE2::ErrorBadEscape && slash != std::string::npos &&
        why->find("\\") != std::string::npos) {
      for (std::size_t at = slash; at != std::string::npos && at + 1 < pattern.size();
           at = pattern.find('\\', at + 2)) {
        if (pattern[at + 1] >= '1' && pattern[at + 1] <= '9') {
          *why += ". Back-references are not supported: matching must stay linear in the line length.";
          break;
        }
      }
    }
    return nullptr;
  };
  RuleSet set;
  auto automaton = std::make_unique<Automaton>();
  std::set<std::string> names;
  for (std::size_t index = 0; index < rules.size(); ++index) {
    LogRule& rule = rules[index];
    if (rule.name.empty()) {
      return refuse(fmt::format("rule #{}: the name is empty", index + 1));
    }
    if (!names.insert(rule.name).second) {
      return refuse(fmt::format("rule '{}': the name is used by an earlier rule too", rule.name));
    }
    if (rule.pattern.empty()) {
      return refuse(fmt::format("rule '{}': the pattern is empty (it would match every line)", rule.name));
    }
    if (rule.code.empty()) {
      return refuse(fmt::format("rule '{}': the code is empty", rule.name));
    }
    Compiled compiled;
    std::string why;
    compiled.regex = compile(rule.pattern, &why);
    if (!compiled.regex) {
      return refuse(fmt::format("rule '{}': pattern '{}' is not a valid regular expression: {}", rule.name,
                                rule.pattern, why));
    }
    if (!rule.clear_pattern.empty()) {
      compiled.clear = compile(rule.clear_pattern, &why);
      if (!compiled.clear) {
        return refuse(fmt::format("rule '{}': clear_pattern '{}' is not a valid regular expression: {}",
                                  rule.name, rule.clear_pattern, why));
      }
    }
    // The clear pattern first: it is usually the narrower one ("... resolved" inside "SIM=... .*").
    for (const bool clear : {true, false}) {
      const std::string& pattern = clear ? rule.clear_pattern : rule.pattern;
      if (clear && pattern.empty()) {
        continue;
      }
      if (automaton->set.Add(pattern, &why) < 0) {
        return refuse(fmt::format("rule '{}': pattern '{}' cannot join the rule set: {}", rule.name, pattern, why));
      }
      set.set_entries_.emplace_back(index, clear);
    }
    compiled.rule = std::move(rule);
    set.compiled_.push_back(std::move(compiled));
  }
  if (!set.compiled_.empty()) {
    if (!automaton->set.Compile()) {
      return refuse(fmt::format("the {} rules together are too large to compile", set.compiled_.size()));
    }
    set.set_ = std::move(automaton);
  }
  return set;
}

std::optional<protocol::AlertBody> RuleSet::Match(std::string_view line, std::string_view source) const {
  if (auto match = Find(line, source, {}, /*include_clears=*/false)) {
    return std::move(match->alert);
  }
  return std::nullopt;
}

std::optional<RuleMatch> RuleSet::Evaluate(std::string_view line, std::string_view source,
                                           std::span<const TemplateValue> values) const {
  return Find(line, source, values, /*include_clears=*/true);
}

std::optional<RuleMatch> RuleSet::Find(std::string_view line, std::string_view source,
                                       std::span<const TemplateValue> values, bool include_clears) const {
  if (!set_) {
    return std::nullopt;
  }
  const std::string_view window = line.substr(0, kMaxMatchBytes);
  std::vector<int> hits;
  re2::RE2::Set::ErrorInfo info{re2::RE2::Set::kNoError};
  if (!set_->set.Match(re2::StringPiece(window.data(), window.size()), &hits, &info) &&
      info.kind != re2::RE2::Set::kNoError) {
    // The set's DFA ran out of its memory budget on this line: try each pattern on its own (still linear).
    hits.resize(set_entries_.size());
    for (std::size_t k = 0; k < hits.size(); ++k) {
      hits[k] = static_cast<int>(k);
    }
  }
  std::sort(hits.begin(), hits.end());
  for (const int hit : hits) {
    const auto [index, clear] = set_entries_[static_cast<std::size_t>(hit)];
    if (clear && !include_clears) {
      continue;
    }
    if (auto match = Build(compiled_[index], index, clear, line, source, values)) {
      return match;
    }
  }
  return std::nullopt;
}

std::optional<RuleMatch> RuleSet::Build(const Compiled& compiled, std::size_t index, bool clear,
                                        std::string_view line, std::string_view source,
                                        std::span<const TemplateValue> values) const {
  const re2::RE2& regex = clear ? *compiled.clear : *compiled.regex;
  const std::string_view window = line.substr(0, kMaxMatchBytes);
  Groups groups;
  groups.count = std::min<std::size_t>(static_cast<std::size_t>(regex.NumberOfCapturingGroups()) + 1,
                                       groups.values.size());
  std::array<re2::StringPiece, 10> pieces;
  // The whole line is the context, so `$` does not match where the window cuts it.
  if (!regex.Match(re2::StringPiece(line.data(), line.size()), 0, window.size(), re2::RE2::UNANCHORED,
                   pieces.data(), static_cast<int>(groups.count))) {
    return std::nullopt;
  }
  for (std::size_t k = 0; k < groups.count; ++k) {
    if (pieces[k].data() != nullptr) {
      groups.values[k] = std::string_view(pieces[k].data(), pieces[k].size());
    }
  }
  std::vector<TemplateValue> all(values.begin(), values.end());
  all.emplace_back("line", line);
  RuleMatch match;
  match.rule = index;
  match.clear = clear;
  match.alert.severity = compiled.rule.severity;
  match.alert.code = CleanText(Expand(compiled.rule.code, groups, all, kMaxCodeBytes), kMaxCodeBytes);
  if (match.alert.code.empty()) {
    // e.g. "{1}" with a group that matched nothing; the home refuses an empty code.
    match.alert.code = CleanText(compiled.rule.code, kMaxCodeBytes);
  }
  const std::string_view message = clear ? std::string_view("{line}") : std::string_view(compiled.rule.message);
  match.alert.text = CleanText(Expand(message, groups, all, kMaxTextBytes), kMaxTextBytes);
  match.alert.source = CleanText(source, kMaxSourceBytes);
  return match;
}

}  // namespace lifeline::agent
