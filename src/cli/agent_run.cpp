#include "cli/agent_run.h"

#include "agent/agent_service.h"
#include "cli/commands.h"
#include "cli/signals.h"
#include "common/config.h"
#include "common/log.h"

#include <iostream>

namespace lifeline::cli {
namespace {

std::vector<std::string> SenderArgv(const SenderCommand& sender, const std::string& config_path) {
  std::error_code ec;
  auto config = std::filesystem::absolute(config_path, ec);
  return {sender.lifeline.string(), "--log-format", sender.log_format, "--log-level", sender.log_level,
          "agent",                  "send",         "--config",          ec ? config_path : config.string()};
}

}  // namespace

int RunAgentProcess(const std::string& config_path, const SenderCommand& sender, std::string_view program) {
  agent::AgentConfig config;
  try {
    config = agent::AgentConfig::Load(config_path);
  } catch (const config::ConfigError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return kExitUsage;
  }
  if (!std::filesystem::is_regular_file(sender.lifeline)) {
    std::cerr << program << ": the sender program " << sender.lifeline
              << " does not exist (it sends the queue home: install it beside this one or name it with --sender)\n";
    return kExitUsage;
  }
  const auto argv = SenderArgv(sender, config_path);
  BlockStopSignals();
  auto service = agent::AgentService::Start(config, argv);
  if (!service) {
    std::cerr << program << ": cannot start: " << service.error().message() << " (see the log above)\n";
    return kExitFailure;
  }
  // Wait for a stop signal; meanwhile apply a configuration from home when one has been staged.
  for (;;) {
    if (const auto signal = WaitForStopSignal(std::chrono::milliseconds(200))) {
      log::Get("agent")->info("received signal {}, shutting down", *signal);
      (*service)->Stop();
      return kExitOk;
    }
    if ((*service)->ReloadRequested()) {
      (*service)->Stop();
      try {
        service = agent::ApplyStagedConfig(agent::AgentConfig::Load(config_path), argv);
      } catch (const config::ConfigError& e) {
        std::cerr << program << ": " << e.what() << "\n";
        return kExitUsage;
      }
      if (!service) {
        std::cerr << program << ": cannot start after a configuration change: " << service.error().message() << "\n";
        return kExitFailure;
      }
    }
  }
}

}  // namespace lifeline::cli
