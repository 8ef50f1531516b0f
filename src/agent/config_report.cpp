#include "agent/config_report.h"

#include "agent/log_follower.h"  // Errc
#include "common/clock.h"
#include "common/log.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <filesystem>

namespace lifeline::agent {
namespace json = boost::json;
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("agent"); }

// Linear-time executor (see rules.h); icase so "PASSWORD" and "Api_Key" are caught too.
constexpr auto kSyntax = std::regex::ECMAScript | std::regex::icase | std::regex_constants::__polynomial;

// Names that mark a value as secret, as part of a longer key too (db_password, client-secret, X-Auth-Token).
constexpr std::string_view kSecretNames =
    "password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    "credentials?|authorization|auth[_-]?key|requirepass|masterauth|psk";

std::size_t ReplaceMatches(const std::regex& pattern, std::string& line) {
  std::size_t count = 0;
  std::string out;
  auto begin = line.cbegin();
  std::size_t done = 0;  // bytes of `line` already copied to `out`
  for (std::sregex_iterator it(line.cbegin(), line.cend(), pattern), end; it != end; ++it) {
    const auto& match = *it;
    const bool grouped = match.size() > 1 && match[1].matched;
    const auto from = static_cast<std::size_t>((grouped ? match[1].first : match[0].first) - begin);
    const auto to = static_cast<std::size_t>((grouped ? match[1].second : match[0].second) - begin);
    if (to <= from || from < done) {
      continue;
    }
    out.append(line, done, from - done);
    out += Redactor::kMarker;
    done = to;
    ++count;
  }
  if (count > 0) {
    out.append(line, done, std::string::npos);
    line = std::move(out);
  }
  return count;
}

// Replaces private key blocks whole; a block without its END line runs to the end of the text.
std::string RedactKeyBlocks(std::string_view text, std::size_t* count) {
  std::string out;
  std::size_t at = 0;
  while (true) {
    const auto begin = text.find("-----BEGIN ", at);
    if (begin == std::string_view::npos) {
      break;
    }
    const auto header_end = text.find("-----", begin + 11);
    if (header_end == std::string_view::npos) {
      break;
    }
    const std::string_view label = text.substr(begin + 11, header_end - begin - 11);
    if (label.find("PRIVATE KEY") == std::string_view::npos || label.find('\n') != std::string_view::npos) {
      out.append(text.substr(at, header_end + 5 - at));
      at = header_end + 5;
      continue;
    }
    out.append(text.substr(at, header_end + 5 - at));
    const auto end_marker = text.find("-----END ", header_end + 5);
    out += '\n';
    out += Redactor::kMarker;
    out += '\n';
    ++*count;
    if (end_marker == std::string_view::npos) {
      return out;
    }
    at = end_marker;
  }
  out.append(text.substr(at));
  return out;
}

}  // namespace

