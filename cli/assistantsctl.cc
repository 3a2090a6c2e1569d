// assistantsctl: a command-line client of the Assistants gateway's public gRPC
// API (assistants, threads and messages). It prints either a short
// human-readable rendering or, with --json, the proto3 JSON of the result, and
// decodes the gateway's rich errors (google.rpc.Status with ErrorInfo and
// BadRequest) so that operators and scripts see the reason and the offending
// field, not just a gRPC code.
//
// Exit codes: 0 success, 1 the RPC failed, 2 usage error (bad arguments).

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace {

namespace v1 = ::assistants::v1;
using ::google::protobuf::Message;

constexpr int kExitOk = 0;
constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;

constexpr char kDefaultTarget[] = "127.0.0.1:50051";
constexpr double kDefaultTimeoutSeconds = 10;

// The usage text around the command synopses (which live in Commands()).
constexpr char kUsageHeader[] =
    R"(usage: assistantsctl [--target HOST:PORT] [--json] [--timeout SECONDS]
                     RESOURCE VERB [ARGS...]

Global flags (accepted anywhere on the command line):
  --target HOST:PORT   gateway address (default $ASSISTANTS_TARGET, else
                       127.0.0.1:50051)
  --json               print the result as proto3 JSON (field names as in the
                       .proto files) instead of a short rendering
  --timeout SECONDS    deadline of the RPC (default 10)
  --help               print this text

Commands:
)";

constexpr char kUsageFooter[] = R"(
--tools-json takes OpenAI's shape, for example
  '[{"type":"code_interpreter"},
    {"type":"function","function":{"name":"f","parameters":{...}}}]'
--metadata replaces an assistant's metadata whole on update, as in OpenAI.
With --json, create/get/update print the object itself (as OpenAI does);
list and delete print the whole response (object "list" / "*.deleted").

Exit status: 0 success, 1 the RPC failed, 2 usage error.
)";

// ---------------------------------------------------------------------------
// Command-line splitting.

// The command line split into positional words and --flag values. Flags are
// collected wherever they appear because global and command flags mix freely
// with the positional words ("assistants get ID --json").
struct Args {
  std::vector<std::string> positional;
  // Flag name (without "--") to its values in command-line order.
  std::map<std::string, std::vector<std::string>> flags;

  bool Has(const std::string& name) const { return flags.count(name) > 0; }

  // The last value of a flag, if given.
  std::optional<std::string> Get(const std::string& name) const {
    auto it = flags.find(name);
    if (it == flags.end()) return std::nullopt;
    return it->second.back();
  }

  std::vector<std::string> GetAll(const std::string& name) const {
    auto it = flags.find(name);
    return it == flags.end() ? std::vector<std::string>{} : it->second;
  }
};

// Flags that take no value; every other flag consumes the next word, so a
// value may itself start with "-" (e.g. "--temperature -1").
const std::set<std::string>& BooleanFlags() {
  static const auto* flags = new std::set<std::string>{"json", "help"};
  return *flags;
}

absl::StatusOr<Args> SplitArgs(int argc, char** argv) {
  Args args;
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view word = argv[i];
    if (flags_done || !absl::StartsWith(word, "-") || word == "-") {
      args.positional.emplace_back(word);
      continue;
    }
    if (word == "--") {
      flags_done = true;
      continue;
    }
    if (word == "-h") word = "--help";
    if (!absl::StartsWith(word, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", word, " (flags start with --)"));
    }
    word.remove_prefix(2);
    std::string name;
    std::optional<std::string> value;
    if (auto eq = word.find('='); eq != absl::string_view::npos) {
      name = std::string(word.substr(0, eq));
      value = std::string(word.substr(eq + 1));
    } else {
      name = std::string(word);
    }
    if (BooleanFlags().count(name) > 0) {
      if (value.has_value()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " takes no value"));
      }
      value = "true";
    } else if (!value.has_value()) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value"));
      }
      value = argv[++i];
    }
    args.flags[name].push_back(*std::move(value));
  }
  return args;
}

// ---------------------------------------------------------------------------
// Value parsing shared by several commands.

