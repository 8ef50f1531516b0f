#pragma once
// `lifeline agent run`: follows the configured logs, turns matching lines into alerts, queues heartbeats,
// and sends the queue home. Capture and sending are separate threads joined only by the durable queue,
// so an unreachable home never slows detection and nothing captured is lost.
#include "agent/agent_config.h"
#include "common/result.h"
#include "protocol/message.h"

#include <memory>

namespace lifeline::agent {

class AgentService {
 public:
  /// Opens the queue, loads the keys, compiles the rules, starts both threads. Logs and returns the
  /// error when something is missing (e.g. the device is not enrolled yet).
  [[nodiscard]] static Result<std::unique_ptr<AgentService>> Start(const AgentConfig& config);
  ~AgentService();
  /// Stops both threads; the queue keeps whatever was not sent.
  void Stop();
  /// True once a configuration from home has been validated and staged: the caller stops this service
  /// and calls ApplyStagedConfig.
  bool ReloadRequested() const;
  /// Records how an instruction ended (the staged configuration's outcome), for the next batch.
  void RecordInstructionResult(const protocol::InstructionResult& result);

  struct Parts;

 private:
  explicit AgentService(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

/// Applies the configuration an apply_config instruction staged next to `current.config_path`: keeps the
/// old file as `.previous`, moves the new one in and starts with it; if that fails, puts the old file back
/// and starts with it. Either way the instruction's result is recorded for the home. Errors only when not
/// even the previous configuration starts.
[[nodiscard]] Result<std::unique_ptr<AgentService>> ApplyStagedConfig(const AgentConfig& current);

/// Result of `lifeline agent enroll`.
struct EnrollOutcome {
  std::string certificate_fingerprint;
  std::string message;  // for the operator: what happened, or why it was refused
};

/// Creates the device keys (if not there yet) in the PKI directory, asks the home for a certificate with
/// the single-use `token`, checks and stores it. Private keys never leave this machine.
[[nodiscard]] Result<EnrollOutcome> Enroll(const AgentConfig& config, const std::string& token, bool force,
                                           std::string* refusal);

/// Text for `lifeline agent status`: queue depth, last contact with the home, recent ticket numbers.
[[nodiscard]] Result<std::string> StatusReport(const AgentConfig& config);

}  // namespace lifeline::agent
