#pragma once
// Resident memory and CPU time of a process and its descendants, read from /proc.
#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace lifeline::bench {

struct ProcSample {
  int processes = 0;             // how many of the pids were still there
  std::int64_t rss_kib = 0;      // sum of VmRSS (/proc/PID/status): shared pages count once per process
  std::int64_t rss_anon_kib = 0; // sum of RssAnon: heap, stacks; the rest of VmRSS is mapped files (code)
  std::int64_t pss_kib = 0;      // sum of Pss (/proc/PID/smaps_rollup): shared pages split between sharers
  std::int64_t cpu_ticks = 0;    // sum of utime+stime (/proc/PID/stat), in clock ticks
  std::int64_t cpu_ns = 0;       // sum over every thread of its run time (/proc/PID/task/*/schedstat)
};

/// `root` and every live process descended from it.
std::vector<pid_t> ProcessTree(pid_t root);

/// One reading of `pids`; pids that have gone are skipped.
ProcSample Sample(const std::vector<pid_t>& pids);

/// Clock ticks per second (sysconf(_SC_CLK_TCK)).
std::int64_t TicksPerSecond();

}  // namespace lifeline::bench
