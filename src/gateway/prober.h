#pragma once
// Reachability of the managed devices (docs/gateway.md, "Managed devices"): every probe.interval,
// a TCP connect to each registered port of each enabled device. A port that accepts a connection
// is reachable (the connection is closed at once; nothing is sent). Results go into the registry's
// memory after each sweep and to gateway.db after any change of state (and every persist_interval),
// so `lifeline gateway devices list` and the report home show them.
//
// Threads: Start() runs sweeps on a thread of its own, with its own Asio io_context, at most
// `concurrency` connects in flight, each bounded by `timeout`.
#include "common/clock.h"
#include "gateway/device_registry.h"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace lifeline::gateway {

struct GatewayConfig;

struct ProberOptions {
  std::chrono::milliseconds interval{60000};
  std::chrono::milliseconds timeout{3000};  // per probe: name resolution and connect
  int concurrency = 64;                     // probes in flight at once
  std::chrono::milliseconds persist_interval{std::chrono::minutes(5)};
  /// probe.interval, probe.timeout and probe.concurrency of gateway.toml.
  static ProberOptions FromConfig(const GatewayConfig& config);
};

/// What one sweep did.
struct SweepStats {
  std::size_t probes = 0;  // (device, app) pairs probed to the end
  std::size_t reachable = 0;
  std::size_t unreachable = 0;
  std::size_t transitions = 0;  // changes of state (including the first result of a port)
  int max_in_flight = 0;        // the most probes that were in flight at once
  bool interrupted = false;     // Stop() cut it short; the results gathered so far were kept
  std::chrono::milliseconds duration{0};
};

class Prober {
 public:
  Prober(DeviceRegistry& registry, ProberOptions options,
         const Clock& clock = SystemClock::Instance());
  /// Stop()s.
  ~Prober();
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  /// Starts the sweeping thread: a sweep at once, then one every `interval` (counted from the end
  /// of the previous sweep, so a slow sweep never overlaps the next). Call once.
  void Start();
  /// Interrupts a sweep in progress (results so far are kept), saves the results and joins the
  /// thread. Idempotent.
  void Stop();

  /// One sweep on the calling thread (blocking): the sweeping thread and callers take turns.
  SweepStats SweepOnce();
  /// The last finished sweep, if any.
  std::optional<SweepStats> LastSweep() const;

  /// The latest results as JSON for reporting home (DeviceRegistry::ReachabilityJson).
  std::string ReachabilityJson() const { return registry_.ReachabilityJson(); }

  struct Sweep;  // the state of one sweep (prober.cpp)

 private:
  void Loop();

  DeviceRegistry& registry_;
  const ProberOptions options_;
  const Clock& clock_;

  std::mutex sweep_mutex_;  // one sweep at a time

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::shared_ptr<Sweep> current_;  // the sweep in progress, for Stop()
  std::optional<SweepStats> last_;
  std::chrono::steady_clock::time_point last_persist_{};
  std::thread thread_;
};

}  // namespace lifeline::gateway
