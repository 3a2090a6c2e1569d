// MemoryStore: every object lives in maps guarded by one mutex. Writes check
// everything that can fail before changing anything, which is what makes each
// method atomic without undo logic.
#include "service/store/memory_store.h"

#include <algorithm>
#include <limits>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/status_macros.h"
#include "service/store/paging.h"
#include "service/store/store_errors.h"

namespace assistants {
namespace {

// One page of `items` (keyed by sequence number) that pass `keep`.
template <typename T, typename Keep>
Page<T> MakePage(const std::map<int64_t, T>& items, const ListQuery& query,
                 const PageWindow& w, Keep keep) {
  Page<T> page;
  const size_t limit = static_cast<size_t>(std::max(query.limit, 0));
  auto take = [&](const T& item) {
    if (!keep(item)) return true;
    if (page.items.size() == limit) {
      page.has_more = true;
      return false;
    }
    page.items.push_back(item);
    return true;
  };
  if (w.lo < w.hi) {
    if (w.upward) {
      for (auto it = items.upper_bound(w.lo);
           it != items.end() && it->first < w.hi; ++it) {
        if (!take(it->second)) break;
      }
    } else {
      auto it = items.lower_bound(w.hi);
      while (it != items.begin()) {
        --it;
        if (it->first <= w.lo) break;
        if (!take(it->second)) break;
      }
    }
  }
  if (w.reverse) std::reverse(page.items.begin(), page.items.end());
  return page;
}

}  // namespace

MemoryStore::MemoryStore(int64_t max_messages_per_thread)
    : max_messages_per_thread_(max_messages_per_thread) {}

bool MemoryStore::IdInUse(const std::string& id) const {
  return assistant_seq_.count(id) > 0 || threads_.count(id) > 0 ||
         messages_.count(id) > 0 || runs_.count(id) > 0 || steps_.count(id) > 0;
}

absl::Status MemoryStore::CheckIdempotency(const IdempotencyRecord* record) {
  if (record == nullptr || idempotency_.count(record->key) == 0) {
    return absl::OkStatus();
  }
  return IdempotencyConflict(record->key);
}

void MemoryStore::PutIdempotency(const IdempotencyRecord* record) {
  if (record != nullptr) idempotency_[record->key] = *record;
}

std::optional<int64_t> MemoryStore::LiveSeq(absl::string_view id,
                                            absl::string_view kind,
                                            absl::string_view parent_id) {
  const std::string key(id);
  if (kind == kAssistantKind) {
    // An assistant's list is its project's.
    auto it = assistant_seq_.find(key);
    if (it != assistant_seq_.end() && projects_.at(key) == parent_id) {
      return it->second;
    }
  } else if (kind == kThreadKind) {
    auto it = threads_.find(key);
    if (it != threads_.end()) return it->second.seq;
  } else if (kind == kMessageKind) {
    auto it = messages_.find(key);
    if (it != messages_.end() && it->second.thread_id == parent_id) {
      return it->second.seq;
    }
  } else if (kind == kRunKind) {
    auto it = runs_.find(key);
    if (it != runs_.end() && it->second.thread_id == parent_id) {
      return it->second.seq;
    }
  } else if (kind == kRunStepKind) {
    auto it = steps_.find(key);
    if (it != steps_.end() && it->second.run_id == parent_id) {
      return it->second.seq;
    }
  }
  return std::nullopt;
}

absl::StatusOr<int64_t> MemoryStore::CursorSeq(absl::string_view field,
                                               absl::string_view id,
                                               absl::string_view kind,
                                               absl::string_view parent_id) {
  if (std::optional<int64_t> seq = LiveSeq(id, kind, parent_id)) return *seq;
  auto it = tombstones_.find(std::string(id));
  if (it != tombstones_.end() && it->second.kind == kind &&
      it->second.parent_id == parent_id) {
    return it->second.seq;
  }
  return InvalidCursor(field, id);
}

// --- Assistants ---

absl::Status MemoryStore::CreateAssistant(
    const v1::Assistant& assistant, absl::string_view project,
    const IdempotencyRecord* idempotency) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckIdempotency(idempotency));
  if (IdInUse(assistant.id()))
    return AlreadyExists(kAssistantKind, assistant.id());
  const int64_t seq = next_seq_++;
  assistants_[seq] = assistant;
  assistant_seq_[assistant.id()] = seq;
  projects_[assistant.id()] = std::string(project);
  PutIdempotency(idempotency);
  return absl::OkStatus();
}

