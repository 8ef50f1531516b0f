#include "gateway/relay_queue.h"

#include "store/sqlite/database.h"

#include <array>
#include <string_view>

namespace lifeline::gateway {
namespace {

constexpr std::array<std::string_view, 1> kSchema = {R"sql(
CREATE TABLE relay_batches (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  device           TEXT NOT NULL,
  device_cert_pem  TEXT NOT NULL,
  body             BLOB NOT NULL,
  bytes            INTEGER NOT NULL,
  received_at_ms   INTEGER NOT NULL,
  attempts         INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms  INTEGER NOT NULL DEFAULT 0
);
)sql"};

std::span<const std::uint8_t> AsBlob(const std::string& text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace

RelayQueue::RelayQueue(std::unique_ptr<store::sqlite::Database> db, std::int64_t max_bytes)
    : db_(std::move(db)), max_bytes_(max_bytes) {}

RelayQueue::~RelayQueue() = default;

Result<std::unique_ptr<RelayQueue>> RelayQueue::Open(const std::filesystem::path& path, std::int64_t max_bytes) {
  auto db = store::sqlite::Database::Open(path);  // WAL, synchronous=FULL
  if (!db) {
    return db.error();
  }
  if (auto migrated = (*db)->Migrate(kSchema); !migrated) {
    return migrated.error();
  }
  std::unique_ptr<RelayQueue> queue(new RelayQueue(std::move(*db), max_bytes));
  auto totals = queue->db_->Prepare("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM relay_batches");
  if (!totals) {
    return totals.error();
  }
  auto row = totals->Step();
  if (!row) {
    return row.error();
  }
  queue->count_ = totals->Int(0);
  queue->bytes_ = totals->Int(1);
  return queue;
}

Result<std::int64_t> RelayQueue::Add(const std::string& device, const std::string& device_cert_pem,
                                     const std::string& body, std::int64_t now_ms) {
  const std::int64_t size = static_cast<std::int64_t>(body.size() + device_cert_pem.size() + device.size());
  std::lock_guard lock(mutex_);
  if (bytes_ + size > max_bytes_) {
    return std::make_error_code(std::errc::no_buffer_space);
  }
  auto insert = db_->Prepare(
      "INSERT INTO relay_batches (device, device_cert_pem, body, bytes, received_at_ms) VALUES (?, ?, ?, ?, ?)");
  if (!insert) {
    return insert.error();
  }
  insert->Bind(1, device).Bind(2, device_cert_pem).BindBlob(3, AsBlob(body)).Bind(4, size).Bind(5, now_ms);
  if (auto ran = insert->Run(); !ran) {
    return ran.error();
  }
  ++count_;
  bytes_ += size;
  return db_->LastInsertRowId();
}

Result<std::optional<RelayBatch>> RelayQueue::NextDue(std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto select = db_->Prepare(
      "SELECT id, device, device_cert_pem, body, received_at_ms, attempts, next_attempt_ms FROM relay_batches "
      "WHERE next_attempt_ms <= ? ORDER BY id LIMIT 1");
  if (!select) {
    return select.error();
  }
  select->Bind(1, now_ms);
  auto row = select->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return std::optional<RelayBatch>();
  }
  RelayBatch batch;
  batch.id = select->Int(0);
  batch.device = select->Text(1);
  batch.device_cert_pem = select->Text(2);
  const auto blob = select->Blob(3);
  batch.body.assign(blob.begin(), blob.end());
  batch.received_at_ms = select->Int(4);
  batch.attempts = select->Int(5);
  batch.next_attempt_ms = select->Int(6);
  return std::optional<RelayBatch>(std::move(batch));
}

VoidResult RelayQueue::Remove(std::int64_t id) {
  std::lock_guard lock(mutex_);
  auto size = db_->Prepare("SELECT bytes FROM relay_batches WHERE id = ?");
  if (!size) {
    return size.error();
  }
  size->Bind(1, id);
  auto row = size->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return {};
  }
  const std::int64_t bytes = size->Int(0);
  size->Reset();
  auto remove = db_->Prepare("DELETE FROM relay_batches WHERE id = ?");
  if (!remove) {
    return remove.error();
  }
  remove->Bind(1, id);
  if (auto ran = remove->Run(); !ran) {
    return ran.error();
  }
  --count_;
  bytes_ -= bytes;
  return {};
}

VoidResult RelayQueue::Defer(std::int64_t id, std::int64_t next_attempt_ms) {
  std::lock_guard lock(mutex_);
  auto update =
      db_->Prepare("UPDATE relay_batches SET attempts = attempts + 1, next_attempt_ms = ? WHERE id = ?");
  if (!update) {
    return update.error();
  }
  update->Bind(1, next_attempt_ms).Bind(2, id);
  return update->Run();
}

Result<std::optional<std::int64_t>> RelayQueue::EarliestDue() {
  std::lock_guard lock(mutex_);
  auto select = db_->Prepare("SELECT MIN(next_attempt_ms) FROM relay_batches");
  if (!select) {
    return select.error();
  }
  auto row = select->Step();
  if (!row) {
    return row.error();
  }
  if (!*row || select->IsNull(0)) {
    return std::optional<std::int64_t>();
  }
  return std::optional<std::int64_t>(select->Int(0));
}

std::int64_t RelayQueue::Count() const {
  std::lock_guard lock(mutex_);
  return count_;
}

std::int64_t RelayQueue::Bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

}  // namespace lifeline::gateway
