// WorkerRegistrationStore: where gateway replicas share tool-worker
// registrations (doc/adr/0011-shared-worker-registry.md). ToolRegistry
// writes through it (register, heartbeat, unregister) and RegistrySync
// mirrors it into every replica's registry. The PostgreSQL implementation is
// in pg_registration_store.h, the in-memory one (one process, tests) in
// memory_registration_store.h; a single gateway uses none (a null store).
//
// Lease times are the store's own clock: rows carry the lease time left
// (remaining_ms), never an absolute time, so replicas' clocks are never
// compared.
#ifndef TOOL_WORKERS_REGISTRATION_STORE_H_
#define TOOL_WORKERS_REGISTRATION_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "assistants/v1/tool_worker.pb.h"

namespace assistants::tool_workers {

// One registration as stored: what any replica needs to rebuild the worker.
struct SharedWorker {
  // worker_id, endpoint and tools (validated, defaults filled in by the
  // replica that accepted the registration).
  v1::Worker worker;
  std::string lease_id;
  int64_t lease_ttl_ms = 0;
  // On reads: how long the lease has left by the store's clock.
  int64_t remaining_ms = 0;
};

class WorkerRegistrationStore {
 public:
  // Given the other workers with live leases, refuses a registration (e.g.
  // a tool defined differently) or accepts it.
  using Check =
      std::function<absl::Status(const std::vector<SharedWorker>& others)>;

  virtual ~WorkerRegistrationStore() = default;

  // Stores `registration` as its worker's row (replacing any lease it had)
  // with a lease of lease_ttl_ms from now, unless `check` refuses it, and
  // tells every replica. Puts are serialized, so two registrations that
  // conflict cannot both pass their checks. Returns the check's error, or
  // the store's (UNAVAILABLE, INTERNAL...) when it cannot be written.
  virtual absl::Status Put(const SharedWorker& registration,
                           const Check& check) = 0;

  // Extends the lease `lease_id` of `worker_id` by its TTL if it is still
  // the worker's live lease, and tells every replica. Returns the renewed
  // row (remaining_ms = the TTL), or nullopt when there is no such live
  // lease (expired, replaced or unregistered).
  virtual absl::StatusOr<std::optional<SharedWorker>> Renew(
      absl::string_view worker_id, absl::string_view lease_id) = 0;

  // Deletes the worker's row if `lease_id` is its lease (otherwise nothing:
  // that lease is gone already) and tells every replica.
  virtual absl::Status Delete(absl::string_view worker_id,
                              absl::string_view lease_id) = 0;

  // Every row with a live lease.
  virtual absl::StatusOr<std::vector<SharedWorker>> ReadAll() = 0;

  // Blocks up to `timeout` for news of a change. True when the caller should
  // read everything again: a change was announced, or announcements may have
  // been missed (the channel was just (re)opened). Called by one thread.
  virtual bool WaitForChange(absl::Duration timeout) = 0;
};

}  // namespace assistants::tool_workers

#endif  // TOOL_WORKERS_REGISTRATION_STORE_H_
