#pragma once
// The processes bench_policy adds to bench_tunnel's home and gateway: `lifeline policy run` with its
// own CA and server certificate, API tokens made with `lifeline policy tokens create`, and
// scripts/mail-sink as the approvers' SMTP server. Without gtest: every step returns an error text.
#include "bench/tunnel_procs.h"
#include "cli/subprocess.h"
#include "transport/http_client.h"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::bench::policy_bench {

namespace fs = std::filesystem;

/// scripts/mail-sink on 127.0.0.1: each message becomes a file in dir/mail.
class MailSink {
 public:
  MailSink(fs::path dir, fs::path source_dir);
  ~MailSink();
  std::string Start();
  int port() const { return port_; }
  /// The messages received so far (raw text), oldest first.
  std::vector<std::string> Messages() const;

 private:
  fs::path dir_;
  fs::path source_dir_;
  int port_ = 0;
  std::optional<cli::Subprocess> process_;
};

class PolicyManager {
 public:
  /// Gateways' certificates verify against `gateway_ca` (the home's CA, which signs them).
  PolicyManager(fs::path dir, fs::path binary, fs::path gateway_ca, int smtp_port);
  ~PolicyManager();
  /// pki, policy.toml, admin and approver tokens, `policy run`; empty on success.
  std::string Start();
  std::string url() const;
  fs::path ca_file() const { return dir_ / "pki" / "ca.crt"; }
  fs::path log() const { return dir_ / "policy.log"; }

  struct Answer {
    int status = 0;  // 0: no answer (error says why)
    std::string body;
    std::string error;
  };
  /// One API call with the admin's (or the approver's) token.
  Answer Call(const std::string& method, const std::string& path, const std::string& body, bool approver = false);

 private:
  std::string Token(const std::string& name, const std::string& role, std::string* token);

  fs::path dir_;
  fs::path binary_;
  fs::path gateway_ca_;
  int smtp_port_ = 0;
  int port_ = 0;
  std::string admin_token_;
  std::string approver_token_;
  std::optional<transport::HttpClient> client_;
  std::optional<cli::Subprocess> process_;
};

}  // namespace lifeline::bench::policy_bench
