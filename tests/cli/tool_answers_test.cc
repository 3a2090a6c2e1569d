// The answers `assistantsctl run` gives to requires_action: the --outputs
// file, the seed's demo functions (their output text must be byte-identical
// to the seed's json.dumps), and the interactive prompt.
#include "cli/tool_answers.h"

#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace assistants::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

v1::RequiredToolCall Call(const std::string& id, const std::string& name,
                          const std::string& arguments) {
  v1::RequiredToolCall call;
  call.set_id(id);
  call.set_type("function");
  call.mutable_function()->set_name(name);
  call.mutable_function()->set_arguments(arguments);
  return call;
}

TEST(ParseOutputsJsonTest, StringsAsIsOtherValuesAsCompactJson) {
  absl::StatusOr<OutputsByFunction> outputs = ParseOutputsJson(R"({
    "get_stock_price": {"price": 237.50, "currency": "USD"},
    "lookup": "plain text",
    "count": 3,
    "flags": [true, null]
  })");
  ASSERT_TRUE(outputs.ok()) << outputs.status();
  EXPECT_THAT(*outputs,
              ElementsAre(Pair("count", "3"), Pair("flags", "[true,null]"),
                          // Keys keep the file's order, not sorted.
                          Pair("get_stock_price",
                               R"({"price":237.5,"currency":"USD"})"),
                          Pair("lookup", "plain text")));
}

TEST(ParseOutputsJsonTest, RejectsWhatIsNotAnObject) {
  for (const char* text : {"", "{", "[1, 2]", "\"text\"", "42", "null"}) {
    absl::StatusOr<OutputsByFunction> outputs = ParseOutputsJson(text);
    EXPECT_EQ(outputs.status().code(), absl::StatusCode::kInvalidArgument)
        << text;
    EXPECT_THAT(outputs.status().message(), HasSubstr("--outputs")) << text;
  }
}

TEST(DemoToolOutputTest, GetStockPriceAnswersExactlyLikeTheSeed) {
  // The seed: json.dumps({"price": result, "currency": "USD"}).
  EXPECT_EQ(DemoToolOutput("get_stock_price", R"({"ticker":"AAPL"})"),
            R"({"price": 237.5, "currency": "USD"})");
  EXPECT_EQ(DemoToolOutput("get_stock_price", R"({"ticker": "GOOGL"})"),
            R"({"price": 191.3, "currency": "USD"})");
  EXPECT_EQ(DemoToolOutput("get_stock_price", R"({"ticker":"MSFT"})"),
            R"({"price": 452.8, "currency": "USD"})");
  // prices.get(ticker, 0.0)
  EXPECT_EQ(DemoToolOutput("get_stock_price", R"({"ticker":"TSLA"})"),
            R"({"price": 0.0, "currency": "USD"})");
}

TEST(DemoToolOutputTest, UnknownFunctionsGetTheSeedsError) {
  EXPECT_EQ(DemoToolOutput("get_weather", R"({"city":"Paris"})"),
            R"({"error": "Unknown function: get_weather"})");
  EXPECT_EQ(UnknownFunctionOutput("f"), R"({"error": "Unknown function: f"})");
}

TEST(DemoToolOutputTest, BadArgumentsAreReportedInTheOutput) {
  EXPECT_EQ(DemoToolOutput("get_stock_price", "{not json"),
            R"({"error": "Invalid arguments: expected a JSON object"})");
  EXPECT_EQ(DemoToolOutput("get_stock_price", R"({"symbol":"AAPL"})"),
            R"({"error": "Missing string argument: ticker"})");
  EXPECT_EQ(DemoToolOutput("calculator", R"({"expression": 5})"),
            R"({"error": "Missing string argument: expression"})");
}

TEST(DemoToolOutputTest, CalculatorEvaluatesTheExpression) {
  EXPECT_EQ(DemoToolOutput("calculator", R"({"expression":"1000 * 237.50"})"),
            R"({"result": 237500.0})");
  EXPECT_EQ(DemoToolOutput("calculate", R"({"expression":"2 + 3"})"),
            R"({"result": 5})");
  EXPECT_EQ(DemoToolOutput("calculator", R"({"expression":"1 / 0"})"),
            R"({"error": "division by zero"})");
}

