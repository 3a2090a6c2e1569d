// assistantsctl: a command-line client of the Assistants gateway's public gRPC
// API (assistants, threads, messages, runs, tools and workers: every RPC a
// client calls). It prints either a short
// human-readable rendering or, with --json, the proto3 JSON of the result, and
// decodes the gateway's rich errors (google.rpc.Status with ErrorInfo and
// BadRequest) so that operators and scripts see the reason and the offending
// field, not just a gRPC code. `run` drives a whole run the way the seed
// tutorial's code does (streamed, or polled with --poll); its logic lives in
// run_flow / run_printer / tool_answers so it is unit-tested.
//
// Every call carries `authorization: Bearer <--api-key>` when a key is set
// and one `x-request-id` per invocation; --tls* flags select TLS or mTLS
// (cli/connection.h).
//
// Exit codes: 0 success, 1 the RPC failed (or `run`: the run did not
// complete), 2 usage error (bad arguments).

#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "assistants/v1/tool_worker.grpc.pb.h"
#include "cli/connection.h"
#include "cli/rpc_error.h"
#include "cli/run_flow.h"
#include "cli/run_printer.h"
#include "cli/tool_answers.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace {

namespace v1 = ::assistants::v1;
namespace cli = ::assistants::cli;
using ::google::protobuf::Message;

constexpr int kExitOk = 0;
constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;

constexpr char kDefaultTarget[] = "127.0.0.1:50051";
constexpr double kDefaultTimeoutSeconds = 10;

// The usage text around the command synopses (which live in Commands()).
constexpr char kUsageHeader[] =
    R"(usage: assistantsctl [--target HOST:PORT] [--json] [--timeout SECONDS]
                     [--api-key KEY] [--tls] [--tls-ca FILE]
                     [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]
                     RESOURCE VERB [ARGS...] | run [FLAGS...]

Global flags (accepted anywhere on the command line):
  --target HOST:PORT   gateway address (default $ASSISTANTS_TARGET, else
                       127.0.0.1:50051)
  --json               print the result as proto3 JSON (field names as in the
                       .proto files) instead of a short rendering
  --timeout SECONDS    deadline of the RPC (default 10; for `run` and
                       `runs events --follow`, of each unary call: the event
                       stream has none)
  --api-key KEY        sent as "authorization: Bearer KEY" on every call
                       (default $ASSISTANTS_API_KEY; never printed)
  --tls                use TLS, trusting the system's root CAs
  --tls-ca FILE        use TLS, trusting the CA certificates (PEM) in FILE
                       (default $ASSISTANTS_TLS_CA)
  --tls-cert FILE      client certificate chain (PEM) for mutual TLS, with
  --tls-key FILE       its private key (default $ASSISTANTS_TLS_CERT and
                       $ASSISTANTS_TLS_KEY); implies TLS
  --tls-server-name NAME
                       name to check the server certificate against instead
                       of the target's host
                       (default $ASSISTANTS_TLS_SERVER_NAME)
  --help               print this text
Each invocation sends one random x-request-id with all its calls.

Request flags (every command):
  --request-json JSON  the request message in protobuf's JSON mapping (field
                       names as in the .proto files, e.g. for runs create
                       '{"options":{"metadata":{"k":"v"}}}'); the command's
                       flags and ids are applied on top and win, a flag
                       replacing its field whole (lists and maps too). For
                       `run` it is the CreateRunRequest (with --thread) or
                       CreateThreadAndRunRequest it starts. An unknown field
                       or bad JSON is a usage error; nothing is sent.
  --request-file FILE  the same, read from FILE
  Every field of every request can be set this way; the flags below cover
  the common ones.

Commands:
)";

constexpr char kUsageFooter[] = R"(
--tools-json takes OpenAI's shape, for example
  '[{"type":"code_interpreter"},
    {"type":"function","function":{"name":"f","parameters":{...}}}]'
--metadata replaces an assistant's metadata whole on update, as in OpenAI;
threads/messages/runs update need --metadata k=v ... or --clear-metadata
(or --request-json; threads update: or --tool-resources-json alone, which
keeps the metadata).
--tool-resources-json takes OpenAI's tool_resources object, for example
  '{"code_interpreter":{"file_ids":["file_1"]},
    "file_search":{"vector_store_ids":["vs_1"]}}'
--response-format FORMAT is text, json_object or json_schema:FILE, the file
holding OpenAI's json_schema object ({"name":"n","schema":{...},
"strict":true}).
runs create / threads create-and-run return the new run at once (`run`
streams it). Their [RUN FLAGS]: [--model M] [--instructions I]
[--tools-json JSON] [--metadata k=v ...] [--temperature T] [--top-p P]
[--max-prompt-tokens N] [--max-completion-tokens N]
[--truncation auto|last:N] [--response-format FORMAT]
[--tool-choice auto|none|required|code_interpreter|file_search|NAME]
[--parallel-tool-calls true|false] [--requires-action-timeout-s N];
--tools-json there replaces the assistant's tools for the run ("[]": none),
--tool-choice NAME (or function:NAME) makes the model call that function.
runs submit answers requires_action: --output CALL_ID=TEXT per
pending call, or --outputs-file FILE.json mapping call ids to outputs
(strings sent as they are, other JSON values as their JSON text).
runs events prints the run's events from sequence --after N (default 0), one
line each ("SEQ  EVENT  DETAIL"; --json: the events' JSON), until `done`;
without --follow it stops at the --timeout deadline (exit 0, with a note on
stderr) if the run is still going, with --follow it waits for the end and
resumes a broken stream; it never answers tool calls.
With --json, create/get/update print the object itself (as OpenAI does);
list and delete print the whole response (object "list" / "*.deleted").

`run` starts a run and streams it as the seed tutorial's AgentStreamHandler
prints it ("assistant > ...", "[calling function]"), lists each pending call
of requires_action and answers it: --outputs FILE.json maps function names to
outputs ({"get_stock_price": {"price": 237.5}}; other functions get the
seed's {"error": "Unknown function: NAME"}), --demo-tools runs the seed's
get_stock_price and a calculator locally, otherwise one line of stdin is read
per call. --message goes into the new thread, or with --thread into the run's
additional_messages. --attach RUN_ID --thread ID follows an existing run from
sequence --after N (default 0: from its start). --poll uses the seed's polling
loop instead (GetRun every --poll-interval-ms, default 1000). A broken stream
resumes after the last sequence seen. With --json each event is one JSON line.
The elapsed time goes to stderr. Flags may also be spelled with underscores
(--demo_tools).

Exit status: 0 success (`run`: the run completed), 1 the RPC failed (`run`:
or the run failed, was cancelled, expired or is incomplete), 2 usage error.
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
  static const auto* flags = new std::set<std::string>{
      "json", "help", "demo-tools", "poll", "follow", "tls", "clear-metadata"};
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
    // --request_id is --request-id: the absl-style spelling of the gateway's
    // own flags works here too.
    std::replace(name.begin(), name.end(), '_', '-');
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

template <typename Int = int32_t>
absl::StatusOr<Int> ParseInt(const std::string& flag, const std::string& text) {
  Int value;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": not an integer: \"", text, "\""));
  }
  return value;
}

// "k=v" pairs into a proto map, replacing what --request-json put there
// (a flag sets its field whole). Range checks (count, lengths) are left to
// the gateway so the CLI reports exactly what the API would.
absl::Status ParseMetadata(
    const std::vector<std::string>& pairs,
    google::protobuf::Map<std::string, std::string>* out) {
  if (!pairs.empty()) out->clear();
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

// Parses `json`, protobuf's JSON mapping of `out`'s type, into `out`
// (replacing its contents). Unknown fields are errors, so a misspelt field
// is named instead of silently dropped. `where` starts the message.
absl::Status ParseProtoJson(absl::string_view where, const std::string& json,
                            Message* out) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, out, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": not a valid ", out->GetDescriptor()->full_name(), ": ",
        // Some of protobuf's messages start with ": ".
        absl::StripPrefix(parsed.message().ToString(), ": ")));
  }
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
  return ParseProtoJson(where, json, out);
}