absl::StatusOr<double> ParseDouble(const std::string& flag,
                                   const std::string& text) {
  double value;
  if (!absl::SimpleAtod(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": not a number: \"", text, "\""));
  }
  return value;
}

absl::StatusOr<int32_t> ParseInt(const std::string& flag,
                                 const std::string& text) {
  int32_t value;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": not an integer: \"", text, "\""));
  }
  return value;
}

// "k=v" pairs into a proto map. Range checks (count, lengths) are left to the
// gateway so the CLI reports exactly what the API would.
absl::Status ParseMetadata(
    const std::vector<std::string>& pairs,
    google::protobuf::Map<std::string, std::string>* out) {
  for (const std::string& pair : pairs) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metadata: expected key=value, got \"", pair, "\""));
    }
    (*out)[kv[0]] = kv[1];
  }
  return absl::OkStatus();
}

// Paging flags into ListOptions. Only --order is checked here because the
// enum has no invalid value on the wire; the limit range is the gateway's.
absl::Status ParseListOptions(const Args& args, v1::ListOptions* options) {
  if (auto limit = args.Get("limit")) {
    absl::StatusOr<int32_t> value = ParseInt("limit", *limit);
    if (!value.ok()) return value.status();
    options->set_limit(*value);
  }
  if (auto order = args.Get("order")) {
    if (*order == "asc") {
      options->set_order(v1::LIST_ORDER_ASC);
    } else if (*order == "desc") {
      options->set_order(v1::LIST_ORDER_DESC);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--order: expected asc or desc, got \"", *order, "\""));
    }
  }
  if (auto after = args.Get("after")) options->set_after(*after);
  if (auto before = args.Get("before")) options->set_before(*before);
  return absl::OkStatus();
}

// Converts one JSON value to a message through its JSON text; used to reuse
// protobuf's JSON mapping for the sub-objects of OpenAI's tool shape.
absl::Status ValueToMessage(const google::protobuf::Value& value,
                            const std::string& where, Message* out) {
  std::string json;
  auto printed = google::protobuf::util::MessageToJsonString(value, &json);
  if (!printed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", printed.ToString()));
  }
  auto parsed = google::protobuf::util::JsonStringToMessage(json, out);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", parsed.ToString()));
  }
  return absl::OkStatus();
}

// Converts OpenAI's tool list ([{"type": "function", "function": {...}}, ...])
// to assistants.v1.Tool messages. The proto's oneof field names are OpenAI's
// `type` values, and the nested objects use the same field names, so each
// nested object is parsed with protobuf's own JSON mapping.
absl::Status ParseToolsJson(const std::string& json,
                            google::protobuf::RepeatedPtrField<v1::Tool>* out) {
  google::protobuf::Value root;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &root);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tools-json: invalid JSON: ", parsed.ToString()));
  }
  if (!root.has_list_value()) {
    return absl::InvalidArgumentError("--tools-json: expected a JSON array");
  }
  for (int i = 0; i < root.list_value().values_size(); ++i) {
    const std::string where = absl::StrCat("--tools-json: tools[", i, "]");
    const google::protobuf::Value& element = root.list_value().values(i);
    if (!element.has_struct_value()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not an object"));
    }
    const auto& fields = element.struct_value().fields();
    auto type = fields.find("type");
    if (type == fields.end() || !type->second.has_string_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": missing string \"type\""));
    }
    const std::string& type_name = type->second.string_value();
    for (const auto& [key, unused] : fields) {
      if (key != "type" && key != type_name) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": unexpected key \"", key, "\""));
      }
    }
    auto body = fields.find(type_name);
    v1::Tool* tool = out->Add();
    if (type_name == "code_interpreter") {
      tool->mutable_code_interpreter();
    } else if (type_name == "function") {
      if (body == fields.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": missing \"function\" object"));
      }
      absl::Status status =
          ValueToMessage(body->second, where + ".function",
                         tool->mutable_function()->mutable_function());
      if (!status.ok()) return status;
    } else if (type_name == "file_search") {
      v1::FileSearchTool* file_search = tool->mutable_file_search();
      if (body != fields.end()) {
        absl::Status status =
            ValueToMessage(body->second, where + ".file_search", file_search);
        if (!status.ok()) return status;
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unknown type \"", type_name,
          "\" (expected code_interpreter, function or file_search)"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Output.

struct GlobalOptions {
  std::string target;
  bool json = false;
  double timeout_seconds = kDefaultTimeoutSeconds;
};

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN_CODE";
  }
}

