#include "home/retention_job.h"

#include "common/log.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <random>
#include <stdexcept>

namespace lifeline::home {
namespace {

using std::chrono::seconds;
namespace json = boost::json;

std::shared_ptr<spdlog::logger> Log() { return log::Get("retention"); }

constexpr std::int64_t kHourMs = 3'600'000;
constexpr std::int64_t kDayMs = 24 * kHourMs;
// Longest one run may hold the lease; a home that dies mid-run frees it after this. A run deletes
// in short transactions and can stop anywhere, so the next one carries on.
constexpr std::int64_t kLeaseMs = kHourMs;

std::int64_t Ms(seconds s) { return s.count() * 1000; }

std::string Time(std::int64_t ms) {
  return ms <= 0 ? std::string() : FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

std::string Holder() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) {
    host[0] = '\0';
  }
  return fmt::format("{}:{}:{:04x}", host.data(), getpid(), std::random_device{}() & 0xffff);
}

}  // namespace

store::RetentionPolicy RetentionSettings::Policy(seconds max_clock_skew) const {
  store::RetentionPolicy p;
  p.alerts_ms = Ms(alerts);
  p.heartbeats_ms = Ms(heartbeats);
  p.inventory_ms = Ms(inventory);
  p.problem_data_ms = Ms(problem_data);
  p.performance_raw_ms = Ms(performance_raw);
  p.performance_daily_ms = Ms(performance_daily);
  p.tickets_ms = Ms(tickets);
  p.notifications_ms = Ms(notifications);
  p.batch_ids_ms = batch_ids.count() == 0 ? 0 : std::max(Ms(batch_ids), 2 * Ms(max_clock_skew) + kHourMs);
  return p;
}

void DeclareRetentionConfig(config::Schema& schema, RetentionSettings& s) {
  const seconds kForever = std::chrono::days(36500);
  const std::string keep = " (0: keep for ever)";
  schema.Bool("retention.enabled", &s.enabled, "run the daily retention job (off: nothing is deleted but batch ids)")
      .Int("retention.hour", &s.hour, 0, 23, "UTC hour from which the daily run starts (checked hourly)")
      .Duration("retention.alerts", &s.alerts, seconds(0), kForever,
                "keep alert and clear messages that belong to no ticket this long" + keep)
      .Duration("retention.heartbeats", &s.heartbeats, seconds(0), kForever,
                "keep heartbeat messages this long (each device's last heartbeat stays on the device)" + keep)
      .Duration("retention.inventory", &s.inventory, seconds(0), kForever,
                "keep inventory and configuration reports this long; each device's newest is always kept" + keep)
      .Duration("retention.problem_data", &s.problem_data, seconds(0), kForever,
                "keep problem data (bundle manifests) this long" + keep)
      .Duration("retention.performance_raw", &s.performance_raw, seconds(0), kForever,
                "keep performance reports this long; older ones become one daily aggregate per device" + keep)
      .Duration("retention.performance_daily", &s.performance_daily, seconds(0), kForever,
                "keep the daily performance aggregates this long" + keep)
      .Duration("retention.tickets", &s.tickets, seconds(0), kForever,
                "keep resolved and closed tickets this long after they were resolved or closed, with their "
                "messages, notes, history and notifications" + keep)
      .Duration("retention.notifications", &s.notifications, seconds(0), kForever,
                "keep sent and failed notifications this long" + keep)
      .Duration("retention.batch_ids", &s.batch_ids, seconds(0), kForever,
                "keep ingested batch ids (replay protection) this long; never less than 2 x "
                "ingest.max_clock_skew + 1 h" + keep);
}

RetentionJob::RetentionJob(store::HomeStore& store, const Clock& clock, RetentionSettings settings,
                           seconds max_clock_skew)
    : store_([&store]() -> store::HeartbeatRetentionStore& {
        auto* side = store::HeartbeatRetentionOf(store);
        if (side == nullptr) {
          throw std::logic_error("RetentionJob needs a store with retention support");
        }
        return *side;
      }()),
      home_store_(store),
      clock_(clock),
      settings_(settings),
      max_clock_skew_(max_clock_skew),
      holder_(Holder()) {}

RetentionJob::~RetentionJob() { Stop(); }

std::int64_t RetentionJob::DueSince(std::int64_t now_ms) const {
  const std::int64_t today = now_ms / kDayMs * kDayMs + settings_.hour * kHourMs;
  return today <= now_ms ? today : today - kDayMs;
}

Result<std::optional<std::vector<store::RetentionItem>>> RetentionJob::Check() {
  const std::int64_t now_ms = clock_.NowUnixMillis();
  const auto policy = settings_.Policy(max_clock_skew_);
  if (policy.batch_ids_ms > 0) {
    auto pruned = home_store_.PruneBatchIds(now_ms - policy.batch_ids_ms);
    if (!pruned) {
      Log()->warn("could not prune old batch ids: {}", pruned.error().message());
    }
  }
  if (!settings_.enabled) {
    return std::optional<std::vector<store::RetentionItem>>();
  }
  auto claimed = store_.ClaimJob(kJobName, holder_, DueSince(now_ms), now_ms + kLeaseMs, now_ms);
  if (!claimed) {
    Log()->warn("cannot check the retention job's lease: {}", claimed.error().message());
    return claimed.error();
  }
  if (!*claimed) {
    return std::optional<std::vector<store::RetentionItem>>();  // done today, or another home runs it
  }
  auto ran = RunClaimed(now_ms);
  if (!ran) {
    return ran.error();
  }
  return std::optional<std::vector<store::RetentionItem>>(std::move(*ran));
}

