#pragma once
// Integration-test pieces for the gateway and remote sessions: a real `lifeline gateway run` enrolled
// with a TestHome, a real OpenSSH server and a real TLS server (openssl s_server) playing managed
// devices' applications, and `lifeline connect` sessions. All on loopback with ephemeral ports.
#include "cli/subprocess.h"
#include "support/harness.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::testing {

/// A gateway of site acme/lab, enrolled with `home`; its tunnel goes to the home's tunnel port
/// directly unless `paths_toml` ([[paths]] tables) says otherwise.
class TestGateway {
 public:
  TestGateway(const fs::path& dir, const TestHome& home, std::string name = "gw-1", std::string site = "lab");
  const fs::path& dir() const { return dir_; }
  fs::path config() const { return dir_ / "gateway.toml"; }
  fs::path log_file() const { return dir_ / "gateway.log"; }
  std::string LogText() const;
  /// Rewrites gateway.toml with extra TOML: [[paths]] tables, [remote_access] keys, tunnel URLs.
  void SetExtraConfig(std::string toml, std::vector<std::string> tunnel_urls = {});
  /// Decides sessions with the policy manager at `url` (its server certificate's CA in `ca_file`)
  /// instead of allowing all. Applies at the next Start().
  void UsePolicyManager(const std::string& url, const fs::path& ca_file);
  /// `lifeline home token --gateway` then `lifeline gateway enroll`; asserts success.
  void Enroll();
  /// Starts `lifeline gateway run` and waits until its tunnel is up (`tunnels_up` lines in its log).
  void Start(int tunnels_up = 1);
  void Stop();
  /// `lifeline gateway ARGS... --config gateway.toml`.
  CommandResult Run(std::vector<std::string> args);
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  int admin_port() const { return admin_port_; }
  /// Counts lines of the log containing `text`.
  int CountInLog(const std::string& text) const;

 private:
  void WriteConfig();
  fs::path dir_;
  const TestHome& home_;
  std::string name_;
  std::string site_;
  std::string extra_;
  std::string policy_ = "[policy]\ndisabled = true";  // tests without a policy manager allow all
  int admin_port_ = 0;
  std::vector<std::string> tunnel_urls_;
  std::optional<cli::Subprocess> process_;
};

/// Debian's sshd on 127.0.0.1 with a fresh host key and one authorized client key.
class TestSshd {
 public:
  explicit TestSshd(const fs::path& dir);
  int port() const { return port_; }
  fs::path client_key() const { return dir_ / "client_key"; }
  /// `ssh -p PORT ... root@127.0.0.1 COMMAND` with the client key, no host key checks; bounded.
  CommandResult Ssh(int port, const std::string& command) const;

 private:
  fs::path dir_;
  int port_ = 0;
  std::optional<cli::Subprocess> process_;
};

/// `openssl s_server -www` on 127.0.0.1: answers any HTTPS request with a status page.
class TestHttpsServer {
 public:
  explicit TestHttpsServer(const fs::path& dir);
  int port() const { return port_; }

 private:
  int port_ = 0;
  std::optional<cli::Subprocess> process_;
};

/// A running `lifeline connect`: the local port it listens on, its output.
class TestSession {
 public:
  TestSession(const fs::path& dir, const TestHome& home, const std::string& device, const std::string& app,
              const std::string& reason = "SR-1234 test", std::vector<std::string> extra_args = {});
  /// True once it printed its local port; false if it exited (refused).
  bool WaitOpen();
  /// True once it said it waits for approval (id() is then known); false if it exited or opened.
  bool WaitPending();
  int local_port() const { return local_port_; }
  std::string id() const { return id_; }
  std::string Output() const;
  bool Running();
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  int Terminate();

 private:
  fs::path log_;
  int local_port_ = 0;
  std::string id_;
  std::optional<cli::Subprocess> process_;
};

/// A port on 127.0.0.1 that nothing listens on.
int FreePort();

}  // namespace lifeline::testing