// Prints "error: CODE REASON: message" and the BadRequest field violations
// carried in grpc-status-details-bin. A server that sends no details (or a
// transport failure, which never has any) still gets the code and message.
void PrintRpcError(const grpc::Status& status) {
  std::string reason;
  std::vector<std::string> violations;
  google::rpc::Status details;
  if (!status.error_details().empty() &&
      details.ParseFromString(status.error_details())) {
    for (const google::protobuf::Any& any : details.details()) {
      google::rpc::ErrorInfo info;
      google::rpc::BadRequest bad_request;
      if (any.UnpackTo(&info)) {
        reason = info.reason();
      } else if (any.UnpackTo(&bad_request)) {
        for (const auto& violation : bad_request.field_violations()) {
          violations.push_back(absl::StrCat("  field ", violation.field(), ": ",
                                            violation.description()));
        }
      }
    }
  }
  std::cerr << "error: " << CodeName(status.error_code());
  if (!reason.empty()) std::cerr << " " << reason;
  std::cerr << ": " << status.error_message() << "\n";
  for (const std::string& line : violations) std::cerr << line << "\n";
}

void PrintJson(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    // Only possible for malformed Any payloads, which these messages lack.
    std::cerr << "error: cannot render JSON: " << status.ToString() << "\n";
    return;
  }
  std::cout << json << "\n";
}

std::string RoleName(v1::MessageRole role) {
  switch (role) {
    case v1::MESSAGE_ROLE_USER:
      return "user";
    case v1::MESSAGE_ROLE_ASSISTANT:
      return "assistant";
    default:
      return "unspecified";
  }
}

std::string ToolName(const v1::Tool& tool) {
  switch (tool.tool_case()) {
    case v1::Tool::kFunction:
      return absl::StrCat("function(", tool.function().function().name(), ")");
    case v1::Tool::kCodeInterpreter:
      return "code_interpreter";
    case v1::Tool::kFileSearch:
      return "file_search";
    default:
      return "unknown";
  }
}

std::string MetadataText(
    const google::protobuf::Map<std::string, std::string>& metadata) {
  // Proto maps have no stable order; sort for reproducible output.
  std::map<std::string, std::string> sorted(metadata.begin(), metadata.end());
  return absl::StrJoin(sorted, " ", absl::PairFormatter("="));
}

// The text of a message on one line: parts joined, newlines flattened, so a
// list stays one line per message.
std::string MessageText(const v1::Message& message) {
  std::vector<std::string> parts;
  for (const v1::MessageContent& content : message.content()) {
    switch (content.content_case()) {
      case v1::MessageContent::kText:
        parts.push_back(content.text().value());
        break;
      case v1::MessageContent::kImageUrl:
        parts.push_back(
            absl::StrCat("[image ", content.image_url().url(), "]"));
        break;
      case v1::MessageContent::kImageFile:
        parts.push_back(
            absl::StrCat("[image file ", content.image_file().file_id(), "]"));
        break;
      case v1::MessageContent::kRefusal:
        parts.push_back(absl::StrCat("[refusal] ", content.refusal()));
        break;
      default:
        break;
    }
  }
  std::string text = absl::StrJoin(parts, " ");
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

void PrintAssistant(const v1::Assistant& assistant) {
  std::cout << "id:      " << assistant.id() << "\n";
  if (assistant.has_name())
    std::cout << "name:    " << assistant.name() << "\n";
  std::cout << "model:   " << assistant.model() << "\n";
  if (assistant.tools_size() > 0) {
    std::vector<std::string> tools;
    for (const v1::Tool& tool : assistant.tools())
      tools.push_back(ToolName(tool));
    std::cout << "tools:   " << absl::StrJoin(tools, ", ") << "\n";
  }
  if (!assistant.metadata().empty()) {
    std::cout << "metadata: " << MetadataText(assistant.metadata()) << "\n";
  }
}

void PrintThread(const v1::Thread& thread) {
  std::cout << "id:      " << thread.id() << "\n";
  std::cout << "created: " << thread.created_at() << "\n";
  if (!thread.metadata().empty()) {
    std::cout << "metadata: " << MetadataText(thread.metadata()) << "\n";
  }
}

void PrintMessage(const v1::Message& message) {
  std::cout << "id:      " << message.id() << "\n";
  std::cout << "thread:  " << message.thread_id() << "\n";
  std::cout << "role:    " << RoleName(message.role()) << "\n";
  std::cout << "text:    " << MessageText(message) << "\n";
}

void PrintDeleted(const std::string& id, bool deleted) {
  std::cout << (deleted ? "deleted " : "not deleted ") << id << "\n";
}

// Paging hints go to stderr so stdout stays exactly one line per item.
void PrintMoreHint(bool has_more, const std::string& last_id) {
  if (has_more) std::cerr << "(more results: --after " << last_id << ")\n";
}

// ---------------------------------------------------------------------------
// Commands.

// Everything a command handler needs: the parsed flags, its positional
// argument (an id) and a channel to the gateway.
struct Invocation {
  const Args& args;
  std::string id;
  GlobalOptions options;
  std::shared_ptr<grpc::Channel> channel;

  void PrepareContext(grpc::ClientContext* context) const {
    context->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::duration<double>(options.timeout_seconds)));
  }
};

