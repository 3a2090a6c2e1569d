// Unit tests of the two providers without a network: the request bodies they
// build from a Turn, and the translation of recorded wire events into
// ProviderEvents.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/common/errors.h"
#include "tests/upstream/recording_observer.h"
#include "upstream/chat_completions_provider.h"
#include "upstream/responses_provider.h"

namespace assistants::upstream {
namespace {

using nlohmann::json;
using Type = ProviderEvent::Type;

v1::Tool StockTool() {
  v1::Tool tool;
  v1::FunctionDefinition* fn = tool.mutable_function()->mutable_function();
  fn->set_name("get_stock_price");
  fn->set_description("Get the current stock price for a given ticker symbol.");
  auto& props = *fn->mutable_parameters()->mutable_fields();
  props["type"].set_string_value("object");
  (*props["properties"].mutable_struct_value()->mutable_fields())["ticker"]
      .mutable_struct_value();
  return tool;
}

Turn SeedTurn() {
  Turn turn;
  turn.model = "gpt-4o";
  turn.instructions = "You are a data analyst agent.";
  turn.items.push_back(TurnItem::UserText(
      "What's the stock price of AAPL, and calculate what 1000 shares would "
      "be worth?"));
  turn.items.push_back(TurnItem::FunctionCall("call_1", "get_stock_price",
                                              R"({"ticker":"AAPL"})"));
  turn.items.push_back(TurnItem::FunctionCall("call_2", "get_stock_price",
                                              R"({"ticker":"MSFT"})"));
  turn.items.push_back(
      TurnItem::FunctionCallOutput("call_1", R"({"price":237.5})"));
  turn.items.push_back(
      TurnItem::FunctionCallOutput("call_2", R"({"price":452.8})"));
  turn.tools.push_back(StockTool());
  turn.tools.emplace_back().mutable_code_interpreter();
  turn.temperature = 0.2;
  turn.max_output_tokens = 500;
  return turn;
}

TEST(ResponsesRequestTest, BuildsStatelessStreamingRequest) {
  json body = ResponsesProvider::BuildRequest(SeedTurn());
  EXPECT_EQ(body["model"], "gpt-4o");
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["store"], false);
  EXPECT_EQ(body["instructions"], "You are a data analyst agent.");
  EXPECT_EQ(body["max_output_tokens"], 500);
  EXPECT_DOUBLE_EQ(body["temperature"].get<double>(), 0.2);
  ASSERT_EQ(body["input"].size(), 5u);
  EXPECT_EQ(body["input"][0]["role"], "user");
  EXPECT_EQ(body["input"][0]["content"][0]["type"], "input_text");
  EXPECT_EQ(body["input"][1]["type"], "function_call");
  EXPECT_EQ(body["input"][1]["call_id"], "call_1");
  EXPECT_EQ(body["input"][1]["arguments"], R"({"ticker":"AAPL"})");
  EXPECT_EQ(body["input"][3]["type"], "function_call_output");
  EXPECT_EQ(body["input"][3]["output"], R"({"price":237.5})");
  ASSERT_EQ(body["tools"].size(), 2u);
  // Responses function tools are flat and say strict explicitly.
  EXPECT_EQ(body["tools"][0]["type"], "function");
  EXPECT_EQ(body["tools"][0]["name"], "get_stock_price");
  EXPECT_EQ(body["tools"][0]["strict"], false);
  EXPECT_EQ(body["tools"][0]["parameters"]["type"], "object");
  EXPECT_EQ(body["tools"][1]["type"], "code_interpreter");
  EXPECT_EQ(body["tools"][1]["container"]["type"], "auto");
  EXPECT_EQ(body["include"][0], "code_interpreter_call.outputs");
  EXPECT_EQ(body["tool_choice"], "auto");
  EXPECT_EQ(body["parallel_tool_calls"], true);
  EXPECT_FALSE(body.contains("text"));
}

TEST(ResponsesRequestTest, ToolChoiceAndFormats) {
  Turn turn = SeedTurn();
  turn.tool_choice.set_mode(v1::ToolChoice::MODE_FUNCTION);
  turn.tool_choice.set_function_name("get_stock_price");
  turn.response_format.set_type(v1::ResponseFormat::TYPE_JSON_SCHEMA);
  turn.response_format.mutable_json_schema()->set_name("answer");
  (*turn.response_format.mutable_json_schema()
        ->mutable_schema()
        ->mutable_fields())["type"]
      .set_string_value("object");
  json body = ResponsesProvider::BuildRequest(turn);
  EXPECT_EQ(body["tool_choice"]["type"], "function");
  EXPECT_EQ(body["tool_choice"]["name"], "get_stock_price");
  EXPECT_EQ(body["text"]["format"]["type"], "json_schema");
  EXPECT_EQ(body["text"]["format"]["name"], "answer");
  EXPECT_EQ(body["text"]["format"]["schema"]["type"], "object");
}

TEST(ChatRequestTest, GroupsParallelCallsAndDropsHostedTools) {
  json body = ChatCompletionsProvider::BuildRequest(SeedTurn());
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["max_completion_tokens"], 500);
  const json& messages = body["messages"];
  ASSERT_EQ(messages.size(), 5u);
  EXPECT_EQ(messages[0]["role"], "system");
  EXPECT_EQ(messages[1]["role"], "user");
  EXPECT_EQ(messages[1]["content"],
            "What's the stock price of AAPL, and calculate what 1000 shares "
            "would be worth?");
  EXPECT_EQ(messages[2]["role"], "assistant");
  EXPECT_TRUE(messages[2]["content"].is_null());
  ASSERT_EQ(messages[2]["tool_calls"].size(), 2u);
  EXPECT_EQ(messages[2]["tool_calls"][1]["id"], "call_2");
  EXPECT_EQ(messages[2]["tool_calls"][1]["function"]["arguments"],
            R"({"ticker":"MSFT"})");
  EXPECT_EQ(messages[3]["role"], "tool");
  EXPECT_EQ(messages[3]["tool_call_id"], "call_1");
  ASSERT_EQ(body["tools"].size(), 1u);  // code_interpreter has no chat form
  EXPECT_EQ(body["tools"][0]["function"]["name"], "get_stock_price");
  json legacy = ChatCompletionsProvider::BuildRequest(SeedTurn(), true);
  EXPECT_EQ(legacy["max_tokens"], 500);
  EXPECT_FALSE(legacy.contains("max_completion_tokens"));
}

