#pragma once
// `lifeline gateway relay --config gateway.toml`: the relay alone (docs/gateway.md, "Relay"): the
// device-facing port that takes the site's agents' batches and forwards them to the home, until
// SIGINT/SIGTERM. `lifeline gateway run` runs the same RelayService beside the gateway's other parts.
#include <string>

namespace lifeline::cli {

/// Returns the process exit code.
int RunGatewayRelay(const std::string& config_path);

}  // namespace lifeline::cli
