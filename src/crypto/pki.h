#pragma once
// X.509 for Lifeline (OpenSSL 3, EC P-256 keys, SHA-256 signatures): the home's private CA, the
// home's TLS server certificate, and device client certificates issued at enrollment.
//
// A device certificate names its device in two places:
//   - subject  CN=<serial>, O=<customer>, OU=<site>, title=<model>   descriptive, for humans and
//   tools;
//              parts that are too long (over 64 characters) or not UTF-8 are shortened or
//              percent-encoded
//   - SAN URI  lifeline:device:<pct(customer)>/<pct(site)>/<pct(serial)>  authoritative
// where pct() percent-encodes every byte except ASCII letters, digits and "-._~" (so '/', ':', '%'
// and non-ASCII bytes never appear raw). Identity checks use the SAN URI only, and match customer,
// site and serial; the model is informational.
//
// All PEM text in and out of this header; no OpenSSL types leave the module.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "protocol/message.h"

namespace lifeline::crypto {

/// The URI scheme prefix of a device identity in a certificate's subjectAltName.
inline constexpr std::string_view kDeviceUriPrefix = "lifeline:device:";
/// The URI scheme prefix of a gateway: `lifeline:gateway:<pct customer>/<pct site>/<pct name>`. A
/// gateway certificate carries this one instead of a device URI, so no device check accepts it.
inline constexpr std::string_view kGatewayUriPrefix = "lifeline:gateway:";

/// What a Lifeline end-entity certificate certifies.
enum class PeerKind { kDevice, kGateway };

/// A certificate's peer: a device (customer, site, serial) or a gateway (customer, site, name in
/// `identity.serial`); model from the subject's title when present.
struct CertifiedPeer {
  PeerKind kind = PeerKind::kDevice;
  protocol::DeviceIdentity identity;
};

/// The files of a home's PKI directory (created by InitPki).
struct PkiPaths {
  static constexpr const char* kCaKey = "ca.key";       // CA private key, 0600
  static constexpr const char* kCaCert = "ca.crt";      // CA certificate: the devices' trust anchor
  static constexpr const char* kHomeKey = "home.key";   // home TLS server key, 0600
  static constexpr const char* kHomeCert = "home.crt";  // home TLS server certificate
  static constexpr const char* kHomeSealKey =
      "home-seal.key";  // X25519 secret: opens envelopes, 0600
  static constexpr const char* kHomeSealPublic =
      "home-seal.pub";  // X25519 public: devices seal to it
  static constexpr const char* kHomeSignKey =
      "home-sign.key";  // Ed25519 secret: signs replies, 0600
  static constexpr const char* kHomeSignPublic =
      "home-sign.pub";  // Ed25519 public: devices verify with it

  explicit PkiPaths(const std::filesystem::path& pki_dir)
      : dir(pki_dir),
        ca_key(pki_dir / kCaKey),
        ca_cert(pki_dir / kCaCert),
        home_key(pki_dir / kHomeKey),
        home_cert(pki_dir / kHomeCert),
        home_seal_key(pki_dir / kHomeSealKey),
        home_seal_public(pki_dir / kHomeSealPublic),
        home_sign_key(pki_dir / kHomeSignKey),
        home_sign_public(pki_dir / kHomeSignPublic) {}

  std::filesystem::path dir;
  std::filesystem::path ca_key;
  std::filesystem::path ca_cert;
  std::filesystem::path home_key;
  std::filesystem::path home_cert;
  std::filesystem::path home_seal_key;
  std::filesystem::path home_seal_public;
  std::filesystem::path home_sign_key;
  std::filesystem::path home_sign_public;

