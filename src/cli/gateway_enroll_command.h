#pragma once
// `lifeline gateway enroll --config gateway.toml --token T|--token-file F [--force]`: the gateway's keys
// are made here, on the gateway; the home issues its gateway certificate for a gateway token
// (`lifeline home enroll-token --gateway`). Files: GatewayPkiPaths (src/gateway/gateway_pki.h).
#include <string>

namespace lifeline::cli {

/// Returns the process exit code (kExitOk, kExitFailure, kExitUsage) after one line for the operator.
int RunGatewayEnroll(const std::string& config_path, std::string token, const std::string& token_file,
                     bool force);

}  // namespace lifeline::cli
