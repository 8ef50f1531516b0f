#pragma once
// The home's ingest rate (issue 4): messages per second on 2 cores with durable commit, in batches
// of 100, three ways on each backend, in one run:
//   ingest  HomeStore::IngestBatch in process, 2 threads, prebuilt batches from many devices: the
//           whole ingest logic (replay check, per-message answers, tickets, occurrences, outbox)
//   raw     the same rows through the SQL seam with plain INSERTs (the batch id, one events row per
//           message) in transactions of 100, no ingest logic: what the store's commits cost alone
//   e2e     a real home (HomeService, in process) fed over HTTPS with mutual TLS by the simulator's
//           client (sim::BatchClient): sealing, TLS, HTTP, opening, signature checks and the reply
// On SQLite always; on PostgreSQL when a private server can be started as the tests do
// (tests/support/postgres_server.h), else reported as skipped.
#include "common/result.h"
#include "sim/credentials.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lifeline::home {
class HomeService;
}

namespace lifeline::bench {

struct IngestBenchOptions {
  std::filesystem::path dir;  // work directory (SQLite files, PKI); its file system matters
  int devices = 200;          // devices the prebuilt batches come from, round robin
  int batches = 2'000;        // prebuilt batches per in-process run
  int batch_size = 100;
  int threads = 2;
  std::chrono::seconds max_run{20};  // each in-process run stops here even with batches left
  int e2e_devices = 32;
  int e2e_threads = 4;  // client threads; the home has its own (ingest.worker_threads = 2)
  std::chrono::seconds e2e_run{6};
  bool postgres = true;
};

struct IngestRun {
  bool ran = false;
  std::string note;  // why it did not run, or what went wrong
  std::uint64_t messages = 0;
  double seconds = 0;
  double per_second = 0;
  double p50_ms = 0;  // per batch (e2e: per HTTPS request)
  double p99_ms = 0;
};

struct IngestFigures {
  std::string backend;  // "SQLite", "PostgreSQL"
  std::string skipped;  // the whole backend did not run: why
  std::string where;    // the file system or the server
  IngestRun ingest;        // storm control off: every alert goes through ticket deduplication
  IngestRun ingest_storm;  // storm control at the home's default (10 alerts in 60 min)
  IngestRun raw;
  IngestRun e2e;  // the home's defaults
};

/// The mix of the prebuilt batches, for the report.
std::string IngestMix();

/// SQLite, then PostgreSQL (when options.postgres). Bounded by the options' sizes and run times.
std::vector<IngestFigures> BenchIngest(const IngestBenchOptions& options);

// ---- shared with the latency bench

/// A home in this process on loopback: a fresh PKI in `dir`, the store as `store_toml` says (the
/// body of home.toml's [store] table), email through `smtp_url` to one contact, and `devices`
/// simulated devices enrolled over HTTPS (with tokens issued through a second store handle).
struct BenchHome {
  std::unique_ptr<home::HomeService> service;
  std::string url;  // https://127.0.0.1:port
  sim::HomeTrust trust;
  std::vector<sim::DeviceCredentials> devices;
  ~BenchHome();
};
[[nodiscard]] Result<std::unique_ptr<BenchHome>> StartBenchHome(const std::filesystem::path& dir,
                                                                const std::string& store_toml,
                                                                const std::string& smtp_url, int devices,
                                                                std::string* why);

}  // namespace lifeline::bench