absl::StatusOr<v1::Assistant> MemoryStore::GetAssistant(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = assistant_seq_.find(std::string(id));
  if (it == assistant_seq_.end()) return NotFound(kAssistantKind, id);
  return assistants_.at(it->second);
}

absl::StatusOr<Page<v1::Assistant>> MemoryStore::ListAssistants(
    absl::string_view project, const ListQuery& query) {
  absl::MutexLock lock(&mu_);
  std::optional<int64_t> after, before;
  if (!query.after.empty()) {
    ASSIGN_OR_RETURN(after,
                     CursorSeq("after", query.after, kAssistantKind, project));
  }
  if (!query.before.empty()) {
    ASSIGN_OR_RETURN(
        before, CursorSeq("before", query.before, kAssistantKind, project));
  }
  return MakePage(assistants_, query, MakePageWindow(query, after, before),
                  [&](const v1::Assistant& assistant)
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                        return projects_.at(assistant.id()) == project;
                      });
}

absl::StatusOr<v1::Assistant> MemoryStore::UpdateAssistant(
    absl::string_view id, const Mutation<v1::Assistant>& mutate) {
  absl::MutexLock lock(&mu_);
  auto it = assistant_seq_.find(std::string(id));
  if (it == assistant_seq_.end()) return NotFound(kAssistantKind, id);
  v1::Assistant& stored = assistants_.at(it->second);
  // Mutate a copy so an error leaves the stored version untouched.
  v1::Assistant updated = stored;
  RETURN_IF_ERROR(mutate(updated));
  if (updated.id() != stored.id()) return ImmutableField(kAssistantKind, "id");
  stored = updated;
  return updated;
}

absl::Status MemoryStore::DeleteAssistant(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = assistant_seq_.find(std::string(id));
  if (it == assistant_seq_.end()) return NotFound(kAssistantKind, id);
  const int64_t seq = it->second;
  // The tombstone's parent is the project: the list it stays a cursor of.
  auto project = projects_.find(it->first);
  tombstones_[it->first] =
      Tombstone{std::string(kAssistantKind), project->second, seq};
  projects_.erase(project);
  assistants_.erase(seq);
  assistant_seq_.erase(it);
  return absl::OkStatus();
}

// --- Threads ---

absl::Status MemoryStore::CreateThread(const v1::Thread& thread,
                                       absl::string_view project,
                                       const std::vector<v1::Message>& messages,
                                       const IdempotencyRecord* idempotency) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckIdempotency(idempotency));
  if (IdInUse(thread.id())) return AlreadyExists(kThreadKind, thread.id());
  if (static_cast<int64_t>(messages.size()) > max_messages_per_thread_) {
    return MessageLimit(thread.id(), max_messages_per_thread_);
  }
  std::unordered_set<std::string> seen;
  for (const v1::Message& message : messages) {
    if (message.thread_id() != thread.id()) {
      return ThreadIdMismatch(thread.id(), message.id());
    }
    if (IdInUse(message.id()) || !seen.insert(message.id()).second) {
      return AlreadyExists(kMessageKind, message.id());
    }
  }
  ThreadEntry entry;
  entry.seq = next_seq_++;
  entry.thread = thread;
  for (const v1::Message& message : messages) {
    const int64_t seq = next_seq_++;
    entry.messages[seq] = message;
    messages_[message.id()] = MessageLocation{thread.id(), seq};
  }
  threads_[thread.id()] = std::move(entry);
  projects_[thread.id()] = std::string(project);
  PutIdempotency(idempotency);
  return absl::OkStatus();
}

absl::StatusOr<v1::Thread> MemoryStore::GetThread(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = threads_.find(std::string(id));
  if (it == threads_.end()) return NotFound(kThreadKind, id);
  return it->second.thread;
}

absl::StatusOr<v1::Thread> MemoryStore::UpdateThread(
    absl::string_view id, const Mutation<v1::Thread>& mutate) {
  absl::MutexLock lock(&mu_);
  auto it = threads_.find(std::string(id));
  if (it == threads_.end()) return NotFound(kThreadKind, id);
  v1::Thread updated = it->second.thread;
  RETURN_IF_ERROR(mutate(updated));
  if (updated.id() != it->first) return ImmutableField(kThreadKind, "id");
  it->second.thread = updated;
  return updated;
}

