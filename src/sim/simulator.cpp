#include "sim/simulator.h"

#include "common/log.h"
#include "crypto/keys.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <thread>

namespace lifeline::sim {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Ms(std::chrono::microseconds us) { return fmt::format("{:.1f} ms", static_cast<double>(us.count()) / 1000); }

// What the scheduler's heap holds: one timed event.
enum class EventKind : std::uint8_t {
  kHeartbeat,   // device: heartbeat due (skipped while silent), next one scheduled
  kAlertTick,   // fleet: one alert on a random device, next tick scheduled
  kRepeat,      // device: the next repeat of a catalogue entry
  kClear,       // device: clear a catalogue entry's code
  kStormTick,   // fleet: one device sends storm_alerts alerts at once
  kSilenceTick,  // fleet: one device falls silent
  kWake,        // device: comes back (a heartbeat at once)
};

struct Event {
  Clock::time_point at;
  EventKind kind;
  std::uint32_t device = 0;
  std::uint16_t entry = 0;     // catalogue index (kRepeat, kClear)
  std::uint16_t remaining = 0;  // repeats still to send (kRepeat)
  bool operator>(const Event& other) const { return at > other.at; }
};

}  // namespace

// One simulated device. `sequence` and `silent` belong to the scheduler thread; the rest is guarded
// by the mutex of the sender that owns the device.
struct SimDevice {
  DeviceCredentials credentials;
  std::uint64_t sequence = 0;
  bool silent = false;

  std::deque<protocol::Message> pending;
  std::vector<protocol::Message> inflight;  // the batch being delivered (kept across retries)
  std::vector<char> delivered_to;           // per home: answered, or refused for good
  bool busy = false;                        // queued at its sender, being sent, or waiting to retry
  int failures = 0;                         // consecutive, for the backoff
  bool reenrolled = false;                  // enrolled again during this run (at most once)
};

struct Sender {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::uint32_t> ready;  // devices with work
  std::priority_queue<std::pair<Clock::time_point, std::uint32_t>,
                      std::vector<std::pair<Clock::time_point, std::uint32_t>>, std::greater<>>
      retries;
  bool stopping = false;
  std::unique_ptr<BatchClient> client;
  std::optional<transport::HttpClient> enroll_client;  // no client certificate: for enrolling again
  std::vector<LatencyHistogram> latency;  // per home
  std::mt19937_64 random;
  std::thread thread;
};

struct HomeCounters {
  std::atomic<std::uint64_t> requests{0}, answered{0}, refused{0}, replayed{0}, transport_errors{0},
      bad_replies{0}, messages{0}, accepted{0}, duplicates{0}, rejected{0};
  std::mutex mutex;  // refusals, last_error
  std::map<std::string, std::uint64_t> refusals;
  std::string last_error;
};

struct Simulator::State {
  SimulatorOptions options;
  HomeTrust trust;
  CredentialStore credentials;
  std::vector<SimDevice> devices;
  std::vector<std::unique_ptr<Sender>> senders;
  std::vector<std::unique_ptr<HomeCounters>> homes;
  SimulationSummary summary;
  TokenSource tokens;

  std::atomic<std::uint32_t> reenrolled{0};
  std::atomic<std::uint64_t> generated{0}, heartbeats{0}, alerts{0}, clears{0}, storms{0}, silences{0},
      dropped{0}, overflow{0}, retries{0};
  std::atomic<std::int64_t> outstanding{0};
  Clock::time_point started{};
  std::atomic<bool> running{false};

  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  int stop_requests = 0;

  State(SimulatorOptions o, HomeTrust t, CredentialStore c)
      : options(std::move(o)), trust(std::move(t)), credentials(std::move(c)) {}

  Sender& SenderOf(std::uint32_t device) { return *senders[device % senders.size()]; }

  // ---- scheduler side

