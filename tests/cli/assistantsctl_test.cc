// The assistantsctl binary from outside: flag checking (exit 2), the flags'
// mapping onto each request (the RunEvents start, every resource command),
// exit codes from the run's end, decoded errors, `runs events`, and the
// metadata (API key, request id) and TLS flags, against in-process fakes of
// the public services (the run engine is not needed).
#include <stdlib.h>
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
#include "tests/cli/fake_resource_service.h"
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
using ::testing::ElementsAre;
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

// Sets an environment variable for the scope (the CLI child inherits it).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

std::vector<std::string> Lines(const std::string& text) {
  if (text.empty()) return {};
  return absl::StrSplit(absl::StripSuffix(text, "\n"), '\n');
}

// Every command but `run` against fakes of all the public services, with
// the metadata of each call recorded.
class AssistantsctlCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(CliBinary().c_str(), X_OK) != 0) {
      GTEST_SKIP() << "build assistantsctl first: " << CliBinary();
    }
    runs_ =
        std::make_unique<FakeRunService>(cli_test::SeedFunctionCallEvents());
    // The run is history: its events replay without waiting for outputs.
    runs_->set_gate(false);
    server_ =
        cli_test::ServeAll(runs_.get(), &resources_, &recorder_, &target_);
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  CommandResult Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {CliBinary(), "--target", target_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  std::unique_ptr<FakeRunService> runs_;
  cli_test::FakeResourceService resources_;
  cli_test::MetadataRecorder recorder_;
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
};

TEST_F(AssistantsctlCommandsTest, ThreadsUpdateReplacesOrClearsMetadata) {
  const CommandResult updated = Cli({"threads", "update", "thread_1",
                                     "--metadata", "b=2", "--metadata", "a=1"});
  ASSERT_EQ(updated.exit_code, 0) << updated.stderr_text;
  EXPECT_THAT(updated.stdout_text, HasSubstr("id:      thread_1\n"));
  EXPECT_THAT(updated.stdout_text, HasSubstr("metadata: a=1 b=2\n"));
  v1::UpdateThreadRequest request =
      resources_.last<v1::UpdateThreadRequest>("UpdateThread");
  EXPECT_EQ(request.thread_id(), "thread_1");
  EXPECT_THAT(request.metadata(), SizeIs(2));
  EXPECT_THAT(request.update_mask().paths(), ElementsAre("metadata"));

  const CommandResult cleared =
      Cli({"threads", "update", "thread_1", "--clear-metadata"});
  ASSERT_EQ(cleared.exit_code, 0) << cleared.stderr_text;
  request = resources_.last<v1::UpdateThreadRequest>("UpdateThread");
  EXPECT_THAT(request.metadata(), SizeIs(0));
  // The mask is what makes empty metadata a write.
  EXPECT_THAT(request.update_mask().paths(), ElementsAre("metadata"));
}

