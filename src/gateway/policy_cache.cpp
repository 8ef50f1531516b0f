#include "gateway/policy_cache.h"

#include "common/log.h"
#include "crypto/keys.h"
#include "policy/policy_json.h"
#include "store/sqlite/database.h"

#include <array>
#include <string_view>

namespace lifeline::gateway {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("gateway"); }

constexpr std::array<std::string_view, 1> kMigrations = {
    R"sql(
CREATE TABLE policy (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  version INTEGER NOT NULL,
  json TEXT NOT NULL
);
CREATE TABLE state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  record_id TEXT NOT NULL UNIQUE,
  time_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL,
  subject TEXT NOT NULL,
  details TEXT NOT NULL
);
)sql"};

}  // namespace

std::string NewAuditRecordId() { return crypto::RandomHex(16); }

Result<std::unique_ptr<PolicyCache>> PolicyCache::Open(const std::filesystem::path& path) {
  // The outbox is part of the audit trail: readable by the gateway's user only.
  auto db = store::sqlite::Database::Open(path, {.private_file = true});
  if (!db) {
    Log()->error("cannot open the policy cache {}: {}", path.string(), db.error().message());
    return db.error();
  }
  if (auto migrated = (*db)->Migrate(kMigrations); !migrated) {
    Log()->error("cannot prepare the policy cache {}: {}", path.string(), (*db)->LastErrorMessage());
    return migrated.error();
  }
  std::unique_ptr<PolicyCache> cache(new PolicyCache(std::move(*db)));
  if (auto loaded = cache->Load(); !loaded) {
    return loaded.error();
  }
  return cache;
}

namespace {
std::uint64_t NextCacheInstance() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

PolicyCache::PolicyCache(std::unique_ptr<store::sqlite::Database> db)
    : db_(std::move(db)), instance_(NextCacheInstance()) {}
PolicyCache::~PolicyCache() = default;

VoidResult PolicyCache::Load() {
  std::lock_guard lock(mutex_);
  auto state = db_->Prepare("SELECT key, value FROM state");
  if (!state) {
    return state.error();
  }
  while (true) {
    auto row = state->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      break;
    }
    const std::string key = state->Text(0);
    if (key == "synced_ms") {
      synced_ms_ = state->Int(1);
    } else if (key == "cursor") {
      cursor_ = state->Int(1);
    }
  }
  auto select = db_->Prepare("SELECT version, json FROM policy WHERE id = 1");
  if (!select) {
    return select.error();
  }
  auto row = select->Step();
  if (!row) {
    return row.error();
  }
  if (!*row) {
    return {};
  }
  const auto version = select->Int(0);
  std::string why;
  auto set = policy::DecodePolicySet(select->Text(1), &why);
  if (set) {
    set->version = static_cast<std::uint64_t>(version);
    auto compiled = policy::CompiledPolicy::Compile(std::move(*set), &why);
    if (compiled) {
      current_ = std::move(*compiled);
      generation_.fetch_add(1, std::memory_order_release);
      return {};
    }
  }
  // Written by this gateway after it compiled, so only a newer build's stricter checks get here.
  Log()->error("the cached policy version {} in {} cannot be used ({}); sessions are refused until the policy "
               "manager sends a policy",
               version, db_->path().string(), why);
  return {};
}

std::shared_ptr<const policy::CompiledPolicy> PolicyCache::Current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

std::optional<policy::Decision> PolicyCache::Decide(const policy::DecisionRequest& request,
                                                    std::uint64_t* version) const {
  struct Snapshot {
    std::uint64_t instance = 0;
    std::uint64_t generation = 0;
    std::shared_ptr<const policy::CompiledPolicy> policy;
  };
  thread_local Snapshot snapshot;
  const std::uint64_t generation = generation_.load(std::memory_order_acquire);
  if (snapshot.instance != instance_ || snapshot.generation != generation) {
    std::lock_guard lock(mutex_);
    snapshot.policy = current_;
    snapshot.instance = instance_;
    snapshot.generation = generation_.load(std::memory_order_relaxed);
  }
  if (!snapshot.policy) {
    return std::nullopt;
  }
  if (version != nullptr) {
    *version = snapshot.policy->version();
  }
  return snapshot.policy->Decide(request);
}

std::uint64_t PolicyCache::Version() const {
  std::lock_guard lock(mutex_);
  return current_ ? current_->version() : 0;
}

