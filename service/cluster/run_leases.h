// RunLeases: which gateway replica drives which run, when several replicas
// share one database. A replica drives a run only while it holds the run's
// lease; every acquisition bumps the lease's fencing token, and every write
// of a run carries the token it was driven under (RunChanges.lease_token), so
// a replica that lost its lease (paused, partitioned, presumed dead) can
// never write again. Leases expire unless renewed; expired leases are
// claimed by the other replicas' sweeps, which resume the run from the store.
//
// A lease row exists for every active run (the store inserts it with the
// run, unowned, claimable after a short grace) and is deleted when the run
// ends. Without leases (nullptr in the engine) one gateway drives all runs.
#ifndef SERVICE_CLUSTER_RUN_LEASES_H_
#define SERVICE_CLUSTER_RUN_LEASES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace assistants::cluster {

struct RunLease {
  std::string run_id;
  std::string thread_id;
  int64_t token = 0;
};

// What a replica asks of the one driving a run (delivered to every replica;
// only the driver acts).
enum class RunCommand { kCancel, kPark };

class RunLeases {
 public:
  virtual ~RunLeases() = default;

  // This replica's identity (the lease owner it writes).
  virtual const std::string& replica_id() const = 0;

  // Takes the lease of `run_id` when nobody holds it (released, or never
  // taken) or its holder's lease expired; returns the new token.
  // FAILED_PRECONDITION (RUN_OWNED_ELSEWHERE, metadata run_id) while another
  // replica holds it; NOT_FOUND (RUN_NOT_FOUND) when the run has no lease
  // (it ended, or never existed).
  virtual absl::StatusOr<RunLease> Acquire(const std::string& run_id) = 0;

  // Claims up to `limit` leases that expired or whose release delay passed
  // (runs whose driver died, and parked runs that are due).
  virtual absl::StatusOr<std::vector<RunLease>> ClaimExpired(int limit) = 0;

  // Extends the leases in `held` that this replica still holds; returns the
  // run ids of those it no longer holds (taken over: stop driving them).
  virtual absl::StatusOr<std::vector<std::string>> Renew(
      const std::vector<RunLease>& held) = 0;

  // Gives up the lease (nothing happens when `token` is stale): nobody
  // drives the run; Acquire may take it at once, the sweeps only after
  // `claim_after_ms`.
  virtual absl::Status Release(const RunLease& lease,
                               int64_t claim_after_ms) = 0;

  // The run ended: deletes its lease (when `token` is still current).
  virtual absl::Status Finish(const RunLease& lease) = 0;

  // The other active runs of `thread_id` created before `run_id` (all of
  // them when `run_id` is empty), oldest first.
  virtual absl::StatusOr<std::vector<RunLease>> ThreadRuns(
      const std::string& thread_id, const std::string& run_id) = 0;

  // Sends `command` for `run_id` to every replica.
  virtual absl::Status Send(RunCommand command, const std::string& run_id) = 0;
};

}  // namespace assistants::cluster

#endif  // SERVICE_CLUSTER_RUN_LEASES_H_
