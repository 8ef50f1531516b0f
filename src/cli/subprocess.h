#pragma once
// Child processes for `lifeline demo` and the integration tests: start a command with its output
// appended to a log file, stop it with SIGTERM then SIGKILL after a grace period, or kill it outright.
// Children get PR_SET_PDEATHSIG so nothing outlives a demo or test that dies.
#include "common/result.h"

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::cli {

class Subprocess {
 public:
  /// Starts argv[0] (searched in PATH when it has no '/') with stdout and stderr appended to `log_file`.
  [[nodiscard]] static Result<Subprocess> Spawn(const std::vector<std::string>& argv,
                                                const std::filesystem::path& log_file);
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  /// Stops the child (Terminate with a 5 s grace) if it still runs.
  ~Subprocess();

  pid_t pid() const { return pid_; }
  /// True while the child has not exited.
  bool Running();
  /// Waits up to `timeout` for the child to exit; its exit code (128+signal when killed), or nullopt.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  /// SIGTERM, then SIGKILL after `grace`; returns the exit code.
  int Terminate(std::chrono::milliseconds grace = std::chrono::seconds(5));
  /// SIGKILL now (a crash at an arbitrary moment); returns the exit code.
  int Kill();

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

/// The path of the running executable (/proc/self/exe), to start its own subcommands.
std::filesystem::path SelfExecutable();

}  // namespace lifeline::cli
