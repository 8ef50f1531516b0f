#include "bench/home_ingest.h"

#include <fmt/format.h>
#include <sys/statfs.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/config.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "crypto/token.h"
#include "home/home_config.h"
#include "home/home_service.h"
#include "sim/batch_client.h"
#include "sim/fleet.h"
#include "sim/latency.h"
#include "store/sql_home_store.h"

#ifdef LIFELINE_BENCH_POSTGRES
#include "support/postgres_server.h"
#endif

namespace lifeline::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double Ms(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; }

std::string FileSystemType(const fs::path& path) {
  struct statfs info {};
  if (statfs(path.c_str(), &info) != 0) {
    return "unknown file system";
  }
  switch (static_cast<unsigned long>(info.f_type)) {
    case 0xEF53:
      return "ext4";
    case 0x01021994:
      return "tmpfs (fsync is free: figures are optimistic)";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x794C7630:
      return "overlayfs";
    default:
      return fmt::format("f_type 0x{:x}", static_cast<unsigned long>(info.f_type));
  }
}

// The seeds' storm control, as the home applies it by default: 10 alerts in 60 minutes put a device
// into automatic maintenance for 30 minutes.
store::StormSettings HomeDefaultStorm() {
  return {.max_alerts = 10, .window_ms = 60 * 60 * 1000, .maintenance_ms = 30 * 60 * 1000};
}

sim::FleetShape Shape(int devices) {
  return {.prefix = "BENCH", .devices = static_cast<std::uint32_t>(devices), .customers = 4, .sites = 20};
}

// One batch of `size` messages from one device: 60% alerts (codes from the simulator's catalogue,
// so most join a ticket already open), 10% clears, 30% heartbeats.
protocol::Batch MixedBatch(const protocol::DeviceIdentity& device, std::uint64_t& sequence, int size,
                           std::mt19937_64& random) {
  protocol::Batch batch;
  batch.batch_id = crypto::RandomHex(16);
  batch.device = device;
  batch.agent_version = LIFELINE_VERSION;
  const std::int64_t now_ms = NowMs();
  batch.sent_at_ms = now_ms;
  batch.messages.reserve(static_cast<std::size_t>(size));
  for (int k = 0; k < size; ++k) {
    const auto pick = random() % 10;
    if (pick < 6) {
      batch.messages.push_back(sim::MakeAlert(now_ms, ++sequence, sim::PickAlert(random), random));
    } else if (pick < 7) {
      batch.messages.push_back(sim::MakeClear(now_ms, ++sequence, sim::PickAlert(random).code, random));
    } else {
      batch.messages.push_back(sim::MakeHeartbeat(now_ms, ++sequence, 3600, random));
    }
  }
  return batch;
}

std::vector<protocol::Batch> Prebuild(const IngestBenchOptions& o) {
  std::mt19937_64 random(42);
  std::vector<std::uint64_t> sequences(static_cast<std::size_t>(o.devices), 0);
  std::vector<protocol::DeviceIdentity> identities;
  for (int i = 0; i < o.devices; ++i) {
    identities.push_back(sim::DeviceAt(Shape(o.devices), static_cast<std::uint32_t>(i)));
  }
  std::vector<protocol::Batch> batches;
  batches.reserve(static_cast<std::size_t>(o.batches));
  for (int b = 0; b < o.batches; ++b) {
    const auto d = static_cast<std::size_t>(b % o.devices);
    batches.push_back(MixedBatch(identities[d], sequences[d], o.batch_size, random));
  }
  return batches;
}

// Enrolls the devices straight through the store (no certificates are checked in process).
VoidResult EnrollDirectly(store::HomeStore& store, int devices) {
  const std::int64_t now_ms = NowMs();
  for (int i = 0; i < devices; ++i) {
    const auto identity = sim::DeviceAt(Shape(devices), static_cast<std::uint32_t>(i));
    const std::string hash = crypto::HashToken(crypto::GenerateToken("llt"));
    if (auto made = store.CreateEnrollmentToken(hash, identity, now_ms + 3'600'000, now_ms); !made) {
      return made.error();
    }
    const auto key = crypto::GenerateSigningKeyPair();
    if (auto enrolled = store.Enroll({.token_hash = hash,
                                      .identity = identity,
                                      .now_ms = now_ms,
                                      .device_signing_public_b64 = crypto::Base64Encode(key.public_key),
                                      .cert_fingerprint = crypto::RandomHex(32),
                                      .cert_pem = "(bench)",
                                      .cert_not_after_ms = now_ms + 86'400'000});
        !enrolled) {
      return enrolled.error();
    }
  }
  return {};
}

// How a store is opened for one run: a fresh SQLite file or a fresh PostgreSQL database.
struct StoreMaker {
  std::string backend;
  fs::path dir;
  std::function<std::string()> new_database;  // PostgreSQL: a fresh database's conninfo

