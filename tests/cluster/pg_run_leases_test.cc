// Run leases on a real PostgreSQL (the schema PgStore migrates): who may
// drive a run, fencing tokens, expiry and takeover, release delays, the
// thread order behind the queue policy, and commands between replicas.
// Skips without $ASSISTANTS_TEST_PG_URL.
#include "service/cluster/pg_run_leases.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/cluster/pg_listener.h"
#include "service/common/errors.h"
#include "service/store/pg/pg_store.h"
#include "tests/support/pg_test_db.h"

namespace assistants::cluster {
namespace {

using test_support::PgTestDb;

constexpr int64_t kTtlMs = 400;

class PgRunLeasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PgTestDb::Available()) GTEST_SKIP() << PgTestDb::SkipMessage();
    db_ = std::make_unique<PgTestDb>();
    ASSERT_TRUE(db_->status().ok()) << db_->status();
    // The store owns the schema (run_leases is one of its tables).
    auto store = PgStore::Open(db_->url(), PgStoreOptions{});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    pool_ = std::make_unique<pg::Pool>(db_->url(), 4);
    a_ = std::make_unique<PgRunLeases>(pool_.get(), "replica-a", kTtlMs);
    b_ = std::make_unique<PgRunLeases>(pool_.get(), "replica-b", kTtlMs);
  }

  // A run's lease row as PgStore::CreateRun writes it: unowned, claimable
  // after `grace_ms`.
  void AddRun(const std::string& run_id, const std::string& thread_id,
              int64_t grace_ms = 60'000) {
    auto connection = pool_->Acquire();
    ASSERT_TRUE(connection.ok()) << connection.status();
    auto inserted =
        (*connection)
            ->Exec(
                "INSERT INTO run_leases (run_id, thread_id, owner, token, "
                "expires_at) "
                "VALUES ($1, $2, NULL, 0, now() + $3 * interval '1 "
                "millisecond')",
                {pg::Param::Text(run_id), pg::Param::Text(thread_id),
                 pg::Param::Int(grace_ms)});
    ASSERT_TRUE(inserted.ok()) << inserted.status();
  }

  std::unique_ptr<PgTestDb> db_;
  std::unique_ptr<PgStore> store_;
  std::unique_ptr<pg::Pool> pool_;
  std::unique_ptr<PgRunLeases> a_;
  std::unique_ptr<PgRunLeases> b_;
};

TEST_F(PgRunLeasesTest, OneReplicaHoldsALeaseAndEachAcquisitionBumpsTheToken) {
  AddRun("run_1", "thread_1");
  auto lease = a_->Acquire("run_1");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->thread_id, "thread_1");
  EXPECT_EQ(lease->token, 1);

  auto other = b_->Acquire("run_1");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(other.status()), "RUN_OWNED_ELSEWHERE");
  EXPECT_EQ(b_->Acquire("run_missing").status().code(),
            absl::StatusCode::kNotFound);

  // Given back: the next holder gets a newer token.
  ASSERT_TRUE(a_->Release(*lease, 60'000).ok());
  auto taken = b_->Acquire("run_1");
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->token, 2);
}

TEST_F(PgRunLeasesTest, AnExpiredLeaseIsClaimedAndItsOldHolderLearnsItLostIt) {
  AddRun("run_1", "thread_1");
  auto lease = a_->Acquire("run_1");
  ASSERT_TRUE(lease.ok()) << lease.status();
  // Renewed: still a's, nothing to claim.
  auto lost = a_->Renew({*lease});
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_TRUE(lost->empty());
  auto none = b_->ClaimExpired(10);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  // a stops renewing (dead or paused): b's sweep takes the run over.
  std::vector<RunLease> claimed;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (claimed.empty() && absl::Now() < deadline) {
    auto round = b_->ClaimExpired(10);
    ASSERT_TRUE(round.ok()) << round.status();
    claimed = *round;
    if (claimed.empty()) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].run_id, "run_1");
  EXPECT_EQ(claimed[0].token, 2);

  lost = a_->Renew({*lease});
  ASSERT_TRUE(lost.ok());
  EXPECT_EQ(*lost, std::vector<std::string>{"run_1"});
  // a's stale token can neither give it back nor end it.
  ASSERT_TRUE(a_->Release(*lease, 0).ok());
  ASSERT_TRUE(a_->Finish(*lease).ok());
  auto still_b = a_->Acquire("run_1");
  EXPECT_EQ(ErrorReason(still_b.status()), "RUN_OWNED_ELSEWHERE");
  // b ends the run: the lease is gone.
  ASSERT_TRUE(b_->Finish(claimed[0]).ok());
  EXPECT_EQ(a_->Acquire("run_1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PgRunLeasesTest, ARunReleasedWithADelayIsTakenOnlyOnRequestUntilThen) {
  AddRun("run_1", "thread_1");
  auto lease = a_->Acquire("run_1");
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(a_->Release(*lease, 60'000).ok());  // parked for a minute
  auto swept = b_->ClaimExpired(10);
  ASSERT_TRUE(swept.ok());
  EXPECT_TRUE(swept->empty());
  auto asked = b_->Acquire("run_1");
  ASSERT_TRUE(asked.ok()) << asked.status();
  EXPECT_EQ(asked->token, 2);
}

TEST_F(PgRunLeasesTest, ThreadRunsListsTheOlderActiveRunsInCreationOrder) {
  AddRun("run_1", "thread_1");
  AddRun("run_other", "thread_2");
  AddRun("run_2", "thread_1");
  AddRun("run_3", "thread_1");
  auto all = a_->ThreadRuns("thread_1", "");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].run_id, "run_1");
  EXPECT_EQ((*all)[2].run_id, "run_3");
  auto older = a_->ThreadRuns("thread_1", "run_3");
  ASSERT_TRUE(older.ok());
  ASSERT_EQ(older->size(), 2u);
  EXPECT_EQ((*older)[1].run_id, "run_2");
  auto first = a_->ThreadRuns("thread_1", "run_1");
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->empty());
}

TEST_F(PgRunLeasesTest, CommandsReachEveryListeningReplica) {
  absl::Mutex mu;
  std::vector<std::string> received;
  absl::Notification listening;
  PgListener listener(
      db_->url(), {kRunCommandsChannel},
      [&](const pg::Notification& n) {
        absl::MutexLock lock(&mu);
        received.push_back(n.payload);
      },
      [&] {
        if (!listening.HasBeenNotified()) listening.Notify();
      });
  ASSERT_TRUE(listening.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(b_->Send(RunCommand::kCancel, "run_1").ok());
  ASSERT_TRUE(b_->Send(RunCommand::kPark, "run_2").ok());
  absl::MutexLock lock(&mu);
  auto both = [&] { return received.size() == 2; };
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&both), absl::Seconds(10)));
  RunCommand command;
  std::string run_id;
  ASSERT_TRUE(ParseRunCommand(received[0], &command, &run_id));
  EXPECT_EQ(command, RunCommand::kCancel);
  EXPECT_EQ(run_id, "run_1");
  ASSERT_TRUE(ParseRunCommand(received[1], &command, &run_id));
  EXPECT_EQ(command, RunCommand::kPark);
  EXPECT_EQ(run_id, "run_2");
  EXPECT_FALSE(ParseRunCommand("explode:run_1", &command, &run_id));
  EXPECT_FALSE(ParseRunCommand("cancel:", &command, &run_id));
}

}  // namespace
}  // namespace assistants::cluster