// Feeds events (type, JSON data) to a translator and records the result.
struct Fed {
  RecordingObserver observer;
  std::optional<TurnError> error;
  bool done = false;
};

void Feed(StreamTranslator& translator, const std::vector<SseEvent>& events,
          Fed& fed) {
  for (const SseEvent& event : events) {
    fed.error = translator.OnEvent(event, fed.observer);
    if (fed.error.has_value() || translator.done()) break;
  }
  if (!fed.error.has_value() && !translator.done()) {
    fed.error = translator.OnEnd(fed.observer);
  }
  fed.done = translator.done();
}

SseEvent Responses(const std::string& type, json data) {
  data["type"] = type;
  return SseEvent{type, data.dump(), ""};
}

TEST(ResponsesTranslatorTest, TextThenUsage) {
  auto translator = ResponsesProvider::NewTranslator("openai");
  Fed fed;
  Feed(*translator,
       {Responses("response.created", {{"response", {{"id", "resp_1"}}}}),
        Responses("response.output_item.added",
                  {{"output_index", 0}, {"item", {{"type", "message"}}}}),
        Responses("response.output_text.delta",
                  {{"output_index", 0}, {"delta", "Hel"}}),
        Responses("response.output_text.delta",
                  {{"output_index", 0}, {"delta", "lo é"}}),
        Responses("response.completed", {{"response",
                                          {{"usage",
                                            {{"input_tokens", 11},
                                             {"output_tokens", 2},
                                             {"total_tokens", 13}}}}}})},
       fed);
  EXPECT_FALSE(fed.error.has_value());
  EXPECT_TRUE(fed.done);
  EXPECT_EQ(fed.observer.Text(), "Hello é");
  auto usage = fed.observer.OfType(Type::kUsage);
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].usage.prompt_tokens(), 11);
  EXPECT_EQ(usage[0].usage.total_tokens(), 13);
  auto finished = fed.observer.OfType(Type::kFinished);
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_EQ(finished[0].finish_reason, FinishReason::kStop);
}

