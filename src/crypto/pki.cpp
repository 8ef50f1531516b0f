#include "crypto/pki.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "common/log.h"
#include "crypto/errors.h"
#include "crypto/keys.h"

namespace lifeline::crypto {
namespace {

template <auto Free>
struct Deleter {
  template <class T>
  void operator()(T* pointer) const {
    Free(pointer);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ_free>>;
using NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using ExtensionPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;

// PEM inputs larger than this are not certificates, keys or CSRs of ours (and BIO lengths are
// ints).
constexpr std::size_t kMaxPemBytes = 1 << 20;
// X.520 upper bound for CN, O, OU and title, which OpenSSL enforces.
constexpr std::size_t kMaxNameEntryChars = 64;
// Device clocks may run a little behind the home's.
constexpr long kBackdateSeconds = 5 * 60;

// OpenSSL keeps failures in a thread-local queue; leaving entries there confuses later, unrelated
// calls (SSL_get_error in the transport). Every public function clears it on the way out.
struct ErrorQueueGuard {
  ~ErrorQueueGuard() { ERR_clear_error(); }
};

// Turns the OpenSSL error queue into one log line and returns `code`. Bad input (a caller's CSR or
// PEM) is logged at debug level: it is the caller's job to report it once; an internal failure is
// an error.
std::error_code OpenSslError(Errc code, std::string_view what) {
  std::string details;
  while (const unsigned long error = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(error, buffer, sizeof(buffer));
    details.append(details.empty() ? "" : "; ").append(buffer);
  }
  const auto level = code == Errc::kOpenSslFailure ? spdlog::level::err : spdlog::level::debug;
  log::Get("crypto")->log(level, "{}: {}", what, details.empty() ? "no OpenSSL detail" : details);
  return code;
}

// Never prompt on the terminal for a passphrase: our keys are unencrypted, anything else is an
// error.
int NoPassphrase(char*, int, int, void*) { return 0; }

BioPtr ReadBio(std::string_view text) {
  if (text.size() > kMaxPemBytes) {
    return nullptr;
  }
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  return length > 0 ? std::string(data, static_cast<std::size_t>(length)) : std::string();
}

X509Ptr ParseCertificate(std::string_view pem) {
  BioPtr bio = ReadBio(pem);
  return X509Ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, &NoPassphrase, nullptr) : nullptr);
}

PkeyPtr ParsePrivateKey(std::string_view pem) {
  BioPtr bio = ReadBio(pem);
  return PkeyPtr(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, &NoPassphrase, nullptr)
                     : nullptr);
}

Result<std::string> CertificatePem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return OpenSslError(Errc::kOpenSslFailure, "writing a certificate as PEM");
  }
  return BioText(bio.get());
}

Result<std::string> PrivateKeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  // PEM_write_bio_PrivateKey writes unencrypted PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3.
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError(Errc::kOpenSslFailure, "writing a private key as PEM");
  }
  return BioText(bio.get());
}

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string PercentEncode(std::string_view part) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(part.size());
  for (const char ch : part) {
    const auto c = static_cast<unsigned char>(ch);
    if (IsUnreserved(c)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

bool PercentDecode(std::string_view encoded, std::string* out) {
  out->clear();
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    if (encoded[i] != '%') {
      *out += encoded[i];
      continue;
    }
    if (i + 2 >= encoded.size()) {
      return false;
    }
    const int high = HexValue(encoded[i + 1]);
    const int low = HexValue(encoded[i + 2]);
    if (high < 0 || low < 0) {
      return false;
    }
    *out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return true;
}

// Adds a descriptive name entry. Values OpenSSL refuses as UTF8String (over 64 characters, not
// UTF-8) fall back to their percent-encoded form, shortened: the subject is for humans, the SAN URI
// is exact.
bool AddNameEntry(X509_NAME* name, int nid, std::string_view value) {
  if (value.empty()) {
    return true;
  }
  if (X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.data()),
                                 static_cast<int>(value.size()), -1, 0) == 1) {
    return true;
  }
  ERR_clear_error();
  std::string fallback = PercentEncode(value);
  if (fallback.size() > kMaxNameEntryChars) {
    fallback.resize(kMaxNameEntryChars - 3);
    // Do not end in half an escape.
    const auto last_escape = fallback.rfind('%');
    if (last_escape != std::string::npos && last_escape + 3 > fallback.size()) {
      fallback.resize(last_escape);
    }
    fallback += "...";
  }
  return X509_NAME_add_entry_by_NID(name, nid, MBSTRING_ASC,
                                    reinterpret_cast<const unsigned char*>(fallback.data()),
                                    static_cast<int>(fallback.size()), -1, 0) == 1;
}

