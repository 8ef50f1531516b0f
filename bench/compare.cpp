#include "bench/compare.h"

#include "agent/queue.h"
#include "bench/workload.h"
#include "cli/subprocess.h"
#include "crypto/pki.h"
#include "transport/http_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

namespace lifeline::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kStartTimeout = seconds(20);

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

bool Eventually(const std::function<bool()>& condition, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  return condition();
}

// The last line of a command's output: `lifeline home admin-token` and `enroll-token` print the token
// last, after their explanation.
std::string LastLine(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
    text.pop_back();
  }
  const auto newline = text.rfind('\n');
  return newline == std::string::npos ? text : text.substr(newline + 1);
}

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

CommandResult RunCommand(const std::vector<std::string>& argv, const fs::path& log, milliseconds timeout = seconds(60)) {
  fs::remove(log);
  auto process = cli::Subprocess::Spawn(argv, log);
  if (!process) {
    return {-1, "cannot start " + argv.front() + ": " + process.error().message()};
  }
  CommandResult result;
  result.exit_code = process->Wait(timeout).value_or(-1);
  if (result.exit_code == -1) {
    process->Kill();
  }
  result.output = ReadFile(log);
  return result;
}

// A loopback port nobody listens on now, in 1024..32767: zabbix_agentd refuses a ListenPort above
// that (so not an ephemeral one) and cannot report back a port it chose, so this is the one place with
// a (tiny) race. -1 when none of the tries was free.
int FreeZabbixPort() {
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> ports(20000, 32767);
  for (int attempt = 0; attempt < 64; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      return -1;
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(ports(random)));
    const bool bound = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    close(fd);
    if (bound) {
      return ntohs(address.sin_port);
    }
  }
  return -1;
}

std::optional<boost::json::value> ParseJson(const std::string& text) {
  boost::system::error_code ec;
  auto value = boost::json::parse(text, ec);
  if (ec) {
    return std::nullopt;
  }
  return value;
}

std::int64_t JsonInt(const std::optional<boost::json::value>& value, std::string_view name) {
  if (!value || !value->is_object()) {
    return -1;
  }
  const auto* field = value->as_object().if_contains(name);
  if (field == nullptr || !field->is_number()) {
    return -1;
  }
  boost::system::error_code ec;
  const auto number = field->to_number<std::int64_t>(ec);
  return ec ? -1 : number;
}

// Everything one run starts. Members are destroyed in reverse order: the agents stop first, then the
// servers they talk to.
class ComparisonRun {
 public:
  explicit ComparisonRun(const CompareOptions& options) : options_(options), dir_(options.work_dir) {}

  CompareFigures Execute() {
    CompareFigures figures;
    figures.error = StartHome();
    if (figures.error.empty()) {
      figures.error = StartLifelineAgent();
    }
    if (!figures.error.empty()) {
      return figures;
    }
    figures.zabbix.note = StartZabbix(&figures.zabbix_version);
    figures.lifeline.ran = true;
    figures.zabbix.ran = zabbix_.has_value();

    std::this_thread::sleep_for(options_.settle);
    Measure(figures);
    return figures;
  }

 private:
  std::string StartHome() {
    const fs::path home = dir_ / "home";
    fs::create_directories(home / "mail");
    // A real mail sink, so the home's outbox delivers instead of retrying: the home runs as it would.
    auto sink = cli::Subprocess::Spawn({"/usr/bin/python3", (options_.source_dir / "scripts/mail-sink").string(),
                                        "--listen", "127.0.0.1:0", "--port-file", (home / "smtp-port").string(),
                                        "--dir", (home / "mail").string()},
                                       home / "mail-sink.log");
    if (!sink) {
      return "cannot start scripts/mail-sink: " + sink.error().message();
    }
    mail_sink_.emplace(std::move(*sink));
    if (!Eventually([&] { return !ReadFile(home / "smtp-port").empty(); }, kStartTimeout)) {
      return "the mail sink did not start: " + ReadFile(home / "mail-sink.log");
    }
    const std::string smtp_port = Trimmed(ReadFile(home / "smtp-port"));

    auto pki = RunCommand({Binary(), "pki", "init", "--dir", (home / "pki").string()}, home / "pki-init.log");
    if (pki.exit_code != 0) {
      return fmt::format("lifeline pki init failed (exit {}, binary {}): {}", pki.exit_code, Binary(), pki.output);
    }
    WriteFile(home / "home.toml", fmt::format(R"([listen]
ingest = "127.0.0.1:0"
tunnel = "127.0.0.1:0"
sessions = "127.0.0.1:0"
admin = "127.0.0.1:0"
address_file = "{0}/addresses.json"
[pki]
dir = "{0}/pki"
[store]
path = "{0}/home.db"
[smtp]
url = "smtp://127.0.0.1:{1}"
from = "lifeline-bench@localhost"
[notify]
email = ["oncall@example.com"]
)",
                                              home.string(), smtp_port));
    auto admin = RunCommand({Binary(), "home", "admin-token", "--config", (home / "home.toml").string(), "--name", "bench"},
                     home / "admin-token.log");
    if (admin.exit_code != 0) {
      return "lifeline home admin-token failed: " + admin.output;
    }
    admin_token_ = LastLine(admin.output);

