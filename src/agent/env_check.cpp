#include "agent/env_check.h"

#include "agent/connection_paths.h"
#include "crypto/envelope.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "protocol/codec.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace lifeline::agent {
namespace {

using Outcome = CheckItem::Outcome;

struct Endpoint {
  std::string host;
  std::string port;
};

std::optional<Endpoint> ParseEndpoint(const std::string& url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return std::nullopt;
  }
  std::string host = parsed->host();
  if (host.size() > 2 && host.front() == '[') {
    host = host.substr(1, host.size() - 2);
  }
  return Endpoint{host, parsed->has_port() ? std::string(parsed->port()) : "443"};
}

// Plain sockets: one connect with a deadline is all a reachability check needs.
std::string TcpConnect(const addrinfo& address, std::chrono::milliseconds timeout) {
  const int fd = ::socket(address.ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return std::strerror(errno);
  }
  std::string error;
  if (::connect(fd, address.ai_addr, address.ai_addrlen) != 0 && errno != EINPROGRESS) {
    error = std::strerror(errno);
  } else {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
      error = "no answer within " + std::to_string(timeout.count()) + " ms";
    } else {
      int so_error = 0;
      socklen_t length = sizeof(so_error);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
      if (so_error != 0) {
        error = std::strerror(so_error);
      }
    }
  }
  ::close(fd);
  return error;
}

std::string AddressText(const addrinfo& a) {
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw = a.ai_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a.ai_addr)->sin6_addr)
                                            : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a.ai_addr)->sin_addr);
  ::inet_ntop(a.ai_family, raw, text, sizeof(text));
  return text;
}

void CheckCertificate(const AgentConfig& config, CheckReport& report) {
  const AgentPkiPaths paths(config.pki_dir);
  auto cert = crypto::ReadSmallFile(paths.device_cert, 1 << 20);
  auto ca = crypto::ReadSmallFile(paths.ca_cert, 1 << 20);
  if (!ca) {
    report.items.push_back({Outcome::kFail, "home CA", paths.ca_cert.string() + ": " + ca.error().message() +
                                                           " (copy ca.crt from the home's PKI directory)"});
    return;
  }
  if (!cert) {
    report.items.push_back({Outcome::kFail, "device certificate",
                            paths.device_cert.string() + ": " + cert.error().message() + " (run `lifeline agent enroll`)"});
    return;
  }
  auto identity = crypto::IdentityFromCertificatePem(*cert);
  if (!crypto::VerifyCertificateChain(*cert, *ca) || !identity || !identity->SameDevice(config.device)) {
    report.items.push_back({Outcome::kFail, "device certificate",
                            "not issued by the pinned CA for " + config.device.Key() + " (enroll again)"});
    return;
  }
  auto not_after = crypto::CertificateNotAfterUnix(*cert);
  const std::int64_t days = not_after ? (*not_after - SystemClock::Instance().NowUnixSeconds()) / 86400 : -1;
  const Outcome outcome = days < 0 ? Outcome::kFail : days < 30 ? Outcome::kWarn : Outcome::kPass;
  report.items.push_back({outcome, "device certificate",
                          days < 0 ? "expired: enroll again"
                                   : fmt::format("{} for {}, valid for {} more days", paths.device_cert.string(),
                                                 config.device.Key(), days)});
}