NamePtr DeviceSubject(const protocol::DeviceIdentity& identity) {
  NamePtr name(X509_NAME_new());
  if (!name || !AddNameEntry(name.get(), NID_organizationName, identity.customer) ||
      !AddNameEntry(name.get(), NID_organizationalUnitName, identity.site) ||
      !AddNameEntry(name.get(), NID_commonName, identity.serial) ||
      !AddNameEntry(name.get(), NID_title, identity.model)) {
    return nullptr;
  }
  return name;
}

bool PushName(GENERAL_NAMES* names, int type, ASN1_STRING* value) {
  GENERAL_NAME* name = GENERAL_NAME_new();
  if (name == nullptr) {
    ASN1_STRING_free(value);
    return false;
  }
  GENERAL_NAME_set0_value(name, type, value);
  if (sk_GENERAL_NAME_push(names, name) <= 0) {
    GENERAL_NAME_free(name);
    return false;
  }
  return true;
}

bool PushIa5Name(GENERAL_NAMES* names, int type, std::string_view text) {
  ASN1_IA5STRING* value = ASN1_IA5STRING_new();
  if (value == nullptr || ASN1_STRING_set(value, text.data(), static_cast<int>(text.size())) != 1) {
    ASN1_IA5STRING_free(value);
    return false;
  }
  return PushName(names, type, value);
}

// True when `name` is an IPv4 or IPv6 address literal.
bool IsIpAddress(const std::string& name) {
  ASN1_OCTET_STRING* ip = a2i_IPADDRESS(name.c_str());
  ERR_clear_error();
  const bool is_ip = ip != nullptr;
  ASN1_OCTET_STRING_free(ip);
  return is_ip;
}

NamesPtr PeerAltNames(const protocol::DeviceIdentity& identity, PeerKind kind) {
  NamesPtr names(sk_GENERAL_NAME_new_null());
  const std::string uri = kind == PeerKind::kGateway ? GatewayUri(identity) : DeviceUri(identity);
  if (!names || !PushIa5Name(names.get(), GEN_URI, uri)) {
    return nullptr;
  }
  return names;
}

NamesPtr HostAltNames(const std::vector<std::string>& hosts) {
  NamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) {
    return nullptr;
  }
  for (const auto& host : hosts) {
    if (ASN1_OCTET_STRING* ip = a2i_IPADDRESS(host.c_str())) {
      if (!PushName(names.get(), GEN_IPADD, ip)) {
        return nullptr;
      }
    } else if (!PushIa5Name(names.get(), GEN_DNS, host)) {
      return nullptr;
    }
  }
  ERR_clear_error();
  return names;
}

bool RandomSerial(X509* cert, BignumPtr* serial_out) {
  unsigned char bytes[16];
  BignumPtr serial;
  do {
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
      return false;
    }
    serial.reset(BN_bin2bn(bytes, sizeof(bytes), nullptr));
    if (!serial) {
      return false;
    }
  } while (BN_is_zero(serial.get()));
  // 128 random bits, positive; DER may need a 17th leading zero octet, within RFC 5280's 20.
  if (BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)) == nullptr) {
    return false;
  }
  *serial_out = std::move(serial);
  return true;
}

