#pragma once
// Instructions from home, still outbound only: they arrive in the home's signed replies. The agent acts on
// an allow-list only (apply_config, send_inventory, send_test_alert); anything else is refused and logged.
// Each instruction is handled once: its result is kept in the queue's state until a later batch has
// carried it home, so a crash or a lost reply neither repeats an instruction nor loses its result.
#include "agent/queue.h"
#include "agent/source.h"
#include "common/result.h"
#include "protocol/message.h"

#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace lifeline::agent {

struct InstructionHooks {
  /// Asks the inventory report for a full report now; false when there is no inventory source.
  std::function<bool()> send_inventory_now;
  /// Validates a new agent.toml and, when valid, stages it for the service to apply (atomically, with
  /// rollback). Returns false and fills `detail` when it is invalid. The result of applying it is recorded
  /// later through RecordResult.
  std::function<bool(const std::string& toml, const std::string& instruction_id, std::string* detail)> stage_config;
};

class InstructionHandler {
 public:
  InstructionHandler(AgentQueue& queue, DetectionSink& sink, InstructionHooks hooks);

  /// Acts on each instruction not handled before.
  void Handle(const std::vector<protocol::Instruction>& instructions);
  /// Records the outcome of an instruction finished elsewhere (a staged configuration).
  void RecordResult(const protocol::InstructionResult& result);
  /// Results the home has not confirmed yet; the sender adds them to its next batch.
  std::vector<protocol::InstructionResult> PendingResults();
  /// The home has them (a reply to a batch that carried them came back): forget them.
  void MarkReported(const std::vector<protocol::InstructionResult>& reported);

  /// The queue state key holding unreported results (JSON).
  static constexpr const char* kStateKey = "instructions.unreported";

 private:
  std::vector<protocol::InstructionResult> LoadLocked();
  void SaveLocked(const std::vector<protocol::InstructionResult>& results);

  AgentQueue& queue_;
  DetectionSink& sink_;
  InstructionHooks hooks_;
  std::mutex mutex_;
};

}  // namespace lifeline::agent
