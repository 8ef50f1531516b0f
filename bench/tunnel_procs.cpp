#include "bench/tunnel_procs.h"

#include "bench/tunnel_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace lifeline::bench::tunnel {

using namespace std::chrono_literals;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

fs::path MakeWorkDir(const std::string& dir, const std::string& name) {
  if (!dir.empty()) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      fmt::print(stderr, "cannot create {}: {}\n", dir, ec.message());
      return {};
    }
    return dir;
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr && *tmp != 0 ? tmp : "/tmp") + "/" + name + ".XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    return {};
  }
  return pattern;
}

int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

ToolResult RunTool(const std::vector<std::string>& argv, const fs::path& log, std::chrono::seconds timeout) {
  fs::remove(log);
  auto process = cli::Subprocess::Spawn(argv, log);
  if (!process) {
    return {-1, "cannot start " + argv.front()};
  }
  ToolResult result;
  result.exit_code = process->Wait(timeout).value_or(-1);
  if (result.exit_code == -1) {
    process->Kill();
  }
  result.output = ReadText(log);
  return result;
}

namespace {

// The last line of a command's output (where token commands print the token).
std::string LastLine(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
    text.pop_back();
  }
  const auto at = text.rfind('\n');
  return at == std::string::npos ? text : text.substr(at + 1);
}

std::string Failed(const std::string& what, const ToolResult& result, const fs::path& log) {
  return fmt::format("{} failed (exit {}), see {}: {}", what, result.exit_code, log.string(),
                     result.output.substr(0, 600));
}

}  // namespace

// ---- Home

Home::Home(fs::path dir, fs::path binary) : dir_(std::move(dir)), binary_(std::move(binary)) {}

std::string Home::Start() {
  fs::create_directories(dir_);
  auto pki = RunTool({binary_.string(), "pki", "init", "--dir", (dir_ / "pki").string()}, dir_ / "pki-init.log");
  if (pki.exit_code != 0) {
    return Failed("lifeline pki init", pki, dir_ / "pki-init.log");
  }
  // Mail goes to a port nothing listens on: no alerts are sent in this bench.
  WriteText(config(), fmt::format(R"([listen]
ingest = "127.0.0.1:0"
admin = "127.0.0.1:0"
tunnel = "127.0.0.1:0"
sessions = "127.0.0.1:0"
address_file = "{0}/addresses.json"
[pki]
dir = "{0}/pki"
[store]
path = "{0}/home.db"
[smtp]
url = "smtp://127.0.0.1:{1}"
from = "bench@localhost"
[notify]
email = ["oncall@example.com"]
)",
                                  dir_.string(), FreeLoopbackPort()));
  auto token = RunTool({binary_.string(), "home", "admin-token", "--config", config().string(), "--name", "bench"},
                       dir_ / "admin-token.log");
  if (token.exit_code != 0) {
    return Failed("lifeline home admin-token", token, dir_ / "admin-token.log");
  }
  admin_token_ = LastLine(token.output);
  auto process = cli::Subprocess::Spawn({binary_.string(), "home", "run", "--config", config().string()}, log());
  if (!process) {
    return "cannot start lifeline home run";
  }
  process_.emplace(std::move(*process));
  if (!WaitFor([&] { return !ReadText(dir_ / "addresses.json").empty() || !process_->Running(); }, 20s) ||
      !process_->Running()) {
    return fmt::format("the home did not start, see {}", log().string());
  }
  boost::system::error_code ec;
  auto addresses = boost::json::parse(ReadText(dir_ / "addresses.json"), ec);
  if (ec || !addresses.is_object()) {
    return "cannot read the home's addresses.json";
  }
  ingest_url_ = "https://" + std::string(addresses.at("ingest").as_string());
  admin_url_ = "https://" + std::string(addresses.at("admin").as_string());
  tunnel_port_ = static_cast<int>(addresses.at("tunnel_port").to_number<std::int64_t>());
  return "";
}

// ---- Gateway

