#pragma once
// Result<T>: the return type of every library call that can fail (STYLE: Errors).
// Errors are std::error_code values from per-module enums, so Asio/Beast/OpenSSL/our own errors share one
// type; boost::system::result gives value-or-error with [[nodiscard]] semantics at call sites.
#include <boost/system/result.hpp>

#include <string>
#include <system_error>
#include <type_traits>

namespace lifeline {

template <class T>
using Result = boost::system::result<T, std::error_code>;

using VoidResult = boost::system::result<void, std::error_code>;

/// An error on its way into any Result<T>. `return Fail(code);` works where the implicit conversion from
/// std::error_code is ambiguous (Result<bool>, Result<int>) and reads the same everywhere else.
struct Failure {
  std::error_code code;
  template <class T>
  operator boost::system::result<T, std::error_code>() const {  // NOLINT: implicit by design
    return boost::system::result<T, std::error_code>(boost::system::in_place_error, code);
  }
};
inline Failure Fail(std::error_code code) { return Failure{code}; }

/// A category for a module's error enum. `Describe` maps each value to an operator-readable sentence.
template <class Enum>
class EnumErrorCategory final : public std::error_category {
 public:
  using Describe = const char* (*)(Enum);
  constexpr EnumErrorCategory(const char* name, Describe describe) : name_(name), describe_(describe) {}
  const char* name() const noexcept override { return name_; }
  std::string message(int value) const override { return describe_(static_cast<Enum>(value)); }

 private:
  const char* name_;
  Describe describe_;
};

}  // namespace lifeline
