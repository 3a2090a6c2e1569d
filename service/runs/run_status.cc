#include "service/runs/run_status.h"

#include <array>

#include "absl/strings/str_cat.h"
#include "service/common/errors.h"

namespace assistants::runs {
namespace {

using v1::RunStatus;

// kAllowed[from][to]. Rows and columns in enum order: unspecified, queued,
// in_progress, requires_action, cancelling, cancelled, failed, completed,
// incomplete, expired.
constexpr int kStatuses = 10;
// clang-format off
constexpr std::array<std::array<bool, kStatuses>, kStatuses> kAllowed = {{
    //  uns    que    inp    req    cing   cncl   fail   comp   inc    exp
    {{false, false, false, false, false, false, false, false, false, false}},  // unspecified
    {{false, false, true,  false, true,  false, true,  false, false, false}},  // queued
    {{false, false, false, true,  true,  false, true,  true,  true,  false}},  // in_progress
    {{false, true,  true,  false, true,  false, true,  false, false, true }},  // requires_action
    {{false, false, false, false, false, true,  true,  false, false, false}},  // cancelling
    {{false, false, false, false, false, false, false, false, false, false}},  // cancelled
    {{false, false, false, false, false, false, false, false, false, false}},  // failed
    {{false, false, false, false, false, false, false, false, false, false}},  // completed
    {{false, false, false, false, false, false, false, false, false, false}},  // incomplete
    {{false, false, false, false, false, false, false, false, false, false}},  // expired
}};
// clang-format on

bool InRange(RunStatus status) { return status >= 0 && status < kStatuses; }

}  // namespace

bool IsAllowedTransition(RunStatus from, RunStatus to) {
  if (!InRange(from) || !InRange(to)) return false;
  return kAllowed[from][to];
}

absl::Status CheckTransition(RunStatus from, RunStatus to) {
  if (IsAllowedTransition(from, to)) return absl::OkStatus();
  return MakeError(absl::StatusCode::kInternal, "RUN_TRANSITION_FORBIDDEN",
                   absl::StrCat("run status cannot move from ",
                                RunStatusName(from), " to ", RunStatusName(to)),
                   {{"from", std::string(RunStatusName(from))},
                    {"to", std::string(RunStatusName(to))}});
}

bool IsTerminal(RunStatus status) {
  switch (status) {
    case v1::RUN_STATUS_COMPLETED:
    case v1::RUN_STATUS_INCOMPLETE:
    case v1::RUN_STATUS_FAILED:
    case v1::RUN_STATUS_CANCELLED:
    case v1::RUN_STATUS_EXPIRED:
      return true;
    default:
      return false;
  }
}

absl::string_view RunStatusName(RunStatus status) {
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

absl::string_view RunStatusEvent(RunStatus status) {
  switch (status) {
    case v1::RUN_STATUS_QUEUED:
      return "thread.run.queued";
    case v1::RUN_STATUS_IN_PROGRESS:
      return "thread.run.in_progress";
    case v1::RUN_STATUS_REQUIRES_ACTION:
      return "thread.run.requires_action";
    case v1::RUN_STATUS_CANCELLING:
      return "thread.run.cancelling";
    case v1::RUN_STATUS_CANCELLED:
      return "thread.run.cancelled";
    case v1::RUN_STATUS_FAILED:
      return "thread.run.failed";
    case v1::RUN_STATUS_COMPLETED:
      return "thread.run.completed";
    case v1::RUN_STATUS_INCOMPLETE:
      return "thread.run.incomplete";
    case v1::RUN_STATUS_EXPIRED:
      return "thread.run.expired";
    default:
      return "thread.run.unspecified";
  }
}

absl::Status RunNotDriven(absl::string_view run_id) {
  return MakeError(absl::StatusCode::kUnavailable, "RUN_NOT_DRIVEN",
                   absl::StrCat("Run ", run_id,
                                " is not being driven by this gateway; retry "
                                "after it is resumed"),
                   {{"run_id", std::string(run_id)}});
}

absl::Status RunNotActive(const v1::Run& run) {
  const std::string status(RunStatusName(run.status()));
  return MakeError(absl::StatusCode::kFailedPrecondition, "RUN_NOT_ACTIVE",
                   absl::StrCat("Run ", run.id(), " is ", status,
                                " and cannot be cancelled"),
                   {{"run_id", run.id()}, {"status", status}});
}

absl::Status RunNotAwaitingOutputs(const v1::Run& run) {
  const std::string status(RunStatusName(run.status()));
  return MakeError(absl::StatusCode::kFailedPrecondition,
                   "RUN_NOT_AWAITING_OUTPUTS",
                   absl::StrCat("Run ", run.id(), " is ", status,
                                ", not requires_action; no tool outputs are "
                                "awaited"),
                   {{"run_id", run.id()}, {"status", status}});
}

}  // namespace assistants::runs