// Converts OpenAI's tool list ([{"type": "function", "function": {...}}, ...])
// to assistants.v1.Tool messages, replacing `out`. The proto's oneof field
// names are OpenAI's `type` values, and the nested objects use the same
// field names, so each nested object is parsed with protobuf's own JSON
// mapping.
absl::Status ParseToolsJson(const std::string& json,
                            google::protobuf::RepeatedPtrField<v1::Tool>* out) {
  out->Clear();
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

absl::StatusOr<bool> ParseBool(const std::string& flag,
                               const std::string& text) {
  if (text == "true") return true;
  if (text == "false") return false;
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": expected true or false, got \"", text, "\""));
}

// A file a flag names, read whole (usage errors: the file is an argument).
absl::StatusOr<std::string> ReadFlagFile(const std::string& flag,
                                         const std::string& path) {
  return cli::ReadNamedFile({path, absl::StrCat("--", flag)});
}

// The rule of function names (^[a-zA-Z0-9_-]{1,64}$), checked here only to
// tell a misspelt --tool-choice keyword from a function name.
bool IsFunctionName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
           c == '-';
  });
}

// --tool-choice auto|none|required|code_interpreter|file_search|NAME, or
// function:NAME for a function whose name is one of those words.
absl::StatusOr<v1::ToolChoice> ParseToolChoice(const std::string& text) {
  static const auto* modes = new std::map<std::string, v1::ToolChoice::Mode>{
      {"auto", v1::ToolChoice::MODE_AUTO},
      {"none", v1::ToolChoice::MODE_NONE},
      {"required", v1::ToolChoice::MODE_REQUIRED},
      {"code_interpreter", v1::ToolChoice::MODE_CODE_INTERPRETER},
      {"file_search", v1::ToolChoice::MODE_FILE_SEARCH},
  };
  v1::ToolChoice choice;
  if (auto mode = modes->find(text); mode != modes->end()) {
    choice.set_mode(mode->second);
    return choice;
  }
  absl::string_view name = text;
  const bool prefixed = absl::ConsumePrefix(&name, "function:");
  if (!IsFunctionName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tool-choice: expected auto, none, required, code_interpreter, "
        "file_search or a function name ([a-zA-Z0-9_-], at most 64; "
        "function:NAME also works), got \"",
        text, "\"", prefixed ? " (not a function name)" : ""));
  }
  choice.set_mode(v1::ToolChoice::MODE_FUNCTION);
  choice.set_function_name(std::string(name));
  return choice;
}

// --truncation auto|last:N (OpenAI's truncation_strategy; N >= 1).
absl::StatusOr<v1::TruncationStrategy> ParseTruncation(
    const std::string& text) {
  v1::TruncationStrategy strategy;
  if (text == "auto") {
    strategy.set_type(v1::TruncationStrategy::TYPE_AUTO);
    return strategy;
  }
  absl::string_view count = text;
  if (!absl::ConsumePrefix(&count, "last:")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--truncation: expected auto or last:N, got \"", text, "\""));
  }
  int32_t last = 0;
  if (!absl::SimpleAtoi(count, &last) || last < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--truncation: last:N needs a whole number N >= 1, got \"",
                     text, "\""));
  }
  strategy.set_type(v1::TruncationStrategy::TYPE_LAST_MESSAGES);
  strategy.set_last_messages(last);
  return strategy;
}

// --response-format text|json_object|json_schema:FILE, the file holding
// OpenAI's json_schema object ({"name": ..., "schema": {...},
// "strict": true}) in the proto's JSON mapping.
absl::StatusOr<v1::ResponseFormat> ParseResponseFormat(
    const std::string& text) {
  v1::ResponseFormat format;
  if (text == "text") {
    format.set_type(v1::ResponseFormat::TYPE_TEXT);
    return format;
  }
  if (text == "json_object") {
    format.set_type(v1::ResponseFormat::TYPE_JSON_OBJECT);
    return format;
  }
  absl::string_view path = text;
  if (!absl::ConsumePrefix(&path, "json_schema:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--response-format: expected text, json_object or "
                     "json_schema:FILE, got \"",
                     text, "\""));
  }
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "--response-format: json_schema:FILE needs a file");
  }
  absl::StatusOr<std::string> schema =
      ReadFlagFile("response-format", std::string(path));
  if (!schema.ok()) return schema.status();
  format.set_type(v1::ResponseFormat::TYPE_JSON_SCHEMA);
  absl::Status parsed = ParseProtoJson(absl::StrCat("--response-format ", path),
                                       *schema, format.mutable_json_schema());
  if (!parsed.ok()) return parsed;
  return format;
}

// --tool-resources-json into request->tool_resources: OpenAI's object, which
// is the proto's JSON mapping ({"code_interpreter": {"file_ids": [...]},
// "file_search": {"vector_store_ids": [...]}}). Untouched without the flag:
// a present tool_resources is a write on update.
template <typename Request>
absl::Status FillToolResources(const Args& args, Request* request) {
  if (auto v = args.Get("tool-resources-json")) {
    return ParseProtoJson("--tool-resources-json", *v,
                          request->mutable_tool_resources());
  }
  return absl::OkStatus();
}

// Whether the command line carries a whole request (--request-json or
// --request-file).
bool HasRequestJson(const Args& args) {
  return args.Has("request-json") || args.Has("request-file");
}

// --request-json JSON or --request-file PATH: the whole request message in
// protobuf's JSON mapping, parsed into the fresh `request` before the
// command's flags are applied, so that a flag wins over the JSON (a flag
// sets its field whole, lists and maps included). Neither given: nothing.
absl::Status MergeRequestJson(const Args& args, Message* request) {
  const std::optional<std::string> json = args.Get("request-json");
  const std::optional<std::string> path = args.Get("request-file");
  if (json.has_value() && path.has_value()) {
    return absl::InvalidArgumentError(
        "give --request-json or --request-file, not both");
  }
  if (json.has_value()) return ParseProtoJson("--request-json", *json, request);
  if (path.has_value()) {
    absl::StatusOr<std::string> text = ReadFlagFile("request-file", *path);
    if (!text.ok()) return text.status();
    return ParseProtoJson(absl::StrCat("--request-file ", *path), *text,
                          request);
  }
  return absl::OkStatus();
}

// Adds `path` to an update mask unless it is there.
void AddMaskPath(google::protobuf::FieldMask* mask, const std::string& path) {
  const auto& paths = mask->paths();
  if (std::find(paths.begin(), paths.end(), path) == paths.end()) {
    mask->add_paths(path);
  }
}

// ---------------------------------------------------------------------------
// Output.

struct GlobalOptions {
  bool json = false;
  double timeout_seconds = kDefaultTimeoutSeconds;
  // Target, API key, TLS and the invocation's x-request-id.
  cli::ConnectionOptions connection;
};

// Prints "error: CODE REASON: message" and the BadRequest field violations.
void PrintRpcError(const grpc::Status& status) {
  std::cerr << cli::DescribeRpcError(status);
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
  if (!message.run_id().empty()) {
    std::cout << "run:     " << message.run_id() << "\n";
  }
  if (!message.metadata().empty()) {
    std::cout << "metadata: " << MetadataText(message.metadata()) << "\n";
  }
}

