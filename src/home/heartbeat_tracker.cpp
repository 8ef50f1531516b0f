#include "home/heartbeat_tracker.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lifeline::home {

namespace {

// Times are kept as seconds since 2020-01-01T00:00:00Z in 32 bits (good until 2156), so a device's
// last heartbeat, interval and flags share one 64-bit atomic word.
constexpr std::int64_t kEpochSeconds = 1'577'836'800;

// The device's word: last heartbeat (bits 63..32), clamped interval (31..8), flags (7..0).
constexpr std::uint64_t kTracked = 1;
constexpr std::uint64_t kMissing = 2;  // set by the sweeper, cleared only under the lock
constexpr std::uint32_t kIntervalLimit = (1u << 24) - 1;

constexpr std::uint32_t Last(std::uint64_t word) { return static_cast<std::uint32_t>(word >> 32); }
constexpr std::uint32_t Interval(std::uint64_t word) {
  return static_cast<std::uint32_t>(word >> 8) & kIntervalLimit;
}
constexpr std::uint64_t Pack(std::uint32_t last, std::uint32_t interval, std::uint64_t flags) {
  return (static_cast<std::uint64_t>(last) << 32) | (static_cast<std::uint64_t>(interval) << 8) |
         flags;
}

// Chunked arrays: addresses never move, so Observe can read slots without the lock.
constexpr std::uint32_t kSlotChunkBits = 14;  // 16,384 slots (384 KiB) per chunk
constexpr std::uint32_t kSlotChunk = 1u << kSlotChunkBits;
constexpr std::uint32_t kSlotChunks = HeartbeatTracker::kMaxId >> kSlotChunkBits;
constexpr std::uint32_t kSiteChunkBits = 12;  // 4,096 sites (112 KiB) per chunk
constexpr std::uint32_t kSiteChunk = 1u << kSiteChunkBits;
constexpr std::uint32_t kSiteChunks = HeartbeatTracker::kMaxId >> kSiteChunkBits;

// The timing wheel: one-second buckets over 4.5 h. A longer deadline waits in the bucket of its
// second modulo the wheel and is looked at once per turn until it is near.
constexpr std::uint32_t kWheelBits = 14;
constexpr std::uint32_t kWheelSize = 1u << kWheelBits;
constexpr std::uint32_t kWheelMask = kWheelSize - 1;

// List nodes: device ids below kSentinel; sentinels (list heads) above it. Every list is circular
// through its sentinel, so unlinking never needs to know which list a device is in.
constexpr std::uint32_t kSentinel = 1u << 31;
constexpr std::uint32_t kResumedList = kWheelSize;      // devices whose kDeviceResumed is due
constexpr std::uint32_t kFreshList = kWheelSize + 1;    // newly missing, during a sweep
constexpr std::uint32_t kScratchList = kWheelSize + 2;  // the bucket being processed
constexpr std::uint32_t kFixedSentinels = kWheelSize + 3;
// Site s's list of missing devices its silent site event covers: sentinel kFixedSentinels + s.

std::uint32_t HeartbeatSecond(std::int64_t ms) {
  // Rounded up, so a deadline never falls before interval + grace have fully passed.
  const std::int64_t seconds = ms >= 0 ? (ms + 999) / 1000 : -((-ms) / 1000);
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(
      seconds - kEpochSeconds, 0, std::numeric_limits<std::uint32_t>::max()));
}

std::uint64_t NowSecond(std::int64_t ms) {
  const std::int64_t seconds = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
  return static_cast<std::uint64_t>(std::max<std::int64_t>(seconds - kEpochSeconds, 0));
}

std::int64_t ToMillis(std::uint64_t seconds_since_epoch) {
  return (static_cast<std::int64_t>(seconds_since_epoch) + kEpochSeconds) * 1000;
}

}  // namespace

