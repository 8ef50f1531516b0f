#pragma once
// `lifeline policy run|users|tokens|show|set|requests`: the policy manager service; its users and API
// tokens managed on the store directly by a local administrator (like `lifeline home admin-token`);
// its policy read and changed, and approval requests decided (policy_requests_command.h), through
// the running service's API (policy_api_client.h).
#include "cli/policy_api_client.h"
#include "cli/policy_requests_command.h"

#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct PolicyOptions {
  std::string config_file = "/etc/lifeline/policy.toml";
  bool help_config = false;
  bool json = false;
  std::string name;           // users add|passwd|remove, tokens create|revoke
  std::string role;           // users add, tokens create
  std::string password_file;  // users add|passwd; else LIFELINE_POLICY_PASSWORD, else one line of stdin
  std::string ttl;            // tokens create: "90d", "12h"; empty: no expiry
  std::string policy_file;    // set: the PolicySet JSON ("-": stdin)
  PolicyApiConnection api;    // show, set
  PolicyRequestsOptions requests;  // requests list|approve|deny
};

struct PolicyCommands {
  CLI::App* policy = nullptr;  // `lifeline policy`, for other parts' subcommands (requests, ...)
  CLI::App* run = nullptr;
  CLI::App* users_add = nullptr;
  CLI::App* users_list = nullptr;
  CLI::App* users_passwd = nullptr;
  CLI::App* users_remove = nullptr;
  CLI::App* tokens_create = nullptr;
  CLI::App* tokens_list = nullptr;
  CLI::App* tokens_revoke = nullptr;
  CLI::App* show = nullptr;
  CLI::App* set = nullptr;
  PolicyRequestsCommands requests;
};

/// Adds `policy` with run, users ..., tokens ..., show, set and requests ... to `app`.
PolicyCommands AddPolicyCommands(CLI::App& app, PolicyOptions& options);
/// Runs whichever of them was parsed; -1 when none was.
int RunPolicyCommands(const PolicyCommands& commands, const PolicyOptions& options);

}  // namespace lifeline::cli