Result<std::vector<store::RetentionItem>> RetentionJob::RunNow() {
  const std::int64_t now_ms = clock_.NowUnixMillis();
  // Due since "after now": any run before now counts as not today's, so only a held lease stops it.
  auto claimed = store_.ClaimJob(kJobName, holder_, now_ms + 1, now_ms + kLeaseMs, now_ms);
  if (!claimed) {
    return claimed.error();
  }
  if (!*claimed) {
    return Fail(make_error_code(store::Errc::kConflict));
  }
  return RunClaimed(now_ms);
}

Result<std::vector<store::RetentionItem>> RetentionJob::RunClaimed(std::int64_t now_ms) {
  Log()->info("retention run started");
  const std::int64_t lease_end = now_ms + kLeaseMs;
  // Stop before the lease runs out (another home may take it then), or when the home stops.
  auto items = store_.ApplyRetention(settings_.Policy(max_clock_skew_), now_ms, [this, lease_end] {
    return !Stopping() && clock_.NowUnixMillis() < lease_end - 60'000;
  });
  const std::int64_t end_ms = clock_.NowUnixMillis();
  std::string summary;
  if (items) {
    for (const auto& item : *items) {
      if (item.rows > 0) {
        summary += fmt::format("{}{} {} {}", summary.empty() ? "" : ", ", item.kind,
                               item.action == "downsample" ? "downsampled" : "deleted", item.rows);
      }
    }
    summary = summary.empty() ? "nothing to delete" : summary;
    Log()->info("retention run finished in {} s: {}", (end_ms - now_ms) / 1000, summary);
  } else {
    summary = "failed: " + items.error().message();
    Log()->error("retention run {}", summary);
  }
  if (auto finished = store_.FinishJob(kJobName, holder_, items.has_value(), summary, end_ms); !finished) {
    Log()->warn("could not release the retention job's lease: {}", finished.error().message());
  }
  return items;
}

Result<RetentionPreview> RetentionJob::Preview() {
  RetentionPreview preview;
  preview.now_ms = clock_.NowUnixMillis();
  auto items = store_.PreviewRetention(settings_.Policy(max_clock_skew_), preview.now_ms);
  if (!items) {
    return items.error();
  }
  preview.items = std::move(*items);
  auto job = store_.GetJobStatus(kJobName);
  if (!job) {
    return job.error();
  }
  preview.job = std::move(*job);
  if (settings_.enabled) {
    const std::int64_t due = DueSince(preview.now_ms);
    // Not yet run since today's time: at the next hourly check; else tomorrow's.
    preview.next_run_ms = preview.job.last_started_ms >= due ? due + kDayMs : preview.now_ms;
  }
  return preview;
}

bool RetentionJob::Stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void RetentionJob::Start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) {
    return;
  }
  stopping_ = false;
  thread_ = std::thread([this] { Run(); });
}

void RetentionJob::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void RetentionJob::Run() {
  std::unique_lock lock(mutex_);
  // A minute after start, so a home that restarts in a loop does not run deletes in a loop.
  if (stop_cv_.wait_for(lock, std::chrono::minutes(1), [this] { return stopping_; })) {
    return;
  }
  while (!stopping_) {
    lock.unlock();
    (void)Check();  // failures are logged; the next check tries again
    lock.lock();
    stop_cv_.wait_for(lock, std::chrono::hours(1), [this] { return stopping_; });
  }
}

std::string FormatRetentionItems(const std::vector<store::RetentionItem>& items, bool preview) {
  std::string out = fmt::format("{:<18} {:<11} {:<26} {:>12}\n", "kind", "action", "older than",
                                preview ? "rows to go" : "rows");
  for (const auto& item : items) {
    out += fmt::format("{:<18} {:<11} {:<26} {:>12}\n", item.kind, item.action,
                       item.cutoff_ms > 0 ? Time(item.cutoff_ms) : "-", item.rows);
  }
  return out;
}

std::string RetentionPreviewJson(const RetentionPreview& preview) {
  json::array kinds;
  for (const auto& item : preview.items) {
    kinds.push_back(json::object{{"kind", item.kind},
                                 {"action", item.action},
                                 {"cutoff", Time(item.cutoff_ms)},
                                 {"cutoff_ms", item.cutoff_ms},
                                 {"rows", item.rows}});
  }
  return json::serialize(json::object{
      {"now", Time(preview.now_ms)},
      {"next_run", Time(preview.next_run_ms)},
      {"kinds", std::move(kinds)},
      {"last_run", json::object{{"started", Time(preview.job.last_started_ms)},
                                {"finished", Time(preview.job.last_finished_ms)},
                                {"by", preview.job.holder},
                                {"result", preview.job.last_result}}}});
}

}  // namespace lifeline::home
