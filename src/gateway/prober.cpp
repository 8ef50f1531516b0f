#include "gateway/prober.h"

#include "common/log.h"
#include "gateway/gateway_config.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>

namespace lifeline::gateway {
namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

struct Prober::Sweep {
  asio::io_context* io = nullptr;  // SweepOnce's, while it runs (for Stop)
  std::vector<ProbeTarget> targets;
  std::size_t next = 0;
  int in_flight = 0;
  int max_in_flight = 0;
  std::chrono::milliseconds timeout{0};
  std::vector<ProbeObservation> observations;
  const Clock* clock = nullptr;
};

namespace {

constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

std::shared_ptr<spdlog::logger> Log() { return log::Get("gateway"); }

struct ConnectOutcome {
  boost::system::error_code error;
  bool resolve_failed = false;
};

// Resolves (for host names) and connects; closes at once on success.
asio::awaitable<ConnectOutcome> Connect(std::string address, std::uint16_t port) {
  auto executor = co_await asio::this_coro::executor;
  tcp::socket socket(executor);
  boost::system::error_code parse_error;
  const auto ip = asio::ip::make_address(address, parse_error);
  if (!parse_error) {
    auto [error] = co_await socket.async_connect(tcp::endpoint(ip, port), kAsTuple);
    co_return ConnectOutcome{.error = error};
  }
  tcp::resolver resolver(executor);
  auto [resolve_error, endpoints] =
      co_await resolver.async_resolve(address, std::to_string(port), kAsTuple);
  if (resolve_error) {
    co_return ConnectOutcome{.error = resolve_error, .resolve_failed = true};
  }
  auto [error, endpoint] = co_await asio::async_connect(socket, endpoints, kAsTuple);
  co_return ConnectOutcome{.error = error};
}

asio::awaitable<ProbeObservation> ProbeOne(ProbeTarget target, std::chrono::milliseconds timeout,
                                           const Clock* clock) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer deadline(executor, timeout);
  const auto start = std::chrono::steady_clock::now();
  auto outcome =
      co_await (Connect(target.address, target.port) || deadline.async_wait(kAsTuple));
  ProbeObservation observation{.serial = target.serial,
                               .app = target.app,
                               .port = target.port,
                               .checked_ms = clock->NowUnixMillis()};
  if (outcome.index() == 1) {
    observation.error = fmt::format("no answer within {} ms", timeout.count());
  } else if (const auto& connected = std::get<0>(outcome); connected.error) {
    observation.error = connected.resolve_failed
                            ? fmt::format("name did not resolve: {}", connected.error.message())
                            : connected.error.message();
  } else {
    observation.reachable = true;
    observation.latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
  }
  co_return observation;
}

// One of `concurrency` workers: takes the next target until none is left. The sweep's io_context
// has one thread, so the shared counters need no lock.
asio::awaitable<void> Worker(std::shared_ptr<Prober::Sweep> sweep) {
  while (sweep->next < sweep->targets.size()) {
    auto target = sweep->targets[sweep->next++];
    ++sweep->in_flight;
    sweep->max_in_flight = std::max(sweep->max_in_flight, sweep->in_flight);
    auto observation = co_await ProbeOne(std::move(target), sweep->timeout, sweep->clock);
    --sweep->in_flight;
    sweep->observations.push_back(std::move(observation));
  }
}

}  // namespace

ProberOptions ProberOptions::FromConfig(const GatewayConfig& config) {
  return ProberOptions{.interval = config.probe_interval,
                       .timeout = config.probe_timeout,
                       .concurrency = static_cast<int>(config.probe_concurrency)};
}

Prober::Prober(DeviceRegistry& registry, ProberOptions options, const Clock& clock)
    : registry_(registry), options_(options), clock_(clock) {}

Prober::~Prober() { Stop(); }

