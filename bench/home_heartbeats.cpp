#include "bench/home_heartbeats.h"

#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench/proc_stats.h"
#include "home/heartbeat_tracker.h"

namespace lifeline::bench {
namespace {

using Clock = std::chrono::steady_clock;
using home::HeartbeatEventKind;
using home::HeartbeatTracker;

constexpr std::int64_t kStartMs = 1'780'000'000'000;  // the fake time the runs start at

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Bytes the allocator has handed out: in use from its arenas plus blocks it mmapped.
std::int64_t AllocatedBytes() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<std::int64_t>(info.uordblks + info.hblkhd);
}

std::int64_t RssAnonBytes() { return Sample({getpid()}).rss_anon_kib * 1024; }

struct Layout {
  std::uint32_t devices;
  std::uint32_t per_site;
  std::uint32_t Site(std::uint32_t device) const { return device / per_site; }
  // 100 intervals, so deadlines fall on 100 different seconds: 1% of the devices each.
  static std::int64_t Interval(std::uint32_t device) { return 3600 + device % 100; }
};

// Runs `work(first, end)` on `threads` threads over [0, devices) in contiguous halves; the seconds.
template <typename Work>
double Parallel(std::uint32_t devices, int threads, Work work) {
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    const std::uint32_t first = static_cast<std::uint32_t>(std::uint64_t{devices} * t / threads);
    const std::uint32_t end =
        static_cast<std::uint32_t>(std::uint64_t{devices} * (t + 1) / threads);
    pool.emplace_back([=] { work(first, end); });
  }
  for (auto& thread : pool) {
    thread.join();
  }
  return Seconds(start);
}

// Heartbeats per second: the best of `passes` passes over every device, each pass one second of
// fake time later than the one before (`make(now_ms)` gives a pass's work). On a shared machine the
// best pass is the one least disturbed by others.
template <typename Make>
double BestRate(std::uint32_t devices, int threads, int passes, std::int64_t& now_ms, Make make) {
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    now_ms += 1000;
    best = std::max(best, devices / Parallel(devices, threads, make(now_ms)));
  }
  return best;
}

// Heartbeats arrive in no particular order of device ids.
std::vector<std::uint32_t> Shuffled(std::uint32_t devices) {
  std::vector<std::uint32_t> order(devices);
  for (std::uint32_t d = 0; d < devices; ++d) {
    order[d] = d;
  }
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  return order;
}

// ---- the tracker: memory, observe, sweeps

