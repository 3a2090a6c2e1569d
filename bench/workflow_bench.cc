// workflow_bench: whole client workflows through the gateway, each against a
// baseline in the same run (the machine is shared and noisy, so only ratios
// and differences are meaningful).
//
// It starts fake-openai and one assistants-gateway per store (SQLite in a
// temporary directory, the production default; optionally :memory:) as child
// processes, and measures:
//   1. The seed workflow (shared/seed/assistants-api-tutorial.txt): the
//      tutorial's assistant (its instructions, code_interpreter and its
//      get_stock_price function, which the caller answers itself), a thread,
//      the user's question, and the fake model scripted as the tutorial's
//      run goes: a get_stock_price({"ticker":"AAPL"}) call, then a streamed
//      answer of --answer_tokens tokens, each turn with a first-byte delay
//      and the tokens --token_delay_ms apart (realistic timing: about 50
//      tokens/s). Two clients and a baseline, interleaved:
//        model alone (baseline): both turns read straight from fake-openai
//          with libcurl, back to back: the floor under both clients;
//        polled as written: CreateRun, then the tutorial's wait_for_run
//          (GetRun; requires_action or completed ends it, else sleep
//          --poll_interval_ms, 1 s as written), SubmitToolOutputs, wait again
//          until completed, ListMessages;
//        streamed: one RunEvents{create_run} stream; on requires_action the
//          client calls SubmitToolOutputs while the stream stays open, and
//          reads on to `done`.
//      Both start with CreateThread + CreateMessage and end with the answer
//      in hand (checked against the scripted text); the streamed client also
//      notes its first text token.
//   2. Upstream connection reuse under steady load: --callers callers, each
//      with its own connection, start RunEvents{create_thread_and_run} runs
//      at --rate runs/s for --load_seconds, each a short reply (--load_tokens
//      tokens --load_token_delay_ms apart), per upstream backend (Responses
//      and Chat Completions, chosen per assistant), after a warm-up of the
//      same load.
//      fake-openai counts TCP connections accepted and requests; reuse =
//      1 - new connections / upstream requests over the measured window (the
//      benchmark's own control calls, one connection each, are subtracted).
//
//   workflow_bench [--stores=sqlite] [--repeats=3] [--poll_interval_ms=1000]
//   workflow_bench --quick    (seconds; the CTest smoke test)
//
// Exits non-zero only on a functional failure (a run that does not complete,
// a wrong answer, a lost run), never because of a timing.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "bench/bench_support.h"
#include "nlohmann/json.hpp"
#include "tests/support/server_process.h"

ABSL_FLAG(bool, quick, false,
          "smoke mode: 1 repeat, 50 ms poll interval, 1 s of load");
ABSL_FLAG(std::string, stores, "sqlite",
          "gateway stores to measure: sqlite (a file in a temp dir), memory");
ABSL_FLAG(int, repeats, 3, "seed workflows per path (the median is shown)");
ABSL_FLAG(int, poll_interval_ms, 1000,
          "the polled client's sleep between GetRun calls (the tutorial's "
          "time.sleep(1))");
ABSL_FLAG(int, first_byte_ms, 300,
          "the fake model's delay before each turn's first byte");
ABSL_FLAG(int, token_delay_ms, 20, "the fake model's delay between tokens");
ABSL_FLAG(int, answer_tokens, 60, "tokens of the seed's final answer");
ABSL_FLAG(std::string, upstreams, "openai,openai-chat",
          "backends for the load section: openai (Responses), openai-chat");
ABSL_FLAG(int, callers, 8, "concurrent callers in the load section");
ABSL_FLAG(double, rate, 100, "runs started per second in the load section");
ABSL_FLAG(double, load_seconds, 5, "measured window of the load section");
ABSL_FLAG(double, warmup_seconds, 1,
          "load before the measured window (opens the connection pool)");
ABSL_FLAG(int, load_tokens, 5, "tokens of each reply in the load section");
ABSL_FLAG(int, load_token_delay_ms, 10,
          "delay between those tokens (so upstream requests overlap)");
ABSL_FLAG(bool, verbose, false, "print every sample to stderr");
ABSL_FLAG(std::string, gateway, "",
          "assistants-gateway binary (default: the build tree's)");
ABSL_FLAG(std::string, fake_openai, "",
          "fake-openai binary (default: the build tree's)");

