// The SQL seam under the home's store (store/sql): the drivers' statement caches and
// Database::GroupTransaction (group commit), on SQLite and on a real PostgreSQL server this binary
// starts (tests/support/postgres_server.h).
#include "store/home_store.h"
#include "store/postgres/session.h"
#include "store/sql/database.h"
#include "store/sqlite/sql_session.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <thread>
#include <vector>

namespace lifeline::store {
namespace {

using sql::Session;

[[maybe_unused]] auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new testing::PostgresEnvironment);

/// Both backends, each on a fresh database with a table t (k TEXT PRIMARY KEY, n INTEGER).
std::vector<std::shared_ptr<sql::Database>> BothBackends(const testing::TempDir& dir, int pg_pool = 2) {
  std::vector<std::shared_ptr<sql::Database>> out;
  auto lite = sqlite::OpenSqlDatabase(dir / "seam.db");
  EXPECT_TRUE(lite);
  auto* server = testing::SharedPostgres();
  EXPECT_NE(server, nullptr);
  if (!lite || server == nullptr) {
    return out;
  }
  auto pg = postgres::Open({.conninfo = server->CreateDatabase(), .pool_size = pg_pool});
  EXPECT_TRUE(pg) << sql::LastErrorDetail();
  if (!pg) {
    return out;
  }
  for (auto& db : {*lite, *pg}) {
    auto made = db->WithSession(
        [](Session& s) { return s.ExecScript("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)"); });
    EXPECT_TRUE(made) << sql::LastErrorDetail();
    out.push_back(db);
  }
  return out;
}

std::int64_t Count(sql::Database& db, std::string_view where = "1 = 1") {
  auto row = db.WithSession(
      [&](Session& s) { return s.QueryRow(fmt::format("SELECT COUNT(*) FROM t WHERE {}", where)); });
  EXPECT_TRUE(row && *row) << sql::LastErrorDetail();
  return row && *row ? (*row)->Int(0) : -1;
}

VoidResult Insert(Session& s, std::string_view key, std::int64_t n) {
  auto done = s.Exec("INSERT INTO t (k, n) VALUES ($1, $2)", key, n);
  if (!done) {
    return done.error();
  }
  return {};
}

// ---- Statement caches ---------------------------------------------------------------------------

TEST(SqlSeamCache, ReusedStatementsBindFreshParametersEveryTime) {
  testing::TempDir dir;
  for (auto& db : BothBackends(dir)) {
    const auto backend = ToString(db->backend());
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(db->WithSession([&](Session& s) { return Insert(s, fmt::format("k{}", i), i); })) << backend;
    }
    // Every parameter is bound on every run, including a NULL after a value and text after text.
    for (int i = 0; i < 50; ++i) {
      const std::optional<std::int64_t> maybe = i % 2 == 0 ? std::optional<std::int64_t>(i) : std::nullopt;
      auto row = db->WithSession([&](Session& s) {
        return s.QueryRow("SELECT n, $2 IS NULL FROM t WHERE k = $1", fmt::format("k{}", i), maybe);
      });
      ASSERT_TRUE(row && *row) << backend << " " << sql::LastErrorDetail();
      EXPECT_EQ((*row)->Int(0), i) << backend;
      EXPECT_EQ((*row)->Text(1).substr(0, 1), maybe ? (db->backend() == sql::Backend::kSqlite ? "0" : "f")
                                                    : (db->backend() == sql::Backend::kSqlite ? "1" : "t"))
          << backend;
    }
    auto changed = db->WithSession([](Session& s) { return s.Exec("UPDATE t SET n = n + 1 WHERE n < $1", 10); });
    ASSERT_TRUE(changed) << backend;
    EXPECT_EQ(*changed, 10) << backend;
    changed = db->WithSession([](Session& s) { return s.Exec("UPDATE t SET n = n + 1 WHERE n < $1", 3); });
    ASSERT_TRUE(changed) << backend;
    EXPECT_EQ(*changed, 2) << backend;  // k0 and k1, now 1 and 2
  }
}

TEST(SqlSeamCache, FailuresAreNotCachedAndMoreTextsThanTheCacheHoldsStillRun) {
  testing::TempDir dir;
  for (auto& db : BothBackends(dir)) {
    const auto backend = ToString(db->backend());
    auto syntax = db->WithSession([](Session& s) { return s.Exec("SELEC 1"); });
    EXPECT_EQ(syntax.error(), sql::Errc::kStatementFailed) << backend;
    syntax = db->WithSession([](Session& s) { return s.Exec("SELEC 1"); });
    EXPECT_EQ(syntax.error(), sql::Errc::kStatementFailed) << backend;
    // 600 distinct texts through one connection (the caches hold 256): the oldest make room.
    ASSERT_TRUE(db->Transaction(sql::TxMode::kWrite, [](Session& s) -> VoidResult {
      for (int i = 0; i < 600; ++i) {
        auto row = s.QueryRow(fmt::format("SELECT $1 + {}", i), 1);
        if (!row) {
          return row.error();
        }
        if (!*row || (*row)->Int(0) != i + 1) {
          return make_error_code(Errc::kCorrupt);
        }
      }
      return {};
    })) << backend << " " << sql::LastErrorDetail();
    auto again = db->WithSession([](Session& s) { return s.QueryRow("SELECT $1 + 0", 5); });
    ASSERT_TRUE(again && *again) << backend;
    EXPECT_EQ((*again)->Int(0), 5) << backend;
  }
}

