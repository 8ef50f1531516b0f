#include "agent/sources.h"

#include "agent/log_source.h"
#include "common/log.h"

#include <fmt/format.h>

namespace lifeline::agent {

Result<std::vector<std::unique_ptr<Source>>> MakeDetectionSources(const AgentConfig& config, AgentQueue& queue,
                                                                  std::string* error) {
  std::vector<std::unique_ptr<Source>> sources;
  std::vector<LogRule> rules;
  for (const auto& r : config.sources.rules) {
    rules.push_back({r.name, r.pattern, r.code,
                     protocol::ParseSeverity(r.severity).value_or(protocol::Severity::kError), r.message});
  }
  auto compiled = RuleSet::Compile(std::move(rules), error);
  if (!compiled) {
    return compiled.error();
  }
  if (!config.sources.logs.empty()) {
    std::vector<std::unique_ptr<LogFollower>> followers;
    for (const auto& watched : config.sources.logs) {
      auto saved = queue.LoadPosition(watched.path);
      if (!saved) {
        *error = fmt::format("cannot read the saved position of {}: {}", watched.path, saved.error().message());
        return saved.error();
      }
      followers.push_back(std::make_unique<LogFollower>(
          watched.path, *saved, watched.from_beginning ? StartPolicy::kFromBeginning : StartPolicy::kFromEnd));
      log::Get("agent")->info("watching {} ({})", watched.path,
                              saved->has_value() ? fmt::format("resuming at byte {}", (*saved)->offset)
                                                 : "new lines only");
    }
    sources.push_back(std::make_unique<LogSource>(std::move(followers), std::move(*compiled), queue,
                                                  std::chrono::milliseconds(config.sources.poll_interval_ms)));
  }
  return sources;
}

}  // namespace lifeline::agent
