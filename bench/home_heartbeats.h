#pragma once
// The home's missing-heartbeat tracker (home/heartbeat_tracker) at fleet size, in process and in
// fake time: its memory per device, how fast heartbeats are observed, what one sweep costs, and how
// late a missing heartbeat is detected over a simulated hour. Beside it, in the same run, the naive
// way: an std::unordered_map keyed by device name, scanned whole at every sweep.
#include <chrono>
#include <cstdint>
#include <string>

namespace lifeline::bench {

struct HeartbeatBenchOptions {
  std::uint32_t devices = 1'000'000;
  std::uint32_t sites = 1'000;
  std::chrono::seconds simulated{3600};  // the simulated fleet's run, swept every second
  int idle_sweeps = 1'000;               // sweeps with nothing due, timed together
  int due_sweeps = 10;                   // sweeps with 1% of the devices due, timed one by one
};

struct HeartbeatFigures {
  std::uint32_t devices = 0;
  std::uint32_t sites = 0;

  // Memory per device after every device was observed once.
  double tracker_malloc_bytes = 0;  // mallinfo2 (in use + mmapped) delta / devices
  double tracker_rss_bytes = 0;     // RssAnon delta / devices
  double tracker_self_bytes = 0;    // HeartbeatTracker::MemoryBytes() / devices
  double naive_malloc_bytes = 0;
  double naive_rss_bytes = 0;

  // Observe, heartbeats per second (each device once per pass).
  double register_per_second = 0;  // first heartbeat of each device (takes the lock)
  double observe_per_second_1 = 0;
  double observe_per_second_2 = 0;  // two threads, each half the devices
  double naive_observe_per_second_1 = 0;
  double naive_observe_per_second_2 = 0;  // one mutex, as a naive map needs

  // Sweeps.
  double first_sweep_ms = 0;  // after start: examines every device once
  double idle_sweep_us = 0;   // average, nothing due
  std::uint64_t idle_examined = 0;
  double due_sweep_ms_avg = 0;  // 1% of the devices due, average and worst
  double due_sweep_ms_max = 0;
  std::uint64_t due_per_sweep = 0;  // missing events per such sweep
  double naive_idle_sweep_ms = 0;   // full scan, nothing due
  double naive_due_sweep_ms = 0;    // full scan, 1% due

  // A simulated fleet: heartbeats every 60, 120, 300 or 600 s; 0.1% of the devices die at random
  // times, one whole site at a third of the run; swept every second.
  double simulated_seconds = 0;
  double wall_seconds = 0;
  std::uint64_t observes = 0;
  std::uint64_t sweeps = 0;
  double sweep_us_avg = 0;
  double sweep_us_max = 0;
  double examined_avg = 0;         // wheel entries looked at per sweep
  std::uint64_t dead_devices = 0;  // whose deadline passed at least 30 s before the end
  std::uint64_t detected = 0;      // device events for them
  std::uint64_t covered = 0;       // of the dead site, covered by its site event instead
  std::uint64_t undetected = 0;    // neither: must be 0
  std::uint64_t early = 0;         // detected before interval + grace had passed: must be 0
  std::uint64_t false_events = 0;  // events about devices or sites that were alive: must be 0
  double worst_delay_s = 0;        // detection after the true deadline
  double mean_delay_s = 0;
  bool dead_site_event = false;
  double dead_site_event_after_s = 0;    // after the site died
  std::uint64_t dead_site_reported = 0;  // its devices reported one by one before its site event
  std::uint32_t dead_site_devices = 0;

  std::string error;
};

/// Bounded: the work is fixed by the options (about 40 s and 600 MB at 1,000,000 devices).
HeartbeatFigures BenchHeartbeats(const HeartbeatBenchOptions& options);

}  // namespace lifeline::bench
