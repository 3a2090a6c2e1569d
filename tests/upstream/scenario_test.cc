// Unit tests of fake-openai's model (upstream/fake/scenario.h): the default
// deterministic behaviour, its helpers, script parsing and request
// validation, without any HTTP.
#include "upstream/fake/scenario.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace assistants::fake_openai {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ToolDef Tool(const std::string& name, const std::string& description,
             const Json& parameters) {
  ToolDef t;
  t.name = name;
  t.description = description;
  t.parameters = parameters;
  return t;
}

Json StringParams(const std::string& prop) {
  return {{"type", "object"},
          {"properties", {{prop, {{"type", "string"}}}}},
          {"required", {prop}}};
}

ConvItem User(const std::string& text) {
  ConvItem i;
  i.kind = ConvItem::kMessage;
  i.role = "user";
  i.text = text;
  return i;
}

ConvItem Call(const std::string& name, const std::string& args,
              const std::string& id) {
  ConvItem i;
  i.kind = ConvItem::kFunctionCall;
  i.name = name;
  i.arguments = args;
  i.call_id = id;
  return i;
}

ConvItem Output(const std::string& id, const std::string& output) {
  ConvItem i;
  i.kind = ConvItem::kFunctionOutput;
  i.call_id = id;
  i.output = output;
  return i;
}

