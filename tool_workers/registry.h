// ToolRegistry: the live tool workers and the tools they serve. Workers
// register with a token and an endpoint from the allow-list, keep a lease by
// heartbeat and unregister on shutdown; static workers come from the
// gateway's configuration (workers behind a Kubernetes Service) and never
// expire. One tool name has one definition: a registration that disagrees
// with a live worker's definition is refused.
//
// It also balances calls: Acquire() picks the least-loaded live replica of a
// tool under its concurrency cap and counts the call in flight until
// Release(). Pure logic over the Clock seam (no gRPC, no timers): expired
// leases are dropped whenever the registry is used. Thread-safe.
//
// Several gateway replicas share registrations through a
// WorkerRegistrationStore (doc/adr/0011-shared-worker-registry.md): with one,
// Register / Heartbeat / Unregister validate here, write through to the
// store (blocking: callers run them off the gRPC callback threads) and only
// then change the local view; RegistrySync mirrors the other replicas'
// registrations in with Reconcile(). In-flight counts, suspect marks and
// concurrency caps stay per replica. Without a store nothing blocks and the
// registry is this process's alone.
#ifndef TOOL_WORKERS_REGISTRY_H_
#define TOOL_WORKERS_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/tool_worker.pb.h"
#include "service/common/clock.h"
#include "tool_workers/endpoint_allowlist.h"
#include "tool_workers/registration_store.h"

namespace assistants::tool_workers {

struct RegistryOptions {
  // Bearer token of RegisterWorker / Heartbeat / UnregisterWorker. Empty
  // disables dynamic registration (static workers still serve).
  std::string registration_token;
  EndpointAllowList allowlist;
  int64_t default_lease_ttl_ms = 15000;
  int64_t min_lease_ttl_ms = 1000;
  int64_t max_lease_ttl_ms = 300000;
  int32_t default_timeout_ms = 30000;
  int32_t max_timeout_ms = 600000;
  int32_t default_max_concurrency = 16;
  int32_t max_max_concurrency = 4096;
  // How long a replica that failed a call (UNAVAILABLE) is avoided.
  int64_t suspect_ms = 5000;
};

// One call's place on a replica, from Acquire() until Release().
struct WorkerSlot {
  std::string worker_id;
  // Which registration of the worker the call counts against: one that
  // expired and came back must not have its slots freed by old calls.
  uint64_t registration = 0;
  std::string endpoint;
  std::string tool;
  int32_t timeout_ms = 0;
  bool idempotent = false;
};

enum class AcquireResult {
  kAcquired,
  // Live replicas serve the tool, all at their concurrency cap.
  kAllBusy,
  // No live replica serves the tool (besides those excluded).
  kNoWorker,
};

enum class CallOutcome { kOk, kUnavailable, kOther };

class ToolRegistry {
 public:
  // `shared` (may be null: a single gateway) must outlive the registry.
  ToolRegistry(RegistryOptions options, const Clock* clock,
               WorkerRegistrationStore* shared = nullptr);

  // Whether Register / Heartbeat / Unregister write to a shared store (and
  // so block on it).
  bool shared() const { return shared_ != nullptr; }

  // The RPCs; `token` is the bearer token the caller presented.
  absl::StatusOr<v1::RegisterWorkerResponse> Register(
      absl::string_view token, const v1::RegisterWorkerRequest& request);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      absl::string_view token, const v1::HeartbeatRequest& request);
  absl::Status Unregister(absl::string_view token,
                          const v1::UnregisterWorkerRequest& request);
  v1::ListToolsResponse ListTools() const;
  v1::ListWorkersResponse ListWorkers() const;

  // A worker from configuration: no lease, no token, no allow-list (the
  // operator wrote it), but the same validation and conflict rules.
  absl::Status AddStatic(const v1::Worker& worker);

  // Mirroring the shared store (RegistrySync). A mark taken before reading
  // the store: Reconcile leaves alone the workers this replica changed
  // after it, so an older read never undoes a newer local write.
  uint64_t SyncMark() const;
  // Makes the local view match `rows` (every live row of the store): adds or
  // replaces the workers they describe (local expiry = this clock's now +
  // remaining_ms; suspect marks and in-flight counts kept) and lets go of
  // registered workers that have no row (as if unregistered: calls in
  // flight finish). Returns, per worker id, why a row could not be mirrored
  // (an endpoint this replica's allow-list refuses, a static worker's id,
  // a definition conflicting with a static worker, invalid tools).
  std::map<std::string, absl::Status> Reconcile(
      const std::vector<SharedWorker>& rows, uint64_t mark);
  // Adds or refreshes one worker from the store, as Reconcile does.
  absl::Status Mirror(const SharedWorker& row);
  // Lets go of a registered worker (not a static one), as Unregister does.
  void Forget(absl::string_view worker_id);