bool AddConfExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtensionPtr extension(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  return extension && X509_add_ext(cert, extension.get(), -1) == 1;
}

struct CertificateSpec {
  X509_NAME* subject = nullptr;
  EVP_PKEY* public_key = nullptr;
  X509* issuer = nullptr;  // nullptr: self-signed
  EVP_PKEY* issuer_key = nullptr;
  int days = 0;
  bool backdate = false;
  // (nid, OpenSSL config value) pairs, added in order after subjectKeyIdentifier.
  std::vector<std::pair<int, const char*>> extensions;
  GENERAL_NAMES* alt_names = nullptr;
};

struct BuiltCertificate {
  X509Ptr cert;
  BignumPtr serial;
};

Result<BuiltCertificate> BuildCertificate(const CertificateSpec& spec) {
  BuiltCertificate built;
  built.cert.reset(X509_new());
  X509* cert = built.cert.get();
  X509* issuer = spec.issuer != nullptr ? spec.issuer : cert;
  if (!cert || X509_set_version(cert, X509_VERSION_3) != 1 || !RandomSerial(cert, &built.serial) ||
      X509_set_subject_name(cert, spec.subject) != 1 ||
      X509_set_issuer_name(cert, X509_get_subject_name(issuer)) != 1 ||
      X509_set_pubkey(cert, spec.public_key) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert), spec.backdate ? -kBackdateSeconds : 0) ==
          nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert), spec.days, 0, nullptr) == nullptr) {
    return OpenSslError(Errc::kOpenSslFailure, "building a certificate");
  }
  // A certificate outliving its CA would only fail later, and more confusingly.
  if (spec.issuer != nullptr &&
      ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(issuer)) > 0 &&
      X509_set1_notAfter(cert, X509_get0_notAfter(issuer)) != 1) {
    return OpenSslError(Errc::kOpenSslFailure, "capping a certificate's expiry");
  }
  // The subject key id first: the authority key id of a self-signed certificate is derived from it.
  if (!AddConfExtension(cert, issuer, NID_subject_key_identifier, "hash")) {
    return OpenSslError(Errc::kOpenSslFailure, "adding subjectKeyIdentifier");
  }
  for (const auto& [nid, value] : spec.extensions) {
    if (!AddConfExtension(cert, issuer, nid, value)) {
      return OpenSslError(Errc::kOpenSslFailure,
                          std::string("adding extension ") + OBJ_nid2sn(nid));
    }
  }
  if (spec.alt_names != nullptr &&
      X509_add1_ext_i2d(cert, NID_subject_alt_name, spec.alt_names, 0, X509V3_ADD_DEFAULT) != 1) {
    return OpenSslError(Errc::kOpenSslFailure, "adding subjectAltName");
  }
  if (X509_sign(cert, spec.issuer_key, EVP_sha256()) <= 0) {
    return OpenSslError(Errc::kOpenSslFailure, "signing a certificate");
  }
  return built;
}

std::string Fingerprint(const X509* cert) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert, EVP_sha256(), digest, &length) != 1) {
    return {};
  }
  return HexEncode(std::span<const std::uint8_t>(digest, length));
}

std::int64_t UnixTime(const ASN1_TIME* time) {
  std::tm parts{};
  if (ASN1_TIME_to_tm(time, &parts) != 1) {
    return 0;
  }
  return static_cast<std::int64_t>(timegm(&parts));
}

PkeyPtr GenerateKey() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) {
    OpenSslError(Errc::kOpenSslFailure, "generating an EC P-256 key");
    std::fputs("lifeline: OpenSSL cannot generate keys (no entropy?)\n", stderr);
    std::abort();
  }
  return key;
}

