// An incremental parser of Server-Sent Events (the WHATWG "event stream"
// format) as used by OpenAI's streaming APIs. Bytes may be fed in chunks
// split anywhere: mid-line, mid-UTF-8 character, between "\r" and "\n".
#ifndef UPSTREAM_SSE_SSE_PARSER_H_
#define UPSTREAM_SSE_SSE_PARSER_H_

#include <cstddef>
#include <functional>
#include <string>

#include "absl/strings/string_view.h"

namespace assistants::upstream {

struct SseEvent {
  // The `event:` field; empty means the default type "message".
  std::string event;
  // The `data:` lines joined with "\n" (no trailing newline).
  std::string data;
  // The last `id:` seen (persists across events, as the spec says).
  std::string id;
};

class SseParser {
 public:
  using Callback = std::function<void(SseEvent&&)>;

  // `max_event_bytes` bounds the memory one event (or one unterminated line)
  // may take; past it Feed returns false and the stream must be abandoned.
  explicit SseParser(size_t max_event_bytes = 8 << 20)
      : max_event_bytes_(max_event_bytes) {}

  // Parses `chunk`, calling `on_event` for each complete event (terminated by
  // a blank line). Line ends: "\n", "\r\n" or "\r". Comments (":" lines) and
  // unknown fields are ignored; a leading UTF-8 BOM is skipped; events with
  // no data line are not dispatched. Returns false if a limit was exceeded.
  bool Feed(absl::string_view chunk, const Callback& on_event);

  // Whether bytes of an unfinished event are pending (at end of stream they
  // are discarded, per the spec; a caller may treat that as truncation).
  bool HasPartialEvent() const;

 private:
  void ProcessLine(absl::string_view line, const Callback& on_event);
  // Marks the parser failed (a limit was exceeded), frees its buffers and
  // returns false.
  bool Fail();

  const size_t max_event_bytes_;
  std::string line_;          // bytes of the current, unterminated line
  bool last_was_cr_ = false;  // a "\r" ended the previous chunk's last line
  bool bom_checked_ = false;
  std::string event_;
  std::string data_;
  bool has_data_ = false;
  std::string last_id_;
  bool pending_fields_ = false;
  bool failed_ = false;  // sticky: later Feed calls return false
};

}  // namespace assistants::upstream

#endif  // UPSTREAM_SSE_SSE_PARSER_H_
