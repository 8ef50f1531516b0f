#include "agent/syslog_parser.h"

#include <array>
#include <cctype>
#include <charconv>

namespace lifeline::agent {
namespace {

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// The next space-separated token of `rest` (consumed, with the space after it).
std::string_view Token(std::string_view& rest) {
  const auto space = rest.find(' ');
  const std::string_view token = rest.substr(0, space);
  rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
  return token;
}

std::string Nil(std::string_view field) { return field == "-" ? std::string() : std::string(field); }

// Skips RFC 5424 structured data: "-" or one or more [id param="value"...] elements.
bool SkipStructuredData(std::string_view& rest) {
  if (rest.starts_with("-")) {
    rest.remove_prefix(1);
    return true;
  }
  if (!rest.starts_with("[")) {
    return false;
  }
  while (rest.starts_with("[")) {
    bool in_quotes = false;
    std::size_t i = 1;
    for (; i < rest.size(); ++i) {
      const char c = rest[i];
      if (in_quotes && c == '\\') {
        ++i;  // escaped ", \ or ]
      } else if (c == '"') {
        in_quotes = !in_quotes;
      } else if (c == ']' && !in_quotes) {
        break;
      }
    }
    if (i >= rest.size()) {
      return false;
    }
    rest.remove_prefix(i + 1);
  }
  return true;
}

bool IsBsdTimestamp(std::string_view text) {
  // "Mmm dd hh:mm:ss" with dd space-padded: 15 characters.
  if (text.size() < 15 || text[3] != ' ' || text[6] != ' ' || text[9] != ':' || text[12] != ':') {
    return false;
  }
  bool month = false;
  for (auto m : kMonths) {
    month = month || text.substr(0, 3) == m;
  }
  return month;
}

}  // namespace

std::string_view SyslogSeverityName(int severity) {
  static constexpr std::array<std::string_view, 8> kNames = {"emerg",   "alert",  "crit", "err",
                                                             "warning", "notice", "info", "debug"};
  return severity >= 0 && severity < 8 ? kNames[static_cast<std::size_t>(severity)] : "unknown";
}

Result<SyslogMessage> ParseSyslog(std::string_view in) {
  const auto bad = Fail(std::make_error_code(std::errc::bad_message));
  while (!in.empty() && (in.back() == '\n' || in.back() == '\r' || in.back() == '\0')) {
    in.remove_suffix(1);
  }
  if (in.size() < 3 || in[0] != '<') {
    return bad;
  }
  const auto close = in.find('>');
  if (close == std::string_view::npos || close < 2 || close > 4) {
    return bad;
  }
  int pri = 0;
  const auto [end, ec] = std::from_chars(in.data() + 1, in.data() + close, pri);
  if (ec != std::errc() || end != in.data() + close || pri > 191 || (close > 2 && in[1] == '0')) {
    return bad;
  }
  SyslogMessage msg;
  msg.facility = pri / 8;
  msg.severity = pri % 8;
  std::string_view rest = in.substr(close + 1);

  if (rest.starts_with("1 ")) {
    // RFC 5424.
    msg.rfc5424 = true;
    rest.remove_prefix(2);
    msg.timestamp = Nil(Token(rest));
    msg.host = Nil(Token(rest));
    msg.app = Nil(Token(rest));
    msg.procid = Nil(Token(rest));
    msg.msgid = Nil(Token(rest));
    if (!SkipStructuredData(rest)) {
      return bad;
    }
    if (rest.starts_with(" ")) {
      rest.remove_prefix(1);
    }
    if (rest.starts_with("\xEF\xBB\xBF")) {
      rest.remove_prefix(3);  // the BOM that marks UTF-8 text
    }
    msg.text = std::string(rest);
    return msg;
  }

  // RFC 3164 (BSD): everything after PRI is optional in practice; take what is recognisable.
  if (IsBsdTimestamp(rest)) {
    msg.timestamp = std::string(rest.substr(0, 15));
    rest.remove_prefix(15);
    if (rest.starts_with(" ")) {
      rest.remove_prefix(1);
    }
    // HOST, unless the next word is already the tag ("app:" or "app[pid]:").
    const auto space = rest.find(' ');
    const std::string_view word = rest.substr(0, space);
    if (space != std::string_view::npos && !word.ends_with(":") && word.find('[') == std::string_view::npos) {
      msg.host = std::string(word);
      rest.remove_prefix(space + 1);
    }
  }
  // TAG: up to 32 alphanumeric-ish characters ending in ':' or '[pid]:'.
  std::size_t i = 0;
  while (i < rest.size() && i <= 48 && rest[i] != ':' && rest[i] != '[' && rest[i] != ' ') {
    ++i;
  }
  if (i > 0 && i < rest.size() && (rest[i] == ':' || rest[i] == '[')) {
    std::string_view tag_end = rest.substr(i);
    std::string procid;
    if (tag_end.starts_with("[")) {
      const auto bracket = tag_end.find(']');
      if (bracket != std::string_view::npos && bracket + 1 < tag_end.size() && tag_end[bracket + 1] == ':') {
        procid = std::string(tag_end.substr(1, bracket - 1));
        tag_end.remove_prefix(bracket + 1);
      }
    }
    if (tag_end.starts_with(":")) {
      msg.app = std::string(rest.substr(0, i));
      msg.procid = std::move(procid);
      rest = tag_end.substr(1);
      if (rest.starts_with(" ")) {
        rest.remove_prefix(1);
      }
    }
  }
  msg.text = std::string(rest);
  return msg;
}

std::optional<std::string> SyslogFramer::Next() {
  while (!broken_) {
    if (discarding_) {
      const auto newline = buffer_.find('\n');
      if (newline == std::string::npos) {
        buffer_.clear();
        return std::nullopt;
      }
      buffer_.erase(0, newline + 1);
      discarding_ = false;
    }
    if (buffer_.empty()) {
      return std::nullopt;
    }
    if (std::isdigit(static_cast<unsigned char>(buffer_[0]))) {
      // Octet counting: "LEN SP MSG".
      const auto space = buffer_.find(' ');
      if (space == std::string::npos) {
        if (buffer_.size() > 10) {
          broken_ = true;
        }
        return std::nullopt;
      }
      std::size_t length = 0;
      const auto [end, ec] = std::from_chars(buffer_.data(), buffer_.data() + space, length);
      if (ec != std::errc() || end != buffer_.data() + space || length == 0 || length > max_bytes_) {
        broken_ = true;
        return std::nullopt;
      }
      if (buffer_.size() < space + 1 + length) {
        return std::nullopt;
      }
      std::string message = buffer_.substr(space + 1, length);
      buffer_.erase(0, space + 1 + length);
      return message;
    }
    const auto newline = buffer_.find('\n');
    if (newline == std::string::npos) {
      if (buffer_.size() > max_bytes_) {
        std::string message = buffer_.substr(0, max_bytes_);
        buffer_.clear();
        discarding_ = true;
        ++cut_;
        return message;
      }
      return std::nullopt;
    }
    std::string message = buffer_.substr(0, std::min(newline, max_bytes_));
    if (newline > max_bytes_) {
      ++cut_;
    }
    buffer_.erase(0, newline + 1);
    if (message.empty() || message == "\r") {
      continue;  // blank lines between messages
    }
    return message;
  }
  return std::nullopt;
}

std::optional<std::string> SyslogFramer::Finish() {
  if (broken_ || discarding_ || buffer_.empty() || std::isdigit(static_cast<unsigned char>(buffer_[0]))) {
    return std::nullopt;
  }
  std::string message = buffer_.substr(0, max_bytes_);
  buffer_.clear();
  return message;
}

}  // namespace lifeline::agent
