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

/// Starts copying; `done` runs once, on a's executor, after both streams are closed. `buffer_bytes`
/// per direction. Both streams must use the same single-threaded executor (or strand).
void Splice(std::shared_ptr<ByteStream> a, std::shared_ptr<ByteStream> b, std::function<void(SpliceResult)> done,
            std::size_t buffer_bytes = 64 * 1024);

}  // namespace lifeline::tunnel
