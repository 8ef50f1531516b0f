#include "transport/mailer.h"

#include "common/log.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <random>
#include <string_view>

namespace lifeline::transport {
namespace {

const char* DescribeMail(MailErrc errc) {
  switch (errc) {
    case MailErrc::kSmtpFailed:
      return "sending the email over SMTP failed";
    case MailErrc::kInvalidMessage:
      return "the email has no valid recipient or a malformed address";
  }
  return "unknown mail error";
}

std::shared_ptr<spdlog::logger> Logger() {
  static const auto logger = log::Get("mail");
  return logger;
}

// RFC 5322 allows 998 octets per line; longer lines are split so 8bit transfer stays valid.
constexpr std::size_t kMaxLineOctets = 998;
// An RFC 2047 encoded-word is at most 75 characters: "=?UTF-8?B?" + base64 + "?=" leaves 63
// characters of base64, i.e. 45 octets of text per word (a multiple of 3, so no padding mid-text).
constexpr std::size_t kEncodedWordOctets = 45;
// Plain ASCII subjects up to this length go out as they are; longer ones are folded encoded-words.
constexpr std::size_t kPlainSubjectMax = 200;

bool IsUtf8Continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

/// The largest cut point <= `limit` in `text` that does not split a UTF-8 sequence.
std::size_t Utf8Cut(std::string_view text, std::size_t limit) {
  if (text.size() <= limit) {
    return text.size();
  }
  std::size_t cut = limit;
  while (cut > 0 && IsUtf8Continuation(text[cut])) {
    --cut;
  }
  return cut == 0 ? limit : cut;  // not UTF-8 at all: cut anywhere rather than loop forever
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) {
      v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    }
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool IsAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

/// Header text from device-supplied data: control characters (CR and LF above all, which would let
/// an alert inject headers) become spaces.
std::string WithoutControls(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      c = ' ';
    }
  }
  return out;
}

std::string EncodeSubject(std::string_view subject) {
  const std::string clean = WithoutControls(subject);
  if (IsAscii(clean) && clean.size() <= kPlainSubjectMax) {
    return clean;
  }
  std::string out;
  std::string_view rest = clean;
  while (!rest.empty()) {
    const std::size_t cut = Utf8Cut(rest, kEncodedWordOctets);
    if (!out.empty()) {
      out += "\r\n ";  // folding whitespace between encoded-words is not displayed
    }
    out += "=?UTF-8?B?" + Base64(rest.substr(0, cut)) + "?=";
    rest.remove_prefix(cut);
  }
  return out;
}

/// A bare addr-spec we are willing to put in an envelope and a header: something@something, and
/// nothing that could end the address early or start a new header or SMTP command.
bool IsPlainAddress(std::string_view address) {
  if (address.empty() || address.size() > 254) {
    return false;
  }
  const auto at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) {
    return false;
  }
  return std::none_of(address.begin(), address.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f || c == '<' || c == '>' || c == ',' || c == ';' || c == '"' ||
           c == '(' || c == ')' || c == '\\';
  });
}

/// The address inside "Name <addr>", or the whole text when there are no angle brackets.
std::string_view EnvelopeAddress(std::string_view from) {
  const auto open = from.rfind('<');
  const auto close = from.rfind('>');
  if (open != std::string_view::npos && close != std::string_view::npos && close > open) {
    return from.substr(open + 1, close - open - 1);
  }
  return from;
}

std::string RfcDate(std::chrono::system_clock::time_point when) {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  // Names spelled out here rather than strftime's %a/%b, which follow the process locale.
  return fmt::format("{}, {:02d} {} {:04d} {:02d}:{:02d}:{:02d} +0000", kDays[tm.tm_wday],
                     tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec);
}

/// The body with CRLF line endings and no line longer than the RFC 5322 limit.
std::string NormalizeBody(std::string_view body) {
  std::string out;
  out.reserve(body.size() + body.size() / 32 + 2);
  std::size_t line_start = 0;
  auto end_line = [&]() {
    out += "\r\n";
    line_start = out.size();
  };
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == '\r') {
      end_line();
      if (i + 1 < body.size() && body[i + 1] == '\n') {
        ++i;
      }
      continue;
    }
    if (c == '\n') {
      end_line();
      continue;
    }
    // Break before a character's lead byte, early enough that its continuation bytes still fit.
    if (out.size() - line_start >= kMaxLineOctets - 3 && !IsUtf8Continuation(c)) {
      end_line();
    }
    out += c;
  }
  if (out.size() != line_start || out.empty()) {
    out += "\r\n";
  }
  return out;
}

std::string RandomHex(std::size_t bytes) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    out += fmt::format("{:02x}", static_cast<unsigned>(rng() & 0xff));
  }
  return out;
}

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

struct Upload {
  std::string_view data;
  std::size_t offset = 0;
};

std::size_t ReadUpload(char* buffer, std::size_t size, std::size_t count, void* user) {
  auto* upload = static_cast<Upload*>(user);
  const std::size_t n = std::min(size * count, upload->data.size() - upload->offset);
  std::memcpy(buffer, upload->data.data() + upload->offset, n);
  upload->offset += n;
  return n;
}

curl_usessl UseSsl(SmtpSettings::Tls tls) {
  switch (tls) {
    case SmtpSettings::Tls::kOpportunistic:
      return CURLUSESSL_TRY;
    case SmtpSettings::Tls::kRequired:
      return CURLUSESSL_ALL;
    case SmtpSettings::Tls::kOff:
      return CURLUSESSL_NONE;
  }
  return CURLUSESSL_ALL;
}

}  // namespace

