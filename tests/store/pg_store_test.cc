// What only PgStore has (the Store contract itself is the typed suite in
// store_test.cc): run leases and fencing, event notifications, and several
// stores (replicas) on one database racing on the same thread, the same
// idempotency key and the same migrations. Skipped without
// $ASSISTANTS_TEST_PG_URL.
#include "service/store/pg/pg_store.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/store/pg/pg_client.h"
#include "service/store/pg/pg_errors.h"
#include "tests/support/pg_test_db.h"

namespace assistants {
namespace {

using pg::Param;
using test_support::PgTestDb;

v1::Thread MakeThread() {
  v1::Thread thread;
  thread.set_id(NewId(kThreadPrefix));
  thread.set_object("thread");
  return thread;
}

v1::Run MakeRun(const std::string& thread_id,
                v1::RunStatus status = v1::RUN_STATUS_QUEUED) {
  v1::Run run;
  run.set_id(NewId(kRunPrefix));
  run.set_object("thread.run");
  run.set_thread_id(thread_id);
  run.set_status(status);
  return run;
}

std::vector<v1::RunEvent> MakeEvents(int64_t first, int64_t last) {
  std::vector<v1::RunEvent> events;
  for (int64_t i = first; i <= last; ++i) {
    v1::RunEvent event;
    event.set_sequence(i);
    events.push_back(event);
  }
  return events;
}

std::string MetadataOf(const absl::Status& status, const std::string& key) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value()) return "<no ErrorInfo>";
  auto it = info->metadata().find(key);
  return it == info->metadata().end() ? "<missing>" : it->second;
}

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PgTestDb::Available()) GTEST_SKIP() << PgTestDb::SkipMessage();
    db_ = std::make_unique<PgTestDb>();
    ASSERT_TRUE(db_->status().ok()) << db_->status();
    store_ = OpenStore();
    ASSERT_NE(store_, nullptr);
  }

  std::unique_ptr<PgStore> OpenStore() {
    PgStoreOptions options;
    options.pool_size = 4;
    absl::StatusOr<std::unique_ptr<PgStore>> store =
        PgStore::Open(db_->url(), options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Runs `sql` on the test database outside the store.
  pg::Result Sql(const std::string& sql,
                 const std::vector<Param>& params = {}) {
    absl::StatusOr<pg::Pool::Lease> lease = store_->pool().Acquire();
    EXPECT_TRUE(lease.ok()) << lease.status();
    if (!lease.ok()) return pg::Result(nullptr);
    absl::StatusOr<pg::Result> result = (*lease)->Exec(sql, params);
    EXPECT_TRUE(result.ok()) << sql << ": " << result.status();
    return result.ok() ? *std::move(result) : pg::Result(nullptr);
  }

  // A new thread with a run in `status` (events 1..`events`).
  v1::Run StartRun(int events = 0,
                   v1::RunStatus status = v1::RUN_STATUS_IN_PROGRESS) {
    v1::Thread thread = MakeThread();
    RunCreation creation;
    creation.new_thread = &thread;
    creation.run = MakeRun(thread.id(), status);
    creation.events = MakeEvents(1, events);
    absl::Status status_of_create = store_->CreateRun(creation);
    EXPECT_TRUE(status_of_create.ok()) << status_of_create;
    return creation.run;
  }

  // Makes `owner` hold run `run_id`'s lease with `token`.
  void SetLease(const std::string& run_id, const std::string& owner,
                int64_t token) {
    pg::Result updated =
        Sql("UPDATE run_leases SET owner = $2, token = $3, "
            "expires_at = now() + interval '1 hour' WHERE run_id = $1",
            {Param::Text(run_id), Param::Text(owner), Param::Int(token)});
    EXPECT_EQ(updated.affected(), 1);
  }

  std::vector<int64_t> Sequences(const std::string& run_id) {
    absl::StatusOr<std::vector<v1::RunEvent>> events =
        store_->ListRunEvents(run_id, 0, 1000);
    EXPECT_TRUE(events.ok()) << events.status();
    std::vector<int64_t> sequences;
    if (events.ok()) {
      for (const v1::RunEvent& event : *events) {
        sequences.push_back(event.sequence());
      }
    }
    return sequences;
  }

  // Runs `racers` CreateRuns at once, alternating between the two stores;
  // every one that fails must fail with `loser_reason`. Returns how many
  // runs were created.
  static int RaceCreateRuns(PgStore* const (&stores)[2], int racers,
                            const std::function<RunCreation(int)>& creation,
                            const std::string& loser_reason) {
    std::vector<absl::Status> results(racers);
    std::vector<std::thread> threads;
    for (int i = 0; i < racers; ++i) {
      threads.emplace_back(
          [&, i] { results[i] = stores[i % 2]->CreateRun(creation(i)); });
    }
    for (std::thread& thread : threads) thread.join();
    int created = 0;
    for (const absl::Status& result : results) {
      if (result.ok()) {
        ++created;
      } else {
        EXPECT_EQ(ErrorReason(result), loser_reason) << result;
      }
    }
    return created;
  }

  std::unique_ptr<PgTestDb> db_;
  std::unique_ptr<PgStore> store_;
};

TEST_F(PgStoreTest, CreateRunInsertsAnUnclaimedLease) {
  v1::Run run = StartRun();
  pg::Result lease =
      Sql("SELECT thread_id, owner IS NULL, token, expires_at > now(), "
          "expires_at <= now() + interval '15 seconds' "
          "FROM run_leases WHERE run_id = $1",
          {Param::Text(run.id())});
  ASSERT_EQ(lease.rows(), 1);
  EXPECT_EQ(lease.Text(0, 0), run.thread_id());
  EXPECT_TRUE(lease.Bool(0, 1));
  EXPECT_EQ(lease.Int(0, 2), 0);
  EXPECT_TRUE(lease.Bool(0, 3));
  EXPECT_TRUE(lease.Bool(0, 4));
}

TEST_F(PgStoreTest, DeleteThreadDeletesItsLeases) {
  v1::Run run = StartRun(2, v1::RUN_STATUS_COMPLETED);
  ASSERT_TRUE(store_->DeleteThread(run.thread_id()).ok());
  EXPECT_EQ(Sql("SELECT count(*) FROM run_leases").Int(0, 0), 0);
  EXPECT_EQ(Sql("SELECT count(*) FROM run_events").Int(0, 0), 0);
}

TEST_F(PgStoreTest, FencedChangesNeedTheCurrentLease) {
  v1::Run run = StartRun(1);
  SetLease(run.id(), "replica-a", 5);

  v1::Run finished = run;
  finished.set_status(v1::RUN_STATUS_COMPLETED);
  RunChanges stale;
  stale.thread_id = run.thread_id();
  stale.run_id = run.id();
  stale.run = finished;
  stale.events = MakeEvents(2, 2);
  stale.lease_owner = "replica-a";
  stale.lease_token = 4;  // an older lease of the same replica
  absl::Status status = store_->CommitRunChanges({&stale});
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ErrorReason(status), pg::kRunLeaseLost);
  EXPECT_EQ(MetadataOf(status, "run_id"), run.id());

  // Another replica with the right token number is no better.
  RunChanges other_owner = stale;
  other_owner.lease_owner = "replica-b";
  other_owner.lease_token = 5;
  EXPECT_EQ(ErrorReason(store_->CommitRunChanges({&other_owner})),
            pg::kRunLeaseLost);

  // A fenced change fails the whole batch, unfenced changes included.
  v1::Run other = StartRun(1);
  RunChanges unfenced;
  unfenced.thread_id = other.thread_id();
  unfenced.run_id = other.id();
  unfenced.events = MakeEvents(2, 2);
  EXPECT_EQ(ErrorReason(store_->CommitRunChanges({&unfenced, &stale})),
            pg::kRunLeaseLost);

  // Nothing of the failed batches was written.
  EXPECT_EQ(Sequences(run.id()), std::vector<int64_t>({1}));
  EXPECT_EQ(Sequences(other.id()), std::vector<int64_t>({1}));
  EXPECT_EQ(store_->GetRun(run.thread_id(), run.id())->status(),
            v1::RUN_STATUS_IN_PROGRESS);

  // The holder's changes commit.
  RunChanges current = stale;
  current.lease_token = 5;
  ASSERT_TRUE(store_->CommitRunChanges({&unfenced, &current}).ok());
  EXPECT_EQ(Sequences(run.id()), std::vector<int64_t>({1, 2}));
  EXPECT_EQ(Sequences(other.id()), std::vector<int64_t>({1, 2}));
  EXPECT_EQ(store_->GetRun(run.thread_id(), run.id())->status(),
            v1::RUN_STATUS_COMPLETED);

  // A released lease (owner NULL) fences everyone out.
  Sql("UPDATE run_leases SET owner = NULL WHERE run_id = $1",
      {Param::Text(run.id())});
  RunChanges after_release = current;
  after_release.run.reset();
  after_release.events = MakeEvents(3, 3);
  EXPECT_EQ(ErrorReason(store_->CommitRunChanges({&after_release})),
            pg::kRunLeaseLost);
  // So does a deleted one.
  Sql("DELETE FROM run_leases WHERE run_id = $1", {Param::Text(run.id())});
  EXPECT_EQ(ErrorReason(store_->CommitRunChanges({&after_release})),
            pg::kRunLeaseLost);
}

