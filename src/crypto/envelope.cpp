#include "crypto/envelope.h"

#include <sodium.h>

#include <algorithm>

#include "crypto/errors.h"

namespace lifeline::crypto {

std::vector<std::uint8_t> SealEnvelope(
    std::span<const std::uint8_t> batch_bytes, const SigningKeyPair& device_key,
    std::span<const std::uint8_t, kSealingKeyBytes> home_seal_public) {
  const auto signature = Sign(batch_bytes, device_key);
  std::vector<std::uint8_t> inner;
  inner.reserve(kEnvelopeMagic.size() + signature.size() + batch_bytes.size());
  inner.insert(inner.end(), kEnvelopeMagic.begin(), kEnvelopeMagic.end());
  inner.insert(inner.end(), signature.begin(), signature.end());
  inner.insert(inner.end(), batch_bytes.begin(), batch_bytes.end());
  auto sealed = Seal(inner, home_seal_public);
  // The batch may carry log excerpts: do not leave a plaintext copy in freed memory.
  sodium_memzero(inner.data(), inner.size());
  return sealed;
}

Result<OpenedEnvelope> OpenEnvelope(std::span<const std::uint8_t> sealed,
                                    const SealingKeyPair& home_key) {
  auto inner = Unseal(sealed, home_key);
  if (!inner) {
    return inner.error();
  }
  const std::size_t header = kEnvelopeMagic.size() + kSignatureBytes;
  if (inner->size() < header ||
      !std::equal(kEnvelopeMagic.begin(), kEnvelopeMagic.end(), inner->begin())) {
    return Errc::kBadEnvelope;
  }
  OpenedEnvelope envelope;
  std::copy_n(inner->begin() + kEnvelopeMagic.size(), kSignatureBytes, envelope.signature.begin());
  envelope.batch_bytes.assign(reinterpret_cast<const char*>(inner->data()) + header,
                              inner->size() - header);
  sodium_memzero(inner->data(), inner->size());
  return envelope;
}

bool VerifyEnvelope(const OpenedEnvelope& envelope,
                    std::span<const std::uint8_t> device_signing_public) {
  return Verify(AsBytes(envelope.batch_bytes), envelope.signature, device_signing_public);
}

}  // namespace lifeline::crypto
