#include "crypto/pki.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <memory>

#include "crypto/errors.h"
#include "crypto/keys.h"
#include "support/temp_dir.h"

namespace lifeline::crypto {
namespace {

using protocol::DeviceIdentity;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

mode_t ModeOf(const std::filesystem::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

// The tests inspect certificates with OpenSSL directly, independently of the code under test.
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
std::unique_ptr<X509, X509Free> Parse(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  return std::unique_ptr<X509, X509Free>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::string RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return output;
  }
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    output.append(buffer, n);
  }
  ::pclose(pipe);
  return output;
}

// One home PKI per test suite: key generation is cheap, but the suite reads better with one CA.
class PkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitPki(dir_ / "pki"));
    ca_cert_ = ReadFile(paths_.ca_cert);
    ca_key_ = ReadFile(paths_.ca_key);
    ASSERT_FALSE(ca_cert_.empty());
    ASSERT_FALSE(ca_key_.empty());
  }

  TempDir dir_;
  PkiPaths paths_{dir_ / "pki"};
  std::string ca_cert_;
  std::string ca_key_;
  const DeviceIdentity device_{"acme", "berlin-lab", "SN-0042", "Scanner 3000"};
};

TEST_F(PkiTest, InitCreatesEveryFileWithTheRightModes) {
  EXPECT_EQ(ModeOf(paths_.dir), 0700u);
  for (const auto& secret :
       {paths_.ca_key, paths_.home_key, paths_.home_seal_key, paths_.home_sign_key}) {
    EXPECT_EQ(ModeOf(secret), 0600u) << secret;
  }
  for (const auto& shared :
       {paths_.ca_cert, paths_.home_cert, paths_.home_seal_public, paths_.home_sign_public}) {
    EXPECT_EQ(ModeOf(shared), 0644u) << shared;
  }
  EXPECT_TRUE(ca_key_.starts_with("-----BEGIN PRIVATE KEY-----")) << ca_key_;
  EXPECT_TRUE(ReadFile(paths_.home_key).starts_with("-----BEGIN PRIVATE KEY-----"));

  // The payload key files pair up.
  auto seal = ReadSealingKeyPair(paths_.home_seal_key);
  auto seal_public = ReadPublicKey(paths_.home_seal_public, KeyKind::kX25519Public);
  ASSERT_TRUE(seal && seal_public);
  EXPECT_EQ(seal->public_key, *seal_public);
  auto sign = ReadSigningKeyPair(paths_.home_sign_key);
  auto sign_public = ReadPublicKey(paths_.home_sign_public, KeyKind::kEd25519Public);
  ASSERT_TRUE(sign && sign_public);
  EXPECT_EQ(sign->public_key, *sign_public);
}

TEST_F(PkiTest, SecondInitRefusesAndChangesNothing) {
  auto again = InitPki(paths_.dir);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), Errc::kAlreadyExists);
  EXPECT_EQ(ReadFile(paths_.ca_key), ca_key_);
  EXPECT_EQ(ReadFile(paths_.ca_cert), ca_cert_);
}

TEST_F(PkiTest, CaAndHomeCertificatesHaveTheRightRoles) {
  auto ca = Parse(ca_cert_);
  auto home = Parse(ReadFile(paths_.home_cert));
  ASSERT_TRUE(ca && home);
  EXPECT_EQ(X509_check_ca(ca.get()), 1);
  EXPECT_NE(X509_get_extension_flags(ca.get()) & EXFLAG_SS, 0u);  // self-signed
  EXPECT_NE(X509_get_key_usage(ca.get()) & KU_KEY_CERT_SIGN, 0u);
  EXPECT_NE(X509_get_key_usage(ca.get()) & KU_CRL_SIGN, 0u);
  int critical = -1;
  auto* constraints = static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(ca.get(), NID_basic_constraints, &critical, nullptr));
  ASSERT_NE(constraints, nullptr);
  EXPECT_TRUE(constraints->ca);
  EXPECT_EQ(critical, 1);
  BASIC_CONSTRAINTS_free(constraints);

  EXPECT_EQ(X509_check_ca(home.get()), 0);
  EXPECT_EQ(X509_check_purpose(home.get(), X509_PURPOSE_SSL_SERVER, 0), 1);
  EXPECT_EQ(X509_check_purpose(home.get(), X509_PURPOSE_SSL_CLIENT, 0), 0);
  EXPECT_TRUE(VerifyCertificateChain(ReadFile(paths_.home_cert), ca_cert_));

  // The home certificate is not a device certificate.
  auto identity = IdentityFromCertificatePem(ReadFile(paths_.home_cert));
  ASSERT_FALSE(identity);
  EXPECT_EQ(identity.error(), Errc::kNoIdentity);
}

