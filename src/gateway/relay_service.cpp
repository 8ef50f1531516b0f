#include "gateway/relay_service.h"

#include "agent/backoff.h"
#include "agent/connection_paths.h"
#include "common/log.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "gateway/gateway_config.h"
#include "gateway/gateway_pki.h"
#include "gateway/relay_queue.h"
#include "protocol/codec.h"
#include "protocol/errors.h"
#include "transport/errors.h"
#include "transport/http_client.h"
#include "transport/https_server.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

namespace lifeline::gateway {
namespace {

using protocol::Reject;

std::shared_ptr<spdlog::logger> Log() { return log::Get("relay"); }

transport::HttpResponse Refusal(Reject reason, std::string_view message) {
  transport::HttpResponse response;
  response.status = protocol::HttpStatus(reason);
  response.body = protocol::EncodeError(reason, message);
  return response;
}

/// What the home said about one exchange, as the device should see it.
/// Sends `request` to `target` at the home over the gateway's paths (direct, proxies, endpoints in
/// order, as the agent does); `request.url` and `request.proxy` are set for each attempt.
Result<transport::ClientResponse> SendHome(transport::HttpClient& client, agent::ConnectionPaths& routes,
                                           transport::ClientRequest& request, std::string_view target) {
  return routes.Send([&](const transport::ProxySettings& path, const std::string& endpoint, std::string* detail) {
    request.url = endpoint + std::string(target);
    request.proxy = path;
    auto result = client.Send(request);
    if (!result) {
      *detail = client.LastErrorDetail();
    }
    return result;
  });
}

transport::HttpResponse AsDeviceResponse(const transport::ClientResponse& answer) {
  transport::HttpResponse response;
  response.status = answer.status;
  response.body = answer.body;
  const auto type = answer.headers.find("content-type");
  response.content_type = type == answer.headers.end() ? "application/json" : type->second;
  if (const auto signature = answer.headers.find("lifeline-signature"); signature != answer.headers.end()) {
    response.headers.emplace_back("Lifeline-Signature", signature->second);
  }
  return response;
}

enum class Outcome { kAnswered, kRefused, kUnreachable };

}  // namespace

class RelayService::Impl {
 public:
  Impl(RelayOptions options, const Clock& clock, std::unique_ptr<RelayQueue> queue)
      : options_(std::move(options)), clock_(clock), queue_(std::move(queue)), random_(std::random_device{}()) {}

  VoidResult Start() {
    transport::ServerOptions server;
    server.listen = options_.listen;
    server.tls = {options_.gateway_cert.string(), options_.gateway_key.string(), options_.ca_cert.string()};
    // Optional, not required: a device enrolling has no certificate yet (RelayEnrollment). Every
    // other route checks for one (CheckDevice); one that is presented must still verify against the
    // home's CA, or the handshake fails.
    server.client_certs = transport::ClientCertPolicy::kOptional;
    server.max_body_bytes = options_.max_body_bytes;
    server.worker_threads = options_.worker_threads;
    server.name = "relay";
    forwarder_ = std::thread([this] { Forward(); });
    auto started = transport::HttpsServer::Start(server, [this](const transport::HttpRequest& request) {
      return Handle(request);
    });
    if (!started) {
      StopForwarder();
      return started.error();
    }
    server_ = std::move(*started);
    Log()->info("relay for {} listening on {} for the site's agents; {} batch(es) held from before", Name(),
                server_->LocalAddress(), queue_->Count());
    return {};
  }

