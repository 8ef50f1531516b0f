#pragma once
// Integration-test pieces for the policy manager: a real `lifeline policy run` on a loopback port
// chosen up front (a gateway can be configured with its URL before it starts, and a restart comes
// back on the same port and data directory), its own TLS server certificate, gateways' client
// certificates verified against the home's CA (the CA that signs them at enrollment), approval
// emails through a test's MailSink, users and API tokens made with the CLI, and the policy and
// requests CLIs run against it.
#include "cli/subprocess.h"
#include "support/harness.h"

#include <boost/json.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::testing {

/// What one HTTPS call to a JSON API answered.
struct ApiAnswer {
  int status = 0;           // 0: no HTTP answer (see error)
  boost::json::value body;  // parsed JSON, or the raw body as a string
  std::string raw;          // the body as received
  std::string error;
};
/// One HTTPS request (`url` up to the path, e.g. "https://127.0.0.1:8443") trusting only `ca_file`,
/// with a bearer token (none when empty) and a JSON body (none when empty).
ApiAnswer CallApi(const fs::path& ca_file, const std::string& url, const std::string& method, const std::string& path,
                  const std::string& token = "", const std::string& body = "");

class TestPolicyManager {
 public:
  /// Writes policy.toml and a TLS certificate for 127.0.0.1 in `dir`; gateways of `home` are its
  /// clients; approval emails go to `notify` through the SMTP server on `smtp_port`. Creates an
  /// admin API token named "policy-admin" (see Token()).
  TestPolicyManager(const fs::path& dir, const TestHome& home, int smtp_port,
                    std::vector<std::string> notify = {"approvers@example.com"});
  ~TestPolicyManager();
  TestPolicyManager(const TestPolicyManager&) = delete;
  TestPolicyManager& operator=(const TestPolicyManager&) = delete;

  /// Starts `lifeline policy run` and waits until it listens; keeps the port and data directory
  /// across Stop()/Start().
  void Start();
  void Stop();
  bool Running();

  std::string url() const;
  int port() const { return port_; }
  /// The CA of its server certificate: a gateway's `[policy] ca_file`, and clients' --ca-file.
  fs::path ca_file() const { return dir_ / "pki" / "ca.crt"; }
  fs::path config() const { return dir_ / "policy.toml"; }
  fs::path data_dir() const { return dir_ / "data"; }
  fs::path log_file() const { return dir_ / "policy.log"; }
  std::string LogText() const;
  /// TOML appended to policy.toml (tables of its own, e.g. [gateways]). Applies at the next Start().
  void SetExtraConfig(std::string toml);

  /// `lifeline policy users add NAME --role ROLE`, the password through LIFELINE_POLICY_PASSWORD.
  void AddUser(const std::string& name, const std::string& role, const std::string& password);
  /// POST /v1/login; the session token (asserts a 200). The token is also saved as TokenFile(name).
  std::string Login(const std::string& name, const std::string& password);
  /// `lifeline policy tokens create NAME --role ROLE`; returns the token and saves it as TokenFile(name).
  std::string CreateToken(const std::string& name, const std::string& role);
  /// A token made by CreateToken or Login, and the file (0600) that holds it for the CLI.
  std::string Token(const std::string& name) const;
  fs::path TokenFile(const std::string& name) const { return dir_ / "tokens" / name; }

  /// `lifeline policy ARGS... --url URL --ca-file CA --token-file TokenFile(token_name)`.
  CommandResult Cli(std::vector<std::string> args, const std::string& token_name = "policy-admin");
  /// `lifeline policy set FILE` with the admin token; returns the new version (asserts success).
  std::int64_t SetPolicy(const std::string& policy_json);
  /// `lifeline policy requests list --json [--all]`: the requests as JSON objects.
  std::vector<boost::json::object> Requests(bool all = false, const std::string& token_name = "policy-admin");
  /// The request with this id (the gateway's session id), once it exists (waits up to `timeout`).
  std::optional<boost::json::object> WaitForRequest(const std::string& id,
                                                    std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// `lifeline policy requests approve|deny ID [--comment TEXT]` as the named token's holder.
  CommandResult Approve(const std::string& id, const std::string& token_name, const std::string& comment = "");
  CommandResult Deny(const std::string& id, const std::string& token_name, const std::string& comment = "");

  /// One HTTPS request to the API with a bearer token (none when empty).
  using Answer = ApiAnswer;
  Answer Api(const std::string& method, const std::string& path, const std::string& token = "",
             const std::string& body = "");
  /// GET /v1/audit?format=jsonl as an auditor: the record lines as JSON objects.
  std::vector<boost::json::object> AuditRecords();

 private:
  void WriteConfig();
  fs::path dir_;
  int port_ = 0;
  int smtp_port_ = 0;
  std::string home_ca_;
  std::string notify_;
  std::string extra_;
  std::optional<cli::Subprocess> process_;
};

/// A policy set as JSON text, for SetPolicy: `rules` is the JSON array's content.
std::string PolicyJson(const std::string& rules, const std::string& groups = "", const std::string& grants = "");

}  // namespace lifeline::testing
