#include "tunnel/splice.h"

#include <boost/asio/error.hpp>

#include <algorithm>
#include <vector>

namespace lifeline::tunnel {
namespace {

class Splicer : public std::enable_shared_from_this<Splicer> {
 public:
  Splicer(std::shared_ptr<ByteStream> a, std::shared_ptr<ByteStream> b, std::function<void(SpliceResult)> done,
          std::size_t initial_buffer_bytes, std::size_t max_buffer_bytes)
      : a_(std::move(a)),
        b_(std::move(b)),
        done_(std::move(done)),
        initial_buffer_bytes_(std::max<std::size_t>(initial_buffer_bytes, 1)),
        max_buffer_bytes_(std::max(max_buffer_bytes, initial_buffer_bytes_)) {}

  void Start() {
    Pump(a_.get(), b_.get(), &result_.a_to_b, &ab_buffer_);
    Pump(b_.get(), a_.get(), &result_.b_to_a, &ba_buffer_);
  }

 private:
  // One direction: read from `from`, write all of it to `to`, again; at the end of input half-close `to`.
  void Pump(ByteStream* from, ByteStream* to, std::uint64_t* counter, std::vector<char>* buffer) {
    if (buffer->empty()) {
      buffer->resize(initial_buffer_bytes_);
    }
    from->AsyncReadSome(asio::buffer(*buffer),
                        [self = shared_from_this(), from, to, counter, buffer](ErrorCode ec, std::size_t n) {
                          if (ec) {
                            if (ec == asio::error::eof && !self->failed_) {
                              to->AsyncShutdownWrite([self](ErrorCode) { self->DirectionDone(); });
                            } else {
                              self->Fail(ec);
                            }
                            return;
                          }
                          const bool filled = n == buffer->size();
                          to->AsyncWrite(asio::buffer(buffer->data(), n),
                                         [self, from, to, counter, buffer, filled](ErrorCode wec, std::size_t written) {
                                           if (wec) {
                                             self->Fail(wec);
                                             return;
                                           }
                                           *counter += written;
                                           if (filled && buffer->size() < self->max_buffer_bytes_) {
                                             // Its bytes are written: a new buffer needs no copy.
                                             std::vector<char>(std::min(buffer->size() * 2, self->max_buffer_bytes_))
                                                 .swap(*buffer);
                                           }
                                           self->Pump(from, to, counter, buffer);
                                         });
                        });
  }

  void Fail(ErrorCode ec) {
    if (!failed_) {
      failed_ = true;
      if (ec != asio::error::operation_aborted) {
        result_.error = ec;
      }
      a_->Close();
      b_->Close();
    }
    DirectionDone();
  }

  void DirectionDone() {
    if (++directions_done_ < 2) {
      return;
    }
    a_->Close();
    b_->Close();
    if (done_) {
      auto done = std::move(done_);
      done(result_);
    }
  }

  std::shared_ptr<ByteStream> a_, b_;
  std::function<void(SpliceResult)> done_;
  const std::size_t initial_buffer_bytes_;
  const std::size_t max_buffer_bytes_;
  std::vector<char> ab_buffer_, ba_buffer_;
  SpliceResult result_;
  bool failed_ = false;
  int directions_done_ = 0;
};

}  // namespace

void Splice(std::shared_ptr<ByteStream> a, std::shared_ptr<ByteStream> b, std::function<void(SpliceResult)> done,
            std::size_t initial_buffer_bytes, std::size_t max_buffer_bytes) {
  std::make_shared<Splicer>(std::move(a), std::move(b), std::move(done), initial_buffer_bytes, max_buffer_bytes)
      ->Start();
}

}  // namespace lifeline::tunnel