  void Stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopped_) {
        return;
      }
      stopped_ = true;
      for (auto& [id, waiter] : waiters_) {
        waiter->cv.notify_all();
      }
    }
    if (server_) {
      server_->Stop(std::chrono::seconds(2));
    }
    StopForwarder();
    Log()->info("relay stopped; {} batch(es) held for the home", queue_->Count());
  }

  std::string LocalAddress() const { return server_ ? server_->LocalAddress() : std::string(); }

  RelayStats Stats() const {
    return {received_.load(), answered_.load(), held_.load(), forwarded_.load(), refused_.load(), queue_->Count()};
  }

 private:
  struct Waiter {
    std::condition_variable cv;
    bool done = false;
    bool abandoned = false;
    transport::HttpResponse response;
  };

  std::string Name() const { return options_.gateway.Key(); }

  // ---- Device side (server worker threads) ----

  transport::HttpResponse Handle(const transport::HttpRequest& request) {
    if (request.method == "POST" && request.target == "/v1/batches") {
      return HandleBatch(request);
    }
    if (request.method == "GET" && (request.target == "/v1/tickets" || request.target == "/v1/time")) {
      return PassThrough(request);
    }
    if (request.method == "POST" && request.target == "/v1/enroll") {
      return RelayEnrollment(request);
    }
    return Refusal(Reject::kNotFound, fmt::format("no endpoint {} {} at the gateway", request.method, request.target));
  }

  /// The device the TLS peer is, if it may use this gateway: a device certificate (the handshake
  /// verified it against the home's CA) of the gateway's own customer and site.
  std::optional<transport::HttpResponse> CheckDevice(const transport::HttpRequest& request,
                                                     crypto::CertifiedPeer* device) {
    if (!request.peer) {
      return Refusal(Reject::kClientCertRequired, "the gateway relays only for devices with their certificate");
    }
    auto peer = crypto::PeerFromCertificatePem(request.peer->pem);
    if (!peer || peer->kind != crypto::PeerKind::kDevice) {
      ++refused_;
      Log()->warn("refused {} {} from {}: the client certificate names no device", request.method, request.target,
                  request.remote);
      return Refusal(Reject::kIdentityMismatch, "the client certificate names no device");
    }
    if (peer->identity.customer != options_.gateway.customer || peer->identity.site != options_.gateway.site) {
      ++refused_;
      Log()->warn("refused {} {} from {} ({}): this gateway relays only for {}/{}", request.method, request.target,
                  peer->identity.Key(), request.remote, options_.gateway.customer, options_.gateway.site);
      return Refusal(Reject::kIdentityMismatch,
                     fmt::format("gateway {} relays only for devices of {}/{}", Name(), options_.gateway.customer,
                                 options_.gateway.site));
    }
    *device = std::move(*peer);
    return std::nullopt;
  }

  transport::HttpResponse HandleBatch(const transport::HttpRequest& request) {
    crypto::CertifiedPeer device;
    if (auto refused = CheckDevice(request, &device)) {
      return *refused;
    }
    const std::string key = device.identity.Key();
    if (request.body.empty()) {
      return Refusal(Reject::kMalformedBody, "empty batch");
    }
    auto waiter = std::make_shared<Waiter>();
    std::int64_t id = 0;
    {
      // Stored and registered under the lock, so the forwarder cannot answer the batch before its
      // device is known to be waiting.
      std::unique_lock lock(mutex_);
      if (stopped_) {
        return Refusal(Reject::kInternal, "the gateway is stopping");
      }
      auto added = queue_->Add(key, request.peer->pem, request.body, clock_.NowUnixMillis());
      if (!added) {
        ++refused_;
        if (added.error() == std::errc::no_buffer_space) {
          Log()->error("relay queue full ({} batches, {} MiB of relay.max_queue_mib = {}): refused a batch from {}; "
                       "the device keeps it and retries",
                       queue_->Count(), queue_->Bytes() >> 20, options_.max_queue_bytes >> 20, key);
          return Refusal(Reject::kInternal, fmt::format("the gateway's relay queue is full ({} MiB); the home has "
                                                        "been unreachable for a while, try again later",
                                                        options_.max_queue_bytes >> 20));
        }
        Log()->error("cannot store a batch from {}: {}", key, added.error().message());
        return Refusal(Reject::kInternal, "the gateway cannot store the batch");
      }
      id = *added;
      ++received_;
      waiters_[id] = waiter;
      wake_.notify_all();
      waiter->cv.wait_for(lock, options_.wait, [&] { return waiter->done || stopped_; });
      waiters_.erase(id);
      if (waiter->done) {
        ++answered_;
        return std::move(waiter->response);
      }
      waiter->abandoned = true;
    }
    ++held_;
    Log()->info("holding batch {} from {}: the home has not answered within {} ms; it is kept on disk and "
                "forwarded when the home answers",
                id, key, options_.wait.count());
    transport::HttpResponse response;
    response.status = 202;
    response.body = protocol::EncodeRelayHeld(
        {.gateway = Name(), .relay_id = id, .message = "the gateway holds the batch and forwards it to the home"});
    return response;
  }

  /// A device of this gateway's own customer and site enrolls through it: the request (token, CSR,
  /// public keys; the device's private keys never leave it) goes to the home over the gateway's own
  /// paths and certificate, and the home's signed answer comes back as it came. The home checks the
  /// token and, seeing the gateway's certificate, that the gateway is enrolled, not revoked and of the
  /// device's site; the agent checks that the certificate is for it and from the CA it pinned. A
  /// gateway never enrolls through another.
  transport::HttpResponse RelayEnrollment(const transport::HttpRequest& request) {
    std::string why;
    auto enroll = protocol::DecodeEnrollRequest(request.body, &why);
    if (!enroll) {
      return Refusal(static_cast<Reject>(enroll.error().value()), why);
    }
    const std::string key = enroll->device.Key();
    if (enroll->gateway) {
      ++refused_;
      Log()->warn("refused enrollment of gateway {} from {}: gateways enroll with the home itself", key,
                  request.remote);
      return Refusal(Reject::kIdentityMismatch, "a gateway enrolls with the home itself, not through a gateway");
    }
    if (enroll->device.customer != options_.gateway.customer || enroll->device.site != options_.gateway.site) {
      ++refused_;
      Log()->warn("refused enrollment of {} from {}: this gateway relays only for {}/{}", key, request.remote,
                  options_.gateway.customer, options_.gateway.site);
      return Refusal(Reject::kIdentityMismatch,
                     fmt::format("gateway {} relays only for devices of {}/{}", Name(), options_.gateway.customer,
                                 options_.gateway.site));
    }
    transport::HttpClient client(MakeTls());
    transport::ClientRequest forward{.method = "POST",
                                     .content_type = "application/json",
                                     .body = request.body,
                                     .timeout = std::max(options_.wait, std::chrono::milliseconds(5000))};
    auto routes = MakeRoutes();
    auto answer = SendHome(client, *routes, forward, "/v1/enroll");
    if (!answer) {
      Log()->warn("cannot pass the enrollment of {} to the home: {}", key, routes->LastFailure());
      return Refusal(Reject::kInternal, "the gateway cannot reach the home now; try again later");
    }
    if (answer->status == 200) {
      Log()->info("relayed the enrollment of {} from {}", key, request.remote);
    } else {
      Log()->warn("the home refused the enrollment of {} from {} (HTTP {})", key, request.remote, answer->status);
    }
    return AsDeviceResponse(*answer);
  }

  transport::HttpResponse PassThrough(const transport::HttpRequest& request) {
    crypto::CertifiedPeer device;
    if (request.target == "/v1/tickets") {
      if (auto refused = CheckDevice(request, &device)) {
        return *refused;
      }
    }
    transport::HttpClient client(MakeTls());
    transport::ClientRequest forward{.method = "GET",
                                     .timeout = std::max(options_.wait, std::chrono::milliseconds(1000))};
    if (request.target == "/v1/tickets") {
      forward.headers.emplace_back(std::string(protocol::kRelayedCertificateHeader),
                                   crypto::Base64Encode(crypto::AsBytes(request.peer->pem)));
    }
    auto routes = MakeRoutes();
    auto answer = SendHome(client, *routes, forward, request.target);
    if (!answer) {
      Log()->warn("cannot pass {} for {} to the home: {}", request.target,
                  device.identity.serial.empty() ? request.remote : device.identity.Key(), routes->LastFailure());
      return Refusal(Reject::kInternal, "the gateway cannot reach the home now; try again later");
    }
    return AsDeviceResponse(*answer);
  }

  // ---- Home side (forwarder thread) ----

  transport::ClientTls MakeTls() const {
    return {options_.ca_cert.string(), options_.gateway_cert.string(), options_.gateway_key.string()};
  }

  std::unique_ptr<agent::ConnectionPaths> MakeRoutes() const {
    return std::make_unique<agent::ConnectionPaths>(agent::ProxyPaths(options_.paths),
                                                    agent::HomeEndpoints(options_.paths, options_.home_url),
                                                    options_.paths.retry_preferred_after, clock_);
  }

  void StopForwarder() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
      wake_.notify_all();
    }
    if (forwarder_.joinable()) {
      forwarder_.join();
    }
  }

  /// Waits until woken, `until` (steady), or Stop. Returns false when stopping.
  bool Sleep(std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(mutex_);
    wake_.wait_until(lock, until, [&] { return stopped_ || woken_; });
    woken_ = false;
    return !stopped_;
  }

  void Forward() {
    transport::HttpClient client(MakeTls());
    auto routes = MakeRoutes();
    int failures = 0;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (stopped_) {
          return;
        }
      }
      const std::int64_t now_ms = clock_.NowUnixMillis();
      auto next = queue_->NextDue(now_ms);
      if (!next) {
        Log()->error("cannot read the relay queue: {}", next.error().message());
        if (!Sleep(std::chrono::steady_clock::now() + std::chrono::seconds(1))) {
          return;
        }
        continue;
      }
      if (!*next) {
        auto earliest = queue_->EarliestDue();
        auto wait = std::chrono::milliseconds(1000);
        if (earliest && *earliest) {
          wait = std::clamp(std::chrono::milliseconds(**earliest - now_ms), std::chrono::milliseconds(1), wait);
        }
        {
          std::unique_lock lock(mutex_);
          wake_.wait_for(lock, wait, [&] { return stopped_ || !waiters_.empty() || woken_; });
          woken_ = false;
        }
        continue;
      }
      const RelayBatch& batch = **next;
      transport::HttpResponse for_device;
      const Outcome outcome = ForwardOne(client, *routes, batch, &for_device);
      if (outcome == Outcome::kUnreachable) {
        const auto delay = agent::RetryDelay(failures++, options_.retry_min, options_.retry_max, random_);
        if (failures == 1 || failures % 10 == 0) {
          Log()->warn("cannot reach the home: {}; {} batch(es) held, next try in {} ms", routes->LastFailure(),
                      queue_->Count(), delay.count());
        }
        if (!Sleep(std::chrono::steady_clock::now() + delay)) {
          return;
        }
        continue;
      }
      if (failures > 0) {
        Log()->info("home reachable again after {} failed attempt(s); forwarding {} held batch(es)", failures,
                    queue_->Count());
      }
      failures = 0;
      const bool delivered = Deliver(batch.id, for_device);
      if (outcome == Outcome::kAnswered) {
        ++forwarded_;
        if (options_.on_uploaded) {
          options_.on_uploaded(batch.device, batch.received_at_ms, batch.body.size(), batch.attempts + 1);
        }
        Log()->info("batch {} from {} delivered to the home{}", batch.id, batch.device,
                    delivered ? "" : " (its device was told the gateway held it; the reply is dropped, the home "
                                     "answers the device again if it asks)");
        Drop(batch.id);
        continue;
      }
      // Refused by the home. A waiting device gets the refusal and keeps its messages; a batch the
      // device already handed over stays here and is tried again later, unless the home has it.
      std::string message;
      const Reject reason = protocol::DecodeError(for_device.body, &message);
      if (delivered) {
        Log()->warn("home refused batch {} from {}: {}: {} (the device was told and keeps its messages)", batch.id,
                    batch.device, protocol::WireName(reason), message);
        Drop(batch.id);
      } else if (reason == Reject::kReplayedBatch) {
        Log()->info("home already has batch {} from {}; dropping the copy held here", batch.id, batch.device);
        Drop(batch.id);
      } else {
        const auto delay =
            agent::RetryDelay(static_cast<int>(batch.attempts) + 3, options_.retry_min, options_.refused_retry_max,
                              random_);
        Log()->error("home refused held batch {} from {}: {}: {}; kept, next try in {} s", batch.id, batch.device,
                     protocol::WireName(reason), message, delay.count() / 1000);
        if (auto deferred = queue_->Defer(batch.id, clock_.NowUnixMillis() + delay.count()); !deferred) {
          Log()->error("cannot update the relay queue: {}", deferred.error().message());
        }
      }
    }
  }

  Outcome ForwardOne(transport::HttpClient& client, agent::ConnectionPaths& routes, const RelayBatch& batch,
                     transport::HttpResponse* for_device) {
    transport::ClientRequest request;
    request.content_type = "application/vnd.lifeline.sealed-batch";
    request.body = batch.body;
    request.timeout = options_.request_timeout;
    request.headers.emplace_back(std::string(protocol::kRelayedCertificateHeader),
                                 crypto::Base64Encode(crypto::AsBytes(batch.device_cert_pem)));
    request.headers.emplace_back(std::string(protocol::kRelayReceivedAtHeader), std::to_string(batch.received_at_ms));
    auto answer = SendHome(client, routes, request, "/v1/batches");
    if (!answer || transport::IsRetryableStatus(answer->status)) {
      return Outcome::kUnreachable;
    }
    *for_device = AsDeviceResponse(*answer);
    return answer->status == 200 ? Outcome::kAnswered : Outcome::kRefused;
  }

  /// Hands the home's answer to the device waiting for batch `id`; false when none waits any more.
  bool Deliver(std::int64_t id, const transport::HttpResponse& response) {
    std::lock_guard lock(mutex_);
    const auto found = waiters_.find(id);
    if (found == waiters_.end() || found->second->abandoned) {
      return false;
    }
    found->second->response = response;
    found->second->done = true;
    found->second->cv.notify_all();
    return true;
  }

  void Drop(std::int64_t id) {
    if (auto removed = queue_->Remove(id); !removed) {
      // Sent again after a restart: the home answers it as a replay, and its messages by id.
      Log()->error("cannot remove batch {} from the relay queue: {}", id, removed.error().message());
    }
  }

  RelayOptions options_;
  const Clock& clock_;
  std::unique_ptr<RelayQueue> queue_;
  std::mt19937_64 random_;
  std::unique_ptr<transport::HttpsServer> server_;
  std::thread forwarder_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool woken_ = false;
  bool stopped_ = false;
  std::map<std::int64_t, std::shared_ptr<Waiter>> waiters_;
  std::atomic<std::int64_t> received_{0};
  std::atomic<std::int64_t> answered_{0};
  std::atomic<std::int64_t> held_{0};
  std::atomic<std::int64_t> forwarded_{0};
  std::atomic<std::int64_t> refused_{0};
};