absl::Status MemoryStore::DeleteThread(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = threads_.find(std::string(id));
  if (it == threads_.end()) return NotFound(kThreadKind, id);
  if (std::optional<std::string> active = ActiveRunOf(it->second)) {
    return ThreadHasActiveRun(id, *active);
  }
  // Only the thread gets a tombstone: its messages, runs and steps can never
  // be listed again (listing needs the thread), so tombstones for them would
  // be dead weight. Event logs go with their runs.
  for (const auto& [seq, message] : it->second.messages) {
    messages_.erase(message.id());
  }
  for (const auto& [seq, run] : it->second.runs) {
    auto run_it = runs_.find(run.id());
    for (const auto& [step_seq, step] : run_it->second.steps) {
      steps_.erase(step.id());
    }
    runs_.erase(run_it);
  }
  tombstones_[it->first] =
      Tombstone{std::string(kThreadKind), "", it->second.seq};
  projects_.erase(it->first);
  threads_.erase(it);
  return absl::OkStatus();
}

// --- Messages ---

absl::Status MemoryStore::CreateMessage(const v1::Message& message,
                                        const IdempotencyRecord* idempotency) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckIdempotency(idempotency));
  auto it = threads_.find(message.thread_id());
  if (it == threads_.end()) return NotFound(kThreadKind, message.thread_id());
  if (std::optional<std::string> active = ActiveRunOf(it->second)) {
    return ThreadHasActiveRun(message.thread_id(), *active);
  }
  if (static_cast<int64_t>(it->second.messages.size()) >=
      max_messages_per_thread_) {
    return MessageLimit(message.thread_id(), max_messages_per_thread_);
  }
  if (IdInUse(message.id())) return AlreadyExists(kMessageKind, message.id());
  const int64_t seq = next_seq_++;
  it->second.messages[seq] = message;
  messages_[message.id()] = MessageLocation{message.thread_id(), seq};
  PutIdempotency(idempotency);
  return absl::OkStatus();
}

absl::StatusOr<std::pair<MemoryStore::ThreadEntry*, int64_t>>
MemoryStore::FindMessage(absl::string_view thread_id,
                         absl::string_view message_id) {
  auto thread = threads_.find(std::string(thread_id));
  if (thread == threads_.end()) return NotFound(kThreadKind, thread_id);
  auto it = messages_.find(std::string(message_id));
  if (it == messages_.end() || it->second.thread_id != thread_id) {
    return NotFound(kMessageKind, message_id);
  }
  return std::make_pair(&thread->second, it->second.seq);
}

absl::StatusOr<v1::Message> MemoryStore::GetMessage(
    absl::string_view thread_id, absl::string_view message_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindMessage(thread_id, message_id));
  return found.first->messages.at(found.second);
}

absl::StatusOr<Page<v1::Message>> MemoryStore::ListMessages(
    absl::string_view thread_id, absl::string_view run_id,
    const ListQuery& query) {
  absl::MutexLock lock(&mu_);
  auto it = threads_.find(std::string(thread_id));
  if (it == threads_.end()) return NotFound(kThreadKind, thread_id);
  std::optional<int64_t> after, before;
  if (!query.after.empty()) {
    ASSIGN_OR_RETURN(after,
                     CursorSeq("after", query.after, kMessageKind, thread_id));
  }
  if (!query.before.empty()) {
    ASSIGN_OR_RETURN(
        before, CursorSeq("before", query.before, kMessageKind, thread_id));
  }
  return MakePage(it->second.messages, query,
                  MakePageWindow(query, after, before),
                  [run_id](const v1::Message& message) {
                    return run_id.empty() || message.run_id() == run_id;
                  });
}

absl::StatusOr<v1::Message> MemoryStore::UpdateMessage(
    absl::string_view thread_id, absl::string_view message_id,
    const Mutation<v1::Message>& mutate) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindMessage(thread_id, message_id));
  v1::Message& stored = found.first->messages.at(found.second);
  v1::Message updated = stored;
  RETURN_IF_ERROR(mutate(updated));
  if (updated.id() != stored.id()) return ImmutableField(kMessageKind, "id");
  if (updated.thread_id() != stored.thread_id()) {
    return ImmutableField(kMessageKind, "thread_id");
  }
  stored = updated;
  return updated;
}

