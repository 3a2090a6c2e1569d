// The streamed and polled run flows of `assistantsctl run` against an
// in-process fake RunService that speaks the proto contract: the seed's run
// end to end (requires_action answered while the stream stays open), resumes
// after UNAVAILABLE, draining and a silent connection without printing
// anything twice, replayed history when attaching, and the seed's polling
// loop. The real run engine is tested by its own suite; this pins down the
// client's side of the contract.
#include "cli/run_flow.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/cli/fake_run_service.h"
#include "tests/cli/seed_events.h"

namespace assistants::cli {
namespace {

using cli_test::Connection;
using cli_test::FakeRunService;
using cli_test::kCallId;
using cli_test::kRunId;
using cli_test::kSeedRequiresActionSequence;
using cli_test::kSeedStreamed;
using cli_test::kThreadId;
using cli_test::SeedRun;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

constexpr char kSeedOutput[] = R"({"price": 237.5, "currency": "USD"})";

class RunFlowTest : public ::testing::Test {
 protected:
  void Start(std::vector<v1::RunEvent> log) {
    fake_ = std::make_unique<FakeRunService>(std::move(log));
  }

  // Starts the server once the fake is scripted.
  void Serve() {
    std::string target;
    server_ = FakeRunService::Serve(fake_.get(), &target);
    ASSERT_NE(server_, nullptr);
    auto channel =
        grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    runs_ = v1::RunService::NewStub(channel);
    messages_ = v1::MessageService::NewStub(channel);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // The seed's start: CreateThreadAndRun with the question, idempotent.
  static v1::RunEventsRequest StartRequest() {
    v1::RunEventsRequest request;
    v1::CreateThreadAndRunRequest* start =
        request.mutable_create_thread_and_run();
    start->set_request_id("req-1");
    start->mutable_options()->set_assistant_id("asst_1");
    v1::MessageInput* message = start->mutable_thread()->add_messages();
    message->set_role(v1::MESSAGE_ROLE_USER);
    message->set_text(
        "What's the stock price of AAPL, and calculate what 1000 shares "
        "would be worth?");
    return request;
  }

  static RunFlowOptions Options() {
    RunFlowOptions options;
    options.request_id = "req-1";
    options.initial_backoff = std::chrono::milliseconds(1);
    options.poll_interval = std::chrono::milliseconds(1);
    options.rpc_timeout = std::chrono::milliseconds(5000);
    return options;
  }

  static ToolAnswerSources DemoTools() {
    ToolAnswerSources sources;
    sources.demo_tools = true;
    return sources;
  }

  RunFlowResult Stream(const v1::RunEventsRequest& request,
                       const RunFlowOptions& options,
                       const ToolAnswerSources& answers = DemoTools()) {
    return StreamRun(*runs_, request, answers, options, out_, err_);
  }

  void ExpectSeedSubmission() {
    const std::vector<v1::SubmitToolOutputsRequest> submitted =
        fake_->submissions();
    ASSERT_THAT(submitted, SizeIs(1));
    EXPECT_EQ(submitted[0].thread_id(), kThreadId);
    EXPECT_EQ(submitted[0].run_id(), kRunId);
    ASSERT_THAT(submitted[0].tool_outputs(), SizeIs(1));
    EXPECT_EQ(submitted[0].tool_outputs(0).tool_call_id(), kCallId);
    EXPECT_EQ(submitted[0].tool_outputs(0).output(), kSeedOutput);
    EXPECT_EQ(submitted[0].request_id(), "req-1/outputs/call_1");
  }

  std::unique_ptr<FakeRunService> fake_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::RunService::Stub> runs_;
  std::unique_ptr<v1::MessageService::Stub> messages_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(RunFlowTest, StreamsTheSeedRunAndAnswersOnTheOpenStream) {
  Start(cli_test::SeedFunctionCallEvents());
  Serve();
  const RunFlowResult result = Stream(StartRequest(), Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.failure, "");
  EXPECT_EQ(result.run.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(result.reconnects, 0);
  EXPECT_EQ(out_.str(), kSeedStreamed);
  // The ids --attach needs, on stderr so stdout stays the seed's rendering.
  EXPECT_EQ(err_.str(), "[run run_1 on thread thread_1]\n");
  ExpectSeedSubmission();
  // One stream for the whole run, started by the call itself.
  const auto requests = fake_->stream_requests();
  ASSERT_THAT(requests, SizeIs(1));
  EXPECT_EQ(requests[0].create_thread_and_run().request_id(), "req-1");
  EXPECT_EQ(requests[0].after_sequence(), 0);
}

TEST_F(RunFlowTest, ResumesAfterUnavailableWithoutPrintingTwice) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->SetConnections({{4, Connection::Ending::kUnavailable},
                         {10, Connection::Ending::kUnavailable}});
  Serve();
  const RunFlowResult result = Stream(StartRequest(), Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.run.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(result.reconnects, 2);
  EXPECT_EQ(out_.str(), kSeedStreamed);
  ExpectSeedSubmission();
  const auto requests = fake_->stream_requests();
  ASSERT_THAT(requests, SizeIs(3));
  // Once the run is known, resumes attach to it by id from the cursor.
  EXPECT_FALSE(requests[1].has_create_thread_and_run());
  EXPECT_EQ(requests[1].thread_id(), kThreadId);
  EXPECT_EQ(requests[1].run_id(), kRunId);
  EXPECT_EQ(requests[1].after_sequence(), 4);
  EXPECT_EQ(requests[2].after_sequence(), 14);
  EXPECT_THAT(err_.str(), HasSubstr("resuming after sequence 4"));
}

TEST_F(RunFlowTest, ResumesAtOnceAfterDraining) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->SetConnections({{12, Connection::Ending::kDraining}});
  Serve();
  const RunFlowResult result = Stream(StartRequest(), Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.reconnects, 1);
  EXPECT_EQ(out_.str(), kSeedStreamed);
  const auto requests = fake_->stream_requests();
  ASSERT_THAT(requests, SizeIs(2));
  EXPECT_EQ(requests[1].after_sequence(), 12);
  EXPECT_THAT(err_.str(), HasSubstr("drained"));
}

TEST_F(RunFlowTest, ResumesAfterTheServerCancels) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->SetConnections({{7, Connection::Ending::kCancelled}});
  Serve();
  const RunFlowResult result = Stream(StartRequest(), Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.reconnects, 1);
  EXPECT_EQ(out_.str(), kSeedStreamed);
  ASSERT_THAT(fake_->stream_requests(), SizeIs(2));
  EXPECT_EQ(fake_->stream_requests()[1].after_sequence(), 7);
}

TEST_F(RunFlowTest, ResumesAStreamThatEndsBeforeDone) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->SetConnections({{16, Connection::Ending::kClose}});
  Serve();
  const RunFlowResult result = Stream(StartRequest(), Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.reconnects, 1);
  EXPECT_EQ(out_.str(), kSeedStreamed);
  ASSERT_THAT(fake_->stream_requests(), SizeIs(2));
  EXPECT_EQ(fake_->stream_requests()[1].after_sequence(), 16);
  EXPECT_THAT(err_.str(), HasSubstr("ended before done"));
}

TEST_F(RunFlowTest, ResendsTheStartWhileTheRunIsUnknown) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->SetConnections({{0, Connection::Ending::kUnavailable}});
  Serve();
  const RunFlowResult result = Stream(StartRequest(), Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(out_.str(), kSeedStreamed);
  const auto requests = fake_->stream_requests();
  ASSERT_THAT(requests, SizeIs(2));
  // Same idempotency key: the gateway re-attaches to the run it created.
  EXPECT_EQ(requests[1].create_thread_and_run().request_id(), "req-1");
  EXPECT_EQ(requests[1].after_sequence(), 0);
}

TEST_F(RunFlowTest, ResumesASilentStream) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->SetConnections({{3, Connection::Ending::kSilence}});
  Serve();
  RunFlowOptions options = Options();
  options.idle_timeout = std::chrono::milliseconds(300);
  const RunFlowResult result = Stream(StartRequest(), options);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  // At least the one resume; a loaded machine may add more, which must not
  // show in the output either.
  EXPECT_GE(result.reconnects, 1);
  EXPECT_EQ(out_.str(), kSeedStreamed);
  EXPECT_THAT(err_.str(), HasSubstr("idle"));
  ASSERT_THAT(fake_->stream_requests(), SizeIs(result.reconnects + 1));
}

TEST_F(RunFlowTest, GivesUpAfterRetriesWithoutProgress) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->SetConnections({{0, Connection::Ending::kUnavailable},
                         {0, Connection::Ending::kUnavailable},
                         {0, Connection::Ending::kUnavailable},
                         {0, Connection::Ending::kUnavailable}});
  Serve();
  RunFlowOptions options = Options();
  options.max_retries = 2;
  const RunFlowResult result = Stream(StartRequest(), options);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(fake_->stream_requests(), SizeIs(3));
}

