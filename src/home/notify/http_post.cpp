#include "home/notify/http_post.h"

#include "common/utf8.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <memory>

namespace lifeline::home::notify::detail {

namespace {

constexpr std::size_t kMaxAnswerBytes = 64 * 1024;  // we only quote the start of an answer

struct CurlDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

std::size_t CollectAnswer(char* data, std::size_t size, std::size_t count, void* user) {
  auto* answer = static_cast<std::string*>(user);
  const std::size_t n = size * count;
  answer->append(data, std::min(n, kMaxAnswerBytes - std::min(kMaxAnswerBytes, answer->size())));
  return n;  // keep reading (and discarding) so the connection ends cleanly
}

bool HasLineBreak(std::string_view text) {
  return text.find_first_of("\r\n") != std::string_view::npos;
}

/// The start of a receiver's answer on one line, for the log and last_error.
std::string Quote(const std::string& answer) {
  std::string flat;
  for (char c : CleanUtf8(answer, 200)) {
    flat += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  return flat;
}

}  // namespace

DeliveryResult Post(const PostRequest& request) {
  if (!request.url.starts_with("http://") && !request.url.starts_with("https://")) {
    return DeliveryResult::Permanent("the URL must start with http:// or https://");
  }
  if (HasLineBreak(request.content_type) || HasLineBreak(request.basic_user)) {
    return DeliveryResult::Permanent("a header value contains a line break");
  }
  for (const auto& [name, value] : request.headers) {
    if (HasLineBreak(name) || HasLineBreak(value) || name.find(':') != std::string::npos) {
      return DeliveryResult::Permanent(fmt::format("header '{}' is malformed", Quote(name)));
    }
  }
  std::unique_ptr<CURL, CurlDeleter> handle(curl_easy_init());
  if (!handle) {
    return DeliveryResult::Retry("curl_easy_init failed");
  }
  CURL* h = handle.get();
  curl_slist* raw_headers = nullptr;
  auto add_header = [&raw_headers](const std::string& line) {
    raw_headers = curl_slist_append(raw_headers, line.c_str());
  };
  add_header("Content-Type: " + request.content_type);
  add_header("User-Agent: lifeline-home");
  add_header("Expect:");  // no 100-continue round trip for small bodies
  for (const auto& [name, value] : request.headers) {
    add_header(name + ": " + value);
  }
  std::unique_ptr<curl_slist, SlistDeleter> headers(raw_headers);

  std::array<char, CURL_ERROR_SIZE> error_buffer{};
  std::string answer;
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer.data());
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &CollectAnswer);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  // The path to a webhook is configuration, not ambient state: ignore http(s)_proxy variables.
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!request.ca_file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, request.ca_file.c_str());
  }
  if (!request.basic_user.empty()) {
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(h, CURLOPT_USERNAME, request.basic_user.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, request.basic_password.c_str());
  }

  const CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    const char* message = error_buffer[0] != '\0' ? error_buffer.data() : curl_easy_strerror(rc);
    const std::string detail = fmt::format("{} (curl error {})", message, static_cast<int>(rc));
    return ClassifyTransferError(rc) == Outcome::kPermanent ? DeliveryResult::Permanent(detail)
                                                            : DeliveryResult::Retry(detail);
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  const std::string detail = answer.empty()
                                 ? fmt::format("HTTP {}", status)
                                 : fmt::format("HTTP {}: {}", status, Quote(answer));
  switch (ClassifyHttpStatus(static_cast<int>(status))) {
    case Outcome::kSent: return DeliveryResult::Sent(detail);
    case Outcome::kRetry: return DeliveryResult::Retry(detail);
    case Outcome::kPermanent: return DeliveryResult::Permanent(detail);
  }
  return DeliveryResult::Permanent(detail);
}

}  // namespace lifeline::home::notify::detail
