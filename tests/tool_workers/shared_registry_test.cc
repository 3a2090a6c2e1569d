// The tool-worker registry shared by gateway replicas on PostgreSQL
// (tool_workers/pg_registration_store.h + registry_sync.h): two "replicas",
// each with its own pool, store, ToolRegistry and RegistrySync, on one fresh
// schema (PgTestDb). A worker registered on one is served by the other; a
// heartbeat through either keeps it alive on both; an expired lease and an
// unregistration disappear from both; a conflicting definition is refused
// across replicas; the sync survives its LISTEN connection being killed.
// Without $ASSISTANTS_TEST_PG_URL these tests skip.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/common/errors.h"
#include "service/store/pg/pg_client.h"
#include "tests/support/pg_test_db.h"
#include "tool_workers/pg_registration_store.h"
#include "tool_workers/registry.h"
#include "tool_workers/registry_sync.h"

namespace assistants::tool_workers {
namespace {

using test_support::PgTestDb;
using ::testing::IsEmpty;

constexpr char kToken[] = "registration-token-0123456789";
// Generous: waiting ends as soon as the condition holds.
constexpr absl::Duration kPatience = absl::Seconds(30);

v1::WorkerTool StockPrice(const std::string& description = "Gets a price.") {
  v1::WorkerTool tool;
  tool.mutable_function()->set_name("get_stock_price");
  tool.mutable_function()->set_description(description);
  (*tool.mutable_function()->mutable_parameters()->mutable_fields())["type"]
      .set_string_value("object");
  return tool;
}

v1::RegisterWorkerRequest Request(const std::string& worker_id,
                                  v1::WorkerTool tool,
                                  int32_t lease_ttl_ms = 15000) {
  v1::RegisterWorkerRequest request;
  request.set_worker_id(worker_id);
  request.set_endpoint("127.0.0.1:50300");
  *request.add_tools() = std::move(tool);
  request.set_lease_ttl_ms(lease_ttl_ms);
  return request;
}

// Waits (up to kPatience) until `condition` holds; returns whether it did.
template <typename Condition>
bool Eventually(Condition condition) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// One gateway replica's registry side.
struct Replica {
  Replica(const std::string& conninfo, absl::Duration sync_interval)
      : pool(conninfo, 2) {
    auto opened = PgWorkerRegistrationStore::Open(&pool);
    EXPECT_TRUE(opened.ok()) << opened.status();
    if (!opened.ok()) return;
    store = *std::move(opened);
    RegistryOptions options;
    options.registration_token = kToken;
    registry = std::make_unique<ToolRegistry>(options, &clock, store.get());
    sync = std::make_unique<RegistrySync>(registry.get(), store.get(),
                                          sync_interval);
  }
  ~Replica() {
    if (sync != nullptr) sync->Stop();
  }

  std::vector<std::string> WorkerIds() const {
    std::vector<std::string> ids;
    const v1::ListWorkersResponse list = registry->ListWorkers();
    for (const v1::Worker& worker : list.workers()) {
      ids.push_back(worker.worker_id());
    }
    return ids;
  }
  int64_t LeaseExpiry(const std::string& worker_id) const {
    const v1::ListWorkersResponse list = registry->ListWorkers();
    for (const v1::Worker& worker : list.workers()) {
      if (worker.worker_id() == worker_id) return worker.lease_expires_at_ms();
    }
    return 0;
  }

