// bench_policy: the policy manager's figures (issue 6, the benchmark bullet; see bench/README.md).
//  1. In process: decisions per second from the gateway's policy cache (gateway::PolicyCache, what
//     `gateway run` decides from), beside the reference scan of every rule measured in the same run.
//  2. Real processes on loopback: the approval round trip. `lifeline connect` asks for a session to
//     a device whose rule says Ask for Approval; the approvers' email arrives at scripts/mail-sink;
//     the bench approves through the API with an approver's token; the gateway opens the session and
//     `lifeline connect` listens. Beside it, as the baseline, a session to an Always Allow device.
// It reports, it does not gate: a missed target still exits 0. Exit 1 means something could not run.
#include "bench/policy_decisions.h"
#include "bench/policy_procs.h"
#include "bench/tunnel_net.h"
#include "bench/tunnel_procs.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace lifeline::bench;
using namespace lifeline::bench::policy_bench;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace json = boost::json;

// The issue's words: the gateway learns an approval within a second.
constexpr double kLearnApprovalTargetMs = 1000;

struct Options {
  bool smoke = false;
  bool keep = false;
  std::string dir;
  std::string lifeline = LIFELINE_BINARY;
  std::string source_dir = LIFELINE_SOURCE_DIR;
  int rounds = 5;
};

