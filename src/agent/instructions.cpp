#include "agent/instructions.h"

#include "common/clock.h"
#include "common/log.h"

#include <boost/json.hpp>

#include <algorithm>

namespace lifeline::agent {
namespace json = boost::json;

InstructionHandler::InstructionHandler(AgentQueue& queue, DetectionSink& sink, InstructionHooks hooks)
    : queue_(queue), sink_(sink), hooks_(std::move(hooks)) {}

std::vector<protocol::InstructionResult> InstructionHandler::LoadLocked() {
  std::vector<protocol::InstructionResult> results;
  auto text = queue_.GetState(kStateKey);
  if (!text || !text->has_value()) {
    return results;
  }
  boost::system::error_code ec;
  auto value = json::parse(**text, ec);
  if (ec || !value.is_array()) {
    log::Get("agent")->error("unreadable instruction results in the queue state; starting afresh");
    return results;
  }
  for (const auto& item : value.get_array()) {
    if (!item.is_object()) {
      continue;
    }
    const auto& o = item.get_object();
    auto str = [&](const char* key) {
      const auto* v = o.if_contains(key);
      return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
    };
    results.push_back({str("id"), str("status"), str("detail")});
  }
  return results;
}

void InstructionHandler::SaveLocked(const std::vector<protocol::InstructionResult>& results) {
  json::array array;
  for (const auto& r : results) {
    array.push_back(json::object{{"id", r.id}, {"status", r.status}, {"detail", r.detail}});
  }
  if (auto saved = queue_.SetState(kStateKey, json::serialize(array)); !saved) {
    log::Get("agent")->error("cannot save instruction results: {}", saved.error().message());
  }
}

void InstructionHandler::Handle(const std::vector<protocol::Instruction>& instructions) {
  auto log = log::Get("agent");
  std::lock_guard lock(mutex_);
  auto results = LoadLocked();
  for (const auto& instruction : instructions) {
    const bool seen = std::any_of(results.begin(), results.end(),
                                  [&](const auto& r) { return r.id == instruction.id; });
    if (seen) {
      continue;  // handled; the home has not seen our answer yet
    }
    protocol::InstructionResult result{instruction.id, "done", ""};
    if (instruction.kind == protocol::kInstructionSendTestAlert) {
      protocol::Message alert;
      alert.type = protocol::MessageType::kAlert;
      alert.timestamp_ms = SystemClock::Instance().NowUnixMillis();
      alert.alert = {"LIFELINE-TEST", protocol::Severity::kError,
                     "Test alert requested by the home (instruction " + instruction.id.substr(0, 8) + ")",
                     "instruction"};
      if (!sink_.Emit({alert})) {
        result = {instruction.id, "failed", "could not queue the test alert"};
      }
      log->info("instruction {}: test alert queued", instruction.id.substr(0, 8));
    } else if (instruction.kind == protocol::kInstructionSendInventory) {
      if (!hooks_.send_inventory_now || !hooks_.send_inventory_now()) {
        result = {instruction.id, "failed", "this agent has no inventory report configured"};
      }
      log->info("instruction {}: inventory requested ({})", instruction.id.substr(0, 8), result.status);
    } else if (instruction.kind == protocol::kInstructionApplyConfig) {
      std::string detail;
      if (!hooks_.stage_config || !hooks_.stage_config(instruction.config_toml, instruction.id, &detail)) {
        result = {instruction.id, "refused", detail.empty() ? "configuration cannot be applied" : detail};
        log->error("instruction {}: new configuration refused: {}", instruction.id.substr(0, 8), result.detail);
      } else {
        log->info("instruction {}: new configuration staged; applying it", instruction.id.substr(0, 8));
        continue;  // its result is recorded once the service has applied it (or rolled back)
      }
    } else {
      result = {instruction.id, "refused", "'" + instruction.kind + "' is not on this agent's allow-list"};
      log->warn("instruction {} refused: kind '{}' is not on the allow-list", instruction.id.substr(0, 8),
                instruction.kind.substr(0, 64));
    }
    results.push_back(result);
  }
  SaveLocked(results);
}

void InstructionHandler::RecordResult(const protocol::InstructionResult& result) {
  std::lock_guard lock(mutex_);
  auto results = LoadLocked();
  results.erase(std::remove_if(results.begin(), results.end(), [&](const auto& r) { return r.id == result.id; }),
                results.end());
  results.push_back(result);
  SaveLocked(results);
}

std::vector<protocol::InstructionResult> InstructionHandler::PendingResults() {
  std::lock_guard lock(mutex_);
  return LoadLocked();
}

void InstructionHandler::MarkReported(const std::vector<protocol::InstructionResult>& reported) {
  if (reported.empty()) {
    return;
  }
  std::lock_guard lock(mutex_);
  auto results = LoadLocked();
  results.erase(std::remove_if(results.begin(), results.end(),
                               [&](const auto& r) {
                                 return std::any_of(reported.begin(), reported.end(),
                                                    [&](const auto& done) { return done.id == r.id; });
                               }),
                results.end());
  SaveLocked(results);
}

}  // namespace lifeline::agent
