#include "store/sqlite/sql_session.h"

#include "common/log.h"
#include "store/sqlite/database.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace lifeline::store::sqlite {
namespace {

using sql::Errc;

/// Copies committed WAL frames into the database file on its own connection and thread, so the
/// writer (one connection, one core) spends its time on transactions instead of checkpoints: SQLite's
/// automatic checkpoint runs inside the COMMIT of whichever batch crossed the threshold, on the
/// writer's connection. Nudged after each commit; runs a PASSIVE checkpoint (which never waits for
/// and never blocks the writer or readers) at most every kPause, and sleeps while nothing is written.
/// The writer keeps SQLite's own checkpoint as a backstop at kWriterCheckpointPages: under constant
/// writes a background checkpoint rarely catches the WAL with nothing new in it, and only a
/// checkpoint by the writer between two of its transactions lets the WAL start over.
class Checkpointer {
 public:
  static constexpr auto kPause = std::chrono::milliseconds(50);

  explicit Checkpointer(std::filesystem::path path) : path_(std::move(path)), thread_([this] { Run(); }) {}
  ~Checkpointer() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  /// Something was committed.
  void Nudge() {
    {
      std::lock_guard lock(mutex_);
      if (written_) {
        return;
      }
      written_ = true;
    }
    changed_.notify_one();
  }

 private:
  void Run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [this] { return stop_ || written_; });
      // Let a few commits gather: one checkpoint then copies each page they share once.
      if (changed_.wait_for(lock, kPause, [this] { return stop_; })) {
        return;
      }
      written_ = false;
      lock.unlock();
      Checkpoint();
      lock.lock();
    }
  }

  void Checkpoint() {
    // Connected at the first commit, not with the writer: homes opening one new file at once would
    // otherwise race twice as many connections for the switch to WAL.
    if (!db_) {
      auto opened = Database::Open(path_);
      if (!opened) {
        Failed(opened.error().message());
        return;
      }
      db_ = std::move(*opened);
    }
    if (auto done = db_->Exec("PRAGMA wal_checkpoint(PASSIVE)"); !done) {
      Failed(db_->LastErrorMessage());
      return;
    }
    failed_before_ = false;
  }

  /// The writer's own checkpoints still run; says why this one did not, once until one succeeds.
  void Failed(const std::string& why) {
    if (!failed_before_) {
      log::Get("store")->warn("background checkpoint of {} failed: {}", path_.string(), why);
    }
    failed_before_ = true;
  }

  const std::filesystem::path path_;
  std::unique_ptr<Database> db_;  // these two: only the checkpoint thread touches them
  bool failed_before_ = false;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool stop_ = false;
  bool written_ = false;
  std::thread thread_;  // last: starts once everything above is ready
};

/// The writer's own checkpoint threshold, in pages (SQLite's default is 1000): about 40 MiB of WAL
/// with 4 KiB pages. A backstop for the Checkpointer, which copies most frames before it is reached.
constexpr int kWriterCheckpointPages = 10000;

class SqliteSession final : public sql::Session {
 public:
  SqliteSession(std::unique_ptr<Database> db, std::shared_ptr<Checkpointer> checkpointer)
      : db_(std::move(db)), checkpointer_(std::move(checkpointer)) {}

  sql::Backend backend() const override { return sql::Backend::kSqlite; }

  Result<std::int64_t> ExecuteParams(std::string_view sql,
                                     std::span<const sql::Value> params) override {
    auto cached = PrepareBound(sql, params);
    if (!cached) {
      return cached.error();
    }
    const Resetter done(*cached);
    Statement& stmt = (*cached)->stmt;
    for (;;) {
      auto row = stmt.Step();
      if (!row) {
        return Failed(row.error());
      }
      if (!*row) {
        break;
      }
    }
    return (*cached)->read_only ? 0 : static_cast<std::int64_t>(db_->Changes());
  }

