#pragma once
// What `lifeline tickets|devices|maintenance` share: the options naming the home's admin API
// (--home, --ca, --token-file / LIFELINE_ADMIN_TOKEN, --json) and one request to it that prints the
// error the home gave (its message says what to fix, e.g. which role may do what was refused).
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "transport/http_client.h"

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace lifeline::cli {

struct AdminConnection {
  std::string home_url;
  std::string ca_file;
  std::string token_file;
  std::string proxy;  // --proxy: "" (direct), http://[user@]host:port or socks5://[user@]host:port
  bool json = false;
};

/// Adds --home, --ca, --token-file, --proxy and --json to `command`, with the defaults of a local home.
void AddAdminOptions(CLI::App* command, AdminConnection& connection);

/// The path to the home that --proxy names (direct when empty); the proxy's password comes from
/// LIFELINE_PROXY_PASSWORD, never the command line. nullopt and `problem` for a malformed one.
std::optional<transport::ProxySettings> AdminProxy(const AdminConnection& connection, std::string* problem);

/// Sends one request ("GET"/"POST", a path with its query, a JSON body or "") and, on a 2xx answer,
/// prints it with `print` (or the raw JSON with --json). Returns the process exit code; failures are
/// one line on stderr starting with `program` ("lifeline tickets").
int AdminCall(const AdminConnection& connection, std::string_view program, std::string_view method,
              const std::string& path, const std::string& body,
              const std::function<void(const boost::json::value&)>& print);

/// The admin token from --token-file or LIFELINE_ADMIN_TOKEN; nullopt and `problem` when there is none.
std::optional<std::string> LoadAdminToken(const AdminConnection& connection, std::string* problem);

/// A member of a JSON object as text ("" when absent; numbers and booleans as JSON).
std::string JsonText(const boost::json::object& object, std::string_view key);

/// Percent-encodes one path segment or query value.
std::string UrlEncode(std::string_view text);

}  // namespace lifeline::cli
