// Replica: what turns a gateway process into one of several replicas on a
// shared PostgreSQL database: run leases (ownership with fencing), the
// notification listener that wakes RunEvents streams of runs driven
// elsewhere and delivers other replicas' run commands (cancel, park), and
// this replica's identity.
#ifndef SERVICE_CLUSTER_REPLICA_H_
#define SERVICE_CLUSTER_REPLICA_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "service/cluster/pg_listener.h"
#include "service/cluster/pg_run_leases.h"
#include "service/runs/engine.h"
#include "service/store/pg/pg_client.h"
#include "service/store/pg/pg_store.h"

namespace assistants::cluster {

// host-pid-random: unique per process, readable in the run_leases table.
std::string DefaultReplicaId();

class Replica {
 public:
  // Connects to the database (failing early when it is unreachable).
  static absl::StatusOr<std::unique_ptr<Replica>> Open(
      const std::string& postgres_url, std::string replica_id,
      int64_t lease_ttl_ms);

  // For RunEngine::EnableCluster: must outlive the engine.
  RunLeases* leases() { return leases_.get(); }
  const std::string& replica_id() const { return leases_->replica_id(); }

  // Starts delivering other replicas' notifications to `engine`: event
  // commits wake its streams, commands reach its runs. Destroy the listener
  // before the engine.
  std::unique_ptr<PgListener> Listen(runs::RunEngine* engine) const;

 private:
  Replica() = default;
  std::string postgres_url_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<PgRunLeases> leases_;
};

}  // namespace assistants::cluster

#endif  // SERVICE_CLUSTER_REPLICA_H_
