// The assistantsctl binary's run commands from outside: flag checking (exit
// 2), the flags' mapping onto the RunEvents request, exit codes from the
// run's end, and decoded errors, against in-process fakes of RunService (the
// run engine is not needed, and today's gateway answers UNIMPLEMENTED).
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "tests/cli/fake_run_service.h"
#include "tests/cli/seed_events.h"
#include "tests/support/server_process.h"

namespace assistants::cli {
namespace {

using cli_test::FakeRunService;
using cli_test::kSeedStreamed;
using test_support::CliBinary;
using test_support::CommandResult;
using test_support::RunCommand;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr char kQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would be "
    "worth?";

// Today's gateway: every RunService RPC answers UNIMPLEMENTED with an
// ErrorInfo (reason NOT_IMPLEMENTED).
class UnimplementedRunService final : public v1::RunService::Service {
 public:
  grpc::Status RunEvents(grpc::ServerContext*, const v1::RunEventsRequest*,
                         grpc::ServerWriter<v1::RunEventsResponse>*) override {
    return NotImplemented("RunEvents");
  }
  grpc::Status CreateThreadAndRun(grpc::ServerContext*,
                                  const v1::CreateThreadAndRunRequest*,
                                  v1::CreateThreadAndRunResponse*) override {
    return NotImplemented("CreateThreadAndRun");
  }
  grpc::Status GetRun(grpc::ServerContext*, const v1::GetRunRequest*,
                      v1::GetRunResponse*) override {
    return NotImplemented("GetRun");
  }

 private:
  static grpc::Status NotImplemented(const std::string& rpc) {
    google::rpc::ErrorInfo info;
    info.set_reason("NOT_IMPLEMENTED");
    info.set_domain("assistants.gateway");
    google::rpc::Status details;
    details.set_code(grpc::StatusCode::UNIMPLEMENTED);
    const std::string message = absl::StrCat(rpc, " is not implemented yet");
    details.set_message(message);
    details.add_details()->PackFrom(info);
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, message,
                        details.SerializeAsString());
  }
};

class AssistantsctlRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(CliBinary().c_str(), X_OK) != 0) {
      GTEST_SKIP() << "build assistantsctl first: " << CliBinary();
    }
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  void ServeSeedRun(
      std::vector<v1::RunEvent> log = cli_test::SeedFunctionCallEvents()) {
    fake_ = std::make_unique<FakeRunService>(std::move(log));
    server_ = FakeRunService::Serve(fake_.get(), &target_);
    ASSERT_NE(server_, nullptr);
  }

  CommandResult Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {CliBinary(), "--target",
                                     target_.empty() ? "127.0.0.1:1" : target_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  std::unique_ptr<FakeRunService> fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
};

TEST_F(AssistantsctlRunTest, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"run"},                       // no --assistant
      {"run", "--message", "hi"},    // no --assistant
      {"run", "--attach", "run_1"},  // no --thread
      {"run", "--attach", "run_1", "--thread", "t", "--model", "m"},
      {"run", "--attach", "run_1", "--thread", "t", "--after", "x"},
      {"run", "--attach", "run_1", "--thread", "t", "--after", "-1"},
      {"run", "--assistant", "a", "--after", "3"},             // --after alone
      {"run", "--assistant", "a", "--poll-interval-ms", "5"},  // no --poll
      {"run", "--assistant", "a", "--poll", "--poll_interval_ms", "0"},
      {"run", "--assistant", "a", "--poll", "--attach", "r", "--after", "1"},
      {"run", "--assistant", "a", "--outputs", "/nonexistent/outputs.json"},
      {"run", "--assistant", "a", "--demo-tools=yes"},
      {"run", "extra-word", "--assistant", "a"},
      {"run", "--assistant", "a", "--limit", "3"},
      {"runs", "get", "thread_1"},
      {"runs", "steps"},
      {"runs", "cancel", "thread_1", "run_1", "more"},
      {"runs", "frobnicate"},
  };
  for (const auto& args : cases) {
    const CommandResult result = Cli(args);
    const std::string name = absl::StrJoin(args, " ");
    EXPECT_EQ(result.exit_code, 2) << name << ": " << result.stderr_text;
    EXPECT_THAT(result.stderr_text, HasSubstr("usage:")) << name;
    EXPECT_EQ(result.stdout_text, "") << name;
  }
}

TEST_F(AssistantsctlRunTest, BadOutputsFileIsAUsageError) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/outputs.json";
  std::ofstream(path) << "[1, 2]";
  const CommandResult result =
      Cli({"run", "--assistant", "a", "--outputs", path});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.stderr_text, HasSubstr("expected a JSON object"));
}