  Result<sql::Rows> QueryParams(std::string_view sql, std::span<const sql::Value> params) override {
    auto cached = PrepareBound(sql, params);
    if (!cached) {
      return cached.error();
    }
    const Resetter done(*cached);
    Statement& stmt = (*cached)->stmt;
    sql::Rows rows;
    for (;;) {
      auto row = stmt.Step();
      if (!row) {
        return Failed(row.error());
      }
      if (!*row) {
        return rows;
      }
      const int columns = stmt.ColumnCount();
      std::vector<sql::Row::Cell> cells;
      cells.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        switch (stmt.TypeOf(c)) {
          case Statement::ColumnType::kInteger:
            cells.emplace_back(stmt.Int(c));
            break;
          case Statement::ColumnType::kReal:
            cells.emplace_back(stmt.Double(c));
            break;
          case Statement::ColumnType::kText:
          case Statement::ColumnType::kBlob:
            cells.emplace_back(stmt.Text(c));
            break;
          case Statement::ColumnType::kNull:
            cells.emplace_back(std::monostate());
            break;
        }
      }
      rows.emplace_back(std::move(cells));
    }
  }

  VoidResult ExecScript(std::string_view sql) override {
    if (auto ran = db_->Exec(sql); !ran) {
      return Failed(ran.error());
    }
    return {};
  }

  VoidResult Begin(sql::TxMode mode) override {
    // IMMEDIATE takes the write lock before the first read, so a read-then-write body never meets
    // another writer halfway (SQLite would answer BUSY instead of waiting).
    return RunCached(mode == sql::TxMode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN");
  }
  VoidResult Commit() override {
    auto committed = RunCached("COMMIT");
    if (committed) {
      checkpointer_->Nudge();
    }
    return committed;
  }
  void Rollback() override {
    if (db_->InTransaction()) {
      if (auto rolled = db_->Exec("ROLLBACK"); !rolled) {
        log::Get("store")->warn("rollback on {} failed: {}", db_->path().string(), db_->LastErrorMessage());
      }
    }
  }
  bool Healthy() const override { return !db_->InTransaction(); }
  bool InTransaction() const override { return db_->InTransaction(); }

 private:
  /// A statement kept prepared for the life of the connection, with what binding it needs.
  struct Cached {
    Statement stmt;
    /// For SQLite's parameter index i (from 1), the seam's $N at positions[i - 1]: SQLite numbers
    /// $N parameters in order of first appearance, not by N, so each is looked up by name once.
    std::vector<std::size_t> positions;
    bool read_only = false;
    std::uint64_t last_used = 0;
  };

  /// Resets a cached statement when a call is done with it (rows read, or failed), so it holds no
  /// read snapshot or bound text between calls and is ready for the next one.
  class Resetter {
   public:
    explicit Resetter(Cached* cached) : cached_(cached) {}
    Resetter(const Resetter&) = delete;
    ~Resetter() { cached_->stmt.Reset(); }

   private:
    Cached* cached_;
  };

  /// Enough for every statement text the store writes (a few dozen, some formatted per backend or
  /// per filter), so a steady workload prepares nothing; the bound only matters for a caller that
  /// builds texts without end.
  static constexpr std::size_t kCacheCapacity = 256;

  struct TextHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>()(text); }
  };

  /// The cached statement for `sql`, prepared on first use (the least recently used one makes room).
  Result<Cached*> Lookup(std::string_view sql) {
    ++uses_;
    if (auto it = cache_.find(sql); it != cache_.end()) {
      it->second.last_used = uses_;
      return &it->second;
    }
    auto stmt = db_->PreparePersistent(sql);
    if (!stmt) {
      return Failed(stmt.error());
    }
    Cached cached{std::move(*stmt), {}, false, uses_};
    cached.read_only = cached.stmt.ReadOnly();
    const int count = cached.stmt.ParameterCount();
    cached.positions.reserve(static_cast<std::size_t>(count));
    for (int index = 1; index <= count; ++index) {
      const std::string name = cached.stmt.ParameterName(index);
      std::size_t position = static_cast<std::size_t>(index);
      if (!name.empty()) {
        const char* digits = name.data() + 1;
        const auto [end, ec] = std::from_chars(digits, name.data() + name.size(), position);
        if (name[0] != '$' || ec != std::errc() || end != name.data() + name.size() || position == 0) {
          return Misuse(fmt::format("parameter {} is not of the form $N", name));
        }
      }
      cached.positions.push_back(position);
    }
    if (cache_.size() >= kCacheCapacity) {
      auto oldest = std::min_element(cache_.begin(), cache_.end(), [](const auto& a, const auto& b) {
        return a.second.last_used < b.second.last_used;
      });
      cache_.erase(oldest);
    }
    return &cache_.emplace(std::string(sql), std::move(cached)).first->second;
  }

  /// The cached statement for `sql` with `params` bound. Text is bound in place (the Values' text
  /// outlives the call, and the Resetter clears the bindings before the call returns).
  Result<Cached*> PrepareBound(std::string_view sql, std::span<const sql::Value> params) {
    auto cached = Lookup(sql);
    if (!cached) {
      return cached.error();
    }
    Statement& stmt = (*cached)->stmt;
    const auto& positions = (*cached)->positions;
    for (std::size_t i = 0; i < positions.size(); ++i) {
      const std::size_t position = positions[i];
      if (position > params.size()) {
        stmt.Reset();
        return Misuse(fmt::format("statement wants parameter ${}, {} given", position, params.size()));
      }
      const int index = static_cast<int>(i + 1);
      const sql::Value& value = params[position - 1];
      if (value.is_null()) {
        stmt.Bind(index, std::nullopt);
      } else if (value.type() == sql::Type::kInt) {
        stmt.Bind(index, value.int_value());
      } else if (value.type() == sql::Type::kReal) {
        stmt.Bind(index, value.real_value());
      } else {
        stmt.BindView(index, value.text_value());
      }
    }
    return cached;
  }

  /// Runs a statement without parameters or rows (BEGIN, COMMIT) from the cache.
  VoidResult RunCached(std::string_view sql) {
    auto ran = ExecuteParams(sql, {});
    if (!ran) {
      return ran.error();
    }
    return {};
  }

  /// Sorts a SQLite error into the seam's codes and keeps SQLite's message for the log.
  Failure Failed(const std::error_code& ec) {
    sql::SetLastErrorDetail("sqlite: " + db_->LastErrorMessage());
    const int primary = ec.category() == Category() ? ec.value() : SQLITE_ERROR;
    switch (primary) {
      case SQLITE_CONSTRAINT: {
        const int extended = db_->LastExtendedErrorCode();
        return Fail(extended == SQLITE_CONSTRAINT_UNIQUE || extended == SQLITE_CONSTRAINT_PRIMARYKEY
                        ? make_error_code(Errc::kUniqueViolation)
                        : make_error_code(Errc::kConstraintViolation));
      }
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return Fail(make_error_code(Errc::kBusy));
      case SQLITE_CANTOPEN:
      case SQLITE_NOTADB:
        return Fail(make_error_code(Errc::kConnectionFailed));
      default:
        return Fail(make_error_code(Errc::kStatementFailed));
    }
  }

  static Failure Misuse(std::string detail) {
    sql::SetLastErrorDetail("sqlite: " + detail);
    return Fail(make_error_code(Errc::kStatementFailed));
  }

  std::unique_ptr<Database> db_;
  std::shared_ptr<Checkpointer> checkpointer_;
  // After db_, so the statements are finalized before the connection closes.
  std::unordered_map<std::string, Cached, TextHash, std::equal_to<>> cache_;
  std::uint64_t uses_ = 0;
};

