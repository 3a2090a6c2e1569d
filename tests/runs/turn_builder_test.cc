// Tests of service/runs/turn_builder: what the model sees in one turn
// (history, the run's own items in step order, truncation, budgets and
// resources), built from plain objects without a store.
#include "service/runs/turn_builder.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "assistants/v1/assistant.pb.h"
#include "assistants/v1/message.pb.h"
#include "assistants/v1/run.pb.h"
#include "assistants/v1/thread.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/runs/turn_text.h"

namespace assistants::runs {
namespace {

using ::assistants::runs::testing::ItemTexts;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kRunId[] = "run_test";

v1::Message TextMessage(const std::string& id, v1::MessageRole role,
                        const std::string& text,
                        const std::string& run_id = "") {
  v1::Message message;
  message.set_id(id);
  message.set_object("thread.message");
  message.set_thread_id("thread_test");
  message.set_role(role);
  message.set_status(v1::MESSAGE_STATUS_COMPLETED);
  message.add_content()->mutable_text()->set_value(text);
  message.set_run_id(run_id);
  return message;
}

v1::RunStep MessageStep(
    const std::string& id, const std::string& message_id,
    v1::RunStepStatus status = v1::RUN_STEP_STATUS_COMPLETED) {
  v1::RunStep step;
  step.set_id(id);
  step.set_run_id(kRunId);
  step.set_type(v1::RUN_STEP_TYPE_MESSAGE_CREATION);
  step.set_status(status);
  step.mutable_step_details()->mutable_message_creation()->set_message_id(
      message_id);
  return step;
}

struct CallSpec {
  std::string id;
  std::string name;
  std::string arguments;
  // Empty with has_output false: no output yet.
  std::string output;
  bool has_output = true;
};

v1::RunStep ToolStep(const std::string& id, const std::vector<CallSpec>& calls,
                     v1::RunStepStatus status = v1::RUN_STEP_STATUS_COMPLETED) {
  v1::RunStep step;
  step.set_id(id);
  step.set_run_id(kRunId);
  step.set_type(v1::RUN_STEP_TYPE_TOOL_CALLS);
  step.set_status(status);
  auto* details = step.mutable_step_details()->mutable_tool_calls();
  for (const CallSpec& spec : calls) {
    v1::ToolCall* call = details->add_tool_calls();
    call->set_id(spec.id);
    call->mutable_function()->set_name(spec.name);
    call->mutable_function()->set_arguments(spec.arguments);
    if (spec.has_output) call->mutable_function()->set_output(spec.output);
  }
  return step;
}

// Owns every input; Build() points a TurnInputs at them.
class TurnBuilderTest : public ::testing::Test {
 protected:
  TurnBuilderTest() {
    assistant_.set_id("asst_test");
    assistant_.set_model("assistant-model");
    thread_.set_id("thread_test");
    run_.set_id(kRunId);
    run_.set_thread_id("thread_test");
    run_.set_model("gpt-test");
    run_.set_instructions("Be brief.");
    run_.mutable_truncation_strategy()->set_type(
        v1::TruncationStrategy::TYPE_AUTO);
  }

  upstream::Turn Build() {
    TurnInputs inputs;
    inputs.assistant = &assistant_;
    inputs.thread = &thread_;
    inputs.run = &run_;
    inputs.messages = &messages_;
    inputs.own_messages = &own_messages_;
    inputs.steps = &steps_;
    inputs.completion_tokens_used = completion_tokens_used_;
    inputs.tool_definitions = tool_definitions_;
    return BuildTurn(inputs);
  }