VoidResult CreatePrivateDirectory(const std::filesystem::path& dir) {
  std::error_code error;
  if (dir.has_parent_path()) {
    std::filesystem::create_directories(dir.parent_path(), error);
    if (error) {
      return error;
    }
  }
  if (::mkdir(dir.c_str(), 0700) == 0) {
    // mkdir's mode is filtered by umask; make sure it is exactly owner-only.
    if (::chmod(dir.c_str(), 0700) != 0) {
      return std::error_code(errno, std::system_category());
    }
    return {};
  }
  if (errno != EEXIST) {
    return std::error_code(errno, std::system_category());
  }
  if (!std::filesystem::is_directory(dir, error)) {
    return error ? error : std::make_error_code(std::errc::not_a_directory);
  }
  return {};
}

}  // namespace

namespace {

std::string LifelineUri(std::string_view prefix, const protocol::DeviceIdentity& identity) {
  return std::string(prefix) + PercentEncode(identity.customer) + "/" + PercentEncode(identity.site) +
         "/" + PercentEncode(identity.serial);
}

Result<protocol::DeviceIdentity> ParseLifelineUri(std::string_view prefix, std::string_view uri) {
  if (!uri.starts_with(prefix)) {
    return Errc::kNoIdentity;
  }
  std::string_view rest = uri.substr(prefix.size());
  const auto first = rest.find('/');
  const auto second = first == std::string_view::npos ? first : rest.find('/', first + 1);
  if (second == std::string_view::npos || rest.find('/', second + 1) != std::string_view::npos) {
    return Errc::kNoIdentity;
  }
  protocol::DeviceIdentity identity;
  if (!PercentDecode(rest.substr(0, first), &identity.customer) ||
      !PercentDecode(rest.substr(first + 1, second - first - 1), &identity.site) ||
      !PercentDecode(rest.substr(second + 1), &identity.serial) ||
      !protocol::IsValidIdentity(identity)) {
    return Errc::kNoIdentity;
  }
  // Only the canonical spelling is an identity, so one device has exactly one URI.
  if (LifelineUri(prefix, identity) != uri) {
    return Errc::kNoIdentity;
  }
  return identity;
}

}  // namespace

std::string DeviceUri(const protocol::DeviceIdentity& identity) {
  return LifelineUri(kDeviceUriPrefix, identity);
}

std::string GatewayUri(const protocol::DeviceIdentity& identity) {
  return LifelineUri(kGatewayUriPrefix, identity);
}

Result<protocol::DeviceIdentity> ParseDeviceUri(std::string_view uri) {
  return ParseLifelineUri(kDeviceUriPrefix, uri);
}

std::string GeneratePrivateKeyPem() {
  ErrorQueueGuard guard;
  PkeyPtr key = GenerateKey();
  auto pem = PrivateKeyPem(key.get());
  if (!pem) {
    std::fputs("lifeline: OpenSSL cannot encode a private key\n", stderr);
    std::abort();
  }
  return *pem;
}

VoidResult WritePrivateKeyPem(const std::filesystem::path& path, std::string_view pem) {
  return WriteFileAtomically(path, pem, 0600, /*replace_existing=*/false);
}

Result<std::string> MakeCsr(std::string_view private_key_pem,
                            const protocol::DeviceIdentity& identity, PeerKind kind) {
  ErrorQueueGuard guard;
  if (!protocol::IsValidIdentity(identity)) {
    return Errc::kBadIdentity;
  }
  PkeyPtr key = ParsePrivateKey(private_key_pem);
  if (!key) {
    return OpenSslError(Errc::kBadKey, "reading the device private key");
  }
  ReqPtr request(X509_REQ_new());
  NamePtr subject = DeviceSubject(identity);
  NamesPtr alt_names = PeerAltNames(identity, kind);
  if (!request || !subject || !alt_names ||
      X509_REQ_set_version(request.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(request.get(), subject.get()) != 1 ||
      X509_REQ_set_pubkey(request.get(), key.get()) != 1) {
    return OpenSslError(Errc::kOpenSslFailure, "building a CSR");
  }
  STACK_OF(X509_EXTENSION)* extensions = sk_X509_EXTENSION_new_null();
  X509_EXTENSION* san = X509V3_EXT_i2d(NID_subject_alt_name, 0, alt_names.get());
  bool added = false;
  if (extensions != nullptr && san != nullptr && sk_X509_EXTENSION_push(extensions, san) > 0) {
    san = nullptr;  // owned by the stack now
    added = X509_REQ_add_extensions(request.get(), extensions) == 1;
  }
  X509_EXTENSION_free(san);
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  if (!added) {
    return OpenSslError(Errc::kOpenSslFailure, "adding subjectAltName to a CSR");
  }
  if (X509_REQ_sign(request.get(), key.get(), EVP_sha256()) <= 0) {
    return OpenSslError(Errc::kBadKey, "signing a CSR");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), request.get()) != 1) {
    return OpenSslError(Errc::kOpenSslFailure, "writing a CSR as PEM");
  }
  return BioText(bio.get());
}

