#pragma once
// Copies bytes both ways between two ByteStreams until both directions have ended: the engineer's
// local connection and its WebSocket to the home in `lifeline connect`. An end of input in one
// direction becomes a half-close of the other side (so ssh and HTTPS clients see what they expect);
// an error in either direction closes both.
#include "tunnel/byte_stream.h"

#include <cstdint>
#include <functional>
#include <memory>

namespace lifeline::tunnel {

struct SpliceResult {
  std::uint64_t a_to_b = 0;
  std::uint64_t b_to_a = 0;
  ErrorCode error;  // the first error other than a clean end of input
};

/// Starts copying; `done` runs once, on a's executor, after both streams are closed. Each direction
/// reads into a buffer of `initial_buffer_bytes` that doubles, up to `max_buffer_bytes`, while reads
/// fill it: an interactive session stays small, a bulk transfer makes a quarter as many reads and
/// writes (each one a wake-up of the process at the other end). Both streams must use the same
/// single-threaded executor (or strand).
void Splice(std::shared_ptr<ByteStream> a, std::shared_ptr<ByteStream> b, std::function<void(SpliceResult)> done,
            std::size_t initial_buffer_bytes = 16 * 1024, std::size_t max_buffer_bytes = 256 * 1024);

}  // namespace lifeline::tunnel