namespace assistants::bench {
namespace {

namespace v1 = ::assistants::v1;
using nlohmann::json;

// The tutorial's assistant and question, verbatim.
constexpr char kSeedInstructions[] =
    "You are a data analyst agent. When given data or questions about data, "
    "write and execute Python code to answer. Always show your work. If you "
    "need to make calculations, use code_interpreter.";
constexpr char kSeedQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would be "
    "worth?";
// The final answer the fake model streams (split into --answer_tokens
// pieces of about five characters, like a real model's tokens).
constexpr char kSeedAnswer[] =
    "The current stock price of AAPL is $237.50 (USD). To work out what 1000 "
    "shares would be worth, multiply the price by the number of shares: 1000 "
    "x $237.50 = $237,500.00. So 1000 shares of AAPL would be worth about "
    "$237,500.00 at the current price. Prices move during the trading day, "
    "so the value may differ a little by the time you trade.";

// The tutorial's get_stock_price function tool.
v1::Tool SeedFunctionTool() {
  v1::Tool tool;
  v1::FunctionDefinition* function =
      tool.mutable_function()->mutable_function();
  function->set_name("get_stock_price");
  function->set_description(
      "Get the current stock price for a given ticker symbol.");
  google::protobuf::Struct& schema = *function->mutable_parameters();
  (*schema.mutable_fields())["type"].set_string_value("object");
  google::protobuf::Struct& ticker = *(*(*schema.mutable_fields())["properties"]
                                            .mutable_struct_value()
                                            ->mutable_fields())["ticker"]
                                          .mutable_struct_value();
  (*ticker.mutable_fields())["type"].set_string_value("string");
  (*ticker.mutable_fields())["description"].set_string_value(
      "Stock ticker symbol, e.g. AAPL");
  (*schema.mutable_fields())["required"]
      .mutable_list_value()
      ->add_values()
      ->set_string_value("ticker");
  return tool;
}

// The tutorial's handle_tool_calls: get_stock_price from its stub price
// table, an error object for any other function.
v1::SubmitToolOutputsRequest SeedToolOutputs(const v1::Run& run) {
  v1::SubmitToolOutputsRequest request;
  request.set_thread_id(run.thread_id());
  request.set_run_id(run.id());
  for (const v1::RequiredToolCall& call :
       run.required_action().submit_tool_outputs().tool_calls()) {
    v1::ToolOutput* output = request.add_tool_outputs();
    output->set_tool_call_id(call.id());
    const json arguments =
        json::parse(call.function().arguments(), nullptr, false);
    if (call.function().name() == "get_stock_price" && arguments.is_object()) {
      const std::string ticker = arguments.value("ticker", "");
      const double price = ticker == "AAPL"    ? 237.50
                           : ticker == "GOOGL" ? 191.30
                           : ticker == "MSFT"  ? 452.80
                                               : 0.0;
      output->set_output(json{{"price", price}, {"currency", "USD"}}.dump());
    } else {
      output->set_output(
          json{{"error", "Unknown function: " + call.function().name()}}
              .dump());
    }
  }
  return request;
}

bool IsTerminal(v1::RunStatus status) {
  return status == v1::RUN_STATUS_FAILED ||
         status == v1::RUN_STATUS_CANCELLED ||
         status == v1::RUN_STATUS_EXPIRED ||
         status == v1::RUN_STATUS_INCOMPLETE;
}

// One seed workflow.
struct SeedSample {
  double wall_s = 0;        // CreateThread -> answer in hand
  double first_text_s = 0;  // CreateThread -> first answer text at the caller
  int get_run_calls = 0;
  int calls = 0;  // RPCs the client made (a stream counts once)
};

// One gateway process with one store, and the client calls the workflows
// make.
class Gateway {
 public:
  explicit Gateway(std::string store) : store_(std::move(store)) {}

  bool Start(const std::string& binary, const std::string& fake_base,
             std::string* error) {
    const std::string db =
        store_ == "memory" ? ":memory:" : dir_.path() + "/gateway.db";
    process_.set_env(
        {"OPENAI_BASE_URL=" + fake_base + "/v1", "OPENAI_API_KEY=sk-fake"});
    if (!process_.Start(binary, {"--db=" + db}, error)) return false;
    channel_ = process_.Connect();
    if (channel_ == nullptr) {
      *error = "the gateway never accepted connections";
      return false;
    }
    assistants_ = v1::AssistantService::NewStub(channel_);
    threads_ = v1::ThreadService::NewStub(channel_);
    messages_ = v1::MessageService::NewStub(channel_);
    runs_ = v1::RunService::NewStub(channel_);
    return true;
  }

  // The tutorial's assistant ("Data Analyst": code_interpreter and
  // get_stock_price), served by `upstream`.
  bool CreateSeedAssistant(const std::string& upstream, std::string* id,
                           std::string* error) {
    v1::CreateAssistantRequest request;
    request.set_name("Data Analyst");
    request.set_instructions(kSeedInstructions);
    request.set_model("gpt-4o");
    request.add_tools()->mutable_code_interpreter();
    *request.add_tools() = SeedFunctionTool();
    request.set_upstream(upstream);
    return CreateAssistant(request, id, error);
  }

