#include "crypto/keys.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.h"
#include "crypto/errors.h"
#include "crypto/sodium_init.h"

namespace lifeline::crypto {
namespace {

using detail::EnsureSodiumInitialized;

std::error_code LastSystemError() { return {errno, std::system_category()}; }

// Closes a file descriptor on scope exit.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() { Close(); }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  int Close() {
    int result = 0;
    if (fd_ >= 0) {
      result = ::close(fd_);
      fd_ = -1;
    }
    return result;
  }

 private:
  int fd_;
};

std::string EncodeBase64(std::span<const std::uint8_t> bytes, int variant) {
  EnsureSodiumInitialized();
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), variant);
  out.resize(std::strlen(out.c_str()));  // encoded_len counts the terminating NUL
  return out;
}

Result<std::vector<std::uint8_t>> DecodeBase64(std::string_view text, int variant) {
  EnsureSodiumInitialized();
  std::vector<std::uint8_t> out(text.size() / 4 * 3 + 3);
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &length, &end,
                        variant) != 0 ||
      end != text.data() + text.size()) {
    return Errc::kBadBase64;
  }
  out.resize(length);
  return out;
}

constexpr std::string_view kKeyFilePrefix = "lifeline-";
constexpr std::string_view kKeyFileSuffix = "-v1";
// Key files are a couple of lines; anything much bigger is not one of ours.
constexpr std::size_t kMaxKeyFileBytes = 4096;

Result<std::vector<std::uint8_t>> ReadKeyFile(const std::filesystem::path& path, KeyKind kind) {
  auto text = ReadSmallFile(path, kMaxKeyFileBytes, IsSecret(kind));
  if (!text) {
    return text.error();
  }
  auto key = ParseKeyFile(*text, kind);
  sodium_memzero(text->data(), text->size());
  return key;
}

VoidResult WriteKeyFile(const std::filesystem::path& path, KeyKind kind,
                        std::span<const std::uint8_t> key) {
  std::string text = FormatKeyFile(kind, key);
  auto written =
      WriteFileAtomically(path, text, IsSecret(kind) ? 0600 : 0644, /*replace_existing=*/false);
  sodium_memzero(text.data(), text.size());
  return written;
}

VoidResult FsyncDirectory(const std::filesystem::path& dir) {
  FdGuard fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) {
    return LastSystemError();
  }
  if (::fsync(fd.get()) != 0) {
    return LastSystemError();
  }
  return {};
}

// Moves `from` to `to` unless `to` exists, atomically.
int RenameNoReplace(const char* from, const char* to) {
  if (::renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) {
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS) {
    return -1;
  }
  // The file system does not support RENAME_NOREPLACE: link() fails with EEXIST just as atomically.
  if (::link(from, to) != 0) {
    return -1;
  }
  ::unlink(from);
  return 0;
}

}  // namespace

SigningKeyPair GenerateSigningKeyPair() {
  EnsureSodiumInitialized();
  SigningKeyPair pair;
  crypto_sign_keypair(pair.public_key.data(), pair.secret_key.data());
  return pair;
}

SealingKeyPair GenerateSealingKeyPair() {
  EnsureSodiumInitialized();
  SealingKeyPair pair;
  crypto_box_keypair(pair.public_key.data(), pair.secret_key.data());
  return pair;
}

std::array<std::uint8_t, kSignatureBytes> Sign(std::span<const std::uint8_t> message,
                                               const SigningKeyPair& key) {
  EnsureSodiumInitialized();
  std::array<std::uint8_t, kSignatureBytes> signature{};
  crypto_sign_detached(signature.data(), nullptr, message.data(), message.size(),
                       key.secret_key.data());
  return signature;
}

