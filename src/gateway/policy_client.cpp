#include "gateway/policy_client.h"

#include "common/log.h"
#include "policy/policy_json.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

namespace lifeline::gateway {
namespace {

namespace json = boost::json;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::shared_ptr<spdlog::logger> Log() { return log::Get("gateway"); }

std::int64_t IntField(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) {
    return 0;
  }
  if (v->is_int64()) {
    return v->get_int64();
  }
  if (v->is_uint64()) {
    return static_cast<std::int64_t>(v->get_uint64());
  }
  return 0;
}

std::string StringField(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

std::string SystemCaBundle() {
  for (const char* path : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                           "/etc/ssl/cert.pem"}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(path, ec)) {
      return path;
    }
  }
  return {};
}

struct PolicyClient::Impl {
  PolicyClientOptions options;
  PolicyCache* cache = nullptr;
  std::function<void(const ApprovalOutcome&)> on_decision;
  const Clock* clock = nullptr;

  std::atomic<bool> stopping{false};
  // SyncNow(): cut the long poll short and ask with wait_s=0, so synced_ms moves at once.
  std::atomic<bool> sync_requested{false};
  mutable std::mutex mutex;
  std::condition_variable wake;
  std::mutex random_mutex;
  std::mt19937_64 random{std::random_device{}()};

  struct QueuedRequest {
    ApprovalRequest request;
    Steady::time_point next_try;
    milliseconds backoff{0};
  };
  std::deque<QueuedRequest> requests;
  bool outbox_waiting = true;  // records may be in the outbox (at start: from an earlier run)
  Steady::time_point outbox_next_try;
  milliseconds outbox_backoff{0};
  PolicyClientStatus status;

  std::thread watcher;
  std::thread sender;

  // Every request can be abandoned mid-flight: libcurl polls this about once a second while it
  // waits (CURLOPT_XFERINFOFUNCTION), so Stop() need not wait for a long poll's wait_s.
  std::function<bool()> Abort() {
    return [this] { return stopping.load(std::memory_order_acquire); };
  }

  milliseconds Jitter(milliseconds low, milliseconds high) {
    std::lock_guard lock(random_mutex);
    std::uniform_int_distribution<std::int64_t> spread(low.count(), std::max(low.count(), high.count()));
    return milliseconds(spread(random));
  }

  milliseconds NextBackoff(milliseconds previous) {
    const milliseconds grown = std::clamp(previous * 2, options.retry_min, options.send_backoff_max);
    return Jitter(grown / 2, grown);  // full-ish jitter: gateways that lost the same manager spread out
  }

  // Sleeps up to `delay`; false when stopping.
  bool Pause(milliseconds delay) {
    std::unique_lock lock(mutex);
    return !wake.wait_for(lock, delay, [this] { return stopping.load(); });
  }

  // ---- Watcher ----------------------------------------------------------------------------------