  v1::Assistant assistant_;
  v1::Thread thread_;
  v1::Run run_;
  std::vector<v1::Message> messages_;
  std::map<std::string, v1::Message> own_messages_;
  std::vector<v1::RunStep> steps_;
  int64_t completion_tokens_used_ = 0;
  const ToolDispatcher* tool_definitions_ = nullptr;
};

// Serves one worker tool definition.
class DefinitionsOnly : public ToolDispatcher {
 public:
  explicit DefinitionsOnly(v1::FunctionDefinition served)
      : served_(std::move(served)) {}
  bool Handles(absl::string_view name) const override {
    return name == served_.name();
  }
  std::optional<v1::FunctionDefinition> Definition(
      absl::string_view name) const override {
    if (name != served_.name()) return std::nullopt;
    return served_;
  }
  void Invoke(const ToolCallContext&, const ToolInvocation&,
              std::function<void(std::string)> done) override {
    done("");
  }

 private:
  v1::FunctionDefinition served_;
};

TEST_F(TurnBuilderTest, CopiesTheRunsSettings) {
  run_.set_temperature(0.5);
  run_.set_top_p(0.9);
  run_.set_parallel_tool_calls(false);
  run_.mutable_tool_choice()->set_mode(v1::ToolChoice::MODE_REQUIRED);
  run_.mutable_response_format()->set_type(
      v1::ResponseFormat::TYPE_JSON_OBJECT);
  run_.add_tools()->mutable_function()->mutable_function()->set_name("f");
  upstream::Turn turn = Build();
  EXPECT_EQ(turn.model, "gpt-test");
  EXPECT_EQ(turn.instructions, "Be brief.");
  ASSERT_EQ(turn.tools.size(), 1u);
  EXPECT_EQ(turn.tools[0].function().function().name(), "f");
  EXPECT_EQ(turn.tool_choice.mode(), v1::ToolChoice::MODE_REQUIRED);
  EXPECT_FALSE(turn.parallel_tool_calls);
  EXPECT_EQ(turn.response_format.type(), v1::ResponseFormat::TYPE_JSON_OBJECT);
  EXPECT_EQ(turn.temperature, 0.5);
  EXPECT_EQ(turn.top_p, 0.9);
  EXPECT_FALSE(turn.max_output_tokens.has_value());
  EXPECT_THAT(turn.items, IsEmpty());
}

TEST_F(TurnBuilderTest, WorkerToolsNamedWithoutParametersTakeTheServedSchema) {
  v1::FunctionDefinition served;
  served.set_name("get_stock_price");
  served.set_description("Get the current stock price");
  (*served.mutable_parameters()->mutable_fields())["type"].set_string_value(
      "object");
  served.set_strict(true);
  DefinitionsOnly definitions(served);
  tool_definitions_ = &definitions;
  // By name only; with its own schema; a client tool; a hosted tool.
  run_.add_tools()->mutable_function()->mutable_function()->set_name(
      "get_stock_price");
  v1::FunctionDefinition* own =
      run_.add_tools()->mutable_function()->mutable_function();
  own->set_name("get_stock_price_v2");
  (*own->mutable_parameters()->mutable_fields())["type"].set_string_value(
      "object");
  run_.add_tools()->mutable_function()->mutable_function()->set_name(
      "ask_user");
  run_.add_tools()->mutable_code_interpreter();

  upstream::Turn turn = Build();
  ASSERT_EQ(turn.tools.size(), 4u);
  const v1::FunctionDefinition& filled = turn.tools[0].function().function();
  EXPECT_EQ(filled.description(), "Get the current stock price");
  EXPECT_EQ(filled.parameters().fields().at("type").string_value(), "object");
  EXPECT_TRUE(filled.strict());
  EXPECT_EQ(turn.tools[1].function().function().description(), "");
  EXPECT_FALSE(turn.tools[2].function().function().has_parameters());
  EXPECT_TRUE(turn.tools[3].has_code_interpreter());
  // The run keeps what the client wrote.
  EXPECT_FALSE(run_.tools(0).function().function().has_parameters());
}

TEST_F(TurnBuilderTest, OwnDescriptionWinsOverTheServedOne) {
  v1::FunctionDefinition served;
  served.set_name("calculator");
  served.set_description("Evaluate arithmetic");
  (*served.mutable_parameters()->mutable_fields())["type"].set_string_value(
      "object");
  DefinitionsOnly definitions(served);
  tool_definitions_ = &definitions;
  v1::FunctionDefinition* named =
      run_.add_tools()->mutable_function()->mutable_function();
  named->set_name("calculator");
  named->set_description("Do the maths");
  named->set_strict(false);
  upstream::Turn turn = Build();
  const v1::FunctionDefinition& filled = turn.tools[0].function().function();
  EXPECT_EQ(filled.description(), "Do the maths");
  EXPECT_TRUE(filled.has_parameters());
  EXPECT_FALSE(filled.strict());
}

TEST_F(TurnBuilderTest, UnsetSamplingStaysUnset) {
  upstream::Turn turn = Build();
  EXPECT_FALSE(turn.temperature.has_value());
  EXPECT_FALSE(turn.top_p.has_value());
}

TEST_F(TurnBuilderTest, HistoryKeepsThreadOrder) {
  messages_ = {TextMessage("msg_1", v1::MESSAGE_ROLE_USER, "one"),
               TextMessage("msg_2", v1::MESSAGE_ROLE_ASSISTANT, "two"),
               TextMessage("msg_3", v1::MESSAGE_ROLE_USER, "three")};
  EXPECT_THAT(ItemTexts(Build()),
              ElementsAre("user:one", "assistant:two", "user:three"));
}

TEST_F(TurnBuilderTest, OwnItemsFollowHistoryInStepOrder) {
  // The run's own message sits in the thread, but is placed by its step.
  messages_ = {
      TextMessage("msg_1", v1::MESSAGE_ROLE_USER, "question"),
      TextMessage("msg_own", v1::MESSAGE_ROLE_ASSISTANT, "let me see", kRunId),
      TextMessage("msg_later", v1::MESSAGE_ROLE_USER, "later")};
  steps_ = {
      ToolStep("step_1", {{"call_a", "f", "{\"x\":1}", "out-a"},
                          {"call_b", "g", "{}", "out-b"}}),
      MessageStep("step_2", "msg_own"),
      ToolStep("step_3", {{"call_c", "h", "{\"y\":2}", "", false}},
               v1::RUN_STEP_STATUS_IN_PROGRESS),
  };
  EXPECT_THAT(ItemTexts(Build()),
              ElementsAre("user:question", "user:later",
                          "call:call_a:f:{\"x\":1}", "output:call_a:out-a",
                          "call:call_b:g:{}", "output:call_b:out-b",
                          "assistant:let me see", "call:call_c:h:{\"y\":2}"));
}

TEST_F(TurnBuilderTest, OwnMessagesWinOverTheStoredCopy) {
  messages_ = {
      TextMessage("msg_own", v1::MESSAGE_ROLE_ASSISTANT, "par", kRunId)};
  own_messages_["msg_own"] = TextMessage("msg_own", v1::MESSAGE_ROLE_ASSISTANT,
                                         "partial, now whole", kRunId);
  steps_ = {MessageStep("step_1", "msg_own")};
  EXPECT_THAT(ItemTexts(Build()), ElementsAre("assistant:partial, now whole"));
}

TEST_F(TurnBuilderTest, EmptyOwnMessageIsLeftOut) {
  v1::Message empty =
      TextMessage("msg_own", v1::MESSAGE_ROLE_ASSISTANT, "", kRunId);
  empty.clear_content();
  messages_ = {empty};
  steps_ = {MessageStep("step_1", "msg_own")};
  EXPECT_THAT(ItemTexts(Build()), IsEmpty());
}

TEST_F(TurnBuilderTest, FailedAndCancelledStepsAreSkipped) {
  messages_ = {
      TextMessage("msg_1", v1::MESSAGE_ROLE_USER, "hi"),
      TextMessage("msg_bad", v1::MESSAGE_ROLE_ASSISTANT, "half an", kRunId),
      TextMessage("msg_good", v1::MESSAGE_ROLE_ASSISTANT, "answer", kRunId)};
  steps_ = {
      MessageStep("step_1", "msg_bad", v1::RUN_STEP_STATUS_FAILED),
      ToolStep("step_2", {{"call_x", "f", "{\"par", "", false}},
               v1::RUN_STEP_STATUS_CANCELLED),
      ToolStep("step_3", {{"call_y", "f", "{}", "ok"}}),
      MessageStep("step_4", "msg_good"),
  };
  EXPECT_THAT(ItemTexts(Build()),
              ElementsAre("user:hi", "call:call_y:f:{}", "output:call_y:ok",
                          "assistant:answer"));
}

TEST_F(TurnBuilderTest, HostedToolCallsAreNotReplayed) {
  v1::RunStep step = ToolStep("step_1", {{"call_f", "f", "{}", "done"}});
  v1::ToolCall* code =
      step.mutable_step_details()->mutable_tool_calls()->add_tool_calls();
  code->set_id("call_ci");
  code->mutable_code_interpreter()->set_input("print(1)");
  steps_ = {step};
  EXPECT_THAT(ItemTexts(Build()),
              ElementsAre("call:call_f:f:{}", "output:call_f:done"));
}

TEST_F(TurnBuilderTest, LastMessagesKeepsTheNewestHistory) {
  run_.mutable_truncation_strategy()->set_type(
      v1::TruncationStrategy::TYPE_LAST_MESSAGES);
  run_.mutable_truncation_strategy()->set_last_messages(2);
  for (int i = 1; i <= 5; ++i) {
    messages_.push_back(TextMessage(
        absl::StrCat("msg_", i), v1::MESSAGE_ROLE_USER, absl::StrCat("m", i)));
  }
  // The run's own items are not truncated.
  messages_.push_back(
      TextMessage("msg_own", v1::MESSAGE_ROLE_ASSISTANT, "mine", kRunId));
  steps_ = {ToolStep("step_1", {{"call_a", "f", "{}", "o"}}),
            MessageStep("step_2", "msg_own")};
  EXPECT_THAT(ItemTexts(Build()),
              ElementsAre("user:m4", "user:m5", "call:call_a:f:{}",
                          "output:call_a:o", "assistant:mine"));
}

TEST_F(TurnBuilderTest, LastMessagesLargerThanHistoryKeepsAll) {
  run_.mutable_truncation_strategy()->set_type(
      v1::TruncationStrategy::TYPE_LAST_MESSAGES);
  run_.mutable_truncation_strategy()->set_last_messages(10);
  messages_ = {TextMessage("msg_1", v1::MESSAGE_ROLE_USER, "a"),
               TextMessage("msg_2", v1::MESSAGE_ROLE_USER, "b")};
  EXPECT_THAT(ItemTexts(Build()), ElementsAre("user:a", "user:b"));
}

TEST_F(TurnBuilderTest, AutoWithoutPromptBudgetKeepsEverything) {
  for (int i = 0; i < 50; ++i) {
    messages_.push_back(TextMessage(
        absl::StrCat("msg_", i), v1::MESSAGE_ROLE_USER, std::string(400, 'x')));
  }
  EXPECT_EQ(Build().items.size(), 50u);
}

TEST_F(TurnBuilderTest, AutoTruncationDropsOldestUnderPromptBudget) {
  // Each message: 400 chars = 100 tokens + 4 overhead.
  for (int i = 1; i <= 10; ++i) {
    messages_.push_back(
        TextMessage(absl::StrCat("msg_", i), v1::MESSAGE_ROLE_USER,
                    absl::StrCat(i < 10 ? "0" : "", i, std::string(398, 'x'))));
  }
  run_.set_max_prompt_tokens(300);
  upstream::Turn turn = Build();
  ASSERT_FALSE(turn.items.empty());
  ASSERT_LT(turn.items.size(), 10u);
  // The newest messages are kept, contiguous up to the last one.
  const size_t kept = turn.items.size();
  for (size_t i = 0; i < kept; ++i) {
    const int number = static_cast<int>(10 - kept + 1 + i);
    EXPECT_EQ(turn.items[i].content[0].text().value().substr(0, 2),
              absl::StrCat(number < 10 ? "0" : "", number));
  }
  // What is kept fits the budget (with the instructions' estimate).
  int64_t total = 4 + static_cast<int64_t>(turn.instructions.size() / 4);
  for (const auto& item : turn.items) total += EstimateTokens(item);
  EXPECT_LE(total, 300);
  // And one more message would not have fit.
  EXPECT_GT(total + EstimateTokens(turn.items.front()), 300);
}

TEST_F(TurnBuilderTest, AutoTruncationAlwaysKeepsTheNewestMessage) {
  messages_ = {
      TextMessage("msg_1", v1::MESSAGE_ROLE_USER, "old"),
      TextMessage("msg_2", v1::MESSAGE_ROLE_USER, std::string(8000, 'y'))};
  run_.set_max_prompt_tokens(256);
  upstream::Turn turn = Build();
  ASSERT_EQ(turn.items.size(), 1u);
  EXPECT_EQ(turn.items[0].content[0].text().value().size(), 8000u);
}

TEST_F(TurnBuilderTest, MaxOutputTokensIsTheRemainingCompletionBudget) {
  run_.set_max_completion_tokens(100);
  EXPECT_EQ(Build().max_output_tokens, 100);
  completion_tokens_used_ = 30;
  EXPECT_EQ(Build().max_output_tokens, 70);
  // Never zero or negative (the engine stops before that).
  completion_tokens_used_ = 150;
  EXPECT_EQ(Build().max_output_tokens, 1);
}

TEST_F(TurnBuilderTest, ThreadToolResourcesWinPerTool) {
  assistant_.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
      "file_assistant");
  assistant_.mutable_tool_resources()
      ->mutable_file_search()
      ->add_vector_store_ids("vs_assistant");
  upstream::Turn from_assistant = Build();
  EXPECT_THAT(from_assistant.code_interpreter_file_ids,
              ElementsAre("file_assistant"));
  EXPECT_THAT(from_assistant.vector_store_ids, ElementsAre("vs_assistant"));

