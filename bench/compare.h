#pragma once
// Runs our agent (`lifeline agent run`, enrolled with a real `lifeline home run`) and Debian's
// zabbix_agentd side by side on this machine, on loopback, and measures both in the same windows:
// idle, then while one generator appends array log lines to the log both of them follow.
#include "bench/proc_stats.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace lifeline::bench {

struct CompareOptions {
  std::filesystem::path work_dir;  // an empty directory the run may fill
  std::filesystem::path lifeline_binary;
  std::filesystem::path source_dir;  // for scripts/mail-sink and bench/zabbix_active_server.py
  std::filesystem::path zabbix_binary = "/usr/sbin/zabbix_agentd";
  std::chrono::milliseconds settle{5000};  // after start-up, before the idle window
  std::chrono::milliseconds idle{15000};
  std::chrono::milliseconds load{15000};
  std::chrono::milliseconds delivery_wait{10000};  // after the load, for matching lines to arrive
  int lines_per_second = 1000;
  std::uint64_t match_every = 500;
};

struct AgentFigures {
  bool ran = false;
  std::string note;  // why it did not run, or what it could not be made to do
  ProcSample idle_start, idle_end, load_start, load_end;
  std::int64_t load_peak_rss_kib = 0;
  std::int64_t load_peak_pss_kib = 0;
  std::int64_t delivered = -1;  // matching lines that reached the server, counted once; -1: unknown
  std::int64_t resent = 0;      // values the server received more than once
  std::int64_t lag_bytes = -1;  // end of the log minus the position the agent committed; -1: unknown
};

struct CompareFigures {
  std::string error;  // set-up failed; the figures below are empty
  AgentFigures lifeline;
  AgentFigures zabbix;
  std::string zabbix_version;
  double idle_seconds = 0;
  double load_seconds = 0;
  std::uint64_t lines_written = 0;
  std::uint64_t matching_lines_written = 0;
  double average_line_bytes = 0;
  bool sender_gone_before_idle = false;  // lifeline's sender process had left when the idle window began
};

/// Bounded in time: start-up waits are capped at 20 s each, the windows are as given.
CompareFigures RunComparison(const CompareOptions& options);

}  // namespace lifeline::bench