  void WatchLoop() {
    transport::HttpClient http(options.tls);
    // An invalid set is ignored, but remembered: asking with the cached (older) version again would
    // make the policy manager answer at once with the same set, in a tight loop.
    std::uint64_t ignored_version = 0;
    std::uint64_t failures = 0;
    while (!stopping.load()) {
      const std::uint64_t known = std::max(cache->Version(), ignored_version);
      // After a failure, or when asked (a device was deployed), the first question is a quick one:
      // its answer proves the policy manager is back and moves synced_ms at once, instead of after a
      // long poll with nothing new to say.
      const bool quick = sync_requested.exchange(false) || failures > 0;
      transport::ClientRequest request;
      request.method = "GET";
      request.url = fmt::format("{}/v1/gateway/watch?policy_version={}&cursor={}&wait_s={}", options.url, known,
                                cache->Cursor(), quick ? 0 : options.watch_wait.count());
      request.timeout = std::chrono::duration_cast<milliseconds>(options.watch_wait) + milliseconds(15000);
      request.connect_timeout = options.connect_timeout;
      request.abort = [this] { return stopping.load(std::memory_order_acquire) || sync_requested.load(); };
      auto response = http.Send(request);
      if (stopping.load()) {
        break;
      }
      if (!response && sync_requested.load()) {
        continue;  // cut short by SyncNow(): ask again at once, quickly
      }
      std::string error;
      if (!response) {
        error = fmt::format("{} ({})", response.error().message(), http.LastErrorDetail());
      } else if (response->status != 200) {
        error = fmt::format("HTTP {}: {}", response->status, response->body.substr(0, 300));
      } else if (auto handled = HandleWatch(response->body, known, &ignored_version); !handled.empty()) {
        error = handled;
      }
      if (!error.empty()) {
        ++failures;
        {
          std::lock_guard lock(mutex);
          status.reachable = false;
          status.last_error = error;
        }
        const auto delay = Jitter(options.retry_min, options.retry_max);
        if (failures == 1 || failures % 100 == 0) {
          Log()->warn("policy manager {}: {}; sessions are decided from the cached policy (version {}); asking "
                      "again in {} ms ({} failed attempt(s))",
                      options.url, error, cache->Version(), delay.count(), failures);
        }
        if (!Pause(delay)) {
          break;
        }
        continue;
      }
      if (failures > 0) {
        Log()->info("policy manager {} answers again after {} failed attempt(s)", options.url, failures);
        failures = 0;
      }
    }
  }

  // One watch answer; "" when it was used, else what was wrong with it.
  std::string HandleWatch(const std::string& body, std::uint64_t known, std::uint64_t* ignored_version) {
    boost::system::error_code ec;
    json::value parsed = json::parse(body, ec);
    if (ec || !parsed.is_object()) {
      return "the watch answer is not a JSON object";
    }
    const json::object& answer = parsed.get_object();
    const auto version = static_cast<std::uint64_t>(IntField(answer, "policy_version"));
    if (const auto* set_json = answer.if_contains("policy"); set_json != nullptr && version > known) {
      std::string why;
      bool invalid = false;
      auto set = policy::PolicySetFromJson(*set_json, &why);
      if (!set) {
        invalid = true;
      } else {
        set->version = version;  // the envelope's version is the policy manager's word
        const std::uint64_t before = cache->Version();
        auto offered = cache->Offer(std::move(*set), &why);
        if (!offered && offered.error().category() != policy::PolicyErrorCategory()) {
          return fmt::format("cannot store policy version {}: {}", version, offered.error().message());
        }
        invalid = !offered;
        if (offered && *offered) {
          Log()->info("policy version {} received from the policy manager (was {})", version, before);
          (void)cache->Append(AuditRecord{NewAuditRecordId(), clock->NowUnixMillis(), "policy_version_change",
                                          "policy-manager", "",
                                          json::serialize(json::object{{"from", before}, {"to", version}})});
        }
      }
      if (invalid) {
        *ignored_version = version;
        Log()->error("policy version {} from the policy manager is invalid and ignored ({}); sessions are decided "
                     "from the cached version {}",
                     version, why, cache->Version());
      }
    }
    // Any answer means the policy manager is reachable and this gateway has its newest policy.
    (void)cache->SetSyncedMs(clock->NowUnixMillis());
    if (const auto* decisions = answer.if_contains("decisions"); decisions != nullptr && decisions->is_array()) {
      for (const auto& item : decisions->get_array()) {
        if (!item.is_object()) {
          continue;
        }
        const auto& d = item.get_object();
        ApprovalOutcome outcome{StringField(d, "request_id"), StringField(d, "state"), StringField(d, "decided_by"),
                                StringField(d, "comment"), IntField(d, "decided_ms")};
        Log()->info("approval request {}: {} by {}", outcome.request_id, outcome.state,
                    outcome.decided_by.empty() ? "the policy manager" : outcome.decided_by);
        if (on_decision) {
          on_decision(outcome);
        }
      }
    }
    if (answer.contains("cursor")) {
      (void)cache->SetCursor(IntField(answer, "cursor"));
    }
    std::lock_guard lock(mutex);
    status.reachable = true;
    status.last_error.clear();
    ++status.watches_answered;
    return {};
  }