  // Whether a live replica serves `tool`.
  bool Serves(absl::string_view tool) const;
  // The live definition of `tool` (with effective timeout and cap).
  std::optional<v1::WorkerTool> Tool(absl::string_view tool) const;

  // Reserves a call on the best live replica of `tool` not in `exclude`:
  // healthy before suspect, then the lowest in-flight share of its cap,
  // ties in turn.
  AcquireResult Acquire(absl::string_view tool,
                        const std::set<std::string>& exclude, WorkerSlot* slot);
  // Ends a reservation; UNAVAILABLE makes the replica suspect for a while.
  void Release(const WorkerSlot& slot, CallOutcome outcome);

  // Called (outside the registry's lock) when capacity may have grown: a
  // call was released or a worker registered. Set once, before use.
  void set_capacity_listener(std::function<void()> listener) {
    absl::MutexLock lock(&mu_);
    capacity_listener_ = std::move(listener);
  }

 private:
  struct ToolState {
    v1::WorkerTool tool;  // with effective timeout_ms and max_concurrency
    int in_flight = 0;
  };
  struct WorkerState {
    std::string worker_id;
    std::string endpoint;
    std::string lease_id;
    uint64_t registration = 0;
    bool is_static = false;
    bool draining = false;  // unregistered with calls still in flight
    int64_t lease_ttl_ms = 0;
    int64_t lease_expires_at_ms = 0;
    int64_t heartbeat_interval_ms = 0;
    int64_t last_heartbeat_ms = 0;
    int64_t suspect_until_ms = 0;
    // change_seq_ when this replica last changed it (see SyncMark).
    uint64_t changed = 0;
    std::map<std::string, ToolState> tools;
  };

  absl::Status CheckToken(absl::string_view token) const;
  // INVALID_ARGUMENT for a malformed endpoint; PERMISSION_DENIED
  // (ENDPOINT_NOT_ALLOWED) when this replica's allow-list refuses it.
  absl::Status CheckEndpoint(absl::string_view endpoint) const;
  // Validates tools and fills in defaults.
  absl::StatusOr<std::map<std::string, ToolState>> ValidateTools(
      const google::protobuf::RepeatedPtrField<v1::WorkerTool>& tools) const;
  // A live worker other than `worker_id` defining a tool differently.
  absl::Status CheckConflicts(const std::string& worker_id,
                              const std::map<std::string, ToolState>& tools)
      const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lease part of a registered worker's state, from its TTL and the
  // lease time left.
  void SetLease(WorkerState& state, int64_t ttl_ms, int64_t remaining_ms,
                int64_t now) const;
  // Validates a stored row into a state (lease from remaining_ms).
  absl::StatusOr<WorkerState> FromShared(const SharedWorker& row,
                                         int64_t now) const;
  // Mirror() under the lock: refreshes the lease when `row` is the lease
  // this replica knows, else validates and puts it. Sets *added when the
  // worker is new or replaced.
  absl::Status MirrorLocked(const SharedWorker& row, int64_t now, bool* added)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Register / Heartbeat / Unregister with a shared store.
  absl::StatusOr<v1::RegisterWorkerResponse> RegisterShared(
      WorkerState state, v1::RegisterWorkerResponse response);
  absl::StatusOr<v1::HeartbeatResponse> HeartbeatShared(
      const v1::HeartbeatRequest& request);
  // Inserts or replaces `state`, keeping in-flight counts of a replaced
  // registration (its calls are still running).
  void Put(WorkerState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops workers whose lease ran out and drained workers.
  void Prune() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Live(const WorkerState& worker) const;
  v1::WorkerHealth Health(const WorkerState& worker, int64_t now) const;
  void NotifyCapacity();

  const RegistryOptions options_;
  const Clock* clock_;
  WorkerRegistrationStore* const shared_;
  mutable absl::Mutex mu_;
  std::function<void()> capacity_listener_ ABSL_GUARDED_BY(mu_);
  // Mutable so const readers can drop expired leases.
  mutable absl::flat_hash_map<std::string, WorkerState> workers_
      ABSL_GUARDED_BY(mu_);
  uint64_t turn_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_registration_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t change_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // Workers this replica unregistered, with the change_seq_ of it: a read
  // older than that must not bring them back (see Reconcile).
  std::map<std::string, uint64_t> removed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace assistants::tool_workers

#endif  // TOOL_WORKERS_REGISTRY_H_