TEST(ResponsesTranslatorTest, ParallelFunctionCalls) {
  auto translator = ResponsesProvider::NewTranslator("openai");
  auto added = [](int output_index, const std::string& call_id) {
    return Responses("response.output_item.added",
                     {{"output_index", output_index},
                      {"item",
                       {{"type", "function_call"},
                        {"id", "fc_" + call_id},
                        {"call_id", call_id},
                        {"name", "get_stock_price"},
                        {"arguments", ""}}}});
  };
  auto delta = [](int output_index, const std::string& text) {
    return Responses("response.function_call_arguments.delta",
                     {{"output_index", output_index}, {"delta", text}});
  };
  auto done = [](int output_index, const std::string& call_id,
                 const std::string& args) {
    return Responses("response.output_item.done",
                     {{"output_index", output_index},
                      {"item",
                       {{"type", "function_call"},
                        {"call_id", call_id},
                        {"name", "get_stock_price"},
                        {"arguments", args}}}});
  };
  Fed fed;
  Feed(*translator,
       {added(0, "call_a"), delta(0, "{\"tick"), added(1, "call_b"),
        delta(1, "{\"ticker\":\"MSFT\"}"), delta(0, "er\":\"AAPL\"}"),
        done(0, "call_a", R"({"ticker":"AAPL"})"),
        done(1, "call_b", R"({"ticker":"MSFT"})"),
        Responses("response.completed", {{"response", json::object()}})},
       fed);
  EXPECT_FALSE(fed.error.has_value());
  auto started = fed.observer.OfType(Type::kToolCallStarted);
  ASSERT_EQ(started.size(), 2u);
  EXPECT_EQ(started[0].call_id, "call_a");
  EXPECT_EQ(started[1].index, 1);
  std::string args_a;
  for (const auto& e : fed.observer.OfType(Type::kToolCallArgumentsDelta)) {
    if (e.index == 0) args_a += e.text;
  }
  EXPECT_EQ(args_a, R"({"ticker":"AAPL"})");
  auto calls = fed.observer.OfType(Type::kToolCallDone);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].text, R"({"ticker":"MSFT"})");
  EXPECT_EQ(fed.observer.OfType(Type::kFinished)[0].finish_reason,
            FinishReason::kToolCalls);
}

TEST(ResponsesTranslatorTest, CodeInterpreterCall) {
  auto translator = ResponsesProvider::NewTranslator("openai");
  Fed fed;
  Feed(*translator,
       {Responses(
            "response.output_item.added",
            {{"output_index", 0},
             {"item", {{"type", "code_interpreter_call"}, {"id", "ci_1"}}}}),
        Responses("response.code_interpreter_call_code.delta",
                  {{"output_index", 0}, {"delta", "print(1000*237.5)"}}),
        Responses("response.output_item.done",
                  {{"output_index", 0},
                   {"item",
                    {{"type", "code_interpreter_call"},
                     {"id", "ci_1"},
                     {"code", "print(1000*237.5)"},
                     {"outputs", json::array({{{"type", "logs"},
                                               {"logs", "237500.0"}}})}}}}),
        Responses("response.completed", {{"response", json::object()}})},
       fed);
  EXPECT_FALSE(fed.error.has_value());
  auto done = fed.observer.OfType(Type::kCodeInterpreterDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].call_id, "ci_1");
  EXPECT_EQ(done[0].text, "print(1000*237.5)");
  ASSERT_EQ(done[0].outputs.size(), 1u);
  EXPECT_EQ(done[0].outputs[0].logs().logs(), "237500.0");
  EXPECT_EQ(fed.observer.OfType(Type::kCodeInterpreterCodeDelta).size(), 1u);
}

