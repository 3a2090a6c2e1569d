#include "cli/run_flow.h"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cli/rpc_error.h"
#include "cli/run_printer.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace assistants {
namespace cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kMaxBackoff{5000};
// A server-requested delay longer than this is not honoured as is: the user
// is watching.
constexpr std::chrono::milliseconds kMaxRetryDelay{30000};

// The delay the gateway asks for in a google.rpc.RetryInfo detail (it sends
// one with UNAVAILABLE where waiting helps, e.g. GATEWAY_DRAINING).
std::optional<std::chrono::milliseconds> RetryDelay(
    const grpc::Status& status) {
  google::rpc::Status details;
  if (status.error_details().empty() ||
      !details.ParseFromString(status.error_details())) {
    return std::nullopt;
  }
  for (const google::protobuf::Any& any : details.details()) {
    google::rpc::RetryInfo info;
    if (any.UnpackTo(&info)) {
      return std::chrono::milliseconds(info.retry_delay().seconds() * 1000 +
                                       info.retry_delay().nanos() / 1000000);
    }
  }
  return std::nullopt;
}

std::string JsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  // Cannot fail for these messages (no Any fields).
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::set<std::string> PendingCallIds(const v1::Run& run) {
  std::set<std::string> ids;
  for (const v1::RequiredToolCall& call :
       run.required_action().submit_tool_outputs().tool_calls()) {
    ids.insert(call.id());
  }
  return ids;
}

// Cancels a stream that has been silent for too long. The gateway sends
// heartbeats, so silence means a connection that died without a FIN/RST,
// which gRPC alone would wait on forever. Paused while the client itself is
// busy (answering tool calls, possibly from a slow human).
class IdleWatchdog {
 public:
  IdleWatchdog(grpc::ClientContext* context, std::chrono::milliseconds idle)
      : context_(context), idle_(idle), last_activity_(Clock::now()) {
    if (idle_.count() > 0) thread_ = std::thread([this] { Watch(); });
  }

  ~IdleWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  IdleWatchdog(const IdleWatchdog&) = delete;
  IdleWatchdog& operator=(const IdleWatchdog&) = delete;

  void Activity() {
    std::lock_guard<std::mutex> lock(mu_);
    last_activity_ = Clock::now();
  }

  void SetBusy(bool busy) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy_ = busy;
      last_activity_ = Clock::now();
    }
    cv_.notify_all();
  }

  bool fired() {
    std::lock_guard<std::mutex> lock(mu_);
    return fired_;
  }

 private:
  void Watch() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopped_) {
      if (busy_) {
        cv_.wait(lock);
        continue;
      }
      // Activity() only moves the deadline later: waking at the old one and
      // recomputing is enough, no notification needed.
      const Clock::time_point deadline = last_activity_ + idle_;
      if (Clock::now() >= deadline) {
        fired_ = true;
        context_->TryCancel();  // thread-safe; Read() then returns false
        return;
      }
      cv_.wait_until(lock, deadline);
    }
  }

  grpc::ClientContext* const context_;
  const std::chrono::milliseconds idle_;
  std::mutex mu_;
  std::condition_variable cv_;
  Clock::time_point last_activity_;
  bool busy_ = false;
  bool stopped_ = false;
  bool fired_ = false;
  std::thread thread_;
};

class RunFlow {
 public:
  RunFlow(v1::RunService::StubInterface& runs,
          v1::MessageService::StubInterface* messages,
          const ToolAnswerSources& answers, const RunFlowOptions& options,
          std::ostream& out, std::ostream& err)
      : runs_(runs),
        messages_(messages),
        answers_(answers),
        options_(options),
        out_(out),
        err_(err) {}

  RunFlowResult Stream(const v1::RunEventsRequest& initial);
  RunFlowResult Poll(const v1::RunEventsRequest& initial);

 private:
  // Answers the pending calls of `run` and submits them. `verify`: check
  // with GetRun that they are still pending (replayed history is not).
  // False on a failure that ends the flow (result_ says which).
  bool AnswerRequiredAction(const v1::Run& run, bool verify);
  bool SubmitOutputs(const v1::Run& run);

  // Runs `call` with a fresh deadline, retrying UNAVAILABLE when
  // `idempotent` (a failed attempt may have been applied).
  template <typename Call>
  grpc::Status Unary(bool idempotent, Call call);

  // Sleeps before retry number `attempt` after `status`: the server's
  // RetryInfo delay when it gave one, else exponential backoff (none when
  // `at_once`).
  void WaitBeforeRetry(int attempt, const grpc::Status& status,
                       bool at_once = false) const;
  void PrintLine(const std::string& line);
  // Names a new run on stderr: its ids are what --attach needs later, and
  // stdout stays the seed's rendering.
  void AnnounceRun(const v1::Run& run);

