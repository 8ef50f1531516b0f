#include "cli/simulate_command.h"

#include "cli/commands.h"
#include "cli/signals.h"
#include "common/clock.h"
#include "common/config.h"
#include "crypto/keys.h"
#include "crypto/token.h"
#include "home/home_config.h"
#include "home/home_service.h"
#include "sim/simulator.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <atomic>
#include <iostream>
#include <thread>

namespace lifeline::cli {
namespace {

constexpr const char* kFooter = R"(
What it does:
  Each simulated device is enrolled once, like an agent (its own EC P-256 TLS key and Ed25519 signing
  key, a CSR with a single-use enrollment token, a certificate back) and kept in --state DIR, so the
  next run with the same --state, --prefix and fleet shape reuses it. Then every device speaks the
  real protocol over mutual TLS: signed, sealed batches to POST /v1/batches, replies checked against
  home-sign.pub. Devices are state, not threads: --threads senders share them (device i belongs to
  sender i % threads), each keeping --connections TLS connections open (the first devices it serves; the
  others connect per request).

Where tokens come from:
  --home-config home.toml: the simulator opens the home's store (SQLite file or PostgreSQL, as
  configured) and issues one token per device, as `lifeline home enroll-token` does. Run it where
  `lifeline home enroll-token` works. Without it, every device must already be in --state.

Traffic:
  heartbeats   every --heartbeat-interval per device, each interval varied by ± --jitter, announced
               to the home as interval * (1 + jitter); first ones spread over one interval
  alerts       --alert-rate per second across the fleet (Poisson), a random device each, codes from
               an 8-entry catalogue: SIM-LINK-FLAP repeats 3 times (occurrences), SIM-PSU-DEGRADED,
               SIM-TEMP-HIGH and SIM-REPL-LAG clear themselves later, SIM-FAN-SPEED and SIM-REPL-LAG
               are warnings (recorded, below the default ticket severity)
  storms       every --storm-every on average, one device sends --storm-size alerts at once
  silence      every --silence-every on average, one device stops sending anything (heartbeats
               included) for --silence-for, then comes back with a heartbeat
  Each device sends like an agent: up to --batch-size messages per batch, fresh batch id per
  attempt, the same messages again after an error (backoff 0.5 s doubling to 30 s). Batches refused
  for good (4xx other than 408/429) are dropped and counted; the sim does not keep them.

Several homes:
  Repeat --home to send every batch to each (same message ids, so homes sharing one database answer
  repeats as duplicates). The homes must share one PKI: devices enroll at the first only.
  --same-batch-id sends the byte-identical envelope to each (a shared store answers replayed_batch).

Ending:
  Generation stops at --duration or after --count messages (either, or both; without either, at
  Ctrl-C); then up to --drain for what is pending. A second Ctrl-C abandons the drain. The summary
  gives batches, messages, accepted, duplicates, rejected, errors and latency p50/p99 per request,
  for each home. Exit status 0 when everything generated was delivered, 1 otherwise, 2 for usage.

Durations: 500ms, 30s, 5m, 2h, 1d, or plain seconds.

Examples:
  lifeline simulate --home-config /etc/lifeline/home.toml --home https://127.0.0.1:9455 \
      --state /var/tmp/sim --devices 2000 --sites 50 --heartbeat-interval 30s --duration 10m
  lifeline simulate --home-config home.toml --state sim --devices 100 --alert-rate 0 \
      --storm-every 10s --storm-size 500 --count 20000
)";

bool ParseMillis(const std::string& text, std::chrono::milliseconds* out) {
  if (text.size() > 2 && text.ends_with("ms")) {
    std::chrono::seconds ignored{};
    // Reuse the digit check: "250" alone parses as seconds, then read it as milliseconds.
    if (!config::ParseDuration(text.substr(0, text.size() - 2), &ignored)) {
      return false;
    }
    *out = std::chrono::milliseconds(ignored.count());
    return true;
  }
  std::chrono::seconds seconds{};
  if (!config::ParseDuration(text, &seconds)) {
    return false;
  }
  *out = seconds;
  return true;
}

/// The ingest URL of a home from its config: the address file it wrote at start (port 0 configs), or
/// a listen address that names a host and a port.
std::string IngestUrlFrom(const home::HomeConfig& config) {
  if (!config.address_file.empty()) {
    auto text = crypto::ReadSmallFile(config.address_file, 4096);
    boost::system::error_code ec;
    if (text) {
      auto parsed = boost::json::parse(*text, ec);
      if (!ec && parsed.is_object()) {
        if (const auto* ingest = parsed.get_object().if_contains("ingest"); ingest != nullptr && ingest->is_string()) {
          return "https://" + std::string(ingest->get_string());
        }
      }
    }
  }
  const std::string& listen = config.ingest_listen;
  if (listen.empty() || listen.ends_with(":0") || listen.starts_with("0.0.0.0:") || listen.starts_with("[::]:")) {
    return "";
  }
  return "https://" + listen;
}

}  // namespace

