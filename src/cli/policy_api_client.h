#pragma once
// What the `lifeline policy` commands that talk to a running policy manager share (show, set,
// requests ...): the options naming its API (--url, --token-file / LIFELINE_POLICY_TOKEN, --ca-file)
// and one request with the bearer token. Users and tokens are managed on the store instead (local
// administrator), so they do not use this.
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace lifeline::cli {

struct PolicyApiConnection {
  std::string url;         // default https://127.0.0.1:8443 (LIFELINE_POLICY_URL)
  std::string token_file;  // first line is the token; else LIFELINE_POLICY_TOKEN
  std::string ca_file;     // PEM of the CA that signed the policy manager's certificate (LIFELINE_POLICY_CA)
};

/// Adds --url, --token-file and --ca-file to `command`.
void AddPolicyApiOptions(CLI::App* command, PolicyApiConnection& connection);

struct PolicyApiAnswer {
  int status = 0;
  std::string body;
  boost::json::value json;  // the body parsed; null when it is not JSON
  bool ok() const { return status >= 200 && status < 300; }
};

/// Sends one request ("GET", "PUT", ...; a path with its query; a JSON body or "") with the bearer
/// token. Any HTTP status is an answer. nullopt when no request could be made: one line on stderr
/// starting with `program` says why (no token, no CA file, unreachable, TLS), and `*exit_code` is
/// kExitUsage (nothing to send with) or kExitFailure (the policy manager could not be reached).
std::optional<PolicyApiAnswer> SendPolicyRequest(const PolicyApiConnection& connection, std::string_view program,
                                                 std::string_view method, const std::string& path,
                                                 const std::string& body, int* exit_code);

/// One line on stderr for a non-2xx answer: "program: ERROR (STATUS): MESSAGE", then one indented
/// line per entry of a "problems" array (an invalid policy says everything that is wrong at once).
void ReportPolicyApiError(std::string_view program, const PolicyApiAnswer& answer);

}  // namespace lifeline::cli