  // ---- Sender -----------------------------------------------------------------------------------

  void SendLoop() {
    transport::HttpClient http(options.tls);
    std::unique_lock lock(mutex);
    while (!stopping.load()) {
      const auto now = Steady::now();
      auto due = std::find_if(requests.begin(), requests.end(),
                              [now](const QueuedRequest& q) { return q.next_try <= now; });
      if (due != requests.end()) {
        QueuedRequest item = std::move(*due);
        requests.erase(due);
        lock.unlock();
        const bool done = PostRequest(http, item.request);
        lock.lock();
        if (!done && !stopping.load()) {
          if (clock->NowUnixMillis() >= item.request.deadline_ms) {
            Log()->warn("approval request {}: not delivered to the policy manager before its deadline",
                        item.request.request_id);
          } else {
            item.backoff = NextBackoff(item.backoff);
            item.next_try = Steady::now() + item.backoff;
            requests.push_back(std::move(item));
          }
        }
        continue;
      }
      if (outbox_waiting && outbox_next_try <= now) {
        outbox_waiting = false;
        lock.unlock();
        const bool delivered = DeliverOutbox(http);
        auto backoff = delivered ? milliseconds(0) : NextBackoff(outbox_backoff);
        lock.lock();
        outbox_backoff = backoff;
        if (!delivered) {
          outbox_waiting = true;
          outbox_next_try = Steady::now() + backoff;
        }
        continue;
      }
      auto next = now + std::chrono::hours(1);
      for (const auto& q : requests) {
        next = std::min(next, q.next_try);
      }
      if (outbox_waiting) {
        next = std::min(next, outbox_next_try);
      }
      wake.wait_until(lock, next);
    }
  }

  // true when the policy manager has the request (or refused it for good: 4xx other than 408/429).
  bool PostRequest(transport::HttpClient& http, const ApprovalRequest& r) {
    // The policy manager counts the timeout from its receipt: send what is left of ours.
    const std::int64_t left_ms = r.deadline_ms - clock->NowUnixMillis();
    const std::int64_t timeout_s =
        std::max<std::int64_t>(policy::kMinAskTimeout.count(), (left_ms + 999) / 1000);
    transport::ClientRequest request;
    request.url = options.url + "/v1/gateway/requests";
    request.content_type = "application/json";
    request.body = json::serialize(json::object{{"request_id", r.request_id},
                                                {"engineer", r.engineer},
                                                {"device", r.device},
                                                {"model", r.model},
                                                {"activity", "remote_session"},
                                                {"application", r.application},
                                                {"reason", r.reason},
                                                {"service_request", r.service_request},
                                                {"rule_id", r.rule_id},
                                                {"timeout_s", timeout_s},
                                                {"requested_ms", r.requested_ms}});
    request.timeout = milliseconds(15000);
    request.connect_timeout = options.connect_timeout;
    request.abort = Abort();
    auto response = http.Send(request);
    if (stopping.load()) {
      return false;  // aborted by Stop(); nothing to report
    }
    if (!response) {
      Log()->warn("approval request {}: cannot reach the policy manager: {} ({})", r.request_id,
                  response.error().message(), http.LastErrorDetail());
      return false;
    }
    if (response->status == 200 || response->status == 201) {
      Log()->info("approval request {} delivered to the policy manager", r.request_id);
      std::lock_guard lock(mutex);
      ++status.requests_posted;
      return true;
    }
    if (!transport::IsRetryableStatus(response->status)) {
      Log()->error("approval request {}: the policy manager refused it (HTTP {}: {}); the session waits until its "
                   "deadline",
                   r.request_id, response->status, response->body.substr(0, 300));
      return true;
    }
    Log()->warn("approval request {}: the policy manager answered HTTP {}; trying again", r.request_id,
                response->status);
    return false;
  }

