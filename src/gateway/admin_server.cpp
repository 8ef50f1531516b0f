#include "gateway/admin_server.h"
#include "gateway/loopback_peer.h"

#include "common/log.h"
#include "crypto/errors.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "crypto/token.h"
#include "gateway/gateway_config.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <memory>

namespace lifeline::gateway {
namespace json = boost::json;
using transport::HttpRequest;
using transport::HttpResponse;

namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("gateway.admin"); }

constexpr int kCertificateDays = 3650;  // pinned by clients, so its lifetime only bounds key reuse

struct OpenSslFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
};
template <class T>
using OpenSslPtr = std::unique_ptr<T, OpenSslFree>;

std::error_code OpenSslFailure(std::string_view what) {
  Log()->error("admin certificate: {} failed (OpenSSL error {:#x})", what, ERR_get_error());
  return std::make_error_code(std::errc::protocol_error);
}

// A self-signed server certificate for the loopback names, signed by its own key.
Result<std::string> SelfSignedCertificate(const std::string& key_pem) {
  OpenSslPtr<BIO> key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  OpenSslPtr<EVP_PKEY> key(
      key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr);
  OpenSslPtr<X509> cert(X509_new());
  OpenSslPtr<BIGNUM> serial(BN_new());
  if (!key || !cert || !serial) {
    return OpenSslFailure("reading the new key");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), 2) != 1 || BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * kCertificateDays) == nullptr ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("lifeline gateway admin"), -1,
                                 -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1 || X509_set_pubkey(cert.get(), key.get()) != 1) {
    return OpenSslFailure("filling in the certificate");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  const std::array<std::pair<int, const char*>, 5> extensions = {{
      {NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost"},
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature"},
      {NID_ext_key_usage, "serverAuth"},
      {NID_subject_key_identifier, "hash"},
  }};
  for (const auto& [nid, value] : extensions) {
    OpenSslPtr<X509_EXTENSION> extension(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
    if (!extension || X509_add_ext(cert.get(), extension.get(), -1) != 1) {
      return OpenSslFailure("adding an extension");
    }
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return OpenSslFailure("signing");
  }
  OpenSslPtr<BIO> out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509(out.get(), cert.get()) != 1) {
    return OpenSslFailure("encoding");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

VoidResult PrepareCertificate(const std::filesystem::path& data_dir) {
  const auto key_path = AdminKeyPath(data_dir);
  const auto cert_path = AdminCertificatePath(data_dir);
  std::error_code ec;
  if (std::filesystem::exists(key_path, ec) && std::filesystem::exists(cert_path, ec)) {
    return {};
  }
  // Half a pair (a crash between the two writes, or a deleted file) is replaced whole: clients
  // pin whatever admin.crt says next time they run.
  std::filesystem::remove(key_path, ec);
  std::filesystem::remove(cert_path, ec);
  const auto key_pem = crypto::GeneratePrivateKeyPem();
  auto cert_pem = SelfSignedCertificate(key_pem);
  if (!cert_pem) {
    return cert_pem.error();
  }
  if (auto written = crypto::WritePrivateKeyPem(key_path, key_pem); !written) {
    Log()->error("cannot write {}: {}", key_path.string(), written.error().message());
    return written.error();
  }
  if (auto written = crypto::WriteFileAtomically(cert_path, *cert_pem, 0644); !written) {
    Log()->error("cannot write {}: {}", cert_path.string(), written.error().message());
    return written.error();
  }
  Log()->info("made the admin interface's self-signed certificate {}", cert_path.string());
  return {};
}

Result<std::string> PrepareToken(const std::filesystem::path& token_path) {
  std::error_code ec;
  if (!std::filesystem::exists(token_path, ec)) {
    const auto token = crypto::GenerateToken("llgw");
    auto written = crypto::WriteFileAtomically(token_path, token + "\n", 0600, false);
    if (!written && written.error() != crypto::Errc::kAlreadyExists) {
      Log()->error("cannot write {}: {}", token_path.string(), written.error().message());
      return written.error();
    }
    if (written) {
      Log()->info("made the admin token {} (readable by this user only)", token_path.string());
    }
  }
  auto text = crypto::ReadSmallFile(token_path, 4096, /*require_private=*/true);
  if (!text) {
    Log()->error("cannot read {}: {}", token_path.string(), text.error().message());
    return text.error();
  }
  std::string token = *text;
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.size() < 16) {
    Log()->error("{} holds no usable token (delete it: a new one is made at the next start)",
                 token_path.string());
    return std::make_error_code(std::errc::invalid_argument);
  }
  return token;
}

// Percent-decoding of one path segment; false when malformed.
bool DecodeSegment(std::string_view in, std::string* out) {
  out->clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      *out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) {
      return false;
    }
    const auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') {
        return c - '0';
      }
      if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
      }
      if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
      }
      return -1;
    };
    const int high = hex(in[i + 1]);
    const int low = hex(in[i + 2]);
    if (high < 0 || low < 0) {
      return false;
    }
    *out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return true;
}