TEST(ResponsesTranslatorTest, IncompleteAndFailedAndMalformed) {
  {
    auto translator = ResponsesProvider::NewTranslator("openai");
    Fed fed;
    Feed(*translator,
         {Responses(
             "response.incomplete",
             {{"response",
               {{"incomplete_details", {{"reason", "max_output_tokens"}}}}}})},
         fed);
    EXPECT_EQ(fed.observer.OfType(Type::kFinished)[0].finish_reason,
              FinishReason::kLength);
  }
  {
    auto translator = ResponsesProvider::NewTranslator("openai");
    Fed fed;
    Feed(*translator,
         {Responses(
             "response.failed",
             {{"response",
               {{"error",
                 {{"code", "rate_limit_exceeded"}, {"message", "x"}}}}}})},
         fed);
    ASSERT_TRUE(fed.error.has_value());
    EXPECT_EQ(fed.error->run_error_code, "rate_limit_exceeded");
  }
  {
    auto translator = ResponsesProvider::NewTranslator("openai");
    Fed fed;
    Feed(*translator, {SseEvent{"response.output_text.delta", "{nope", ""}},
         fed);
    ASSERT_TRUE(fed.error.has_value());
    EXPECT_EQ(ErrorReason(fed.error->status), "UPSTREAM_PROTOCOL_ERROR");
  }
  {
    // A stream that just stops is not done: the caller reports truncation.
    auto translator = ResponsesProvider::NewTranslator("openai");
    Fed fed;
    Feed(*translator,
         {Responses("response.output_text.delta", {{"delta", "partial"}})},
         fed);
    EXPECT_FALSE(fed.done);
    EXPECT_FALSE(fed.error.has_value());
  }
}

SseEvent Chunk(json delta, json finish_reason = nullptr) {
  json chunk = {{"id", "chatcmpl-1"},
                {"object", "chat.completion.chunk"},
                {"choices",
                 json::array({{{"index", 0},
                               {"delta", std::move(delta)},
                               {"finish_reason", std::move(finish_reason)}}})}};
  return SseEvent{"", chunk.dump(), ""};
}

TEST(ChatTranslatorTest, ToolCallsAssembledByIndex) {
  auto translator = ChatCompletionsProvider::NewTranslator("vllm");
  Fed fed;
  json usage_chunk = {{"choices", json::array()},
                      {"usage",
                       {{"prompt_tokens", 20},
                        {"completion_tokens", 9},
                        {"total_tokens", 29}}}};
  Feed(*translator,
       {Chunk({{"role", "assistant"}, {"content", nullptr}}),
        Chunk({{"tool_calls", json::array({{{"index", 0},
                                            {"id", "call_a"},
                                            {"type", "function"},
                                            {"function",
                                             {{"name", "get_stock_price"},
                                              {"arguments", ""}}}}})}}),
        Chunk({{"tool_calls",
                json::array({{{"index", 1},
                              {"id", "call_b"},
                              {"type", "function"},
                              {"function",
                               {{"name", "get_stock_price"},
                                {"arguments", "{\"ticker\":"}}}}})}}),
        Chunk({{"tool_calls",
                json::array({{{"index", 0},
                              {"function",
                               {{"arguments", "{\"ticker\":\"AAPL\"}"}}}}})}}),
        Chunk({{"tool_calls",
                json::array({{{"index", 1},
                              {"function", {{"arguments", "\"MSFT\"}"}}}}})}}),
        Chunk(json::object(), "tool_calls"),
        SseEvent{"", usage_chunk.dump(), ""}, SseEvent{"", "[DONE]", ""}},
       fed);
  EXPECT_FALSE(fed.error.has_value());
  EXPECT_TRUE(fed.done);
  auto calls = fed.observer.OfType(Type::kToolCallDone);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].call_id, "call_a");
  EXPECT_EQ(calls[0].text, R"({"ticker":"AAPL"})");
  EXPECT_EQ(calls[1].text, R"({"ticker":"MSFT"})");
  auto usage = fed.observer.OfType(Type::kUsage);
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].usage.completion_tokens(), 9);
  EXPECT_EQ(fed.observer.OfType(Type::kFinished)[0].finish_reason,
            FinishReason::kToolCalls);
}

