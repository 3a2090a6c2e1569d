// Tests of the JSON-lines logger: line format, escaping, levels, threads.
#include "service/common/log.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace assistants {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

// Captures lines for one test and restores stderr and the level afterwards.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogSink([this](absl::string_view line) {
      absl::MutexLock lock(&mu_);
      lines_.emplace_back(line);
    });
  }
  void TearDown() override {
    SetLogSink(nullptr);
    SetLogLevel(LogLevel::kInfo);
  }
  std::vector<std::string> lines() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

  absl::Mutex mu_;
  std::vector<std::string> lines_;
};

TEST(LogFormatTest, LineHasTimestampLevelMessageAndFieldsInOrder) {
  const absl::Time time = absl::FromUnixMillis(1795884001123);  // 2026-11-28
  EXPECT_EQ(FormatLogLine(time, LogLevel::kInfo, "run finished",
                          {{"run_id", "run_1"}, {"thread_id", "thread_2"}}),
            "{\"ts\":\"2026-11-28T16:40:01.123Z\",\"level\":\"info\","
            "\"msg\":\"run finished\",\"run_id\":\"run_1\","
            "\"thread_id\":\"thread_2\"}");
}

TEST(LogFormatTest, NumbersAndBooleansAreJsonValues) {
  const std::string line =
      FormatLogLine(absl::UnixEpoch(), LogLevel::kWarning, "m",
                    {{"count", 3},
                     {"big", int64_t{1} << 40},
                     {"ms", 1.5},
                     {"ok", true},
                     {"nan", std::nan("")}});
  const auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["level"], "warning");
  EXPECT_EQ(parsed["count"], 3);
  EXPECT_EQ(parsed["big"], int64_t{1} << 40);
  EXPECT_EQ(parsed["ms"], 1.5);
  EXPECT_EQ(parsed["ok"], true);
  EXPECT_TRUE(parsed["nan"].is_null());
}

TEST(LogFormatTest, EscapesQuotesBackslashesAndControlCharacters) {
  const std::string nasty = "a\"b\\c\nd\te\r\x01\x7f \xc3\xa9 \xf0\x9f\x98\x80";
  const std::string line = FormatLogLine(absl::UnixEpoch(), LogLevel::kError,
                                         nasty, {{"k\"ey", nasty}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const auto parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["msg"], nasty);
  EXPECT_EQ(parsed["k\"ey"], nasty);
}

TEST(LogFormatTest, InvalidUtf8BecomesReplacementCharacter) {
  // A lone continuation byte, a truncated sequence, an overlong '/' and a
  // UTF-16 surrogate.
  const std::string bad = "x\x80y\xe2\x82z\xc0\xafw\xed\xa0\x80";
  const std::string line =
      FormatLogLine(absl::UnixEpoch(), LogLevel::kInfo, bad, {});
  const auto parsed = nlohmann::json::parse(line);  // Throws if invalid.
  const std::string replacement = "\xef\xbf\xbd";
  EXPECT_EQ(parsed["msg"].get<std::string>().substr(0, 1 + 3 + 1),
            "x" + replacement + "y");
}

TEST(LogLevelTest, NamesRoundTrip) {
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning,
                         LogLevel::kError}) {
    EXPECT_EQ(ParseLogLevel(LogLevelName(level)), level);
  }
  EXPECT_EQ(ParseLogLevel("verbose"), std::nullopt);
  EXPECT_EQ(ParseLogLevel("INFO"), std::nullopt);
}

TEST_F(LogTest, ThresholdDropsLowerLevels) {
  SetLogLevel(LogLevel::kWarning);
  Log(LogLevel::kDebug, "debug");
  Log(LogLevel::kInfo, "info");
  Log(LogLevel::kWarning, "warning");
  Log(LogLevel::kError, "error");
  std::vector<std::string> messages;
  for (const std::string& line : lines()) {
    messages.push_back(nlohmann::json::parse(line)["msg"]);
  }
  EXPECT_THAT(messages, ElementsAre("warning", "error"));
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
}

TEST_F(LogTest, LogAlwaysIgnoresTheThreshold) {
  SetLogLevel(LogLevel::kError);
  LogAlways("x listening on 127.0.0.1:1 (store: memory)");
  ASSERT_THAT(lines(), SizeIs(1));
  const auto parsed = nlohmann::json::parse(lines()[0]);
  EXPECT_EQ(parsed["level"], "info");
  EXPECT_EQ(parsed["msg"], "x listening on 127.0.0.1:1 (store: memory)");
}

TEST_F(LogTest, ConcurrentLinesStayWhole) {
  SetLogLevel(LogLevel::kDebug);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < 200; ++i) {
        Log(LogLevel::kDebug, "tick", {{"thread", t}, {"i", i}});
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const std::vector<std::string> all = lines();
  ASSERT_THAT(all, SizeIs(800));
  for (const std::string& line : all) {
    EXPECT_EQ(nlohmann::json::parse(line)["msg"], "tick");
  }
}

}  // namespace
}  // namespace assistants