void CheckEndpoint(const std::string& url, bool direct_path_configured, CheckReport& report) {
  auto endpoint = ParseEndpoint(url);
  if (!endpoint) {
    report.items.push_back({Outcome::kFail, "endpoint " + url, "not a URL"});
    return;
  }
  if (!direct_path_configured) {
    report.items.push_back({Outcome::kPass, "name resolution: " + endpoint->host, "left to the proxy"});
    return;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(endpoint->host.c_str(), endpoint->port.c_str(), &hints, &found);
  if (rc != 0) {
    report.items.push_back({Outcome::kFail, "name resolution: " + endpoint->host, ::gai_strerror(rc)});
    return;
  }
  std::string addresses;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    addresses += (addresses.empty() ? "" : ", ") + AddressText(*a);
  }
  report.items.push_back({Outcome::kPass, "name resolution: " + endpoint->host, addresses});
  std::string error = TcpConnect(*found, std::chrono::milliseconds(3000));
  report.items.push_back({error.empty() ? Outcome::kPass : Outcome::kFail,
                          fmt::format("TCP reach: {}:{}", endpoint->host, endpoint->port),
                          error.empty() ? "connected (" + AddressText(*found) + ")"
                                        : error + " (is the port open outbound in the firewall?)"});
  ::freeaddrinfo(found);
}

}  // namespace

bool CheckReport::Passed() const {
  return std::none_of(items.begin(), items.end(), [](const auto& i) { return i.outcome == Outcome::kFail; });
}

std::string CheckReport::Render() const {
  std::string out;
  int failed = 0;
  int warned = 0;
  for (const auto& item : items) {
    const char* mark = item.outcome == Outcome::kPass ? "ok  " : item.outcome == Outcome::kWarn ? "WARN" : "FAIL";
    failed += item.outcome == Outcome::kFail;
    warned += item.outcome == Outcome::kWarn;
    out += fmt::format("[{}] {}: {}\n", mark, item.what, item.detail);
  }
  out += failed == 0 ? fmt::format("\nall {} checks passed{}\n", items.size(),
                                   warned ? fmt::format(" ({} warning(s))", warned) : "")
                     : fmt::format("\n{} of {} checks FAILED\n", failed, items.size());
  return out;
}

