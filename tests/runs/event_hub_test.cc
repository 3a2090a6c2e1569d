// Tests of service/runs/event_hub: the in-memory live tail of run event logs
// (reads of published events, the window, waiting and waking, closing).
#include "service/runs/event_hub.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "assistants/v1/run_service.pb.h"
#include "gtest/gtest.h"

namespace assistants::runs {
namespace {

using Kind = RunEventHub::Read::Kind;

class CountingWaiter : public RunEventHub::Waiter {
 public:
  void Wake() override { ++wakes; }
  std::atomic<int> wakes{0};
};

EventPtr Event(int64_t sequence,
               const std::string& name = "thread.run.step.delta") {
  auto response = std::make_shared<v1::RunEventsResponse>();
  response->mutable_event()->set_sequence(sequence);
  response->mutable_event()->set_event(name);
  return response;
}

std::vector<EventPtr> Events(int64_t first, int64_t last) {
  std::vector<EventPtr> events;
  for (int64_t s = first; s <= last; ++s) events.push_back(Event(s));
  return events;
}

TEST(RunEventHubTest, UnknownRunIsNotLive) {
  RunEventHub hub;
  auto waiter = std::make_shared<CountingWaiter>();
  EXPECT_EQ(hub.Next("run_x", 1, waiter).kind, Kind::kNotLive);
  EXPECT_EQ(hub.LastSequence("run_x"), -1);
  EXPECT_EQ(hub.live_runs(), 0u);
  EXPECT_EQ(waiter->wakes, 0);
}

TEST(RunEventHubTest, PublishedEventsAreReadInOrder) {
  RunEventHub hub;
  hub.Open("run_a", 0);
  EXPECT_EQ(hub.LastSequence("run_a"), 0);
  hub.Publish("run_a", Events(1, 3));
  EXPECT_EQ(hub.LastSequence("run_a"), 3);
  auto waiter = std::make_shared<CountingWaiter>();
  for (int64_t s = 1; s <= 3; ++s) {
    RunEventHub::Read read = hub.Next("run_a", s, waiter);
    ASSERT_EQ(read.kind, Kind::kEvent) << s;
    EXPECT_EQ(read.event->event().sequence(), s);
  }
  EXPECT_EQ(waiter->wakes, 0);
}

TEST(RunEventHubTest, OpenContinuesAfterLastSequence) {
  RunEventHub hub;
  hub.Open("run_a", 7);
  auto waiter = std::make_shared<CountingWaiter>();
  // Older events live in the store only.
  EXPECT_EQ(hub.Next("run_a", 7, waiter).kind, Kind::kBehind);
  EXPECT_EQ(hub.Next("run_a", 8, waiter).kind, Kind::kWaiting);
  hub.Publish("run_a", {Event(8)});
  EXPECT_EQ(waiter->wakes, 1);
  RunEventHub::Read read = hub.Next("run_a", 8, waiter);
  ASSERT_EQ(read.kind, Kind::kEvent);
  EXPECT_EQ(read.event->event().sequence(), 8);
}

TEST(RunEventHubTest, OpeningTwiceKeepsTheChannel) {
  RunEventHub hub;
  hub.Open("run_a", 0);
  hub.Publish("run_a", Events(1, 2));
  hub.Open("run_a", 0);
  EXPECT_EQ(hub.LastSequence("run_a"), 2);
  EXPECT_EQ(hub.live_runs(), 1u);
}

TEST(RunEventHubTest, OlderThanTheWindowIsBehind) {
  RunEventHub hub(/*window=*/3);
  hub.Open("run_a", 0);
  hub.Publish("run_a", Events(1, 5));
  auto waiter = std::make_shared<CountingWaiter>();
  EXPECT_EQ(hub.Next("run_a", 1, waiter).kind, Kind::kBehind);
  EXPECT_EQ(hub.Next("run_a", 2, waiter).kind, Kind::kBehind);
  for (int64_t s = 3; s <= 5; ++s) {
    RunEventHub::Read read = hub.Next("run_a", s, waiter);
    ASSERT_EQ(read.kind, Kind::kEvent) << s;
    EXPECT_EQ(read.event->event().sequence(), s);
  }
  EXPECT_EQ(hub.Next("run_a", 6, waiter).kind, Kind::kWaiting);
}

TEST(RunEventHubTest, WaiterIsWokenOnceByPublish) {
  RunEventHub hub;
  hub.Open("run_a", 0);
  auto waiter = std::make_shared<CountingWaiter>();
  EXPECT_EQ(hub.Next("run_a", 1, waiter).kind, Kind::kWaiting);
  EXPECT_EQ(waiter->wakes, 0);
  hub.Publish("run_a", {Event(1)});
  EXPECT_EQ(waiter->wakes, 1);
  // The registration was used up.
  hub.Publish("run_a", {Event(2)});
  EXPECT_EQ(waiter->wakes, 1);
  // Publishing nothing wakes nobody.
  EXPECT_EQ(hub.Next("run_a", 3, waiter).kind, Kind::kWaiting);
  hub.Publish("run_a", {});
  EXPECT_EQ(waiter->wakes, 1);
}

TEST(RunEventHubTest, EveryWaiterOfTheRunIsWoken) {
  RunEventHub hub;
  hub.Open("run_a", 0);
  hub.Open("run_b", 0);
  auto first = std::make_shared<CountingWaiter>();
  auto second = std::make_shared<CountingWaiter>();
  auto other_run = std::make_shared<CountingWaiter>();
  EXPECT_EQ(hub.Next("run_a", 1, first).kind, Kind::kWaiting);
  EXPECT_EQ(hub.Next("run_a", 1, second).kind, Kind::kWaiting);
  EXPECT_EQ(hub.Next("run_b", 1, other_run).kind, Kind::kWaiting);
  hub.Publish("run_a", {Event(1)});
  EXPECT_EQ(first->wakes, 1);
  EXPECT_EQ(second->wakes, 1);
  EXPECT_EQ(other_run->wakes, 0);
}

TEST(RunEventHubTest, CloseWakesWaitersAndEndsTheChannel) {
  RunEventHub hub;
  hub.Open("run_a", 0);
  hub.Publish("run_a", Events(1, 2));
  auto waiter = std::make_shared<CountingWaiter>();
  EXPECT_EQ(hub.Next("run_a", 3, waiter).kind, Kind::kWaiting);
  hub.Close("run_a");
  EXPECT_EQ(waiter->wakes, 1);
  EXPECT_EQ(hub.Next("run_a", 1, waiter).kind, Kind::kNotLive);
  EXPECT_EQ(hub.LastSequence("run_a"), -1);
  EXPECT_EQ(hub.live_runs(), 0u);
  // Publishing to a closed run is dropped; closing again is harmless.
  hub.Publish("run_a", {Event(3)});
  hub.Close("run_a");
  EXPECT_EQ(hub.Next("run_a", 3, waiter).kind, Kind::kNotLive);
  EXPECT_EQ(waiter->wakes, 1);
}

TEST(RunEventHubTest, CloseAllWakesEveryone) {
  RunEventHub hub;
  hub.Open("run_a", 0);
  hub.Open("run_b", 0);
  auto a = std::make_shared<CountingWaiter>();
  auto b = std::make_shared<CountingWaiter>();
  EXPECT_EQ(hub.Next("run_a", 1, a).kind, Kind::kWaiting);
  EXPECT_EQ(hub.Next("run_b", 1, b).kind, Kind::kWaiting);
  EXPECT_EQ(hub.live_runs(), 2u);
  hub.CloseAll();
  EXPECT_EQ(a->wakes, 1);
  EXPECT_EQ(b->wakes, 1);
  EXPECT_EQ(hub.live_runs(), 0u);
  EXPECT_EQ(hub.Next("run_a", 1, a).kind, Kind::kNotLive);
}

TEST(RunEventHubTest, CancelWaitForgetsTheRegistration) {
  RunEventHub hub;
  hub.Open("run_a", 0);
  auto gone = std::make_shared<CountingWaiter>();
  auto stays = std::make_shared<CountingWaiter>();
  // Registered twice (a stream that pumped twice): both forgotten.
  EXPECT_EQ(hub.Next("run_a", 1, gone).kind, Kind::kWaiting);
  EXPECT_EQ(hub.Next("run_a", 1, gone).kind, Kind::kWaiting);
  EXPECT_EQ(hub.Next("run_a", 1, stays).kind, Kind::kWaiting);
  hub.CancelWait("run_a", gone.get());
  hub.Publish("run_a", {Event(1)});
  EXPECT_EQ(gone->wakes, 0);
  EXPECT_EQ(stays->wakes, 1);
  // Cancelling on an unknown run or after close is a no-op.
  hub.CancelWait("run_x", gone.get());
  hub.Close("run_a");
  hub.CancelWait("run_a", gone.get());
  EXPECT_EQ(gone->wakes, 0);
}

TEST(RunEventHubTest, WaiterRegisteredTwiceIsWokenTwice) {
  // Documented behaviour: no dedupe, the stream's pump tolerates it.
  RunEventHub hub;
  hub.Open("run_a", 0);
  auto waiter = std::make_shared<CountingWaiter>();
  EXPECT_EQ(hub.Next("run_a", 1, waiter).kind, Kind::kWaiting);
  EXPECT_EQ(hub.Next("run_a", 1, waiter).kind, Kind::kWaiting);
  hub.Publish("run_a", {Event(1)});
  EXPECT_EQ(waiter->wakes, 2);
}

// Several replicas: a stream of a run driven elsewhere waits for the
// database's notification; once per registration, however often it asks.
TEST(RunEventHubTest, RemoteWaiterIsWokenOnceByANotificationOfItsRun) {
  RunEventHub hub;
  auto waiter = std::make_shared<CountingWaiter>();
  hub.WaitRemote("run_1", waiter);
  hub.WaitRemote("run_1", waiter);
  hub.NotifyRemote("run_other");
  EXPECT_EQ(waiter->wakes, 0);
  hub.NotifyRemote("run_1");
  EXPECT_EQ(waiter->wakes, 1);
  hub.NotifyRemote("run_1");
  EXPECT_EQ(waiter->wakes, 1);
}

TEST(RunEventHubTest, RemoteWaiterIsWokenWhenTheRunGoesLiveHere) {
  RunEventHub hub;
  auto waiter = std::make_shared<CountingWaiter>();
  hub.WaitRemote("run_1", waiter);
  hub.Open("run_1", 7);  // this replica took the run over
  EXPECT_EQ(waiter->wakes, 1);
  EXPECT_EQ(hub.Next("run_1", 8, waiter).kind, Kind::kWaiting);
}

TEST(RunEventHubTest, CancelWaitAndWakeAllRemote) {
  RunEventHub hub;
  auto gone = std::make_shared<CountingWaiter>();
  auto kept = std::make_shared<CountingWaiter>();
  hub.WaitRemote("run_1", gone);
  hub.WaitRemote("run_2", kept);
  hub.CancelWait("run_1", gone.get());
  hub.WakeAllRemote();  // the listener reconnected
  EXPECT_EQ(gone->wakes, 0);
  EXPECT_EQ(kept->wakes, 1);
  hub.NotifyRemote("run_2");
  EXPECT_EQ(kept->wakes, 1);
}

}  // namespace
}  // namespace assistants::runs