Gateway::Gateway(fs::path dir, const Home& home, std::string name, int tunnel_port)
    : dir_(std::move(dir)), home_(home), name_(std::move(name)) {
  fs::create_directories(dir_ / "data" / "pki");
  admin_port_ = FreeLoopbackPort();
  // The shipped defaults, but for ports on loopback (and the tunnel's address), and no policy manager
  // (every session allowed: the bench measures the tunnel).
  WriteText(dir_ / "gateway.toml", fmt::format(R"([gateway]
customer = "acme"
site = "lab"
name = "{1}"
data_dir = "{0}/data"
[home]
url = "{2}"
tunnel_urls = ["tls://127.0.0.1:{3}"]
[listen]
devices = "127.0.0.1:0"
admin = "127.0.0.1:{4}"
[policy]
disabled = true
)",
                                               dir_.string(), name_, home_.ingest_url(), tunnel_port, admin_port_));
}

Gateway::~Gateway() = default;

void Gateway::UsePolicyManager(const std::string& url, const std::string& ca_file) {
  std::string config = ReadText(dir_ / "gateway.toml");
  const std::string disabled = "[policy]\ndisabled = true\n";
  const auto at = config.find(disabled);
  if (at != std::string::npos) {
    config.replace(at, disabled.size(), fmt::format("[policy]\nurl = \"{}\"\nca_file = \"{}\"\n", url, ca_file));
  }
  WriteText(dir_ / "gateway.toml", config);
}

std::string Gateway::Start() {
  const std::string bin = home_.binary().string();
  auto token = RunTool({bin, "home", "enroll-token", "--config", home_.config().string(), "--customer", "acme", "--site",
                        "lab", "--name", name_, "--gateway"},
                       dir_ / "enroll-token.log");
  if (token.exit_code != 0) {
    return Failed("lifeline home enroll-token --gateway", token, dir_ / "enroll-token.log");
  }
  for (const char* file : {"ca.crt", "home-seal.pub", "home-sign.pub"}) {
    fs::copy_file(home_.dir() / "pki" / file, dir_ / "data" / "pki" / file, fs::copy_options::overwrite_existing);
  }
  const std::string config = (dir_ / "gateway.toml").string();
  auto enrolled = RunTool({bin, "gateway", "enroll", "--config", config, "--token", LastLine(token.output)},
                          dir_ / "enroll.log");
  if (enrolled.exit_code != 0) {
    return Failed("lifeline gateway enroll", enrolled, dir_ / "enroll.log");
  }
  auto process = cli::Subprocess::Spawn({bin, "gateway", "run", "--config", config}, log());
  if (!process) {
    return "cannot start lifeline gateway run";
  }
  process_.emplace(std::move(*process));
  if (!WaitFor([&] { return ReadText(log()).find("to the home is up") != std::string::npos || !process_->Running(); },
               30s) ||
      !process_->Running()) {
    return fmt::format("the gateway's tunnel did not come up, see {}", log().string());
  }
  if (!WaitFor([&] { return !ReadText(dir_ / "data" / "admin.token").empty(); }, 10s)) {
    return "no admin.token in the gateway's data_dir";
  }
  admin_token_ = LastLine(ReadText(dir_ / "data" / "admin.token"));
  admin_ = std::make_unique<transport::HttpClient>(
      transport::ClientTls{.ca_file = (dir_ / "data" / "admin.crt").string()});
  return "";
}

std::string Gateway::AddDevice(const std::string& serial, int port) {
  if (!admin_) {
    return "the gateway is not running";
  }
  const boost::json::object body{{"serial", serial},
                                 {"model", "bench device"},
                                 {"address", "127.0.0.1"},
                                 {"apps", boost::json::object{{"echo", port}}}};
  auto response = admin_->Send({.method = "POST",
                                .url = fmt::format("https://127.0.0.1:{}/v1/devices", admin_port_),
                                .content_type = "application/json",
                                .body = boost::json::serialize(body),
                                .headers = {{"Authorization", "Bearer " + admin_token_}}});
  if (!response) {
    return fmt::format("POST /v1/devices: {} ({})", response.error().message(), admin_->LastErrorDetail());
  }
  if (response->status != 201) {
    return fmt::format("POST /v1/devices: HTTP {}: {}", response->status, response->body);
  }
  return "";
}

// ---- Session

