#include "gateway/tunnel_client.h"

#include "common/clock.h"
#include "common/log.h"
#include "tunnel/carrier.h"
#include "tunnel/mux.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <mutex>
#include <random>
#include <thread>

namespace lifeline::gateway {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::ip::tcp;

std::shared_ptr<spdlog::logger> Log() { return log::Get("gateway"); }

std::string JsonError(const std::string& message) { return json::serialize(json::object{{"message", message}}); }

std::string Field(const json::object& body, std::string_view key) {
  const auto* v = body.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

struct TunnelClient::Impl : std::enable_shared_from_this<Impl> {
  struct Route {
    std::string endpoint;
    transport::ProxySettings path;
  };
  struct Slot {
    int index = 0;
    // The routes this slot tries, in order (indexes into `routes`): with a tunnel per endpoint, only
    // its own endpoint's paths (the other slots cover the other home nodes); otherwise every route,
    // its preferred endpoint first.
    std::vector<std::size_t> order;
    std::size_t position = 0;  // in `order`: the route it tries next / uses now
    std::size_t Route() const { return order[position]; }
    std::shared_ptr<tunnel::Mux> mux;
    // Tunnels the home asked to leave (GOAWAY): kept until their last stream ended and they closed
    // (dropping the last reference to a Mux closes it, which would cut those streams).
    std::vector<std::shared_ptr<tunnel::Mux>> draining;
    std::chrono::milliseconds backoff{0};
    std::unique_ptr<asio::steady_timer> timer;
    TunnelStatus status;
  };

  TunnelClientOptions options;
  TunnelServices services;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::vector<std::thread> threads;
  std::vector<Route> routes;
  mutable std::mutex mutex;
  std::vector<Slot> slots;
  bool stopping = false;
  std::mt19937_64 random{std::random_device{}()};

  std::chrono::milliseconds Jitter(std::chrono::milliseconds base) {
    // Between half and one and a half times `base`, so gateways that lost the same home do not all
    // come back in the same instant.
    std::uniform_real_distribution<double> spread(0.5, 1.5);
    return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(base.count()) * spread(random)));
  }

  void DialLater(int index, std::chrono::milliseconds delay) {
    Slot& slot = slots[index];
    slot.timer->expires_after(delay);
    slot.timer->async_wait([weak = weak_from_this(), index](boost::system::error_code ec) {
      if (auto self = weak.lock(); self && !ec) {
        self->Dial(index);
      }
    });
  }

  void Dial(int index) {
    tunnel::DialOptions dial;
    {
      std::lock_guard lock(mutex);
      if (stopping) {
        return;
      }
      const Route& route = routes[slots[index].Route()];
      dial.endpoint = route.endpoint;
      dial.proxy = route.path;
      dial.ca_file = options.ca_file;
      dial.cert_file = options.cert_file;
      dial.key_file = options.key_file;
      dial.connect_timeout = options.connect_timeout;
    }
    tunnel::AsyncDial(io.get_executor(), dial,
                      [weak = weak_from_this(), index, dial](Result<std::unique_ptr<tunnel::ByteStream>> carrier) {
                        if (auto self = weak.lock()) {
                          self->OnDialed(index, dial, std::move(carrier));
                        }
                      });
  }