  /// Queues messages for a device and hands it to its sender when idle. Returns how many were queued.
  std::size_t Enqueue(std::uint32_t index, std::vector<protocol::Message> messages) {
    SimDevice& device = devices[index];
    Sender& sender = SenderOf(index);
    std::size_t queued = 0;
    bool notify = false;
    {
      std::lock_guard lock(sender.mutex);
      for (auto& m : messages) {
        if (device.pending.size() >= options.max_pending_per_device) {
          break;
        }
        device.pending.push_back(std::move(m));
        ++queued;
      }
      if (queued > 0 && !device.busy) {
        device.busy = true;
        sender.ready.push_back(index);
        notify = true;
      }
      outstanding += static_cast<std::int64_t>(queued);
    }
    overflow += messages.size() - queued;
    generated += queued;
    if (notify) {
      sender.wake.notify_one();
    }
    return queued;
  }

  bool StopRequested() {
    std::lock_guard lock(stop_mutex);
    return stop_requests > 0;
  }

  void Schedule();
  void SendLoop(Sender& sender);
  void Deliver(Sender& sender, std::uint32_t index);
  bool EnrollAgain(Sender& sender, SimDevice& device);
};

Simulator::Simulator(SimulatorOptions options, HomeTrust trust, CredentialStore credentials)
    : state_(std::make_unique<State>(std::move(options), std::move(trust), std::move(credentials))) {}

Simulator::~Simulator() {
  for (auto& sender : state_->senders) {
    {
      std::lock_guard lock(sender->mutex);
      sender->stopping = true;
    }
    sender->wake.notify_all();
    if (sender->thread.joinable()) {
      sender->thread.join();
    }
  }
}

VoidResult Simulator::Prepare(TokenSource tokens, std::string* why) {
  State& s = *state_;
  s.tokens = std::move(tokens);
  const TokenSource& tokens_ref = s.tokens;
  const auto& o = s.options;
  if (o.home_urls.empty()) {
    *why = "no home URL";
    return std::make_error_code(std::errc::invalid_argument);
  }
  const std::uint32_t n = o.fleet.devices;
  std::vector<std::optional<DeviceCredentials>> found(n);
  std::vector<std::uint32_t> missing;
  for (std::uint32_t i = 0; i < n; ++i) {
    found[i] = s.credentials.Find(DeviceAt(o.fleet, i));
    if (found[i]) {
      ++s.summary.reused;
    } else {
      missing.push_back(i);
    }
  }
  if (!missing.empty() && !tokens_ref) {
    *why = fmt::format("{} of {} devices are not enrolled in {} and no token source was given (--home-config)",
                       missing.size(), n, s.credentials.dir().string());
    if (missing.size() == n) {
      return std::make_error_code(std::errc::invalid_argument);
    }
    s.summary.enroll_failed = static_cast<std::uint32_t>(missing.size());
    s.summary.enroll_error = *why;
  } else if (!missing.empty()) {
    // Enrollments in parallel, each thread with its own connection (no client certificate yet).
    std::atomic<std::size_t> next{0};
    std::atomic<std::uint32_t> enrolled{0}, failed{0};
    std::mutex error_mutex;
    auto work = [&] {
      transport::HttpClient client(transport::ClientTls{.ca_file = s.trust.ca_file});
      for (std::size_t k = next++; k < missing.size(); k = next++) {
        const std::uint32_t i = missing[k];
        const auto identity = DeviceAt(o.fleet, i);
        std::string reason;
        auto token = tokens_ref(identity, &reason);
        Result<DeviceCredentials> made = token ? s.credentials.Enroll(identity, *token, o.home_urls.front(), client,
                                                                      o.timeout, &reason)
                                               : Result<DeviceCredentials>(token.error());
        if (made) {
          found[i] = std::move(*made);
          ++enrolled;
        } else {
          ++failed;
          std::lock_guard lock(error_mutex);
          if (s.summary.enroll_error.empty()) {
            s.summary.enroll_error = fmt::format("{}: {}", identity.Key(), reason);
          }
        }
      }
    };
    std::vector<std::thread> workers;
    const int threads = std::clamp(o.threads, 1, static_cast<int>(missing.size()));
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back(work);
    }
    for (auto& w : workers) {
      w.join();
    }
    s.summary.enrolled_now = enrolled;
    s.summary.enroll_failed = failed;
  }
  // Sequences continue from the clock, so a second run's messages come after the first's.
  const auto base_sequence = static_cast<std::uint64_t>(NowMs()) * 1000;
  for (std::uint32_t i = 0; i < n; ++i) {
    SimDevice device;
    if (found[i]) {
      device.credentials = std::move(*found[i]);
    }
    device.sequence = base_sequence;
    s.devices.push_back(std::move(device));
  }
  const std::uint32_t usable = s.summary.reused + s.summary.enrolled_now;
  if (usable == 0) {
    *why = "no device could be enrolled: " + s.summary.enroll_error;
    return std::make_error_code(std::errc::operation_not_permitted);
  }
  s.summary.devices = usable;
  return {};
}

