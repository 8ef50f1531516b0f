#include "agent/connection_paths.h"

#include "agent/agent_config.h"
#include "agent/paths_config.h"
#include "common/log.h"
#include "protocol/codec.h"
#include "transport/errors.h"

#include <fmt/format.h>

namespace lifeline::agent {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("agent"); }

using TimePoint = std::chrono::system_clock::time_point;

// A 4xx whose body is a Lifeline error came from our home: it refused the request, the route works.
// Anything else that is not 2xx came from something else (a proxy's error page, another server) or
// from a home that cannot serve now: try the next route.
bool IsHomeAnswer(const transport::ClientResponse& response) {
  if (response.status >= 200 && response.status <= 299) {
    return true;
  }
  if (response.status < 400 || response.status > 499 || transport::IsRetryableStatus(response.status)) {
    return false;
  }
  std::string message;
  return protocol::DecodeError(response.body, &message) != protocol::Reject::kInternal;
}

}  // namespace

ConnectionPaths::ConnectionPaths(std::vector<transport::ProxySettings> paths,
                                 std::vector<std::string> endpoints, std::chrono::seconds retry_after,
                                 const Clock& clock, AgentQueue* state)
    : paths_(std::move(paths)),
      endpoints_(std::move(endpoints)),
      retry_after_(retry_after),
      clock_(&clock),
      state_(state) {
  if (paths_.empty()) {
    paths_.emplace_back();
  }
  if (endpoints_.empty()) {
    endpoints_.emplace_back();  // fails every request with "invalid URL": a caller's mistake shows
  }
  failed_until_.assign(route_count(), TimePoint{});
  if (state_ == nullptr) {
    return;
  }
  auto saved = state_->GetState(kStateKey);
  if (!saved || !saved->has_value()) {
    return;
  }
  // The saved text names the endpoint and path, so a changed config does not resurrect a stale index.
  for (std::size_t rank = 0; rank < route_count(); ++rank) {
    if (StateValue(RouteAt(rank)) == **saved) {
      current_ = RouteAt(rank);
      Log()->info("using the last good way home: {}", Describe(current_));
      return;
    }
  }
}

Route ConnectionPaths::RouteAt(std::size_t rank) const {
  return Route{.path = rank % paths_.size(), .endpoint = rank / paths_.size()};
}

std::string ConnectionPaths::Describe(Route route) const {
  return fmt::format("{} via {}", endpoints_[route.endpoint], paths_[route.path].Describe());
}

std::string ConnectionPaths::StateValue(Route route) const {
  return fmt::format("{} {}", endpoints_[route.endpoint], paths_[route.path].Describe());
}

void ConnectionPaths::Remember(Route route) {
  if (state_ == nullptr) {
    return;
  }
  if (auto saved = state_->SetState(kStateKey, StateValue(route)); !saved) {
    // Not fatal: the agent only starts with the preferred route after a restart.
    Log()->warn("cannot remember the way home in the queue: {}", saved.error().message());
  }
}

Result<transport::ClientResponse> ConnectionPaths::Send(const SendFunction& send) {
  const TimePoint now = clock_->Now();
  const std::size_t current_rank = Rank(current_);
  std::vector<std::size_t> order;
  std::vector<bool> queued(route_count(), false);
  auto add = [&](std::size_t rank) {
    if (!queued[rank]) {
      queued[rank] = true;
      order.push_back(rank);
    }
  };
  for (std::size_t rank = 0; rank < current_rank; ++rank) {
    if (failed_until_[rank] <= now) {
      add(rank);  // a preferred route whose retry-after time has passed: try to move back
    }
  }
  add(current_rank);
  for (std::size_t rank = 0; rank < route_count(); ++rank) {
    if (failed_until_[rank] <= now) {
      add(rank);
    }
  }
  for (std::size_t rank = 0; rank < route_count(); ++rank) {
    add(rank);  // all else failed: routes still waiting out their retry-after time
  }

  last_failure_.clear();
  std::optional<Result<transport::ClientResponse>> last_outcome;
  bool current_failed = false;
  for (std::size_t rank : order) {
    const Route route = RouteAt(rank);
    std::string detail;
    auto outcome = send(paths_[route.path], endpoints_[route.endpoint], &detail);
    if (!outcome && !transport::IsRetryable(outcome.error())) {
      // Not a property of the route (a bad request, an oversized answer): another route will not help.
      last_failure_ = detail.empty() ? outcome.error().message() : detail;
      return outcome;
    }
    if (outcome && IsHomeAnswer(*outcome)) {
      failed_until_[rank] = TimePoint{};
      const Route previous = current_;
      current_ = route;
      if (route != previous) {
        if (rank < current_rank && !current_failed) {
          Log()->info("home {} reachable again via {}; moving back from {}", endpoints_[route.endpoint],
                      paths_[route.path].Describe(), Describe(previous));
        } else {
          Log()->warn("{}; using {} {}", last_failure_, endpoints_[route.endpoint],
                      paths_[route.path].Describe());
        }
        Remember(route);
      } else if (!reached_once_) {
        Log()->info("reaching home {} via {}", endpoints_[route.endpoint], paths_[route.path].Describe());
        Remember(route);
      }
      reached_once_ = true;
      return outcome;
    }
    const std::string why =
        outcome ? fmt::format("HTTP {} (not an answer from the home)", outcome->status)
                : (detail.empty() ? outcome.error().message() : detail);
    failed_until_[rank] = now + retry_after_;
    if (rank == current_rank) {
      current_failed = true;
    }
    if (rank < current_rank && !current_failed) {
      // The periodic probe of a preferred route: expected to fail while it is down; no log noise.
      Log()->debug("home {} still unreachable via {}: {}", endpoints_[route.endpoint],
                   paths_[route.path].Describe(), why);
      last_outcome = std::move(outcome);
      continue;
    }
    if (!last_failure_.empty()) {
      last_failure_ += "; ";
    }
    last_failure_ += fmt::format("home {} unreachable via {}: {}", endpoints_[route.endpoint],
                                 paths_[route.path].Describe(), why);
    last_outcome = std::move(outcome);
  }
  return std::move(*last_outcome);
}

std::unique_ptr<ConnectionPaths> MakeConnectionPaths(const AgentConfig& config, AgentQueue* state,
                                                     const Clock& clock) {
  return std::make_unique<ConnectionPaths>(ProxyPaths(config.paths),
                                           HomeEndpoints(config.paths, config.home_url),
                                           config.paths.retry_preferred_after, clock, state);
}

}  // namespace lifeline::agent