  void OnDialed(int index, const tunnel::DialOptions& dial, Result<std::unique_ptr<tunnel::ByteStream>> carrier) {
    std::lock_guard lock(mutex);
    Slot& slot = slots[index];
    const std::string via = std::string(transport::ToString(dial.proxy.kind)) +
                            (dial.proxy.kind == transport::ProxyKind::kNone ? "" : " " + dial.proxy.address);
    if (stopping) {
      if (carrier) {
        (*carrier)->Close();
      }
      return;
    }
    if (!carrier) {
      slot.status.last_error = tunnel::DescribeDialError(dial, carrier.error());
      Log()->warn("tunnel {}: {}", index + 1, slot.status.last_error);
      slot.position = (slot.position + 1) % slot.order.size();
      if (slot.position == 0) {
        // Every route failed once: wait, longer each round.
        slot.backoff = std::min(options.backoff_max, std::max(options.backoff_min, slot.backoff * 2));
        const auto delay = Jitter(slot.backoff);
        Log()->warn("tunnel {}: no route to the home worked; trying again in {} ms", index + 1, delay.count());
        DialLater(index, delay);
      } else {
        DialLater(index, std::chrono::milliseconds(0));
      }
      return;
    }
    tunnel::MuxOptions mux_options;
    mux_options.role = tunnel::MuxRole::kServer;
    mux_options.name = fmt::format("tunnel {} to {} via {}", index + 1, dial.endpoint, via);
    mux_options.ping_interval = options.ping_interval;
    mux_options.max_concurrent_streams = static_cast<std::uint32_t>(options.max_streams);
    mux_options.stream_idle_timeout = options.stream_idle_timeout;
    std::weak_ptr<Impl> weak = weak_from_this();
    auto mux_holder = std::make_shared<std::weak_ptr<tunnel::Mux>>();
    tunnel::MuxCallbacks callbacks;
    callbacks.on_stream = [weak](std::shared_ptr<tunnel::IncomingStream> stream) {
      if (auto self = weak.lock()) {
        self->OnStream(std::move(stream));
      } else {
        stream->Reply(503);
      }
    };
    callbacks.on_closed = [weak, index, mux_holder](const std::string& reason) {
      if (auto self = weak.lock()) {
        self->OnClosed(index, mux_holder->lock(), reason);
      }
    };
    callbacks.on_goaway = [weak, index, mux_holder] {
      if (auto self = weak.lock()) {
        self->OnGoaway(index, mux_holder->lock());
      }
    };
    slot.mux = tunnel::Mux::Start(std::move(*carrier), mux_options, std::move(callbacks));
    *mux_holder = slot.mux;
    slot.backoff = std::chrono::milliseconds(0);
    slot.status.endpoint = dial.endpoint;
    slot.status.path = via;
    slot.status.connected = true;
    slot.status.since = FormatRfc3339(std::chrono::system_clock::now());
    slot.status.last_error.clear();
    Log()->info("tunnel {} to the home is up: {} via {}", index + 1, dial.endpoint, via);
  }

  void OnClosed(int index, const std::shared_ptr<tunnel::Mux>& mux, const std::string& reason) {
    std::lock_guard lock(mutex);
    Slot& slot = slots[index];
    if (mux && slot.mux != mux) {
      std::erase(slot.draining, mux);  // a drained tunnel finished
      return;
    }
    if (stopping) {
      return;
    }
    slot.mux.reset();
    slot.status.connected = false;
    slot.status.last_error = reason;
    const auto delay = Jitter(options.backoff_min);
    Log()->warn("tunnel {} to {} lost: {}; dialling again in {} ms", index + 1, slot.status.endpoint, reason,
                delay.count());
    slot.position = 0;
    DialLater(index, delay);
  }

  void OnGoaway(int index, const std::shared_ptr<tunnel::Mux>& mux) {
    std::lock_guard lock(mutex);
    Slot& slot = slots[index];
    if (stopping || slot.mux != mux) {
      return;
    }
    // The home node is going away: open a replacement now (on the next endpoint when there are
    // several), while streams on the old tunnel finish.
    slot.draining.push_back(std::move(slot.mux));
    slot.mux.reset();
    slot.status.connected = false;
    slot.status.last_error = "the home asked to move (GOAWAY)";
    Log()->info("tunnel {} to {}: the home is draining; opening a new tunnel", index + 1, slot.status.endpoint);
    // Another home node when this slot may use one; the same node (after it restarts) otherwise.
    const bool other_nodes = slot.order.size() > options.paths.size();
    if (other_nodes) {
      slot.position = (slot.position + options.paths.size()) % slot.order.size();
    }
    DialLater(index, other_nodes ? Jitter(std::chrono::milliseconds(200)) : Jitter(options.backoff_min));
  }

  // ---- Streams the home opens -------------------------------------------------------------------

