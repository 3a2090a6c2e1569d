// The error reasons only the PostgreSQL pieces raise (the client's mapping
// of SQLSTATEs, migrations, run-lease fencing), named once so callers and
// tests compare against constants rather than spelled-out strings.
#ifndef SERVICE_STORE_PG_PG_ERRORS_H_
#define SERVICE_STORE_PG_PG_ERRORS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace assistants::pg {

// ABORTED: serialization failure (40001) or deadlock (40P01); the
// transaction was rolled back and may simply be run again.
inline constexpr absl::string_view kStoreConflict = "STORE_CONFLICT";
// ALREADY_EXISTS: unique violation (23505); metadata "constraint".
inline constexpr absl::string_view kStoreUniqueViolation =
    "STORE_UNIQUE_VIOLATION";
// INTERNAL: any other database error; metadata "sqlstate".
inline constexpr absl::string_view kStoreError = "STORE_ERROR";
// UNAVAILABLE: the database cannot be reached or the connection broke.
inline constexpr absl::string_view kStoreUnavailable = "STORE_UNAVAILABLE";
// FAILED_PRECONDITION: the database holds a newer schema of a component.
inline constexpr absl::string_view kStoreSchemaTooNew = "STORE_SCHEMA_TOO_NEW";
// ABORTED: a fenced change came from a replica that no longer holds the
// run's lease (metadata run_id).
inline constexpr absl::string_view kRunLeaseLost = "RUN_LEASE_LOST";

// ABORTED (RUN_LEASE_LOST, metadata run_id, lease_owner): `owner` no longer
// holds run `run_id`'s lease with the token it wrote under.
absl::Status RunLeaseLost(absl::string_view run_id, absl::string_view owner);

}  // namespace assistants::pg

#endif  // SERVICE_STORE_PG_PG_ERRORS_H_
