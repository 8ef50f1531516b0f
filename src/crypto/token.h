#pragma once
// Secrets handed to humans: enrollment tokens and admin API tokens. The home stores only
// HashToken(token), so a leaked database does not leak usable tokens; tokens carry 256 random bits,
// so an unsalted fast hash is enough (there is nothing to brute-force).
#include <string>
#include <string_view>

namespace lifeline::crypto {

/// "<prefix>_" followed by 32 random bytes in URL-safe base64 without padding (43 characters), e.g.
/// GenerateToken("llenr") -> "llenr_3q2-7w...". The prefix says what the token is for at a glance
/// (and lets secret scanners recognise it); it should be short and [a-z0-9].
std::string GenerateToken(std::string_view prefix);

/// Lowercase hex SHA-256 of the token text (64 characters): the only form the home keeps.
std::string HashToken(std::string_view token);

/// Compares in time that depends only on the lengths, not on where the inputs differ. Inputs of
/// different lengths compare unequal at once: lengths are not secret here (compare hashes, which
/// have one length).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace lifeline::crypto
