#pragma once
// `lifeline simulate`: many simulated devices speaking the real protocol to one home (or several).
//
// Devices are state, not threads: one scheduler thread keeps every timed event in one heap
// (heartbeats with jitter, fleet-wide alerts at a rate, storms, silences and returns, clears) and
// turns due events into messages on the device's pending list; a few sender threads each own a
// share of the devices (device i belongs to sender i % threads) and a BatchClient with a small cache
// of connections. A device with pending messages is sent like an agent sends: up to batch_size
// messages in a batch with a fresh batch id, the same messages again (new batch id) after a failure,
// with backoff; refused for good (a 4xx other than 408/429) means dropped and counted.
//
// With several home URLs each batch goes to every home (the same message ids, so homes that share a
// store deduplicate them); the homes must share the PKI, since devices enroll once, at the first.
#include "common/result.h"
#include "sim/batch_client.h"
#include "sim/credentials.h"
#include "sim/fleet.h"
#include "sim/latency.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lifeline::sim {

struct SimulatorOptions {
  std::vector<std::string> home_urls;  // "https://host:port"; at least one
  /// With several homes: send the byte-identical envelope (same batch id) to each, so homes on one
  /// database see a replay (answered replayed_batch, counted as such). Default: a batch id per home.
  bool same_batch_id = false;
  FleetShape fleet;

  std::chrono::milliseconds heartbeat_interval{60'000};
  double heartbeat_jitter = 0.1;    // each interval is the nominal one times 1 ± jitter
  double alerts_per_second = 1.0;   // fleet-wide, Poisson; 0: none
  std::chrono::milliseconds storm_every{0};  // mean time between storms, fleet-wide; 0: none
  int storm_alerts = 200;                    // alerts one storming device sends at once
  std::chrono::milliseconds silence_every{0};  // mean time between devices falling silent; 0: none
  std::chrono::milliseconds silence_for{120'000};

  std::chrono::milliseconds duration{0};  // stop generating after this; 0: no limit
  std::int64_t count = 0;                 // stop generating after this many messages; 0: no limit
  std::chrono::milliseconds drain{10'000};  // then wait at most this long for what is pending

  int threads = 4;
  int connections_per_thread = 32;
  int batch_size = 100;
  std::size_t max_pending_per_device = 10'000;  // beyond it new messages are dropped (overflow)
  std::chrono::milliseconds timeout{10'000};    // one request
  std::uint64_t seed = 0;                       // 0: random
};

/// Issues a single-use enrollment token for a device (thread-safe); `why` says what failed.
using TokenSource = std::function<Result<std::string>(const protocol::DeviceIdentity&, std::string* why)>;

struct HomeFigures {
  std::string url;
  std::uint64_t requests = 0;
  std::uint64_t answered = 0;          // batches the home took (HTTP 200, signed reply)
  std::uint64_t refused = 0;           // batches refused (HTTP 4xx/5xx)
  std::uint64_t replayed = 0;          // of those: replayed_batch (409)
  std::uint64_t transport_errors = 0;  // no answer
  std::uint64_t bad_replies = 0;       // unsigned or not answering the batch
  std::uint64_t messages = 0;          // in answered batches
  std::uint64_t accepted = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t rejected = 0;  // per message, in answered batches
  std::map<std::string, std::uint64_t> refusals;  // wire name -> batches
  std::string last_error;
  LatencyHistogram latency;  // every request that got an HTTP answer
};

struct SimulationSummary {
  std::uint32_t devices = 0;       // driven
  std::uint32_t enrolled_now = 0;  // enrolled by this run
  std::uint32_t reused = 0;        // found in the state directory
  std::uint32_t enroll_failed = 0;
  std::string enroll_error;        // the first failure
  std::uint32_t reenrolled = 0;    // during the run, after the home refused a cached device
  double seconds = 0;              // from the start of traffic to the end of the drain
  std::uint64_t heartbeats = 0;    // messages generated, by kind
  std::uint64_t alerts = 0;
  std::uint64_t clears = 0;
  std::uint64_t storms = 0;
  std::uint64_t silences = 0;      // devices that fell silent (and came back, unless the run ended first)
  std::uint64_t dropped = 0;       // messages refused for good by a home
  std::uint64_t overflow = 0;      // not queued: the device had max_pending_per_device waiting
  std::uint64_t unsent = 0;        // still waiting when the drain ended
  std::uint64_t retries = 0;       // batches sent again after a failure
  std::uint64_t connections = 0;   // TLS connections opened
  std::vector<HomeFigures> homes;
  LatencyHistogram latency;        // all homes

  std::uint64_t generated() const { return heartbeats + alerts + clears; }
  /// The summary for people: one block of lines.
  std::string Render() const;
};

/// Counters readable while the simulation runs (for progress lines).
struct Progress {
  double seconds = 0;
  std::uint64_t generated = 0;
  std::uint64_t requests = 0;
  std::uint64_t answered = 0;
  std::uint64_t accepted = 0;
  std::uint64_t errors = 0;  // refused + transport errors + bad replies
  std::int64_t outstanding = 0;  // messages generated and not yet answered or dropped
};

class Simulator {
 public:
  Simulator(SimulatorOptions options, HomeTrust trust, CredentialStore credentials);
  ~Simulator();
  Simulator(const Simulator&) = delete;

  /// Loads the fleet's devices from the state directory and enrolls the missing ones at the first
  /// home, `threads` at a time, with tokens from `tokens` (may be empty: then every device must be
  /// in the state directory). Fails when no device could be had; partial failures are counted.
  /// `tokens` is kept for Run: a device the home refuses as unknown or signed with another key (its
  /// database was replaced, or another state directory enrolled the same names) is enrolled again,
  /// once per run.
  [[nodiscard]] VoidResult Prepare(TokenSource tokens, std::string* why);

  /// Drives the devices until the duration, the count or Stop(), then drains (bounded). Blocking.
  SimulationSummary Run();

  /// Ends generation (thread-safe). A second call during the drain abandons what is pending.
  void Stop();
  Progress Snapshot() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace lifeline::sim