// Waits for `count` notifications on the run events channel.
std::vector<std::string> ReceiveRunIds(pg::Connection& listener, size_t count) {
  std::vector<std::string> run_ids;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (run_ids.size() < count && absl::Now() < deadline) {
    absl::StatusOr<std::vector<pg::Notification>> batch =
        listener.WaitForNotifications(absl::Seconds(1));
    EXPECT_TRUE(batch.ok()) << batch.status();
    if (!batch.ok()) break;
    for (const pg::Notification& notification : *batch) {
      EXPECT_EQ(notification.channel, kRunEventsChannel);
      run_ids.push_back(notification.payload);
    }
  }
  return run_ids;
}

TEST_F(PgStoreTest, CommittedEventsNotifyOncePerRun) {
  absl::StatusOr<std::unique_ptr<pg::Connection>> listener =
      pg::Connection::Open(db_->url());
  ASSERT_TRUE(listener.ok()) << listener.status();
  ASSERT_TRUE((*listener)->Exec("LISTEN assistants_run_events").ok());

  // CreateRun with events notifies; without events it does not (the next
  // notification is the next run's).
  v1::Run quiet = StartRun(0);
  v1::Run first = StartRun(2);
  EXPECT_EQ(ReceiveRunIds(**listener, 1), std::vector<std::string>{first.id()});

  // A batch notifies once per run that got events, none for the others.
  v1::Run second = StartRun(0);
  RunChanges a1, a2, b, c;
  a1.thread_id = a2.thread_id = first.thread_id();
  a1.run_id = a2.run_id = first.id();
  a1.events = MakeEvents(3, 3);
  a2.events = MakeEvents(4, 5);
  b.thread_id = second.thread_id();
  b.run_id = second.id();
  b.events = MakeEvents(1, 1);
  c.thread_id = quiet.thread_id();
  c.run_id = quiet.id();
  c.run = quiet;  // changed, but no events
  ASSERT_TRUE(store_->CommitRunChanges({&a1, &b, &a2, &c}).ok());
  EXPECT_EQ(ReceiveRunIds(**listener, 2),
            (std::vector<std::string>{first.id(), second.id()}));

  // A rolled-back batch notifies nobody: the next notification comes from
  // the batch after it.
  RunChanges gap = b;
  gap.events = MakeEvents(9, 9);
  EXPECT_FALSE(store_->CommitRunChanges({&a1, &gap}).ok());
  RunChanges next = b;
  next.events = MakeEvents(2, 2);
  ASSERT_TRUE(store_->CommitRunChanges({&next}).ok());
  EXPECT_EQ(ReceiveRunIds(**listener, 1),
            std::vector<std::string>{second.id()});
}

