#include "cli/admin_client.h"

#include "cli/commands.h"
#include "common/ports.h"
#include "crypto/keys.h"
#include "transport/http_client.h"

#include <fmt/format.h>

#include <cstdlib>
#include <iostream>

namespace lifeline::cli {
namespace json = boost::json;

void AddAdminOptions(CLI::App* command, AdminConnection& connection) {
  connection.home_url = fmt::format("https://127.0.0.1:{}", ports::kHomeAdmin);
  connection.ca_file = "/etc/lifeline/pki/ca.crt";
  command->add_option("--home", connection.home_url, "Admin API URL of the home")->envname("LIFELINE_ADMIN_URL");
  command->add_option("--ca", connection.ca_file, "CA certificate the home's certificate must chain to")
      ->envname("LIFELINE_CA");
  command->add_option("--token-file", connection.token_file,
                      "File holding an admin token (or set LIFELINE_ADMIN_TOKEN); see `lifeline home admin-token`");
  command->add_option("--proxy", connection.proxy,
                      "HTTP CONNECT or SOCKS5 proxy on the way to the home: http://[user@]host:port or "
                      "socks5://[user@]host:port (the password from LIFELINE_PROXY_PASSWORD); default direct")
      ->envname("LIFELINE_PROXY");
  command->add_flag("--json", connection.json, "Print the API's JSON");
}

std::optional<transport::ProxySettings> AdminProxy(const AdminConnection& connection, std::string* problem) {
  transport::ProxySettings proxy;
  if (connection.proxy.empty()) {
    return proxy;
  }
  std::string_view rest = connection.proxy;
  if (rest.starts_with("http://")) {
    proxy.kind = transport::ProxyKind::kHttp;
    rest.remove_prefix(7);
  } else if (rest.starts_with("socks5://")) {
    proxy.kind = transport::ProxyKind::kSocks5;
    rest.remove_prefix(9);
  } else {
    *problem = fmt::format("--proxy '{}' must start with http:// or socks5://", connection.proxy);
    return std::nullopt;
  }
  while (rest.ends_with('/')) {
    rest.remove_suffix(1);
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    proxy.username = std::string(rest.substr(0, at));
    rest.remove_prefix(at + 1);
    if (proxy.username.find(':') != std::string::npos) {
      *problem = "--proxy takes a user name only; give the password in LIFELINE_PROXY_PASSWORD";
      return std::nullopt;
    }
    if (const char* password = std::getenv("LIFELINE_PROXY_PASSWORD")) {
      proxy.password = password;
    }
  }
  proxy.address = std::string(rest);
  if (!transport::IsValidProxyAddress(proxy.address)) {
    *problem = fmt::format("--proxy '{}': the proxy must be host:port (IPv6 in brackets)", connection.proxy);
    return std::nullopt;
  }
  return proxy;
}

std::string JsonText(const json::object& object, std::string_view key) {
  const auto* v = object.if_contains(key);
  if (v == nullptr || v->is_null()) {
    return "";
  }
  if (v->is_string()) {
    return std::string(v->get_string());
  }
  return json::serialize(*v);
}

std::string UrlEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::optional<std::string> LoadAdminToken(const AdminConnection& connection, std::string* problem) {
  std::string token;
  if (!connection.token_file.empty()) {
    auto text = crypto::ReadSmallFile(connection.token_file, 4096);
    if (!text) {
      *problem = fmt::format("cannot read {}: {}", connection.token_file, text.error().message());
      return std::nullopt;
    }
    token = *text;
  } else if (const char* env = std::getenv("LIFELINE_ADMIN_TOKEN")) {
    token = env;
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
    token.pop_back();
  }
  if (token.empty()) {
    *problem = "give an admin token with --token-file or LIFELINE_ADMIN_TOKEN";
    return std::nullopt;
  }
  return token;
}

int AdminCall(const AdminConnection& connection, std::string_view program, std::string_view method,
              const std::string& path, const std::string& body,
              const std::function<void(const json::value&)>& print) {
  std::string problem;
  auto loaded = LoadAdminToken(connection, &problem);
  if (!loaded) {
    std::cerr << program << ": " << problem << "\n";
    return kExitUsage;
  }
  const std::string token = *loaded;
  auto proxy = AdminProxy(connection, &problem);
  if (!proxy) {
    std::cerr << program << ": " << problem << "\n";
    return kExitUsage;
  }
  transport::HttpClient client(transport::ClientTls{.ca_file = connection.ca_file});
  client.SetProxy(*proxy);
  auto response = client.Send({.method = std::string(method),
                               .url = connection.home_url + path,
                               .content_type = body.empty() ? "" : "application/json",
                               .body = body,
                               .headers = {{"Authorization", "Bearer " + token}}});
  if (!response) {
    std::cerr << fmt::format("{}: cannot reach {}{}: {} ({})\n", program, connection.home_url,
                             proxy->kind == transport::ProxyKind::kNone ? "" : " through " + proxy->Describe(),
                             response.error().message(), client.LastErrorDetail());
    return kExitFailure;
  }
  boost::system::error_code ec;
  auto root = json::parse(response->body, ec);
  if (response->status < 200 || response->status >= 300) {
    std::string error = "error";
    std::string message = response->body;
    if (!ec && root.is_object()) {
      error = JsonText(root.as_object(), "error");
      message = JsonText(root.as_object(), "message");
    }
    std::cerr << fmt::format("{}: {} ({}): {}\n", program, error, response->status, message);
    return kExitFailure;
  }
  if (connection.json) {
    std::cout << response->body << "\n";
    return kExitOk;
  }
  if (ec || !root.is_object()) {
    std::cerr << program << ": unreadable answer from the home\n";
    return kExitFailure;
  }
  print(root);
  return kExitOk;
}

}  // namespace lifeline::cli
