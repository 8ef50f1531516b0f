#include "crypto/token.h"

#include <sodium.h>

#include <array>

#include "crypto/keys.h"
#include "crypto/sodium_init.h"

namespace lifeline::crypto {

std::string GenerateToken(std::string_view prefix) {
  std::array<std::uint8_t, 32> secret{};
  detail::EnsureSodiumInitialized();
  randombytes_buf(secret.data(), secret.size());
  std::string token(prefix);
  token += '_';
  token += Base64UrlEncode(secret);
  sodium_memzero(secret.data(), secret.size());
  return token;
}

std::string HashToken(std::string_view token) {
  detail::EnsureSodiumInitialized();
  std::array<std::uint8_t, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), reinterpret_cast<const unsigned char*>(token.data()),
                     token.size());
  return HexEncode(digest);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  detail::EnsureSodiumInitialized();
  if (a.size() != b.size()) {
    return false;
  }
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace lifeline::crypto