RelayOptions RelayService::OptionsFrom(const GatewayConfig& config) {
  const GatewayPkiPaths pki(config.PkiDir());
  RelayOptions options;
  options.gateway = config.identity;
  options.listen = config.devices_listen;
  options.queue_path = config.DataDir() / "relay.db";
  options.max_queue_bytes = config.relay_max_queue_mib << 20;
  options.wait = config.relay_wait;
  options.request_timeout = config.request_timeout;
  options.home_url = config.home_url;
  options.paths = config.paths;
  options.ca_cert = pki.ca_cert;
  options.gateway_cert = pki.gateway_cert;
  options.gateway_key = pki.gateway_key;
  return options;
}

Result<std::unique_ptr<RelayService>> RelayService::Start(RelayOptions options, const Clock& clock) {
  for (const auto& file : {options.ca_cert, options.gateway_cert, options.gateway_key}) {
    if (!std::filesystem::exists(file)) {
      Log()->error("{} is missing: enroll the gateway first (`lifeline gateway enroll`)", file.string());
      return std::make_error_code(std::errc::no_such_file_or_directory);
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(options.queue_path.parent_path(), ec);
  auto queue = RelayQueue::Open(options.queue_path, options.max_queue_bytes);
  if (!queue) {
    Log()->error("cannot open the relay queue {}: {}", options.queue_path.string(), queue.error().message());
    return queue.error();
  }
  auto impl = std::make_unique<Impl>(std::move(options), clock, std::move(*queue));
  if (auto started = impl->Start(); !started) {
    return started.error();
  }
  return std::unique_ptr<RelayService>(new RelayService(std::move(impl)));
}

RelayService::RelayService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RelayService::~RelayService() { Stop(); }
void RelayService::Stop() { impl_->Stop(); }
std::string RelayService::LocalAddress() const { return impl_->LocalAddress(); }
RelayStats RelayService::Stats() const { return impl_->Stats(); }

}  // namespace lifeline::gateway