const char kSeed[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would "
    "be worth?";

TEST(MatchToolsTest, NameWordsAndDescriptionWords) {
  const std::vector<ToolDef> tools = {
      Tool("get_stock_price", "", StringParams("ticker")),
      Tool("send_email", "Deliver a message by electronic mail",
           StringParams("to")),
      Tool("lookupWeather", "", StringParams("city"))};
  std::vector<std::string> names;
  for (const ToolDef* t : MatchTools(tools, kSeed)) names.push_back(t->name);
  EXPECT_THAT(names, ElementsAre("get_stock_price"));
  names.clear();
  for (const ToolDef* t :
       MatchTools(tools, "Please EMAIL Bob and check the weather"))
    names.push_back(t->name);
  EXPECT_THAT(names, ElementsAre("send_email", "lookupWeather"));
  EXPECT_TRUE(MatchTools(tools, "Tell me a joke").empty());
  // "get" alone never matches.
  EXPECT_TRUE(MatchTools(tools, "get it").empty());
}

TEST(BuildArgumentsTest, ExtractsValuesFromText) {
  EXPECT_EQ(BuildArguments(StringParams("ticker"), kSeed),
            (Json{{"ticker", "AAPL"}}));
  EXPECT_EQ(BuildArguments(StringParams("city"), "Weather in Paris today?"),
            (Json{{"city", "Paris"}}));
  EXPECT_EQ(BuildArguments(StringParams("title"), "Create a note 'Buy milk'"),
            (Json{{"title", "Buy milk"}}));
  const Json numeric = {
      {"type", "object"},
      {"properties",
       {{"a", {{"type", "number"}}},
        {"b", {{"type", "integer"}}},
        {"unit", {{"type", "string"}, {"enum", {"celsius", "fahrenheit"}}}},
        {"flag", {{"type", "boolean"}}}}},
      {"required", {"a", "b", "unit", "flag"}}};
  EXPECT_EQ(
      BuildArguments(numeric, "Add 2.5 and 7 in fahrenheit"),
      (Json{{"a", 2.5}, {"b", 7}, {"unit", "fahrenheit"}, {"flag", false}}));
  // Optional properties are left out when `required` is given.
  const Json optional = {
      {"type", "object"},
      {"properties",
       {{"q", {{"type", "string"}}}, {"n", {{"type", "integer"}}}}},
      {"required", {"q"}}};
  EXPECT_EQ(BuildArguments(optional, "search for cats").size(), 1u);
}

TEST(ExpressionTest, ExtractAndEvaluate) {
  EXPECT_EQ(ExtractExpression("what is 1000 * 237.5?"), "1000 * 237.5");
  EXPECT_EQ(ExtractExpression("Compute (3 + 4) * 12 please"), "(3 + 4) * 12");
  EXPECT_EQ(ExtractExpression("what is 6 times 7"), "6 * 7");
  EXPECT_EQ(ExtractExpression("1,000 divided by 8"), "1000 / 8");
  EXPECT_EQ(ExtractExpression("no maths here 42"), "");
  double v = 0;
  bool is_float = false;
  ASSERT_TRUE(EvaluateExpression("1000 * 237.5", &v, &is_float));
  EXPECT_EQ(v, 237500);
  EXPECT_EQ(FormatPythonNumber(v, is_float), "237500.0");
  ASSERT_TRUE(EvaluateExpression("12 * (3 + 4)", &v, &is_float));
  EXPECT_EQ(FormatPythonNumber(v, is_float), "84");
  ASSERT_TRUE(EvaluateExpression("2 ** 10 - -1", &v, &is_float));
  EXPECT_EQ(v, 1025);
  EXPECT_FALSE(EvaluateExpression("1 / 0", &v, &is_float));
  EXPECT_FALSE(EvaluateExpression("1 +", &v, &is_float));
  EXPECT_EQ(FormatMoney(237500), "237,500.00");
  EXPECT_EQ(FormatMoney(237.5), "237.50");
  EXPECT_EQ(FormatMoney(-1234567.891), "-1,234,567.89");
}

TEST(SplitIntoDeltasTest, KeepsUtf8AndJoinsBack) {
  const std::string text = "Un café à Tokyo (日本) 🎉 internationalisation!";
  const std::vector<std::string> d = SplitIntoDeltas(text, 0);
  EXPECT_GT(d.size(), 8u);
  std::string joined;
  for (const std::string& piece : d) {
    EXPECT_FALSE(piece.empty());
    EXPECT_FALSE((static_cast<unsigned char>(piece[0]) & 0xC0) == 0x80)
        << "piece starts inside a UTF-8 sequence";
    joined += piece;
  }
  EXPECT_EQ(joined, text);
  const std::vector<std::string> five = SplitIntoDeltas(text, 5);
  EXPECT_EQ(five.size(), 5u);
  EXPECT_EQ(SplitIntoDeltas("ab", 10).size(), 2u);
  EXPECT_TRUE(SplitIntoDeltas("", 0).empty());
}

TEST(DecideDefaultTest, SeedScenario) {
  ModelRequest r;
  r.tools = {Tool("get_stock_price", "Get the stock price for a ticker",
                  StringParams("ticker"))};
  r.items = {User(kSeed)};
  Completion c = DecideDefault(r);
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_FALSE(c.has_text);
  EXPECT_EQ(c.calls[0].name, "get_stock_price");
  EXPECT_EQ(c.calls[0].arguments, R"({"ticker":"AAPL"})");

  r.items.push_back(Call("get_stock_price", R"({"ticker":"AAPL"})", "c1"));
  r.items.push_back(Output("c1", R"({"price": 237.5, "currency": "USD"})"));
  c = DecideDefault(r);
  EXPECT_TRUE(c.calls.empty());
  EXPECT_EQ(c.text,
            "AAPL is trading at 237.50 USD, so 1000 shares would be worth "
            "237,500.00 USD.");
}

TEST(DecideDefaultTest, CalculatorIsDeferredUntilThePriceIsKnown) {
  ModelRequest r;
  r.tools = {Tool("get_stock_price", "", StringParams("ticker")),
             Tool("calculator", "Evaluate an arithmetic expression",
                  StringParams("expression"))};
  r.items = {User(kSeed)};
  Completion c = DecideDefault(r);
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(c.calls[0].name, "get_stock_price");
  r.items.push_back(Call("get_stock_price", R"({"ticker":"AAPL"})", "c1"));
  r.items.push_back(Output("c1", R"({"price": 237.5, "currency": "USD"})"));
  c = DecideDefault(r);
  ASSERT_EQ(c.calls.size(), 1u);
  EXPECT_EQ(c.calls[0].name, "calculator");
  EXPECT_EQ(c.calls[0].arguments, R"({"expression":"1000 * 237.5"})");
  r.items.push_back(Call("calculator", c.calls[0].arguments, "c2"));
  r.items.push_back(Output("c2", "237500.0"));
  c = DecideDefault(r);
  ASSERT_TRUE(c.has_text);
  EXPECT_EQ(c.text,
            "AAPL is trading at 237.50 USD, so 1000 shares would be worth "
            "237,500.00 USD.");
}

TEST(DecideDefaultTest, ToolChoiceAndFallbacks) {
  ModelRequest r;
  r.tools = {Tool("get_weather", "", StringParams("city"))};
  r.items = {User("Tell me a joke")};
  EXPECT_TRUE(DecideDefault(r).calls.empty());
  r.tool_choice = "required";
  EXPECT_EQ(DecideDefault(r).calls.size(), 1u);
  r.tool_choice = "none";
  r.items = {User("What's the weather in Oslo?")};
  EXPECT_TRUE(DecideDefault(r).calls.empty());
  r.tool_choice = "function";
  r.tool_choice_name = "get_weather";
  r.items = {User("hello")};
  EXPECT_EQ(DecideDefault(r).calls.size(), 1u);

  ModelRequest plain;
  plain.items = {User("How are you?")};
  const Completion c = DecideDefault(plain);
  EXPECT_TRUE(c.has_text);
  EXPECT_THAT(c.text, HasSubstr("How are you?"));

  ModelRequest unrelated;
  unrelated.items = {Call("lookup", "{}", "c9"), Output("c9", "plain words")};
  EXPECT_THAT(DecideDefault(unrelated).text, HasSubstr("plain words"));
}

TEST(DecideDefaultTest, CodeInterpreterComputes) {
  ModelRequest r;
  r.code_interpreter = true;
  r.items = {User("Can you compute 2 ** 8 + 1?")};
  const Completion c = DecideDefault(r);
  ASSERT_TRUE(c.has_code_interpreter);
  EXPECT_EQ(c.ci_code, "result = 2 ** 8 + 1\nprint(result)");
  EXPECT_EQ(c.ci_logs, "257\n");
  EXPECT_EQ(c.text, "The result of 2 ** 8 + 1 is 257.");
}

TEST(DecideDefaultTest, StructuredOutputFollowsSchema) {
  ModelRequest r;
  r.api = Api::kResponses;
  r.text_format = {{"type", "json_schema"},
                   {"name", "city"},
                   {"schema", StringParams("city")}};
  r.items = {User("Describe Rome briefly")};
  const Completion c = DecideDefault(r);
  EXPECT_EQ(Json::parse(c.text), (Json{{"city", "Rome"}}));
}

TEST(ParseScriptTest, ParsesStepsAndRejectsNonsense) {
  std::vector<Step> steps;
  std::string error;
  ASSERT_TRUE(ParseScript(Json::parse(R"json({"responses":[
      {"text":"hi","tokens":3,"token_delay_ms":5,"repeat":2},
      {"tool_calls":[{"name":"f","arguments":"{bad"}]},
      {"status":429,"retry_after":1.5,"error":{"message":"slow"}},
      {"code_interpreter":{"code":"print(1)","logs":"1\n"},"failed":true}]})json"),
                          &steps, &error))
      << error;
  ASSERT_EQ(steps.size(), 4u);
  EXPECT_EQ(*steps[0].text, "hi");
  EXPECT_EQ(steps[0].repeat, 2);
  EXPECT_EQ(steps[1].tool_calls[0].arguments, "{bad");
  EXPECT_EQ(steps[2].status, 429);
  EXPECT_DOUBLE_EQ(steps[2].retry_after_s, 1.5);
  EXPECT_TRUE(steps[3].has_code_interpreter);
  EXPECT_TRUE(steps[3].failed);
  steps.clear();
  EXPECT_FALSE(ParseScript(Json::parse(R"({"responses":[{"status":200}]})"),
                           &steps, &error));
  EXPECT_FALSE(ParseScript(Json::parse(R"({"responses":[{"text":5}]})"), &steps,
                           &error));
  EXPECT_FALSE(ParseScript(Json::parse(R"({"steps":[]})"), &steps, &error));
}