namespace {

Result<IssuedCertificate> IssuePeerCertificate(std::string_view ca_cert_pem, std::string_view ca_key_pem,
                                               std::string_view csr_pem,
                                               const protocol::DeviceIdentity& identity, PeerKind kind,
                                               const std::vector<std::string>& server_names, int days) {
  ErrorQueueGuard guard;
  if (!protocol::IsValidIdentity(identity)) {
    return Errc::kBadIdentity;
  }
  if (days <= 0) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  // The CSR is untrusted (it came over the network with an enrollment token).
  BioPtr csr_bio = ReadBio(csr_pem);
  ReqPtr request(csr_bio ? PEM_read_bio_X509_REQ(csr_bio.get(), nullptr, &NoPassphrase, nullptr)
                         : nullptr);
  if (!request) {
    return OpenSslError(Errc::kBadCsr, "reading a CSR");
  }
  EVP_PKEY* device_key = X509_REQ_get0_pubkey(request.get());
  if (device_key == nullptr || X509_REQ_verify(request.get(), device_key) != 1) {
    return OpenSslError(Errc::kBadCsr, "the CSR is not signed by its own key");
  }
  // 112 bits: NIST's floor (RSA-2048, P-224); our own devices use P-256 (128).
  if (EVP_PKEY_get_security_bits(device_key) < 112) {
    return Errc::kBadCsr;
  }

  X509Ptr ca = ParseCertificate(ca_cert_pem);
  if (!ca) {
    return OpenSslError(Errc::kBadCertificate, "reading the CA certificate");
  }
  PkeyPtr ca_key = ParsePrivateKey(ca_key_pem);
  if (!ca_key) {
    return OpenSslError(Errc::kBadKey, "reading the CA private key");
  }
  if (X509_check_private_key(ca.get(), ca_key.get()) != 1) {
    return OpenSslError(Errc::kBadKey, "the CA private key does not match the CA certificate");
  }

  // Names come from the identity the home authorised, never from the CSR.
  NamePtr subject = DeviceSubject(identity);
  NamesPtr alt_names = PeerAltNames(identity, kind);
  if (!subject || !alt_names) {
    return OpenSslError(Errc::kOpenSslFailure, "building the device names");
  }
  if (kind == PeerKind::kGateway) {
    NamesPtr hosts = HostAltNames(server_names);
    if (!hosts) {
      return OpenSslError(Errc::kOpenSslFailure, "building the gateway's server names");
    }
    while (sk_GENERAL_NAME_num(hosts.get()) > 0) {
      GENERAL_NAME* host = sk_GENERAL_NAME_shift(hosts.get());
      if (sk_GENERAL_NAME_push(alt_names.get(), host) <= 0) {
        GENERAL_NAME_free(host);
        return OpenSslError(Errc::kOpenSslFailure, "adding the gateway's server names");
      }
    }
  }
  CertificateSpec spec;
  spec.subject = subject.get();
  spec.public_key = device_key;
  spec.issuer = ca.get();
  spec.issuer_key = ca_key.get();
  spec.days = days;
  spec.backdate = true;
  // A gateway is also a TLS server (its device-facing port); a device never is, so a device
  // certificate can never pose as the home or a gateway to another agent.
  spec.extensions = {{NID_authority_key_identifier, "keyid:always"},
                     {NID_basic_constraints, "critical,CA:FALSE"},
                     {NID_key_usage, "critical,digitalSignature"},
                     {NID_ext_key_usage,
                      kind == PeerKind::kGateway ? "serverAuth,clientAuth" : "clientAuth"}};
  spec.alt_names = alt_names.get();
  auto built = BuildCertificate(spec);
  if (!built) {
    return built.error();
  }
  auto pem = CertificatePem(built->cert.get());
  if (!pem) {
    return pem.error();
  }
  IssuedCertificate issued;
  issued.pem = std::move(*pem);
  issued.fingerprint_sha256_hex = Fingerprint(built->cert.get());
  char* serial_hex = BN_bn2hex(built->serial.get());
  if (serial_hex == nullptr || issued.fingerprint_sha256_hex.empty()) {
    OPENSSL_free(serial_hex);
    return OpenSslError(Errc::kOpenSslFailure, "describing the issued certificate");
  }
  issued.serial_hex = serial_hex;
  OPENSSL_free(serial_hex);
  for (char& c : issued.serial_hex) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  issued.not_after_unix = UnixTime(X509_get0_notAfter(built->cert.get()));
  return issued;
}

}  // namespace

