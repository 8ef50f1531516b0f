#include "bench/policy_decisions.h"

#include "gateway/policy_cache.h"
#include "policy/policy_rules.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace lifeline::bench::policy_bench {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using policy::Activity;
using policy::Action;
using policy::ScopeKind;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A site as a vendor's largest customers run it: devices in groups over models, rules at every scope
// (some per application, some in office hours only) and a few grants.
policy::PolicySet MakeSet(const DecisionSizes& sizes, policy::TimePoint now) {
  policy::PolicySet set;
  set.version = 1;
  for (int g = 0; g < sizes.groups; ++g) {
    policy::DeviceGroup group{"group-" + std::to_string(g), {}};
    for (int d = g; d < sizes.devices; d += sizes.groups) {
      group.serials.push_back("SN" + std::to_string(d));
    }
    set.groups.push_back(std::move(group));
  }
  const std::string apps[] = {"", "ssh", "https", "vnc"};
  for (int i = 0; i < sizes.rules; ++i) {
    policy::Rule r;
    r.id = i + 1;
    r.action = static_cast<Action>(i % 3);
    const int tenth = sizes.rules / 10;
    if (i < 6 * tenth) {
      r.scope = {ScopeKind::kDevice, "SN" + std::to_string(i * 13 % sizes.devices)};
    } else if (i < 8 * tenth) {
      r.scope = {ScopeKind::kGroup, "group-" + std::to_string(i % sizes.groups)};
    } else if (i < sizes.rules - 10) {
      r.scope = {ScopeKind::kModel, "model-" + std::to_string(i % sizes.models)};
    } else {
      r.scope = {ScopeKind::kSite, ""};
      r.activity = static_cast<Activity>(i % policy::kActivityCount);
    }
    if (r.activity == Activity::kRemoteSession) {
      r.application = apps[i % 4];
    }
    if (i % 10 == 0) {
      r.windows = {{policy::kWeekdays, 8 * 60, 18 * 60, 60}};
    }
    set.rules.push_back(std::move(r));
  }
  for (int i = 0; i < sizes.grants; ++i) {
    policy::Grant grant;
    grant.id = i + 1;
    grant.engineer = i % 2 ? "alice" : "";
    grant.scope = {ScopeKind::kDevice, "SN" + std::to_string(i * 7)};
    grant.starts_at = now - 1h;
    grant.ends_at = now + 23h;
    grant.granted_by = "carol";
    set.grants.push_back(std::move(grant));
  }
  return set;
}

std::vector<policy::DecisionRequest> MakeRequests(const DecisionSizes& sizes, policy::TimePoint now) {
  const std::string apps[] = {"ssh", "https", "vnc"};
  std::vector<policy::DecisionRequest> requests;
  for (std::uint32_t i = 0; i < 4096; ++i) {
    policy::DecisionRequest q;
    q.device_serial = "SN" + std::to_string(i * 2654435761u % static_cast<std::uint32_t>(sizes.devices));
    q.device_model = "model-" + std::to_string(i % static_cast<std::uint32_t>(sizes.models));
    q.application = apps[i % 3];
    q.engineer = i % 3 ? "alice" : "bob";
    q.time = now + std::chrono::hours(i % 168);  // a week of hours: in and out of the windows
    requests.push_back(std::move(q));
  }
  return requests;
}

// Decides in a loop for `window`; returns decisions per second.
template <typename Decide>
double Rate(std::chrono::milliseconds window, const std::vector<policy::DecisionRequest>& requests, Decide decide) {
  std::uint64_t done = 0, allowed = 0;
  const auto start = Clock::now();
  const auto end = start + window;
  while (Clock::now() < end) {
    for (int i = 0; i < 256; ++i, ++done) {
      allowed += decide(requests[done & 4095]).verdict == policy::Verdict::kAllow;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // `allowed` keeps the decisions from being optimised away.
  return allowed == ~0ull ? 0 : static_cast<double>(done) / seconds;
}

}  // namespace

DecisionFigures MeasureDecisions(const std::filesystem::path& dir, const DecisionSizes& sizes) {
  DecisionFigures figures;
  // Whole milliseconds: the policy's JSON form (what the cache stores) carries times in ms.
  const policy::TimePoint now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
  const policy::PolicySet set = MakeSet(sizes, now);
  const auto requests = MakeRequests(sizes, now);
  const auto path = dir / "policy.db";
  {
    auto cache = gateway::PolicyCache::Open(path);
    if (!cache) {
      figures.error = "cannot open the policy cache: " + cache.error().message();
      return figures;
    }
    std::string why;
    const auto start = Clock::now();
    auto offered = (*cache)->Offer(set, &why);
    figures.cache_store_ms = MillisSince(start);
    if (!offered || !*offered) {
      figures.error = "the cache refused the set: " + (offered ? std::string("older version") : why);
      return figures;
    }
  }
  // A gateway starting: the set comes back from disk, compiled, before the policy manager answers.
  const auto open_start = Clock::now();
  auto cache = gateway::PolicyCache::Open(path);
  figures.cache_open_ms = MillisSince(open_start);
  if (!cache || !(*cache)->Current()) {
    figures.error = "the cache did not keep the set across a reopen";
    return figures;
  }
  gateway::PolicyCache& gateway_cache = **cache;

  // The cache must decide as the reference does, or its speed means nothing.
  for (const auto& q : requests) {
    ++figures.checked;
    const auto a = *gateway_cache.Decide(q);
    const auto b = policy::Decide(set, q);
    if (a != b && std::getenv("BENCH_DEBUG")) {
      fmt::print("{} {} {} -> cache: {} | scan: {} | stored set equal: {}\n", q.device_serial, q.application, q.engineer,
                 a.reason, b.reason, gateway_cache.Current()->set() == set);
    }
    figures.mismatches += a != b;
  }

  // PolicyCache::Decide: the newest set through each thread's own reference (no shared writes).
  auto from_cache = [&](const policy::DecisionRequest& q) { return *gateway_cache.Decide(q); };
  figures.cached_per_s_1 = Rate(sizes.window, requests, from_cache);
  figures.threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<double> rates(static_cast<std::size_t>(figures.threads));
  std::vector<std::thread> threads;
  for (int t = 0; t < figures.threads; ++t) {
    threads.emplace_back([&, t] { rates[static_cast<std::size_t>(t)] = Rate(sizes.window, requests, from_cache); });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  for (double r : rates) {
    figures.cached_per_s_n += r;
  }
  figures.scan_per_s =
      Rate(sizes.baseline_window, requests, [&](const policy::DecisionRequest& q) { return policy::Decide(set, q); });
  return figures;
}

}  // namespace lifeline::bench::policy_bench
