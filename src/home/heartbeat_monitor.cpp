#include "home/heartbeat_monitor.h"

#include "common/log.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace lifeline::home {
namespace {

using std::chrono::seconds;

std::shared_ptr<spdlog::logger> Log() { return log::Get("heartbeats"); }

// Changes per store transaction: a dead site or a restart after a long outage can bring thousands
// at once; this keeps each transaction (and the write lock it holds on SQLite) short.
constexpr std::size_t kChangesPerTransaction = 200;
// Changes kept for a store that keeps failing; beyond this the oldest are dropped (Restore at the
// next start rebuilds from what was stored).
constexpr std::size_t kMaxPending = 100'000;

std::string_view Describe(store::HeartbeatChangeKind kind) {
  switch (kind) {
    case store::HeartbeatChangeKind::kDeviceMissing:
      return "missing";
    case store::HeartbeatChangeKind::kDeviceResumed:
      return "resumed";
    case store::HeartbeatChangeKind::kSiteSilent:
      return "site silent";
    case store::HeartbeatChangeKind::kSiteResumed:
      return "site resumed";
  }
  return "?";
}

std::string Subject(const store::HeartbeatChange& change) {
  if (change.kind == store::HeartbeatChangeKind::kSiteSilent ||
      change.kind == store::HeartbeatChangeKind::kSiteResumed) {
    return fmt::format("site {}/{}", change.customer, change.site);
  }
  return fmt::format("device #{}", change.device_id);
}

}  // namespace

HeartbeatTrackerOptions HeartbeatSettings::TrackerOptions() const {
  HeartbeatTrackerOptions options;
  options.grace_min = grace;
  options.grace_max = std::max(options.grace_max, grace);
  options.site_fraction = site_fraction;
  options.site_min_devices = static_cast<std::uint32_t>(site_min_devices);
  options.site_correlation = site_correlation;
  return options;
}

void DeclareHeartbeatConfig(config::Schema& schema, HeartbeatSettings& s) {
  schema.Bool("heartbeats.enabled", &s.enabled, "open tickets for devices (and sites) whose heartbeats stop")
      .Duration("heartbeats.grace", &s.grace, seconds(0), std::chrono::hours(24),
                "least wait after a device's announced heartbeat interval before its ticket opens (10% of "
                "the interval when that is more, up to 1 h)")
      .Duration("heartbeats.start_delay", &s.start_delay, seconds(0), std::chrono::hours(24),
                "after start, wait this long before the first sweep, so agents deliver the heartbeats they "
                "queued while the home was down")
      .Duration("heartbeats.sweep_interval", &s.sweep_interval, seconds(1), std::chrono::minutes(10),
                "how often overdue devices are looked for (detection within this of the deadline)")
      .Number("heartbeats.site_fraction", &s.site_fraction, 0.0, 2.0,
              "a site whose missing devices reach this share of it gets one site ticket instead of one per "
              "device; above 1 turns site tickets off")
      .Int("heartbeats.site_min_devices", &s.site_min_devices, 1, 1'000'000,
           "fewest missing devices that make a site ticket")
      .Duration("heartbeats.site_correlation", &s.site_correlation, seconds(0), std::chrono::hours(24),
                "longest a device of a site that has gone quiet waits before its own ticket opens, so a "
                "dead site opens one site ticket (0: every device at its deadline)");
}

HeartbeatMonitor::HeartbeatMonitor(store::HomeStore& store, const Clock& clock, HeartbeatSettings settings,
                                   store::HeartbeatTicketOptions tickets)
    : store_([&store]() -> store::HeartbeatRetentionStore& {
        auto* side = store::HeartbeatRetentionOf(store);
        if (side == nullptr) {
          throw std::logic_error("HeartbeatMonitor needs a store with heartbeat support");
        }
        return *side;
      }()),
      clock_(clock),
      settings_(settings),
      tickets_(std::move(tickets)),
      tracker_(settings.TrackerOptions()) {}

HeartbeatMonitor::~HeartbeatMonitor() { Stop(); }

std::uint32_t HeartbeatMonitor::SiteId(const std::string& customer, const std::string& site) {
  std::string key = customer;
  key += '\0';
  key += site;
  std::lock_guard lock(sites_mutex_);
  auto [it, inserted] = site_ids_.try_emplace(std::move(key), static_cast<std::uint32_t>(site_names_.size()));
  if (inserted) {
    site_names_.emplace_back(customer, site);
  }
  return it->second;
}

