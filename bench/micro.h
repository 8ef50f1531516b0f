#pragma once
// In-process benchmarks of the agent's two hot paths, on this thread (one core).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace lifeline::bench {

struct RuleFigures {
  std::uint64_t lines = 0;
  std::uint64_t matches = 0;
  double seconds = 0;
  double lines_per_second = 0;
  // Baseline in the same run: the same lines through ten plain substring searches (the rules'
  // literal keywords), the floor any regular-expression engine is measured against.
  double baseline_lines_per_second = 0;
  std::uint64_t baseline_matches = 0;
  double average_line_bytes = 0;
  std::string error;  // the rules did not compile
};

/// Lines through RuleSet::Match with the ten rules (workload.h), one in `match_every` matching, for
/// up to `budget` or `max_lines`, whichever comes first.
RuleFigures BenchRules(std::chrono::milliseconds budget, std::uint64_t max_lines, std::uint64_t match_every);

struct QueueFigures {
  std::size_t batch = 0;
  std::uint64_t messages = 0;
  std::uint64_t commits = 0;
  double seconds = 0;
  double messages_per_second = 0;
  std::string error;
};

/// AgentQueue::Enqueue of alert drafts in batches of `batch` (one transaction, one fsync each) into a
/// fresh queue file under `dir`, for up to `budget` or `max_messages`.
QueueFigures BenchQueue(const std::filesystem::path& dir, std::size_t batch, std::chrono::milliseconds budget,
                        std::uint64_t max_messages);

}  // namespace lifeline::bench
