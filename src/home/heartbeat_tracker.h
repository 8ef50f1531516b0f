#pragma once
// Missing-heartbeat detection for the home (issue 4): which devices have gone quiet for longer than
// they said they would, and which sites have gone quiet as a whole. Pure bookkeeping: no I/O, no
// store, no clock of its own; the caller passes the time and turns the events into tickets.
//
// Devices and sites are compact numeric ids the caller assigns (the home maps its device rows and
// sites to them and keeps the strings), so the state fits a fixed byte budget. Everything counted:
// - per device, 24 bytes: last heartbeat, interval and flags in one atomic word (8), site id
//   (4), the links of the one intrusive list the device is in (8), its state (1), padding (3);
// - per site, 28 bytes: tracked and missing counts, the head of the list of its devices not
//   reported one by one (covered or held, below), its latest heartbeat, a time, flags; plus 4
//   bytes in the lists of sites to look at, while one is;
// - fixed: the wheel's 16,384 one-second buckets (128 KiB), the slot and site chunk directories
//   (32 + 128 KiB), and at most one partly used chunk of 16,384 slots (384 KiB) and of 4,096 sites
//   (112 KiB).
// That is about 24.7 bytes per device at 1,000,000 devices over 1,000 sites, and under 64 even
// when every device is its own site. Nothing else grows
// with the device count: no hash table (ids index chunked arrays directly), no allocation per
// heartbeat. MemoryBytes() adds it up.
//
// Finding due devices: a hashed timing wheel of one-second buckets over a 4.5 h horizon. Each
// tracked device is in exactly one bucket, at or before its deadline. A heartbeat that moves the
// deadline later only rewrites the device's atomic word (no lock, no list change); when the sweeper
// reaches the old bucket it finds the device not yet due and moves it to the right bucket. So a
// sweep examines the devices whose deadline came due plus, at most once per heartbeat (and once
// per 4.5 h for longer intervals), a device whose heartbeat moved it on: proportional to the
// heartbeat rate and the devices that became due, never to all devices.
//
// Sites (docs/architecture.md, "Missing heartbeats"): a site is silent when most of it is missing
// (site_fraction and site_min_devices), or when site_min_devices of its devices are missing and
// nothing at all has been heard from the site since they were due. A dead site's devices fall due
// one by one over their intervals, so a device that falls due while its site has sent nothing
// since the device itself was due is *held* (not reported) for up to site_correlation: the first
// heartbeat from any device of the site releases it at once as a device of its own, and so does the
// end of the wait; enough held devices make the site silent instead. A device whose site was heard
// from after it was due is reported at once. When a silent site resumes, its devices still missing
// are held the same way, so devices that come back with their site open no tickets.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace lifeline::home {

struct HeartbeatTrackerOptions {
  /// Interval assumed when a heartbeat announces none (0 or negative): the agent's default.
  std::chrono::seconds default_interval{6 * 3600};
  /// Announced intervals are clamped to [min_interval, max_interval]. The agent announces at most
  /// 7 days plus its jitter (up to 50%), so 14 days is the largest honest value.
  std::chrono::seconds min_interval{1};
  std::chrono::seconds max_interval{14 * 24 * 3600};
  /// Grace after the interval: interval * grace_fraction, but at least grace_min and at most
  /// grace_max. The announced interval already includes the agent's jitter, so grace only has to
  /// cover delivery: grace_min is the agent's default retry.max (300 s), the longest a heartbeat
  /// that met one failed send waits in the agent's backoff; 10% covers a long queue or a slow path
  /// for devices that report rarely; the 1 h cap keeps a weekly device from going unwatched for
  /// most of a day. Default interval 6.6 h (6 h + 10% jitter) gives 40 min of grace.
  std::chrono::seconds grace_min{300};
  double grace_fraction = 0.1;
  std::chrono::seconds grace_max{3600};
  /// A site is silent when at least site_fraction of its tracked devices, and at least
  /// site_min_devices of them, are missing at the same time. site_fraction > 1 disables grouping.
  double site_fraction = 0.5;
  std::uint32_t site_min_devices = 3;
  /// Longest a newly missing device of a quiet site is held before it is reported on its own (see
  /// the file comment). 0: never held (every device is reported within a second of its deadline).
  std::chrono::seconds site_correlation{600};
};

