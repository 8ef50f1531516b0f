#include "agent/rules.h"

#include "common/log.h"

#include <fmt/format.h>

#include <array>
#include <set>

namespace lifeline::agent {
namespace {

// libstdc++'s extension flag: run the Thompson-NFA (breadth-first) executor instead of backtracking.
constexpr auto kSyntax = std::regex::ECMAScript | std::regex_constants::__polynomial;

struct Groups {
  std::array<std::optional<std::string_view>, 10> values;  // {0}..{9}; nullopt: did not take part
  std::size_t count = 0;                                    // how many exist in the pattern (+1 for {0})
};

// Expands `text`, stopping early once `limit` bytes are out (the result is cut to the limit anyway;
// this only keeps "{line}{line}..." from building megabytes first).
std::string Expand(std::string_view text, std::string_view line, const Groups& groups, std::size_t limit) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size() && out.size() <= limit) {
    const char c = text[i];
    const std::string_view rest = text.substr(i);
    if (rest.starts_with("{{")) {
      out.push_back('{');
      i += 2;
    } else if (rest.starts_with("}}")) {
      out.push_back('}');
      i += 2;
    } else if (rest.starts_with("{line}")) {
      out.append(line.substr(0, limit + 4));
      i += 6;
    } else if (c == '{' && rest.size() >= 3 && rest[1] >= '0' && rest[1] <= '9' && rest[2] == '}' &&
               static_cast<std::size_t>(rest[1] - '0') < groups.count) {
      if (const auto& value = groups.values[static_cast<std::size_t>(rest[1] - '0')]) {
        out.append(value->substr(0, limit + 4));
      }
      i += 3;
    } else {
      out.push_back(c);  // includes unknown placeholders, left as written
      ++i;
    }
  }
  return out;
}

// The length of the valid UTF-8 sequence starting at `s[0]`, or 0 when it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid, as in RFC 3629).
std::size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) {
    return 1;
  }
  std::size_t length = 0;
  unsigned char min1 = 0x80;
  unsigned char max1 = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    min1 = b0 == 0xE0 ? 0xA0 : 0x80;
    max1 = b0 == 0xED ? 0x9F : 0xBF;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    min1 = b0 == 0xF0 ? 0x90 : 0x80;
    max1 = b0 == 0xF4 ? 0x8F : 0xBF;
  } else {
    return 0;
  }
  if (s.size() < length || byte(1) < min1 || byte(1) > max1) {
    return 0;
  }
  for (std::size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) {
      return 0;
    }
  }
  return length;
}

// Valid UTF-8 of at most `max_bytes`: invalid bytes become U+FFFD, the cut falls between characters.
// The home's JSON decoder refuses invalid UTF-8 and over-long fields, and it would refuse the whole
// batch, so this is where a strange log line is made harmless.
std::string CleanText(std::string_view in, std::size_t max_bytes) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(std::min(in.size(), max_bytes));
  std::size_t i = 0;
  while (i < in.size()) {
    const std::size_t length = Utf8SequenceLength(in.substr(i));
    const std::string_view piece = length == 0 ? kReplacement : in.substr(i, length);
    if (out.size() + piece.size() > max_bytes) {
      break;
    }
    out.append(piece);
    i += length == 0 ? 1 : length;
  }
  return out;
}

}  // namespace

Result<RuleSet> RuleSet::Compile(std::vector<LogRule> rules, std::string* error) {
  const auto refuse = [&](const std::string& why) -> Result<RuleSet> {
    if (error != nullptr) {
      *error = why;
    }
    return Fail(Errc::kBadRule);
  };
  RuleSet set;
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
    try {
      // The pattern alone first: wrapped in a group, an unbalanced ")(" could pass unnoticed.
      const std::regex alone(rule.pattern, kSyntax);
      compiled.groups = alone.mark_count();
      compiled.regex = std::regex("[\\s\\S]*?(" + rule.pattern + ")", kSyntax | std::regex::optimize);
    } catch (const std::regex_error& e) {
      // std::regex reports a bad pattern only by exception; it is turned into an error here.
      std::string why = e.what();
      if (why.find("back-reference") != std::string::npos) {
        why += " Back-references are not supported: matching must stay linear in the line length.";
      }
      return refuse(fmt::format("rule '{}': pattern '{}' is not a valid regular expression: {}",
                                rule.name, rule.pattern, why));
    }
    compiled.rule = std::move(rule);
    set.compiled_.push_back(std::move(compiled));
  }
  return set;
}

std::optional<protocol::AlertBody> RuleSet::Match(std::string_view line, std::string_view source) const {
  const std::string_view window = line.substr(0, kMaxMatchBytes);
  auto flags = std::regex_constants::match_continuous;  // the wrapper's lazy prefix does the searching
  if (window.size() < line.size()) {
    flags |= std::regex_constants::match_not_eol;  // the window's end is not the line's end
  }
  for (const auto& compiled : compiled_) {
    std::cmatch match;
    bool found = false;
    try {
      found = std::regex_search(window.data(), window.data() + window.size(), match, compiled.regex, flags);
    } catch (const std::regex_error& e) {
      // Not expected from the NFA executor; a line that trips the library must not stop the agent.
      log::Get("agent")->warn("rule '{}' could not be evaluated on a line: {}", compiled.rule.name, e.what());
      continue;
    }
    if (!found) {
      continue;
    }
    Groups groups;
    groups.count = compiled.groups + 1;
    for (std::size_t k = 0; k < groups.count && k < groups.values.size(); ++k) {
      const auto& sub = match[k + 1];  // group 1 of the wrapper is the rule's whole match
      if (sub.matched) {
        groups.values[k] = std::string_view(sub.first, static_cast<std::size_t>(sub.second - sub.first));
      }
    }
    protocol::AlertBody alert;
    alert.severity = compiled.rule.severity;
    alert.code = CleanText(Expand(compiled.rule.code, line, groups, kMaxCodeBytes), kMaxCodeBytes);
    if (alert.code.empty()) {
      // e.g. "{1}" with a group that matched nothing; the home refuses an empty code.
      alert.code = CleanText(compiled.rule.code, kMaxCodeBytes);
    }
    alert.text = CleanText(Expand(compiled.rule.message, line, groups, kMaxTextBytes), kMaxTextBytes);
    alert.source = CleanText(source, kMaxSourceBytes);
    return alert;
  }
  return std::nullopt;
}

}  // namespace lifeline::agent