  v1::RunService::StubInterface& runs_;
  v1::MessageService::StubInterface* messages_;
  const ToolAnswerSources& answers_;
  const RunFlowOptions& options_;
  std::ostream& out_;
  std::ostream& err_;
  RunFlowResult result_;
  // Tool call ids already answered: a requires_action seen twice (polling,
  // replay) is submitted once.
  std::set<std::string> answered_;
};

template <typename Call>
grpc::Status RunFlow::Unary(bool idempotent, Call call) {
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         options_.rpc_timeout);
    grpc::Status status = call(&context);
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || !idempotent ||
        attempt > options_.max_retries) {
      return status;
    }
    WaitBeforeRetry(attempt, status);
  }
}

void RunFlow::WaitBeforeRetry(int attempt, const grpc::Status& status,
                              bool at_once) const {
  if (std::optional<std::chrono::milliseconds> asked = RetryDelay(status)) {
    std::this_thread::sleep_for(std::min(*asked, kMaxRetryDelay));
    return;
  }
  if (at_once) return;
  std::chrono::milliseconds delay = options_.initial_backoff;
  for (int i = 1; i < attempt && delay < kMaxBackoff; ++i) delay *= 2;
  std::this_thread::sleep_for(std::min(delay, kMaxBackoff));
}

void RunFlow::PrintLine(const std::string& line) {
  out_ << line << "\n";
  out_.flush();
}

void RunFlow::AnnounceRun(const v1::Run& run) {
  if (options_.json) return;  // the JSON lines carry the ids
  err_ << "[run " << run.id() << " on thread " << run.thread_id() << "]\n";
  err_.flush();
}

RunFlowResult RunFlow::Stream(const v1::RunEventsRequest& initial) {
  const bool attached =
      initial.start_case() == v1::RunEventsRequest::START_NOT_SET;
  std::string thread_id = initial.thread_id();
  std::string run_id = initial.run_id();
  int64_t last_sequence = initial.after_sequence();
  RunPrinter printer(out_, err_);
  bool done = false;
  int failures = 0;  // consecutive broken streams without a new event

  while (!done) {
    v1::RunEventsRequest request;
    if (!run_id.empty()) {
      request.set_thread_id(thread_id);
      request.set_run_id(run_id);
    } else {
      // The run's id is not known yet: send the start again; its
      // request_id makes the gateway re-attach to the run it created.
      request = initial;
    }
    request.set_after_sequence(last_sequence);

    grpc::ClientContext context;
    if (options_.stream_timeout.count() > 0) {
      context.set_deadline(std::chrono::system_clock::now() +
                           options_.stream_timeout);
    }
    IdleWatchdog watchdog(&context, options_.idle_timeout);
    std::unique_ptr<grpc::ClientReaderInterface<v1::RunEventsResponse>> reader =
        runs_.RunEvents(&context, request);
    bool progressed = false;
    bool draining = false;
    bool failed = false;
    v1::RunEventsResponse response;
    while (reader->Read(&response)) {
      watchdog.Activity();
      const v1::RunEvent& event = response.event();
      if (event.has_heartbeat() || event.has_draining()) {
        // Not part of the run; they carry the last real sequence.
        if (options_.json) {
          PrintLine(EventJsonLine(event));
        } else if (options_.event_lines) {
          PrintLine(EventLine(event));
        }
        draining = draining || event.has_draining();
        continue;
      }
      if (event.sequence() <= last_sequence) continue;  // already shown
      last_sequence = event.sequence();
      progressed = true;
      if (event.has_run()) {
        result_.run = event.run();
        if (run_id.empty()) AnnounceRun(event.run());
        thread_id = event.run().thread_id();
        run_id = event.run().id();
      }
      if (options_.json) {
        PrintLine(EventJsonLine(event));
      } else if (options_.event_lines) {
        PrintLine(EventLine(event));
      } else {
        printer.Print(event);
      }
      if (event.event() == "thread.run.requires_action" &&
          options_.answer_tool_calls) {
        watchdog.SetBusy(true);
        failed = !AnswerRequiredAction(event.run(), attached);
        watchdog.SetBusy(false);
        if (failed) break;
      }
      if (event.event() == "done" || event.has_done()) {
        done = true;
        break;
      }
    }
    // Nothing more is wanted from this stream; do not wait for its close.
    if (done || failed) context.TryCancel();
    const grpc::Status status = reader->Finish();
    if (failed) return result_;
    if (done) break;

    // This side cancels only through the watchdog (done and failures left
    // above), so CANCELLED came from the server or the transport: a gateway
    // that shuts down cancels the calls still open at the end of its grace
    // period, including ones that reached it while it was draining.
    const bool resumable =
        status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE ||
        status.error_code() == grpc::StatusCode::CANCELLED;
    const bool can_resume =
        !run_id.empty() ||
        (initial.has_create_run() &&
         !initial.create_run().request_id().empty()) ||
        (initial.has_create_thread_and_run() &&
         !initial.create_thread_and_run().request_id().empty());
    if (progressed) failures = 0;
    if (!resumable || !can_resume || ++failures > options_.max_retries) {
      result_.status =
          status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                     "the event stream ended before `done`")
                      : status;
      return result_;
    }
    std::string why;
    if (draining) {
      why = "drained by the gateway";
    } else if (watchdog.fired()) {
      why = "idle for too long";
    } else if (status.ok()) {
      why = "ended before done";
    } else {
      why = absl::StrCat(CodeName(status.error_code()), ": ",
                         status.error_message());
    }
    err_ << "[stream " << why << "; resuming after sequence " << last_sequence
         << "]\n";
    err_.flush();
    ++result_.reconnects;
    // A draining gateway hands over: unless it says how long to wait, the
    // first retry goes straight to another replica.
    WaitBeforeRetry(failures, status, /*at_once=*/draining && failures == 1);
  }

  // Attached after the terminal event (--after), the stream never carried
  // the final run: read it (a watcher, event_lines, has printed what it
  // came for).
  if (!options_.event_lines && !IsTerminalRunStatus(result_.run.status()) &&
      !run_id.empty()) {
    v1::GetRunRequest get;
    get.set_thread_id(thread_id);
    get.set_run_id(run_id);
    v1::GetRunResponse got;
    const grpc::Status status = Unary(true, [&](grpc::ClientContext* context) {
      return runs_.GetRun(context, get, &got);
    });
    if (!status.ok()) {
      result_.status = status;
      return result_;
    }
    result_.run = got.run();
  }
  if (!options_.json && !options_.event_lines && !printer.printed_terminal()) {
    const std::string line = TerminalLine(result_.run.status(), result_.run);
    if (!line.empty()) PrintLine(line);
  }
  return result_;
}

