#include "cli/subprocess.h"

#include "common/wait_status.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

namespace lifeline::cli {

Result<Subprocess> Subprocess::Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log_file) {
  if (argv.empty()) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  const int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return std::error_code(errno, std::system_category());
  }
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(log_fd);
    return std::error_code(err, std::system_category());
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the parent blocks stop signals; the child must not
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  return Subprocess(pid);
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), exit_code_(other.exit_code_) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !exit_code_) {
      Terminate();
    }
    pid_ = std::exchange(other.pid_, -1);
    exit_code_ = other.exit_code_;
  }
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exit_code_) {
    Terminate();
  }
}

bool Subprocess::Running() { return pid_ > 0 && !Wait(std::chrono::milliseconds(0)).has_value(); }

std::optional<int> Subprocess::Wait(std::chrono::milliseconds timeout) {
  if (exit_code_ || pid_ <= 0) {
    return exit_code_;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exit_code_ = DecodeWaitStatus(status);
      return exit_code_;
    }
    if (done < 0 && errno != EINTR) {
      exit_code_ = -1;
      return exit_code_;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int Subprocess::Terminate(std::chrono::milliseconds grace) {
  if (exit_code_ || pid_ <= 0) {
    return exit_code_.value_or(-1);
  }
  ::kill(pid_, SIGTERM);
  if (auto code = Wait(grace)) {
    return *code;
  }
  return Kill();
}

int Subprocess::Kill() {
  if (exit_code_ || pid_ <= 0) {
    return exit_code_.value_or(-1);
  }
  ::kill(pid_, SIGKILL);
  return Wait(std::chrono::seconds(30)).value_or(-1);
}

std::filesystem::path SelfExecutable() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path("lifeline") : path;
}

}  // namespace lifeline::cli
