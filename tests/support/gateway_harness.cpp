#include "support/gateway_harness.h"

#include <gtest/gtest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <sstream>

namespace lifeline::testing {

using namespace std::chrono_literals;

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// ---- TestGateway --------------------------------------------------------------------------------

TestGateway::TestGateway(const fs::path& dir, const TestHome& home, std::string name, std::string site)
    : dir_(dir), home_(home), name_(std::move(name)), site_(std::move(site)) {
  fs::create_directories(dir_);
  admin_port_ = FreePort();
  WriteConfig();
}

void TestGateway::WriteConfig() {
  std::vector<std::string> urls = tunnel_urls_;
  if (urls.empty()) {
    urls.push_back(fmt::format("tls://127.0.0.1:{}", home_.tunnel_port()));
  }
  std::string quoted;
  for (const auto& url : urls) {
    quoted += fmt::format("{}\"{}\"", quoted.empty() ? "" : ", ", url);
  }
  WriteFile(config(), fmt::format(R"([gateway]
customer = "acme"
site = "{6}"
name = "{1}"
data_dir = "{0}/data"
[home]
url = "{2}"
tunnel_urls = [{3}]
tunnel_ping = "2s"
[listen]
devices = "127.0.0.1:0"
admin = "127.0.0.1:{4}"
[probe]
interval = "5s"
{7}
{5}
)",
                                  dir_.string(), name_, home_.ingest_url(), quoted, admin_port_, extra_, site_,
                                  policy_));
}

void TestGateway::SetExtraConfig(std::string toml, std::vector<std::string> tunnel_urls) {
  extra_ = std::move(toml);
  tunnel_urls_ = std::move(tunnel_urls);
  WriteConfig();
}

void TestGateway::UsePolicyManager(const std::string& url, const fs::path& ca_file) {
  policy_ = fmt::format("[policy]\nurl = \"{}\"\nca_file = \"{}\"\ndisabled = false", url, ca_file.string());
  WriteConfig();
}

std::string TestGateway::LogText() const { return ReadFile(log_file()); }

int TestGateway::CountInLog(const std::string& text) const {
  const std::string log = LogText();
  int count = 0;
  for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) {
    ++count;
  }
  return count;
}

void TestGateway::Enroll() {
  auto token = RunLifeline({"home", "enroll-token", "--config", home_.config().string(), "--customer", "acme", "--site",
                            site_, "--name", name_, "--gateway"});
  ASSERT_EQ(token.exit_code, 0) << token.output;
  std::string text = token.output;
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  text = text.substr(text.rfind('\n') + 1);
  // The home's public files, as an operator copies them to the gateway.
  const fs::path pki = dir_ / "data" / "pki";
  fs::create_directories(pki);
  for (const char* file : {"ca.crt", "home-seal.pub", "home-sign.pub"}) {
    fs::copy_file(home_.pki_dir() / file, pki / file, fs::copy_options::overwrite_existing);
  }
  auto enrolled = Run({"enroll", "--token", text});
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
}

void TestGateway::Start(int tunnels_up) {
  const int before = CountInLog("to the home is up");
  auto process = cli::Subprocess::Spawn({LIFELINE_BINARY, "gateway", "run", "--config", config().string()}, log_file());
  ASSERT_TRUE(process);
  process_.emplace(std::move(*process));
  ASSERT_TRUE(Eventually([&] { return CountInLog("to the home is up") >= before + tunnels_up || !process_->Running(); },
                         20s))
      << LogText();
  ASSERT_TRUE(process_->Running()) << LogText();
}

void TestGateway::Stop() {
  if (process_) {
    EXPECT_EQ(process_->Terminate(10s), 0) << LogText();
    process_.reset();
  }
}

