// Two ToolRegistry "replicas" sharing registrations through the in-memory
// WorkerRegistrationStore (tool_workers/memory_registration_store.h), with
// one FakeClock: write-through of register / heartbeat / unregister, what
// Reconcile mirrors and lets go, stale reads that must not undo newer local
// writes, a store that cannot be written, per-replica allow-lists, balance
// state kept across refreshes, and the RegistrySync thread. The same
// scenarios against PostgreSQL are in shared_registry_test.cc.
#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/common/errors.h"
#include "tool_workers/memory_registration_store.h"
#include "tool_workers/registry.h"
#include "tool_workers/registry_sync.h"

namespace assistants::tool_workers {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kToken[] = "registration-token-0123456789";

v1::WorkerTool MakeTool(const std::string& name,
                        const std::string& description = "Does things.") {
  v1::WorkerTool tool;
  tool.mutable_function()->set_name(name);
  tool.mutable_function()->set_description(description);
  (*tool.mutable_function()->mutable_parameters()->mutable_fields())["type"]
      .set_string_value("object");
  return tool;
}

v1::RegisterWorkerRequest Request(
    const std::string& worker_id, std::vector<v1::WorkerTool> tools,
    int32_t lease_ttl_ms = 3000,
    const std::string& endpoint = "127.0.0.1:50100") {
  v1::RegisterWorkerRequest request;
  request.set_worker_id(worker_id);
  request.set_endpoint(endpoint);
  for (v1::WorkerTool& tool : tools) *request.add_tools() = std::move(tool);
  request.set_lease_ttl_ms(lease_ttl_ms);
  return request;
}

RegistryOptions Options() {
  RegistryOptions options;
  options.registration_token = kToken;
  return options;
}

std::vector<std::string> Ids(const ToolRegistry& registry) {
  std::vector<std::string> ids;
  const v1::ListWorkersResponse list = registry.ListWorkers();
  for (const v1::Worker& worker : list.workers()) {
    ids.push_back(worker.worker_id());
  }
  return ids;
}

v1::Worker Listed(const ToolRegistry& registry, const std::string& id) {
  const v1::ListWorkersResponse list = registry.ListWorkers();
  for (const v1::Worker& worker : list.workers()) {
    if (worker.worker_id() == id) return worker;
  }
  ADD_FAILURE() << "worker " << id << " is not listed";
  return v1::Worker();
}

class ReplicatedRegistryTest : public ::testing::Test {
 protected:
  ReplicatedRegistryTest()
      : store_(&clock_),
        a_(Options(), &clock_, &store_),
        b_(Options(), &clock_, &store_) {}

  void Advance(int64_t ms) { clock_.Advance(std::chrono::milliseconds(ms)); }

  // One sync of `replica`, as RegistrySync does it.
  std::map<std::string, absl::Status> Sync(ToolRegistry& replica) {
    const uint64_t mark = replica.SyncMark();
    auto rows = store_.ReadAll();
    EXPECT_TRUE(rows.ok()) << rows.status();
    return replica.Reconcile(rows.ok() ? *rows : std::vector<SharedWorker>(),
                             mark);
  }