Result<IssuedCertificate> IssueDeviceCertificate(std::string_view ca_cert_pem,
                                                 std::string_view ca_key_pem,
                                                 std::string_view csr_pem,
                                                 const protocol::DeviceIdentity& identity,
                                                 int days) {
  return IssuePeerCertificate(ca_cert_pem, ca_key_pem, csr_pem, identity, PeerKind::kDevice, {}, days);
}

bool IsValidServerName(std::string_view name) {
  if (name.empty() || name.size() > 253) {
    return false;
  }
  if (IsIpAddress(std::string(name))) {
    return true;
  }
  std::string_view rest = name.starts_with("*.") ? name.substr(2) : name;
  if (rest.empty() || rest.front() == '.' || rest.back() == '.' || rest.find("..") != std::string_view::npos) {
    return false;
  }
  for (const char c : rest) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

Result<IssuedCertificate> IssueGatewayCertificate(std::string_view ca_cert_pem, std::string_view ca_key_pem,
                                                  std::string_view csr_pem,
                                                  const protocol::DeviceIdentity& identity,
                                                  const std::vector<std::string>& server_names, int days) {
  if (server_names.size() > kMaxGatewayServerNames) {
    return Errc::kBadIdentity;
  }
  for (const auto& name : server_names) {
    if (!IsValidServerName(name)) {
      return Errc::kBadIdentity;
    }
  }
  return IssuePeerCertificate(ca_cert_pem, ca_key_pem, csr_pem, identity, PeerKind::kGateway, server_names,
                              days);
}

namespace {

Result<CertifiedPeer> ReadPeer(X509* cert) {
  int critical = 0;
  NamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, &critical, nullptr)));
  if (!names) {
    return Errc::kNoIdentity;  // none, or several subjectAltName extensions (critical == -2)
  }
  std::optional<std::string> uri;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) {
      continue;
    }
    const ASN1_IA5STRING* value = name->d.uniformResourceIdentifier;
    std::string text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                     static_cast<std::size_t>(ASN1_STRING_length(value)));
    if (!text.starts_with(kDeviceUriPrefix) && !text.starts_with(kGatewayUriPrefix)) {
      continue;
    }
    if (uri) {
      return Errc::kNoIdentity;  // two identities (of either kind): trust neither
    }
    uri = std::move(text);
  }
  if (!uri) {
    return Errc::kNoIdentity;
  }
  CertifiedPeer peer;
  peer.kind = uri->starts_with(kGatewayUriPrefix) ? PeerKind::kGateway : PeerKind::kDevice;
  auto identity = ParseLifelineUri(
      peer.kind == PeerKind::kGateway ? kGatewayUriPrefix : kDeviceUriPrefix, *uri);
  if (!identity) {
    return identity.error();
  }
  const X509_NAME* subject = X509_get_subject_name(cert);
  const int index = X509_NAME_get_index_by_NID(subject, NID_title, -1);
  if (index >= 0) {
    unsigned char* utf8 = nullptr;
    const int length =
        ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
    if (length >= 0) {
      identity->model.assign(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
    }
    OPENSSL_free(utf8);
  }
  peer.identity = std::move(*identity);
  return peer;
}

}  // namespace

