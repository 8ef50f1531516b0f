#include "cli/gateway_enroll_command.h"

#include "agent/enroll.h"
#include "cli/commands.h"
#include "common/config.h"
#include "gateway/gateway_config.h"
#include "gateway/gateway_pki.h"

#include <iostream>

namespace lifeline::cli {

int RunGatewayEnroll(const std::string& config_path, std::string token, const std::string& token_file,
                     bool force) {
  gateway::GatewayConfig config;
  try {
    config = gateway::GatewayConfig::Load(config_path);
  } catch (const config::ConfigError& e) {
    std::cerr << "lifeline: " << e.what() << "\n";
    return kExitUsage;
  }
  std::string problem;
  token = agent::ResolveEnrollToken(std::move(token), token_file, &problem);
  if (token.empty()) {
    std::cerr << "lifeline gateway enroll: " << problem << "\n";
    return kExitUsage;
  }
  const gateway::GatewayPkiPaths paths(config.PkiDir());
  // The same enrollment as a device's (keys made here, the agent's connection paths), but with the
  // gateway's kind and the names the site's agents reach it by.
  agent::EnrollTarget target{.identity = config.identity,
                             .kind = crypto::PeerKind::kGateway,
                             .server_names = config.devices_names,
                             .pki_dir = paths.dir,
                             .ca_cert = paths.ca_cert,
                             .key = paths.gateway_key,
                             .cert = paths.gateway_cert,
                             .sign_key = paths.gateway_sign_key,
                             .home_url = config.home_url,
                             .paths = config.paths,
                             .request_timeout = config.request_timeout};
  std::string refusal;
  auto outcome = agent::EnrollWithHome(target, token, force, &refusal);
  if (!outcome) {
    std::cerr << "lifeline gateway enroll: " << refusal << "\n";
    return kExitFailure;
  }
  std::cout << outcome->message << "\n";
  return kExitOk;
}

}  // namespace lifeline::cli
