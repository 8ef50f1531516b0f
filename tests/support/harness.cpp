#include "support/harness.h"

#include <algorithm>
#include <fstream>

#include "crypto/pki.h"
#include "transport/http_client.h"

#include <gtest/gtest.h>
#include <fmt/format.h>

#include <thread>

namespace lifeline::testing {

bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

CommandResult RunLifeline(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  std::vector<std::string> argv = {LIFELINE_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, timeout);
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  TempDir out;
  auto process = cli::Subprocess::Spawn(argv, out / "output");
  if (!process) {
    return {};
  }
  CommandResult result;
  result.exit_code = process->Wait(timeout).value_or(-1);
  if (result.exit_code == -1) {
    process->Kill();
  }
  result.output = ReadFile(out / "output");
  return result;
}

MailSink::MailSink(const fs::path& dir) : dir_(dir) {
  fs::create_directories(dir_ / "mail");
  auto process = cli::Subprocess::Spawn(
      {"/usr/bin/python3", std::string(LIFELINE_SOURCE_DIR) + "/scripts/mail-sink", "--listen", "127.0.0.1:0",
       "--port-file", (dir_ / "port").string(), "--dir", (dir_ / "mail").string()},
      dir_ / "mail-sink.log");
  if (!process) {
    ADD_FAILURE() << "cannot start the mail sink";
    return;
  }
  process_.emplace(std::move(*process));
  if (!Eventually([&] { return !ReadFile(dir_ / "port").empty(); }, std::chrono::seconds(20))) {
    ADD_FAILURE() << "mail sink did not start: " << ReadFile(dir_ / "mail-sink.log");
    return;
  }
  port_ = std::stoi(ReadFile(dir_ / "port"));
}

std::vector<std::string> MailSink::Messages() const {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir_ / "mail")) {
    if (entry.path().extension() == ".eml") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> messages;
  for (const auto& f : files) {
    messages.push_back(ReadFile(f));
  }
  return messages;
}

TestHome::TestHome(const fs::path& dir, int smtp_port, std::vector<std::string> contacts, std::string store_config)
    : dir_(dir), store_config_(std::move(store_config)) {
  if (store_config_.empty()) {
    store_config_ = fmt::format("path = \"{}/home.db\"", dir_.string());
  }
  fs::create_directories(dir_);
  auto pki = RunLifeline({"pki", "init", "--dir", pki_dir().string()});
  EXPECT_EQ(pki.exit_code, 0) << pki.output;
  for (const auto& c : contacts) {
    emails_ += fmt::format("{}\"{}\"", emails_.empty() ? "" : ", ", c);
  }
  smtp_port_ = smtp_port;
  WriteConfig();
  // Named after the directory: homes that share one PostgreSQL database need distinct names.
  auto admin = RunLifeline(
      {"home", "admin-token", "--config", config().string(), "--name", "tests-" + dir_.filename().string()});
  EXPECT_EQ(admin.exit_code, 0) << admin.output;
  // The token is the last line; the explanation before it went to stderr.
  auto text = admin.output;
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  admin_token_ = text.substr(text.rfind('\n') + 1);
}

void TestHome::WriteConfig() {
  WriteFile(config(), fmt::format(R"([listen]
ingest = "{3}"
admin = "{4}"
tunnel = "{8}"
sessions = "{9}"
address_file = "{0}/addresses.json"
[pki]
dir = "{0}/pki"
[store]
{5}
[smtp]
url = "smtp://127.0.0.1:{1}"
from = "lifeline-test@localhost"
[notify]
email = [{2}]
retry_max = "10s"
[tickets]
{6}
{7}
)",
                                  dir_.string(), smtp_port_, emails_, ingest_listen_, admin_listen_, store_config_,
                                  tickets_config_, extra_config_, tunnel_listen_, sessions_listen_));
}

void TestHome::SetTicketsConfig(std::string body) {
  tickets_config_ = std::move(body);
  WriteConfig();
}

void TestHome::SetExtraConfig(std::string toml) {
  extra_config_ = std::move(toml);
  WriteConfig();
}

void TestHome::Start() {
  fs::remove(dir_ / "addresses.json");
  auto process = cli::Subprocess::Spawn({LIFELINE_BINARY, "home", "run", "--config", config().string()}, log_file());
  ASSERT_TRUE(process);
  process_.emplace(std::move(*process));
  ASSERT_TRUE(Eventually([&] { return !ReadFile(dir_ / "addresses.json").empty(); }, std::chrono::seconds(20)))
      << ReadFile(log_file());
  auto addresses = boost::json::parse(ReadFile(dir_ / "addresses.json"));
  ingest_address_ = std::string(addresses.at("ingest").get_string());
  admin_address_ = std::string(addresses.at("admin").get_string());
  // A restarted home comes back on the same ports, as a real one would: agents keep their URL.
  ingest_listen_ = ingest_address_;
  admin_listen_ = admin_address_;
  tunnel_port_ = static_cast<int>(addresses.at("tunnel_port").as_int64());
  sessions_port_ = static_cast<int>(addresses.at("sessions_port").as_int64());
  tunnel_listen_ = fmt::format("127.0.0.1:{}", tunnel_port_);
  sessions_listen_ = fmt::format("127.0.0.1:{}", sessions_port_);
  WriteConfig();
}

