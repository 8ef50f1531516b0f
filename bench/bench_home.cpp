// bench_home: the home benchmark of issue 4 (see bench/README.md). One function per figure group,
// each measuring ours beside a baseline in the same run and printing one table:
//   heartbeats: the missing-heartbeat tracker at 1,000,000 devices (memory per device, observes/s,
//               one sweep's cost, detection delay over a simulated hour) vs a name-keyed map.
// It reports, it does not gate: a missed target still exits 0. Exit 1 means a figure group could
// not run at all, which is what `--smoke` is for in the test suite.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "bench/home_heartbeats.h"

namespace {

using namespace lifeline::bench;

constexpr double kBytesPerDeviceTarget = 64;
constexpr double kDetectionTargetSeconds = 30;

struct Options {
  bool smoke = false;
  std::uint32_t devices = 1'000'000;
  std::uint32_t sites = 1'000;
};

void Usage() {
  std::puts(
      "usage: bench_home [--smoke] [--devices N] [--sites N]\n"
      "  --smoke     a short run (a few seconds) that checks everything works; figures are not "
      "meaningful\n"
      "  --devices   tracked devices for the heartbeat figures (default 1000000)\n"
      "  --sites     sites they are spread over (default 1000)");
}

std::string Ratio(double numerator, double denominator) {
  if (denominator <= 0 || numerator < 0) {
    return "-";
  }
  const double ratio = numerator / denominator;
  return ratio < 100 ? fmt::format("{:.1f}x", ratio) : fmt::format("{:.0f}x", ratio);
}

const char* Verdict(bool pass) { return pass ? "PASS" : "MISS"; }

void Row(std::string_view figure, std::string_view ours, std::string_view other,
         std::string_view ratio, std::string_view target, std::string_view result) {
  fmt::print("{:<44} {:>14} {:>16} {:>9}  {:<12} {}\n", figure, ours, other, ratio, target, result);
}

std::string Rate(double per_second) {
  return per_second >= 1e6 ? fmt::format("{:.2f} M/s", per_second / 1e6)
                           : fmt::format("{:.0f} k/s", per_second / 1e3);
}

// ---- heartbeats (issue 4, item 2)

bool RunHeartbeats(const Options& options) {
  HeartbeatBenchOptions bench;
  bench.devices = options.devices;
  bench.sites = options.sites;
  if (options.smoke) {
    bench.devices = std::min<std::uint32_t>(options.devices, 20'000);
    bench.sites = std::min<std::uint32_t>(options.sites, 20);
    bench.simulated = std::chrono::seconds(900);
    bench.idle_sweeps = 100;
    bench.due_sweeps = 3;
  }
  const auto f = BenchHeartbeats(bench);
  fmt::print("\n== Missing heartbeats: {} devices over {} sites, in process, fake time ==\n",
             bench.devices, bench.sites);
  if (!f.error.empty() && f.devices == 0) {
    fmt::print("did not run: {}\n", f.error);
    return false;
  }
  fmt::print(
      "ours: home::HeartbeatTracker (numeric ids, timing wheel, lock-free Observe); baseline: "
      "std::unordered_map<std::string, ...> by device name, a mutex, a full scan per sweep\n");
  fmt::print("ratio = baseline / ours (above 1: the baseline uses more)\n\n");
  Row("figure", "ours", "baseline", "ratio", "target", "result");

  Row("tracker bytes per device (malloc)", fmt::format("{:.1f} B", f.tracker_malloc_bytes),
      fmt::format("{:.1f} B", f.naive_malloc_bytes),
      Ratio(f.naive_malloc_bytes, f.tracker_malloc_bytes),
      fmt::format("<= {:.0f} B", kBytesPerDeviceTarget),
      Verdict(f.tracker_malloc_bytes <= kBytesPerDeviceTarget));
  Row("  cross-check: RssAnon delta per device", fmt::format("{:.1f} B", f.tracker_rss_bytes),
      fmt::format("{:.1f} B", f.naive_rss_bytes), Ratio(f.naive_rss_bytes, f.tracker_rss_bytes), "",
      "");
  Row("  cross-check: MemoryBytes() per device", fmt::format("{:.1f} B", f.tracker_self_bytes), "-",
      "", "", "");
  Row("first heartbeat of each device, 1 thread", Rate(f.register_per_second), "", "", "", "");
  Row("observe heartbeats, 1 thread", Rate(f.observe_per_second_1),
      Rate(f.naive_observe_per_second_1),
      Ratio(f.observe_per_second_1, f.naive_observe_per_second_1), "", "");
  Row("observe heartbeats, 2 threads", Rate(f.observe_per_second_2),
      Rate(f.naive_observe_per_second_2),
      Ratio(f.observe_per_second_2, f.naive_observe_per_second_2), "", "");
  Row("one sweep, nothing due", fmt::format("{:.2f} us", f.idle_sweep_us),
      fmt::format("{:.1f} ms", f.naive_idle_sweep_ms),
      Ratio(f.naive_idle_sweep_ms * 1000, f.idle_sweep_us), "(no target)", "");
  Row(fmt::format("one sweep, 1% due ({} events)", f.due_per_sweep),
      fmt::format("{:.2f} ms", f.due_sweep_ms_avg), fmt::format("{:.1f} ms", f.naive_due_sweep_ms),
      Ratio(f.naive_due_sweep_ms, f.due_sweep_ms_avg), "(no target)", "");
  Row("  worst of those sweeps", fmt::format("{:.2f} ms", f.due_sweep_ms_max), "", "", "", "");
  Row("first sweep after start (examines all)", fmt::format("{:.1f} ms", f.first_sweep_ms), "", "",
      "", "");
  Row(fmt::format("simulated {:.0f} s: sweep every 1 s, average", f.simulated_seconds),
      fmt::format("{:.1f} us", f.sweep_us_avg), "", "", "", "");
  Row("  worst sweep", fmt::format("{:.1f} us", f.sweep_us_max), "", "", "", "");
  Row("  worst detection after the deadline", fmt::format("{:.2f} s", f.worst_delay_s), "", "",
      fmt::format("<= {:.0f} s", kDetectionTargetSeconds),
      Verdict(f.sweeps > 0 && f.worst_delay_s <= kDetectionTargetSeconds && f.undetected == 0 &&
              f.early == 0));

  fmt::print(
      "\nmemory: after the first heartbeat of every device; malloc = mallinfo2 in use + mmapped, "
      "delta over "
      "the tracker's construction and filling; RssAnon from /proc/self/status. The baseline keys "
      "each "
      "device by its 'customer/site/serial' name (36 characters) and keeps its site name.\n");
  fmt::print(
      "observe: each pass gives every device one heartbeat (a later one than before); 2 threads "
      "take half "
      "the devices each. Our ids come with the device row the ingest handler already looks up; the "
      "baseline hashes the name.\n");
  fmt::print(
      "sweeps: nothing due examined {} wheel entries over {} sweeps; 1% due = {} devices falling "
      "due on the "
      "same second, each reported (no site has most of its devices among them).\n",
      f.idle_examined, bench.idle_sweeps, f.due_per_sweep);
  fmt::print(
      "simulated fleet: heartbeats every 60/120/300/600 s at random offsets within the second, {} "
      "observes "
      "and {} sweeps in {:.1f} s of wall time, {:.0f} wheel entries examined per sweep on average. "
      "Of {} dead "
      "devices past their deadline by 30 s: {} reported one by one, {} covered by their site's "
      "event, {} "
      "missed; {} reported early, {} false events. Detection delay mean {:.2f} s (the tracker "
      "counts in "
      "whole seconds, rounding the heartbeat up, so at most 1 s after the true deadline when swept "
      "every "
      "second).\n",
      f.observes, f.sweeps, f.wall_seconds, f.examined_avg, f.dead_devices, f.detected, f.covered,
      f.undetected, f.early, f.false_events, f.mean_delay_s);
  if (f.dead_site_event) {
    fmt::print(
        "dead site ({} devices, all silent at once): its site event came {:.0f} s after it died; "
        "{} of its "
        "devices had been reported one by one before: their deadlines are spread over their "
        "heartbeat "
        "intervals plus grace, and the site counts as silent only once most of it is overdue.\n",
        f.dead_site_devices, f.dead_site_event_after_s, f.dead_site_reported);
  } else {
    fmt::print("dead site ({} devices): no site event within the run\n", f.dead_site_devices);
  }
  if (!f.error.empty()) {
    fmt::print("error: {}\n", f.error);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto number = [&]() -> std::uint32_t {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return static_cast<std::uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    };
    if (arg == "--smoke") {
      options.smoke = true;
    } else if (arg == "--devices") {
      options.devices = number();
    } else if (arg == "--sites") {
      options.sites = number();
    } else {
      Usage();
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  fmt::print("bench_home{}\n",
             options.smoke ? " --smoke (small sizes: figures are not meaningful)" : "");

  const bool heartbeats = RunHeartbeats(options);
  fmt::print(
      "\nTargets are issue 4's; PASS/MISS is reported, never enforced (exit status 0 either "
      "way).\n");
  // Exit 1 only when a figure group could not measure at all: the smoke test's failure signal.
  return heartbeats ? 0 : 1;
}