  thread_.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
      "file_thread");
  upstream::Turn from_thread = Build();
  EXPECT_THAT(from_thread.code_interpreter_file_ids,
              ElementsAre("file_thread"));
  // The thread names no vector store: the assistant's still applies.
  EXPECT_THAT(from_thread.vector_store_ids, ElementsAre("vs_assistant"));
}

TEST_F(TurnBuilderTest, EmptyThreadToolResourcesFallBackToTheAssistants) {
  // Threads are stored with tool_resources set even when the client gave
  // none (an empty message): that must not hide the assistant's resources.
  assistant_.mutable_tool_resources()->mutable_code_interpreter()->add_file_ids(
      "file_assistant");
  thread_.mutable_tool_resources();
  EXPECT_THAT(Build().code_interpreter_file_ids, ElementsAre("file_assistant"));
}

TEST(EstimateTokensTest, CountsAboutFourCharactersPerToken) {
  EXPECT_EQ(EstimateTokens(upstream::TurnItem::UserText("")), 4);
  EXPECT_EQ(EstimateTokens(upstream::TurnItem::UserText("abcd")), 5);
  EXPECT_EQ(EstimateTokens(upstream::TurnItem::UserText("abcde")), 6);
  EXPECT_EQ(EstimateTokens(
                upstream::TurnItem::FunctionCall("call_1", "fn", "123456")),
            6);
  EXPECT_EQ(EstimateTokens(
                upstream::TurnItem::FunctionCallOutput("call_1", "12345678")),
            6);
}

}  // namespace
}  // namespace assistants::runs
