#include "store/sql/session.h"

#include <charconv>

namespace lifeline::store::sql {

const char* Describe(Errc errc) {
  switch (errc) {
    case Errc::kUniqueViolation:
      return "unique constraint violated";
    case Errc::kConstraintViolation:
      return "constraint violated";
    case Errc::kSerializationFailure:
      return "could not serialize the transaction";
    case Errc::kDeadlock:
      return "deadlock detected";
    case Errc::kBusy:
      return "database is busy";
    case Errc::kConnectionFailed:
      return "database connection failed";
    case Errc::kStatementFailed:
      return "database statement failed";
    case Errc::kPoolExhausted:
      return "no database connection became free in time";
    case Errc::kSchemaTooNew:
      return "the database schema is newer than this program";
  }
  return "unknown database error";
}

const std::error_category& ErrorCategory() {
  static const EnumErrorCategory<Errc> category("sql", &Describe);
  return category;
}

bool IsRetryable(const std::error_code& ec) {
  return ec == Errc::kSerializationFailure || ec == Errc::kDeadlock || ec == Errc::kBusy;
}

namespace {
thread_local std::string last_error_detail;
}  // namespace

const std::string& LastErrorDetail() { return last_error_detail; }
void SetLastErrorDetail(std::string detail) { last_error_detail = std::move(detail); }

std::string_view ToString(Backend backend) {
  return backend == Backend::kSqlite ? "sqlite" : "postgresql";
}

bool Row::IsNull(std::size_t column) const {
  return column >= cells_.size() || std::holds_alternative<std::monostate>(cells_[column]);
}

std::int64_t Row::Int(std::size_t column) const {
  if (column >= cells_.size()) {
    return 0;
  }
  const Cell& cell = cells_[column];
  if (const auto* i = std::get_if<std::int64_t>(&cell)) {
    return *i;
  }
  if (const auto* d = std::get_if<double>(&cell)) {
    return static_cast<std::int64_t>(*d);
  }
  if (const auto* s = std::get_if<std::string>(&cell)) {
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), value);
    return ec == std::errc() && end == s->data() + s->size() ? value : 0;
  }
  return 0;
}

std::optional<std::int64_t> Row::OptionalInt(std::size_t column) const {
  return IsNull(column) ? std::nullopt : std::optional<std::int64_t>(Int(column));
}

double Row::Real(std::size_t column) const {
  if (column >= cells_.size()) {
    return 0;
  }
  const Cell& cell = cells_[column];
  if (const auto* d = std::get_if<double>(&cell)) {
    return *d;
  }
  if (const auto* i = std::get_if<std::int64_t>(&cell)) {
    return static_cast<double>(*i);
  }
  if (const auto* s = std::get_if<std::string>(&cell)) {
    double value = 0;
    const auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), value);
    return ec == std::errc() && end == s->data() + s->size() ? value : 0;
  }
  return 0;
}

std::string Row::Text(std::size_t column) const {
  if (column >= cells_.size()) {
    return {};
  }
  const Cell& cell = cells_[column];
  if (const auto* s = std::get_if<std::string>(&cell)) {
    return *s;
  }
  if (const auto* i = std::get_if<std::int64_t>(&cell)) {
    return std::to_string(*i);
  }
  if (const auto* d = std::get_if<double>(&cell)) {
    return std::to_string(*d);
  }
  return {};
}

std::optional<std::string> Row::OptionalText(std::size_t column) const {
  return IsNull(column) ? std::nullopt : std::optional<std::string>(Text(column));
}

}  // namespace lifeline::store::sql