  // A plain assistant (no tools) served by `upstream`.
  bool CreatePlainAssistant(const std::string& upstream, std::string* id,
                            std::string* error) {
    v1::CreateAssistantRequest request;
    request.set_model("gpt-4o");
    request.set_instructions("You are a benchmark.");
    request.set_upstream(upstream);
    return CreateAssistant(request, id, error);
  }

  // The tutorial's run_agent: create thread and message, CreateRun, then
  // wait_for_run / handle_tool_calls until completed, then the first
  // assistant text of ListMessages (newest first, as messages.list).
  bool Polled(const std::string& assistant_id, int poll_interval_ms,
              SeedSample* sample, std::string* answer, std::string* error) {
    const Clock::time_point start = Clock::now();
    std::string thread_id;
    if (!NewSeedThread(&thread_id, error)) return false;
    v1::CreateRunRequest create;
    create.set_thread_id(thread_id);
    create.mutable_options()->set_assistant_id(assistant_id);
    v1::CreateRunResponse created;
    grpc::Status status = runs_->CreateRun(Context().get(), create, &created);
    if (!status.ok()) return Failed("CreateRun", status, error);
    v1::Run run = created.run();
    sample->calls = 3;
    for (int tool_rounds = 0;; ++tool_rounds) {
      // wait_for_run.
      for (;;) {
        v1::GetRunRequest get;
        get.set_thread_id(thread_id);
        get.set_run_id(run.id());
        v1::GetRunResponse got;
        status = runs_->GetRun(Context().get(), get, &got);
        ++sample->get_run_calls;
        ++sample->calls;
        if (!status.ok()) return Failed("GetRun", status, error);
        run = got.run();
        if (run.status() == v1::RUN_STATUS_COMPLETED ||
            run.status() == v1::RUN_STATUS_REQUIRES_ACTION) {
          break;
        }
        if (IsTerminal(run.status())) {
          *error = absl::StrCat("run ended ", v1::RunStatus_Name(run.status()),
                                ": ", run.last_error().message());
          return false;
        }
        std::this_thread::sleep_for(
            std::chrono::milliseconds(poll_interval_ms));
      }
      if (run.status() == v1::RUN_STATUS_COMPLETED) break;
      if (tool_rounds > 0) {
        *error = "the model asked for tools twice (scripted once)";
        return false;
      }
      if (!Submit(run, error)) return false;
      ++sample->calls;
    }
    v1::ListMessagesRequest list;
    list.set_thread_id(thread_id);
    v1::ListMessagesResponse messages;
    status = messages_->ListMessages(Context().get(), list, &messages);
    ++sample->calls;
    if (!status.ok()) return Failed("ListMessages", status, error);
    answer->clear();
    for (const v1::Message& message : messages.data()) {
      if (message.role() != v1::MESSAGE_ROLE_ASSISTANT) continue;
      for (const v1::MessageContent& part : message.content()) {
        if (part.has_text()) {
          *answer = part.text().value();
          break;
        }
      }
      break;
    }
    sample->wall_s = sample->first_text_s = Seconds(Clock::now() - start);
    return true;
  }

  // The same workflow streamed: create thread and message, one
  // RunEvents{create_run}; SubmitToolOutputs on requires_action while the
  // stream stays open; the answer assembled from the message deltas.
  bool Streamed(const std::string& assistant_id, SeedSample* sample,
                std::string* answer, std::string* error) {
    const Clock::time_point start = Clock::now();
    std::string thread_id;
    if (!NewSeedThread(&thread_id, error)) return false;
    v1::RunEventsRequest request;
    v1::CreateRunRequest* create = request.mutable_create_run();
    create->set_thread_id(thread_id);
    create->mutable_options()->set_assistant_id(assistant_id);
    auto context = Context(120);
    auto reader = runs_->RunEvents(context.get(), request);
    sample->calls = 3;
    answer->clear();
    bool done = false;
    bool submit_failed = false;
    int tool_rounds = 0;
    v1::RunStatus last = v1::RUN_STATUS_UNSPECIFIED;
    v1::RunEventsResponse response;
    while (reader->Read(&response)) {
      const v1::RunEvent& event = response.event();
      if (event.has_message_delta()) {
        for (const v1::MessageContentDelta& part :
             event.message_delta().delta().content()) {
          if (!part.has_text()) continue;
          if (answer->empty()) {
            sample->first_text_s = Seconds(Clock::now() - start);
          }
          answer->append(part.text().value());
        }
      } else if (event.has_run()) {
        last = event.run().status();
        if (last == v1::RUN_STATUS_REQUIRES_ACTION &&
            event.event() == "thread.run.requires_action") {
          if (++tool_rounds > 1) {
            *error = "the model asked for tools twice (scripted once)";
            submit_failed = true;
          } else if (!Submit(event.run(), error)) {
            submit_failed = true;
          }
          if (submit_failed) {
            context->TryCancel();
            break;
          }
          ++sample->calls;
        }
      } else if (event.event() == "done") {
        done = true;
      }
    }
    sample->wall_s = Seconds(Clock::now() - start);
    const grpc::Status status = reader->Finish();
    if (submit_failed) return false;
    if (!status.ok()) return Failed("RunEvents", status, error);
    if (!done || last != v1::RUN_STATUS_COMPLETED) {
      *error =
          absl::StrCat("stream ended ", done ? "with" : "without",
                       " done, last run status ", v1::RunStatus_Name(last));
      return false;
    }
    return true;
  }