void PrintRun(const v1::Run& run) {
  std::cout << "id:        " << run.id() << "\n";
  std::cout << "thread:    " << run.thread_id() << "\n";
  std::cout << "assistant: " << run.assistant_id() << "\n";
  std::cout << "status:    " << cli::RunStatusName(run.status()) << "\n";
  if (!run.model().empty()) std::cout << "model:     " << run.model() << "\n";
  const auto& calls = run.required_action().submit_tool_outputs().tool_calls();
  if (!calls.empty()) {
    std::cout << "pending:\n";
    for (const v1::RequiredToolCall& call : calls) {
      std::cout << cli::PendingCallLine(call) << "\n";
    }
  }
  if (!run.last_error().code().empty() || !run.last_error().message().empty()) {
    std::cout << "error:     " << run.last_error().code() << ": "
              << run.last_error().message() << "\n";
  }
  if (!run.incomplete_details().reason().empty()) {
    std::cout << "incomplete: " << run.incomplete_details().reason() << "\n";
  }
  if (run.has_usage()) {
    std::cout << "usage:     prompt " << run.usage().prompt_tokens()
              << ", completion " << run.usage().completion_tokens()
              << ", total " << run.usage().total_tokens() << "\n";
  }
  if (!run.metadata().empty()) {
    std::cout << "metadata:  " << MetadataText(run.metadata()) << "\n";
  }
}

// One step in full: its calls with their arguments and outputs.
void PrintStep(const v1::RunStep& step) {
  std::cout << "id:      " << step.id() << "\n";
  std::cout << "run:     " << step.run_id() << "\n";
  std::cout << "type:    " << cli::StepTypeName(step.type()) << "\n";
  std::cout << "status:  " << cli::StepStatusName(step.status()) << "\n";
  if (step.step_details().has_message_creation()) {
    std::cout << "message: "
              << step.step_details().message_creation().message_id() << "\n";
  }
  for (const v1::ToolCall& call :
       step.step_details().tool_calls().tool_calls()) {
    if (call.has_function()) {
      std::cout << "call:    " << call.id() << "  " << call.function().name()
                << "(" << call.function().arguments() << ")";
      if (call.function().has_output()) {
        std::cout << " -> " << call.function().output();
      }
      std::cout << "\n";
    } else if (call.has_code_interpreter()) {
      std::cout << "call:    " << call.id() << "  code_interpreter\n";
    } else if (call.has_file_search()) {
      std::cout << "call:    " << call.id() << "  file_search\n";
    }
  }
  if (!step.last_error().code().empty() ||
      !step.last_error().message().empty()) {
    std::cout << "error:   " << step.last_error().code() << ": "
              << step.last_error().message() << "\n";
  }
  if (step.has_usage()) {
    std::cout << "usage:   prompt " << step.usage().prompt_tokens()
              << ", completion " << step.usage().completion_tokens()
              << ", total " << step.usage().total_tokens() << "\n";
  }
}

// One line per step: "step_...  tool_calls  completed  function(f) ...".
void PrintStepLine(const v1::RunStep& step) {
  std::vector<std::string> details;
  if (step.step_details().has_message_creation()) {
    details.push_back(step.step_details().message_creation().message_id());
  }
  for (const v1::ToolCall& call :
       step.step_details().tool_calls().tool_calls()) {
    switch (call.call_case()) {
      case v1::ToolCall::kFunction:
        details.push_back(
            absl::StrCat("function(", call.function().name(), ")"));
        break;
      case v1::ToolCall::kCodeInterpreter:
        details.push_back("code_interpreter");
        break;
      case v1::ToolCall::kFileSearch:
        details.push_back("file_search");
        break;
      default:
        break;
    }
  }
  std::cout << step.id() << "  " << cli::StepTypeName(step.type()) << "  "
            << cli::StepStatusName(step.status()) << "  "
            << absl::StrJoin(details, " ") << "\n";
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
// arguments (ids) and a channel to the gateway.
struct Invocation {
  const Args& args;
  std::string id;
  // The second positional argument, for an object inside another one
  // ("runs get THREAD_ID RUN_ID").
  std::string second_id;
  // The third ("runs step THREAD_ID RUN_ID STEP_ID").
  std::string third_id;
  GlobalOptions options;
  std::shared_ptr<grpc::Channel> channel;

  void PrepareContext(grpc::ClientContext* context) const {
    context->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::duration<double>(options.timeout_seconds)));
  }
};

// A handler's outcome before printing: a usage error (exit 2), the RPC
// status (exit 0 or 1), or RunNotCompleted() (exit 1).
using Outcome = absl::StatusOr<grpc::Status>;

// `run` when the run ended failed, cancelled, expired or incomplete (or could
// not be answered): exit 1 as for a failed RPC, but there is no RPC error to
// print, the run's own output has said why. Usage errors are always
// INVALID_ARGUMENT, so ABORTED cannot be mistaken for one.
absl::Status RunNotCompleted() {
  return absl::AbortedError("the run did not complete");
}

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
  if (auto v = args.Get("upstream")) request->set_upstream(*v);
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
  absl::Status resources = FillToolResources(args, request);
  if (!resources.ok()) return resources;
  if (auto v = args.Get("response-format")) {
    absl::StatusOr<v1::ResponseFormat> format = ParseResponseFormat(*v);
    if (!format.ok()) return format.status();
    *request->mutable_response_format() = *std::move(format);
  }
  return absl::OkStatus();
}

Outcome AssistantsCreate(const Invocation& inv) {
  v1::CreateAssistantRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  absl::Status filled = FillAssistantFields(inv.args, &request);
  if (!filled.ok()) return filled;
  if (request.model().empty()) {
    return absl::InvalidArgumentError("--model is required");
  }
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
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
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
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
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
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_assistant_id(inv.id);
  absl::Status filled = FillAssistantFields(inv.args, &request);
  if (!filled.ok()) return filled;
  if (request.has_update_mask()) {
    // The JSON's mask writes exactly its paths: the flags' fields join it.
    static const auto* paths = new std::map<std::string, std::string>{
        {"model", "model"},
        {"name", "name"},
        {"description", "description"},
        {"instructions", "instructions"},
        {"upstream", "upstream"},
        {"tools-json", "tools"},
        {"metadata", "metadata"},
        {"temperature", "temperature"},
        {"top-p", "top_p"},
        {"tool-resources-json", "tool_resources"},
        {"response-format", "response_format"},
    };
    for (const auto& [flag, path] : *paths) {
      if (inv.args.Has(flag)) AddMaskPath(request.mutable_update_mask(), path);
    }
  }
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
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
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

// --message TEXT ... as user messages, replacing `out` when given (the
// thread's initial messages or a run's additional_messages).
void FillMessages(const Args& args,
                  google::protobuf::RepeatedPtrField<v1::MessageInput>* out) {
  if (!args.Has("message")) return;
  out->Clear();
  for (const std::string& text : args.GetAll("message")) {
    v1::MessageInput* message = out->Add();
    message->set_role(v1::MESSAGE_ROLE_USER);
    message->set_text(text);
  }
}

Outcome ThreadsCreate(const Invocation& inv) {
  v1::CreateThreadRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  FillMessages(inv.args, request.mutable_messages());
  absl::Status parsed =
      ParseMetadata(inv.args.GetAll("metadata"), request.mutable_metadata());
  if (!parsed.ok()) return parsed;
  if (absl::Status resources = FillToolResources(inv.args, &request);
      !resources.ok()) {
    return resources;
  }
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
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
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
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
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
  v1::CreateMessageRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  v1::MessageInput* message = request.mutable_message();
  if (auto text = inv.args.Get("text")) {
    // Text and content parts are one field in OpenAI (`content`).
    message->clear_content();
    message->set_text(*text);
  } else if (message->text().empty() && message->content().empty()) {
    return absl::InvalidArgumentError("--text is required");
  }
  if (auto role = inv.args.Get("role")) {
    if (*role == "user") {
      message->set_role(v1::MESSAGE_ROLE_USER);
    } else if (*role == "assistant") {
      message->set_role(v1::MESSAGE_ROLE_ASSISTANT);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--role: expected user or assistant, got \"", *role, "\""));
    }
  } else if (message->role() == v1::MESSAGE_ROLE_UNSPECIFIED) {
    message->set_role(v1::MESSAGE_ROLE_USER);
  }
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
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
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

