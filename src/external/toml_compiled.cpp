// toml++'s implementation, compiled once into a static library (Debian ships it shared, about a quarter
// of a MiB resident in every process that loads it; see spdlog_compiled.cpp).
#define TOML_IMPLEMENTATION
#include <toml++/toml.h>