void TestHome::Stop() {
  if (process_) {
    EXPECT_EQ(process_->Terminate(std::chrono::seconds(10)), 0) << ReadFile(log_file());
    process_.reset();
  }
}

bool TestHome::Running() { return process_ && process_->Running(); }

std::string TestHome::EnrollToken(const protocol::DeviceIdentity& device) {
  auto result = RunLifeline({"home", "enroll-token", "--config", config().string(), "--customer", device.customer,
                             "--site", device.site, "--serial", device.serial, "--model", device.model});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  auto text = result.output;
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  return text.substr(text.rfind('\n') + 1);
}

boost::json::value TestHome::Admin(const std::string& path) {
  transport::HttpClient client(transport::ClientTls{.ca_file = (pki_dir() / "ca.crt").string()});
  auto response = client.Send({.method = "GET", .url = admin_url() + path,
                               .headers = {{"Authorization", "Bearer " + admin_token_}}});
  EXPECT_TRUE(response) << (response ? "" : response.error().message());
  if (!response) {
    return {};
  }
  EXPECT_EQ(response->status, 200) << response->body;
  boost::system::error_code ec;
  auto value = boost::json::parse(response->body, ec);
  EXPECT_FALSE(ec) << response->body;
  return value;
}

std::int64_t TestHome::Stat(const std::string& name) {
  auto stats = Admin("/v1/stats");
  return stats.is_object() ? stats.at(name).to_number<std::int64_t>() : -1;
}

TestAgent::TestAgent(const fs::path& dir, const TestHome& home, std::string serial, std::string extra_config)
    : dir_(dir), serial_(std::move(serial)) {
  fs::create_directories(pki_dir());
  const crypto::PkiPaths home_pki(home.pki_dir());
  for (const auto& f : {home_pki.ca_cert, home_pki.home_seal_public, home_pki.home_sign_public}) {
    fs::copy_file(f, pki_dir() / f.filename(), fs::copy_options::overwrite_existing);
  }
  WriteFile(log_file(), "");
  WriteFile(config(), fmt::format(R"([device]
customer = "ACME"
site = "berlin-1"
serial = "{0}"
model = "VSP G900"
[home]
url = "{1}"
timeout = "5s"
[pki]
dir = "{2}/pki"
[state]
dir = "{2}/state"
[heartbeat]
interval = "1h"
[send]
retry_min = "1s"
retry_max = "2s"
[watch]
poll_interval_ms = 50
[[logs]]
path = "{2}/array.log"
[[rules]]
name = "sim"
pattern = 'SIM=([0-9A-F]+) (.*)'
code = "SIM-{{1}}"
severity = "critical"
message = "{{2}}"
{3}
)",
                                  serial_, home.ingest_url(), dir_.string(), extra_config));
}

std::string TestAgent::ConfigText() const { return ReadFile(config()); }
void TestAgent::SetConfig(const std::string& toml) { WriteFile(config(), toml); }

protocol::DeviceIdentity TestAgent::identity() const { return {"ACME", "berlin-1", serial_, "VSP G900"}; }

CommandResult TestAgent::Enroll(const std::string& token) {
  return RunLifeline({"agent", "enroll", "--config", config().string(), "--token", token});
}

void TestAgent::Start() {
  // The log keeps earlier runs' lines: wait for one more "started" line than there was before.
  auto started_lines = [&] {
    const std::string text = AgentLogText();
    std::size_t count = 0;
    for (auto at = text.find("started: home"); at != std::string::npos; at = text.find("started: home", at + 1)) {
      ++count;
    }
    return count;
  };
  const std::size_t before = started_lines();
  const std::vector<std::string> argv =
      use_full_binary ? std::vector<std::string>{LIFELINE_BINARY, "agent", "run", "--config", config().string()}
                      : std::vector<std::string>{LIFELINE_AGENT_BINARY, "run", "--config", config().string()};
  auto process = cli::Subprocess::Spawn(argv, agent_log());
  ASSERT_TRUE(process);
  process_.emplace(std::move(*process));
  // Started means it is watching: only lines appended after this count.
  ASSERT_TRUE(Eventually([&] { return started_lines() > before; }, std::chrono::seconds(20)))
      << AgentLogText();
}

pid_t TestAgent::SenderPid() const {
  if (!process_) {
    return -1;
  }
  // The sender is the resident process's child running `agent send`; other children come and go
  // (the inventory runs dpkg-query), so each child's command line is checked.
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(process_->pid()) + "/task", ec)) {
    std::ifstream children(task.path() / "children");
    pid_t child = -1;
    while (children >> child) {
      std::ifstream cmdline("/proc/" + std::to_string(child) + "/cmdline");
      std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
      std::replace(args.begin(), args.end(), '\0', ' ');
      if (args.find(" agent send ") != std::string::npos) {
        return child;
      }
    }
  }
  return -1;
}

void TestAgent::Stop() {
  if (process_) {
    EXPECT_EQ(process_->Terminate(std::chrono::seconds(10)), 0) << AgentLogText();
    process_.reset();
  }
}

void TestAgent::Kill() {
  if (process_) {
    EXPECT_EQ(process_->Kill(), 128 + SIGKILL);
    process_.reset();
  }
}

std::string TestAgent::AgentLogText() const { return ReadFile(agent_log()); }

void TestAgent::AppendLine(const std::string& line) { AppendFile(log_file(), line + "\n"); }

}  // namespace lifeline::testing