Outcome RunsGet(const Invocation& inv) {
  v1::GetRunRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_run_id(inv.second_id);
  v1::GetRunResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status = stub->GetRun(&context, request, &response);
  return Show(status, inv, response.run(), PrintRun);
}

Outcome RunsList(const Invocation& inv) {
  v1::ListRunsRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  absl::Status parsed = ParseListOptions(inv.args, request.mutable_options());
  if (!parsed.ok()) return parsed;
  v1::ListRunsResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status = stub->ListRuns(&context, request, &response);
  return Show(status, inv, response, [](const v1::ListRunsResponse& list) {
    for (const v1::Run& run : list.data()) {
      std::cout << run.id() << "  " << cli::RunStatusName(run.status()) << "  "
                << run.assistant_id() << "\n";
    }
    PrintMoreHint(list.has_more(), list.last_id());
  });
}

Outcome RunsCancel(const Invocation& inv) {
  v1::CancelRunRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_run_id(inv.second_id);
  v1::CancelRunResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status = stub->CancelRun(&context, request, &response);
  return Show(status, inv, response.run(), PrintRun);
}

Outcome RunsSteps(const Invocation& inv) {
  v1::ListRunStepsRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_run_id(inv.second_id);
  absl::Status parsed = ParseListOptions(inv.args, request.mutable_options());
  if (!parsed.ok()) return parsed;
  v1::ListRunStepsResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status = stub->ListRunSteps(&context, request, &response);
  return Show(status, inv, response, [](const v1::ListRunStepsResponse& list) {
    for (const v1::RunStep& step : list.data()) PrintStepLine(step);
    PrintMoreHint(list.has_more(), list.last_id());
  });
}

constexpr char kGiveMetadata[] =
    "give --metadata k=v ... (replaces the metadata) or --clear-metadata";

// --metadata k=v ... or --clear-metadata for the update commands, whose
// metadata is replaced whole. With `required`, one of them must be given
// (an update with neither would silently clear the metadata). Returns
// whether one was.
absl::StatusOr<bool> ParseMetadataUpdate(
    const Args& args, google::protobuf::Map<std::string, std::string>* out,
    bool required) {
  const bool clear = args.Has("clear-metadata");
  const bool set = args.Has("metadata");
  if (clear && set) {
    return absl::InvalidArgumentError(
        absl::StrCat(kGiveMetadata, ", not both"));
  }
  if (!clear && !set) {
    if (required) return absl::InvalidArgumentError(kGiveMetadata);
    return false;
  }
  out->clear();
  absl::Status parsed = ParseMetadata(args.GetAll("metadata"), out);
  if (!parsed.ok()) return parsed;
  return true;
}

Outcome ThreadsUpdate(const Invocation& inv) {
  v1::UpdateThreadRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  const bool resources = inv.args.Has("tool-resources-json");
  if (!resources && !HasRequestJson(inv.args) && !inv.args.Has("metadata") &&
      !inv.args.Has("clear-metadata")) {
    return absl::InvalidArgumentError(
        absl::StrCat(kGiveMetadata, ", and/or --tool-resources-json"));
  }
  absl::StatusOr<bool> metadata = ParseMetadataUpdate(
      inv.args, request.mutable_metadata(), /*required=*/false);
  if (!metadata.ok()) return metadata.status();
  if (absl::Status parsed = FillToolResources(inv.args, &request);
      !parsed.ok()) {
    return parsed;
  }
  if (*metadata || resources) {
    // Empty metadata is written only when the mask names it. A mask written
    // here also names the fields --request-json set, or they would be
    // dropped; a mask the JSON gave gets only the flags' fields.
    const bool json_mask = request.has_update_mask();
    google::protobuf::FieldMask* mask = request.mutable_update_mask();
    if (*metadata) AddMaskPath(mask, "metadata");
    if (resources) AddMaskPath(mask, "tool_resources");
    if (!json_mask) {
      if (!request.metadata().empty()) AddMaskPath(mask, "metadata");
      if (request.has_tool_resources()) AddMaskPath(mask, "tool_resources");
    }
  }
  v1::UpdateThreadResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::ThreadService::NewStub(inv.channel);
  const grpc::Status status = stub->UpdateThread(&context, request, &response);
  return Show(status, inv, response.thread(), PrintThread);
}

Outcome MessagesGet(const Invocation& inv) {
  v1::GetMessageRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_message_id(inv.second_id);
  v1::GetMessageResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::MessageService::NewStub(inv.channel);
  const grpc::Status status = stub->GetMessage(&context, request, &response);
  return Show(status, inv, response.message(), PrintMessage);
}

Outcome MessagesUpdate(const Invocation& inv) {
  v1::UpdateMessageRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_message_id(inv.second_id);
  absl::StatusOr<bool> parsed =
      ParseMetadataUpdate(inv.args, request.mutable_metadata(),
                          /*required=*/!HasRequestJson(inv.args));
  if (!parsed.ok()) return parsed.status();
  v1::UpdateMessageResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::MessageService::NewStub(inv.channel);
  const grpc::Status status = stub->UpdateMessage(&context, request, &response);
  return Show(status, inv, response.message(), PrintMessage);
}

Outcome MessagesDelete(const Invocation& inv) {
  v1::DeleteMessageRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_message_id(inv.second_id);
  v1::DeleteMessageResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::MessageService::NewStub(inv.channel);
  const grpc::Status status = stub->DeleteMessage(&context, request, &response);
  return Show(status, inv, response, [](const v1::DeleteMessageResponse& r) {
    PrintDeleted(r.id(), r.deleted());
  });
}

absl::StatusOr<v1::ActiveRunPolicy> ParseActiveRunPolicy(
    const std::string& text) {
  if (text == "reject") return v1::ACTIVE_RUN_POLICY_REJECT;
  if (text == "queue") return v1::ACTIVE_RUN_POLICY_QUEUE;
  if (text == "interrupt") return v1::ACTIVE_RUN_POLICY_INTERRUPT;
  return absl::InvalidArgumentError(absl::StrCat(
      "--active-run-policy: expected reject, queue or interrupt, got \"", text,
      "\""));
}