  Result<std::unique_ptr<store::SqlHomeStore>> Open(const std::string& name) const {
    if (backend == "SQLite") {
      return store::SqlHomeStore::Open(dir / (name + ".db"));
    }
    return store::SqlHomeStore::Open(store::HomeStoreOptions{.backend = store::sql::Backend::kPostgres,
                                                             .postgres_conninfo = new_database(),
                                                             .postgres_pool_size = 4});
  }
};

// Runs `work(index)` for batch indexes on `threads` threads until the batches or the time run out.
template <typename Work>
IngestRun RunBatches(std::size_t batches, int threads, std::chrono::seconds max_run, Work work) {
  IngestRun run;
  std::atomic<std::size_t> next{0};
  std::atomic<std::uint64_t> messages{0};
  std::mutex mutex;
  sim::LatencyHistogram latency;
  const auto start = Clock::now();
  const auto deadline = start + max_run;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      sim::LatencyHistogram mine;
      std::string error;
      for (std::size_t i = next++; i < batches && Clock::now() < deadline; i = next++) {
        const auto begun = Clock::now();
        auto done = work(i, &error);
        if (!done) {
          break;
        }
        mine.Record(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - begun));
        messages += *done;
      }
      std::lock_guard lock(mutex);
      latency.Merge(mine);
      if (!error.empty() && run.note.empty()) {
        run.note = error;
      }
    });
  }
  for (auto& thread : pool) {
    thread.join();
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.messages = messages;
  run.per_second = run.seconds > 0 ? static_cast<double>(run.messages) / run.seconds : 0;
  run.p50_ms = Ms(latency.Percentile(0.5));
  run.p99_ms = Ms(latency.Percentile(0.99));
  run.ran = run.messages > 0;
  return run;
}

IngestRun MeasureIngest(const StoreMaker& maker, const IngestBenchOptions& o, const std::string& name,
                        bool storm_control) {
  auto store = maker.Open(name);
  if (!store) {
    return {.note = "cannot open the store: " + store.error().message() + " " + store::sql::LastErrorDetail()};
  }
  if (auto enrolled = EnrollDirectly(**store, o.devices); !enrolled) {
    return {.note = "cannot enroll: " + enrolled.error().message()};
  }
  auto batches = Prebuild(o);
  store::HomeStore& home_store = **store;
  return RunBatches(batches.size(), o.threads, o.max_run, [&](std::size_t i, std::string* error) -> std::optional<std::uint64_t> {
    store::IngestRequest request{.batch = std::move(batches[i]),
                                 .now_ms = NowMs(),
                                 .ticket_min_severity = protocol::Severity::kError,
                                 .contacts = {"oncall@example.com"}};
    if (storm_control) {
      request.storm = HomeDefaultStorm();
    }
    auto reply = home_store.IngestBatch(request);
    if (!reply) {
      *error = "IngestBatch failed: " + reply.error().message() + " " + store::sql::LastErrorDetail();
      return std::nullopt;
    }
    for (const auto& r : reply->results) {
      if (r.status == protocol::MessageStatus::kRejected || r.duplicate) {
        *error = "a message was rejected or a duplicate: " + r.reason;
        return std::nullopt;
      }
    }
    return reply->results.size();
  });
}

IngestRun MeasureRaw(const StoreMaker& maker, const IngestBenchOptions& o) {
  auto store = maker.Open("raw");
  if (!store) {
    return {.note = "cannot open the store: " + store.error().message()};
  }
  if (auto enrolled = EnrollDirectly(**store, o.devices); !enrolled) {
    return {.note = "cannot enroll: " + enrolled.error().message()};
  }
  std::map<std::string, std::int64_t> device_ids;
  for (const auto& d : *(*store)->ListDevices()) {
    auto row = (*store)->database().WithSession([&](store::sql::Session& s) {
      return s.QueryRow("SELECT id FROM devices WHERE customer = $1 AND site = $2 AND serial = $3",
                        d.identity.customer, d.identity.site, d.identity.serial);
    });
    if (!row || !*row) {
      return {.note = "cannot read device ids"};
    }
    device_ids[d.identity.Key()] = (*row)->Int(0);
  }
  const auto batches = Prebuild(o);
  store::sql::Database& db = (*store)->database();
  return RunBatches(batches.size(), o.threads, o.max_run, [&](std::size_t i, std::string* error) -> std::optional<std::uint64_t> {
    const protocol::Batch& batch = batches[i];
    const std::int64_t device_id = device_ids.at(batch.device.Key());
    const std::int64_t now_ms = NowMs();
    // The rows IngestBatch writes for every message, and nothing else: no lookups, no tickets.
    auto done = db.Transaction(store::sql::TxMode::kWrite, [&](store::sql::Session& s) -> VoidResult {
      if (auto r = s.Exec("INSERT INTO batches (batch_id, device_id, received_at_ms) VALUES ($1, $2, $3)",
                          batch.batch_id, device_id, now_ms);
          !r) {
        return r.error();
      }
      for (const auto& m : batch.messages) {
        const bool alert = m.type == protocol::MessageType::kAlert || m.type == protocol::MessageType::kClear;
        std::optional<std::string> severity;
        if (alert) {
          severity = std::string(protocol::ToString(m.alert.severity));
        }
        auto r = s.Exec(
            "INSERT INTO events (device_id, message_id, batch_id, type, sequence, code, severity, text, "
            "payload_json, device_time_ms, received_at_ms, ticket_id, result_status, result_reason, result_ticket) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            device_id, m.id, batch.batch_id, protocol::ToString(m.type), static_cast<std::int64_t>(m.sequence),
            alert ? m.alert.code : std::string(), severity, alert ? m.alert.text : m.heartbeat.status, m.payload_json,
            m.timestamp_ms, now_ms, std::optional<std::int64_t>(), "accepted", "", "");
        if (!r) {
          return r.error();
        }
      }
      return {};
    });
    if (!done) {
      *error = "raw insert failed: " + done.error().message() + " " + store::sql::LastErrorDetail();
      return std::nullopt;
    }
    return batch.messages.size();
  });
}