// A handler's outcome before printing: a usage error (exit 2) or the RPC
// status (exit 0 or 1).
using Outcome = absl::StatusOr<grpc::Status>;

// Prints the result (as JSON or via `render`) if the call succeeded. Call it
// only after the RPC returned: a sub-message getter such as
// response.assistant() evaluated earlier would refer to the shared default
// instance, not to the field the RPC fills in.
template <typename T, typename Render>
grpc::Status Show(const grpc::Status& status, const Invocation& invocation,
                  const T& result, Render render) {
  if (status.ok()) {
    if (invocation.options.json) {
      PrintJson(result);
    } else {
      render(result);
    }
  }
  return status;
}

// Flags shared by create and update of an assistant. The request types differ
// but the field names agree, hence the template.
template <typename Request>
absl::Status FillAssistantFields(const Args& args, Request* request) {
  if (auto v = args.Get("model")) request->set_model(*v);
  if (auto v = args.Get("name")) request->set_name(*v);
  if (auto v = args.Get("description")) request->set_description(*v);
  if (auto v = args.Get("instructions")) request->set_instructions(*v);
  if (auto v = args.Get("tools-json")) {
    absl::Status status = ParseToolsJson(*v, request->mutable_tools());
    if (!status.ok()) return status;
  }
  absl::Status status =
      ParseMetadata(args.GetAll("metadata"), request->mutable_metadata());
  if (!status.ok()) return status;
  if (auto v = args.Get("temperature")) {
    absl::StatusOr<double> value = ParseDouble("temperature", *v);
    if (!value.ok()) return value.status();
    request->set_temperature(*value);
  }
  if (auto v = args.Get("top-p")) {
    absl::StatusOr<double> value = ParseDouble("top-p", *v);
    if (!value.ok()) return value.status();
    request->set_top_p(*value);
  }
  return absl::OkStatus();
}

Outcome AssistantsCreate(const Invocation& inv) {
  if (!inv.args.Has("model")) {
    return absl::InvalidArgumentError("--model is required");
  }
  v1::CreateAssistantRequest request;
  absl::Status filled = FillAssistantFields(inv.args, &request);
  if (!filled.ok()) return filled;
  if (auto v = inv.args.Get("request-id")) request.set_request_id(*v);
  v1::CreateAssistantResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::AssistantService::NewStub(inv.channel);
  const grpc::Status status =
      stub->CreateAssistant(&context, request, &response);
  return Show(status, inv, response.assistant(), PrintAssistant);
}

Outcome AssistantsGet(const Invocation& inv) {
  v1::GetAssistantRequest request;
  request.set_assistant_id(inv.id);
  v1::GetAssistantResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::AssistantService::NewStub(inv.channel);
  const grpc::Status status = stub->GetAssistant(&context, request, &response);
  return Show(status, inv, response.assistant(), PrintAssistant);
}

