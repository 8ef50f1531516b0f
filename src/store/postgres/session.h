#pragma once
// The PostgreSQL driver of the SQL seam (store/sql/session.h), on libpq. PGconn stays in this
// directory; the rest of the program sees a sql::Database.
#include "common/result.h"
#include "store/sql/database.h"

#include <chrono>
#include <memory>
#include <string>

namespace lifeline::store::postgres {

struct Options {
  /// libpq connection string or URI ("host=/run/postgresql dbname=lifeline",
  /// "postgresql://user:pw@db.example/lifeline"). A secret: never logged.
  std::string conninfo;
  /// Most connections open at once; each thread using the store at the same time needs one.
  int pool_size = 4;
  /// Used when the connection string sets no connect_timeout.
  std::chrono::seconds connect_timeout{10};
  std::string application_name = "lifeline-home";
};

/// A pool of connections to one PostgreSQL database. Connects once before returning, so an
/// unreachable server or a wrong password fails here (kConnectionFailed, libpq's message in
/// sql::LastErrorDetail()).
[[nodiscard]] Result<std::shared_ptr<sql::Database>> Open(const Options& options);

}  // namespace lifeline::store::postgres
