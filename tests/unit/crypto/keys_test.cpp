#include "crypto/keys.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "crypto/errors.h"
#include "support/temp_dir.h"

namespace lifeline::crypto {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

mode_t ModeOf(const std::filesystem::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

// Runs the body under a permissive umask, to show file modes come from the writer, not from the
// umask.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(previous_); }

 private:
  mode_t previous_;
};

TEST(SignTest, SignatureVerifiesAndAnyFlippedBitFails) {
  const auto key = GenerateSigningKeyPair();
  const std::string message = R"({"batch_id":"b1","messages":[]})";
  auto signature = Sign(AsBytes(message), key);
  EXPECT_TRUE(Verify(AsBytes(message), signature, key.public_key));

  std::string altered = message;
  altered[5] ^= 0x01;
  EXPECT_FALSE(Verify(AsBytes(altered), signature, key.public_key));

  auto bad_signature = signature;
  bad_signature[10] ^= 0x80;
  EXPECT_FALSE(Verify(AsBytes(message), bad_signature, key.public_key));

  const auto other = GenerateSigningKeyPair();
  EXPECT_FALSE(Verify(AsBytes(message), signature, other.public_key));
}

TEST(SignTest, WrongSizedInputsFailInsteadOfCrashing) {
  const auto key = GenerateSigningKeyPair();
  const std::string message = "hello";
  const auto signature = Sign(AsBytes(message), key);
  EXPECT_FALSE(Verify(AsBytes(message), std::span(signature).first(63), key.public_key));
  EXPECT_FALSE(Verify(AsBytes(message), signature, std::span(key.public_key).first(31)));
  EXPECT_FALSE(Verify(AsBytes(message), {}, {}));
}

TEST(SealTest, RoundTrip) {
  const auto home = GenerateSealingKeyPair();
  const std::string plaintext = "alert: disk failure on /dev/sda";
  const auto sealed = Seal(AsBytes(plaintext), home.public_key);
  EXPECT_EQ(sealed.size(), plaintext.size() + kSealOverheadBytes);
  auto opened = Unseal(sealed, home);
  ASSERT_TRUE(opened) << opened.error().message();
  EXPECT_EQ(std::string(opened->begin(), opened->end()), plaintext);

  auto empty = Unseal(Seal({}, home.public_key), home);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(SealTest, TamperedTruncatedOrForeignCiphertextFails) {
  const auto home = GenerateSealingKeyPair();
  const std::string plaintext = "some batch";
  const auto sealed = Seal(AsBytes(plaintext), home.public_key);

  for (std::size_t i = 0; i < sealed.size(); i += 7) {
    auto tampered = sealed;
    tampered[i] ^= 0x04;
    auto result = Unseal(tampered, home);
    ASSERT_FALSE(result) << "byte " << i;
    EXPECT_EQ(result.error(), Errc::kUnsealFailed);
  }
  auto truncated = Unseal(std::span(sealed).first(sealed.size() - 1), home);
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error(), Errc::kUnsealFailed);
  auto too_short = Unseal(std::span(sealed).first(kSealOverheadBytes - 1), home);
  ASSERT_FALSE(too_short);
  EXPECT_EQ(too_short.error(), Errc::kUnsealFailed);
  auto nothing = Unseal({}, home);
  ASSERT_FALSE(nothing);
  EXPECT_EQ(nothing.error(), Errc::kUnsealFailed);

  const auto other_home = GenerateSealingKeyPair();
  auto foreign = Unseal(sealed, other_home);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error(), Errc::kUnsealFailed);
}

TEST(EncodingTest, Base64MatchesRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(AsBytes("")), "");
  EXPECT_EQ(Base64Encode(AsBytes("f")), "Zg==");
  EXPECT_EQ(Base64Encode(AsBytes("fo")), "Zm8=");
  EXPECT_EQ(Base64Encode(AsBytes("foobar")), "Zm9vYmFy");
  auto decoded = Base64Decode("Zm8=");
  ASSERT_TRUE(decoded);
  EXPECT_EQ(std::string(decoded->begin(), decoded->end()), "fo");

  const std::vector<std::uint8_t> awkward = {0xfb, 0xff, 0xbf};
  EXPECT_EQ(Base64Encode(awkward), "+/+/");
  EXPECT_EQ(Base64UrlEncode(awkward), "-_-_");
  EXPECT_EQ(Base64UrlEncode(AsBytes("fo")), "Zm8");
  auto url = Base64UrlDecode("-_-_");
  ASSERT_TRUE(url);
  EXPECT_EQ(*url, awkward);
}

