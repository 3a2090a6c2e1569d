// RateLimiter: a token bucket per key on a FakeClock: the burst, the refill,
// independent keys, and the RetryInfo delay of a refusal.
#include "service/auth/rate_limiter.h"

#include <gtest/gtest.h>

#include <chrono>

#include "service/common/clock.h"
#include "service/common/errors.h"

namespace assistants::auth {
namespace {

int64_t RetryDelayMs(const absl::Status& status) {
  auto info = GetRetryInfo(status);
  if (!info.has_value()) return -1;
  return info->retry_delay().seconds() * 1000 +
         info->retry_delay().nanos() / 1'000'000;
}

TEST(RateLimiterTest, AllowsTheBurstThenRefusesWithRetryInfo) {
  FakeClock clock;
  RateLimiter limiter(/*rate=*/2, /*burst=*/3, &clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("k").ok()) << i;
  absl::Status refused = limiter.Acquire("k");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(refused), "RATE_LIMITED");
  // 2 tokens per second: the next one is 500 ms away.
  EXPECT_EQ(RetryDelayMs(refused), 500);
}

TEST(RateLimiterTest, RefillsAtTheRateUpToTheBurst) {
  FakeClock clock;
  RateLimiter limiter(/*rate=*/10, /*burst=*/2, &clock);
  ASSERT_TRUE(limiter.Acquire("k").ok());
  ASSERT_TRUE(limiter.Acquire("k").ok());
  ASSERT_FALSE(limiter.Acquire("k").ok());
  clock.Advance(std::chrono::milliseconds(100));
  EXPECT_TRUE(limiter.Acquire("k").ok());
  EXPECT_FALSE(limiter.Acquire("k").ok());
  // A long pause saves up only `burst` tokens.
  clock.Advance(std::chrono::seconds(60));
  EXPECT_TRUE(limiter.Acquire("k").ok());
  EXPECT_TRUE(limiter.Acquire("k").ok());
  EXPECT_FALSE(limiter.Acquire("k").ok());
}

TEST(RateLimiterTest, KeysHaveTheirOwnBuckets) {
  FakeClock clock;
  RateLimiter limiter(/*rate=*/1, /*burst=*/1, &clock);
  EXPECT_TRUE(limiter.Acquire("a").ok());
  EXPECT_FALSE(limiter.Acquire("a").ok());
  EXPECT_TRUE(limiter.Acquire("b").ok());
}

TEST(RateLimiterTest, RefusedCallsDoNotSpendTokens) {
  FakeClock clock;
  RateLimiter limiter(/*rate=*/1, /*burst=*/1, &clock);
  ASSERT_TRUE(limiter.Acquire("k").ok());
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(limiter.Acquire("k").ok());
  clock.Advance(std::chrono::seconds(1));
  EXPECT_TRUE(limiter.Acquire("k").ok());
}

}  // namespace
}  // namespace assistants::auth
