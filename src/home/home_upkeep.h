#pragma once
// The running home's missing-heartbeat monitor and retention job, wired as one part of
// HomeService: created after the store opens (the tracker is restored then), fed by ingest,
// started once the ingest listener is open, stopped before the store closes. It also answers the
// admin API's GET /v1/retention/preview.
#include "common/clock.h"
#include "common/result.h"
#include "home/heartbeat_monitor.h"
#include "home/retention_job.h"
#include "store/home_store.h"
#include "transport/https_server.h"

#include <chrono>
#include <memory>
#include <optional>

namespace lifeline::home {

struct UpkeepOptions {
  HeartbeatSettings heartbeats;
  RetentionSettings retention;
  std::chrono::seconds max_clock_skew{300};
  /// Notifications of missing-heartbeat and site tickets: the same planner and contacts as alerts.
  store::HeartbeatTicketOptions tickets;
};

class HomeUpkeep {
 public:
  /// Restores the missing-heartbeat tracker from `store` (when enabled); starts nothing.
  [[nodiscard]] static Result<std::unique_ptr<HomeUpkeep>> Create(store::HomeStore& store, const Clock& clock,
                                                                  UpkeepOptions options);
  ~HomeUpkeep();

  /// IngestHandler's batch observer: the committed batch's heartbeats.
  void OnBatchCommitted(const protocol::Batch& batch, const protocol::BatchReply& reply, std::int64_t now_ms);
  /// Starts the sweeping and the retention threads; call once agents can reach the home (the
  /// first sweep waits heartbeats.start_delay from here).
  void Start();
  /// Stops both threads; before the store closes.
  void Stop();

  /// GET /v1/retention/preview with an admin token; nullopt for any other request.
  std::optional<transport::HttpResponse> HandleAdmin(const transport::HttpRequest& request);

  HeartbeatMonitor* heartbeats() { return heartbeats_.get(); }
  RetentionJob& retention() { return *retention_; }

 private:
  HomeUpkeep(store::HomeStore& store) : store_(store) {}

  store::HomeStore& store_;
  std::unique_ptr<HeartbeatMonitor> heartbeats_;  // null when [heartbeats] enabled = false
  std::unique_ptr<RetentionJob> retention_;
};

}  // namespace lifeline::home
