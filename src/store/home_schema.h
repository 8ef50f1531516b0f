#pragma once
// The home store's schema, as migrations for both backends (store/sql/migrate.h).
#include "store/sql/migrate.h"

#include <cstdint>
#include <span>

namespace lifeline::store {

/// Step i moves the schema from version i to i+1. Never edit a shipped step: append a new one, with
/// its SQLite and its PostgreSQL text.
std::span<const sql::Migration> HomeMigrations();

/// The PostgreSQL advisory lock key that serialises migrations of the home schema ("LLHOME").
inline constexpr std::int64_t kHomeMigrationLock = 0x4c4c484f4d45;

}  // namespace lifeline::store
