// The libpq client (service/store/pg/pg_client.h) against a real PostgreSQL:
// parameters and results, the error mapping, transactions and their
// retries, the pool, migrations (also when replicas race), notifications.
// Each test runs in its own schema (PgTestDb); without
// $ASSISTANTS_TEST_PG_URL they skip.
#include "service/store/pg/pg_client.h"

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/common/errors.h"
#include "service/store/pg/pg_errors.h"
#include "tests/support/pg_test_db.h"

namespace assistants::pg {
namespace {

using test_support::PgTestDb;

std::string MetadataOf(const absl::Status& status, const std::string& key) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) return "<no ErrorInfo>";
  auto it = info->metadata().find(key);
  return it == info->metadata().end() ? "<missing>" : it->second;
}

class PgClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PgTestDb::Available()) GTEST_SKIP() << PgTestDb::SkipMessage();
    db_ = std::make_unique<PgTestDb>();
    ASSERT_TRUE(db_->status().ok()) << db_->status();
    absl::StatusOr<std::unique_ptr<Connection>> connection =
        Connection::Open(db_->url());
    ASSERT_TRUE(connection.ok()) << connection.status();
    connection_ = *std::move(connection);
  }

  // Runs `sql` on the test's own connection, failing the test on error.
  Result MustExec(const std::string& sql,
                  const std::vector<Param>& params = {}) {
    absl::StatusOr<Result> result = connection_->Exec(sql, params);
    EXPECT_TRUE(result.ok()) << sql << ": " << result.status();
    if (!result.ok()) return Result(nullptr);
    return *std::move(result);
  }

  int64_t Count(const std::string& table) {
    Result result = MustExec(absl::StrCat("SELECT count(*) FROM ", table));
    return result.rows() == 1 ? result.Int(0, 0) : -1;
  }

  // Terminates backend `pid` and waits until it is gone.
  void Terminate(int64_t pid) {
    MustExec("SELECT pg_terminate_backend($1::int)", {Param::Int(pid)});
    for (int i = 0; i < 1000; ++i) {
      Result alive =
          MustExec("SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int",
                   {Param::Int(pid)});
      if (alive.rows() == 1 && alive.Int(0, 0) == 0) return;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "backend " << pid << " did not terminate";
  }

  std::unique_ptr<PgTestDb> db_;
  std::unique_ptr<Connection> connection_;
};

TEST_F(PgClientTest, ParametersAndResultsRoundTrip) {
  const std::string bytes = std::string("a\0b\xff\x01", 5);
  Result result = MustExec(
      "SELECT $1::text, $2::bigint, $3::bytea, $4::text IS NULL, $4::text, "
      "true, false",
      {Param::Text("it's \"quoted\" ünicode"), Param::Int(-42),
       Param::Bytes(bytes), Param::Null()});
  ASSERT_EQ(result.rows(), 1);
  EXPECT_EQ(result.Text(0, 0), "it's \"quoted\" ünicode");
  EXPECT_EQ(result.Int(0, 1), -42);
  EXPECT_EQ(result.Bytes(0, 2), bytes);
  EXPECT_TRUE(result.Bool(0, 3));
  EXPECT_TRUE(result.IsNull(0, 4));
  EXPECT_TRUE(result.Bool(0, 5));
  EXPECT_FALSE(result.Bool(0, 6));
}

TEST_F(PgClientTest, EmptyBytesAndAffectedRows) {
  MustExec("CREATE TABLE blobs (id int PRIMARY KEY, body bytea NOT NULL)");
  MustExec("INSERT INTO blobs VALUES (1, $1), (2, $1)", {Param::Bytes("")});
  Result body =
      MustExec("SELECT body FROM blobs WHERE id = $1::int", {Param::Int(1)});
  ASSERT_EQ(body.rows(), 1);
  EXPECT_EQ(body.Bytes(0, 0), "");
  Result updated = MustExec("UPDATE blobs SET body = $1", {Param::Bytes("x")});
  EXPECT_EQ(updated.affected(), 2);
}