CheckReport RunEnvironmentCheck(const AgentConfig& config) {
  CheckReport report;
  CheckCertificate(config, report);
  const auto paths = ProxyPaths(config.paths);
  const auto endpoints = HomeEndpoints(config.paths, config.home_url);
  const bool direct = std::any_of(paths.begin(), paths.end(),
                                  [](const auto& p) { return p.kind == transport::ProxyKind::kNone; });
  for (const auto& url : endpoints) {
    CheckEndpoint(url, direct, report);
  }

  const AgentPkiPaths pki(config.pki_dir);
  auto home_sign = crypto::ReadPublicKey(pki.home_sign_public, crypto::KeyKind::kEd25519Public);
  std::optional<std::pair<transport::ProxySettings, std::string>> working;
  for (const auto& path : paths) {
    for (const auto& url : endpoints) {
      transport::HttpClient client(
          transport::ClientTls{pki.ca_cert.string(), pki.device_cert.string(), pki.device_key.string()});
      transport::ClientRequest request{.method = "GET", .url = url + "/v1/time"};
      request.proxy = path;
      request.timeout = std::chrono::milliseconds(10000);
      const std::int64_t sent_ms = SystemClock::Instance().NowUnixMillis();
      auto response = client.Send(request);
      const std::int64_t received_ms = SystemClock::Instance().NowUnixMillis();
      const std::string what = fmt::format("TLS and CA pin: {} {}", url, path.Describe());
      if (!response) {
        report.items.push_back({Outcome::kFail, what, client.LastErrorDetail().empty() ? response.error().message()
                                                                                       : client.LastErrorDetail()});
        continue;
      }
      report.items.push_back({Outcome::kPass, what, fmt::format("handshake ok, home answered HTTP {}", response->status)});
      boost::system::error_code ec;
      auto body = boost::json::parse(response->body, ec);
      const auto* time = !ec && body.is_object() ? body.get_object().if_contains("time_ms") : nullptr;
      if (time == nullptr || !time->is_int64()) {
        report.items.push_back({Outcome::kWarn, "clock skew: " + url, "this home does not tell its time"});
      } else {
        const std::int64_t skew_s = std::abs((sent_ms + received_ms) / 2 - time->get_int64()) / 1000;
        report.items.push_back({skew_s > 300 ? Outcome::kFail : skew_s > 30 ? Outcome::kWarn : Outcome::kPass,
                                "clock skew: " + url,
                                fmt::format("{} s{}", skew_s, skew_s > 30 ? " (set up NTP: the home refuses batches "
                                                                            "more than 300 s off)"
                                                                          : "")});
      }
      if (!working) {
        working = std::make_pair(path, url);
      }
    }
  }

  // A real message: a heartbeat, signed and sealed as the agent sends it, answered by a signed reply.
  if (!working) {
    report.items.push_back({Outcome::kFail, "test message round trip", "no route to the home works"});
    return report;
  }
  auto sign = crypto::ReadSigningKeyPair(pki.device_sign_key);
  auto seal = crypto::ReadPublicKey(pki.home_seal_public, crypto::KeyKind::kX25519Public);
  if (!sign || !seal || !home_sign) {
    report.items.push_back({Outcome::kFail, "test message round trip", "cannot read the device's or the home's keys in " +
                                                                           config.pki_dir});
    return report;
  }
  protocol::Batch batch{.batch_id = crypto::RandomHex(16), .device = config.device,
                        .sent_at_ms = SystemClock::Instance().NowUnixMillis(), .agent_version = LIFELINE_VERSION};
  protocol::Message heartbeat{.id = crypto::RandomHex(16), .type = protocol::MessageType::kHeartbeat,
                              .timestamp_ms = batch.sent_at_ms};
  heartbeat.heartbeat = {config.reports.heartbeat_interval.count(), "lifeline check"};
  batch.messages.push_back(heartbeat);
  const auto sealed = crypto::SealEnvelope(crypto::AsBytes(protocol::EncodeBatch(batch)), *sign, *seal);
  transport::HttpClient client(
      transport::ClientTls{pki.ca_cert.string(), pki.device_cert.string(), pki.device_key.string()});
  transport::ClientRequest request{.url = working->second + "/v1/batches",
                                   .content_type = "application/vnd.lifeline.sealed-batch",
                                   .body = std::string(sealed.begin(), sealed.end())};
  request.proxy = working->first;
  const auto started = std::chrono::steady_clock::now();
  auto response = client.Send(request);
  const auto elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  const std::string what = fmt::format("test message round trip: {} {}", working->second, working->first.Describe());
  if (!response) {
    report.items.push_back({Outcome::kFail, what, client.LastErrorDetail()});
    return report;
  }
  if (response->status == 202) {
    // A gateway took it and holds it (docs/gateway.md, "Relay"): this device's way out works, the
    // gateway's way to the home did not answer in time.
    std::string why;
    auto held = protocol::DecodeRelayHeld(response->body, &why);
    report.items.push_back(
        {Outcome::kWarn, what,
         held ? fmt::format("gateway {} holds it and forwards it when the home answers; the home did not answer "
                            "through the gateway in time (check the gateway's log)",
                            held->gateway)
              : "HTTP 202 without a gateway's answer: " + why});
    return report;
  }
  if (response->status != 200) {
    std::string message;
    const auto reason = protocol::DecodeError(response->body, &message);
    report.items.push_back({Outcome::kFail, what, fmt::format("home refused it: {}: {}", protocol::WireName(reason), message)});
    return report;
  }
  auto signature = crypto::Base64Decode(response->headers["lifeline-signature"]);
  std::string why;
  auto reply = protocol::DecodeReply(response->body, &why);
  if (!signature || !crypto::Verify(crypto::AsBytes(response->body), *signature, *home_sign) || !reply ||
      reply->results.size() != 1 || reply->results[0].status != protocol::MessageStatus::kAccepted) {
    report.items.push_back({Outcome::kFail, what, "the reply is not a signed acceptance from the home's key"});
    return report;
  }
  report.items.push_back({Outcome::kPass, what, fmt::format("accepted, signed reply verified, {} ms", elapsed_ms)});
  return report;
}

}  // namespace lifeline::agent
