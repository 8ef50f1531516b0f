#pragma once
// HomeStore over the SQL seam (store/sql/session.h): one implementation for SQLite (the embedded
// default) and PostgreSQL (several home processes sharing one database). Each operation is written
// once, in SQL that both backends run; the schema is the only place with per-backend text
// (store/home_schema.cpp).
//
// Concurrency: every operation is one transaction. IngestBatch locks the device's row first
// (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE locks the whole file), so the batches
// of one device are applied one after the other, in whichever process: the replay check, message-id
// idempotence and "one open ticket per device and alert code" (also a partial unique index) hold
// across processes. Serialization failures and deadlocks are retried by sql::Database::Transaction.
// The ticket rules (open, join, reopen, resolve, notify) are in sql_tickets.h; engineers' changes,
// escalation and maintenance windows in sql_home_store_tickets.cpp.
#include "store/home_store.h"
#include "store/sql/database.h"
#include "store/sql/migrate.h"

#include <filesystem>
#include <memory>
#include <span>
#include <string>

namespace lifeline::store {

/// Which database a home uses, as [store] in home.toml says.
struct HomeStoreOptions {
  sql::Backend backend = sql::Backend::kSqlite;
  std::filesystem::path sqlite_path;  // SQLite: the database file
  std::string postgres_conninfo;      // PostgreSQL: libpq connection string or URI (a secret)
  int postgres_pool_size = 4;         // PostgreSQL: most connections this process opens
};

class SqlHomeStore final : public HomeStore, public HeartbeatRetentionStore {
 public:
  /// Migrates `db` to the newest schema and serves the store from it.
  [[nodiscard]] static Result<std::unique_ptr<SqlHomeStore>> Open(std::shared_ptr<sql::Database> db);
  /// Opens the configured backend (connecting to PostgreSQL or creating the SQLite file), then as above.
  [[nodiscard]] static Result<std::unique_ptr<SqlHomeStore>> Open(const HomeStoreOptions& options);
  /// The embedded default: one SQLite file at `path`, created when missing.
  [[nodiscard]] static Result<std::unique_ptr<SqlHomeStore>> Open(const std::filesystem::path& path);
  /// The schema migrations, in order (exposed so tests can check they are idempotent).
  static std::span<const sql::Migration> Migrations();

  ~SqlHomeStore() override;

  /// The database underneath, for tests and tools that read it directly.
  sql::Database& database() { return *db_; }

  VoidResult CreateEnrollmentToken(std::string_view token_hash, const protocol::DeviceIdentity& identity,
                                   std::int64_t expires_at_ms, std::int64_t now_ms,
                                   EnrollmentKind kind = EnrollmentKind::kDevice) override;
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
  Result<Ticket> ChangeTicket(const TicketChange& change) override;
  Result<std::vector<EscalationCandidate>> ListEscalationCandidates(std::int64_t now_ms, std::int64_t after_id,
                                                                    int limit) override;
  Result<bool> Escalate(const EscalationStep& step, std::int64_t now_ms, const NotifyPlanner& planner) override;
  Result<MaintenanceWindow> AddMaintenanceWindow(MaintenanceWindow window, std::int64_t now_ms) override;
  Result<std::vector<MaintenanceWindow>> ListMaintenanceWindows(const MaintenanceFilter& filter) override;
  Result<MaintenanceWindow> EndMaintenanceWindow(std::int64_t id, std::string_view actor,
                                                 std::int64_t now_ms) override;
  Result<std::vector<InventoryRecord>> LatestInventory(const std::optional<protocol::DeviceIdentity>& device) override;
  Result<std::vector<Notification>> ListNotifications(const NotificationFilter& filter) override;

  Result<std::vector<Notification>> ClaimNotifications(int limit, std::int64_t now_ms) override;
  VoidResult MarkNotificationSent(std::int64_t id, std::int64_t now_ms) override;
  VoidResult MarkNotificationFailed(std::int64_t id, std::string_view error_text,
                                    std::optional<std::int64_t> next_attempt_ms) override;

  VoidResult CreateAdminToken(std::string_view name, std::string_view token_hash, std::string_view role,
                              std::int64_t now_ms) override;
  Result<std::optional<AdminToken>> FindAdminToken(std::string_view token_hash) override;

  Result<HomeStats> Stats() override;

  // ---- Heartbeats and retention (sql_home_store_heartbeats.cpp)
  Result<HeartbeatState> LoadHeartbeatState() override;
  Result<std::optional<std::int64_t>> DeviceRowId(const protocol::DeviceIdentity& device) override;
  Result<std::vector<HeartbeatApplied>> ApplyHeartbeatChanges(const std::vector<HeartbeatChange>& changes,
                                                              const HeartbeatTicketOptions& options,
                                                              std::int64_t now_ms) override;
  Result<bool> ResolveHeartbeatTicket(std::int64_t device_id, std::string_view reason,
                                      const HeartbeatTicketOptions& options, std::int64_t now_ms) override;
  Result<std::vector<RetentionItem>> PreviewRetention(const RetentionPolicy& policy, std::int64_t now_ms) override;
  Result<std::vector<RetentionItem>> ApplyRetention(const RetentionPolicy& policy, std::int64_t now_ms,
                                                    const std::function<bool()>& keep_going) override;
  Result<bool> ClaimJob(std::string_view job, std::string_view holder, std::int64_t due_since_ms,
                        std::int64_t lease_until_ms, std::int64_t now_ms) override;
  VoidResult FinishJob(std::string_view job, std::string_view holder, bool succeeded, std::string_view result,
                       std::int64_t now_ms) override;
  Result<JobStatus> GetJobStatus(std::string_view job) override;

 private:
  explicit SqlHomeStore(std::shared_ptr<sql::Database> db) : db_(std::move(db)) {}

  std::shared_ptr<sql::Database> db_;
};

}  // namespace lifeline::store