absl::Status MemoryStore::DeleteMessage(absl::string_view thread_id,
                                        absl::string_view message_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindMessage(thread_id, message_id));
  found.first->messages.erase(found.second);
  messages_.erase(std::string(message_id));
  tombstones_[std::string(message_id)] = Tombstone{
      std::string(kMessageKind), std::string(thread_id), found.second};
  return absl::OkStatus();
}

// --- Runs, run steps and run event logs ---

std::optional<std::string> MemoryStore::ActiveRunOf(
    const ThreadEntry& thread) const {
  if (thread.active_runs.empty()) return std::nullopt;
  return thread.runs.at(*thread.active_runs.begin()).id();
}

void MemoryStore::IndexRunStatus(ThreadEntry& thread, int64_t seq,
                                 bool active) {
  if (active) {
    thread.active_runs.insert(seq);
    active_runs_[seq] = thread.thread.id();
  } else {
    thread.active_runs.erase(seq);
    active_runs_.erase(seq);
  }
}

absl::StatusOr<std::pair<MemoryStore::ThreadEntry*, MemoryStore::RunEntry*>>
MemoryStore::FindRun(absl::string_view thread_id, absl::string_view run_id) {
  auto thread = threads_.find(std::string(thread_id));
  if (thread == threads_.end()) return NotFound(kThreadKind, thread_id);
  auto it = runs_.find(std::string(run_id));
  if (it == runs_.end() || it->second.thread_id != thread_id) {
    return NotFound(kRunKind, run_id);
  }
  return std::make_pair(&thread->second, &it->second);
}

absl::Status MemoryStore::CreateRun(const RunCreation& creation) {
  RETURN_IF_ERROR(ValidateRunCreation(creation, max_messages_per_thread_));
  const v1::Run& run = creation.run;
  const std::string& thread_id = run.thread_id();
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckIdempotency(creation.idempotency));
  // The ids this call takes, so two of its own objects cannot share one.
  std::unordered_set<std::string> seen;
  ThreadEntry* thread = nullptr;
  if (creation.new_thread != nullptr) {
    if (IdInUse(thread_id)) return AlreadyExists(kThreadKind, thread_id);
    seen.insert(thread_id);
  } else {
    auto it = threads_.find(thread_id);
    if (it == threads_.end()) return NotFound(kThreadKind, thread_id);
    thread = &it->second;
    if (creation.reject_if_thread_active) {
      if (std::optional<std::string> active = ActiveRunOf(*thread)) {
        return ThreadHasActiveRun(thread_id, *active);
      }
    }
    if (static_cast<int64_t>(thread->messages.size() +
                             creation.messages.size()) >
        max_messages_per_thread_) {
      return MessageLimit(thread_id, max_messages_per_thread_);
    }
  }
  if (creation.max_active_runs_in_project > 0) {
    int64_t active = 0;
    for (const auto& [seq, active_thread] : active_runs_) {
      auto owner = projects_.find(active_thread);
      if (owner != projects_.end() && owner->second == creation.project) {
        ++active;
      }
    }
    if (active >= creation.max_active_runs_in_project) {
      return ProjectActiveRunLimit(creation.project,
                                   creation.max_active_runs_in_project);
    }
  }
  for (const v1::Message& message : creation.messages) {
    if (IdInUse(message.id()) || !seen.insert(message.id()).second) {
      return AlreadyExists(kMessageKind, message.id());
    }
  }
  if (IdInUse(run.id()) || seen.count(run.id()) > 0) {
    return AlreadyExists(kRunKind, run.id());
  }

  // Checked: from here on nothing fails. Sequence numbers follow the order
  // the SQLite store inserts rows in: thread, messages, run.
  if (creation.new_thread != nullptr) {
    ThreadEntry entry;
    entry.seq = next_seq_++;
    entry.thread = *creation.new_thread;
    projects_[thread_id] = creation.project;
    // unordered_map nodes are stable, so the pointer survives later inserts.
    thread = &(threads_[thread_id] = std::move(entry));
  }
  for (const v1::Message& message : creation.messages) {
    const int64_t seq = next_seq_++;
    thread->messages[seq] = message;
    messages_[message.id()] = MessageLocation{thread_id, seq};
  }
  const int64_t seq = next_seq_++;
  thread->runs[seq] = run;
  RunEntry& entry = runs_[run.id()];
  entry.thread_id = thread_id;
  entry.seq = seq;
  entry.events = creation.events;
  IndexRunStatus(*thread, seq, IsActiveRunStatus(run.status()));
  PutIdempotency(creation.idempotency);
  return absl::OkStatus();
}

