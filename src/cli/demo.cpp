#include "cli/demo.h"

#include "cli/commands.h"
#include "cli/signals.h"
#include "cli/subprocess.h"
#include "common/clock.h"
#include "common/log.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "crypto/token.h"
#include "home/home_config.h"
#include "home/home_service.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

namespace lifeline::cli {
namespace fs = std::filesystem;
namespace {

struct DemoDevice {
  std::string serial;
  std::string model;
  fs::path dir;
  fs::path log_file;
  fs::path config;
  int syslog_port = 0;  // the agent's syslog receiver (UDP, loopback)
};

/// A UDP port free right now on 127.0.0.1 (the agent binds it a moment later; fine for a demo).
int FreePort(int type) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  if (fd >= 0) {
    ::close(fd);
  }
  return port;
}

int FreeUdpPort() { return FreePort(SOCK_DGRAM); }
int FreeTcpPort() { return FreePort(SOCK_STREAM); }

// GET `path` over plain HTTP from 127.0.0.1:port (the demo's session check); the whole answer, or "".
std::string HttpGet(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return "";
  }
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = fmt::format("GET {} HTTP/1.0\r\nHost: console\r\n\r\n", path);
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buffer[16384];
      for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0 && answer.size() < (1u << 24);) {
        answer.append(buffer, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  return answer;
}

/// Sends one RFC 5424 message, as a device that can only speak syslog would.
void SendSyslog(int port, const std::string& host, const std::string& text) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return;
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const std::string message = fmt::format("<131>1 {} {} enclosure - - - {}",
                                          FormatRfc3339(std::chrono::system_clock::now()), host, text);
  ::sendto(fd, message.data(), message.size(), 0, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::close(fd);
}

// Lines a storage array's service processor might log; the rules below turn the SIM ones into alerts.
struct SampleLine {
  const char* level;
  const char* component;
  const char* text;
};
constexpr SampleLine kRoutine[] = {
    {"INFO", "MP#2", "Host I/O normal, throughput {} MB/s"},
    {"INFO", "SVP", "Scheduled health check completed, {} components OK"},
    {"INFO", "CHA-1A", "Port 1A login from host WWN 50:06:0e:80:{:02x}:aa:bb:cc"},
    {"INFO", "DKC", "Background media scan {}% complete"},
};
constexpr SampleLine kProblems[] = {
    {"CRIT", "DKC", "SIM=3A21F4 Drive failure detected: HDD 00-{:02d} (parity group 1-3) blocked"},
    {"ERROR", "CACHE", "SIM=FFCE11 Cache correctable error threshold exceeded on board CMG-{}"},
    {"ERROR", "CHA-1E", "SIM=21D0C2 Link down on port 1E (FC), {} retries"},
    {"WARN", "PS", "SIM=AF2001 Power supply unit {} voltage fluctuation"},
    {"CRIT", "PS", "SIM=AF2002 Power supply unit {} failure on DKC-0"},
};

std::string FormatSample(const SampleLine& line, int value) {
  return fmt::format("{} SVP-01 {:<5} [{}] {}\n", FormatRfc3339(std::chrono::system_clock::now()), line.level,
                     line.component, fmt::format(fmt::runtime(line.text), value));
}

constexpr const char* kAgentRules = R"(
[[rules]]
name = "critical SIM"
pattern = 'CRIT .*SIM=([0-9A-F]{6}) (.*)'
code = "SIM-{1}"
severity = "critical"
message = "{2}"

[[rules]]
name = "error SIM"
pattern = 'ERROR .*SIM=([0-9A-F]{6}) (.*)'
code = "SIM-{1}"
severity = "error"
message = "{2}"

[[rules]]
name = "warning SIM"
pattern = 'WARN .*SIM=([0-9A-F]{6}) (.*)'
code = "SIM-{1}"
severity = "warning"
message = "{2}"

[[syslog_rules]]
name = "enclosure fan"
pattern = 'FAN (\S+) failed'
code = "ENC-FAN-{1}"
severity = "error"
message = "{host}: enclosure fan {1} failed"

[performance]
sample_interval = "5s"
report_interval = "20s"
)";

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Waits (bounded) for a file another process writes once it is listening.
bool WaitForFile(const fs::path& path, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(path) && fs::file_size(path) > 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

fs::path FindMailSink() {
  if (const char* env = std::getenv("LIFELINE_MAIL_SINK")) {
    return env;
  }
  // build/lifeline -> <repo>/scripts/mail-sink
  return SelfExecutable().parent_path().parent_path() / "scripts" / "mail-sink";
}

int CountMail(const fs::path& dir) {
  int count = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    count += entry.path().extension() == ".eml" ? 1 : 0;
  }
  return count;
}

