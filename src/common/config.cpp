#include "common/config.h"

#include <fmt/format.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace lifeline::config {

class Node {
 public:
  explicit Node(const toml::table& table) : table(table) {}
  const toml::table& table;
};

enum class Kind { kChoice, kString, kRequiredString, kInt, kBool, kNumber, kDuration, kStringList, kSecret, kTableArray };

struct Schema::Option {
  std::string key;  // dotted path, e.g. "smtp.port"
  Kind kind;
  std::string help;
  std::string* string_target = nullptr;
  std::int64_t* int_target = nullptr;
  bool* bool_target = nullptr;
  double* number_target = nullptr;
  double number_min = 0;
  double number_max = 0;
  std::chrono::seconds* duration_target = nullptr;
  std::vector<std::string>* list_target = nullptr;
  std::int64_t min = 0;
  std::int64_t max = 0;
  std::vector<std::string> allowed;
  std::string default_text;
  std::function<void()> reset_items;
  std::function<void(Schema&)> add_item;
};

namespace {

[[noreturn]] void Fail(const std::string& origin, const std::string& key, const std::string& why) {
  throw ConfigError(fmt::format("{}: key '{}': {}", origin, key, why));
}

std::string Join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

const toml::node* Find(const toml::table& table, const std::string& dotted) {
  return table.at_path(dotted).node();
}

std::string ReadSecretFile(const std::string& origin, const std::string& key, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    Fail(origin, key, fmt::format("cannot read secret file '{}'", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string value = buffer.str();
  // Files written by `echo` end in a newline that is not part of the secret.
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) {
    value.pop_back();
  }
  return value;
}

}  // namespace

bool ParseDuration(std::string_view text, std::chrono::seconds* out) {
  if (text.empty()) {
    return false;
  }
  std::int64_t multiplier = 1;
  switch (text.back()) {
    case 's': multiplier = 1; text.remove_suffix(1); break;
    case 'm': multiplier = 60; text.remove_suffix(1); break;
    case 'h': multiplier = 3600; text.remove_suffix(1); break;
    case 'd': multiplier = 86400; text.remove_suffix(1); break;
    default: break;
  }
  if (text.empty() || text.size() > 12) {
    return false;
  }
  std::int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + (c - '0');
  }
  *out = std::chrono::seconds(value * multiplier);
  return true;
}

Schema::Schema() = default;
Schema::~Schema() = default;
Schema::Schema(Schema&&) noexcept = default;
Schema& Schema::operator=(Schema&&) noexcept = default;

Schema& Schema::Add(Option option) {
  options_.push_back(std::move(option));
  return *this;
}

Schema& Schema::String(std::string key, std::string* target, std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kString, .help = std::move(help)};
  o.string_target = target;
  o.default_text = "\"" + *target + "\"";
  return Add(std::move(o));
}

Schema& Schema::Choice(std::string key, std::string* target, std::vector<std::string> allowed,
                       std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kChoice, .help = std::move(help)};
  o.string_target = target;
  o.default_text = fmt::format("\"{}\" (one of: {})", *target, fmt::join(allowed, ", "));
  o.allowed = std::move(allowed);
  return Add(std::move(o));
}

Schema& Schema::RequiredString(std::string key, std::string* target, std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kRequiredString, .help = std::move(help)};
  o.string_target = target;
  o.default_text = "(required)";
  return Add(std::move(o));
}

Schema& Schema::Int(std::string key, std::int64_t* target, std::int64_t min, std::int64_t max,
                    std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kInt, .help = std::move(help)};
  o.int_target = target;
  o.min = min;
  o.max = max;
  o.default_text = fmt::format("{} (from {} to {})", *target, min, max);
  return Add(std::move(o));
}

Schema& Schema::Bool(std::string key, bool* target, std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kBool, .help = std::move(help)};
  o.bool_target = target;
  o.default_text = *target ? "true" : "false";
  return Add(std::move(o));
}

Schema& Schema::Number(std::string key, double* target, double min, double max, std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kNumber, .help = std::move(help)};
  o.number_target = target;
  o.number_min = min;
  o.number_max = max;
  o.default_text = fmt::format("{} (from {} to {})", *target, min, max);
  return Add(std::move(o));
}