absl::StatusOr<v1::Run> MemoryStore::GetRun(absl::string_view thread_id,
                                            absl::string_view run_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindRun(thread_id, run_id));
  return found.first->runs.at(found.second->seq);
}

absl::StatusOr<Page<v1::Run>> MemoryStore::ListRuns(absl::string_view thread_id,
                                                    const ListQuery& query) {
  absl::MutexLock lock(&mu_);
  auto it = threads_.find(std::string(thread_id));
  if (it == threads_.end()) return NotFound(kThreadKind, thread_id);
  std::optional<int64_t> after, before;
  if (!query.after.empty()) {
    ASSIGN_OR_RETURN(after,
                     CursorSeq("after", query.after, kRunKind, thread_id));
  }
  if (!query.before.empty()) {
    ASSIGN_OR_RETURN(before,
                     CursorSeq("before", query.before, kRunKind, thread_id));
  }
  return MakePage(it->second.runs, query, MakePageWindow(query, after, before),
                  [](const v1::Run&) { return true; });
}

absl::StatusOr<std::vector<v1::Run>> MemoryStore::ListActiveRuns() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Run> runs;
  runs.reserve(active_runs_.size());
  for (const auto& [seq, thread_id] : active_runs_) {
    runs.push_back(threads_.at(thread_id).runs.at(seq));
  }
  return runs;
}

absl::Status MemoryStore::CheckUpsert(const std::string& id,
                                      absl::string_view kind,
                                      absl::string_view parent_id,
                                      BatchCheck& check) {
  // Already that object: a replacement.
  if (LiveSeq(id, kind, parent_id).has_value()) return absl::OkStatus();
  if (IdInUse(id)) return AlreadyExists(kind, id);
  auto [it, inserted] = check.added.try_emplace(
      id, PendingObject{std::string(kind), std::string(parent_id)});
  if (!inserted &&
      (it->second.kind != kind || it->second.parent_id != parent_id)) {
    return AlreadyExists(kind, id);
  }
  return absl::OkStatus();
}

absl::Status MemoryStore::CheckRunChanges(const RunChanges& changes,
                                          BatchCheck& check) {
  auto run = runs_.find(changes.run_id);
  if (run == runs_.end() || run->second.thread_id != changes.thread_id) {
    return NotFound(kRunKind, changes.run_id);
  }
  for (const v1::RunStep& step : changes.steps) {
    RETURN_IF_ERROR(
        CheckUpsert(step.id(), kRunStepKind, changes.run_id, check));
  }
  for (const v1::Message& message : changes.messages) {
    RETURN_IF_ERROR(
        CheckUpsert(message.id(), kMessageKind, changes.thread_id, check));
  }
  int64_t& next =
      check.next_event
          .try_emplace(changes.run_id,
                       static_cast<int64_t>(run->second.events.size()) + 1)
          .first->second;
  for (const v1::RunEvent& event : changes.events) {
    if (event.sequence() != next) {
      return RunEventSequence(changes.run_id, next, event.sequence());
    }
    ++next;
  }
  if (changes.idempotency != nullptr) {
    const std::string& key = changes.idempotency->key;
    if (idempotency_.count(key) > 0 ||
        !check.idempotency_keys.insert(key).second) {
      return IdempotencyConflict(key);
    }
  }
  return absl::OkStatus();
}

void MemoryStore::ApplyRunChanges(const RunChanges& changes) {
  RunEntry& run = runs_.at(changes.run_id);
  ThreadEntry& thread = threads_.at(changes.thread_id);
  if (changes.run.has_value()) {
    thread.runs.at(run.seq) = *changes.run;
    IndexRunStatus(thread, run.seq, IsActiveRunStatus(changes.run->status()));
  }
  // Replacements keep their sequence number, hence their list position.
  for (const v1::RunStep& step : changes.steps) {
    auto it = steps_.find(step.id());
    if (it != steps_.end()) {
      run.steps.at(it->second.seq) = step;
      continue;
    }
    const int64_t seq = next_seq_++;
    run.steps[seq] = step;
    steps_[step.id()] = StepLocation{changes.run_id, seq};
  }
  for (const v1::Message& message : changes.messages) {
    auto it = messages_.find(message.id());
    if (it != messages_.end()) {
      thread.messages.at(it->second.seq) = message;
      continue;
    }
    const int64_t seq = next_seq_++;
    thread.messages[seq] = message;
    messages_[message.id()] = MessageLocation{changes.thread_id, seq};
  }
  run.events.insert(run.events.end(), changes.events.begin(),
                    changes.events.end());
  PutIdempotency(changes.idempotency);
}

