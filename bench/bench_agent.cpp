// bench_agent: the agent benchmark of issue 3. Runs our agent beside Debian's zabbix_agentd in one run
// and prints both, with ratios and the targets (see bench/README.md):
//   resident memory idle and while following a log at 1,000 lines/s; CPU idle;
//   log-rule throughput through ten regular expressions on one core; queue commits with group commit.
// It reports, it does not gate: a missed target still exits 0. Exit 1 means the benchmark itself
// could not run (set-up failed), which is what `--smoke` is for in the test suite.
#include "agent/reports_config.h"
#include "agent/sources_config.h"
#include "bench/compare.h"
#include "bench/micro.h"
#include "bench/workload.h"
#include "common/log.h"

#include <fmt/format.h>
#include <stdlib.h>
#include <sys/statfs.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

namespace {

namespace fs = std::filesystem;
using namespace lifeline::bench;
using std::chrono::milliseconds;

constexpr double kIdleRssTargetMib = 8.0;
constexpr double kIdleCpuTargetPercent = 0.1;
constexpr double kRulesTargetLinesPerSecond = 200000;
constexpr double kQueueTargetMessagesPerSecond = 50000;

struct Options {
  bool smoke = false;
  bool keep = false;
  fs::path lifeline_binary = LIFELINE_BINARY;
  fs::path source_dir = LIFELINE_SOURCE_DIR;
  std::optional<fs::path> work_dir;  // default: a fresh directory under $TMPDIR
};

void Usage() {
  std::puts(
      "usage: bench_agent [--smoke] [--keep] [--lifeline PATH] [--source-dir DIR] [--dir DIR]\n"
      "  --smoke       a short run (< 10 s) that checks everything works; figures are not meaningful\n"
      "  --keep        keep the work directory (configs, logs of home, agent and zabbix_agentd)\n"
      "  --lifeline    the lifeline binary (default: the one built beside this program)\n"
      "  --source-dir  the source tree, for scripts/mail-sink and bench/zabbix_active_server.py\n"
      "  --dir         work directory (its file system also holds the queue benchmark's files)");
}

std::string Mib(std::int64_t kib) { return fmt::format("{:.1f} MiB", static_cast<double>(kib) / 1024.0); }

std::string Ratio(double numerator, double denominator) {
  if (denominator <= 0 || numerator < 0) {
    return "-";
  }
  return fmt::format("{:.1f}x", numerator / denominator);
}

const char* Verdict(bool pass) { return pass ? "PASS" : "MISS"; }

void Row(std::string_view figure, std::string_view ours, std::string_view other, std::string_view ratio,
         std::string_view target, std::string_view result) {
  fmt::print("{:<38} {:>14} {:>20} {:>9}  {:<14} {}\n", figure, ours, other, ratio, target, result);
}

double CpuSeconds(const ProcSample& start, const ProcSample& end) {
  return static_cast<double>(end.cpu_ns - start.cpu_ns) / 1e9;
}

double TickSeconds(const ProcSample& start, const ProcSample& end) {
  return static_cast<double>(end.cpu_ticks - start.cpu_ticks) / static_cast<double>(TicksPerSecond());
}

std::string FileSystemType(const fs::path& path) {
  struct statfs info {};
  if (statfs(path.c_str(), &info) != 0) {
    return "unknown";
  }
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0xEF53:
      return "ext4";
    case 0x01021994:
      return "tmpfs (fsync is free: queue figures are optimistic)";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x794C7630:
      return "overlayfs";
    default:
      return fmt::format("f_type 0x{:x}", static_cast<unsigned long>(info.f_type));
  }
}

