#pragma once
// `lifeline policy requests list|approve|deny`: approval requests through the running policy
// manager's API (docs/policy.md "Approvals API") with the caller's own token, so the service applies
// the roles (approve and deny need an approver) and the rule that nobody decides their own request.
#include "cli/policy_api_client.h"

#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct PolicyRequestsOptions {
  bool all = false;   // list: every request, not only the pending ones
  bool json = false;  // list: the API's JSON
  std::string id;       // approve, deny
  std::string comment;  // approve, deny
  PolicyApiConnection api;
};

struct PolicyRequestsCommands {
  CLI::App* list = nullptr;
  CLI::App* approve = nullptr;
  CLI::App* deny = nullptr;
};

/// Adds `requests list|approve|deny` under `policy` (the `lifeline policy` command).
PolicyRequestsCommands AddPolicyRequestsCommands(CLI::App* policy, PolicyRequestsOptions& options);
/// Runs whichever was parsed; -1 when none was.
int RunPolicyRequestsCommands(const PolicyRequestsCommands& commands, const PolicyRequestsOptions& options);

}  // namespace lifeline::cli