const std::error_category& MailCategory() {
  static const EnumErrorCategory<MailErrc> category("mail", &DescribeMail);
  return category;
}

Result<std::string> ComposeMessage(const SmtpSettings& settings, const Email& email,
                                   std::chrono::system_clock::time_point date,
                                   const std::string& message_id) {
  if (email.to.empty() || !IsPlainAddress(EnvelopeAddress(settings.from)) ||
      WithoutControls(settings.from) != settings.from) {
    return Fail(make_error_code(MailErrc::kInvalidMessage));
  }
  std::string to;
  for (const auto& address : email.to) {
    if (!IsPlainAddress(address)) {
      return Fail(make_error_code(MailErrc::kInvalidMessage));
    }
    if (!to.empty()) {
      to += ",\r\n ";  // one address per folded line keeps long lists under the line limit
    }
    to += address;
  }
  std::string message;
  message += "Date: " + RfcDate(date) + "\r\n";
  message += "Message-ID: <" + message_id + ">\r\n";
  message += "From: " + settings.from + "\r\n";
  message += "To: " + to + "\r\n";
  message += "Subject: " + EncodeSubject(email.subject) + "\r\n";
  message += "MIME-Version: 1.0\r\n";
  message += "Content-Type: text/plain; charset=utf-8\r\n";
  message += "Content-Transfer-Encoding: 8bit\r\n";
  message += "\r\n";
  message += NormalizeBody(email.body);
  return message;
}

SmtpMailer::SmtpMailer(SmtpSettings settings) : settings_(std::move(settings)) {
  // curl_global_init is not safe to race with other threads starting transfers; do it once, early.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

VoidResult SmtpMailer::Send(const Email& email, std::string* error_detail) const {
  const std::string_view from_address = EnvelopeAddress(settings_.from);
  const std::string domain(from_address.substr(from_address.rfind('@') + 1));
  auto message =
      ComposeMessage(settings_, email, std::chrono::system_clock::now(),
                     RandomHex(16) + "@" + (domain.empty() ? "lifeline.invalid" : domain));
  if (!message) {
    if (error_detail != nullptr) {
      *error_detail = "invalid sender or recipient address";
    }
    Logger()->error("not sending '{}': invalid sender '{}' or recipients '{}'",
                    WithoutControls(email.subject), WithoutControls(settings_.from),
                    WithoutControls(fmt::format("{}", fmt::join(email.to, ", "))));
    return message.error();
  }

  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) {
    if (error_detail != nullptr) {
      *error_detail = "curl_easy_init failed";
    }
    return make_error_code(MailErrc::kSmtpFailed);
  }
  curl_slist* raw_rcpt = nullptr;
  for (const auto& address : email.to) {
    curl_slist* appended = curl_slist_append(raw_rcpt, ("<" + address + ">").c_str());
    if (appended == nullptr) {
      curl_slist_free_all(raw_rcpt);
      return make_error_code(MailErrc::kSmtpFailed);
    }
    raw_rcpt = appended;
  }
  std::unique_ptr<curl_slist, SlistDeleter> recipients(raw_rcpt);

  Upload upload{*message, 0};
  std::array<char, CURL_ERROR_SIZE> error_buffer{};
  const std::string mail_from = "<" + std::string(from_address) + ">";
  const long timeout_ms = static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(settings_.timeout).count());
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer.data());
  curl_easy_setopt(h, CURLOPT_URL, settings_.url.c_str());
  // Only SMTP: a mistyped url must not turn into an HTTP or FILE transfer.
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(h, CURLOPT_MAIL_FROM, mail_from.c_str());
  curl_easy_setopt(h, CURLOPT_MAIL_RCPT, recipients.get());
  curl_easy_setopt(h, CURLOPT_READFUNCTION, &ReadUpload);
  curl_easy_setopt(h, CURLOPT_READDATA, &upload);
  curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message->size()));
  curl_easy_setopt(h, CURLOPT_USE_SSL, static_cast<long>(UseSsl(settings_.starttls)));
  curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!settings_.ca_file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, settings_.ca_file.c_str());
  }
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, settings_.verify_peer ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, settings_.verify_peer ? 2L : 0L);
  if (!settings_.username.empty()) {
    curl_easy_setopt(h, CURLOPT_USERNAME, settings_.username.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, settings_.password.c_str());
  }
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  // No SIGALRM-based resolver timeouts: this runs on worker threads.
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);

  const CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    long reply_code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply_code);
    const std::string curl_message =
        error_buffer[0] != '\0' ? std::string(error_buffer.data()) : curl_easy_strerror(rc);
    const std::string detail = fmt::format("{} (curl error {}, server reply {})", curl_message,
                                           static_cast<int>(rc), reply_code);
    Logger()->warn("email '{}' to {} via {} failed: {}", WithoutControls(email.subject),
                   fmt::join(email.to, ", "), settings_.url, detail);
    if (error_detail != nullptr) {
      *error_detail = detail;
    }
    return make_error_code(MailErrc::kSmtpFailed);
  }
  Logger()->debug("email '{}' sent to {} via {}", WithoutControls(email.subject),
                  fmt::join(email.to, ", "), settings_.url);
  return {};
}

}  // namespace lifeline::transport
