#include "unit/transport/test_pki.h"

#include "common/log.h"
#include "support/temp_dir.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace lifeline::transport::testpki {
namespace {

bool Run(const std::string& command) {
  const std::string quiet = command + " >/dev/null 2>&1";
  if (std::system(quiet.c_str()) != 0) {
    std::fprintf(stderr, "test PKI: command failed: %s\n", command.c_str());
    return false;
  }
  return true;
}

std::string Quote(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

bool MakeCa(const std::filesystem::path& cert, const std::filesystem::path& key,
            const std::string& cn) {
  return Run(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=" +
      cn + "' -keyout " + Quote(key) + " -out " + Quote(cert));
}

bool MakeLeaf(const std::filesystem::path& dir, const std::string& name, const std::string& cn,
              const std::string& extensions, const std::filesystem::path& ca_cert,
              const std::filesystem::path& ca_key, std::filesystem::path* cert,
              std::filesystem::path* key) {
  *cert = dir / (name + ".crt");
  *key = dir / (name + ".key");
  const std::filesystem::path csr = dir / (name + ".csr");
  const std::filesystem::path ext = dir / (name + ".ext");
  std::ofstream(ext) << extensions;
  return Run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=" +
             cn + "' -keyout " + Quote(*key) + " -out " + Quote(csr)) &&
         Run("openssl x509 -req -days 2 -in " + Quote(csr) + " -CA " + Quote(ca_cert) + " -CAkey " +
             Quote(ca_key) + " -CAcreateserial -extfile " + Quote(ext) + " -out " + Quote(*cert));
}

}  // namespace

bool GeneratePki(const std::filesystem::path& dir, TestPki* pki) {
  const std::string server_ext =
      "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
      "basicConstraints=critical,CA:FALSE\n";
  const std::string client_ext =
      "extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n";
  pki->ca_cert = dir / "ca.crt";
  pki->ca_key = dir / "ca.key";
  pki->other_ca_cert = dir / "other-ca.crt";
  pki->other_ca_key = dir / "other-ca.key";
  return MakeCa(pki->ca_cert, pki->ca_key, "Lifeline Test CA") &&
         MakeCa(pki->other_ca_cert, pki->other_ca_key, "Other Test CA") &&
         MakeLeaf(dir, "server", "localhost", server_ext, pki->ca_cert, pki->ca_key,
                  &pki->server_cert, &pki->server_key) &&
         MakeLeaf(dir, "client", "device-1", client_ext, pki->ca_cert, pki->ca_key,
                  &pki->client_cert, &pki->client_key) &&
         MakeLeaf(dir, "other-client", "intruder", client_ext, pki->other_ca_cert,
                  pki->other_ca_key, &pki->other_client_cert, &pki->other_client_key) &&
         MakeLeaf(dir, "other-server", "localhost", server_ext, pki->other_ca_cert,
                  pki->other_ca_key, &pki->other_server_cert, &pki->other_server_key);
}

const TestPki& SharedPki() {
  static lifeline::testing::TempDir dir;
  static TestPki pki;
  static const bool generated = [] {
    // Debug lines (handshake failures, connection errors) make a failed test readable.
    log::Init(log::Format::kText, spdlog::level::debug);
    return GeneratePki(dir.path(), &pki);
  }();
  if (!generated) {
    ADD_FAILURE() << "generating the test PKI with the openssl CLI failed";
  }
  return pki;
}

std::uint16_t UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool HasIpv6Loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

int ConnectTcp(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool WaitForPeerClose(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char scratch[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
      continue;
    }
    if (::read(fd, scratch, sizeof(scratch)) <= 0) {
      return true;
    }
  }
}

std::unique_ptr<RawTlsClient> RawTlsClient::Connect(const std::string& host, std::uint16_t port,
                                                    const Options& options, std::string* error) {
  std::unique_ptr<RawTlsClient> client(new RawTlsClient());
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  client->ctx_ = ctx;
  // Old protocol versions need the lowest security level to be offered at all; the point is to see
  // the server refuse them, not our own library.
  SSL_CTX_set_security_level(ctx, 0);
  SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
  if (options.min_version != 0) {
    SSL_CTX_set_min_proto_version(ctx, options.min_version);
  }
  if (options.max_version != 0) {
    SSL_CTX_set_max_proto_version(ctx, options.max_version);
  }
  if (!options.ca_file.empty()) {
    SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  client->fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(client->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    *error = "connect failed";
    return nullptr;
  }
  timeval tv{3, 0};  // no test waits longer on one read
  ::setsockopt(client->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  SSL* ssl = SSL_new(ctx);
  client->ssl_ = ssl;
  SSL_set_fd(ssl, client->fd_);
  SSL_set_tlsext_host_name(ssl, "localhost");
  ERR_clear_error();
  if (SSL_connect(ssl) != 1) {
    char text[256] = "handshake failed";
    if (const unsigned long code = ERR_get_error(); code != 0) {
      ERR_error_string_n(code, text, sizeof(text));
    }
    *error = text;
    return nullptr;
  }
  return client;
}

RawTlsClient::~RawTlsClient() {
  if (ssl_ != nullptr) {
    SSL_free(static_cast<SSL*>(ssl_));
  }
  if (ctx_ != nullptr) {
    SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
  }
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool RawTlsClient::Write(std::string_view bytes) {
  return SSL_write(static_cast<SSL*>(ssl_), bytes.data(), static_cast<int>(bytes.size())) ==
         static_cast<int>(bytes.size());
}

std::string RawTlsClient::ReadUntilClose(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string received;
  char buffer[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    const int n = SSL_read(static_cast<SSL*>(ssl_), buffer, sizeof(buffer));
    if (n <= 0) {
      break;
    }
    received.append(buffer, static_cast<std::size_t>(n));
  }
  return received;
}

std::string RawTlsClient::ReadUntil(std::string_view marker) {
  std::string received;
  char buffer[4096];
  while (received.find(marker) == std::string::npos) {
    const int n = SSL_read(static_cast<SSL*>(ssl_), buffer, sizeof(buffer));
    if (n <= 0) {
      break;
    }
    received.append(buffer, static_cast<std::size_t>(n));
  }
  return received;
}

}  // namespace lifeline::transport::testpki
