// End-to-end tests of both providers over the real curl-multi HTTP client
// against the real fake-openai process: text, tool calls (single, parallel,
// arguments split into many deltas), code_interpreter, usage, incomplete,
// every scripted fault (429 with Retry-After, quota, 5xx, 401, 400, dropped
// connection, stall, malformed event, response.failed, slow first byte),
// retries, cancellation mid-stream, and connection reuse.
#include <curl/curl.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "service/common/errors.h"
#include "tests/support/server_process.h"
#include "tests/upstream/recording_observer.h"
#include "upstream/chat_completions_provider.h"
#include "upstream/http/curl_http_client.h"
#include "upstream/responses_provider.h"

namespace assistants::upstream {
namespace {

using nlohmann::json;
using Type = ProviderEvent::Type;

// A keep-alive HTTP client for the fake's control API (one connection, so
// the fake's connection count stays readable).
class Control {
 public:
  explicit Control(std::string base) : base_(std::move(base)) {
    curl_ = curl_easy_init();
  }
  ~Control() { curl_easy_cleanup(curl_); }

  json Call(const std::string& method, const std::string& path,
            const std::string& body = "") {
    std::string response;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, (base_ + path).c_str());
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (!body.empty())
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Control::Write);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &response);
    curl_easy_perform(curl_);
    return json::parse(response, nullptr, false);
  }
  void Script(const json& steps) {
    Call("POST", "/_fake/script", json{{"responses", steps}}.dump());
  }
  int Requests() {
    return static_cast<int>(Call("GET", "/_fake/requests")["requests"].size());
  }
  json Stats() { return Call("GET", "/_fake/stats"); }

 private:
  static size_t Write(char* data, size_t size, size_t n, void* out) {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
  }
  std::string base_;
  CURL* curl_;
};

enum class Api { kResponses, kChat };

Turn SeedTurn() {
  Turn turn;
  turn.model = "gpt-4o";
  turn.instructions = "You are a data analyst agent.";
  turn.items.push_back(TurnItem::UserText(
      "What's the stock price of AAPL, and calculate what 1000 shares would "
      "be worth?"));
  v1::Tool& tool = turn.tools.emplace_back();
  v1::FunctionDefinition* fn = tool.mutable_function()->mutable_function();
  fn->set_name("get_stock_price");
  fn->set_description("Get the current stock price for a given ticker symbol.");
  auto& schema = *fn->mutable_parameters()->mutable_fields();
  schema["type"].set_string_value("object");
  auto& ticker = *(*schema["properties"]
                        .mutable_struct_value()
                        ->mutable_fields())["ticker"]
                      .mutable_struct_value()
                      ->mutable_fields();
  ticker["type"].set_string_value("string");
  schema["required"].mutable_list_value()->add_values()->set_string_value(
      "ticker");
  return turn;
}

class ProvidersFakeTest : public ::testing::TestWithParam<Api> {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(fake_.Start(test_support::FakeOpenAiBinary(), {}, &error))
        << error;
    base_ = absl::StrCat("http://127.0.0.1:", fake_.port());
    control_ = std::make_unique<Control>(base_);
    CurlHttpClientOptions options;
    options.jitter = [] { return 1.0; };
    http_ = std::make_unique<CurlHttpClient>(options);
    config_.base_url = base_ + "/v1";
    config_.api_key = "sk-fake";
    config_.retry.initial_backoff = std::chrono::milliseconds(20);
    config_.retry.max_backoff = std::chrono::milliseconds(400);
    config_.timeouts.first_byte = std::chrono::seconds(10);
    config_.timeouts.idle = std::chrono::seconds(10);
  }

  std::unique_ptr<Provider> MakeProvider() {
    if (GetParam() == Api::kResponses) {
      return std::make_unique<ResponsesProvider>(config_, http_.get());
    }
    return std::make_unique<ChatCompletionsProvider>(config_, http_.get());
  }

  // Runs `turn` to completion.
  std::shared_ptr<RecordingObserver> Run(const Turn& turn) {
    auto observer = std::make_shared<RecordingObserver>();
    std::unique_ptr<Provider> provider = MakeProvider();
    std::unique_ptr<TurnCall> call = provider->StreamTurn(turn, observer);
    EXPECT_TRUE(observer->WaitDone()) << "the turn never ended";
    return observer;
  }

  static std::string Reason(const RecordingObserver& observer) {
    auto error = observer.error();
    return error.has_value() ? ErrorReason(error->status) : "";
  }

  test_support::ServerProcess fake_;
  std::string base_;
  std::unique_ptr<Control> control_;
  ProviderConfig config_;
  std::unique_ptr<CurlHttpClient> http_;
};

