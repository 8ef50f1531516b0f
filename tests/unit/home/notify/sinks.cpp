#include "sinks.h"

#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

extern char** environ;

namespace lifeline::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {
constexpr const char* kPython = "/usr/bin/python3";  // the one with python3-aiosmtpd
}

ScriptServer::ScriptServer(std::string script, fs::path dir, std::vector<std::string> args,
                           int port)
    : script_(std::move(script)), dir_(std::move(dir)), data_dir_(dir_ / "data"), port_(port) {
  fs::create_directories(dir_);
  Launch(args);
}

ScriptServer::~ScriptServer() { Stop(); }

std::string ScriptServer::log() const { return ReadFile(dir_ / "server.log"); }

void ScriptServer::Launch(const std::vector<std::string>& extra) {
  const fs::path port_file = dir_ / "server.port";
  fs::remove(port_file);
  std::vector<std::string> args = {kPython,
                                   std::string(LIFELINE_SOURCE_DIR) + "/scripts/" + script_,
                                   "--listen",
                                   "127.0.0.1:" + std::to_string(port_),
                                   "--port-file",
                                   port_file.string(),
                                   "--dir",
                                   data_dir_.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log_path = (dir_ / "server.log").string();
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  const int rc = posix_spawn(&pid_, kPython, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    ADD_FAILURE() << "cannot start " << script_ << ": " << rc;
    pid_ = -1;
    return;
  }
  // Bounded wait for the port file (written atomically once the socket listens). A restart on
  // the same port may find it in TIME_WAIT for a moment: the sinks set SO_REUSEADDR.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string text = ReadFile(port_file);
    if (!text.empty() && text.back() == '\n') {
      port_ = std::stoi(text);
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ADD_FAILURE() << script_ << " exited early:\n" << log();
      return;
    }
    std::this_thread::sleep_for(20ms);
  }
  ADD_FAILURE() << script_ << " did not report its port:\n" << log();
}

void ScriptServer::Stop() {
  if (pid_ <= 0) {
    return;
  }
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      ADD_FAILURE() << script_ << " ignored SIGTERM";
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(10ms);
  }
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << script_ << " exit status " << status << "\n"
      << log();
}

void ScriptServer::Restart(std::vector<std::string> args) {
  Stop();
  Launch(args);
}

std::vector<fs::path> ScriptServer::WaitForFiles(std::size_t count, const std::string& extension,
                                                 std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<fs::path> found;
  for (;;) {
    found.clear();
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(data_dir_, ec)) {
      if (entry.path().extension() == extension &&
          !entry.path().filename().string().starts_with(".")) {
        found.push_back(entry.path());
      }
    }
    if (found.size() >= count || std::chrono::steady_clock::now() >= deadline) {
      std::sort(found.begin(), found.end());
      return found;
    }
    std::this_thread::sleep_for(20ms);
  }
}

std::vector<boost::json::object> WebhookSink::WaitForRequests(
    std::size_t count, std::chrono::milliseconds timeout) const {
  std::vector<boost::json::object> requests;
  for (const auto& file : WaitForFiles(count, ".json", timeout)) {
    boost::system::error_code ec;
    auto value = boost::json::parse(ReadFile(file), ec);
    EXPECT_FALSE(ec) << file;
    if (!ec && value.is_object()) {
      requests.push_back(value.as_object());
    }
  }
  return requests;
}

std::vector<std::string> MailSink::WaitForMessages(std::size_t count,
                                                   std::chrono::milliseconds timeout) const {
  std::vector<std::string> messages;
  for (const auto& file : WaitForFiles(count, ".eml", timeout)) {
    messages.push_back(ReadFile(file));
  }
  return messages;
}

int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace lifeline::testing
