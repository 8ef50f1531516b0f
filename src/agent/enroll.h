#pragma once
// `lifeline agent enroll`: the device's keys are made here, on the device, and only a certificate signing
// request and the public signing key leave it.
#include "agent/agent_config.h"
#include "common/result.h"

#include <string>

namespace lifeline::agent {

/// Result of `lifeline agent enroll`.
struct EnrollOutcome {
  std::string certificate_fingerprint;
  std::string message;  // for the operator: what happened, or why it was refused
};

/// Creates the device keys (if not there yet) in the PKI directory, asks the home for a certificate with
/// the single-use `token`, checks and stores it. Private keys never leave this machine.
[[nodiscard]] Result<EnrollOutcome> Enroll(const AgentConfig& config, const std::string& token, bool force,
                                           std::string* refusal);

}  // namespace lifeline::agent
