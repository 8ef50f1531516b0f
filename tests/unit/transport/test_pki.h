#pragma once
// Throwaway PKI and a raw TLS client for the transport tests. Certificates come from the `openssl`
// CLI into a temp dir, so the tests exercise real files the way an operator would deploy them.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace lifeline::transport::testpki {

struct TestPki {
  std::filesystem::path ca_cert, ca_key;
  std::filesystem::path server_cert, server_key;  // SAN 127.0.0.1, ::1, localhost; signed by ca
  std::filesystem::path client_cert, client_key;  // CN=device-1, signed by ca
  std::filesystem::path other_ca_cert, other_ca_key;
  std::filesystem::path other_client_cert, other_client_key;  // CN=intruder, signed by other_ca
  std::filesystem::path other_server_cert, other_server_key;  // SAN 127.0.0.1, signed by other_ca
};

/// Generates the whole PKI under `dir`. Returns false (and prints the failing command) on error.
bool GeneratePki(const std::filesystem::path& dir, TestPki* pki);

/// One PKI per test process, generated on first use in a temp dir removed at exit (a few ms of
/// openssl runs, but no need to repeat them per test). Records a test failure if openssl fails.
const TestPki& SharedPki();

/// A port on 127.0.0.1 that nothing listens on (bound, read back, closed).
std::uint16_t UnusedPort();

/// True when this machine can bind TCP on ::1.
bool HasIpv6Loopback();

/// A blocking TLS client on the OpenSSL API, for what curl will not send: garbage requests and old
/// protocol versions.
class RawTlsClient {
 public:
  struct Options {
    std::string ca_file;  // verify the server against it (empty: no verification)
    int min_version = 0;  // TLS1_VERSION, ... (0: library default)
    int max_version = 0;
  };
  /// Connects and handshakes; nullptr on failure with the reason in `error`.
  static std::unique_ptr<RawTlsClient> Connect(const std::string& host, std::uint16_t port,
                                               const Options& options, std::string* error);
  ~RawTlsClient();

  bool Write(std::string_view bytes);
  /// Everything read until the server closes, an error, or `timeout` (checked between reads; a
  /// single read gives up after 3 s).
  std::string ReadUntilClose(std::chrono::milliseconds timeout);
  /// Reads until the received text contains `marker`, the server closes, or an error.
  std::string ReadUntil(std::string_view marker);

 private:
  RawTlsClient() = default;
  int fd_ = -1;
  void* ctx_ = nullptr;  // SSL_CTX*, kept out of the header like in src/
  void* ssl_ = nullptr;  // SSL*
};

/// Connects a plain TCP socket to 127.0.0.1:port; -1 on failure. The caller closes it.
int ConnectTcp(std::uint16_t port);

/// Waits until `fd` is closed by the peer (read returns 0 or an error); false after `timeout`.
bool WaitForPeerClose(int fd, std::chrono::milliseconds timeout);

}  // namespace lifeline::transport::testpki
