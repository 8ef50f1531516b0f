#include "home/ingest_handler.h"

#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/errors.h"
#include "crypto/pki.h"
#include "crypto/token.h"
#include "protocol/codec.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <optional>
#include <utility>

namespace lifeline::home {
namespace {

using protocol::Reject;

std::shared_ptr<spdlog::logger> Log() { return log::Get("ingest"); }

/// What GET /v1/tickets tells a device: its open tickets and those that changed in the last week,
/// newest first, at most this many.
constexpr std::int64_t kTicketStatusLookbackMs = 7LL * 24 * 3600 * 1000;
constexpr int kTicketStatusLimit = 200;

/// Maps a store error to the refusal the device sees.
Reject FromStoreError(std::error_code ec) {
  if (ec == store::Errc::kReplayedBatch) return Reject::kReplayedBatch;
  if (ec == store::Errc::kDeviceUnknown) return Reject::kDeviceUnknown;
  if (ec == store::Errc::kDeviceRevoked) return Reject::kDeviceRevoked;
  if (ec == store::Errc::kTokenUnknown) return Reject::kTokenUnknown;
  if (ec == store::Errc::kTokenUsed) return Reject::kTokenUsed;
  if (ec == store::Errc::kTokenExpired) return Reject::kTokenExpired;
  if (ec == store::Errc::kTokenIdentityMismatch) return Reject::kTokenIdentityMismatch;
  return Reject::kInternal;
}

std::string LowerCase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

std::optional<std::pair<Reject, std::string>> IngestHandler::ResolveDevicePeer(
    const transport::HttpRequest& request, DevicePeer* out) const {
  out->name = request.remote;
  const auto relayed = request.headers.find(LowerCase(protocol::kRelayedCertificateHeader));
  if (relayed == request.headers.end()) {
    if (!request.peer) {
      return std::nullopt;  // the caller decides whether a certificate is required
    }
    auto identity = crypto::IdentityFromCertificatePem(request.peer->pem);
    if (!identity) {
      return std::make_pair(Reject::kIdentityMismatch, std::string("the client certificate names no device"));
    }
    out->identity = *identity;
    out->name = fmt::format("{} ({})", identity->Key(), request.remote);
    return std::nullopt;
  }
  // Relayed: only a gateway may speak for a device, only for one of its own customer and site, and
  // the device's certificate must be one this home issued. The device's own checks (enrolled, not
  // revoked, signature) follow as for a direct batch.
  protocol::DeviceIdentity gateway;
  if (auto refusal = CheckRelayingGateway(request, &gateway)) {
    return refusal;
  }
  const std::string gateway_name = gateway.Key();
  auto pem = crypto::Base64Decode(relayed->second);
  const std::string device_pem = pem ? std::string(pem->begin(), pem->end()) : std::string();
  if (!pem || !crypto::VerifyCertificateChain(device_pem, keys_.ca_cert_pem)) {
    return std::make_pair(Reject::kIdentityMismatch,
                          fmt::format("gateway {} relayed a device certificate this home did not issue", gateway_name));
  }
  auto identity = crypto::IdentityFromCertificatePem(device_pem);
  if (!identity) {
    return std::make_pair(Reject::kIdentityMismatch,
                          fmt::format("gateway {} relayed a certificate that names no device", gateway_name));
  }
  if (identity->customer != gateway.customer || identity->site != gateway.site) {
    return std::make_pair(Reject::kIdentityMismatch,
                          fmt::format("gateway {} may not relay for {}, a device of another site", gateway_name,
                                      identity->Key()));
  }
  out->identity = *identity;
  out->name = fmt::format("{} (via gateway {}, {})", identity->Key(), gateway_name, request.remote);
  const auto received = request.headers.find(LowerCase(protocol::kRelayReceivedAtHeader));
  if (received != request.headers.end()) {
    std::int64_t ms = 0;
    const auto& text = received->second;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec != std::errc() || end != text.data() + text.size() || ms <= 0) {
      return std::make_pair(Reject::kMalformedBody,
                            fmt::format("{} is not a time in Unix milliseconds", protocol::kRelayReceivedAtHeader));
    }
    out->relay_received_at_ms = ms;
  }
  return std::nullopt;
}

std::optional<std::pair<Reject, std::string>> IngestHandler::CheckRelayingGateway(
    const transport::HttpRequest& request, protocol::DeviceIdentity* gateway) const {
  auto peer = request.peer ? crypto::PeerFromCertificatePem(request.peer->pem)
                           : Result<crypto::CertifiedPeer>(crypto::Errc::kNoIdentity);
  if (!peer || peer->kind != crypto::PeerKind::kGateway) {
    return std::make_pair(Reject::kIdentityMismatch,
                          std::string("only a gateway certificate may relay for a device"));
  }
  const std::string gateway_name = peer->identity.Key();
  auto record = store_.FindDevice(peer->identity.customer, peer->identity.site, peer->identity.serial);
  if (!record) {
    Log()->error("store lookup failed for gateway {}: {}", gateway_name, record.error().message());
    return std::make_pair(Reject::kInternal, std::string());
  }
  if (!record->has_value() || (*record)->kind != store::EnrollmentKind::kGateway) {
    return std::make_pair(Reject::kDeviceUnknown, fmt::format("gateway {} is not enrolled", gateway_name));
  }
  if ((*record)->status == store::DeviceStatus::kRevoked) {
    return std::make_pair(Reject::kDeviceRevoked, fmt::format("gateway {} is revoked", gateway_name));
  }
  *gateway = peer->identity;
  return std::nullopt;
}

transport::HttpResponse ErrorResponse(Reject reason, std::string_view message) {
  transport::HttpResponse response;
  response.status = protocol::HttpStatus(reason);
  response.body = protocol::EncodeError(reason, message);
  return response;
}

IngestHandler::IngestHandler(store::HomeStore& store, HomeKeys keys, IngestSettings settings,
                             const Clock& clock, std::function<void()> on_committed)
    : store_(store),
      keys_(std::move(keys)),
      settings_(std::move(settings)),
      clock_(clock),
      on_committed_(std::move(on_committed)) {}

transport::HttpResponse IngestHandler::Handle(const transport::HttpRequest& request) {
  if (request.method == "POST" && request.target == "/v1/batches") {
    return HandleBatch(request);
  }
  if (request.method == "POST" && request.target == "/v1/enroll") {
    return HandleEnroll(request);
  }
  if (request.method == "GET" && request.target == "/v1/tickets") {
    return HandleDeviceTickets(request);
  }
  if (request.method == "GET" && request.target == "/v1/time") {
    // For `lifeline check`: the device compares its clock with the home's before it sends batches.
    return SignedJson(fmt::format(R"({{"version":{},"time_ms":{}}})", protocol::kProtocolVersion,
                                  clock_.NowUnixMillis()));
  }
  return ErrorResponse(Reject::kNotFound, fmt::format("no endpoint {} {}", request.method, request.target));
}

transport::HttpResponse IngestHandler::SignedJson(std::string body) const {
  transport::HttpResponse response;
  const auto signature = crypto::Sign(crypto::AsBytes(body), keys_.sign);
  response.headers.emplace_back("Lifeline-Signature", crypto::Base64Encode(signature));
  response.body = std::move(body);
  return response;
}

transport::HttpResponse IngestHandler::HandleBatch(const transport::HttpRequest& request) {
  // Refuse: one log line naming the peer and the reason, a counter, an error body. Nothing is stored.
  std::string peer_name = request.remote;
  auto refuse = [&](Reject reason, const std::string& detail) {
    ++counters_.batches_refused;
    Log()->warn("refused batch from {}: {}: {}", peer_name, protocol::WireName(reason), detail);
    return ErrorResponse(reason, detail.empty() ? make_error_code(reason).message() : detail);
  };

  // Without a client certificate (allowed by ingest.require_client_certificate = false, for agents
  // behind TLS-inspecting proxies) the device's identity rests on the envelope's signature below.
  // Through a gateway it is the device certificate the gateway relayed (ResolveDevicePeer).
  DevicePeer device_peer;
  if (auto refusal = ResolveDevicePeer(request, &device_peer)) {
    peer_name = device_peer.name;
    return refuse(refusal->first, refusal->second);
  }
  peer_name = device_peer.name;
  std::optional<protocol::DeviceIdentity> cert_identity = device_peer.identity;
  if (!cert_identity && settings_.require_client_certificate) {
    return refuse(Reject::kClientCertRequired, "batches need the device's client certificate");
  }

  const std::vector<std::uint8_t> sealed(request.body.begin(), request.body.end());
  auto opened = crypto::OpenEnvelope(sealed, keys_.seal);
  if (!opened) {
    if (opened.error() == crypto::Errc::kUnsealFailed) {
      return refuse(Reject::kUnsealFailed, "");
    }
    return refuse(Reject::kMalformedBody, opened.error().message());
  }
  std::string why;
  auto batch = protocol::DecodeBatch(opened->batch_bytes, &why);
  if (!batch) {
    return refuse(static_cast<Reject>(batch.error().value()), why);
  }
  if (!cert_identity) {
    peer_name = fmt::format("{} ({}, no client certificate)", batch->device.Key(), request.remote);
  } else if (!batch->device.SameDevice(*cert_identity)) {
    return refuse(Reject::kIdentityMismatch,
                  fmt::format("the batch is for device {} but the TLS certificate is {}",
                              batch->device.Key(), cert_identity->Key()));
  }
  auto device = store_.FindDevice(batch->device.customer, batch->device.site, batch->device.serial);
  if (!device) {
    Log()->error("store lookup failed for {}: {}", peer_name, device.error().message());
    return refuse(Reject::kInternal, "");
  }
  if (!device->has_value() || (*device)->kind != store::EnrollmentKind::kDevice) {
    return refuse(Reject::kDeviceUnknown, fmt::format("device {} is not enrolled", batch->device.Key()));
  }
  if ((*device)->status == store::DeviceStatus::kRevoked) {
    return refuse(Reject::kDeviceRevoked, fmt::format("device {} is revoked", batch->device.Key()));
  }
  auto signing_key = crypto::Base64Decode((*device)->signing_public_b64);
  if (!signing_key || !crypto::VerifyEnvelope(*opened, *signing_key)) {
    return refuse(Reject::kBadSignature, "");
  }
  const std::int64_t now_ms = clock_.NowUnixMillis();
  const std::int64_t max_skew_ms = std::chrono::duration_cast<std::chrono::milliseconds>(settings_.max_clock_skew).count();
  // A batch a gateway held (the home was away) is checked against when the gateway received it; that
  // time itself may not lie in the future.
  const std::int64_t reference_ms = device_peer.relay_received_at_ms.value_or(now_ms);
  if (reference_ms > now_ms + max_skew_ms) {
    return refuse(Reject::kClockSkew, "the gateway says it received the batch in the future: check its clock");
  }
  const std::int64_t skew_ms = std::abs(batch->sent_at_ms - reference_ms);
  if (skew_ms > max_skew_ms) {
    return refuse(Reject::kClockSkew,
                  fmt::format("batch sent at {} is {} s away from the {}'s clock (limit {} s)",
                              FormatRfc3339(std::chrono::system_clock::time_point(
                                  std::chrono::milliseconds(batch->sent_at_ms))),
                              skew_ms / 1000, device_peer.relay_received_at_ms ? "gateway" : "home",
                              settings_.max_clock_skew.count()));
  }

  store::IngestRequest ingest{.batch = *batch,
                              .now_ms = now_ms,
                              .ticket_min_severity = settings_.ticket_min_severity,
                              .contacts = settings_.email_contacts,
                              .planner = settings_.planner,
                              .dedup_key = settings_.dedup_key,
                              .reopen_window_ms = settings_.reopen_window.count() * 1000,
                              .storm = settings_.storm};
  auto reply = store_.IngestBatch(ingest);
  if (!reply) {
    const Reject reason = FromStoreError(reply.error());
    if (reason == Reject::kInternal) {
      Log()->error("store failed on a batch from {}: {}", peer_name, reply.error().message());
    }
    return refuse(reason, reason == Reject::kInternal ? "" : reply.error().message());
  }
  ++counters_.batches_accepted;
  if (batch_observer_) {
    batch_observer_(*batch, *reply, now_ms);
  }
  int tickets = 0;
  for (const auto& result : reply->results) {
    tickets += result.ticket.empty() ? 0 : 1;
  }
  Log()->info("batch {} from {}: {} messages, {} with tickets", batch->batch_id.substr(0, 8), peer_name,
              reply->results.size(), tickets);
  if (on_committed_) {
    on_committed_();
  }
  return SignedJson(protocol::EncodeReply(*reply));
}

transport::HttpResponse IngestHandler::HandleDeviceTickets(const transport::HttpRequest& request) {
  // The device is the one its client certificate names (a GET carries no signed batch), so this
  // needs one even where ingest.require_client_certificate is false; it sees its own tickets only.
  auto refuse = [&](Reject reason, const std::string& detail) {
    Log()->warn("refused ticket status request from {}: {}: {}", request.remote, protocol::WireName(reason), detail);
    return ErrorResponse(reason, detail.empty() ? make_error_code(reason).message() : detail);
  };
  DevicePeer device_peer;
  if (auto refusal = ResolveDevicePeer(request, &device_peer)) {
    return refuse(refusal->first, refusal->second);
  }
  if (!device_peer.identity) {
    return refuse(Reject::kClientCertRequired, "asking for tickets needs the device's client certificate");
  }
  const std::optional<protocol::DeviceIdentity>& identity = device_peer.identity;
  auto device = store_.FindDevice(identity->customer, identity->site, identity->serial);
  if (!device) {
    Log()->error("store lookup failed for {}: {}", identity->Key(), device.error().message());
    return refuse(Reject::kInternal, "");
  }
  if (!device->has_value()) {
    return refuse(Reject::kDeviceUnknown, fmt::format("device {} is not enrolled", identity->Key()));
  }
  if ((*device)->status == store::DeviceStatus::kRevoked) {
    return refuse(Reject::kDeviceRevoked, fmt::format("device {} is revoked", identity->Key()));
  }
  const std::int64_t now_ms = clock_.NowUnixMillis();
  auto tickets = store_.ListTickets({.customer = identity->customer,
                                     .site = identity->site,
                                     .serial = identity->serial,
                                     .open_or_changed_since_ms = now_ms - kTicketStatusLookbackMs,
                                     .limit = kTicketStatusLimit});
  if (!tickets) {
    Log()->error("store failed listing the tickets of {}: {}", identity->Key(), tickets.error().message());
    return refuse(Reject::kInternal, "");
  }
  ++counters_.ticket_status_requests;
  boost::json::array items;
  for (const auto& t : *tickets) {
    boost::json::object item{{"number", t.number},
                             {"status", store::ToString(t.status)},
                             {"state", store::ToString(t.state)},
                             {"code", t.code},
                             {"severity", protocol::ToString(t.severity)},
                             {"occurrences", t.occurrences},
                             {"first_seen_ms", t.first_seen_ms},
                             {"last_seen_ms", t.last_seen_ms}};
    if (t.resolved_at_ms) {
      item["resolved_at_ms"] = *t.resolved_at_ms;
    }
    items.push_back(std::move(item));
  }
  boost::json::object body{
      {"version", protocol::kProtocolVersion},
      {"device", {{"customer", identity->customer}, {"site", identity->site}, {"serial", identity->serial}}},
      {"time_ms", now_ms},
      {"tickets", std::move(items)}};
  return SignedJson(boost::json::serialize(body));
}

transport::HttpResponse IngestHandler::HandleEnroll(const transport::HttpRequest& request) {
  auto refuse = [&](Reject reason, const std::string& detail) {
    Log()->warn("refused enrollment from {}: {}: {}", request.remote, protocol::WireName(reason), detail);
    return ErrorResponse(reason, detail.empty() ? make_error_code(reason).message() : detail);
  };
  std::string why;
  auto enroll = protocol::DecodeEnrollRequest(request.body, &why);
  if (!enroll) {
    return refuse(static_cast<Reject>(enroll.error().value()), why);
  }
  auto signing_key = crypto::Base64Decode(enroll->signing_public_key);
  if (!signing_key || signing_key->size() != crypto::kSigningPublicKeyBytes) {
    return refuse(Reject::kMalformedBody, "signing_public_key must be a base64 Ed25519 public key");
  }
  // Through a gateway (its certificate is the TLS peer): an enrolled, unrevoked gateway, and only for
  // a device of its own customer and site. The token is checked below as for any enrollment.
  std::string via;
  if (request.peer) {
    if (auto peer = crypto::PeerFromCertificatePem(request.peer->pem); peer && peer->kind == crypto::PeerKind::kGateway) {
      protocol::DeviceIdentity gateway;
      if (auto refusal = CheckRelayingGateway(request, &gateway)) {
        return refuse(refusal->first, refusal->second);
      }
      if (enroll->gateway || enroll->device.customer != gateway.customer || enroll->device.site != gateway.site) {
        return refuse(Reject::kIdentityMismatch,
                      fmt::format("gateway {} may not relay the enrollment of {} {}", gateway.Key(),
                                  enroll->gateway ? "gateway" : "device", enroll->device.Key()));
      }
      via = fmt::format(" via gateway {}", gateway.Key());
    }
  }
  // The certificate carries the identity the token was issued for, never what the CSR claims; the store
  // then checks the token against that identity, and an issued certificate is only returned on success.
  // A gateway's certificate says it is a gateway and also serves its device-facing port under the
  // names it asks for; the store then checks that the token was issued for a gateway.
  const char* what = enroll->gateway ? "gateway" : "device";
  auto issued = enroll->gateway
                    ? crypto::IssueGatewayCertificate(keys_.ca_cert_pem, keys_.ca_key_pem, enroll->csr_pem,
                                                      enroll->device, enroll->server_names,
                                                      settings_.certificate_days)
                    : crypto::IssueDeviceCertificate(keys_.ca_cert_pem, keys_.ca_key_pem, enroll->csr_pem,
                                                     enroll->device, settings_.certificate_days);
  if (!issued) {
    if (issued.error() == crypto::Errc::kBadIdentity && enroll->gateway) {
      return refuse(Reject::kMalformedBody, "server_names must be host names or IP addresses (at most 16)");
    }
    return refuse(Reject::kBadCsr, issued.error().message());
  }
  const std::int64_t now_ms = clock_.NowUnixMillis();
  store::EnrollmentRequest record{.token_hash = crypto::HashToken(enroll->token),
                                  .identity = enroll->device,
                                  .now_ms = now_ms,
                                  .device_signing_public_b64 = enroll->signing_public_key,
                                  .cert_fingerprint = issued->fingerprint_sha256_hex,
                                  .cert_pem = issued->pem,
                                  .cert_not_after_ms = issued->not_after_unix * 1000,
                                  .kind = enroll->gateway ? store::EnrollmentKind::kGateway
                                                          : store::EnrollmentKind::kDevice};
  if (auto enrolled = store_.Enroll(record); !enrolled) {
    const Reject reason = FromStoreError(enrolled.error());
    if (reason == Reject::kInternal) {
      Log()->error("store failed enrolling {}: {}", enroll->device.Key(), enrolled.error().message());
    }
    return refuse(reason, fmt::format("{} ({} {}{})", make_error_code(reason).message(), what, enroll->device.Key(),
                                      reason == Reject::kTokenIdentityMismatch
                                          ? "; a gateway needs a token made with --gateway, a device one without"
                                          : ""));
  }
  ++counters_.enrollments;
  Log()->info("enrolled {} {}{} (model '{}'), certificate {} valid until {}", what, enroll->device.Key(), via,
              enroll->device.model, issued->fingerprint_sha256_hex.substr(0, 16),
              FormatRfc3339(std::chrono::system_clock::from_time_t(issued->not_after_unix)));
  return SignedJson(protocol::EncodeEnrollResponse({issued->pem, enroll->device}));
}

}  // namespace lifeline::home
