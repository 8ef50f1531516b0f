#include "gateway/admin_access.h"

#include "crypto/errors.h"
#include "crypto/keys.h"
#include "gateway/admin_server.h"
#include "gateway/gateway_config.h"
#include "transport/errors.h"

#include <fmt/format.h>

#include <cerrno>

namespace lifeline::gateway {
namespace {

const char* DescribeAdminAccessErrc(AdminAccessErrc code) {
  switch (code) {
    case AdminAccessErrc::kNotRunning:
      return "gateway not running";
    case AdminAccessErrc::kNoToken:
      return "no admin token: the gateway has not started with this data_dir";
    case AdminAccessErrc::kTokenUnreadable:
      return "the admin token cannot be read";
    case AdminAccessErrc::kWrongCertificate:
      return "the admin port does not present this gateway's certificate";
    case AdminAccessErrc::kFailed:
      return "the gateway's admin interface did not answer";
  }
  return "unknown admin access error";
}

std::error_code Failed(AdminAccessErrc code, std::string* detail, std::string text) {
  if (detail != nullptr) {
    *detail = std::move(text);
  }
  return code;
}

}  // namespace

const std::error_category& AdminAccessCategory() {
  static const EnumErrorCategory<AdminAccessErrc> category("lifeline.gateway.admin_access",
                                                           &DescribeAdminAccessErrc);
  return category;
}

Result<transport::ClientResponse> CallGatewayAdmin(const GatewayConfig& config,
                                                   std::string_view method,
                                                   std::string_view target, std::string_view body,
                                                   std::string* error_detail) {
  const auto not_running = fmt::format(
      "gateway not running at {} (is `lifeline gateway run` started?)", config.admin_listen);
  const auto token_path = config.AdminTokenPath();
  auto token = crypto::ReadSmallFile(token_path, 4096);
  if (!token) {
    if (token.error() == std::errc::no_such_file_or_directory) {
      return Failed(AdminAccessErrc::kNoToken, error_detail,
                    fmt::format("{}: no admin token at {} (the gateway makes it at its first start "
                                "with data_dir {})",
                                not_running, token_path.string(), config.data_dir));
    }
    return Failed(AdminAccessErrc::kTokenUnreadable, error_detail,
                  fmt::format("cannot read the admin token {}: {} (run as the gateway's user, or "
                              "root)",
                              token_path.string(), token.error().message()));
  }
  std::string bearer = *token;
  while (!bearer.empty() && (bearer.back() == '\n' || bearer.back() == '\r' || bearer.back() == ' ')) {
    bearer.pop_back();
  }

  const auto cert_path = AdminCertificatePath(config.DataDir());
  transport::HttpClient client(transport::ClientTls{.ca_file = cert_path.string()});
  auto response =
      client.Send(transport::ClientRequest{.method = std::string(method),
                                           .url = fmt::format("https://{}{}", config.admin_listen, target),
                                           .content_type = body.empty() ? "" : "application/json",
                                           .body = std::string(body),
                                           .headers = {{"Authorization", "Bearer " + bearer}},
                                           .timeout = std::chrono::seconds(30),
                                           .connect_timeout = std::chrono::seconds(5)});
  if (response) {
    return response;
  }
  const auto error = response.error();
  if (error == transport::Errc::kConnectFailed) {
    return Failed(AdminAccessErrc::kNotRunning, error_detail, not_running);
  }
  if (error == transport::Errc::kTlsFailed) {
    return Failed(AdminAccessErrc::kWrongCertificate, error_detail,
                  fmt::format("something answers at {} but not with this gateway's certificate {} "
                              "(another program on the port, or a gateway with another data_dir): {}",
                              config.admin_listen, cert_path.string(), client.LastErrorDetail()));
  }
  return Failed(AdminAccessErrc::kFailed, error_detail,
                fmt::format("the gateway at {} did not answer: {} ({})", config.admin_listen,
                            error.message(), client.LastErrorDetail()));
}

}  // namespace lifeline::gateway