Schema& Schema::Duration(std::string key, std::chrono::seconds* target, std::chrono::seconds min,
                         std::chrono::seconds max, std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kDuration, .help = std::move(help)};
  o.duration_target = target;
  o.min = min.count();
  o.max = max.count();
  o.default_text = fmt::format("{}s (from {}s to {}s)", target->count(), min.count(), max.count());
  return Add(std::move(o));
}

Schema& Schema::StringList(std::string key, std::vector<std::string>* target, std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kStringList, .help = std::move(help)};
  o.list_target = target;
  o.default_text = fmt::format("[{}]", fmt::join(*target, ", "));
  return Add(std::move(o));
}

Schema& Schema::Secret(std::string key, std::string* target, std::string help) {
  Option o{.key = std::move(key), .kind = Kind::kSecret, .help = std::move(help)};
  o.string_target = target;
  o.default_text = "(unset; or KEY_file = path, or KEY_env = VARIABLE)";
  return Add(std::move(o));
}

Schema& Schema::AddTableArray(std::string key, std::string help, std::function<void()> reset,
                              std::function<void(Schema&)> add_item) {
  Option o{.key = std::move(key), .kind = Kind::kTableArray, .help = std::move(help)};
  o.reset_items = std::move(reset);
  o.add_item = std::move(add_item);
  o.default_text = "(none)";
  return Add(std::move(o));
}

void Schema::Load(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw ConfigError(fmt::format("{}: cannot open config file", file.string()));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  LoadString(buffer.str(), file.string());
}

void Schema::LoadString(std::string_view toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw ConfigError(fmt::format("{}:{}:{}: TOML syntax error: {}", origin, where.line, where.column,
                                  e.description()));
  }
  Apply(Node(root), origin, "");
}