TEST_F(PkiTest, HomeCertificateCarriesTheDefaultSans) {
  auto home = Parse(ReadFile(paths_.home_cert));
  ASSERT_TRUE(home);
  EXPECT_EQ(X509_check_host(home.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(home.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(home.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_host(home.get(), "example.com", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(home.get(), "10.0.0.1", 0), 0);
  // IP addresses are IP SANs, not DNS names.
  EXPECT_EQ(X509_check_host(home.get(), "127.0.0.1", 0, 0, nullptr), 0);
}

TEST(PkiInitTest, CustomNamesAndValidity) {
  TempDir dir;
  InitPkiOptions options;
  options.home_names = {"10.1.2.3", "home.example.com", "fd00::5"};
  options.home_days = 30;
  options.ca_name = "Example Vendor CA";
  ASSERT_TRUE(InitPki(dir / "deep" / "pki", options));
  auto home = Parse(ReadFile(dir / "deep" / "pki" / "home.crt"));
  ASSERT_TRUE(home);
  EXPECT_EQ(X509_check_host(home.get(), "home.example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(home.get(), "10.1.2.3", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(home.get(), "fd00::5", 0), 1);
  EXPECT_EQ(X509_check_host(home.get(), "localhost", 0, 0, nullptr), 0);
  // The subject CN is the first DNS name, not an address.
  char common_name[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(home.get()), NID_commonName, common_name,
                            sizeof(common_name));
  EXPECT_STREQ(common_name, "home.example.com");
  int days = 0;
  int seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(home.get())), 1);
  EXPECT_TRUE(days == 29 || days == 30) << days;

  auto ca = Parse(ReadFile(dir / "deep" / "pki" / "ca.crt"));
  ASSERT_TRUE(ca);
  X509_NAME_get_text_by_NID(X509_get_subject_name(ca.get()), NID_commonName, common_name,
                            sizeof(common_name));
  EXPECT_STREQ(common_name, "Example Vendor CA");

  auto no_names = InitPki(dir / "other", InitPkiOptions{.home_names = {}});
  ASSERT_FALSE(no_names);
  EXPECT_EQ(no_names.error(), std::errc::invalid_argument);
}

TEST_F(PkiTest, IssuedCertificateChainsToItsCaOnly) {
  const std::string device_key = GeneratePrivateKeyPem();
  auto csr = MakeCsr(device_key, device_);
  ASSERT_TRUE(csr) << csr.error().message();
  EXPECT_TRUE(csr->starts_with("-----BEGIN CERTIFICATE REQUEST-----"));

  auto issued = IssueDeviceCertificate(ca_cert_, ca_key_, *csr, device_, 365);
  ASSERT_TRUE(issued) << issued.error().message();
  EXPECT_TRUE(VerifyCertificateChain(issued->pem, ca_cert_));

  TempDir other_dir;
  ASSERT_TRUE(InitPki(other_dir / "pki"));
  const std::string other_ca = ReadFile(other_dir / "pki" / "ca.crt");
  EXPECT_FALSE(VerifyCertificateChain(issued->pem, other_ca));
  EXPECT_FALSE(VerifyCertificateChain(ReadFile(other_dir / "pki" / "home.crt"), ca_cert_));
  EXPECT_FALSE(VerifyCertificateChain("garbage", ca_cert_));
  EXPECT_FALSE(VerifyCertificateChain(issued->pem, "garbage"));

  auto cert = Parse(issued->pem);
  ASSERT_TRUE(cert);
  EXPECT_EQ(X509_check_purpose(cert.get(), X509_PURPOSE_SSL_CLIENT, 0), 1);
  EXPECT_EQ(X509_check_purpose(cert.get(), X509_PURPOSE_SSL_SERVER, 0), 0);
  EXPECT_EQ(X509_check_ca(cert.get()), 0);

  // The certificate is for the CSR's key.
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(device_key.data(), static_cast<int>(device_key.size())), &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  ASSERT_TRUE(key);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);

  // Reported metadata is consistent with the certificate.
  EXPECT_EQ(issued->fingerprint_sha256_hex.size(), 64u);
  auto fingerprint = CertificateFingerprintSha256(issued->pem);
  ASSERT_TRUE(fingerprint);
  EXPECT_EQ(*fingerprint, issued->fingerprint_sha256_hex);
  EXPECT_GE(issued->serial_hex.size(), 30u);
  EXPECT_EQ(issued->serial_hex.find_first_not_of("0123456789abcdef"), std::string::npos);
  const std::int64_t expected_not_after = std::time(nullptr) + 365LL * 86400;
  EXPECT_NEAR(static_cast<double>(issued->not_after_unix), static_cast<double>(expected_not_after),
              120.0);
  // Backdated a little for devices whose clock runs behind.
  int days = 0;
  int seconds = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert.get()), nullptr), 1);
  EXPECT_GE(days * 86400 + seconds, 200);

  // Two certificates never share a serial.
  auto second = IssueDeviceCertificate(ca_cert_, ca_key_, *csr, device_, 365);
  ASSERT_TRUE(second);
  EXPECT_NE(second->serial_hex, issued->serial_hex);
}

