#include "cli/policy_api_client.h"

#include "cli/commands.h"
#include "common/ports.h"
#include "crypto/keys.h"
#include "transport/http_client.h"

#include <fmt/format.h>

#include <cstdlib>
#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;
namespace {

std::string Text(const json::object& object, std::string_view key) {
  const auto* v = object.if_contains(key);
  if (v == nullptr || v->is_null()) {
    return "";
  }
  return v->is_string() ? std::string(v->get_string()) : json::serialize(*v);
}

/// The token from --token-file or LIFELINE_POLICY_TOKEN (never an option value: it would show in
/// the process list), or nullopt with `problem` set.
std::optional<std::string> LoadToken(const PolicyApiConnection& connection, std::string* problem) {
  std::string token;
  if (!connection.token_file.empty()) {
    auto text = crypto::ReadSmallFile(connection.token_file, 4096);
    if (!text) {
      *problem = fmt::format("cannot read --token-file {}: {}", connection.token_file, text.error().message());
      return std::nullopt;
    }
    token = text->substr(0, text->find('\n'));
  } else if (const char* env = std::getenv("LIFELINE_POLICY_TOKEN"); env != nullptr) {
    token = env;
  }
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.empty()) {
    *problem = "give a token with --token-file or LIFELINE_POLICY_TOKEN (POST /v1/login or `lifeline policy "
               "tokens create` makes one)";
    return std::nullopt;
  }
  return token;
}

}  // namespace

void AddPolicyApiOptions(CLI::App* command, PolicyApiConnection& connection) {
  connection.url = fmt::format("https://127.0.0.1:{}", ports::kPolicyHttps);
  command->add_option("--url", connection.url, "The policy manager's HTTPS API")
      ->envname("LIFELINE_POLICY_URL")
      ->capture_default_str();
  command->add_option("--token-file", connection.token_file,
                      "File whose first line is a token (else LIFELINE_POLICY_TOKEN)");
  command->add_option("--ca-file", connection.ca_file,
                      "PEM of the CA that signed the policy manager's certificate (the only one trusted)")
      ->envname("LIFELINE_POLICY_CA");
}

std::optional<PolicyApiAnswer> SendPolicyRequest(const PolicyApiConnection& connection, std::string_view program,
                                                 std::string_view method, const std::string& path,
                                                 const std::string& body, int* exit_code) {
  std::string problem;
  auto token = LoadToken(connection, &problem);
  if (!token) {
    std::cerr << program << ": " << problem << "\n";
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  if (connection.ca_file.empty()) {
    // The HTTP client trusts only this CA (never the system store), so there is no useful default.
    std::cerr << program << ": give --ca-file (or LIFELINE_POLICY_CA): the CA of the policy manager's certificate\n";
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  std::string base = connection.url;
  while (base.ends_with('/')) {
    base.pop_back();
  }
  transport::HttpClient client(transport::ClientTls{.ca_file = connection.ca_file});
  auto response = client.Send({.method = std::string(method),
                               .url = base + path,
                               .content_type = body.empty() ? "" : "application/json",
                               .body = body,
                               .headers = {{"Authorization", "Bearer " + *token}}});
  if (!response) {
    const std::string detail = client.LastErrorDetail();
    std::cerr << fmt::format("{}: cannot reach the policy manager at {}: {}{}\n", program, base,
                             response.error().message(), detail.empty() ? "" : " (" + detail + ")");
    *exit_code = response.error() == transport::Errc::kInvalidArgument ? kExitUsage : kExitFailure;
    return std::nullopt;
  }
  PolicyApiAnswer answer{response->status, std::move(response->body), nullptr};
  boost::system::error_code ec;
  auto parsed = json::parse(answer.body, ec);
  if (!ec) {
    answer.json = std::move(parsed);
  }
  return answer;
}

void ReportPolicyApiError(std::string_view program, const PolicyApiAnswer& answer) {
  if (!answer.json.is_object()) {
    std::cerr << fmt::format("{}: HTTP {}: {}\n", program, answer.status, answer.body);
    return;
  }
  const auto& object = answer.json.as_object();
  std::string message = Text(object, "message");
  if (message.empty() && answer.status == 401) {
    message = "the token is unknown, expired or revoked";
  }
  std::cerr << fmt::format("{}: {} ({}){}{}\n", program, Text(object, "error"), answer.status,
                           message.empty() ? "" : ": ", message);
  if (const auto* problems = object.if_contains("problems"); problems != nullptr && problems->is_array()) {
    for (const auto& problem : problems->get_array()) {
      std::cerr << "  " << (problem.is_string() ? std::string(problem.get_string()) : json::serialize(problem))
                << "\n";
    }
  }
}

}  // namespace lifeline::cli
