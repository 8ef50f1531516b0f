#pragma once
// The ways to the home: up to three connection paths (direct, HTTP proxy, SOCKS4/5 proxy) times an
// ordered list of home endpoints (primary, then disaster-recovery sites). Routes are tried in order of
// preference (each endpoint through each path before the next endpoint); the last route that worked is
// used first, remembered across restarts in the queue's state, and a more preferred route that failed
// is tried again once its retry-after time has passed, so the agent moves back when it returns.
#include "agent/queue.h"
#include "common/clock.h"
#include "common/result.h"
#include "transport/http_client.h"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lifeline::agent {

struct AgentConfig;

/// One (path, endpoint) combination, by index into the lists.
struct Route {
  std::size_t path = 0;
  std::size_t endpoint = 0;
  bool operator==(const Route&) const = default;
};

class ConnectionPaths {
 public:
  /// One exchange over `path` with the home at `endpoint` (a base URL such as "https://home:9455").
  /// On failure it returns the transport error and puts the operator's text in `detail`.
  using SendFunction = std::function<Result<transport::ClientResponse>(
      const transport::ProxySettings& path, const std::string& endpoint, std::string* detail)>;

  /// The queue's state key that remembers the last good route.
  static constexpr const char* kStateKey = "connection_route";

  /// `paths` and `endpoints` must not be empty (an empty `paths` means direct). `state`, when not
  /// null, keeps the last good route across restarts and must outlive this object.
  ConnectionPaths(std::vector<transport::ProxySettings> paths, std::vector<std::string> endpoints,
                  std::chrono::seconds retry_after, const Clock& clock, AgentQueue* state = nullptr);

  /// Tries routes until the home answers: first any more preferred route whose retry-after time
  /// has passed, then the current one, then the others (routes still waiting out their retry-after
  /// time last). A transport error that IsRetryable, a 5xx/408/429 or a 4xx without a Lifeline
  /// error body (not our home) is a route failure; a non-retryable transport error stops at once.
  /// A refusal by the home itself (a Lifeline error body) is an answer, not a route failure.
  /// Returns the answer, or the last failure's error/response when no route worked.
  [[nodiscard]] Result<transport::ClientResponse> Send(const SendFunction& send);

  Route Current() const { return current_; }
  /// "https://dr.example.com via HTTP proxy 10.0.0.1:3128".
  std::string Describe(Route route) const;
  /// Every route failure of the last Send, "; "-separated; empty when the first route worked.
  const std::string& LastFailure() const { return last_failure_; }
  std::size_t route_count() const { return paths_.size() * endpoints_.size(); }

 private:
  Route RouteAt(std::size_t rank) const;
  std::size_t Rank(Route route) const { return route.endpoint * paths_.size() + route.path; }
  std::string StateValue(Route route) const;
  void Remember(Route route);

  std::vector<transport::ProxySettings> paths_;
  std::vector<std::string> endpoints_;
  std::chrono::seconds retry_after_;
  const Clock* clock_;
  AgentQueue* state_;
  Route current_;
  bool reached_once_ = false;
  std::vector<std::chrono::system_clock::time_point> failed_until_;  // by rank; epoch = not failed
  std::string last_failure_;
};

/// The connection paths `config` names ([[paths]], or direct), its endpoints (home.url, then
/// home.fallback_urls); remembers the last good route in `state` when given.
std::unique_ptr<ConnectionPaths> MakeConnectionPaths(const AgentConfig& config, AgentQueue* state,
                                                     const Clock& clock = SystemClock::Instance());

}  // namespace lifeline::agent
