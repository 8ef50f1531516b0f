#pragma once
// The relay's durable queue: batches the site's agents sent through the gateway, kept until the home
// has answered them. One SQLite file (<data_dir>/relay.db, WAL, synchronous=FULL): Add returns only
// once the batch is on disk, so a batch the gateway answered 202 for survives a crash or restart.
// The gateway never opens a batch: it stores the sealed envelope as it came, with the device's
// verified client certificate, which the home checks again when the batch is forwarded.
#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::store::sqlite {
class Database;
}

namespace lifeline::gateway {

struct RelayBatch {
  std::int64_t id = 0;            // queue order: oldest first
  std::string device;             // customer/site/serial, for log lines
  std::string device_cert_pem;    // the device's client certificate, as the gateway verified it
  std::string body;               // the sealed envelope, byte for byte
  std::int64_t received_at_ms = 0;
  std::int64_t attempts = 0;
  std::int64_t next_attempt_ms = 0;  // a batch the home refused waits until then
};

class RelayQueue {
 public:
  /// Opens or creates `path`; `max_bytes` bounds the stored batches (bodies and certificates).
  [[nodiscard]] static Result<std::unique_ptr<RelayQueue>> Open(const std::filesystem::path& path,
                                                                std::int64_t max_bytes);
  ~RelayQueue();

  /// Stores a batch durably and returns its id. std::errc::no_buffer_space when it would take the
  /// queue over its budget (nothing stored: the device keeps the batch and tries again).
  [[nodiscard]] Result<std::int64_t> Add(const std::string& device, const std::string& device_cert_pem,
                                         const std::string& body, std::int64_t now_ms);
  /// The oldest batch due at `now_ms` (next_attempt_ms <= now_ms), if any.
  [[nodiscard]] Result<std::optional<RelayBatch>> NextDue(std::int64_t now_ms);
  /// Forgets a batch the home answered (or that is otherwise done).
  [[nodiscard]] VoidResult Remove(std::int64_t id);
  /// Counts a failed attempt and lets the batch wait until `next_attempt_ms`.
  [[nodiscard]] VoidResult Defer(std::int64_t id, std::int64_t next_attempt_ms);
  /// Batches held, and their bytes.
  std::int64_t Count() const;
  std::int64_t Bytes() const;
  /// The earliest next_attempt_ms of any batch (nullopt: empty), for the forwarder's sleep.
  [[nodiscard]] Result<std::optional<std::int64_t>> EarliestDue();

 private:
  RelayQueue(std::unique_ptr<store::sqlite::Database> db, std::int64_t max_bytes);
  mutable std::mutex mutex_;
  std::unique_ptr<store::sqlite::Database> db_;
  std::int64_t max_bytes_;
  std::int64_t count_ = 0;
  std::int64_t bytes_ = 0;
};

}  // namespace lifeline::gateway