bool Verify(std::span<const std::uint8_t> message, std::span<const std::uint8_t> signature,
            std::span<const std::uint8_t> public_key) {
  EnsureSodiumInitialized();
  if (signature.size() != crypto_sign_BYTES || public_key.size() != crypto_sign_PUBLICKEYBYTES) {
    return false;
  }
  return crypto_sign_verify_detached(signature.data(), message.data(), message.size(),
                                     public_key.data()) == 0;
}

std::vector<std::uint8_t> Seal(
    std::span<const std::uint8_t> plaintext,
    std::span<const std::uint8_t, kSealingKeyBytes> recipient_public_key) {
  EnsureSodiumInitialized();
  static_assert(kSealOverheadBytes == crypto_box_SEALBYTES);
  std::vector<std::uint8_t> sealed(plaintext.size() + crypto_box_SEALBYTES);
  // Fails only for a public key that is a small-order point; the result then cannot be opened by
  // anyone, which the recipient reports as kUnsealFailed. Our keys come from crypto_box_keypair.
  if (crypto_box_seal(sealed.data(), plaintext.data(), plaintext.size(),
                      recipient_public_key.data()) != 0) {
    log::Get("crypto")->error("crypto_box_seal failed: the recipient public key is invalid");
    randombytes_buf(sealed.data(), sealed.size());
  }
  return sealed;
}

Result<std::vector<std::uint8_t>> Unseal(std::span<const std::uint8_t> sealed,
                                         const SealingKeyPair& key) {
  EnsureSodiumInitialized();
  if (sealed.size() < crypto_box_SEALBYTES) {
    return Errc::kUnsealFailed;
  }
  std::vector<std::uint8_t> plaintext(sealed.size() - crypto_box_SEALBYTES);
  if (crypto_box_seal_open(plaintext.data(), sealed.data(), sealed.size(), key.public_key.data(),
                           key.secret_key.data()) != 0) {
    return Errc::kUnsealFailed;
  }
  return plaintext;
}

