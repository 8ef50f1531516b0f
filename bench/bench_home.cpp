// bench_home: the home benchmark of issue 4 (see bench/README.md). One function per figure group,
// each measuring ours beside a baseline in the same run and printing one table:
//   heartbeats: the missing-heartbeat tracker at 1,000,000 devices (memory per device, observes/s,
//               one sweep's cost, detection delay over a simulated hour) vs a name-keyed map.
//   ingest:     messages/s with durable commit in batches of 100, in process (IngestBatch, 2 threads)
//               vs the store's raw INSERT rate, and end to end over HTTPS; SQLite, and PostgreSQL
//               when a server can be started.
//   latency:    alert to email on loopback (p50, p99) vs the alert's ingest round trip.
// It reports, it does not gate: a missed target still exits 0. Exit 1 means a figure group could
// not run at all, which is what `--smoke` is for in the test suite.
#include <fmt/format.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "bench/home_heartbeats.h"
#include "bench/home_ingest.h"
#include "bench/home_latency.h"
#include "common/log.h"

namespace {

using namespace lifeline::bench;

constexpr double kBytesPerDeviceTarget = 64;
constexpr double kDetectionTargetSeconds = 30;
constexpr double kIngestTargetPerSecond = 50'000;
constexpr double kEmailP99TargetMs = 1000;

struct Options {
  bool smoke = false;
  std::uint32_t devices = 1'000'000;
  std::uint32_t sites = 1'000;
  std::string only;  // empty: every group
  std::string dir;   // empty: a new directory under the temp dir, removed at the end
  bool keep = false;
  bool postgres = true;
};

void Usage() {
  std::puts(
      "usage: bench_home [--smoke] [--devices N] [--sites N] [--only GROUP] [--dir DIR] [--keep]\n"
      "                  [--no-postgres]\n"
      "  --smoke        a short run that checks everything works; figures are not meaningful\n"
      "  --devices      tracked devices for the heartbeat figures (default 1000000)\n"
      "  --sites        sites they are spread over (default 1000)\n"
      "  --only         heartbeats, ingest or latency: run that group alone\n"
      "  --dir          work directory for the ingest and latency groups (stores, PKI, mail); its file\n"
      "                 system decides what a durable commit costs (default: under $TMPDIR or /tmp)\n"
      "  --keep         keep the work directory\n"
      "  --no-postgres  skip the PostgreSQL ingest figures");
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


// ---- ingest (issue 4: 50,000 messages/s on SQLite, 2 cores, durable commit, batches of 100)

std::string Messages(double per_second) { return fmt::format("{:.1f} k/s", per_second / 1e3); }

bool RunIngest(const Options& options, const std::filesystem::path& dir) {
  IngestBenchOptions bench;
  bench.dir = dir / "ingest";
  bench.postgres = options.postgres;
  if (options.smoke) {
    bench.devices = 20;
    bench.batches = 40;
    bench.max_run = std::chrono::seconds(5);
    bench.e2e_devices = 4;
    bench.e2e_run = std::chrono::seconds(1);
  }
  const auto figures = BenchIngest(bench);
  fmt::print("\n== Ingest: messages/s with durable commit, batches of {}, {} threads ==\n", bench.batch_size,
             bench.threads);
  fmt::print("mix: {}; {} devices, {} prebuilt batches per in-process run (at most {} s each)\n", IngestMix(),
             bench.devices, bench.batches, bench.max_run.count());
  fmt::print(
      "ours: HomeStore::IngestBatch in process, 2 threads (storm control off: every alert goes through ticket "
      "deduplication); baseline: the same rows (batch id, one events row per message) as plain INSERTs through "
      "the SQL seam, one transaction per batch, 2 threads\n");
  fmt::print("ratio = baseline / ours (above 1: what the ingest logic costs beyond the commits)\n\n");
  Row("figure", "ours", "baseline", "ratio", "target", "result");
  bool ok = true;
  for (const auto& f : figures) {
    if (!f.skipped.empty()) {
      Row(f.backend, "skipped", "", "", "", "");
      fmt::print("  {}\n", f.skipped);
      continue;
    }
    const bool sqlite = f.backend == "SQLite";
    const std::string target = sqlite ? ">= 50 k/s" : "(no target)";
    Row(fmt::format("{}: ingest in process, 2 threads", f.backend),
        f.ingest.ran ? Messages(f.ingest.per_second) : "failed", f.raw.ran ? Messages(f.raw.per_second) : "failed",
        Ratio(f.raw.per_second, f.ingest.per_second), target,
        sqlite ? Verdict(f.ingest.ran && f.ingest.per_second >= kIngestTargetPerSecond) : "");
    Row("  per batch p50 / p99", fmt::format("{:.1f}/{:.1f} ms", f.ingest.p50_ms, f.ingest.p99_ms),
        fmt::format("{:.1f}/{:.1f} ms", f.raw.p50_ms, f.raw.p99_ms), "", "", "");
    Row("  with storm control (home default)", f.ingest_storm.ran ? Messages(f.ingest_storm.per_second) : "failed",
        f.raw.ran ? Messages(f.raw.per_second) : "", Ratio(f.raw.per_second, f.ingest_storm.per_second), "", "");
    Row(fmt::format("{}: end to end over HTTPS", f.backend), f.e2e.ran ? Messages(f.e2e.per_second) : "failed",
        f.ingest_storm.ran ? Messages(f.ingest_storm.per_second) : "", Ratio(f.ingest_storm.per_second, f.e2e.per_second),
        "(no target)", "");
    Row("  per request p50 / p99", fmt::format("{:.1f}/{:.1f} ms", f.e2e.p50_ms, f.e2e.p99_ms), "", "", "", "");
    fmt::print("  {}: {}\n", f.backend, f.where);
    fmt::print("  measured: in process {} messages in {:.1f} s; raw {} in {:.1f} s; storm control {} in {:.1f} s; "
               "end to end {} in {:.1f} s\n",
               f.ingest.messages, f.ingest.seconds, f.raw.messages, f.raw.seconds, f.ingest_storm.messages,
               f.ingest_storm.seconds, f.e2e.messages, f.e2e.seconds);
    for (const auto* run : {&f.ingest, &f.ingest_storm, &f.raw, &f.e2e}) {
      if (!run->note.empty()) {
        fmt::print("  error: {}\n", run->note);
        ok = false;
      }
      ok = ok && run->ran;
    }
  }
  fmt::print(
      "\nThe target applies to the in-process figure: the store's work with nothing else on the cores. End to end, "
      "the clients (sealing, signing, TLS with a client certificate per device, {} threads over {} devices) and "
      "the home (HTTPS, opening envelopes, checking signatures, signing replies; ingest.worker_threads = 2) share "
      "the same 2 cores in one process; its baseline column is the in-process figure with the home's default storm "
      "control, the same ingest work the home does. Email goes to a closed port there: outbox rows are written, "
      "deliveries are not measured.\n",
      bench.e2e_threads, bench.e2e_devices);
  return ok;
}

// ---- alert to email (issue 4: p99 under 1 s on loopback)

bool RunLatency(const Options& options, const std::filesystem::path& dir) {
  LatencyBenchOptions bench;
  bench.dir = dir / "latency";
  if (options.smoke) {
    bench.alerts = 5;
    bench.spacing = std::chrono::milliseconds(50);
    bench.max_wait = std::chrono::seconds(20);
  }
  const auto f = BenchAlertToEmail(bench);
  fmt::print("\n== Alert to email on loopback: {} alerts, one every {} ms, each a new ticket ==\n", bench.alerts,
             bench.spacing.count());
  fmt::print(
      "ours: from just before the device seals and sends the alert to scripts/mail-sink writing the email (its "
      "file's mtime); baseline: the same alert's ingest round trip (until the home's signed reply)\n");
  fmt::print("ratio = ours / baseline (the share of outbox, notifier and SMTP)\n\n");
  Row("figure", "ours", "baseline", "ratio", "target", "result");
  if (f.received == 0) {
    Row("alert to email", "failed", "", "", "", "");
    fmt::print("error: {}\n", f.error);
    return false;
  }
  Row("alert to email p50", fmt::format("{:.1f} ms", f.email_p50_ms), fmt::format("{:.1f} ms", f.reply_p50_ms),
      Ratio(f.email_p50_ms, f.reply_p50_ms), "", "");
  Row("alert to email p99", fmt::format("{:.1f} ms", f.email_p99_ms), fmt::format("{:.1f} ms", f.reply_p99_ms),
      Ratio(f.email_p99_ms, f.reply_p99_ms), fmt::format("< {:.0f} ms", kEmailP99TargetMs),
      Verdict(f.email_p99_ms < kEmailP99TargetMs && f.received == f.sent));
  Row("  worst", fmt::format("{:.1f} ms", f.email_max_ms), "", "", "", "");
  fmt::print(
      "\n{} alerts sent, {} emails matched to them by code. The home's notifier is woken by the ingest handler "
      "after each committed batch (IngestHandler's on_committed calls Notifier::Wake); its own timer (1 s) only "
      "covers retries, so the email does not wait for a poll. The SMTP server is Python (aiosmtpd) and fsyncs each "
      "message before answering; file times have the kernel's clock-tick granularity (a few ms).\n",
      f.sent, f.received);
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
    } else if ((arg == "--only" || arg == "--dir") && i + 1 < argc) {
      (arg == "--only" ? options.only : options.dir) = argv[++i];
    } else if (arg == "--keep") {
      options.keep = true;
    } else if (arg == "--no-postgres") {
      options.postgres = false;
    } else {
      Usage();
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  fmt::print("bench_home{}\n",
             options.smoke ? " --smoke (small sizes: figures are not meaningful)" : "");

  if (!options.only.empty() && options.only != "heartbeats" && options.only != "ingest" &&
      options.only != "latency") {
    Usage();
    return 2;
  }
  // The homes run in this process: their log lines would bury the tables.
  lifeline::log::Init(lifeline::log::Format::kText, spdlog::level::err);
  auto wanted = [&](std::string_view group) { return options.only.empty() || options.only == group; };
  bool ok = true;
  if (wanted("heartbeats")) {
    ok &= RunHeartbeats(options);
  }
  if (wanted("ingest") || wanted("latency")) {
    std::filesystem::path dir = options.dir;
    const bool made_here = dir.empty();
    if (made_here) {
      std::string pattern = (std::filesystem::temp_directory_path() / "bench-home-XXXXXX").string();
      if (mkdtemp(pattern.data()) == nullptr) {
        fmt::print("cannot create a work directory under {}\n", std::filesystem::temp_directory_path().string());
        return 1;
      }
      dir = pattern;
    }
    std::filesystem::create_directories(dir);
    if (wanted("ingest")) {
      ok &= RunIngest(options, dir);
    }
    if (wanted("latency")) {
      ok &= RunLatency(options, dir);
    }
    if (options.keep || !made_here) {
      fmt::print("\nwork directory kept: {}\n", dir.string());
    } else {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  }
  fmt::print(
      "\nTargets are issue 4's; PASS/MISS is reported, never enforced (exit status 0 either "
      "way).\n");
  // Exit 1 only when a figure group could not measure at all: the smoke test's failure signal.
  return ok ? 0 : 1;
}