void MeasureTracker(const HeartbeatBenchOptions& options, const Layout& layout,
                    HeartbeatFigures& f) {
  const std::uint32_t n = layout.devices;
  const auto order = Shuffled(n);  // before measuring: not the tracker's
  const std::int64_t malloc_before = AllocatedBytes();
  const std::int64_t rss_before = RssAnonBytes();
  auto tracker = std::make_unique<HeartbeatTracker>();

  auto observe_all = [&](std::int64_t now_ms) {
    return [&, now_ms](std::uint32_t first, std::uint32_t end) {
      for (std::uint32_t i = first; i < end; ++i) {
        const std::uint32_t d = order[i];
        tracker->Observe(d, layout.Site(d), Layout::Interval(d), now_ms);
      }
    };
  };
  f.register_per_second = n / Parallel(n, 1, observe_all(kStartMs));
  f.tracker_malloc_bytes = static_cast<double>(AllocatedBytes() - malloc_before) / n;
  f.tracker_rss_bytes = static_cast<double>(RssAnonBytes() - rss_before) / n;
  f.tracker_self_bytes = static_cast<double>(tracker->MemoryBytes()) / n;

  // Each pass moves every deadline a second later: the lock-free path.
  std::int64_t last_ms = kStartMs;
  f.observe_per_second_1 = BestRate(n, 1, 3, last_ms, observe_all);
  f.observe_per_second_2 = BestRate(n, 2, 3, last_ms, observe_all);

  auto start = Clock::now();
  (void)tracker->Sweep(last_ms);
  f.first_sweep_ms = Seconds(start) * 1000;

  std::uint64_t examined = 0;
  start = Clock::now();
  for (int i = 1; i <= options.idle_sweeps; ++i) {
    if (!tracker->Sweep(last_ms + i * 1000LL).empty()) {
      f.error = "a sweep with nothing due reported something";
    }
    examined += tracker->Stats().last_sweep_examined;
  }
  f.idle_sweep_us = Seconds(start) * 1e6 / std::max(options.idle_sweeps, 1);
  f.idle_examined = examined;

  // The first deadline: interval 3600 s + grace 360 s after the last pass. Catch up to just before
  // it (untimed), then sweep the seconds on which 1% of the devices fall due.
  const std::int64_t first_due_ms = last_ms + (3600 + 360) * 1000LL;
  (void)tracker->Sweep(first_due_ms - 1000);
  double total = 0;
  for (int i = 0; i < options.due_sweeps; ++i) {
    start = Clock::now();
    const auto events = tracker->Sweep(first_due_ms + i * 1000LL);
    const double seconds = Seconds(start);
    total += seconds;
    f.due_sweep_ms_max = std::max(f.due_sweep_ms_max, seconds * 1000);
    f.due_per_sweep = static_cast<std::uint64_t>(events.size());
  }
  f.due_sweep_ms_avg = total * 1000 / std::max(options.due_sweeps, 1);
}

// ---- the baseline: a map by device name, scanned whole

struct NaiveDevice {
  std::string site;
  std::int64_t last_ms = 0;
  std::int64_t interval_s = 0;
  bool missing = false;
};

class NaiveTracker {
 public:
  explicit NaiveTracker(const HeartbeatTracker& rules) : rules_(rules) {}

  void Observe(const std::string& name, const std::string& site, std::int64_t interval_s,
               std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    auto [it, inserted] = devices_.try_emplace(name);
    if (inserted) {
      it->second.site = site;
    }
    it->second.last_ms = now_ms;
    it->second.interval_s = interval_s;
    it->second.missing = false;
  }

  std::vector<const std::string*> Sweep(std::int64_t now_ms) {
    std::vector<const std::string*> missing;
    std::lock_guard lock(mutex_);
    for (auto& [name, device] : devices_) {
      const std::int64_t grace = rules_.GraceFor(std::chrono::seconds(device.interval_s)).count();
      if (!device.missing && now_ms >= device.last_ms + (device.interval_s + grace) * 1000) {
        device.missing = true;
        missing.push_back(&name);
      }
    }
    return missing;
  }

 private:
  const HeartbeatTracker& rules_;
  std::mutex mutex_;
  std::unordered_map<std::string, NaiveDevice> devices_;
};

