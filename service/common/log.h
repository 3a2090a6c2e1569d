// Structured logs: one JSON object per line on stderr,
//   {"ts":"2026-11-28T16:40:01.123Z","level":"info","msg":"...", ...fields}
// with a process-wide level threshold (log.level). Thread-safe: each line is
// written with a single write under a lock, so lines never interleave.
#ifndef SERVICE_COMMON_LOG_H_
#define SERVICE_COMMON_LOG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace assistants {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning", "error".
absl::string_view LogLevelName(LogLevel level);
// The level named by `name` (exactly one of the names above), if any.
std::optional<LogLevel> ParseLogLevel(absl::string_view name);

// One key/value of a log line. Strings are escaped; numbers and booleans are
// written as JSON numbers and booleans.
class LogField {
 public:
  LogField(absl::string_view key, absl::string_view value);
  LogField(absl::string_view key, const char* value)
      : LogField(key, absl::string_view(value)) {}
  LogField(absl::string_view key, const std::string& value)
      : LogField(key, absl::string_view(value)) {}
  LogField(absl::string_view key, bool value);
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>,
                             int> = 0>
  LogField(absl::string_view key, T value)
      : key_(key), json_(std::to_string(value)) {}
  LogField(absl::string_view key, double value);

  const std::string& key() const { return key_; }
  // The value already encoded as JSON.
  const std::string& json() const { return json_; }

 private:
  std::string key_;
  std::string json_;
};

// Lines below `level` are dropped. The default is kInfo.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Whether a line at `level` would be written; lets callers skip building
// expensive fields.
bool LogEnabled(LogLevel level);

// Writes one line at `level` if it passes the threshold.
void Log(LogLevel level, absl::string_view msg,
         absl::Span<const LogField> fields = {});

// Writes one info line whatever the threshold: for the few lines tooling
// waits for (the "listening on" announcement).
void LogAlways(absl::string_view msg, absl::Span<const LogField> fields = {});

// The JSON line (without the trailing newline) for the given parts. Invalid
// UTF-8 is replaced by U+FFFD so the line always parses.
std::string FormatLogLine(absl::Time time, LogLevel level,
                          absl::string_view msg,
                          absl::Span<const LogField> fields);

// `text` as a quoted JSON string.
std::string JsonQuote(absl::string_view text);

// Where lines go; the default (an empty function) writes to stderr. Tests
// capture lines with it. The sink is called under the log lock.
using LogSink = std::function<void(absl::string_view line)>;
void SetLogSink(LogSink sink);

}  // namespace assistants

#endif  // SERVICE_COMMON_LOG_H_
