#include "crypto/errors.h"

namespace lifeline::crypto {
namespace {

const char* Describe(Errc code) {
  switch (code) {
    case Errc::kUnsealFailed:
      return "sealed data could not be opened (tampered, truncated, or sealed to another key)";
    case Errc::kBadEnvelope:
      return "not a Lifeline envelope (wrong magic or too short)";
    case Errc::kBadBase64:
      return "invalid base64 text";
    case Errc::kBadKeyFile:
      return "not a Lifeline key file (expected a 'lifeline-<kind>-v1' line and one base64 line)";
    case Errc::kWrongKeyKind:
      return "the key file holds another kind of key than expected";
    case Errc::kKeyMismatch:
      return "the secret key does not match its public key";
    case Errc::kAlreadyExists:
      return "the file already exists; refusing to overwrite it (move it away first)";
    case Errc::kInsecurePermissions:
      return "the secret key file is accessible by group or others; fix with: chmod 600 <file>";
    case Errc::kNotRegularFile:
      return "not a regular file";
    case Errc::kBadKey:
      return "the private key is unreadable or unsuitable";
    case Errc::kBadCertificate:
      return "the certificate is unreadable";
    case Errc::kBadCsr:
      return "the certificate signing request is unreadable, not self-signed, or uses a weak key";
    case Errc::kBadIdentity:
      return "invalid device identity (customer, site and serial must be 1 to 128 printable "
             "characters "
             "without '/')";
    case Errc::kNoIdentity:
      return "the certificate carries no single lifeline device identity";
    case Errc::kOpenSslFailure:
      return "an OpenSSL operation failed (see the crypto log)";
  }
  return "unknown crypto error";
}

}  // namespace

const std::error_category& ErrorCategory() {
  static const EnumErrorCategory<Errc> category("lifeline.crypto", &Describe);
  return category;
}

}  // namespace lifeline::crypto