TEST_F(PgClientTest, SameStatementRunsRepeatedly) {
  // The second and later runs use the connection's prepared statement.
  for (int i = 0; i < 5; ++i) {
    Result result = MustExec("SELECT $1::bigint * 2", {Param::Int(i)});
    ASSERT_EQ(result.rows(), 1);
    EXPECT_EQ(result.Int(0, 0), 2 * i);
  }
}

TEST_F(PgClientTest, UniqueViolationNamesTheConstraint) {
  MustExec(
      "CREATE TABLE things (id text, CONSTRAINT things_id_key UNIQUE (id))");
  MustExec("INSERT INTO things VALUES ($1)", {Param::Text("a")});
  absl::StatusOr<Result> again =
      connection_->Exec("INSERT INTO things VALUES ($1)", {Param::Text("a")});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorReason(again.status()), kStoreUniqueViolation);
  EXPECT_EQ(MetadataOf(again.status(), "constraint"), "things_id_key");
}

TEST_F(PgClientTest, SyntaxErrorIsInternalWithSqlstate) {
  absl::StatusOr<Result> result = connection_->Exec("SELEC 1");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ErrorReason(result.status()), kStoreError);
  EXPECT_EQ(MetadataOf(result.status(), "sqlstate"), "42601");
  // Also through the prepared path (a statement with parameters).
  result = connection_->Exec("SELEC $1", {Param::Int(1)});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(MetadataOf(result.status(), "sqlstate"), "42601");
  // The connection stays usable.
  EXPECT_EQ(MustExec("SELECT 1").rows(), 1);
}