TEST(EncodingTest, Base64DecodeRejectsMalformedText) {
  for (const char* bad : {"Zm8", "Zm8=x", "Zm 8=", "Zm8=\n", "!!!!", "-_-_"}) {
    auto result = Base64Decode(bad);
    ASSERT_FALSE(result) << bad;
    EXPECT_EQ(result.error(), Errc::kBadBase64);
  }
  EXPECT_FALSE(Base64UrlDecode("Zm8="));
}

TEST(EncodingTest, RandomHexIsLowercaseAndFresh) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string id = RandomHex(16);
    ASSERT_EQ(id.size(), 32u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(HexEncode(std::vector<std::uint8_t>{0x00, 0xab, 0xff}), "00abff");
}

TEST(KeyFileTest, FormatIsKindLineThenBase64Line) {
  const std::vector<std::uint8_t> key(32, 0x01);
  EXPECT_EQ(FormatKeyFile(KeyKind::kX25519Public, key),
            "lifeline-x25519-public-v1\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n");
}

TEST(KeyFileTest, SecretFilesAre0600AndPublicFiles0644EvenUnderAPermissiveUmask) {
  TempDir dir;
  ScopedUmask permissive(0);
  const auto signing = GenerateSigningKeyPair();
  const auto sealing = GenerateSealingKeyPair();
  ASSERT_TRUE(WriteSecretKeyFile(dir / "sign.key", signing));
  ASSERT_TRUE(WritePublicKeyFile(dir / "sign.pub", signing));
  ASSERT_TRUE(WriteSecretKeyFile(dir / "seal.key", sealing));
  ASSERT_TRUE(WritePublicKeyFile(dir / "seal.pub", sealing));
  EXPECT_EQ(ModeOf(dir / "sign.key"), 0600u);
  EXPECT_EQ(ModeOf(dir / "seal.key"), 0600u);
  EXPECT_EQ(ModeOf(dir / "sign.pub"), 0644u);
  EXPECT_EQ(ModeOf(dir / "seal.pub"), 0644u);
  EXPECT_TRUE(ReadFile(dir / "sign.key").starts_with("lifeline-ed25519-secret-v1\n"));
  // Only the four key files: the temporary names were renamed away.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 4);
}

TEST(KeyFileTest, KeysRoundTripThroughFiles) {
  TempDir dir;
  const auto signing = GenerateSigningKeyPair();
  const auto sealing = GenerateSealingKeyPair();
  ASSERT_TRUE(WriteSecretKeyFile(dir / "sign.key", signing));
  ASSERT_TRUE(WritePublicKeyFile(dir / "sign.pub", signing));
  ASSERT_TRUE(WriteSecretKeyFile(dir / "seal.key", sealing));
  ASSERT_TRUE(WritePublicKeyFile(dir / "seal.pub", KeyKind::kX25519Public, sealing.public_key));

  auto read_signing = ReadSigningKeyPair(dir / "sign.key");
  ASSERT_TRUE(read_signing) << read_signing.error().message();
  EXPECT_EQ(read_signing->secret_key, signing.secret_key);
  EXPECT_EQ(read_signing->public_key, signing.public_key);
  auto read_sealing = ReadSealingKeyPair(dir / "seal.key");
  ASSERT_TRUE(read_sealing) << read_sealing.error().message();
  EXPECT_EQ(read_sealing->secret_key, sealing.secret_key);
  EXPECT_EQ(read_sealing->public_key, sealing.public_key);  // derived from the secret
  auto sign_public = ReadPublicKey(dir / "sign.pub", KeyKind::kEd25519Public);
  ASSERT_TRUE(sign_public);
  EXPECT_EQ(*sign_public, signing.public_key);
  auto seal_public = ReadPublicKey(dir / "seal.pub", KeyKind::kX25519Public);
  ASSERT_TRUE(seal_public);
  EXPECT_EQ(*seal_public, sealing.public_key);

  // The keys read back work with the ones in memory.
  const std::string message = "reply";
  EXPECT_TRUE(Verify(AsBytes(message), Sign(AsBytes(message), *read_signing), signing.public_key));
  auto opened = Unseal(Seal(AsBytes(message), *seal_public), sealing);
  EXPECT_TRUE(opened);
}

