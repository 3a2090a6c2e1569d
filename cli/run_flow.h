// The client side of a run, as `assistantsctl run` drives it: streamed (one
// RunEvents call that starts the run, answers requires_action with unary
// SubmitToolOutputs while the stream stays open, and resumes from the last
// sequence seen when the stream breaks) or polled (the seed tutorial's loop:
// create, GetRun every interval, submit, then read the newest assistant
// message). Written against the proto contract only, over the generated
// stub interfaces, so tests can drive it with an in-process fake server.
#ifndef CLI_RUN_FLOW_H_
#define CLI_RUN_FLOW_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <ostream>
#include <string>

#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/run.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "cli/tool_answers.h"

namespace assistants {
namespace cli {

struct RunFlowOptions {
  // One proto3 JSON line per event (per run status change when polling) on
  // `out` instead of the seed's rendering.
  bool json = false;
  // Deadline of each unary call. The stream has none: a run lasts as long
  // as it lasts, and its liveness is watched with `idle_timeout`.
  std::chrono::milliseconds rpc_timeout{10000};
  // UNAVAILABLE (or a stream that ends before `done`) is retried this many
  // times in a row without progress, after the delay of the status'
  // RetryInfo if the gateway sent one, else with exponential backoff from
  // `initial_backoff` (capped at 5 s).
  int max_retries = 5;
  std::chrono::milliseconds initial_backoff{200};
  // The gateway sends a heartbeat after 15 s of silence; a stream silent
  // for this long is presumed dead (half-open connection) and resumed.
  // Zero disables the watchdog.
  std::chrono::milliseconds idle_timeout{45000};
  // Polling period of PollRun (the seed sleeps one second).
  std::chrono::milliseconds poll_interval{1000};
  // The run's idempotency key: the start request carries it (the caller
  // sets it there), and each SubmitToolOutputs uses "<key>/outputs/<first
  // call id>" so retried submissions are idempotent. Empty: no retries of
  // non-idempotent calls.
  std::string request_id;
  // False to watch a run without taking part (`runs events`): the pending
  // calls of requires_action are shown but never answered.
  bool answer_tool_calls = true;
  // One EventLine per event (heartbeats included) instead of the seed's
  // rendering, and no final status line: the events are the output.
  bool event_lines = false;
  // Deadline of each RunEvents call; zero for none. DEADLINE_EXCEEDED is
  // not resumed: it ends the flow with that status.
  std::chrono::milliseconds stream_timeout{0};
};

struct RunFlowResult {
  // The RPC that failed for good; OK when the run was followed to its end.
  grpc::Status status;
  // A failure on this side (e.g. no output for a tool call); empty if none.
  std::string failure;
  // The run as last seen: terminal when the flow followed it to its end.
  v1::Run run;
  // How many times the stream was resumed (observability and tests).
  int reconnects = 0;
};

// Streams the run `request` starts (`start` set: create_run or
// create_thread_and_run, with its request_id) or names (thread_id, run_id,
// after_sequence: attach). Renders events on `out` (RunPrinter or JSON
// lines), answers each requires_action from `answers` and submits the
// outputs, until the `done` event. Events already seen are never rendered
// twice across reconnections. When attached, a requires_action replayed from
// the run's history is answered only if GetRun says it is still pending.
RunFlowResult StreamRun(v1::RunService::StubInterface& runs,
                        const v1::RunEventsRequest& request,
                        const ToolAnswerSources& answers,
                        const RunFlowOptions& options, std::ostream& out,
                        std::ostream& err);

// The seed's polling loop for the same `request` (the start's unary
// CreateRun / CreateThreadAndRun, or the named run): GetRun until terminal,
// answering requires_action, then prints the newest assistant message's
// first text part (as the seed's run_agent returns it).
RunFlowResult PollRun(v1::RunService::StubInterface& runs,
                      v1::MessageService::StubInterface& messages,
                      const v1::RunEventsRequest& request,
                      const ToolAnswerSources& answers,
                      const RunFlowOptions& options, std::ostream& out,
                      std::ostream& err);

}  // namespace cli
}  // namespace assistants

#endif  // CLI_RUN_FLOW_H_
