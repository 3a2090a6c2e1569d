// The seed tutorial's agent, ported from OpenAI's Python SDK to C++ over the
// gateway's generated gRPC stubs: the "Data Analyst" assistant with
// code_interpreter and get_stock_price, the tutorial's question, and the run
// streamed and printed as the tutorial's AgentStreamHandler prints it. The
// function calls are answered with the tutorial's local function while the
// stream stays open.
//
//   cmake --build build --target seed_agent
//   build/examples/seed_agent --target=127.0.0.1:50051 [--model=gpt-4o]
//
// It uses nothing but the stubs generated from proto/: it is the code any C++
// client of the gateway writes. (assistantsctl run does the same with
// reconnection, --poll and more answer sources.)

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(
    std::string, target, "",
    "Gateway address (default $ASSISTANTS_TARGET, else 127.0.0.1:50051).");
ABSL_FLAG(std::string, model, "gpt-4o", "Model of the assistant.");

namespace {

namespace v1 = ::assistants::v1;

constexpr char kInstructions[] =
    "You are a data analyst agent. When given data or questions about data, "
    "write and execute Python code to answer. Always show your work. If you "
    "need to make calculations, use code_interpreter.";
constexpr char kQuestion[] =
    "What's the stock price of AAPL, and calculate what 1000 shares would be "
    "worth?";
constexpr char kGetStockPriceParameters[] = R"({
  "type": "object",
  "properties": {
    "ticker": {"type": "string", "description": "Stock ticker symbol, e.g. AAPL"}
  },
  "required": ["ticker"]
})";

// The tutorial's fetch_stock_price stub.
double FetchStockPrice(const std::string& ticker) {
  static const auto* prices = new std::map<std::string, double>{
      {"AAPL", 237.50}, {"GOOGL", 191.30}, {"MSFT", 452.80}};
  auto it = prices->find(ticker);
  return it == prices->end() ? 0.0 : it->second;
}

// The tutorial's handle_tool_calls: one output per pending call, and errors
// reported in the output (the model can recover) rather than thrown.
v1::SubmitToolOutputsRequest HandleToolCalls(const v1::Run& run) {
  v1::SubmitToolOutputsRequest request;
  request.set_thread_id(run.thread_id());
  request.set_run_id(run.id());
  for (const v1::RequiredToolCall& tool_call :
       run.required_action().submit_tool_outputs().tool_calls()) {
    const std::string& function_name = tool_call.function().name();
    const nlohmann::json arguments = nlohmann::json::parse(
        tool_call.function().arguments(), nullptr, /*allow_exceptions=*/false);
    nlohmann::json output;
    if (function_name == "get_stock_price" && arguments.is_object()) {
      const double price = FetchStockPrice(arguments.value("ticker", ""));
      output = {{"price", price}, {"currency", "USD"}};
    } else {
      output = {{"error", "Unknown function: " + function_name}};
    }
    v1::ToolOutput* tool_output = request.add_tool_outputs();
    tool_output->set_tool_call_id(tool_call.id());
    tool_output->set_output(output.dump());
  }
  return request;
}

// The tutorial's AgentStreamHandler. OpenAI's SDK derived these callbacks
// from the stream; RunEvents carries the same events (with OpenAI's names),
// so the derivation is a few lines: a text part or a tool call is "created"
// by its first delta.
class AgentStreamHandler {
 public:
  void OnEvent(const v1::RunEvent& event) {
    if (event.event() == "thread.message.delta") {
      const v1::MessageDelta& delta = event.message_delta();
      for (const v1::MessageContentDelta& part : delta.delta().content()) {
        if (text_parts_.insert({delta.id(), part.index()}).second) {
          OnTextCreated();
        }
        if (part.has_text()) OnTextDelta(part.text().value());
      }
    } else if (event.event() == "thread.run.step.delta") {
      const v1::RunStepDelta& delta = event.step_delta();
      for (const v1::ToolCallDelta& call : delta.delta().tool_calls()) {
        if (tool_calls_.insert({delta.id(), call.index()}).second) {
          OnToolCallCreated(call);
        }
        OnToolCallDelta(call);
      }
    }
  }

