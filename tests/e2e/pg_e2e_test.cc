// The real gateway on the PostgreSQL store (store.postgres_url): a streamed
// run against fake-openai completes, and after kill -9 and a restart on the
// same database the run, its thread and its event log are all still there.
// Skipped without $ASSISTANTS_TEST_PG_URL.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "tests/e2e/e2e_helpers.h"
#include "tests/support/pg_test_db.h"
#include "tests/support/server_process.h"

namespace assistants::test_support {
namespace {

namespace v1 = ::assistants::v1;
using ::testing::HasSubstr;
using ::testing::Not;

class PgE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_ALL); }

  void SetUp() override {
    if (!PgTestDb::Available()) GTEST_SKIP() << PgTestDb::SkipMessage();
    db_ = std::make_unique<PgTestDb>();
    ASSERT_TRUE(db_->status().ok()) << db_->status();
    std::string error;
    ASSERT_TRUE(fake_.Start(FakeOpenAiBinary(), {"--seed=7"}, &error)) << error;
  }

  void TearDown() override {
    assistants_.reset();
    runs_.reset();
    if (HasFailure()) {
      std::cerr << "--- gateway stderr ---\n"
                << gateway_.captured_stderr() << "--- fake-openai stderr ---\n"
                << fake_.captured_stderr();
    }
  }

  // (Re)starts the gateway on the test's database, in front of fake-openai.
  void StartGateway() {
    gateway_.set_env({
        "ASSISTANTS_STORE_POSTGRES_URL=" + db_->url(),
        "ASSISTANTS_STORE_POSTGRES_POOL_SIZE=4",
        "OPENAI_BASE_URL=http://127.0.0.1:" + std::to_string(fake_.port()) +
            "/v1",
        "OPENAI_API_KEY=sk-fake",
        "OPENAI_API_KEY_FILE=",
        "CHAT_COMPLETIONS_BASE_URL=",
        "ASSISTANTS_DEFAULT_UPSTREAM=openai",
    });
    std::string error;
    // store.path names a file that must not be created: the PostgreSQL
    // store replaces SQLite entirely.
    ASSERT_TRUE(gateway_.Start(
        GatewayBinary(),
        {"--shutdown_grace_ms=500", "--db=" + scratch_.path() + "/unused.db"},
        &error))
        << error;
    std::shared_ptr<grpc::Channel> channel = gateway_.Connect();
    ASSERT_NE(channel, nullptr) << "gateway never accepted connections";
    assistants_ = v1::AssistantService::NewStub(channel);
    runs_ = v1::RunService::NewStub(channel);
  }

  std::unique_ptr<PgTestDb> db_;
  TempDir scratch_;
  ServerProcess fake_;
  ServerProcess gateway_;
  std::unique_ptr<v1::AssistantService::Stub> assistants_;
  std::unique_ptr<v1::RunService::Stub> runs_;
};

TEST_F(PgE2eTest, StreamedRunCompletesAndSurvivesKillAndRestart) {
  StartGateway();
  if (HasFatalFailure()) return;
  const std::string assistant_id = CreateAssistant(assistants_.get(), {});

  v1::RunEventsRequest request;
  *request.mutable_create_thread_and_run() =
      ThreadAndRun(assistant_id, "Say hello to the database.");
  std::vector<v1::RunEvent> events;
  {
    EventStream stream(runs_.get(), request);
    grpc::Status status = stream.ReadAll(&events);
    ASSERT_TRUE(status.ok()) << Describe(status);
  }
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back().event(), "done");
  EXPECT_EQ(Sequences(events), OneTo(static_cast<int64_t>(events.size())));
  ExpectPayloads(events);
  const v1::Run run = events[1].run();
  EXPECT_EQ(GetRun(runs_.get(), run).status(), v1::RUN_STATUS_COMPLETED);

  gateway_.Kill();
  StartGateway();
  if (HasFatalFailure()) return;
  EXPECT_THAT(gateway_.captured_stderr(), HasSubstr("(store: postgres "));
  EXPECT_THAT(gateway_.captured_stderr(), Not(HasSubstr("sqlite")));

  EXPECT_EQ(GetRun(runs_.get(), run).status(), v1::RUN_STATUS_COMPLETED);
  v1::ListRunsRequest list;
  list.set_thread_id(run.thread_id());
  v1::ListRunsResponse listed;
  grpc::Status status = runs_->ListRuns(Context().get(), list, &listed);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_EQ(listed.data_size(), 1);
  EXPECT_EQ(listed.data(0).id(), run.id());

  // The whole event log replays from the database.
  std::vector<v1::RunEvent> replayed;
  EventStream replay(runs_.get(), Attach(run, 0));
  status = replay.ReadAll(&replayed);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(Sequences(replayed), Sequences(events));
  EXPECT_FALSE(std::filesystem::exists(scratch_.path() + "/unused.db"));
}

}  // namespace
}  // namespace assistants::test_support