TEST(SqlSeamCache, ACachedQueryHoldsNoTransactionOpen) {
  // A cached SELECT left un-reset would keep a read snapshot on SQLite (the WAL could never be
  // checkpointed behind it) and leave the connection "in a transaction" (the pool would drop it).
  testing::TempDir dir;
  auto db = sqlite::OpenSqlDatabase(dir / "x.db");
  ASSERT_TRUE(db);
  ASSERT_TRUE((*db)->WithSession([](Session& s) { return s.ExecScript("CREATE TABLE t (k TEXT, n INTEGER)"); }));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE((*db)->WithSession([&](Session& s) { return Insert(s, "k", i); }));
  }
  auto lease = (*db)->Acquire();
  ASSERT_TRUE(lease);
  auto rows = (*lease)->Query("SELECT n FROM t WHERE k = $1", "k");
  ASSERT_TRUE(rows);
  EXPECT_EQ(rows->size(), 20u);
  EXPECT_FALSE((*lease)->InTransaction());
  EXPECT_TRUE((*lease)->Healthy());
  auto checkpoint = (*lease)->QueryRow("PRAGMA wal_checkpoint(TRUNCATE)");
  ASSERT_TRUE(checkpoint && *checkpoint);
  EXPECT_EQ((*checkpoint)->Int(0), 0) << "checkpoint blocked";
}

TEST(SqlSeamCache, PostgresPreparesAgainWhenTheSchemaChangesUnderAStatement) {
  auto* server = testing::SharedPostgres();
  ASSERT_NE(server, nullptr);
  auto db = postgres::Open({.conninfo = server->CreateDatabase(), .pool_size = 1});
  ASSERT_TRUE(db);
  ASSERT_TRUE((*db)->WithSession([](Session& s) { return s.ExecScript("CREATE TABLE w (a BIGINT)"); }));
  ASSERT_TRUE((*db)->WithSession([](Session& s) { return s.Exec("INSERT INTO w VALUES ($1)", 7); }));
  auto before = (*db)->WithSession([](Session& s) { return s.QueryRow("SELECT * FROM w WHERE a = $1", 7); });
  ASSERT_TRUE(before && *before);
  EXPECT_EQ((*before)->size(), 1u);
  ASSERT_TRUE((*db)->WithSession([](Session& s) { return s.ExecScript("ALTER TABLE w ADD COLUMN b TEXT"); }));
  auto after = (*db)->WithSession([](Session& s) { return s.QueryRow("SELECT * FROM w WHERE a = $1", 7); });
  ASSERT_TRUE(after && *after) << sql::LastErrorDetail();
  EXPECT_EQ((*after)->size(), 2u);
}

// ---- Group commit -------------------------------------------------------------------------------

