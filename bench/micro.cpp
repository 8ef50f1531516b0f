#include "bench/micro.h"

#include "agent/queue.h"
#include "agent/rules.h"
#include "bench/workload.h"

#include <fmt/format.h>

#include <array>
#include <string_view>
#include <vector>

namespace lifeline::bench {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Enough distinct lines that the loop does not just replay a few cached ones.
std::vector<std::string> MakeLines(std::uint64_t match_every) {
  std::vector<std::string> lines;
  lines.reserve(4096);
  for (std::uint64_t i = 0; i < 4096; ++i) {
    lines.push_back(ArrayLogLine(i, match_every));
  }
  return lines;
}

}  // namespace

RuleFigures BenchRules(std::chrono::milliseconds budget, std::uint64_t max_lines, std::uint64_t match_every) {
  RuleFigures figures;
  std::string error;
  auto rules = agent::RuleSet::Compile(TenRules(), &error);
  if (!rules) {
    figures.error = error.empty() ? rules.error().message() : error;
    return figures;
  }
  const auto lines = MakeLines(match_every);
  std::uint64_t bytes = 0;
  for (const auto& line : lines) {
    bytes += line.size();
  }
  figures.average_line_bytes = static_cast<double>(bytes) / static_cast<double>(lines.size());
  const std::string_view source = "/var/log/array/array.log";

  // Time is read every 256 lines, so the clock costs nothing measurable.
  const auto start = Clock::now();
  const auto deadline = start + budget;
  std::uint64_t n = 0;
  while (n < max_lines && (n % 256 != 0 || Clock::now() < deadline)) {
    if (rules->Match(lines[n % lines.size()], source)) {
      ++figures.matches;
    }
    ++n;
  }
  figures.seconds = SecondsSince(start);
  figures.lines = n;
  figures.lines_per_second = static_cast<double>(n) / figures.seconds;

  // Baseline: one literal keyword per rule, searched with string_view::find.
  static constexpr std::array<std::string_view, 10> kKeywords = {
      "SIM=", "failed", "voltage out of range", "fan ", "cache battery", "path CL", "exceeds threshold",
      "C critical", "suspended", "controller "};
  const auto baseline_start = Clock::now();
  const auto baseline_deadline = baseline_start + budget / 4;
  std::uint64_t m = 0;
  std::uint64_t found = 0;
  while (m < max_lines && (m % 256 != 0 || Clock::now() < baseline_deadline)) {
    const std::string_view line = lines[m % lines.size()];
    for (auto keyword : kKeywords) {
      if (line.find(keyword) != std::string_view::npos) {
        ++found;
        break;
      }
    }
    ++m;
  }
  figures.baseline_lines_per_second = static_cast<double>(m) / SecondsSince(baseline_start);
  figures.baseline_matches = found;  // used, so the loop is not optimised away
  return figures;
}

QueueFigures BenchQueue(const std::filesystem::path& dir, std::size_t batch, std::chrono::milliseconds budget,
                        std::uint64_t max_messages) {
  QueueFigures figures;
  figures.batch = batch;
  const auto path = dir / fmt::format("queue-batch-{}.db", batch);
  auto queue = agent::AgentQueue::Open(path);
  if (!queue) {
    figures.error = fmt::format("cannot open {}: {}", path.string(), queue.error().message());
    return figures;
  }
  protocol::Message draft;
  draft.type = protocol::MessageType::kAlert;
  draft.timestamp_ms = 1715674951000;
  draft.alert = {"SIM-3A21F4", protocol::Severity::kCritical,
                 "drive enclosure DKU-01 fan failure detected (SIM=3A21F4, ctrl0, pid 2231)",
                 "/var/log/array/array.log"};

  const auto start = Clock::now();
  const auto deadline = start + budget;
  while (figures.messages < max_messages && Clock::now() < deadline) {
    std::vector<protocol::Message> drafts(batch, draft);
    auto stored = (*queue)->Enqueue(std::move(drafts));
    if (!stored) {
      figures.error = fmt::format("Enqueue failed: {}", stored.error().message());
      break;
    }
    figures.messages += stored->size();
    ++figures.commits;
  }
  figures.seconds = SecondsSince(start);
  figures.messages_per_second = static_cast<double>(figures.messages) / figures.seconds;
  return figures;
}

}  // namespace lifeline::bench
