#pragma once
// `lifeline audit verify --db PATH | --config policy.toml | --export FILE.jsonl --public-key FILE` and
// `lifeline audit export --db PATH | --config policy.toml --format jsonl|csv [--out FILE]`
// (policy/audit_verify.h). --config reads the store policy.toml names: the SQLite audit.db in
// data_dir, or the PostgreSQL database of store.postgresql.url.
#include <CLI/CLI.hpp>

#include <string>

namespace lifeline::cli {

struct AuditOptions {
  std::string db;
  std::string config_file;
  std::string export_file;
  std::string public_key;
  std::string format = "jsonl";
  std::string out;
};

struct AuditCommands {
  CLI::App* audit = nullptr;
  CLI::App* verify = nullptr;
  CLI::App* export_cmd = nullptr;
};

AuditCommands AddAuditCommand(CLI::App& app, AuditOptions& options);
/// The exit code when an audit subcommand was parsed (0 untouched / done, 1 tampered or failed,
/// 2 usage), else -1.
int RunAuditCommand(const AuditCommands& commands, const AuditOptions& options);

}  // namespace lifeline::cli
