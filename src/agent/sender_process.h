#pragma once
// The agent's resident process does not send: it starts `lifeline agent send` as a child whenever the
// queue has something for the home, and the child exits once the queue has been empty for a while.
// Why a process and not a thread: sending needs libcurl, OpenSSL and libsodium, whose code and start-up
// allocations are most of a process's memory (about 12 MiB resident for libcurl alone). Kept out of the
// resident process, an idle agent stays small; the TLS and HTTP code, the part exposed to the network,
// also runs apart from detection, so a fault there cannot stop alerts being captured.
//
// The two talk through two pipes: the child's stdin carries one byte per "work queued" (end of file
// means the agent has gone), and its fd 3 carries lines the child asks the agent to act on: "inventory"
// (an instruction from home: send a full inventory now) and "reload" (a configuration from home was
// validated and staged). Both processes open the same durable queue; nothing else is shared.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lifeline::agent {

class SenderProcess {
 public:
  struct Options {
    std::vector<std::string> argv;  // the child's command line, argv[0] an absolute path
    std::chrono::milliseconds retry_min{1000};  // backoff after a child that failed (exit != 0)
    std::chrono::milliseconds retry_max{std::chrono::minutes(5)};
  };
  struct Hooks {
    std::function<bool()> has_work;            // the queue has sendable messages or results
    std::function<void()> inventory_requested;
    std::function<void()> reload_requested;
  };

  SenderProcess(Options options, Hooks hooks);
  ~SenderProcess();
  SenderProcess(const SenderProcess&) = delete;
  SenderProcess& operator=(const SenderProcess&) = delete;

  /// Starts the supervising thread; it starts a child at once (the queue may hold messages from before).
  void Start();
  /// Something was queued: tells the running child, or starts one.
  void Wake();
  /// Ends the child (SIGTERM, then SIGKILL after a grace period) and the thread.
  void Stop();
  /// The running child's pid, or -1.
  pid_t ChildPid();

 private:
  void Loop();
  bool SpawnLocked();
  // Acts on the complete lines the child wrote; false at end of file.
  bool DispatchEvents(int fd, std::string* buffer);
  // Reaps the child; returns its exit status (128 + signal when killed).
  int ReapLocked(bool wait);
  void TerminateLocked();

  Options options_;
  Hooks hooks_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  bool pending_ = true;  // work waiting for a child
  int failures_ = 0;
  std::chrono::steady_clock::time_point next_spawn_{};
  pid_t child_ = -1;
  int wake_fd_ = -1;   // write end of the child's stdin
  int event_fd_ = -1;  // read end of the child's fd 3
  std::thread thread_;
};

}  // namespace lifeline::agent