void Schema::Apply(const Node& node, const std::string& origin, const std::string& prefix) {
  const toml::table& table = node.table;
  // Every key in the file must be declared: collect the declared leaves and the tables leading to them.
  std::set<std::string> leaves;
  std::set<std::string> tables;
  for (const auto& o : options_) {
    leaves.insert(o.key);
    if (o.kind == Kind::kSecret) {
      leaves.insert(o.key + "_file");
      leaves.insert(o.key + "_env");
    }
    for (auto dot = o.key.find('.'); dot != std::string::npos; dot = o.key.find('.', dot + 1)) {
      tables.insert(o.key.substr(0, dot));
    }
  }
  std::function<void(const toml::table&, const std::string&)> check_unknown =
      [&](const toml::table& t, const std::string& path) {
        for (const auto& [k, v] : t) {
          const std::string full = path.empty() ? std::string(k.str()) : path + "." + std::string(k.str());
          if (leaves.count(full)) {
            continue;
          }
          if (tables.count(full) && v.is_table()) {
            check_unknown(*v.as_table(), full);
            continue;
          }
          Fail(origin, Join(prefix, full), "unknown key (see --help-config for the accepted keys)");
        }
      };
  check_unknown(table, "");

  for (auto& o : options_) {
    const std::string name = Join(prefix, o.key);
    const toml::node* value = Find(table, o.key);
    switch (o.kind) {
      case Kind::kString:
      case Kind::kRequiredString:
        if (value == nullptr) {
          if (o.kind == Kind::kRequiredString) {
            Fail(origin, name, "is required");
          }
          break;
        }
        if (!value->is_string()) {
          Fail(origin, name, "must be a string");
        }
        *o.string_target = value->as_string()->get();
        break;
      case Kind::kChoice: {
        if (value == nullptr) {
          break;
        }
        if (!value->is_string()) {
          Fail(origin, name, "must be a string");
        }
        const std::string chosen = value->as_string()->get();
        if (std::find(o.allowed.begin(), o.allowed.end(), chosen) == o.allowed.end()) {
          Fail(origin, name, fmt::format("value \"{}\" is not one of: {}", chosen, fmt::join(o.allowed, ", ")));
        }
        *o.string_target = chosen;
        break;
      }
      case Kind::kInt: {
        if (value == nullptr) {
          break;
        }
        if (!value->is_integer()) {
          Fail(origin, name, "must be an integer");
        }
        const std::int64_t v = value->as_integer()->get();
        if (v < o.min || v > o.max) {
          Fail(origin, name, fmt::format("value {} is out of range (from {} to {})", v, o.min, o.max));
        }
        *o.int_target = v;
        break;
      }
      case Kind::kBool:
        if (value == nullptr) {
          break;
        }
        if (!value->is_boolean()) {
          Fail(origin, name, "must be true or false");
        }
        *o.bool_target = value->as_boolean()->get();
        break;
      case Kind::kNumber: {
        if (value == nullptr) {
          break;
        }
        if (!value->is_number()) {
          Fail(origin, name, "must be a number");
        }
        const double v = value->is_integer() ? static_cast<double>(value->as_integer()->get())
                                             : value->as_floating_point()->get();
        if (!(v >= o.number_min && v <= o.number_max)) {
          Fail(origin, name, fmt::format("value {} is out of range (from {} to {})", v, o.number_min, o.number_max));
        }
        *o.number_target = v;
        break;
      }
      case Kind::kDuration: {
        if (value == nullptr) {
          break;
        }
        std::chrono::seconds parsed{};
        if (value->is_integer()) {
          parsed = std::chrono::seconds(value->as_integer()->get());
        } else if (!value->is_string() || !ParseDuration(value->as_string()->get(), &parsed)) {
          Fail(origin, name, "must be a duration: seconds as an integer, or a string such as \"90s\", \"15m\", \"2h\", \"1d\"");
        }
        if (parsed.count() < o.min || parsed.count() > o.max) {
          Fail(origin, name,
               fmt::format("duration {}s is out of range (from {}s to {}s)", parsed.count(), o.min, o.max));
        }
        *o.duration_target = parsed;
        break;
      }
      case Kind::kStringList: {
        if (value == nullptr) {
          break;
        }
        if (!value->is_array()) {
          Fail(origin, name, "must be an array of strings");
        }
        std::vector<std::string> items;
        for (const auto& item : *value->as_array()) {
          if (!item.is_string()) {
            Fail(origin, name, "must be an array of strings");
          }
          items.push_back(item.as_string()->get());
        }
        *o.list_target = std::move(items);
        break;
      }
      case Kind::kSecret: {
        const toml::node* from_file = Find(table, o.key + "_file");
        const toml::node* from_env = Find(table, o.key + "_env");
        const int given = (value != nullptr) + (from_file != nullptr) + (from_env != nullptr);
        if (given > 1) {
          Fail(origin, name, fmt::format("set only one of '{0}', '{0}_file' and '{0}_env'", name));
        }
        if (value != nullptr) {
          if (!value->is_string()) {
            Fail(origin, name, "must be a string");
          }
          *o.string_target = value->as_string()->get();
        } else if (from_file != nullptr) {
          if (!from_file->is_string()) {
            Fail(origin, name + "_file", "must be a file path string");
          }
          *o.string_target = ReadSecretFile(origin, name + "_file", from_file->as_string()->get());
        } else if (from_env != nullptr) {
          if (!from_env->is_string()) {
            Fail(origin, name + "_env", "must be an environment variable name");
          }
          const std::string var = from_env->as_string()->get();
          const char* env = std::getenv(var.c_str());
          if (env == nullptr) {
            Fail(origin, name + "_env", fmt::format("environment variable '{}' is not set", var));
          }
          *o.string_target = env;
        }
        break;
      }
      case Kind::kTableArray: {
        if (value == nullptr) {
          break;
        }
        const toml::array* items = value->as_array();
        if (items == nullptr || !items->is_array_of_tables()) {
          Fail(origin, name, fmt::format("must be an array of tables ([[{}]])", name));
        }
        o.reset_items();
        std::size_t index = 0;
        for (const auto& item : *items) {
          Schema element;
          o.add_item(element);
          element.Apply(Node(*item.as_table()), origin, fmt::format("{}[{}]", name, index));
          ++index;
        }
        break;
      }
    }
  }
}

std::string Schema::Describe() const {
  std::string out;
  for (const auto& o : options_) {
    out += fmt::format("  {:<28} {}\n  {:<28} default: {}\n", o.key, o.help, "", o.default_text);
    if (o.kind == Kind::kTableArray) {
      Schema element;
      o.add_item(element);
      o.reset_items();
      for (const auto& line : {element.Describe()}) {
        std::istringstream lines(line);
        for (std::string l; std::getline(lines, l);) {
          out += "    " + l + "\n";
        }
      }
    }
  }
  return out;
}

}  // namespace lifeline::config
