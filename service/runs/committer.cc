#include "service/runs/committer.h"

#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace assistants::runs {

RunCommitter::RunCommitter(Store* store, RunEventHub* hub, size_t max_batch)
    : store_(store),
      hub_(hub),
      max_batch_(max_batch),
      thread_([this] { Loop(); }) {}

RunCommitter::~RunCommitter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void RunCommitter::Submit(RunChanges changes, Done done) {
  {
    absl::MutexLock lock(&mu_);
    ++submitted_;
    queue_.push_back({std::move(changes), std::move(done)});
    if (leading_) return;  // the leader takes it into a later batch
    leading_ = true;
  }
  if (!CommitNextBatch()) return;
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) {
    leading_ = false;
  } else {
    handed_over_ = true;  // the committer thread carries on
  }
}

bool RunCommitter::CommitNextBatch() {
  std::vector<Entry> batch;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) {
      leading_ = false;
      return false;
    }
    while (!queue_.empty() && batch.size() < max_batch_) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  CommitBatch(batch);
  absl::MutexLock lock(&mu_);
  finished_ += static_cast<int64_t>(batch.size());
  return true;
}

void RunCommitter::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // On stopping, wait for a submitting leader to finish (or hand over),
      // then commit whatever is still queued.
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return handed_over_ || (stopping_ && !leading_);
      };
      mu_.Await(absl::Condition(&ready));
      if (!handed_over_) {
        if (queue_.empty()) return;
        leading_ = true;
      }
      handed_over_ = false;
    }
    while (CommitNextBatch()) {
    }
  }
}

void RunCommitter::Flush() {
  absl::MutexLock lock(&mu_);
  const int64_t target = submitted_;
  auto caught_up = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_ >= target;
  };
  mu_.Await(absl::Condition(&caught_up));
}

int64_t RunCommitter::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

void RunCommitter::Forget(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  poisoned_.erase(run_id);
}

size_t RunCommitter::queue_depth() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

absl::Status RunCommitter::CommitWithRetry(
    const std::vector<const RunChanges*>& batch) {
  absl::Duration backoff = absl::Milliseconds(20);
  absl::Status status;
  for (int attempt = 0; attempt < 8; ++attempt) {
    status = store_->CommitRunChanges(batch);
    {
      absl::MutexLock lock(&mu_);
      ++commits_;
    }
    // Only a busy or briefly unreachable store is worth waiting for.
    if (status.ok() || status.code() != absl::StatusCode::kUnavailable) break;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
  return status;
}

void RunCommitter::Finish(Entry& entry, const absl::Status& status) {
  if (status.ok()) {
    std::vector<EventPtr> events;
    events.reserve(entry.changes.events.size());
    for (v1::RunEvent& event : entry.changes.events) {
      auto response = std::make_shared<v1::RunEventsResponse>();
      response->mutable_event()->Swap(&event);
      events.push_back(std::move(response));
    }
    hub_->Publish(entry.changes.run_id, std::move(events));
  }
  if (entry.done) entry.done(status);
}

void RunCommitter::CommitBatch(std::vector<Entry>& batch) {
  // Changes of runs that already failed are refused without a write.
  std::vector<absl::Status> outcome(batch.size());
  std::vector<const RunChanges*> to_commit;
  std::vector<size_t> committed_index;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < batch.size(); ++i) {
      const RunChanges& c = batch[i].changes;
      auto it = poisoned_.find(c.run_id);
      if (it != poisoned_.end()) {
        outcome[i] = it->second;
      } else if (c.events.empty() && !c.run.has_value() && c.steps.empty() &&
                 c.messages.empty() && c.idempotency == nullptr) {
        // Nothing to write: it only orders its callback after the run's
        // earlier changes.
      } else {
        to_commit.push_back(&batch[i].changes);
        committed_index.push_back(i);
      }
    }
  }
  if (!to_commit.empty()) {
    absl::Status status = CommitWithRetry(to_commit);
    if (!status.ok() && to_commit.size() > 1 &&
        status.code() != absl::StatusCode::kUnavailable) {
      // Find the culprit(s): commit each change alone, in order, so one
      // bad run does not fail the others. After a change fails, the rest
      // of its run fail too (no gaps in a log). Not for an unavailable
      // store: every change would wait out its own retries.
      for (size_t k = 0; k < to_commit.size(); ++k) {
        const std::string& run_id = to_commit[k]->run_id;
        absl::Status alone;
        {
          absl::MutexLock lock(&mu_);
          auto it = poisoned_.find(run_id);
          if (it != poisoned_.end()) alone = it->second;
        }
        if (alone.ok()) alone = CommitWithRetry({to_commit[k]});
        if (!alone.ok()) {
          absl::MutexLock lock(&mu_);
          poisoned_.emplace(run_id, alone);
        }
        outcome[committed_index[k]] = alone;
      }
    } else {
      for (size_t k = 0; k < to_commit.size(); ++k) {
        outcome[committed_index[k]] = status;
      }
      if (!status.ok()) {
        absl::MutexLock lock(&mu_);
        for (const RunChanges* changes : to_commit) {
          poisoned_.emplace(changes->run_id, status);
        }
      }
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) Finish(batch[i], outcome[i]);
}

}  // namespace assistants::runs
