#pragma once
// `lifeline agent tickets --config agent.toml`: asks the home for this device's tickets
// (GET /v1/tickets, docs/protocol.md) with the device's own certificate, checks the home's signature
// on the answer, and prints them. Uses only the agent's config and PKI directory; nothing in
// src/agent changes, and the running agent is not involved.
#include <string>

namespace lifeline::cli {

int AgentTickets(const std::string& config_path, bool json);

}  // namespace lifeline::cli