  void OnStream(std::shared_ptr<tunnel::IncomingStream> stream) {
    const std::string method(stream->Header(":method"));
    const std::string path(stream->Header(":path"));
    std::vector<std::string> seg;
    for (std::size_t start = 1; start <= path.size();) {
      const auto end = path.find('/', start);
      seg.push_back(path.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (end == std::string::npos) {
        break;
      }
      start = end + 1;
    }
    SessionManager& sessions = *services.sessions;
    if (seg.size() == 2 && seg[0] == "v1" && seg[1] == "devices" && method == "GET") {
      stream->Reply(200, {{"content-type", "application/json"}}, services.devices_json ? services.devices_json() : "{}");
      return;
    }
    if (seg.size() == 2 && seg[0] == "v1" && seg[1] == "sessions" && method == "POST") {
      stream->ReadBody([stream, &sessions](Result<std::string> body) {
        if (!body) {
          stream->Reply(400, {}, JsonError("could not read the request: " + body.error().message()));
          return;
        }
        boost::system::error_code ec;
        json::value request = json::parse(*body, ec);
        if (ec || !request.is_object()) {
          stream->Reply(400, {}, JsonError("the body must be a JSON object"));
          return;
        }
        const auto& o = request.get_object();
        auto decision =
            sessions.Create(SessionRequest{Field(o, "engineer"), Field(o, "reason"), Field(o, "device"), Field(o, "app"),
                                           Field(o, "home"), Field(o, "service_request")});
        if (!decision.allowed) {
          stream->Reply(decision.status, {}, JsonError(decision.reason));
          return;
        }
        // 201: open; 202: pending approval (outcome "pending approval", approval_expires_ms); the home
        // follows it with GET /v1/sessions/{id}.
        stream->Reply(decision.status, {{"content-type", "application/json"}}, SessionJson(decision.session));
      });
      return;
    }
    if (seg.size() == 3 && seg[0] == "v1" && seg[1] == "sessions" && (method == "GET" || method == "DELETE")) {
      if (method == "GET") {
        auto record = sessions.Find(seg[2]);
        if (!record) {
          stream->Reply(404, {}, JsonError("no session " + seg[2] + " at this gateway"));
        } else {
          stream->Reply(200, {{"content-type", "application/json"}}, SessionJson(*record));
        }
        return;
      }
      auto ended = sessions.EndByEngineer(seg[2]);
      if (!ended) {
        auto record = sessions.Find(seg[2]);
        stream->Reply(record ? 200 : 404, {},
                      record ? SessionJson(*record) : JsonError("no open session " + seg[2]));
      } else {
        stream->Reply(200, {{"content-type", "application/json"}}, SessionJson(*ended));
      }
      return;
    }
    if (seg.size() == 4 && seg[0] == "v1" && seg[1] == "sessions" && seg[3] == "stream") {
      OpenSessionStream(std::move(stream), seg[2]);
      return;
    }
    stream->Reply(404, {}, JsonError(fmt::format("no such endpoint at the gateway: {} {}", method, path)));
  }

  // One connection of a session: connect to the registered address and port, then splice.
  void OpenSessionStream(std::shared_ptr<tunnel::IncomingStream> stream, const std::string& id) {
    auto decision = services.sessions->AuthorizeStream(id);
    if (!decision.allowed) {
      Log()->warn("session {}: connection refused: {}", id, decision.reason);
      stream->Reply(decision.status, {}, JsonError(decision.reason));
      return;
    }
    auto resolver = std::make_shared<tcp::resolver>(io);
    auto socket = std::make_shared<tcp::socket>(io);
    auto timer = std::make_shared<asio::steady_timer>(io, options.device_connect_timeout);
    const SessionTarget target = decision.target;
    timer->async_wait([socket, resolver](boost::system::error_code ec) {
      if (!ec) {
        resolver->cancel();
        boost::system::error_code ignored;
        socket->close(ignored);
      }
    });
    resolver->async_resolve(
        target.host, std::to_string(target.port),
        [self = shared_from_this(), stream, id, target, resolver, socket, timer](boost::system::error_code ec,
                                                                                tcp::resolver::results_type results) {
          if (ec) {
            timer->cancel();
            self->DeviceUnreachable(stream, id, target, ec);
            return;
          }
          asio::async_connect(*socket, results,
                              [self, stream, id, target, socket, timer](boost::system::error_code cec, const tcp::endpoint&) {
                                timer->cancel();
                                if (cec) {
                                  self->DeviceUnreachable(stream, id, target, cec);
                                  return;
                                }
                                self->Splice(stream, id, std::move(*socket));
                              });
        });
  }

  void DeviceUnreachable(const std::shared_ptr<tunnel::IncomingStream>& stream, const std::string& id,
                         const SessionTarget& target, boost::system::error_code ec) {
    const std::string why = ec == asio::error::operation_aborted ? std::string("timed out") : ec.message();
    Log()->warn("session {}: cannot reach the device at {}:{}: {}", id, target.host, target.port, why);
    stream->Reply(502, {}, JsonError(fmt::format("the gateway cannot reach the device at {}:{}: {}", target.host,
                                                 target.port, why)));
  }

  void Splice(const std::shared_ptr<tunnel::IncomingStream>& stream, const std::string& id, tcp::socket socket) {
    SessionManager* sessions = services.sessions;
    std::weak_ptr<tunnel::IncomingStream> weak_stream = stream;
    const std::uint64_t token =
        sessions->StreamStarted(id, StreamControl{nullptr, [weak_stream] {
                                                    if (auto s = weak_stream.lock()) {
                                                      s->Reset();
                                                    }
                                                  }});
    stream->Accept({}, tunnel::MakeTcpByteStream(std::move(socket)),
                   [sessions, id, token](const tunnel::StreamReport& report) {
                     // bytes_from_peer: from the home, written to the device.
                     sessions->StreamEnded(id, token, report.bytes_from_peer, report.bytes_to_peer);
                   });
  }

  void Stop() {
    std::vector<std::shared_ptr<tunnel::Mux>> muxes;
    {
      std::lock_guard lock(mutex);
      if (stopping) {
        return;
      }
      stopping = true;
      for (auto& slot : slots) {
        if (slot.mux) {
          muxes.push_back(slot.mux);
        }
        muxes.insert(muxes.end(), slot.draining.begin(), slot.draining.end());
      }
    }
    asio::post(io, [self = shared_from_this()] {
      for (auto& slot : self->slots) {
        slot.timer->cancel();
      }
    });
    for (auto& mux : muxes) {
      mux->Close();
    }
    work.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    io.stop();
    for (auto& thread : threads) {
      if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) {
        thread.join();
      }
    }
    threads.clear();
  }
};

