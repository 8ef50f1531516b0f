// bench_tunnel: remote sessions (issue 5, the benchmark bullet; see bench/README.md). Real processes
// on loopback: `lifeline home run`, two `lifeline gateway run` (one dialling the home directly, one
// through a relay that adds 50 ms of round trip), `lifeline connect` sessions, and beside them
// Debian's sshd with `ssh -N -L` to the same device (directly, and through the same kind of relay),
// and plain TCP to the device. The device is a server in this process (tunnel_net.h).
// It reports, it does not gate: a missed target still exits 0. Exit 1 means something could not run.
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "bench/proc_stats.h"
#include "bench/tunnel_net.h"
#include "bench/tunnel_procs.h"

namespace {

using namespace lifeline::bench;
using namespace lifeline::bench::tunnel;
using namespace std::chrono_literals;

constexpr double kSingleRatioTarget = 1.0;
constexpr double kDelayedRatioTarget = 2.0;
constexpr double kSetupP99TargetMs = 50;
constexpr double kIdleStreamTargetKib = 256;

struct Options {
  bool smoke = false;
  std::string dir;
  bool keep = false;
  std::string lifeline = LIFELINE_BINARY;
  int window_seconds = 0;  // the parallel figures' window; 0: 5 s (0.5 s with --smoke)
  int rounds = 0;          // single-stream loopback rounds; 0: 3 (1 with --smoke)
  std::string only;  // "single" or "parallel": only those figures (for profiling and tuning)
};

struct Sizes {
  std::uint64_t single_bytes = 1ull << 30;
  std::chrono::milliseconds single_limit = 10s;
  int streams = 64;
  std::chrono::milliseconds parallel_window = 5s;
  int setups = 200;
  int idle_streams = 1000;
  std::chrono::milliseconds idle_wait = 22s;  // a default ping interval (20 s) and a bit
  int devices = 10'000;
  int rounds = 3;
};

void Usage() {
  std::puts(
      "usage: bench_tunnel [--smoke] [--dir DIR] [--keep] [--lifeline PATH] [--window SECONDS] [--rounds N]\n"
      "                    [--only single|parallel]\n"
      "  --smoke     a short run that checks everything works; figures are not meaningful\n"
      "  --rounds    rounds of the single-stream loopback figure, tunnel / ssh -L / plain in turn each round; the\n"
      "              table shows each path's median round (default 3)\n"
      "  --only      only the single-stream loopback figure, or only the parallel ones (quick, for tuning and\n"
      "              profiling)\n"
      "  --dir       work directory (configs, logs, PKIs, gateway.db); default: a new one under $TMPDIR or /tmp\n"
      "  --keep      keep the work directory (it is always kept when something failed)\n"
      "  --lifeline  the lifeline binary to run (default: this build's)\n"
      "  --window    seconds each parallel-stream figure runs (default 5)");
}

std::string Ratio(double numerator, double denominator) {
  if (denominator <= 0 || numerator < 0) {
    return "-";
  }
  return fmt::format("{:.2f}x", numerator / denominator);
}

const char* Verdict(bool pass) { return pass ? "PASS" : "MISS"; }

void Row(std::string_view figure, std::string_view ours, std::string_view other, std::string_view ratio,
         std::string_view target, std::string_view result) {
  fmt::print("{:<46} {:>16} {:>16} {:>8}  {:<12} {}\n", figure, ours, other, ratio, target, result);
}

std::string Mbps(double bytes_per_second) { return fmt::format("{:.0f} MB/s", bytes_per_second / 1e6); }

// Runs the figure's downloads; a failure is printed and counted, the row then shows "-".
// `cpu` (when given) lists the processes of the path whose CPU time is counted.
struct Runner {
  bool ok = true;
  StreamsResult Downloads(std::string_view what, int port, int streams, std::uint64_t bytes_each,
                          std::chrono::milliseconds limit, std::function<std::vector<pid_t>()> cpu = {}) {
    fmt::print("  running: {}\n", what);
    const auto before = cpu ? Sample(cpu()).cpu_ns : 0;
    auto r = RunDownloads(port, streams, bytes_each, limit);
    r.cpu_seconds = cpu ? static_cast<double>(Sample(cpu()).cpu_ns - before) / 1e9 : 0;
    if (!r.error.empty()) {
      fmt::print("  ! {}: {}\n", what, r.error);
      ok = false;
    }
    return r;
  }
};

std::string StreamsSpread(const StreamsResult& r) {
  if (r.rates.empty()) {
    return "-";
  }
  const auto [min, max] = std::minmax_element(r.rates.begin(), r.rates.end());
  return fmt::format("{:.1f}/{:.1f}", *min / 1e6, *max / 1e6);
}

std::string CpuPerGb(const StreamsResult& r) {
  const double gb = static_cast<double>(r.TotalBytes()) / 1e9;
  return gb > 0 ? fmt::format("{:.2f} s", r.cpu_seconds / gb) : std::string("-");
}

std::string CpuRatio(const StreamsResult& t, const StreamsResult& s) {
  return t.TotalBytes() > 0 && s.TotalBytes() > 0 && s.cpu_seconds > 0
             ? Ratio(t.cpu_seconds / static_cast<double>(t.TotalBytes()),
                     s.cpu_seconds / static_cast<double>(s.TotalBytes()))
             : std::string("-");
}

// The round with the median rate (of an even count, the lower middle one); a failed round counts as 0.
StreamsResult MedianRound(std::vector<StreamsResult> rounds) {
  if (rounds.empty()) {
    return {};
  }
  std::sort(rounds.begin(), rounds.end(), [](const StreamsResult& a, const StreamsResult& b) {
    return (a.error.empty() ? a.AggregateRate() : 0) < (b.error.empty() ? b.AggregateRate() : 0);
  });
  return rounds[(rounds.size() - 1) / 2];
}

std::string RoundRates(const std::vector<StreamsResult>& rounds) {
  std::string out;
  for (const auto& r : rounds) {
    out += fmt::format("{}{:.0f}", out.empty() ? "" : "/", r.error.empty() ? r.AggregateRate() / 1e6 : 0);
  }
  return out;
}

std::vector<double> Setups(int port, int n, int* failures) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    const double s = EchoSetup(port);
    if (s < 0) {
      ++*failures;
    } else {
      ms.push_back(s * 1000);
    }
  }
  return ms;
}