class Demo {
 public:
  explicit Demo(const DemoOptions& options) : options_(options) {}

  int Run() {
    if (!Prepare()) {
      return kExitUsage;
    }
    BlockStopSignals();
    if (!StartMailSink() || !StartHome() || !StartPolicyManager() || !StartGateway() || !StartAgents() ||
        !StartSession()) {
      Shutdown();
      return kExitFailure;
    }
    PrintGuide();
    std::thread generator([this] { GenerateLogs(); });
    if (options_.seconds > 0) {
      WaitForStopSignal(std::chrono::seconds(options_.seconds));
    } else {
      WaitForStopSignal();
      std::cout << "\nstopping...\n";
    }
    stop_generator_ = true;
    generator.join();
    WaitForDelivery();
    const int code = PrintSummary();
    Shutdown();
    return code;
  }

 private:
  bool Prepare() {
    if (options_.dir.empty()) {
      std::string pattern = (fs::temp_directory_path() / "lifeline-demo-XXXXXX").string();
      if (mkdtemp(pattern.data()) == nullptr) {
        std::cerr << "lifeline demo: cannot create a directory under /tmp\n";
        return false;
      }
      dir_ = pattern;
    } else {
      dir_ = fs::absolute(options_.dir);
      std::error_code ec;
      if (fs::exists(dir_) && !fs::is_empty(dir_, ec)) {
        std::cerr << "lifeline demo: " << dir_.string()
                  << " is not empty; give a new or empty directory (the demo creates a fresh PKI in it)\n";
        return false;
      }
      fs::create_directories(dir_);
    }
    for (const char* sub : {"logs", "mail", "home", "devices", "gateway/pki", "policy/tokens"}) {
      fs::create_directories(dir_ / sub);
    }
    mail_sink_ = FindMailSink();
    if (!fs::exists(mail_sink_)) {
      std::cerr << "lifeline demo: mail sink script not found at " << mail_sink_.string()
                << " (set LIFELINE_MAIL_SINK)\n";
      return false;
    }
    if (auto made = crypto::InitPki(dir_ / "pki"); !made) {
      std::cerr << "lifeline demo: cannot create the PKI: " << made.error().message() << "\n";
      return false;
    }
    return true;
  }

  bool StartMailSink() {
    auto sink = Subprocess::Spawn({"/usr/bin/python3", mail_sink_.string(), "--listen", "127.0.0.1:0", "--port-file",
                                   (dir_ / "mail-sink.port").string(), "--dir", (dir_ / "mail").string()},
                                  dir_ / "logs" / "mail-sink.log");
    if (!sink || !WaitForFile(dir_ / "mail-sink.port", std::chrono::seconds(20))) {
      std::cerr << "lifeline demo: the mail sink did not start; see " << (dir_ / "logs" / "mail-sink.log").string()
                << " (needs python3-aiosmtpd: run scripts/setup)\n";
      return false;
    }
    mail_port_ = std::stoi(ReadText(dir_ / "mail-sink.port"));
    processes_.push_back(std::move(*sink));
    return true;
  }

  bool StartHome() {
    const fs::path config = dir_ / "home.toml";
    WriteText(config, fmt::format(R"(# Written by `lifeline demo`.
[listen]
ingest = "127.0.0.1:0"
tunnel = "127.0.0.1:0"
sessions = "127.0.0.1:0"
admin = "127.0.0.1:0"
address_file = "{0}/home/addresses.json"

[pki]
dir = "{0}/pki"

[store]
path = "{0}/home/home.db"

[ingest]
ticket_min_severity = "error"

[smtp]
url = "smtp://127.0.0.1:{1}"
from = "lifeline-demo@localhost"

[notify]
email = ["oncall@storage-support.example", "service-manager@storage-support.example"]
)",
                                  dir_.string(), mail_port_));
    auto home = Subprocess::Spawn({SelfExecutable().string(), "home", "run", "--config", config.string()},
                                  dir_ / "logs" / "home.log");
    if (!home || !WaitForFile(dir_ / "home" / "addresses.json", std::chrono::seconds(20))) {
      std::cerr << "lifeline demo: the home did not start; see " << (dir_ / "logs" / "home.log").string() << "\n";
      return false;
    }
    processes_.push_back(std::move(*home));
    boost::system::error_code ec;
    auto addresses = boost::json::parse(ReadText(dir_ / "home" / "addresses.json"), ec);
    if (ec) {
      return false;
    }
    ingest_address_ = std::string(addresses.at("ingest").get_string());
    admin_address_ = std::string(addresses.at("admin").get_string());
    tunnel_port_ = static_cast<int>(addresses.at("tunnel_port").as_int64());