void MeasureNaive(const Layout& layout, HeartbeatFigures& f) {
  const std::uint32_t n = layout.devices;
  // Names as the home knows them (customer/site/serial), made before measuring.
  std::vector<std::string> names(n);
  std::vector<std::string> sites(n / layout.per_site + 1);
  for (std::uint32_t s = 0; s < sites.size(); ++s) {
    sites[s] = fmt::format("customer-{:03}/site-{:05}", s % 97, s);
  }
  for (std::uint32_t d = 0; d < n; ++d) {
    names[d] = fmt::format("{}/SN-{:09}", sites[layout.Site(d)], d);
  }
  const HeartbeatTracker rules;
  const auto order = Shuffled(n);
  const std::int64_t malloc_before = AllocatedBytes();
  const std::int64_t rss_before = RssAnonBytes();
  auto naive = std::make_unique<NaiveTracker>(rules);
  auto observe_all = [&](std::int64_t now_ms) {
    return [&, now_ms](std::uint32_t first, std::uint32_t end) {
      for (std::uint32_t i = first; i < end; ++i) {
        const std::uint32_t d = order[i];
        naive->Observe(names[d], sites[layout.Site(d)], Layout::Interval(d), now_ms);
      }
    };
  };
  Parallel(n, 1, observe_all(kStartMs));
  f.naive_malloc_bytes = static_cast<double>(AllocatedBytes() - malloc_before) / n;
  f.naive_rss_bytes = static_cast<double>(RssAnonBytes() - rss_before) / n;
  std::int64_t last_ms = kStartMs;
  f.naive_observe_per_second_1 = BestRate(n, 1, 3, last_ms, observe_all);
  f.naive_observe_per_second_2 = BestRate(n, 2, 3, last_ms, observe_all);

  constexpr int kIdleScans = 3;
  auto start = Clock::now();
  for (int i = 1; i <= kIdleScans; ++i) {
    (void)naive->Sweep(last_ms + i * 1000LL);
  }
  f.naive_idle_sweep_ms = Seconds(start) * 1000 / kIdleScans;
  start = Clock::now();
  (void)naive->Sweep(last_ms + (3600 + 360) * 1000LL);
  f.naive_due_sweep_ms = Seconds(start) * 1000;
}

// ---- a simulated fleet, swept every second