CommandResult TestGateway::Run(std::vector<std::string> args) {
  std::vector<std::string> argv = {"gateway"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--config");
  argv.push_back(config().string());
  return RunLifeline(argv);
}

// ---- Devices' applications ----------------------------------------------------------------------

TestSshd::TestSshd(const fs::path& dir) : dir_(dir) {
  fs::create_directories(dir_);
  // sshd refuses to start as root without its privilege-separation directory.
  std::error_code ec;
  fs::create_directories("/run/sshd", ec);
  auto host = RunCommand({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", (dir_ / "host_key").string()});
  EXPECT_EQ(host.exit_code, 0) << host.output;
  auto client = RunCommand({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", client_key().string()});
  EXPECT_EQ(client.exit_code, 0) << client.output;
  fs::copy_file(dir_ / "client_key.pub", dir_ / "authorized_keys", fs::copy_options::overwrite_existing);
  port_ = FreePort();
  WriteFile(dir_ / "sshd_config", fmt::format(R"(Port {1}
ListenAddress 127.0.0.1
HostKey {0}/host_key
AuthorizedKeysFile {0}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile {0}/sshd.pid
LogLevel VERBOSE
)",
                                              dir_.string(), port_));
  auto process = cli::Subprocess::Spawn({"/usr/sbin/sshd", "-D", "-e", "-f", (dir_ / "sshd_config").string()},
                                        dir_ / "sshd.log");
  EXPECT_TRUE(process);
  if (process) {
    process_.emplace(std::move(*process));
  }
  EXPECT_TRUE(Eventually([&] { return ReadFile(dir_ / "sshd.log").find("Server listening") != std::string::npos; }, 10s))
      << ReadFile(dir_ / "sshd.log");
}

CommandResult TestSshd::Ssh(int port, const std::string& command) const {
  return RunCommand({"/usr/bin/ssh", "-p", std::to_string(port), "-i", client_key().string(), "-o",
                     "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o",
                     "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1", command},
                    30s);
}

TestHttpsServer::TestHttpsServer(const fs::path& dir) {
  fs::create_directories(dir);
  auto cert = RunCommand({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes", "-keyout", (dir / "key.pem").string(), "-out", (dir / "cert.pem").string(),
                          "-days", "1", "-subj", "/CN=array-1 web console", "-addext", "subjectAltName=IP:127.0.0.1"});
  EXPECT_EQ(cert.exit_code, 0) << cert.output;
  port_ = FreePort();
  auto process = cli::Subprocess::Spawn({"/usr/bin/openssl", "s_server", "-accept", fmt::format("127.0.0.1:{}", port_),
                                         "-cert", (dir / "cert.pem").string(), "-key", (dir / "key.pem").string(),
                                         "-www", "-naccept", "1000"},
                                        dir / "s_server.log");
  EXPECT_TRUE(process);
  if (process) {
    process_.emplace(std::move(*process));
  }
  EXPECT_TRUE(Eventually([&] { return ReadFile(dir / "s_server.log").find("ACCEPT") != std::string::npos; }, 10s))
      << ReadFile(dir / "s_server.log");
}

// ---- lifeline connect ---------------------------------------------------------------------------

TestSession::TestSession(const fs::path& dir, const TestHome& home, const std::string& device, const std::string& app,
                         const std::string& reason, std::vector<std::string> extra_args) {
  fs::create_directories(dir);
  log_ = dir / "connect.log";
  WriteFile(dir / "token", home.admin_token() + "\n");
  fs::permissions(dir / "token", fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  std::vector<std::string> argv = {LIFELINE_BINARY, "connect", "--home", home.admin_url(), "--ca",
                                   (home.pki_dir() / "ca.crt").string(), "--token-file", (dir / "token").string(),
                                   "--device", device, "--app", app, "--reason", reason, "--listen", "127.0.0.1:0"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  auto process = cli::Subprocess::Spawn(argv, log_);
  EXPECT_TRUE(process);
  if (process) {
    process_.emplace(std::move(*process));
  }
}

bool TestSession::WaitOpen() {
  static const std::regex listening(R"(listening on 127\.0\.0\.1:(\d+))");
  static const std::regex session(R"(session ([0-9a-f]{32}) open)");
  bool open = false;
  Eventually(
      [&] {
        const std::string out = ReadFile(log_);
        std::smatch m;
        if (std::regex_search(out, m, listening)) {
          local_port_ = std::stoi(m[1]);
          if (std::regex_search(out, m, session)) {
            id_ = m[1];
          }
          open = true;
          return true;
        }
        return !process_ || !process_->Running();
      },
      20s);
  return open;
}

bool TestSession::WaitPending() {
  static const std::regex waiting(R"(waiting for approval of session ([0-9a-f]{32}))");
  bool pending = false;
  Eventually(
      [&] {
        const std::string out = ReadFile(log_);
        std::smatch m;
        if (std::regex_search(out, m, waiting)) {
          id_ = m[1];
          pending = true;
          return true;
        }
        return !process_ || !process_->Running() || out.find("listening on") != std::string::npos;
      },
      20s);
  return pending;
}

std::string TestSession::Output() const { return ReadFile(log_); }
bool TestSession::Running() { return process_ && process_->Running(); }
std::optional<int> TestSession::Wait(std::chrono::milliseconds timeout) {
  return process_ ? process_->Wait(timeout) : std::optional<int>(-1);
}
int TestSession::Terminate() { return process_ ? process_->Terminate(10s) : -1; }

}  // namespace lifeline::testing