bool RunFlow::AnswerRequiredAction(const v1::Run& run, bool verify) {
  const std::set<std::string> pending = PendingCallIds(run);
  if (pending.empty()) return true;
  if (std::includes(answered_.begin(), answered_.end(), pending.begin(),
                    pending.end())) {
    return true;
  }
  if (verify) {
    v1::GetRunRequest get;
    get.set_thread_id(run.thread_id());
    get.set_run_id(run.id());
    v1::GetRunResponse got;
    const grpc::Status status = Unary(true, [&](grpc::ClientContext* context) {
      return runs_.GetRun(context, get, &got);
    });
    if (!status.ok()) {
      result_.status = status;
      return false;
    }
    if (got.run().status() != v1::RUN_STATUS_REQUIRES_ACTION ||
        PendingCallIds(got.run()) != pending) {
      return true;  // answered long ago: this event is history
    }
  }
  return SubmitOutputs(run);
}

bool RunFlow::SubmitOutputs(const v1::Run& run) {
  v1::SubmitToolOutputsRequest request;
  request.set_thread_id(run.thread_id());
  request.set_run_id(run.id());
  const auto& calls = run.required_action().submit_tool_outputs().tool_calls();
  for (const v1::RequiredToolCall& call : calls) {
    absl::StatusOr<std::string> output = AnswerToolCall(answers_, call);
    if (!output.ok()) {
      result_.failure = std::string(output.status().message());
      return false;
    }
    if (!options_.json) {
      PrintLine(absl::StrCat("  <- ", call.function().name(), ": ", *output));
    }
    v1::ToolOutput* tool_output = request.add_tool_outputs();
    tool_output->set_tool_call_id(call.id());
    tool_output->set_output(*std::move(output));
  }
  if (!options_.request_id.empty()) {
    request.set_request_id(
        absl::StrCat(options_.request_id, "/outputs/", calls[0].id()));
  }
  v1::SubmitToolOutputsResponse response;
  const grpc::Status status =
      Unary(!request.request_id().empty(), [&](grpc::ClientContext* context) {
        return runs_.SubmitToolOutputs(context, request, &response);
      });
  if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    // The run moved on (expired, cancelled): its own events or status say
    // how it ended, which decides the exit code.
    err_ << "warning: tool outputs not accepted: " << DescribeRpcError(status);
    err_.flush();
    return true;
  }
  if (!status.ok()) {
    result_.status = status;
    return false;
  }
  for (const v1::RequiredToolCall& call : calls) answered_.insert(call.id());
  return true;
}