VoidResult HeartbeatMonitor::Restore() {
  auto state = store_.LoadHeartbeatState();
  if (!state) {
    Log()->error("cannot load the devices' last heartbeats: {}", state.error().message());
    return state.error();
  }
  std::size_t refused = 0;
  for (const auto& d : state->devices) {
    if (d.device_id < 0 || d.device_id >= HeartbeatTracker::kMaxId ||
        !tracker_.Restore(static_cast<std::uint32_t>(d.device_id), SiteId(d.customer, d.site), d.interval_s,
                          d.last_heartbeat_ms, d.missing_ticket_open)) {
      ++refused;
    }
  }
  for (const auto& site : state->silent_sites) {
    tracker_.RestoreSiteSilent(SiteId(site.customer, site.site), site.since_ms);
  }
  for (const std::int64_t device_id : state->inactive_with_ticket) {
    auto resolved =
        store_.ResolveHeartbeatTicket(device_id, "the device is no longer active", tickets_, clock_.NowUnixMillis());
    if (!resolved) {
      return resolved.error();
    }
  }
  if (refused > 0) {
    Log()->error("{} devices have row ids past {} and are not watched for missing heartbeats", refused,
                 HeartbeatTracker::kMaxId);
  }
  Log()->info("watching {} devices for missing heartbeats ({} open missing-heartbeat tickets, {} silent sites)",
              state->devices.size() - refused,
              std::count_if(state->devices.begin(), state->devices.end(),
                            [](const auto& d) { return d.missing_ticket_open; }),
              state->silent_sites.size());
  return {};
}

void HeartbeatMonitor::Observe(std::int64_t device_id, const std::string& customer, const std::string& site,
                               std::int64_t interval_s, std::int64_t now_ms) {
  if (device_id < 0 || device_id >= HeartbeatTracker::kMaxId) {
    return;  // counted by the tracker's rejected ids through Restore's log line
  }
  tracker_.Observe(static_cast<std::uint32_t>(device_id), SiteId(customer, site), interval_s, now_ms);
}

void HeartbeatMonitor::OnBatchCommitted(const protocol::Batch& batch, const protocol::BatchReply& reply,
                                        std::int64_t now_ms) {
  std::optional<std::int64_t> device_id;
  for (const auto& msg : batch.messages) {
    if (msg.type != protocol::MessageType::kHeartbeat) {
      continue;
    }
    const auto result = std::find_if(reply.results.begin(), reply.results.end(),
                                     [&](const auto& r) { return r.message_id == msg.id; });
    if (result == reply.results.end() || result->duplicate ||
        result->status != protocol::MessageStatus::kAccepted) {
      continue;  // the store did not record it as this device's latest heartbeat
    }
    if (!device_id) {
      auto id = store_.DeviceRowId(batch.device);
      if (!id || !*id) {
        // Its next heartbeat tries again; the sweep's store check sees the stored one meanwhile.
        Log()->warn("heartbeat from {} not tracked: {}", batch.device.Key(),
                    id ? std::string("device not found") : id.error().message());
        return;
      }
      device_id = **id;
    }
    Observe(*device_id, batch.device.customer, batch.device.site, msg.heartbeat.interval_seconds, now_ms);
  }
}

VoidResult HeartbeatMonitor::OnDeviceRevoked(const protocol::DeviceIdentity& device) {
  auto id = store_.DeviceRowId(device);
  if (!id) {
    return id.error();
  }
  if (!*id) {
    return {};
  }
  if (**id >= 0 && **id < HeartbeatTracker::kMaxId) {
    tracker_.Forget(static_cast<std::uint32_t>(**id));
  }
  // Whether or not this home's tracker had reported it: another home may have opened the ticket.
  auto resolved = store_.ResolveHeartbeatTicket(**id, "the device was revoked", tickets_, clock_.NowUnixMillis());
  if (!resolved) {
    return resolved.error();
  }
  return {};
}

store::HeartbeatChange HeartbeatMonitor::ToChange(const HeartbeatEvent& event) const {
  store::HeartbeatChange change;
  switch (event.kind) {
    case HeartbeatEventKind::kDeviceMissing:
      change.kind = store::HeartbeatChangeKind::kDeviceMissing;
      break;
    case HeartbeatEventKind::kDeviceResumed:
      change.kind = store::HeartbeatChangeKind::kDeviceResumed;
      break;
    case HeartbeatEventKind::kSiteSilent:
      change.kind = store::HeartbeatChangeKind::kSiteSilent;
      break;
    case HeartbeatEventKind::kSiteResumed:
      change.kind = store::HeartbeatChangeKind::kSiteResumed;
      break;
  }
  change.device_id = event.device;
  change.last_heartbeat_ms = event.last_heartbeat_ms;
  change.deadline_ms = event.deadline_ms;
  change.interval_s = event.interval_seconds;
  change.missing = event.missing;
  change.tracked = event.tracked;
  if (event.kind == HeartbeatEventKind::kSiteSilent || event.kind == HeartbeatEventKind::kSiteResumed) {
    std::lock_guard lock(sites_mutex_);
    if (event.site < site_names_.size()) {
      change.customer = site_names_[event.site].first;
      change.site = site_names_[event.site].second;
    }
  }
  return change;
}