TEST_F(PkiTest, IdentityRoundTripsThroughTheCertificate) {
  const DeviceIdentity awkward{"Acme: Gesellschaft für Müll % Co", "Site #1 (Zürich)", "SN:42?x=1",
                               "Model 7"};
  for (const auto& identity : {device_, awkward}) {
    auto csr = MakeCsr(GeneratePrivateKeyPem(), identity);
    ASSERT_TRUE(csr);
    auto issued = IssueDeviceCertificate(ca_cert_, ca_key_, *csr, identity, 30);
    ASSERT_TRUE(issued) << issued.error().message();
    auto parsed = IdentityFromCertificatePem(issued->pem);
    ASSERT_TRUE(parsed) << parsed.error().message();
    EXPECT_EQ(*parsed, identity);
  }
}

TEST_F(PkiTest, IssuedIdentityIsTheAuthorisedOneNotTheCsrClaim) {
  const DeviceIdentity claimed{"other-customer", "other-site", "SN-9999", "Evil"};
  auto csr = MakeCsr(GeneratePrivateKeyPem(), claimed);
  ASSERT_TRUE(csr);
  auto issued = IssueDeviceCertificate(ca_cert_, ca_key_, *csr, device_, 30);
  ASSERT_TRUE(issued);
  auto parsed = IdentityFromCertificatePem(issued->pem);
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->SameDevice(device_));
  EXPECT_EQ(parsed->model, device_.model);

  auto cert = Parse(issued->pem);
  ASSERT_TRUE(cert);
  char text[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, text, sizeof(text));
  EXPECT_STREQ(text, "SN-0042");
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_organizationName, text,
                            sizeof(text));
  EXPECT_STREQ(text, "acme");
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_organizationalUnitName, text,
                            sizeof(text));
  EXPECT_STREQ(text, "berlin-lab");
  EXPECT_EQ(issued->pem.find("other-customer"), std::string::npos);
}

