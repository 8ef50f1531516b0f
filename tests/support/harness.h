#pragma once
// Integration-test harness: real `build/lifeline` processes (home, agents), a real SMTP server
// (scripts/mail-sink on aiosmtpd), each in its own temp directory on loopback with ephemeral ports.
#include "cli/subprocess.h"
#include "protocol/message.h"
#include "support/temp_dir.h"

#include <boost/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::testing {

namespace fs = std::filesystem;

/// Polls `condition` every 50 ms until it holds or `timeout` passes; returns whether it held.
bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

/// Runs `build/lifeline args...` to completion (bounded); returns exit code, stdout+stderr.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunLifeline(const std::vector<std::string>& args, std::chrono::seconds timeout = std::chrono::seconds(60));
/// Runs `argv` (argv[0] a path) the same way.
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60));

class MailSink {
 public:
  explicit MailSink(const fs::path& dir);
  int port() const { return port_; }
  /// Every received message (raw RFC 5322 text), oldest first.
  std::vector<std::string> Messages() const;

 private:
  fs::path dir_;
  int port_ = 0;
  std::optional<cli::Subprocess> process_;
};

/// A home with a fresh PKI, its own store and an admin token.
class TestHome {
 public:
  /// `store_config` is the body of home.toml's [store] table; empty: a SQLite file in `dir`.
  TestHome(const fs::path& dir, int smtp_port, std::vector<std::string> contacts = {"oncall@example.com"},
           std::string store_config = "");
  void Start();
  void Stop();
  bool Running();
  const fs::path& dir() const { return dir_; }
  fs::path pki_dir() const { return dir_ / "pki"; }
  fs::path config() const { return dir_ / "home.toml"; }
  fs::path log_file() const { return dir_ / "home.log"; }
  std::string ingest_url() const { return "https://" + ingest_address_; }
  std::string admin_url() const { return "https://" + admin_address_; }
  /// Remote access: where gateways dial their tunnels and engineers' sessions connect (after Start).
  int tunnel_port() const { return tunnel_port_; }
  int sessions_port() const { return sessions_port_; }
  /// Issues an enrollment token with `lifeline home enroll-token`.
  std::string EnrollToken(const protocol::DeviceIdentity& device);
  /// GET on the admin API; the parsed JSON body (asserts a 200).
  boost::json::value Admin(const std::string& path);
  /// One figure of GET /v1/stats: devices, alerts, tickets, emails_sent, emails_pending.
  std::int64_t Stat(const std::string& name);
  const std::string& admin_token() const { return admin_token_; }
  /// The body of home.toml's [tickets] table. The harness default turns storm control off: tests send
  /// many alerts from one device on purpose. Call before Start().
  void SetTicketsConfig(std::string body);
  /// TOML appended to home.toml (tables of its own, e.g. [[notify.contact]]). Call before Start().
  void SetExtraConfig(std::string toml);

 private:
  void WriteConfig();
  fs::path dir_;
  int smtp_port_ = 0;
  std::string emails_;
  std::string store_config_;
  std::string tickets_config_ = "storm.max_alerts = 0";
  std::string extra_config_;
  std::string ingest_listen_ = "127.0.0.1:0";
  std::string admin_listen_ = "127.0.0.1:0";
  std::string tunnel_listen_ = "127.0.0.1:0";
  std::string sessions_listen_ = "127.0.0.1:0";
  int tunnel_port_ = 0;
  int sessions_port_ = 0;
  std::string admin_token_;
  std::string ingest_address_;
  std::string admin_address_;
  std::optional<cli::Subprocess> process_;
};

/// One device's agent: config, PKI dir with the home's public files, a log file to follow.
class TestAgent {
 public:
  TestAgent(const fs::path& dir, const TestHome& home, std::string serial, std::string extra_config = "");
  protocol::DeviceIdentity identity() const;
  /// The agent.toml the constructor wrote; tests that need other keys edit it and call SetConfig.
  std::string ConfigText() const;
  void SetConfig(const std::string& toml);
  /// `lifeline agent enroll` with the token; returns the command's result.
  CommandResult Enroll(const std::string& token);
  /// Starts `lifeline-agent run` (the resident agent as devices run it), or `lifeline agent run` (the same
  /// code in the full binary) when use_full_binary is set.
  void Start();
  void Stop();
  void Kill();
  /// The resident process's pid, and the pid of the sender process it runs at the moment (-1: none).
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  pid_t SenderPid() const;
  bool use_full_binary = false;
  fs::path log_file() const { return dir_ / "array.log"; }
  fs::path agent_log() const { return dir_ / "agent.log"; }
  fs::path config() const { return dir_ / "agent.toml"; }
  fs::path pki_dir() const { return dir_ / "pki"; }
  std::string AgentLogText() const;
  void AppendLine(const std::string& line);

 private:
  fs::path dir_;
  std::string serial_;
  std::optional<cli::Subprocess> process_;
};

}  // namespace lifeline::testing