TEST(EvaluateArithmeticTest, PythonSemantics) {
  struct Case {
    const char* expression;
    const char* result;
  };
  for (const Case& c : {
           Case{"2 + 3", "5"},
           Case{"2 + 3 * 4", "14"},
           Case{"(2 + 3) * 4", "20"},
           Case{"7 / 2", "3.5"},
           Case{"6 / 3", "2.0"},  // "/" is always a float in Python 3
           Case{"-3 - -2", "-1"},
           Case{"+4", "4"},
           Case{"-(1 + 1)", "-2"},
           Case{"1000 * 237.50", "237500.0"},
           Case{"0.1 + 0.2", "0.30000000000000004"},
           Case{".5 * 4", "2.0"},
           Case{"1e3 + 1", "1001.0"},
           Case{"  ( ( 1 ) )  ", "1"},
           Case{"0 * -1", "0"},
       }) {
    absl::StatusOr<std::string> result = EvaluateArithmetic(c.expression);
    ASSERT_TRUE(result.ok()) << c.expression << ": " << result.status();
    EXPECT_EQ(*result, c.result) << c.expression;
  }
}

TEST(EvaluateArithmeticTest, RejectsWhatItCannotRead) {
  for (const char* expression : {"", "1 +", "2 * (3", "3)", "abc", "1 2", "2e",
                                 "1 / (2 - 2)", "__import__('os')", "1e999"}) {
    EXPECT_EQ(EvaluateArithmetic(expression).status().code(),
              absl::StatusCode::kInvalidArgument)
        << expression;
  }
  EXPECT_EQ(
      EvaluateArithmetic(std::string(500, '(') + "1" + std::string(500, ')'))
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(PythonFloatTest, MatchesPythonRepr) {
  struct Case {
    double value;
    const char* repr;
  };
  for (const Case& c : {
           Case{237.5, "237.5"},
           Case{237500.0, "237500.0"},
           Case{0.0, "0.0"},
           Case{-0.0, "-0.0"},
           Case{191.3, "191.3"},
           Case{0.1, "0.1"},
           Case{1.0 / 3, "0.3333333333333333"},
           Case{100.0, "100.0"},
           Case{1e15, "1000000000000000.0"},
           Case{1e16, "1e+16"},
           Case{1.5e-5, "1.5e-05"},
           Case{0.0001, "0.0001"},
           Case{-2.5e22, "-2.5e+22"},
           Case{123456789.125, "123456789.125"},
       }) {
    EXPECT_EQ(PythonFloat(c.value), c.repr) << c.repr;
  }
}

TEST(AnswerToolCallTest, OutputsFileThenDemoToolsThenUnknown) {
  ToolAnswerSources sources;
  sources.outputs = OutputsByFunction{{"get_stock_price", "{\"price\":1}"}};
  const v1::RequiredToolCall price =
      Call("call_1", "get_stock_price", R"({"ticker":"AAPL"})");
  const v1::RequiredToolCall sum =
      Call("call_2", "calculator", R"({"expression":"1+1"})");
  EXPECT_EQ(*AnswerToolCall(sources, price), "{\"price\":1}");
  // Outputs given: no prompt, the seed's error for what the file lacks.
  EXPECT_EQ(*AnswerToolCall(sources, sum),
            R"({"error": "Unknown function: calculator"})");
  sources.demo_tools = true;
  EXPECT_EQ(*AnswerToolCall(sources, price), "{\"price\":1}");
  EXPECT_EQ(*AnswerToolCall(sources, sum), R"({"result": 2})");
}

TEST(AnswerToolCallTest, PromptsOneLinePerCall) {
  std::istringstream in("{\"price\": 1}\r\nsecond\n");
  std::ostringstream prompts;
  ToolAnswerSources sources;
  sources.prompt_in = &in;
  sources.prompt_out = &prompts;
  EXPECT_EQ(*AnswerToolCall(sources, Call("call_1", "f", "{}")),
            "{\"price\": 1}");
  EXPECT_EQ(*AnswerToolCall(sources, Call("call_2", "g", "{}")), "second");
  EXPECT_EQ(prompts.str(), "output for f (call_1)> output for g (call_2)> ");
  // Input closed: the call cannot be answered.
  absl::StatusOr<std::string> closed =
      AnswerToolCall(sources, Call("call_3", "h", "{}"));
  EXPECT_EQ(closed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(closed.status().message(), HasSubstr("call_3"));
}

TEST(AnswerToolCallTest, NoSourceAtAllIsAnError) {
  EXPECT_EQ(AnswerToolCall(ToolAnswerSources(), Call("call_1", "f", "{}"))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace assistants::cli