TEST(KeyFileTest, RefusesToOverwriteAnExistingKeyFile) {
  TempDir dir;
  const auto first = GenerateSigningKeyPair();
  ASSERT_TRUE(WriteSecretKeyFile(dir / "sign.key", first));
  const std::string before = ReadFile(dir / "sign.key");

  auto again = WriteSecretKeyFile(dir / "sign.key", GenerateSigningKeyPair());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), Errc::kAlreadyExists);
  EXPECT_EQ(ReadFile(dir / "sign.key"), before);

  ASSERT_TRUE(WritePublicKeyFile(dir / "sign.pub", first));
  auto public_again = WritePublicKeyFile(dir / "sign.pub", first);
  ASSERT_FALSE(public_again);
  EXPECT_EQ(public_again.error(), Errc::kAlreadyExists);

  // A dangling symlink counts as existing too: writing through it could land anywhere.
  std::filesystem::create_symlink(dir / "nowhere", dir / "link.key");
  auto through_link = WriteSecretKeyFile(dir / "link.key", first);
  ASSERT_FALSE(through_link);
  EXPECT_EQ(through_link.error(), Errc::kAlreadyExists);
  EXPECT_FALSE(std::filesystem::exists(dir / "nowhere"));
}

TEST(KeyFileTest, SecretKeyReadableByOthersIsRefusedWithTheFix) {
  TempDir dir;
  ASSERT_TRUE(WriteSecretKeyFile(dir / "sign.key", GenerateSigningKeyPair()));
  ASSERT_TRUE(WriteSecretKeyFile(dir / "seal.key", GenerateSealingKeyPair()));
  for (const mode_t mode : {0640, 0604, 0660, 0644, 0610}) {
    ASSERT_EQ(::chmod((dir / "sign.key").c_str(), mode), 0);
    auto result = ReadSigningKeyPair(dir / "sign.key");
    ASSERT_FALSE(result) << std::oct << mode;
    EXPECT_EQ(result.error(), Errc::kInsecurePermissions);
  }
  ASSERT_EQ(::chmod((dir / "seal.key").c_str(), 0644), 0);
  auto sealing = ReadSealingKeyPair(dir / "seal.key");
  ASSERT_FALSE(sealing);
  EXPECT_EQ(sealing.error(), Errc::kInsecurePermissions);
  EXPECT_NE(sealing.error().message().find("chmod 600"), std::string::npos);

  // Owner-only read is fine.
  ASSERT_EQ(::chmod((dir / "sign.key").c_str(), 0400), 0);
  EXPECT_TRUE(ReadSigningKeyPair(dir / "sign.key"));
  // Public keys may be world-readable.
  ASSERT_TRUE(WritePublicKeyFile(dir / "seal.pub", GenerateSealingKeyPair()));
  EXPECT_TRUE(ReadPublicKey(dir / "seal.pub", KeyKind::kX25519Public));
}

TEST(KeyFileTest, WrongKindHeaderIsRejected) {
  TempDir dir;
  const auto signing = GenerateSigningKeyPair();
  const auto sealing = GenerateSealingKeyPair();
  ASSERT_TRUE(WriteSecretKeyFile(dir / "sign.key", signing));
  ASSERT_TRUE(WritePublicKeyFile(dir / "sign.pub", signing));
  ASSERT_TRUE(WriteSecretKeyFile(dir / "seal.key", sealing));
  ASSERT_TRUE(WritePublicKeyFile(dir / "seal.pub", sealing));

  auto sealing_from_signing = ReadSealingKeyPair(dir / "sign.key");
  ASSERT_FALSE(sealing_from_signing);
  EXPECT_EQ(sealing_from_signing.error(), Errc::kWrongKeyKind);
  auto signing_from_sealing = ReadSigningKeyPair(dir / "seal.key");
  ASSERT_FALSE(signing_from_sealing);
  EXPECT_EQ(signing_from_sealing.error(), Errc::kWrongKeyKind);
  auto seal_public_from_sign_public = ReadPublicKey(dir / "sign.pub", KeyKind::kX25519Public);
  ASSERT_FALSE(seal_public_from_sign_public);
  EXPECT_EQ(seal_public_from_sign_public.error(), Errc::kWrongKeyKind);
  // Public file where a secret is expected: same length as an x25519 secret, but the header says
  // no.
  ::chmod((dir / "seal.pub").c_str(), 0600);
  auto secret_from_public = ReadSealingKeyPair(dir / "seal.pub");
  ASSERT_FALSE(secret_from_public);
  EXPECT_EQ(secret_from_public.error(), Errc::kWrongKeyKind);
  auto public_from_secret = ReadPublicKey(dir / "seal.key", KeyKind::kX25519Public);
  ASSERT_FALSE(public_from_secret);
  EXPECT_EQ(public_from_secret.error(), Errc::kWrongKeyKind);
}

