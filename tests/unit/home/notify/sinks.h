#pragma once
// Real receivers for the notification tests, started as child processes on loopback ports:
// scripts/webhook-sink (HTTP, stores each request as JSON) and scripts/mail-sink (SMTP, aiosmtpd).
// A sink can be stopped and started again on the same port, to play a receiver that is down.
#include <boost/json.hpp>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace lifeline::testing {

class ScriptServer {
 public:
  /// Starts scripts/`script` with `--listen 127.0.0.1:<port> --port-file ... --dir <dir>/data`
  /// plus `args`; port 0 picks a free one. Waits (bounded) until it listens.
  ScriptServer(std::string script, std::filesystem::path dir, std::vector<std::string> args,
               int port = 0);
  ~ScriptServer();
  ScriptServer(const ScriptServer&) = delete;

  /// SIGTERM and wait (bounded); expects a clean exit.
  void Stop();
  /// Starts again on the same port, same data directory.
  void Restart(std::vector<std::string> args);

  int port() const { return port_; }
  bool running() const { return pid_ > 0; }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  std::string log() const;

  /// The files in the data directory with `extension` (not the hidden temp files), sorted by name,
  /// waiting up to `timeout` for at least `count`.
  std::vector<std::filesystem::path> WaitForFiles(std::size_t count, const std::string& extension,
                                                  std::chrono::milliseconds timeout) const;

 private:
  void Launch(const std::vector<std::string>& args);

  std::string script_;
  std::filesystem::path dir_;
  std::filesystem::path data_dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

/// scripts/webhook-sink.
class WebhookSink : public ScriptServer {
 public:
  explicit WebhookSink(std::filesystem::path dir, std::vector<std::string> args = {}, int port = 0)
      : ScriptServer("webhook-sink", std::move(dir), std::move(args), port) {}
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port()) + path;
  }
  /// The recorded requests (objects with method, path, headers, body, status), oldest first.
  std::vector<boost::json::object> WaitForRequests(
      std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
};

/// scripts/mail-sink.
class MailSink : public ScriptServer {
 public:
  explicit MailSink(std::filesystem::path dir, std::vector<std::string> args = {}, int port = 0)
      : ScriptServer("mail-sink", std::move(dir), std::move(args), port) {}
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port()); }
  /// The raw messages received, oldest first.
  std::vector<std::string> WaitForMessages(
      std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
};

/// A loopback port with nothing listening (bound, then released).
int UnusedPort();

}  // namespace lifeline::testing