// The run flags of `runs create`, `threads create-and-run` and `run` into
// RunOptions, over what --request-json put there. --message is the
// caller's (the run's additional_messages or the new thread's messages), as
// is the check that an assistant is named. Range checks are the gateway's,
// as for assistants.
absl::Status FillRunOptions(const Args& args, v1::RunOptions* options) {
  if (auto v = args.Get("assistant")) options->set_assistant_id(*v);
  if (auto v = args.Get("model")) options->set_model(*v);
  if (auto v = args.Get("instructions")) options->set_instructions(*v);
  if (auto v = args.Get("additional-instructions")) {
    options->set_additional_instructions(*v);
  }
  if (auto v = args.Get("tools-json")) {
    absl::Status status = ParseToolsJson(*v, options->mutable_tools());
    if (!status.ok()) return status;
    // Given explicitly, the list replaces the assistant's, even when empty.
    options->set_override_tools(true);
  }
  absl::Status status =
      ParseMetadata(args.GetAll("metadata"), options->mutable_metadata());
  if (!status.ok()) return status;
  if (auto v = args.Get("temperature")) {
    absl::StatusOr<double> value = ParseDouble("temperature", *v);
    if (!value.ok()) return value.status();
    options->set_temperature(*value);
  }
  if (auto v = args.Get("top-p")) {
    absl::StatusOr<double> value = ParseDouble("top-p", *v);
    if (!value.ok()) return value.status();
    options->set_top_p(*value);
  }
  if (auto v = args.Get("max-prompt-tokens")) {
    absl::StatusOr<int64_t> value = ParseInt<int64_t>("max-prompt-tokens", *v);
    if (!value.ok()) return value.status();
    options->set_max_prompt_tokens(*value);
  }
  if (auto v = args.Get("max-completion-tokens")) {
    absl::StatusOr<int64_t> value =
        ParseInt<int64_t>("max-completion-tokens", *v);
    if (!value.ok()) return value.status();
    options->set_max_completion_tokens(*value);
  }
  if (auto v = args.Get("requires-action-timeout-s")) {
    absl::StatusOr<int32_t> value = ParseInt("requires-action-timeout-s", *v);
    if (!value.ok()) return value.status();
    options->set_requires_action_timeout_seconds(*value);
  }
  if (auto v = args.Get("active-run-policy")) {
    absl::StatusOr<v1::ActiveRunPolicy> policy = ParseActiveRunPolicy(*v);
    if (!policy.ok()) return policy.status();
    options->set_active_run_policy(*policy);
  }
  if (auto v = args.Get("tool-choice")) {
    absl::StatusOr<v1::ToolChoice> choice = ParseToolChoice(*v);
    if (!choice.ok()) return choice.status();
    *options->mutable_tool_choice() = *std::move(choice);
  }
  if (auto v = args.Get("truncation")) {
    absl::StatusOr<v1::TruncationStrategy> truncation = ParseTruncation(*v);
    if (!truncation.ok()) return truncation.status();
    *options->mutable_truncation_strategy() = *std::move(truncation);
  }
  if (auto v = args.Get("response-format")) {
    absl::StatusOr<v1::ResponseFormat> format = ParseResponseFormat(*v);
    if (!format.ok()) return format.status();
    *options->mutable_response_format() = *std::move(format);
  }
  if (auto v = args.Get("parallel-tool-calls")) {
    absl::StatusOr<bool> parallel = ParseBool("parallel-tool-calls", *v);
    if (!parallel.ok()) return parallel.status();
    options->set_parallel_tool_calls(*parallel);
  }
  return absl::OkStatus();
}

// The new thread of create-and-run (and `run` without --thread): --message,
// --thread-metadata and --tool-resources-json.
absl::Status FillNewThread(const Args& args, v1::CreateThreadRequest* thread) {
  FillMessages(args, thread->mutable_messages());
  absl::Status parsed =
      ParseMetadata(args.GetAll("thread-metadata"), thread->mutable_metadata());
  if (!parsed.ok()) return parsed;
  return FillToolResources(args, thread);
}

Outcome RunsCreate(const Invocation& inv) {
  v1::CreateRunRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  v1::RunOptions* options = request.mutable_options();
  absl::Status filled = FillRunOptions(inv.args, options);
  if (!filled.ok()) return filled;
  if (options->assistant_id().empty()) {
    return absl::InvalidArgumentError("--assistant is required");
  }
  FillMessages(inv.args, options->mutable_additional_messages());
  if (auto v = inv.args.Get("request-id")) request.set_request_id(*v);
  v1::CreateRunResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status = stub->CreateRun(&context, request, &response);
  return Show(status, inv, response.run(), PrintRun);
}

Outcome ThreadsCreateAndRun(const Invocation& inv) {
  v1::CreateThreadAndRunRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  v1::RunOptions* options = request.mutable_options();
  absl::Status filled = FillRunOptions(inv.args, options);
  if (!filled.ok()) return filled;
  if (options->assistant_id().empty()) {
    return absl::InvalidArgumentError("--assistant is required");
  }
  // The messages start the new thread (additional_messages is CreateRun's).
  filled = FillNewThread(inv.args, request.mutable_thread());
  if (!filled.ok()) return filled;
  if (auto v = inv.args.Get("request-id")) request.set_request_id(*v);
  v1::CreateThreadAndRunResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status =
      stub->CreateThreadAndRun(&context, request, &response);
  return Show(status, inv, response.run(), PrintRun);
}

Outcome RunsUpdate(const Invocation& inv) {
  v1::UpdateRunRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_run_id(inv.second_id);
  absl::StatusOr<bool> parsed =
      ParseMetadataUpdate(inv.args, request.mutable_metadata(),
                          /*required=*/!HasRequestJson(inv.args));
  if (!parsed.ok()) return parsed.status();
  v1::UpdateRunResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status = stub->UpdateRun(&context, request, &response);
  return Show(status, inv, response.run(), PrintRun);
}

// --outputs-file FILE.json: {"call_id": output, ...} in the file's order;
// a string is sent as it is, any other value as its compact JSON text.
absl::Status ReadOutputsByCall(
    const std::string& path,
    google::protobuf::RepeatedPtrField<v1::ToolOutput>* out) {
  absl::StatusOr<std::string> text = ReadFlagFile("outputs-file", path);
  if (!text.ok()) return text.status();
  const nlohmann::ordered_json root =
      nlohmann::ordered_json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--outputs-file: ", path, ": invalid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--outputs-file: ", path,
        ": expected a JSON object mapping tool call ids to outputs"));
  }
  for (const auto& [call_id, value] : root.items()) {
    v1::ToolOutput* output = out->Add();
    output->set_tool_call_id(call_id);
    output->set_output(
        value.is_string()
            ? value.get<std::string>()
            : value.dump(-1, ' ', false,
                         nlohmann::ordered_json::error_handler_t::replace));
  }
  return absl::OkStatus();
}

Outcome RunsSubmit(const Invocation& inv) {
  v1::SubmitToolOutputsRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_run_id(inv.second_id);
  const auto file = inv.args.Get("outputs-file");
  const bool flags = file.has_value() || inv.args.Has("output");
  if ((file.has_value() && inv.args.Has("output")) ||
      (!flags && !HasRequestJson(inv.args))) {
    return absl::InvalidArgumentError(
        "give --output CALL_ID=OUTPUT ... or --outputs-file FILE.json");
  }
  // The outputs are one field: flags replace the JSON's.
  if (flags) request.clear_tool_outputs();
  if (file.has_value()) {
    absl::Status read =
        ReadOutputsByCall(*file, request.mutable_tool_outputs());
    if (!read.ok()) return read;
  }
  for (const std::string& pair : inv.args.GetAll("output")) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--output: expected CALL_ID=OUTPUT, got \"", pair, "\""));
    }
    v1::ToolOutput* output = request.add_tool_outputs();
    output->set_tool_call_id(kv[0]);
    output->set_output(kv[1]);
  }
  if (auto v = inv.args.Get("request-id")) request.set_request_id(*v);
  v1::SubmitToolOutputsResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status =
      stub->SubmitToolOutputs(&context, request, &response);
  return Show(status, inv, response.run(), PrintRun);
}

Outcome RunsStep(const Invocation& inv) {
  v1::GetRunStepRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  request.set_thread_id(inv.id);
  request.set_run_id(inv.second_id);
  request.set_step_id(inv.third_id);
  v1::GetRunStepResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::RunService::NewStub(inv.channel);
  const grpc::Status status = stub->GetRunStep(&context, request, &response);
  return Show(status, inv, response.step(), PrintStep);
}