Outcome AssistantsList(const Invocation& inv) {
  v1::ListAssistantsRequest request;
  absl::Status parsed = ParseListOptions(inv.args, request.mutable_options());
  if (!parsed.ok()) return parsed;
  v1::ListAssistantsResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::AssistantService::NewStub(inv.channel);
  const grpc::Status status =
      stub->ListAssistants(&context, request, &response);
  return Show(
      status, inv, response, [](const v1::ListAssistantsResponse& list) {
        for (const v1::Assistant& a : list.data()) {
          std::cout << a.id() << "  " << a.model() << "  " << a.name() << "\n";
        }
        PrintMoreHint(list.has_more(), list.last_id());
      });
}

Outcome AssistantsUpdate(const Invocation& inv) {
  v1::UpdateAssistantRequest request;
  request.set_assistant_id(inv.id);
  absl::Status filled = FillAssistantFields(inv.args, &request);
  if (!filled.ok()) return filled;
  v1::UpdateAssistantResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::AssistantService::NewStub(inv.channel);
  const grpc::Status status =
      stub->UpdateAssistant(&context, request, &response);
  return Show(status, inv, response.assistant(), PrintAssistant);
}

Outcome AssistantsDelete(const Invocation& inv) {
  v1::DeleteAssistantRequest request;
  request.set_assistant_id(inv.id);
  v1::DeleteAssistantResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::AssistantService::NewStub(inv.channel);
  const grpc::Status status =
      stub->DeleteAssistant(&context, request, &response);
  return Show(status, inv, response, [](const v1::DeleteAssistantResponse& r) {
    PrintDeleted(r.id(), r.deleted());
  });
}

Outcome ThreadsCreate(const Invocation& inv) {
  v1::CreateThreadRequest request;
  for (const std::string& text : inv.args.GetAll("message")) {
    v1::MessageInput* message = request.add_messages();
    message->set_role(v1::MESSAGE_ROLE_USER);
    message->set_text(text);
  }
  absl::Status parsed =
      ParseMetadata(inv.args.GetAll("metadata"), request.mutable_metadata());
  if (!parsed.ok()) return parsed;
  if (auto v = inv.args.Get("request-id")) request.set_request_id(*v);
  v1::CreateThreadResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::ThreadService::NewStub(inv.channel);
  const grpc::Status status = stub->CreateThread(&context, request, &response);
  return Show(status, inv, response.thread(), PrintThread);
}

Outcome ThreadsGet(const Invocation& inv) {
  v1::GetThreadRequest request;
  request.set_thread_id(inv.id);
  v1::GetThreadResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::ThreadService::NewStub(inv.channel);
  const grpc::Status status = stub->GetThread(&context, request, &response);
  return Show(status, inv, response.thread(), PrintThread);
}

Outcome ThreadsDelete(const Invocation& inv) {
  v1::DeleteThreadRequest request;
  request.set_thread_id(inv.id);
  v1::DeleteThreadResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::ThreadService::NewStub(inv.channel);
  const grpc::Status status = stub->DeleteThread(&context, request, &response);
  return Show(status, inv, response, [](const v1::DeleteThreadResponse& r) {
    PrintDeleted(r.id(), r.deleted());
  });
}

Outcome MessagesCreate(const Invocation& inv) {
  auto text = inv.args.Get("text");
  if (!text.has_value())
    return absl::InvalidArgumentError("--text is required");
  v1::CreateMessageRequest request;
  request.set_thread_id(inv.id);
  v1::MessageInput* message = request.mutable_message();
  const std::string role = inv.args.Get("role").value_or("user");
  if (role == "user") {
    message->set_role(v1::MESSAGE_ROLE_USER);
  } else if (role == "assistant") {
    message->set_role(v1::MESSAGE_ROLE_ASSISTANT);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--role: expected user or assistant, got \"", role, "\""));
  }
  message->set_text(*text);
  absl::Status parsed =
      ParseMetadata(inv.args.GetAll("metadata"), message->mutable_metadata());
  if (!parsed.ok()) return parsed;
  if (auto v = inv.args.Get("request-id")) request.set_request_id(*v);
  v1::CreateMessageResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::MessageService::NewStub(inv.channel);
  const grpc::Status status = stub->CreateMessage(&context, request, &response);
  return Show(status, inv, response.message(), PrintMessage);
}

