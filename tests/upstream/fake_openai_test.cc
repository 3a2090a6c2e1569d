// End-to-end tests of the fake-openai binary: start it as a child process on
// a free port, speak HTTP to it with libcurl, and check the wire formats
// (Responses SSE events, Chat Completions chunks), errors, scripted faults,
// request recording, connection statistics and the default behaviour.
#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/server_process.h"

namespace {

using Json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// One fake-openai child process (stopped with SIGTERM, or killed, when the
// test ends).
class FakeProcess {
 public:
  bool Start(const std::vector<std::string>& extra, std::string* error) {
    return process_.Start(assistants::test_support::FakeOpenAiBinary(), extra,
                          error);
  }
  // SIGTERM; returns the wait status (0 = exit code 0).
  int Stop() { return process_.Stop(); }
  std::string base() const {
    return absl::StrCat("http://127.0.0.1:", process_.port());
  }

 private:
  assistants::test_support::ServerProcess process_;
};

struct HttpResult {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string body;
  Json json() const { return Json::parse(body, nullptr, false); }
};

size_t WriteBody(char* data, size_t size, size_t n, void* arg) {
  static_cast<std::string*>(arg)->append(data, size * n);
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* arg) {
  std::string line(data, size * n);
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string key = line.substr(0, colon);
    for (char& c : key) c = static_cast<char>(std::tolower(c));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n'))
      value.pop_back();
    (*static_cast<std::map<std::string, std::string>*>(arg))[key] = value;
  }
  return size * n;
}

// A libcurl easy handle; reusing one keeps its connection alive.
class Client {
 public:
  explicit Client(std::string base) : base_(std::move(base)) {
    curl_ = curl_easy_init();
  }
  ~Client() { curl_easy_cleanup(curl_); }

  HttpResult Call(const std::string& method, const std::string& path,
                  const std::string& body = "",
                  const std::string& auth = "Bearer sk-fake",
                  long timeout_ms = 20000) {
    HttpResult r;
    curl_easy_reset(curl_);
    const std::string url = base_ + path;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    if (!auth.empty())
      headers = curl_slist_append(headers, ("Authorization: " + auth).c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
    if (!body.empty() || method == "POST") {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE,
                       static_cast<long>(body.size()));
    }
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &WriteBody);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &WriteHeader);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r.headers);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms);
    r.code = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(headers);
    return r;
  }

 private:
  std::string base_;
  CURL* curl_;
};

struct SseEvent {
  std::string event;
  std::string data;
  Json json() const { return Json::parse(data, nullptr, false); }
};

std::vector<SseEvent> ParseSse(const std::string& body) {
  std::vector<SseEvent> events;
  for (absl::string_view block : absl::StrSplit(body, "\n\n")) {
    if (block.empty()) continue;
    SseEvent e;
    for (absl::string_view line : absl::StrSplit(block, '\n')) {
      if (absl::StartsWith(line, "event: "))
        e.event = std::string(line.substr(7));
      if (absl::StartsWith(line, "data: "))
        e.data = std::string(line.substr(6));
    }
    events.push_back(e);
  }
  return events;
}

Json StockTool() {
  return Json::parse(R"({"type":"function","name":"get_stock_price",
    "description":"Get the latest stock price for a ticker symbol",
    "parameters":{"type":"object","properties":{"ticker":{"type":"string"}},
    "required":["ticker"],"additionalProperties":false},"strict":true})");
}

const char kSeedQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would "
    "be worth?";

class FakeOpenAiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_ALL); }

  void SetUp() override {
    std::string error;
    ASSERT_TRUE(fake_.Start({}, &error)) << error;
    client_ = std::make_unique<Client>(fake_.base());
  }

  HttpResult Post(const std::string& path, const Json& body) {
    return client_->Call("POST", path, body.dump());
  }
  void Script(const Json& steps) {
    HttpResult r = client_->Call("POST", "/_fake/script",
                                 Json{{"responses", steps}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
  }
  std::vector<std::string> Types(const std::vector<SseEvent>& events) {
    std::vector<std::string> types;
    for (const SseEvent& e : events) types.push_back(e.event);
    return types;
  }
  // Checks the Responses SSE invariants every stream must hold.
  void CheckResponsesStream(const std::vector<SseEvent>& events) {
    ASSERT_GE(events.size(), 3u);
    for (size_t i = 0; i < events.size(); ++i) {
      const Json j = events[i].json();
      ASSERT_FALSE(j.is_discarded()) << events[i].data;
      EXPECT_EQ(j["type"], events[i].event);
      EXPECT_EQ(j["sequence_number"], i);
    }
    EXPECT_EQ(events[0].event, "response.created");
    EXPECT_EQ(events[1].event, "response.in_progress");
    EXPECT_THAT(events[0].json()["response"]["id"].get<std::string>(),
                StartsWith("resp_"));
    EXPECT_EQ(events[0].json()["response"]["status"], "in_progress");
  }

  FakeProcess fake_;
  std::unique_ptr<Client> client_;
};

TEST_F(FakeOpenAiTest, HealthzAndUnknownPath) {
  EXPECT_EQ(client_->Call("GET", "/healthz").status, 200);
  HttpResult r = client_->Call("POST", "/v1/nope", "{}");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json()["error"]["type"], "invalid_request_error");
  EXPECT_EQ(r.json()["error"]["message"], "Invalid URL (POST /v1/nope)");
}

TEST_F(FakeOpenAiTest, ResponsesStreamsTextInOrder) {
  HttpResult r = Post("/v1/responses", {{"model", "gpt-4o"},
                                        {"input", "Tell me about Lisbon."},
                                        {"stream", true}});
  ASSERT_EQ(r.status, 200);
  EXPECT_THAT(r.headers["content-type"], StartsWith("text/event-stream"));
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  EXPECT_THAT(r.headers["x-request-id"], StartsWith("req_"));
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr("[DONE]")));
  const std::vector<SseEvent> ev = ParseSse(r.body);
  CheckResponsesStream(ev);
  const std::vector<std::string> types = Types(ev);
  ASSERT_GE(types.size(), 9u);
  EXPECT_EQ(types[2], "response.output_item.added");
  EXPECT_EQ(types[3], "response.content_part.added");
  EXPECT_EQ(types[types.size() - 4], "response.output_text.done");
  EXPECT_EQ(types[types.size() - 3], "response.content_part.done");
  EXPECT_EQ(types[types.size() - 2], "response.output_item.done");
  EXPECT_EQ(types.back(), "response.completed");
  std::string text;
  int deltas = 0;
  const std::string item_id = ev[2].json()["item"]["id"];
  EXPECT_THAT(item_id, StartsWith("msg_"));
  for (size_t i = 4; i < ev.size() - 4; ++i) {
    ASSERT_EQ(ev[i].event, "response.output_text.delta");
    EXPECT_EQ(ev[i].json()["item_id"], item_id);
    text += ev[i].json()["delta"].get<std::string>();
    ++deltas;
  }
  EXPECT_GT(deltas, 3);
  EXPECT_THAT(text, HasSubstr("Tell me about Lisbon."));
  EXPECT_EQ(ev[ev.size() - 4].json()["text"], text);
  const Json done = ev.back().json()["response"];
  EXPECT_EQ(done["status"], "completed");
  EXPECT_EQ(done["output"][0]["content"][0]["text"], text);
  EXPECT_EQ(done["usage"]["output_tokens"], deltas);
  EXPECT_EQ(done["usage"]["total_tokens"],
            done["usage"]["input_tokens"].get<int>() + deltas);
  EXPECT_TRUE(done["usage"]["input_tokens_details"].contains("cached_tokens"));
  EXPECT_TRUE(
      done["usage"]["output_tokens_details"].contains("reasoning_tokens"));
}