  // One short run through RunEvents{create_thread_and_run}, read to done;
  // the number of text deltas in `*deltas`.
  bool ShortRun(v1::RunService::Stub* stub, const std::string& assistant_id,
                int* deltas, std::string* error) {
    v1::RunEventsRequest request;
    auto* create = request.mutable_create_thread_and_run();
    create->mutable_options()->set_assistant_id(assistant_id);
    v1::MessageInput* message = create->mutable_thread()->add_messages();
    message->set_role(v1::MESSAGE_ROLE_USER);
    message->set_text("hi");
    auto context = Context(60);
    auto reader = stub->RunEvents(context.get(), request);
    v1::RunEventsResponse response;
    bool done = false;
    v1::RunStatus last = v1::RUN_STATUS_UNSPECIFIED;
    *deltas = 0;
    while (reader->Read(&response)) {
      const v1::RunEvent& event = response.event();
      if (event.has_message_delta()) {
        ++*deltas;
      } else if (event.has_run()) {
        last = event.run().status();
      } else if (event.event() == "done") {
        done = true;
      }
    }
    const grpc::Status status = reader->Finish();
    if (!status.ok()) return Failed("RunEvents", status, error);
    if (!done || last != v1::RUN_STATUS_COMPLETED) {
      *error = absl::StrCat("run ended ", v1::RunStatus_Name(last),
                            done ? "" : ", no done");
      return false;
    }
    return true;
  }

  std::string address() const { return process_.address(); }
  const std::string& store() const { return store_; }
  void Stop() {
    assistants_.reset();
    threads_.reset();
    messages_.reset();
    runs_.reset();
    channel_.reset();
    process_.Stop();
  }

 private:
  static bool Failed(const char* call, const grpc::Status& status,
                     std::string* error) {
    *error = absl::StrCat(call, ": ", Describe(status));
    return false;
  }

  bool CreateAssistant(const v1::CreateAssistantRequest& request,
                       std::string* id, std::string* error) {
    v1::CreateAssistantResponse response;
    const grpc::Status status =
        assistants_->CreateAssistant(Context().get(), request, &response);
    if (!status.ok()) return Failed("CreateAssistant", status, error);
    *id = response.assistant().id();
    return true;
  }

  // threads.create() and the tutorial's user message.
  bool NewSeedThread(std::string* thread_id, std::string* error) {
    v1::CreateThreadResponse thread;
    grpc::Status status = threads_->CreateThread(
        Context().get(), v1::CreateThreadRequest(), &thread);
    if (!status.ok()) return Failed("CreateThread", status, error);
    *thread_id = thread.thread().id();
    v1::CreateMessageRequest message;
    message.set_thread_id(*thread_id);
    message.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
    message.mutable_message()->set_text(kSeedQuestion);
    v1::CreateMessageResponse created;
    status = messages_->CreateMessage(Context().get(), message, &created);
    if (!status.ok()) return Failed("CreateMessage", status, error);
    return true;
  }

  // Checks the scripted call and submits the tutorial's outputs.
  bool Submit(const v1::Run& run, std::string* error) {
    const auto& calls =
        run.required_action().submit_tool_outputs().tool_calls();
    if (calls.size() != 1 || calls[0].function().name() != "get_stock_price" ||
        json::parse(calls[0].function().arguments(), nullptr, false)
                .value("ticker", "") != "AAPL") {
      *error =
          "requires_action does not hold the scripted get_stock_price "
          "call";
      return false;
    }
    v1::SubmitToolOutputsResponse response;
    const grpc::Status status = runs_->SubmitToolOutputs(
        Context().get(), SeedToolOutputs(run), &response);
    if (!status.ok()) return Failed("SubmitToolOutputs", status, error);
    return true;
  }