// Where a device is; changed only under the lock.
enum class DeviceState : std::uint8_t {
  kIdle,               // not tracked, in no list
  kWheel,              // in a wheel bucket at or before its deadline
  kWheelReported,      // restored with a ticket open: in the next sweep's bucket, to be checked
  kResumeReported,     // in the resumed list: its kDeviceResumed goes out at the next sweep
  kMissingFresh,       // in the fresh list during a sweep
  kMissingReported,    // its kDeviceMissing stands; in no list
  kMissingSuppressed,  // missing, not reported on its own: covered by its silent site, or held
                       // while its site is judged; in the site's list
};

struct HeartbeatTracker::Slot {
  std::atomic<std::uint64_t> word{0};
  std::atomic<std::uint32_t> site{kNoSite};
  Link link;
  DeviceState state = DeviceState::kIdle;
};

struct HeartbeatTracker::Site {
  std::uint32_t tracked = 0;
  std::uint32_t missing = 0;
  Link covered;  // sentinel of the list of its kMissingSuppressed devices
  // The latest heartbeat second of any of its devices; raised by Observe without the lock.
  std::atomic<std::uint32_t> last_beat{0};
  // Silent: the second it went silent. Holding devices: the second the latest was held (or the
  // site resumed), from which the wait is counted.
  std::uint32_t since = 0;
  bool silent = false;
  bool dirty = false;  // in dirty_sites_: to judge at the next sweep
  // The held devices wait for a sign of life from the site (else only for the time: after the site
  // resumed).
  bool quiet_hold = false;
};

HeartbeatTracker::HeartbeatTracker(HeartbeatTrackerOptions options)
    : options_(options),
      slot_chunks_(new std::atomic<Slot*>[kSlotChunks]),
      site_chunks_(new std::atomic<Site*>[kSiteChunks]),
      sentinels_(kFixedSentinels) {
  static_assert(sizeof(Slot) == 24, "the per-device budget in heartbeat_tracker.h");
  static_assert(sizeof(Site) == 28, "the per-site budget in heartbeat_tracker.h");
  using std::chrono::seconds;
  options_.max_interval = std::clamp(options_.max_interval, seconds(1), seconds(kIntervalLimit));
  options_.min_interval = std::clamp(options_.min_interval, seconds(1), options_.max_interval);
  if (options_.default_interval <= seconds(0)) {
    options_.default_interval = HeartbeatTrackerOptions{}.default_interval;
  }
  options_.default_interval =
      std::clamp(options_.default_interval, options_.min_interval, options_.max_interval);
  options_.grace_min = std::max(options_.grace_min, seconds(0));
  options_.grace_max = std::max(options_.grace_max, options_.grace_min);
  options_.grace_fraction = std::max(options_.grace_fraction, 0.0);
  options_.site_min_devices = std::max<std::uint32_t>(options_.site_min_devices, 1);
  options_.site_correlation = std::clamp(options_.site_correlation, seconds(0), seconds(kIntervalLimit));
  for (std::uint32_t i = 0; i < kSlotChunks; ++i) {
    slot_chunks_[i].store(nullptr, std::memory_order_relaxed);
  }
  for (std::uint32_t i = 0; i < kSiteChunks; ++i) {
    site_chunks_[i].store(nullptr, std::memory_order_relaxed);
  }
  for (std::uint32_t i = 0; i < kFixedSentinels; ++i) {
    sentinels_[i] = {kSentinel + i, kSentinel + i};
  }
}

HeartbeatTracker::~HeartbeatTracker() {
  for (std::uint32_t i = 0; i < kSlotChunks; ++i) {
    delete[] slot_chunks_[i].load(std::memory_order_relaxed);
  }
  for (std::uint32_t i = 0; i < kSiteChunks; ++i) {
    delete[] site_chunks_[i].load(std::memory_order_relaxed);
  }
}

std::chrono::seconds HeartbeatTracker::GraceFor(std::chrono::seconds interval) const {
  const auto scaled = std::chrono::seconds(
      static_cast<std::int64_t>(static_cast<double>(interval.count()) * options_.grace_fraction));
  return std::clamp(scaled, options_.grace_min, options_.grace_max);
}

