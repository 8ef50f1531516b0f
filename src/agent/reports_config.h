#pragma once
// Config of the reports the agent sends on its own: [heartbeat]. (Inventory, configuration and
// performance join here.)
#include "common/config.h"

#include <chrono>

namespace lifeline::agent {

struct ReportsConfig {
  std::chrono::seconds heartbeat_interval{6 * 3600};
};

void DeclareReportOptions(config::Schema& schema, ReportsConfig& reports);

}  // namespace lifeline::agent
