#include "agent/enroll.h"

#include "agent/connection_paths.h"
#include "common/log.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "protocol/codec.h"
#include "transport/http_client.h"

#include <fmt/format.h>

#include <filesystem>

namespace lifeline::agent {

Result<EnrollOutcome> Enroll(const AgentConfig& config, const std::string& token, bool force,
                             std::string* refusal) {
  const AgentPkiPaths paths(config.pki_dir);
  auto fail = [&](std::error_code ec, std::string text) -> Result<EnrollOutcome> {
    *refusal = std::move(text);
    return ec;
  };
  if (std::filesystem::exists(paths.device_cert) && !force) {
    return fail(std::make_error_code(std::errc::file_exists),
                fmt::format("{} exists: this device is already enrolled (use --force to enroll again)",
                            paths.device_cert.string()));
  }
  if (!std::filesystem::exists(paths.ca_cert)) {
    return fail(std::make_error_code(std::errc::no_such_file_or_directory),
                fmt::format("{} is missing: copy ca.crt, home-seal.pub and home-sign.pub from the home's PKI "
                            "directory", paths.ca_cert.string()));
  }
  std::error_code ec;
  std::filesystem::create_directories(config.pki_dir, ec);
  // Keys are made here and only public halves leave: a retry after a failed request reuses them.
  if (!std::filesystem::exists(paths.device_key)) {
    if (auto written = crypto::WritePrivateKeyPem(paths.device_key, crypto::GeneratePrivateKeyPem()); !written) {
      return fail(written.error(), fmt::format("cannot write {}: {}", paths.device_key.string(), written.error().message()));
    }
  }
  if (!std::filesystem::exists(paths.device_sign_key)) {
    if (auto written = crypto::WriteSecretKeyFile(paths.device_sign_key, crypto::GenerateSigningKeyPair()); !written) {
      return fail(written.error(),
                  fmt::format("cannot write {}: {}", paths.device_sign_key.string(), written.error().message()));
    }
  }
  auto key_pem = crypto::ReadSmallFile(paths.device_key, 1 << 16, /*require_private=*/true);
  auto sign = crypto::ReadSigningKeyPair(paths.device_sign_key);
  if (!key_pem || !sign) {
    const auto err = !key_pem ? key_pem.error() : sign.error();
    return fail(err, fmt::format("cannot read the device keys in {}: {}", config.pki_dir, err.message()));
  }
  auto csr = crypto::MakeCsr(*key_pem, config.device);
  if (!csr) {
    return fail(csr.error(), "cannot make a certificate signing request: " + csr.error().message());
  }
  protocol::EnrollRequest request{.token = token,
                                  .device = config.device,
                                  .csr_pem = *csr,
                                  .signing_public_key = crypto::Base64Encode(sign->public_key)};
  transport::HttpClient client(transport::ClientTls{.ca_file = paths.ca_cert.string()});
  // The same paths and endpoints as the sender: enrollment must work where sending does.
  auto routes = MakeConnectionPaths(config, nullptr);
  transport::ClientRequest enroll_request{
      .url = "", .content_type = "application/json", .body = protocol::EncodeEnrollRequest(request),
      .timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.request_timeout)};
  auto response = routes->Send([&](const transport::ProxySettings& path, const std::string& endpoint,
                                   std::string* detail) {
    enroll_request.url = endpoint + "/v1/enroll";
    enroll_request.proxy = path;
    auto answer = client.Send(enroll_request);
    if (!answer) {
      *detail = client.LastErrorDetail();
    }
    return answer;
  });
  if (!response) {
    return fail(response.error(), fmt::format("cannot reach the home: {}", routes->LastFailure()));
  }
  if (response->status != 200) {
    std::string message;
    const auto reason = protocol::DecodeError(response->body, &message);
    return fail(make_error_code(reason), fmt::format("enrollment refused: {}: {}", protocol::WireName(reason), message));
  }
  std::string why;
  auto enrolled = protocol::DecodeEnrollResponse(response->body, &why);
  if (!enrolled) {
    return fail(enrolled.error(), "unreadable enrollment response: " + why);
  }
  auto ca_pem = crypto::ReadSmallFile(paths.ca_cert, 1 << 20);
  auto identity = crypto::IdentityFromCertificatePem(enrolled->certificate_pem);
  if (!ca_pem || !crypto::VerifyCertificateChain(enrolled->certificate_pem, *ca_pem) || !identity ||
      !identity->SameDevice(config.device)) {
    return fail(make_error_code(protocol::Reject::kBadSignature),
                "the home returned a certificate that is not for this device or not from the pinned CA");
  }
  if (auto written = crypto::WriteFileAtomically(paths.device_cert, enrolled->certificate_pem, 0644); !written) {
    return fail(written.error(), fmt::format("cannot write {}: {}", paths.device_cert.string(), written.error().message()));
  }
  auto fingerprint = crypto::CertificateFingerprintSha256(enrolled->certificate_pem);
  EnrollOutcome outcome;
  outcome.certificate_fingerprint = fingerprint ? *fingerprint : "";
  outcome.message = fmt::format("enrolled {} with {}; certificate {} (SHA-256 {})", config.device.Key(),
                                config.home_url, paths.device_cert.string(), outcome.certificate_fingerprint);
  return outcome;
}

}  // namespace lifeline::agent
