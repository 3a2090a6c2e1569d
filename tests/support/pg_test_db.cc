#include "tests/support/pg_test_db.h"

#include <cstdlib>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/store/pg/pg_client.h"

namespace assistants::test_support {

bool PgTestDb::Available() { return !AdminUrl().empty(); }

const char* PgTestDb::SkipMessage() {
  return "PostgreSQL tests need a server: set ASSISTANTS_TEST_PG_URL to a "
         "libpq URL of a database where the test may CREATE SCHEMA (e.g. "
         "`export ASSISTANTS_TEST_PG_URL=$(scripts/pg-test-server.sh start)`)";
}

std::string PgTestDb::AdminUrl() {
  const char* url = std::getenv("ASSISTANTS_TEST_PG_URL");
  return url != nullptr ? url : "";
}

std::string PgTestDb::WithSearchPath(const std::string& conninfo,
                                     const std::string& schema) {
  if (absl::StartsWith(conninfo, "postgresql://") ||
      absl::StartsWith(conninfo, "postgres://")) {
    // URI query values are percent-decoded: '=' must be %3D.
    return absl::StrCat(conninfo, absl::StrContains(conninfo, "?") ? "&" : "?",
                        "options=-csearch_path%3D", schema,
                        "&application_name=", schema);
  }
  return absl::StrCat(conninfo, " options='-csearch_path=", schema,
                      "' application_name=", schema);
}

PgTestDb::PgTestDb() {
  std::random_device random;
  schema_ = absl::StrFormat("t_%08x%08x", random(), random());
  url_ = WithSearchPath(AdminUrl(), schema_);
  if (!Available()) {
    status_ = absl::FailedPreconditionError(SkipMessage());
    return;
  }
  absl::StatusOr<std::unique_ptr<pg::Connection>> admin =
      pg::Connection::Open(AdminUrl());
  if (!admin.ok()) {
    status_ = admin.status();
    return;
  }
  status_ = (*admin)->Exec(absl::StrCat("CREATE SCHEMA ", schema_)).status();
}

PgTestDb::~PgTestDb() {
  if (!Available()) return;
  absl::StatusOr<std::unique_ptr<pg::Connection>> admin =
      pg::Connection::Open(AdminUrl());
  if (!admin.ok()) return;
  (*admin)
      ->Exec(absl::StrCat("DROP SCHEMA IF EXISTS ", schema_, " CASCADE"))
      .IgnoreError();
}

}  // namespace assistants::test_support
