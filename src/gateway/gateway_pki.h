#pragma once
// The files of a gateway's PKI directory (GatewayConfig::PkiDir()), made by `lifeline gateway enroll`.
// Like an agent's (agent::AgentPkiPaths): the home's public files copied from the home, and the
// gateway's own keys, made on the gateway (only a CSR and the public signing key ever leave it).
// gateway.crt carries a `lifeline:gateway:` SAN URI (crypto::PeerKind::kGateway) and serves as TLS
// client certificate (tunnel, relay to the home) and as server certificate (the device-facing port).
#include <filesystem>

namespace lifeline::gateway {

struct GatewayPkiPaths {
  explicit GatewayPkiPaths(const std::filesystem::path& dir)
      : dir(dir),
        ca_cert(dir / "ca.crt"),
        home_seal_public(dir / "home-seal.pub"),
        home_sign_public(dir / "home-sign.pub"),
        gateway_key(dir / "gateway.key"),
        gateway_cert(dir / "gateway.crt"),
        gateway_sign_key(dir / "gateway-sign.key") {}

  std::filesystem::path dir;
  std::filesystem::path ca_cert;           // the home's CA: trusts the home, the site's agents, the tunnel
  std::filesystem::path home_seal_public;  // copied from the home (the gateway never opens envelopes)
  std::filesystem::path home_sign_public;  // verifies the home's signed answers
  std::filesystem::path gateway_key;       // EC P-256 TLS key, 0600
  std::filesystem::path gateway_cert;      // issued by the home at enrollment
  std::filesystem::path gateway_sign_key;  // Ed25519, 0600
};

}  // namespace lifeline::gateway