TEST_F(FakeOpenAiTest, SeedScenarioToolCallThenAnswer) {
  const Json tools = Json::array({StockTool()});
  HttpResult r = Post("/v1/responses", {{"model", "gpt-4o"},
                                        {"input", kSeedQuestion},
                                        {"tools", tools},
                                        {"stream", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<SseEvent> ev = ParseSse(r.body);
  CheckResponsesStream(ev);
  EXPECT_EQ(ev[2].event, "response.output_item.added");
  const Json item = ev[2].json()["item"];
  EXPECT_EQ(item["type"], "function_call");
  EXPECT_THAT(item["id"].get<std::string>(), StartsWith("fc_"));
  EXPECT_THAT(item["call_id"].get<std::string>(), StartsWith("call_"));
  EXPECT_EQ(item["arguments"], "");
  std::string args;
  size_t i = 3;
  for (; ev[i].event == "response.function_call_arguments.delta"; ++i)
    args += ev[i].json()["delta"].get<std::string>();
  EXPECT_EQ(args, R"({"ticker":"AAPL"})");
  EXPECT_EQ(ev[i].event, "response.function_call_arguments.done");
  EXPECT_EQ(ev[i].json()["arguments"], args);
  EXPECT_EQ(ev[i].json()["name"], "get_stock_price");
  EXPECT_EQ(ev[i + 1].event, "response.output_item.done");
  EXPECT_EQ(ev[i + 2].event, "response.completed");
  EXPECT_EQ(ev.size(), i + 3);
  const Json done = ev.back().json()["response"];
  ASSERT_EQ(done["output"].size(), 1u);

  // Second turn, stateless: the call and its output sent back as input.
  const Json input =
      Json::array({{{"role", "user"}, {"content", kSeedQuestion}},
                   {{"type", "function_call"},
                    {"call_id", item["call_id"]},
                    {"name", "get_stock_price"},
                    {"arguments", args}},
                   {{"type", "function_call_output"},
                    {"call_id", item["call_id"]},
                    {"output", R"({"price": 237.5, "currency": "USD"})"}}});
  HttpResult r2 =
      Post("/v1/responses",
           {{"model", "gpt-4o"}, {"input", input}, {"tools", tools}});
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(r2.json()["output"][0]["content"][0]["text"],
            "AAPL is trading at 237.50 USD, so 1000 shares would be worth "
            "237,500.00 USD.");

  // Same via previous_response_id.
  HttpResult r3 =
      Post("/v1/responses",
           {{"model", "gpt-4o"},
            {"previous_response_id", done["id"]},
            {"tools", tools},
            {"input", Json::array({{{"type", "function_call_output"},
                                    {"call_id", item["call_id"]},
                                    {"output", R"({"price": 237.5,
                                 "currency": "USD"})"}}})}});
  ASSERT_EQ(r3.status, 200) << r3.body;
  EXPECT_THAT(r3.json()["output"][0]["content"][0]["text"].get<std::string>(),
              HasSubstr("237,500.00 USD"));
}

TEST_F(FakeOpenAiTest, ResponsesParallelCalls) {
  auto tool = [](const std::string& name, const std::string& desc) {
    return Json{{"type", "function"},
                {"name", name},
                {"description", desc},
                {"parameters",
                 {{"type", "object"},
                  {"properties", {{"city", {{"type", "string"}}}}},
                  {"required", {"city"}}}}};
  };
  const Json tools = Json::array({tool("get_weather", "Current weather"),
                                  tool("get_local_time", "Local time")});
  HttpResult r = Post("/v1/responses",
                      {{"model", "gpt-4o"},
                       {"input", "What's the weather and the time in Paris?"},
                       {"tools", tools},
                       {"stream", true}});
  const std::vector<SseEvent> ev = ParseSse(r.body);
  CheckResponsesStream(ev);
  const Json out = ev.back().json()["response"]["output"];
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["name"], "get_weather");
  EXPECT_EQ(out[1]["name"], "get_local_time");
  EXPECT_EQ(out[0]["arguments"], R"({"city":"Paris"})");
  EXPECT_NE(out[0]["call_id"], out[1]["call_id"]);
  int added = 0;
  for (const SseEvent& e : ev) {
    if (e.event == "response.output_item.added") {
      EXPECT_EQ(e.json()["output_index"], added++);
    }
  }
  EXPECT_EQ(added, 2);

  // parallel_tool_calls: false -> one call.
  HttpResult one = Post("/v1/responses",
                        {{"model", "gpt-4o"},
                         {"input", "What's the weather and the time in Paris?"},
                         {"tools", tools},
                         {"parallel_tool_calls", false}});
  EXPECT_EQ(one.json()["output"].size(), 1u);
}

TEST_F(FakeOpenAiTest, ResponsesCodeInterpreter) {
  HttpResult r =
      Post("/v1/responses",
           {{"model", "gpt-4o"},
            {"input", "Please calculate 12 * (3 + 4) for me."},
            {"tools", Json::array({{{"type", "code_interpreter"},
                                    {"container", {{"type", "auto"}}}}})},
            {"include", Json::array({"code_interpreter_call.outputs"})},
            {"stream", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<SseEvent> ev = ParseSse(r.body);
  CheckResponsesStream(ev);
  std::vector<std::string> types = Types(ev);
  std::vector<std::string> ci;
  for (const std::string& t : types) {
    if (absl::StrContains(t, "code_interpreter") &&
        (ci.empty() || ci.back() != t))
      ci.push_back(t);
  }
  EXPECT_THAT(ci, ElementsAre("response.code_interpreter_call.in_progress",
                              "response.code_interpreter_call_code.delta",
                              "response.code_interpreter_call_code.done",
                              "response.code_interpreter_call.interpreting",
                              "response.code_interpreter_call.completed"));
  const Json out = ev.back().json()["response"]["output"];
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["type"], "code_interpreter_call");
  EXPECT_THAT(out[0]["id"].get<std::string>(), StartsWith("ci_"));
  EXPECT_THAT(out[0]["code"].get<std::string>(), HasSubstr("12 * (3 + 4)"));
  EXPECT_EQ(out[0]["outputs"][0]["type"], "logs");
  EXPECT_EQ(out[0]["outputs"][0]["logs"], "84\n");
  EXPECT_EQ(out[1]["content"][0]["text"], "The result of 12 * (3 + 4) is 84.");
}

TEST_F(FakeOpenAiTest, ChatStreamTextWithUsageAndDone) {
  HttpResult r = Post("/v1/chat/completions",
                      {{"model", "gpt-4o-mini"},
                       {"messages", {{{"role", "user"}, {"content", "Hello"}}}},
                       {"stream", true},
                       {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.headers["content-type"], StartsWith("text/event-stream"));
  const std::vector<SseEvent> ev = ParseSse(r.body);
  ASSERT_GE(ev.size(), 5u);
  EXPECT_EQ(ev.back().data, "[DONE]");
  for (const SseEvent& e : ev) EXPECT_TRUE(e.event.empty());
  const Json first = ev[0].json();
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_THAT(first["id"].get<std::string>(), StartsWith("chatcmpl-"));
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  const size_t last_choice = ev.size() - 3;
  for (size_t i = 0; i < last_choice; ++i) {
    const Json c = ev[i].json();
    EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
    EXPECT_TRUE(c["usage"].is_null());
    EXPECT_EQ(c["id"], first["id"]);
    if (c["choices"][0]["delta"].contains("content"))
      text += c["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_THAT(text, HasSubstr("Hello"));
  EXPECT_EQ(ev[last_choice].json()["choices"][0]["finish_reason"], "stop");
  const Json usage_chunk = ev[ev.size() - 2].json();
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"],
            static_cast<int>(last_choice) - 1);
  EXPECT_EQ(usage_chunk["usage"]["total_tokens"],
            usage_chunk["usage"]["prompt_tokens"].get<int>() +
                usage_chunk["usage"]["completion_tokens"].get<int>());
}

TEST_F(FakeOpenAiTest, ChatStreamParallelToolCalls) {
  Script(Json::array({{{"tool_calls",
                        {{{"name", "a"}, {"arguments", R"({"x":1})"}},
                         {{"name", "b"},
                          {"arguments", R"({"y":"two"})"},
                          {"call_id", "call_fixed"}}}},
                       {"tokens", 3}}}));
  const Json tools =
      Json::array({{{"type", "function"}, {"function", {{"name", "a"}}}},
                   {{"type", "function"}, {"function", {{"name", "b"}}}}});
  HttpResult r = Post("/v1/chat/completions",
                      {{"model", "gpt-4o"},
                       {"messages", {{{"role", "user"}, {"content", "go"}}}},
                       {"tools", tools},
                       {"stream", true}});
  const std::vector<SseEvent> ev = ParseSse(r.body);
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev.back().data, "[DONE]");
  std::map<int, std::string> args;
  std::map<int, std::string> ids;
  for (size_t i = 0; i + 2 < ev.size(); ++i) {
    const Json delta = ev[i].json()["choices"][0]["delta"];
    EXPECT_TRUE(ev[i].json()["choices"][0]["finish_reason"].is_null());
    if (!delta.contains("tool_calls")) continue;
    for (const Json& tc : delta["tool_calls"]) {
      const int index = tc["index"];
      if (tc.contains("id")) {
        EXPECT_EQ(ids.count(index), 0u);
        ids[index] = tc["id"];
        EXPECT_EQ(tc["type"], "function");
        EXPECT_EQ(tc["function"]["arguments"], "");
        EXPECT_TRUE(tc["function"].contains("name"));
      } else {
        EXPECT_FALSE(tc["function"].contains("name"));
      }
      args[index] += tc["function"]["arguments"].get<std::string>();
    }
  }
  EXPECT_EQ(args[0], R"({"x":1})");
  EXPECT_EQ(args[1], R"({"y":"two"})");
  EXPECT_EQ(ids[1], "call_fixed");
  EXPECT_EQ(ev[ev.size() - 2].json()["choices"][0]["finish_reason"],
            "tool_calls");
}

TEST_F(FakeOpenAiTest, NonStreamBodies) {
  HttpResult chat =
      Post("/v1/chat/completions",
           {{"model", "gpt-4o"},
            {"messages", {{{"role", "user"}, {"content", kSeedQuestion}}}},
            {"tools",
             Json::array({{{"type", "function"},
                           {"function",
                            {{"name", "get_stock_price"},
                             {"parameters", StockTool()["parameters"]}}}}})}});
  ASSERT_EQ(chat.status, 200) << chat.body;
  EXPECT_THAT(chat.headers["content-type"], StartsWith("application/json"));
  const Json c = chat.json();
  EXPECT_EQ(c["object"], "chat.completion");
  EXPECT_EQ(c["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_TRUE(c["choices"][0]["message"]["content"].is_null());
  const Json call = c["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(call["function"]["arguments"], R"({"ticker":"AAPL"})");
  EXPECT_TRUE(c["usage"].contains("prompt_tokens"));

  // The chat seed second turn uses the tool output.
  const Json messages =
      Json::array({{{"role", "user"}, {"content", kSeedQuestion}},
                   {{"role", "assistant"},
                    {"content", nullptr},
                    {"tool_calls", Json::array({call})}},
                   {{"role", "tool"},
                    {"tool_call_id", call["id"]},
                    {"content", R"({"price": 237.5, "currency": "USD"})"}}});
  HttpResult chat2 = Post("/v1/chat/completions",
                          {{"model", "gpt-4o"}, {"messages", messages}});
  ASSERT_EQ(chat2.status, 200) << chat2.body;
  EXPECT_EQ(chat2.json()["choices"][0]["message"]["content"],
            "AAPL is trading at 237.50 USD, so 1000 shares would be worth "
            "237,500.00 USD.");
  EXPECT_EQ(chat2.json()["choices"][0]["finish_reason"], "stop");

  HttpResult resp =
      Post("/v1/responses", {{"model", "gpt-4o"}, {"input", "hi"}});
  ASSERT_EQ(resp.status, 200);
  const Json j = resp.json();
  EXPECT_EQ(j["object"], "response");
  EXPECT_EQ(j["status"], "completed");
  EXPECT_EQ(j["output"][0]["type"], "message");
  EXPECT_EQ(j["output"][0]["role"], "assistant");
  // Stored responses can be fetched back.
  HttpResult got =
      client_->Call("GET", "/v1/responses/" + j["id"].get<std::string>());
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.json()["id"], j["id"]);
}

TEST_F(FakeOpenAiTest, AuthErrors) {
  HttpResult missing = client_->Call("POST", "/v1/responses",
                                     R"({"model":"m","input":"x"})", "");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(missing.json()["error"]["type"], "invalid_request_error");
  EXPECT_EQ(missing.json()["error"]["code"], "invalid_api_key");
  HttpResult wrong = client_->Call("POST", "/v1/chat/completions",
                                   R"({"model":"m","messages":[]})",
                                   "Bearer sk-wrong-key-123");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.json()["error"]["code"], "invalid_api_key");
  EXPECT_THAT(wrong.json()["error"]["message"].get<std::string>(),
              ::testing::Not(HasSubstr("sk-wrong-key-123")));
}

TEST_F(FakeOpenAiTest, ValidationErrors) {
  HttpResult bad = client_->Call("POST", "/v1/responses", "{not json");
  EXPECT_EQ(bad.status, 400);
  EXPECT_TRUE(bad.json()["error"]["param"].is_null());
  HttpResult no_model = Post("/v1/responses", {{"input", "x"}});
  EXPECT_EQ(no_model.status, 400);
  EXPECT_EQ(no_model.json()["error"]["param"], "model");
  // Chat-style nested function tools are wrong on the Responses API.
  HttpResult nested = Post(
      "/v1/responses",
      {{"model", "m"},
       {"input", "x"},
       {"tools", {{{"type", "function"}, {"function", {{"name", "f"}}}}}}});
  EXPECT_EQ(nested.status, 400);
  EXPECT_EQ(nested.json()["error"]["param"], "tools[0].name");
  // Flat tools are wrong on Chat Completions.
  HttpResult flat = Post("/v1/chat/completions",
                         {{"model", "m"},
                          {"messages", {{{"role", "user"}, {"content", "x"}}}},
                          {"tools", {{{"type", "function"}, {"name", "f"}}}}});
  EXPECT_EQ(flat.status, 400);
  EXPECT_EQ(flat.json()["error"]["param"], "tools[0].function");
  HttpResult orphan =
      Post("/v1/responses", {{"model", "m"},
                             {"input",
                              {{{"type", "function_call_output"},
                                {"call_id", "call_x"},
                                {"output", "1"}}}}});
  EXPECT_EQ(orphan.status, 400);
  EXPECT_THAT(orphan.json()["error"]["message"].get<std::string>(),
              HasSubstr("call_x"));
  HttpResult tool_first =
      Post("/v1/chat/completions",
           {{"model", "m"},
            {"messages",
             {{{"role", "tool"}, {"tool_call_id", "c"}, {"content", "1"}}}}});
  EXPECT_EQ(tool_first.status, 400);
  HttpResult unknown =
      Post("/v1/responses", {{"model", "m"}, {"input", "x"}, {"messages", 1}});
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(unknown.json()["error"]["code"], "unknown_parameter");
  HttpResult method = client_->Call("GET", "/v1/responses");
  EXPECT_EQ(method.status, 405);
}

TEST_F(FakeOpenAiTest, ScriptedHttpErrors) {
  Script(Json::array(
      {{{"status", 429}, {"retry_after", 2}},
       {{"status", 429},
        {"retry_after_ms", 1500},
        {"error", {{"code", "insufficient_quota"}, {"message", "quota"}}}},
       {{"status", 500}, {"repeat", 2}},
       {{"status", 503}}}));
  const Json req = {{"model", "gpt-4o"}, {"input", "x"}, {"stream", true}};
  HttpResult r1 = Post("/v1/responses", req);
  EXPECT_EQ(r1.status, 429);
  EXPECT_EQ(r1.headers["retry-after"], "2");
  EXPECT_EQ(r1.json()["error"]["code"], "rate_limit_exceeded");
  HttpResult r2 = Post("/v1/responses", req);
  EXPECT_EQ(r2.status, 429);
  EXPECT_EQ(r2.headers["retry-after-ms"], "1500");
  EXPECT_EQ(r2.json()["error"]["type"], "insufficient_quota");
  EXPECT_EQ(r2.json()["error"]["code"], "insufficient_quota");
  EXPECT_EQ(Post("/v1/responses", req).status, 500);
  HttpResult r4 = Post("/v1/responses", req);
  EXPECT_EQ(r4.status, 500);
  EXPECT_EQ(r4.json()["error"]["type"], "server_error");
  EXPECT_EQ(Post("/v1/responses", req).status, 503);
  EXPECT_EQ(Post("/v1/responses", req).status, 200);  // Queue empty.
}

TEST_F(FakeOpenAiTest, DropMidStream) {
  Script(Json::array(
      {{{"text", "one two three four five six"}, {"drop_after_events", 4}}}));
  HttpResult r =
      Post("/v1/responses", {{"model", "m"}, {"input", "x"}, {"stream", true}});
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.code, CURLE_OK);  // Transfer closed mid-chunked-body.
  EXPECT_EQ(ParseSse(r.body).size(), 4u);
  // The server survives and keeps serving.
  EXPECT_EQ(client_->Call("GET", "/healthz").status, 200);
}

TEST_F(FakeOpenAiTest, StallMidStreamTimesOut) {
  Script(Json::array({{{"stall_after_events", 2}}}));
  const auto start = std::chrono::steady_clock::now();
  HttpResult r =
      client_->Call("POST", "/v1/chat/completions",
                    Json{{"model", "m"},
                         {"messages", {{{"role", "user"}, {"content", "x"}}}},
                         {"stream", true}}
                        .dump(),
                    "Bearer sk-fake", 600);
  EXPECT_EQ(r.code, CURLE_OPERATION_TIMEDOUT);
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(550));
  EXPECT_EQ(ParseSse(r.body).size(), 2u);
  Client other(fake_.base());
  EXPECT_EQ(other.Call("GET", "/healthz").status, 200);
}

TEST_F(FakeOpenAiTest, MalformedEvent) {
  Script(Json::array({{{"malformed_after_events", 2}}}));
  HttpResult r =
      Post("/v1/responses", {{"model", "m"}, {"input", "x"}, {"stream", true}});
  const std::vector<SseEvent> ev = ParseSse(r.body);
  ASSERT_GT(ev.size(), 3u);
  EXPECT_FALSE(ev[1].json().is_discarded());
  EXPECT_TRUE(ev[2].json().is_discarded());
  EXPECT_FALSE(ev[3].json().is_discarded());
}

TEST_F(FakeOpenAiTest, FailedAndIncomplete) {
  Script(Json::array(
      {{{"failed", {{"code", "server_error"}, {"message", "boom"}}}},
       {{"text", std::string(200, 'a')}, {"tokens", 40}}}));
  HttpResult f =
      Post("/v1/responses", {{"model", "m"}, {"input", "x"}, {"stream", true}});
  const std::vector<SseEvent> fe = ParseSse(f.body);
  CheckResponsesStream(fe);
  EXPECT_EQ(fe.back().event, "response.failed");
  EXPECT_EQ(fe.back().json()["response"]["status"], "failed");
  EXPECT_EQ(fe.back().json()["response"]["error"]["message"], "boom");

  HttpResult inc = Post("/v1/responses", {{"model", "m"},
                                          {"input", "x"},
                                          {"stream", true},
                                          {"max_output_tokens", 16}});
  const std::vector<SseEvent> ie = ParseSse(inc.body);
  CheckResponsesStream(ie);
  EXPECT_EQ(ie.back().event, "response.incomplete");
  const Json resp = ie.back().json()["response"];
  EXPECT_EQ(resp["status"], "incomplete");
  EXPECT_EQ(resp["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(resp["usage"]["output_tokens"], 16);
  EXPECT_EQ(resp["output"][0]["status"], "incomplete");
}

TEST_F(FakeOpenAiTest, TokenDelayPacesDeltas) {
  Script(Json::array({{{"text", "abcdef"},
                       {"tokens", 6},
                       {"token_delay_ms", 25},
                       {"first_byte_delay_ms", 50}}}));
  const auto start = std::chrono::steady_clock::now();
  HttpResult r = Post("/v1/chat/completions",
                      {{"model", "m"},
                       {"messages", {{{"role", "user"}, {"content", "x"}}}},
                       {"stream", true}});
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(50 + 6 * 25 - 10));
  EXPECT_EQ(ParseSse(r.body).size(), 1u + 6 + 1 + 1);
}

TEST_F(FakeOpenAiTest, RecordsRequestsWithRedactedAuth) {
  Post("/v1/responses", {{"model", "gpt-4o"}, {"input", "recorded"}});
  client_->Call("POST", "/v1/responses", "{}", "Bearer nope");
  HttpResult rec = client_->Call("GET", "/_fake/requests");
  ASSERT_EQ(rec.status, 200);
  const Json list = rec.json()["requests"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["method"], "POST");
  EXPECT_EQ(list[0]["path"], "/v1/responses");
  EXPECT_EQ(list[0]["headers"]["authorization"], "REDACTED");
  EXPECT_EQ(list[0]["authorized"], true);
  EXPECT_EQ(list[0]["body"]["input"], "recorded");
  EXPECT_EQ(list[1]["authorized"], false);
  EXPECT_THAT(rec.body, ::testing::Not(HasSubstr("sk-fake")));
  client_->Call("DELETE", "/_fake/requests");
  EXPECT_TRUE(
      client_->Call("GET", "/_fake/requests").json()["requests"].empty());
}

TEST_F(FakeOpenAiTest, StatsCountConnectionReuse) {
  Client keepalive(fake_.base());
  const Json before = keepalive.Call("GET", "/_fake/stats").json();
  const Json req = {{"model", "m"}, {"input", "x"}, {"stream", true}};
  keepalive.Call("POST", "/v1/responses", req.dump());
  keepalive.Call("POST", "/v1/responses", req.dump());
  const Json after = keepalive.Call("GET", "/_fake/stats").json();
  EXPECT_EQ(after["connections_accepted"], before["connections_accepted"]);
  EXPECT_EQ(after["requests"].get<int>(), before["requests"].get<int>() + 3);
  EXPECT_GT(after["streamed_events"].get<int>(),
            before["streamed_events"].get<int>() + 10);
  {
    Client fresh(fake_.base());
    fresh.Call("GET", "/healthz");
  }
  const Json later = keepalive.Call("GET", "/_fake/stats").json();
  EXPECT_EQ(later["connections_accepted"].get<int>(),
            after["connections_accepted"].get<int>() + 1);
  EXPECT_GE(later["open_connections"].get<int>(), 1);
}

// Reads a streamed reply until `stop_at` appears in the body, then closes
// the connection (the write callback refuses the data). Returns the curl
// code.
CURLcode StreamUntil(const std::string& base, const Json& body,
                     const std::string& stop_at) {
  struct Sink {
    std::string body;
    std::string stop_at;
  } sink{"", stop_at};
  CURL* curl = curl_easy_init();
  const std::string url = base + "/v1/responses";
  const std::string payload = body.dump();
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Authorization: Bearer sk-fake");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char* data, size_t size, size_t n, void* arg) -> size_t {
        auto* s = static_cast<Sink*>(arg);
        s->body.append(data, size * n);
        return absl::StrContains(s->body, s->stop_at) ? 0 : size * n;
      });
  const CURLcode code = curl_easy_perform(curl);
  curl_easy_cleanup(curl);  // Closes the connection.
  curl_slist_free_all(headers);
  return code;
}

TEST_F(FakeOpenAiTest, StatsCountStreamsAbortedByTheClient) {
  auto aborted = [&] {
    return client_->Call("GET", "/_fake/stats")
        .json()["streams_aborted"]
        .get<int>();
  };
  // Waits (bounded) for the counter to reach `want`.
  auto wait_for = [&](int want) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (aborted() < want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return aborted();
  };
  const Json req = {{"model", "m"}, {"input", "x"}, {"stream", true}};
  // A stream read to its end, and a stream the server drops, do not count.
  EXPECT_EQ(Post("/v1/responses", req).status, 200);
  Script(Json::array({{{"text", "one two three"}, {"drop_after_events", 3}}}));
  EXPECT_NE(Post("/v1/responses", req).code, CURLE_OK);
  EXPECT_EQ(aborted(), 0);

  // The client hangs up while the deltas are paced.
  Script(Json::array({{{"text", std::string(40, 'a')},
                       {"tokens", 40},
                       {"token_delay_ms", 20}}}));
  EXPECT_EQ(StreamUntil(fake_.base(), req, "output_text.delta"),
            CURLE_WRITE_ERROR);
  EXPECT_EQ(wait_for(1), 1);

  // The client gives up on a stalled stream.
  Script(Json::array({{{"stall_after_events", 2}}}));
  EXPECT_EQ(
      client_->Call("POST", "/v1/responses", req.dump(), "Bearer sk-fake", 300)
          .code,
      CURLE_OPERATION_TIMEDOUT);
  client_ = std::make_unique<Client>(fake_.base());  // Closes it.
  EXPECT_EQ(wait_for(2), 2);
  EXPECT_EQ(client_->Call("GET", "/_fake/stats").json()["active_replies"], 0);
}

TEST(FakeOpenAiProcessTest, ScenarioFileApiKeyAndSigterm) {
  char path[] = "/tmp/fake_openai_scenario_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string scenario =
      R"({"responses":[{"text":"from the file","tokens":2}]})";
  ASSERT_EQ(write(fd, scenario.data(), scenario.size()),
            static_cast<ssize_t>(scenario.size()));
  close(fd);
  FakeProcess fake;
  std::string error;
  ASSERT_TRUE(fake.Start(
      {std::string("--scenario_file=") + path, "--api_key=sk-other"}, &error))
      << error;
  Client client(fake.base());
  const std::string body = R"({"model":"m","input":"x"})";
  EXPECT_EQ(client.Call("POST", "/v1/responses", body).status, 401);
  HttpResult r = client.Call("POST", "/v1/responses", body, "Bearer sk-other");
  EXPECT_EQ(r.json()["output"][0]["content"][0]["text"], "from the file");
  EXPECT_EQ(fake.Stop(), 0);
  unlink(path);
}

}  // namespace