  v1::RegisterWorkerResponse MustRegister(
      ToolRegistry& replica, const v1::RegisterWorkerRequest& request) {
    auto response = replica.Register(kToken, request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::RegisterWorkerResponse();
  }

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(ToolRegistry& replica,
                                                  const std::string& worker_id,
                                                  const std::string& lease_id) {
    v1::HeartbeatRequest request;
    request.set_worker_id(worker_id);
    request.set_lease_id(lease_id);
    return replica.Heartbeat(kToken, request);
  }

  absl::Status Unregister(ToolRegistry& replica, const std::string& worker_id,
                          const std::string& lease_id) {
    v1::UnregisterWorkerRequest request;
    request.set_worker_id(worker_id);
    request.set_lease_id(lease_id);
    return replica.Unregister(kToken, request);
  }

  // The worker a call of `tool` goes to on `replica` ("" when none); the
  // slot is released at once.
  std::string Serving(ToolRegistry& replica, const std::string& tool) {
    WorkerSlot slot;
    if (replica.Acquire(tool, {}, &slot) != AcquireResult::kAcquired) {
      return "";
    }
    replica.Release(slot, CallOutcome::kOk);
    return slot.worker_id;
  }

  FakeClock clock_;
  MemoryWorkerRegistrationStore store_;
  ToolRegistry a_;
  ToolRegistry b_;
};

TEST_F(ReplicatedRegistryTest, SharedRegistryBlocksAndSingleDoesNot) {
  EXPECT_TRUE(a_.shared());
  ToolRegistry single(Options(), &clock_);
  EXPECT_FALSE(single.shared());
}

TEST_F(ReplicatedRegistryTest, WorkerRegisteredOnAIsServedByBAfterSync) {
  MustRegister(a_, Request("w1", {MakeTool("add")}));
  EXPECT_EQ(Serving(a_, "add"), "w1");
  EXPECT_THAT(Ids(b_), IsEmpty());
  EXPECT_THAT(Sync(b_), IsEmpty());
  EXPECT_EQ(Serving(b_, "add"), "w1");
  EXPECT_TRUE(b_.Serves("add"));
  const v1::Worker listed = Listed(b_, "w1");
  EXPECT_EQ(listed.endpoint(), "127.0.0.1:50100");
  EXPECT_EQ(listed.health(), v1::WORKER_HEALTH_SERVING);
  EXPECT_EQ(listed.lease_expires_at_ms(), clock_.NowMillis() + 3000);
  EXPECT_FALSE(listed.static_());
  // Tools carry A's effective defaults.
  ASSERT_EQ(listed.tools_size(), 1);
  EXPECT_EQ(listed.tools(0).timeout_ms(), 30000);
  EXPECT_EQ(listed.tools(0).max_concurrency(), 16);
}

TEST_F(ReplicatedRegistryTest, MirroringWakesTheCapacityListener) {
  int woken = 0;
  b_.set_capacity_listener([&woken] { ++woken; });
  MustRegister(a_, Request("w1", {MakeTool("add")}));
  Sync(b_);
  EXPECT_EQ(woken, 1);
  Sync(b_);  // nothing new
  EXPECT_EQ(woken, 1);
}

TEST_F(ReplicatedRegistryTest, HeartbeatViaBKeepsTheWorkerAliveOnA) {
  auto lease = MustRegister(a_, Request("w1", {MakeTool("add")}, 3000));
  Sync(b_);
  for (int i = 0; i < 5; ++i) {
    Advance(1000);
    auto beat = Heartbeat(b_, "w1", lease.lease_id());
    ASSERT_TRUE(beat.ok()) << beat.status();
    EXPECT_EQ(beat->lease_expires_at_ms(), clock_.NowMillis() + 3000);
    Sync(a_);
  }
  // 5 s after registering with a 3 s lease, alive on both.
  EXPECT_EQ(Serving(a_, "add"), "w1");
  EXPECT_EQ(Serving(b_, "add"), "w1");
  EXPECT_EQ(Listed(a_, "w1").lease_expires_at_ms(), clock_.NowMillis() + 3000);
}

TEST_F(ReplicatedRegistryTest, HeartbeatReachingAReplicaBeforeItsSyncWorks) {
  auto lease = MustRegister(a_, Request("w1", {MakeTool("add")}));
  // B has not synced: the store knows the lease, and B mirrors it at once.
  auto beat = Heartbeat(b_, "w1", lease.lease_id());
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_EQ(Serving(b_, "add"), "w1");
}

TEST_F(ReplicatedRegistryTest, HeartbeatWithAReplacedLeaseIsRefused) {
  auto first = MustRegister(a_, Request("w1", {MakeTool("add")}));
  auto second = MustRegister(b_, Request("w1", {MakeTool("add")}));
  EXPECT_NE(first.lease_id(), second.lease_id());
  auto beat = Heartbeat(a_, "w1", first.lease_id());
  EXPECT_EQ(beat.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorReason(beat.status()), "LEASE_NOT_FOUND");
  EXPECT_TRUE(Heartbeat(a_, "w1", second.lease_id()).ok());
}

TEST_F(ReplicatedRegistryTest, ExpiredLeaseDisappearsFromBoth) {
  auto lease = MustRegister(a_, Request("w1", {MakeTool("add")}, 2000));
  Sync(b_);
  EXPECT_EQ(Serving(b_, "add"), "w1");
  Advance(2001);
  Sync(a_);
  Sync(b_);
  EXPECT_THAT(Ids(a_), IsEmpty());
  EXPECT_THAT(Ids(b_), IsEmpty());
  EXPECT_EQ(Serving(b_, "add"), "");
  auto beat = Heartbeat(b_, "w1", lease.lease_id());
  EXPECT_EQ(ErrorReason(beat.status()), "LEASE_NOT_FOUND");
}

TEST_F(ReplicatedRegistryTest, UnregisterOnARemovesItFromB) {
  auto lease = MustRegister(a_, Request("w1", {MakeTool("add")}));
  Sync(b_);
  ASSERT_TRUE(Unregister(a_, "w1", lease.lease_id()).ok());
  EXPECT_THAT(Ids(a_), IsEmpty());
  Sync(b_);
  EXPECT_THAT(Ids(b_), IsEmpty());
  EXPECT_EQ(Serving(b_, "add"), "");
}

TEST_F(ReplicatedRegistryTest, UnregisteredWorkerDrainsItsCallsOnB) {
  auto lease = MustRegister(a_, Request("w1", {MakeTool("add")}));
  Sync(b_);
  WorkerSlot slot;
  ASSERT_EQ(b_.Acquire("add", {}, &slot), AcquireResult::kAcquired);
  ASSERT_TRUE(Unregister(a_, "w1", lease.lease_id()).ok());
  Sync(b_);
  EXPECT_EQ(Listed(b_, "w1").health(), v1::WORKER_HEALTH_DRAINING);
  EXPECT_EQ(Serving(b_, "add"), "");
  b_.Release(slot, CallOutcome::kOk);
  EXPECT_THAT(Ids(b_), IsEmpty());
}

TEST_F(ReplicatedRegistryTest, ConflictingDefinitionOnBIsRefusedBeforeSync) {
  MustRegister(a_, Request("w1", {MakeTool("add", "Adds.")}));
  // B has not mirrored w1: the store's check refuses it.
  auto refused =
      b_.Register(kToken, Request("w2", {MakeTool("add", "Adds otherwise.")}));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrorReason(refused.status()), "TOOL_DEFINITION_CONFLICT");
  EXPECT_THAT(Ids(b_), IsEmpty());
  // After the sync B refuses it from its own view, too.
  Sync(b_);
  refused =
      b_.Register(kToken, Request("w2", {MakeTool("add", "Adds otherwise.")}));
  EXPECT_EQ(ErrorReason(refused.status()), "TOOL_DEFINITION_CONFLICT");
  // The same definition is welcome: another replica of the tool.
  MustRegister(b_, Request("w2", {MakeTool("add", "Adds.")}));
}

TEST_F(ReplicatedRegistryTest,
       ConflictingDefinitionIsAcceptedOnceTheLeaseIsGone) {
  MustRegister(a_, Request("w1", {MakeTool("add", "Adds.")}, 2000));
  Sync(b_);
  Advance(2001);
  MustRegister(b_, Request("w2", {MakeTool("add", "Adds otherwise.")}));
  Sync(a_);
  EXPECT_EQ(Serving(a_, "add"), "w2");
  EXPECT_EQ(a_.Tool("add")->function().description(), "Adds otherwise.");
}

TEST_F(ReplicatedRegistryTest, StaleReadDoesNotUndoANewerRegistration) {
  const uint64_t mark = b_.SyncMark();
  auto before = store_.ReadAll();  // read before the registration
  ASSERT_TRUE(before.ok());
  MustRegister(b_, Request("w1", {MakeTool("add")}));
  EXPECT_THAT(b_.Reconcile(*before, mark), IsEmpty());
  EXPECT_EQ(Serving(b_, "add"), "w1");
}

TEST_F(ReplicatedRegistryTest, StaleReadDoesNotBringBackAnUnregisteredWorker) {
  auto lease = MustRegister(b_, Request("w1", {MakeTool("add")}));
  const uint64_t mark = b_.SyncMark();
  auto before = store_.ReadAll();  // still has w1
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(Unregister(b_, "w1", lease.lease_id()).ok());
  b_.Reconcile(*before, mark);
  EXPECT_THAT(Ids(b_), IsEmpty());
  // A read after the unregistration has no row, and none comes back.
  Sync(b_);
  EXPECT_THAT(Ids(b_), IsEmpty());
}

TEST_F(ReplicatedRegistryTest, StoreDownFailsTheRpcsAndChangesNothing) {
  auto lease = MustRegister(a_, Request("w1", {MakeTool("add")}));
  store_.set_unavailable(true);
  auto registered = a_.Register(kToken, Request("w2", {MakeTool("mul")}));
  EXPECT_EQ(registered.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(registered.status()), "STORE_UNAVAILABLE");
  EXPECT_TRUE(GetRetryInfo(registered.status()).has_value());
  EXPECT_THAT(Ids(a_), ElementsAre("w1"));

  auto beat = Heartbeat(a_, "w1", lease.lease_id());
  EXPECT_EQ(beat.status().code(), absl::StatusCode::kUnavailable);

  EXPECT_EQ(Unregister(a_, "w1", lease.lease_id()).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(Serving(a_, "add"), "w1");

  store_.set_unavailable(false);
  EXPECT_TRUE(Unregister(a_, "w1", lease.lease_id()).ok());
  EXPECT_THAT(Ids(a_), IsEmpty());
}

TEST_F(ReplicatedRegistryTest, LocalValidationStillComesFirst) {
  auto bad_token = a_.Register("wrong", Request("w1", {MakeTool("add")}));
  EXPECT_EQ(bad_token.status().code(), absl::StatusCode::kUnauthenticated);
  auto outside = a_.Register(
      kToken, Request("w1", {MakeTool("add")}, 3000, "10.1.2.3:50100"));
  EXPECT_EQ(ErrorReason(outside.status()), "ENDPOINT_NOT_ALLOWED");
  auto rows = store_.ReadAll();
  ASSERT_TRUE(rows.ok());
  EXPECT_THAT(*rows, IsEmpty());
}

TEST_F(ReplicatedRegistryTest, EachReplicaAppliesItsOwnAllowList) {
  RegistryOptions wide = Options();
  wide.allowlist = *EndpointAllowList::Parse("*");
  ToolRegistry permissive(wide, &clock_, &store_);
  MustRegister(permissive,
               Request("w1", {MakeTool("add")}, 3000, "10.1.2.3:50100"));
  auto refused = Sync(b_);
  ASSERT_EQ(refused.count("w1"), 1u);
  EXPECT_EQ(ErrorReason(refused["w1"]), "ENDPOINT_NOT_ALLOWED");
  EXPECT_EQ(Serving(b_, "add"), "");
}

TEST_F(ReplicatedRegistryTest, StaticWorkersWinOverStoredRows) {
  v1::Worker fixed;
  fixed.set_worker_id("w1");
  fixed.set_endpoint("127.0.0.1:50200");
  *fixed.add_tools() = MakeTool("add");
  ASSERT_TRUE(b_.AddStatic(fixed).ok());
  MustRegister(a_, Request("w1", {MakeTool("add")}));
  auto refused = Sync(b_);
  EXPECT_EQ(ErrorReason(refused["w1"]), "WORKER_ID_TAKEN");
  EXPECT_TRUE(Listed(b_, "w1").static_());
  EXPECT_EQ(Listed(b_, "w1").endpoint(), "127.0.0.1:50200");
}

TEST_F(ReplicatedRegistryTest, RefreshKeepsSuspectMarksAndCallsInFlight) {
  auto lease = MustRegister(a_, Request("w1", {MakeTool("add")}));
  Sync(b_);
  WorkerSlot held;
  ASSERT_EQ(b_.Acquire("add", {}, &held), AcquireResult::kAcquired);
  WorkerSlot failed;
  ASSERT_EQ(b_.Acquire("add", {}, &failed), AcquireResult::kAcquired);
  b_.Release(failed, CallOutcome::kUnavailable);
  ASSERT_TRUE(Heartbeat(a_, "w1", lease.lease_id()).ok());
  Sync(b_);
  const v1::Worker listed = Listed(b_, "w1");
  EXPECT_EQ(listed.health(), v1::WORKER_HEALTH_SUSPECT);
  EXPECT_EQ(listed.in_flight(), 1);
  // In-flight counts are per replica: A balances its own calls.
  EXPECT_EQ(Listed(a_, "w1").in_flight(), 0);
  b_.Release(held, CallOutcome::kOk);
  EXPECT_EQ(Listed(b_, "w1").in_flight(), 0);
}

TEST_F(ReplicatedRegistryTest, ReRegistrationElsewhereReplacesTheMirror) {
  MustRegister(a_, Request("w1", {MakeTool("add")}, 3000, "127.0.0.1:50100"));
  Sync(b_);
  MustRegister(a_, Request("w1", {MakeTool("add")}, 3000, "127.0.0.1:50101"));
  Sync(b_);
  EXPECT_EQ(Listed(b_, "w1").endpoint(), "127.0.0.1:50101");
}

TEST_F(ReplicatedRegistryTest, SyncThreadMirrorsChangesAsTheyHappen) {
  RegistrySync sync(&b_, &store_, absl::Minutes(10));
  sync.Start();
  auto lease = MustRegister(a_, Request("w1", {MakeTool("add")}));
  // Only the announcement can wake it (the interval is ten minutes).
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!b_.Serves("add") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(b_.Serves("add"));
  ASSERT_TRUE(Unregister(a_, "w1", lease.lease_id()).ok());
  while (b_.Serves("add") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_FALSE(b_.Serves("add"));
  sync.Stop();
}

TEST_F(ReplicatedRegistryTest, SyncStartMirrorsWhatIsThereAlready) {
  MustRegister(a_, Request("w1", {MakeTool("add")}));
  RegistrySync sync(&b_, &store_, absl::Minutes(10));
  sync.Start();
  EXPECT_TRUE(b_.Serves("add"));
}

TEST_F(ReplicatedRegistryTest, SyncSurvivesAStoreOutage) {
  store_.set_unavailable(true);
  RegistrySync sync(&b_, &store_, absl::Milliseconds(20));
  sync.Start();
  EXPECT_FALSE(sync.SyncOnce().ok());
  store_.set_unavailable(false);
  MustRegister(a_, Request("w1", {MakeTool("add")}));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!b_.Serves("add") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(b_.Serves("add"));
}

}  // namespace
}  // namespace assistants::tool_workers
