#include "bench/policy_procs.h"

#include <fmt/format.h>

#include <algorithm>
#include <regex>

namespace lifeline::bench::policy_bench {

using namespace std::chrono_literals;
using tunnel::ReadText;
using tunnel::RunTool;
using tunnel::WaitFor;
using tunnel::WriteText;

// ---- MailSink

MailSink::MailSink(fs::path dir, fs::path source_dir) : dir_(std::move(dir)), source_dir_(std::move(source_dir)) {}

MailSink::~MailSink() {
  if (process_) {
    process_->Terminate(5s);
  }
}

std::string MailSink::Start() {
  fs::create_directories(dir_ / "mail");
  auto process = cli::Subprocess::Spawn({"/usr/bin/python3", (source_dir_ / "scripts" / "mail-sink").string(),
                                         "--listen", "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--dir",
                                         (dir_ / "mail").string()},
                                        dir_ / "mail-sink.log");
  if (!process) {
    return "cannot start scripts/mail-sink: " + process.error().message();
  }
  process_.emplace(std::move(*process));
  if (!WaitFor([&] { return !ReadText(dir_ / "port").empty() || !process_->Running(); }, 20s) ||
      ReadText(dir_ / "port").empty()) {
    return "scripts/mail-sink did not start (python3-aiosmtpd missing?): " + ReadText(dir_ / "mail-sink.log");
  }
  port_ = std::stoi(ReadText(dir_ / "port"));
  return "";
}

std::vector<std::string> MailSink::Messages() const {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ / "mail", ec)) {
    if (entry.path().extension() == ".eml") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());  // <seq>-<time>.eml: the sequence is zero-padded
  std::vector<std::string> messages;
  for (const auto& file : files) {
    messages.push_back(ReadText(file));
  }
  return messages;
}

// ---- PolicyManager

PolicyManager::PolicyManager(fs::path dir, fs::path binary, fs::path gateway_ca, int smtp_port)
    : dir_(std::move(dir)), binary_(std::move(binary)), gateway_ca_(std::move(gateway_ca)), smtp_port_(smtp_port) {}

PolicyManager::~PolicyManager() {
  if (process_) {
    process_->Terminate(10s);
  }
}

std::string PolicyManager::url() const { return fmt::format("https://127.0.0.1:{}", port_); }

std::string PolicyManager::Token(const std::string& name, const std::string& role, std::string* token) {
  auto made = RunTool({binary_.string(), "policy", "tokens", "create", name, "--role", role, "--config",
                       (dir_ / "policy.toml").string()},
                      dir_ / ("token-" + name + ".log"));
  static const std::regex pattern("llpol_[A-Za-z0-9_-]{43}");
  std::smatch match;
  if (made.exit_code != 0 || !std::regex_search(made.output, match, pattern)) {
    return fmt::format("policy tokens create {} failed: {}", name, made.output.substr(0, 300));
  }
  *token = match[0];
  return "";
}

std::string PolicyManager::Start() {
  fs::create_directories(dir_);
  // Its own CA and a server certificate for 127.0.0.1, made as the home's are.
  auto pki = RunTool({binary_.string(), "pki", "init", "--dir", (dir_ / "pki").string(), "--name", "127.0.0.1"},
                     dir_ / "pki.log");
  if (pki.exit_code != 0) {
    return "pki init for the policy manager failed: " + pki.output.substr(0, 300);
  }
  port_ = tunnel::FreeLoopbackPort();
  WriteText(dir_ / "policy.toml", fmt::format(R"([policy]
data_dir = "{0}/data"
[listen]
https = "127.0.0.1:{1}"
[tls]
cert_file = "{0}/pki/home.crt"
key_file = "{0}/pki/home.key"
client_ca_file = "{2}"
[approvals]
notify = ["approvers@example.com"]
[smtp]
url = "smtp://127.0.0.1:{3}"
from = "lifeline-policy@localhost"
)",
                                              dir_.string(), port_, gateway_ca_.string(), smtp_port_));
  if (auto why = Token("bench-admin", "admin", &admin_token_); !why.empty()) {
    return why;
  }
  if (auto why = Token("bench-approver", "approver", &approver_token_); !why.empty()) {
    return why;
  }
  auto process = cli::Subprocess::Spawn({binary_.string(), "policy", "run", "--config", (dir_ / "policy.toml").string()},
                                        log());
  if (!process) {
    return "cannot start lifeline policy run";
  }
  process_.emplace(std::move(*process));
  if (!WaitFor([&] { return ReadText(log()).find("listening on https://") != std::string::npos || !process_->Running(); },
               30s) ||
      !process_->Running()) {
    return "the policy manager did not start: " + ReadText(log()).substr(0, 600);
  }
  client_.emplace(transport::ClientTls{ca_file().string(), "", ""});
  return "";
}

PolicyManager::Answer PolicyManager::Call(const std::string& method, const std::string& path, const std::string& body,
                                          bool approver) {
  Answer answer;
  if (!client_) {
    answer.error = "the policy manager is not running";
    return answer;
  }
  transport::ClientRequest request;
  request.method = method;
  request.url = url() + path;
  request.body = body;
  request.content_type = body.empty() ? "" : "application/json";
  request.headers = {{"Authorization", "Bearer " + (approver ? approver_token_ : admin_token_)}};
  request.timeout = 10s;
  auto response = client_->Send(request);
  if (!response) {
    answer.error = response.error().message() + ": " + client_->LastErrorDetail();
    return answer;
  }
  answer.status = response->status;
  answer.body = response->body;
  return answer;
}

}  // namespace lifeline::bench::policy_bench