TEST(KeyFileTest, MalformedFilesAreRejected) {
  TempDir dir;
  const std::vector<std::uint8_t> key32(32, 7);
  const std::string body = Base64Encode(key32);
  const std::pair<const char*, std::string> cases[] = {
      {"no header", body + "\n"},
      {"unknown kind", "lifeline-rsa-public-v1\n" + body + "\n"},
      {"future version", "lifeline-x25519-public-v2\n" + body + "\n"},
      {"short key",
       "lifeline-x25519-public-v1\n" + Base64Encode(std::vector<std::uint8_t>(31, 7)) + "\n"},
      {"bad base64", "lifeline-x25519-public-v1\n" + body.substr(1) + "\n"},
      {"extra line", "lifeline-x25519-public-v1\n" + body + "\n" + body + "\n"},
      {"empty", ""},
  };
  for (const auto& [name, text] : cases) {
    WriteFile(dir / "bad.pub", text);
    auto result = ReadPublicKey(dir / "bad.pub", KeyKind::kX25519Public);
    ASSERT_FALSE(result) << name;
    EXPECT_EQ(result.error(), Errc::kBadKeyFile) << name;
  }
  // CRLF line ends (a file that went through a Windows editor) are tolerated.
  WriteFile(dir / "crlf.pub", "lifeline-x25519-public-v1\r\n" + body + "\r\n");
  auto crlf = ReadPublicKey(dir / "crlf.pub", KeyKind::kX25519Public);
  ASSERT_TRUE(crlf);
  EXPECT_TRUE(std::equal(crlf->begin(), crlf->end(), key32.begin()));

  auto missing = ReadPublicKey(dir / "missing.pub", KeyKind::kX25519Public);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
  auto directory = ReadPublicKey(dir.path(), KeyKind::kX25519Public);
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error(), Errc::kNotRegularFile);
}

TEST(KeyFileTest, EditedSigningKeyHalvesAreDetected) {
  TempDir dir;
  auto key = GenerateSigningKeyPair();
  // libsodium's secret key is seed || public key; pair the seed with someone else's public half.
  const auto other = GenerateSigningKeyPair();
  std::copy(other.public_key.begin(), other.public_key.end(), key.secret_key.begin() + 32);
  ASSERT_TRUE(WriteSecretKeyFile(dir / "sign.key", key));
  auto result = ReadSigningKeyPair(dir / "sign.key");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), Errc::kKeyMismatch);
}

TEST(WriteFileAtomicallyTest, ReplacesWithExactModeAndLeavesNoTemporaries) {
  TempDir dir;
  const auto path = dir / "state.json";
  ASSERT_TRUE(WriteFileAtomically(path, std::string_view("one"), 0640));
  EXPECT_EQ(ReadFile(path), "one");
  EXPECT_EQ(ModeOf(path), 0640u);
  ASSERT_TRUE(WriteFileAtomically(path, std::string_view("two"), 0600));
  EXPECT_EQ(ReadFile(path), "two");
  EXPECT_EQ(ModeOf(path), 0600u);
  auto refused =
      WriteFileAtomically(path, std::string_view("three"), 0600, /*replace_existing=*/false);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Errc::kAlreadyExists);
  EXPECT_EQ(ReadFile(path), "two");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);

  auto no_dir = WriteFileAtomically(dir / "missing" / "file", std::string_view("x"), 0600);
  ASSERT_FALSE(no_dir);
  EXPECT_EQ(no_dir.error(), std::errc::no_such_file_or_directory);
}

TEST(ErrorsTest, EveryCodeHasAReadableMessage) {
  for (int value = static_cast<int>(Errc::kUnsealFailed);
       value <= static_cast<int>(Errc::kOpenSslFailure); ++value) {
    const std::error_code code = static_cast<Errc>(value);
    EXPECT_STREQ(code.category().name(), "lifeline.crypto");
    EXPECT_NE(code.message(), "unknown crypto error") << value;
    EXPECT_GT(code.message().size(), 10u);
  }
}

}  // namespace
}  // namespace lifeline::crypto
