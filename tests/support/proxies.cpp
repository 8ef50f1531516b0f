#include "support/proxies.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "support/temp_dir.h"

namespace lifeline::testing {
namespace {

// SIGTERM, then SIGKILL once `grace` has passed; reaps the child either way.
void StopChild(pid_t pid, std::chrono::milliseconds grace) {
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace

int UnusedLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

bool LoopbackListening(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return connected;
}

ProxyProcess::ProxyProcess(const std::filesystem::path& dir, std::vector<std::string> argv,
                           int port)
    : log_(dir / "proxy.log"), port_(port) {
  std::vector<char*> args;
  for (auto& arg : argv) {
    args.push_back(arg.data());
  }
  args.push_back(nullptr);
  const int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Child: async-signal-safe calls only until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  pid_ = pid;
  EXPECT_GT(pid_, 0) << "fork failed for " << argv[0];
  bool listening = false;
  for (int attempt = 0; attempt < 200 && pid_ > 0 && !listening; ++attempt) {
    listening = LoopbackListening(port_);
    if (!listening) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  EXPECT_TRUE(listening) << argv[0] << " does not listen on " << port_ << ": " << Log();
}

ProxyProcess::~ProxyProcess() {
  if (pid_ > 0) {
    StopChild(pid_, std::chrono::seconds(5));
  }
}

std::string ProxyProcess::address() const { return fmt::format("127.0.0.1:{}", port_); }

std::string ProxyProcess::Log() const { return ReadFile(log_); }

bool ProxyProcess::Running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

std::unique_ptr<ProxyProcess> StartTinyproxy(const std::filesystem::path& dir,
                                             const std::string& user, const std::string& password) {
  std::filesystem::create_directories(dir);
  const int port = UnusedLoopbackPort();
  // No ConnectPort line: CONNECT is allowed to every port (the tests' servers use ephemeral ones).
  std::string config =
      fmt::format("Port {}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nLogLevel Connect\n", port);
  if (!user.empty()) {
    config += fmt::format("BasicAuth {} {}\n", user, password);
  }
  WriteFile(dir / "tinyproxy.conf", config);
  return std::make_unique<ProxyProcess>(
      dir, std::vector<std::string>{"tinyproxy", "-d", "-c", (dir / "tinyproxy.conf").string()},
      port);
}

std::unique_ptr<ProxyProcess> StartMicrosocks(const std::filesystem::path& dir,
                                              const std::string& user,
                                              const std::string& password) {
  std::filesystem::create_directories(dir);
  const int port = UnusedLoopbackPort();
  std::vector<std::string> argv{"microsocks", "-i", "127.0.0.1", "-p", std::to_string(port)};
  if (!user.empty()) {
    argv.insert(argv.end(), {"-u", user, "-P", password});
  }
  return std::make_unique<ProxyProcess>(dir, std::move(argv), port);
}

std::unique_ptr<ProxyProcess> StartSquid(const std::filesystem::path& dir, const std::string& user,
                                         const std::string& password) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  // Squid drops root for user `proxy`, which must reach its logs and the password file.
  fs::permissions(dir, fs::perms::all);
  fs::permissions(dir.parent_path(), fs::perms::others_exec, fs::perm_options::add);
  const int port = UnusedLoopbackPort();
  std::string hash;
  const std::string command = fmt::format("openssl passwd -apr1 '{}'", password);
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char line[256];
    if (std::fgets(line, sizeof(line), pipe) != nullptr) {
      hash = line;
    }
    ::pclose(pipe);
  }
  EXPECT_FALSE(hash.empty()) << command;
  WriteFile(dir / "passwd", user + ":" + hash);
  fs::permissions(dir / "passwd", fs::perms::owner_read | fs::perms::owner_write |
                                      fs::perms::group_read | fs::perms::others_read);
  // No cache, no safe-ports rules: CONNECT to any port for an authenticated user, nothing else.
  WriteFile(dir / "squid.conf",
            fmt::format("http_port 127.0.0.1:{port}\n"
                        "pid_filename {dir}/squid.pid\n"
                        "cache_log {dir}/cache.log\n"
                        "access_log stdio:{dir}/access.log\n"
                        "cache deny all\n"
                        "cache_mem 8 MB\n"
                        "coredump_dir {dir}\n"
                        "shutdown_lifetime 1 seconds\n"
                        "auth_param basic program /usr/lib/squid/basic_ncsa_auth {dir}/passwd\n"
                        "auth_param basic children 2 startup=1 idle=1\n"
                        "acl authed proxy_auth REQUIRED\n"
                        "http_access allow authed\n"
                        "http_access deny all\n",
                        fmt::arg("port", port), fmt::arg("dir", dir.string())));
  return std::make_unique<ProxyProcess>(
      dir, std::vector<std::string>{"squid", "-N", "-f", (dir / "squid.conf").string()}, port);
}

}  // namespace lifeline::testing