void Simulate(const HeartbeatBenchOptions& options, const Layout& layout, HeartbeatFigures& f) {
  const std::uint32_t n = layout.devices;
  const std::int64_t duration = options.simulated.count();
  constexpr std::int64_t kPeriods[4] = {60, 120, 300, 600};
  constexpr std::int32_t kAlive = std::numeric_limits<std::int32_t>::max();
  const auto period = [&](std::uint32_t d) { return kPeriods[d % 4]; };
  const auto offset_ms = [](std::uint32_t d) {
    return static_cast<std::int64_t>((d * 7919ULL) % 1000);
  };

  HeartbeatTracker tracker;
  std::vector<std::int32_t> dead_at(n, kAlive);  // the second from which a device sends nothing
  std::vector<std::int64_t> last_ms(n);
  std::vector<bool> reported(n, false);
  std::mt19937_64 random(42);
  for (std::uint32_t k = 0; k < std::max<std::uint32_t>(n / 1000, 1); ++k) {
    const auto d = static_cast<std::uint32_t>(random() % n);
    dead_at[d] =
        static_cast<std::int32_t>(1 + random() % static_cast<std::uint64_t>(duration * 3 / 4));
  }
  const std::uint32_t dead_site = (n / layout.per_site) / 2;
  const auto dead_site_death = static_cast<std::int32_t>(duration / 3);
  f.dead_site_devices = layout.per_site;
  for (std::uint32_t d = dead_site * layout.per_site; d < (dead_site + 1) * layout.per_site; ++d) {
    dead_at[d] = dead_site_death;
  }

  // A fleet already running: each device's previous heartbeat is restored from "the store".
  for (std::uint32_t d = 0; d < n; ++d) {
    const std::int64_t phase = (d / 4) % period(d);
    last_ms[d] = kStartMs + (phase - period(d)) * 1000 + offset_ms(d);
    tracker.Restore(d, layout.Site(d), period(d), last_ms[d]);
  }
  (void)tracker.Sweep(kStartMs);

  double delay_sum = 0;
  double sweep_total = 0;
  std::uint64_t examined = 0;
  const auto wall_start = Clock::now();
  for (std::int64_t t = 1; t <= duration; ++t) {
    // The heartbeats of second t-1, at their devices' offsets within it.
    const std::int64_t second = t - 1;
    for (std::uint32_t c = 0; c < 4; ++c) {
      const std::int64_t p = kPeriods[c];
      for (std::uint64_t j = static_cast<std::uint64_t>(second % p); 4 * j + c < n; j += p) {
        const auto d = static_cast<std::uint32_t>(4 * j + c);
        if (second >= dead_at[d]) {
          continue;
        }
        last_ms[d] = kStartMs + second * 1000 + offset_ms(d);
        tracker.Observe(d, layout.Site(d), p, last_ms[d]);
        ++f.observes;
      }
    }

    const std::int64_t now_ms = kStartMs + t * 1000;
    const auto start = Clock::now();
    const auto events = tracker.Sweep(now_ms);
    const double seconds = Seconds(start);
    sweep_total += seconds;
    f.sweep_us_max = std::max(f.sweep_us_max, seconds * 1e6);
    examined += tracker.Stats().last_sweep_examined;
    ++f.sweeps;

    for (const auto& e : events) {
      switch (e.kind) {
        case HeartbeatEventKind::kDeviceMissing: {
          if (dead_at[e.device] == kAlive) {
            ++f.false_events;
            break;
          }
          const std::int64_t p = period(e.device);
          const std::int64_t deadline =
              last_ms[e.device] + (p + tracker.GraceFor(std::chrono::seconds(p)).count()) * 1000;
          const double delay = static_cast<double>(now_ms - deadline) / 1000;
          f.early += delay < 0 ? 1 : 0;
          f.worst_delay_s = std::max(f.worst_delay_s, delay);
          delay_sum += delay;
          reported[e.device] = true;
          if (layout.Site(e.device) == dead_site && !f.dead_site_event) {
            ++f.dead_site_reported;
          }
          break;
        }
        case HeartbeatEventKind::kSiteSilent:
          if (e.site == dead_site && !f.dead_site_event) {
            f.dead_site_event = true;
            f.dead_site_event_after_s = static_cast<double>(t - dead_site_death);
          } else {
            ++f.false_events;
          }
          break;
        case HeartbeatEventKind::kDeviceResumed:
        case HeartbeatEventKind::kSiteResumed:
          ++f.false_events;  // nothing that died here comes back
          break;
      }
    }
  }
  f.wall_seconds = Seconds(wall_start);
  f.simulated_seconds = static_cast<double>(duration);

  std::uint64_t reported_count = 0;
  const std::int64_t end_ms = kStartMs + duration * 1000;
  for (std::uint32_t d = 0; d < n; ++d) {
    if (dead_at[d] == kAlive) {
      continue;
    }
    const std::int64_t p = period(d);
    const std::int64_t deadline =
        last_ms[d] + (p + tracker.GraceFor(std::chrono::seconds(p)).count()) * 1000;
    reported_count += reported[d] ? 1 : 0;
    if (deadline > end_ms - 30'000) {
      continue;  // not yet 30 s past its deadline when the run ended
    }
    ++f.dead_devices;
    if (reported[d]) {
      ++f.detected;
    } else if (layout.Site(d) == dead_site && f.dead_site_event) {
      ++f.covered;
    } else {
      ++f.undetected;
    }
  }
  f.sweep_us_avg = sweep_total * 1e6 / std::max<std::uint64_t>(f.sweeps, 1);
  f.examined_avg = static_cast<double>(examined) / std::max<std::uint64_t>(f.sweeps, 1);
  f.mean_delay_s = reported_count == 0 ? 0 : delay_sum / static_cast<double>(reported_count);
}

}  // namespace

HeartbeatFigures BenchHeartbeats(const HeartbeatBenchOptions& options) {
  HeartbeatFigures f;
  if (options.devices < 1000 || options.sites == 0 || options.sites > options.devices / 4 ||
      options.due_sweeps > 10 || options.idle_sweeps > 3000) {
    f.error =
        "options out of range (devices >= 1000, sites <= devices/4, due sweeps <= 10, idle <= "
        "3000)";
    return f;
  }
  f.devices = options.devices;
  f.sites = options.sites;
  const Layout layout{options.devices, options.devices / options.sites};
  MeasureTracker(options, layout, f);
  MeasureNaive(layout, f);
  Simulate(options, layout, f);
  return f;
}

}  // namespace lifeline::bench
