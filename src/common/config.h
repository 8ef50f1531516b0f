#pragma once
// Declarative config loading. Each role declares its options once (key, default, bounds, help) into a
// Schema bound to a plain struct; Load() reads one TOML file, rejects unknown keys and out-of-range values
// naming the key and the file, and resolves secrets from `<key>`, `<key>_file` or `<key>_env`.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lifeline::config {

/// A configuration problem found at start-up. what() is one line: "FILE: key 'a.b': reason".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Node;  // Opaque view of a TOML table (keeps toml++ out of this header).

class Schema {
 public:
  Schema();
  ~Schema();
  Schema(Schema&&) noexcept;
  Schema& operator=(Schema&&) noexcept;

  Schema& String(std::string key, std::string* target, std::string help);
  /// A string that must be given (no default).
  Schema& RequiredString(std::string key, std::string* target, std::string help);
  /// A string that must be one of `allowed`.
  Schema& Choice(std::string key, std::string* target, std::vector<std::string> allowed,
                 std::string help);
  Schema& Int(std::string key, std::int64_t* target, std::int64_t min, std::int64_t max,
              std::string help);
  Schema& Bool(std::string key, bool* target, std::string help);
  /// A number (TOML integer or float) within [min, max].
  Schema& Number(std::string key, double* target, double min, double max, std::string help);
  /// Seconds; TOML accepts an integer number of seconds or a string like "90s", "15m", "2h", "1d".
  Schema& Duration(std::string key, std::chrono::seconds* target, std::chrono::seconds min,
                   std::chrono::seconds max, std::string help);
  Schema& StringList(std::string key, std::vector<std::string>* target, std::string help);
  /// A secret: given inline as `key`, read from the file named by `key_file`, or from the environment
  /// variable named by `key_env`. At most one of the three may be set.
  Schema& Secret(std::string key, std::string* target, std::string help);
  /// An array of tables (`[[key]]`); `bind` declares the options of one element.
  template <class T>
  Schema& TableArray(std::string key, std::vector<T>* target,
                     std::function<void(Schema&, T&)> bind, std::string help) {
    return AddTableArray(
        std::move(key), std::move(help),
        [target]() { target->clear(); },
        [target, bind](Schema& item) { bind(item, target->emplace_back()); });
  }

  /// Reads `file`; throws ConfigError on a missing/unreadable file, a TOML syntax error, an unknown key,
  /// a wrong type or an out-of-range value. Values not in the file keep what the target already held
  /// (its default).
  void Load(const std::filesystem::path& file);
  /// Same, from TOML text; `origin` names the source in errors.
  void LoadString(std::string_view toml_text, const std::string& origin);

  /// Human-readable list of every option with its help and default, for `--help-config`.
  std::string Describe() const;

 private:
  struct Option;
  Schema& Add(Option option);
  Schema& AddTableArray(std::string key, std::string help, std::function<void()> reset,
                        std::function<void(Schema&)> add_item);
  void Apply(const Node& table, const std::string& origin, const std::string& prefix);
  std::vector<Option> options_;
};

/// Parses "90s", "15m", "2h", "1d" or a plain number of seconds. Returns false when malformed.
bool ParseDuration(std::string_view text, std::chrono::seconds* out);

}  // namespace lifeline::config
