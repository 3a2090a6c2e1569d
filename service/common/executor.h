// A fixed pool of threads for blocking work (store I/O, waiting on workers),
// so gRPC callback threads never block.
#ifndef SERVICE_COMMON_EXECUTOR_H_
#define SERVICE_COMMON_EXECUTOR_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace assistants {

class Executor {
 public:
  // Starts `threads` workers (at least one).
  explicit Executor(size_t threads);
  // Runs every task already scheduled, then joins the threads.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task` to run on a pool thread. Tasks run in FIFO order of start.
  void Schedule(std::function<void()> task);

  // Tasks scheduled and not yet started (for metrics; takes the lock).
  size_t queue_depth() const;

 private:
  void WorkLoop();

  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace assistants

#endif  // SERVICE_COMMON_EXECUTOR_H_
