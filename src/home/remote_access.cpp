#include "home/remote_access.h"

#include "common/log.h"
#include "crypto/pki.h"
#include "crypto/token.h"
#include "tunnel/carrier.h"
#include "tunnel/mux.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace lifeline::home {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using transport::HttpRequest;
using transport::HttpResponse;

std::shared_ptr<spdlog::logger> Log() { return log::Get("home"); }

HttpResponse JsonAnswer(int status, const json::value& body) { return HttpResponse{status, "application/json", json::serialize(body), {}}; }
HttpResponse Error(int status, const std::string& message) {
  return JsonAnswer(status, json::object{{"error", status == 403 ? "forbidden" : status == 404 ? "not_found"
                                                   : status == 400 ? "bad_request" : status == 409 ? "ambiguous" : status == 503 ? "unavailable"
                                                                                             : "failed"},
                                         {"message", message}});
}

std::string Field(const json::object& body, std::string_view key) {
  const auto* v = body.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

// A session id: 32 lowercase hex characters (the gateway makes them).
bool IsSessionId(std::string_view id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace

struct RemoteAccessHub::Impl : std::enable_shared_from_this<Impl> {
  struct Gateway {
    std::uint64_t connection = 0;
    protocol::DeviceIdentity identity;  // customer, site, name (in serial)
    std::shared_ptr<tunnel::Mux> mux;
    std::string remote;
    std::int64_t connected_ms = 0;
    json::value devices;                // the gateway's last GET /v1/devices answer
    std::vector<std::string> serials;   // managed devices, from `devices`
    std::string Key() const { return identity.Key(); }
  };
  struct Session {
    std::string id;
    std::uint64_t connection = 0;  // the gateway tunnel it was opened on
    std::string gateway;           // gateway key, for answers and logs
    std::string engineer;
    std::string token_hash;
    std::string device;  // customer/site/serial
    std::string app;
  };

  RemoteAccessOptions options;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::vector<std::thread> threads;
  std::unique_ptr<tunnel::CarrierListener> tunnel_listener;
  std::unique_ptr<tunnel::CarrierListener> sessions_listener;
  std::unique_ptr<asio::steady_timer> refresh_timer;

  mutable std::mutex mutex;
  std::map<std::uint64_t, Gateway> gateways;
  std::map<std::string, Session> sessions;
  std::uint64_t next_connection = 1;
  bool stopping = false;

  // ---- Gateways' tunnels ----------------------------------------------------------------------

  int AuthorizeGateway(const tunnel::AcceptInfo& info) {
    if (!info.peer) {
      return 401;
    }
    auto peer = crypto::PeerFromCertificatePem(info.peer->pem);
    if (!peer || peer->kind != crypto::PeerKind::kGateway) {
      Log()->warn("tunnel from {} refused: its certificate is not a gateway's", info.remote);
      return 403;
    }
    return 101;
  }

  void OnTunnel(std::unique_ptr<tunnel::ByteStream> carrier, tunnel::AcceptInfo info) {
    auto peer = crypto::PeerFromCertificatePem(info.peer ? info.peer->pem : std::string());
    if (!peer) {
      carrier->Close();
      return;
    }
    std::uint64_t connection;
    {
      std::lock_guard lock(mutex);
      if (stopping) {
        carrier->Close();
        return;
      }
      connection = next_connection++;
    }
    const std::string key = peer->identity.Key();
    tunnel::MuxOptions mux_options;
    mux_options.role = tunnel::MuxRole::kClient;
    mux_options.name = fmt::format("gateway {} via {}", key, carrier->Describe());
    mux_options.ping_interval = options.ping_interval;
    std::weak_ptr<Impl> weak = weak_from_this();
    tunnel::MuxCallbacks callbacks;
    callbacks.on_closed = [weak, connection, key](const std::string& reason) {
      if (auto self = weak.lock()) {
        self->OnTunnelClosed(connection, key, reason);
      }
    };
    auto mux = tunnel::Mux::Start(std::move(carrier), mux_options, std::move(callbacks));
    {
      std::lock_guard lock(mutex);
      Gateway& gateway = gateways[connection];
      gateway.connection = connection;
      gateway.identity = peer->identity;
      gateway.mux = mux;
      gateway.remote = info.remote;
      gateway.connected_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count();
    }
    Log()->info("gateway {} connected its tunnel from {}", key, info.remote);
    FetchDevices(connection, mux);
  }

  void OnTunnelClosed(std::uint64_t connection, const std::string& key, const std::string& reason) {
    {
      std::lock_guard lock(mutex);
      gateways.erase(connection);
    }
    Log()->warn("tunnel of gateway {} closed: {}", key, reason);
  }

  // Asks a gateway for its managed devices and their reachability (kept for routing and GET /v1/gateways).
  void FetchDevices(std::uint64_t connection, const std::shared_ptr<tunnel::Mux>& mux) {
    std::weak_ptr<Impl> weak = weak_from_this();
    mux->Open({{":method", "GET"}, {":path", "/v1/devices"}}, nullptr,
              [weak, connection](Result<tunnel::MuxResponse> response) {
                auto self = weak.lock();
                if (!self || !response || response->status != 200) {
                  return;
                }
                boost::system::error_code ec;
                json::value devices = json::parse(response->body, ec);
                if (ec) {
                  return;
                }
                self->StoreDevices(connection, std::move(devices));
              });
  }

  void StoreDevices(std::uint64_t connection, json::value devices) {
    std::vector<std::string> serials;
    const json::array* list = nullptr;
    if (devices.is_array()) {
      list = &devices.get_array();
    } else if (devices.is_object() && devices.get_object().if_contains("devices") != nullptr &&
               devices.get_object().at("devices").is_array()) {
      list = &devices.get_object().at("devices").get_array();
    }
    if (list != nullptr) {
      for (const auto& device : *list) {
        if (device.is_object()) {
          serials.push_back(Field(device.get_object(), "serial"));
        }
      }
    }
    std::lock_guard lock(mutex);
    if (auto it = gateways.find(connection); it != gateways.end()) {
      it->second.devices = std::move(devices);
      it->second.serials = std::move(serials);
    }
  }

  void ScheduleRefresh() {
    refresh_timer->expires_after(options.devices_refresh);
    refresh_timer->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) {
        return;
      }
      std::vector<std::pair<std::uint64_t, std::shared_ptr<tunnel::Mux>>> muxes;
      {
        std::lock_guard lock(self->mutex);
        for (const auto& [connection, gateway] : self->gateways) {
          muxes.emplace_back(connection, gateway.mux);
        }
      }
      for (const auto& [connection, mux] : muxes) {
        self->FetchDevices(connection, mux);
      }
      self->ScheduleRefresh();
    });
  }

  // ---- Engineers' session connections ---------------------------------------------------------

  // GET /v1/sessions/{id}/stream with the same bearer token that opened the session.
  int AuthorizeEngineer(const tunnel::AcceptInfo& info, std::string* session_id) {
    auto url = boost::urls::parse_origin_form(info.target);
    if (!url) {
      return 400;
    }
    std::vector<std::string> seg;
    for (auto s : url->segments()) {
      seg.emplace_back(s);
    }
    if (seg.size() != 4 || seg[0] != "v1" || seg[1] != "sessions" || seg[3] != "stream" || !IsSessionId(seg[2])) {
      return 404;
    }
    auto auth = info.headers.find("authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (auth == info.headers.end() || !auth->second.starts_with(kBearer)) {
      return 401;
    }
    const std::string hash = crypto::HashToken(auth->second.substr(kBearer.size()));
    std::lock_guard lock(mutex);
    auto it = sessions.find(seg[2]);
    if (it == sessions.end()) {
      return 404;
    }
    if (it->second.token_hash != hash) {
      Log()->warn("session connection from {} refused: not the token that opened session {}", info.remote, seg[2]);
      return 403;
    }
    *session_id = seg[2];
    return 101;
  }

  void OnEngineerConnection(std::unique_ptr<tunnel::ByteStream> local, tunnel::AcceptInfo info) {
    std::string id;
    if (AuthorizeEngineer(info, &id) != 101) {
      local->Close();
      return;
    }
    std::shared_ptr<tunnel::Mux> mux;
    Session session;
    {
      std::lock_guard lock(mutex);
      auto it = sessions.find(id);
      if (it != sessions.end()) {
        session = it->second;
        if (auto g = gateways.find(session.connection); g != gateways.end()) {
          mux = g->second.mux;
        } else {
          // The tunnel it was opened on is gone; the gateway may have reconnected since.
          for (auto& [connection, gateway] : gateways) {
            if (gateway.Key() == session.gateway) {
              mux = gateway.mux;
              it->second.connection = connection;
              break;
            }
          }
        }
      }
    }
    if (!mux) {
      Log()->warn("session {} connection from {}: gateway {} is not connected", id, info.remote, session.gateway);
      local->Close();
      return;
    }
    tunnel::Headers headers{{":method", "POST"},
                            {":path", fmt::format("/v1/sessions/{}/stream", id)},
                            {"lifeline-engineer", session.engineer}};
    mux->Open(
        std::move(headers), std::move(local),
        [id](Result<tunnel::MuxResponse> response) {
          if (!response) {
            Log()->warn("session {}: the gateway did not open the connection: {}", id, response.error().message());
          } else if (response->status != 200) {
            Log()->warn("session {}: the gateway refused the connection ({}): {}", id, response->status,
                        response->body);
          }
        },
        [id](const tunnel::StreamReport& report) {
          Log()->info("session {}: connection ended ({}), {} bytes to the device, {} from it", id,
                      tunnel::StreamEndName(report.end), report.bytes_to_peer, report.bytes_from_peer);
        });
  }

  // ---- Blocking calls for the admin API -------------------------------------------------------

  Result<tunnel::MuxResponse> Call(const std::shared_ptr<tunnel::Mux>& mux, tunnel::Headers headers,
                                   std::string body) {
    auto promise = std::make_shared<std::promise<Result<tunnel::MuxResponse>>>();
    auto answer = promise->get_future();
    mux->Open(std::move(headers), nullptr,
              [promise](Result<tunnel::MuxResponse> response) { promise->set_value(std::move(response)); }, {},
              std::move(body));
    if (answer.wait_for(options.call_timeout) != std::future_status::ready) {
      return std::make_error_code(std::errc::timed_out);
    }
    return answer.get();
  }

  // The gateways that may serve `device` ("serial" or "customer/site/serial"): those that listed it,
  // else every gateway of its site.
  std::vector<Gateway> GatewaysFor(const std::string& device, std::string* serial) {
    std::vector<Gateway> out;
    std::string customer, site;
    *serial = device;
    if (auto last = device.rfind('/'); last != std::string::npos) {
      *serial = device.substr(last + 1);
      const std::string prefix = device.substr(0, last);
      if (auto first = prefix.find('/'); first != std::string::npos) {
        customer = prefix.substr(0, first);
        site = prefix.substr(first + 1);
      }
    }
    std::lock_guard lock(mutex);
    std::vector<Gateway> same_site;
    for (const auto& [connection, gateway] : gateways) {
      if (!customer.empty() && (gateway.identity.customer != customer || gateway.identity.site != site)) {
        continue;
      }
      const bool listed =
          std::find(gateway.serials.begin(), gateway.serials.end(), *serial) != gateway.serials.end();
      (listed ? out : same_site).push_back(gateway);
    }
    if (out.empty() && !customer.empty()) {
      out = std::move(same_site);  // a device deployed since the last refresh
    }
    return out;
  }

  void RefreshAllDevices() {
    std::vector<std::pair<std::uint64_t, std::shared_ptr<tunnel::Mux>>> muxes;
    {
      std::lock_guard lock(mutex);
      for (const auto& [connection, gateway] : gateways) {
        muxes.emplace_back(connection, gateway.mux);
      }
    }
    for (const auto& [connection, mux] : muxes) {
      auto answer = Call(mux, {{":method", "GET"}, {":path", "/v1/devices"}}, {});
      boost::system::error_code ec;
      if (answer && answer->status == 200) {
        json::value devices = json::parse(answer->body, ec);
        if (!ec) {
          StoreDevices(connection, std::move(devices));
        }
      }
    }
  }

  HttpResponse OpenSession(const RemoteCaller& caller, const HttpRequest& request) {
    boost::system::error_code ec;
    json::value body = json::parse(request.body, ec);
    if (ec || !body.is_object()) {
      return Error(400, "send a JSON object {\"device\": ..., \"app\": ..., \"reason\": ...}");
    }
    const std::string device = Field(body.get_object(), "device");
    const std::string app = Field(body.get_object(), "app");
    const std::string reason = Field(body.get_object(), "reason");
    if (device.empty() || app.empty() || reason.empty()) {
      return Error(400, "a session needs 'device' (serial or customer/site/serial), 'app' and 'reason'");
    }
    std::string serial;
    auto candidates = GatewaysFor(device, &serial);
    if (candidates.empty()) {
      // Perhaps deployed since the last refresh: ask every gateway for its list now.
      RefreshAllDevices();
      candidates = GatewaysFor(device, &serial);
    }
    if (candidates.empty()) {
      return Error(404, fmt::format("no connected gateway manages device '{}'", device));
    }
    // A bare serial that gateways of several sites manage is ambiguous: never guess which device.
    std::vector<std::string> sites;
    for (const auto& gateway : candidates) {
      const std::string site = gateway.identity.customer + "/" + gateway.identity.site;
      if (std::find(sites.begin(), sites.end(), site) == sites.end()) {
        sites.push_back(site);
      }
    }
    if (sites.size() > 1) {
      return Error(409, fmt::format("device '{}' is managed at several sites ({}): name it as customer/site/serial",
                                    device, fmt::join(sites, ", ")));
    }
    json::object ask{{"engineer", caller.name}, {"reason", reason}, {"device", serial}, {"app", app},
                     {"home", request.remote}};
    // Shown to approvers and kept in the audit record when the gateway's policy asks for approval.
    if (const std::string service_request = Field(body.get_object(), "service_request"); !service_request.empty()) {
      ask["service_request"] = service_request;
    }
    std::string refusals;
    int status = 404;
    for (const auto& gateway : candidates) {
      auto answer = Call(gateway.mux, {{":method", "POST"}, {":path", "/v1/sessions"}}, json::serialize(ask));
      if (!answer) {
        refusals += fmt::format("{}gateway {}: {}", refusals.empty() ? "" : "; ", gateway.Key(),
                                answer.error().message());
        status = 503;
        continue;
      }
      json::value reply = json::parse(answer->body, ec);
      // 201: open; 202: pending approval (the customer's policy asks an approver first). Either way
      // the home keeps the session, so the engineer can follow it and end it.
      const bool accepted = answer->status == 201 || answer->status == 202;
      if (!accepted || ec || !reply.is_object()) {
        refusals += fmt::format("{}gateway {}: {}", refusals.empty() ? "" : "; ", gateway.Key(),
                                ec || !reply.is_object() ? answer->body : Field(reply.as_object(), "message"));
        status = accepted ? 502 : answer->status;
        continue;
      }
      json::object& session = reply.as_object();
      const std::string id = Field(session, "id");
      if (!IsSessionId(id)) {
        return Error(502, fmt::format("gateway {} answered without a session id", gateway.Key()));
      }
      {
        std::lock_guard lock(mutex);
        sessions[id] = Session{id, gateway.connection, gateway.Key(), caller.name, caller.token_hash,
                               fmt::format("{}/{}/{}", gateway.identity.customer, gateway.identity.site, serial), app};
      }
      session["gateway"] = gateway.Key();
      session["stream_path"] = fmt::format("/v1/sessions/{}/stream", id);
      session["sessions_port"] = SessionsPort();
      if (answer->status == 202) {
        Log()->info("session {} for {} to {} {} through gateway {} waits for approval", id, caller.name, serial, app,
                    gateway.Key());
      } else {
        Log()->info("session {} opened for {} to {} {} through gateway {}", id, caller.name, serial, app,
                    gateway.Key());
      }
      return JsonAnswer(answer->status, session);
    }
    Log()->warn("session for {} to {} {} refused: {}", caller.name, device, app, refusals);
    return Error(status, refusals);
  }

  HttpResponse SessionCall(const RemoteCaller& caller, const std::string& id, bool end) {
    Session session;
    std::shared_ptr<tunnel::Mux> mux;
    {
      std::lock_guard lock(mutex);
      auto it = sessions.find(id);
      if (it == sessions.end()) {
        return Error(404, fmt::format("no session {} at this home", id));
      }
      session = it->second;
      for (auto& [connection, gateway] : gateways) {
        if (gateway.Key() == session.gateway) {
          mux = gateway.mux;
          break;
        }
      }
    }
    if (end && session.token_hash != caller.token_hash) {
      return Error(403, fmt::format("session {} belongs to {}; only the token that opened it ends it here (the "
                                    "customer can end any session at the gateway)",
                                    id, session.engineer));
    }
    if (!mux) {
      return Error(503, fmt::format("gateway {} is not connected", session.gateway));
    }
    auto answer = Call(mux, {{":method", end ? "DELETE" : "GET"}, {":path", "/v1/sessions/" + id}}, {});
    if (!answer) {
      return Error(503, fmt::format("gateway {}: {}", session.gateway, answer.error().message()));
    }
    if (end && answer->status == 200) {
      std::lock_guard lock(mutex);
      sessions.erase(id);
    }
    return HttpResponse{answer->status, "application/json", answer->body, {}};
  }

  HttpResponse ListGateways() {
    json::array list;
    std::lock_guard lock(mutex);
    for (const auto& [connection, gateway] : gateways) {
      const auto stats = gateway.mux->Stats();
      list.push_back(json::object{{"gateway", gateway.Key()},
                                  {"remote", gateway.remote},
                                  {"connected_ms", gateway.connected_ms},
                                  {"active_streams", stats.active_streams},
                                  {"rtt_us", stats.last_rtt.count()},
                                  {"devices", gateway.devices}});
    }
    return JsonAnswer(200, json::object{{"gateways", std::move(list)}});
  }

  std::uint16_t SessionsPort() const { return sessions_listener ? sessions_listener->LocalPort() : 0; }
};