TEST_F(AssistantsctlCommandsTest, MessagesGetUpdateDelete) {
  const CommandResult got = Cli({"messages", "get", "thread_1", "msg_7"});
  ASSERT_EQ(got.exit_code, 0) << got.stderr_text;
  EXPECT_THAT(got.stdout_text, HasSubstr("id:      msg_7\n"));
  EXPECT_THAT(got.stdout_text,
              HasSubstr(absl::StrCat("text:    ", cli_test::kSeedAnswer)));
  EXPECT_THAT(got.stdout_text, HasSubstr("run:     run_1\n"));
  const auto get = runs_->last<v1::GetMessageRequest>("GetMessage");
  EXPECT_EQ(get.thread_id(), "thread_1");
  EXPECT_EQ(get.message_id(), "msg_7");

  const CommandResult updated =
      Cli({"messages", "update", "thread_1", "msg_7", "--metadata", "k=v"});
  ASSERT_EQ(updated.exit_code, 0) << updated.stderr_text;
  EXPECT_THAT(updated.stdout_text, HasSubstr("metadata: k=v\n"));
  const auto update = runs_->last<v1::UpdateMessageRequest>("UpdateMessage");
  EXPECT_EQ(update.message_id(), "msg_7");
  EXPECT_EQ(update.metadata().at("k"), "v");

  const CommandResult deleted =
      Cli({"messages", "delete", "thread_1", "msg_7"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.stderr_text;
  EXPECT_EQ(deleted.stdout_text, "deleted msg_7\n");
  const CommandResult json =
      Cli({"--json", "messages", "delete", "thread_1", "msg_7"});
  ASSERT_EQ(json.exit_code, 0) << json.stderr_text;
  EXPECT_EQ(json.stdout_text,
            R"({"id":"msg_7","object":"thread.message.deleted","deleted":true})"
            "\n");
}

TEST_F(AssistantsctlCommandsTest, RunsCreateMapsEveryRunFlag) {
  const CommandResult created =
      Cli({"runs",        "create",
           "thread_1",    "--assistant",
           "asst_1",      "--model",
           "gpt-4o-mini", "--instructions",
           "Be brief.",   "--additional-instructions",
           "Use USD.",    "--message",
           "m1",          "--message",
           "m2",          "--metadata",
           "k=v",         "--tools-json",
           "[]",          "--temperature",
           "0.5",         "--top-p",
           "0.9",         "--max-prompt-tokens",
           "1000",        "--max-completion-tokens",
           "200",         "--requires-action-timeout-s",
           "30",          "--active-run-policy",
           "queue",       "--request-id",
           "req-9"});
  ASSERT_EQ(created.exit_code, 0) << created.stderr_text;
  EXPECT_THAT(created.stdout_text, HasSubstr("id:        run_1\n"));
  EXPECT_THAT(created.stdout_text, HasSubstr("status:    queued\n"));

  const auto request = runs_->last<v1::CreateRunRequest>("CreateRun");
  EXPECT_EQ(request.thread_id(), "thread_1");
  EXPECT_EQ(request.request_id(), "req-9");
  const v1::RunOptions& options = request.options();
  EXPECT_EQ(options.assistant_id(), "asst_1");
  EXPECT_EQ(options.model(), "gpt-4o-mini");
  EXPECT_EQ(options.instructions(), "Be brief.");
  EXPECT_EQ(options.additional_instructions(), "Use USD.");
  ASSERT_THAT(options.additional_messages(), SizeIs(2));
  EXPECT_EQ(options.additional_messages(1).text(), "m2");
  EXPECT_EQ(options.additional_messages(1).role(), v1::MESSAGE_ROLE_USER);
  EXPECT_EQ(options.metadata().at("k"), "v");
  // An explicit empty tool list means "no tools for this run".
  EXPECT_THAT(options.tools(), SizeIs(0));
  EXPECT_TRUE(options.override_tools());
  EXPECT_EQ(options.temperature(), 0.5);
  EXPECT_EQ(options.top_p(), 0.9);
  EXPECT_EQ(options.max_prompt_tokens(), 1000);
  EXPECT_EQ(options.max_completion_tokens(), 200);
  EXPECT_EQ(options.requires_action_timeout_seconds(), 30);
  EXPECT_EQ(options.active_run_policy(), v1::ACTIVE_RUN_POLICY_QUEUE);

  // Unset flags stay unset: the assistant's values apply.
  ASSERT_EQ(
      Cli({"runs", "create", "thread_1", "--assistant", "asst_1"}).exit_code,
      0);
  const auto bare = runs_->last<v1::CreateRunRequest>("CreateRun");
  EXPECT_FALSE(bare.options().has_model());
  EXPECT_FALSE(bare.options().has_temperature());
  EXPECT_FALSE(bare.options().override_tools());
  EXPECT_EQ(bare.request_id(), "");
}

TEST_F(AssistantsctlCommandsTest, CreateAndRunPutsTheMessagesInTheNewThread) {
  const CommandResult created =
      Cli({"--json", "threads", "create-and-run", "--assistant", "asst_1",
           "--message", "hi", "--thread-metadata", "t=1", "--metadata", "r=2"});
  ASSERT_EQ(created.exit_code, 0) << created.stderr_text;
  EXPECT_THAT(created.stdout_text, StartsWith(R"({"id":"run_1")"));
  const auto request =
      runs_->last<v1::CreateThreadAndRunRequest>("CreateThreadAndRun");
  ASSERT_THAT(request.thread().messages(), SizeIs(1));
  EXPECT_EQ(request.thread().messages(0).text(), "hi");
  EXPECT_EQ(request.thread().metadata().at("t"), "1");
  EXPECT_THAT(request.options().additional_messages(), SizeIs(0));
  EXPECT_EQ(request.options().assistant_id(), "asst_1");
  EXPECT_EQ(request.options().metadata().at("r"), "2");
}

TEST_F(AssistantsctlCommandsTest, RunsUpdateReplacesMetadata) {
  const CommandResult updated =
      Cli({"runs", "update", "thread_1", "run_1", "--metadata", "k=v"});
  ASSERT_EQ(updated.exit_code, 0) << updated.stderr_text;
  EXPECT_THAT(updated.stdout_text, HasSubstr("metadata:  k=v\n"));
  const auto request = runs_->last<v1::UpdateRunRequest>("UpdateRun");
  EXPECT_EQ(request.thread_id(), "thread_1");
  EXPECT_EQ(request.run_id(), "run_1");
  EXPECT_EQ(request.metadata().at("k"), "v");
}

TEST_F(AssistantsctlCommandsTest, RunsSubmitFromFlagsOrAFile) {
  const CommandResult flags =
      Cli({"runs", "submit", "thread_1", "run_1", "--output",
           R"(call_1={"price": 1})", "--output", "call_2=a=b", "--request-id",
           "sub-1"});
  ASSERT_EQ(flags.exit_code, 0) << flags.stderr_text;
  EXPECT_THAT(flags.stdout_text, HasSubstr("status:    queued\n"));

  test_support::TempDir dir;
  const std::string path = dir.path() + "/outputs.json";
  std::ofstream(path) << R"({"call_9": {"price": 2}, "call_3": "plain"})";
  const CommandResult file =
      Cli({"runs", "submit", "thread_1", "run_1", "--outputs-file", path});
  ASSERT_EQ(file.exit_code, 0) << file.stderr_text;

  const std::vector<v1::SubmitToolOutputsRequest> submissions =
      runs_->submissions();
  ASSERT_THAT(submissions, SizeIs(2));
  EXPECT_EQ(submissions[0].thread_id(), "thread_1");
  EXPECT_EQ(submissions[0].run_id(), "run_1");
  EXPECT_EQ(submissions[0].request_id(), "sub-1");
  ASSERT_THAT(submissions[0].tool_outputs(), SizeIs(2));
  EXPECT_EQ(submissions[0].tool_outputs(0).tool_call_id(), "call_1");
  EXPECT_EQ(submissions[0].tool_outputs(0).output(), R"({"price": 1})");
  EXPECT_EQ(submissions[0].tool_outputs(1).tool_call_id(), "call_2");
  EXPECT_EQ(submissions[0].tool_outputs(1).output(), "a=b");
  // The file's order; strings as they are, other values as compact JSON.
  ASSERT_THAT(submissions[1].tool_outputs(), SizeIs(2));
  EXPECT_EQ(submissions[1].tool_outputs(0).tool_call_id(), "call_9");
  EXPECT_EQ(submissions[1].tool_outputs(0).output(), R"({"price":2})");
  EXPECT_EQ(submissions[1].tool_outputs(1).tool_call_id(), "call_3");
  EXPECT_EQ(submissions[1].tool_outputs(1).output(), "plain");
  EXPECT_EQ(submissions[1].request_id(), "");
}

TEST_F(AssistantsctlCommandsTest, RunsStepShowsOneStep) {
  const CommandResult step =
      Cli({"runs", "step", "thread_1", "run_1", "step_1"});
  ASSERT_EQ(step.exit_code, 0) << step.stderr_text;
  EXPECT_EQ(step.stdout_text,
            "id:      step_1\n"
            "run:     run_1\n"
            "type:    tool_calls\n"
            "status:  completed\n"
            "call:    call_1  get_stock_price({\"ticker\":\"AAPL\"}) -> "
            "{\"price\": 237.5, \"currency\": \"USD\"}\n");
  const auto request = runs_->last<v1::GetRunStepRequest>("GetRunStep");
  EXPECT_EQ(request.thread_id(), "thread_1");
  EXPECT_EQ(request.run_id(), "run_1");
  EXPECT_EQ(request.step_id(), "step_1");

  const CommandResult missing =
      Cli({"runs", "step", "thread_1", "run_1", "step_404"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.stderr_text, "error: NOT_FOUND: no such step\n");
}

TEST_F(AssistantsctlCommandsTest, RunsEventsPrintsEachEventOnce) {
  const CommandResult events = Cli({"runs", "events", "thread_1", "run_1"});
  ASSERT_EQ(events.exit_code, 0) << events.stderr_text;
  const std::vector<std::string> lines = Lines(events.stdout_text);
  ASSERT_THAT(lines, SizeIs(22));
  EXPECT_EQ(lines[0], "1  thread.run.created  run_1  queued");
  EXPECT_EQ(lines[5],
            "6  thread.run.step.delta  step_1  [0] id=call_1 "
            "get_stock_price");
  EXPECT_EQ(lines[6], R"(7  thread.run.step.delta  step_1  [0] "{\"ticker\"")");
  EXPECT_EQ(lines[8],
            "9  thread.run.requires_action  run_1  requires_action  "
            "get_stock_price({\"ticker\":\"AAPL\"}) id=call_1");
  EXPECT_EQ(lines[11],
            "12  thread.run.step.completed  step_1  tool_calls  completed  "
            "function(get_stock_price) id=call_1");
  EXPECT_EQ(lines[14],
            "15  thread.message.created  msg_1  assistant  in_progress");
  EXPECT_EQ(
      lines[16],
      R"(17  thread.message.delta  msg_1  "AAPL is trading at $237.50, ")");
  EXPECT_EQ(lines[20], "21  thread.run.completed  run_1  completed");
  EXPECT_EQ(lines[21], "22  done");
  EXPECT_EQ(events.stderr_text, "");
  // A watcher never answers the run's tool calls.
  EXPECT_THAT(runs_->submissions(), SizeIs(0));

  const CommandResult after =
      Cli({"runs", "events", "thread_1", "run_1", "--after", "20"});
  ASSERT_EQ(after.exit_code, 0) << after.stderr_text;
  EXPECT_EQ(after.stdout_text,
            "21  thread.run.completed  run_1  completed\n22  done\n");

  const CommandResult json =
      Cli({"--json", "runs", "events", "thread_1", "run_1", "--follow"});
  ASSERT_EQ(json.exit_code, 0) << json.stderr_text;
  const std::vector<std::string> json_lines = Lines(json.stdout_text);
  ASSERT_THAT(json_lines, SizeIs(22));
  EXPECT_THAT(json_lines[21], HasSubstr(R"("event":"done")"));

  const std::vector<v1::RunEventsRequest> requests = runs_->stream_requests();
  ASSERT_THAT(requests, SizeIs(3));
  EXPECT_EQ(requests[1].after_sequence(), 20);
  EXPECT_EQ(requests[1].thread_id(), "thread_1");
  EXPECT_EQ(requests[1].run_id(), "run_1");
  EXPECT_FALSE(requests[1].has_create_run());
}

TEST_F(AssistantsctlCommandsTest, RunsEventsFollowResumesABrokenStream) {
  runs_->SetConnections({{5, cli_test::Connection::Ending::kUnavailable}});
  const CommandResult events =
      Cli({"runs", "events", "thread_1", "run_1", "--follow"});
  ASSERT_EQ(events.exit_code, 0) << events.stderr_text;
  EXPECT_THAT(Lines(events.stdout_text), SizeIs(22));
  EXPECT_THAT(events.stderr_text, HasSubstr("resuming after sequence 5"));
  const std::vector<v1::RunEventsRequest> requests = runs_->stream_requests();
  ASSERT_THAT(requests, SizeIs(2));
  EXPECT_EQ(requests[1].after_sequence(), 5);
}

TEST_F(AssistantsctlCommandsTest, RunsEventsWithoutFollowDoesNotResume) {
  runs_->SetConnections({{5, cli_test::Connection::Ending::kUnavailable}});
  const CommandResult events = Cli({"runs", "events", "thread_1", "run_1"});
  EXPECT_EQ(events.exit_code, 1);
  EXPECT_THAT(Lines(events.stdout_text), SizeIs(5));
  EXPECT_EQ(events.stderr_text, "error: UNAVAILABLE: connection reset\n");
  EXPECT_THAT(runs_->stream_requests(), SizeIs(1));
}

TEST_F(AssistantsctlCommandsTest, RunsEventsWithoutFollowStopsAtTheDeadline) {
  // A live run that goes quiet after three events.
  runs_->SetConnections({{3, cli_test::Connection::Ending::kSilence}});
  const CommandResult events =
      Cli({"--timeout", "0.3", "runs", "events", "thread_1", "run_1"});
  EXPECT_EQ(events.exit_code, 0) << events.stderr_text;
  EXPECT_THAT(Lines(events.stdout_text), SizeIs(3));
  EXPECT_THAT(events.stderr_text, HasSubstr("--follow waits for its end"));
}

TEST_F(AssistantsctlCommandsTest, WorkersAndToolsList) {
  const CommandResult workers = Cli({"workers", "list"});
  ASSERT_EQ(workers.exit_code, 0) << workers.stderr_text;
  EXPECT_EQ(workers.stdout_text,
            "stock-1  serving  127.0.0.1:50061  in_flight=2  "
            "tools=get_stock_price\n");
  const CommandResult tools = Cli({"tools", "list"});
  ASSERT_EQ(tools.exit_code, 0) << tools.stderr_text;
  EXPECT_EQ(tools.stdout_text,
            "get_stock_price  workers=stock-1  timeout_ms=5000  "
            "max_concurrency=4  Latest price\n");
  const CommandResult json = Cli({"--json", "workers", "list"});
  ASSERT_EQ(json.exit_code, 0) << json.stderr_text;
  EXPECT_THAT(json.stdout_text,
              StartsWith(R"({"workers":[{"worker_id":"stock-1")"));
}

TEST_F(AssistantsctlCommandsTest, ApiKeyAndRequestIdGoWithEveryCall) {
  constexpr char kKey[] = "sk-test-0123456789";
  const CommandResult got =
      Cli({"--api-key", kKey, "runs", "get", "thread_1", "run_1"});
  ASSERT_EQ(got.exit_code, 0) << got.stderr_text;
  // `run` makes two calls (RunEvents, SubmitToolOutputs) in one invocation.
  const CommandResult ran =
      Cli({"run", "--assistant", "asst_1", "--demo-tools", "--api_key", kKey});
  ASSERT_EQ(ran.exit_code, 0) << ran.stderr_text;

  std::vector<cli_test::CallMetadata> calls = recorder_.calls();
  ASSERT_THAT(calls, SizeIs(3));
  EXPECT_EQ(calls[0].method, "/assistants.v1.RunService/GetRun");
  EXPECT_EQ(calls[1].method, "/assistants.v1.RunService/RunEvents");
  EXPECT_EQ(calls[2].method, "/assistants.v1.RunService/SubmitToolOutputs");
  for (const cli_test::CallMetadata& call : calls) {
    EXPECT_EQ(call.authorization, absl::StrCat("Bearer ", kKey)) << call.method;
    EXPECT_THAT(call.request_id, StartsWith("assistantsctl-")) << call.method;
  }
  // One id per invocation.
  EXPECT_NE(calls[0].request_id, calls[1].request_id);
  EXPECT_EQ(calls[1].request_id, calls[2].request_id);
  for (const CommandResult* result : {&got, &ran}) {
    EXPECT_THAT(result->stdout_text, Not(HasSubstr(kKey)));
    EXPECT_THAT(result->stderr_text, Not(HasSubstr(kKey)));
  }

  {
    // The environment's key, unless the flag gives one.
    ScopedEnv env("ASSISTANTS_API_KEY", "sk-from-env");
    ASSERT_EQ(Cli({"assistants", "get", "asst_1"}).exit_code, 0);
    ASSERT_EQ(Cli({"tools", "list", "--api-key", kKey}).exit_code, 0);
  }
  ASSERT_EQ(Cli({"workers", "list"}).exit_code, 0);
  calls = recorder_.calls();
  ASSERT_THAT(calls, SizeIs(6));
  EXPECT_EQ(calls[3].method, "/assistants.v1.AssistantService/GetAssistant");
  EXPECT_EQ(calls[3].authorization, "Bearer sk-from-env");
  EXPECT_EQ(calls[4].authorization, absl::StrCat("Bearer ", kKey));
  // No key: no authorization header at all.
  EXPECT_EQ(calls[5].authorization, "");
  EXPECT_THAT(calls[5].request_id, StartsWith("assistantsctl-"));
}

TEST_F(AssistantsctlCommandsTest, ApiKeyIsNeverPrinted) {
  ScopedEnv env("ASSISTANTS_API_KEY", "sk-secret-in-env");
  const CommandResult help = Cli({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.stdout_text, HasSubstr("--api-key KEY"));
  EXPECT_THAT(help.stdout_text, Not(HasSubstr("sk-secret-in-env")));

  const CommandResult bad =
      Cli({"--api-key", "sk-secret\nwith-newline", "runs", "get", "t", "r"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.stderr_text, HasSubstr("--api-key"));
  EXPECT_THAT(bad.stderr_text, Not(HasSubstr("sk-secret")));
  EXPECT_THAT(recorder_.calls(), SizeIs(0));
}

TEST_F(AssistantsctlCommandsTest, UsageErrorsOfTheNewCommandsExitTwo) {
  test_support::TempDir dir;
  const std::string not_object = dir.path() + "/outputs.json";
  std::ofstream(not_object) << "[1]";
  const std::vector<std::vector<std::string>> cases = {
      {"threads", "update", "thread_1"},  // neither --metadata nor --clear
      {"threads", "update", "thread_1", "--metadata", "a=1",
       "--clear-metadata"},
      {"threads", "update", "thread_1", "--metadata", "novalue"},
      {"messages", "get", "thread_1"},
      {"messages", "update", "thread_1", "msg_1"},
      {"messages", "delete", "thread_1", "msg_1", "extra"},
      {"runs", "create", "thread_1"},               // no --assistant
      {"runs", "create", "--assistant", "asst_1"},  // no thread
      {"runs", "create", "thread_1", "--assistant", "a", "--active-run-policy",
       "sometimes"},
      {"runs", "create", "thread_1", "--assistant", "a", "--max-prompt-tokens",
       "many"},
      {"runs", "create", "thread_1", "--assistant", "a", "--tools-json", "{"},
      {"runs", "create", "thread_1", "--assistant", "a", "--thread-metadata",
       "a=1"},
      {"threads", "create-and-run", "--message", "hi"},
      {"threads", "create-and-run", "--assistant", "a",
       "--additional-instructions", "x"},
      {"runs", "update", "thread_1", "run_1"},
      {"runs", "submit", "thread_1", "run_1"},
      {"runs", "submit", "thread_1", "run_1", "--output", "call_1"},
      {"runs", "submit", "thread_1", "run_1", "--output", "=x"},
      {"runs", "submit", "thread_1", "run_1", "--output", "c=1",
       "--outputs-file", not_object},
      {"runs", "submit", "thread_1", "run_1", "--outputs-file", not_object},
      {"runs", "submit", "thread_1", "run_1", "--outputs-file",
       "/nonexistent/outputs.json"},
      {"runs", "step", "thread_1", "run_1"},
      {"runs", "events", "thread_1"},
      {"runs", "events", "thread_1", "run_1", "--after", "-1"},
      {"runs", "events", "thread_1", "run_1", "--after", "x"},
      {"runs", "events", "thread_1", "run_1", "--follow=yes"},
      {"workers", "list", "extra"},
  };
  for (const auto& args : cases) {
    const CommandResult result = Cli(args);
    const std::string name = absl::StrJoin(args, " ");
    EXPECT_EQ(result.exit_code, 2) << name << ": " << result.stderr_text;
    EXPECT_THAT(result.stderr_text, HasSubstr("usage:")) << name;
    EXPECT_EQ(result.stdout_text, "") << name;
  }
  EXPECT_THAT(recorder_.calls(), SizeIs(0));
}

TEST_F(AssistantsctlCommandsTest, RunsCreateSetsChoiceTruncationAndFormat) {
  test_support::TempDir dir;
  const std::string schema = dir.path() + "/schema.json";
  std::ofstream(schema) << R"({"name": "price", "description": "A price",
      "schema": {"type": "object"}, "strict": true})";
  ASSERT_EQ(Cli({"runs", "create", "thread_1", "--assistant", "asst_1",
                 "--tool-choice", "none", "--truncation", "last:2",
                 "--response-format", "json_schema:" + schema,
                 "--parallel-tool-calls", "false"})
                .exit_code,
            0);
  v1::RunOptions options =
      runs_->last<v1::CreateRunRequest>("CreateRun").options();
  EXPECT_EQ(options.tool_choice().mode(), v1::ToolChoice::MODE_NONE);
  EXPECT_EQ(options.truncation_strategy().type(),
            v1::TruncationStrategy::TYPE_LAST_MESSAGES);
  EXPECT_EQ(options.truncation_strategy().last_messages(), 2);
  EXPECT_EQ(options.response_format().type(),
            v1::ResponseFormat::TYPE_JSON_SCHEMA);
  EXPECT_EQ(options.response_format().json_schema().name(), "price");
  EXPECT_EQ(options.response_format().json_schema().description(), "A price");
  EXPECT_TRUE(options.response_format().json_schema().strict());
  EXPECT_EQ(options.response_format()
                .json_schema()
                .schema()
                .fields()
                .at("type")
                .string_value(),
            "object");
  ASSERT_TRUE(options.has_parallel_tool_calls());
  EXPECT_FALSE(options.parallel_tool_calls());

  // Each keyword and a function name.
  const std::vector<std::pair<std::string, v1::ToolChoice>> choices = [] {
    std::vector<std::pair<std::string, v1::ToolChoice>> cases;
    auto add = [&cases](std::string flag, v1::ToolChoice::Mode mode,
                        std::string name = "") {
      v1::ToolChoice choice;
      choice.set_mode(mode);
      choice.set_function_name(std::move(name));
      cases.emplace_back(std::move(flag), std::move(choice));
    };
    add("auto", v1::ToolChoice::MODE_AUTO);
    add("required", v1::ToolChoice::MODE_REQUIRED);
    add("code_interpreter", v1::ToolChoice::MODE_CODE_INTERPRETER);
    add("file_search", v1::ToolChoice::MODE_FILE_SEARCH);
    add("get_stock_price", v1::ToolChoice::MODE_FUNCTION, "get_stock_price");
    // A function whose name is a keyword.
    add("function:auto", v1::ToolChoice::MODE_FUNCTION, "auto");
    return cases;
  }();
  for (const auto& [flag, want] : choices) {
    ASSERT_EQ(Cli({"runs", "create", "thread_1", "--assistant", "asst_1",
                   "--tool-choice", flag})
                  .exit_code,
              0)
        << flag;
    const v1::ToolChoice got =
        runs_->last<v1::CreateRunRequest>("CreateRun").options().tool_choice();
    EXPECT_EQ(got.mode(), want.mode()) << flag;
    EXPECT_EQ(got.function_name(), want.function_name()) << flag;
  }

  ASSERT_EQ(Cli({"runs", "create", "thread_1", "--assistant", "asst_1",
                 "--truncation", "auto", "--response-format", "json_object",
                 "--parallel-tool-calls", "true"})
                .exit_code,
            0);
  options = runs_->last<v1::CreateRunRequest>("CreateRun").options();
  EXPECT_EQ(options.truncation_strategy().type(),
            v1::TruncationStrategy::TYPE_AUTO);
  EXPECT_EQ(options.truncation_strategy().last_messages(), 0);
  EXPECT_EQ(options.response_format().type(),
            v1::ResponseFormat::TYPE_JSON_OBJECT);
  EXPECT_FALSE(options.response_format().has_json_schema());
  EXPECT_TRUE(options.parallel_tool_calls());

  // Unset, they stay unset (the assistant's values apply).
  ASSERT_EQ(
      Cli({"runs", "create", "thread_1", "--assistant", "asst_1"}).exit_code,
      0);
  options = runs_->last<v1::CreateRunRequest>("CreateRun").options();
  EXPECT_FALSE(options.has_tool_choice());
  EXPECT_FALSE(options.has_truncation_strategy());
  EXPECT_FALSE(options.has_response_format());
  EXPECT_FALSE(options.has_parallel_tool_calls());
}

TEST_F(AssistantsctlCommandsTest, CreateAndRunSetsTheThreadsToolResources) {
  ASSERT_EQ(Cli({"threads", "create-and-run", "--assistant", "asst_1",
                 "--message", "hi", "--tool-resources-json",
                 R"({"code_interpreter": {"file_ids": ["file_1", "file_2"]},
                     "file_search": {"vector_store_ids": ["vs_1"]}})",
                 "--tool-choice", "required", "--truncation", "last:5",
                 "--response-format", "text", "--max-prompt-tokens", "500",
                 "--max-completion-tokens", "100"})
                .exit_code,
            0);
  const auto request =
      runs_->last<v1::CreateThreadAndRunRequest>("CreateThreadAndRun");
  EXPECT_THAT(request.thread().tool_resources().code_interpreter().file_ids(),
              ElementsAre("file_1", "file_2"));
  EXPECT_THAT(
      request.thread().tool_resources().file_search().vector_store_ids(),
      ElementsAre("vs_1"));
  EXPECT_EQ(request.options().tool_choice().mode(),
            v1::ToolChoice::MODE_REQUIRED);
  EXPECT_EQ(request.options().truncation_strategy().last_messages(), 5);
  EXPECT_EQ(request.options().response_format().type(),
            v1::ResponseFormat::TYPE_TEXT);
  EXPECT_EQ(request.options().max_prompt_tokens(), 500);
  EXPECT_EQ(request.options().max_completion_tokens(), 100);
}

TEST_F(AssistantsctlCommandsTest, RunTakesEveryRunFlag) {
  ASSERT_EQ(Cli({"run",         "--assistant",
                 "asst_1",      "--thread",
                 "thread_1",    "--message",
                 "m1",          "--additional-instructions",
                 "Use USD.",    "--tool-choice",
                 "none",        "--truncation",
                 "last:3",      "--response-format",
                 "json_object", "--parallel-tool-calls",
                 "false",       "--temperature",
                 "0.2",         "--top-p",
                 "0.3",         "--max-prompt-tokens",
                 "300",         "--max-completion-tokens",
                 "40",          "--metadata",
                 "k=v",         "--tools-json",
                 "[]",          "--requires-action-timeout-s",
                 "60",          "--active-run-policy",
                 "interrupt",   "--demo-tools"})
                .exit_code,
            0);
  std::vector<v1::RunEventsRequest> starts = runs_->stream_requests();
  ASSERT_THAT(starts, SizeIs(1));
  ASSERT_TRUE(starts[0].has_create_run());
  const v1::RunOptions& options = starts[0].create_run().options();
  EXPECT_EQ(options.assistant_id(), "asst_1");
  ASSERT_THAT(options.additional_messages(), SizeIs(1));
  EXPECT_EQ(options.additional_instructions(), "Use USD.");
  EXPECT_EQ(options.tool_choice().mode(), v1::ToolChoice::MODE_NONE);
  EXPECT_EQ(options.truncation_strategy().last_messages(), 3);
  EXPECT_EQ(options.response_format().type(),
            v1::ResponseFormat::TYPE_JSON_OBJECT);
  EXPECT_FALSE(options.parallel_tool_calls());
  EXPECT_EQ(options.temperature(), 0.2);
  EXPECT_EQ(options.top_p(), 0.3);
  EXPECT_EQ(options.max_prompt_tokens(), 300);
  EXPECT_EQ(options.max_completion_tokens(), 40);
  EXPECT_EQ(options.metadata().at("k"), "v");
  EXPECT_TRUE(options.override_tools());
  EXPECT_EQ(options.requires_action_timeout_seconds(), 60);
  EXPECT_EQ(options.active_run_policy(), v1::ACTIVE_RUN_POLICY_INTERRUPT);

  // On a new thread: its metadata and tool resources; the JSON's request id
  // keys the start and the tool answers.
  ASSERT_EQ(
      Cli({"run", "--assistant", "asst_1", "--message", "hi",
           "--thread-metadata", "t=1", "--tool-resources-json",
           R"({"code_interpreter": {"file_ids": ["file_1"]}})",
           "--request-json", R"({"request_id": "json-req"})", "--demo-tools"})
          .exit_code,
      0);
  starts = runs_->stream_requests();
  ASSERT_THAT(starts, SizeIs(2));
  ASSERT_TRUE(starts[1].has_create_thread_and_run());
  const v1::CreateThreadAndRunRequest& start =
      starts[1].create_thread_and_run();
  EXPECT_EQ(start.request_id(), "json-req");
  ASSERT_THAT(start.thread().messages(), SizeIs(1));
  EXPECT_EQ(start.thread().metadata().at("t"), "1");
  EXPECT_THAT(start.thread().tool_resources().code_interpreter().file_ids(),
              ElementsAre("file_1"));
  ASSERT_THAT(runs_->submissions(), SizeIs(2));
  EXPECT_EQ(runs_->submissions()[1].request_id(), "json-req/outputs/call_1");
}

TEST_F(AssistantsctlCommandsTest, AssistantsTakeToolResourcesAndFormat) {
  ASSERT_EQ(
      Cli({"assistants", "create", "--model", "gpt-4o", "--tool-resources-json",
           R"({"file_search": {"vector_store_ids": ["vs_1"]}})",
           "--response-format", "json_object"})
          .exit_code,
      0);
  const auto created =
      resources_.last<v1::CreateAssistantRequest>("CreateAssistant");
  EXPECT_EQ(created.model(), "gpt-4o");
  EXPECT_THAT(created.tool_resources().file_search().vector_store_ids(),
              ElementsAre("vs_1"));
  EXPECT_EQ(created.response_format().type(),
            v1::ResponseFormat::TYPE_JSON_OBJECT);

  // Without an update mask, the fields present are written: an update
  // without the new flags leaves both absent.
  ASSERT_EQ(Cli({"assistants", "update", "asst_1", "--name", "N"}).exit_code,
            0);
  auto updated = resources_.last<v1::UpdateAssistantRequest>("UpdateAssistant");
  EXPECT_EQ(updated.name(), "N");
  EXPECT_FALSE(updated.has_tool_resources());
  EXPECT_FALSE(updated.has_response_format());
  EXPECT_FALSE(updated.has_update_mask());

  // A mask from --request-json writes exactly its paths: the flags' fields
  // join it.
  ASSERT_EQ(Cli({"assistants", "update", "asst_1", "--request-json",
                 R"({"update_mask": "description,responseFormat",
                     "description": "d"})",
                 "--name", "N2", "--response-format", "text"})
                .exit_code,
            0);
  updated = resources_.last<v1::UpdateAssistantRequest>("UpdateAssistant");
  EXPECT_EQ(updated.assistant_id(), "asst_1");
  EXPECT_EQ(updated.name(), "N2");
  EXPECT_EQ(updated.description(), "d");
  EXPECT_EQ(updated.response_format().type(), v1::ResponseFormat::TYPE_TEXT);
  EXPECT_THAT(updated.update_mask().paths(),
              ElementsAre("description", "response_format", "name"));
}