TEST_F(PgStoreTest, OneActiveRunPerThreadAcrossStores) {
  std::unique_ptr<PgStore> replica = OpenStore();
  ASSERT_NE(replica, nullptr);
  PgStore* stores[] = {store_.get(), replica.get()};
  constexpr int kRounds = 10;
  constexpr int kRacers = 6;
  for (int round = 0; round < kRounds; ++round) {
    v1::Thread thread = MakeThread();
    ASSERT_TRUE(
        store_->CreateThread(thread, kDefaultProject, {}, nullptr).ok());
    const int created = RaceCreateRuns(
        stores, kRacers,
        [&](int) {
          RunCreation creation;
          creation.run = MakeRun(thread.id());
          return creation;
        },
        "THREAD_HAS_ACTIVE_RUN");
    EXPECT_EQ(created, 1) << "round " << round;
    absl::StatusOr<Page<v1::Run>> runs =
        replica->ListRuns(thread.id(), ListQuery{});
    ASSERT_TRUE(runs.ok()) << runs.status();
    EXPECT_EQ(runs->items.size(), 1u);
  }
}

TEST_F(PgStoreTest, ProjectRunLimitHoldsAcrossStores) {
  std::unique_ptr<PgStore> replica = OpenStore();
  ASSERT_NE(replica, nullptr);
  PgStore* stores[] = {store_.get(), replica.get()};
  constexpr int kLimit = 2;
  constexpr int kRounds = 5;
  constexpr int kRacers = 6;
  for (int round = 0; round < kRounds; ++round) {
    // Each round is its own project; every racer has its own thread, so only
    // the project's limit stands between them.
    const std::string project = absl::StrCat("proj_race_", round);
    std::vector<v1::Thread> threads(kRacers);
    for (v1::Thread& thread : threads) {
      thread = MakeThread();
      ASSERT_TRUE(store_->CreateThread(thread, project, {}, nullptr).ok());
    }
    const int created = RaceCreateRuns(
        stores, kRacers,
        [&](int i) {
          RunCreation creation;
          creation.project = project;
          creation.max_active_runs_in_project = kLimit;
          creation.run = MakeRun(threads[i].id());
          return creation;
        },
        "PROJECT_ACTIVE_RUN_LIMIT");
    EXPECT_EQ(created, kLimit) << "round " << round;
  }
}

