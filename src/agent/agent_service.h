#pragma once
// `lifeline agent run` (and `lifeline-agent run`, the same code in a small executable): runs the detection
// sources and reports, stores what they find in the durable queue, and has a separate sender process
// (sender_process.h, `lifeline agent send`) take the queue home. Capture and sending are joined only by
// the durable queue, so an unreachable home never slows detection and nothing captured is lost.
#include "agent/agent_config.h"
#include "common/result.h"
#include "protocol/message.h"

#include <memory>
#include <string>
#include <vector>

namespace lifeline::agent {

class AgentService {
 public:
  /// Opens the queue, checks the keys are there, compiles the rules, starts the sources and the sender
  /// supervisor, which runs `sender_argv` (`lifeline agent send --config ...`) whenever there is work.
  /// Logs and returns the error when something is missing (e.g. the device is not enrolled yet).
  [[nodiscard]] static Result<std::unique_ptr<AgentService>> Start(const AgentConfig& config,
                                                                   const std::vector<std::string>& sender_argv);
  ~AgentService();
  /// Stops the sources and the sender process; the queue keeps whatever was not sent.
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
[[nodiscard]] Result<std::unique_ptr<AgentService>> ApplyStagedConfig(const AgentConfig& current,
                                                                     const std::vector<std::string>& sender_argv);

/// Text for `lifeline agent status`: queue depth, last contact with the home, recent ticket numbers.
[[nodiscard]] Result<std::string> StatusReport(const AgentConfig& config);

}  // namespace lifeline::agent