TEST_F(PkiTest, OpenSslToolingReadsTheDeviceCertificate) {
  auto csr = MakeCsr(GeneratePrivateKeyPem(), device_);
  ASSERT_TRUE(csr);
  auto issued = IssueDeviceCertificate(ca_cert_, ca_key_, *csr, device_, 30);
  ASSERT_TRUE(issued);
  WriteFile(dir_ / "device.crt", issued->pem);
  const std::string text = RunCommand("openssl x509 -noout -text -fingerprint -sha256 -in '" +
                                      (dir_ / "device.crt").string() + "' 2>&1");
  EXPECT_NE(text.find("URI:lifeline:device:acme/berlin-lab/SN-0042"), std::string::npos) << text;
  EXPECT_NE(text.find("TLS Web Client Authentication"), std::string::npos) << text;
  EXPECT_NE(text.find("CA:FALSE"), std::string::npos) << text;
  EXPECT_NE(text.find("CN = SN-0042"), std::string::npos) << text;
  EXPECT_NE(text.find("ecdsa-with-SHA256"), std::string::npos) << text;
  // Same fingerprint as ours, modulo OpenSSL's colons and case.
  std::string expected;
  for (std::size_t i = 0; i < issued->fingerprint_sha256_hex.size(); i += 2) {
    expected += (i == 0 ? "" : ":") + issued->fingerprint_sha256_hex.substr(i, 2);
  }
  for (char& c : expected) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  EXPECT_NE(text.find(expected), std::string::npos) << text;

  // And `openssl verify` agrees with VerifyCertificateChain.
  const std::string verify = RunCommand("openssl verify -CAfile '" + paths_.ca_cert.string() +
                                        "' '" + (dir_ / "device.crt").string() + "' 2>&1");
  EXPECT_NE(verify.find(": OK"), std::string::npos) << verify;
}

TEST_F(PkiTest, BadCsrsAreRefused) {
  auto garbage = IssueDeviceCertificate(ca_cert_, ca_key_, "not a csr", device_, 30);
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error(), Errc::kBadCsr);

  // Corrupt the CSR's signature: decode the PEM body, flip the last byte, re-encode.
  auto csr = MakeCsr(GeneratePrivateKeyPem(), device_);
  ASSERT_TRUE(csr);
  const std::string begin = "-----BEGIN CERTIFICATE REQUEST-----\n";
  const std::string end = "-----END CERTIFICATE REQUEST-----\n";
  std::string body = csr->substr(begin.size(), csr->size() - begin.size() - end.size());
  std::erase(body, '\n');
  auto der = Base64Decode(body);
  ASSERT_TRUE(der);
  der->back() ^= 0x01;
  const std::string tampered = begin + Base64Encode(*der) + "\n" + end;
  // Still a well-formed CSR, so what refuses it below is the signature check, not the parser.
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(tampered.data(), static_cast<int>(tampered.size())), &BIO_free);
  std::unique_ptr<X509_REQ, decltype(&X509_REQ_free)> parsed(
      PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr), &X509_REQ_free);
  ASSERT_TRUE(parsed);
  auto refused = IssueDeviceCertificate(ca_cert_, ca_key_, tampered, device_, 30);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), Errc::kBadCsr);
}

TEST_F(PkiTest, IssuingChecksItsOtherInputs) {
  auto csr = MakeCsr(GeneratePrivateKeyPem(), device_);
  ASSERT_TRUE(csr);
  auto bad_identity =
      IssueDeviceCertificate(ca_cert_, ca_key_, *csr, DeviceIdentity{"a/b", "s", "n", ""}, 30);
  ASSERT_FALSE(bad_identity);
  EXPECT_EQ(bad_identity.error(), Errc::kBadIdentity);

  auto bad_ca = IssueDeviceCertificate("nope", ca_key_, *csr, device_, 30);
  ASSERT_FALSE(bad_ca);
  EXPECT_EQ(bad_ca.error(), Errc::kBadCertificate);

  // A CA key that is not the CA certificate's.
  auto mismatched = IssueDeviceCertificate(ca_cert_, GeneratePrivateKeyPem(), *csr, device_, 30);
  ASSERT_FALSE(mismatched);
  EXPECT_EQ(mismatched.error(), Errc::kBadKey);

  auto no_days = IssueDeviceCertificate(ca_cert_, ca_key_, *csr, device_, 0);
  EXPECT_FALSE(no_days);

  auto bad_key = MakeCsr("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", device_);
  ASSERT_FALSE(bad_key);
  EXPECT_EQ(bad_key.error(), Errc::kBadKey);
  auto bad_csr_identity = MakeCsr(GeneratePrivateKeyPem(), DeviceIdentity{"", "s", "n", ""});
  ASSERT_FALSE(bad_csr_identity);
  EXPECT_EQ(bad_csr_identity.error(), Errc::kBadIdentity);
}