  const std::string store_;
  test_support::TempDir dir_;
  test_support::ServerProcess process_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AssistantService::Stub> assistants_;
  std::unique_ptr<v1::ThreadService::Stub> threads_;
  std::unique_ptr<v1::MessageService::Stub> messages_;
  std::unique_ptr<v1::RunService::Stub> runs_;
};

// ---------------------------------------------------------------------------
// 1. The seed workflow.

struct SeedOptions {
  int repeats = 3;
  int poll_interval_ms = 1000;
  int first_byte_ms = 300;
  int token_delay_ms = 20;
  int answer_tokens = 60;
  bool verbose = false;
};

// The fake model's two turns of one seed run.
json SeedScript(const SeedOptions& o) {
  return json::array(
      {{{"tool_calls", json::array({{{"name", "get_stock_price"},
                                     {"arguments", R"({"ticker":"AAPL"})"}}})},
        {"first_byte_delay_ms", o.first_byte_ms},
        {"token_delay_ms", o.token_delay_ms}},
       {{"text", kSeedAnswer},
        {"tokens", o.answer_tokens},
        {"first_byte_delay_ms", o.first_byte_ms},
        {"token_delay_ms", o.token_delay_ms}}});
}

// The model alone, the floor under both clients: the seed run's two turns
// read straight from fake-openai (streamed Responses calls with libcurl,
// back to back on one kept-alive connection).
class DirectModel {
 public:
  explicit DirectModel(const std::string& fake_base)
      : client_(
            fake_base + "/v1/responses",
            json{
                {"model", "gpt-4o"}, {"input", kSeedQuestion}, {"stream", true}}
                .dump(),
            /*timeout_ms=*/60000) {}

  // Both turns; the text deltas of the reply assembled in `*answer`.
  bool Run(SeedSample* sample, std::string* answer, std::string* error) {
    answer->clear();
    const Clock::time_point start = Clock::now();
    Clock::time_point first_text = start;
    auto on_event = [&](absl::string_view event, Clock::time_point arrived) {
      const size_t at = event.find("data: ");
      if (!absl::StrContains(event, "event: response.output_text.delta") ||
          at == absl::string_view::npos) {
        return;
      }
      // The event ends with "\n\n", which the parser skips as whitespace.
      const json delta = json::parse(event.substr(at + 6), nullptr, false);
      if (!delta.is_object()) return;
      if (answer->empty()) first_text = arrived;
      answer->append(delta.value("delta", ""));
    };
    for (int turn = 0; turn < 2; ++turn) {
      std::string transfer;
      const long status = client_.Post(on_event, &transfer);
      if (status != 200) {
        *error =
            absl::StrCat("POST /v1/responses: ", transfer, ", HTTP ", status);
        return false;
      }
    }
    sample->wall_s = Seconds(Clock::now() - start);
    sample->first_text_s = Seconds(first_text - start);
    sample->calls = 2;
    return true;
  }