TEST_F(RunFlowTest, WithoutARequestIdAStartIsNotRetried) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->SetConnections({{0, Connection::Ending::kUnavailable}});
  Serve();
  v1::RunEventsRequest request = StartRequest();
  request.mutable_create_thread_and_run()->clear_request_id();
  const RunFlowResult result = Stream(request, Options());
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(fake_->stream_requests(), SizeIs(1));
}

TEST_F(RunFlowTest, OtherErrorsEndTheFlowAtOnce) {
  // A bare RunService answers UNIMPLEMENTED, like today's gateway.
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  v1::RunService::Service unimplemented;
  builder.RegisterService(&unimplemented);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  auto stub = v1::RunService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  const RunFlowResult result =
      StreamRun(*stub, StartRequest(), DemoTools(), Options(), out_, err_);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(result.reconnects, 0);
  EXPECT_EQ(out_.str(), "");
  server->Shutdown();
}

TEST_F(RunFlowTest, FailedRunEndsWithItsError) {
  std::vector<v1::RunEvent> log = cli_test::SeedFunctionCallEvents();
  log.resize(3);
  v1::Run failed = SeedRun(v1::RUN_STATUS_FAILED);
  failed.mutable_last_error()->set_code("server_error");
  failed.mutable_last_error()->set_message("upstream returned 500");
  log.push_back(cli_test::RunEvent(4, "thread.run.failed", failed));
  log.push_back(cli_test::DoneEvent(5));
  Start(std::move(log));
  Serve();
  const RunFlowResult result = Stream(StartRequest(), Options());
  ASSERT_TRUE(result.status.ok());
  EXPECT_EQ(result.run.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(out_.str(), "[run failed: server_error: upstream returned 500]\n");
}

TEST_F(RunFlowTest, AttachingReplaysHistoryWithoutAnsweringItAgain) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->set_gate(false);
  Serve();
  v1::RunEventsRequest attach;
  attach.set_thread_id(kThreadId);
  attach.set_run_id(kRunId);
  const RunFlowResult result = Stream(attach, Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.run.status(), v1::RUN_STATUS_COMPLETED);
  // GetRun says the run is completed: the old requires_action is history.
  EXPECT_THAT(fake_->submissions(), SizeIs(0));
  EXPECT_EQ(fake_->get_run_calls(), 1);
  EXPECT_EQ(out_.str(), cli_test::kSeedPrinted);
}

