#include "support/policy_harness.h"

#include "support/gateway_harness.h"
#include "transport/http_client.h"

#include <gtest/gtest.h>
#include <fmt/format.h>

#include <regex>
#include <sstream>
#include <thread>

namespace lifeline::testing {

namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

std::string LastLine(std::string text) {
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  return text.substr(text.rfind('\n') + 1);
}

// The JSON value in a command's output (the CLI may write a note to stderr before it).
json::value JsonIn(const std::string& output) {
  const auto start = output.find_first_of("[{");
  if (start == std::string::npos) {
    return nullptr;
  }
  boost::system::error_code ec;
  auto value = json::parse(std::string_view(output).substr(start), ec);
  return ec ? json::value(nullptr) : value;
}

}  // namespace

std::string PolicyJson(const std::string& rules, const std::string& groups, const std::string& grants) {
  return fmt::format(R"({{"groups": [{}], "rules": [{}], "grants": [{}]}})", groups, rules, grants);
}

TestPolicyManager::TestPolicyManager(const fs::path& dir, const TestHome& home, int smtp_port,
                                     std::vector<std::string> notify)
    : dir_(dir), smtp_port_(smtp_port), home_ca_((home.pki_dir() / "ca.crt").string()) {
  fs::create_directories(dir_ / "tokens");
  // Its own CA and a server certificate for 127.0.0.1 (the home's PKI layout; only ca.crt, home.crt
  // and home.key are used).
  auto pki = RunLifeline({"pki", "init", "--dir", (dir_ / "pki").string(), "--name", "127.0.0.1"});
  EXPECT_EQ(pki.exit_code, 0) << pki.output;
  for (const auto& address : notify) {
    notify_ += fmt::format("{}\"{}\"", notify_.empty() ? "" : ", ", address);
  }
  port_ = FreePort();
  WriteConfig();
  CreateToken("policy-admin", "admin");
  CreateToken("policy-auditor", "auditor");
}

TestPolicyManager::~TestPolicyManager() { Stop(); }

void TestPolicyManager::WriteConfig() {
  WriteFile(config(), fmt::format(R"([policy]
data_dir = "{0}/data"
[listen]
https = "127.0.0.1:{1}"
[tls]
cert_file = "{0}/pki/home.crt"
key_file = "{0}/pki/home.key"
client_ca_file = "{2}"
[approvals]
notify = [{3}]
[smtp]
url = "smtp://127.0.0.1:{4}"
from = "lifeline-policy@localhost"
{5}
)",
                                  dir_.string(), port_, home_ca_, notify_, smtp_port_, extra_));
}

void TestPolicyManager::SetExtraConfig(std::string toml) {
  extra_ = std::move(toml);
  WriteConfig();
}

std::string TestPolicyManager::url() const { return fmt::format("https://127.0.0.1:{}", port_); }

std::string TestPolicyManager::LogText() const { return ReadFile(log_file()); }

void TestPolicyManager::Start() {
  const auto listening_lines = [&] {
    const std::string log = LogText();
    int count = 0;
    for (auto at = log.find("listening on https://"); at != std::string::npos;
         at = log.find("listening on https://", at + 1)) {
      ++count;
    }
    return count;
  };
  const int before = listening_lines();
  auto process = cli::Subprocess::Spawn({LIFELINE_BINARY, "policy", "run", "--config", config().string()}, log_file());
  ASSERT_TRUE(process);
  process_.emplace(std::move(*process));
  // A restart right after a stop may find the port in use for a moment: the log then says so and
  // the process exits; try again (bounded).
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (Eventually([&] { return listening_lines() > before || !process_->Running(); }, 20s) &&
        listening_lines() > before) {
      return;
    }
    std::this_thread::sleep_for(250ms);
    auto again = cli::Subprocess::Spawn({LIFELINE_BINARY, "policy", "run", "--config", config().string()}, log_file());
    ASSERT_TRUE(again);
    process_.emplace(std::move(*again));
  }
  FAIL() << "the policy manager did not start: " << LogText();
}

void TestPolicyManager::Stop() {
  if (process_) {
    EXPECT_EQ(process_->Terminate(10s), 0) << LogText();
    process_.reset();
  }
}

bool TestPolicyManager::Running() { return process_ && process_->Running(); }

void TestPolicyManager::AddUser(const std::string& name, const std::string& role, const std::string& password) {
  // The password goes through the environment, as an operator's script would pass it.
  auto added = RunCommand({"/usr/bin/env", "LIFELINE_POLICY_PASSWORD=" + password, LIFELINE_BINARY, "policy", "users",
                           "add", name, "--role", role, "--config", config().string()});
  ASSERT_EQ(added.exit_code, 0) << added.output;
}

