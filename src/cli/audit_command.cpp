#include "cli/audit_command.h"

#include <filesystem>
#include <fstream>
#include <iostream>

#include "common/config.h"
#include "crypto/keys.h"
#include "policy/audit_export.h"
#include "policy/audit_verify.h"
#include "policy/policy_config.h"
#include "policy/policy_database.h"
#include "store/sql/database.h"
#include "store/sqlite/sql_session.h"

namespace lifeline::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

/// The database to read: --db (a SQLite file, read-only) or the store policy.toml names.
/// `where` names it in messages.
Result<std::shared_ptr<store::sql::Database>> OpenForReading(const AuditOptions& options, std::string_view program,
                                                           std::string* where) {
  if (!options.config_file.empty()) {
    try {
      const auto config = policy::PolicyConfig::Load(options.config_file);
      *where = config.store_backend == "postgresql"
                   ? std::string("the PostgreSQL database of store.postgresql.url in ") + options.config_file
                   : (std::filesystem::path(config.data_dir) / "audit.db").string();
      return policy::OpenPolicyAuditForReading(config);
    } catch (const config::ConfigError& e) {
      std::cerr << program << ": " << e.what() << "\n";
      return Fail(std::make_error_code(std::errc::invalid_argument));
    }
  }
  *where = options.db;
  if (!std::filesystem::exists(options.db)) {
    return Fail(std::make_error_code(std::errc::no_such_file_or_directory));
  }
  return store::sqlite::OpenSqlDatabase(options.db, {.read_only = true});
}

int Verify(const AuditOptions& options) {
  const int sources = !options.db.empty() + !options.export_file.empty() + !options.config_file.empty();
  if (sources != 1) {
    std::cerr << "lifeline audit verify: give exactly one of --db, --config and --export\n";
    return kExitUsage;
  }
  auto key = crypto::ReadPublicKey(options.public_key, crypto::KeyKind::kEd25519Public);
  if (!key) {
    std::cerr << "lifeline audit verify: cannot read the public key " << options.public_key << ": "
              << key.error().message() << "\n";
    return kExitUsage;
  }
  std::string where = options.export_file;
  Result<policy::AuditVerifyReport> report = Fail(std::make_error_code(std::errc::invalid_argument));
  if (!options.export_file.empty()) {
    report = policy::VerifyAuditExport(options.export_file, *key);
  } else {
    auto db = OpenForReading(options, "lifeline audit verify", &where);
    report = db ? policy::VerifyAuditStore(**db, *key) : Result<policy::AuditVerifyReport>(Fail(db.error()));
  }
  if (!report) {
    std::cerr << "lifeline audit verify: cannot read " << where << ": " << report.error().message() << "\n";
    return kExitFailure;
  }
  std::cout << report->Render();
  return report->Ok() ? kExitOk : kExitFailure;
}

int Export(const AuditOptions& options) {
  if (options.db.empty() == options.config_file.empty()) {
    std::cerr << "lifeline audit export: give exactly one of --db and --config\n";
    return kExitUsage;
  }
  std::string where;
  auto db = OpenForReading(options, "lifeline audit export", &where);
  if (!db) {
    std::cerr << "lifeline audit export: cannot read " << where << ": " << db.error().message() << "\n";
    return kExitFailure;
  }
  // Checkpoints first: every checkpoint read then has its records in what is read next.
  auto checkpoints = policy::SelectAuditCheckpoints(**db);
  if (!checkpoints) {
    std::cerr << "lifeline audit export: cannot read " << where << ": " << checkpoints.error().message() << "\n";
    return kExitFailure;
  }
  auto records = policy::SelectAuditRecords(**db);
  if (!records) {
    std::cerr << "lifeline audit export: cannot read " << where << ": " << records.error().message() << "\n";
    return kExitFailure;
  }
  std::ofstream file;
  if (!options.out.empty()) {
    file.open(options.out, std::ios::binary | std::ios::trunc);
    if (!file) {
      std::cerr << "lifeline audit export: cannot write " << options.out << "\n";
      return kExitFailure;
    }
  }
  std::ostream& out = options.out.empty() ? std::cout : file;
  if (options.format == "csv") {
    policy::WriteAuditCsv(out, *records, *checkpoints);
  } else {
    policy::WriteAuditJsonLines(out, *records, *checkpoints);
  }
  out.flush();
  if (!out) {
    std::cerr << "lifeline audit export: write failed\n";
    return kExitFailure;
  }
  if (!options.out.empty()) {
    std::cerr << "exported " << records->size() << " records and " << checkpoints->size() << " checkpoints to "
              << options.out << "\n";
  }
  return kExitOk;
}

}  // namespace

AuditCommands AddAuditCommand(CLI::App& app, AuditOptions& options) {
  AuditCommands commands;
  commands.audit = app.add_subcommand("audit", "The policy manager's tamper-evident audit log: verify, export")
                       ->require_subcommand(1);
  commands.verify = commands.audit->add_subcommand(
      "verify",
      "Check the hash chain and the signed checkpoints of the log (--db or --config) or of a JSON-lines export\n"
      "(--export); exit 0 only when the log is untouched");
  commands.verify->add_option("--db", options.db, "The policy manager's SQLite file holding the audit log (audit.db)");
  commands.verify->add_option("--config", options.config_file,
                              "policy.toml: the audit log in the store it names (SQLite data_dir/audit.db or PostgreSQL)");
  commands.verify->add_option("--export", options.export_file, "A JSON-lines export (lifeline audit export)");
  commands.verify->add_option("--public-key", options.public_key,
                              "The audit signing key's public half you trust (audit-sign.key.pub)")
      ->required();
  commands.export_cmd = commands.audit->add_subcommand("export", "Write the log with its checkpoints as JSON lines or CSV");
  commands.export_cmd->add_option("--db", options.db, "The policy manager's SQLite file holding the audit log (audit.db)");
  commands.export_cmd->add_option("--config", options.config_file,
                                  "policy.toml: the audit log in the store it names (SQLite data_dir/audit.db or PostgreSQL)");
  commands.export_cmd->add_option("--format", options.format, "jsonl (default) or csv")
      ->check(CLI::IsMember({"jsonl", "csv"}));
  commands.export_cmd->add_option("--out", options.out, "File to write (default: standard output)");
  return commands;
}

int RunAuditCommand(const AuditCommands& commands, const AuditOptions& options) {
  if (commands.verify->parsed()) {
    return Verify(options);
  }
  if (commands.export_cmd->parsed()) {
    return Export(options);
  }
  return -1;
}

}  // namespace lifeline::cli
