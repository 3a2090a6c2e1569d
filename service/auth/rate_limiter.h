// RateLimiter: a token bucket per API key. Each call takes one token;
// tokens refill at `rate` per second up to `burst`. A call finding the
// bucket empty is refused with RESOURCE_EXHAUSTED (reason RATE_LIMITED) and
// a RetryInfo saying when the next token arrives, so well-behaved clients
// back off exactly as long as needed.
#ifndef SERVICE_AUTH_RATE_LIMITER_H_
#define SERVICE_AUTH_RATE_LIMITER_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"

namespace assistants::auth {

class RateLimiter {
 public:
  // `rate` tokens per second (> 0), at most `burst` (>= 1) saved up.
  // `clock` must outlive the limiter.
  RateLimiter(double rate, double burst, const Clock* clock)
      : rate_per_ms_(rate / 1000.0), burst_(burst), clock_(clock) {}

  // Takes a token from `key`'s bucket, or RESOURCE_EXHAUSTED.
  absl::Status Acquire(absl::string_view key);

 private:
  struct Bucket {
    double tokens = 0;
    int64_t updated_ms = 0;
  };

  const double rate_per_ms_;
  const double burst_;
  const Clock* clock_;
  absl::Mutex mu_;
  // One bucket per key ever seen: keys come from the keys file, so the map
  // is bounded by it.
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants::auth

#endif  // SERVICE_AUTH_RATE_LIMITER_H_
