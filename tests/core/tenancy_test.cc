// Tenancy: every assistant_id / thread_id a request names, at any depth,
// must be the caller's project's; another project's objects look missing.
#include "service/core/tenancy.h"

#include <gtest/gtest.h>

#include "assistants/v1/assistant.pb.h"
#include "assistants/v1/message.pb.h"
#include "assistants/v1/run_service.pb.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/store/memory_store.h"

namespace assistants {
namespace {

class TenancyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    assistant_.set_id(NewId(kAssistantPrefix));
    thread_.set_id(NewId(kThreadPrefix));
    ASSERT_TRUE(store_.CreateAssistant(assistant_, "proj_a", nullptr).ok());
    ASSERT_TRUE(store_.CreateThread(thread_, "proj_a", {}, nullptr).ok());
  }

  void ExpectHidden(const google::protobuf::Message& request,
                    absl::string_view reason) {
    absl::Status status = tenancy_.CheckAccess("proj_b", request);
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound)
        << request.ShortDebugString();
    EXPECT_EQ(ErrorReason(status), reason);
    EXPECT_TRUE(tenancy_.CheckAccess("proj_a", request).ok());
  }

  MemoryStore store_;
  Tenancy tenancy_{&store_};
  v1::Assistant assistant_;
  v1::Thread thread_;
};

TEST_F(TenancyTest, TopLevelIds) {
  v1::GetAssistantRequest get_assistant;
  get_assistant.set_assistant_id(assistant_.id());
  ExpectHidden(get_assistant, "ASSISTANT_NOT_FOUND");
  v1::ListMessagesRequest list_messages;
  list_messages.set_thread_id(thread_.id());
  ExpectHidden(list_messages, "THREAD_NOT_FOUND");
}

TEST_F(TenancyTest, NestedIds) {
  v1::CreateRunRequest create_run;
  create_run.set_thread_id(NewId(kThreadPrefix));  // missing: left to the op
  create_run.mutable_options()->set_assistant_id(assistant_.id());
  ExpectHidden(create_run, "ASSISTANT_NOT_FOUND");

  v1::RunEventsRequest events;
  events.mutable_create_run()->set_thread_id(thread_.id());
  ExpectHidden(events, "THREAD_NOT_FOUND");

  v1::RunEventsRequest thread_and_run;
  thread_and_run.mutable_create_thread_and_run()
      ->mutable_options()
      ->set_assistant_id(assistant_.id());
  ExpectHidden(thread_and_run, "ASSISTANT_NOT_FOUND");
}

TEST_F(TenancyTest, MissingAndMalformedIdsAreLeftToTheOperation) {
  v1::GetAssistantRequest missing;
  missing.set_assistant_id(NewId(kAssistantPrefix));
  EXPECT_TRUE(tenancy_.CheckAccess("proj_b", missing).ok());
  v1::GetAssistantRequest malformed;
  malformed.set_assistant_id("not-an-id");
  EXPECT_TRUE(tenancy_.CheckAccess("proj_b", malformed).ok());
  // A thread id in the assistant field is malformed for it, not a lookup.
  v1::GetAssistantRequest crossed;
  crossed.set_assistant_id(thread_.id());
  EXPECT_TRUE(tenancy_.CheckAccess("proj_b", crossed).ok());
}

TEST_F(TenancyTest, CachedOwnersStayCorrectAfterDeletion) {
  v1::GetAssistantRequest request;
  request.set_assistant_id(assistant_.id());
  ASSERT_FALSE(tenancy_.CheckAccess("proj_b", request).ok());  // cached now
  ASSERT_TRUE(store_.DeleteAssistant(assistant_.id()).ok());
  // Still hidden from B; A passes and the operation answers NOT_FOUND.
  EXPECT_EQ(tenancy_.CheckAccess("proj_b", request).code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(tenancy_.CheckAccess("proj_a", request).ok());
}

TEST_F(TenancyTest, BoundedCacheStillAnswers) {
  Tenancy tiny(&store_, /*cache_entries=*/1);
  v1::GetAssistantRequest a;
  a.set_assistant_id(assistant_.id());
  v1::GetThreadRequest t;
  t.set_thread_id(thread_.id());
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(tiny.CheckAccess("proj_b", a).ok());
    EXPECT_FALSE(tiny.CheckAccess("proj_b", t).ok());
    EXPECT_TRUE(tiny.CheckAccess("proj_a", a).ok());
    EXPECT_TRUE(tiny.CheckAccess("proj_a", t).ok());
  }
}

}  // namespace
}  // namespace assistants