/// Opens a connection to the home's file, failing with the seam's error and SQLite's reason.
Result<std::unique_ptr<Database>> OpenFile(const std::filesystem::path& path, const Database::Options& options) {
  auto db = Database::Open(path, options);
  if (!db) {
    sql::SetLastErrorDetail(fmt::format("sqlite: cannot open {}: {}", path.string(), db.error().message()));
    return Fail(make_error_code(Errc::kConnectionFailed));
  }
  return db;
}

/// The store's session on an open connection.
Result<std::unique_ptr<sql::Session>> StoreSession(std::unique_ptr<Database> db,
                                                   const std::shared_ptr<Checkpointer>& checkpointer) {
  if (auto set = db->Exec(fmt::format("PRAGMA wal_autocheckpoint = {}", kWriterCheckpointPages)); !set) {
    sql::SetLastErrorDetail("sqlite: " + db->LastErrorMessage());
    return Fail(make_error_code(Errc::kConnectionFailed));
  }
  return std::unique_ptr<sql::Session>(new SqliteSession(std::move(db), checkpointer));
}

/// SQLite counts every allocation it makes under a global mutex (for sqlite3_memory_used and heap
/// limits, which Lifeline does not use); measured, that costs ingest about 4%. Turned off before the
/// process's first connection; later it cannot be (sqlite3_config refuses once SQLite is initialised)
/// and nothing changes.
void StopMemoryAccounting() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

}  // namespace

Result<std::shared_ptr<sql::Database>> OpenSqlDatabase(const std::filesystem::path& path) {
  return OpenSqlDatabase(path, Database::Options{});
}

Result<std::shared_ptr<sql::Database>> OpenSqlDatabase(const std::filesystem::path& path, Database::Options options) {
  StopMemoryAccounting();
  // The writer's connection first, so a bad path fails here rather than at the first request.
  auto writer = OpenFile(path, options);
  if (!writer) {
    return writer.error();
  }
  auto checkpointer = std::make_shared<Checkpointer>(path);
  auto session = StoreSession(std::move(*writer), checkpointer);
  if (!session) {
    return session.error();
  }
  auto reconnect = [path, options, checkpointer]() -> Result<std::unique_ptr<sql::Session>> {
    auto db = OpenFile(path, options);
    if (!db) {
      return db.error();
    }
    return StoreSession(std::move(*db), checkpointer);
  };
  auto database = std::make_shared<sql::Database>(sql::Backend::kSqlite, std::move(reconnect), 1,
                                                  "SQLite " + path.string());
  database->Adopt(std::move(*session));
  return database;
}

}  // namespace lifeline::store::sqlite