TEST_F(AssistantsctlRunTest, UnimplementedRunServiceFailsCleanly) {
  UnimplementedRunService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&service);
  server_ = builder.BuildAndStart();
  target_ = absl::StrCat("127.0.0.1:", port);
  for (const auto& [args, rpc] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"run", "--assistant", "asst_1", "--message", "hi"}, "RunEvents"},
           {{"run", "--assistant", "asst_1", "--poll"}, "CreateThreadAndRun"},
           {{"run", "--attach", "run_1", "--thread", "thread_1", "--poll"},
            "GetRun"},
           {{"runs", "get", "thread_1", "run_1"}, "GetRun"},
       }) {
    const CommandResult result = Cli(args);
    EXPECT_EQ(result.exit_code, 1) << rpc << ": " << result.stderr_text;
    EXPECT_EQ(result.stderr_text,
              absl::StrCat("error: UNIMPLEMENTED NOT_IMPLEMENTED: ", rpc,
                           " is not implemented yet\n"));
    EXPECT_EQ(result.stdout_text, "");
  }
}

TEST_F(AssistantsctlRunTest, StreamsANewThreadsRunWithDemoTools) {
  ServeSeedRun();
  const CommandResult result =
      Cli({"run", "--assistant", "asst_1", "--message", kQuestion,
           "--demo_tools", "--request_id", "req-1"});
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  EXPECT_EQ(result.stdout_text, kSeedStreamed);
  EXPECT_THAT(result.stderr_text,
              StartsWith("[run run_1 on thread thread_1]\n"));
  EXPECT_THAT(result.stderr_text, HasSubstr("elapsed: "));
  EXPECT_THAT(result.stderr_text, HasSubstr(" s (streamed)\n"));

  const std::vector<v1::RunEventsRequest> requests = fake_->stream_requests();
  ASSERT_THAT(requests, SizeIs(1));
  ASSERT_TRUE(requests[0].has_create_thread_and_run());
  const v1::CreateThreadAndRunRequest& start =
      requests[0].create_thread_and_run();
  EXPECT_EQ(start.request_id(), "req-1");
  EXPECT_EQ(start.options().assistant_id(), "asst_1");
  ASSERT_THAT(start.thread().messages(), SizeIs(1));
  EXPECT_EQ(start.thread().messages(0).role(), v1::MESSAGE_ROLE_USER);
  EXPECT_EQ(start.thread().messages(0).text(), kQuestion);
  EXPECT_FALSE(start.options().has_model());

  ASSERT_THAT(fake_->submissions(), SizeIs(1));
  EXPECT_EQ(fake_->submissions()[0].request_id(), "req-1/outputs/call_1");
  EXPECT_EQ(fake_->submissions()[0].tool_outputs(0).output(),
            R"({"price": 237.5, "currency": "USD"})");
}

TEST_F(AssistantsctlRunTest, ExistingThreadGetsAdditionalMessages) {
  ServeSeedRun();
  test_support::TempDir dir;
  const std::string path = dir.path() + "/outputs.json";
  std::ofstream(path) << R"({"get_stock_price": {"price": 1.5}})";
  const CommandResult result =
      Cli({"run", "--assistant", "asst_1", "--thread", "thread_1", "--message",
           "first", "--message", "second", "--model", "gpt-4o-mini",
           "--instructions", "Be brief.", "--outputs", path});
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  EXPECT_THAT(result.stdout_text,
              HasSubstr("  <- get_stock_price: {\"price\":1.5}\n"));

  const std::vector<v1::RunEventsRequest> requests = fake_->stream_requests();
  ASSERT_THAT(requests, SizeIs(1));
  ASSERT_TRUE(requests[0].has_create_run());
  const v1::CreateRunRequest& start = requests[0].create_run();
  EXPECT_EQ(start.thread_id(), "thread_1");
  // Without --request-id a fresh key still makes a resent start idempotent.
  EXPECT_THAT(start.request_id(), StartsWith("assistantsctl-"));
  ASSERT_THAT(start.options().additional_messages(), SizeIs(2));
  EXPECT_EQ(start.options().additional_messages(0).text(), "first");
  EXPECT_EQ(start.options().additional_messages(1).text(), "second");
  EXPECT_EQ(start.options().model(), "gpt-4o-mini");
  EXPECT_EQ(start.options().instructions(), "Be brief.");
  ASSERT_THAT(fake_->submissions(), SizeIs(1));
  EXPECT_EQ(fake_->submissions()[0].tool_outputs(0).output(),
            R"({"price":1.5})");
}

TEST_F(AssistantsctlRunTest, FailedRunExitsOne) {
  std::vector<v1::RunEvent> log = cli_test::SeedFunctionCallEvents();
  log.resize(3);
  v1::Run failed = cli_test::SeedRun(v1::RUN_STATUS_FAILED);
  failed.mutable_last_error()->set_code("server_error");
  failed.mutable_last_error()->set_message("upstream returned 500");
  log.push_back(cli_test::RunEvent(4, "thread.run.failed", failed));
  log.push_back(cli_test::DoneEvent(5));
  ServeSeedRun(std::move(log));
  const CommandResult result = Cli({"run", "--assistant", "asst_1"});
  EXPECT_EQ(result.exit_code, 1) << result.stderr_text;
  EXPECT_EQ(result.stdout_text,
            "[run failed: server_error: upstream returned 500]\n");
  // The run's failure is not an RPC error.
  EXPECT_THAT(result.stderr_text, Not(HasSubstr("error:")));
}

