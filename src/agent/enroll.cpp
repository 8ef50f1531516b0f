#include "agent/enroll.h"

#include "agent/connection_paths.h"
#include "common/log.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "protocol/codec.h"
#include "transport/http_client.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>

namespace lifeline::agent {

Result<EnrollOutcome> EnrollWithHome(const EnrollTarget& target, const std::string& token, bool force,
                                     std::string* refusal) {
  const bool gateway = target.kind == crypto::PeerKind::kGateway;
  const char* what = gateway ? "gateway" : "device";
  auto fail = [&](std::error_code ec, std::string text) -> Result<EnrollOutcome> {
    *refusal = std::move(text);
    return ec;
  };
  if (std::filesystem::exists(target.cert) && !force) {
    return fail(std::make_error_code(std::errc::file_exists),
                fmt::format("{} exists: this {} is already enrolled (use --force to enroll again)",
                            target.cert.string(), what));
  }
  if (!std::filesystem::exists(target.ca_cert)) {
    return fail(std::make_error_code(std::errc::no_such_file_or_directory),
                fmt::format("{} is missing: copy ca.crt, home-seal.pub and home-sign.pub from the home's PKI "
                            "directory", target.ca_cert.string()));
  }
  std::error_code ec;
  std::filesystem::create_directories(target.pki_dir, ec);
  // Keys are made here and only public halves leave: a retry after a failed request reuses them.
  if (!std::filesystem::exists(target.key)) {
    if (auto written = crypto::WritePrivateKeyPem(target.key, crypto::GeneratePrivateKeyPem()); !written) {
      return fail(written.error(), fmt::format("cannot write {}: {}", target.key.string(), written.error().message()));
    }
  }
  if (!std::filesystem::exists(target.sign_key)) {
    if (auto written = crypto::WriteSecretKeyFile(target.sign_key, crypto::GenerateSigningKeyPair()); !written) {
      return fail(written.error(),
                  fmt::format("cannot write {}: {}", target.sign_key.string(), written.error().message()));
    }
  }
  auto key_pem = crypto::ReadSmallFile(target.key, 1 << 16, /*require_private=*/true);
  auto sign = crypto::ReadSigningKeyPair(target.sign_key);
  if (!key_pem || !sign) {
    const auto err = !key_pem ? key_pem.error() : sign.error();
    return fail(err, fmt::format("cannot read the {} keys in {}: {}", what, target.pki_dir.string(), err.message()));
  }
  auto csr = crypto::MakeCsr(*key_pem, target.identity, target.kind);
  if (!csr) {
    return fail(csr.error(), "cannot make a certificate signing request: " + csr.error().message());
  }
  protocol::EnrollRequest request{.token = token,
                                  .device = target.identity,
                                  .csr_pem = *csr,
                                  .signing_public_key = crypto::Base64Encode(sign->public_key),
                                  .gateway = gateway,
                                  .server_names = gateway ? target.server_names : std::vector<std::string>{}};
  transport::HttpClient client(transport::ClientTls{.ca_file = target.ca_cert.string()});
  // The same paths and endpoints as the sender: enrollment must work where sending does.
  auto routes = std::make_unique<ConnectionPaths>(ProxyPaths(target.paths),
                                                  HomeEndpoints(target.paths, target.home_url),
                                                  target.paths.retry_preferred_after, SystemClock::Instance());
  transport::ClientRequest enroll_request{
      .url = "", .content_type = "application/json", .body = protocol::EncodeEnrollRequest(request),
      .timeout = std::chrono::duration_cast<std::chrono::milliseconds>(target.request_timeout)};
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
  auto ca_pem = crypto::ReadSmallFile(target.ca_cert, 1 << 20);
  auto peer = crypto::PeerFromCertificatePem(enrolled->certificate_pem);
  if (!ca_pem || !crypto::VerifyCertificateChain(enrolled->certificate_pem, *ca_pem) || !peer ||
      peer->kind != target.kind || !peer->identity.SameDevice(target.identity)) {
    return fail(make_error_code(protocol::Reject::kBadSignature),
                fmt::format("the home returned a certificate that is not for this {} or not from the pinned CA", what));
  }
  if (auto written = crypto::WriteFileAtomically(target.cert, enrolled->certificate_pem, 0644); !written) {
    return fail(written.error(), fmt::format("cannot write {}: {}", target.cert.string(), written.error().message()));
  }
  auto fingerprint = crypto::CertificateFingerprintSha256(enrolled->certificate_pem);
  EnrollOutcome outcome;
  outcome.certificate_fingerprint = fingerprint ? *fingerprint : "";
  outcome.message = fmt::format("enrolled {} {} with {}; certificate {} (SHA-256 {})", what, target.identity.Key(),
                                target.home_url, target.cert.string(), outcome.certificate_fingerprint);
  return outcome;
}

Result<EnrollOutcome> Enroll(const AgentConfig& config, const std::string& token, bool force,
                             std::string* refusal) {
  const AgentPkiPaths paths(config.pki_dir);
  EnrollTarget target{.identity = config.device,
                      .pki_dir = config.pki_dir,
                      .ca_cert = paths.ca_cert,
                      .key = paths.device_key,
                      .cert = paths.device_cert,
                      .sign_key = paths.device_sign_key,
                      .home_url = config.home_url,
                      .paths = config.paths,
                      .request_timeout = config.request_timeout};
  return EnrollWithHome(target, token, force, refusal);
}

std::string ResolveEnrollToken(std::string token, const std::string& token_file, std::string* problem) {
  if (!token_file.empty()) {
    auto text = crypto::ReadSmallFile(token_file, 4096);
    if (!text) {
      *problem = fmt::format("cannot read {}: {}", token_file, text.error().message());
      return {};
    }
    token = *text;
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) {
      token.pop_back();
    }
  }
  if (token.empty()) {
    if (const char* env = std::getenv("LIFELINE_ENROLL_TOKEN")) {
      token = env;
    }
  }
  if (token.empty()) {
    *problem = "give the enrollment token with --token, --token-file or LIFELINE_ENROLL_TOKEN";
  }
  return token;
}

}  // namespace lifeline::agent
