#include "cli/signals.h"

#include <signal.h>

#include <cerrno>

namespace lifeline::cli {
namespace {

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void BlockStopSignals() {
  const sigset_t set = StopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A peer closing a socket must be an error value, never a process-killing SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
}

std::optional<int> WaitForStopSignal(std::optional<std::chrono::milliseconds> timeout) {
  const sigset_t set = StopSignals();
  for (;;) {
    int signal_number = 0;
    if (!timeout) {
      if (sigwait(&set, &signal_number) == 0) {
        return signal_number;
      }
      continue;
    }
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(*timeout);
    const timespec wait{.tv_sec = static_cast<time_t>(secs.count()),
                        .tv_nsec = static_cast<long>((*timeout - secs).count() * 1'000'000)};
    signal_number = sigtimedwait(&set, nullptr, &wait);
    if (signal_number > 0) {
      return signal_number;
    }
    if (errno == EAGAIN) {
      return std::nullopt;
    }
    // EINTR: try again (the remaining time restarts; good enough for a demo's bounded run)
  }
}

}  // namespace lifeline::cli
