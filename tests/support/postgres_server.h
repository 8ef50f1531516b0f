#pragma once
// A real PostgreSQL 15 server for tests: a private cluster in a temp directory, listening only on a
// unix socket there (no TCP port), trust authentication, stopped and removed when the object goes
// away. Debian's binaries (/usr/lib/postgresql/15/bin) refuse to run as root, so under root the
// cluster belongs to the `postgres` system user.
//
// One server per test binary (PostgresEnvironment), a fresh database per test (CreateDatabase).
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

namespace lifeline::testing {

class PostgresServer {
 public:
  /// initdb (from a cached template cluster when one exists) and start; throws std::runtime_error
  /// with the server's log when it cannot start.
  PostgresServer();
  /// Immediate shutdown (SIGQUIT), SIGKILL after 15 s; the directory is removed.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;

  /// libpq connection string for `database` on this server.
  std::string ConnInfo(const std::string& database) const;
  /// Creates an empty database with a new name; returns its connection string.
  std::string CreateDatabase();
  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  void Stop();
  TempDir dir_;
  pid_t pid_ = -1;
  int next_database_ = 0;
};

/// Starts the binary's server before the first test and stops it after the last. Register it in a
/// test file with `static auto* env = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);`.
/// A server that cannot start fails the run (it does not skip the tests).
class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
};

/// The server PostgresEnvironment started, or nullptr when it failed to start.
PostgresServer* SharedPostgres();

}  // namespace lifeline::testing
