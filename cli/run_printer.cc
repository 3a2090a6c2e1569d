#include "cli/run_printer.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"

namespace assistants {
namespace cli {
namespace {

constexpr absl::string_view kRunEventPrefix = "thread.run.";

// OpenAI's tool call `type` of a step's tool call (the oneof field name).
absl::string_view ToolCallType(const v1::ToolCall& call) {
  switch (call.call_case()) {
    case v1::ToolCall::kFunction:
      return "function";
    case v1::ToolCall::kCodeInterpreter:
      return "code_interpreter";
    case v1::ToolCall::kFileSearch:
      return "file_search";
    default:
      return "";
  }
}

// The same for a delta; empty while the delta does not say (the type may
// come in a later delta of the same call).
absl::string_view ToolCallDeltaType(const v1::ToolCallDelta& delta) {
  switch (delta.call_case()) {
    case v1::ToolCallDelta::kFunction:
      return "function";
    case v1::ToolCallDelta::kCodeInterpreter:
      return "code_interpreter";
    default:
      return "";
  }
}

absl::string_view MessageRoleName(v1::MessageRole role) {
  switch (role) {
    case v1::MESSAGE_ROLE_USER:
      return "user";
    case v1::MESSAGE_ROLE_ASSISTANT:
      return "assistant";
    default:
      return "unspecified";
  }
}

absl::string_view MessageStatusName(v1::MessageStatus status) {
  switch (status) {
    case v1::MESSAGE_STATUS_IN_PROGRESS:
      return "in_progress";
    case v1::MESSAGE_STATUS_INCOMPLETE:
      return "incomplete";
    case v1::MESSAGE_STATUS_COMPLETED:
      return "completed";
    default:
      return "unspecified";
  }
}

// A fragment of streamed text or arguments, quoted and escaped.
std::string Quoted(absl::string_view text) {
  return absl::StrCat("\"", absl::CEscape(text), "\"");
}

std::string RunDetail(const v1::Run& run) {
  std::vector<std::string> parts = {run.id(), RunStatusName(run.status())};
  for (const v1::RequiredToolCall& call :
       run.required_action().submit_tool_outputs().tool_calls()) {
    parts.push_back(absl::StrCat(call.function().name(), "(",
                                 call.function().arguments(),
                                 ") id=", call.id()));
  }
  if (!run.last_error().code().empty() || !run.last_error().message().empty()) {
    parts.push_back(absl::StrCat(run.last_error().code(), ": ",
                                 run.last_error().message()));
  }
  if (!run.incomplete_details().reason().empty()) {
    parts.push_back(run.incomplete_details().reason());
  }
  return absl::StrJoin(parts, "  ");
}

std::string StepDetail(const v1::RunStep& step) {
  std::vector<std::string> parts = {step.id(),
                                    std::string(StepTypeName(step.type())),
                                    std::string(StepStatusName(step.status()))};
  if (step.step_details().has_message_creation()) {
    parts.push_back(step.step_details().message_creation().message_id());
  }
  for (const v1::ToolCall& call :
       step.step_details().tool_calls().tool_calls()) {
    parts.push_back(call.has_function()
                        ? absl::StrCat("function(", call.function().name(),
                                       ") id=", call.id())
                        : absl::StrCat(ToolCallType(call), " id=", call.id()));
  }
  return absl::StrJoin(parts, "  ");
}

std::string StepDeltaDetail(const v1::RunStepDelta& delta) {
  std::vector<std::string> parts = {delta.id()};
  for (const v1::ToolCallDelta& call : delta.delta().tool_calls()) {
    std::string part = absl::StrCat("[", call.index(), "]");
    if (!call.id().empty()) absl::StrAppend(&part, " id=", call.id());
    if (call.has_function()) {
      const v1::FunctionCallDelta& function = call.function();
      if (!function.name().empty())
        absl::StrAppend(&part, " ", function.name());
      if (!function.arguments().empty()) {
        absl::StrAppend(&part, " ", Quoted(function.arguments()));
      }
      if (function.has_output()) {
        absl::StrAppend(&part, " output=", Quoted(function.output()));
      }
    } else if (call.has_code_interpreter()) {
      absl::StrAppend(&part, " code_interpreter");
      if (!call.code_interpreter().input().empty()) {
        absl::StrAppend(&part, " ", Quoted(call.code_interpreter().input()));
      }
    }
    parts.push_back(std::move(part));
  }
  return absl::StrJoin(parts, "  ");
}

std::string MessageDeltaDetail(const v1::MessageDelta& delta) {
  std::string text;
  for (const v1::MessageContentDelta& part : delta.delta().content()) {
    if (part.has_text()) absl::StrAppend(&text, part.text().value());
    if (part.content_case() == v1::MessageContentDelta::kRefusal) {
      absl::StrAppend(&text, part.refusal());
    }
  }
  return absl::StrCat(delta.id(), "  ", Quoted(text));
}

}  // namespace

absl::string_view StepTypeName(v1::RunStepType type) {
  switch (type) {
    case v1::RUN_STEP_TYPE_MESSAGE_CREATION:
      return "message_creation";
    case v1::RUN_STEP_TYPE_TOOL_CALLS:
      return "tool_calls";
    default:
      return "unspecified";
  }
}

absl::string_view StepStatusName(v1::RunStepStatus status) {
  switch (status) {
    case v1::RUN_STEP_STATUS_IN_PROGRESS:
      return "in_progress";
    case v1::RUN_STEP_STATUS_CANCELLED:
      return "cancelled";
    case v1::RUN_STEP_STATUS_FAILED:
      return "failed";
    case v1::RUN_STEP_STATUS_COMPLETED:
      return "completed";
    case v1::RUN_STEP_STATUS_EXPIRED:
      return "expired";
    default:
      return "unspecified";
  }
}

std::string EventLine(const v1::RunEvent& event) {
  std::string detail;
  switch (event.data_case()) {
    case v1::RunEvent::kRun:
      detail = RunDetail(event.run());
      break;
    case v1::RunEvent::kStep:
      detail = StepDetail(event.step());
      break;
    case v1::RunEvent::kStepDelta:
      detail = StepDeltaDetail(event.step_delta());
      break;
    case v1::RunEvent::kMessage:
      detail = absl::StrCat(event.message().id(), "  ",
                            MessageRoleName(event.message().role()), "  ",
                            MessageStatusName(event.message().status()));
      break;
    case v1::RunEvent::kMessageDelta:
      detail = MessageDeltaDetail(event.message_delta());
      break;
    case v1::RunEvent::kThread:
      detail = event.thread().id();
      break;
    case v1::RunEvent::kError:
      detail =
          absl::StrCat(event.error().code(), ": ", event.error().message());
      break;
    default:
      break;
  }
  std::string line = absl::StrCat(event.sequence(), "  ", event.event());
  if (!detail.empty()) absl::StrAppend(&line, "  ", detail);
  return line;
}

void RunPrinter::Print(const v1::RunEvent& event) {
  const std::string& name = event.event();
  if (name == "thread.message.delta") {
    PrintMessageDelta(event.message_delta());
  } else if (name == "thread.message.completed" ||
             name == "thread.message.incomplete") {
    PrintFinishedMessage(event.message());
  } else if (name == "thread.run.step.delta") {
    PrintStepDelta(event.step_delta());
  } else if (absl::StartsWith(name, "thread.run.step.")) {
    const bool finished = name != "thread.run.step.created" &&
                          name != "thread.run.step.in_progress";
    PrintStep(event.step(), finished);
  } else if (name == "thread.run.requires_action") {
    PrintRequiredAction(event.run());
  } else if (IsTerminalRunStatus(RunStatusFromEventName(name))) {
    PrintTerminal(event);
  } else if (name == "error" || event.has_error()) {
    PrintError(event.error());
  }
  // Everything else (run and step lifecycle, message.created, heartbeat,
  // draining, done) prints nothing, as in the seed's handler.
}

void RunPrinter::PrintMessageDelta(const v1::MessageDelta& delta) {
  for (const v1::MessageContentDelta& part : delta.delta().content()) {
    const bool refusal =
        part.content_case() == v1::MessageContentDelta::kRefusal;
    if (!refusal && !part.has_text()) continue;
    // The SDK's on_text_created fires when a delta opens a content part,
    // before that delta's own text (even an empty one).
    if (text_started_.insert({delta.id(), part.index()}).second) {
      Write("\nassistant > ");
      if (refusal) Write("[refusal] ");
    }
    Write(refusal ? part.refusal() : part.text().value());
  }
}

void RunPrinter::PrintFinishedMessage(const v1::Message& message) {
  // A message that arrives whole (no deltas, e.g. from a non-streaming
  // upstream) would print nothing in the seed; show it once instead.
  if (message.role() != v1::MESSAGE_ROLE_ASSISTANT) return;
  for (int i = 0; i < message.content_size(); ++i) {
    const v1::MessageContent& part = message.content(i);
    const bool refusal = part.content_case() == v1::MessageContent::kRefusal;
    const std::string& text =
        refusal ? part.refusal() : part.text().value();  // "" for images
    if (text.empty()) continue;
    if (!text_started_.insert({message.id(), i}).second) continue;
    Write("\nassistant > ");
    if (refusal) Write("[refusal] ");
    Write(text);
  }
}

void RunPrinter::PrintStep(const v1::RunStep& step, bool finished) {
  if (!step.step_details().has_tool_calls()) return;
  const auto& calls = step.step_details().tool_calls().tool_calls();
  for (int i = 0; i < calls.size(); ++i) {
    const PartKey key{step.id(), i};
    const absl::string_view type = ToolCallType(calls[i]);
    if (type.empty()) continue;
    AnnounceToolCall(key, type);
    // Code that was never streamed as deltas is shown when the step ends.
    const std::string& input = calls[i].code_interpreter().input();
    if (finished && !input.empty() && code_printed_.insert(key).second) {
      Write(input);
    }
  }
}

void RunPrinter::PrintStepDelta(const v1::RunStepDelta& delta) {
  for (const v1::ToolCallDelta& call : delta.delta().tool_calls()) {
    const PartKey key{delta.id(), call.index()};
    const absl::string_view type = ToolCallDeltaType(call);
    if (!type.empty()) AnnounceToolCall(key, type);
    // Unlike the SDK, the input of the call's first delta is printed too:
    // OpenAI's first delta carries none, but nothing says a gateway's won't.
    if (call.has_code_interpreter() &&
        !call.code_interpreter().input().empty()) {
      code_printed_.insert(key);
      Write(call.code_interpreter().input());
    }
    if (!call.function().name().empty()) {
      function_names_[key] = call.function().name();
    }
    // A gateway extension: a tool worker's output arrives as a delta.
    if (call.function().has_output()) {
      auto name = function_names_.find(key);
      EndLine();
      Write(
          absl::StrCat("[tool worker] ",
                       name == function_names_.end() ? call.id() : name->second,
                       " -> ", call.function().output(), "\n"));
    }
  }
}

void RunPrinter::AnnounceToolCall(const PartKey& key, absl::string_view type) {
  if (calls_announced_.insert(key).second) {
    Write(absl::StrCat("\n[calling ", type, "]\n"));
  }
}

void RunPrinter::PrintRequiredAction(const v1::Run& run) {
  EndLine();
  for (const v1::RequiredToolCall& call :
       run.required_action().submit_tool_outputs().tool_calls()) {
    Write(absl::StrCat(PendingCallLine(call), "\n"));
  }
}

void RunPrinter::PrintTerminal(const v1::RunEvent& event) {
  EndLine();
  Write(absl::StrCat(
      TerminalLine(RunStatusFromEventName(event.event()), event.run()), "\n"));
  printed_terminal_ = true;
}

void RunPrinter::PrintError(const v1::ErrorEvent& error) {
  // Keeps a shared terminal readable: the error starts on its own line.
  EndLine();
  err_ << "[error] ";
  if (!error.code().empty()) err_ << error.code() << ": ";
  err_ << error.message() << "\n";
  err_.flush();
}

void RunPrinter::Write(absl::string_view text) {
  if (text.empty()) return;
  out_ << text;
  out_.flush();
  at_line_start_ = text.back() == '\n';
}

void RunPrinter::EndLine() {
  if (!at_line_start_) Write("\n");
}

std::string EventJsonLine(const v1::RunEvent& event) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status =
      google::protobuf::util::MessageToJsonString(event, &json, options);
  if (!status.ok()) {
    // Only possible for malformed Any payloads, which RunEvent lacks; the
    // line stays valid JSON for line-oriented consumers anyway.
    return absl::StrCat(R"({"sequence":")", event.sequence(),
                        R"(","json_error":true})");
  }
  return json;
}