TEST_F(PgStoreTest, IdenticalIdempotentCreatesAcrossStoresMakeOneObject) {
  std::unique_ptr<PgStore> replica = OpenStore();
  ASSERT_NE(replica, nullptr);
  PgStore* stores[] = {store_.get(), replica.get()};
  constexpr int kRacers = 8;
  IdempotencyRecord record;
  record.key = "CreateAssistant/request-1";
  record.request_fingerprint = "fingerprint";
  record.response = "response";
  record.created_at_ms = 1;
  std::vector<absl::Status> results(kRacers);
  std::vector<std::thread> racers;
  for (int i = 0; i < kRacers; ++i) {
    racers.emplace_back([&, i] {
      v1::Assistant assistant;
      assistant.set_id(NewId(kAssistantPrefix));
      results[i] =
          stores[i % 2]->CreateAssistant(assistant, kDefaultProject, &record);
    });
  }
  for (std::thread& racer : racers) racer.join();
  int created = 0;
  for (const absl::Status& result : results) {
    if (result.ok()) {
      ++created;
    } else {
      EXPECT_EQ(result.code(), absl::StatusCode::kAborted) << result;
      EXPECT_EQ(ErrorReason(result), "IDEMPOTENCY_CONFLICT") << result;
    }
  }
  EXPECT_EQ(created, 1);
  ListQuery query;
  query.limit = 100;
  absl::StatusOr<Page<v1::Assistant>> assistants =
      store_->ListAssistants(kDefaultProject, query);
  ASSERT_TRUE(assistants.ok()) << assistants.status();
  EXPECT_EQ(assistants->items.size(), 1u);
}

TEST_F(PgStoreTest, StoresOpeningAtOnceMigrateOnce) {
  // A schema of its own, so the fixture's store has not migrated it.
  PgTestDb fresh;
  ASSERT_TRUE(fresh.status().ok()) << fresh.status();
  std::vector<absl::Status> results(4);
  std::vector<std::thread> openers;
  for (int i = 0; i < 4; ++i) {
    openers.emplace_back([&, i] {
      results[i] = PgStore::Open(fresh.url(), PgStoreOptions()).status();
    });
  }
  for (std::thread& opener : openers) opener.join();
  for (const absl::Status& result : results) {
    EXPECT_TRUE(result.ok()) << result;
  }
  absl::StatusOr<std::unique_ptr<pg::Connection>> connection =
      pg::Connection::Open(fresh.url());
  ASSERT_TRUE(connection.ok()) << connection.status();
  absl::StatusOr<pg::Result> versions =
      (*connection)->Exec("SELECT component, version FROM schema_versions");
  ASSERT_TRUE(versions.ok()) << versions.status();
  ASSERT_EQ(versions->rows(), 1);
  EXPECT_EQ(versions->Text(0, 0), "store");
  EXPECT_EQ(versions->Int(0, 1), 1);
}

TEST_F(PgStoreTest, NewerSchemaIsRefused) {
  Sql("UPDATE schema_versions SET version = 99 WHERE component = 'store'");
  absl::StatusOr<std::unique_ptr<PgStore>> store =
      PgStore::Open(db_->url(), PgStoreOptions());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(store.status()), pg::kStoreSchemaTooNew);
}

TEST(PgStoreNoServerTest, UnreachableDatabaseIsUnavailable) {
  absl::StatusOr<std::unique_ptr<PgStore>> store = PgStore::Open(
      "postgresql://postgres@127.0.0.1:1/postgres", PgStoreOptions());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorReason(store.status()), "STORE_UNAVAILABLE");
}

TEST_F(PgStoreTest, LostConnectionsAreReopened) {
  v1::Run run = StartRun(1);
  // Every connection of the store's pool dies (a database restart, say).
  Sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
      "pid <> pg_backend_pid() AND application_name = $1",
      {Param::Text(db_->schema())});
  absl::StatusOr<v1::Run> got = store_->GetRun(run.thread_id(), run.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id(), run.id());
}

}  // namespace
}  // namespace assistants
