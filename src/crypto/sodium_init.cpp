#include "crypto/sodium_init.h"

#include <sodium.h>

#include <cstdio>
#include <cstdlib>

namespace lifeline::crypto::detail {

void EnsureSodiumInitialized() {
  // A function-local static is initialised exactly once even with concurrent callers (C++11 magic
  // statics).
  static const int result = sodium_init();
  if (result < 0) {
    std::fputs("lifeline: libsodium failed to initialise (no usable random number generator)\n",
               stderr);
    std::abort();
  }
}

}  // namespace lifeline::crypto::detail
