#pragma once
// Retention (issue 4, item 4): how long the home keeps each kind of data ([retention] in home.toml,
// docs/operations.md "Retention"), and the job that deletes or downsamples what is older. The job
// checks every hour and runs once a UTC day, at the first check from `hour` on; several homes on one
// PostgreSQL share it through a lease row, so one of them runs it. Batch ids (replay protection) are
// pruned at every hourly check. Operators see what goes next with `lifeline home retention
// --dry-run` or GET /v1/retention/preview.
#include "common/clock.h"
#include "common/config.h"
#include "common/result.h"
#include "store/home_store.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace lifeline::home {

/// [retention] in home.toml. The defaults follow the seeds (IBM's call home: problem reports 60
/// days after closing, problem data 3 days, inventory and performance for years).
struct RetentionSettings {
  using days = std::chrono::days;
  bool enabled = true;
  std::int64_t hour = 3;  // UTC hour from which the daily run starts
  std::chrono::seconds alerts = days(60);
  std::chrono::seconds heartbeats = days(7);
  std::chrono::seconds inventory = days(3 * 365);
  std::chrono::seconds problem_data = days(3);
  std::chrono::seconds performance_raw = days(30);
  std::chrono::seconds performance_daily = days(3 * 365);
  std::chrono::seconds tickets = days(60);
  std::chrono::seconds notifications = days(90);
  std::chrono::seconds batch_ids = std::chrono::hours(2);

  /// The store's policy; batch ids are kept at least 2 x max_clock_skew + 1 h, the replay window
  /// with a margin, whatever the setting.
  store::RetentionPolicy Policy(std::chrono::seconds max_clock_skew) const;
};

/// Declares [retention] keys into `schema`, bound to `settings`.
void DeclareRetentionConfig(config::Schema& schema, RetentionSettings& settings);

/// What the job would do next, for operators.
struct RetentionPreview {
  std::int64_t now_ms = 0;
  std::vector<store::RetentionItem> items;
  std::int64_t next_run_ms = 0;  // the next daily run (0: disabled)
  store::JobStatus job;
};

class RetentionJob {
 public:
  /// The job's name in the store's lease table.
  static constexpr std::string_view kJobName = "retention";

  /// `store` must also be a store::HeartbeatRetentionStore (SqlHomeStore is).
  RetentionJob(store::HomeStore& store, const Clock& clock, RetentionSettings settings,
               std::chrono::seconds max_clock_skew);
  ~RetentionJob();
  RetentionJob(const RetentionJob&) = delete;
  RetentionJob& operator=(const RetentionJob&) = delete;

  /// The hourly check: prunes batch ids, then runs the daily job if it is due and this home takes
  /// the lease. Returns what the daily job did, nullopt when it did not run.
  Result<std::optional<std::vector<store::RetentionItem>>> Check();
  /// Runs the job now, whatever the schedule, unless another home holds the lease (kConflict).
  Result<std::vector<store::RetentionItem>> RunNow();
  Result<RetentionPreview> Preview();

  /// The hourly thread (first check a minute after Start). Stop() before the store closes.
  void Start();
  void Stop();

 private:
  std::int64_t DueSince(std::int64_t now_ms) const;
  Result<std::vector<store::RetentionItem>> RunClaimed(std::int64_t now_ms);
  bool Stopping();
  void Run();

  store::HeartbeatRetentionStore& store_;
  store::HomeStore& home_store_;
  const Clock& clock_;
  RetentionSettings settings_;
  std::chrono::seconds max_clock_skew_;
  std::string holder_;  // this process, in the lease row

  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

/// Lines for a terminal: each kind, its action, cutoff and rows.
std::string FormatRetentionItems(const std::vector<store::RetentionItem>& items, bool preview);
/// The JSON body of GET /v1/retention/preview.
std::string RetentionPreviewJson(const RetentionPreview& preview);

}  // namespace lifeline::home
