#include "cli/audit_command.h"

#include <filesystem>
#include <fstream>
#include <iostream>

#include "crypto/keys.h"
#include "policy/audit_export.h"
#include "policy/audit_verify.h"

namespace lifeline::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int Verify(const AuditOptions& options) {
  if (options.db.empty() == options.export_file.empty()) {
    std::cerr << "lifeline audit verify: give exactly one of --db and --export\n";
    return kExitUsage;
  }
  auto key = crypto::ReadPublicKey(options.public_key, crypto::KeyKind::kEd25519Public);
  if (!key) {
    std::cerr << "lifeline audit verify: cannot read the public key " << options.public_key << ": "
              << key.error().message() << "\n";
    return kExitUsage;
  }
  const std::string& path = options.db.empty() ? options.export_file : options.db;
  auto report = options.db.empty() ? policy::VerifyAuditExport(options.export_file, *key)
                                   : policy::VerifyAuditStore(options.db, *key);
  if (!report) {
    std::cerr << "lifeline audit verify: cannot read " << path << ": " << report.error().message() << "\n";
    return kExitFailure;
  }
  std::cout << report->Render();
  return report->Ok() ? kExitOk : kExitFailure;
}

int Export(const AuditOptions& options) {
  if (!std::filesystem::exists(options.db)) {
    std::cerr << "lifeline audit export: " << options.db << " does not exist\n";
    return kExitFailure;
  }
  auto records = policy::ReadAuditRecords(options.db);
  if (!records) {
    std::cerr << "lifeline audit export: cannot read " << options.db << ": " << records.error().message() << "\n";
    return kExitFailure;
  }
  auto checkpoints = policy::ReadAuditCheckpoints(options.db);
  if (!checkpoints) {
    std::cerr << "lifeline audit export: cannot read " << options.db << ": " << checkpoints.error().message()
              << "\n";
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
      "Check the hash chain and the signed checkpoints of the log (--db) or of a JSON-lines export (--export);\n"
      "exit 0 only when the log is untouched");
  commands.verify->add_option("--db", options.db, "The policy manager's database holding the audit log");
  commands.verify->add_option("--export", options.export_file, "A JSON-lines export (lifeline audit export)");
  commands.verify->add_option("--public-key", options.public_key,
                              "The audit signing key's public half you trust (audit-sign.key.pub)")
      ->required();
  commands.export_cmd = commands.audit->add_subcommand("export", "Write the log with its checkpoints as JSON lines or CSV");
  commands.export_cmd->add_option("--db", options.db, "The policy manager's database")->required();
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