// Watches a run's events through the run flow (resumption, dedup, idle
// watchdog) with answering turned off.
Outcome RunsEvents(const Invocation& inv) {
  v1::RunEventsRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  if (request.start_case() != v1::RunEventsRequest::START_NOT_SET) {
    return absl::InvalidArgumentError(
        "runs events only watches a run: `run` starts one");
  }
  request.set_thread_id(inv.id);
  request.set_run_id(inv.second_id);
  if (auto after = inv.args.Get("after")) {
    absl::StatusOr<int64_t> sequence = ParseInt<int64_t>("after", *after);
    if (!sequence.ok()) return sequence.status();
    if (*sequence < 0) {
      return absl::InvalidArgumentError("--after must not be negative");
    }
    request.set_after_sequence(*sequence);
  }
  const bool follow = inv.args.Has("follow");
  cli::RunFlowOptions options;
  options.json = inv.options.json;
  options.event_lines = true;
  options.answer_tool_calls = false;
  options.rpc_timeout = std::chrono::milliseconds(
      static_cast<int64_t>(inv.options.timeout_seconds * 1000));
  if (!follow) {
    // One call, bounded like any other command's.
    options.max_retries = 0;
    options.stream_timeout = options.rpc_timeout;
  }
  auto runs = v1::RunService::NewStub(inv.channel);
  const cli::ToolAnswerSources no_answers;
  cli::RunFlowResult result =
      cli::StreamRun(*runs, request, no_answers, options, std::cout, std::cerr);
  if (!follow &&
      result.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    std::cerr << "(the run is still going at the --timeout deadline: "
                 "--follow waits for its end)\n";
    return grpc::Status::OK;
  }
  return result.status;
}

// A fresh random id: a run's idempotency key, so that re-sending the start
// after a broken stream re-attaches to the same run instead of starting a
// second, and each invocation's x-request-id.
std::string NewRequestId() {
  std::random_device random;
  return absl::StrFormat("assistantsctl-%08x%08x%08x%08x", random(), random(),
                         random(), random());
}

// --outputs FILE.json, read and parsed (usage errors: the file is an
// argument).
absl::StatusOr<cli::OutputsByFunction> ReadOutputsFile(
    const std::string& path) {
  absl::StatusOr<std::string> text = ReadFlagFile("outputs", path);
  if (!text.ok()) return text.status();
  return cli::ParseOutputsJson(*text);
}

// The flags of `run` that start a run (all but those of --attach and of
// the answering), also --request-json / --request-file: for `run` the JSON
// is the start request, CreateRunRequest with --thread, else
// CreateThreadAndRunRequest.
const std::set<std::string>& RunStartFlags() {
  static const auto* flags = new std::set<std::string>{
      "assistant",
      "message",
      "model",
      "instructions",
      "additional-instructions",
      "tools-json",
      "metadata",
      "temperature",
      "top-p",
      "max-prompt-tokens",
      "max-completion-tokens",
      "truncation",
      "tool-choice",
      "parallel-tool-calls",
      "response-format",
      "requires-action-timeout-s",
      "active-run-policy",
      "thread-metadata",
      "tool-resources-json",
      "request-id",
      "request-json",
      "request-file",
  };
  return *flags;
}

// Checks the flag combinations of `run` and builds the RunEvents request:
// a start (CreateRun on --thread, else CreateThreadAndRun) or an attach.
// *request_id is the start's idempotency key (--request-id, else the
// JSON's, else a fresh one), which also keys the tool answers.
absl::Status BuildRunRequest(const Args& args, v1::RunEventsRequest* request,
                             std::string* request_id) {
  const std::optional<std::string> thread = args.Get("thread");
  if (auto attach = args.Get("attach")) {
    if (!thread.has_value()) {
      return absl::InvalidArgumentError("--attach needs --thread");
    }
    for (const std::string& flag : RunStartFlags()) {
      if (args.Has(flag)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", flag, " starts a run: it cannot be used with --attach"));
      }
    }
    request->set_thread_id(*thread);
    request->set_run_id(*attach);
    if (auto after = args.Get("after")) {
      absl::StatusOr<int64_t> sequence = ParseInt<int64_t>("after", *after);
      if (!sequence.ok()) return sequence.status();
      if (*sequence < 0) {
        return absl::InvalidArgumentError("--after must not be negative");
      }
      request->set_after_sequence(*sequence);
    }
    *request_id = NewRequestId();
    return absl::OkStatus();
  }
  if (args.Has("after")) {
    return absl::InvalidArgumentError("--after needs --attach");
  }
  v1::RunOptions* options;
  std::string* start_id;
  if (thread.has_value()) {
    for (const char* flag : {"thread-metadata", "tool-resources-json"}) {
      if (args.Has(flag)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", flag,
            " is for a new thread: it cannot be used with --thread"));
      }
    }
    v1::CreateRunRequest* create = request->mutable_create_run();
    absl::Status merged = MergeRequestJson(args, create);
    if (!merged.ok()) return merged;
    create->set_thread_id(*thread);
    options = create->mutable_options();
    FillMessages(args, options->mutable_additional_messages());
    start_id = create->mutable_request_id();
  } else {
    for (const char* flag : {"additional-instructions", "active-run-policy"}) {
      if (args.Has(flag)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", flag, " needs --thread: it is for a run on an existing one"));
      }
    }
    v1::CreateThreadAndRunRequest* create =
        request->mutable_create_thread_and_run();
    absl::Status merged = MergeRequestJson(args, create);
    if (!merged.ok()) return merged;
    absl::Status filled = FillNewThread(args, create->mutable_thread());
    if (!filled.ok()) return filled;
    options = create->mutable_options();
    start_id = create->mutable_request_id();
  }
  absl::Status filled = FillRunOptions(args, options);
  if (!filled.ok()) return filled;
  if (options->assistant_id().empty()) {
    return absl::InvalidArgumentError(
        "--assistant is required (or --attach RUN_ID)");
  }
  if (auto v = args.Get("request-id")) *start_id = *v;
  if (start_id->empty()) *start_id = NewRequestId();
  *request_id = *start_id;
  return absl::OkStatus();
}

Outcome RunCommand(const Invocation& inv) {
  const Args& args = inv.args;
  const bool poll = args.Has("poll");
  if (poll && args.Has("after")) {
    return absl::InvalidArgumentError(
        "--after resumes a stream: it cannot be used with --poll");
  }
  cli::RunFlowOptions options;
  options.json = inv.options.json;
  options.rpc_timeout = std::chrono::milliseconds(
      static_cast<int64_t>(inv.options.timeout_seconds * 1000));
  if (auto v = args.Get("poll-interval-ms")) {
    if (!poll) {
      return absl::InvalidArgumentError("--poll-interval-ms needs --poll");
    }
    absl::StatusOr<int32_t> ms = ParseInt("poll-interval-ms", *v);
    if (!ms.ok()) return ms.status();
    if (*ms <= 0) {
      return absl::InvalidArgumentError("--poll-interval-ms must be positive");
    }
    options.poll_interval = std::chrono::milliseconds(*ms);
  }
  cli::ToolAnswerSources answers;
  if (auto path = args.Get("outputs")) {
    absl::StatusOr<cli::OutputsByFunction> outputs = ReadOutputsFile(*path);
    if (!outputs.ok()) return outputs.status();
    answers.outputs = *std::move(outputs);
  }
  answers.demo_tools = args.Has("demo-tools");
  // The interactive fallback prompts on stderr: stdout stays the run's
  // output (or pure JSON lines with --json).
  answers.prompt_in = &std::cin;
  answers.prompt_out = &std::cerr;

  v1::RunEventsRequest request;
  absl::Status built = BuildRunRequest(args, &request, &options.request_id);
  if (!built.ok()) return built;

  const auto start = std::chrono::steady_clock::now();
  auto runs = v1::RunService::NewStub(inv.channel);
  cli::RunFlowResult result;
  if (poll) {
    auto messages = v1::MessageService::NewStub(inv.channel);
    result = cli::PollRun(*runs, *messages, request, answers, options,
                          std::cout, std::cerr);
  } else {
    result =
        cli::StreamRun(*runs, request, answers, options, std::cout, std::cerr);
  }
  if (!result.status.ok()) return result.status;
  if (!result.failure.empty()) {
    std::cerr << "error: " << result.failure << "\n";
    return RunNotCompleted();
  }
  // Wall time from the first call to the run's end, so --poll and streaming
  // can be compared on the same run.
  const std::chrono::duration<double> elapsed =
      std::chrono::steady_clock::now() - start;
  std::cerr << absl::StrFormat("elapsed: %.3f s (%s)\n", elapsed.count(),
                               poll ? "polled" : "streamed");
  if (result.run.status() != v1::RUN_STATUS_COMPLETED) {
    return RunNotCompleted();
  }
  return grpc::Status::OK;
}