Outcome MessagesList(const Invocation& inv) {
  v1::ListMessagesRequest request;
  request.set_thread_id(inv.id);
  absl::Status parsed = ParseListOptions(inv.args, request.mutable_options());
  if (!parsed.ok()) return parsed;
  if (auto v = inv.args.Get("run-id")) request.set_run_id(*v);
  v1::ListMessagesResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::MessageService::NewStub(inv.channel);
  const grpc::Status status = stub->ListMessages(&context, request, &response);
  return Show(status, inv, response, [](const v1::ListMessagesResponse& list) {
    for (const v1::Message& m : list.data()) {
      std::cout << m.id() << "  " << RoleName(m.role()) << "  "
                << MessageText(m) << "\n";
    }
    PrintMoreHint(list.has_more(), list.last_id());
  });
}

struct Command {
  std::string resource;
  std::string verb;
  // Arguments after "RESOURCE VERB" as shown in the usage text.
  std::string synopsis;
  // Name of the one positional argument in the usage line, or empty for none.
  std::string positional;
  // Command-specific flags accepted (global flags are always accepted).
  std::set<std::string> flags;
  // Flags that may be given more than once.
  std::set<std::string> repeatable;
  Outcome (*run)(const Invocation&);
};

const std::vector<Command>& Commands() {
  static const std::set<std::string> kAssistantFields = {
      "model",      "name",     "description", "instructions",
      "tools-json", "metadata", "temperature", "top-p"};
  static const std::set<std::string> kPaging = {"limit", "order", "after",
                                                "before"};
  auto with = [](std::set<std::string> flags, const std::string& extra) {
    flags.insert(extra);
    return flags;
  };
  static const auto* commands = new std::vector<Command>{
      {"assistants",
       "create",
       "--model M [--name N] [--description D] [--instructions I]\n"
       "[--tools-json JSON] [--metadata k=v ...] [--temperature T]\n"
       "[--top-p P] [--request-id ID]",
       "",
       with(kAssistantFields, "request-id"),
       {"metadata"},
       AssistantsCreate},
      {"assistants", "get", "ID", "ID", {}, {}, AssistantsGet},
      {"assistants",
       "list",
       "[--limit N] [--order asc|desc] [--after ID] [--before ID]",
       "",
       kPaging,
       {},
       AssistantsList},
      {"assistants",
       "update",
       "ID [--model M] [--name N] [--description D] [--instructions I]\n"
       "[--tools-json JSON] [--metadata k=v ...] [--temperature T]\n"
       "[--top-p P]",
       "ID",
       kAssistantFields,
       {"metadata"},
       AssistantsUpdate},
      {"assistants", "delete", "ID", "ID", {}, {}, AssistantsDelete},
      {"threads",
       "create",
       "[--message TEXT ...] [--metadata k=v ...] [--request-id ID]",
       "",
       {"message", "metadata", "request-id"},
       {"message", "metadata"},
       ThreadsCreate},
      {"threads", "get", "ID", "ID", {}, {}, ThreadsGet},
      {"threads", "delete", "ID", "ID", {}, {}, ThreadsDelete},
      {"messages",
       "create",
       "THREAD_ID --text TEXT [--role user|assistant] [--metadata k=v ...]\n"
       "[--request-id ID]",
       "THREAD_ID",
       {"role", "text", "metadata", "request-id"},
       {"metadata"},
       MessagesCreate},
      {"messages",
       "list",
       "THREAD_ID [--limit N] [--order asc|desc] [--after ID] [--before ID]\n"
       "[--run-id ID]",
       "THREAD_ID",
       with(kPaging, "run-id"),
       {},
       MessagesList},
  };
  return *commands;
}

