// Tests of the blocking-work executor (service/common/executor.h).
#include "service/common/executor.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace assistants {
namespace {

TEST(ExecutorTest, RunsEveryTaskBeforeDestruction) {
  std::atomic<int> done{0};
  {
    Executor executor(3);
    for (int i = 0; i < 1000; ++i) {
      executor.Schedule([&done] { done.fetch_add(1); });
    }
  }
  EXPECT_EQ(done.load(), 1000);
}

TEST(ExecutorTest, TasksRunConcurrently) {
  Executor executor(2);
  absl::Notification first_started, release;
  absl::Notification second_ran;
  executor.Schedule([&] {
    first_started.Notify();
    release.WaitForNotification();
  });
  first_started.WaitForNotification();
  // The first task is blocked; the second must still run on the other thread.
  executor.Schedule([&] { second_ran.Notify(); });
  EXPECT_TRUE(second_ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  release.Notify();
}

TEST(ExecutorTest, ZeroThreadsStillRuns) {
  std::atomic<int> done{0};
  {
    Executor executor(0);
    executor.Schedule([&done] { done = 1; });
  }
  EXPECT_EQ(done.load(), 1);
}

}  // namespace
}  // namespace assistants
