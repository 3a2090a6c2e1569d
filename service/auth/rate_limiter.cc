#include "service/auth/rate_limiter.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"

namespace assistants::auth {

absl::Status RateLimiter::Acquire(absl::string_view key) {
  const int64_t now = clock_->NowMillis();
  double wait_ms = 0;
  {
    absl::MutexLock lock(&mu_);
    auto [it, added] = buckets_.try_emplace(key);
    Bucket& bucket = it->second;
    if (added) {
      bucket.tokens = burst_;
    } else if (now > bucket.updated_ms) {
      bucket.tokens = std::min(
          burst_, bucket.tokens + (now - bucket.updated_ms) * rate_per_ms_);
    }
    bucket.updated_ms = std::max(bucket.updated_ms, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return absl::OkStatus();
    }
    wait_ms = (1 - bucket.tokens) / rate_per_ms_;
  }
  absl::Status error =
      MakeError(absl::StatusCode::kResourceExhausted, "RATE_LIMITED",
                "Too many requests for this API key; retry after the delay "
                "in RetryInfo",
                {{"limit_per_second", absl::StrCat(rate_per_ms_ * 1000)}});
  SetRetryDelay(error, std::chrono::milliseconds(
                           static_cast<int64_t>(std::ceil(wait_ms))));
  return error;
}

}  // namespace assistants::auth