Result<std::vector<store::HeartbeatApplied>> HeartbeatMonitor::SweepOnce() {
  std::lock_guard sweep_lock(sweep_mutex_);
  const std::int64_t now_ms = clock_.NowUnixMillis();
  for (const auto& event : tracker_.Sweep(now_ms)) {
    pending_.push_back(ToChange(event));
  }
  if (pending_.size() > kMaxPending) {
    const std::size_t dropped = pending_.size() - kMaxPending;
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(dropped));
    Log()->error("the store has failed for a while: {} missing-heartbeat changes dropped (a restart restores "
                 "them from the stored heartbeats)",
                 dropped);
  }
  std::vector<store::HeartbeatApplied> outcomes;
  HeartbeatMonitorStats counts;
  std::size_t done = 0;
  std::error_code failure;
  while (done < pending_.size()) {
    const std::size_t end = std::min(pending_.size(), done + kChangesPerTransaction);
    const std::vector<store::HeartbeatChange> chunk(pending_.begin() + static_cast<std::ptrdiff_t>(done),
                                                    pending_.begin() + static_cast<std::ptrdiff_t>(end));
    auto applied = store_.ApplyHeartbeatChanges(chunk, tickets_, now_ms);
    if (!applied) {
      failure = applied.error();
      ++counts.store_failures;
      Log()->error("missing-heartbeat tickets not updated ({} changes wait for the next sweep): {}",
                   pending_.size() - done, failure.message());
      break;
    }
    for (std::size_t i = 0; i < chunk.size() && i < applied->size(); ++i) {
      const auto& change = chunk[i];
      const auto& outcome = (*applied)[i];
      switch (outcome.outcome) {
        case store::HeartbeatOutcome::kOpened:
          ++counts.tickets_opened;
          Log()->warn("{} {}: ticket {} opened", Subject(change), Describe(change.kind), outcome.ticket_number);
          break;
        case store::HeartbeatOutcome::kResolved:
          ++counts.tickets_resolved;
          Log()->info("{} {}: ticket {} resolved", Subject(change), Describe(change.kind), outcome.ticket_number);
          break;
        case store::HeartbeatOutcome::kAlreadyOpen:
          ++counts.already_open;
          break;
        case store::HeartbeatOutcome::kNothingOpen:
          break;
        case store::HeartbeatOutcome::kDeviceInactive:
          if (change.kind == store::HeartbeatChangeKind::kDeviceMissing ||
              change.kind == store::HeartbeatChangeKind::kDeviceResumed) {
            tracker_.Forget(static_cast<std::uint32_t>(change.device_id));
          }
          break;
        case store::HeartbeatOutcome::kStale:
          ++counts.stale;
          for (const auto& d : outcome.refreshed) {
            Observe(d.device_id, d.customer, d.site, d.interval_s, d.last_heartbeat_ms);
          }
          break;
      }
    }
    outcomes.insert(outcomes.end(), applied->begin(), applied->end());
    done = end;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(done));
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.sweeps;
    stats_.tickets_opened += counts.tickets_opened;
    stats_.tickets_resolved += counts.tickets_resolved;
    stats_.already_open += counts.already_open;
    stats_.stale += counts.stale;
    stats_.store_failures += counts.store_failures;
    stats_.pending_changes = static_cast<std::int64_t>(pending_.size());
  }
  if (failure) {
    return Fail(failure);
  }
  return outcomes;
}

void HeartbeatMonitor::Start() {
  std::lock_guard lock(thread_mutex_);
  if (thread_.joinable()) {
    return;
  }
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
}

void HeartbeatMonitor::Stop() {
  {
    std::lock_guard lock(thread_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void HeartbeatMonitor::Run() {
  std::unique_lock lock(thread_mutex_);
  if (settings_.start_delay.count() > 0) {
    Log()->info("first missing-heartbeat sweep in {} s (heartbeats.start_delay)", settings_.start_delay.count());
    if (stop_cv_.wait_for(lock, settings_.start_delay, [this] { return stopping_; })) {
      return;
    }
  }
  while (!stopping_) {
    lock.unlock();
    (void)SweepOnce();  // failures are logged and retried at the next sweep
    lock.lock();
    stop_cv_.wait_for(lock, settings_.sweep_interval, [this] { return stopping_; });
  }
}

HeartbeatMonitorStats HeartbeatMonitor::Stats() const {
  HeartbeatMonitorStats stats;
  {
    std::lock_guard lock(stats_mutex_);
    stats = stats_;
  }
  stats.tracker = tracker_.Stats();
  return stats;
}

}  // namespace lifeline::home