Result<std::unique_ptr<RemoteAccessHub>> RemoteAccessHub::Start(RemoteAccessOptions options) {
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  const auto ex = impl->io.get_executor();
  std::weak_ptr<Impl> weak = impl;

  tunnel::ListenOptions tunnel_options;
  tunnel_options.listen = impl->options.tunnel_listen;
  tunnel_options.tls = impl->options.tls;
  tunnel_options.client_certs = transport::ClientCertPolicy::kRequired;
  tunnel_options.name = "tunnel";
  tunnel_options.authorize = [weak](const tunnel::AcceptInfo& info) {
    auto self = weak.lock();
    return self ? self->AuthorizeGateway(info) : 503;
  };
  auto tunnel_listener = tunnel::CarrierListener::Start(
      ex, tunnel_options, [weak](std::unique_ptr<tunnel::ByteStream> carrier, tunnel::AcceptInfo info) {
        if (auto self = weak.lock()) {
          self->OnTunnel(std::move(carrier), std::move(info));
        } else {
          carrier->Close();
        }
      });
  if (!tunnel_listener) {
    Log()->error("cannot listen for gateways' tunnels on {}: {}", tunnel_options.listen,
                 tunnel_listener.error().message());
    return tunnel_listener.error();
  }
  impl->tunnel_listener = std::move(*tunnel_listener);

  tunnel::ListenOptions sessions_options;
  sessions_options.listen = impl->options.sessions_listen;
  sessions_options.tls = impl->options.tls;
  sessions_options.client_certs = transport::ClientCertPolicy::kNone;
  sessions_options.name = "sessions";
  sessions_options.authorize = [weak](const tunnel::AcceptInfo& info) {
    auto self = weak.lock();
    std::string id;
    return self ? self->AuthorizeEngineer(info, &id) : 503;
  };
  auto sessions_listener = tunnel::CarrierListener::Start(
      ex, sessions_options, [weak](std::unique_ptr<tunnel::ByteStream> local, tunnel::AcceptInfo info) {
        if (auto self = weak.lock()) {
          self->OnEngineerConnection(std::move(local), std::move(info));
        } else {
          local->Close();
        }
      });
  if (!sessions_listener) {
    Log()->error("cannot listen for engineers' sessions on {}: {}", sessions_options.listen,
                 sessions_listener.error().message());
    impl->tunnel_listener->Stop();
    return sessions_listener.error();
  }
  impl->sessions_listener = std::move(*sessions_listener);
  impl->refresh_timer = std::make_unique<asio::steady_timer>(impl->io);
  impl->ScheduleRefresh();
  for (int i = 0; i < std::max(1, impl->options.io_threads); ++i) {
    impl->threads.emplace_back([impl = impl.get()] { impl->io.run(); });
  }
  Log()->info("remote access: gateways' tunnels on port {}, engineers' sessions on port {}",
              impl->tunnel_listener->LocalPort(), impl->sessions_listener->LocalPort());
  return std::unique_ptr<RemoteAccessHub>(new RemoteAccessHub(std::move(impl)));
}