TEST(FakeModelTest, ValidationMirrorsTheRealApi) {
  FakeModel model(1);
  Reply r = model.Handle(Api::kResponses, R"({"model":"m"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Json::parse(r.body)["error"]["param"], "input");
  r = model.Handle(Api::kResponses,
                   R"({"model":"m","input":"x","max_output_tokens":5})");
  EXPECT_EQ(Json::parse(r.body)["error"]["code"], "integer_below_min_value");
  r = model.Handle(Api::kResponses,
                   R"({"model":"m","input":[{"role":"assistant",
                       "content":[{"type":"input_text","text":"x"}]}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Json::parse(r.body)["error"]["param"], "input[0].content[0]");
  r = model.Handle(
      Api::kResponses,
      R"({"model":"m","input":"x","previous_response_id":"resp_no"})");
  EXPECT_EQ(Json::parse(r.body)["error"]["code"],
            "previous_response_not_found");
  r = model.Handle(Api::kResponses, R"({"model":"m","input":"x","tools":[
      {"type":"function","name":"f","strict":true,
       "parameters":{"type":"object","properties":{"a":{"type":"string"}}}}]})");
  EXPECT_EQ(Json::parse(r.body)["error"]["code"],
            "invalid_function_parameters");
  r = model.Handle(Api::kChatCompletions,
                   R"({"model":"m","messages":[{"role":"user","content":"x"}],
                       "stream_options":{"include_usage":true}})");
  EXPECT_EQ(Json::parse(r.body)["error"]["param"], "stream_options");
  r = model.Handle(Api::kChatCompletions,
                   R"({"model":"m","messages":[
                       {"role":"user","content":"x"},
                       {"role":"assistant","tool_calls":[{"id":"c1",
                        "type":"function","function":{"name":"f",
                        "arguments":"{}"}}]},
                       {"role":"user","content":"y"}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(Json::parse(r.body)["error"]["message"].get<std::string>(),
              HasSubstr("c1"));
}

TEST(FakeModelTest, UsageRuleAndScriptFifo) {
  FakeModel model(7);
  std::vector<Step> steps;
  std::string error;
  ASSERT_TRUE(ParseScript(
      Json::parse(R"({"responses":[{"text":"abcd","tokens":4,"repeat":2}]})"),
      &steps, &error));
  model.Enqueue(std::move(steps));
  const std::string body = R"({"model":"m","input":"12345678"})";
  for (int i = 0; i < 2; ++i) {
    const Json j = Json::parse(model.Handle(Api::kResponses, body).body);
    EXPECT_EQ(j["output"][0]["content"][0]["text"], "abcd");
    EXPECT_EQ(j["usage"]["input_tokens"], 2);   // 8 chars / 4.
    EXPECT_EQ(j["usage"]["output_tokens"], 4);  // 4 deltas.
  }
  EXPECT_EQ(model.queued(), 0u);
  const Json j = Json::parse(model.Handle(Api::kResponses, body).body);
  EXPECT_NE(j["output"][0]["content"][0]["text"], "abcd");
}

}  // namespace
}  // namespace assistants::fake_openai