TEST(ChatTranslatorTest, CallsWithoutIndexAreKeptApartById) {
  auto translator = ChatCompletionsProvider::NewTranslator("compat");
  Fed fed;
  auto whole = [](const std::string& id, const std::string& args) {
    return Chunk({{"tool_calls", json::array({{{"id", id},
                                               {"type", "function"},
                                               {"function",
                                                {{"name", "get_stock_price"},
                                                 {"arguments", args}}}}})}});
  };
  Feed(*translator,
       {whole("call_a", R"({"ticker":"AAPL"})"),
        whole("call_b", R"({"ticker":"MSFT"})"),
        Chunk(json::object(), "tool_calls"), SseEvent{"", "[DONE]", ""}},
       fed);
  ASSERT_FALSE(fed.error.has_value());
  auto calls = fed.observer.OfType(Type::kToolCallDone);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].call_id, "call_a");
  EXPECT_EQ(calls[0].index, 0);
  EXPECT_EQ(calls[1].call_id, "call_b");
  EXPECT_EQ(calls[1].index, 1);
  EXPECT_EQ(calls[1].text, R"({"ticker":"MSFT"})");
}

TEST(ChatTranslatorTest, SparseUpstreamIndexesBecomeDenseOrdinals) {
  auto translator = ChatCompletionsProvider::NewTranslator("compat");
  Fed fed;
  Feed(*translator,
       {Chunk({{"tool_calls",
                json::array(
                    {{{"index", 7},
                      {"id", "call_x"},
                      {"function", {{"name", "f"}, {"arguments", "{}"}}}}})}}),
        Chunk(json::object(), "tool_calls"), SseEvent{"", "[DONE]", ""}},
       fed);
  auto calls = fed.observer.OfType(Type::kToolCallDone);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].index, 0);
}

TEST(ResponsesTranslatorTest, WrongTypesNeverThrow) {
  for (const char* data :
       {R"({"type":"response.completed","response":null})",
        R"({"type":"response.failed","response":"x"})",
        R"({"type":"response.output_item.added","item":[1,2]})",
        R"({"type":"response.incomplete","response":{"incomplete_details":7}})",
        R"({"type":"response.output_text.delta","delta":{"a":1}})"}) {
    auto translator = ResponsesProvider::NewTranslator("openai");
    Fed fed;
    EXPECT_NO_THROW(Feed(*translator, {SseEvent{"", data, ""}}, fed)) << data;
  }
}

TEST(ChatTranslatorTest, TextLengthAndMissingDone) {
  auto translator = ChatCompletionsProvider::NewTranslator("ollama");
  Fed fed;
  // No [DONE]: a finish reason already seen completes the turn at EOF.
  Feed(*translator,
       {Chunk({{"role", "assistant"}, {"content", "Hi"}}),
        Chunk({{"content", " there"}}), Chunk(json::object(), "length")},
       fed);
  EXPECT_FALSE(fed.error.has_value());
  EXPECT_TRUE(fed.done);
  EXPECT_EQ(fed.observer.Text(), "Hi there");
  EXPECT_EQ(fed.observer.OfType(Type::kFinished)[0].finish_reason,
            FinishReason::kLength);
}

TEST(ChatTranslatorTest, ErrorChunkAndNameless) {
  {
    auto translator = ChatCompletionsProvider::NewTranslator("litellm");
    Fed fed;
    Feed(*translator,
         {SseEvent{"", R"({"error":{"code":"server_error","message":"boom"}})",
                   ""}},
         fed);
    ASSERT_TRUE(fed.error.has_value());
    EXPECT_EQ(ErrorReason(fed.error->status), "UPSTREAM_SERVER_ERROR");
  }
  {
    auto translator = ChatCompletionsProvider::NewTranslator("litellm");
    Fed fed;
    Feed(*translator,
         {Chunk({{"tool_calls",
                  json::array(
                      {{{"index", 0}, {"function", {{"arguments", "{"}}}}})}})},
         fed);
    ASSERT_TRUE(fed.error.has_value());
    EXPECT_EQ(ErrorReason(fed.error->status), "UPSTREAM_PROTOCOL_ERROR");
  }
}

}  // namespace
}  // namespace assistants::upstream
