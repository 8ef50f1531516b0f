#pragma once
// The protocol envelope: how a device's batch travels to the home, signed by the device and
// readable only by the home.
//
// Byte layout:
//
//   inner  = "LLB1"                     4 bytes, ASCII magic and layout version
//            || signature               64 bytes, Ed25519 detached signature over `batch` by the
//            device key
//            || batch                   the batch as JSON text (opaque to this layer), to the end
//   sealed = crypto_box_seal(inner, home X25519 public key)
//          = ephemeral X25519 public key (32) || XSalsa20-Poly1305 ciphertext of inner with MAC (16
//          + |inner|)
//
// So |sealed| = |batch| + 48 + 4 + 64. The seal gives confidentiality and integrity towards the
// home; the signature inside says which device wrote the batch (the sealed box itself is
// anonymous). The home opens the envelope, parses the batch to learn the claimed device, then
// verifies the signature with that device's enrolled key; replay protection comes from the signed
// batch id and send time.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "crypto/keys.h"

namespace lifeline::crypto {

inline constexpr std::array<std::uint8_t, 4> kEnvelopeMagic = {'L', 'L', 'B', '1'};
/// Bytes an envelope adds to the batch: seal overhead + magic + signature.
inline constexpr std::size_t kEnvelopeOverheadBytes = kSealOverheadBytes + 4 + kSignatureBytes;

struct OpenedEnvelope {
  std::array<std::uint8_t, kSignatureBytes> signature{};
  std::string batch_bytes;  // not yet verified: call VerifyEnvelope with the claimed device's key
};

/// Signs `batch_bytes` with the device key and seals the result to the home.
std::vector<std::uint8_t> SealEnvelope(
    std::span<const std::uint8_t> batch_bytes, const SigningKeyPair& device_key,
    std::span<const std::uint8_t, kSealingKeyBytes> home_seal_public);
inline std::vector<std::uint8_t> SealEnvelope(
    std::string_view batch_json, const SigningKeyPair& device_key,
    std::span<const std::uint8_t, kSealingKeyBytes> home_seal_public) {
  return SealEnvelope(AsBytes(batch_json), device_key, home_seal_public);
}

/// Opens an envelope with the home's key. Errc::kUnsealFailed for tampered, truncated or foreign
/// data; Errc::kBadEnvelope when it opens but is not laid out as above. Does NOT check the
/// signature.
[[nodiscard]] Result<OpenedEnvelope> OpenEnvelope(std::span<const std::uint8_t> sealed,
                                                  const SealingKeyPair& home_key);

/// True when the envelope's signature over its batch verifies with `device_signing_public` (32
/// bytes).
bool VerifyEnvelope(const OpenedEnvelope& envelope,
                    std::span<const std::uint8_t> device_signing_public);

}  // namespace lifeline::crypto