bool UnderPrefix(std::string_view path, std::string_view prefix) {
  return path == prefix || (path.starts_with(prefix) && path.size() > prefix.size() &&
                            (prefix.ends_with('/') || path[prefix.size()] == '/'));
}

}  // namespace

AdminServerOptions AdminServerOptions::FromConfig(const GatewayConfig& config) {
  return AdminServerOptions{
      .listen = config.admin_listen, .data_dir = config.DataDir(), .token_path = config.AdminTokenPath()};
}

std::filesystem::path AdminCertificatePath(const std::filesystem::path& data_dir) {
  return data_dir / "admin.crt";
}
std::filesystem::path AdminKeyPath(const std::filesystem::path& data_dir) {
  return data_dir / "admin.key";
}

Result<std::string> PrepareAdminFiles(const AdminServerOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(options.data_dir, ec)) {
    std::filesystem::create_directories(options.data_dir, ec);
    if (ec) {
      Log()->error("cannot create {}: {}", options.data_dir.string(), ec.message());
      return ec;
    }
    ::chmod(options.data_dir.c_str(), 0700);
  }
  if (auto cert = PrepareCertificate(options.data_dir); !cert) {
    return cert.error();
  }
  return PrepareToken(options.token_path);
}

HttpResponse AdminError(int status, std::string_view error, std::string_view message) {
  return AdminJson(json::serialize(json::object{{"error", error}, {"message", message}}), status);
}

HttpResponse AdminJson(std::string body, int status) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

AdminServer::AdminServer(std::string token_hash) : token_hash_(std::move(token_hash)) {}

AdminServer::~AdminServer() { Stop(std::chrono::milliseconds(0)); }

Result<std::unique_ptr<AdminServer>> AdminServer::Start(const GatewayConfig& config) {
  return Start(AdminServerOptions::FromConfig(config));
}

Result<std::unique_ptr<AdminServer>> AdminServer::Start(AdminServerOptions options) {
  auto token = PrepareAdminFiles(options);
  if (!token) {
    return token.error();
  }
  std::unique_ptr<AdminServer> admin(new AdminServer(crypto::HashToken(*token)));
  transport::ServerOptions server_options{
      .listen = options.listen,
      .tls = {.cert_file = AdminCertificatePath(options.data_dir).string(),
              .key_file = AdminKeyPath(options.data_dir).string()},
      .client_certs = transport::ClientCertPolicy::kNone,
      .worker_threads = options.worker_threads,
      .max_connections = 64,
      .name = "gateway admin"};
  auto* raw = admin.get();
  auto server = transport::HttpsServer::Start(
      std::move(server_options), [raw](const HttpRequest& request) { return raw->Handle(request); });
  if (!server) {
    return server.error();
  }
  admin->server_ = std::move(*server);
  Log()->info("local admin interface on https://{} (token in {})", admin->LocalAddress(),
              options.token_path.string());
  return admin;
}