enum class HeartbeatEventKind {
  kDeviceMissing,  // its deadline passed with no heartbeat (not sent while its site is silent)
  kDeviceResumed,  // a heartbeat came after its kDeviceMissing
  kSiteSilent,     // the site is missing as a whole: one event instead of one per device
  kSiteResumed,    // no longer; its devices still missing follow as kDeviceMissing unless they
                   // come back within site_correlation
};

struct HeartbeatEvent {
  HeartbeatEventKind kind = HeartbeatEventKind::kDeviceMissing;
  std::uint32_t device = 0;  // device events only
  std::uint32_t site = 0;
  /// Device events: the last heartbeat (home time, rounded up to the second), its announced
  /// interval after clamping, and the deadline that passed (kDeviceMissing: last + interval +
  /// grace).
  std::int64_t last_heartbeat_ms = 0;
  std::int64_t deadline_ms = 0;
  std::uint32_t interval_seconds = 0;
  /// Site events: the site's missing and tracked devices when it changed, and its latest heartbeat
  /// (in last_heartbeat_ms; 0 if none).
  std::uint32_t missing = 0;
  std::uint32_t tracked = 0;
};

struct HeartbeatTrackerStats {
  std::uint64_t tracked_devices = 0;
  std::uint64_t missing_devices = 0;  // reported one by one or covered by a silent site
  std::uint64_t silent_sites = 0;
  std::uint64_t held_devices = 0;         // missing, waiting for their site to be judged
  std::uint64_t last_sweep_examined = 0;  // wheel entries the last Sweep looked at
  std::uint64_t rejected_ids = 0;         // calls with an id past kMaxId
  std::size_t memory_bytes = 0;           // as MemoryBytes()
};

/// Thread-safe: any number of threads may call Observe concurrently (the common case takes no lock:
/// one compare-and-swap on the device's word) while one thread calls Sweep. Forget and Restore
/// lock.
class HeartbeatTracker {
 public:
  /// Device and site ids are below this (2^26, 67 million).
  static constexpr std::uint32_t kMaxId = 1u << 26;
  /// A device with this site id is never grouped.
  static constexpr std::uint32_t kNoSite = 0xFFFFFFFFu;

  explicit HeartbeatTracker(HeartbeatTrackerOptions options = {});
  ~HeartbeatTracker();
  HeartbeatTracker(const HeartbeatTracker&) = delete;
  HeartbeatTracker& operator=(const HeartbeatTracker&) = delete;

  /// A heartbeat from `device` of `site` received at `now_ms` (home time, Unix ms) announcing
  /// `interval_seconds` (0 or negative: the default; clamped). Starts tracking an unknown device.
  /// An older heartbeat than one already observed changes nothing. False when an id is out of
  /// range.
  bool Observe(std::uint32_t device, std::uint32_t site, std::int64_t interval_seconds,
               std::int64_t now_ms);

  /// Stops tracking `device` (revoked). True when it had a kDeviceMissing standing, whose ticket
  /// the caller should now close itself: no kDeviceResumed will come.
  bool Forget(std::uint32_t device);

  /// At start-up, before the first Sweep: tracks `device` from its stored last heartbeat. A
  /// deadline that passed while the home was down is reported by the first Sweep.
  /// `reported_missing`: a missing-heartbeat ticket is open for it, so it is not reported again
  /// while still missing, and a kDeviceResumed comes at the first Sweep if it is not missing. False
  /// when an id is out of range.
  bool Restore(std::uint32_t device, std::uint32_t site, std::int64_t interval_seconds,
               std::int64_t last_heartbeat_ms, bool reported_missing = false);