 private:
  void OnTextCreated() { std::cout << "\nassistant > " << std::flush; }

  void OnTextDelta(const std::string& value) {
    std::cout << value << std::flush;
  }

  void OnToolCallCreated(const v1::ToolCallDelta& tool_call) {
    // The oneof field set is OpenAI's tool call `type`.
    std::cout << "\n[calling "
              << (tool_call.has_code_interpreter() ? "code_interpreter"
                                                   : "function")
              << "]" << std::endl;
  }

  void OnToolCallDelta(const v1::ToolCallDelta& delta) {
    if (delta.has_code_interpreter() &&
        !delta.code_interpreter().input().empty()) {
      std::cout << delta.code_interpreter().input() << std::flush;
    }
  }

  // (message id, content index) and (step id, tool call index) seen.
  std::set<std::pair<std::string, int>> text_parts_;
  std::set<std::pair<std::string, int>> tool_calls_;
};

int Fail(const char* what, const grpc::Status& status) {
  std::cerr << what << " failed (gRPC code " << status.error_code()
            << "): " << status.error_message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::string target = absl::GetFlag(FLAGS_target);
  if (target.empty()) {
    const char* env = std::getenv("ASSISTANTS_TARGET");
    target = env != nullptr && *env != '\0' ? env : "127.0.0.1:50051";
  }
  auto channel =
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto assistants = v1::AssistantService::NewStub(channel);
  auto runs = v1::RunService::NewStub(channel);

  // client.beta.assistants.create(...): tools are a oneof whose field name
  // is OpenAI's "type".
  v1::CreateAssistantRequest create;
  create.set_name("Data Analyst");
  create.set_instructions(kInstructions);
  create.set_model(absl::GetFlag(FLAGS_model));
  create.add_tools()->mutable_code_interpreter();
  v1::FunctionDefinition* function =
      create.add_tools()->mutable_function()->mutable_function();
  function->set_name("get_stock_price");
  function->set_description(
      "Get the current stock price for a given ticker symbol.");
  if (!google::protobuf::util::JsonStringToMessage(
           kGetStockPriceParameters, function->mutable_parameters())
           .ok()) {
    std::cerr << "bad parameters schema\n";
    return 1;
  }
  v1::CreateAssistantResponse created;
  grpc::ClientContext create_context;
  grpc::Status status =
      assistants->CreateAssistant(&create_context, create, &created);
  if (!status.ok()) return Fail("CreateAssistant", status);
  std::cout << "Assistant ID: " << created.assistant().id() << "\n";

  // threads.create + messages.create + runs.stream in one call: the run is
  // created and streamed from its first event, so nothing can be missed.
  v1::RunEventsRequest request;
  v1::CreateThreadAndRunRequest* start =
      request.mutable_create_thread_and_run();
  v1::MessageInput* message = start->mutable_thread()->add_messages();
  message->set_role(v1::MESSAGE_ROLE_USER);
  message->set_text(kQuestion);
  start->mutable_options()->set_assistant_id(created.assistant().id());

  grpc::ClientContext stream_context;
  auto stream = runs->RunEvents(&stream_context, request);
  AgentStreamHandler handler;
  v1::Run run;
  v1::RunEventsResponse response;
  while (stream->Read(&response)) {
    const v1::RunEvent& event = response.event();
    handler.OnEvent(event);
    if (event.has_run()) run = event.run();
    if (event.event() == "thread.run.requires_action") {
      // Answer on the side; the same stream then carries the rest of the run.
      v1::SubmitToolOutputsResponse submitted;
      grpc::ClientContext submit_context;
      status = runs->SubmitToolOutputs(&submit_context, HandleToolCalls(run),
                                       &submitted);
      if (!status.ok()) return Fail("SubmitToolOutputs", status);
    }
  }
  status = stream->Finish();  // after the "done" event
  if (!status.ok()) return Fail("RunEvents", status);
  std::cout << "\n";

  if (run.status() != v1::RUN_STATUS_COMPLETED) {
    std::cerr << "Run ended with status: " << v1::RunStatus_Name(run.status())
              << " - " << run.last_error().code() << " "
              << run.last_error().message() << "\n";
    return 1;
  }
  return 0;
}
