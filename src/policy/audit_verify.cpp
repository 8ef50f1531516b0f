#include "policy/audit_verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "policy/audit_export.h"
#include "store/sql/database.h"
#include "store/sqlite/sql_session.h"

namespace lifeline::policy {
namespace {

constexpr std::size_t kMaxExportBytes = std::size_t{4} << 30;

std::string Range(std::int64_t first, std::int64_t last) {
  return first == last ? fmt::format("sequence {}", first) : fmt::format("sequences {} to {}", first, last);
}

/// Where each record sits in the chain its stored hashes describe: a record whose prev_hash is the
/// genesis hash is 1, one whose prev_hash is record X's hash is X's position + 1. A record whose
/// predecessor is not there (removed) keeps its own sequence number. A record renumbered in the store
/// is found at its true position this way, which tells "moved" apart from "changed".
std::vector<std::int64_t> ChainPositions(const std::vector<AuditRecord>& records) {
  std::unordered_map<std::string, std::size_t> by_hash;
  for (std::size_t i = 0; i < records.size(); ++i) {
    by_hash.emplace(records[i].hash, i);
  }
  std::vector<std::int64_t> position(records.size(), 0);
  for (std::size_t start = 0; start < records.size(); ++start) {
    // Walk back to a known position or the chain's start, then fill in forwards (bounded: a cycle
    // of forged hashes stops after records.size() steps).
    std::vector<std::size_t> path;
    std::size_t i = start;
    std::int64_t base = 0;
    while (position[i] == 0 && path.size() <= records.size()) {
      path.push_back(i);
      const auto& r = records[i];
      if (r.prev_hash == kAuditGenesisHash) {
        base = 0;
        break;
      }
      auto pred = by_hash.find(r.prev_hash);
      if (pred == by_hash.end() || pred->second == i) {
        base = r.sequence - 1;
        break;
      }
      i = pred->second;
      if (position[i] != 0) {
        base = position[i];
        break;
      }
    }
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
      position[*it] = ++base;
    }
  }
  return position;
}

}  // namespace

const char* ToString(AuditProblem problem) {
  switch (problem) {
    case AuditProblem::kChanged:
      return "changed";
    case AuditProblem::kRemoved:
      return "removed";
    case AuditProblem::kReordered:
      return "reordered";
    case AuditProblem::kDuplicate:
      return "duplicate";
    case AuditProblem::kChainBroken:
      return "chain-broken";
    case AuditProblem::kBadCheckpointSignature:
      return "forged-checkpoint";
    case AuditProblem::kCheckpointMismatch:
      return "checkpoint-mismatch";
    case AuditProblem::kMalformed:
      return "malformed";
    case AuditProblem::kUncheckpointedTail:
      return "unsigned-tail";
  }
  return "unknown";
}

bool AuditVerifyReport::Ok() const {
  return std::all_of(findings.begin(), findings.end(), [](const AuditFinding& f) { return f.IsWarning(); });
}

std::string AuditVerifyReport::Render() const {
  std::string out;
  std::int64_t errors = 0;
  for (const auto& f : findings) {
    errors += f.IsWarning() ? 0 : 1;
    out += fmt::format("{} {} {} {}: {}\n", f.IsWarning() ? "WARNING" : "ERROR",
                       f.problem == AuditProblem::kMalformed ? "line" : "seq", f.sequence,
                       ToString(f.problem), f.what);
  }
  out += fmt::format("{} records, {} checkpoints (last valid at sequence {}): {}\n", records, checkpoints,
                     last_checkpoint,
                     errors == 0 ? "the log is untouched" : fmt::format("{} problem(s): the log was tampered with", errors));
  return out;
}

