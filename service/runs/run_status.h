// The run state machine as one table, and the event name of each status.
//
//   queued -> in_progress -> (requires_action <-> in_progress)*
//          -> completed | incomplete | failed | expired
//   any active status -> cancelling -> cancelled
//
// Every status change of a run goes through CheckTransition, so a forbidden
// move is a bug caught in one place (and a parameterized test covers the
// whole table).
#ifndef SERVICE_RUNS_RUN_STATUS_H_
#define SERVICE_RUNS_RUN_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "assistants/v1/run.pb.h"

namespace assistants::runs {

// Whether the table allows `from` -> `to`.
bool IsAllowedTransition(v1::RunStatus from, v1::RunStatus to);

// OK, or INTERNAL (RUN_TRANSITION_FORBIDDEN) naming both statuses.
absl::Status CheckTransition(v1::RunStatus from, v1::RunStatus to);

// completed, incomplete, failed, cancelled, expired.
bool IsTerminal(v1::RunStatus status);

// OpenAI's lower-case name ("requires_action").
absl::string_view RunStatusName(v1::RunStatus status);

// The stream event announcing `status` ("thread.run.requires_action").
absl::string_view RunStatusEvent(v1::RunStatus status);

// UNAVAILABLE (RUN_NOT_DRIVEN): the run is active but no actor here drives
// it (its changes could not be stored, or the gateway is stopping); it is
// resumed by the next process, so the caller should retry.
absl::Status RunNotDriven(absl::string_view run_id);

// FAILED_PRECONDITION (RUN_NOT_ACTIVE): a cancel of a run already ended.
absl::Status RunNotActive(const v1::Run& run);

// FAILED_PRECONDITION (RUN_NOT_AWAITING_OUTPUTS): tool outputs for a run
// that is not in requires_action.
absl::Status RunNotAwaitingOutputs(const v1::Run& run);

}  // namespace assistants::runs

#endif  // SERVICE_RUNS_RUN_STATUS_H_
