#include "service/runs/event_hub.h"

#include <algorithm>
#include <utility>

namespace assistants::runs {

void RunEventHub::Open(const std::string& run_id, int64_t last_sequence) {
  std::vector<std::shared_ptr<Waiter>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    auto& channel = channels_[run_id];
    if (channel != nullptr) return;
    channel = std::make_unique<Channel>();
    channel->first_sequence = last_sequence + 1;
    channel->last_sequence = last_sequence;
    TakeRemoteWaitersLocked(run_id, to_wake);
  }
  for (const auto& waiter : to_wake) waiter->Wake();
}

void RunEventHub::TakeRemoteWaitersLocked(
    const std::string& run_id, std::vector<std::shared_ptr<Waiter>>& out) {
  auto it = remote_waiters_.find(run_id);
  if (it == remote_waiters_.end()) return;
  out.insert(out.end(), it->second.begin(), it->second.end());
  remote_waiters_.erase(it);
}

void RunEventHub::WaitRemote(const std::string& run_id,
                             const std::shared_ptr<Waiter>& waiter) {
  absl::MutexLock lock(&mu_);
  auto& waiters = remote_waiters_[run_id];
  // A stream re-registers before every store read; once is enough.
  if (std::find(waiters.begin(), waiters.end(), waiter) == waiters.end()) {
    waiters.push_back(waiter);
  }
}

void RunEventHub::NotifyRemote(const std::string& run_id) {
  std::vector<std::shared_ptr<Waiter>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    TakeRemoteWaitersLocked(run_id, to_wake);
  }
  for (const auto& waiter : to_wake) waiter->Wake();
}

void RunEventHub::WakeAllRemote() {
  std::vector<std::shared_ptr<Waiter>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, waiters] : remote_waiters_) {
      to_wake.insert(to_wake.end(), waiters.begin(), waiters.end());
    }
    remote_waiters_.clear();
  }
  for (const auto& waiter : to_wake) waiter->Wake();
}

void RunEventHub::Publish(const std::string& run_id,
                          std::vector<EventPtr> events) {
  if (events.empty()) return;
  std::vector<std::shared_ptr<Waiter>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    auto it = channels_.find(run_id);
    if (it == channels_.end()) return;
    Channel& channel = *it->second;
    for (EventPtr& event : events) {
      channel.last_sequence = event->event().sequence();
      channel.recent.push_back(std::move(event));
    }
    while (channel.recent.size() > window_) {
      channel.recent.pop_front();
      ++channel.first_sequence;
    }
    to_wake.swap(channel.waiters);
  }
  for (const auto& waiter : to_wake) waiter->Wake();
}

void RunEventHub::Close(const std::string& run_id) {
  std::vector<std::shared_ptr<Waiter>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    auto it = channels_.find(run_id);
    if (it == channels_.end()) return;
    to_wake.swap(it->second->waiters);
    channels_.erase(it);
  }
  for (const auto& waiter : to_wake) waiter->Wake();
}

void RunEventHub::CloseAll() {
  std::vector<std::shared_ptr<Waiter>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, channel] : channels_) {
      for (auto& waiter : channel->waiters) to_wake.push_back(waiter);
    }
    channels_.clear();
  }
  for (const auto& waiter : to_wake) waiter->Wake();
}

RunEventHub::Read RunEventHub::Next(const std::string& run_id, int64_t sequence,
                                    const std::shared_ptr<Waiter>& waiter) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(run_id);
  if (it == channels_.end()) return {Read::Kind::kNotLive, nullptr};
  Channel& channel = *it->second;
  if (sequence < channel.first_sequence) return {Read::Kind::kBehind, nullptr};
  if (sequence <= channel.last_sequence) {
    return {
        Read::Kind::kEvent,
        channel.recent[static_cast<size_t>(sequence - channel.first_sequence)]};
  }
  // A stream that pumps twice while waiting registers twice and is woken
  // twice; its pump tolerates that, and a set would cost more per event.
  channel.waiters.push_back(waiter);
  return {Read::Kind::kWaiting, nullptr};
}

void RunEventHub::CancelWait(const std::string& run_id, const Waiter* waiter) {
  auto forget = [waiter](std::vector<std::shared_ptr<Waiter>>& waiters) {
    waiters.erase(std::remove_if(waiters.begin(), waiters.end(),
                                 [&](const std::shared_ptr<Waiter>& w) {
                                   return w.get() == waiter;
                                 }),
                  waiters.end());
  };
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(run_id);
  if (it != channels_.end()) forget(it->second->waiters);
  auto remote = remote_waiters_.find(run_id);
  if (remote != remote_waiters_.end()) {
    forget(remote->second);
    if (remote->second.empty()) remote_waiters_.erase(remote);
  }
}

int64_t RunEventHub::LastSequence(const std::string& run_id) const {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(run_id);
  return it == channels_.end() ? -1 : it->second->last_sequence;
}

size_t RunEventHub::live_runs() const {
  absl::MutexLock lock(&mu_);
  return channels_.size();
}

}  // namespace assistants::runs