AuditVerifyReport VerifyAudit(const std::vector<AuditRecord>& records,
                              const std::vector<AuditCheckpoint>& checkpoints,
                              std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key) {
  AuditVerifyReport report;
  report.records = static_cast<std::int64_t>(records.size());
  report.checkpoints = static_cast<std::int64_t>(checkpoints.size());
  auto add = [&report](AuditProblem problem, std::int64_t sequence, std::string what) {
    report.findings.push_back({problem, sequence, std::move(what)});
  };

  // 1. Order as presented: sequence numbers must rise.
  std::map<std::int64_t, std::size_t> by_label;  // first occurrence of each sequence number
  std::int64_t max_seen = 0;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    if (r.sequence <= 0) {
      add(AuditProblem::kMalformed, r.sequence, "a record with a sequence number below 1");
      continue;
    }
    if (by_label.count(r.sequence) != 0) {
      add(AuditProblem::kDuplicate, r.sequence, fmt::format("sequence {} appears twice", r.sequence));
      continue;
    }
    by_label.emplace(r.sequence, i);
    if (r.sequence < max_seen) {
      add(AuditProblem::kReordered, r.sequence,
          fmt::format("sequence {} comes after sequence {}: the records were reordered", r.sequence, max_seen));
    }
    max_seen = std::max(max_seen, r.sequence);
  }

  // 2. Gaps: sequence numbers are assigned without gaps from 1.
  std::int64_t expected = 1;
  for (const auto& [label, index] : by_label) {
    if (label > expected) {
      add(AuditProblem::kRemoved, expected,
          fmt::format("{} missing: record(s) removed", Range(expected, label - 1)));
    }
    expected = label + 1;
  }

  // 3. Each record's content against its hash.
  const auto position = ChainPositions(records);
  std::set<std::int64_t> bad;
  for (const auto& [label, index] : by_label) {
    const auto& r = records[index];
    if (ComputeAuditHash(r) == r.hash) {
      continue;
    }
    bad.insert(label);
    if (position[index] != label) {
      AuditRecord moved = r;
      moved.sequence = position[index];
      if (ComputeAuditHash(moved) == r.hash) {
        add(AuditProblem::kReordered, label,
            fmt::format("the record stored as sequence {} is record {} of the chain: the records were "
                        "renumbered or moved",
                        label, position[index]));
        continue;
      }
    }
    add(AuditProblem::kChanged, label,
        fmt::format("the record's content does not match its hash: it was changed ({} {} by '{}')", r.kind,
                    r.subject, r.actor));
  }

  // 4. The chain: each record names its predecessor's hash.
  for (const auto& [label, index] : by_label) {
    const auto& r = records[index];
    if (bad.count(label) != 0) {
      continue;
    }
    if (label == 1) {
      if (r.prev_hash != kAuditGenesisHash) {
        add(AuditProblem::kChainBroken, label, "the first record's prev_hash is not the genesis hash");
      }
      continue;
    }
    auto pred = by_label.find(label - 1);
    if (pred == by_label.end() || bad.count(label - 1) != 0) {
      continue;  // already reported as removed, changed or moved
    }
    if (records[pred->second].hash != r.prev_hash) {
      add(AuditProblem::kChainBroken, label,
          fmt::format("prev_hash is not the hash of sequence {}: a record was changed and its hash "
                      "recomputed, or replaced",
                      label - 1));
    }
  }

  // 5. Checkpoints: a valid signature, over a hash the log still has.
  std::vector<AuditCheckpoint> sorted = checkpoints;
  std::sort(sorted.begin(), sorted.end(),
            [](const AuditCheckpoint& a, const AuditCheckpoint& b) { return a.sequence < b.sequence; });
  for (const auto& c : sorted) {
    auto signature = crypto::Base64Decode(c.signature);
    if (!signature || !crypto::Verify(crypto::AsBytes(AuditCheckpointEncoding(c)), *signature, public_key)) {
      add(AuditProblem::kBadCheckpointSignature, c.sequence,
          "the checkpoint's signature does not verify with the given public key: forged or altered");
      continue;
    }
    report.last_checkpoint = std::max(report.last_checkpoint, c.sequence);
    auto at = by_label.find(c.sequence);
    if (at == by_label.end()) {
      add(AuditProblem::kCheckpointMismatch, c.sequence,
          fmt::format("a signed checkpoint covers sequence {} but the log has no such record: the log was "
                      "truncated or the record removed",
                      c.sequence));
    } else if (records[at->second].hash != c.hash) {
      add(AuditProblem::kCheckpointMismatch, c.sequence,
          fmt::format("the hash of sequence {} differs from the one signed in its checkpoint: records up to "
                      "it were changed and re-hashed",
                      c.sequence));
    }
  }

  // 6. What no checkpoint covers yet.
  if (max_seen > report.last_checkpoint) {
    add(AuditProblem::kUncheckpointedTail, report.last_checkpoint + 1,
        fmt::format("{} after the last checkpoint are protected by the hash chain only: removing them "
                    "from the end could not be detected",
                    Range(report.last_checkpoint + 1, max_seen)));
  }
  return report;
}

Result<std::shared_ptr<store::sql::Database>> OpenAuditStoreReadOnly(const std::filesystem::path& db_path) {
  if (!std::filesystem::exists(db_path)) {
    return Fail(std::make_error_code(std::errc::no_such_file_or_directory));
  }
  return store::sqlite::OpenSqlDatabase(db_path, {.read_only = true});
}

Result<std::vector<AuditRecord>> ReadAuditRecords(const std::filesystem::path& db_path) {
  auto db = OpenAuditStoreReadOnly(db_path);
  if (!db) {
    return db.error();
  }
  return SelectAuditRecords(**db);
}

Result<std::vector<AuditCheckpoint>> ReadAuditCheckpoints(const std::filesystem::path& db_path) {
  auto db = OpenAuditStoreReadOnly(db_path);
  if (!db) {
    return db.error();
  }
  return SelectAuditCheckpoints(**db);
}

Result<AuditVerifyReport> VerifyAuditStore(
    store::sql::Database& db, std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key) {
  // One snapshot would be nicer, but appends only add rows after the head: records read first and
  // checkpoints second can only show checkpoints past the records read, which verify reports as
  // such. Read the checkpoints first, then the records, so every checkpoint read has its records.
  auto checkpoints = SelectAuditCheckpoints(db);
  if (!checkpoints) {
    return checkpoints.error();
  }
  auto records = SelectAuditRecords(db);
  if (!records) {
    return records.error();
  }
  return VerifyAudit(*records, *checkpoints, public_key);
}

Result<AuditVerifyReport> VerifyAuditStore(
    const std::filesystem::path& db_path,
    std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key) {
  auto db = OpenAuditStoreReadOnly(db_path);
  if (!db) {
    return db.error();
  }
  return VerifyAuditStore(**db, public_key);
}

Result<AuditVerifyReport> VerifyAuditExport(
    const std::filesystem::path& jsonl_path,
    std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key) {
  auto text = crypto::ReadSmallFile(jsonl_path, kMaxExportBytes);
  if (!text) {
    return text.error();
  }
  const AuditExport parsed = ParseAuditJsonLines(*text);
  auto report = VerifyAudit(parsed.records, parsed.checkpoints, public_key);
  for (const auto& bad : parsed.bad_lines) {
    report.findings.insert(report.findings.begin(), {AuditProblem::kMalformed, bad.line, bad.why});
  }
  return report;
}

}  // namespace lifeline::policy