void AdminServer::Route(std::string method, std::string path_prefix, AdminHandler handler) {
  std::unique_lock lock(routes_mutex_);
  routes_.push_back(RouteEntry{std::move(method), std::move(path_prefix), std::move(handler)});
}

std::string AdminServer::LocalAddress() const { return server_ ? server_->LocalAddress() : ""; }
std::uint16_t AdminServer::LocalPort() const { return server_ ? server_->LocalPort() : 0; }

void AdminServer::Stop(std::chrono::milliseconds grace) {
  if (server_) {
    server_->Stop(grace);
  }
}

std::string AdminServer::LocalActor(const std::string& remote) const {
  // The token says someone who can read admin.token asked; the kernel says which user's process it
  // was (loopback_peer.h). Both are on this host: the interface listens on loopback only.
  const auto uid = LoopbackPeerUid(remote, LocalAddress());
  return uid ? "local:" + UserName(*uid) : std::string("local");
}

HttpResponse AdminServer::Handle(const HttpRequest& request) const {
  constexpr std::string_view kBearer = "Bearer ";
  const auto auth = request.headers.find("authorization");
  if (auth == request.headers.end() || !auth->second.starts_with(kBearer) ||
      !crypto::ConstantTimeEquals(crypto::HashToken(auth->second.substr(kBearer.size())),
                                  token_hash_)) {
    Log()->warn("admin request {} {} from {} refused: missing or wrong token", request.method,
                request.target.substr(0, request.target.find('?')), request.remote);
    auto response = AdminError(401, "unauthorized",
                               "send 'Authorization: Bearer <token>' with the token from the "
                               "gateway's admin.token file");
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    return response;
  }
  const std::string_view target = request.target;
  const auto question = target.find('?');
  AdminRequest admin_request{.http = request,
                             .path = std::string(target.substr(0, question)),
                             .query = question == std::string_view::npos
                                          ? std::string()
                                          : std::string(target.substr(question + 1)),
                             .actor = LocalActor(request.remote)};

  AdminHandler handler;
  std::string matched_prefix;
  std::vector<std::string> allowed;
  {
    std::shared_lock lock(routes_mutex_);
    std::size_t best = 0;
    for (const auto& route : routes_) {
      if (!UnderPrefix(admin_request.path, route.prefix) || route.prefix.size() < best) {
        continue;
      }
      if (route.prefix.size() > best) {
        best = route.prefix.size();
        allowed.clear();
        handler = nullptr;
        matched_prefix = route.prefix;
      }
      allowed.push_back(route.method);
      if (route.method == request.method) {
        handler = route.handler;
      }
    }
  }
  if (matched_prefix.empty()) {
    return AdminError(404, "not_found",
                      fmt::format("no such path: {} (see docs/gateway.md)", admin_request.path));
  }
  if (!handler) {
    auto response = AdminError(
        405, "method_not_allowed",
        fmt::format("{} does not take {}; it takes {}", admin_request.path, request.method,
                    fmt::join(allowed, ", ")));
    response.headers.emplace_back("Allow", fmt::format("{}", fmt::join(allowed, ", ")));
    return response;
  }
  std::string_view rest = std::string_view(admin_request.path).substr(matched_prefix.size());
  while (!rest.empty()) {
    if (rest.front() == '/') {
      rest.remove_prefix(1);
      continue;
    }
    const auto slash = rest.find('/');
    std::string segment;
    if (!DecodeSegment(rest.substr(0, slash), &segment)) {
      return AdminError(400, "bad_request", "malformed percent-encoding in the path");
    }
    admin_request.rest.push_back(std::move(segment));
    if (slash == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(slash);
  }
  auto response = handler(admin_request);
  if (request.method == "GET" || request.method == "HEAD") {
    Log()->debug("{} {} {} -> {}", admin_request.actor, request.method, admin_request.path,
                 response.status);
  } else {
    // Every change, and every refused attempt at one, names who asked.
    Log()->info("{} {} {} -> {}", admin_request.actor, request.method, admin_request.path,
                response.status);
  }
  return response;
}

}  // namespace lifeline::gateway
