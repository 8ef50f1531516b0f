#include "home/notify/sms.h"

#include "home/notify/event.h"
#include "home/notify/http_post.h"

#include <boost/json.hpp>
#include <curl/curl.h>

#include <memory>

namespace lifeline::home::notify {

namespace {

std::string FormEscape(std::string_view text) {
  char* escaped = curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size()));
  if (escaped == nullptr) {
    return {};
  }
  std::string out(escaped);
  curl_free(escaped);
  return out;
}

}  // namespace

std::string SmsGatewayBody(const SmsGatewaySettings& settings, std::string_view to,
                           std::string_view text) {
  const std::string short_text = OneLine(text, kSmsMaxChars);
  if (settings.format == SmsBodyFormat::kJson) {
    boost::json::object body{{settings.to_field, to}, {settings.text_field, short_text}};
    if (!settings.from.empty()) {
      body[settings.from_field] = settings.from;
    }
    return boost::json::serialize(body);
  }
  std::string body = FormEscape(settings.to_field) + "=" + FormEscape(to) + "&" +
                     FormEscape(settings.text_field) + "=" + FormEscape(short_text);
  if (!settings.from.empty()) {
    body += "&" + FormEscape(settings.from_field) + "=" + FormEscape(settings.from);
  }
  return body;
}

DeliveryResult SendSmsViaGateway(const SmsGatewaySettings& settings, std::string_view to,
                                 std::string_view text) {
  if (settings.url.empty()) {
    return DeliveryResult::Permanent("no SMS gateway is configured ([notify.sms] gateway_url)");
  }
  if (to.empty()) {
    return DeliveryResult::Permanent("no phone number");
  }
  detail::PostRequest request{
      .url = settings.url,
      .content_type = settings.format == SmsBodyFormat::kJson ? "application/json"
                                                              : "application/x-www-form-urlencoded",
      .body = SmsGatewayBody(settings, to, text),
      .basic_user = settings.username,
      .basic_password = settings.password,
      .timeout = settings.timeout,
      .ca_file = settings.ca_file};
  if (!settings.bearer_token.empty()) {
    request.headers.emplace_back("Authorization", "Bearer " + settings.bearer_token);
  }
  return detail::Post(request);
}

DeliveryResult SendSmsViaEmail(const transport::Mailer& mailer, std::string_view address,
                               std::string_view text) {
  std::string detail;
  auto sent = mailer.Send(
      transport::Email{
          .to = {std::string(address)}, .subject = "", .body = OneLine(text, kSmsMaxChars)},
      &detail);
  if (sent) {
    return DeliveryResult::Sent();
  }
  if (detail.empty()) {
    detail = sent.error().message();
  }
  return ClassifyMailFailure(sent.error(), detail) == Outcome::kPermanent
             ? DeliveryResult::Permanent(detail)
             : DeliveryResult::Retry(detail);
}

}  // namespace lifeline::home::notify
