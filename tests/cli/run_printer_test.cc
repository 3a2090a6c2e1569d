// RunPrinter against scripted event sequences: the seed tutorial's run must
// print exactly what the seed's AgentStreamHandler prints (plus the
// gateway's extra lines), whatever the gateway adds around it.
#include "cli/run_printer.h"

#include <sstream>
#include <string>
#include <vector>

#include "assistants/v1/event.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/cli/seed_events.h"

namespace assistants::cli {
namespace {

using cli_test::AssistantMessage;
using cli_test::CodeDelta;
using cli_test::DoneEvent;
using cli_test::FunctionDelta;
using cli_test::MessageEvent;
using cli_test::RunEvent;
using cli_test::SeedRun;
using cli_test::StepEvent;
using cli_test::TextDelta;
using ::testing::HasSubstr;
using ::testing::Not;

struct Printed {
  std::string out;
  std::string err;
};

Printed PrintAll(const std::vector<v1::RunEvent>& events) {
  std::ostringstream out;
  std::ostringstream err;
  RunPrinter printer(out, err);
  for (const v1::RunEvent& event : events) printer.Print(event);
  return {out.str(), err.str()};
}

v1::RunStep ToolStep(const std::string& id, v1::RunStepStatus status) {
  v1::RunStep step;
  step.set_id(id);
  step.set_type(v1::RUN_STEP_TYPE_TOOL_CALLS);
  step.set_status(status);
  step.mutable_step_details()->mutable_tool_calls();
  return step;
}

v1::Run FailedRun(const std::string& code, const std::string& message) {
  v1::Run run = SeedRun(v1::RUN_STATUS_FAILED);
  run.mutable_last_error()->set_code(code);
  run.mutable_last_error()->set_message(message);
  return run;
}

TEST(RunPrinterTest, SeedFunctionCallRunPrintsLikeTheSeedHandler) {
  const Printed printed = PrintAll(cli_test::SeedFunctionCallEvents());
  EXPECT_EQ(printed.out, cli_test::kSeedPrinted);
  EXPECT_EQ(printed.err, "");
}

TEST(RunPrinterTest, TextDeltasOpenOneAssistantPromptPerContentPart) {
  const Printed printed = PrintAll({
      MessageEvent(1, "thread.message.created", AssistantMessage("msg_1", "")),
      TextDelta(2, "msg_1", 0, "Hello"),
      TextDelta(3, "msg_1", 0, ", world."),
      TextDelta(4, "msg_1", 1, "Second part."),
      TextDelta(5, "msg_2", 0, "Another message."),
  });
  EXPECT_EQ(printed.out,
            "\nassistant > Hello, world.\nassistant > Second part."
            "\nassistant > Another message.");
}

TEST(RunPrinterTest, EmptyFirstDeltaStillOpensThePrompt) {
  // OpenAI's SDK fires on_text_created for the delta that opens the part,
  // before (and regardless of) its text.
  const Printed printed = PrintAll({
      TextDelta(1, "msg_1", 0, ""),
      TextDelta(2, "msg_1", 0, "Hi"),
  });
  EXPECT_EQ(printed.out, "\nassistant > Hi");
}

TEST(RunPrinterTest, CodeInterpreterInputIsStreamed) {
  v1::RunStep done = ToolStep("step_1", v1::RUN_STEP_STATUS_COMPLETED);
  done.mutable_step_details()
      ->mutable_tool_calls()
      ->add_tool_calls()
      ->mutable_code_interpreter()
      ->set_input("price = 237.50\nprint(price * 1000)");
  const Printed printed = PrintAll({
      StepEvent(1, "thread.run.step.created",
                ToolStep("step_1", v1::RUN_STEP_STATUS_IN_PROGRESS)),
      CodeDelta(2, "step_1", 0, ""),
      CodeDelta(3, "step_1", 0, "price = 237.50\n"),
      CodeDelta(4, "step_1", 0, "print(price * 1000)"),
      StepEvent(5, "thread.run.step.completed", done),
      TextDelta(6, "msg_1", 0, "1000 shares are worth $237,500."),
      RunEvent(7, "thread.run.completed", SeedRun(v1::RUN_STATUS_COMPLETED)),
  });
  EXPECT_EQ(printed.out,
            "\n[calling code_interpreter]\n"
            "price = 237.50\nprint(price * 1000)"
            "\nassistant > 1000 shares are worth $237,500."
            "\n[run completed]\n");
}

TEST(RunPrinterTest, CodeThatWasNeverStreamedIsShownWhenTheStepEnds) {
  v1::RunStep done = ToolStep("step_1", v1::RUN_STEP_STATUS_COMPLETED);
  done.mutable_step_details()
      ->mutable_tool_calls()
      ->add_tool_calls()
      ->mutable_code_interpreter()
      ->set_input("print(2 + 2)");
  const Printed printed = PrintAll({
      StepEvent(1, "thread.run.step.created",
                ToolStep("step_1", v1::RUN_STEP_STATUS_IN_PROGRESS)),
      StepEvent(2, "thread.run.step.completed", done),
  });
  EXPECT_EQ(printed.out, "\n[calling code_interpreter]\nprint(2 + 2)");
}

TEST(RunPrinterTest, StepCreatedWithItsCallsAnnouncesThemOnce) {
  v1::RunStep step = ToolStep("step_1", v1::RUN_STEP_STATUS_IN_PROGRESS);
  for (const char* id : {"call_a", "call_b"}) {
    v1::ToolCall* call =
        step.mutable_step_details()->mutable_tool_calls()->add_tool_calls();
    call->set_id(id);
    call->mutable_function()->set_name("get_stock_price");
  }
  v1::Run run = SeedRun(v1::RUN_STATUS_REQUIRES_ACTION);
  v1::RequiredToolCall* second = run.mutable_required_action()
                                     ->mutable_submit_tool_outputs()
                                     ->add_tool_calls();
  second->set_id("call_2");
  second->mutable_function()->set_name("get_stock_price");
  second->mutable_function()->set_arguments(R"({"ticker":"MSFT"})");
  const Printed printed = PrintAll({
      StepEvent(1, "thread.run.step.created", step),
      FunctionDelta(2, "step_1", 0, "call_a", "", R"({"ticker":"AAPL"})"),
      FunctionDelta(3, "step_1", 1, "call_b", "", R"({"ticker":"MSFT"})"),
      RunEvent(4, "thread.run.requires_action", run),
  });
  EXPECT_EQ(printed.out,
            "\n[calling function]\n"
            "\n[calling function]\n"
            "  -> get_stock_price({\"ticker\":\"AAPL\"}) id=call_1\n"
            "  -> get_stock_price({\"ticker\":\"MSFT\"}) id=call_2\n");
}

TEST(RunPrinterTest, ToolCallsOfEachStepAreAnnounced) {
  // The SDK keeps one tool-call index across steps and misses the first call
  // of a second step; calls are keyed by step here.
  const Printed printed = PrintAll({
      FunctionDelta(1, "step_1", 0, "call_1", "get_stock_price", ""),
      FunctionDelta(2, "step_2", 0, "call_2", "calculator", ""),
  });
  EXPECT_EQ(printed.out, "\n[calling function]\n\n[calling function]\n");
}

TEST(RunPrinterTest, WorkerOutputsArePrintedWithTheToolName) {
  v1::RunEvent output = FunctionDelta(2, "step_1", 0, "call_1", "", "");
  output.mutable_step_delta()
      ->mutable_delta()
      ->mutable_tool_calls(0)
      ->mutable_function()
      ->set_output(R"({"price":237.5})");
  const Printed printed = PrintAll({
      FunctionDelta(1, "step_1", 0, "call_1", "get_stock_price", ""),
      output,
  });
  EXPECT_EQ(printed.out,
            "\n[calling function]\n"
            "[tool worker] get_stock_price -> {\"price\":237.5}\n");
}

TEST(RunPrinterTest, TerminalStatuses) {
  v1::Run incomplete = SeedRun(v1::RUN_STATUS_INCOMPLETE);
  incomplete.mutable_incomplete_details()->set_reason("max_completion_tokens");
  v1::Run expired = SeedRun(v1::RUN_STATUS_EXPIRED);
  struct Case {
    v1::RunEvent event;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {RunEvent(1, "thread.run.completed", SeedRun(v1::RUN_STATUS_COMPLETED)),
       "[run completed]\n"},
      {RunEvent(1, "thread.run.failed",
                FailedRun("server_error", "upstream timed out")),
       "[run failed: server_error: upstream timed out]\n"},
      {RunEvent(1, "thread.run.failed", FailedRun("rate_limit_exceeded", "")),
       "[run failed: rate_limit_exceeded]\n"},
      {RunEvent(1, "thread.run.incomplete", incomplete),
       "[run incomplete: max_completion_tokens]\n"},
      {RunEvent(1, "thread.run.cancelled", SeedRun(v1::RUN_STATUS_CANCELLED)),
       "[run cancelled]\n"},
      {RunEvent(1, "thread.run.expired", expired), "[run expired]\n"},
  };
  for (const Case& c : cases) {
    std::ostringstream out;
    std::ostringstream err;
    RunPrinter printer(out, err);
    printer.Print(c.event);
    EXPECT_EQ(out.str(), c.expected) << c.event.event();
    EXPECT_TRUE(printer.printed_terminal());
  }
}

TEST(RunPrinterTest, TerminalLineStartsOnItsOwnLine) {
  const Printed printed = PrintAll({
      TextDelta(1, "msg_1", 0, "Done."),
      RunEvent(2, "thread.run.failed", FailedRun("server_error", "boom")),
  });
  EXPECT_EQ(printed.out,
            "\nassistant > Done.\n[run failed: server_error: boom]\n");
}

TEST(RunPrinterTest, ErrorEventsGoToStderr) {
  v1::RunEvent error;
  error.set_sequence(2);
  error.set_event("error");
  error.mutable_error()->set_code("server_error");
  error.mutable_error()->set_message("the upstream closed the stream");
  const Printed printed =
      PrintAll({TextDelta(1, "msg_1", 0, "Partial"), error});
  EXPECT_EQ(printed.out, "\nassistant > Partial\n");
  EXPECT_EQ(printed.err,
            "[error] server_error: the upstream closed the stream\n");
}

TEST(RunPrinterTest, MessageThatArrivesWholeIsPrintedOnce) {
  const Printed whole = PrintAll({
      MessageEvent(1, "thread.message.created", AssistantMessage("msg_1", "")),
      MessageEvent(2, "thread.message.completed",
                   AssistantMessage("msg_1", "All at once.")),
  });
  EXPECT_EQ(whole.out, "\nassistant > All at once.");

  const Printed streamed = PrintAll({
      TextDelta(1, "msg_1", 0, "All at once."),
      MessageEvent(2, "thread.message.completed",
                   AssistantMessage("msg_1", "All at once.")),
  });
  EXPECT_EQ(streamed.out, "\nassistant > All at once.");
}

TEST(RunPrinterTest, UserMessagesAreNotPrinted) {
  v1::Message user = AssistantMessage("msg_0", "What's the price of AAPL?");
  user.set_role(v1::MESSAGE_ROLE_USER);
  const Printed printed = PrintAll({
      MessageEvent(1, "thread.message.created", user),
      MessageEvent(2, "thread.message.completed", user),
  });
  EXPECT_EQ(printed.out, "");
}

TEST(RunPrinterTest, RefusalsArePrintedAsAssistantText) {
  v1::RunEvent event = TextDelta(1, "msg_1", 0, "");
  event.mutable_message_delta()
      ->mutable_delta()
      ->mutable_content(0)
      ->set_refusal("I can't help with that.");
  const Printed printed = PrintAll({event});
  EXPECT_EQ(printed.out, "\nassistant > [refusal] I can't help with that.");
}

TEST(RunPrinterTest, LifecycleHeartbeatDrainingAndDonePrintNothing) {
  v1::RunEvent heartbeat;
  heartbeat.set_sequence(3);
  heartbeat.set_event("heartbeat");
  heartbeat.mutable_heartbeat();
  v1::RunEvent draining;
  draining.set_sequence(3);
  draining.set_event("draining");
  draining.mutable_draining();
  v1::RunEvent thread_created;
  thread_created.set_sequence(1);
  thread_created.set_event("thread.created");
  thread_created.mutable_thread()->set_id("thread_1");
  const Printed printed = PrintAll({
      thread_created,
      RunEvent(2, "thread.run.created", SeedRun(v1::RUN_STATUS_QUEUED)),
      heartbeat,
      draining,
      RunEvent(4, "thread.run.cancelling", SeedRun(v1::RUN_STATUS_CANCELLING)),
      DoneEvent(5),
  });
  EXPECT_EQ(printed.out, "");
  EXPECT_EQ(printed.err, "");
}

TEST(RunStatusTest, EventNamesMapToRunStatuses) {
  EXPECT_EQ(RunStatusFromEventName("thread.run.completed"),
            v1::RUN_STATUS_COMPLETED);
  EXPECT_EQ(RunStatusFromEventName("thread.run.requires_action"),
            v1::RUN_STATUS_REQUIRES_ACTION);
  EXPECT_EQ(RunStatusFromEventName("thread.run.incomplete"),
            v1::RUN_STATUS_INCOMPLETE);
  // A step's or message's completion is not the run's.
  EXPECT_EQ(RunStatusFromEventName("thread.run.step.completed"),
            v1::RUN_STATUS_UNSPECIFIED);
  EXPECT_EQ(RunStatusFromEventName("thread.message.completed"),
            v1::RUN_STATUS_UNSPECIFIED);
  EXPECT_EQ(RunStatusFromEventName("thread.run.created"),
            v1::RUN_STATUS_UNSPECIFIED);
  EXPECT_EQ(RunStatusFromEventName("thread.run.unspecified"),
            v1::RUN_STATUS_UNSPECIFIED);
}

TEST(RunStatusTest, TerminalLineIsEmptyForActiveStatuses) {
  EXPECT_EQ(TerminalLine(v1::RUN_STATUS_IN_PROGRESS, v1::Run()), "");
  EXPECT_EQ(TerminalLine(v1::RUN_STATUS_REQUIRES_ACTION, v1::Run()), "");
  EXPECT_EQ(TerminalLine(v1::RUN_STATUS_COMPLETED, v1::Run()),
            "[run completed]");
}

TEST(EventJsonLineTest, OneLineOfProto3JsonThatParsesBack) {
  for (const v1::RunEvent& event : cli_test::SeedFunctionCallEvents()) {
    const std::string line = EventJsonLine(event);
    EXPECT_THAT(line, Not(HasSubstr("\n")));
    v1::RunEvent parsed;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok())
        << line;
    EXPECT_EQ(parsed.SerializeAsString(), event.SerializeAsString()) << line;
  }
  EXPECT_THAT(EventJsonLine(cli_test::SeedFunctionCallEvents()[8]),
              HasSubstr(R"("event":"thread.run.requires_action")"));
  EXPECT_THAT(EventJsonLine(cli_test::SeedFunctionCallEvents()[8]),
              HasSubstr(R"("tool_calls":[{"id":"call_1")"));
}

// `runs events` lines for the payloads the seed run lacks: a failed run, an
// error event, code_interpreter input and an output on a function delta,
// text with a newline (escaped: one event, one line), and the bare events.
TEST(EventLineTest, EveryPayloadOnOneLine) {
  v1::Run failed = SeedRun(v1::RUN_STATUS_FAILED);
  failed.mutable_last_error()->set_code("server_error");
  failed.mutable_last_error()->set_message("upstream returned 500");
  EXPECT_EQ(EventLine(RunEvent(4, "thread.run.failed", failed)),
            "4  thread.run.failed  run_1  failed  server_error: upstream "
            "returned 500");

  v1::Run incomplete = SeedRun(v1::RUN_STATUS_INCOMPLETE);
  incomplete.mutable_incomplete_details()->set_reason("max_completion_tokens");
  EXPECT_EQ(EventLine(RunEvent(5, "thread.run.incomplete", incomplete)),
            "5  thread.run.incomplete  run_1  incomplete  "
            "max_completion_tokens");

  v1::RunEvent error;
  error.set_sequence(6);
  error.set_event("error");
  error.mutable_error()->set_code("server_error");
  error.mutable_error()->set_message("boom");
  EXPECT_EQ(EventLine(error), "6  error  server_error: boom");

  EXPECT_EQ(EventLine(CodeDelta(7, "step_3", 1, "print(1)\n")),
            R"(7  thread.run.step.delta  step_3  [1] code_interpreter )"
            R"("print(1)\n")");

  v1::RunEvent output = FunctionDelta(8, "step_1", 0, "", "", "");
  output.mutable_step_delta()
      ->mutable_delta()
      ->mutable_tool_calls(0)
      ->mutable_function()
      ->set_output(R"({"ok":true})");
  EXPECT_EQ(EventLine(output),
            R"(8  thread.run.step.delta  step_1  [0] output="{\"ok\":true}")");

  EXPECT_EQ(EventLine(TextDelta(9, "msg_1", 0, "two\nlines")),
            R"(9  thread.message.delta  msg_1  "two\nlines")");

  v1::RunEvent heartbeat;
  heartbeat.set_sequence(9);
  heartbeat.set_event("heartbeat");
  heartbeat.mutable_heartbeat();
  EXPECT_EQ(EventLine(heartbeat), "9  heartbeat");
  EXPECT_EQ(EventLine(DoneEvent(10)), "10  done");
}

}  // namespace
}  // namespace assistants::cli