CLI::App* AddSimulateCommand(CLI::App& app, SimulateOptions& o) {
  auto* cmd = app.add_subcommand(
      "simulate", "Enroll and drive many simulated devices against a real home (benchmarks, demos, load tests)");
  cmd->footer(kFooter);
  cmd->add_option("--home", o.homes,
                  "Ingest URL of the home, https://host:port (repeatable: every batch goes to each). Default: from "
                  "--home-config's address_file or listen.ingest");
  cmd->add_option("--home-config", o.home_config,
                  "The home's home.toml: enrollment tokens come from its store, and the PKI and URL from it");
  cmd->add_option("--pki", o.pki_dir,
                  "Directory with the home's ca.crt, home-seal.pub and home-sign.pub (default: --home-config's pki.dir)");
  cmd->add_option("--state", o.state_dir, "Directory keeping the devices' keys and certificates between runs")
      ->required();
  auto* fleet = "Fleet";
  cmd->add_option("--devices", o.devices, "Simulated devices (default 100)")->check(CLI::Range(1, 1'000'000))->group(fleet);
  cmd->add_option("--sites", o.sites, "Sites they are spread over, device i at site i % sites (default 10)")
      ->check(CLI::Range(1, 1'000'000))
      ->group(fleet);
  cmd->add_option("--customers", o.customers, "Customers the sites belong to (default 1)")
      ->check(CLI::Range(1, 10'000))
      ->group(fleet);
  cmd->add_option("--prefix", o.prefix, "Starts every customer, site and serial: keeps fleets apart (default SIM)")
      ->group(fleet);
  auto* traffic = "Traffic";
  cmd->add_option("--heartbeat-interval", o.heartbeat_interval, "Per device (default 60s)")->group(traffic);
  cmd->add_option("--jitter", o.jitter, "Heartbeat intervals vary by ± this fraction (default 0.1)")
      ->check(CLI::Range(0.0, 0.9))
      ->group(traffic);
  cmd->add_option("--alert-rate", o.alert_rate, "Alerts per second across the fleet (default 1; 0: none)")
      ->check(CLI::Range(0.0, 1e6))
      ->group(traffic);
  cmd->add_option("--storm-every", o.storm_every, "Mean time between alert storms (default 0: none)")->group(traffic);
  cmd->add_option("--storm-size", o.storm_size, "Alerts one storming device sends at once (default 200)")
      ->check(CLI::Range(1, 1'000'000))
      ->group(traffic);
  cmd->add_option("--silence-every", o.silence_every, "Mean time between devices falling silent (default 0: none)")
      ->group(traffic);
  cmd->add_option("--silence-for", o.silence_for, "How long a silent device sends nothing (default 2m)")
      ->group(traffic);
  auto* bounds = "Bounds";
  cmd->add_option("--duration", o.duration, "Stop generating after this long (default 0: no limit)")->group(bounds);
  cmd->add_option("--count", o.count, "Stop generating after this many messages (default 0: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->group(bounds);
  cmd->add_option("--drain", o.drain, "Then wait at most this long for pending messages (default 10s)")
      ->group(bounds);
  auto* sending = "Sending";
  cmd->add_option("--threads", o.threads, "Sender threads (default 4)")->check(CLI::Range(1, 256))->group(sending);
  cmd->add_option("--connections", o.connections, "TLS connections each sender thread keeps open (default 32); its other devices connect per request")
      ->check(CLI::Range(1, 100'000))
      ->group(sending);
  cmd->add_option("--batch-size", o.batch_size, "Messages per batch at most (default 100)")
      ->check(CLI::Range(1, 1000))
      ->group(sending);
  cmd->add_option("--timeout", o.timeout, "One request, connect included (default 10s)")->group(sending);
  cmd->add_flag("--same-batch-id", o.same_batch_id, "With several --home: the identical envelope to each")
      ->group(sending);
  cmd->add_option("--progress", o.progress, "A progress line on stderr this often (default 10s; 0: none)");
  cmd->add_option("--seed", o.seed, "Random seed for the traffic (default: random)");
  return cmd;
}

int RunSimulateCommand(const SimulateOptions& o) {
  auto usage = [](const std::string& text) {
    std::cerr << "lifeline simulate: " << text << "\n";
    return kExitUsage;
  };
  sim::SimulatorOptions options;
  options.fleet = {.prefix = o.prefix,
                   .devices = static_cast<std::uint32_t>(o.devices),
                   .customers = static_cast<std::uint32_t>(o.customers),
                   .sites = static_cast<std::uint32_t>(o.sites)};
  struct Duration {
    const char* flag;
    const std::string& text;
    std::chrono::milliseconds* target;
  };
  std::chrono::milliseconds progress{};
  for (const Duration& d : {Duration{"--heartbeat-interval", o.heartbeat_interval, &options.heartbeat_interval},
                            Duration{"--storm-every", o.storm_every, &options.storm_every},
                            Duration{"--silence-every", o.silence_every, &options.silence_every},
                            Duration{"--silence-for", o.silence_for, &options.silence_for},
                            Duration{"--duration", o.duration, &options.duration},
                            Duration{"--drain", o.drain, &options.drain},
                            Duration{"--timeout", o.timeout, &options.timeout},
                            Duration{"--progress", o.progress, &progress}}) {
    if (!ParseMillis(d.text, d.target)) {
      return usage(fmt::format("{} wants a duration such as 500ms, 30s, 5m or 2h, not '{}'", d.flag, d.text));
    }
  }
  if (options.heartbeat_interval.count() < 100) {
    return usage("--heartbeat-interval must be at least 100ms");
  }
  if (options.timeout.count() < 100) {
    return usage("--timeout must be at least 100ms");
  }
  options.heartbeat_jitter = o.jitter;
  options.alerts_per_second = o.alert_rate;
  options.storm_alerts = o.storm_size;
  options.count = o.count;
  options.threads = o.threads;
  options.connections_per_thread = o.connections;
  options.batch_size = o.batch_size;
  options.same_batch_id = o.same_batch_id;
  options.seed = o.seed;
  options.home_urls = o.homes;

  // The home's config gives tokens (through its store) and defaults for the PKI and the URL.
  std::optional<home::HomeConfig> home_config;
  std::unique_ptr<store::HomeStore> store;
  if (!o.home_config.empty()) {
    try {
      home_config = home::HomeConfig::Load(o.home_config);
    } catch (const config::ConfigError& e) {
      std::cerr << "lifeline: " << e.what() << "\n";
      return kExitUsage;
    }
    auto opened = home::OpenHomeStore(*home_config);
    if (!opened) {
      std::cerr << "lifeline simulate: cannot open the home's store (see the log above)\n";
      return kExitFailure;
    }
    store = std::move(*opened);
    if (options.home_urls.empty()) {
      const std::string url = IngestUrlFrom(*home_config);
      if (!url.empty()) {
        options.home_urls.push_back(url);
      }
    }
  }
  if (options.home_urls.empty()) {
    return usage("give the home's ingest URL with --home https://host:port");
  }
  for (const auto& url : options.home_urls) {
    if (!url.starts_with("https://")) {
      return usage(fmt::format("--home must be an https:// URL, not '{}'", url));
    }
  }
  const std::string pki_dir = !o.pki_dir.empty() ? o.pki_dir : home_config ? home_config->pki_dir : "";
  if (pki_dir.empty()) {
    return usage("give the home's public PKI files with --pki DIR (or --home-config)");
  }
  std::string why;
  auto trust = sim::LoadHomeTrust(pki_dir, &why);
  if (!trust) {
    std::cerr << "lifeline simulate: " << why << "\n";
    return kExitUsage;
  }
  auto credentials = sim::CredentialStore::Open(o.state_dir, *trust, &why);
  if (!credentials) {
    std::cerr << "lifeline simulate: " << why << "\n";
    return kExitFailure;
  }

  sim::TokenSource tokens;
  if (store) {
    store::HomeStore* raw = store.get();
    tokens = [raw](const protocol::DeviceIdentity& device, std::string* reason) -> Result<std::string> {
      std::string token = crypto::GenerateToken("llt");
      const auto now_ms = SystemClock::Instance().NowUnixMillis();
      if (auto created = raw->CreateEnrollmentToken(crypto::HashToken(token), device, now_ms + 3'600'000, now_ms);
          !created) {
        *reason = "cannot store an enrollment token: " + created.error().message();
        return created.error();
      }
      return token;
    };
  }

  sim::Simulator simulator(std::move(options), std::move(*trust), std::move(*credentials));
  std::cerr << fmt::format("lifeline simulate: preparing {} devices (state {})\n", o.devices, o.state_dir);
  if (auto prepared = simulator.Prepare(std::move(tokens), &why); !prepared) {
    std::cerr << "lifeline simulate: " << why << "\n";
    return kExitFailure;
  }
  // `store` stays open: a device the home refuses as unknown is enrolled again during the run.
  // Until here Ctrl-C simply ends the process (what enrollment wrote is complete per file). From now
  // on the signals stay blocked in every thread and this one waits for them between progress lines.
  BlockStopSignals();
  std::cerr << "lifeline simulate: running (Ctrl-C ends generation, a second one the drain)\n";

  std::atomic<bool> finished{false};
  sim::SimulationSummary summary;
  std::thread runner([&] {
    summary = simulator.Run();
    finished = true;
  });
  auto last_progress = std::chrono::steady_clock::now();
  while (!finished) {
    if (WaitForStopSignal(std::chrono::milliseconds(100))) {
      simulator.Stop();
    }
    if (progress.count() > 0 && std::chrono::steady_clock::now() - last_progress >= progress && !finished) {
      last_progress = std::chrono::steady_clock::now();
      const auto p = simulator.Snapshot();
      std::cerr << fmt::format("  {:.0f} s: {} messages generated, {} requests, {} batches answered, {} accepted, "
                               "{} errors, {} waiting\n",
                               p.seconds, p.generated, p.requests, p.answered, p.accepted, p.errors, p.outstanding);
    }
  }
  runner.join();
  std::cout << summary.Render();
  const bool complete = summary.unsent == 0 && summary.dropped == 0 && summary.overflow == 0 &&
                        summary.enroll_failed == 0;
  return complete ? kExitOk : kExitFailure;
}

}  // namespace lifeline::cli