    // The demo shares the home's store file (SQLite WAL) to issue tokens, as `lifeline home
    // enroll-token` and `admin-token` do.
    home::HomeConfig home_config = home::HomeConfig::Load(config);
    auto store = home::OpenHomeStore(home_config);
    if (!store) {
      return false;
    }
    store_ = std::move(*store);
    admin_token_ = crypto::GenerateToken("lla");
    if (!store_->CreateAdminToken("demo", crypto::HashToken(admin_token_), "engineer",
                                  SystemClock::Instance().NowUnixMillis())) {
      return false;
    }
    return crypto::WriteFileAtomically(dir_ / "admin.token", admin_token_ + "\n", 0600).has_value();
  }

  // The customer's policy manager (`lifeline policy run`): its own TLS certificate, the home's CA to
  // verify the gateway's client certificate, approval emails to the mail sink; an admin and an
  // approver token made with `lifeline policy tokens create`; one Ask for Approval rule.
  bool StartPolicyManager() {
    const fs::path policy = dir_ / "policy";
    crypto::InitPkiOptions pki_options;
    pki_options.home_names = {"127.0.0.1", "localhost"};
    pki_options.ca_name = "Lifeline demo policy manager CA";
    if (auto made = crypto::InitPki(policy / "pki", pki_options); !made) {
      std::cerr << "lifeline demo: cannot create the policy manager's certificate: " << made.error().message() << "\n";
      return false;
    }
    policy_config_ = policy / "policy.toml";
    WriteText(policy_config_, fmt::format(R"(# Written by `lifeline demo`.
[policy]
data_dir = "{0}/data"

[listen]
https = "127.0.0.1:0"

[tls]
cert_file = "{0}/pki/home.crt"
key_file = "{0}/pki/home.key"
client_ca_file = "{1}/pki/ca.crt"   # the home's CA, which signs the gateway's certificate

[approvals]
notify = ["approvers@acme.example"]

[smtp]
url = "smtp://127.0.0.1:{2}"
from = "lifeline-policy@acme.example"
)",
                                          policy.string(), dir_.string(), mail_port_));
    if (!MakePolicyToken("demo-admin", "admin") || !MakePolicyToken("carol", "approver")) {
      return false;
    }
    const fs::path log = dir_ / "logs" / "policy.log";
    auto run = Subprocess::Spawn({SelfExecutable().string(), "policy", "run", "--config", policy_config_.string()}, log);
    if (!run) {
      return false;
    }
    processes_.push_back(std::move(*run));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    const std::string marker = "listening on https://";
    std::string text;
    while ((text = ReadText(log)).find(marker) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::cerr << "lifeline demo: the policy manager did not start; see " << log.string() << "\n";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const auto at = text.find(marker) + marker.size();
    policy_url_ = "https://" + text.substr(at, text.find_first_of(" \n", at) - at);
    return true;
  }

  // Rule 1 asks an approver before anyone reaches the first array's console; connect-home uploads
  // from every array are allowed. Set once the console is registered at the gateway, as a customer
  // would: the gateway refuses a device deployed after its last word from the policy manager, and a
  // new version is such a word.
  bool SetDemoPolicy() {
    const fs::path policy = dir_ / "policy";
    const std::string rules = fmt::format(
        R"({{"rules": [{{"id": 1, "activity": "remote_session", "application": "http",
                       "scope": {{"kind": "device", "name": "{}"}}, "action": "ask_for_approval",
                       "ask_timeout_s": 900, "description": "the console needs an approver"}},
                      {{"id": 2, "activity": "connect_home", "scope": {{"kind": "site"}},
                       "action": "always_allow"}}]}})",
        DemoSerial(0));
    transport::HttpClient client(transport::ClientTls{.ca_file = (policy / "pki" / "ca.crt").string()});
    auto put = client.Send({.method = "PUT", .url = policy_url_ + "/v1/policies", .content_type = "application/json",
                            .body = rules,
                            .headers = {{"Authorization", "Bearer " + ReadToken("demo-admin")}}});
    if (!put || put->status != 200) {
      std::cerr << "lifeline demo: the policy manager refused the demo's policy: "
                << (put ? put->body : put.error().message()) << "\n";
      return false;
    }
    return true;
  }

  fs::path PolicyTokenFile(const std::string& name) const { return dir_ / "policy" / "tokens" / name; }
  std::string ReadToken(const std::string& name) const {
    std::string token = ReadText(PolicyTokenFile(name));
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
      token.pop_back();
    }
    return token;
  }

  // `lifeline policy tokens create NAME --role ROLE`: the token is the line it prints on stdout.
  bool MakePolicyToken(const std::string& name, const std::string& role) {
    const fs::path out = dir_ / "policy" / "tokens" / (name + ".out");
    auto create = Subprocess::Spawn({SelfExecutable().string(), "policy", "tokens", "create", name, "--role", role,
                                     "--config", policy_config_.string()},
                                    out);
    if (!create || create->Wait(std::chrono::seconds(30)).value_or(-1) != 0) {
      std::cerr << "lifeline demo: creating the policy manager's token '" << name << "' failed: " << ReadText(out);
      return false;
    }
    std::istringstream lines(ReadText(out));
    std::string token;
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("llpol_")) {
        token = line;
      }
    }
    fs::remove(out);
    return !token.empty() && crypto::WriteFileAtomically(PolicyTokenFile(name), token + "\n", 0600).has_value();
  }

  // `lifeline policy ARGS...` against the demo's policy manager with the named token.
  std::vector<std::string> PolicyCommand(std::vector<std::string> args, const std::string& token) const {
    std::vector<std::string> argv = {SelfExecutable().string(), "policy"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& option : {std::string("--url"), policy_url_, std::string("--ca-file"),
                                      (dir_ / "policy" / "pki" / "ca.crt").string(), std::string("--token-file"),
                                      PolicyTokenFile(token).string()}) {
      argv.push_back(option);
    }
    return argv;
  }

  static std::string DemoSerial(int i) { return fmt::format("SN{:05d}", 41000 + i); }

  bool StartAgents() {
    const char* models[] = {"VSP G900", "HUS 150", "VSP E990", "XP7"};
    const crypto::PkiPaths home_pki(dir_ / "pki");
    for (int i = 0; i < options_.devices; ++i) {
      DemoDevice device{.serial = DemoSerial(i), .model = models[i % 4],
                        .syslog_port = FreeUdpPort()};
      device.dir = dir_ / "devices" / device.serial;
      device.log_file = device.dir / "array.log";
      device.config = device.dir / "agent.toml";
      fs::create_directories(device.dir / "pki");
      for (const auto& public_file : {home_pki.ca_cert, home_pki.home_seal_public, home_pki.home_sign_public}) {
        fs::copy_file(public_file, device.dir / "pki" / public_file.filename());
      }
      WriteText(device.log_file, "");
      // The agents know only the site's gateway: they enroll and send through it.
      WriteText(device.config, fmt::format(R"(# Written by `lifeline demo`.
[device]
customer = "ACME Corp"
site = "Berlin DC1"
serial = "{0}"
model = "{1}"

[home]
url = "https://{2}"

[pki]
dir = "{3}/pki"

[state]
dir = "{3}/state"

[heartbeat]
interval = "10s"

[send]
retry_max = "5s"

[[logs]]
path = "{4}"

[syslog]
udp = "127.0.0.1:{6}"

# The array's controller health, as its CLI would report it: the generator plants a fault now and then.
[[checks.command]]
name = "controller"
command = ["/bin/sh", "-c", "test ! -e {3}/controller-fault"]
interval = "3s"
timeout = "5s"
code = "CTL-FAULT"
exit_status = "0=ok *=critical"
message = "controller reports a fault"

[[checks.health]]
name = "state-disk"
kind = "filesystem"
path = "{3}"
max_percent = 98
code = "AGENT-DISK-FULL"
severity = "warning"
{5})",
                                           device.serial, device.model, gateway_devices_, device.dir.string(),
                                           device.log_file.string(), kAgentRules, device.syslog_port));
      const protocol::DeviceIdentity identity{"ACME Corp", "Berlin DC1", device.serial, device.model};
      const std::string token = crypto::GenerateToken("llt");
      const auto now_ms = SystemClock::Instance().NowUnixMillis();
      if (!store_->CreateEnrollmentToken(crypto::HashToken(token), identity, now_ms + 600'000, now_ms)) {
        return false;
      }
      const auto log = dir_ / "logs" / fmt::format("agent-{}.log", device.serial);
      auto enroll = Subprocess::Spawn({SelfExecutable().string(), "agent", "enroll", "--config",
                                       device.config.string(), "--token", token},
                                      log);
      if (!enroll || enroll->Wait(std::chrono::seconds(30)).value_or(-1) != 0) {
        std::cerr << "lifeline demo: enrolling " << device.serial << " failed; see " << log.string() << "\n";
        return false;
      }
      // The small resident agent devices run, when it is installed beside this binary.
      const auto small_agent = SelfExecutable().parent_path() / "lifeline-agent";
      auto agent = Subprocess::Spawn(
          std::filesystem::exists(small_agent)
              ? std::vector<std::string>{small_agent.string(), "run", "--config", device.config.string()}
              : std::vector<std::string>{SelfExecutable().string(), "agent", "run", "--config", device.config.string()},
                                     log);
      if (!agent) {
        return false;
      }
      processes_.push_back(std::move(*agent));
      devices_.push_back(device);
    }
    return true;
  }

  // The site's gateway: enrolled with a gateway token, its tunnel to the home, the agents' relay.
  bool StartGateway() {
    const fs::path gateway = dir_ / "gateway";
    const crypto::PkiPaths home_pki(dir_ / "pki");
    for (const auto& public_file : {home_pki.ca_cert, home_pki.home_seal_public, home_pki.home_sign_public}) {
      fs::copy_file(public_file, gateway / "pki" / public_file.filename());
    }
    gateway_devices_ = fmt::format("127.0.0.1:{}", FreeTcpPort());
    gateway_config_ = gateway / "gateway.toml";
    WriteText(gateway_config_, fmt::format(R"(# Written by `lifeline demo`.
[gateway]
customer = "ACME Corp"
site = "Berlin DC1"
name = "gw-berlin"
data_dir = "{0}"

[home]
url = "https://{1}"
tunnel_urls = ["tls://127.0.0.1:{2}"]

[listen]
devices = "{3}"
admin = "127.0.0.1:{4}"

[probe]
interval = "10s"

[remote_access]
session_max = "1h"

# The site's policy manager decides every session (its rule 1 asks an approver for the first array's console).
[policy]
url = "{5}"
ca_file = "{6}"
)",
                                           gateway.string(), ingest_address_, tunnel_port_, gateway_devices_,
                                           FreeTcpPort(), policy_url_, (dir_ / "policy" / "pki" / "ca.crt").string()));
    const protocol::DeviceIdentity identity{"ACME Corp", "Berlin DC1", "gw-berlin", "lifeline-gateway"};
    const std::string token = crypto::GenerateToken("llt");
    const auto now_ms = SystemClock::Instance().NowUnixMillis();
    if (!store_->CreateEnrollmentToken(crypto::HashToken(token), identity, now_ms + 600'000, now_ms,
                                       store::EnrollmentKind::kGateway)) {
      return false;
    }
    const fs::path log = dir_ / "logs" / "gateway.log";
    auto enroll = Subprocess::Spawn(
        {SelfExecutable().string(), "gateway", "enroll", "--config", gateway_config_.string(), "--token", token}, log);
    if (!enroll || enroll->Wait(std::chrono::seconds(30)).value_or(-1) != 0) {
      std::cerr << "lifeline demo: enrolling the gateway failed; see " << log.string() << "\n";
      return false;
    }
    auto run = Subprocess::Spawn({SelfExecutable().string(), "gateway", "run", "--config", gateway_config_.string()}, log);
    if (!run) {
      return false;
    }
    processes_.push_back(std::move(*run));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (ReadText(log).find("to the home is up") == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::cerr << "lifeline demo: the gateway's tunnel did not come up; see " << log.string() << "\n";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }

  // The first array's web console (a plain HTTP server on its directory) registered at the gateway,
  // and an engineer's session to it through home -> tunnel -> gateway, checked with one request. The
  // policy's rule 1 asks for approval: the request waits, the approvers' email arrives in the mail
  // sink, and carol approves it with `lifeline policy requests approve`.
  bool StartSession() {
    if (devices_.empty()) {
      return true;
    }
    const DemoDevice& device = devices_.front();
    const int console_port = FreeTcpPort();
    auto console = Subprocess::Spawn({"/usr/bin/python3", "-m", "http.server", std::to_string(console_port), "--bind",
                                      "127.0.0.1", "--directory", device.dir.string()},
                                     dir_ / "logs" / "console.log");
    if (!console) {
      return false;
    }
    processes_.push_back(std::move(*console));
    const fs::path log = dir_ / "logs" / "gateway-admin.log";
    auto add = Subprocess::Spawn({SelfExecutable().string(), "gateway", "devices", "add", "--config",
                                  gateway_config_.string(), "--serial", device.serial, "--model", device.model,
                                  "--address", "127.0.0.1", "--app", fmt::format("http:{}", console_port)},
                                 log);
    if (!add || add->Wait(std::chrono::seconds(30)).value_or(-1) != 0) {
      std::cerr << "lifeline demo: registering " << device.serial << " at the gateway failed; see " << log.string()
                << "\n";
      return false;
    }
    if (!SetDemoPolicy()) {
      return false;
    }
    // The gateway's watch hears of the new version at once; give it a moment (bounded) before asking.
    const auto synced = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (ReadText(dir_ / "logs" / "gateway.log").find("policy version 1 received") == std::string::npos &&
           std::chrono::steady_clock::now() < synced) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const fs::path connect_log = dir_ / "logs" / "connect.log";
    auto connect = Subprocess::Spawn(
        {SelfExecutable().string(), "connect", "--home", "https://" + admin_address_, "--ca",
         (dir_ / "pki" / "ca.crt").string(), "--token-file", (dir_ / "admin.token").string(), "--device",
         device.serial, "--app", "http", "--reason", "read the array's log", "--service-request", "DEMO-1",
         "--listen", "127.0.0.1:0"},
        connect_log);
    if (!connect) {
      return false;
    }
    processes_.push_back(std::move(*connect));
    if (!ApproveSession(connect_log)) {
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::string text;
    while ((text = ReadText(connect_log)).find("listening on 127.0.0.1:") == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::cerr << "lifeline demo: the remote session did not open; see " << connect_log.string() << "\n";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const auto at = text.find("listening on 127.0.0.1:") + std::string("listening on 127.0.0.1:").size();
    session_port_ = std::stoi(text.substr(at));
    return true;
  }

  // Waits (bounded) for `lifeline connect` to wait for approval, for the approvers' email, then approves
  // as carol with the CLI.
  bool ApproveSession(const fs::path& connect_log) {
    const std::string marker = "waiting for approval of session ";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::string text;
    while ((text = ReadText(connect_log)).find(marker) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::cerr << "lifeline demo: the session did not wait for approval; see " << connect_log.string() << "\n";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    approval_id_ = text.substr(text.find(marker) + marker.size(), 32);
    while (approval_email_.empty()) {
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(dir_ / "mail", ec)) {
        if (entry.path().extension() == ".eml" && ReadText(entry.path()).find(approval_id_) != std::string::npos) {
          approval_email_ = entry.path();
        }
      }
      if (approval_email_.empty()) {
        if (std::chrono::steady_clock::now() > deadline) {
          std::cerr << "lifeline demo: no approval email for session " << approval_id_ << "; see "
                    << (dir_ / "logs" / "policy.log").string() << "\n";
          return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    const fs::path log = dir_ / "logs" / "approve.log";
    auto approve = Subprocess::Spawn(
        PolicyCommand({"requests", "approve", approval_id_, "--comment", "demo: go ahead"}, "carol"), log);
    if (!approve || approve->Wait(std::chrono::seconds(30)).value_or(-1) != 0) {
      std::cerr << "lifeline demo: approving session " << approval_id_ << " failed; see " << log.string() << "\n";
      return false;
    }
    return true;
  }

  void PrintGuide() {
    const std::string self = SelfExecutable().string();
    std::cout << fmt::format(
        "Lifeline demo running in {0}\n\n"
        "  mail sink (SMTP)   127.0.0.1:{1}   emails land in {0}/mail/ as .eml files\n"
        "  home               agents on {2}, admin API on {3}; log {0}/logs/home.log\n",
        dir_.string(), mail_port_, ingest_address_, admin_address_);
    std::cout << fmt::format("  gateway gw-berlin  agents enroll and send through {}; tunnel to the home; log {}/logs/gateway.log\n",
                             gateway_devices_, dir_.string());
    for (const auto& d : devices_) {
      std::cout << fmt::format("  agent {}     ({}) follows {}; log {}/logs/agent-{}.log\n", d.serial, d.model,
                               d.log_file.string(), dir_.string(), d.serial);
    }
    if (session_port_ != 0) {
      std::cout << fmt::format(
          "\nRemote session: `lifeline connect` opened 127.0.0.1:{0}, which reaches {1}'s web console only through\n"
          "home -> tunnel -> gateway (the gateway allows only registered applications). Try:\n\n"
          "  curl http://127.0.0.1:{0}/array.log\n"
          "  {2} gateway sessions list --config {3}\n"
          "  {2} gateway devices list --config {3}\n",
          session_port_, devices_.front().serial, SelfExecutable().string(), gateway_config_.string());
      std::cout << fmt::format(
          "\nApproval: the site's policy manager ({0}; log {1}/logs/policy.log) has one Ask for Approval\n"
          "rule for that console. The session ({2}, service request DEMO-1) waited; the approvers' email is\n"
          "{3}; carol approved it with `lifeline policy requests approve`. Look with:\n\n"
          "  {4} policy requests list --all --url {0} --ca-file {1}/policy/pki/ca.crt --token-file "
          "{1}/policy/tokens/carol\n"
          "  {4} policy show --url {0} --ca-file {1}/policy/pki/ca.crt --token-file {1}/policy/tokens/demo-admin\n",
          policy_url_, dir_.string(), approval_id_, approval_email_.string(), SelfExecutable().string());
    }
    std::cout << fmt::format(
        "\nA generator appends storage-array messages to each array.log; SIM errors become alerts,\n"
        "critical and error ones open tickets and email on-call. Look at them with:\n\n"
        "  {0} tickets --home https://{1} --ca {2}/pki/ca.crt --token-file {2}/admin.token list\n"
        "  {0} tickets --home https://{1} --ca {2}/pki/ca.crt --token-file {2}/admin.token show LL-000001\n"
        "  {0} agent status --config {2}/devices/{3}/agent.toml\n"
        "  ls {2}/mail/\n\n{4}\n",
        self, admin_address_, dir_.string(), devices_.empty() ? "" : devices_.front().serial,
        options_.seconds > 0 ? fmt::format("Running for {} seconds.", options_.seconds) : "Press Ctrl-C to stop.");
    std::cout.flush();
  }

  void GenerateLogs() {
    std::mt19937 random(std::random_device{}());
    std::uniform_int_distribution<int> value(1, 24);
    int tick = 0;
    while (!stop_generator_) {
      for (std::size_t i = 0; i < devices_.size(); ++i) {
        std::ofstream out(devices_[i].log_file, std::ios::app);
        out << FormatSample(kRoutine[random() % std::size(kRoutine)], value(random) * 40);
        // Every device reports a problem early, then now and then; a repeated code shows occurrences.
        if (tick == static_cast<int>(i) || random() % 5 == 0) {
          out << FormatSample(kProblems[random() % std::size(kProblems)], value(random) % 4 + 1);
        }
        // The enclosure only speaks syslog.
        if (random() % 8 == 0) {
          SendSyslog(devices_[i].syslog_port, devices_[i].serial + "-enc",
                     fmt::format("FAN {} failed, speed 0 rpm", value(random) % 4 + 1));
        }
      }
      // The first device's controller reports a fault for a while, then recovers: a ticket opens and resolves.
      if (!devices_.empty()) {
        const fs::path fault = devices_[0].dir / "controller-fault";
        if (tick == 3) {
          WriteText(fault, "fault\n");
        } else if (tick == 9) {
          fs::remove(fault);
        }
      }
      ++tick;
      for (int waited = 0; waited < 10 && !stop_generator_; ++waited) {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
      }
    }
  }

  Result<boost::json::object> Stats() {
    transport::HttpClient client(transport::ClientTls{.ca_file = (dir_ / "pki" / "ca.crt").string()});
    auto response = client.Send({.method = "GET", .url = "https://" + admin_address_ + "/v1/stats",
                                 .headers = {{"Authorization", "Bearer " + admin_token_}}});
    if (!response || response->status != 200) {
      return std::make_error_code(std::errc::io_error);
    }
    boost::system::error_code ec;
    auto value = boost::json::parse(response->body, ec);
    if (ec || !value.is_object()) {
      return std::make_error_code(std::errc::io_error);
    }
    return value.get_object();
  }

  // Lets the agents drain their queues and the home send its emails (bounded), so the summary counts them.
  void WaitForDelivery() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    std::this_thread::sleep_for(std::chrono::seconds(2));
    while (std::chrono::steady_clock::now() < deadline) {
      auto stats = Stats();
      if (stats && stats->at("emails_pending").to_number<std::int64_t>() == 0 &&
          CountMail(dir_ / "mail") >= stats->at("emails_sent").to_number<std::int64_t>()) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }

  int PrintSummary() {
    if (session_port_ != 0) {
      const std::string page = HttpGet(session_port_, "/array.log");
      const bool ok = page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200");
      std::cout << fmt::format("\nApproval: session {} approved by carol after the approvers' email ({})\n",
                               approval_id_, approval_email_.filename().string());
      std::cout << fmt::format("Remote session: {} (GET /array.log of {} through home -> tunnel -> gateway)\n",
                               ok ? fmt::format("fetched {} bytes", page.size()) : std::string("FAILED"),
                               devices_.front().serial);
      if (!ok) {
        std::cerr << "lifeline demo: the remote session did not work; see " << dir_.string() << "/logs/connect.log\n";
        return kExitFailure;
      }
    }
    auto stats = Stats();
    if (!stats) {
      std::cerr << "lifeline demo: cannot read the home's totals\n";
      return kExitFailure;
    }
    std::cout << fmt::format(
        "\nSummary: {} devices, {} alerts, {} tickets, {} emails sent ({} files in {}/mail/)\n"
        "Everything stays in {} for a look.\n",
        stats->at("devices").to_number<std::int64_t>(), stats->at("alerts").to_number<std::int64_t>(),
        stats->at("tickets").to_number<std::int64_t>(), stats->at("emails_sent").to_number<std::int64_t>(),
        CountMail(dir_ / "mail"), dir_.string(), dir_.string());
    return kExitOk;
  }

  void Shutdown() {
    store_.reset();
    // The session and agents first, then the gateway, the home, the mail sink: the reverse of start.
    for (auto it = processes_.rbegin(); it != processes_.rend(); ++it) {
      it->Terminate(std::chrono::seconds(10));
    }
    processes_.clear();
  }

  DemoOptions options_;
  fs::path dir_;
  fs::path mail_sink_;
  int mail_port_ = 0;
  std::string ingest_address_;
  std::string admin_address_;
  std::string admin_token_;
  int tunnel_port_ = 0;
  std::string gateway_devices_;  // the gateway's device-facing address
  fs::path gateway_config_;
  fs::path policy_config_;
  std::string policy_url_;      // https://127.0.0.1:PORT of the policy manager
  std::string approval_id_;     // the session that waited for approval
  fs::path approval_email_;     // the approvers' email about it, in the mail sink's directory
  int session_port_ = 0;         // `lifeline connect`'s local port to the first array's console
  std::unique_ptr<store::HomeStore> store_;
  std::vector<DemoDevice> devices_;
  std::vector<Subprocess> processes_;
  std::atomic<bool> stop_generator_{false};
};

}  // namespace

CLI::App* AddDemoCommand(CLI::App& app, DemoOptions& options) {
  auto* cmd = app.add_subcommand(
      "demo",
      "Run the whole system on this machine: a fresh PKI, a home, the site's gateway and policy manager (one Ask\n"
      "for Approval rule: the demo's remote session waits for an approver), simulated storage arrays with agents,\n"
      "and a mail sink that writes each email as a file under DIR/mail/");
  cmd->add_option("--dir", options.dir, "New or empty directory for everything (default: a new one under /tmp)");
  cmd->add_option("--for", options.seconds, "Run this many seconds, print a summary and exit (default: until Ctrl-C)")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--devices", options.devices, "How many simulated devices (default 3)")->check(CLI::Range(1, 20));
  return cmd;
}

int RunDemo(const DemoOptions& options) { return Demo(options).Run(); }

}  // namespace lifeline::cli