  SystemClock clock;
  pg::Pool pool;
  std::unique_ptr<PgWorkerRegistrationStore> store;
  std::unique_ptr<ToolRegistry> registry;
  std::unique_ptr<RegistrySync> sync;
};

class SharedRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PgTestDb::Available()) GTEST_SKIP() << PgTestDb::SkipMessage();
    db_ = std::make_unique<PgTestDb>();
    ASSERT_TRUE(db_->status().ok()) << db_->status();
  }

  // A replica on the test's schema; `name` becomes its connections'
  // application_name (so a test can find its LISTEN connection).
  std::unique_ptr<Replica> Start(
      const std::string& name,
      absl::Duration sync_interval = absl::Milliseconds(1000),
      bool start_sync = true) {
    auto replica = std::make_unique<Replica>(
        absl::StrCat(db_->url(), "&application_name=", db_->schema(), "_",
                     name),
        sync_interval);
    EXPECT_NE(replica->registry, nullptr);
    if (replica->sync != nullptr && start_sync) replica->sync->Start();
    return replica;
  }

  v1::RegisterWorkerResponse MustRegister(
      Replica& replica, const v1::RegisterWorkerRequest& request) {
    auto response = replica.registry->Register(kToken, request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::RegisterWorkerResponse();
  }

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(Replica& replica,
                                                  const std::string& worker_id,
                                                  const std::string& lease) {
    v1::HeartbeatRequest request;
    request.set_worker_id(worker_id);
    request.set_lease_id(lease);
    return replica.registry->Heartbeat(kToken, request);
  }

  absl::Status Unregister(Replica& replica, const std::string& worker_id,
                          const std::string& lease) {
    v1::UnregisterWorkerRequest request;
    request.set_worker_id(worker_id);
    request.set_lease_id(lease);
    return replica.registry->Unregister(kToken, request);
  }

  // Runs `sql` on a connection of its own to the test's schema.
  absl::StatusOr<pg::Result> Sql(const std::string& sql) {
    auto connection = pg::Connection::Open(db_->url());
    if (!connection.ok()) return connection.status();
    return (*connection)->Exec(sql);
  }

  std::unique_ptr<PgTestDb> db_;
};

TEST_F(SharedRegistryTest, WorkerRegisteredOnAIsServedByB) {
  auto a = Start("a");
  auto b = Start("b");
  MustRegister(*a, Request("stock-1", StockPrice()));
  EXPECT_TRUE(a->registry->Serves("get_stock_price"));
  ASSERT_TRUE(
      Eventually([&] { return b->registry->Serves("get_stock_price"); }));
  WorkerSlot slot;
  ASSERT_EQ(b->registry->Acquire("get_stock_price", {}, &slot),
            AcquireResult::kAcquired);
  EXPECT_EQ(slot.worker_id, "stock-1");
  EXPECT_EQ(slot.endpoint, "127.0.0.1:50300");
  b->registry->Release(slot, CallOutcome::kOk);

  // The row: the lease in database time.
  auto row =
      Sql("SELECT lease_ttl_ms, expires_at > now(), "
          "expires_at <= now() + interval '15 seconds' FROM tool_workers");
  ASSERT_TRUE(row.ok()) << row.status();
  ASSERT_EQ(row->rows(), 1);
  EXPECT_EQ(row->Int(0, 0), 15000);
  EXPECT_TRUE(row->Bool(0, 1));
  EXPECT_TRUE(row->Bool(0, 2));
}

TEST_F(SharedRegistryTest, ReplicaStartingLaterMirrorsExistingWorkers) {
  auto a = Start("a");
  MustRegister(*a, Request("stock-1", StockPrice()));
  auto b = Start("b", absl::Minutes(10));
  // Start() reads once before returning.
  EXPECT_TRUE(b->registry->Serves("get_stock_price"));
}

TEST_F(SharedRegistryTest, HeartbeatViaBKeepsItAliveOnA) {
  auto a = Start("a");
  auto b = Start("b");
  auto lease = MustRegister(*a, Request("stock-1", StockPrice(), 2000));
  const int64_t first_expiry = a->LeaseExpiry("stock-1");
  ASSERT_GT(first_expiry, 0);
  absl::SleepFor(absl::Milliseconds(50));  // so the renewal moves the lease
  auto beat = Heartbeat(*b, "stock-1", lease.lease_id());
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_TRUE(b->registry->Serves("get_stock_price"));
  // A learns the renewal from the store.
  EXPECT_TRUE(Eventually([&] {
    return a->LeaseExpiry("stock-1") > first_expiry;
  })) << "A's lease still ends at "
      << first_expiry;
  // A stale lease id is refused on either replica.
  auto stale = Heartbeat(*a, "stock-1", "lease_unknown");
  EXPECT_EQ(ErrorReason(stale.status()), "LEASE_NOT_FOUND");
}