 private:
  SseClient client_;
};

struct SeedResult {
  bool measured = false;
  std::vector<SeedSample> direct, polled, streamed;
};

double MedianOf(const std::vector<SeedSample>& samples,
                double SeedSample::*field) {
  std::vector<double> values;
  for (const SeedSample& s : samples) values.push_back(s.*field);
  return Median(values);
}
double MedianOf(const std::vector<SeedSample>& samples,
                int SeedSample::*field) {
  std::vector<double> values;
  for (const SeedSample& s : samples) values.push_back(s.*field);
  return Median(values);
}

// Runs the two clients `o.repeats` times each, alternating which goes first.
// Runs the model alone and the two clients `o.repeats` times each, rotating
// which goes first.
bool MeasureSeed(Gateway& gateway, int fake_port, const SeedOptions& o,
                 SeedResult* result, std::string* error) {
  std::string assistant_id;
  if (!gateway.CreateSeedAssistant("openai", &assistant_id, error)) {
    return false;
  }
  DirectModel direct(absl::StrCat("http://127.0.0.1:", fake_port));
  enum Path { kDirect, kPolled, kStreamed };
  auto one = [&](int path_index) {
    if (!ResetFakeScript(fake_port, SeedScript(o))) {
      *error = "cannot script fake-openai";
      return false;
    }
    SeedSample sample;
    std::string answer;
    bool ok = false;
    const char* path = "";
    std::vector<SeedSample>* samples = nullptr;
    switch (path_index) {
      case kDirect:
        ok = direct.Run(&sample, &answer, error);
        path = "model alone";
        samples = &result->direct;
        break;
      case kPolled:
        ok = gateway.Polled(assistant_id, o.poll_interval_ms, &sample, &answer,
                            error);
        path = "polled";
        samples = &result->polled;
        break;
      default:
        ok = gateway.Streamed(assistant_id, &sample, &answer, error);
        path = "streamed";
        samples = &result->streamed;
        break;
    }
    if (!ok) {
      *error = absl::StrCat(path, ": ", *error);
      return false;
    }
    if (answer != kSeedAnswer) {
      *error = absl::StrCat(path,
                            ": the answer differs from the scripted "
                            "one: \"",
                            answer, "\"");
      return false;
    }
    if (o.verbose) {
      std::fprintf(stderr,
                   "seed %s (%s): %.3f s, first text %.3f s, %d GetRun, %d "
                   "calls\n",
                   path, gateway.store().c_str(), sample.wall_s,
                   sample.first_text_s, sample.get_run_calls, sample.calls);
    }
    samples->push_back(sample);
    return true;
  };
  for (int r = 0; r < o.repeats; ++r) {
    for (int i = 0; i < 3; ++i) {
      if (!one((r + i) % 3)) return false;
    }
  }
  result->measured = true;
  return true;
}

void PrintSeed(const std::vector<std::string>& stores,
               const std::vector<SeedResult>& results, const SeedOptions& o) {
  std::printf(
      "## Seed workflow: the tutorial's polling loop against one RunEvents "
      "stream (median of %d each, interleaved)\n\n",
      o.repeats);
  std::printf(
      "Model (fake-openai): a get_stock_price call, then a %d-token answer; "
      "%d ms to each turn's first byte, tokens %d ms apart (%.0f tokens/s). "
      "Clients are timed from CreateThread to the answer in their hands; the "
      "model alone is both turns read straight from fake-openai.\n\n",
      o.answer_tokens, o.first_byte_ms, o.token_delay_ms,
      o.token_delay_ms > 0 ? 1000.0 / o.token_delay_ms : 0.0);
  std::printf(
      "| store | path | wall time | added to the model's time | first answer "
      "text at the caller | GetRun calls | calls |\n"
      "|---|---|---|---|---|---|---|\n");
  for (size_t g = 0; g < stores.size(); ++g) {
    const SeedResult& r = results[g];
    const char* store = stores[g].c_str();
    if (!r.measured) {
      std::printf("| %s | failed | | | | | |\n", store);
      continue;
    }
    const double model = MedianOf(r.direct, &SeedSample::wall_s);
    const double polled = MedianOf(r.polled, &SeedSample::wall_s);
    const double streamed = MedianOf(r.streamed, &SeedSample::wall_s);
    const double polled_first = MedianOf(r.polled, &SeedSample::first_text_s);
    const double streamed_first =
        MedianOf(r.streamed, &SeedSample::first_text_s);
    std::printf(
        "| %s | model alone (baseline: 2 streamed HTTP calls, libcurl) | "
        "%.3f s | - | %.3f s | - | 2 |\n",
        store, model, MedianOf(r.direct, &SeedSample::first_text_s));
    std::printf(
        "| %s | polled as written (GetRun, sleep %d ms) | %.3f s | %+.3f s | "
        "%.3f s (all of it at once) | %.0f | %.0f |\n",
        store, o.poll_interval_ms, polled, polled - model, polled_first,
        MedianOf(r.polled, &SeedSample::get_run_calls),
        MedianOf(r.polled, &SeedSample::calls));
    std::printf(
        "| %s | streamed (RunEvents + SubmitToolOutputs) | %.3f s | %+.3f s "
        "| %.3f s | 0 | %.0f |\n",
        store, streamed, streamed - model, streamed_first,
        MedianOf(r.streamed, &SeedSample::calls));
    std::printf(
        "| %s | **polled / streamed** (goal >= 5x) | **%.2fx** | **%.0fx** "
        "| **%.2fx** | | |\n",
        store, polled / streamed,
        (polled - model) / std::max(streamed - model, 1e-3),
        polled_first / streamed_first);
  }
  std::printf("\n");
}

// ---------------------------------------------------------------------------
// 2. Upstream connection reuse under steady load.

struct LoadOptions {
  int callers = 8;
  double rate = 100;
  double seconds = 5;
  double warmup_seconds = 1;
  int tokens = 5;
  int token_delay_ms = 10;
  bool verbose = false;
};

struct LoadResult {
  bool measured = false;
  std::string upstream;
  int runs = 0;
  double seconds = 0;  // measured window, first start -> last done
  std::vector<double> run_ms;
  int64_t warmup_connections = 0;  // opened during the warm-up
  int64_t requests = 0;            // upstream requests in the window
  int64_t connections = 0;         // new connections in the window
  int64_t open_after = 0;
};

// `count` runs from `o.callers` threads, each with its own channel (its own
// HTTP/2 connection, like separate client processes), started at `o.rate`
// per second (a caller that falls behind starts its next run at once).
bool Drive(Gateway& gateway, const std::string& assistant_id, int count,
           const LoadOptions& o, std::vector<double>* run_ms, double* seconds,
           std::string* error) {
  std::atomic<int> failed{0};
  absl::Mutex mu;
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> callers;
  std::vector<std::unique_ptr<v1::RunService::Stub>> stubs;
  for (int c = 0; c < o.callers; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("assistants.bench_channel", c);
    stubs.push_back(v1::RunService::NewStub(grpc::CreateCustomChannel(
        gateway.address(), grpc::InsecureChannelCredentials(), args)));
  }
  for (int c = 0; c < o.callers; ++c) {
    callers.emplace_back([&, c] {
      for (int k = c; k < count && failed == 0; k += o.callers) {
        std::this_thread::sleep_until(
            start +
            std::chrono::microseconds(static_cast<int64_t>(k * 1e6 / o.rate)));
        const Clock::time_point begin = Clock::now();
        int deltas = 0;
        std::string run_error;
        const bool ok =
            gateway.ShortRun(stubs[c].get(), assistant_id, &deltas, &run_error);
        const double ms = Seconds(Clock::now() - begin) * 1e3;
        if (o.verbose) {
          std::fprintf(stderr, "load run %d: started at %.3f s, %.1f ms\n", k,
                       Seconds(begin - start), ms);
        }
        absl::MutexLock lock(&mu);
        if (ok && deltas != o.tokens) {
          run_error = absl::StrCat(deltas, " text deltas, want ", o.tokens);
        }
        if (!run_error.empty()) {
          if (failed++ == 0) *error = "load run " + run_error;
          continue;
        }
        run_ms->push_back(ms);
      }
    });
  }
  for (std::thread& thread : callers) thread.join();
  *seconds = Seconds(Clock::now() - start);
  return failed == 0;
}

bool MeasureLoad(Gateway& gateway, int fake_port, const std::string& upstream,
                 const LoadOptions& o, LoadResult* result, std::string* error) {
  result->upstream = upstream;
  std::string assistant_id;
  if (!gateway.CreatePlainAssistant(upstream, &assistant_id, error)) {
    return false;
  }
  const int warmup = static_cast<int>(o.rate * o.warmup_seconds);
  const int runs = std::max(1, static_cast<int>(o.rate * o.seconds));
  std::string text;
  for (int i = 0; i < o.tokens; ++i) text += "tok ";
  // One step for every run of both phases; the control calls below each
  // open a connection of their own (libcurl easy handle per call).
  if (!ResetFakeScript(fake_port,
                       json::array({{{"text", text},
                                     {"tokens", o.tokens},
                                     {"token_delay_ms", o.token_delay_ms},
                                     {"repeat", warmup + runs}}}))) {
    *error = "cannot script fake-openai";
    return false;
  }
  const json before_warmup = FakeStats(fake_port);
  std::vector<double> ignored;
  double warmup_s = 0;
  if (warmup > 0 &&
      !Drive(gateway, assistant_id, warmup, o, &ignored, &warmup_s, error)) {
    return false;
  }
  const json before = FakeStats(fake_port);
  if (!Drive(gateway, assistant_id, runs, o, &result->run_ms, &result->seconds,
             error)) {
    return false;
  }
  const json after = FakeStats(fake_port);
  if (before_warmup.is_null() || before.is_null() || after.is_null()) {
    *error = "GET /_fake/stats failed";
    return false;
  }
  auto delta = [](const json& later, const json& earlier, const char* key) {
    return later.value(key, int64_t{0}) - earlier.value(key, int64_t{0});
  };
  // Each FakeStats call is one connection and one request, counted by the
  // snapshot it returns: `before` counts itself, `after` is in the window.
  result->warmup_connections =
      delta(before, before_warmup, "connections_accepted") - 1;
  result->connections = delta(after, before, "connections_accepted") - 1;
  result->requests = delta(after, before, "requests") - 1;
  result->open_after = after.value("open_connections", int64_t{0});
  result->runs = static_cast<int>(result->run_ms.size());
  if (result->requests != runs) {
    *error = absl::StrCat(upstream, ": ", result->requests,
                          " upstream requests for ", runs, " runs");
    return false;
  }
  result->measured = true;
  return true;
}

void PrintLoad(const std::vector<std::string>& stores,
               const std::vector<std::vector<LoadResult>>& results,
               const LoadOptions& o) {
  std::printf(
      "## Upstream connection reuse under steady load: %d callers, %g "
      "runs/s for %g s after %g s of warm-up; %d-token replies, %d ms "
      "apart\n\n",
      o.callers, o.rate, o.seconds, o.warmup_seconds, o.tokens,
      o.token_delay_ms);
  std::printf(
      "| store | upstream | runs | runs/s | run p50 / p99 | upstream "
      "requests | new connections (warm-up) | **reuse** | goal "
      "|\n|---|---|---|---|---|---|---|---|---|\n");
  for (size_t g = 0; g < stores.size(); ++g) {
    for (const LoadResult& r : results[g]) {
      if (!r.measured) {
        std::printf("| %s | %s | failed | | | | | | >= 99 %% |\n",
                    stores[g].c_str(), r.upstream.c_str());
        continue;
      }
      const std::string name = r.upstream == "openai-chat"
                                   ? "Chat Completions (openai-chat)"
                                   : "Responses (" + r.upstream + ")";
      std::printf(
          "| %s | %s | %d | %.0f | %.1f / %.1f ms | %lld | %lld (%lld) | "
          "**%.2f %%** | >= 99 %% |\n",
          stores[g].c_str(), name.c_str(), r.runs, r.runs / r.seconds,
          Percentile(r.run_ms, 0.5), Percentile(r.run_ms, 0.99),
          static_cast<long long>(r.requests),
          static_cast<long long>(r.connections),
          static_cast<long long>(r.warmup_connections),
          r.requests > 0 ? 100.0 * (1.0 - double(r.connections) / r.requests)
                         : 0.0);
    }
  }
  std::printf("\n");
}

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const bool quick = absl::GetFlag(FLAGS_quick);
  SeedOptions seed;
  seed.repeats = quick ? 1 : std::max(1, absl::GetFlag(FLAGS_repeats));
  seed.poll_interval_ms =
      quick ? 50 : std::max(1, absl::GetFlag(FLAGS_poll_interval_ms));
  seed.first_byte_ms = std::max(0, absl::GetFlag(FLAGS_first_byte_ms));
  seed.token_delay_ms = std::max(0, absl::GetFlag(FLAGS_token_delay_ms));
  seed.answer_tokens = std::max(1, absl::GetFlag(FLAGS_answer_tokens));
  seed.verbose = absl::GetFlag(FLAGS_verbose);
  LoadOptions load;
  load.callers = std::max(1, absl::GetFlag(FLAGS_callers));
  load.rate = quick ? 50 : std::max(1.0, absl::GetFlag(FLAGS_rate));
  load.seconds = quick ? 1 : std::max(0.1, absl::GetFlag(FLAGS_load_seconds));
  load.warmup_seconds =
      quick ? 0.5 : std::max(0.0, absl::GetFlag(FLAGS_warmup_seconds));
  load.tokens = std::max(1, absl::GetFlag(FLAGS_load_tokens));
  load.token_delay_ms = std::max(0, absl::GetFlag(FLAGS_load_token_delay_ms));
  load.verbose = absl::GetFlag(FLAGS_verbose);
  std::vector<std::string> stores =
      absl::StrSplit(absl::GetFlag(FLAGS_stores), ',', absl::SkipEmpty());
  for (const std::string& store : stores) {
    if (store != "sqlite" && store != "memory") {
      std::fprintf(stderr, "--stores: unknown store %s\n", store.c_str());
      return 2;
    }
  }
  std::vector<std::string> upstreams =
      absl::StrSplit(absl::GetFlag(FLAGS_upstreams), ',', absl::SkipEmpty());
  for (const std::string& upstream : upstreams) {
    if (upstream != "openai" && upstream != "openai-chat") {
      std::fprintf(stderr, "--upstreams: unknown backend %s\n",
                   upstream.c_str());
      return 2;
    }
  }
  std::string gateway_bin = absl::GetFlag(FLAGS_gateway);
  if (gateway_bin.empty()) gateway_bin = test_support::GatewayBinary();
  std::string fake_bin = absl::GetFlag(FLAGS_fake_openai);
  if (fake_bin.empty()) fake_bin = test_support::FakeOpenAiBinary();

  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::string error;
  test_support::ServerProcess fake;
  if (!fake.Start(fake_bin, {"--max_recorded_requests=0"}, &error)) {
    std::fprintf(stderr, "cannot start fake-openai: %s\n", error.c_str());
    return 1;
  }
  const std::string fake_base = absl::StrCat("http://127.0.0.1:", fake.port());