std::uint32_t HeartbeatTracker::ClampInterval(std::int64_t interval_seconds) const {
  if (interval_seconds <= 0) {
    return static_cast<std::uint32_t>(options_.default_interval.count());
  }
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(
      interval_seconds, options_.min_interval.count(), options_.max_interval.count()));
}

std::uint64_t HeartbeatTracker::Deadline(std::uint64_t word) const {
  const std::uint32_t interval = Interval(word);
  return std::uint64_t{Last(word)} + interval +
         static_cast<std::uint64_t>(GraceFor(std::chrono::seconds(interval)).count());
}

bool HeartbeatTracker::Grouping() const { return options_.site_fraction <= 1.0; }

bool HeartbeatTracker::Holding() const {
  return Grouping() && options_.site_correlation.count() > 0;
}

bool HeartbeatTracker::SiteCondition(const Site& site) const {
  return Grouping() && site.missing >= options_.site_min_devices &&
         static_cast<double>(site.missing) >= options_.site_fraction * site.tracked;
}

// ---- storage and lists (under the lock, except FindSlot)

HeartbeatTracker::Slot* HeartbeatTracker::FindSlot(std::uint32_t device) const {
  Slot* chunk = slot_chunks_[device >> kSlotChunkBits].load(std::memory_order_acquire);
  return chunk == nullptr ? nullptr : &chunk[device & (kSlotChunk - 1)];
}

HeartbeatTracker::Slot& HeartbeatTracker::EnsureSlot(std::uint32_t device) {
  auto& entry = slot_chunks_[device >> kSlotChunkBits];
  Slot* chunk = entry.load(std::memory_order_acquire);
  if (chunk == nullptr) {
    chunk = new Slot[kSlotChunk];
    entry.store(chunk, std::memory_order_release);
    ++slot_chunk_count_;
  }
  return chunk[device & (kSlotChunk - 1)];
}

HeartbeatTracker::Site& HeartbeatTracker::EnsureSite(std::uint32_t site) {
  auto& entry = site_chunks_[site >> kSiteChunkBits];
  Site* chunk = entry.load(std::memory_order_acquire);
  if (chunk == nullptr) {
    chunk = new Site[kSiteChunk];
    const std::uint32_t first = (site >> kSiteChunkBits) << kSiteChunkBits;
    for (std::uint32_t i = 0; i < kSiteChunk; ++i) {
      const std::uint32_t sentinel = kSentinel + kFixedSentinels + first + i;
      chunk[i].covered = {sentinel, sentinel};
    }
    entry.store(chunk, std::memory_order_release);
    ++site_chunk_count_;
  }
  return chunk[site & (kSiteChunk - 1)];
}

HeartbeatTracker::Site& HeartbeatTracker::SiteAt(std::uint32_t site) {
  return site_chunks_[site >> kSiteChunkBits].load(std::memory_order_acquire)
      [site & (kSiteChunk - 1)];
}

void HeartbeatTracker::NoteBeat(std::uint32_t site, std::uint32_t last_s) {
  // Without the lock: the site's chunk exists once one of its devices is tracked, and chunks never
  // move. Most heartbeats of a busy site land on a second already noted: one load, no write.
  if (site == kNoSite) {
    return;
  }
  Site* chunk = site_chunks_[site >> kSiteChunkBits].load(std::memory_order_acquire);
  if (chunk == nullptr) {
    return;
  }
  auto& last_beat = chunk[site & (kSiteChunk - 1)].last_beat;
  std::uint32_t seen = last_beat.load(std::memory_order_relaxed);
  while (seen < last_s &&
         !last_beat.compare_exchange_weak(seen, last_s, std::memory_order_relaxed)) {
  }
}