TEST(PkiExpiryTest, DeviceCertificateNeverOutlivesTheCa) {
  TempDir dir;
  InitPkiOptions options;
  options.ca_days = 10;
  options.home_days = 5;
  ASSERT_TRUE(InitPki(dir / "pki", options));
  const std::string ca_cert = ReadFile(dir / "pki" / "ca.crt");
  const DeviceIdentity device{"acme", "lab", "SN1", ""};
  auto csr = MakeCsr(GeneratePrivateKeyPem(), device);
  ASSERT_TRUE(csr);
  auto issued =
      IssueDeviceCertificate(ca_cert, ReadFile(dir / "pki" / "ca.key"), *csr, device, 365);
  ASSERT_TRUE(issued);
  auto ca = Parse(ca_cert);
  ASSERT_TRUE(ca);
  std::tm ca_not_after{};
  ASSERT_EQ(ASN1_TIME_to_tm(X509_get0_notAfter(ca.get()), &ca_not_after), 1);
  EXPECT_EQ(issued->not_after_unix, static_cast<std::int64_t>(timegm(&ca_not_after)));
  EXPECT_TRUE(VerifyCertificateChain(issued->pem, ca_cert));
}

TEST(PkiNamesTest, LongAndNonUtf8PartsStillMakeACertificateWithTheExactIdentity) {
  TempDir dir;
  ASSERT_TRUE(InitPki(dir / "pki"));
  const DeviceIdentity device{std::string(128, 'c'), "site \xff\xfe raw bytes",
                              std::string(100, '%'), std::string(90, 'm')};
  ASSERT_TRUE(protocol::IsValidIdentity(device));
  auto csr = MakeCsr(GeneratePrivateKeyPem(), device);
  ASSERT_TRUE(csr) << csr.error().message();
  auto issued = IssueDeviceCertificate(ReadFile(dir / "pki" / "ca.crt"),
                                       ReadFile(dir / "pki" / "ca.key"), *csr, device, 30);
  ASSERT_TRUE(issued) << issued.error().message();
  auto parsed = IdentityFromCertificatePem(issued->pem);
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->SameDevice(device));
}

TEST(DeviceUriTest, EncodesSeparatorsAndParsesOnlyCanonicalForms) {
  const DeviceIdentity identity{"a:b", "c%d", "e f", ""};
  const std::string uri = DeviceUri(identity);
  EXPECT_EQ(uri, "lifeline:device:a%3Ab/c%25d/e%20f");
  auto parsed = ParseDeviceUri(uri);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, identity);

  for (const char* bad :
       {"lifeline:device:a/b", "lifeline:device:a/b/c/d", "lifeline:device:a/b/c%2",
        "lifeline:device:a/b/c%zz", "lifeline:device:a/b/c%2f", "lifeline:device:a/b/%61",
        "lifeline:device://c", "lifeline:device:a/b/c:d", "urn:device:a/b/c",
        "lifeline:device:a/b/c%00"}) {
    auto result = ParseDeviceUri(bad);
    EXPECT_FALSE(result) << bad;
    if (!result) {
      EXPECT_EQ(result.error(), Errc::kNoIdentity);
    }
  }
}

TEST(PkiKeysTest, PrivateKeyPemIsWrittenOwnerOnlyAndNotOverwritten) {
  TempDir dir;
  const std::string pem = GeneratePrivateKeyPem();
  EXPECT_TRUE(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
  EXPECT_NE(pem, GeneratePrivateKeyPem());
  ASSERT_TRUE(WritePrivateKeyPem(dir / "device.key", pem));
  EXPECT_EQ(ModeOf(dir / "device.key"), 0600u);
  EXPECT_EQ(ReadFile(dir / "device.key"), pem);
  auto again = WritePrivateKeyPem(dir / "device.key", GeneratePrivateKeyPem());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), Errc::kAlreadyExists);
  const std::string text =
      RunCommand("openssl pkey -noout -text -in '" + (dir / "device.key").string() + "' 2>&1");
  EXPECT_NE(text.find("P-256"), std::string::npos) << text;
}

TEST(PkiParseTest, GarbageCertificatesAreErrorsNotCrashes) {
  auto identity =
      IdentityFromCertificatePem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(identity);
  EXPECT_EQ(identity.error(), Errc::kBadCertificate);
  auto fingerprint = CertificateFingerprintSha256("");
  ASSERT_FALSE(fingerprint);
  EXPECT_EQ(fingerprint.error(), Errc::kBadCertificate);
}

