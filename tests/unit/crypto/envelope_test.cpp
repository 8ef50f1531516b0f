#include "crypto/envelope.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "crypto/errors.h"

namespace lifeline::crypto {
namespace {

const std::string kBatch =
    R"({"version":1,"batch_id":"4f1c","device":{"customer":"acme","site":"lab","serial":"SN1"},"messages":[]})";

TEST(EnvelopeTest, RoundTripOpensAndVerifies) {
  const auto device = GenerateSigningKeyPair();
  const auto home = GenerateSealingKeyPair();
  const auto sealed = SealEnvelope(kBatch, device, home.public_key);
  EXPECT_EQ(sealed.size(), kBatch.size() + kEnvelopeOverheadBytes);
  // The batch text does not appear in the sealed bytes.
  EXPECT_EQ(std::search(sealed.begin(), sealed.end(), kBatch.begin() + 10, kBatch.begin() + 30),
            sealed.end());

  auto opened = OpenEnvelope(sealed, home);
  ASSERT_TRUE(opened) << opened.error().message();
  EXPECT_EQ(opened->batch_bytes, kBatch);
  EXPECT_TRUE(VerifyEnvelope(*opened, device.public_key));
  // The signature is a plain detached signature over the batch bytes.
  EXPECT_TRUE(Verify(AsBytes(kBatch), opened->signature, device.public_key));
}

TEST(EnvelopeTest, AnotherDevicesKeyDoesNotVerify) {
  const auto device = GenerateSigningKeyPair();
  const auto impostor = GenerateSigningKeyPair();
  const auto home = GenerateSealingKeyPair();
  // The impostor knows the home's public key, so it can seal; it cannot sign as `device`.
  auto opened = OpenEnvelope(SealEnvelope(kBatch, impostor, home.public_key), home);
  ASSERT_TRUE(opened);
  EXPECT_FALSE(VerifyEnvelope(*opened, device.public_key));
  EXPECT_TRUE(VerifyEnvelope(*opened, impostor.public_key));
  EXPECT_FALSE(VerifyEnvelope(*opened, {}));
}

TEST(EnvelopeTest, ModifiedBatchFailsVerification) {
  const auto device = GenerateSigningKeyPair();
  const auto home = GenerateSealingKeyPair();
  auto opened = OpenEnvelope(SealEnvelope(kBatch, device, home.public_key), home);
  ASSERT_TRUE(opened);
  opened->batch_bytes[3] ^= 0x20;
  EXPECT_FALSE(VerifyEnvelope(*opened, device.public_key));
}

TEST(EnvelopeTest, TamperedGarbageOrForeignEnvelopesFailToOpen) {
  const auto device = GenerateSigningKeyPair();
  const auto home = GenerateSealingKeyPair();
  const auto sealed = SealEnvelope(kBatch, device, home.public_key);

  auto tampered = sealed;
  tampered[tampered.size() / 2] ^= 0x01;
  auto result = OpenEnvelope(tampered, home);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), Errc::kUnsealFailed);

  const std::vector<std::uint8_t> garbage(200, 0x5a);
  result = OpenEnvelope(garbage, home);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), Errc::kUnsealFailed);

  result = OpenEnvelope({}, home);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), Errc::kUnsealFailed);

  result = OpenEnvelope(sealed, GenerateSealingKeyPair());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), Errc::kUnsealFailed);
}

TEST(EnvelopeTest, WrongMagicOrShortInnerIsABadEnvelope) {
  const auto device = GenerateSigningKeyPair();
  const auto home = GenerateSealingKeyPair();

  // Correctly sealed to the home, but not our layout.
  std::vector<std::uint8_t> inner = {'L', 'L', 'B', '2'};
  const auto signature = Sign(AsBytes(kBatch), device);
  inner.insert(inner.end(), signature.begin(), signature.end());
  inner.insert(inner.end(), kBatch.begin(), kBatch.end());
  auto result = OpenEnvelope(Seal(inner, home.public_key), home);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), Errc::kBadEnvelope);

  const std::vector<std::uint8_t> short_inner = {'L', 'L', 'B', '1', 1, 2, 3};
  result = OpenEnvelope(Seal(short_inner, home.public_key), home);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), Errc::kBadEnvelope);

  // Magic and signature but an empty batch is well-formed (the batch parser rejects it later).
  auto empty = OpenEnvelope(SealEnvelope(std::string_view(), device, home.public_key), home);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->batch_bytes.empty());
  EXPECT_TRUE(VerifyEnvelope(*empty, device.public_key));
}

}  // namespace
}  // namespace lifeline::crypto