Result<bool> PolicyCache::Offer(policy::PolicySet set, std::string* why) {
  const std::uint64_t version = set.version;
  {
    std::lock_guard lock(mutex_);
    if (current_ && current_->version() >= version) {
      return false;
    }
  }
  const std::string json = policy::EncodePolicySet(set);
  auto compiled = policy::CompiledPolicy::Compile(std::move(set), why);
  if (!compiled) {
    return Fail(compiled.error());
  }
  std::lock_guard lock(mutex_);
  if (current_ && current_->version() >= version) {
    return false;  // a newer one arrived meanwhile
  }
  auto upsert = db_->Prepare(
      "INSERT INTO policy (id, version, json) VALUES (1, ?1, ?2) "
      "ON CONFLICT (id) DO UPDATE SET version = ?1, json = ?2 WHERE ?1 > policy.version");
  if (!upsert) {
    return Fail(upsert.error());
  }
  if (auto done = upsert->BindAll(static_cast<std::int64_t>(version), json).Run(); !done) {
    Log()->error("cannot store policy version {}: {}", version, db_->LastErrorMessage());
    return Fail(done.error());
  }
  current_ = std::move(*compiled);
  generation_.fetch_add(1, std::memory_order_release);
  return true;
}

VoidResult PolicyCache::PutState(const char* key, std::int64_t value) {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)");
  if (!stmt) {
    return stmt.error();
  }
  if (auto done = stmt->BindAll(std::string_view(key), value).Run(); !done) {
    Log()->error("cannot save {} in the policy cache: {}", key, db_->LastErrorMessage());
    return done.error();
  }
  return {};
}

VoidResult PolicyCache::SetSyncedMs(std::int64_t ms) {
  auto done = PutState("synced_ms", ms);
  if (done) {
    synced_ms_.store(ms, std::memory_order_release);
  }
  return done;
}

VoidResult PolicyCache::SetCursor(std::int64_t cursor) {
  auto done = PutState("cursor", cursor);
  if (done) {
    cursor_.store(cursor, std::memory_order_release);
  }
  return done;
}

VoidResult PolicyCache::Append(const AuditRecord& r) {
  {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare(
        "INSERT INTO outbox (record_id, time_ms, kind, actor, subject, details) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (record_id) DO NOTHING");
    if (!stmt) {
      return stmt.error();
    }
    if (auto done = stmt->BindAll(r.record_id, r.time_ms, r.kind, r.actor, r.subject, r.details_json).Run();
        !done) {
      Log()->error("cannot queue the audit record {} ({}): {}", r.record_id, r.kind, db_->LastErrorMessage());
      return done.error();
    }
  }
  std::function<void()> listener;
  {
    std::lock_guard lock(listener_mutex_);
    listener = append_listener_;
  }
  if (listener) {
    listener();
  }
  return {};
}

Result<std::vector<AuditRecord>> PolicyCache::OldestRecords(std::size_t limit) const {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare(
      "SELECT record_id, time_ms, kind, actor, subject, details FROM outbox ORDER BY seq LIMIT ?");
  if (!stmt) {
    return stmt.error();
  }
  stmt->BindAll(static_cast<std::int64_t>(limit));
  std::vector<AuditRecord> out;
  while (true) {
    auto row = stmt->Step();
    if (!row) {
      return row.error();
    }
    if (!*row) {
      break;
    }
    out.push_back(AuditRecord{stmt->Text(0), stmt->Int(1), stmt->Text(2), stmt->Text(3), stmt->Text(4),
                              stmt->Text(5)});
  }
  return out;
}

VoidResult PolicyCache::MarkDelivered(const std::vector<std::string>& record_ids) {
  std::lock_guard lock(mutex_);
  return db_->Transaction([&]() -> VoidResult {
    auto stmt = db_->Prepare("DELETE FROM outbox WHERE record_id = ?");
    if (!stmt) {
      return stmt.error();
    }
    for (const auto& id : record_ids) {
      stmt->Reset();
      if (auto done = stmt->BindAll(id).Run(); !done) {
        return done.error();
      }
    }
    return {};
  });
}

Result<std::size_t> PolicyCache::OutboxSize() const {
  std::lock_guard lock(mutex_);
  auto stmt = db_->Prepare("SELECT COUNT(*) FROM outbox");
  if (!stmt) {
    return stmt.error();
  }
  auto row = stmt->Step();
  if (!row) {
    return row.error();
  }
  return static_cast<std::size_t>(*row ? stmt->Int(0) : 0);
}

void PolicyCache::SetAppendListener(std::function<void()> listener) {
  std::lock_guard lock(listener_mutex_);
  append_listener_ = std::move(listener);
}

}  // namespace lifeline::gateway