IngestRun MeasureEndToEnd(const std::string& store_toml, const fs::path& dir, const IngestBenchOptions& o) {
  std::string why;
  // Email goes nowhere (a closed port): the outbox rows are written, their delivery is not measured.
  auto home = StartBenchHome(dir, store_toml, "smtp://127.0.0.1:1", o.e2e_devices, &why);
  if (!home) {
    return {.note = why};
  }
  BenchHome& h = **home;
  const int threads = std::max(1, o.e2e_threads);
  std::atomic<std::uint64_t> messages{0};
  std::mutex mutex;
  sim::LatencyHistogram latency;
  std::string error;
  const auto start = Clock::now();
  const auto deadline = start + o.e2e_run;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::vector<std::size_t> mine;
      for (std::size_t d = static_cast<std::size_t>(t); d < h.devices.size(); d += static_cast<std::size_t>(threads)) {
        mine.push_back(d);
      }
      if (mine.empty()) {
        return;
      }
      sim::BatchClient client(h.trust, mine.size(), std::chrono::seconds(30));
      std::mt19937_64 random(static_cast<std::uint64_t>(t) + 1);
      std::vector<std::uint64_t> sequences(mine.size(), 0);
      sim::LatencyHistogram local;
      std::string failure;
      for (std::size_t k = 0; Clock::now() < deadline; k = (k + 1) % mine.size()) {
        const auto& device = h.devices[mine[k]];
        const auto batch = MixedBatch(device.identity, sequences[k], o.batch_size, random);
        const auto out = client.Send(device, h.url, sim::BatchClient::Seal(batch, device, h.trust), batch.batch_id);
        if (out.kind != sim::SendOutcome::Kind::kAnswered) {
          failure = out.detail;
          break;
        }
        local.Record(out.latency);
        messages += static_cast<std::uint64_t>(out.accepted);
      }
      std::lock_guard lock(mutex);
      latency.Merge(local);
      if (!failure.empty() && error.empty()) {
        error = failure;
      }
    });
  }
  for (auto& thread : pool) {
    thread.join();
  }
  IngestRun run;
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  run.messages = messages;
  run.per_second = run.seconds > 0 ? static_cast<double>(run.messages) / run.seconds : 0;
  run.p50_ms = Ms(latency.Percentile(0.5));
  run.p99_ms = Ms(latency.Percentile(0.99));
  run.ran = run.messages > 0 && error.empty();
  run.note = error;
  return run;
}

IngestFigures RunBackend(const std::string& backend, const StoreMaker& maker, const std::string& e2e_store_toml,
                         const IngestBenchOptions& o) {
  IngestFigures f;
  f.backend = backend;
  f.raw = MeasureRaw(maker, o);
  f.ingest = MeasureIngest(maker, o, "ingest", /*storm_control=*/false);
  f.ingest_storm = MeasureIngest(maker, o, "ingest-storm", /*storm_control=*/true);
  f.e2e = MeasureEndToEnd(e2e_store_toml, maker.dir / "e2e", o);
  return f;
}

}  // namespace

std::string IngestMix() {
  return "batches of 100 from one device each (devices round robin): 60% alerts with codes from the simulator's "
         "catalogue (most join an open ticket; warnings are recorded only), 10% clears, 30% heartbeats; one email "
         "contact (an outbox row per new ticket)";
}