RemoteAccessHub::RemoteAccessHub(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

RemoteAccessHub::~RemoteAccessHub() { Stop(); }

std::uint16_t RemoteAccessHub::TunnelPort() const { return impl_->tunnel_listener->LocalPort(); }
std::uint16_t RemoteAccessHub::SessionsPort() const { return impl_->SessionsPort(); }

HttpResponse RemoteAccessHub::HandleAdmin(const RemoteCaller& caller, const HttpRequest& request) {
  auto url = boost::urls::parse_origin_form(request.target);
  if (!url) {
    return Error(400, "bad request target");
  }
  std::vector<std::string> seg;
  for (auto s : url->segments()) {
    seg.emplace_back(s);
  }
  if (seg.size() == 2 && seg[1] == "gateways" && request.method == "GET") {
    impl_->RefreshAllDevices();  // the gateways' latest reachability, not the last periodic fetch
    return impl_->ListGateways();
  }
  if (seg.size() == 2 && seg[1] == "sessions" && request.method == "POST") {
    return impl_->OpenSession(caller, request);
  }
  if (seg.size() == 3 && seg[1] == "sessions" && IsSessionId(seg[2]) &&
      (request.method == "GET" || request.method == "DELETE")) {
    return impl_->SessionCall(caller, seg[2], request.method == "DELETE");
  }
  return Error(404, fmt::format("no such endpoint: {} {}", request.method, std::string(url->path())));
}

void RemoteAccessHub::Stop() {
  if (!impl_) {
    return;
  }
  std::vector<std::shared_ptr<tunnel::Mux>> muxes;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) {
      return;
    }
    impl_->stopping = true;
    for (auto& [connection, gateway] : impl_->gateways) {
      muxes.push_back(gateway.mux);
    }
  }
  // No new tunnels here, then GOAWAY, so gateways move their tunnels to another home node before
  // this one goes (streams already running get the grace to finish).
  impl_->tunnel_listener->Stop();
  impl_->sessions_listener->Stop();
  for (auto& mux : muxes) {
    mux->Drain();
  }
  if (!muxes.empty()) {
    std::this_thread::sleep_for(impl_->options.drain_grace);
  }
  asio::post(impl_->io, [impl = impl_.get()] { impl->refresh_timer->cancel(); });
  for (auto& mux : muxes) {
    mux->Close();
  }
  muxes.clear();
  {
    std::lock_guard lock(impl_->mutex);
    impl_->gateways.clear();
  }
  impl_->work.reset();
  // Give closing streams a moment, then stop the loop.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  impl_->io.stop();
  for (auto& thread : impl_->threads) {
    if (thread.joinable()) {
      thread.join();
    }
  }
  impl_->threads.clear();
}

}  // namespace lifeline::home
