#include "home/notify/webhook.h"

#include "home/notify/http_post.h"

#include <sodium.h>

#include <array>
#include <cstdlib>

namespace lifeline::home::notify {

namespace {

void EnsureSodium() {
  // sodium_init is safe to call repeatedly and from several threads; it picks the fastest
  // implementations. HMAC needs no RNG, but libsodium documents init as a precondition.
  static const bool ready = [] { return sodium_init() >= 0; }();
  if (!ready) {
    std::abort();
  }
}

}  // namespace

std::string_view ToString(WebhookFormat format) {
  return format == WebhookFormat::kSlack ? "slack" : "generic";
}

std::string WebhookSignature(std::string_view secret, std::int64_t timestamp_s,
                             std::string_view body) {
  EnsureSodium();
  const std::string prefix = std::to_string(timestamp_s) + ".";
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(prefix.data()),
                                prefix.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  std::array<unsigned char, crypto_auth_hmacsha256_BYTES> mac{};
  crypto_auth_hmacsha256_final(&state, mac.data());
  std::array<char, crypto_auth_hmacsha256_BYTES * 2 + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), mac.data(), mac.size());
  return "sha256=" + std::string(hex.data());
}

DeliveryResult SendWebhook(const WebhookSettings& settings, std::string_view body,
                           std::int64_t timestamp_s, std::string_view delivery_id,
                           std::string_view event) {
  detail::PostRequest request{.url = settings.url,
                              .content_type = "application/json",
                              .body = std::string(body),
                              .timeout = settings.timeout,
                              .ca_file = settings.ca_file};
  request.headers.emplace_back("X-Lifeline-Timestamp", std::to_string(timestamp_s));
  if (!settings.secret.empty()) {
    request.headers.emplace_back("X-Lifeline-Signature",
                                 WebhookSignature(settings.secret, timestamp_s, body));
  }
  request.headers.emplace_back("X-Lifeline-Delivery", std::string(delivery_id));
  request.headers.emplace_back("X-Lifeline-Event", std::string(event));
  return detail::Post(request);
}

}  // namespace lifeline::home::notify