Session::Session(fs::path dir, const Home& home, const std::string& serial)
    : dir_(std::move(dir)), home_(home), serial_(serial) {}

std::string Session::Start() {
  fs::create_directories(dir_);
  const fs::path token = dir_ / "token";
  WriteText(token, home_.admin_token() + "\n");
  fs::permissions(token, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  const auto begin = std::chrono::steady_clock::now();
  auto process = cli::Subprocess::Spawn({home_.binary().string(), "connect", "--home", home_.admin_url(), "--ca",
                                         home_.ca_file().string(), "--token-file", token.string(), "--device",
                                         "acme/lab/" + serial_, "--app", "echo", "--reason", "bench_tunnel",
                                         "--listen", "127.0.0.1:0"},
                                        log());
  if (!process) {
    return "cannot start lifeline connect";
  }
  process_.emplace(std::move(*process));
  static const std::regex listening(R"(listening on 127\.0\.0\.1:(\d+))");
  std::smatch match;
  std::string out;
  WaitFor(
      [&] {
        out = ReadText(log());
        return std::regex_search(out, match, listening) || !process_->Running();
      },
      30s);
  if (!std::regex_search(out, match, listening)) {
    return fmt::format("lifeline connect to {} did not open, see {}: {}", serial_, log().string(), out.substr(0, 400));
  }
  start_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  port_ = std::stoi(match[1]);
  return "";
}

// ---- ssh

Sshd::Sshd(fs::path dir) : dir_(std::move(dir)) {}

std::string Sshd::Start() {
  fs::create_directories(dir_);
  std::error_code ec;
  fs::create_directories("/run/sshd", ec);  // sshd's privilege-separation directory
  for (const auto& key : {dir_ / "host_key", client_key()}) {
    fs::remove(key);
    auto made = RunTool({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key.string()},
                        dir_ / "keygen.log");
    if (made.exit_code != 0) {
      return Failed("ssh-keygen", made, dir_ / "keygen.log");
    }
  }
  fs::copy_file(dir_ / "client_key.pub", dir_ / "authorized_keys", fs::copy_options::overwrite_existing);
  port_ = FreeLoopbackPort();
  WriteText(dir_ / "sshd_config", fmt::format(R"(Port {1}
ListenAddress 127.0.0.1
HostKey {0}/host_key
AuthorizedKeysFile {0}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile {0}/sshd.pid
MaxStartups 100
)",
                                              dir_.string(), port_));
  auto process = cli::Subprocess::Spawn({"/usr/sbin/sshd", "-D", "-e", "-f", (dir_ / "sshd_config").string()}, log());
  if (!process) {
    return "cannot start /usr/sbin/sshd";
  }
  process_.emplace(std::move(*process));
  if (!WaitFor([&] { return ReadText(log()).find("Server listening") != std::string::npos; }, 10s)) {
    return fmt::format("sshd did not start, see {}", log().string());
  }
  return "";
}

SshForward::SshForward(fs::path dir, const Sshd& sshd, int ssh_port, int target_port)
    : dir_(std::move(dir)), sshd_(sshd), ssh_port_(ssh_port), target_port_(target_port) {}

std::string SshForward::Start() {
  fs::create_directories(dir_);
  local_port_ = FreeLoopbackPort();
  auto process = cli::Subprocess::Spawn(
      {"/usr/bin/ssh", "-N", "-L", fmt::format("127.0.0.1:{}:127.0.0.1:{}", local_port_, target_port_), "-p",
       std::to_string(ssh_port_), "-i", sshd_.client_key().string(), "-o", "StrictHostKeyChecking=no", "-o",
       "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o",
       "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1"},
      log());
  if (!process) {
    return "cannot start /usr/bin/ssh";
  }
  process_.emplace(std::move(*process));
  // The forward listens once ssh has authenticated; a probe connection is a channel that closes at once.
  if (!WaitFor(
          [&] {
            const int fd = ConnectLoopback(local_port_, 1s);
            CloseFd(fd);
            return fd >= 0 || !process_->Running();
          },
          20s) ||
      !process_->Running()) {
    return fmt::format("ssh -L did not start, see {}", log().string());
  }
  return "";
}

}  // namespace lifeline::bench::tunnel
