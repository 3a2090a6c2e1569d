// Validation of run requests and the composition of a new Run from its
// assistant and the request's overrides (OpenAI's rules: unset fields take
// the assistant's values).
#ifndef SERVICE_RUNS_RUN_OPTIONS_H_
#define SERVICE_RUNS_RUN_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "assistants/v1/assistant.pb.h"
#include "assistants/v1/run.pb.h"
#include "assistants/v1/run_service.pb.h"

namespace assistants::runs {

// Largest tool output accepted (OpenAI: 512 KiB).
inline constexpr size_t kMaxToolOutputBytes = 512 * 1024;
// Longest requires_action wait a request may ask for (a day).
inline constexpr int32_t kMaxRequiresActionTimeoutSeconds = 86'400;

// `options` of CreateRun (`allow_additional` true) or CreateThreadAndRun;
// errors name fields under "options.".
absl::Status ValidateRunOptions(const v1::RunOptions& options,
                                bool allow_additional);

absl::Status ValidateCreateThreadAndRun(
    const v1::CreateThreadAndRunRequest& request);

// Shape of SubmitToolOutputs (the exact-set check against the pending calls
// happens in the engine, which knows them).
absl::Status ValidateSubmitToolOutputs(
    const v1::SubmitToolOutputsRequest& request);

// The new run (status queued) for `options` on `thread_id`.
v1::Run ComposeRun(const v1::RunOptions& options,
                   const v1::Assistant& assistant, absl::string_view thread_id,
                   absl::string_view default_upstream, int64_t now_seconds);

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_RUN_OPTIONS_H_