TEST_F(AssistantsctlRunTest, NoAnswerSourceAndNoStdinExitsOne) {
  ServeSeedRun();
  const CommandResult result = Cli({"run", "--assistant", "asst_1"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.stderr_text,
              HasSubstr("error: no output for get_stock_price (call_1): "
                        "standard input closed"));
  EXPECT_THAT(fake_->submissions(), SizeIs(0));
}

TEST_F(AssistantsctlRunTest, AttachAfterASequence) {
  ServeSeedRun();
  fake_->set_gate(false);
  const CommandResult result = Cli(
      {"run", "--attach", "run_1", "--thread", "thread_1", "--after", "16"});
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  EXPECT_EQ(result.stdout_text,
            "\nassistant > AAPL is trading at $237.50, so 1000 shares are "
            "worth $237,500.00.\n[run completed]\n");
  ASSERT_THAT(fake_->stream_requests(), SizeIs(1));
  EXPECT_EQ(fake_->stream_requests()[0].run_id(), "run_1");
  EXPECT_EQ(fake_->stream_requests()[0].thread_id(), "thread_1");
  EXPECT_EQ(fake_->stream_requests()[0].after_sequence(), 16);
}

TEST_F(AssistantsctlRunTest, JsonPrintsOneEventPerLine) {
  ServeSeedRun();
  const CommandResult result =
      Cli({"--json", "run", "--assistant", "asst_1", "--demo-tools"});
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  const std::vector<std::string> lines =
      absl::StrSplit(absl::StripSuffix(result.stdout_text, "\n"), '\n');
  ASSERT_THAT(lines, SizeIs(22));
  EXPECT_THAT(lines[0],
              StartsWith(R"({"sequence":"1","event":"thread.run.created")"));
  EXPECT_THAT(lines[21], HasSubstr(R"("event":"done")"));
}

TEST_F(AssistantsctlRunTest, PollsWithTheSeedsLoop) {
  ServeSeedRun({});
  fake_->SetPolledRuns({cli_test::SeedRun(v1::RUN_STATUS_QUEUED),
                        cli_test::SeedRun(v1::RUN_STATUS_REQUIRES_ACTION),
                        cli_test::SeedRun(v1::RUN_STATUS_COMPLETED)});
  const CommandResult result =
      Cli({"run", "--assistant", "asst_1", "--demo-tools", "--poll",
           "--poll-interval-ms", "10"});
  ASSERT_EQ(result.exit_code, 0) << result.stderr_text;
  EXPECT_THAT(result.stdout_text, EndsWith("[run completed]\n"));
  EXPECT_THAT(result.stdout_text, HasSubstr(cli_test::kSeedAnswer));
  EXPECT_THAT(result.stderr_text, HasSubstr(" s (polled)\n"));
}

TEST_F(AssistantsctlRunTest, RunsCommands) {
  ServeSeedRun();
  const CommandResult got = Cli({"runs", "get", "thread_1", "run_1"});
  ASSERT_EQ(got.exit_code, 0) << got.stderr_text;
  EXPECT_THAT(got.stdout_text, HasSubstr("id:        run_1\n"));
  EXPECT_THAT(got.stdout_text, HasSubstr("status:    completed\n"));

  const CommandResult listed =
      Cli({"runs", "list", "thread_1", "--limit", "5"});
  ASSERT_EQ(listed.exit_code, 0) << listed.stderr_text;
  EXPECT_EQ(listed.stdout_text, "run_1  completed  asst_1\n");

  const CommandResult cancelled = Cli({"runs", "cancel", "thread_1", "run_1"});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.stderr_text;
  EXPECT_THAT(cancelled.stdout_text, HasSubstr("status:    cancelling\n"));

  const CommandResult steps = Cli({"runs", "steps", "thread_1", "run_1"});
  ASSERT_EQ(steps.exit_code, 0) << steps.stderr_text;
  EXPECT_EQ(steps.stdout_text,
            "step_1  tool_calls  completed  function(get_stock_price)\n"
            "step_2  message_creation  completed  msg_1\n");

  const CommandResult json =
      Cli({"--json", "runs", "get", "thread_1", "run_1"});
  ASSERT_EQ(json.exit_code, 0) << json.stderr_text;
  EXPECT_THAT(json.stdout_text, StartsWith(R"({"id":"run_1")"));
}

}  // namespace
}  // namespace assistants::cli