TEST(SqlSeamGroup, WaitingCallersShareOneTransactionAndOneFailureUndoesOnlyItself) {
  testing::TempDir dir;
  auto db = sqlite::OpenSqlDatabase(dir / "g.db");
  auto reader = sqlite::OpenSqlDatabase(dir / "g.db");  // a second connection: sees only commits
  ASSERT_TRUE(db && reader);
  ASSERT_TRUE((*db)->WithSession([](Session& s) { return s.ExecScript("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)"); }));

  constexpr int kCallers = 6;
  std::atomic<int> queued{0};
  std::atomic<bool> first_visible_to_others{false};
  std::vector<std::error_code> outcomes(kCallers);
  std::vector<std::thread> threads;
  // Caller 0 leads: its body waits until the others have called, so they join its group. Caller 3's
  // body fails after writing. Caller 5 looks from the second connection for caller 0's row, which
  // must not be committed yet: they are in one transaction.
  for (int c = 0; c < kCallers; ++c) {
    threads.emplace_back([&, c] {
      if (c > 0) {
        while (queued.load() < 1) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
      auto done = (*db)->GroupTransaction([&](Session& s) -> VoidResult {
        if (auto ok = Insert(s, fmt::format("c{}", c), c); !ok) {
          return ok;
        }
        if (c == 0) {
          queued = 1;
          std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the others queue up meanwhile
        }
        if (c == 3) {
          return make_error_code(Errc::kReplayedBatch);
        }
        if (c == 5) {
          first_visible_to_others = Count(**reader, "k = 'c0'") == 1;
        }
        return {};
      });
      outcomes[c] = done ? std::error_code() : done.error();
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (int c = 0; c < kCallers; ++c) {
    EXPECT_EQ(outcomes[c], c == 3 ? std::error_code(make_error_code(Errc::kReplayedBatch)) : std::error_code())
        << "caller " << c;
  }
  EXPECT_FALSE(first_visible_to_others.load()) << "caller 5 ran after caller 0 had committed: no group";
  EXPECT_EQ(Count(**reader), kCallers - 1);
  EXPECT_EQ(Count(**reader, "k = 'c3'"), 0);
}

TEST(SqlSeamGroup, RetryableErrorsRunTheGroupAgainAndALostTransactionRestartsTheOthers) {
  testing::TempDir dir;
  auto db = sqlite::OpenSqlDatabase(dir / "g.db");
  ASSERT_TRUE(db);
  ASSERT_TRUE((*db)->WithSession([](Session& s) { return s.ExecScript("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)"); }));

  // Busy once: the whole body runs again and commits.
  int runs = 0;
  auto busy = (*db)->GroupTransaction([&](Session& s) -> VoidResult {
    ++runs;
    if (auto ok = Insert(s, "b", runs); !ok) {
      return ok;
    }
    if (runs == 1) {
      return make_error_code(sql::Errc::kBusy);
    }
    return {};
  });
  ASSERT_TRUE(busy) << busy.error().message();
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(Count(**db, "k = 'b' AND n = 2"), 1);

  // A body that ends the transaction (as SQLite does by itself on a full disk) fails alone; the
  // work of the callers grouped with it runs again in a new transaction.
  std::atomic<int> queued{0};
  std::atomic<int> leader_runs{0};
  std::vector<std::error_code> outcomes(3);
  std::vector<std::thread> threads;
  for (int c = 0; c < 3; ++c) {
    threads.emplace_back([&, c] {
      if (c > 0) {
        while (queued.load() < 1) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
      auto done = (*db)->GroupTransaction([&](Session& s) -> VoidResult {
        if (c == 0) {
          ++leader_runs;
          queued = 1;
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
        }
        if (auto ok = Insert(s, fmt::format("r{}", c), c); !ok) {
          return ok;
        }
        if (c == 1) {
          s.Rollback();
          sql::SetLastErrorDetail("sqlite: database or disk is full");
          return make_error_code(sql::Errc::kStatementFailed);
        }
        return {};
      });
      outcomes[c] = done ? std::error_code() : done.error();
      if (c == 1) {
        // The leader's thread ran the body; its words come back to this caller's thread.
        EXPECT_EQ(sql::LastErrorDetail(), "sqlite: database or disk is full");
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(outcomes[0], std::error_code());
  EXPECT_EQ(outcomes[1], std::error_code(make_error_code(sql::Errc::kStatementFailed)));
  EXPECT_EQ(outcomes[2], std::error_code());
  EXPECT_EQ(leader_runs.load(), 2);
  EXPECT_EQ(Count(**db, "k LIKE 'r%'"), 2);
  EXPECT_EQ(Count(**db, "k = 'r1'"), 0);
}

TEST(SqlSeamGroup, ManyThreadsEachGetTheirOwnAnswerOnBothBackends) {
  testing::TempDir dir;
  for (auto& db : BothBackends(dir, /*pg_pool=*/4)) {
    const auto backend = ToString(db->backend());
    constexpr int kThreads = 8;
    constexpr int kCalls = 40;
    std::atomic<int> ok{0};
    std::atomic<int> refused{0};
    std::vector<std::thread> threads;
    std::latch start(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        start.arrive_and_wait();
        for (int i = 0; i < kCalls; ++i) {
          // Every fifth call writes a key another call already wrote: a unique violation, which
          // must cost only that call its rows.
          const bool clash = i % 5 == 4;
          auto done = db->GroupTransaction([&](Session& s) -> Result<int> {
            if (auto a = Insert(s, fmt::format("{}-{}-a", t, i), i); !a) {
              return a.error();
            }
            auto b = Insert(s, clash ? fmt::format("{}-{}-a", t, i - 1) : fmt::format("{}-{}-b", t, i), i);
            if (!b) {
              return b.error();
            }
            return i;
          });
          if (done) {
            EXPECT_EQ(*done, i);
            ++ok;
          } else {
            EXPECT_EQ(done.error(), sql::Errc::kUniqueViolation) << backend;
            ++refused;
          }
        }
      });
    }
    for (auto& thread : threads) {
      thread.join();
    }
    EXPECT_EQ(ok.load(), kThreads * kCalls * 4 / 5) << backend;
    EXPECT_EQ(refused.load(), kThreads * kCalls / 5) << backend;
    EXPECT_EQ(Count(*db), 2 * ok.load()) << backend;
  }
}

}  // namespace
}  // namespace lifeline::store
