// A thin layer over libpq for the PostgreSQL store and the cluster pieces
// (run leases, shared worker registry, event notifications): connections, a
// fixed-size pool, transactions with retry, versioned migrations, and the one
// mapping from PostgreSQL errors to the gateway's typed statuses.
//
// Error mapping (every method here returns it, nothing throws):
// - connection trouble (CONNECTION_BAD, SQLSTATE class 08, 57P01..57P03
//   admin shutdown / cannot connect now) -> UNAVAILABLE, STORE_UNAVAILABLE
//   (the pooled connection is dropped and reopened on next use);
// - 40001 serialization failure, 40P01 deadlock -> ABORTED,
//   STORE_CONFLICT (InTransaction retries these itself);
// - 23505 unique violation -> ALREADY_EXISTS, STORE_UNIQUE_VIOLATION with
//   metadata "constraint" = the constraint's name;
// - anything else -> INTERNAL, STORE_ERROR with metadata "sqlstate".
#ifndef SERVICE_STORE_PG_PG_CLIENT_H_
#define SERVICE_STORE_PG_PG_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

struct pg_conn;
struct pg_result;

namespace assistants::pg {

// One query parameter, sent in libpq's text format except `Bytes` (binary,
// for bytea: protobuf blobs go over the wire unescaped).
struct Param {
  static Param Text(std::string value);
  static Param Int(int64_t value);
  static Param Bytes(std::string value);
  static Param Null();
  std::string value;
  bool is_null = false;
  bool binary = false;
};

// A query's rows (text format; bytea columns decoded by Bytes()).
class Result {
 public:
  explicit Result(pg_result* result);
  Result(Result&& other) noexcept;
  Result& operator=(Result&& other) noexcept;
  ~Result();

  int rows() const;
  // Rows changed by INSERT/UPDATE/DELETE.
  int64_t affected() const;
  bool IsNull(int row, int column) const;
  std::string Text(int row, int column) const;
  int64_t Int(int row, int column) const;
  bool Bool(int row, int column) const;
  // A bytea column.
  std::string Bytes(int row, int column) const;

 private:
  pg_result* result_;
};

struct Notification {
  std::string channel;
  std::string payload;
};

class Connection {
 public:
  // `conninfo` is a libpq connection string or URI.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& conninfo);
  ~Connection();

  absl::StatusOr<Result> Exec(absl::string_view sql,
                              const std::vector<Param>& params = {});
  // Whether the connection is still usable (not CONNECTION_BAD).
  bool healthy() const;
  // Healthy and outside any transaction block: safe to lend again.
  bool idle() const;

  // LISTEN support: waits up to `timeout` for the socket to be readable,
  // then returns every notification received so far (possibly none).
  // UNAVAILABLE when the connection broke (the caller reopens and
  // re-LISTENs; notifications sent meanwhile are lost, so it re-reads).
  absl::StatusOr<std::vector<Notification>> WaitForNotifications(
      absl::Duration timeout);

 private:
  explicit Connection(pg_conn* conn) : conn_(conn) {}
  pg_conn* conn_;
  // Server-side prepared statements of this connection, by SQL text: each
  // text is parsed and planned once per connection, not once per call.
  std::unordered_map<std::string, std::string> prepared_;
};

class Pool {
 public:
  // Opens connections lazily, at most `size` at once.
  Pool(std::string conninfo, int size);
  ~Pool();

  // A connection on loan; back to the pool when destroyed (closed instead
  // when it broke).
  class Lease {
   public:
    Lease(Pool* pool, std::unique_ptr<Connection> connection);
    Lease(Lease&& other) noexcept;
    ~Lease();
    Connection* operator->() { return connection_.get(); }
    Connection& operator*() { return *connection_; }

   private:
    Pool* pool_;
    std::unique_ptr<Connection> connection_;
  };

  // Blocks while all `size` connections are on loan; UNAVAILABLE when a new
  // connection cannot be opened.
  absl::StatusOr<Lease> Acquire();

  // Runs `body` between BEGIN and COMMIT on one connection (ROLLBACK when it
  // returns an error). Serialization failures and deadlocks (ABORTED,
  // STORE_CONFLICT) and a connection lost before COMMIT was sent are
  // retried, a few times with backoff; `body` must therefore have no effect
  // outside the transaction.
  absl::Status InTransaction(
      const std::function<absl::Status(Connection&)>& body);

  const std::string& conninfo() const { return conninfo_; }

 private:
  friend class Lease;
  void Return(std::unique_ptr<Connection> connection);
  // Closes every idle connection: after one was found broken the others
  // likely are too (the server restarted), and a retry must not use them.
  void DropIdle();
  struct State;
  const std::string conninfo_;
  std::unique_ptr<State> state_;
};

// "host:port/dbname" of `conninfo`, for logs: never its password (empty
// when libpq cannot parse it).
std::string DescribeConninfo(const std::string& conninfo);

struct Migration {
  int version = 0;
  std::string sql;
};

// Applies `component`'s migrations above its schema version in the
// database (one schema_versions row per component: "store",
// "tool_workers", ...), in order, each in its own transaction, under a
// transaction-level advisory lock so replicas starting at once apply each
// migration exactly once (the others wait, then see it applied).
// FAILED_PRECONDITION (STORE_SCHEMA_TOO_NEW) when the database has a
// version of the component this binary does not know.
absl::Status Migrate(Pool& pool, absl::string_view component,
                     const std::vector<Migration>& migrations);

}  // namespace assistants::pg

#endif  // SERVICE_STORE_PG_PG_CLIENT_H_
