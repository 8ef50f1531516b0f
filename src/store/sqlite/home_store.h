#pragma once
// The home's store on one SQLite file, the embedded default. There is one implementation for every
// backend, SqlHomeStore (store/sql_home_store.h); this name stays for callers that only ever open a
// file: SqliteHomeStore::Open(path).
#include "store/sql_home_store.h"

namespace lifeline::store {

using SqliteHomeStore = SqlHomeStore;

}  // namespace lifeline::store
