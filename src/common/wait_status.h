#pragma once
// A child's wait status as the shell shows it: the exit code, or 128 + the signal that ended it.
#include <sys/wait.h>

namespace lifeline {

inline int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return -1;
}

}  // namespace lifeline