absl::string_view HealthName(v1::WorkerHealth health) {
  switch (health) {
    case v1::WORKER_HEALTH_SERVING:
      return "serving";
    case v1::WORKER_HEALTH_SUSPECT:
      return "suspect";
    case v1::WORKER_HEALTH_DRAINING:
      return "draining";
    default:
      return "unknown";
  }
}

Outcome WorkersList(const Invocation& inv) {
  v1::ListWorkersRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  v1::ListWorkersResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::ToolRegistryService::NewStub(inv.channel);
  const grpc::Status status = stub->ListWorkers(&context, request, &response);
  return Show(status, inv, response, [](const v1::ListWorkersResponse& list) {
    for (const v1::Worker& worker : list.workers()) {
      std::vector<std::string> tools;
      for (const v1::WorkerTool& tool : worker.tools()) {
        tools.push_back(tool.function().name());
      }
      std::cout << worker.worker_id() << "  " << HealthName(worker.health())
                << "  " << worker.endpoint()
                << "  in_flight=" << worker.in_flight()
                << "  tools=" << absl::StrJoin(tools, ",")
                << (worker.static_() ? "  static" : "") << "\n";
    }
  });
}

Outcome ToolsList(const Invocation& inv) {
  v1::ListToolsRequest request;
  if (absl::Status merged = MergeRequestJson(inv.args, &request); !merged.ok())
    return merged;
  v1::ListToolsResponse response;
  grpc::ClientContext context;
  inv.PrepareContext(&context);
  auto stub = v1::ToolRegistryService::NewStub(inv.channel);
  const grpc::Status status = stub->ListTools(&context, request, &response);
  return Show(status, inv, response, [](const v1::ListToolsResponse& list) {
    for (const v1::RegisteredTool& tool : list.tools()) {
      std::cout << tool.tool().function().name()
                << "  workers=" << absl::StrJoin(tool.worker_ids(), ",")
                << "  timeout_ms=" << tool.tool().timeout_ms()
                << "  max_concurrency=" << tool.tool().max_concurrency()
                << (tool.tool().idempotent() ? "  idempotent" : "") << "  "
                << tool.tool().function().description() << "\n";
    }
  });
}

struct Command {
  std::string resource;
  // Empty for a command that is one word ("run").
  std::string verb;
  // Arguments after "RESOURCE VERB" as shown in the usage text.
  std::string synopsis;
  // Names of the positional arguments in the usage line, space-separated
  // (at most three), or empty for none.
  std::string positional;
  // Command-specific flags accepted (global flags are always accepted).
  std::set<std::string> flags;
  // Flags that may be given more than once.
  std::set<std::string> repeatable;
  Outcome (*run)(const Invocation&);
};

const std::vector<Command>& Commands() {
  static const std::set<std::string> kAssistantFields = {
      "model",          "name",
      "description",    "instructions",
      "tools-json",     "metadata",
      "temperature",    "top-p",
      "upstream",       "tool-resources-json",
      "response-format"};
  static const std::set<std::string> kPaging = {"limit", "order", "after",
                                                "before"};
  // [RUN FLAGS] of runs create and threads create-and-run.
  static const std::set<std::string> kRunFlags = {"assistant",
                                                  "model",
                                                  "instructions",
                                                  "message",
                                                  "tools-json",
                                                  "metadata",
                                                  "temperature",
                                                  "top-p",
                                                  "max-prompt-tokens",
                                                  "max-completion-tokens",
                                                  "requires-action-timeout-s",
                                                  "truncation",
                                                  "tool-choice",
                                                  "parallel-tool-calls",
                                                  "response-format",
                                                  "request-id"};
  auto with = [](std::set<std::string> flags, const std::string& extra) {
    flags.insert(extra);
    return flags;
  };
  static const auto* commands = new std::vector<Command>{
      {"assistants",
       "create",
       "--model M [--name N] [--description D] [--instructions I]\n"
       "[--tools-json JSON] [--metadata k=v ...] [--temperature T]\n"
       "[--top-p P] [--upstream BACKEND] [--tool-resources-json JSON]\n"
       "[--response-format FORMAT] [--request-id ID]",
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
       "[--top-p P] [--upstream BACKEND] [--tool-resources-json JSON]\n"
       "[--response-format FORMAT]",
       "ID",
       kAssistantFields,
       {"metadata"},
       AssistantsUpdate},
      {"assistants", "delete", "ID", "ID", {}, {}, AssistantsDelete},
      {"threads",
       "create",
       "[--message TEXT ...] [--metadata k=v ...]\n"
       "[--tool-resources-json JSON] [--request-id ID]",
       "",
       {"message", "metadata", "tool-resources-json", "request-id"},
       {"message", "metadata"},
       ThreadsCreate},
      {"threads", "get", "ID", "ID", {}, {}, ThreadsGet},
      {"threads",
       "update",
       "ID [--metadata k=v ... | --clear-metadata]\n"
       "[--tool-resources-json JSON]",
       "ID",
       {"metadata", "clear-metadata", "tool-resources-json"},
       {"metadata"},
       ThreadsUpdate},
      {"threads", "delete", "ID", "ID", {}, {}, ThreadsDelete},
      {"threads",
       "create-and-run",
       "--assistant ID [--message TEXT ...]\n"
       "[--thread-metadata k=v ...] [--tool-resources-json JSON]\n"
       "[RUN FLAGS] [--request-id ID]",
       "",
       with(with(kRunFlags, "thread-metadata"), "tool-resources-json"),
       {"message", "metadata", "thread-metadata"},
       ThreadsCreateAndRun},
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
      {"messages",
       "get",
       "THREAD_ID MESSAGE_ID",
       "THREAD_ID MESSAGE_ID",
       {},
       {},
       MessagesGet},
      {"messages",
       "update",
       "THREAD_ID MESSAGE_ID --metadata k=v ... | --clear-metadata",
       "THREAD_ID MESSAGE_ID",
       {"metadata", "clear-metadata"},
       {"metadata"},
       MessagesUpdate},
      {"messages",
       "delete",
       "THREAD_ID MESSAGE_ID",
       "THREAD_ID MESSAGE_ID",
       {},
       {},
       MessagesDelete},
      {"run",
       "",
       "--assistant ID [--thread ID] [--message TEXT ...] [RUN FLAGS]\n"
       "[--additional-instructions I] [--active-run-policy P] (--thread)\n"
       "[--thread-metadata k=v ...] [--tool-resources-json JSON] (no "
       "--thread)\n"
       "[--request-id ID]\n"
       "| --attach RUN_ID --thread ID [--after N]\n"
       "[--outputs FILE.json] [--demo-tools] [--poll [--poll-interval-ms N]]",
       "",
       [] {
         std::set<std::string> flags = RunStartFlags();
         flags.insert({"thread", "attach", "after", "outputs", "demo-tools",
                       "poll", "poll-interval-ms"});
         return flags;
       }(),
       {"message", "metadata", "thread-metadata"},
       RunCommand},
      {"runs",
       "create",
       "THREAD_ID --assistant ID [--message TEXT ...] [RUN FLAGS]\n"
       "[--additional-instructions I] [--active-run-policy "
       "reject|queue|interrupt]\n"
       "[--request-id ID]",
       "THREAD_ID",
       with(with(kRunFlags, "additional-instructions"), "active-run-policy"),
       {"message", "metadata"},
       RunsCreate},
      {"runs", "get", "THREAD_ID RUN_ID", "THREAD_ID RUN_ID", {}, {}, RunsGet},
      {"runs",
       "list",
       "THREAD_ID [--limit N] [--order asc|desc] [--after ID] [--before ID]",
       "THREAD_ID",
       kPaging,
       {},
       RunsList},
      {"runs",
       "update",
       "THREAD_ID RUN_ID --metadata k=v ... | --clear-metadata",
       "THREAD_ID RUN_ID",
       {"metadata", "clear-metadata"},
       {"metadata"},
       RunsUpdate},
      {"runs",
       "cancel",
       "THREAD_ID RUN_ID",
       "THREAD_ID RUN_ID",
       {},
       {},
       RunsCancel},
      {"runs",
       "submit",
       "THREAD_ID RUN_ID --output CALL_ID=OUTPUT ... | --outputs-file "
       "FILE.json\n"
       "[--request-id ID]",
       "THREAD_ID RUN_ID",
       {"output", "outputs-file", "request-id"},
       {"output"},
       RunsSubmit},
      {"runs",
       "steps",
       "THREAD_ID RUN_ID [--limit N] [--order asc|desc] [--after ID]\n"
       "[--before ID]",
       "THREAD_ID RUN_ID",
       kPaging,
       {},
       RunsSteps},
      {"runs",
       "step",
       "THREAD_ID RUN_ID STEP_ID",
       "THREAD_ID RUN_ID STEP_ID",
       {},
       {},
       RunsStep},
      {"runs",
       "events",
       "THREAD_ID RUN_ID [--after N] [--follow]",
       "THREAD_ID RUN_ID",
       {"after", "follow"},
       {},
       RunsEvents},
      {"workers", "list", "", "", {}, {}, WorkersList},
      {"tools", "list", "", "", {}, {}, ToolsList},
  };
  return *commands;
}

