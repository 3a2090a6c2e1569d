#include "service/runs/run_options.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "service/common/errors.h"
#include "service/common/ids.h"
#include "service/common/status_macros.h"
#include "service/core/validation.h"

namespace assistants::runs {

absl::Status ValidateRunOptions(const v1::RunOptions& o,
                                bool allow_additional) {
  RETURN_IF_ERROR(
      ValidateId(o.assistant_id(), kAssistantPrefix, "options.assistant_id"));
  if (o.has_model() && CharCount(o.model()) > kMaxModelChars) {
    return FieldError(
        "options.model", kFieldTooLong,
        absl::StrCat("must be at most ", kMaxModelChars, " characters"));
  }
  if (o.has_instructions() &&
      CharCount(o.instructions()) > kMaxInstructionsChars) {
    return FieldError(
        "options.instructions", kFieldTooLong,
        absl::StrCat("must be at most ", kMaxInstructionsChars, " characters"));
  }
  if (o.has_additional_instructions()) {
    if (!allow_additional) {
      return FieldError("options.additional_instructions", kInvalidValue,
                        "is only accepted by CreateRun");
    }
    if (CharCount(o.additional_instructions()) > kMaxInstructionsChars) {
      return FieldError("options.additional_instructions", kFieldTooLong,
                        absl::StrCat("must be at most ", kMaxInstructionsChars,
                                     " characters"));
    }
  }
  if (o.additional_messages_size() > 0 && !allow_additional) {
    return FieldError("options.additional_messages", kInvalidValue,
                      "is only accepted by CreateRun");
  }
  if (o.additional_messages_size() > kMaxInitialMessages) {
    return FieldError(
        "options.additional_messages", kTooManyItems,
        absl::StrCat("must have at most ", kMaxInitialMessages, " items"));
  }
  for (int i = 0; i < o.additional_messages_size(); ++i) {
    RETURN_IF_ERROR(ValidateMessageInput(
        o.additional_messages(i),
        absl::StrCat("options.additional_messages[", i, "]")));
  }
  RETURN_IF_ERROR(ValidateTools(o.tools(), "options.tools"));
  RETURN_IF_ERROR(ValidateMetadata(o.metadata(), "options.metadata"));
  if (o.has_temperature()) {
    RETURN_IF_ERROR(
        ValidateRange(o.temperature(), 0, 2, "options.temperature"));
  }
  if (o.has_top_p()) {
    RETURN_IF_ERROR(ValidateRange(o.top_p(), 0, 1, "options.top_p"));
  }
  if (o.has_max_prompt_tokens() && o.max_prompt_tokens() < 256) {
    return FieldError("options.max_prompt_tokens", kValueOutOfRange,
                      "must be at least 256");
  }
  if (o.has_max_completion_tokens() && o.max_completion_tokens() < 16) {
    return FieldError("options.max_completion_tokens", kValueOutOfRange,
                      "must be at least 16");
  }
  const v1::TruncationStrategy& truncation = o.truncation_strategy();
  if (truncation.type() == v1::TruncationStrategy::TYPE_LAST_MESSAGES &&
      truncation.last_messages() < 1) {
    return FieldError("options.truncation_strategy.last_messages",
                      kValueOutOfRange,
                      "must be at least 1 with type last_messages");
  }
  if (truncation.type() != v1::TruncationStrategy::TYPE_LAST_MESSAGES &&
      truncation.last_messages() != 0) {
    return FieldError("options.truncation_strategy.last_messages",
                      kInvalidValue, "is only used with type last_messages");
  }
  if (o.tool_choice().mode() == v1::ToolChoice::MODE_FUNCTION &&
      o.tool_choice().function_name().empty()) {
    return FieldError("options.tool_choice.function_name", kFieldRequired,
                      "is required with mode function");
  }
  RETURN_IF_ERROR(
      ValidateResponseFormat(o.response_format(), "options.response_format"));
  if (o.requires_action_timeout_seconds() < 0 ||
      o.requires_action_timeout_seconds() > kMaxRequiresActionTimeoutSeconds) {
    return FieldError("options.requires_action_timeout_seconds",
                      kValueOutOfRange,
                      absl::StrCat("must be between 0 and ",
                                   kMaxRequiresActionTimeoutSeconds));
  }
  if (!v1::ActiveRunPolicy_IsValid(o.active_run_policy())) {
    return FieldError("options.active_run_policy", kInvalidValue,
                      "is not a known policy");
  }
  return absl::OkStatus();
}

absl::Status ValidateCreateThreadAndRun(
    const v1::CreateThreadAndRunRequest& request) {
  const v1::CreateThreadRequest& thread = request.thread();
  if (thread.messages_size() > kMaxInitialMessages) {
    return FieldError(
        "thread.messages", kTooManyItems,
        absl::StrCat("must have at most ", kMaxInitialMessages, " items"));
  }
  for (int i = 0; i < thread.messages_size(); ++i) {
    RETURN_IF_ERROR(ValidateMessageInput(
        thread.messages(i), absl::StrCat("thread.messages[", i, "]")));
  }
  RETURN_IF_ERROR(
      ValidateToolResources(thread.tool_resources(), "thread.tool_resources"));
  RETURN_IF_ERROR(ValidateMetadata(thread.metadata(), "thread.metadata"));
  return ValidateRunOptions(request.options(), /*allow_additional=*/false);
}

absl::Status ValidateSubmitToolOutputs(
    const v1::SubmitToolOutputsRequest& request) {
  RETURN_IF_ERROR(ValidateId(request.thread_id(), kThreadPrefix, "thread_id"));
  RETURN_IF_ERROR(ValidateId(request.run_id(), kRunPrefix, "run_id"));
  if (request.tool_outputs_size() == 0) {
    return FieldError("tool_outputs", kFieldRequired,
                      "must answer every pending tool call");
  }
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < request.tool_outputs_size(); ++i) {
    const v1::ToolOutput& output = request.tool_outputs(i);
    const std::string field = absl::StrCat("tool_outputs[", i, "]");
    if (output.tool_call_id().empty()) {
      return FieldError(absl::StrCat(field, ".tool_call_id"), kFieldRequired,
                        "is required");
    }
    if (!seen.insert(output.tool_call_id()).second) {
      return FieldError(absl::StrCat(field, ".tool_call_id"), kDuplicateValue,
                        absl::StrCat("tool call ", output.tool_call_id(),
                                     " is answered more than once"));
    }
    if (output.output().size() > kMaxToolOutputBytes) {
      return FieldError(
          absl::StrCat(field, ".output"), kFieldTooLong,
          absl::StrCat("must be at most ", kMaxToolOutputBytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

v1::Run ComposeRun(const v1::RunOptions& o, const v1::Assistant& assistant,
                   absl::string_view thread_id,
                   absl::string_view default_upstream, int64_t now_seconds) {
  v1::Run run;
  run.set_id(NewId(kRunPrefix));
  run.set_object("thread.run");
  run.set_created_at(now_seconds);
  run.set_thread_id(std::string(thread_id));
  run.set_assistant_id(assistant.id());
  run.set_status(v1::RUN_STATUS_QUEUED);
  run.set_model(o.has_model() ? o.model() : assistant.model());
  std::string instructions =
      o.has_instructions() ? o.instructions() : assistant.instructions();
  if (o.has_additional_instructions() && !o.additional_instructions().empty()) {
    if (!instructions.empty()) instructions += "\n\n";
    instructions += o.additional_instructions();
  }
  run.set_instructions(std::move(instructions));
  if (o.tools_size() > 0 || o.override_tools()) {
    *run.mutable_tools() = o.tools();
  } else {
    *run.mutable_tools() = assistant.tools();
  }
  *run.mutable_metadata() = o.metadata();
  if (o.has_temperature()) {
    run.set_temperature(o.temperature());
  } else if (assistant.has_temperature()) {
    run.set_temperature(assistant.temperature());
  }
  if (o.has_top_p()) {
    run.set_top_p(o.top_p());
  } else if (assistant.has_top_p()) {
    run.set_top_p(assistant.top_p());
  }
  if (o.has_max_prompt_tokens())
    run.set_max_prompt_tokens(o.max_prompt_tokens());
  if (o.has_max_completion_tokens()) {
    run.set_max_completion_tokens(o.max_completion_tokens());
  }
  *run.mutable_truncation_strategy() = o.truncation_strategy();
  if (run.truncation_strategy().type() ==
      v1::TruncationStrategy::TYPE_UNSPECIFIED) {
    run.mutable_truncation_strategy()->set_type(
        v1::TruncationStrategy::TYPE_AUTO);
  }
  *run.mutable_tool_choice() = o.tool_choice();
  if (run.tool_choice().mode() == v1::ToolChoice::MODE_UNSPECIFIED) {
    run.mutable_tool_choice()->set_mode(v1::ToolChoice::MODE_AUTO);
  }
  run.set_parallel_tool_calls(
      o.has_parallel_tool_calls() ? o.parallel_tool_calls() : true);
  if (o.response_format().type() != v1::ResponseFormat::TYPE_UNSPECIFIED) {
    *run.mutable_response_format() = o.response_format();
  } else {
    *run.mutable_response_format() = assistant.response_format();
  }
  run.set_upstream(assistant.upstream().empty() ? std::string(default_upstream)
                                                : assistant.upstream());
  run.set_requires_action_timeout_seconds(o.requires_action_timeout_seconds());
  return run;
}

}  // namespace assistants::runs