void Simulator::State::Schedule() {
  const auto& o = options;
  std::mt19937_64 random(o.seed != 0 ? o.seed : std::random_device{}());
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::priority_queue<Event, std::vector<Event>, std::greater<>> heap;
  const auto catalogue = Catalogue();
  const auto interval = o.heartbeat_interval;
  const std::int64_t announced_s = static_cast<std::int64_t>(
      std::ceil(static_cast<double>(interval.count()) * (1.0 + o.heartbeat_jitter) / 1000.0));
  auto jittered = [&](milliseconds nominal) {
    const double factor = 1.0 + o.heartbeat_jitter * (2.0 * unit(random) - 1.0);
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(static_cast<double>(nominal.count()) * factor));
  };
  auto exponential = [&](double mean_ms) {
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(-std::log(1.0 - unit(random)) * mean_ms));
  };
  // Devices that did not enroll have no credentials and take no part.
  std::vector<std::uint32_t> usable;
  for (std::uint32_t i = 0; i < devices.size(); ++i) {
    if (!devices[i].credentials.cert_file.empty()) {
      usable.push_back(i);
    }
  }
  if (usable.empty()) {
    return;  // Prepare refuses a fleet without devices; nothing to schedule
  }
  const Clock::time_point start = Clock::now();
  // The fleet in steady state: first heartbeats spread over one interval.
  for (std::uint32_t i : usable) {
    heap.push({start + std::chrono::duration_cast<Clock::duration>(interval * unit(random)), EventKind::kHeartbeat, i});
  }
  if (o.alerts_per_second > 0) {
    heap.push({start + exponential(1000.0 / o.alerts_per_second), EventKind::kAlertTick});
  }
  if (o.storm_every.count() > 0) {
    heap.push({start + exponential(static_cast<double>(o.storm_every.count())), EventKind::kStormTick});
  }
  if (o.silence_every.count() > 0) {
    heap.push({start + exponential(static_cast<double>(o.silence_every.count())), EventKind::kSilenceTick});
  }
  const bool bounded_time = o.duration.count() > 0;
  const Clock::time_point end = start + o.duration;
  auto pick_device = [&]() -> std::optional<std::uint32_t> {
    // A few tries for a device that is not silent; with most of the fleet silent, skip the event.
    for (int attempt = 0; attempt < 8; ++attempt) {
      const std::uint32_t i = usable[random() % usable.size()];
      if (!devices[i].silent) {
        return i;
      }
    }
    return std::nullopt;
  };
  auto budget = [&]() -> std::uint64_t {
    if (o.count <= 0) {
      return UINT64_MAX;
    }
    const auto made = generated.load() + overflow.load();
    return made >= static_cast<std::uint64_t>(o.count) ? 0 : static_cast<std::uint64_t>(o.count) - made;
  };

  while (budget() > 0) {
    {
      std::unique_lock lock(stop_mutex);
      if (stop_requests > 0) {
        break;
      }
      const Clock::time_point next = heap.empty() ? Clock::time_point::max() : heap.top().at;
      const Clock::time_point wake = bounded_time ? std::min(next, end) : next;
      if (wake > Clock::now()) {
        if (wake == Clock::time_point::max()) {
          stop_cv.wait(lock, [&] { return stop_requests > 0; });
        } else {
          stop_cv.wait_until(lock, wake, [&] { return stop_requests > 0; });
        }
        continue;
      }
    }
    if (bounded_time && Clock::now() >= end) {
      break;
    }
    const Event event = heap.top();
    heap.pop();
    const std::int64_t now_ms = NowMs();
    switch (event.kind) {
      case EventKind::kHeartbeat: {
        SimDevice& device = devices[event.device];
        if (!device.silent) {
          Enqueue(event.device, {MakeHeartbeat(now_ms, ++device.sequence, announced_s, random)});
          ++heartbeats;
        }
        heap.push({event.at + jittered(interval), EventKind::kHeartbeat, event.device});
        break;
      }
      case EventKind::kAlertTick: {
        heap.push({event.at + exponential(1000.0 / o.alerts_per_second), EventKind::kAlertTick});
        auto index = pick_device();
        if (!index) {
          break;
        }
        const CatalogueEntry& entry = PickAlert(random);
        const auto entry_index = static_cast<std::uint16_t>(&entry - catalogue.data());
        SimDevice& device = devices[*index];
        alerts += Enqueue(*index, {MakeAlert(now_ms, ++device.sequence, entry, random)});
        if (entry.repeats > 1) {
          heap.push({event.at + std::chrono::seconds(1), EventKind::kRepeat, *index, entry_index,
                     static_cast<std::uint16_t>(entry.repeats - 1)});
        } else if (entry.clears_after.count() > 0) {
          heap.push({event.at + entry.clears_after, EventKind::kClear, *index, entry_index});
        }
        break;
      }
      case EventKind::kRepeat: {
        SimDevice& device = devices[event.device];
        const CatalogueEntry& entry = catalogue[event.entry];
        if (device.silent) {
          break;
        }
        alerts += Enqueue(event.device, {MakeAlert(now_ms, ++device.sequence, entry, random)});
        if (event.remaining > 1) {
          heap.push({event.at + std::chrono::seconds(1), EventKind::kRepeat, event.device, event.entry,
                     static_cast<std::uint16_t>(event.remaining - 1)});
        } else if (entry.clears_after.count() > 0) {
          heap.push({event.at + entry.clears_after, EventKind::kClear, event.device, event.entry});
        }
        break;
      }
      case EventKind::kClear: {
        SimDevice& device = devices[event.device];
        if (!device.silent) {
          clears += Enqueue(event.device,
                            {MakeClear(now_ms, ++device.sequence, catalogue[event.entry].code, random)});
        }
        break;
      }
      case EventKind::kStormTick: {
        heap.push({event.at + exponential(static_cast<double>(o.storm_every.count())), EventKind::kStormTick});
        auto index = pick_device();
        if (!index) {
          break;
        }
        SimDevice& device = devices[*index];
        const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(
            static_cast<std::uint64_t>(std::max(o.storm_alerts, 1)), budget()));
        std::vector<protocol::Message> storm;
        storm.reserve(size);
        for (std::size_t k = 0; k < size; ++k) {
          storm.push_back(MakeAlert(now_ms, ++device.sequence, PickAlert(random), random));
        }
        alerts += Enqueue(*index, std::move(storm));
        ++storms;
        break;
      }
      case EventKind::kSilenceTick: {
        heap.push(
            {event.at + exponential(static_cast<double>(o.silence_every.count())), EventKind::kSilenceTick});
        auto index = pick_device();
        if (!index) {
          break;
        }
        devices[*index].silent = true;
        ++silences;
        heap.push({event.at + o.silence_for, EventKind::kWake, *index});
        break;
      }
      case EventKind::kWake: {
        SimDevice& device = devices[event.device];
        device.silent = false;
        Enqueue(event.device, {MakeHeartbeat(now_ms, ++device.sequence, announced_s, random)});
        ++heartbeats;
        break;
      }
    }
  }
}

