#include "sim/credentials.h"

#include "crypto/pki.h"
#include "protocol/codec.h"

#include <fmt/format.h>

namespace lifeline::sim {
namespace fs = std::filesystem;

namespace {

// Generated names are plain already; anything else is made safe for a path component.
std::string PathPart(std::string_view text) {
  std::string out;
  for (char c : text) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                       c == '_' || c == '.';
    out += plain ? c : '_';
  }
  if (out.empty() || out == "." || out == "..") {
    out = "_" + out;
  }
  return out;
}

}  // namespace

Result<HomeTrust> LoadHomeTrust(const fs::path& dir, std::string* why) {
  const crypto::PkiPaths paths(dir);
  HomeTrust trust;
  trust.ca_file = paths.ca_cert.string();
  auto ca = crypto::ReadSmallFile(paths.ca_cert, 1 << 20);
  if (!ca) {
    *why = fmt::format("cannot read {}: {}", paths.ca_cert.string(), ca.error().message());
    return ca.error();
  }
  trust.ca_pem = std::move(*ca);
  auto seal = crypto::ReadPublicKey(paths.home_seal_public, crypto::KeyKind::kX25519Public);
  if (!seal) {
    *why = fmt::format("cannot read {}: {}", paths.home_seal_public.string(), seal.error().message());
    return seal.error();
  }
  auto sign = crypto::ReadPublicKey(paths.home_sign_public, crypto::KeyKind::kEd25519Public);
  if (!sign) {
    *why = fmt::format("cannot read {}: {}", paths.home_sign_public.string(), sign.error().message());
    return sign.error();
  }
  trust.seal_public = *seal;
  trust.sign_public = *sign;
  return trust;
}

Result<CredentialStore> CredentialStore::Open(const fs::path& dir, const HomeTrust& trust, std::string* why) {
  std::error_code ec;
  fs::create_directories(dir / "devices", ec);
  if (ec) {
    *why = fmt::format("cannot create {}: {}", (dir / "devices").string(), ec.message());
    return ec;
  }
  // Certificates from another home's CA would all be refused: say so once instead.
  const fs::path recorded_ca = dir / "home-ca.crt";
  if (fs::exists(recorded_ca)) {
    auto recorded = crypto::ReadSmallFile(recorded_ca, 1 << 20);
    if (!recorded) {
      *why = fmt::format("cannot read {}: {}", recorded_ca.string(), recorded.error().message());
      return recorded.error();
    }
    if (*recorded != trust.ca_pem) {
      *why = fmt::format("{} holds devices enrolled with another home (its CA differs from {}); use another "
                         "--state directory or delete this one",
                         dir.string(), trust.ca_file);
      return std::make_error_code(std::errc::file_exists);
    }
  } else if (auto written = crypto::WriteFileAtomically(recorded_ca, trust.ca_pem, 0644); !written) {
    *why = fmt::format("cannot write {}: {}", recorded_ca.string(), written.error().message());
    return written.error();
  }
  return CredentialStore(dir, trust);
}

fs::path CredentialStore::DeviceDir(const protocol::DeviceIdentity& identity) const {
  return dir_ / "devices" / PathPart(identity.customer) / PathPart(identity.site) / PathPart(identity.serial);
}

std::optional<DeviceCredentials> CredentialStore::Find(const protocol::DeviceIdentity& identity) const {
  const fs::path device_dir = DeviceDir(identity);
  const fs::path cert = device_dir / "device.crt";
  const fs::path key = device_dir / "device.key";
  std::error_code ec;
  if (!fs::exists(cert, ec) || !fs::exists(key, ec)) {
    return std::nullopt;
  }
  auto sign = crypto::ReadSigningKeyPair(device_dir / "device-sign.key");
  if (!sign) {
    return std::nullopt;
  }
  return DeviceCredentials{identity, cert.string(), key.string(), *sign};
}

Result<DeviceCredentials> CredentialStore::Enroll(const protocol::DeviceIdentity& identity, const std::string& token,
                                                  const std::string& home_url, transport::HttpClient& client,
                                                  std::chrono::milliseconds timeout, std::string* why) const {
  const fs::path device_dir = DeviceDir(identity);
  const fs::path key_path = device_dir / "device.key";
  const fs::path sign_path = device_dir / "device-sign.key";
  const fs::path cert_path = device_dir / "device.crt";
  std::error_code ec;
  fs::create_directories(device_dir, ec);
  if (ec) {
    *why = fmt::format("cannot create {}: {}", device_dir.string(), ec.message());
    return ec;
  }
  // As the agent does: keys are made once, here; a retry after a failed request reuses them.
  if (!fs::exists(key_path, ec)) {
    if (auto written = crypto::WritePrivateKeyPem(key_path, crypto::GeneratePrivateKeyPem()); !written) {
      *why = fmt::format("cannot write {}: {}", key_path.string(), written.error().message());
      return written.error();
    }
  }
  if (!fs::exists(sign_path, ec)) {
    if (auto written = crypto::WriteSecretKeyFile(sign_path, crypto::GenerateSigningKeyPair()); !written) {
      *why = fmt::format("cannot write {}: {}", sign_path.string(), written.error().message());
      return written.error();
    }
  }
  auto key_pem = crypto::ReadSmallFile(key_path, 1 << 16, /*require_private=*/true);
  auto sign = crypto::ReadSigningKeyPair(sign_path);
  if (!key_pem || !sign) {
    const auto err = !key_pem ? key_pem.error() : sign.error();
    *why = fmt::format("cannot read the keys in {}: {}", device_dir.string(), err.message());
    return err;
  }
  auto csr = crypto::MakeCsr(*key_pem, identity);
  if (!csr) {
    *why = "cannot make a certificate signing request: " + csr.error().message();
    return csr.error();
  }
  const protocol::EnrollRequest request{.token = token,
                                        .device = identity,
                                        .csr_pem = *csr,
                                        .signing_public_key = crypto::Base64Encode(sign->public_key)};
  auto response = client.Send({.url = home_url + "/v1/enroll",
                               .content_type = "application/json",
                               .body = protocol::EncodeEnrollRequest(request),
                               .timeout = timeout});
  if (!response) {
    *why = fmt::format("cannot reach {}: {}", home_url, client.LastErrorDetail());
    return response.error();
  }
  if (response->status != 200) {
    std::string message;
    const auto reason = protocol::DecodeError(response->body, &message);
    *why = fmt::format("enrollment refused: HTTP {} {}: {}", response->status, protocol::WireName(reason), message);
    return make_error_code(reason);
  }
  auto enrolled = protocol::DecodeEnrollResponse(response->body, why);
  if (!enrolled) {
    *why = "unreadable enrollment response: " + *why;
    return enrolled.error();
  }
  auto named = crypto::IdentityFromCertificatePem(enrolled->certificate_pem);
  if (!crypto::VerifyCertificateChain(enrolled->certificate_pem, trust_.ca_pem) || !named ||
      !named->SameDevice(identity)) {
    *why = "the home returned a certificate that is not for this device or not from the pinned CA";
    return make_error_code(protocol::Reject::kBadSignature);
  }
  if (auto written = crypto::WriteFileAtomically(cert_path, enrolled->certificate_pem, 0644); !written) {
    *why = fmt::format("cannot write {}: {}", cert_path.string(), written.error().message());
    return written.error();
  }
  return DeviceCredentials{identity, cert_path.string(), key_path.string(), *sign};
}

}  // namespace lifeline::sim
