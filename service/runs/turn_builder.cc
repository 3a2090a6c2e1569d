#include "service/runs/turn_builder.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace assistants::runs {
namespace {

upstream::TurnItem FromMessage(const v1::Message& message) {
  upstream::TurnItem item;
  item.kind = upstream::TurnItem::Kind::kMessage;
  item.role = message.role();
  item.content.assign(message.content().begin(), message.content().end());
  return item;
}

// Per-message overhead of the chat format, in tokens.
constexpr int64_t kTokensPerItem = 4;

}  // namespace

int64_t EstimateTokens(const upstream::TurnItem& item) {
  size_t chars = item.arguments.size() + item.output.size() + item.name.size();
  for (const v1::MessageContent& part : item.content) {
    if (part.has_text()) chars += part.text().value().size();
    if (!part.refusal().empty()) chars += part.refusal().size();
    if (part.has_image_url() || part.has_image_file()) chars += 4 * 85;
  }
  return kTokensPerItem + static_cast<int64_t>((chars + 3) / 4);
}

upstream::Turn BuildTurn(const TurnInputs& in) {
  const v1::Run& run = *in.run;
  upstream::Turn turn;
  turn.model = run.model();
  turn.instructions = run.instructions();
  turn.tools.assign(run.tools().begin(), run.tools().end());
  if (in.tool_definitions != nullptr) {
    // A function tool named without parameters takes the definition its
    // worker registered (its own description and strict win when set).
    for (v1::Tool& tool : turn.tools) {
      if (!tool.has_function()) continue;
      v1::FunctionDefinition* function =
          tool.mutable_function()->mutable_function();
      if (function->has_parameters()) continue;
      std::optional<v1::FunctionDefinition> served =
          in.tool_definitions->Definition(function->name());
      if (!served.has_value()) continue;
      *function->mutable_parameters() = served->parameters();
      if (function->description().empty()) {
        function->set_description(served->description());
      }
      if (!function->has_strict() && served->has_strict()) {
        function->set_strict(served->strict());
      }
    }
  }
  turn.tool_choice = run.tool_choice();
  turn.parallel_tool_calls = run.parallel_tool_calls();
  turn.response_format = run.response_format();
  if (run.has_temperature()) turn.temperature = run.temperature();
  if (run.has_top_p()) turn.top_p = run.top_p();
  if (run.has_max_completion_tokens()) {
    turn.max_output_tokens = std::max<int64_t>(
        1, run.max_completion_tokens() - in.completion_tokens_used);
  }
  // Per tool, the thread's resources win over the assistant's (a thread
  // with only vector stores keeps the assistant's code_interpreter files).
  const v1::ToolResources empty;
  const v1::ToolResources& thread_resources =
      in.thread != nullptr ? in.thread->tool_resources() : empty;
  const v1::ToolResources& fallback = in.assistant->tool_resources();
  const auto& files = thread_resources.code_interpreter().file_ids_size() > 0
                          ? thread_resources.code_interpreter().file_ids()
                          : fallback.code_interpreter().file_ids();
  turn.code_interpreter_file_ids.assign(files.begin(), files.end());
  const auto& stores =
      thread_resources.file_search().vector_store_ids_size() > 0
          ? thread_resources.file_search().vector_store_ids()
          : fallback.file_search().vector_store_ids();
  turn.vector_store_ids.assign(stores.begin(), stores.end());

  // History: the thread's messages that are not this run's.
  std::vector<upstream::TurnItem> history;
  std::map<std::string, const v1::Message*> own_messages;
  for (const v1::Message& message : *in.messages) {
    if (message.run_id() == run.id()) {
      own_messages[message.id()] = &message;
    } else {
      history.push_back(FromMessage(message));
    }
  }
  if (in.own_messages != nullptr) {
    for (const auto& [id, message] : *in.own_messages) {
      own_messages[id] = &message;
    }
  }

  // This run's own items, in step order.
  std::vector<upstream::TurnItem> own;
  for (const v1::RunStep& step : *in.steps) {
    if (step.status() == v1::RUN_STEP_STATUS_FAILED ||
        step.status() == v1::RUN_STEP_STATUS_CANCELLED) {
      continue;  // an interrupted attempt the model never finished
    }
    if (step.step_details().has_message_creation()) {
      auto it = own_messages.find(
          step.step_details().message_creation().message_id());
      if (it != own_messages.end() && it->second->content_size() > 0) {
        own.push_back(FromMessage(*it->second));
      }
      continue;
    }
    for (const v1::ToolCall& call :
         step.step_details().tool_calls().tool_calls()) {
      if (!call.has_function()) continue;  // hosted calls are not replayed
      own.push_back(upstream::TurnItem::FunctionCall(
          call.id(), call.function().name(), call.function().arguments()));
      if (call.function().has_output()) {
        own.push_back(upstream::TurnItem::FunctionCallOutput(
            call.id(), call.function().output()));
      }
    }
  }

  // Truncation applies to the thread's history only.
  const v1::TruncationStrategy& truncation = run.truncation_strategy();
  size_t first = 0;
  if (truncation.type() == v1::TruncationStrategy::TYPE_LAST_MESSAGES) {
    const size_t keep =
        static_cast<size_t>(std::max(1, truncation.last_messages()));
    if (history.size() > keep) first = history.size() - keep;
  } else if (run.has_max_prompt_tokens()) {
    int64_t total =
        kTokensPerItem + static_cast<int64_t>(turn.instructions.size() / 4);
    for (const auto& item : own) total += EstimateTokens(item);
    for (const auto& item : history) total += EstimateTokens(item);
    // Drop the oldest messages while over budget, keeping the newest.
    while (total > run.max_prompt_tokens() && first + 1 < history.size()) {
      total -= EstimateTokens(history[first]);
      ++first;
    }
  }
  turn.items.reserve(history.size() - first + own.size());
  for (size_t i = first; i < history.size(); ++i) {
    turn.items.push_back(std::move(history[i]));
  }
  for (auto& item : own) turn.items.push_back(std::move(item));
  return turn;
}

}  // namespace assistants::runs
