#pragma once
// Real proxies on loopback for tests: tinyproxy and squid (HTTP CONNECT with basic authentication)
// and microsocks (SOCKS5 with username and password), each a child process with its own config and
// log in a directory the test owns. Self-contained (fork/exec), so unit tests can use them without
// the CLI library.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lifeline::testing {

/// A port on 127.0.0.1 nobody listens on (bound, read back, closed): for proxies, which cannot bind
/// port 0 and report it, and for a dead proxy.
int UnusedLoopbackPort();

/// True when something accepts TCP connections on 127.0.0.1:port.
bool LoopbackListening(int port);

/// One proxy process. The constructor waits (up to 10 s) until it listens and records a test
/// failure if it does not; the destructor stops it (SIGTERM, then SIGKILL after 5 s).
class ProxyProcess {
 public:
  ProxyProcess(const std::filesystem::path& dir, std::vector<std::string> argv, int port);
  ~ProxyProcess();
  ProxyProcess(const ProxyProcess&) = delete;
  ProxyProcess& operator=(const ProxyProcess&) = delete;

  int port() const { return port_; }
  /// "127.0.0.1:<port>"
  std::string address() const;
  /// The proxy's own output (its log, for tinyproxy: CONNECT lines at LogLevel Connect).
  std::string Log() const;
  bool Running() const;

 private:
  std::filesystem::path log_;
  int port_;
  pid_t pid_ = -1;
};

/// tinyproxy with BasicAuth `user` / `password` (none when `user` is empty), CONNECT to any port.
std::unique_ptr<ProxyProcess> StartTinyproxy(const std::filesystem::path& dir,
                                             const std::string& user = "alice",
                                             const std::string& password = "s3cret");

/// microsocks (SOCKS5) with username/password authentication (none when `user` is empty).
std::unique_ptr<ProxyProcess> StartMicrosocks(const std::filesystem::path& dir,
                                              const std::string& user = "bob",
                                              const std::string& password = "pw");

/// squid (HTTP CONNECT, basic authentication through basic_ncsa_auth; answers 407 to wrong
/// credentials and 503 when it cannot reach the target). Run as root, squid works as user `proxy`:
/// `dir` is made writable for it and its parent traversable.
std::unique_ptr<ProxyProcess> StartSquid(const std::filesystem::path& dir,
                                         const std::string& user = "carol",
                                         const std::string& password = "letmein");

}  // namespace lifeline::testing