TEST_P(ProvidersFakeTest, StreamsTextAndUsage) {
  control_->Script(
      json::array({{{"text", "Hello there, friend"},
                    {"tokens", 5},
                    {"usage", {{"input_tokens", 12}, {"output_tokens", 5}}}}}));
  Turn turn;
  turn.model = "gpt-4o";
  turn.items.push_back(TurnItem::UserText("hi"));
  auto observer = Run(turn);
  ASSERT_FALSE(observer->error().has_value()) << Reason(*observer);
  EXPECT_EQ(observer->Text(), "Hello there, friend");
  EXPECT_GE(observer->OfType(Type::kTextDelta).size(), 5u);
  auto usage = observer->OfType(Type::kUsage);
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].usage.prompt_tokens(), 12);
  EXPECT_EQ(usage[0].usage.completion_tokens(), 5);
  auto finished = observer->OfType(Type::kFinished);
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_EQ(finished[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(observer->events().back().type, Type::kFinished);
  EXPECT_EQ(observer->done_calls(), 1);
}

TEST_P(ProvidersFakeTest, SeedScenarioCallsTheToolThenAnswers) {
  auto first = Run(SeedTurn());
  ASSERT_FALSE(first->error().has_value()) << Reason(*first);
  auto calls = first->OfType(Type::kToolCallDone);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].name, "get_stock_price");
  EXPECT_EQ(json::parse(calls[0].text), json({{"ticker", "AAPL"}}));
  EXPECT_EQ(first->OfType(Type::kFinished)[0].finish_reason,
            FinishReason::kToolCalls);

  Turn second = SeedTurn();
  second.items.push_back(
      TurnItem::FunctionCall(calls[0].call_id, calls[0].name, calls[0].text));
  second.items.push_back(TurnItem::FunctionCallOutput(
      calls[0].call_id, R"({"price": 237.5, "currency": "USD"})"));
  auto answer = Run(second);
  ASSERT_FALSE(answer->error().has_value()) << Reason(*answer);
  EXPECT_NE(answer->Text().find("237,500"), std::string::npos)
      << answer->Text();
}

TEST_P(ProvidersFakeTest, ParallelCallsWithArgumentsInManyDeltas) {
  control_->Script(json::array(
      {{{"tool_calls", json::array({{{"name", "get_stock_price"},
                                     {"arguments", R"({"ticker":"AAPL"})"}},
                                    {{"name", "get_stock_price"},
                                     {"arguments", R"({"ticker":"MSFT"})"}}})},
        {"tokens", 8}}}));
  auto observer = Run(SeedTurn());
  ASSERT_FALSE(observer->error().has_value()) << Reason(*observer);
  auto calls = observer->OfType(Type::kToolCallDone);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].text, R"({"ticker":"AAPL"})");
  EXPECT_EQ(calls[1].text, R"({"ticker":"MSFT"})");
  EXPECT_NE(calls[0].call_id, calls[1].call_id);
  // The fragments of each call reassemble into its arguments.
  std::string first, second;
  for (const auto& e : observer->OfType(Type::kToolCallArgumentsDelta)) {
    (e.index == calls[0].index ? first : second) += e.text;
  }
  EXPECT_EQ(first, calls[0].text);
  EXPECT_EQ(second, calls[1].text);
  EXPECT_GT(observer->OfType(Type::kToolCallArgumentsDelta).size(), 4u);
}

TEST_P(ProvidersFakeTest, LengthLimitEndsIncomplete) {
  control_->Script(json::array({{{"text", "a long answer that is cut"},
                                 {"finish", "length"},
                                 {"incomplete_reason", "max_output_tokens"}}}));
  auto observer = Run(SeedTurn());
  ASSERT_FALSE(observer->error().has_value()) << Reason(*observer);
  EXPECT_EQ(observer->OfType(Type::kFinished)[0].finish_reason,
            FinishReason::kLength);
}

