#pragma once
// Simulated devices' credentials, made the way an agent makes them (agent/enroll.cpp): an EC P-256
// TLS key and an Ed25519 signing key per device, created locally; a CSR and the public signing key go
// to the home's POST /v1/enroll with a single-use token; the certificate comes back. Kept in a state
// directory so a second run reuses the devices it enrolled:
//
//   <state>/home-ca.crt                               the CA the devices were enrolled with
//   <state>/devices/<customer>/<site>/<serial>/       an agent's pki layout: device.key (0600),
//                                                     device-sign.key (0600), device.crt
#include "common/result.h"
#include "crypto/keys.h"
#include "protocol/message.h"
#include "transport/http_client.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace lifeline::sim {

/// What every agent holds of its home: the pinned CA and the home's two public payload keys.
struct HomeTrust {
  std::string ca_file;  // ca.crt, the only trust anchor
  std::string ca_pem;
  std::array<std::uint8_t, 32> seal_public{};  // batches are sealed to it (home-seal.pub)
  std::array<std::uint8_t, 32> sign_public{};  // replies are signed with its secret half (home-sign.pub)
};

/// Reads ca.crt, home-seal.pub and home-sign.pub from a directory (the home's pki dir, or a copy of
/// those three files). `why` names the file that failed.
[[nodiscard]] Result<HomeTrust> LoadHomeTrust(const std::filesystem::path& dir, std::string* why);

/// One enrolled device: its identity, TLS client credentials (files, as libcurl reads them) and
/// payload signing key.
struct DeviceCredentials {
  protocol::DeviceIdentity identity;
  std::string cert_file;
  std::string key_file;
  crypto::SigningKeyPair sign;
};

class CredentialStore {
 public:
  /// Opens (creating) the state directory for devices of the home `trust` describes. Refuses a
  /// directory whose devices were enrolled with another CA (their certificates would be refused).
  [[nodiscard]] static Result<CredentialStore> Open(const std::filesystem::path& dir, const HomeTrust& trust,
                                                    std::string* why);

  /// The device's credentials if an earlier run enrolled it (all three files present and readable).
  std::optional<DeviceCredentials> Find(const protocol::DeviceIdentity& identity) const;

  /// Enrolls the device at `home_url` with `token`: makes its keys (or reuses keys a failed attempt
  /// left), sends the CSR, checks the certificate names the device and chains to the pinned CA,
  /// stores it. `client` is a client without a client certificate (pinned to the home's CA); it is
  /// reused between calls so enrollments share a connection. `why` says what failed.
  [[nodiscard]] Result<DeviceCredentials> Enroll(const protocol::DeviceIdentity& identity, const std::string& token,
                                                 const std::string& home_url, transport::HttpClient& client,
                                                 std::chrono::milliseconds timeout, std::string* why) const;

  const std::filesystem::path& dir() const { return dir_; }

 private:
  CredentialStore(std::filesystem::path dir, HomeTrust trust) : dir_(std::move(dir)), trust_(std::move(trust)) {}
  std::filesystem::path DeviceDir(const protocol::DeviceIdentity& identity) const;

  std::filesystem::path dir_;
  HomeTrust trust_;
};

}  // namespace lifeline::sim