TEST_F(RunFlowTest, AttachingAfterTheEndReadsTheRunsStatus) {
  Start(cli_test::SeedFunctionCallEvents());
  fake_->set_gate(false);
  Serve();
  v1::RunEventsRequest attach;
  attach.set_thread_id(kThreadId);
  attach.set_run_id(kRunId);
  attach.set_after_sequence(21);
  const RunFlowResult result = Stream(attach, Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(fake_->stream_requests()[0].after_sequence(), 21);
  EXPECT_EQ(result.run.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(out_.str(), "[run completed]\n");
}

TEST_F(RunFlowTest, JsonModePrintsOneEventPerLine) {
  Start(cli_test::SeedFunctionCallEvents());
  Serve();
  RunFlowOptions options = Options();
  options.json = true;
  const RunFlowResult result = Stream(StartRequest(), options);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  std::istringstream lines(out_.str());
  std::string line;
  int64_t expected_sequence = 0;
  while (std::getline(lines, line)) {
    v1::RunEvent event;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &event).ok())
        << line;
    EXPECT_EQ(event.sequence(), ++expected_sequence);
  }
  EXPECT_EQ(expected_sequence, 22);
  ExpectSeedSubmission();
}

TEST_F(RunFlowTest, UnanswerableCallEndsTheFlow) {
  Start(cli_test::SeedFunctionCallEvents());
  Serve();
  std::istringstream closed_stdin("");
  ToolAnswerSources interactive;
  interactive.prompt_in = &closed_stdin;
  interactive.prompt_out = &err_;
  const RunFlowResult result = Stream(StartRequest(), Options(), interactive);
  EXPECT_TRUE(result.status.ok());
  EXPECT_THAT(result.failure, HasSubstr("standard input closed"));
  EXPECT_THAT(fake_->submissions(), SizeIs(0));
}

