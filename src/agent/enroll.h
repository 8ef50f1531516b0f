#pragma once
// `lifeline agent enroll` (and `lifeline gateway enroll`): the keys are made here, on the machine that
// enrolls, and only a certificate signing request and the public signing key leave it.
#include "agent/agent_config.h"
#include "agent/paths_config.h"
#include "common/result.h"
#include "crypto/pki.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace lifeline::agent {

/// Result of `lifeline agent enroll`.
struct EnrollOutcome {
  std::string certificate_fingerprint;
  std::string message;  // for the operator: what happened, or why it was refused
};

/// Who enrolls and where its files go: a device (the agent) or a gateway (docs/gateway.md).
struct EnrollTarget {
  protocol::DeviceIdentity identity;
  crypto::PeerKind kind = crypto::PeerKind::kDevice;
  std::vector<std::string> server_names;  // gateway only: DNS/IP SANs of its device-facing port
  std::filesystem::path pki_dir;
  std::filesystem::path ca_cert;   // the home's CA, copied there beforehand
  std::filesystem::path key;       // TLS key, made here (0600)
  std::filesystem::path cert;      // written on success
  std::filesystem::path sign_key;  // Ed25519, made here (0600)
  std::string home_url;
  PathsConfig paths;  // the same connection paths and endpoints as the sender
  std::chrono::seconds request_timeout{30};
};

/// Creates the keys (if not there yet), asks the home for a certificate with the single-use `token`,
/// checks that it names this identity and kind and chains to the pinned CA, and stores it. Private
/// keys never leave this machine; a retry after a failure reuses them.
[[nodiscard]] Result<EnrollOutcome> EnrollWithHome(const EnrollTarget& target, const std::string& token,
                                                   bool force, std::string* refusal);

/// The device's enrollment: EnrollWithHome with the agent's identity, pki dir and paths.
[[nodiscard]] Result<EnrollOutcome> Enroll(const AgentConfig& config, const std::string& token, bool force,
                                           std::string* refusal);

/// The token from --token, else the first line of --token-file, else LIFELINE_ENROLL_TOKEN. Empty with
/// `problem` set when there is none or the file cannot be read.
std::string ResolveEnrollToken(std::string token, const std::string& token_file, std::string* problem);

}  // namespace lifeline::agent
