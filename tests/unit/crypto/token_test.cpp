#include "crypto/token.h"

#include <gtest/gtest.h>

#include <set>

#include "crypto/keys.h"

namespace lifeline::crypto {
namespace {

TEST(TokenTest, FormatIsPrefixUnderscoreAndUrlSafeBase64Of32Bytes) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    const std::string token = GenerateToken("llenr");
    ASSERT_TRUE(token.starts_with("llenr_")) << token;
    const std::string secret = token.substr(6);
    EXPECT_EQ(secret.size(), 43u);
    EXPECT_EQ(secret.find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos)
        << token;
    auto bytes = Base64UrlDecode(secret);
    ASSERT_TRUE(bytes);
    EXPECT_EQ(bytes->size(), 32u);
    seen.insert(token);
  }
  EXPECT_EQ(seen.size(), 50u);
  EXPECT_TRUE(GenerateToken("lladm").starts_with("lladm_"));
}

TEST(TokenTest, HashIsLowercaseHexSha256) {
  // FIPS 180-2 test vector.
  EXPECT_EQ(HashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HashToken(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string token = GenerateToken("llenr");
  EXPECT_EQ(HashToken(token), HashToken(token));
  EXPECT_NE(HashToken(token), HashToken(GenerateToken("llenr")));
  EXPECT_EQ(HashToken(token).size(), 64u);
}

TEST(TokenTest, ConstantTimeEqualsComparesExactly) {
  const std::string hash = HashToken("llenr_secret");
  EXPECT_TRUE(ConstantTimeEquals(hash, HashToken("llenr_secret")));
  EXPECT_FALSE(ConstantTimeEquals(hash, HashToken("llenr_secreT")));
  std::string last_differs = hash;
  last_differs.back() = last_differs.back() == '0' ? '1' : '0';
  EXPECT_FALSE(ConstantTimeEquals(hash, last_differs));
  EXPECT_FALSE(ConstantTimeEquals(hash, hash.substr(0, 63)));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

}  // namespace
}  // namespace lifeline::crypto
