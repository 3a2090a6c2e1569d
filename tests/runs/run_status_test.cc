// Tests of service/runs/run_status: the whole 10x10 transition table against
// an expectation written from the spec (ENGINEERING.md section 6 and
// run.proto), CheckTransition's error, IsTerminal and the names.
#include "service/runs/run_status.h"

#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "assistants/v1/run.pb.h"
#include "gtest/gtest.h"
#include "service/common/errors.h"

namespace assistants::runs {
namespace {

using v1::RunStatus;

// Every RunStatus value, in enum order.
std::vector<RunStatus> AllStatuses() {
  std::vector<RunStatus> all;
  for (int i = v1::RunStatus_MIN; i <= v1::RunStatus_MAX; ++i) {
    all.push_back(static_cast<RunStatus>(i));
  }
  return all;
}

// The spec's moves, listed independently of the engine's table.
bool Expected(RunStatus from, RunStatus to) {
  static const std::set<std::pair<RunStatus, RunStatus>> kAllowed = {
      {v1::RUN_STATUS_QUEUED, v1::RUN_STATUS_IN_PROGRESS},
      {v1::RUN_STATUS_QUEUED, v1::RUN_STATUS_CANCELLING},
      {v1::RUN_STATUS_QUEUED, v1::RUN_STATUS_FAILED},
      {v1::RUN_STATUS_IN_PROGRESS, v1::RUN_STATUS_REQUIRES_ACTION},
      {v1::RUN_STATUS_IN_PROGRESS, v1::RUN_STATUS_CANCELLING},
      {v1::RUN_STATUS_IN_PROGRESS, v1::RUN_STATUS_FAILED},
      {v1::RUN_STATUS_IN_PROGRESS, v1::RUN_STATUS_COMPLETED},
      {v1::RUN_STATUS_IN_PROGRESS, v1::RUN_STATUS_INCOMPLETE},
      {v1::RUN_STATUS_REQUIRES_ACTION, v1::RUN_STATUS_QUEUED},
      {v1::RUN_STATUS_REQUIRES_ACTION, v1::RUN_STATUS_IN_PROGRESS},
      {v1::RUN_STATUS_REQUIRES_ACTION, v1::RUN_STATUS_CANCELLING},
      {v1::RUN_STATUS_REQUIRES_ACTION, v1::RUN_STATUS_FAILED},
      {v1::RUN_STATUS_REQUIRES_ACTION, v1::RUN_STATUS_EXPIRED},
      {v1::RUN_STATUS_CANCELLING, v1::RUN_STATUS_CANCELLED},
      {v1::RUN_STATUS_CANCELLING, v1::RUN_STATUS_FAILED},
  };
  return kAllowed.count({from, to}) > 0;
}

using Transition = std::tuple<RunStatus, RunStatus>;

class TransitionTableTest : public ::testing::TestWithParam<Transition> {};

TEST_P(TransitionTableTest, MatchesSpec) {
  const auto [from, to] = GetParam();
  const bool expected = Expected(from, to);
  EXPECT_EQ(IsAllowedTransition(from, to), expected);
  const absl::Status status = CheckTransition(from, to);
  if (expected) {
    EXPECT_TRUE(status.ok()) << status;
    return;
  }
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(ErrorReason(status), "RUN_TRANSITION_FORBIDDEN");
  // The message names both statuses.
  EXPECT_TRUE(absl::StrContains(status.message(), RunStatusName(from)))
      << status;
  EXPECT_TRUE(absl::StrContains(status.message(), RunStatusName(to))) << status;
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->metadata().at("from"), std::string(RunStatusName(from)));
  EXPECT_EQ(info->metadata().at("to"), std::string(RunStatusName(to)));
}

std::string TransitionName(const ::testing::TestParamInfo<Transition>& info) {
  return std::string(RunStatusName(std::get<0>(info.param))) + "_to_" +
         std::string(RunStatusName(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(AllPairs, TransitionTableTest,
                         ::testing::Combine(::testing::ValuesIn(AllStatuses()),
                                            ::testing::ValuesIn(AllStatuses())),
                         TransitionName);

TEST(RunStatusTest, TableHasTenStatuses) {
  EXPECT_EQ(AllStatuses().size(), 10u);
}

TEST(RunStatusTest, OutOfRangeValuesAreRefused) {
  const auto bogus = static_cast<RunStatus>(42);
  EXPECT_FALSE(IsAllowedTransition(bogus, v1::RUN_STATUS_QUEUED));
  EXPECT_FALSE(IsAllowedTransition(v1::RUN_STATUS_QUEUED, bogus));
  EXPECT_EQ(CheckTransition(v1::RUN_STATUS_QUEUED, bogus).code(),
            absl::StatusCode::kInternal);
}

TEST(RunStatusTest, IsTerminal) {
  const std::set<RunStatus> terminal = {
      v1::RUN_STATUS_COMPLETED, v1::RUN_STATUS_INCOMPLETE,
      v1::RUN_STATUS_FAILED, v1::RUN_STATUS_CANCELLED, v1::RUN_STATUS_EXPIRED};
  for (RunStatus status : AllStatuses()) {
    EXPECT_EQ(IsTerminal(status), terminal.count(status) > 0)
        << RunStatusName(status);
    // Terminal statuses lead nowhere.
    if (IsTerminal(status)) {
      for (RunStatus to : AllStatuses()) {
        EXPECT_FALSE(IsAllowedTransition(status, to));
      }
    }
  }
}

TEST(RunStatusTest, NamesAndEvents) {
  const std::vector<std::pair<RunStatus, std::string>> names = {
      {v1::RUN_STATUS_QUEUED, "queued"},
      {v1::RUN_STATUS_IN_PROGRESS, "in_progress"},
      {v1::RUN_STATUS_REQUIRES_ACTION, "requires_action"},
      {v1::RUN_STATUS_CANCELLING, "cancelling"},
      {v1::RUN_STATUS_CANCELLED, "cancelled"},
      {v1::RUN_STATUS_FAILED, "failed"},
      {v1::RUN_STATUS_COMPLETED, "completed"},
      {v1::RUN_STATUS_INCOMPLETE, "incomplete"},
      {v1::RUN_STATUS_EXPIRED, "expired"},
  };
  for (const auto& [status, name] : names) {
    EXPECT_EQ(RunStatusName(status), name);
    EXPECT_EQ(RunStatusEvent(status), "thread.run." + name);
  }
  EXPECT_EQ(RunStatusName(v1::RUN_STATUS_UNSPECIFIED), "unspecified");
}

}  // namespace
}  // namespace assistants::runs