std::string RunStatusName(v1::RunStatus status) {
  switch (status) {
    case v1::RUN_STATUS_QUEUED:
      return "queued";
    case v1::RUN_STATUS_IN_PROGRESS:
      return "in_progress";
    case v1::RUN_STATUS_REQUIRES_ACTION:
      return "requires_action";
    case v1::RUN_STATUS_CANCELLING:
      return "cancelling";
    case v1::RUN_STATUS_CANCELLED:
      return "cancelled";
    case v1::RUN_STATUS_FAILED:
      return "failed";
    case v1::RUN_STATUS_COMPLETED:
      return "completed";
    case v1::RUN_STATUS_INCOMPLETE:
      return "incomplete";
    case v1::RUN_STATUS_EXPIRED:
      return "expired";
    default:
      return "unspecified";
  }
}

bool IsTerminalRunStatus(v1::RunStatus status) {
  switch (status) {
    case v1::RUN_STATUS_CANCELLED:
    case v1::RUN_STATUS_FAILED:
    case v1::RUN_STATUS_COMPLETED:
    case v1::RUN_STATUS_INCOMPLETE:
    case v1::RUN_STATUS_EXPIRED:
      return true;
    default:
      return false;
  }
}

v1::RunStatus RunStatusFromEventName(absl::string_view event_name) {
  if (!absl::ConsumePrefix(&event_name, kRunEventPrefix)) {
    return v1::RUN_STATUS_UNSPECIFIED;
  }
  // "thread.run.step.completed" must not read as a completed run.
  for (int i = v1::RunStatus_MIN; i <= v1::RunStatus_MAX; ++i) {
    if (!v1::RunStatus_IsValid(i)) continue;
    const auto status = static_cast<v1::RunStatus>(i);
    if (status != v1::RUN_STATUS_UNSPECIFIED &&
        event_name == RunStatusName(status)) {
      return status;
    }
  }
  return v1::RUN_STATUS_UNSPECIFIED;
}

std::string PendingCallLine(const v1::RequiredToolCall& call) {
  return absl::StrCat("  -> ", call.function().name(), "(",
                      call.function().arguments(), ") id=", call.id());
}

std::string TerminalLine(v1::RunStatus status, const v1::Run& run) {
  if (!IsTerminalRunStatus(status)) return "";
  std::string line = absl::StrCat("[run ", RunStatusName(status));
  if (status == v1::RUN_STATUS_INCOMPLETE) {
    if (!run.incomplete_details().reason().empty()) {
      absl::StrAppend(&line, ": ", run.incomplete_details().reason());
    }
  } else if (status != v1::RUN_STATUS_COMPLETED) {
    // "[run failed: server_error: upstream timed out]".
    const v1::LastError& error = run.last_error();
    if (!error.code().empty()) absl::StrAppend(&line, ": ", error.code());
    if (!error.message().empty()) absl::StrAppend(&line, ": ", error.message());
  }
  absl::StrAppend(&line, "]");
  return line;
}

}  // namespace cli
}  // namespace assistants