std::string Base64Encode(std::span<const std::uint8_t> bytes) {
  return EncodeBase64(bytes, sodium_base64_VARIANT_ORIGINAL);
}
Result<std::vector<std::uint8_t>> Base64Decode(std::string_view text) {
  return DecodeBase64(text, sodium_base64_VARIANT_ORIGINAL);
}
std::string Base64UrlEncode(std::span<const std::uint8_t> bytes) {
  return EncodeBase64(bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}
Result<std::vector<std::uint8_t>> Base64UrlDecode(std::string_view text) {
  return DecodeBase64(text, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

std::string HexEncode(std::span<const std::uint8_t> bytes) {
  EnsureSodiumInitialized();
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.pop_back();
  return out;
}

std::vector<std::uint8_t> RandomBytes(std::size_t n_bytes) {
  EnsureSodiumInitialized();
  std::vector<std::uint8_t> bytes(n_bytes);
  randombytes_buf(bytes.data(), bytes.size());
  return bytes;
}

std::string RandomHex(std::size_t n_bytes) { return HexEncode(RandomBytes(n_bytes)); }

std::string_view ToString(KeyKind kind) {
  switch (kind) {
    case KeyKind::kEd25519Secret:
      return "ed25519-secret";
    case KeyKind::kEd25519Public:
      return "ed25519-public";
    case KeyKind::kX25519Secret:
      return "x25519-secret";
    case KeyKind::kX25519Public:
      return "x25519-public";
  }
  return "unknown";
}

bool IsSecret(KeyKind kind) {
  return kind == KeyKind::kEd25519Secret || kind == KeyKind::kX25519Secret;
}

std::size_t KeyBytes(KeyKind kind) {
  return kind == KeyKind::kEd25519Secret ? kSigningSecretKeyBytes : std::size_t{32};
}

std::string FormatKeyFile(KeyKind kind, std::span<const std::uint8_t> key) {
  std::string text;
  text.reserve(kKeyFilePrefix.size() + 16 + key.size() * 2);
  text.append(kKeyFilePrefix).append(ToString(kind)).append(kKeyFileSuffix).append("\n");
  std::string encoded = Base64Encode(key);
  text.append(encoded).append("\n");
  sodium_memzero(encoded.data(), encoded.size());
  return text;
}

Result<std::vector<std::uint8_t>> ParseKeyFile(std::string_view text, KeyKind expected) {
  const auto header_end = text.find('\n');
  if (header_end == std::string_view::npos) {
    return Errc::kBadKeyFile;
  }
  std::string_view header = text.substr(0, header_end);
  std::string_view body = text.substr(header_end + 1);
  // Tolerate files that went through a Windows editor: CRLF and a missing final newline.
  const auto trim = [](std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) {
      line.remove_suffix(1);
    }
    return line;
  };
  header = trim(header);
  body = trim(body);

  if (!header.starts_with(kKeyFilePrefix) || !header.ends_with(kKeyFileSuffix) ||
      header.size() < kKeyFilePrefix.size() + kKeyFileSuffix.size()) {
    return Errc::kBadKeyFile;
  }
  std::string_view kind_name = header.substr(
      kKeyFilePrefix.size(), header.size() - kKeyFilePrefix.size() - kKeyFileSuffix.size());
  if (kind_name != ToString(expected)) {
    for (KeyKind other : {KeyKind::kEd25519Secret, KeyKind::kEd25519Public, KeyKind::kX25519Secret,
                          KeyKind::kX25519Public}) {
      if (kind_name == ToString(other)) {
        return Errc::kWrongKeyKind;
      }
    }
    return Errc::kBadKeyFile;
  }
  if (body.find('\n') != std::string_view::npos) {
    return Errc::kBadKeyFile;
  }
  auto key = Base64Decode(body);
  if (!key) {
    return Errc::kBadKeyFile;
  }
  if (key->size() != KeyBytes(expected)) {
    sodium_memzero(key->data(), key->size());
    return Errc::kBadKeyFile;
  }
  return key;
}

VoidResult WriteSecretKeyFile(const std::filesystem::path& path, const SigningKeyPair& key) {
  return WriteKeyFile(path, KeyKind::kEd25519Secret, key.secret_key);
}
VoidResult WriteSecretKeyFile(const std::filesystem::path& path, const SealingKeyPair& key) {
  return WriteKeyFile(path, KeyKind::kX25519Secret, key.secret_key);
}

VoidResult WritePublicKeyFile(const std::filesystem::path& path, KeyKind kind,
                              std::span<const std::uint8_t> public_key) {
  if (IsSecret(kind) || public_key.size() != KeyBytes(kind)) {
    return Errc::kWrongKeyKind;
  }
  return WriteKeyFile(path, kind, public_key);
}
VoidResult WritePublicKeyFile(const std::filesystem::path& path, const SigningKeyPair& key) {
  return WriteKeyFile(path, KeyKind::kEd25519Public, key.public_key);
}
VoidResult WritePublicKeyFile(const std::filesystem::path& path, const SealingKeyPair& key) {
  return WriteKeyFile(path, KeyKind::kX25519Public, key.public_key);
}

Result<SigningKeyPair> ReadSigningKeyPair(const std::filesystem::path& path) {
  auto secret = ReadKeyFile(path, KeyKind::kEd25519Secret);
  if (!secret) {
    return secret.error();
  }
  // libsodium's 64-byte secret key is seed || public key. Re-derive from the seed so a file whose
  // halves were edited apart is caught here rather than producing signatures nobody can verify.
  SigningKeyPair pair;
  std::array<std::uint8_t, crypto_sign_SEEDBYTES> seed{};
  crypto_sign_ed25519_sk_to_seed(seed.data(), secret->data());
  crypto_sign_seed_keypair(pair.public_key.data(), pair.secret_key.data(), seed.data());
  const bool matches =
      sodium_memcmp(pair.secret_key.data(), secret->data(), pair.secret_key.size()) == 0;
  sodium_memzero(seed.data(), seed.size());
  sodium_memzero(secret->data(), secret->size());
  if (!matches) {
    return Errc::kKeyMismatch;
  }
  return pair;
}

Result<SealingKeyPair> ReadSealingKeyPair(const std::filesystem::path& path) {
  auto secret = ReadKeyFile(path, KeyKind::kX25519Secret);
  if (!secret) {
    return secret.error();
  }
  SealingKeyPair pair;
  std::memcpy(pair.secret_key.data(), secret->data(), pair.secret_key.size());
  sodium_memzero(secret->data(), secret->size());
  crypto_scalarmult_base(pair.public_key.data(), pair.secret_key.data());
  return pair;
}

Result<std::array<std::uint8_t, 32>> ReadPublicKey(const std::filesystem::path& path,
                                                   KeyKind expected) {
  if (IsSecret(expected)) {
    return Errc::kWrongKeyKind;
  }
  auto key = ReadKeyFile(path, expected);
  if (!key) {
    return key.error();
  }
  std::array<std::uint8_t, 32> out{};
  std::memcpy(out.data(), key->data(), out.size());
  return out;
}

VoidResult WriteFileAtomically(const std::filesystem::path& path,
                               std::span<const std::uint8_t> bytes, mode_t mode,
                               bool replace_existing) {
  if (!replace_existing) {
    struct stat existing {};
    if (::lstat(path.c_str(), &existing) == 0) {
      return Errc::kAlreadyExists;
    }
  }
  const std::filesystem::path dir = path.parent_path();
  const std::filesystem::path temp =
      dir / ("." + path.filename().string() + ".tmp-" + RandomHex(8));

  // O_EXCL: never follow or reuse something an attacker left under the temp name. The mode is
  // applied at creation, so the file is never more readable than `mode` (umask can only take bits
  // away; fchmod below restores exactly `mode` in case umask took away bits the caller wants, e.g.
  // 0644 under umask 077).
  FdGuard fd(::open(temp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode));
  if (fd.get() < 0) {
    return LastSystemError();
  }
  auto fail = [&temp](std::error_code error) -> VoidResult {
    ::unlink(temp.c_str());
    return error;
  };
  if (::fchmod(fd.get(), mode) != 0) {
    return fail(LastSystemError());
  }
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(LastSystemError());
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    return fail(LastSystemError());
  }
  if (fd.Close() != 0) {
    return fail(LastSystemError());
  }
  if (replace_existing) {
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      return fail(LastSystemError());
    }
  } else if (RenameNoReplace(temp.c_str(), path.c_str()) != 0) {
    const std::error_code error =
        errno == EEXIST ? make_error_code(Errc::kAlreadyExists) : LastSystemError();
    return fail(error);
  }
  return FsyncDirectory(dir);
}

Result<std::string> ReadSmallFile(const std::filesystem::path& path, std::size_t max_bytes,
                                  bool require_private) {
  FdGuard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) {
    return LastSystemError();
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return LastSystemError();
  }
  if (!S_ISREG(info.st_mode)) {
    return Errc::kNotRegularFile;
  }
  // Checked on the opened file (fstat), so a symlink such as a mounted secret is judged by its
  // target.
  if (require_private && (info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    log::Get("crypto")->error(
        "secret key file {} has mode {:04o}, which lets other users read it; fix with: "
        "chmod 600 {}",
        path.string(), info.st_mode & 07777, path.string());
    return Errc::kInsecurePermissions;
  }
  if (static_cast<std::size_t>(info.st_size) > max_bytes) {
    return std::error_code(EFBIG, std::system_category());
  }
  std::string content;
  content.resize(max_bytes + 1);
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::read(fd.get(), content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return LastSystemError();
    }
    if (n == 0) {
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (done > max_bytes) {  // grew while we read it
    return std::error_code(EFBIG, std::system_category());
  }
  content.resize(done);
  return content;
}

}  // namespace lifeline::crypto