TEST_F(AssistantsctlCommandsTest, ThreadsTakeToolResources) {
  ASSERT_EQ(
      Cli({"threads", "create", "--message", "hi", "--tool-resources-json",
           R"({"code_interpreter": {"file_ids": ["file_1"]}})"})
          .exit_code,
      0);
  const auto created = resources_.last<v1::CreateThreadRequest>("CreateThread");
  ASSERT_THAT(created.messages(), SizeIs(1));
  EXPECT_THAT(created.tool_resources().code_interpreter().file_ids(),
              ElementsAre("file_1"));

  // Only the tool resources: the metadata is left as it is.
  ASSERT_EQ(Cli({"threads", "update", "thread_1", "--tool-resources-json",
                 R"({"file_search": {"vector_store_ids": ["vs_2"]}})"})
                .exit_code,
            0);
  auto updated = resources_.last<v1::UpdateThreadRequest>("UpdateThread");
  EXPECT_THAT(updated.tool_resources().file_search().vector_store_ids(),
              ElementsAre("vs_2"));
  EXPECT_THAT(updated.metadata(), SizeIs(0));
  EXPECT_THAT(updated.update_mask().paths(), ElementsAre("tool_resources"));

  // The mask the CLI writes also names what --request-json set.
  ASSERT_EQ(Cli({"threads", "update", "thread_1", "--request-json",
                 R"({"metadata": {"a": "1"}})", "--tool-resources-json", "{}"})
                .exit_code,
            0);
  updated = resources_.last<v1::UpdateThreadRequest>("UpdateThread");
  EXPECT_EQ(updated.metadata().at("a"), "1");
  EXPECT_TRUE(updated.has_tool_resources());
  EXPECT_THAT(updated.update_mask().paths(),
              ElementsAre("tool_resources", "metadata"));

  // Metadata and tool resources together.
  ASSERT_EQ(Cli({"threads", "update", "thread_1", "--clear-metadata",
                 "--tool-resources-json", "{}"})
                .exit_code,
            0);
  updated = resources_.last<v1::UpdateThreadRequest>("UpdateThread");
  EXPECT_THAT(updated.update_mask().paths(),
              ElementsAre("metadata", "tool_resources"));

  // The JSON alone is sent as it is; a mask it gives gets the flags' fields.
  ASSERT_EQ(Cli({"threads", "update", "thread_1", "--request-json",
                 R"({"metadata": {"a": "1"}})"})
                .exit_code,
            0);
  updated = resources_.last<v1::UpdateThreadRequest>("UpdateThread");
  EXPECT_FALSE(updated.has_update_mask());
  ASSERT_EQ(Cli({"threads", "update", "thread_1", "--request-json",
                 R"({"update_mask": "toolResources"})", "--metadata", "b=2"})
                .exit_code,
            0);
  updated = resources_.last<v1::UpdateThreadRequest>("UpdateThread");
  EXPECT_FALSE(updated.has_tool_resources());
  EXPECT_THAT(updated.update_mask().paths(),
              ElementsAre("tool_resources", "metadata"));
}

