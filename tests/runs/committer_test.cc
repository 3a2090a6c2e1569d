// RunCommitter: who commits (leader/follower with a hand-over to the
// committer's thread), in what order, and what is published.
#include "service/runs/committer.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/ids.h"
#include "service/runs/event_hub.h"
#include "service/store/memory_store.h"

namespace assistants::runs {
namespace {

using ::testing::ElementsAre;

// A memory store that records which thread committed each batch, and can
// hold the first commit until the test opens the gate.
class GatedStore : public MemoryStore {
 public:
  absl::Status CommitRunChanges(
      const std::vector<const RunChanges*>& batch) override {
    if (hold_first_.exchange(false)) {
      entered_.Notify();
      gate_.WaitForNotification();
    }
    {
      absl::MutexLock lock(&mu_);
      committers_.push_back(std::this_thread::get_id());
      batch_sizes_.push_back(batch.size());
    }
    return MemoryStore::CommitRunChanges(batch);
  }

  void HoldFirstCommit() { hold_first_ = true; }
  void WaitUntilHeld() { entered_.WaitForNotification(); }
  void Release() { gate_.Notify(); }
  std::vector<std::thread::id> committers() {
    absl::MutexLock lock(&mu_);
    return committers_;
  }
  std::vector<size_t> batch_sizes() {
    absl::MutexLock lock(&mu_);
    return batch_sizes_;
  }

 private:
  std::atomic<bool> hold_first_{false};
  absl::Notification entered_;
  absl::Notification gate_;
  absl::Mutex mu_;
  std::vector<std::thread::id> committers_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> batch_sizes_ ABSL_GUARDED_BY(mu_);
};

class CommitterTest : public ::testing::Test {
 protected:
  CommitterTest() {
    thread_.set_id(NewId(kThreadPrefix));
    EXPECT_TRUE(
        store_.CreateThread(thread_, kDefaultProject, {}, nullptr).ok());
    run_.set_id(NewId(kRunPrefix));
    run_.set_thread_id(thread_.id());
    run_.set_status(v1::RUN_STATUS_IN_PROGRESS);
    RunCreation creation;
    creation.run = run_;
    EXPECT_TRUE(store_.CreateRun(creation).ok());
  }

  // The run's next event, as one change.
  RunChanges NextEvent() {
    RunChanges changes;
    changes.thread_id = thread_.id();
    changes.run_id = run_.id();
    v1::RunEvent event;
    event.set_sequence(++sequence_);
    event.set_event("thread.message.delta");
    changes.events.push_back(event);
    return changes;
  }

  std::vector<int64_t> StoredSequences() {
    std::vector<int64_t> sequences;
    absl::StatusOr<std::vector<v1::RunEvent>> events =
        store_.ListRunEvents(run_.id(), 0, 1000);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return sequences;
    for (const v1::RunEvent& event : *events) {
      sequences.push_back(event.sequence());
    }
    return sequences;
  }

  GatedStore store_;
  RunEventHub hub_;
  v1::Thread thread_;
  v1::Run run_;
  int64_t sequence_ = 0;
};

TEST_F(CommitterTest, IdleCommitterCommitsOnTheSubmittingThread) {
  RunCommitter committer(&store_, &hub_);
  std::thread::id done_on;
  bool done_before_return = false;
  committer.Submit(NextEvent(), [&](const absl::Status& status) {
    EXPECT_TRUE(status.ok()) << status;
    done_on = std::this_thread::get_id();
    done_before_return = true;
  });
  EXPECT_TRUE(done_before_return);
  EXPECT_EQ(done_on, std::this_thread::get_id());
  EXPECT_THAT(store_.committers(), ElementsAre(std::this_thread::get_id()));
  EXPECT_THAT(StoredSequences(), ElementsAre(1));
}

TEST_F(CommitterTest, WorkQueuedDuringACommitIsHandedToTheCommitterThread) {
  RunCommitter committer(&store_, &hub_);
  store_.HoldFirstCommit();
  const std::thread::id test_thread = std::this_thread::get_id();
  // The leader: this change's commit is held in the store.
  RunChanges first = NextEvent();
  std::thread leader([&] { committer.Submit(std::move(first), nullptr); });
  store_.WaitUntilHeld();
  // Followers queue behind it and return at once.
  std::vector<std::thread::id> done_on(3);
  for (int i = 0; i < 3; ++i) {
    committer.Submit(NextEvent(), [&done_on, i](const absl::Status& status) {
      EXPECT_TRUE(status.ok()) << status;
      done_on[static_cast<size_t>(i)] = std::this_thread::get_id();
    });
  }
  const std::thread::id leader_id = leader.get_id();
  store_.Release();
  // The leader commits only its own batch and returns; the three queued
  // changes go out together, from the committer's own thread.
  leader.join();
  committer.Flush();
  const std::vector<std::thread::id> committers = store_.committers();
  ASSERT_EQ(committers.size(), 2u);
  EXPECT_EQ(committers[0], leader_id);
  EXPECT_NE(committers[1], leader_id);
  EXPECT_NE(committers[1], test_thread);
  EXPECT_THAT(store_.batch_sizes(), ElementsAre(1, 3));
  for (const std::thread::id& id : done_on) EXPECT_EQ(id, committers[1]);
  EXPECT_THAT(StoredSequences(), ElementsAre(1, 2, 3, 4));
}

TEST_F(CommitterTest, PublishesOnlyAfterTheCommit) {
  RunCommitter committer(&store_, &hub_);
  hub_.Open(run_.id(), 0);
  committer.Submit(NextEvent(), nullptr);
  EXPECT_EQ(hub_.LastSequence(run_.id()), 1);
  EXPECT_THAT(StoredSequences(), ElementsAre(1));
}

TEST_F(CommitterTest, DestructionCommitsWhatIsQueued) {
  store_.HoldFirstCommit();
  std::thread leader;
  {
    RunCommitter committer(&store_, &hub_);
    RunChanges first = NextEvent();
    leader = std::thread([&] { committer.Submit(std::move(first), nullptr); });
    store_.WaitUntilHeld();
    committer.Submit(NextEvent(), nullptr);
    committer.Submit(NextEvent(), nullptr);
    std::thread release([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      store_.Release();
    });
    leader.join();
    release.join();
  }
  EXPECT_THAT(StoredSequences(), ElementsAre(1, 2, 3));
}

}  // namespace
}  // namespace assistants::runs
