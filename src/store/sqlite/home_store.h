#pragma once
// HomeStore on one SQLite file. One connection, guarded by a mutex: SQLite serialises writers
// anyway, and the home calls the store from a small blocking-work pool, never from the I/O threads.
#include "store/home_store.h"

#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>

namespace lifeline::store {

namespace sqlite {
class Database;
}

class SqliteHomeStore final : public HomeStore {
 public:
  /// Opens (creating if needed) the database at `path` and migrates it to the newest schema.
  [[nodiscard]] static Result<std::unique_ptr<SqliteHomeStore>> Open(
      const std::filesystem::path& path);
  /// The schema migrations, in order (exposed so tests can check they are idempotent).
  static std::span<const std::string_view> Migrations();

  ~SqliteHomeStore() override;

  VoidResult CreateEnrollmentToken(std::string_view token_hash,
                                   const protocol::DeviceIdentity& identity,
                                   std::int64_t expires_at_ms, std::int64_t now_ms) override;
  VoidResult Enroll(const EnrollmentRequest& request) override;

  Result<std::optional<DeviceRecord>> FindDevice(std::string_view customer, std::string_view site,
                                                 std::string_view serial) override;
  VoidResult RevokeDevice(std::string_view customer, std::string_view site,
                          std::string_view serial) override;
  Result<std::vector<DeviceRecord>> ListDevices() override;

  Result<protocol::BatchReply> IngestBatch(const IngestRequest& request) override;
  Result<std::int64_t> PruneBatchIds(std::int64_t older_than_ms) override;
  Result<std::string> QueueInstruction(const protocol::DeviceIdentity& device, std::string_view kind,
                                       std::string_view config_toml, std::int64_t now_ms) override;
  Result<std::vector<InstructionRecord>> ListInstructions(const protocol::DeviceIdentity& device) override;

  Result<std::vector<Ticket>> ListTickets(const TicketFilter& filter) override;
  Result<std::optional<TicketDetail>> GetTicket(std::string_view number) override;

  Result<std::vector<Notification>> ClaimNotifications(int limit, std::int64_t now_ms) override;
  VoidResult MarkNotificationSent(std::int64_t id, std::int64_t now_ms) override;
  VoidResult MarkNotificationFailed(std::int64_t id, std::string_view error_text,
                                    std::optional<std::int64_t> next_attempt_ms) override;

  VoidResult CreateAdminToken(std::string_view name, std::string_view token_hash,
                              std::string_view role, std::int64_t now_ms) override;
  Result<std::optional<AdminToken>> FindAdminToken(std::string_view token_hash) override;

  Result<HomeStats> Stats() override;

 private:
  explicit SqliteHomeStore(std::unique_ptr<sqlite::Database> db);

  std::mutex mutex_;  // guards db_: the connection is opened without SQLite's own mutex
  std::unique_ptr<sqlite::Database> db_;
};

}  // namespace lifeline::store