// Prints the side-by-side table; false when the comparison could not run at all.
bool PrintComparison(const CompareFigures& f, const CompareOptions& options) {
  fmt::print("\n== Side by side: lifeline agent vs zabbix_agentd, same machine, same windows ==\n");
  if (!f.error.empty()) {
    fmt::print("comparison did not run: {}\n", f.error);
    return false;
  }
  const auto& ours = f.lifeline;
  const auto& zbx = f.zabbix;
  fmt::print("zabbix: {}\n", zbx.ran ? f.zabbix_version : "not measured: " + zbx.note);
  fmt::print("idle window {:.1f} s; load window {:.1f} s: {} lines ({:.0f} lines/s, {:.0f} bytes average, "
             "{} matching a rule) appended to one log both follow\n",
             f.idle_seconds, f.load_seconds, f.lines_written, f.lines_written / std::max(f.load_seconds, 1e-9),
             f.average_line_bytes, f.matching_lines_written);
  fmt::print("ratio = zabbix_agentd / lifeline (above 1: zabbix uses more)\n\n");
  Row("figure", "lifeline", "zabbix_agentd", "ratio", "target", "result");

  const auto z = [&](std::string text) { return zbx.ran ? text : std::string("-"); };
  const std::string zbx_procs = fmt::format(" ({} proc)", zbx.idle_end.processes);

  Row("idle RSS (VmRSS, zabbix: sum)", Mib(ours.idle_end.rss_kib), z(Mib(zbx.idle_end.rss_kib) + zbx_procs),
      zbx.ran ? Ratio(zbx.idle_end.rss_kib, ours.idle_end.rss_kib) : "-", fmt::format("<= {:.0f} MiB", kIdleRssTargetMib),
      Verdict(ours.idle_end.rss_kib / 1024.0 <= kIdleRssTargetMib));
  Row("idle RssAnon (heap and stacks)", Mib(ours.idle_end.rss_anon_kib), z(Mib(zbx.idle_end.rss_anon_kib)),
      zbx.ran ? Ratio(zbx.idle_end.rss_anon_kib, ours.idle_end.rss_anon_kib) : "-", "", "");
  Row("idle PSS (shared pages split)", Mib(ours.idle_end.pss_kib), z(Mib(zbx.idle_end.pss_kib)),
      zbx.ran ? Ratio(zbx.idle_end.pss_kib, ours.idle_end.pss_kib) : "-", "", "");
  Row(fmt::format("peak RSS following {} lines/s", options.lines_per_second), Mib(ours.load_peak_rss_kib),
      z(Mib(zbx.load_peak_rss_kib)), zbx.ran ? Ratio(zbx.load_peak_rss_kib, ours.load_peak_rss_kib) : "-", "", "");
  Row(fmt::format("peak PSS following {} lines/s", options.lines_per_second), Mib(ours.load_peak_pss_kib),
      z(Mib(zbx.load_peak_pss_kib)), zbx.ran ? Ratio(zbx.load_peak_pss_kib, ours.load_peak_pss_kib) : "-", "", "");

  const double ours_idle = CpuSeconds(ours.idle_start, ours.idle_end);
  const double zbx_idle = CpuSeconds(zbx.idle_start, zbx.idle_end);
  const double ours_idle_percent = 100.0 * ours_idle / f.idle_seconds;
  const double zbx_idle_percent = 100.0 * zbx_idle / f.idle_seconds;
  Row("idle CPU (s per hour)", fmt::format("{:.2f} s", ours_idle / f.idle_seconds * 3600),
      z(fmt::format("{:.2f} s", zbx_idle / f.idle_seconds * 3600)), zbx.ran ? Ratio(zbx_idle, ours_idle) : "-", "",
      "");
  Row("idle CPU (% of one core)", fmt::format("{:.4f}%", ours_idle_percent),
      z(fmt::format("{:.4f}%", zbx_idle_percent)), zbx.ran ? Ratio(zbx_idle, ours_idle) : "-",
      fmt::format("<= {}%", kIdleCpuTargetPercent), Verdict(ours_idle_percent <= kIdleCpuTargetPercent));
  const double ours_load = CpuSeconds(ours.load_start, ours.load_end);
  const double zbx_load = CpuSeconds(zbx.load_start, zbx.load_end);
  Row(fmt::format("CPU following {} lines/s (% core)", options.lines_per_second),
      fmt::format("{:.2f}%", 100.0 * ours_load / f.load_seconds),
      z(fmt::format("{:.2f}%", 100.0 * zbx_load / f.load_seconds)), zbx.ran ? Ratio(zbx_load, ours_load) : "-", "",
      "");
  const auto delivered = [&](const AgentFigures& a) {
    if (a.delivered < 0) {
      return std::string("unknown");
    }
    return fmt::format("{}/{}{}", a.delivered, f.matching_lines_written,
                       a.resent > 0 ? fmt::format(" +{} resent", a.resent) : "");
  };
  Row("matching lines delivered", delivered(ours), z(delivered(zbx)), "", "", "");
  Row("log bytes not yet committed at end", ours.lag_bytes < 0 ? "unknown" : fmt::format("{}", ours.lag_bytes),
      zbx.ran ? "n/a" : "-", "", "", "");

  fmt::print("\nCPU is the run time of every thread (/proc/PID/task/*/schedstat, ns). The same windows by "
             "utime+stime+cutime+cstime of /proc/PID/stat ({} ms ticks; this also counts sender processes that "
             "ended inside a window): idle lifeline {:.2f} s, zabbix {:.2f} s; load lifeline {:.2f} s, zabbix "
             "{:.2f} s.\n",
             1000 / TicksPerSecond(), TickSeconds(ours.idle_start, ours.idle_end),
             TickSeconds(zbx.idle_start, zbx.idle_end), TickSeconds(ours.load_start, ours.load_end),
             TickSeconds(zbx.load_start, zbx.load_end));
  fmt::print("lifeline: `lifeline-agent run` (the resident process: sources, rules, durable queue; heartbeat every "
             "{} s, log poll every {} ms) and, while there is something to send, the `lifeline agent send` process "
             "it starts; both are counted, summed like zabbix's. The sender {} when the idle window began. Enrolled "
             "with a real `lifeline home run` on loopback.\n",
             lifeline::agent::ReportsConfig{}.heartbeat_interval.count(),
             lifeline::agent::SourcesConfig{}.poll_interval_ms,
             f.sender_gone_before_idle ? "had left (queue empty for 10 s)" : "was STILL RUNNING");
  if (zbx.ran) {
    fmt::print("zabbix_agentd: Debian's defaults (StartAgents=3 passive listeners, RefreshActiveChecks=120, "
               "BufferSend=5) plus one active log[] item whose regular expression is the ten rules as one "
               "alternation, handed out by bench/zabbix_active_server.py standing in for a Zabbix server "
               "(its values are counted, not stored). Its processes' RSS is summed as the issue asks; PSS "
               "counts the pages they share once.\n");
  }
  fmt::print("Caveat: the home here runs the same lifeline binary, so the agent's PSS is lowered by the code pages "
             "it shares with the home; alone on a device its PSS would be nearer its RSS. RSS is the target's "
             "figure.\n");
  return true;
}