TEST_F(PkiTest, GatewayCertificateServesBothWaysAndIsNoDevice) {
  const DeviceIdentity gateway{"acme", "berlin-lab", "gw-1", "lifeline-gateway"};
  auto csr = MakeCsr(GeneratePrivateKeyPem(), gateway, PeerKind::kGateway);
  ASSERT_TRUE(csr);
  auto issued = IssueGatewayCertificate(ca_cert_, ca_key_, *csr, gateway,
                                        {"localhost", "127.0.0.1", "gw.example.com", "::1"}, 30);
  ASSERT_TRUE(issued) << issued.error().message();
  EXPECT_TRUE(VerifyCertificateChain(issued->pem, ca_cert_));
  auto cert = Parse(issued->pem);
  ASSERT_TRUE(cert);
  // Client (tunnel, relay to the home) and server (its device-facing port).
  EXPECT_EQ(X509_check_purpose(cert.get(), X509_PURPOSE_SSL_CLIENT, 0), 1);
  EXPECT_EQ(X509_check_purpose(cert.get(), X509_PURPOSE_SSL_SERVER, 0), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "gw.example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
  EXPECT_NE(X509_check_host(cert.get(), "other.example.com", 0, 0, nullptr), 1);

  auto peer = PeerFromCertificatePem(issued->pem);
  ASSERT_TRUE(peer) << peer.error().message();
  EXPECT_EQ(peer->kind, PeerKind::kGateway);
  EXPECT_EQ(peer->identity, gateway);
  // Device checks never accept a gateway.
  auto as_device = IdentityFromCertificatePem(issued->pem);
  ASSERT_FALSE(as_device);
  EXPECT_EQ(as_device.error(), Errc::kNoIdentity);

  // A device certificate is a device peer, and the home's server certificate is no peer.
  auto device_csr = MakeCsr(GeneratePrivateKeyPem(), device_);
  ASSERT_TRUE(device_csr);
  auto device_cert = IssueDeviceCertificate(ca_cert_, ca_key_, *device_csr, device_, 30);
  ASSERT_TRUE(device_cert);
  auto device_peer = PeerFromCertificatePem(device_cert->pem);
  ASSERT_TRUE(device_peer);
  EXPECT_EQ(device_peer->kind, PeerKind::kDevice);
  EXPECT_EQ(device_peer->identity, device_);
  EXPECT_EQ(PeerFromCertificatePem(ReadFile(paths_.home_cert)).error(), Errc::kNoIdentity);
}

TEST_F(PkiTest, GatewayUriAndServerNamesAreChecked) {
  const DeviceIdentity gateway{"Acme:1", "Zürich", "gw 1", ""};
  EXPECT_EQ(GatewayUri(gateway), "lifeline:gateway:Acme%3A1/Z%C3%BCrich/gw%201");
  auto csr = MakeCsr(GeneratePrivateKeyPem(), gateway, PeerKind::kGateway);
  ASSERT_TRUE(csr);
  for (const std::string& bad : std::vector<std::string>{"", "bad name", "a..b", "-x/y", std::string(254, 'a'), "x;rm"}) {
    EXPECT_FALSE(IsValidServerName(bad)) << bad;
    auto refused = IssueGatewayCertificate(ca_cert_, ca_key_, *csr, gateway, {bad}, 30);
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error(), Errc::kBadIdentity);
  }
  EXPECT_FALSE(IssueGatewayCertificate(ca_cert_, ca_key_, *csr, gateway,
                                       std::vector<std::string>(kMaxGatewayServerNames + 1, "a"), 30));
  for (const std::string good : std::vector<std::string>{"localhost", "10.0.0.1", "fe80::1", "gw-1.site.example", "*.site.example"}) {
    EXPECT_TRUE(IsValidServerName(good)) << good;
  }
  auto issued = IssueGatewayCertificate(ca_cert_, ca_key_, *csr, gateway, {}, 30);
  ASSERT_TRUE(issued);
  auto peer = PeerFromCertificatePem(issued->pem);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->kind, PeerKind::kGateway);
  EXPECT_EQ(peer->identity.customer, "Acme:1");
  EXPECT_EQ(peer->identity.serial, "gw 1");
}

}  // namespace
}  // namespace lifeline::crypto