// --request-json is the request; the flags and ids go on top and win, a
// flag replacing its field whole.
TEST_F(AssistantsctlCommandsTest, RequestJsonUnderTheFlags) {
  constexpr char kRequest[] = R"({
      "thread_id": "thread_from_json",
      "request_id": "req-json",
      "options": {
        "assistant_id": "asst_json",
        "model": "model-json",
        "instructions": "from json",
        "metadata": {"a": "1", "b": "1"},
        "truncation_strategy": {"type": "TYPE_LAST_MESSAGES",
                                "last_messages": 4},
        "toolChoice": {"mode": "MODE_FUNCTION", "functionName": "f"},
        "additional_messages": [{"role": "MESSAGE_ROLE_ASSISTANT",
                                 "text": "earlier"}]
      }})";
  ASSERT_EQ(Cli({"runs", "create", "thread_1", "--request-json", kRequest,
                 "--model", "model-flag", "--metadata", "b=2"})
                .exit_code,
            0);
  auto request = runs_->last<v1::CreateRunRequest>("CreateRun");
  // The positional id wins; JSON fields no flag touched stay.
  EXPECT_EQ(request.thread_id(), "thread_1");
  EXPECT_EQ(request.request_id(), "req-json");
  EXPECT_EQ(request.options().assistant_id(), "asst_json");
  EXPECT_EQ(request.options().instructions(), "from json");
  EXPECT_EQ(request.options().truncation_strategy().last_messages(), 4);
  EXPECT_EQ(request.options().tool_choice().function_name(), "f");
  ASSERT_THAT(request.options().additional_messages(), SizeIs(1));
  EXPECT_EQ(request.options().additional_messages(0).role(),
            v1::MESSAGE_ROLE_ASSISTANT);
  // Flags win; --metadata replaces the map whole.
  EXPECT_EQ(request.options().model(), "model-flag");
  ASSERT_THAT(request.options().metadata(), SizeIs(1));
  EXPECT_EQ(request.options().metadata().at("b"), "2");

  // The same from a file, with more flags over it.
  test_support::TempDir dir;
  const std::string path = dir.path() + "/request.json";
  std::ofstream(path) << kRequest;
  ASSERT_EQ(Cli({"runs", "create", "thread_1", "--request-file", path,
                 "--assistant", "asst_flag", "--message", "m1", "--tool-choice",
                 "auto", "--truncation", "auto", "--request-id", "req-flag"})
                .exit_code,
            0);
  request = runs_->last<v1::CreateRunRequest>("CreateRun");
  EXPECT_EQ(request.request_id(), "req-flag");
  EXPECT_EQ(request.options().assistant_id(), "asst_flag");
  EXPECT_EQ(request.options().model(), "model-json");
  EXPECT_EQ(request.options().tool_choice().mode(), v1::ToolChoice::MODE_AUTO);
  EXPECT_EQ(request.options().tool_choice().function_name(), "");
  EXPECT_EQ(request.options().truncation_strategy().last_messages(), 0);
  ASSERT_THAT(request.options().additional_messages(), SizeIs(1));
  EXPECT_EQ(request.options().additional_messages(0).text(), "m1");
  EXPECT_EQ(request.options().additional_messages(0).role(),
            v1::MESSAGE_ROLE_USER);

  // A field no flag covers: a message's content parts and attachments.
  ASSERT_EQ(Cli({"messages", "create", "thread_1", "--request-json",
                 R"({"message": {"content": [{"image_url":
                      {"url": "https://example.com/a.png"}}],
                     "attachments": [{"file_id": "file_1",
                      "tools": [{"code_interpreter": {}}]}]}})"})
                .exit_code,
            0);
  const auto message = runs_->last<v1::CreateMessageRequest>("CreateMessage");
  EXPECT_EQ(message.thread_id(), "thread_1");
  EXPECT_EQ(message.message().role(), v1::MESSAGE_ROLE_USER);
  ASSERT_THAT(message.message().content(), SizeIs(1));
  EXPECT_EQ(message.message().content(0).image_url().url(),
            "https://example.com/a.png");
  ASSERT_THAT(message.message().attachments(), SizeIs(1));
  EXPECT_EQ(message.message().attachments(0).file_id(), "file_1");

  // The outputs of runs submit, and a request with nothing to set.
  ASSERT_EQ(Cli({"runs", "submit", "thread_1", "run_1", "--request-json",
                 R"({"tool_outputs": [{"tool_call_id": "call_1",
                     "output": "42"}]})"})
                .exit_code,
            0);
  ASSERT_THAT(runs_->submissions(), SizeIs(1));
  EXPECT_EQ(runs_->submissions()[0].tool_outputs(0).output(), "42");
  EXPECT_EQ(Cli({"workers", "list", "--request-json", "{}"}).exit_code, 0);
  EXPECT_EQ(Cli({"runs", "update", "thread_1", "run_1", "--request-json",
                 R"({"metadata": {"k": "json"}})"})
                .exit_code,
            0);
  EXPECT_EQ(runs_->last<v1::UpdateRunRequest>("UpdateRun").metadata().at("k"),
            "json");
}