TEST_P(ProvidersFakeTest, RateLimitHonoursRetryAfterThenSucceeds) {
  control_->Script(
      json::array({{{"status", 429}, {"retry_after", 1}}, {{"text", "ok"}}}));
  auto start = std::chrono::steady_clock::now();
  auto observer = Run(SeedTurn());
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(observer->error().has_value()) << Reason(*observer);
  EXPECT_EQ(observer->Text(), "ok");
  EXPECT_EQ(control_->Requests(), 2);
  // The wait came from Retry-After (1 s), not from the 20 ms backoff.
  EXPECT_GE(elapsed, std::chrono::milliseconds(900));
}

TEST_P(ProvidersFakeTest, PersistentRateLimitIsResourceExhaustedWithRetryInfo) {
  control_->Script(
      json::array({{{"status", 429}, {"retry_after_ms", 30}, {"repeat", 5}}}));
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(observer->error()->status.code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(observer->error()->run_error_code, "rate_limit_exceeded");
  EXPECT_TRUE(GetRetryInfo(observer->error()->status).has_value());
  EXPECT_EQ(control_->Requests(), config_.retry.max_attempts);
}

TEST_P(ProvidersFakeTest, InsufficientQuotaHasNoRetryInfo) {
  control_->Script(
      json::array({{{"status", 429},
                    {"error",
                     {{"message", "You exceeded your current quota"},
                      {"type", "insufficient_quota"},
                      {"code", "insufficient_quota"}}},
                    {"repeat", 5}}}));
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(Reason(*observer), "UPSTREAM_QUOTA_EXCEEDED");
  EXPECT_FALSE(GetRetryInfo(observer->error()->status).has_value());
}

TEST_P(ProvidersFakeTest, ServerErrorIsRetriedThenSurfaced) {
  control_->Script(json::array({{{"status", 500}}, {{"text", "recovered"}}}));
  auto recovered = Run(SeedTurn());
  ASSERT_FALSE(recovered->error().has_value()) << Reason(*recovered);
  EXPECT_EQ(recovered->Text(), "recovered");

  control_->Script(json::array({{{"status", 503}, {"repeat", 5}}}));
  auto failed = Run(SeedTurn());
  ASSERT_TRUE(failed->error().has_value());
  EXPECT_EQ(failed->error()->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Reason(*failed), "UPSTREAM_SERVER_ERROR");
  EXPECT_EQ(failed->error()->run_error_code, "server_error");
}

TEST_P(ProvidersFakeTest, WrongKeyIsOurMisconfiguration) {
  config_.api_key = "sk-wrong";
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(observer->error()->status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Reason(*observer), "UPSTREAM_AUTH_FAILED");
  EXPECT_EQ(std::string(observer->error()->status.message()).find("sk-wrong"),
            std::string::npos);
  EXPECT_EQ(control_->Requests(), 1);  // not retried
}

TEST_P(ProvidersFakeTest, BadRequestIsInvalidPrompt) {
  control_->Script(json::array({{{"status", 400},
                                 {"error",
                                  {{"message", "context too long"},
                                   {"type", "invalid_request_error"},
                                   {"code", "context_length_exceeded"}}}}}));
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(observer->error()->status.code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(observer->error()->run_error_code, "invalid_prompt");
}

TEST_P(ProvidersFakeTest, DroppedConnectionMidStreamIsNotRetried) {
  control_->Script(json::array({{{"text", "this stream will break"},
                                 {"tokens", 10},
                                 {"drop_after_events", 4}}}));
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(observer->error()->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(observer->error()->run_error_code, "server_error");
  EXPECT_EQ(control_->Requests(), 1);
}

TEST_P(ProvidersFakeTest, StalledStreamHitsTheIdleTimeout) {
  config_.timeouts.idle = std::chrono::milliseconds(300);
  control_->Script(json::array(
      {{{"text", "stalls"}, {"tokens", 6}, {"stall_after_events", 3}}}));
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(Reason(*observer), "UPSTREAM_TIMEOUT");
  EXPECT_EQ(GetErrorInfo(observer->error()->status)->metadata().at("timeout"),
            "idle");
}

TEST_P(ProvidersFakeTest, SlowFirstByteIsRetriedThenTimesOut) {
  config_.timeouts.first_byte = std::chrono::milliseconds(200);
  config_.retry.max_attempts = 2;
  control_->Script(json::array(
      {{{"text", "late"}, {"first_byte_delay_ms", 2000}, {"repeat", 2}}}));
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(Reason(*observer), "UPSTREAM_TIMEOUT");
  EXPECT_EQ(control_->Requests(), 2);
}

TEST_P(ProvidersFakeTest, MalformedEventIsAProtocolError) {
  control_->Script(json::array(
      {{{"text", "bad"}, {"tokens", 4}, {"malformed_after_events", 2}}}));
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(Reason(*observer), "UPSTREAM_PROTOCOL_ERROR");
}

TEST_P(ProvidersFakeTest, FailedResponseCarriesTheRunErrorCode) {
  control_->Script(json::array(
      {{{"text", "x"},
        {"failed", {{"code", "rate_limit_exceeded"}, {"message", "busy"}}}}}));
  auto observer = Run(SeedTurn());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(observer->error()->run_error_code, "rate_limit_exceeded");
}

TEST_P(ProvidersFakeTest, CancelMidStreamEndsTheTurnAndFreesTheConnection) {
  control_->Script(json::array({{{"text", std::string(200, 'x')},
                                 {"tokens", 200},
                                 {"token_delay_ms", 20}}}));
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<Provider> provider = MakeProvider();
  std::unique_ptr<TurnCall> call = provider->StreamTurn(SeedTurn(), observer);
  // Wait for the stream to be under way, then cancel from this thread.
  for (int i = 0; i < 500 && observer->OfType(Type::kTextDelta).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  call->Cancel();
  ASSERT_TRUE(observer->WaitDone());
  ASSERT_TRUE(observer->error().has_value());
  EXPECT_EQ(observer->error()->status.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(observer->OfType(Type::kTextDelta).size(), 200u);
  EXPECT_EQ(observer->done_calls(), 1);
  // The fake sees the stream's connection close.
  int open = -1;
  for (int i = 0; i < 200; ++i) {
    open = control_->Stats()["open_connections"].get<int>();
    if (open <= 1) break;  // only the control connection is left
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LE(open, 1);
}

TEST_P(ProvidersFakeTest, SequentialTurnsReuseOneConnection) {
  int before = control_->Stats()["connections_accepted"].get<int>();
  for (int i = 0; i < 20; ++i) {
    control_->Script(json::array({{{"text", "again"}}}));
    auto observer = Run(SeedTurn());
    ASSERT_FALSE(observer->error().has_value()) << Reason(*observer);
  }
  int after = control_->Stats()["connections_accepted"].get<int>();
  EXPECT_LE(after - before, 1);  // at most the provider's one connection
}

INSTANTIATE_TEST_SUITE_P(Both, ProvidersFakeTest,
                         ::testing::Values(Api::kResponses, Api::kChat),
                         [](const auto& info) {
                           return info.param == Api::kResponses ? "Responses"
                                                                : "Chat";
                         });

// Hosted code_interpreter exists only in the Responses API.
TEST(ResponsesFakeTest, CodeInterpreterCallWithLogs) {
  test_support::ServerProcess fake;
  std::string error;
  ASSERT_TRUE(fake.Start(test_support::FakeOpenAiBinary(), {}, &error))
      << error;
  std::string base = absl::StrCat("http://127.0.0.1:", fake.port());
  Control(base).Script(
      json::array({{{"code_interpreter",
                     {{"code", "print(1000 * 237.5)"}, {"logs", "237500.0\n"}}},
                    {"text", "1000 shares are worth 237,500 USD."}}}));
  CurlHttpClient http(CurlHttpClientOptions{});
  ProviderConfig config;
  config.base_url = base + "/v1";
  config.api_key = "sk-fake";
  ResponsesProvider provider(config, &http);
  Turn turn;
  turn.model = "gpt-4o";
  turn.items.push_back(TurnItem::UserText("calculate 1000 * 237.5"));
  turn.tools.emplace_back().mutable_code_interpreter();
  auto observer = std::make_shared<RecordingObserver>();
  auto call = provider.StreamTurn(turn, observer);
  ASSERT_TRUE(observer->WaitDone());
  ASSERT_FALSE(observer->error().has_value());
  auto done = observer->OfType(Type::kCodeInterpreterDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].text, "print(1000 * 237.5)");
  ASSERT_EQ(done[0].outputs.size(), 1u);
  EXPECT_EQ(done[0].outputs[0].logs().logs(), "237500.0\n");
  EXPECT_FALSE(observer->OfType(Type::kCodeInterpreterStarted).empty());
  EXPECT_NE(observer->Text().find("237,500"), std::string::npos);
}

}  // namespace
}  // namespace assistants::upstream