// "resource verb", or "resource" for a one-word command.
std::string CommandName(const Command& command) {
  return command.verb.empty()
             ? command.resource
             : absl::StrCat(command.resource, " ", command.verb);
}

// How many words name the command on the command line.
size_t CommandWords(const Command& command) {
  return command.verb.empty() ? 1 : 2;
}

size_t PositionalCount(const Command& command) {
  std::vector<absl::string_view> names =
      absl::StrSplit(command.positional, ' ', absl::SkipEmpty());
  return names.size();
}

// "<lead>resource verb SYNOPSIS" with continuation lines indented under the
// synopsis.
std::string CommandUsage(const Command& command, absl::string_view lead) {
  const std::string prefix = absl::StrCat(lead, CommandName(command),
                                          command.synopsis.empty() ? "" : " ");
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
  static const auto* flags = new std::set<std::string>{
      "target", "json",   "timeout",  "help",    "api-key",
      "tls",    "tls-ca", "tls-cert", "tls-key", "tls-server-name"};
  return *flags;
}

// --request-json / --request-file: accepted by every command (each sends a
// request message), once.
const std::set<std::string>& RequestFlags() {
  static const auto* flags =
      new std::set<std::string>{"request-json", "request-file"};
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
    if (command.flags.count(name) == 0 && RequestFlags().count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " for ", CommandName(command)));
    }
    if (values.size() > 1 && command.repeatable.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " given more than once"));
    }
  }
  const size_t expected = CommandWords(command) + PositionalCount(command);
  if (args.positional.size() < expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(CommandName(command), " needs ", command.positional));
  }
  if (args.positional.size() > expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected argument \"", args.positional[expected], "\""));
  }
  return absl::OkStatus();
}

// The flag's value, else the environment variable's when set and non-empty.
std::optional<std::string> FlagOrEnv(const Args& args, const std::string& flag,
                                     const char* env) {
  if (auto value = args.Get(flag)) return value;
  const char* value = std::getenv(env);
  if (value != nullptr && *value != '\0') return std::string(value);
  return std::nullopt;
}

// A file flag with its environment default, labelled with where it came
// from so an unreadable file's error names the right one.
cli::NamedFile FileFlag(const Args& args, const std::string& flag,
                        const char* env) {
  if (auto value = args.Get(flag)) return {*value, "--" + flag};
  const char* value = std::getenv(env);
  if (value != nullptr && *value != '\0') return {value, env};
  return {};
}

absl::StatusOr<GlobalOptions> ParseGlobalOptions(const Args& args) {
  GlobalOptions options;
  cli::ConnectionOptions& connection = options.connection;
  connection.target =
      FlagOrEnv(args, "target", "ASSISTANTS_TARGET").value_or(kDefaultTarget);
  connection.api_key =
      FlagOrEnv(args, "api-key", "ASSISTANTS_API_KEY").value_or("");
  connection.tls = args.Has("tls");
  connection.tls_ca = FileFlag(args, "tls-ca", "ASSISTANTS_TLS_CA");
  connection.tls_cert = FileFlag(args, "tls-cert", "ASSISTANTS_TLS_CERT");
  connection.tls_key = FileFlag(args, "tls-key", "ASSISTANTS_TLS_KEY");
  connection.tls_server_name =
      FlagOrEnv(args, "tls-server-name", "ASSISTANTS_TLS_SERVER_NAME")
          .value_or("");
  // One id for all the calls of this invocation, so the gateway's logs of
  // a whole `run` can be found together.
  connection.request_id = NewRequestId();
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
  const std::vector<std::string>& words = args.positional;
  for (const Command& command : Commands()) {
    if (words.size() < CommandWords(command) || command.resource != words[0]) {
      continue;
    }
    if (command.verb.empty() || command.verb == words[1]) return &command;
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

  // CheckCommandArgs made sure exactly these positional words are present.
  const size_t first = CommandWords(*command);
  const size_t count = PositionalCount(*command);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      cli::OpenChannel(options->connection);
  if (!channel.ok()) return UsageError(channel.status().message(), command);
  Invocation invocation{*args,
                        count > 0 ? args->positional[first] : "",
                        count > 1 ? args->positional[first + 1] : "",
                        count > 2 ? args->positional[first + 2] : "",
                        *options,
                        *std::move(channel)};
  Outcome outcome = command->run(invocation);
  if (!outcome.ok()) {
    if (absl::IsAborted(outcome.status())) return kExitRpcError;
    return UsageError(outcome.status().message(), command);
  }
  if (!outcome->ok()) {
    PrintRpcError(*outcome);
    return kExitRpcError;
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // gRPC's own log lines (a failed TLS handshake, say) would come before
  // and around the CLI's one decoded "error: ..." line, which already
  // carries their reason; GRPC_VERBOSITY brings them back for debugging.
  if (std::getenv("GRPC_VERBOSITY") == nullptr) {
    gpr_set_log_function([](gpr_log_func_args*) {});
  }
  return Run(argc, argv);
}
