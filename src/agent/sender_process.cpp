#include "agent/sender_process.h"

#include "agent/backoff.h"
#include "common/log.h"
#include "common/wait_status.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

namespace lifeline::agent {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("agent"); }

// How long Stop waits for a child to finish its current request after SIGTERM.
constexpr auto kStopGrace = std::chrono::seconds(5);

}  // namespace

SenderProcess::SenderProcess(Options options, Hooks hooks) : options_(std::move(options)), hooks_(std::move(hooks)) {
  // A child that exits while a wake byte is on its way must not kill the agent with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
}

SenderProcess::~SenderProcess() { Stop(); }

void SenderProcess::Start() { thread_ = std::thread([this] { Loop(); }); }

void SenderProcess::Wake() {
  std::lock_guard lock(mutex_);
  pending_ = true;
  if (wake_fd_ >= 0) {
    const char byte = 'w';
    // Non-blocking: a full pipe already says "work queued".
    (void)!::write(wake_fd_, &byte, 1);
  }
  changed_.notify_all();
}

void SenderProcess::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

pid_t SenderProcess::ChildPid() {
  std::lock_guard lock(mutex_);
  return child_;
}

bool SenderProcess::SpawnLocked() {
  int wake[2];
  int events[2];
  if (::pipe2(wake, O_CLOEXEC) != 0) {
    Log()->error("cannot start the sender: pipe: {}", std::strerror(errno));
    return false;
  }
  if (::pipe2(events, O_CLOEXEC) != 0) {
    Log()->error("cannot start the sender: pipe: {}", std::strerror(errno));
    ::close(wake[0]);
    ::close(wake[1]);
    return false;
  }
  std::vector<char*> args;
  for (const auto& a : options_.argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    Log()->error("cannot start the sender: fork: {}", std::strerror(errno));
    for (int fd : {wake[0], wake[1], events[0], events[1]}) {
      ::close(fd);
    }
    return false;
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec. The child dies with the agent (a crash of the
    // agent must not leave a sender behind to race the next one) and gets the signals the agent blocks.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(wake[0], 0);
    ::dup2(events[1], 3);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(wake[0]);
  ::close(events[1]);
  ::fcntl(wake[1], F_SETFL, O_NONBLOCK);
  child_ = pid;
  wake_fd_ = wake[1];
  event_fd_ = events[0];
  pending_ = false;
  return true;
}

int SenderProcess::ReapLocked(bool wait) {
  int status = 0;
  pid_t done = ::waitpid(child_, &status, wait ? 0 : WNOHANG);
  while (done < 0 && errno == EINTR) {
    done = ::waitpid(child_, &status, wait ? 0 : WNOHANG);
  }
  if (done == 0) {
    return -1;
  }
  ::close(wake_fd_);
  ::close(event_fd_);
  wake_fd_ = event_fd_ = -1;
  child_ = -1;
  return done < 0 ? -1 : DecodeWaitStatus(status);
}

void SenderProcess::TerminateLocked() {
  if (child_ < 0) {
    return;
  }
  ::kill(child_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + kStopGrace;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(child_, &status, WNOHANG) == child_) {
      ::close(wake_fd_);
      ::close(event_fd_);
      wake_fd_ = event_fd_ = -1;
      child_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Log()->warn("sender {} did not stop within {} s; killing it", child_, kStopGrace.count());
  ::kill(child_, SIGKILL);
  (void)ReapLocked(true);
}

bool SenderProcess::DispatchEvents(int fd, std::string* buffer) {
  char chunk[256];
  const ssize_t n = ::read(fd, chunk, sizeof chunk);
  if (n <= 0) {
    return n < 0 && errno == EINTR;  // end of file: the child closed fd 3, so it is exiting
  }
  buffer->append(chunk, static_cast<std::size_t>(n));
  for (std::size_t end = buffer->find('\n'); end != std::string::npos; end = buffer->find('\n')) {
    const std::string line = buffer->substr(0, end);
    buffer->erase(0, end + 1);
    if (line == "inventory" && hooks_.inventory_requested) {
      hooks_.inventory_requested();
    } else if (line == "reload" && hooks_.reload_requested) {
      hooks_.reload_requested();
    } else {
      Log()->warn("sender asked for '{}', which the agent does not know; ignored", line);
    }
  }
  if (buffer->size() > 4096) {
    buffer->clear();  // a child that writes no newlines is not worth remembering
  }
  return true;
}

void SenderProcess::Loop() {
  std::mt19937_64 random(std::random_device{}());
  std::string events;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (child_ < 0) {
      const auto now = std::chrono::steady_clock::now();
      if (pending_ && now >= next_spawn_) {
        events.clear();
        if (!SpawnLocked()) {
          next_spawn_ = now + RetryDelay(failures_++, options_.retry_min, options_.retry_max, random);
        }
        continue;
      }
      if (pending_) {
        changed_.wait_until(lock, next_spawn_, [this] { return stopping_; });
      } else {
        changed_.wait(lock, [this] { return stopping_ || pending_; });
      }
      continue;
    }
    // A child runs: relay its requests and notice when it ends (its fd 3 closes).
    const int fd = event_fd_;
    lock.unlock();
    pollfd watch{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&watch, 1, 250);
    bool hung_up = false;
    if (ready > 0 && (watch.revents & POLLIN) != 0) {
      hung_up = !DispatchEvents(fd, &events);
    } else if (ready > 0 && (watch.revents & (POLLHUP | POLLERR)) != 0) {
      hung_up = true;
    }
    lock.lock();
    if (stopping_) {
      break;
    }
    const int status = ReapLocked(/*wait=*/hung_up);
    if (status < 0 && !hung_up) {
      continue;  // still running
    }
    if (status == 0) {
      failures_ = 0;
      // The child saw an empty queue; anything queued since then starts the next one.
      lock.unlock();
      const bool more = hooks_.has_work && hooks_.has_work();
      lock.lock();
      pending_ = pending_ || more;
    } else {
      const auto delay = RetryDelay(failures_++, options_.retry_min, options_.retry_max, random);
      Log()->error("sender process ended with status {}; starting another in {} ms", status, delay.count());
      next_spawn_ = std::chrono::steady_clock::now() + delay;
      pending_ = true;
    }
  }
  TerminateLocked();
}

}  // namespace lifeline::agent
