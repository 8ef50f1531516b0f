#pragma once
// Missing heartbeats in the running home (issue 4, item 2): the HeartbeatTracker fed by ingest, a
// sweeping thread, and the tickets its events open and resolve (store/home_store.h, "Heartbeats and
// retention"). docs/architecture.md, "Missing heartbeats", says how devices and sites are judged.
//
// - Start-up: Restore() rebuilds the tracker from the store (last heartbeats, open tickets), so a
//   deadline that passed while the home was down opens its ticket at the first sweep, and a ticket
//   already open is neither opened twice nor left open once the device is back.
// - Ingest: OnBatchCommitted() after each committed batch observes its heartbeats, with the time the
//   store saved for them.
// - The thread sweeps every sweep_interval; the first sweep waits start_delay after Start(), so
//   agents that queued heartbeats while the home was down deliver them first. Each sweep's events
//   become tickets opened or resolved in one store transaction; a transaction that fails is tried
//   again at the next sweep (a crash in between is repaired by Restore at the next start).
// - Several homes on one PostgreSQL: each tracks what it ingests. Before opening a ticket the store
//   compares the device's (or site's) stored heartbeats with the ones the event was made from;
//   later ones (another home's) refresh this tracker instead, and the one-open-ticket-per-key index
//   keeps two homes from opening two tickets.
#include "common/clock.h"
#include "common/config.h"
#include "common/result.h"
#include "home/heartbeat_tracker.h"
#include "protocol/message.h"
#include "store/home_store.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace lifeline::home {

/// [heartbeats] in home.toml.
struct HeartbeatSettings {
  bool enabled = true;
  /// The least grace after a device's announced interval; 10% of the interval when that is more,
  /// up to an hour (or this, if longer).
  std::chrono::seconds grace{300};
  std::chrono::seconds start_delay{300};
  std::chrono::seconds sweep_interval{1};
  double site_fraction = 0.5;
  std::int64_t site_min_devices = 3;
  std::chrono::seconds site_correlation{600};

  HeartbeatTrackerOptions TrackerOptions() const;
};

/// Declares [heartbeats] keys into `schema`, bound to `settings`.
void DeclareHeartbeatConfig(config::Schema& schema, HeartbeatSettings& settings);

struct HeartbeatMonitorStats {
  std::int64_t sweeps = 0;
  std::int64_t tickets_opened = 0;
  std::int64_t tickets_resolved = 0;
  std::int64_t already_open = 0;     // another home (or an earlier run) had opened it
  std::int64_t stale = 0;            // events the store's later heartbeats overruled
  std::int64_t store_failures = 0;   // transactions that failed (their changes are retried)
  std::int64_t pending_changes = 0;  // waiting for the store
  HeartbeatTrackerStats tracker;
};

class HeartbeatMonitor {
 public:
  /// `store` must also be a store::HeartbeatRetentionStore (SqlHomeStore is). `tickets` carries the
  /// notification planner and contacts for the tickets it opens.
  HeartbeatMonitor(store::HomeStore& store, const Clock& clock, HeartbeatSettings settings,
                   store::HeartbeatTicketOptions tickets);
  ~HeartbeatMonitor();
  HeartbeatMonitor(const HeartbeatMonitor&) = delete;
  HeartbeatMonitor& operator=(const HeartbeatMonitor&) = delete;

  /// Rebuilds the tracker from the store; once, before Start or the first SweepOnce. Also resolves
  /// missing-heartbeat tickets left open for devices that are no longer active.
  [[nodiscard]] VoidResult Restore();

  /// The heartbeats of a batch the store committed at `now_ms` (skips duplicates and refusals).
  void OnBatchCommitted(const protocol::Batch& batch, const protocol::BatchReply& reply,
                        std::int64_t now_ms);
  /// One heartbeat of the device with row id `device_id`.
  void Observe(std::int64_t device_id, const std::string& customer, const std::string& site,
               std::int64_t interval_s, std::int64_t now_ms);
  /// The device was revoked: stops tracking it and resolves its missing-heartbeat ticket.
  [[nodiscard]] VoidResult OnDeviceRevoked(const protocol::DeviceIdentity& device);

  /// One sweep at the clock's time: the tracker's events, and any left from a failed sweep, into
  /// tickets. Returns the outcomes of the changes applied now (for tests and logs).
  Result<std::vector<store::HeartbeatApplied>> SweepOnce();

  /// The sweeping thread (see the file comment). Stop() before the store closes.
  void Start();
  void Stop();

  HeartbeatMonitorStats Stats() const;

 private:
  std::uint32_t SiteId(const std::string& customer, const std::string& site);
  store::HeartbeatChange ToChange(const HeartbeatEvent& event) const;
  void Run();

  store::HeartbeatRetentionStore& store_;
  const Clock& clock_;
  HeartbeatSettings settings_;
  store::HeartbeatTicketOptions tickets_;
  HeartbeatTracker tracker_;

  mutable std::mutex sites_mutex_;
  std::unordered_map<std::string, std::uint32_t> site_ids_;  // "customer\0site" -> tracker site
  std::vector<std::pair<std::string, std::string>> site_names_;

  std::mutex sweep_mutex_;  // one sweep at a time; guards pending_
  std::vector<store::HeartbeatChange> pending_;

  mutable std::mutex stats_mutex_;
  HeartbeatMonitorStats stats_;

  std::mutex thread_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace lifeline::home