// Every new flag's bad value, and a bad --request-json / --request-file, is
// a usage error naming the flag and the problem; nothing is sent.
TEST_F(AssistantsctlCommandsTest, NewFlagsUsageErrors) {
  test_support::TempDir dir;
  const std::string bad_schema = dir.path() + "/bad-schema.json";
  std::ofstream(bad_schema) << R"({"name": "n", "schema": {}, "strictt": 1})";
  const std::string bad_request = dir.path() + "/bad-request.json";
  std::ofstream(bad_request) << R"({"options": {"modle": "x"}})";
  const std::vector<std::string> run = {"runs", "create", "thread_1",
                                        "--assistant", "asst_1"};
  auto with = [&run](std::vector<std::string> extra) {
    std::vector<std::string> args = run;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {with({"--request-json", R"({"options": {"modle": "x"}})"}),
       "--request-json: not a valid assistants.v1.CreateRunRequest: "},
      {with({"--request-json", "{"}), "--request-json: not a valid"},
      {with({"--request-json", "[]"}), "--request-json: not a valid"},
      {with({"--request-json", R"({"options": {"temperature": "hot"}})"}),
       "--request-json"},
      {with({"--request-file", bad_request}),
       absl::StrCat("--request-file ", bad_request, ": not a valid")},
      {with({"--request-file", "/nonexistent/request.json"}),
       "--request-file: cannot read /nonexistent/request.json"},
      {with({"--request-json", "{}", "--request-file", bad_request}),
       "give --request-json or --request-file, not both"},
      {with({"--request-json", "{}", "--request-json", "{}"}),
       "--request-json given more than once"},
      {with({"--tool-choice", "bad name!"}), "--tool-choice: expected"},
      {with({"--tool-choice", "function:"}), "not a function name"},
      {with({"--tool-choice", ""}), "--tool-choice: expected"},
      {with({"--truncation", "last:0"}), "--truncation: last:N needs"},
      {with({"--truncation", "last:x"}), "--truncation: last:N needs"},
      {with({"--truncation", "first:2"}),
       "--truncation: expected auto or last:N"},
      {with({"--response-format", "xml"}),
       "--response-format: expected text, json_object or "
       "json_schema:FILE"},
      {with({"--response-format", "json_schema:"}),
       "json_schema:FILE needs a file"},
      {with({"--response-format", "json_schema:/nonexistent/s.json"}),
       "--response-format: cannot read /nonexistent/s.json"},
      {with({"--response-format", "json_schema:" + bad_schema}), "strictt"},
      {with({"--parallel-tool-calls", "yes"}),
       "--parallel-tool-calls: expected true or false"},
      {{"threads", "create", "--tool-resources-json",
        R"({"code_interpreter": {"files": []}})"},
       "--tool-resources-json: not a valid assistants.v1.ToolResources"},
      {{"assistants", "create", "--model", "m", "--tool-resources-json", "x"},
       "--tool-resources-json"},
      {{"assistants", "create", "--request-json", R"({"name": "n"})"},
       "--model is required"},
      {{"messages", "create", "thread_1"}, "--text is required"},
      {{"runs", "create", "thread_1", "--request-json", "{}"},
       "--assistant is required"},
      {{"threads", "update", "thread_1"}, "--tool-resources-json"},
      {{"run", "--attach", "run_1", "--thread", "t", "--request-json", "{}"},
       "--request-json starts a run"},
      {{"run", "--attach", "run_1", "--thread", "t", "--tool-choice", "none"},
       "--tool-choice starts a run"},
      {{"run", "--assistant", "a", "--thread", "t", "--tool-resources-json",
        "{}"},
       "--tool-resources-json is for a new thread"},
      {{"run", "--assistant", "a", "--additional-instructions", "x"},
       "--additional-instructions needs --thread"},
      {{"run", "--assistant", "a", "--request-json", R"({"thread_id": "t"})"},
       "CreateThreadAndRunRequest"},
      {{"runs", "events", "thread_1", "run_1", "--request-json",
        R"({"create_run": {}})"},
       "runs events only watches a run"},
      {{"tools", "list", "--request-json", R"({"x": 1})"},
       "assistants.v1.ListToolsRequest"},
  };
  for (const auto& [args, expected] : cases) {
    const CommandResult result = Cli(args);
    const std::string name = absl::StrJoin(args, " ");
    EXPECT_EQ(result.exit_code, 2) << name << ": " << result.stderr_text;
    EXPECT_THAT(result.stderr_text, HasSubstr(expected)) << name;
    EXPECT_THAT(result.stderr_text, HasSubstr("usage:")) << name;
    EXPECT_EQ(result.stdout_text, "") << name;
  }
  // The unknown field is named.
  const CommandResult typo =
      Cli(with({"--request-json", R"({"options": {"modle": "x"}})"}));
  EXPECT_THAT(typo.stderr_text, HasSubstr("modle"));
  EXPECT_THAT(recorder_.calls(), SizeIs(0));
}

