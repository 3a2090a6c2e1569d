// MemoryWorkerRegistrationStore: a WorkerRegistrationStore in this process's
// memory, for registries sharing one process (tests of replica behaviour
// without a database). Same contract as the PostgreSQL store: serialized
// checked puts, leases by its own clock, announced changes. Several
// RegistrySyncs may wait on one store. Thread-safe.
#ifndef TOOL_WORKERS_MEMORY_REGISTRATION_STORE_H_
#define TOOL_WORKERS_MEMORY_REGISTRATION_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "tool_workers/registration_store.h"

namespace assistants::tool_workers {

class MemoryWorkerRegistrationStore final : public WorkerRegistrationStore {
 public:
  // `clock` (the store's clock) must outlive the store.
  explicit MemoryWorkerRegistrationStore(const Clock* clock) : clock_(clock) {}

  absl::Status Put(const SharedWorker& registration,
                   const Check& check) override;
  absl::StatusOr<std::optional<SharedWorker>> Renew(
      absl::string_view worker_id, absl::string_view lease_id) override;
  absl::Status Delete(absl::string_view worker_id,
                      absl::string_view lease_id) override;
  absl::StatusOr<std::vector<SharedWorker>> ReadAll() override;
  bool WaitForChange(absl::Duration timeout) override;

  // Makes every later call fail with UNAVAILABLE (a lost database), or
  // work again.
  void set_unavailable(bool unavailable);

 private:
  struct Row {
    SharedWorker registration;
    int64_t expires_at_ms = 0;
  };
  absl::Status Available() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SharedWorker Read(const Row& row, int64_t now) const;
  void Changed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ++changes_; }

  const Clock* clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, Row> rows_ ABSL_GUARDED_BY(mu_);
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t changes_ ABSL_GUARDED_BY(mu_) = 0;
  // What WaitForChange last reported to each thread calling it (each
  // replica's sync thread); a thread's first call reports a change, as a
  // newly opened channel does.
  std::map<std::thread::id, uint64_t> seen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants::tool_workers

#endif  // TOOL_WORKERS_MEMORY_REGISTRATION_STORE_H_
