#pragma once
// The processes of bench_tunnel, each in its own directory with its log file (named when something
// fails): `lifeline home run`, `lifeline gateway run` (enrolled with a gateway token), `lifeline
// connect`, Debian's sshd and `ssh -N -L`. The same steps as tests/support/gateway_harness.cpp, without
// gtest: every step returns an error text instead of asserting.
#include "cli/subprocess.h"
#include "transport/http_client.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::bench::tunnel {

namespace fs = std::filesystem;

std::string ReadText(const fs::path& path);
void WriteText(const fs::path& path, const std::string& text);
/// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);
/// The benchmark's work directory: `dir` (created) when given, else a new $TMPDIR/NAME.XXXXXX (or
/// under /tmp). Empty after printing why when it cannot be made.
fs::path MakeWorkDir(const std::string& dir, const std::string& name);
/// A port on 127.0.0.1 nothing listens on at the moment.
int FreeLoopbackPort();

struct ToolResult {
  int exit_code = -1;
  std::string output;
};
/// Runs argv to completion (bounded), output to `log` (kept for the report), returns it too.
ToolResult RunTool(const std::vector<std::string>& argv, const fs::path& log,
                   std::chrono::seconds timeout = std::chrono::seconds(60));

class Home {
 public:
  Home(fs::path dir, fs::path binary);
  /// pki init, home.toml, admin token, `home run`; empty on success, else what failed.
  std::string Start();
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  const fs::path& dir() const { return dir_; }
  fs::path log() const { return dir_ / "home.log"; }
  fs::path config() const { return dir_ / "home.toml"; }
  fs::path ca_file() const { return dir_ / "pki" / "ca.crt"; }
  const fs::path& binary() const { return binary_; }
  int tunnel_port() const { return tunnel_port_; }
  const std::string& ingest_url() const { return ingest_url_; }
  const std::string& admin_url() const { return admin_url_; }
  const std::string& admin_token() const { return admin_token_; }

 private:
  fs::path dir_;
  fs::path binary_;
  int tunnel_port_ = 0;
  std::string ingest_url_;
  std::string admin_url_;
  std::string admin_token_;
  std::optional<cli::Subprocess> process_;
};

class Gateway {
 public:
  /// `tunnel_port`: where its tunnel dials (the home's tunnel port, or a delaying relay in front of it).
  Gateway(fs::path dir, const Home& home, std::string name, int tunnel_port);
  ~Gateway();
  /// Decide sessions with this policy manager instead of allowing all (before Start).
  void UsePolicyManager(const std::string& url, const std::string& ca_file);
  /// Enrolls with a gateway token, starts `gateway run`, waits for the tunnel.
  std::string Start();
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  fs::path log() const { return dir_ / "gateway.log"; }
  /// POST /v1/devices on the admin API over one kept-alive connection: 127.0.0.1, app "echo" on `port`.
  std::string AddDevice(const std::string& serial, int port);

 private:
  fs::path dir_;
  const Home& home_;
  std::string name_;
  int admin_port_ = 0;
  std::unique_ptr<transport::HttpClient> admin_;
  std::string admin_token_;
  std::optional<cli::Subprocess> process_;
};

/// A running `lifeline connect --device acme/lab/SERIAL --app echo --listen 127.0.0.1:0`.
class Session {
 public:
  Session(fs::path dir, const Home& home, const std::string& serial);
  /// Waits for its local port; empty on success.
  std::string Start();
  int port() const { return port_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  fs::path log() const { return dir_ / "connect.log"; }
  /// From spawning the process to its "listening on" line.
  double start_seconds() const { return start_seconds_; }

 private:
  fs::path dir_;
  const Home& home_;
  std::string serial_;
  int port_ = 0;
  double start_seconds_ = 0;
  std::optional<cli::Subprocess> process_;
};

/// Debian's sshd on 127.0.0.1 (host key and client key made here), as TestSshd starts it.
class Sshd {
 public:
  explicit Sshd(fs::path dir);
  std::string Start();
  int port() const { return port_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  fs::path client_key() const { return dir_ / "client_key"; }
  fs::path log() const { return dir_ / "sshd.log"; }

 private:
  fs::path dir_;
  int port_ = 0;
  std::optional<cli::Subprocess> process_;
};

/// `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:TARGET -p SSH_PORT root@127.0.0.1`, with ssh's defaults otherwise.
class SshForward {
 public:
  SshForward(fs::path dir, const Sshd& sshd, int ssh_port, int target_port);
  std::string Start();
  int port() const { return local_port_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  fs::path log() const { return dir_ / "ssh.log"; }

 private:
  fs::path dir_;
  const Sshd& sshd_;
  int ssh_port_ = 0;
  int target_port_ = 0;
  int local_port_ = 0;
  std::optional<cli::Subprocess> process_;
};

}  // namespace lifeline::bench::tunnel