TEST_F(AssistantsctlCommandsTest, HelpDescribesTheRequestFlags) {
  const CommandResult help = Cli({"--help"});
  ASSERT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--request-json JSON", "--request-file FILE", "--tool-choice",
        "--truncation auto|last:N", "--response-format FORMAT",
        "--parallel-tool-calls true|false", "--tool-resources-json JSON",
        "--max-prompt-tokens N"}) {
    EXPECT_THAT(help.stdout_text, HasSubstr(flag)) << flag;
  }
}

// TLS files are read before any call: a missing, empty or unreadable one is
// a usage error that names the file and where it was given.
TEST(AssistantsctlTlsTest, UnreadableFilesExitTwoNamingTheFile) {
  if (access(CliBinary().c_str(), X_OK) != 0) {
    GTEST_SKIP() << "build assistantsctl first: " << CliBinary();
  }
  test_support::TempDir dir;
  const std::string empty = dir.path() + "/empty.pem";
  std::ofstream(empty) << "";
  const std::string pem = dir.path() + "/client.pem";
  std::ofstream(pem) << "-----BEGIN CERTIFICATE-----\n";
  struct Case {
    std::vector<std::string> args;
    std::string env_ca;  // ASSISTANTS_TLS_CA, when non-empty
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--tls-ca", "/nonexistent/ca.pem"},
       "",
       "error: --tls-ca: cannot read /nonexistent/ca.pem: No such file or "
       "directory\n"},
      {{},
       "/nonexistent/env-ca.pem",
       "error: ASSISTANTS_TLS_CA: cannot read /nonexistent/env-ca.pem"},
      // The flag wins over the environment.
      {{"--tls-ca", empty},
       "/nonexistent/env-ca.pem",
       absl::StrCat("error: --tls-ca: ", empty, " is empty\n")},
      {{"--tls-ca", dir.path()},
       "",
       absl::StrCat("error: --tls-ca: cannot read ", dir.path())},
      {{"--tls-cert", pem}, "", "--tls-cert and --tls-key go together"},
      {{"--tls-key", pem}, "", "--tls-cert and --tls-key go together"},
      {{"--tls-cert", pem, "--tls-key", "/nonexistent/client.key"},
       "",
       "error: --tls-key: cannot read /nonexistent/client.key"},
      {{"--tls-cert", "/nonexistent/client.pem", "--tls-key", pem},
       "",
       "error: --tls-cert: cannot read /nonexistent/client.pem"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {CliBinary(), "--target", "127.0.0.1:1"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    argv.insert(argv.end(), {"assistants", "list"});
    std::unique_ptr<ScopedEnv> env;
    if (!c.env_ca.empty()) {
      env = std::make_unique<ScopedEnv>("ASSISTANTS_TLS_CA", c.env_ca);
    }
    const CommandResult result = RunCommand(argv);
    const std::string name = absl::StrJoin(c.args, " ") + " " + c.env_ca;
    EXPECT_EQ(result.exit_code, 2) << name << ": " << result.stderr_text;
    EXPECT_THAT(result.stderr_text, HasSubstr(c.expected)) << name;
    EXPECT_THAT(result.stderr_text, HasSubstr("usage:")) << name;
    EXPECT_EQ(result.stdout_text, "") << name;
  }
}

// With TLS on, a plaintext server is a failed call (exit 1), not a hang or
// a crash: the flags really switch the channel to TLS.
TEST_F(AssistantsctlCommandsTest, TlsAgainstAPlaintextServerFails) {
  const CommandResult result =
      Cli({"--tls", "--timeout", "5", "assistants", "get", "asst_1"});
  EXPECT_EQ(result.exit_code, 1) << result.stderr_text;
  EXPECT_THAT(result.stderr_text, StartsWith("error: UNAVAILABLE"));
  EXPECT_THAT(recorder_.calls(), SizeIs(0));
}

}  // namespace
}  // namespace assistants::cli
