#pragma once
// Internal to the crypto module: libsodium must be initialised once before its RNG and primitives
// are used.

namespace lifeline::crypto::detail {

/// Calls sodium_init() exactly once per process (thread-safe); aborts if libsodium cannot start,
/// since nothing here is safe without a working RNG.
void EnsureSodiumInitialized();

}  // namespace lifeline::crypto::detail