TEST_F(SharedRegistryTest, ExpiredLeaseDisappearsFromBoth) {
  auto a = Start("a");
  auto b = Start("b");
  MustRegister(*a, Request("stock-1", StockPrice(), 1000));
  ASSERT_TRUE(
      Eventually([&] { return b->registry->Serves("get_stock_price"); }));
  EXPECT_TRUE(Eventually(
      [&] { return a->WorkerIds().empty() && b->WorkerIds().empty(); }));
  EXPECT_FALSE(b->registry->Serves("get_stock_price"));
  auto rows = b->store->ReadAll();
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_THAT(*rows, IsEmpty());
}

TEST_F(SharedRegistryTest, UnregisterOnARemovesItFromB) {
  auto a = Start("a");
  auto b = Start("b");
  auto lease = MustRegister(*a, Request("stock-1", StockPrice()));
  ASSERT_TRUE(
      Eventually([&] { return b->registry->Serves("get_stock_price"); }));
  ASSERT_TRUE(Unregister(*a, "stock-1", lease.lease_id()).ok());
  EXPECT_TRUE(Eventually([&] { return b->WorkerIds().empty(); }));
  auto count = Sql("SELECT count(*) FROM tool_workers");
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(count->Int(0, 0), 0);
}

TEST_F(SharedRegistryTest, ConflictingDefinitionOnBIsRefusedWhileALives) {
  auto a = Start("a");
  // B does not sync: only the store's own check can know about A's worker.
  auto b = Start("b", absl::Minutes(10), /*start_sync=*/false);
  auto lease =
      MustRegister(*a, Request("stock-1", StockPrice("Gets a price.")));
  auto refused = b->registry->Register(
      kToken, Request("stock-2", StockPrice("Gets another price.")));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorReason(refused.status()), "TOOL_DEFINITION_CONFLICT");
  EXPECT_THAT(b->WorkerIds(), IsEmpty());
  // The same definition is another replica of the tool: welcome.
  MustRegister(*b, Request("stock-3", StockPrice("Gets a price.")));
  // Once A's worker and B's twin are gone, the other definition is free.
  ASSERT_TRUE(Unregister(*a, "stock-1", lease.lease_id()).ok());
  auto twin = Sql("DELETE FROM tool_workers WHERE worker_id = 'stock-3'");
  ASSERT_TRUE(twin.ok()) << twin.status();
  ASSERT_TRUE(b->sync->SyncOnce().ok());
  MustRegister(*b, Request("stock-2", StockPrice("Gets another price.")));
}

TEST_F(SharedRegistryTest, SyncSurvivesItsListenConnectionBeingKilled) {
  auto a = Start("a");
  // Ten minutes between periodic reads: only notifications (and the
  // re-read after reconnecting) can bring B news within this test.
  auto b = Start("b", absl::Minutes(10));
  ASSERT_TRUE(Eventually([&] { return b->store->listens_opened() >= 1; }));
  auto killed = Sql(absl::StrCat(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
      "application_name = '",
      db_->schema(), "_b' AND query LIKE 'LISTEN%'"));
  ASSERT_TRUE(killed.ok()) << killed.status();
  ASSERT_EQ(killed->rows(), 1);
  // Registered while B may not be listening: the re-read after reopening
  // finds it.
  auto lease = MustRegister(*a, Request("stock-1", StockPrice()));
  ASSERT_TRUE(
      Eventually([&] { return b->registry->Serves("get_stock_price"); }));
  EXPECT_TRUE(Eventually([&] { return b->store->listens_opened() >= 2; }));
  // And the new connection hears later changes.
  ASSERT_TRUE(Unregister(*a, "stock-1", lease.lease_id()).ok());
  EXPECT_TRUE(Eventually([&] { return b->WorkerIds().empty(); }));
}

TEST_F(SharedRegistryTest, DatabaseGoneFailsRegistrationAsUnavailable) {
  // A replica whose database refuses connections (nothing listens on port
  // 1): the RPCs fail as retryable and the replica changes nothing.
  pg::Pool pool("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2",
                1);
  auto opened = PgWorkerRegistrationStore::Open(&pool);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace assistants::tool_workers