std::unique_ptr<TunnelClient> TunnelClient::Start(TunnelClientOptions options, TunnelServices services) {
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  impl->services = std::move(services);
  if (impl->options.paths.empty()) {
    impl->options.paths.emplace_back();  // direct
  }
  for (const auto& endpoint : impl->options.endpoints) {
    for (const auto& path : impl->options.paths) {
      impl->routes.push_back(Impl::Route{endpoint, path});
    }
  }
  const int count = std::max(1, impl->options.connections);
  for (int i = 0; i < count; ++i) {
    Impl::Slot slot;
    slot.index = i;
    // Tunnel i prefers endpoint i (mod their number): one tunnel per home node.
    const std::size_t endpoints = impl->options.endpoints.size();
    const std::size_t paths = impl->options.paths.size();
    const std::size_t preferred = static_cast<std::size_t>(i) % endpoints;
    const bool one_per_endpoint = static_cast<std::size_t>(count) >= endpoints;
    for (std::size_t e = 0; e < (one_per_endpoint ? 1 : endpoints); ++e) {
      for (std::size_t p = 0; p < paths; ++p) {
        slot.order.push_back(((preferred + e) % endpoints) * paths + p);
      }
    }
    slot.timer = std::make_unique<asio::steady_timer>(impl->io);
    impl->slots.push_back(std::move(slot));
  }
  for (int i = 0; i < count; ++i) {
    asio::post(impl->io, [self = impl.get(), i] { self->Dial(i); });
  }
  for (int i = 0; i < std::max(1, impl->options.io_threads); ++i) {
    impl->threads.emplace_back([self = impl.get()] { self->io.run(); });
  }
  return std::unique_ptr<TunnelClient>(new TunnelClient(std::move(impl)));
}

TunnelClient::TunnelClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
TunnelClient::~TunnelClient() { Stop(); }

std::vector<TunnelStatus> TunnelClient::Status() const {
  std::vector<TunnelStatus> out;
  std::lock_guard lock(impl_->mutex);
  for (const auto& slot : impl_->slots) {
    out.push_back(slot.status);
    if (slot.mux) {
      out.back().active_streams = slot.mux->Stats().active_streams;
    }
  }
  return out;
}

void TunnelClient::Stop() {
  if (impl_) {
    impl_->Stop();
  }
}

}  // namespace lifeline::gateway
