// PgTestDb: a private, empty PostgreSQL schema per test, on the server named
// by $ASSISTANTS_TEST_PG_URL (scripts/test.sh starts one and exports it), so
// PostgreSQL tests never see each other's tables and can run in parallel.
//
//   if (!PgTestDb::Available()) GTEST_SKIP() << PgTestDb::SkipMessage();
//   PgTestDb db;
//   ASSERT_TRUE(db.status().ok()) << db.status();
//   ... PgStore::Open(db.url(), ...) ...
#ifndef TESTS_SUPPORT_PG_TEST_DB_H_
#define TESTS_SUPPORT_PG_TEST_DB_H_

#include <string>

#include "absl/status/status.h"

namespace assistants::test_support {

class PgTestDb {
 public:
  // Whether $ASSISTANTS_TEST_PG_URL is set (non-empty).
  static bool Available();
  // Why a PostgreSQL test skipped: names the variable to set.
  static const char* SkipMessage();
  // $ASSISTANTS_TEST_PG_URL.
  static std::string AdminUrl();
  // `conninfo` (a libpq URI or keyword/value string) with its search_path
  // set to `schema`, so unqualified table names resolve there, and its
  // application_name too, so a test can find (and kill) its own sessions
  // in pg_stat_activity without touching other tests'.
  static std::string WithSearchPath(const std::string& conninfo,
                                    const std::string& schema);

  // Creates schema t_<random hex>; status() says whether that worked.
  PgTestDb();
  // Drops the schema and everything in it (CASCADE).
  ~PgTestDb();
  PgTestDb(const PgTestDb&) = delete;
  PgTestDb& operator=(const PgTestDb&) = delete;

  const absl::Status& status() const { return status_; }
  const std::string& schema() const { return schema_; }
  // A conninfo for the test's schema (see WithSearchPath).
  const std::string& url() const { return url_; }

 private:
  absl::Status status_;
  std::string schema_;
  std::string url_;
};

}  // namespace assistants::test_support

#endif  // TESTS_SUPPORT_PG_TEST_DB_H_
