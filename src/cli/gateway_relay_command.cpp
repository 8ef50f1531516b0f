#include "cli/gateway_relay_command.h"

#include "cli/commands.h"
#include "cli/signals.h"
#include "common/config.h"
#include "common/log.h"
#include "gateway/gateway_config.h"
#include "gateway/relay_service.h"

#include <iostream>

namespace lifeline::cli {

int RunGatewayRelay(const std::string& config_path) {
  gateway::GatewayConfig config;
  try {
    config = gateway::GatewayConfig::Load(config_path);
  } catch (const config::ConfigError& e) {
    std::cerr << "lifeline: " << e.what() << "\n";
    return kExitUsage;
  }
  BlockStopSignals();
  auto relay = gateway::RelayService::Start(gateway::RelayService::OptionsFrom(config));
  if (!relay) {
    std::cerr << "lifeline gateway relay: cannot start: " << relay.error().message() << " (see the log above)\n";
    return kExitFailure;
  }
  const auto signal = WaitForStopSignal();
  log::Get("relay")->info("received signal {}, shutting down", signal.value_or(0));
  (*relay)->Stop();
  return kExitOk;
}

}  // namespace lifeline::cli
