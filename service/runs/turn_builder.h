// Builds the model turn of a run from durable state only (the thread's
// messages, the run's steps and its own messages), so a turn can be rebuilt
// after a restart exactly as it was first sent.
#ifndef SERVICE_RUNS_TURN_BUILDER_H_
#define SERVICE_RUNS_TURN_BUILDER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "assistants/v1/assistant.pb.h"
#include "assistants/v1/message.pb.h"
#include "assistants/v1/run.pb.h"
#include "assistants/v1/thread.pb.h"
#include "service/runs/tool_dispatcher.h"
#include "upstream/provider.h"

namespace assistants::runs {

struct TurnInputs {
  const v1::Assistant* assistant = nullptr;
  const v1::Thread* thread = nullptr;
  const v1::Run* run = nullptr;
  // The thread's messages in order, including the run's own (those with
  // run_id == run->id() are placed by their steps instead).
  const std::vector<v1::Message>* messages = nullptr;
  // The run's own messages by id, as the run last wrote them (they win over
  // the store's copies, which may lag). May be null.
  const std::map<std::string, v1::Message>* own_messages = nullptr;
  // The run's steps in creation order.
  const std::vector<v1::RunStep>* steps = nullptr;
  // Completion tokens the run has used so far (for max_completion_tokens).
  int64_t completion_tokens_used = 0;
  // Definitions of worker-served tools; may be null.
  const ToolDispatcher* tool_definitions = nullptr;
};

// A rough token count of text (about 4 characters per token, as OpenAI's
// rule of thumb), used for `auto` truncation under max_prompt_tokens.
int64_t EstimateTokens(const upstream::TurnItem& item);

// The turn: instructions, the thread's history after truncation
// (last_messages(n) keeps the newest n messages; auto drops the oldest until
// the estimate fits max_prompt_tokens, when set), then the run's own items
// (assistant text, function calls and their outputs) in step order.
upstream::Turn BuildTurn(const TurnInputs& inputs);

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_TURN_BUILDER_H_