int Run(const Options& options, const fs::path& work) {
  Sizes sizes;
  if (options.smoke) {
    sizes.single_bytes = 8ull << 20;
    sizes.single_limit = 5s;
    sizes.streams = 8;
    sizes.parallel_window = 500ms;
    sizes.setups = 20;
    sizes.idle_streams = 50;
    sizes.idle_wait = 0s;
    sizes.devices = 200;
  }
  sizes.rounds = options.rounds > 0 ? options.rounds : options.smoke ? 1 : 3;
  if (options.window_seconds > 0) {
    sizes.parallel_window = std::chrono::seconds(options.window_seconds);
  }
  auto fail = [&](const std::string& why) {
    fmt::print("set-up failed: {}\nwork directory (configs and logs) kept: {}\n", why, work.string());
    return 1;
  };

  // ---- set-up
  DeviceServer device;
  if (!device.ok()) {
    return fail("the device server cannot listen");
  }
  Home home(work / "home", options.lifeline);
  if (auto e = home.Start(); !e.empty()) {
    return fail(e);
  }
  DelayRelay home_relay(home.tunnel_port(), 25ms);
  Gateway direct(work / "gateway-direct", home, "gw-direct", home.tunnel_port());
  Gateway delayed(work / "gateway-delayed", home, "gw-delayed", home_relay.port());
  for (auto* gw : {&direct, &delayed}) {
    if (auto e = gw->Start(); !e.empty()) {
      return fail(e);
    }
  }
  if (auto e = direct.AddDevice("sink-direct", device.port()); !e.empty()) {
    return fail(e);
  }
  if (auto e = delayed.AddDevice("sink-delayed", device.port()); !e.empty()) {
    return fail(e);
  }
  Session session(work / "session-direct", home, "sink-direct");
  Session session_delayed(work / "session-delayed", home, "sink-delayed");
  for (auto* s : {&session, &session_delayed}) {
    if (auto e = s->Start(); !e.empty()) {
      return fail(e);
    }
  }
  Sshd sshd(work / "sshd");
  if (auto e = sshd.Start(); !e.empty()) {
    return fail(e);
  }
  DelayRelay ssh_relay(sshd.port(), 25ms);
  DelayRelay plain_relay(device.port(), 25ms);
  SshForward ssh(work / "ssh-direct", sshd, sshd.port(), device.port());
  SshForward ssh_delayed(work / "ssh-delayed", sshd, ssh_relay.port(), device.port());
  for (auto* f : {&ssh, &ssh_delayed}) {
    if (auto e = f->Start(); !e.empty()) {
      return fail(e);
    }
  }
  fmt::print(
      "paths: tunnel = client -> lifeline connect -> home (WebSocket in TLS) -> tunnel (HTTP/2 in TLS) -> gateway "
      "-> device;\n       ssh = client -> ssh -L -> sshd -> device (ssh's default cipher); plain = client -> device.\n"
      "+50 ms: a relay holding each chunk 25 ms each way, between gateway and home / ssh and sshd / client and "
      "device.\nlogs and configs: {}\n\n",
      work.string());

  Runner run;
  ProcSample gw_before, home_before, connect_before, gw_open, home_open, connect_open, gw_idle, home_idle;
  std::vector<int> idle;
  double idle_open_s = 0;
  int idle_alive = 0;
  if (options.only.empty()) {
    // ---- 5 first: idle streams through the direct gateway, while the gateway and home are fresh (after
    // the bulk figures their heaps hold freed memory that new streams reuse, which hides their cost)
    fmt::print("  running: idle streams\n");
    gw_before = Sample({direct.pid()});
    home_before = Sample({home.pid()});
    connect_before = Sample({session.pid()});
    int idle_failures = 0;
    const auto idle_begin = std::chrono::steady_clock::now();
    for (int i = 0; i < sizes.idle_streams; ++i) {
      int fd = -1;
      if (EchoSetup(session.port(), &fd) < 0) {
        ++idle_failures;
      } else {
        idle.push_back(fd);
      }
    }
    idle_open_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - idle_begin).count();
    std::this_thread::sleep_for(2s);
    gw_open = Sample({direct.pid()});
    home_open = Sample({home.pid()});
    connect_open = Sample({session.pid()});
    std::this_thread::sleep_for(sizes.idle_wait);
    gw_idle = Sample({direct.pid()});
    home_idle = Sample({home.pid()});
    // Still there? Each idle stream echoes one more byte.
    for (int fd : idle) {
      char c = 0;
      if (WriteAll(fd, "y", 1) && ReadExact(fd, &c, 1) && c == 'y') {
        ++idle_alive;
      }
    }
    for (int fd : idle) {
      CloseFd(fd);
    }
    std::this_thread::sleep_for(1s);  // the idle streams' ends reach the gateway
    if (idle_failures > 0 || idle_alive != sizes.idle_streams) {
      fmt::print("  ! idle streams: {} failed to open, {} of {} alive at the end (see {})\n", idle_failures, idle_alive,
                 sizes.idle_streams, session.log().string());
      run.ok = false;
    }
  }
  const double n_idle = std::max(1, static_cast<int>(idle.size()));
  auto per_stream_kib = [&](std::int64_t after, std::int64_t before) { return static_cast<double>(after - before) / n_idle; };

  // ---- 1 and 2: one stream
  auto single_row = [&](std::string_view name, const StreamsResult& t, const StreamsResult& s, double target) {
    const double ratio = s.AggregateRate() > 0 ? t.AggregateRate() / s.AggregateRate() : 0;
    Row(name, Mbps(t.AggregateRate()), Mbps(s.AggregateRate()), Ratio(t.AggregateRate(), s.AggregateRate()),
        fmt::format(">= {:.1f}x", target), t.error.empty() && s.error.empty() ? Verdict(ratio >= target) : "FAILED");
  };
  // CPU time of every process on each path: for the tunnel, lifeline connect, the home and the gateway; for
  // ssh, the client and sshd with its per-connection children.
  auto tunnel_cpu = [&] { return std::vector<pid_t>{session.pid(), home.pid(), direct.pid()}; };
  auto tunnel_slow_cpu = [&] { return std::vector<pid_t>{session_delayed.pid(), home.pid(), delayed.pid()}; };
  auto ssh_cpu = [&] {
    auto pids = ProcessTree(sshd.pid());
    pids.push_back(ssh.pid());
    return pids;
  };
  auto ssh_slow_cpu = [&] {
    auto pids = ProcessTree(sshd.pid());
    pids.push_back(ssh_delayed.pid());
    return pids;
  };
  // The loopback figure is the tight one (target 1.0x), and one run of each swings by several percent on
  // a 2-core machine: the paths take turns for `rounds` rounds, and each path's median round counts.
  std::vector<StreamsResult> tunnel_rounds, ssh_rounds, plain_rounds;
  for (int round = 1; round <= sizes.rounds && options.only != "parallel"; ++round) {
    const std::string of = sizes.rounds > 1 ? fmt::format(" (round {} of {})", round, sizes.rounds) : "";
    tunnel_rounds.push_back(
        run.Downloads("tunnel, 1 stream" + of, session.port(), 1, sizes.single_bytes, sizes.single_limit, tunnel_cpu));
    ssh_rounds.push_back(
        run.Downloads("ssh -L, 1 stream" + of, ssh.port(), 1, sizes.single_bytes, sizes.single_limit, ssh_cpu));
    plain_rounds.push_back(
        run.Downloads("plain, 1 stream" + of, device.port(), 1, sizes.single_bytes, sizes.single_limit));
  }
  const auto single_tunnel = MedianRound(tunnel_rounds);
  const auto single_ssh = MedianRound(ssh_rounds);
  const auto single_plain = MedianRound(plain_rounds);
  auto single_rows = [&] {
    single_row(fmt::format("1 stream, {} MiB, loopback", sizes.single_bytes >> 20), single_tunnel, single_ssh,
               kSingleRatioTarget);
    Row("  plain loopback TCP (baseline column)", Mbps(single_tunnel.AggregateRate()),
        Mbps(single_plain.AggregateRate()), Ratio(single_tunnel.AggregateRate(), single_plain.AggregateRate()), "",
        "");
    if (sizes.rounds > 1) {
      Row(fmt::format("  each round, MB/s (median above)"), RoundRates(tunnel_rounds), RoundRates(ssh_rounds), "", "",
          "");
    }
  };
  if (options.only == "single") {
    fmt::print("\n== bench_tunnel --only single ==\n");
    Row("figure", "ours", "baseline", "ratio", "target", "result");
    single_rows();
    Row("  CPU s per GB, all processes of the path", CpuPerGb(single_tunnel), CpuPerGb(single_ssh),
        CpuRatio(single_tunnel, single_ssh), "(info)", "");
    return run.ok ? 0 : 1;
  }
  StreamsResult slow_tunnel, slow_ssh, slow_plain;
  if (options.only.empty()) {
    slow_tunnel = run.Downloads("tunnel +50 ms, 1 stream", session_delayed.port(), 1, sizes.single_bytes,
                                sizes.single_limit, tunnel_slow_cpu);
    slow_ssh = run.Downloads("ssh -L +50 ms, 1 stream", ssh_delayed.port(), 1, sizes.single_bytes, sizes.single_limit,
                             ssh_slow_cpu);
    slow_plain = run.Downloads("plain +50 ms, 1 stream", plain_relay.port(), 1, sizes.single_bytes, sizes.single_limit);
  }

  auto parallel_rows = [&](std::string_view label, const StreamsResult& t, const StreamsResult& s) {
    Row(fmt::format("{} streams{}, {:.1f} s: aggregate", sizes.streams, label, t.seconds), Mbps(t.AggregateRate()), Mbps(s.AggregateRate()),
        Ratio(t.AggregateRate(), s.AggregateRate()), "(none)", t.error.empty() ? "" : "FAILED");
    Row("  Jain's fairness index", fmt::format("{:.3f}", t.Jain()), fmt::format("{:.3f}", s.Jain()), "", "", "");
    Row("  min/max per stream, MB/s", StreamsSpread(t), StreamsSpread(s), "", "", "");
  };
  // ---- 3: parallel streams, a fixed window, each stream asking for more than it can get in it
  const std::uint64_t each = 1ull << 30;
  const auto par_tunnel = run.Downloads("tunnel, parallel", session.port(), sizes.streams, each, sizes.parallel_window);
  const auto par_ssh = run.Downloads("ssh -L, parallel", ssh.port(), sizes.streams, each, sizes.parallel_window);
  const auto par_plain = run.Downloads("plain, parallel", device.port(), sizes.streams, each, sizes.parallel_window);
  const auto spar_tunnel =
      run.Downloads("tunnel +50 ms, parallel", session_delayed.port(), sizes.streams, each, sizes.parallel_window);
  const auto spar_ssh =
      run.Downloads("ssh -L +50 ms, parallel", ssh_delayed.port(), sizes.streams, each, sizes.parallel_window);

  if (options.only == "parallel") {
    fmt::print("\n== bench_tunnel --only parallel ==\n");
    Row("figure", "ours", "baseline", "ratio", "target", "result");
    parallel_rows("", par_tunnel, par_ssh);
    parallel_rows(", +50 ms", spar_tunnel, spar_ssh);
    return run.ok ? 0 : 1;
  }

  // ---- 4: set-up time, sequential connections
  fmt::print("  running: set-ups\n");
  int setup_failures = 0;
  const auto setup_tunnel = Setups(session.port(), sizes.setups, &setup_failures);
  const auto setup_ssh = Setups(ssh.port(), sizes.setups, &setup_failures);
  const auto setup_plain = Setups(device.port(), sizes.setups, &setup_failures);
  if (setup_failures > 0) {
    fmt::print("  ! {} set-up(s) failed\n", setup_failures);
    run.ok = false;
  }

  // ---- 6: many registered devices on the direct gateway
  fmt::print("  running: registering devices\n");
  const auto gw_devices_before = Sample({direct.pid()});
  const auto reg_begin = std::chrono::steady_clock::now();
  std::string reg_error;
  int registered = 0;
  for (int i = 0; i < sizes.devices && reg_error.empty(); ++i) {
    reg_error = direct.AddDevice(fmt::format("dev-{:05d}", i), device.port());
    registered += reg_error.empty() ? 1 : 0;
  }
  const double reg_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - reg_begin).count();
  const auto gw_devices_after = Sample({direct.pid()});
  if (!reg_error.empty()) {
    fmt::print("  ! registering devices: {} (after {}); gateway log {}\n", reg_error, registered, direct.log().string());
    run.ok = false;
  }
  const std::string last_serial = fmt::format("dev-{:05d}", sizes.devices - 1);
  Session last(work / "session-last", home, last_serial);
  double last_setup_ms = -1;
  if (auto e = last.Start(); !e.empty()) {
    fmt::print("  ! session to {}: {}\n", last_serial, e);
    run.ok = false;
  } else {
    last_setup_ms = EchoSetup(last.port()) * 1000;
    if (last_setup_ms < 0) {
      fmt::print("  ! no echo through the session to {} (see {})\n", last_serial, last.log().string());
      run.ok = false;
    }
  }

  // ---- the table
  fmt::print("\n== bench_tunnel{} ==\n", options.smoke ? " --smoke (small sizes: figures are not meaningful)" : "");
  fmt::print("ours = through the tunnel; baseline = ssh -L (or as named); ratio = ours / baseline\n\n");
  Row("figure", "ours", "baseline", "ratio", "target", "result");
  single_rows();
  single_row("1 stream, +50 ms RTT", slow_tunnel, slow_ssh, kDelayedRatioTarget);
  Row("  plain TCP +50 ms (baseline column)", Mbps(slow_tunnel.AggregateRate()), Mbps(slow_plain.AggregateRate()),
      Ratio(slow_tunnel.AggregateRate(), slow_plain.AggregateRate()), "", "");
  Row("  CPU s per GB, all processes of the path", CpuPerGb(single_tunnel), CpuPerGb(single_ssh),
      CpuRatio(single_tunnel, single_ssh), "(info)", "");
  Row("  the same, +50 ms", CpuPerGb(slow_tunnel), CpuPerGb(slow_ssh), CpuRatio(slow_tunnel, slow_ssh), "(info)",
      "");
  Row(fmt::format("  seconds (limit {} s)", sizes.single_limit.count() / 1000),
      fmt::format("{:.1f}/{:.1f}", single_tunnel.seconds, slow_tunnel.seconds),
      fmt::format("{:.1f}/{:.1f}", single_ssh.seconds, slow_ssh.seconds), "", "", "");
  parallel_rows("", par_tunnel, par_ssh);
  Row("  plain TCP aggregate (baseline column)", Mbps(par_tunnel.AggregateRate()), Mbps(par_plain.AggregateRate()),
      Ratio(par_tunnel.AggregateRate(), par_plain.AggregateRate()), "", "");
  parallel_rows(", +50 ms", spar_tunnel, spar_ssh);
  const double p50 = Percentile(setup_tunnel, 50);
  const double p99 = Percentile(setup_tunnel, 99);
  Row(fmt::format("set-up to first echo, n={}: p50", sizes.setups), fmt::format("{:.2f} ms", p50),
      fmt::format("{:.2f} ms", Percentile(setup_ssh, 50)), Ratio(p50, Percentile(setup_ssh, 50)), "", "");
  Row("  p99", fmt::format("{:.2f} ms", p99), fmt::format("{:.2f} ms", Percentile(setup_ssh, 99)),
      Ratio(p99, Percentile(setup_ssh, 99)), fmt::format("< {:.0f} ms", kSetupP99TargetMs),
      setup_tunnel.empty() ? "FAILED" : Verdict(p99 < kSetupP99TargetMs));
  Row("  plain TCP p50/p99 (baseline column)", fmt::format("{:.2f}/{:.2f}", p50, p99),
      fmt::format("{:.2f}/{:.2f}", Percentile(setup_plain, 50), Percentile(setup_plain, 99)), "", "", "");
  Row("lifeline connect: start to listening", fmt::format("{:.0f} ms", session.start_seconds() * 1000),
      fmt::format("{:.0f} ms", session_delayed.start_seconds() * 1000), "", "(info)", "");
  const double gw_kib = per_stream_kib(gw_idle.rss_kib, gw_before.rss_kib);
  const double home_kib = per_stream_kib(home_idle.rss_kib, home_before.rss_kib);
  Row(fmt::format("{} idle streams: gateway RSS per stream", sizes.idle_streams), fmt::format("{:.1f} KiB", gw_kib), "-",
      "", fmt::format("< {:.0f} KiB", kIdleStreamTargetKib),
      idle.empty() ? "FAILED" : Verdict(gw_kib < kIdleStreamTargetKib));
  Row("  home RSS per stream", fmt::format("{:.1f} KiB", home_kib), "-", "", fmt::format("< {:.0f} KiB", kIdleStreamTargetKib),
      idle.empty() ? "FAILED" : Verdict(home_kib < kIdleStreamTargetKib));
  Row("  gateway / home RssAnon per stream",
      fmt::format("{:.1f}/{:.1f} KiB", per_stream_kib(gw_idle.rss_anon_kib, gw_before.rss_anon_kib),
                  per_stream_kib(home_idle.rss_anon_kib, home_before.rss_anon_kib)),
      "", "", "", "");
  Row("  gateway / home PSS per stream",
      fmt::format("{:.1f}/{:.1f} KiB", per_stream_kib(gw_idle.pss_kib, gw_before.pss_kib),
                  per_stream_kib(home_idle.pss_kib, home_before.pss_kib)),
      "", "", "", "");
  Row("  2 s after opening: gateway / home RSS",
      fmt::format("{:.1f}/{:.1f} KiB", per_stream_kib(gw_open.rss_kib, gw_before.rss_kib),
                  per_stream_kib(home_open.rss_kib, home_before.rss_kib)),
      "", "", "(info)", "");
  Row("  lifeline connect RSS per stream (2 s)",
      fmt::format("{:.1f} KiB", per_stream_kib(connect_open.rss_kib, connect_before.rss_kib)), "", "", "(info)", "");
  Row("  opening them, sequentially", fmt::format("{:.1f} s", idle_open_s), "", "", "", "");
  Row(fmt::format("{} devices registered (POST /v1/devices)", registered), fmt::format("{:.1f} s", reg_s),
      fmt::format("{:.2f} ms each", registered > 0 ? reg_s * 1000 / registered : 0), "", "", "");
  Row("  gateway RSS before/after", fmt::format("{:.1f} MiB", gw_devices_before.rss_kib / 1024.0),
      fmt::format("{:.1f} MiB", gw_devices_after.rss_kib / 1024.0), "", "", "");
  Row(fmt::format("  session to {}: first echo", last_serial),
      last_setup_ms >= 0 ? fmt::format("{:.2f} ms", last_setup_ms) : "-", "", "", "works",
      last_setup_ms >= 0 && registered == sizes.devices ? "PASS" : "MISS");
  fmt::print(
      "\nidle-stream memory: VmRSS (PSS) of the process before opening and {} s after; the streams each echoed a byte "
      "when opened and again at the end ({} of {} did).\n",
      sizes.idle_wait.count() / 1000 + 2, idle_alive, sizes.idle_streams);
  fmt::print("delay relays: most bytes held at once in one direction: home {:.1f} MB, ssh {:.1f} MB, plain {:.1f} MB\n",
             home_relay.peak_held_bytes() / 1e6, ssh_relay.peak_held_bytes() / 1e6, plain_relay.peak_held_bytes() / 1e6);
  if (!run.ok) {
    fmt::print("something did not run; logs: home {}, gateways {} and {}, sessions {} and {}, ssh {}\n",
               home.log().string(), direct.log().string(), delayed.log().string(), session.log().string(),
               session_delayed.log().string(), ssh.log().string());
  }
  return run.ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--smoke") {
      options.smoke = true;
    } else if ((arg == "--dir" || arg == "--lifeline") && i + 1 < argc) {
      (arg == "--dir" ? options.dir : options.lifeline) = argv[++i];
    } else if (arg == "--window" && i + 1 < argc) {
      options.window_seconds = std::atoi(argv[++i]);
    } else if (arg == "--rounds" && i + 1 < argc) {
      options.rounds = std::atoi(argv[++i]);
    } else if (arg == "--only" && i + 1 < argc && (std::string_view(argv[i + 1]) == "single" ||
                                                   std::string_view(argv[i + 1]) == "parallel")) {
      options.only = argv[++i];
    } else if (arg == "--keep") {
      options.keep = true;
    } else {
      Usage();
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress and failures show as they happen, also in a log
  // 1,000 idle streams hold about 2,000 descriptors here and in `lifeline connect`; children inherit this.
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  const fs::path work = MakeWorkDir(options.dir, "bench_tunnel");
  if (work.empty()) {
    return 1;
  }
  fmt::print("bench_tunnel{} (open files limit {})\n", options.smoke ? " --smoke" : "",
             ::getrlimit(RLIMIT_NOFILE, &limit) == 0 ? static_cast<long long>(limit.rlim_cur) : -1LL);
  const int status = Run(options, work);
  if (status == 0 && !options.keep) {
    std::error_code ec;
    fs::remove_all(work, ec);
  } else if (status == 0) {
    fmt::print("work directory kept: {}\n", work.string());
  }
  return status;
}