void Prober::Start() {
  std::scoped_lock lock(mutex_);
  if (thread_.joinable() || stopping_) {
    return;
  }
  Log()->info("probing managed devices every {:g} s (timeout {} ms, {} at once)",
              std::chrono::duration<double>(options_.interval).count(), options_.timeout.count(),
              options_.concurrency);
  thread_ = std::thread([this] { Loop(); });
}

void Prober::Stop() {
  {
    std::scoped_lock lock(mutex_);
    stopping_ = true;
    if (current_) {
      current_->io->stop();
    }
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    if (auto saved = registry_.PersistProbes(); !saved) {
      Log()->warn("probe results not saved at stop: {}", saved.error().message());
    }
  }
}

void Prober::Loop() {
  while (true) {
    SweepOnce();
    std::unique_lock lock(mutex_);
    if (wake_.wait_for(lock, options_.interval, [this] { return stopping_; })) {
      return;
    }
  }
}

std::optional<SweepStats> Prober::LastSweep() const {
  std::scoped_lock lock(mutex_);
  return last_;
}

SweepStats Prober::SweepOnce() {
  std::scoped_lock sweep_lock(sweep_mutex_);
  const auto start = std::chrono::steady_clock::now();
  // The io_context outlives no sweep: destroying it frees the coroutines an interrupted sweep left.
  asio::io_context io(1);
  auto sweep = std::make_shared<Sweep>();
  sweep->io = &io;
  sweep->targets = registry_.ProbeTargets();
  sweep->timeout = options_.timeout;
  sweep->clock = &clock_;
  sweep->observations.reserve(sweep->targets.size());
  const auto workers =
      std::min<std::size_t>(static_cast<std::size_t>(std::max(1, options_.concurrency)),
                            sweep->targets.size());
  for (std::size_t i = 0; i < workers; ++i) {
    asio::co_spawn(io, Worker(sweep), [](std::exception_ptr escaped) {
      if (escaped) {
        try {
          std::rethrow_exception(escaped);
        } catch (const std::exception& e) {
          Log()->error("a probe worker failed: {}", e.what());
        }
      }
    });
  }
  bool interrupted = false;
  {
    std::scoped_lock lock(mutex_);
    interrupted = stopping_;
    current_ = sweep;
  }
  if (!interrupted) {
    io.run();
  }
  {
    std::scoped_lock lock(mutex_);
    current_.reset();
    interrupted = interrupted || sweep->next < sweep->targets.size() || sweep->in_flight > 0;
  }

  SweepStats stats{.probes = sweep->observations.size(),
                   .max_in_flight = sweep->max_in_flight,
                   .interrupted = interrupted};
  for (const auto& o : sweep->observations) {
    ++(o.reachable ? stats.reachable : stats.unreachable);
  }
  const auto transitions = registry_.RecordProbes(sweep->observations);
  stats.transitions = transitions.size();
  for (const auto& t : transitions) {
    const auto& o = t.observation;
    if (!o.reachable) {
      // Once per change of state, never per sweep.
      Log()->warn("device {} {} (port {}) is unreachable{}: {}", o.serial, o.app, o.port,
                  t.before == Reachability::kReachable ? " (was reachable)" : "", o.error);
    } else if (t.before == Reachability::kUnreachable) {
      Log()->info("device {} {} (port {}) is reachable again", o.serial, o.app, o.port);
    } else {
      Log()->debug("device {} {} (port {}) is reachable", o.serial, o.app, o.port);
    }
  }
  const auto now = std::chrono::steady_clock::now();
  if (!transitions.empty() || now - last_persist_ >= options_.persist_interval) {
    if (auto saved = registry_.PersistProbes(); saved) {
      last_persist_ = now;
    } else {
      Log()->warn("probe results not saved: {}", saved.error().message());
    }
  }
  stats.duration = std::chrono::duration_cast<std::chrono::milliseconds>(now - start);
  Log()->debug("probe sweep: {} ports, {} reachable, {} unreachable, {} ms", stats.probes,
               stats.reachable, stats.unreachable, stats.duration.count());
  std::scoped_lock lock(mutex_);
  last_ = stats;
  return stats;
}

}  // namespace lifeline::gateway