HeartbeatTracker::Link& HeartbeatTracker::LinkOf(std::uint32_t node) {
  if (node < kSentinel) {
    return FindSlot(node)->link;
  }
  const std::uint32_t index = node - kSentinel;
  if (index < kFixedSentinels) {
    return sentinels_[index];
  }
  return SiteAt(index - kFixedSentinels).covered;
}

void HeartbeatTracker::Unlink(std::uint32_t node) {
  const Link link = LinkOf(node);
  LinkOf(link.prev).next = link.next;
  LinkOf(link.next).prev = link.prev;
}

void HeartbeatTracker::PushBack(std::uint32_t list, std::uint32_t node) {
  Link& head = LinkOf(list);
  const std::uint32_t tail = head.prev;
  LinkOf(node) = {tail, list};
  LinkOf(tail).next = node;
  head.prev = node;
}

bool HeartbeatTracker::Empty(std::uint32_t list) { return LinkOf(list).next == list; }

void HeartbeatTracker::LinkWheel(std::uint32_t device, std::uint64_t deadline_s) {
  // A deadline the wheel has already passed goes to the next second it processes.
  const std::uint64_t second = swept_ && deadline_s < cursor_ ? cursor_ : deadline_s;
  PushBack(kSentinel + static_cast<std::uint32_t>(second & kWheelMask), device);
}

void HeartbeatTracker::LinkNextSweep(std::uint32_t device) {
  PushBack(kSentinel + static_cast<std::uint32_t>(cursor_ & kWheelMask), device);
}

void HeartbeatTracker::MarkDirty(std::uint32_t site) {
  if (site == kNoSite) {
    return;
  }
  Site& record = SiteAt(site);
  if (!record.dirty) {
    record.dirty = true;
    dirty_sites_.push_back(site);
  }
}

HeartbeatEvent HeartbeatTracker::DeviceEvent(HeartbeatEventKind kind, std::uint32_t device,
                                             std::uint64_t word) const {
  HeartbeatEvent event;
  event.kind = kind;
  event.device = device;
  event.site = FindSlot(device)->site.load(std::memory_order_relaxed);
  event.last_heartbeat_ms = ToMillis(Last(word));
  event.deadline_ms = ToMillis(Deadline(word));
  event.interval_seconds = Interval(word);
  return event;
}

// ---- heartbeats

