#include "tests/cli/seed_events.h"

namespace assistants::cli::cli_test {

v1::Run SeedRun(v1::RunStatus status) {
  v1::Run run;
  run.set_id(kRunId);
  run.set_object("thread.run");
  run.set_thread_id(kThreadId);
  run.set_assistant_id("asst_1");
  run.set_model("gpt-4o");
  run.set_status(status);
  if (status == v1::RUN_STATUS_REQUIRES_ACTION) {
    v1::RequiredAction* action = run.mutable_required_action();
    action->set_type("submit_tool_outputs");
    v1::RequiredToolCall* call =
        action->mutable_submit_tool_outputs()->add_tool_calls();
    call->set_id(kCallId);
    call->set_type("function");
    call->mutable_function()->set_name("get_stock_price");
    call->mutable_function()->set_arguments(R"({"ticker":"AAPL"})");
  }
  return run;
}

v1::RunEvent RunEvent(int64_t sequence, const std::string& name,
                      const v1::Run& run) {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event(name);
  *event.mutable_run() = run;
  return event;
}

v1::RunEvent StepEvent(int64_t sequence, const std::string& name,
                       const v1::RunStep& step) {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event(name);
  *event.mutable_step() = step;
  return event;
}

v1::RunEvent MessageEvent(int64_t sequence, const std::string& name,
                          const v1::Message& message) {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event(name);
  *event.mutable_message() = message;
  return event;
}

v1::RunEvent FunctionDelta(int64_t sequence, const std::string& step_id,
                           int index, const std::string& call_id,
                           const std::string& name,
                           const std::string& arguments) {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event("thread.run.step.delta");
  v1::RunStepDelta* delta = event.mutable_step_delta();
  delta->set_id(step_id);
  delta->set_object("thread.run.step.delta");
  v1::ToolCallDelta* call = delta->mutable_delta()->add_tool_calls();
  call->set_index(index);
  call->set_id(call_id);
  call->mutable_function()->set_name(name);
  call->mutable_function()->set_arguments(arguments);
  return event;
}

v1::RunEvent CodeDelta(int64_t sequence, const std::string& step_id, int index,
                       const std::string& input) {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event("thread.run.step.delta");
  v1::RunStepDelta* delta = event.mutable_step_delta();
  delta->set_id(step_id);
  delta->set_object("thread.run.step.delta");
  v1::ToolCallDelta* call = delta->mutable_delta()->add_tool_calls();
  call->set_index(index);
  call->mutable_code_interpreter()->set_input(input);
  return event;
}

v1::RunEvent TextDelta(int64_t sequence, const std::string& message_id,
                       int index, const std::string& text) {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event("thread.message.delta");
  v1::MessageDelta* delta = event.mutable_message_delta();
  delta->set_id(message_id);
  delta->set_object("thread.message.delta");
  v1::MessageContentDelta* part = delta->mutable_delta()->add_content();
  part->set_index(index);
  part->mutable_text()->set_value(text);
  return event;
}

v1::RunEvent DoneEvent(int64_t sequence) {
  v1::RunEvent event;
  event.set_sequence(sequence);
  event.set_event("done");
  event.mutable_done();
  return event;
}

v1::Message AssistantMessage(const std::string& id, const std::string& text) {
  v1::Message message;
  message.set_id(id);
  message.set_object("thread.message");
  message.set_thread_id(kThreadId);
  message.set_run_id(kRunId);
  message.set_assistant_id("asst_1");
  message.set_role(v1::MESSAGE_ROLE_ASSISTANT);
  message.set_status(text.empty() ? v1::MESSAGE_STATUS_IN_PROGRESS
                                  : v1::MESSAGE_STATUS_COMPLETED);
  if (!text.empty()) message.add_content()->mutable_text()->set_value(text);
  return message;
}

std::vector<v1::RunEvent> SeedFunctionCallEvents() {
  v1::RunStep tool_step;
  tool_step.set_id("step_1");
  tool_step.set_object("thread.run.step");
  tool_step.set_run_id(kRunId);
  tool_step.set_thread_id(kThreadId);
  tool_step.set_type(v1::RUN_STEP_TYPE_TOOL_CALLS);
  tool_step.set_status(v1::RUN_STEP_STATUS_IN_PROGRESS);
  // OpenAI creates the step with an empty list; the call arrives as deltas.
  tool_step.mutable_step_details()->mutable_tool_calls();
  v1::RunStep tool_step_done = tool_step;
  tool_step_done.set_status(v1::RUN_STEP_STATUS_COMPLETED);
  v1::ToolCall* call = tool_step_done.mutable_step_details()
                           ->mutable_tool_calls()
                           ->add_tool_calls();
  call->set_id(kCallId);
  call->mutable_function()->set_name("get_stock_price");
  call->mutable_function()->set_arguments(R"({"ticker":"AAPL"})");
  call->mutable_function()->set_output(
      R"({"price": 237.5, "currency": "USD"})");

  v1::RunStep message_step;
  message_step.set_id("step_2");
  message_step.set_object("thread.run.step");
  message_step.set_run_id(kRunId);
  message_step.set_thread_id(kThreadId);
  message_step.set_type(v1::RUN_STEP_TYPE_MESSAGE_CREATION);
  message_step.set_status(v1::RUN_STEP_STATUS_IN_PROGRESS);
  message_step.mutable_step_details()
      ->mutable_message_creation()
      ->set_message_id("msg_1");
  v1::RunStep message_step_done = message_step;
  message_step_done.set_status(v1::RUN_STEP_STATUS_COMPLETED);

  const v1::Message message = AssistantMessage("msg_1", "");
  const v1::Message message_done = AssistantMessage("msg_1", kSeedAnswer);

  return {
      RunEvent(1, "thread.run.created", SeedRun(v1::RUN_STATUS_QUEUED)),
      RunEvent(2, "thread.run.queued", SeedRun(v1::RUN_STATUS_QUEUED)),
      RunEvent(3, "thread.run.in_progress",
               SeedRun(v1::RUN_STATUS_IN_PROGRESS)),
      StepEvent(4, "thread.run.step.created", tool_step),
      StepEvent(5, "thread.run.step.in_progress", tool_step),
      FunctionDelta(6, "step_1", 0, kCallId, "get_stock_price", ""),
      FunctionDelta(7, "step_1", 0, "", "", R"({"ticker")"),
      FunctionDelta(8, "step_1", 0, "", "", R"(:"AAPL"})"),
      RunEvent(9, "thread.run.requires_action",
               SeedRun(v1::RUN_STATUS_REQUIRES_ACTION)),
      RunEvent(10, "thread.run.queued", SeedRun(v1::RUN_STATUS_QUEUED)),
      RunEvent(11, "thread.run.in_progress",
               SeedRun(v1::RUN_STATUS_IN_PROGRESS)),
      StepEvent(12, "thread.run.step.completed", tool_step_done),
      StepEvent(13, "thread.run.step.created", message_step),
      StepEvent(14, "thread.run.step.in_progress", message_step),
      MessageEvent(15, "thread.message.created", message),
      MessageEvent(16, "thread.message.in_progress", message),
      TextDelta(17, "msg_1", 0, "AAPL is trading at $237.50, "),
      TextDelta(18, "msg_1", 0, "so 1000 shares are worth $237,500.00."),
      MessageEvent(19, "thread.message.completed", message_done),
      StepEvent(20, "thread.run.step.completed", message_step_done),
      RunEvent(21, "thread.run.completed", SeedRun(v1::RUN_STATUS_COMPLETED)),
      DoneEvent(22),
  };
}

}  // namespace assistants::cli::cli_test
