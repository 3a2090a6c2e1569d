// The PostgreSQL schema of the "store" component (PgStore's tables and the
// run_leases table of the cluster's run ownership), as pg::Migrate steps.
#ifndef SERVICE_STORE_PG_PG_SCHEMA_H_
#define SERVICE_STORE_PG_PG_SCHEMA_H_

#include <vector>

#include "service/store/pg/pg_client.h"

namespace assistants {

// The component name under which the migrations are versioned.
inline constexpr char kPgStoreComponent[] = "store";

// Every migration of the store, in version order. Never edit a released
// step: append a new one.
const std::vector<pg::Migration>& PgMigrations();

}  // namespace assistants

#endif  // SERVICE_STORE_PG_PG_SCHEMA_H_