TEST(PgClientNoServerTest, ConnectionRefusedIsUnavailable) {
  // Port 1 on loopback: nothing listens there.
  absl::StatusOr<std::unique_ptr<Connection>> connection =
      Connection::Open("postgresql://postgres@127.0.0.1:1/postgres");
  ASSERT_FALSE(connection.ok());
  EXPECT_EQ(connection.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(connection.status()), kStoreUnavailable);

  Pool pool("postgresql://postgres@127.0.0.1:1/postgres", 2);
  absl::Status status =
      pool.InTransaction([](Connection&) { return absl::OkStatus(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(status), kStoreUnavailable);
}

TEST_F(PgClientTest, InTransactionCommits) {
  MustExec("CREATE TABLE rows_ (id int PRIMARY KEY)");
  Pool pool(db_->url(), 2);
  absl::Status status = pool.InTransaction([](Connection& connection) {
    return connection.Exec("INSERT INTO rows_ VALUES (1), (2)").status();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(Count("rows_"), 2);
}

TEST_F(PgClientTest, InTransactionRollsBackOnError) {
  MustExec("CREATE TABLE rows_ (id int PRIMARY KEY)");
  Pool pool(db_->url(), 1);
  int attempts = 0;
  absl::Status status = pool.InTransaction([&](Connection& connection) {
    ++attempts;
    absl::Status inserted =
        connection.Exec("INSERT INTO rows_ VALUES (1)").status();
    if (!inserted.ok()) return inserted;
    return absl::FailedPreconditionError("changed my mind");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(attempts, 1);  // not a retryable error
  EXPECT_EQ(Count("rows_"), 0);

  // A failed statement rolls back as well, and the pooled connection is
  // usable afterwards.
  status = pool.InTransaction([](Connection& connection) {
    absl::Status inserted =
        connection.Exec("INSERT INTO rows_ VALUES (1)").status();
    if (!inserted.ok()) return inserted;
    return connection.Exec("INSERT INTO rows_ VALUES (1)").status();
  });
  EXPECT_EQ(ErrorReason(status), kStoreUniqueViolation);
  EXPECT_EQ(Count("rows_"), 0);
  status = pool.InTransaction([](Connection& connection) {
    return connection.Exec("INSERT INTO rows_ VALUES (7)").status();
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(Count("rows_"), 1);
}

TEST_F(PgClientTest, InTransactionRetriesSerializationFailure) {
  MustExec("CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL)");
  MustExec("INSERT INTO counters VALUES (1, 0)");
  Pool pool(db_->url(), 1);
  int attempts = 0;
  absl::Status status = pool.InTransaction([&](Connection& connection) {
    ++attempts;
    absl::Status step =
        connection.Exec("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            .status();
    if (!step.ok()) return step;
    // Takes this transaction's snapshot.
    step = connection.Exec("SELECT value FROM counters WHERE id = 1").status();
    if (!step.ok()) return step;
    if (attempts == 1) {
      // Another serializable transaction changes the row and commits.
      MustExec("BEGIN ISOLATION LEVEL SERIALIZABLE");
      MustExec("UPDATE counters SET value = value + 1 WHERE id = 1");
      MustExec("COMMIT");
    }
    // 40001 on the first attempt: the row changed after our snapshot.
    return connection
        .Exec("UPDATE counters SET value = value + 10 WHERE id = 1")
        .status();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(attempts, 2);
  Result value = MustExec("SELECT value FROM counters WHERE id = 1");
  EXPECT_EQ(value.Int(0, 0), 11);
}

TEST_F(PgClientTest, ConflictsAreAbortedStoreConflict) {
  MustExec("CREATE TABLE counters (id int PRIMARY KEY, value int NOT NULL)");
  MustExec("INSERT INTO counters VALUES (1, 0)");
  Pool pool(db_->url(), 1);
  int attempts = 0;
  // Conflicts every time: InTransaction gives up after a few attempts with
  // the conflict itself.
  absl::Status status = pool.InTransaction([&](Connection& connection) {
    ++attempts;
    absl::Status step =
        connection.Exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .status();
    if (!step.ok()) return step;
    step = connection.Exec("SELECT value FROM counters").status();
    if (!step.ok()) return step;
    MustExec("UPDATE counters SET value = value + 1 WHERE id = 1");
    return connection.Exec("UPDATE counters SET value = 0 WHERE id = 1")
        .status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorReason(status), kStoreConflict);
  EXPECT_EQ(MetadataOf(status, "sqlstate"), "40001");
  EXPECT_GT(attempts, 1);
}

TEST_F(PgClientTest, InTransactionRetriesAfterBackendKilled) {
  MustExec("CREATE TABLE rows_ (id int PRIMARY KEY)");
  Pool pool(db_->url(), 1);
  int attempts = 0;
  absl::Status status = pool.InTransaction([&](Connection& connection) {
    ++attempts;
    if (attempts == 1) {
      absl::StatusOr<Result> pid = connection.Exec("SELECT pg_backend_pid()");
      if (!pid.ok()) return pid.status();
      Terminate(pid->Int(0, 0));
    }
    return connection.Exec("INSERT INTO rows_ VALUES (1)").status();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(Count("rows_"), 1);
}

TEST_F(PgClientTest, LostConnectionIsUnavailable) {
  absl::StatusOr<std::unique_ptr<Connection>> victim =
      Connection::Open(db_->url());
  ASSERT_TRUE(victim.ok()) << victim.status();
  absl::StatusOr<Result> pid = (*victim)->Exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok()) << pid.status();
  Terminate(pid->Int(0, 0));
  absl::StatusOr<Result> result = (*victim)->Exec("SELECT 1");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(result.status()), kStoreUnavailable);
  EXPECT_FALSE((*victim)->healthy());
}

TEST_F(PgClientTest, PoolReplacesBrokenConnections) {
  Pool pool(db_->url(), 1);
  int64_t first_pid = 0;
  {
    absl::StatusOr<Pool::Lease> lease = pool.Acquire();
    ASSERT_TRUE(lease.ok()) << lease.status();
    absl::StatusOr<Result> pid = (*lease)->Exec("SELECT pg_backend_pid()");
    ASSERT_TRUE(pid.ok()) << pid.status();
    first_pid = pid->Int(0, 0);
    Terminate(first_pid);
    EXPECT_FALSE((*lease)->Exec("SELECT 1").ok());
  }
  absl::StatusOr<Pool::Lease> lease = pool.Acquire();
  ASSERT_TRUE(lease.ok()) << lease.status();
  absl::StatusOr<Result> pid = (*lease)->Exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_NE(pid->Int(0, 0), first_pid);
}

TEST_F(PgClientTest, PoolReusesConnectionsAndWaitsWhenExhausted) {
  Pool pool(db_->url(), 1);
  int64_t first_pid = 0;
  {
    absl::StatusOr<Pool::Lease> lease = pool.Acquire();
    ASSERT_TRUE(lease.ok()) << lease.status();
    first_pid = (*lease)->Exec("SELECT pg_backend_pid()")->Int(0, 0);
  }
  absl::StatusOr<Pool::Lease> lease = pool.Acquire();
  ASSERT_TRUE(lease.ok()) << lease.status();
  std::optional<Pool::Lease> held(std::move(*lease));
  EXPECT_EQ((*held)->Exec("SELECT pg_backend_pid()")->Int(0, 0), first_pid);
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    absl::StatusOr<Pool::Lease> second = pool.Acquire();
    EXPECT_TRUE(second.ok()) << second.status();
    acquired = true;
  });
  // The waiter can only get the one connection once it is returned.
  EXPECT_FALSE(acquired.load());
  held.reset();
  waiter.join();
  EXPECT_TRUE(acquired.load());
}

std::vector<Migration> CountingMigrations(int up_to) {
  std::vector<Migration> migrations = {
      {1,
       "CREATE TABLE applied (version int NOT NULL); "
       "INSERT INTO applied VALUES (1);"},
      {2, "INSERT INTO applied VALUES (2);"},
      {3, "CREATE TABLE more (id int); INSERT INTO applied VALUES (3);"},
  };
  migrations.resize(up_to);
  return migrations;
}

TEST_F(PgClientTest, MigrateAppliesEachVersionOnceAcrossReplicas) {
  std::vector<absl::Status> results(4);
  std::vector<std::thread> replicas;
  for (int i = 0; i < 4; ++i) {
    replicas.emplace_back([&, i] {
      Pool pool(db_->url(), 2);  // each replica its own pool
      results[i] = Migrate(pool, "store", CountingMigrations(3));
    });
  }
  for (std::thread& replica : replicas) replica.join();
  for (const absl::Status& result : results) {
    EXPECT_TRUE(result.ok()) << result;
  }
  Result applied = MustExec("SELECT version FROM applied ORDER BY version");
  ASSERT_EQ(applied.rows(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(applied.Int(i, 0), i + 1);
  Result version =
      MustExec("SELECT version FROM schema_versions WHERE component = 'store'");
  ASSERT_EQ(version.rows(), 1);
  EXPECT_EQ(version.Int(0, 0), 3);
}

TEST_F(PgClientTest, MigrateUpgradesStepByStepAndIsIdempotent) {
  Pool pool(db_->url(), 1);
  ASSERT_TRUE(Migrate(pool, "store", CountingMigrations(1)).ok());
  ASSERT_TRUE(Migrate(pool, "store", CountingMigrations(1)).ok());
  EXPECT_EQ(Count("applied"), 1);
  ASSERT_TRUE(Migrate(pool, "store", CountingMigrations(3)).ok());
  ASSERT_TRUE(Migrate(pool, "store", CountingMigrations(3)).ok());
  EXPECT_EQ(Count("applied"), 3);
}

TEST_F(PgClientTest, ComponentsVersionIndependently) {
  Pool pool(db_->url(), 1);
  ASSERT_TRUE(Migrate(pool, "store", CountingMigrations(3)).ok());
  absl::Status status =
      Migrate(pool, "tool_workers", {{1, "CREATE TABLE workers (id text)"}});
  ASSERT_TRUE(status.ok()) << status;
  Result versions = MustExec(
      "SELECT component, version FROM schema_versions ORDER BY component");
  ASSERT_EQ(versions.rows(), 2);
  EXPECT_EQ(versions.Text(0, 0), "store");
  EXPECT_EQ(versions.Int(0, 1), 3);
  EXPECT_EQ(versions.Text(1, 0), "tool_workers");
  EXPECT_EQ(versions.Int(1, 1), 1);
}

TEST_F(PgClientTest, SchemaTooNewIsRefused) {
  Pool pool(db_->url(), 1);
  ASSERT_TRUE(Migrate(pool, "store", CountingMigrations(3)).ok());
  absl::Status status = Migrate(pool, "store", CountingMigrations(2));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(status), kStoreSchemaTooNew);
  EXPECT_EQ(MetadataOf(status, "schema_version"), "3");
  EXPECT_EQ(MetadataOf(status, "supported_schema_version"), "2");
}

TEST_F(PgClientTest, FailedMigrationLeavesNothingBehind) {
  Pool pool(db_->url(), 1);
  absl::Status status =
      Migrate(pool, "store",
              {{1, "CREATE TABLE half (id int); CREATE TABLE broken (;"}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(MetadataOf(status, "sqlstate"), "42601");
  Result tables = MustExec("SELECT to_regclass('half') IS NULL");
  EXPECT_TRUE(tables.Bool(0, 0));
  Result versions = MustExec("SELECT count(*) FROM schema_versions");
  EXPECT_EQ(versions.Int(0, 0), 0);
}

TEST_F(PgClientTest, NotificationsArriveAtCommit) {
  absl::StatusOr<std::unique_ptr<Connection>> listener =
      Connection::Open(db_->url());
  ASSERT_TRUE(listener.ok()) << listener.status();
  ASSERT_TRUE((*listener)->Exec("LISTEN test_channel").ok());

  MustExec("BEGIN");
  MustExec("SELECT pg_notify('test_channel', $1)", {Param::Text("run_1")});
  MustExec("SELECT pg_notify('test_channel', $1)", {Param::Text("run_2")});
  // Nothing is delivered before the transaction commits.
  absl::StatusOr<std::vector<Notification>> early =
      (*listener)->WaitForNotifications(absl::ZeroDuration());
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_TRUE(early->empty());
  MustExec("COMMIT");

  std::vector<Notification> received;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (received.size() < 2 && absl::Now() < deadline) {
    absl::StatusOr<std::vector<Notification>> batch =
        (*listener)->WaitForNotifications(absl::Seconds(1));
    ASSERT_TRUE(batch.ok()) << batch.status();
    received.insert(received.end(), batch->begin(), batch->end());
  }
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(received[0].channel, "test_channel");
  EXPECT_EQ(received[0].payload, "run_1");
  EXPECT_EQ(received[1].payload, "run_2");
}

TEST_F(PgClientTest, WaitForNotificationsReportsBrokenConnection) {
  absl::StatusOr<std::unique_ptr<Connection>> listener =
      Connection::Open(db_->url());
  ASSERT_TRUE(listener.ok()) << listener.status();
  ASSERT_TRUE((*listener)->Exec("LISTEN test_channel").ok());
  absl::StatusOr<Result> pid = (*listener)->Exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok()) << pid.status();
  Terminate(pid->Int(0, 0));
  absl::Status status;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (status.ok() && absl::Now() < deadline) {
    status = (*listener)->WaitForNotifications(absl::Seconds(1)).status();
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(status), kStoreUnavailable);
}

}  // namespace
}  // namespace assistants::pg