RunFlowResult RunFlow::Poll(const v1::RunEventsRequest& initial) {
  v1::Run run;
  grpc::Status status;
  if (initial.has_create_run()) {
    v1::CreateRunResponse created;
    status =
        Unary(!initial.create_run().request_id().empty(),
              [&](grpc::ClientContext* context) {
                return runs_.CreateRun(context, initial.create_run(), &created);
              });
    run = created.run();
  } else if (initial.has_create_thread_and_run()) {
    v1::CreateThreadAndRunResponse created;
    status = Unary(!initial.create_thread_and_run().request_id().empty(),
                   [&](grpc::ClientContext* context) {
                     return runs_.CreateThreadAndRun(
                         context, initial.create_thread_and_run(), &created);
                   });
    run = created.run();
  } else {
    run.set_thread_id(initial.thread_id());
    run.set_id(initial.run_id());
  }
  if (!status.ok()) {
    result_.status = status;
    return result_;
  }
  if (initial.start_case() != v1::RunEventsRequest::START_NOT_SET) {
    AnnounceRun(run);
  }

  // The seed's wait_for_run / handle_tool_calls loop.
  v1::RunStatus shown = v1::RUN_STATUS_UNSPECIFIED;
  while (true) {
    v1::GetRunRequest get;
    get.set_thread_id(run.thread_id());
    get.set_run_id(run.id());
    v1::GetRunResponse got;
    status = Unary(true, [&](grpc::ClientContext* context) {
      return runs_.GetRun(context, get, &got);
    });
    if (!status.ok()) {
      result_.status = status;
      return result_;
    }
    run = got.run();
    result_.run = run;
    if (options_.json && run.status() != shown) PrintLine(JsonLine(run));
    shown = run.status();
    if (run.status() == v1::RUN_STATUS_COMPLETED) break;
    if (IsTerminalRunStatus(run.status())) {
      if (!options_.json) PrintLine(TerminalLine(run.status(), run));
      return result_;
    }
    if (run.status() == v1::RUN_STATUS_REQUIRES_ACTION) {
      const std::set<std::string> pending = PendingCallIds(run);
      if (!std::includes(answered_.begin(), answered_.end(), pending.begin(),
                         pending.end())) {
        if (!options_.json) {
          for (const v1::RequiredToolCall& call :
               run.required_action().submit_tool_outputs().tool_calls()) {
            PrintLine(PendingCallLine(call));
          }
        }
        if (!SubmitOutputs(run)) return result_;
        continue;  // the seed polls again at once after submitting
      }
    }
    std::this_thread::sleep_for(options_.poll_interval);
  }

  // The seed's final read: newest first, the first text of the first
  // assistant message that has one.
  v1::ListMessagesRequest list;
  list.set_thread_id(run.thread_id());
  v1::ListMessagesResponse listed;
  status = Unary(true, [&](grpc::ClientContext* context) {
    return messages_->ListMessages(context, list, &listed);
  });
  if (!status.ok()) {
    result_.status = status;
    return result_;
  }
  for (const v1::Message& message : listed.data()) {
    if (message.role() != v1::MESSAGE_ROLE_ASSISTANT) continue;
    const auto text = std::find_if(
        message.content().begin(), message.content().end(),
        [](const v1::MessageContent& part) { return part.has_text(); });
    if (text == message.content().end()) continue;
    PrintLine(options_.json ? JsonLine(message) : text->text().value());
    break;
  }
  if (!options_.json) PrintLine(TerminalLine(run.status(), run));
  return result_;
}

}  // namespace

RunFlowResult StreamRun(v1::RunService::StubInterface& runs,
                        const v1::RunEventsRequest& request,
                        const ToolAnswerSources& answers,
                        const RunFlowOptions& options, std::ostream& out,
                        std::ostream& err) {
  return RunFlow(runs, nullptr, answers, options, out, err).Stream(request);
}

RunFlowResult PollRun(v1::RunService::StubInterface& runs,
                      v1::MessageService::StubInterface& messages,
                      const v1::RunEventsRequest& request,
                      const ToolAnswerSources& answers,
                      const RunFlowOptions& options, std::ostream& out,
                      std::ostream& err) {
  return RunFlow(runs, &messages, answers, options, out, err).Poll(request);
}

}  // namespace cli
}  // namespace assistants
