// RegistrySync: keeps one replica's ToolRegistry a mirror of the shared
// WorkerRegistrationStore. Its own thread re-reads every registration when
// the store announces a change (PostgreSQL: LISTEN assistants_workers) and
// at least every `interval` (cluster.worker_sync_ms), and reconciles the
// registry with what it read. See doc/adr/0011-shared-worker-registry.md.
#ifndef TOOL_WORKERS_REGISTRY_SYNC_H_
#define TOOL_WORKERS_REGISTRY_SYNC_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tool_workers/registration_store.h"
#include "tool_workers/registry.h"

namespace assistants::tool_workers {

class RegistrySync {
 public:
  // `registry` and `store` must outlive the sync.
  RegistrySync(ToolRegistry* registry, WorkerRegistrationStore* store,
               absl::Duration interval);
  // Stops the thread.
  ~RegistrySync();
  RegistrySync(const RegistrySync&) = delete;
  RegistrySync& operator=(const RegistrySync&) = delete;

  // Mirrors the store once (so a replica starts with the workers the others
  // know; a failure is logged, the thread retries), then starts the thread.
  void Start();
  // Stops the thread (within about 200 ms); idempotent.
  void Stop();

  // One re-read and reconcile, now. Errors are the store's.
  absl::Status SyncOnce();
  // Completed re-reads (successful or not), for tests that wait for one.
  uint64_t syncs() const { return syncs_.load(); }

 private:
  void Loop();

  ToolRegistry* const registry_;
  WorkerRegistrationStore* const store_;
  const absl::Duration interval_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> syncs_{0};
  std::thread thread_;
  absl::Mutex mu_;
  // Rows this replica refused, by worker id, with the lease refused: each
  // is logged once, not at every sync.
  std::map<std::string, std::string> refused_ ABSL_GUARDED_BY(mu_);
  // Whether the last read failed (logged once until one succeeds).
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace assistants::tool_workers

#endif  // TOOL_WORKERS_REGISTRY_SYNC_H_