void Usage() {
  std::puts(
      "usage: bench_policy [--smoke] [--rounds N] [--dir DIR] [--keep] [--lifeline PATH]\n"
      "  --smoke     a short run that checks everything works; figures are not meaningful\n"
      "  --rounds    approval round trips to time (default 5)\n"
      "  --dir       work directory (configs, logs, PKIs, mail); default: a new one under $TMPDIR or /tmp\n"
      "  --keep      keep the work directory (it is always kept when something failed)\n"
      "  --lifeline  the lifeline binary to run (default: this build's)");
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string Stats(std::vector<double> ms) {
  if (ms.empty()) {
    return "-";
  }
  std::sort(ms.begin(), ms.end());
  return fmt::format("{:.0f}/{:.0f} ms", ms[ms.size() / 2], ms.back());
}
double Median(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return ms.empty() ? 0 : ms[ms.size() / 2];
}

void Row(std::string_view figure, std::string_view ours, std::string_view other, std::string_view ratio,
         std::string_view target, std::string_view result) {
  fmt::print("{:<54} {:>16} {:>16} {:>8}  {:<10} {}\n", figure, ours, other, ratio, target, result);
}

// `lifeline connect` to acme/lab/SERIAL's echo application; returns once it listens (or failed).
struct Connect {
  std::optional<lifeline::cli::Subprocess> process;
  fs::path log;
  int port = 0;
};

std::string StartConnect(const tunnel::Home& home, const fs::path& dir, const std::string& serial,
                         const std::string& reason, const std::string& service_request, Connect* out) {
  fs::create_directories(dir);
  const fs::path token = dir / "token";
  tunnel::WriteText(token, home.admin_token() + "\n");
  fs::permissions(token, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
  out->log = dir / "connect.log";
  auto process = lifeline::cli::Subprocess::Spawn(
      {home.binary().string(), "connect", "--home", home.admin_url(), "--ca", home.ca_file().string(), "--token-file",
       token.string(), "--device", "acme/lab/" + serial, "--app", "echo", "--reason", reason, "--service-request",
       service_request, "--listen", "127.0.0.1:0"},
      out->log);
  if (!process) {
    return "cannot start lifeline connect";
  }
  out->process.emplace(std::move(*process));
  return "";
}

bool WaitListening(Connect& connect, std::chrono::milliseconds timeout) {
  static const std::regex listening(R"(listening on 127\.0\.0\.1:(\d+))");
  std::smatch match;
  std::string text;
  tunnel::WaitFor(
      [&] {
        text = tunnel::ReadText(connect.log);
        return std::regex_search(text, match, listening) || !connect.process->Running();
      },
      timeout);
  if (!std::regex_search(text, match, listening)) {
    return false;
  }
  connect.port = std::stoi(match[1]);
  return true;
}

// One byte there and back through the session: it really reaches the device.
bool Echoes(int port) { return tunnel::EchoSetup(port) >= 0; }

struct RoundTrip {
  std::vector<double> to_email, approve_call, gateway_learns, connect_opens, total;
  std::vector<double> always_allow_open;  // the baseline: no approval at all
  bool email_complete = true;             // every email named engineer, device, app, reason and SR
  std::string error;
};

std::string RequestIdFrom(const std::string& email) {
  static const std::regex id(R"(Request id:\s+([0-9a-f]{32}))");
  std::smatch match;
  return std::regex_search(email, match, id) ? std::string(match[1]) : std::string();
}

RoundTrip MeasureApprovals(const Options& options, const fs::path& work) {
  RoundTrip r;
  MailSink sink(work / "mail", options.source_dir);
  if (auto why = sink.Start(); !why.empty()) {
    r.error = why;
    return r;
  }
  tunnel::Home home(work / "home", options.lifeline);
  if (auto why = home.Start(); !why.empty()) {
    r.error = why;
    return r;
  }
  PolicyManager policy(work / "policy", options.lifeline, home.ca_file(), sink.port());
  if (auto why = policy.Start(); !why.empty()) {
    r.error = why;
    return r;
  }
  tunnel::DeviceServer device;
  tunnel::Gateway gateway(work / "gateway", home, "gw-1", home.tunnel_port());
  gateway.UsePolicyManager(policy.url(), policy.ca_file().string());
  if (auto why = gateway.Start(); !why.empty()) {
    r.error = why;
    return r;
  }
  for (const std::string serial : {"SN-ASK", "SN-ALLOW"}) {
    if (auto why = gateway.AddDevice(serial, device.port()); !why.empty()) {
      r.error = why;
      return r;
    }
  }
  // Devices first, then the policy: the gateway denies a device deployed after its last contact.
  const std::string rules = R"({"rules": [
    {"id": 1, "activity": "remote_session", "application": "echo", "scope": {"kind": "device", "name": "SN-ASK"},
     "action": "ask_for_approval", "ask_timeout_s": 300},
    {"id": 2, "activity": "remote_session", "application": "echo", "scope": {"kind": "device", "name": "SN-ALLOW"},
     "action": "always_allow"}]})";
  auto put = policy.Call("PUT", "/v1/policies", rules);
  if (put.status != 200) {
    r.error = fmt::format("PUT /v1/policies: {} {}{}", put.status, put.body, put.error);
    return r;
  }
  // The baseline doubles as the check that the gateway has the policy: retry until it opens.
  const int rounds = options.smoke ? 1 : options.rounds;
  for (int i = 0; i < rounds + 1; ++i) {
    Connect connect;
    const auto start = Clock::now();
    if (auto why = StartConnect(home, work / fmt::format("allow-{}", i), "SN-ALLOW", "baseline", "SR-0", &connect);
        !why.empty()) {
      r.error = why;
      return r;
    }
    const bool open = WaitListening(connect, 30s) && Echoes(connect.port);
    connect.process->Terminate(5s);
    if (!open && i == 0 && Clock::now() - start < 20s) {
      std::this_thread::sleep_for(500ms);  // the first policy may not have arrived yet
      --i;
      continue;
    }
    if (!open) {
      r.error = "an Always Allow session did not open: " + tunnel::ReadText(connect.log).substr(0, 400);
      return r;
    }
    if (i > 0) {  // the first one also waited for the policy
      r.always_allow_open.push_back(Ms(Clock::now() - start));
    }
  }

  for (int i = 0; i < rounds; ++i) {
    const std::size_t mails_before = sink.Messages().size();
    const std::string reason = fmt::format("bench round {}: disk replacement", i + 1);
    const std::string sr = fmt::format("SR-{}", 4000 + i);
    Connect connect;
    const auto start = Clock::now();
    if (auto why = StartConnect(home, work / fmt::format("ask-{}", i), "SN-ASK", reason, sr, &connect); !why.empty()) {
      r.error = why;
      return r;
    }
    std::string email;
    if (!tunnel::WaitFor(
            [&] {
              auto messages = sink.Messages();
              if (messages.size() > mails_before) {
                email = messages.back();
                return true;
              }
              return false;
            },
            30s)) {
      r.error = "no approval email within 30 s; connect said: " + tunnel::ReadText(connect.log).substr(0, 400) +
                "\npolicy manager log: " + tunnel::ReadText(policy.log()).substr(0, 800);
      return r;
    }
    const auto emailed = Clock::now();
    r.to_email.push_back(Ms(emailed - start));
    for (const std::string& needed : {std::string("SN-ASK"), std::string("echo"), reason, sr}) {
      r.email_complete = r.email_complete && email.find(needed) != std::string::npos;
    }
    const std::string id = RequestIdFrom(email);
    if (id.empty()) {
      r.error = "the approval email names no request id:\n" + email.substr(0, 1200);
      return r;
    }
    const auto approve_start = Clock::now();
    auto approved = policy.Call("POST", "/v1/requests/" + id + "/approve", R"({"comment": "bench"})", true);
    const auto approved_at = Clock::now();
    if (approved.status != 200) {
      r.error = fmt::format("approve {}: {} {}{}", id, approved.status, approved.body, approved.error);
      return r;
    }
    r.approve_call.push_back(Ms(approved_at - approve_start));
    // The gateway's own view, through the home (GET /v1/sessions/ID asks the gateway): open yet?
    lifeline::transport::HttpClient admin(lifeline::transport::ClientTls{home.ca_file().string(), "", ""});
    const bool learned = tunnel::WaitFor(
        [&] {
          lifeline::transport::ClientRequest get;
          get.method = "GET";
          get.url = home.admin_url() + "/v1/sessions/" + id;
          get.headers = {{"Authorization", "Bearer " + home.admin_token()}};
          get.timeout = 5s;
          auto answer = admin.Send(get);
          return answer && answer->status == 200 && answer->body.find("\"outcome\":\"open\"") != std::string::npos;
        },
        10s);
    const auto gateway_open = Clock::now();
    if (!learned) {
      r.error = "the gateway did not open the approved session within 10 s";
      return r;
    }
    r.gateway_learns.push_back(Ms(gateway_open - approved_at));
    if (!WaitListening(connect, 10s) || !Echoes(connect.port)) {
      r.error = "lifeline connect did not open the approved session: " + tunnel::ReadText(connect.log).substr(0, 400);
      return r;
    }
    const auto open = Clock::now();
    r.connect_opens.push_back(Ms(open - approved_at));
    r.total.push_back(Ms(open - start) - Ms(approve_start - emailed));  // without the bench's own pause
    connect.process->Terminate(5s);
  }
  return r;
}