TEST_F(RunFlowTest, RejectedOutputsLeaveTheRunToEndOnItsOwn) {
  std::vector<v1::RunEvent> log = cli_test::SeedFunctionCallEvents();
  log.resize(kSeedRequiresActionSequence);
  log.push_back(cli_test::RunEvent(10, "thread.run.expired",
                                   SeedRun(v1::RUN_STATUS_EXPIRED)));
  log.push_back(cli_test::DoneEvent(11));
  Start(std::move(log));
  fake_->set_gate(false);
  fake_->set_submit_status(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                        "run is not awaiting outputs"));
  Serve();
  const RunFlowResult result = Stream(StartRequest(), Options());
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.run.status(), v1::RUN_STATUS_EXPIRED);
  EXPECT_THAT(err_.str(), HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(out_.str(), HasSubstr("[run expired]\n"));
}

TEST_F(RunFlowTest, PollsLikeTheSeed) {
  Start({});
  fake_->SetPolledRuns({
      SeedRun(v1::RUN_STATUS_QUEUED),
      SeedRun(v1::RUN_STATUS_IN_PROGRESS),
      SeedRun(v1::RUN_STATUS_REQUIRES_ACTION),
      SeedRun(v1::RUN_STATUS_IN_PROGRESS),
      SeedRun(v1::RUN_STATUS_COMPLETED),
  });
  Serve();
  const RunFlowResult result = PollRun(*runs_, *messages_, StartRequest(),
                                       DemoTools(), Options(), out_, err_);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.run.status(), v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(out_.str(),
            "  -> get_stock_price({\"ticker\":\"AAPL\"}) id=call_1\n"
            "  <- get_stock_price: {\"price\": 237.5, \"currency\": \"USD\"}\n"
            "AAPL is trading at $237.50, so 1000 shares are worth "
            "$237,500.00.\n"
            "[run completed]\n");
  ExpectSeedSubmission();
  EXPECT_EQ(fake_->get_run_calls(), 5);
}

TEST_F(RunFlowTest, PollingStopsOnAFailedRun) {
  Start({});
  v1::Run failed = SeedRun(v1::RUN_STATUS_FAILED);
  failed.mutable_last_error()->set_code("rate_limit_exceeded");
  failed.mutable_last_error()->set_message("quota");
  fake_->SetPolledRuns({SeedRun(v1::RUN_STATUS_QUEUED), failed});
  Serve();
  const RunFlowResult result = PollRun(*runs_, *messages_, StartRequest(),
                                       DemoTools(), Options(), out_, err_);
  ASSERT_TRUE(result.status.ok());
  EXPECT_EQ(result.run.status(), v1::RUN_STATUS_FAILED);
  EXPECT_EQ(out_.str(), "[run failed: rate_limit_exceeded: quota]\n");
}

TEST_F(RunFlowTest, PollingJsonPrintsEachStatusOnce) {
  Start({});
  fake_->SetPolledRuns({
      SeedRun(v1::RUN_STATUS_QUEUED),
      SeedRun(v1::RUN_STATUS_QUEUED),
      SeedRun(v1::RUN_STATUS_IN_PROGRESS),
      SeedRun(v1::RUN_STATUS_COMPLETED),
  });
  Serve();
  RunFlowOptions options = Options();
  options.json = true;
  const RunFlowResult result = PollRun(*runs_, *messages_, StartRequest(),
                                       DemoTools(), options, out_, err_);
  ASSERT_TRUE(result.status.ok());
  std::istringstream lines(out_.str());
  std::vector<std::string> all;
  for (std::string line; std::getline(lines, line);) all.push_back(line);
  ASSERT_THAT(all, SizeIs(4));  // queued, in_progress, completed, message
  EXPECT_THAT(all[0], HasSubstr("RUN_STATUS_QUEUED"));
  EXPECT_THAT(all[2], HasSubstr("RUN_STATUS_COMPLETED"));
  EXPECT_THAT(all[3], HasSubstr("msg_2"));
  EXPECT_THAT(out_.str(), Not(HasSubstr("[run")));
}

}  // namespace
}  // namespace assistants::cli