  int failures = 0;
  std::vector<SeedResult> seed_results(stores.size());
  std::vector<std::vector<LoadResult>> load_results(stores.size());
  for (size_t g = 0; g < stores.size(); ++g) {
    Gateway gateway(stores[g]);
    if (!gateway.Start(gateway_bin, fake_base, &error)) {
      std::fprintf(stderr, "gateway (%s): %s\n", stores[g].c_str(),
                   error.c_str());
      return 1;
    }
    if (!MeasureSeed(gateway, fake.port(), seed, &seed_results[g], &error)) {
      std::fprintf(stderr, "seed workflow (%s): %s\n", stores[g].c_str(),
                   error.c_str());
      ++failures;
    }
    for (const std::string& upstream : upstreams) {
      LoadResult result;
      if (!MeasureLoad(gateway, fake.port(), upstream, load, &result, &error)) {
        std::fprintf(stderr, "load (%s, %s): %s\n", stores[g].c_str(),
                     upstream.c_str(), error.c_str());
        ++failures;
      }
      load_results[g].push_back(std::move(result));
    }
    gateway.Stop();
  }

  PrintSeed(stores, seed_results, seed);
  if (!upstreams.empty()) PrintLoad(stores, load_results, load);
  std::fflush(stdout);
  fake.Stop();
  curl_global_cleanup();
  if (failures > 0) {
    std::fprintf(stderr, "workflow_bench: %d functional failure(s)\n",
                 failures);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace assistants::bench

int main(int argc, char** argv) { return assistants::bench::Main(argc, argv); }
