#include "agent/reports_config.h"

namespace lifeline::agent {

void DeclareReportOptions(config::Schema& schema, ReportsConfig& reports) {
  schema.Duration("heartbeat.interval", &reports.heartbeat_interval, std::chrono::seconds(1),
                  std::chrono::hours(24 * 7), "time between heartbeats");
}

}  // namespace lifeline::agent