// "<lead>resource verb SYNOPSIS" with continuation lines indented under the
// synopsis.
std::string CommandUsage(const Command& command, absl::string_view lead) {
  const std::string prefix =
      absl::StrCat(lead, command.resource, " ", command.verb, " ");
  const std::string indent(prefix.size(), ' ');
  return absl::StrCat(
      prefix, absl::StrReplaceAll(command.synopsis, {{"\n", "\n" + indent}}),
      "\n");
}

std::string Usage() {
  std::string usage = kUsageHeader;
  for (const Command& command : Commands()) {
    absl::StrAppend(&usage, CommandUsage(command, "  "));
  }
  absl::StrAppend(&usage, kUsageFooter);
  return usage;
}

const std::set<std::string>& GlobalFlags() {
  static const auto* flags =
      new std::set<std::string>{"target", "json", "timeout", "help"};
  return *flags;
}

// Prints a usage error with the usage of `command` when it is known (the
// whole usage text would bury the message), else the full usage.
int UsageError(absl::string_view message, const Command* command = nullptr) {
  std::cerr << "error: " << message << "\n\n";
  if (command != nullptr) {
    std::cerr << CommandUsage(*command, "usage: assistantsctl [flags] ")
              << "Run 'assistantsctl --help' for the global flags.\n";
  } else {
    std::cerr << Usage();
  }
  return kExitUsage;
}

// Checks the flags and positional words against the command's definition.
absl::Status CheckCommandArgs(const Command& command, const Args& args) {
  for (const auto& [name, values] : args.flags) {
    if (GlobalFlags().count(name) > 0) {
      if (values.size() > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " given more than once"));
      }
      continue;
    }
    if (command.flags.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name,
                                                     " for ", command.resource,
                                                     " ", command.verb));
    }
    if (values.size() > 1 && command.repeatable.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " given more than once"));
    }
  }
  const size_t expected = command.positional.empty() ? 2 : 3;
  if (args.positional.size() < expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        command.resource, " ", command.verb, " needs ", command.positional));
  }
  if (args.positional.size() > expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected argument \"", args.positional[expected], "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<GlobalOptions> ParseGlobalOptions(const Args& args) {
  GlobalOptions options;
  const char* env_target = std::getenv("ASSISTANTS_TARGET");
  options.target = args.Get("target").value_or(
      env_target != nullptr && *env_target != '\0' ? env_target
                                                   : kDefaultTarget);
  options.json = args.Has("json");
  if (auto timeout = args.Get("timeout")) {
    absl::StatusOr<double> seconds = ParseDouble("timeout", *timeout);
    if (!seconds.ok()) return seconds.status();
    if (!(*seconds > 0)) {
      return absl::InvalidArgumentError("--timeout must be positive");
    }
    options.timeout_seconds = *seconds;
  }
  return options;
}

const Command* FindCommand(const Args& args) {
  if (args.positional.size() < 2) return nullptr;
  for (const Command& command : Commands()) {
    if (command.resource == args.positional[0] &&
        command.verb == args.positional[1]) {
      return &command;
    }
  }
  return nullptr;
}

int Run(int argc, char** argv) {
  absl::StatusOr<Args> args = SplitArgs(argc, argv);
  if (!args.ok()) return UsageError(args.status().message());
  if (args->Has("help")) {
    std::cout << Usage();
    return kExitOk;
  }
  const Command* command = FindCommand(*args);
  if (command == nullptr) {
    return UsageError(args->positional.empty()
                          ? "missing command"
                          : absl::StrCat("unknown command \"",
                                         absl::StrJoin(args->positional, " "),
                                         "\""));
  }
  if (absl::Status checked = CheckCommandArgs(*command, *args); !checked.ok()) {
    return UsageError(checked.message(), command);
  }
  absl::StatusOr<GlobalOptions> options = ParseGlobalOptions(*args);
  if (!options.ok()) {
    return UsageError(options.status().message(), command);
  }

  Invocation invocation{
      *args, command->positional.empty() ? "" : args->positional[2], *options,
      grpc::CreateChannel(options->target, grpc::InsecureChannelCredentials())};
  Outcome outcome = command->run(invocation);
  if (!outcome.ok()) {
    return UsageError(outcome.status().message(), command);
  }
  if (!outcome->ok()) {
    PrintRpcError(*outcome);
    return kExitRpcError;
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