BenchHome::~BenchHome() {
  if (service) {
    service->Stop();
  }
}

Result<std::unique_ptr<BenchHome>> StartBenchHome(const fs::path& dir, const std::string& store_toml,
                                                  const std::string& smtp_url, int devices, std::string* why) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (auto made = crypto::InitPki(dir / "pki"); !made) {
    *why = "pki init failed: " + made.error().message();
    return made.error();
  }
  // Through home.toml and HomeConfig::Load, as `lifeline home run` starts: the home's own defaults.
  const fs::path config_path = dir / "home.toml";
  std::ofstream(config_path) << fmt::format(R"([listen]
ingest = "127.0.0.1:0"
tunnel = "127.0.0.1:0"
sessions = "127.0.0.1:0"
admin = "127.0.0.1:0"
[pki]
dir = "{0}/pki"
[store]
{1}
[smtp]
url = "{2}"
from = "lifeline-bench@localhost"
starttls = "off"
[notify]
email = ["oncall@example.com"]
)",
                                            dir.string(), store_toml, smtp_url);
  home::HomeConfig config;
  try {
    config = home::HomeConfig::Load(config_path);
  } catch (const config::ConfigError& e) {
    *why = e.what();
    return std::make_error_code(std::errc::invalid_argument);
  }
  auto service = home::HomeService::Start(config);
  if (!service) {
    *why = "the home did not start: " + service.error().message();
    return service.error();
  }
  auto home = std::make_unique<BenchHome>();
  home->service = std::move(*service);
  home->url = "https://" + home->service->IngestAddress();
  auto trust = sim::LoadHomeTrust(dir / "pki", why);
  if (!trust) {
    return trust.error();
  }
  home->trust = *trust;
  auto tokens = home::OpenHomeStore(config);
  if (!tokens) {
    *why = "cannot open a second handle on the store";
    return tokens.error();
  }
  auto credentials = sim::CredentialStore::Open(dir / "devices", home->trust, why);
  if (!credentials) {
    return credentials.error();
  }
  transport::HttpClient client(transport::ClientTls{.ca_file = home->trust.ca_file});
  for (int i = 0; i < devices; ++i) {
    const auto identity = sim::DeviceAt(Shape(devices), static_cast<std::uint32_t>(i));
    const std::string token = crypto::GenerateToken("llt");
    const std::int64_t now_ms = NowMs();
    if (auto made = (*tokens)->CreateEnrollmentToken(crypto::HashToken(token), identity, now_ms + 3'600'000, now_ms);
        !made) {
      *why = "cannot issue a token: " + made.error().message();
      return made.error();
    }
    auto enrolled = credentials->Enroll(identity, token, home->url, client, std::chrono::seconds(30), why);
    if (!enrolled) {
      return enrolled.error();
    }
    home->devices.push_back(std::move(*enrolled));
  }
  return home;
}

std::vector<IngestFigures> BenchIngest(const IngestBenchOptions& o) {
  std::vector<IngestFigures> out;
  {
    const fs::path dir = o.dir / "sqlite";
    fs::create_directories(dir);
    StoreMaker maker{.backend = "SQLite", .dir = dir};
    auto f = RunBackend("SQLite", maker, fmt::format("path = \"{}/e2e/home.db\"", dir.string()), o);
    f.where = fmt::format("files in {} ({}), WAL, synchronous=FULL", dir.string(), FileSystemType(dir));
    out.push_back(std::move(f));
  }
  IngestFigures pg;
  pg.backend = "PostgreSQL";
  if (!o.postgres) {
    pg.skipped = "not asked for (--no-postgres)";
    out.push_back(std::move(pg));
    return out;
  }
#ifdef LIFELINE_BENCH_POSTGRES
  try {
    testing::PostgresServer server;
    const fs::path dir = o.dir / "postgres";
    fs::create_directories(dir);
    StoreMaker maker{.backend = "PostgreSQL", .dir = dir, .new_database = [&server] { return server.CreateDatabase(); }};
    pg = RunBackend("PostgreSQL", maker,
                    fmt::format("backend = \"postgresql\"\npostgresql.url = \"{}\"\npostgresql.pool_size = 4",
                                server.CreateDatabase()),
                    o);
    pg.where = fmt::format("a private PostgreSQL 15 on a unix socket in {} (fsync on, synchronous_commit on)",
                           server.dir().string());
  } catch (const std::exception& e) {
    pg.skipped = fmt::format("skipped: no PostgreSQL server could be started ({})",
                             std::string(e.what()).substr(0, 200));
  }
#else
  pg.skipped = "skipped: built without the tests' PostgreSQL support (LIFELINE_BUILD_TESTS=OFF)";
#endif
  out.push_back(std::move(pg));
  return out;
}

}  // namespace lifeline::bench