int Run(const Options& options, const fs::path& work) {
  DecisionSizes sizes;
  if (options.smoke) {
    sizes.devices = 1000;
    sizes.rules = 100;
    sizes.window = 200ms;
    sizes.baseline_window = 200ms;
  }
  fmt::print("  running: decisions from the gateway's cache\n");
  fs::create_directories(work / "cache");
  const DecisionFigures d = MeasureDecisions(work / "cache", sizes);
  if (!d.error.empty()) {
    fmt::print("set-up failed: {}\n", d.error);
    return 1;
  }
  fmt::print("  running: approval round trips (home, gateway, policy manager, mail sink, lifeline connect)\n");
  const RoundTrip r = MeasureApprovals(options, work);
  if (!r.error.empty()) {
    fmt::print("set-up failed: {}\nwork directory (configs and logs) kept: {}\n", r.error, work.string());
    return 1;
  }

  fmt::print("\n== bench_policy ==\n");
  Row("figure", "ours", "baseline", "ratio", "target", "result");
  fmt::print("policy set: {} devices, {} groups, {} models, {} rules, {} grants\n", sizes.devices, sizes.groups,
             sizes.models, sizes.rules, sizes.grants);
  Row("decisions/s from the gateway's cache, 1 thread", fmt::format("{:.0f}", d.cached_per_s_1),
      fmt::format("{:.0f}", d.scan_per_s), fmt::format("{:.0f}x", d.cached_per_s_1 / std::max(d.scan_per_s, 1.0)),
      "(info)", "");
  Row(fmt::format("  the same, {} threads", d.threads), fmt::format("{:.0f}", d.cached_per_s_n), "", "", "", "");
  Row("  decisions equal to the reference scan", fmt::format("{}/{}", d.checked - d.mismatches, d.checked), "", "",
      "all", d.mismatches == 0 ? "PASS" : "MISS");
  Row("  gateway start: open policy.db and compile", fmt::format("{:.1f} ms", d.cache_open_ms), "", "", "(info)", "");
  Row("  store a new version (SQLite, fsync)", fmt::format("{:.1f} ms", d.cache_store_ms), "", "", "(info)", "");
  const int n = static_cast<int>(r.total.size());
  fmt::print("approval round trip, n={} (p50/max); baseline: an Always Allow session to the same gateway\n", n);
  Row("  request -> approvers' email at the SMTP server", Stats(r.to_email), "", "", "(info)", "");
  Row("  email names engineer, device, app, reason, SR", r.email_complete ? "yes" : "no", "", "", "all",
      r.email_complete ? "PASS" : "MISS");
  Row("  approve (POST /v1/requests/ID/approve)", Stats(r.approve_call), "", "", "(info)", "");
  Row("  approve -> session open at the gateway", Stats(r.gateway_learns), "", "", "< 1 s",
      Median(r.gateway_learns) < kLearnApprovalTargetMs ? "PASS" : "MISS");
  Row("  approve -> lifeline connect listening", Stats(r.connect_opens), "", "", "(info)", "");
  Row("  request -> session open, without the approver", Stats(r.total), Stats(r.always_allow_open),
      fmt::format("{:.1f}x", Median(r.total) / std::max(Median(r.always_allow_open), 1.0)), "(info)", "");
  fmt::print(
      "\nthe baseline opens without approval; the difference is the email, the approval and the gateway learning of it\n"
      "(its watch on the policy manager answers at once on a decision) plus lifeline connect's 500 ms poll.\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--smoke") {
      options.smoke = true;
    } else if (arg == "--keep") {
      options.keep = true;
    } else if ((arg == "--dir" || arg == "--lifeline" || arg == "--rounds") && i + 1 < argc) {
      const std::string value = argv[++i];
      if (arg == "--rounds") {
        options.rounds = std::max(1, std::atoi(value.c_str()));
      } else {
        (arg == "--dir" ? options.dir : options.lifeline) = value;
      }
    } else {
      Usage();
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const fs::path work = tunnel::MakeWorkDir(options.dir, "bench_policy");
  if (work.empty()) {
    return 1;
  }
  fmt::print("bench_policy{}\n", options.smoke ? " --smoke" : "");
  const int status = Run(options, work);
  if (status == 0 && !options.keep) {
    std::error_code ec;
    fs::remove_all(work, ec);
  } else if (status == 0) {
    fmt::print("work directory kept: {}\n", work.string());
  }
  return status;
}
