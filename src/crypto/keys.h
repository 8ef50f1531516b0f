#pragma once
// Payload keys (libsodium) and the files they live in.
//
// Devices sign batches with Ed25519 (SigningKeyPair); the home receives batches sealed to its
// X25519 key (SealingKeyPair, crypto_box_seal). Keys are stored as small text files:
//
//   lifeline-<kind>-v1\n
//   <standard base64 of the raw key bytes, with padding>\n
//
// where <kind> is ed25519-secret (64 bytes: libsodium's seed||public), ed25519-public (32),
// x25519-secret (32) or x25519-public (32). The kind line keeps a public key from being loaded
// where a secret one is expected (and vice versa) and leaves room for a v2.
//
// Secret key files are written with mode 0600 from the moment they exist (never briefly
// world-readable), never overwrite an existing file, and are refused on read when group or others
// can access them.
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace lifeline::crypto {

inline constexpr std::size_t kSigningPublicKeyBytes = 32;
inline constexpr std::size_t kSigningSecretKeyBytes = 64;
inline constexpr std::size_t kSignatureBytes = 64;
inline constexpr std::size_t kSealingKeyBytes = 32;
/// How many bytes Seal adds to the plaintext (ephemeral public key + MAC).
inline constexpr std::size_t kSealOverheadBytes = 48;

/// Ed25519: devices sign batches, the home signs replies.
struct SigningKeyPair {
  std::array<std::uint8_t, kSigningPublicKeyBytes> public_key{};
  std::array<std::uint8_t, kSigningSecretKeyBytes> secret_key{};
};

/// X25519: the home's key that devices seal batches to.
struct SealingKeyPair {
  std::array<std::uint8_t, kSealingKeyBytes> public_key{};
  std::array<std::uint8_t, kSealingKeyBytes> secret_key{};
};

SigningKeyPair GenerateSigningKeyPair();
SealingKeyPair GenerateSealingKeyPair();

/// A detached Ed25519 signature over `message`.
std::array<std::uint8_t, kSignatureBytes> Sign(std::span<const std::uint8_t> message,
                                               const SigningKeyPair& key);
/// True only when `signature` is a valid signature of `message` by `public_key`. Wrong-sized inputs
/// (untrusted) simply fail.
bool Verify(std::span<const std::uint8_t> message, std::span<const std::uint8_t> signature,
            std::span<const std::uint8_t> public_key);

/// Anonymous public-key encryption (crypto_box_seal): only the holder of the recipient's secret key
/// can open it; the sender is not authenticated (sign inside if that matters, see envelope.h).
std::vector<std::uint8_t> Seal(
    std::span<const std::uint8_t> plaintext,
    std::span<const std::uint8_t, kSealingKeyBytes> recipient_public_key);
/// Errc::kUnsealFailed when the input is too short, tampered, or sealed to another key.
[[nodiscard]] Result<std::vector<std::uint8_t>> Unseal(std::span<const std::uint8_t> sealed,
                                                       const SealingKeyPair& key);

/// Views text as bytes (no copy), for passing JSON strings to Sign/Seal.
inline std::span<const std::uint8_t> AsBytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

/// Standard base64 (RFC 4648 section 4) with padding.
std::string Base64Encode(std::span<const std::uint8_t> bytes);
/// Strict: rejects whitespace, missing padding and trailing garbage (Errc::kBadBase64).
[[nodiscard]] Result<std::vector<std::uint8_t>> Base64Decode(std::string_view text);
/// URL-safe base64 (RFC 4648 section 5) without padding, for tokens handed to humans and URLs.
std::string Base64UrlEncode(std::span<const std::uint8_t> bytes);
[[nodiscard]] Result<std::vector<std::uint8_t>> Base64UrlDecode(std::string_view text);

/// Lowercase hex.
std::string HexEncode(std::span<const std::uint8_t> bytes);
/// `n_bytes` from the system CSPRNG.
std::vector<std::uint8_t> RandomBytes(std::size_t n_bytes);
/// `n_bytes` random bytes as 2*n_bytes lowercase hex characters (message and batch ids use 16).
std::string RandomHex(std::size_t n_bytes);

enum class KeyKind { kEd25519Secret, kEd25519Public, kX25519Secret, kX25519Public };
/// "ed25519-secret", "ed25519-public", "x25519-secret", "x25519-public".
std::string_view ToString(KeyKind kind);
bool IsSecret(KeyKind kind);
/// Raw key length for the kind (64 for ed25519-secret, 32 otherwise).
std::size_t KeyBytes(KeyKind kind);

/// The key file text for `key` (see the top of this header). Precondition: key.size() ==
/// KeyBytes(kind).
std::string FormatKeyFile(KeyKind kind, std::span<const std::uint8_t> key);
/// Parses key file text. Errc::kWrongKeyKind when it is a Lifeline key of another kind,
/// Errc::kBadKeyFile for anything else unexpected (including a wrong key length).
[[nodiscard]] Result<std::vector<std::uint8_t>> ParseKeyFile(std::string_view text,
                                                             KeyKind expected);

/// Writes the secret key file (mode 0600, atomically). Errc::kAlreadyExists if `path` exists.
[[nodiscard]] VoidResult WriteSecretKeyFile(const std::filesystem::path& path,
                                            const SigningKeyPair& key);
[[nodiscard]] VoidResult WriteSecretKeyFile(const std::filesystem::path& path,
                                            const SealingKeyPair& key);
/// Writes a public key file (mode 0644, atomically). Errc::kAlreadyExists if `path` exists.
/// Precondition: `kind` is a public kind and public_key.size() == 32.
[[nodiscard]] VoidResult WritePublicKeyFile(const std::filesystem::path& path, KeyKind kind,
                                            std::span<const std::uint8_t> public_key);
[[nodiscard]] VoidResult WritePublicKeyFile(const std::filesystem::path& path,
                                            const SigningKeyPair& key);
[[nodiscard]] VoidResult WritePublicKeyFile(const std::filesystem::path& path,
                                            const SealingKeyPair& key);

/// Reads a secret key file and checks that its public half matches. Errc::kInsecurePermissions when
/// the file's mode grants anything to group or others.
[[nodiscard]] Result<SigningKeyPair> ReadSigningKeyPair(const std::filesystem::path& path);
[[nodiscard]] Result<SealingKeyPair> ReadSealingKeyPair(const std::filesystem::path& path);
/// Reads a public key file of kind `expected` (kEd25519Public or kX25519Public).
[[nodiscard]] Result<std::array<std::uint8_t, 32>> ReadPublicKey(const std::filesystem::path& path,
                                                                 KeyKind expected);

/// Replaces or creates `path` so that readers see either the old or the whole new content: writes a
/// temporary file in the same directory created with exactly `mode` (O_CREAT|O_EXCL), fsyncs it,
/// renames it over `path` and fsyncs the directory. With replace_existing = false, an existing
/// `path` is left alone and Errc::kAlreadyExists is returned (checked atomically by the rename).
/// Other failures are std::system_category codes.
[[nodiscard]] VoidResult WriteFileAtomically(const std::filesystem::path& path,
                                             std::span<const std::uint8_t> bytes, mode_t mode,
                                             bool replace_existing = true);
[[nodiscard]] inline VoidResult WriteFileAtomically(const std::filesystem::path& path,
                                                    std::string_view text, mode_t mode,
                                                    bool replace_existing = true) {
  return WriteFileAtomically(path, AsBytes(text), mode, replace_existing);
}

/// Reads a whole small file (at most `max_bytes`, else EFBIG). With `require_private`, the file
/// must not grant any access to group or others (Errc::kInsecurePermissions; the path is logged
/// with the fix).
[[nodiscard]] Result<std::string> ReadSmallFile(const std::filesystem::path& path,
                                                std::size_t max_bytes,
                                                bool require_private = false);

}  // namespace lifeline::crypto