void Simulator::State::SendLoop(Sender& sender) {
  for (;;) {
    std::uint32_t index = 0;
    {
      std::unique_lock lock(sender.mutex);
      for (;;) {
        if (sender.stopping) {
          return;
        }
        const auto now = Clock::now();
        while (!sender.retries.empty() && sender.retries.top().first <= now) {
          sender.ready.push_back(sender.retries.top().second);
          sender.retries.pop();
        }
        if (!sender.ready.empty()) {
          break;
        }
        if (sender.retries.empty()) {
          sender.wake.wait(lock);
        } else {
          sender.wake.wait_until(lock, sender.retries.top().first);
        }
      }
      index = sender.ready.front();
      sender.ready.pop_front();
      SimDevice& device = devices[index];
      if (device.inflight.empty()) {
        const std::size_t take = std::min(device.pending.size(), static_cast<std::size_t>(options.batch_size));
        device.inflight.assign(std::make_move_iterator(device.pending.begin()),
                               std::make_move_iterator(device.pending.begin() + static_cast<std::ptrdiff_t>(take)));
        device.pending.erase(device.pending.begin(), device.pending.begin() + static_cast<std::ptrdiff_t>(take));
        device.delivered_to.assign(options.home_urls.size(), 0);
      }
    }
    Deliver(sender, index);
  }
}