  /// Every file above, in a fixed order.
  std::vector<std::filesystem::path> All() const {
    return {ca_key,        ca_cert,          home_key,      home_cert,
            home_seal_key, home_seal_public, home_sign_key, home_sign_public};
  }
};

struct InitPkiOptions {
  /// Names the home is reached by. Ones that parse as IPv4/IPv6 addresses become IP SANs, others
  /// DNS SANs; the first DNS name (else the first name) is also the subject CN.
  std::vector<std::string> home_names = {"localhost", "127.0.0.1", "::1"};
  int ca_days = 3650;
  int home_days = 825;
  std::string ca_name = "Lifeline Root CA";
};

/// Creates `dir` (mode 0700 when it did not exist) and every file of PkiPaths: a self-signed CA
/// (basicConstraints critical CA:TRUE, pathlen 0; keyUsage keyCertSign, cRLSign), the home's server
/// certificate (serverAuth, CA:FALSE) and the home's payload keys. Private keys are 0600. Refuses
/// with Errc::kAlreadyExists when any of the files exists (in particular ca.key), before writing
/// anything; ca.key is written last, so its presence means a complete PKI.
[[nodiscard]] VoidResult InitPki(const std::filesystem::path& dir,
                                 const InitPkiOptions& options = {});

/// A new EC P-256 private key as PKCS#8 PEM ("BEGIN PRIVATE KEY"). Aborts if OpenSSL cannot
/// generate keys at all (no entropy), as nothing secure can follow.
std::string GeneratePrivateKeyPem();
/// Writes a private key PEM with mode 0600, atomically; Errc::kAlreadyExists if `path` exists.
[[nodiscard]] VoidResult WritePrivateKeyPem(const std::filesystem::path& path,
                                            std::string_view pem);

/// A PKCS#10 CSR signed with the key, naming `identity` (subject and SAN URI as above, a gateway
/// URI for kGateway). The home ignores what a CSR claims; the names are there for operators and
/// `openssl req -text`. Errc::kBadKey, Errc::kBadIdentity.
[[nodiscard]] Result<std::string> MakeCsr(std::string_view private_key_pem,
                                          const protocol::DeviceIdentity& identity,
                                          PeerKind kind = PeerKind::kDevice);

struct IssuedCertificate {
  std::string pem;
  std::string
      fingerprint_sha256_hex;  // lowercase hex SHA-256 of the DER certificate, no separators
  std::string serial_hex;      // lowercase hex
  std::int64_t not_after_unix = 0;
};

/// Issues a device client certificate. Verifies the CSR's self-signature and key strength
/// (Errc::kBadCsr), then IGNORES the CSR's names: subject and SAN come from `identity`, the
/// identity the home authorised. clientAuth EKU, CA:FALSE, random 128-bit serial, valid from 5
/// minutes ago (device clock skew) for `days` days but never past the CA's own expiry.
/// Errc::kBadIdentity, Errc::kBadCertificate, Errc::kBadKey (including a CA key that does not match
/// the CA certificate).
[[nodiscard]] Result<IssuedCertificate> IssueDeviceCertificate(
    std::string_view ca_cert_pem, std::string_view ca_key_pem, std::string_view csr_pem,
    const protocol::DeviceIdentity& identity, int days);

/// Issues a gateway certificate: as IssueDeviceCertificate (the CSR's names ignored), but the SAN
/// URI is the gateway URI and the certificate serves both ways: clientAuth (the tunnel, relaying to
/// the home) and serverAuth (its device-facing port, which the site's agents verify with the home
/// CA they already pin), with `server_names` as DNS or IP SANs (IP literals become IP SANs). At most
/// kMaxGatewayServerNames names, each a host name or IP literal (Errc::kBadIdentity otherwise).
[[nodiscard]] Result<IssuedCertificate> IssueGatewayCertificate(
    std::string_view ca_cert_pem, std::string_view ca_key_pem, std::string_view csr_pem,
    const protocol::DeviceIdentity& identity, const std::vector<std::string>& server_names,
    int days);
inline constexpr std::size_t kMaxGatewayServerNames = 16;
/// True for a name IssueGatewayCertificate accepts: an IPv4/IPv6 literal, or a DNS name of letters,
/// digits, '-' and '.' (a leading "*." allowed), at most 253 bytes.
bool IsValidServerName(std::string_view name);

/// The device identity a certificate carries in its SAN URI (model from the subject title, if any).
/// Errc::kBadCertificate when unreadable, Errc::kNoIdentity when there is no lifeline:device URI,
/// more than one, or one that does not decode to a valid identity.
[[nodiscard]] Result<protocol::DeviceIdentity> IdentityFromCertificatePem(std::string_view pem);

/// The peer a certificate certifies: its one Lifeline SAN URI, device or gateway (model from the
/// subject title). Errc::kBadCertificate when unreadable, Errc::kNoIdentity when there is no
/// Lifeline URI, more than one (of either kind), or one that does not decode. Says nothing about
/// who issued it: check the chain (VerifyCertificateChain, or the TLS handshake) first.
[[nodiscard]] Result<CertifiedPeer> PeerFromCertificatePem(std::string_view pem);

/// "lifeline:gateway:" + pct(customer) + "/" + pct(site) + "/" + pct(name in serial).
std::string GatewayUri(const protocol::DeviceIdentity& identity);

/// The SAN URI for an identity: "lifeline:device:" + pct(customer) + "/" + pct(site) + "/" +
/// pct(serial).
std::string DeviceUri(const protocol::DeviceIdentity& identity);
/// Inverse of DeviceUri (model left empty); Errc::kNoIdentity when `uri` is not one.
[[nodiscard]] Result<protocol::DeviceIdentity> ParseDeviceUri(std::string_view uri);

/// Lowercase hex SHA-256 over the certificate's DER encoding (same value as
/// `openssl x509 -fingerprint -sha256`, without colons). Errc::kBadCertificate.
[[nodiscard]] Result<std::string> CertificateFingerprintSha256(std::string_view pem);

/// The certificate's notAfter as Unix seconds.
[[nodiscard]] Result<std::int64_t> CertificateNotAfterUnix(std::string_view pem);

/// True when `cert_pem` chains to `ca_cert_pem` as the only trust anchor (no system store), with
/// valid signatures and dates at the current time.
bool VerifyCertificateChain(std::string_view cert_pem, std::string_view ca_cert_pem);

}  // namespace lifeline::crypto
