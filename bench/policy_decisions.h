#pragma once
// bench_policy, in process: how fast a gateway decides from its durable policy cache
// (gateway::PolicyCache, the same object `gateway run` decides from), beside the reference decision
// that scans every rule and grant (policy::Decide on the plain PolicySet) measured in the same run.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace lifeline::bench::policy_bench {

struct DecisionSizes {
  int devices = 10'000;
  int groups = 100;
  int models = 50;
  int rules = 1'000;
  int grants = 20;
  std::chrono::milliseconds window{3000};           // each cached-decision figure
  std::chrono::milliseconds baseline_window{2000};  // the reference scan
};

struct DecisionFigures {
  std::string error;  // set-up failed
  double cache_store_ms = 0;  // PolicyCache::Offer of the set (JSON, SQLite, fsync)
  double cache_open_ms = 0;   // what a gateway start pays: open policy.db, parse, compile
  double cached_per_s_1 = 0;  // decisions/s from the cache, one thread
  double cached_per_s_n = 0;  // the same on every core together
  int threads = 1;
  double scan_per_s = 0;      // the reference scan, one thread
  std::uint64_t mismatches = 0;  // decisions where the cache and the scan disagreed (must be 0)
  std::uint64_t checked = 0;
};

DecisionFigures MeasureDecisions(const std::filesystem::path& dir, const DecisionSizes& sizes);

}  // namespace lifeline::bench::policy_bench