absl::Status MemoryStore::CommitRunChanges(
    const std::vector<const RunChanges*>& batch) {
  for (const RunChanges* changes : batch) {
    RETURN_IF_ERROR(ValidateRunChanges(*changes));
  }
  absl::MutexLock lock(&mu_);
  // Check the whole batch before applying any of it: all or nothing.
  BatchCheck check;
  for (const RunChanges* changes : batch) {
    RETURN_IF_ERROR(CheckRunChanges(*changes, check));
  }
  for (const RunChanges* changes : batch) ApplyRunChanges(*changes);
  return absl::OkStatus();
}

absl::StatusOr<v1::RunStep> MemoryStore::GetRunStep(absl::string_view thread_id,
                                                    absl::string_view run_id,
                                                    absl::string_view step_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindRun(thread_id, run_id));
  auto it = steps_.find(std::string(step_id));
  if (it == steps_.end() || it->second.run_id != run_id) {
    return NotFound(kRunStepKind, step_id);
  }
  return found.second->steps.at(it->second.seq);
}

absl::StatusOr<Page<v1::RunStep>> MemoryStore::ListRunSteps(
    absl::string_view thread_id, absl::string_view run_id,
    const ListQuery& query) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto found, FindRun(thread_id, run_id));
  std::optional<int64_t> after, before;
  if (!query.after.empty()) {
    ASSIGN_OR_RETURN(after,
                     CursorSeq("after", query.after, kRunStepKind, run_id));
  }
  if (!query.before.empty()) {
    ASSIGN_OR_RETURN(before,
                     CursorSeq("before", query.before, kRunStepKind, run_id));
  }
  return MakePage(found.second->steps, query,
                  MakePageWindow(query, after, before),
                  [](const v1::RunStep&) { return true; });
}

absl::StatusOr<std::vector<v1::RunEvent>> MemoryStore::ListRunEvents(
    absl::string_view run_id, int64_t after_sequence, int limit) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::RunEvent> events;
  auto it = runs_.find(std::string(run_id));
  if (it == runs_.end() || limit <= 0) return events;
  // events[i] has sequence i + 1, so the first one after `after_sequence`
  // sits at index after_sequence.
  const std::vector<v1::RunEvent>& log = it->second.events;
  const int64_t size = static_cast<int64_t>(log.size());
  const int64_t begin = std::clamp<int64_t>(after_sequence, 0, size);
  const int64_t end = std::min<int64_t>(size, begin + limit);
  events.assign(log.begin() + begin, log.begin() + end);
  return events;
}

// --- Projects ---

absl::StatusOr<std::string> MemoryStore::GetProject(OwnedKind kind,
                                                    absl::string_view id) {
  const absl::string_view kind_name =
      kind == OwnedKind::kAssistant ? kAssistantKind : kThreadKind;
  absl::MutexLock lock(&mu_);
  const std::string key(id);
  const bool exists = kind == OwnedKind::kAssistant
                          ? assistant_seq_.count(key) > 0
                          : threads_.count(key) > 0;
  if (!exists) return NotFound(kind_name, id);
  return projects_.at(key);
}

// --- Idempotency ---

absl::StatusOr<std::optional<IdempotencyRecord>>
MemoryStore::GetIdempotencyRecord(absl::string_view key) {
  absl::MutexLock lock(&mu_);
  auto it = idempotency_.find(std::string(key));
  if (it == idempotency_.end()) return std::optional<IdempotencyRecord>();
  return std::optional<IdempotencyRecord>(it->second);
}

absl::StatusOr<int64_t> MemoryStore::PruneIdempotencyRecords(
    int64_t cutoff_ms) {
  absl::MutexLock lock(&mu_);
  int64_t pruned = 0;
  for (auto it = idempotency_.begin(); it != idempotency_.end();) {
    if (it->second.created_at_ms < cutoff_ms) {
      it = idempotency_.erase(it);
      ++pruned;
    } else {
      ++it;
    }
  }
  return pruned;
}

}  // namespace assistants