// A cached device the home does not know (or knows with another key): enroll it again with a fresh
// token, keeping its keys, and let the caller retry. False when there is no token source or it failed.
bool Simulator::State::EnrollAgain(Sender& sender, SimDevice& device) {
  if (!tokens || device.reenrolled) {
    return false;
  }
  device.reenrolled = true;
  if (!sender.enroll_client) {
    sender.enroll_client.emplace(transport::ClientTls{.ca_file = trust.ca_file});
  }
  std::string why;
  auto token = tokens(device.credentials.identity, &why);
  Result<DeviceCredentials> made =
      token ? credentials.Enroll(device.credentials.identity, *token, options.home_urls.front(), *sender.enroll_client,
                                 options.timeout, &why)
            : Result<DeviceCredentials>(token.error());
  if (!made) {
    log::Get("sim")->warn("device {}: could not enroll again: {}", device.credentials.identity.Key(), why);
    return false;
  }
  device.credentials = std::move(*made);
  ++reenrolled;
  return true;
}

// Sends the device's in-flight batch to every home that has not taken it yet; then either finishes
// it (and queues the device again if more is pending) or schedules a retry. The device is busy
// throughout, so only this thread touches its in-flight batch.
void Simulator::State::Deliver(Sender& sender, std::uint32_t index) {
  SimDevice& device = devices[index];
  const auto& urls = options.home_urls;
  protocol::Batch batch;
  batch.device = device.credentials.identity;
  batch.agent_version = LIFELINE_VERSION;
  batch.messages = device.inflight;
  std::string shared_id;
  std::string shared_sealed;
  bool retry = false;
  std::string retry_reason;
  for (std::size_t h = 0; h < urls.size(); ++h) {
    if (device.delivered_to[h]) {
      continue;
    }
    std::string sealed;
    if (options.same_batch_id && !shared_id.empty()) {
      batch.batch_id = shared_id;
      sealed = shared_sealed;
    } else {
      batch.batch_id = crypto::RandomHex(16);
      batch.sent_at_ms = NowMs();
      sealed = BatchClient::Seal(batch, device.credentials, trust);
      shared_id = batch.batch_id;
      shared_sealed = sealed;
    }
    const SendOutcome out = sender.client->Send(device.credentials, urls[h], sealed, batch.batch_id);
    HomeCounters& home = *homes[h];
    ++home.requests;
    if (out.http_status != 0) {
      sender.latency[h].Record(out.latency);
    }
    const std::size_t n = device.inflight.size();
    switch (out.kind) {
      case SendOutcome::Kind::kAnswered:
        ++home.answered;
        home.messages += n;
        home.accepted += static_cast<std::uint64_t>(out.accepted);
        home.duplicates += static_cast<std::uint64_t>(out.duplicates);
        home.rejected += static_cast<std::uint64_t>(out.rejected);
        device.delivered_to[h] = 1;
        break;
      case SendOutcome::Kind::kRefused: {
        ++home.refused;
        const bool replay = out.refusal == protocol::Reject::kReplayedBatch;
        home.replayed += replay ? 1 : 0;
        {
          std::lock_guard lock(home.mutex);
          ++home.refusals[std::string(protocol::WireName(out.refusal))];
          home.last_error = out.detail;
        }
        const bool stale = out.refusal == protocol::Reject::kDeviceUnknown ||
                           out.refusal == protocol::Reject::kBadSignature ||
                           out.refusal == protocol::Reject::kIdentityMismatch;
        if ((!replay && protocol::IsRetryable(out.refusal)) || (stale && EnrollAgain(sender, device))) {
          retry = true;
          retry_reason = out.detail;
        } else {
          // Refused for good (or a replay another home of the same store already took): the sim
          // does not keep it, unlike an agent, so a misconfigured run ends instead of piling up.
          device.delivered_to[h] = 1;
          if (!replay) {
            dropped += n;
          }
        }
        break;
      }
      case SendOutcome::Kind::kTransportError:
      case SendOutcome::Kind::kBadReply: {
        if (out.kind == SendOutcome::Kind::kTransportError) {
          ++home.transport_errors;
        } else {
          ++home.bad_replies;
        }
        std::lock_guard lock(home.mutex);
        home.last_error = out.detail;
        retry = true;
        retry_reason = out.detail;
        break;
      }
    }
  }

  {
    std::lock_guard lock(sender.mutex);
    if (retry) {
      ++device.failures;
      ++retries;
      // Backoff with jitter: between half and all of 0.5 s, 1 s, 2 s, ... at most 30 s.
      const double cap_ms = std::min(30'000.0, 500.0 * std::pow(2.0, std::min(device.failures - 1, 10)));
      const auto wait = milliseconds(static_cast<std::int64_t>(
          std::uniform_real_distribution<double>(cap_ms / 2, cap_ms)(sender.random)));
      sender.retries.emplace(Clock::now() + wait, index);
      log::Get("sim")->debug("device {}: retrying in {} ms: {}", device.credentials.identity.Key(), wait.count(),
                             retry_reason);
      return;
    }
    outstanding -= static_cast<std::int64_t>(device.inflight.size());
    device.inflight.clear();
    device.failures = 0;
    if (!device.pending.empty()) {
      // This thread serves it again after the devices already waiting: no other sender has it.
      sender.ready.push_back(index);
    } else {
      device.busy = false;
    }
  }
}

SimulationSummary Simulator::Run() {
  State& s = *state_;
  const auto& o = s.options;
  for (std::size_t h = 0; h < o.home_urls.size(); ++h) {
    s.homes.push_back(std::make_unique<HomeCounters>());
  }
  std::mt19937_64 seeds(o.seed != 0 ? o.seed + 1 : std::random_device{}());
  for (int t = 0; t < std::max(o.threads, 1); ++t) {
    auto sender = std::make_unique<Sender>();
    sender->client = std::make_unique<BatchClient>(s.trust, static_cast<std::size_t>(std::max(o.connections_per_thread, 1)),
                                                   o.timeout);
    sender->latency.resize(o.home_urls.size());
    sender->random.seed(seeds());
    s.senders.push_back(std::move(sender));
  }
  s.started = Clock::now();
  s.running = true;
  for (auto& sender : s.senders) {
    Sender* raw = sender.get();
    sender->thread = std::thread([&s, raw] { s.SendLoop(*raw); });
  }
  s.Schedule();

  // The drain: what was generated gets its chance to arrive, within the bound.
  {
    std::unique_lock lock(s.stop_mutex);
    const auto deadline = Clock::now() + o.drain;
    // A Stop() during the drain (a second Ctrl-C, or the first after a bounded run) abandons it.
    const int requests_before = s.stop_requests;
    while (s.outstanding.load() > 0 && s.stop_requests == requests_before && Clock::now() < deadline) {
      s.stop_cv.wait_for(lock, milliseconds(20));
    }
  }
  for (auto& sender : s.senders) {
    {
      std::lock_guard lock(sender->mutex);
      sender->stopping = true;
    }
    sender->wake.notify_all();
  }
  for (auto& sender : s.senders) {
    sender->thread.join();
  }
  s.running = false;

  SimulationSummary summary = s.summary;
  summary.seconds = std::chrono::duration<double>(Clock::now() - s.started).count();
  summary.heartbeats = s.heartbeats;
  summary.alerts = s.alerts;
  summary.clears = s.clears;
  summary.storms = s.storms;
  summary.silences = s.silences;
  summary.dropped = s.dropped;
  summary.overflow = s.overflow;
  summary.unsent = static_cast<std::uint64_t>(std::max<std::int64_t>(s.outstanding.load(), 0));
  summary.retries = s.retries;
  summary.reenrolled = s.reenrolled;
  for (std::size_t h = 0; h < o.home_urls.size(); ++h) {
    HomeCounters& c = *s.homes[h];
    HomeFigures f;
    f.url = o.home_urls[h];
    f.requests = c.requests;
    f.answered = c.answered;
    f.refused = c.refused;
    f.replayed = c.replayed;
    f.transport_errors = c.transport_errors;
    f.bad_replies = c.bad_replies;
    f.messages = c.messages;
    f.accepted = c.accepted;
    f.duplicates = c.duplicates;
    f.rejected = c.rejected;
    f.refusals = c.refusals;
    f.last_error = c.last_error;
    for (auto& sender : s.senders) {
      f.latency.Merge(sender->latency[h]);
    }
    summary.latency.Merge(f.latency);
    summary.homes.push_back(std::move(f));
  }
  for (auto& sender : s.senders) {
    summary.connections += sender->client->connections_opened();
  }
  return summary;
}

void Simulator::Stop() {
  {
    std::lock_guard lock(state_->stop_mutex);
    ++state_->stop_requests;
  }
  state_->stop_cv.notify_all();
}

Progress Simulator::Snapshot() const {
  const State& s = *state_;
  Progress p;
  if (s.running) {
    p.seconds = std::chrono::duration<double>(Clock::now() - s.started).count();
  }
  p.generated = s.generated;
  for (const auto& home : s.homes) {
    p.requests += home->requests;
    p.answered += home->answered;
    p.accepted += home->accepted;
    p.errors += home->refused + home->transport_errors + home->bad_replies;
  }
  p.outstanding = s.outstanding;
  return p;
}

std::string SimulationSummary::Render() const {
  std::string out;
  auto line = [&out](std::string_view label, const std::string& value) {
    out += fmt::format("  {:<22}{}\n", label, value);
  };
  out += "lifeline simulate: summary\n";
  line("devices", fmt::format("{} ({} enrolled now, {} from the state directory{})", devices, enrolled_now, reused,
                              enroll_failed > 0 ? fmt::format(", {} failed to enroll", enroll_failed) : ""));
  if (!enroll_error.empty()) {
    line("first enroll failure", enroll_error);
  }
  if (reenrolled > 0) {
    line("enrolled again", fmt::format("{} (the home did not know them, or knew them with another key)", reenrolled));
  }
  line("run", fmt::format("{:.1f} s", seconds));
  line("generated", fmt::format("{} messages: {} heartbeats, {} alerts ({} storms), {} clears; {} silences", generated(),
                                heartbeats, alerts, storms, clears, silences));
  line("not delivered", fmt::format("{} unsent at the end, {} dropped (refused for good), {} overflow", unsent, dropped,
                                    overflow));
  line("retries", fmt::format("{} (batches sent again after a failure); {} TLS connections opened", retries,
                              connections));
  for (const auto& h : homes) {
    out += fmt::format("home {}\n", h.url);
    line("batches", fmt::format("{} requests: {} answered, {} refused{}, {} errors, {} bad replies", h.requests,
                                h.answered, h.refused, h.replayed > 0 ? fmt::format(" ({} replayed)", h.replayed) : "",
                                h.transport_errors, h.bad_replies));
    line("messages", fmt::format("{} in answered batches: {} accepted, {} duplicates, {} rejected", h.messages,
                                 h.accepted, h.duplicates, h.rejected));
    const double rate = seconds > 0 ? static_cast<double>(h.messages) / seconds : 0;
    line("throughput", fmt::format("{:.0f} messages/s, {:.1f} batches/s", rate,
                                   seconds > 0 ? static_cast<double>(h.answered) / seconds : 0));
    line("latency per request", h.latency.count() == 0
                                    ? std::string("-")
                                    : fmt::format("p50 {}, p99 {}, max {} ({} requests answered)",
                                                  Ms(h.latency.Percentile(0.5)), Ms(h.latency.Percentile(0.99)),
                                                  Ms(h.latency.Max()), h.latency.count()));
    if (!h.refusals.empty()) {
      std::string reasons;
      for (const auto& [name, n] : h.refusals) {
        reasons += fmt::format("{}{} x{}", reasons.empty() ? "" : ", ", name, n);
      }
      line("refusals", reasons);
    }
    if (!h.last_error.empty()) {
      line("last error", h.last_error);
    }
    if (dropped > 0 && (h.refusals.contains("bad_signature") || h.refusals.contains("device_unknown"))) {
      line("hint", "devices in --state are unknown to this home or were enrolled again elsewhere (another "
                   "--state with the same --prefix): give --home-config so they enroll again, or use another --prefix");
    }
  }
  return out;
}

}  // namespace lifeline::sim
