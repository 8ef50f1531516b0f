#pragma once
// Errors of the crypto module: payload sealing/signing (libsodium), key files and PKI (OpenSSL).
// File-system failures that are not about keys (ENOENT, EACCES, ...) come back as
// std::system_category codes instead, so callers can test them against std::errc.
#include <system_error>
#include <type_traits>

#include "common/result.h"

namespace lifeline::crypto {

enum class Errc {
  kUnsealFailed = 1,  // sealed box did not open: tampered, truncated, or sealed to another key
  kBadEnvelope,       // opened, but not a Lifeline envelope (wrong magic or too short)
  kBadBase64,         // text is not valid standard/url-safe base64
  kBadKeyFile,        // key file is not in the "lifeline-<kind>-v1" format or has the wrong length
  kWrongKeyKind,      // key file holds another kind of key than the caller asked for
  kKeyMismatch,       // a secret key does not match its public half
  kAlreadyExists,     // refusing to overwrite an existing key or PKI file
  kInsecurePermissions,  // a secret key file can be read by group or others
  kNotRegularFile,       // a key/cert path names a directory, device or similar
  kBadKey,               // private key PEM unreadable or unsuitable
  kBadCertificate,       // certificate PEM unreadable
  kBadCsr,               // CSR unreadable, not self-signed, or with a weak key
  kBadIdentity,          // device identity not valid (see protocol::IsValidIdentity)
  kNoIdentity,           // certificate carries no (or more than one) lifeline device identity
  kOpenSslFailure,       // an OpenSSL call failed unexpectedly (details are logged)
};

const std::error_category& ErrorCategory();
inline std::error_code make_error_code(Errc code) {
  return {static_cast<int>(code), ErrorCategory()};
}

}  // namespace lifeline::crypto

template <>
struct std::is_error_code_enum<lifeline::crypto::Errc> : std::true_type {};