  /// At start-up, after Restore of its devices: a site ticket is open for `site`, since
  /// `silent_since_ms` (when it opened; 0 if unknown). The first Sweep sends kSiteResumed if the
  /// site is no longer silent, and nothing if it still is.
  bool RestoreSiteSilent(std::uint32_t site, std::int64_t silent_since_ms = 0);

  /// Everything that changed up to `now_ms`: device resumptions, site changes, then devices newly
  /// missing, each condition reported once until it resolves. Detection is within one second of the
  /// deadline plus the time between sweeps, except for devices held for their site (at most
  /// site_correlation later). The first Sweep examines every tracked device once.
  std::vector<HeartbeatEvent> Sweep(std::int64_t now_ms);

  HeartbeatTrackerStats Stats() const;
  /// Bytes of everything the tracker holds (see the budget above).
  std::size_t MemoryBytes() const;

  /// The grace a device with this (clamped) interval gets.
  std::chrono::seconds GraceFor(std::chrono::seconds interval) const;

 private:
  struct Link {
    std::uint32_t prev = 0;
    std::uint32_t next = 0;
  };
  struct Slot;
  struct Site;

  Slot* FindSlot(std::uint32_t device) const;
  Slot& EnsureSlot(std::uint32_t device);
  Site& EnsureSite(std::uint32_t site);
  Site& SiteAt(std::uint32_t site);
  void NoteBeat(std::uint32_t site, std::uint32_t last_s);
  bool Grouping() const;
  bool Holding() const;
  Link& LinkOf(std::uint32_t node);
  void Unlink(std::uint32_t node);
  void PushBack(std::uint32_t list, std::uint32_t node);
  bool Empty(std::uint32_t list);
  void LinkWheel(std::uint32_t device, std::uint64_t deadline_s);
  void LinkNextSweep(std::uint32_t device);
  void MarkDirty(std::uint32_t site);
  std::uint32_t ClampInterval(std::int64_t interval_seconds) const;
  std::uint64_t Deadline(std::uint64_t word) const;
  bool SiteCondition(const Site& site) const;
  void HoldQuietSites(std::uint64_t now_s);
  void EvaluateSite(std::uint32_t site, std::uint64_t now_s, std::vector<HeartbeatEvent>& events);
  void ReleaseHeld(std::uint32_t site, std::vector<HeartbeatEvent>& events);
  void ObserveLocked(std::uint32_t device, std::uint32_t site, std::uint32_t interval,
                     std::uint32_t last_s);
  void ProcessBucket(std::uint32_t bucket, std::uint64_t now_s,
                     std::vector<HeartbeatEvent>& events);
  HeartbeatEvent DeviceEvent(HeartbeatEventKind kind, std::uint32_t device,
                             std::uint64_t word) const;

  HeartbeatTrackerOptions options_;
  std::unique_ptr<std::atomic<Slot*>[]> slot_chunks_;  // fixed size: read without the lock
  mutable std::mutex mutex_;
  std::size_t slot_chunk_count_ = 0;
  std::unique_ptr<std::atomic<Site*>[]> site_chunks_;  // fixed size: read without the lock
  std::size_t site_chunk_count_ = 0;
  std::vector<Link> sentinels_;  // wheel buckets, then the resumed, fresh and scratch lists
  std::vector<std::uint32_t> dirty_sites_;    // to judge at the next sweep
  std::vector<std::uint32_t> watched_sites_;  // silent or holding devices: judged at every sweep
  std::uint64_t cursor_ = 0;  // the next second the wheel processes (seconds since kEpoch)
  bool swept_ = false;
  std::uint64_t tracked_ = 0;
  std::uint64_t missing_ = 0;
  std::uint64_t silent_sites_ = 0;
  std::uint64_t last_sweep_examined_ = 0;
  std::atomic<std::uint64_t> rejected_ids_{0};
};

}  // namespace lifeline::home