bool HeartbeatTracker::Observe(std::uint32_t device, std::uint32_t site,
                               std::int64_t interval_seconds, std::int64_t now_ms) {
  if (device >= kMaxId || (site >= kMaxId && site != kNoSite)) {
    rejected_ids_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const std::uint32_t interval = ClampInterval(interval_seconds);
  const std::uint32_t last = HeartbeatSecond(now_ms);

  // The common case, a tracked device on time moving its deadline on: one compare-and-swap. The
  // sweeper finds it in its old bucket later and moves it (see the header).
  if (Slot* slot = FindSlot(device)) {
    std::uint64_t word = slot->word.load(std::memory_order_acquire);
    while ((word & kTracked) != 0 && (word & kMissing) == 0 &&
           slot->site.load(std::memory_order_relaxed) == site) {
      if (last < Last(word)) {
        return true;  // an older heartbeat than one already counted
      }
      const std::uint64_t next = Pack(last, interval, kTracked);
      if (next == word) {
        return true;
      }
      if (Deadline(next) < Deadline(word)) {
        break;  // a shorter interval: the device must move to an earlier bucket, under the lock
      }
      if (slot->word.compare_exchange_weak(word, next, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
        NoteBeat(site, last);
        return true;
      }
    }
  }
  std::lock_guard lock(mutex_);
  ObserveLocked(device, site, interval, last);
  return true;
}

void HeartbeatTracker::ObserveLocked(std::uint32_t device, std::uint32_t site,
                                     std::uint32_t interval, std::uint32_t last) {
  Slot& slot = EnsureSlot(device);
  std::uint64_t word = slot.word.load(std::memory_order_acquire);
  if ((word & kTracked) == 0) {
    const std::uint64_t next = Pack(last, interval, kTracked);
    slot.word.store(next, std::memory_order_release);
    slot.site.store(site, std::memory_order_relaxed);
    if (site != kNoSite) {
      ++EnsureSite(site).tracked;
      MarkDirty(site);
      NoteBeat(site, last);
    }
    ++tracked_;
    slot.state = DeviceState::kWheel;
    LinkWheel(device, Deadline(next));
    return;
  }

  const std::uint32_t old_site = slot.site.load(std::memory_order_relaxed);
  if ((word & kMissing) != 0) {
    if (last <= Last(word)) {
      return;  // not a sign of life after the deadline
    }
    // Only this path clears kMissing, and it holds the lock; Observe's lock-free path leaves a
    // missing word alone, so a plain store is safe.
    const std::uint64_t next = Pack(last, interval, kTracked);
    slot.word.store(next, std::memory_order_release);
    if (old_site != kNoSite) {
      --SiteAt(old_site).missing;
      MarkDirty(old_site);
    }
    --missing_;
    if (slot.state == DeviceState::kMissingSuppressed) {
      Unlink(device);  // its site's event covered it: it resumes without an event of its own
      slot.state = DeviceState::kWheel;
      LinkWheel(device, Deadline(next));
    } else {
      slot.state = DeviceState::kResumeReported;
      PushBack(kSentinel + kResumedList, device);
    }
  } else {
    while (last >= Last(word)) {
      const std::uint64_t next = Pack(last, interval, kTracked);
      if (slot.word.compare_exchange_weak(word, next, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
        // Its bucket is at or before the old deadline; an earlier deadline needs an earlier bucket.
        if (slot.state == DeviceState::kWheel && Deadline(next) < Deadline(word)) {
          Unlink(device);
          LinkWheel(device, Deadline(next));
        }
        break;
      }
    }
  }

  if (site != old_site) {
    if (old_site != kNoSite) {
      --SiteAt(old_site).tracked;
      MarkDirty(old_site);
    }
    if (site != kNoSite) {
      ++EnsureSite(site).tracked;
      MarkDirty(site);
    }
    slot.site.store(site, std::memory_order_relaxed);
  }
  NoteBeat(site, last);
}

bool HeartbeatTracker::Forget(std::uint32_t device) {
  if (device >= kMaxId) {
    rejected_ids_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::lock_guard lock(mutex_);
  Slot* slot = FindSlot(device);
  if (slot == nullptr) {
    return false;
  }
  const std::uint64_t word = slot->word.exchange(0, std::memory_order_acq_rel);
  if ((word & kTracked) == 0) {
    return false;
  }
  const DeviceState state = slot->state;
  const std::uint32_t site = slot->site.load(std::memory_order_relaxed);
  const bool counted_missing =
      state == DeviceState::kMissingReported || state == DeviceState::kMissingSuppressed;
  if (state != DeviceState::kMissingReported && state != DeviceState::kIdle) {
    Unlink(device);
  }
  if (site != kNoSite) {
    Site& record = SiteAt(site);
    --record.tracked;
    if (counted_missing) {
      --record.missing;
    }
    MarkDirty(site);
  }
  --tracked_;
  if (counted_missing) {
    --missing_;
  }
  slot->state = DeviceState::kIdle;
  return state == DeviceState::kMissingReported || state == DeviceState::kResumeReported ||
         state == DeviceState::kWheelReported;
}

bool HeartbeatTracker::Restore(std::uint32_t device, std::uint32_t site,
                               std::int64_t interval_seconds, std::int64_t last_heartbeat_ms,
                               bool reported_missing) {
  if (device >= kMaxId || (site >= kMaxId && site != kNoSite)) {
    rejected_ids_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::lock_guard lock(mutex_);
  ObserveLocked(device, site, ClampInterval(interval_seconds), HeartbeatSecond(last_heartbeat_ms));
  Slot& slot = *FindSlot(device);
  if (!reported_missing) {
    return true;
  }
  // A ticket is open: the next sweep checks the device, and either keeps the ticket without a
  // second kDeviceMissing or sends the kDeviceResumed that closes it.
  if (slot.state == DeviceState::kWheel) {
    Unlink(device);
    slot.state = DeviceState::kWheelReported;
    LinkNextSweep(device);
  } else if (slot.state == DeviceState::kMissingSuppressed) {
    Unlink(device);
    slot.state = DeviceState::kMissingReported;
  }
  return true;
}

bool HeartbeatTracker::RestoreSiteSilent(std::uint32_t site, std::int64_t silent_since_ms) {
  if (site >= kMaxId) {
    rejected_ids_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::lock_guard lock(mutex_);
  Site& record = EnsureSite(site);
  if (!record.silent) {
    record.silent = true;
    record.since = HeartbeatSecond(silent_since_ms);
    ++silent_sites_;
    MarkDirty(site);
  }
  return true;
}

// ---- the sweep

void HeartbeatTracker::ProcessBucket(std::uint32_t bucket, std::uint64_t now_s,
                                     std::vector<HeartbeatEvent>& events) {
  // Move the bucket's list to the scratch list, so devices put back into this bucket (a deadline a
  // whole turn of the wheel away) wait for the next turn.
  Link& head = sentinels_[bucket];
  if (head.next == kSentinel + bucket) {
    return;
  }
  Link& scratch = sentinels_[kScratchList];
  scratch = head;
  LinkOf(head.next).prev = kSentinel + kScratchList;
  LinkOf(head.prev).next = kSentinel + kScratchList;
  head = {kSentinel + bucket, kSentinel + bucket};

  while (scratch.next != kSentinel + kScratchList) {
    const std::uint32_t device = scratch.next;
    Unlink(device);
    ++last_sweep_examined_;
    Slot& slot = *FindSlot(device);
    std::uint64_t word = slot.word.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t deadline = Deadline(word);
      if (deadline > now_s) {
        if (slot.state == DeviceState::kWheelReported) {
          events.push_back(DeviceEvent(HeartbeatEventKind::kDeviceResumed, device, word));
          slot.state = DeviceState::kWheel;
        }
        LinkWheel(device, deadline);
        break;
      }
      // A heartbeat landing meanwhile makes the exchange fail; then look again.
      if (slot.word.compare_exchange_weak(word, word | kMissing, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
        const std::uint32_t site = slot.site.load(std::memory_order_relaxed);
        if (site != kNoSite) {
          ++SiteAt(site).missing;
          MarkDirty(site);
        }
        ++missing_;
        if (slot.state == DeviceState::kWheelReported) {
          slot.state = DeviceState::kMissingReported;  // its ticket from before the restart stands
        } else {
          slot.state = DeviceState::kMissingFresh;
          PushBack(kSentinel + kFreshList, device);
        }
        break;
      }
    }
  }
}

std::vector<HeartbeatEvent> HeartbeatTracker::Sweep(std::int64_t now_ms) {
  std::vector<HeartbeatEvent> events;
  std::lock_guard lock(mutex_);
  const std::uint64_t now_s = NowSecond(now_ms);
  last_sweep_examined_ = 0;

  // 1. Devices that resumed since the last sweep.
  while (!Empty(kSentinel + kResumedList)) {
    const std::uint32_t device = sentinels_[kResumedList].next;
    Unlink(device);
    Slot& slot = *FindSlot(device);
    const std::uint64_t word = slot.word.load(std::memory_order_acquire);
    events.push_back(DeviceEvent(HeartbeatEventKind::kDeviceResumed, device, word));
    slot.state = DeviceState::kWheel;
    LinkWheel(device, Deadline(word));
  }

  // 2. The wheel's seconds up to now. After a gap of a whole turn (and at the first sweep, when
  // Restore may have filled any bucket) every bucket once.
  if (!swept_ || now_s >= cursor_ + kWheelMask) {
    for (std::uint32_t i = 0; i < kWheelSize; ++i) {
      ProcessBucket(static_cast<std::uint32_t>((cursor_ + i) & kWheelMask), now_s, events);
    }
  } else {
    for (std::uint64_t second = cursor_; second <= now_s; ++second) {
      ProcessBucket(static_cast<std::uint32_t>(second & kWheelMask), now_s, events);
    }
  }
  if (!swept_ || now_s + 1 > cursor_) {
    cursor_ = now_s + 1;
  }
  swept_ = true;

  // 3. Newly missing devices of a site that has sent nothing since they were due: held.
  HoldQuietSites(now_s);

  // 4. Sites whose counts changed, and every site silent or holding devices, with every newly
  // missing device already counted, so devices falling silent together are judged together.
  for (const std::uint32_t site : watched_sites_) {
    MarkDirty(site);
  }
  watched_sites_.clear();
  for (std::size_t i = 0; i < dirty_sites_.size(); ++i) {
    EvaluateSite(dirty_sites_[i], now_s, events);
  }
  dirty_sites_.clear();

  // 5. The other newly missing devices: covered by their silent site, or reported one by one.
  while (!Empty(kSentinel + kFreshList)) {
    const std::uint32_t device = sentinels_[kFreshList].next;
    Unlink(device);
    Slot& slot = *FindSlot(device);
    const std::uint32_t site = slot.site.load(std::memory_order_relaxed);
    if (site != kNoSite && SiteAt(site).silent) {
      slot.state = DeviceState::kMissingSuppressed;
      PushBack(kSentinel + kFixedSentinels + site, device);
    } else {
      slot.state = DeviceState::kMissingReported;
      events.push_back(DeviceEvent(HeartbeatEventKind::kDeviceMissing, device,
                                   slot.word.load(std::memory_order_acquire)));
    }
  }
  return events;
}

void HeartbeatTracker::HoldQuietSites(std::uint64_t now_s) {
  if (!Holding()) {
    return;
  }
  const std::uint32_t fresh = kSentinel + kFreshList;
  for (std::uint32_t device = sentinels_[kFreshList].next; device != fresh;) {
    Slot& slot = *FindSlot(device);
    const std::uint32_t next = slot.link.next;
    const std::uint32_t site = slot.site.load(std::memory_order_relaxed);
    if (site != kNoSite) {
      Site& record = SiteAt(site);
      const std::uint64_t word = slot.word.load(std::memory_order_acquire);
      // When it was due to beat (without grace). A device of a dead site was alive until the
      // site died, so it was due after the site's last heartbeat; anything heard from the site at
      // or after that second shows the site lives.
      const std::uint64_t due = std::uint64_t{Last(word)} + Interval(word);
      if (!record.silent && record.tracked >= options_.site_min_devices &&
          record.last_beat.load(std::memory_order_relaxed) < due) {
        Unlink(device);
        slot.state = DeviceState::kMissingSuppressed;
        PushBack(kSentinel + kFixedSentinels + site, device);
        record.quiet_hold = true;
        record.since = static_cast<std::uint32_t>(now_s);
        MarkDirty(site);
      }
    }
    device = next;
  }
}

void HeartbeatTracker::ReleaseHeld(std::uint32_t site, std::vector<HeartbeatEvent>& events) {
  Site& record = SiteAt(site);
  const std::uint32_t list = kSentinel + kFixedSentinels + site;
  while (!Empty(list)) {
    const std::uint32_t device = record.covered.next;
    Unlink(device);
    Slot& slot = *FindSlot(device);
    slot.state = DeviceState::kMissingReported;
    events.push_back(DeviceEvent(HeartbeatEventKind::kDeviceMissing, device,
                                 slot.word.load(std::memory_order_acquire)));
  }
  record.quiet_hold = false;
}

void HeartbeatTracker::EvaluateSite(std::uint32_t site, std::uint64_t now_s,
                                    std::vector<HeartbeatEvent>& events) {
  Site& record = SiteAt(site);
  record.dirty = false;
  const std::uint32_t list = kSentinel + kFixedSentinels + site;
  const std::uint32_t last_beat = record.last_beat.load(std::memory_order_relaxed);
  HeartbeatEvent event;
  event.site = site;
  event.last_heartbeat_ms = last_beat == 0 ? 0 : ToMillis(last_beat);

  if (record.silent) {
    // It stays silent while most of it is missing, or while enough is missing and nothing at all
    // has come from it since it went silent.
    const bool quiet = last_beat < record.since;
    if (!SiteCondition(record) &&
        !(Grouping() && quiet && record.missing >= options_.site_min_devices)) {
      record.silent = false;
      --silent_sites_;
      event.kind = HeartbeatEventKind::kSiteResumed;
      event.missing = record.missing;
      event.tracked = record.tracked;
      events.push_back(event);
      if (Holding()) {
        // Devices of a site that comes back rarely come back in the same second: give the rest
        // of them the same wait before they count as missing on their own.
        record.since = static_cast<std::uint32_t>(now_s);
        record.quiet_hold = false;
      } else {
        ReleaseHeld(site, events);
      }
    }
  } else {
    if (record.quiet_hold && last_beat >= record.since && !Empty(list)) {
      ReleaseHeld(site, events);  // the site lives: its held devices are missing on their own
    }
    const bool correlated = record.quiet_hold && record.missing >= options_.site_min_devices;
    if (SiteCondition(record) || correlated) {
      record.silent = true;
      record.quiet_hold = false;
      record.since = static_cast<std::uint32_t>(now_s);
      ++silent_sites_;
      event.kind = HeartbeatEventKind::kSiteSilent;
      event.missing = record.missing;
      event.tracked = record.tracked;
      events.push_back(event);
    } else if (!Empty(list) &&
               now_s >= record.since + static_cast<std::uint64_t>(options_.site_correlation.count())) {
      ReleaseHeld(site, events);
    }
  }
  if (record.silent || !Empty(list)) {
    watched_sites_.push_back(site);
  }
}

// ---- figures

std::size_t HeartbeatTracker::MemoryBytes() const {
  std::lock_guard lock(mutex_);
  std::size_t bytes = sizeof(*this);
  bytes += std::size_t{kSlotChunks} * sizeof(std::atomic<Slot*>);
  bytes += slot_chunk_count_ * std::size_t{kSlotChunk} * sizeof(Slot);
  bytes += std::size_t{kSiteChunks} * sizeof(std::atomic<Site*>);
  bytes += site_chunk_count_ * std::size_t{kSiteChunk} * sizeof(Site);
  bytes += sentinels_.capacity() * sizeof(Link);
  bytes += (dirty_sites_.capacity() + watched_sites_.capacity()) * sizeof(std::uint32_t);
  return bytes;
}

HeartbeatTrackerStats HeartbeatTracker::Stats() const {
  HeartbeatTrackerStats stats;
  {
    std::lock_guard lock(mutex_);
    stats.tracked_devices = tracked_;
    stats.missing_devices = missing_;
    stats.silent_sites = silent_sites_;
    stats.last_sweep_examined = last_sweep_examined_;
    // Held devices are the lists of the watched sites that are not silent (a few at most). The
    // list helpers are not const; nothing here writes.
    auto* self = const_cast<HeartbeatTracker*>(this);
    for (const std::uint32_t site : watched_sites_) {
      const Site& record = self->SiteAt(site);
      const std::uint32_t list = kSentinel + kFixedSentinels + site;
      for (std::uint32_t node = record.covered.next; !record.silent && node != list;
           node = self->LinkOf(node).next) {
        ++stats.held_devices;
      }
    }
  }
  stats.rejected_ids = rejected_ids_.load(std::memory_order_relaxed);
  stats.memory_bytes = MemoryBytes();
  return stats;
}

}  // namespace lifeline::home