Result<CertifiedPeer> PeerFromCertificatePem(std::string_view pem) {
  ErrorQueueGuard guard;
  X509Ptr cert = ParseCertificate(pem);
  if (!cert) {
    return OpenSslError(Errc::kBadCertificate, "reading a certificate");
  }
  return ReadPeer(cert.get());
}

Result<protocol::DeviceIdentity> IdentityFromCertificatePem(std::string_view pem) {
  auto peer = PeerFromCertificatePem(pem);
  if (!peer) {
    return peer.error();
  }
  // A gateway is not a device: its certificate never passes a device check.
  if (peer->kind != PeerKind::kDevice) {
    return Errc::kNoIdentity;
  }
  return std::move(peer->identity);
}

Result<std::string> CertificateFingerprintSha256(std::string_view pem) {
  ErrorQueueGuard guard;
  X509Ptr cert = ParseCertificate(pem);
  if (!cert) {
    return OpenSslError(Errc::kBadCertificate, "reading a certificate");
  }
  std::string fingerprint = Fingerprint(cert.get());
  if (fingerprint.empty()) {
    return OpenSslError(Errc::kOpenSslFailure, "hashing a certificate");
  }
  return fingerprint;
}

Result<std::int64_t> CertificateNotAfterUnix(std::string_view pem) {
  ErrorQueueGuard guard;
  X509Ptr cert = ParseCertificate(pem);
  if (!cert) {
    return OpenSslError(Errc::kBadCertificate, "reading a certificate");
  }
  return UnixTime(X509_get0_notAfter(cert.get()));
}

bool VerifyCertificateChain(std::string_view cert_pem, std::string_view ca_cert_pem) {
  ErrorQueueGuard guard;
  X509Ptr cert = ParseCertificate(cert_pem);
  X509Ptr ca = ParseCertificate(ca_cert_pem);
  if (!cert || !ca) {
    return false;
  }
  // A fresh store with only our CA: the system's trust anchors have no say over device identities.
  StorePtr store(X509_STORE_new());
  StoreCtxPtr context(X509_STORE_CTX_new());
  if (!store || !context || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(context.get(), store.get(), cert.get(), nullptr) != 1) {
    OpenSslError(Errc::kOpenSslFailure, "setting up certificate verification");
    return false;
  }
  if (X509_verify_cert(context.get()) != 1) {
    log::Get("crypto")->debug(
        "certificate does not verify against the CA: {}",
        X509_verify_cert_error_string(X509_STORE_CTX_get_error(context.get())));
    return false;
  }
  return true;
}

