#include "store/sqlite/database.h"

#include <fcntl.h>
#include <chrono>
#include <filesystem>
#include <thread>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <sqlite3.h>

namespace lifeline::store::sqlite {
namespace {

class SqliteCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "sqlite"; }
  std::string message(int code) const override { return sqlite3_errstr(code); }
};

}  // namespace

const std::error_category& Category() {
  static const SqliteCategory category;
  return category;
}

std::error_code MakeError(int sqlite_code) { return {sqlite_code & 0xff, Category()}; }

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), bind_error_(other.bind_error_) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = std::exchange(other.stmt_, nullptr);
    bind_error_ = other.bind_error_;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

namespace {
void Check(int rc, std::error_code* sticky) {
  if (rc != SQLITE_OK && !*sticky) {
    *sticky = MakeError(rc);
  }
}
}  // namespace

Statement& Statement::Bind(int index, std::int64_t value) {
  Check(sqlite3_bind_int64(stmt_, index, value), &bind_error_);
  return *this;
}
Statement& Statement::Bind(int index, double value) {
  Check(sqlite3_bind_double(stmt_, index, value), &bind_error_);
  return *this;
}
Statement& Statement::Bind(int index, std::string_view text) {
  Check(sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
        &bind_error_);
  return *this;
}
Statement& Statement::BindView(int index, std::string_view text) {
  // An empty view may have no data pointer, which SQLite would bind as NULL, not as ''.
  const char* data = text.data() != nullptr ? text.data() : "";
  Check(sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_STATIC, SQLITE_UTF8), &bind_error_);
  return *this;
}
Statement& Statement::Bind(int index, std::nullopt_t) {
  Check(sqlite3_bind_null(stmt_, index), &bind_error_);
  return *this;
}
Statement& Statement::BindBlob(int index, std::span<const std::uint8_t> bytes) {
  Check(sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_TRANSIENT), &bind_error_);
  return *this;
}

Result<bool> Statement::Step() {
  if (bind_error_) {
    return Fail(bind_error_);
  }
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return Fail(MakeError(rc));
}

VoidResult Statement::Run() {
  auto stepped = Step();
  if (!stepped) {
    return stepped.error();
  }
  return {};
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_error_ = {};
}

std::int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }
double Statement::Double(int column) const { return sqlite3_column_double(stmt_, column); }
std::string Statement::Text(int column) const {
  const auto* text = sqlite3_column_text(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text), size);
}
std::vector<std::uint8_t> Statement::Blob(int column) const {
  const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, column));
  const int size = sqlite3_column_bytes(stmt_, column);
  return data == nullptr ? std::vector<std::uint8_t>() : std::vector<std::uint8_t>(data, data + size);
}
bool Statement::IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

int Statement::ParameterCount() const { return sqlite3_bind_parameter_count(stmt_); }
std::string Statement::ParameterName(int index) const {
  const char* name = sqlite3_bind_parameter_name(stmt_, index);
  return name == nullptr ? std::string() : std::string(name);
}
int Statement::ColumnCount() const { return sqlite3_column_count(stmt_); }
Statement::ColumnType Statement::TypeOf(int column) const {
  switch (sqlite3_column_type(stmt_, column)) {
    case SQLITE_INTEGER:
      return ColumnType::kInteger;
    case SQLITE_FLOAT:
      return ColumnType::kReal;
    case SQLITE_TEXT:
      return ColumnType::kText;
    case SQLITE_BLOB:
      return ColumnType::kBlob;
    default:
      return ColumnType::kNull;
  }
}
bool Statement::ReadOnly() const { return sqlite3_stmt_readonly(stmt_) != 0; }

Result<std::unique_ptr<Database>> Database::Open(const std::filesystem::path& path, Options options) {
  if (options.private_file && !options.read_only) {
    std::error_code fs_ec;
    const auto dir = path.parent_path();
    if (!dir.empty() && !std::filesystem::exists(dir, fs_ec)) {
      std::filesystem::create_directories(dir, fs_ec);
      if (fs_ec) {
        return fs_ec;
      }
      ::chmod(dir.c_str(), 0700);
    }
    // Never open and close a descriptor of a file this process may already use through SQLite:
    // close() drops every POSIX lock the process holds on it, so another process's connection could
    // then checkpoint and delete the WAL under ours (seen as "database disk image is malformed" when
    // `lifeline policy tokens create` ran beside `policy run`, which opens policy.db three times).
    if (std::filesystem::exists(path, fs_ec)) {
      ::chmod(path.c_str(), 0600);  // an existing file made before with wider bits
    } else {
      const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
      if (fd < 0 && errno != EEXIST) {
        return std::error_code(errno, std::system_category());
      }
      if (fd >= 0) {
        ::close(fd);  // nobody had it open: it did not exist
      } else {
        ::chmod(path.c_str(), 0600);  // made by another process a moment ago
      }
    }
  }
  sqlite3* raw = nullptr;
  const int flags = options.read_only ? SQLITE_OPEN_READONLY
                                      : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_close(raw);
    return MakeError(rc);
  }
  std::unique_ptr<Database> db(new Database(raw, path));
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  if (!options.read_only) {
    // WAL lets readers (agent status, admin queries) run beside the writer; synchronous=FULL makes
    // every COMMIT durable before it returns, which the protocol's "committed before the reply" needs.
    for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                               "PRAGMA foreign_keys=ON"}) {
      // Switching a fresh file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once
      // (without its busy handler) when several connections make that switch together, as homes
      // starting at the same moment do: retry within the busy timeout.
      auto ok = db->Exec(pragma);
      for (int waited_ms = 0; !ok && (ok.error() == MakeError(SQLITE_BUSY) || ok.error() == MakeError(SQLITE_LOCKED)) &&
                              waited_ms < options.busy_timeout_ms;
           waited_ms += 10) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        ok = db->Exec(pragma);
      }
      if (!ok) {
        return ok.error();
      }
    }
  }
  return db;
}

Database::~Database() { sqlite3_close_v2(db_); }

VoidResult Database::Exec(std::string_view sql) {
  const std::string text(sql);
  const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    return MakeError(rc);
  }
  return {};
}

Result<Statement> Database::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return MakeError(rc);
  }
  return Statement(db_, stmt);
}

Result<Statement> Database::PreparePersistent(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                    &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return MakeError(rc);
  }
  return Statement(db_, stmt);
}

VoidResult Database::Migrate(std::span<const std::string_view> steps) {
  auto version_stmt = Prepare("PRAGMA user_version");
  if (!version_stmt) {
    return version_stmt.error();
  }
  auto row = version_stmt->Step();
  if (!row) {
    return row.error();
  }
  const auto current = static_cast<std::size_t>(version_stmt->Int(0));
  for (std::size_t v = current; v < steps.size(); ++v) {
    auto applied = Transaction([&]() -> VoidResult {
      if (auto ok = Exec(steps[v]); !ok) {
        return ok;
      }
      return Exec(fmt::format("PRAGMA user_version = {}", v + 1));
    });
    if (!applied) {
      return applied;
    }
  }
  return {};
}

std::int64_t Database::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
int Database::Changes() const { return sqlite3_changes(db_); }
std::string Database::LastErrorMessage() const { return sqlite3_errmsg(db_); }
int Database::LastExtendedErrorCode() const { return sqlite3_extended_errcode(db_); }
bool Database::InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

}  // namespace lifeline::store::sqlite