std::string TestPolicyManager::Login(const std::string& name, const std::string& password) {
  auto answer =
      Api("POST", "/v1/login", "", json::serialize(json::object{{"user", name}, {"password", password}}));
  EXPECT_EQ(answer.status, 200) << answer.error << json::serialize(answer.body);
  if (answer.status != 200 || !answer.body.is_object()) {
    return "";
  }
  const std::string token(answer.body.at("token").as_string());
  WriteFile(TokenFile(name), token + "\n");
  fs::permissions(TokenFile(name), fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  return token;
}

std::string TestPolicyManager::CreateToken(const std::string& name, const std::string& role) {
  auto created = RunLifeline({"policy", "tokens", "create", name, "--role", role, "--config", config().string()});
  EXPECT_EQ(created.exit_code, 0) << created.output;
  std::smatch m;
  static const std::regex token_pattern("llpol_[A-Za-z0-9_-]{43}");
  if (!std::regex_search(created.output, m, token_pattern)) {
    ADD_FAILURE() << "no token in: " << created.output;
    return "";
  }
  const std::string token = m[0];
  WriteFile(TokenFile(name), token + "\n");
  fs::permissions(TokenFile(name), fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  return token;
}

std::string TestPolicyManager::Token(const std::string& name) const { return LastLine(ReadFile(TokenFile(name))); }

CommandResult TestPolicyManager::Cli(std::vector<std::string> args, const std::string& token_name) {
  std::vector<std::string> argv = {"policy"};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const std::string& option : {std::string("--url"), url(), std::string("--ca-file"), ca_file().string(),
                                    std::string("--token-file"), TokenFile(token_name).string()}) {
    argv.push_back(option);
  }
  return RunLifeline(argv, 30s);
}

std::int64_t TestPolicyManager::SetPolicy(const std::string& policy_json) {
  static int files = 0;
  const fs::path file = dir_ / fmt::format("policy-{}.json", ++files);
  WriteFile(file, policy_json);
  auto set = Cli({"set", file.string()});
  EXPECT_EQ(set.exit_code, 0) << set.output;
  auto current = Api("GET", "/v1/policies", Token("policy-auditor"));
  EXPECT_EQ(current.status, 200) << current.error << json::serialize(current.body);
  if (current.status != 200 || !current.body.is_object()) {
    return -1;
  }
  return current.body.at("version").to_number<std::int64_t>();
}

std::vector<json::object> TestPolicyManager::Requests(bool all, const std::string& token_name) {
  std::vector<std::string> args = {"requests", "list", "--json"};
  if (all) {
    args.push_back("--all");
  }
  auto listed = Cli(args, token_name);
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  const json::value value = JsonIn(listed.output);
  const json::array* list = nullptr;
  if (value.is_array()) {
    list = &value.get_array();
  } else if (value.is_object() && value.get_object().if_contains("requests") != nullptr &&
             value.get_object().at("requests").is_array()) {
    list = &value.get_object().at("requests").get_array();
  }
  EXPECT_NE(list, nullptr) << listed.output;
  std::vector<json::object> out;
  if (list != nullptr) {
    for (const auto& request : *list) {
      if (request.is_object()) {
        out.push_back(request.get_object());
      }
    }
  }
  return out;
}

std::optional<json::object> TestPolicyManager::WaitForRequest(const std::string& id, std::chrono::milliseconds timeout) {
  std::optional<json::object> found;
  Eventually(
      [&] {
        auto answer = Api("GET", "/v1/requests/" + id, Token("policy-auditor"));
        if (answer.status == 200 && answer.body.is_object()) {
          found = answer.body.get_object();
          return true;
        }
        return false;
      },
      timeout);
  return found;
}

CommandResult TestPolicyManager::Approve(const std::string& id, const std::string& token_name,
                                         const std::string& comment) {
  std::vector<std::string> args = {"requests", "approve", id};
  if (!comment.empty()) {
    args.insert(args.end(), {"--comment", comment});
  }
  return Cli(args, token_name);
}

CommandResult TestPolicyManager::Deny(const std::string& id, const std::string& token_name,
                                      const std::string& comment) {
  std::vector<std::string> args = {"requests", "deny", id};
  if (!comment.empty()) {
    args.insert(args.end(), {"--comment", comment});
  }
  return Cli(args, token_name);
}

ApiAnswer CallApi(const fs::path& ca_file, const std::string& url, const std::string& method, const std::string& path,
                  const std::string& token, const std::string& body) {
  transport::HttpClient client(transport::ClientTls{.ca_file = ca_file.string()});
  transport::ClientRequest request;
  request.method = method;
  request.url = url + path;
  request.body = body;
  request.content_type = body.empty() ? "" : "application/json";
  if (!token.empty()) {
    request.headers.emplace_back("Authorization", "Bearer " + token);
  }
  auto response = client.Send(request);
  ApiAnswer answer;
  if (!response) {
    answer.error = response.error().message() + " " + client.LastErrorDetail();
    return answer;
  }
  answer.status = response->status;
  answer.raw = response->body;
  boost::system::error_code ec;
  json::value parsed = json::parse(response->body, ec);
  answer.body = ec ? json::value(response->body) : parsed;
  return answer;
}

TestPolicyManager::Answer TestPolicyManager::Api(const std::string& method, const std::string& path,
                                                 const std::string& token, const std::string& body) {
  return CallApi(ca_file(), url(), method, path, token, body);
}

std::vector<json::object> TestPolicyManager::AuditRecords() {
  auto exported = Api("GET", "/v1/audit?format=jsonl", Token("policy-auditor"));
  EXPECT_EQ(exported.status, 200) << exported.error;
  std::vector<json::object> records;
  std::istringstream lines{exported.raw};
  for (std::string line; std::getline(lines, line);) {
    boost::system::error_code ec;
    auto value = json::parse(line, ec);
    if (!ec && value.is_object() && value.get_object().if_contains("type") != nullptr &&
        value.get_object().at("type") == "record") {
      records.push_back(value.get_object());
    }
  }
  return records;
}

}  // namespace lifeline::testing