VoidResult InitPki(const std::filesystem::path& dir, const InitPkiOptions& options) {
  ErrorQueueGuard guard;
  if (options.home_names.empty() || options.ca_days <= 0 || options.home_days <= 0) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  if (auto created = CreatePrivateDirectory(dir); !created) {
    return created.error();
  }
  const PkiPaths paths(dir);
  for (const auto& path : paths.All()) {
    struct stat info {};
    if (::lstat(path.c_str(), &info) == 0) {
      log::Get("crypto")->error("{} already exists; refusing to initialise the PKI over it",
                                path.string());
      return Errc::kAlreadyExists;
    }
  }

  // Certificate authority: signs the home's server certificate and every device certificate.
  PkeyPtr ca_key = GenerateKey();
  NamePtr ca_name(X509_NAME_new());
  if (!ca_name || !AddNameEntry(ca_name.get(), NID_commonName, options.ca_name)) {
    return OpenSslError(Errc::kOpenSslFailure, "building the CA name");
  }
  CertificateSpec ca_spec;
  ca_spec.subject = ca_name.get();
  ca_spec.public_key = ca_key.get();
  ca_spec.issuer_key = ca_key.get();
  ca_spec.days = options.ca_days;
  // pathlen:0 - this CA issues end-entity certificates only.
  ca_spec.extensions = {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                        {NID_key_usage, "critical,keyCertSign,cRLSign"}};
  auto ca = BuildCertificate(ca_spec);
  if (!ca) {
    return ca.error();
  }

  // The home's TLS server certificate.
  PkeyPtr home_key = GenerateKey();
  std::string common_name = options.home_names.front();
  for (const auto& name : options.home_names) {
    if (!IsIpAddress(name)) {
      common_name = name;
      break;
    }
  }
  NamePtr home_name(X509_NAME_new());
  NamesPtr home_alt_names = HostAltNames(options.home_names);
  if (!home_name || !home_alt_names ||
      !AddNameEntry(home_name.get(), NID_commonName, common_name)) {
    return OpenSslError(Errc::kOpenSslFailure, "building the home's names");
  }
  CertificateSpec home_spec;
  home_spec.subject = home_name.get();
  home_spec.public_key = home_key.get();
  home_spec.issuer = ca->cert.get();
  home_spec.issuer_key = ca_key.get();
  home_spec.days = options.home_days;
  home_spec.extensions = {{NID_authority_key_identifier, "keyid:always"},
                          {NID_basic_constraints, "critical,CA:FALSE"},
                          {NID_key_usage, "critical,digitalSignature"},
                          {NID_ext_key_usage, "serverAuth"}};
  home_spec.alt_names = home_alt_names.get();
  auto home = BuildCertificate(home_spec);
  if (!home) {
    return home.error();
  }

  auto ca_key_pem = PrivateKeyPem(ca_key.get());
  auto ca_cert_pem = CertificatePem(ca->cert.get());
  auto home_key_pem = PrivateKeyPem(home_key.get());
  auto home_cert_pem = CertificatePem(home->cert.get());
  for (const auto* text : {&ca_key_pem, &ca_cert_pem, &home_key_pem, &home_cert_pem}) {
    if (!*text) {
      return text->error();
    }
  }
  const SealingKeyPair seal_key = GenerateSealingKeyPair();
  const SigningKeyPair sign_key = GenerateSigningKeyPair();

  // ca.key goes last: its presence marks a complete PKI (and is what a second run trips over).
  const std::function<VoidResult()> steps[] = {
      [&] { return WriteFileAtomically(paths.ca_cert, *ca_cert_pem, 0644, false); },
      [&] { return WritePrivateKeyPem(paths.home_key, *home_key_pem); },
      [&] { return WriteFileAtomically(paths.home_cert, *home_cert_pem, 0644, false); },
      [&] { return WriteSecretKeyFile(paths.home_seal_key, seal_key); },
      [&] { return WritePublicKeyFile(paths.home_seal_public, seal_key); },
      [&] { return WriteSecretKeyFile(paths.home_sign_key, sign_key); },
      [&] { return WritePublicKeyFile(paths.home_sign_public, sign_key); },
      [&] { return WritePrivateKeyPem(paths.ca_key, *ca_key_pem); },
  };
  for (const auto& step : steps) {
    if (auto written = step(); !written) {
      return written.error();
    }
  }
  std::string names;
  for (const auto& name : options.home_names) {
    names.append(names.empty() ? "" : ", ").append(name);
  }
  log::Get("crypto")->info("initialised PKI in {} (CA '{}', home names {})", dir.string(),
                           options.ca_name, names);
  return {};
}

}  // namespace lifeline::crypto