const std::vector<std::string>& Redactor::DefaultPatterns() {
  static const std::vector<std::string> kDefaults = {
      // key = value, key: value, "key": "value", key => value
      fmt::format(R"([A-Za-z0-9_.-]*(?:{})[A-Za-z0-9_.-]*["']?\s*(?::|=>|=)\s*(\S.*))", kSecretNames),
      // well-known keys followed by whitespace at the start of a line (redis.conf, nginx, sshd-style)
      fmt::format(R"(^\s*[A-Za-z0-9_.-]*(?:{})[A-Za-z0-9_.-]*\s+([^\s=:].*))", kSecretNames),
      // <password>value</password>
      fmt::format(R"(<[A-Za-z0-9_.:-]*(?:{})[A-Za-z0-9_.:-]*(?:\s[^>]*)?>([^<]+))", kSecretNames),
      // AWS access key ids
      R"(\b((?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16})\b)",
      // Authorization: Bearer ..., Basic ...
      R"(\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,}))",
      // scheme://user:password@host
      R"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:([^@\s/]+)@)",
      // GitHub and Slack tokens
      R"(\b(gh[pousr]_[A-Za-z0-9]{20,}))",
      R"(\b(xox[abprs]-[A-Za-z0-9-]{10,}))",
  };
  return kDefaults;
}

Result<Redactor> Redactor::Compile(const std::vector<std::string>& extra, std::string* error) {
  auto patterns = std::make_shared<std::vector<std::regex>>();
  std::vector<std::string> all = DefaultPatterns();
  all.insert(all.end(), extra.begin(), extra.end());
  for (const auto& pattern : all) {
    const auto refuse = [&](const std::string& why) -> Result<Redactor> {
      if (error != nullptr) {
        *error = fmt::format("redact pattern '{}': {}", pattern, why);
      }
      return Fail(Errc::kBadRule);
    };
    if (pattern.empty()) {
      return refuse("is empty");
    }
    // The linear-time executor does not do back-references (see rules.h).
    for (std::size_t i = 0; i + 1 < pattern.size(); ++i) {
      if (pattern[i] == '\\') {
        if (pattern[i + 1] >= '1' && pattern[i + 1] <= '9') {
          return refuse("back-references (\\1) are not supported");
        }
        ++i;
      }
    }
    try {
      patterns->emplace_back(pattern, kSyntax);
    } catch (const std::regex_error& e) {
      return refuse(e.what());
    }
  }
  Redactor redactor;
  redactor.patterns_ = std::move(patterns);
  return redactor;
}

std::string Redactor::Redact(std::string_view text, std::size_t* count) const {
  std::size_t replaced = 0;
  const std::string blocks_done = RedactKeyBlocks(text, &replaced);
  std::string out;
  out.reserve(blocks_done.size());
  std::string_view rest = blocks_done;
  while (!rest.empty()) {
    const auto newline = rest.find('\n');
    std::string line(rest.substr(0, newline));
    if (line.size() > kMaxLineBytes) {
      line = fmt::format("{} (a line of {} bytes, longer than {}, is not searched)", kMarker, line.size(),
                         kMaxLineBytes);
      ++replaced;
    } else if (line != kMarker) {
      for (const auto& pattern : *patterns_) {
        replaced += ReplaceMatches(pattern, line);
      }
    }
    out += line;
    if (newline == std::string_view::npos) {
      break;
    }
    out += '\n';
    rest.remove_prefix(newline + 1);
  }
  if (count != nullptr) {
    *count = replaced;
  }
  return out;
}

std::string ConfigurationPayload(const std::string& path, std::string_view redacted, std::size_t original_size,
                                 bool truncated, std::size_t redactions, std::size_t budget) {
  std::string content = CleanUtf8(redacted, redacted.size() * 3);
  while (true) {
    json::object payload{{"path", CleanUtf8(path, 4096)},
                         {"sha256", Sha256Hex(content)},
                         {"size_bytes", static_cast<std::int64_t>(original_size)},
                         {"truncated", truncated},
                         {"redactions", static_cast<std::int64_t>(redactions)},
                         {"content", content}};
    std::string text = json::serialize(payload);
    if (text.size() <= budget || content.empty()) {
      return text;
    }
    // Escaping made it bigger than the budget (control characters take six bytes each): cut by the
    // excess and try again; each round shrinks the content, so this ends.
    const std::size_t excess = text.size() - budget;
    content = CleanUtf8(content, content.size() > excess ? content.size() - excess : 0);
    truncated = true;
  }
}

ConfigFileSource::ConfigFileSource(std::vector<ReportedFile> files, std::chrono::seconds interval,
                                   std::size_t max_bytes, AgentQueue& queue)
    : files_(std::move(files)), interval_(interval), max_bytes_(max_bytes), queue_(queue) {}

ConfigFileSource::~ConfigFileSource() { Stop(); }

int ConfigFileSource::Check(DetectionSink& sink, std::int64_t now_ms) {
  int queued = 0;
  for (const auto& file : files_) {
    bool truncated = false;
    auto raw = ReadFileBounded(file.path, max_bytes_, &truncated);
    std::string payload;
    std::string fingerprint;
    if (!raw) {
      // Reported once per distinct error, so the home sees that a named file went missing.
      const std::string why = raw.error().message();
      fingerprint = "error:" + why;
      payload = json::serialize(json::object{{"path", CleanUtf8(file.path, 4096)}, {"error", why}});
    } else {
      std::size_t redactions = 0;
      const std::string redacted = file.redactor.Redact(*raw, &redactions);
      std::size_t original_size = raw->size();
      if (truncated) {
        std::error_code ec;
        const auto size = std::filesystem::file_size(file.path, ec);
        original_size = ec ? raw->size() : static_cast<std::size_t>(size);
      }
      payload = ConfigurationPayload(file.path, redacted, original_size, truncated, redactions);
      fingerprint = Sha256Hex(payload);
    }
    const std::string key = StateKey(file.path);
    auto last = queue_.GetState(key);
    if (last && last->has_value() && **last == fingerprint) {
      continue;
    }
    protocol::Message message;
    message.type = protocol::MessageType::kConfiguration;
    message.timestamp_ms = now_ms;
    message.payload_json = std::move(payload);
    if (!sink.Emit({std::move(message)})) {
      return -1;
    }
    if (auto saved = queue_.SetState(key, fingerprint); !saved) {
      Log()->warn("config files: cannot save the state of {}: {}", file.path, saved.error().message());
    }
    Log()->info("config files: {} changed; queued ({})", file.path, raw ? "redacted" : raw.error().message());
    ++queued;
  }
  return queued;
}

std::chrono::milliseconds ConfigFileSource::Tick(DetectionSink& sink) {
  if (Check(sink, SystemClock::Instance().NowUnixMillis()) < 0) {
    return std::chrono::seconds(30);
  }
  return interval_;
}

}  // namespace lifeline::agent