bool PrintMicro(const RuleFigures& rules, const QueueFigures& batched, const QueueFigures& single,
                const QueueFigures& large, const fs::path& queue_dir) {
  fmt::print("\n== In process, one core: rules and queue ==\n");
  Row("figure", "lifeline", "baseline", "ratio", "target", "result");
  bool ok = true;
  if (!rules.error.empty()) {
    fmt::print("rules did not compile: {}\n", rules.error);
    ok = false;
  } else {
    Row("lines/s through ten rules", fmt::format("{:.0f}", rules.lines_per_second),
        fmt::format("{:.0f} substr", rules.baseline_lines_per_second),
        Ratio(rules.lines_per_second, rules.baseline_lines_per_second),
        fmt::format(">= {:.0f}", kRulesTargetLinesPerSecond),
        Verdict(rules.lines_per_second >= kRulesTargetLinesPerSecond));
  }
  for (const auto* q : {&batched, &single, &large}) {
    if (!q->error.empty()) {
      fmt::print("queue batch {}: {}\n", q->batch, q->error);
      ok = false;
    }
  }
  if (batched.error.empty() && single.error.empty()) {
    Row(fmt::format("queue msgs/s, batch {} per commit", batched.batch),
        fmt::format("{:.0f}", batched.messages_per_second), fmt::format("{:.0f} batch 1", single.messages_per_second),
        Ratio(batched.messages_per_second, single.messages_per_second),
        fmt::format(">= {:.0f}", kQueueTargetMessagesPerSecond),
        Verdict(batched.messages_per_second >= kQueueTargetMessagesPerSecond));
  }
  if (large.error.empty() && single.error.empty()) {
    Row(fmt::format("queue msgs/s, batch {} per commit", large.batch), fmt::format("{:.0f}", large.messages_per_second),
        fmt::format("{:.0f} batch 1", single.messages_per_second),
        Ratio(large.messages_per_second, single.messages_per_second), "(no target)", "");
  }
  if (rules.error.empty()) {
    fmt::print("\nrules: RuleSet::Compile + Match, {} lines in {:.2f} s, {:.0f} bytes average, {} matched; baseline: "
               "the same lines through ten literal string_view::find ({} lines had a keyword).\n",
               rules.lines, rules.seconds, rules.average_line_bytes, rules.matches, rules.baseline_matches);
  }
  fmt::print("queue: AgentQueue::Enqueue of alert drafts (WAL, synchronous=FULL: one fsync per commit) on {} ({}); "
             "batch {}: {} commits in {:.2f} s; batch 1: {} commits in {:.2f} s; batch {}: {} commits in {:.2f} s.\n",
             queue_dir.string(), FileSystemType(queue_dir), batched.batch, batched.commits, batched.seconds,
             single.commits, single.seconds, large.batch, large.commits, large.seconds);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--smoke") {
      options.smoke = true;
    } else if (arg == "--keep") {
      options.keep = true;
    } else if (arg == "--lifeline") {
      options.lifeline_binary = value();
    } else if (arg == "--source-dir") {
      options.source_dir = value();
    } else if (arg == "--dir") {
      options.work_dir = fs::path(value());
    } else {
      Usage();
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  // The in-process queue and rules log nothing per call, but keep stray warnings off the report.
  lifeline::log::Init(lifeline::log::Format::kText, spdlog::level::err);

  fs::path work_dir;
  if (options.work_dir) {
    work_dir = *options.work_dir;
    fs::create_directories(work_dir);
  } else {
    std::string pattern = (fs::temp_directory_path() / "bench-agent-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      fmt::print(stderr, "cannot create a work directory: {}\n", std::strerror(errno));
      return 1;
    }
    work_dir = pattern;
  }

  const bool smoke = options.smoke;
  fmt::print("bench_agent{}: work directory {}\n", smoke ? " --smoke (short windows: figures are not meaningful)" : "",
             work_dir.string());

  // In-process figures first, before the agents start, so they do not compete for the two windows.
  const auto rules = BenchRules(milliseconds(smoke ? 200 : 3000), smoke ? 20'000 : 50'000'000, 100);
  const fs::path queue_dir = work_dir / "queue-bench";
  fs::create_directories(queue_dir);
  const auto batched = BenchQueue(queue_dir, 100, milliseconds(smoke ? 200 : 3000), smoke ? 2'000 : 1'000'000);
  const auto single = BenchQueue(queue_dir, 1, milliseconds(smoke ? 200 : 2000), smoke ? 200 : 100'000);
  // How far group commit goes when a burst fills a bigger batch (informative, no target).
  const auto large = BenchQueue(queue_dir, 1000, milliseconds(smoke ? 200 : 1500), smoke ? 2'000 : 1'000'000);
  fs::remove_all(queue_dir);

  CompareOptions compare;
  compare.work_dir = work_dir;
  compare.lifeline_binary = options.lifeline_binary;
  compare.source_dir = options.source_dir;
  if (smoke) {
    compare.settle = milliseconds(300);
    compare.idle = milliseconds(1000);
    compare.load = milliseconds(1500);
    compare.delivery_wait = milliseconds(1500);
  }
  const auto figures = RunComparison(compare);

  const bool compared = PrintComparison(figures, compare);
  const bool micro = PrintMicro(rules, batched, single, large, work_dir);
  fmt::print("\nTargets are issue 3's; PASS/MISS is reported, never enforced (exit status 0 either way).\n");

  if (options.keep) {
    fmt::print("kept {}\n", work_dir.string());
  } else {
    std::error_code ec;
    fs::remove_all(work_dir, ec);
  }
  // Exit 1 only when the benchmark could not measure at all: the smoke test's failure signal.
  return compared && micro ? 0 : 1;
}