  // Sends the outbox, oldest first, until it is empty: true, or false at the first failure.
  bool DeliverOutbox(transport::HttpClient& http) {
    while (!stopping.load()) {
      auto batch = cache->OldestRecords(options.audit_batch);
      if (!batch) {
        return false;
      }
      if (batch->empty()) {
        return true;
      }
      json::array records;
      std::vector<std::string> ids;
      for (const auto& r : *batch) {
        boost::system::error_code ec;
        json::value details = json::parse(r.details_json, ec);
        records.push_back(json::object{{"record_id", r.record_id},
                                       {"time_ms", r.time_ms},
                                       {"kind", r.kind},
                                       {"actor", r.actor},
                                       {"subject", r.subject},
                                       {"details", ec || !details.is_object() ? json::object{} : details}});
        ids.push_back(r.record_id);
      }
      transport::ClientRequest request;
      request.url = options.url + "/v1/gateway/audit";
      request.content_type = "application/json";
      request.body = json::serialize(json::object{{"records", std::move(records)}});
      request.timeout = milliseconds(30000);
      request.connect_timeout = options.connect_timeout;
      request.abort = Abort();
      auto response = http.Send(request);
      if (stopping.load()) {
        return false;  // aborted by Stop(): the records stay for the next start
      }
      if (!response || response->status != 200) {
        // Never dropped, whatever the answer: the audit trail outranks a stuck outbox, and the
        // operator sees this line.
        Log()->warn("cannot deliver {} audit record(s) to the policy manager: {}; they stay queued", ids.size(),
                    !response ? fmt::format("{} ({})", response.error().message(), http.LastErrorDetail())
                              : fmt::format("HTTP {}: {}", response->status, response->body.substr(0, 300)));
        return false;
      }
      if (auto removed = cache->MarkDelivered(ids); !removed) {
        return false;  // delivered again later: the policy manager ignores the duplicates
      }
      std::lock_guard lock(mutex);
      status.records_delivered += ids.size();
    }
    return false;
  }
};

std::unique_ptr<PolicyClient> PolicyClient::Start(PolicyClientOptions options, PolicyCache& cache,
                                                  std::function<void(const ApprovalOutcome&)> on_decision,
                                                  const Clock& clock) {
  auto impl = std::make_unique<Impl>();
  while (!options.url.empty() && options.url.back() == '/') {
    options.url.pop_back();
  }
  impl->options = std::move(options);
  impl->cache = &cache;
  impl->on_decision = std::move(on_decision);
  impl->clock = &clock;
  Impl* raw = impl.get();
  cache.SetAppendListener([raw] {
    {
      std::lock_guard lock(raw->mutex);
      raw->outbox_waiting = true;
    }
    raw->wake.notify_all();
  });
  impl->watcher = std::thread([raw] { raw->WatchLoop(); });
  impl->sender = std::thread([raw] { raw->SendLoop(); });
  return std::unique_ptr<PolicyClient>(new PolicyClient(std::move(impl)));
}

PolicyClient::PolicyClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PolicyClient::~PolicyClient() { Stop(); }

void PolicyClient::SyncNow() {
  if (impl_) {
    impl_->sync_requested.store(true);
  }
}

void PolicyClient::RequestApproval(const ApprovalRequest& request) {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->requests.push_back(Impl::QueuedRequest{request, Steady::now(), milliseconds(0)});
  }
  impl_->wake.notify_all();
}

PolicyClientStatus PolicyClient::Status() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->status;
}

void PolicyClient::Stop() {
  if (!impl_ || impl_->stopping.exchange(true)) {
    return;
  }
  impl_->cache->SetAppendListener(nullptr);
  {
    std::lock_guard lock(impl_->mutex);  // a waiter between its check and its wait sees the flag
  }
  impl_->wake.notify_all();
  if (impl_->watcher.joinable()) {
    impl_->watcher.join();
  }
  if (impl_->sender.joinable()) {
    impl_->sender.join();
  }
}

}  // namespace lifeline::gateway