    auto process = cli::Subprocess::Spawn({Binary(), "home", "run", "--config", (home / "home.toml").string()},
                                          home / "home.log");
    if (!process) {
      return "cannot start lifeline home run: " + process.error().message();
    }
    home_.emplace(std::move(*process));
    if (!Eventually([&] { return !home_->Running() || ParseJson(ReadFile(home / "addresses.json")).has_value(); },
                    kStartTimeout) ||
        !home_->Running()) {
      return "the home did not start: " + ReadFile(home / "home.log");
    }
    const auto addresses = ParseJson(ReadFile(home / "addresses.json"));
    const auto* ingest = addresses->is_object() ? addresses->as_object().if_contains("ingest") : nullptr;
    const auto* admin_address = addresses->is_object() ? addresses->as_object().if_contains("admin") : nullptr;
    if (ingest == nullptr || !ingest->is_string() || admin_address == nullptr || !admin_address->is_string()) {
      return "unexpected addresses.json: " + ReadFile(home / "addresses.json");
    }
    ingest_url_ = "https://" + std::string(ingest->as_string());
    admin_url_ = "https://" + std::string(admin_address->as_string());
    return {};
  }

  std::string StartLifelineAgent() {
    const fs::path agent = dir_ / "agent";
    fs::create_directories(agent / "pki");
    for (const char* name : {crypto::PkiPaths::kCaCert, crypto::PkiPaths::kHomeSealPublic,
                             crypto::PkiPaths::kHomeSignPublic}) {
      std::error_code ec;
      fs::copy_file(dir_ / "home/pki" / name, agent / "pki" / name, fs::copy_options::overwrite_existing, ec);
      if (ec) {
        return fmt::format("cannot copy {} to the agent: {}", name, ec.message());
      }
    }
    WriteFile(LogPath(), "");
    // Production defaults for everything the bench does not need to set (poll interval, heartbeat
    // interval, retry timing), so the idle figures are those of an agent as shipped.
    WriteFile(agent / "agent.toml", fmt::format(R"([device]
customer = "ACME"
site = "bench"
serial = "BENCH-0001"
model = "VSP G900"
[home]
url = "{0}"
[pki]
dir = "{1}/pki"
[state]
dir = "{1}/state"
[[logs]]
path = "{2}"
{3}
)",
                                                ingest_url_, agent.string(), LogPath().string(), RulesToml()));
    auto token = RunCommand({Binary(), "home", "enroll-token", "--config", (dir_ / "home/home.toml").string(), "--customer",
                      "ACME", "--site", "bench", "--serial", "BENCH-0001", "--model", "VSP G900"},
                     agent / "enroll-token.log");
    if (token.exit_code != 0) {
      return "lifeline home enroll-token failed: " + token.output;
    }
    auto enroll = RunCommand({Binary(), "agent", "enroll", "--config", (agent / "agent.toml").string(), "--token",
                       LastLine(token.output)},
                      agent / "enroll.log");
    if (enroll.exit_code != 0) {
      return "lifeline agent enroll failed: " + enroll.output;
    }
    // The resident agent is the small lifeline-agent; it starts `lifeline agent send` while there is work.
    auto process = cli::Subprocess::Spawn({AgentBinary(), "run", "--config", (agent / "agent.toml").string()},
                                          agent / "agent.log");
    if (!process) {
      return "cannot start lifeline agent run: " + process.error().message();
    }
    agent_.emplace(std::move(*process));
    if (!Eventually(
            [&] { return !agent_->Running() || ReadFile(agent / "agent.log").find("started") != std::string::npos; },
            kStartTimeout) ||
        !agent_->Running()) {
      return "the agent did not start: " + ReadFile(agent / "agent.log");
    }
    return {};
  }

  // Returns a note for the report: empty when zabbix_agentd runs and follows the log.
  std::string StartZabbix(std::string* version) {
    if (!fs::exists(options_.zabbix_binary)) {
      return options_.zabbix_binary.string() + " is not installed (apt-get install zabbix-agent)";
    }
    const fs::path zabbix = dir_ / "zabbix";
    fs::create_directories(zabbix);
    auto v = RunCommand({options_.zabbix_binary.string(), "-V"}, zabbix / "version.log", seconds(10));
    *version = v.output.substr(0, v.output.find('\n'));

    // zabbix_agentd follows logs only as an active check, handed out by a server: a minimal one.
    const std::string key =
        fmt::format("log[{},\"{}\",,1000]", LogPath().string(), RulesAlternation());
    auto server = cli::Subprocess::Spawn(
        {"/usr/bin/python3", (options_.source_dir / "bench/zabbix_active_server.py").string(), "--port-file",
         (zabbix / "server-port").string(), "--stats-file", ZabbixStatsPath().string(), "--key", key},
        zabbix / "server.log");
    if (!server) {
      return "cannot start bench/zabbix_active_server.py: " + server.error().message();
    }
    zabbix_server_.emplace(std::move(*server));
    if (!Eventually([&] { return !ReadFile(zabbix / "server-port").empty(); }, kStartTimeout)) {
      return "the stand-in Zabbix server did not start: " + ReadFile(zabbix / "server.log");
    }
    const int listen_port = FreeZabbixPort();
    if (listen_port < 0) {
      return "no free loopback port in 20000..32767 for zabbix_agentd's ListenPort";
    }
    // Debian's defaults except where a private, foreground, loopback-only instance needs otherwise.
    WriteFile(zabbix / "zabbix_agentd.conf",
              fmt::format("PidFile={0}/zabbix_agentd.pid\n"
                          "LogFile={0}/zabbix_agentd.log\n"
                          "LogFileSize=0\n"
                          "Server=127.0.0.1\n"
                          "ServerActive=127.0.0.1:{1}\n"
                          "ListenIP=127.0.0.1\n"
                          "ListenPort={2}\n"
                          "Hostname=bench-array\n"
                          "{3}",
                          zabbix.string(), Trimmed(ReadFile(zabbix / "server-port")), listen_port,
                          // As root it would switch to the zabbix user, who cannot read our temp dir.
                          geteuid() == 0 ? "AllowRoot=1\n" : ""));
    auto process = cli::Subprocess::Spawn(
        {options_.zabbix_binary.string(), "-f", "-c", (zabbix / "zabbix_agentd.conf").string()},
        zabbix / "stdout.log");
    if (!process) {
      return "cannot start zabbix_agentd: " + process.error().message();
    }
    zabbix_.emplace(std::move(*process));
    if (!Eventually(
            [&] {
              return !zabbix_->Running() ||
                     JsonInt(ParseJson(ReadFile(ZabbixStatsPath())), "active_checks_requests") > 0;
            },
            kStartTimeout) ||
        !zabbix_->Running()) {
      zabbix_->Terminate(seconds(5));
      zabbix_.reset();
      return "zabbix_agentd did not ask for its active checks: " + ReadFile(zabbix / "stdout.log") +
             ReadFile(zabbix / "zabbix_agentd.log");
    }
    return {};
  }

  void Measure(CompareFigures& figures) {
    const pid_t agent_pid = agent_->pid();
    const pid_t zabbix_pid = zabbix_ ? zabbix_->pid() : -1;
    // The agent and its sender process, when one runs: both are the agent's cost.
    auto lifeline_tree = [&] { return ProcessTree(agent_pid); };
    auto zabbix_tree = [&] { return zabbix_pid > 0 ? ProcessTree(zabbix_pid) : std::vector<pid_t>{}; };

    // Idle: both follow the (quiet) log and talk to their servers as they do when nothing happens. The
    // agent's sender sent the start-up heartbeat and inventory; it leaves once the queue has been empty
    // for a while (10 s), and idle starts then.
    const auto sender_deadline = Clock::now() + std::chrono::seconds(60);
    while (ProcessTree(agent_pid).size() > 1 && Clock::now() < sender_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    figures.sender_gone_before_idle = ProcessTree(agent_pid).size() == 1;
    auto start = Clock::now();
    figures.lifeline.idle_start = Sample(lifeline_tree());
    figures.zabbix.idle_start = Sample(zabbix_tree());
    std::this_thread::sleep_for(options_.idle);
    figures.lifeline.idle_end = Sample(lifeline_tree());
    figures.zabbix.idle_end = Sample(zabbix_tree());
    figures.idle_seconds = std::chrono::duration<double>(Clock::now() - start).count();

    // Load: one generator appends to the log both agents follow.
    const int fd = open(LogPath().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    std::atomic<bool> stop{false};
    std::uint64_t written = 0;
    std::uint64_t matching = 0;
    std::uint64_t bytes = 0;
    std::thread generator([&] {
      const auto begin = Clock::now();
      std::string chunk;
      while (!stop.load()) {
        const double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
        const auto due = static_cast<std::uint64_t>(elapsed * options_.lines_per_second);
        chunk.clear();
        // At most one second's worth per write, so a stall never turns into a burst of everything.
        for (int i = 0; written < due && i < options_.lines_per_second; ++i, ++written) {
          chunk += ArrayLogLine(written, options_.match_every);
          chunk += '\n';
          matching += IsMatchingLine(written, options_.match_every) ? 1 : 0;
        }
        if (!chunk.empty() && fd >= 0) {
          bytes += chunk.size();
          if (write(fd, chunk.data(), chunk.size()) < 0) {
            break;
          }
        }
        std::this_thread::sleep_for(milliseconds(10));
      }
    });
    start = Clock::now();
    figures.lifeline.load_start = Sample(lifeline_tree());
    figures.zabbix.load_start = Sample(zabbix_tree());
    const auto load_end = start + options_.load;
    while (Clock::now() < load_end) {
      std::this_thread::sleep_for(std::min<Clock::duration>(milliseconds(250), load_end - Clock::now()));
      for (auto* f : {&figures.lifeline, &figures.zabbix}) {
        const auto sample = Sample(f == &figures.lifeline ? lifeline_tree() : zabbix_tree());
        f->load_peak_rss_kib = std::max(f->load_peak_rss_kib, sample.rss_kib);
        f->load_peak_pss_kib = std::max(f->load_peak_pss_kib, sample.pss_kib);
        f->load_end = sample;
      }
    }
    figures.load_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    stop = true;
    generator.join();
    if (fd >= 0) {
      close(fd);
    }
    figures.lines_written = written;
    figures.matching_lines_written = matching;
    figures.average_line_bytes = written > 0 ? static_cast<double>(bytes) / static_cast<double>(written) : 0;

    // Did both really keep up? Matching lines are what each delivers; wait a bounded time for them.
    const auto expected = static_cast<std::int64_t>(matching);
    Eventually(
        [&] {
          figures.lifeline.delivered = HomeAlerts();
          const auto stats = ParseJson(ReadFile(ZabbixStatsPath()));
          figures.zabbix.delivered = zabbix_ ? JsonInt(stats, "distinct_values") : -1;
          figures.zabbix.resent = zabbix_ ? JsonInt(stats, "resent_lines") : 0;
          figures.lifeline.lag_bytes = LifelineLag();
          return figures.lifeline.delivered >= expected && figures.lifeline.lag_bytes == 0 &&
                 (!zabbix_ || figures.zabbix.delivered >= expected);
        },
        options_.delivery_wait);
  }

  // Alert messages the home has taken in: all of them come from the benchmark's matching lines.
  std::int64_t HomeAlerts() {
    transport::HttpClient client(transport::ClientTls{.ca_file = (dir_ / "home/pki/ca.crt").string()});
    auto response = client.Send({.method = "GET",
                                 .url = admin_url_ + "/v1/stats",
                                 .headers = {{"Authorization", "Bearer " + admin_token_}},
                                 .timeout = seconds(5),
                                 .connect_timeout = seconds(2)});
    if (!response || response->status != 200) {
      return -1;
    }
    return JsonInt(ParseJson(response->body), "alerts");
  }

  // The end of the log minus the position the agent committed to its queue (read-only, beside it).
  std::int64_t LifelineLag() {
    auto queue = agent::AgentQueue::OpenForStatus(dir_ / "agent/state/queue.db");
    if (!queue) {
      return -1;
    }
    auto position = (*queue)->LoadPosition(LogPath().string());
    std::error_code ec;
    const auto size = fs::file_size(LogPath(), ec);
    if (!position || !*position || ec) {
      return -1;
    }
    return static_cast<std::int64_t>(size) - static_cast<std::int64_t>((*position)->offset);
  }

  std::string Binary() const { return options_.lifeline_binary.string(); }
  std::string AgentBinary() const { return (options_.lifeline_binary.parent_path() / "lifeline-agent").string(); }
  fs::path LogPath() const { return dir_ / "array.log"; }
  fs::path ZabbixStatsPath() const { return dir_ / "zabbix/server-stats.json"; }

  const CompareOptions& options_;
  fs::path dir_;
  std::string admin_token_;
  std::string ingest_url_;
  std::string admin_url_;
  // Stopped in reverse order of declaration.
  std::optional<cli::Subprocess> mail_sink_;
  std::optional<cli::Subprocess> home_;
  std::optional<cli::Subprocess> zabbix_server_;
  std::optional<cli::Subprocess> agent_;
  std::optional<cli::Subprocess> zabbix_;
};

}  // namespace

CompareFigures RunComparison(const CompareOptions& options) {
  ComparisonRun run(options);
  return run.Execute();
}

}  // namespace lifeline::bench
