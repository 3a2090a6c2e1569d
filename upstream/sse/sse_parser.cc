// SseParser: the incremental Server-Sent Events parser behind the upstream
// providers. It follows WHATWG HTML "9.2.6 Interpreting an event stream" and
// is written so that the events it yields never depend on how the byte stream
// was cut into chunks (tests/upstream/sse_parser_test.cc checks every split).
//
// Speed: complete lines are processed straight from the caller's chunk via
// string_views; only the unterminated tail of a chunk is copied into `line_`.
// Line ends are located with memchr rather than by looking at every byte.
#include "upstream/sse/sse_parser.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace assistants::upstream {
namespace {

constexpr char kBom[] = "\xEF\xBB\xBF";
constexpr size_t kBomSize = 3;

// Returns the offset of the first byte of `s` at or after `from` equal to `c`,
// or s.size() if there is none.
size_t FindByte(absl::string_view s, size_t from, char c) {
  if (from >= s.size()) return s.size();
  const void* hit = std::memchr(s.data() + from, c, s.size() - from);
  return hit == nullptr
             ? s.size()
             : static_cast<size_t>(static_cast<const char*>(hit) - s.data());
}

}  // namespace

bool SseParser::Feed(absl::string_view chunk, const Callback& on_event) {
  // A parser that once exceeded a limit has lost bytes; whatever it produced
  // next would be wrong, so it stays failed.
  if (failed_) return false;
  size_t pos = 0;
  const size_t size = chunk.size();

  // The BOM may only appear at the very start of the stream, and may itself
  // be split across chunks: keep the bytes that still match a BOM prefix in
  // `line_` until three have matched (drop them) or one doesn't (they were
  // ordinary line content, which a BOM prefix can't end).
  while (!bom_checked_ && pos < size) {
    if (chunk[pos] != kBom[line_.size()]) {
      bom_checked_ = true;
      break;
    }
    line_.push_back(chunk[pos++]);
    if (line_.size() == kBomSize) {
      line_.clear();
      bom_checked_ = true;
    }
  }
  if (pos == size) return true;

  // "\r\n" split across chunks: the "\r" already ended the line, so this
  // "\n" is not another (blank) line.
  if (last_was_cr_) {
    last_was_cr_ = false;
    if (chunk[pos] == '\n') ++pos;
  }

  // Positions of the next "\r" and "\n", each searched for only once it has
  // been passed, so a chunk costs two linear memchr passes in total even when
  // it holds only one kind of line end.
  size_t next_cr = FindByte(chunk, pos, '\r');
  size_t next_lf = FindByte(chunk, pos, '\n');
  while (pos < size) {
    if (next_cr < pos) next_cr = FindByte(chunk, pos, '\r');
    if (next_lf < pos) next_lf = FindByte(chunk, pos, '\n');
    const size_t end = next_cr < next_lf ? next_cr : next_lf;
    if (end == size) break;  // No line end left: the tail is a partial line.

    const absl::string_view piece = chunk.substr(pos, end - pos);
    if (line_.empty()) {
      // Fast path: the whole line is in this chunk, no copy needed.
      if (piece.size() > max_event_bytes_) return Fail();
      ProcessLine(piece, on_event);
    } else {
      if (line_.size() + piece.size() > max_event_bytes_) return Fail();
      line_.append(piece.data(), piece.size());
      ProcessLine(line_, on_event);
      line_.clear();
    }
    if (failed_) return false;

    pos = end + 1;
    if (chunk[end] == '\r') {
      if (pos < size) {
        if (chunk[pos] == '\n') ++pos;
      } else {
        last_was_cr_ = true;
      }
    }
  }

  if (pos < size) {
    // Checked before copying so an oversized line never grows `line_` past
    // the bound.
    if (line_.size() + (size - pos) > max_event_bytes_) return Fail();
    line_.append(chunk.data() + pos, size - pos);
  }
  return true;
}

bool SseParser::HasPartialEvent() const {
  if (failed_) return true;
  // A buffered comment is not part of any event; every other buffered line
  // (including a BOM prefix that may yet turn out to be content) might be.
  return pending_fields_ || (!line_.empty() && line_[0] != ':');
}

bool SseParser::Fail() {
  failed_ = true;
  // Release what the abandoned event held: the caller may keep the parser
  // object around after giving up on the stream.
  std::string().swap(line_);
  std::string().swap(event_);
  std::string().swap(data_);
  has_data_ = false;
  return false;
}

void SseParser::ProcessLine(absl::string_view line, const Callback& on_event) {
  if (line.empty()) {
    pending_fields_ = false;
    if (!has_data_) {
      // Spec: no data means no event, but the type still resets.
      event_.clear();
      return;
    }
    data_.pop_back();  // The "\n" appended after the last data line.
    SseEvent event;
    event.event = std::move(event_);
    event.data = std::move(data_);
    event.id = last_id_;  // The last event ID persists across events.
    // Moved-from strings are valid but unspecified; make them empty.
    event_.clear();
    data_.clear();
    has_data_ = false;
    on_event(std::move(event));
    return;
  }
  if (line[0] == ':') return;  // Comment, e.g. ": keep-alive".

  pending_fields_ = true;
  absl::string_view field = line;
  absl::string_view value;
  const size_t colon = FindByte(line, 0, ':');
  if (colon != line.size()) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }

  if (field == "data") {
    // Counted with the type so one event's buffers stay under the bound.
    if (event_.size() + data_.size() + value.size() + 1 > max_event_bytes_) {
      Fail();
      return;
    }
    // Grow once for value and "\n" together: append-then-push_back would
    // reallocate twice for the typical single-line event whose buffer was
    // just moved out.
    const size_t needed = data_.size() + value.size() + 1;
    if (needed > data_.capacity()) {
      data_.reserve(std::max(needed, 2 * data_.capacity()));
    }
    data_.append(value.data(), value.size());
    data_.push_back('\n');
    has_data_ = true;
  } else if (field == "event") {
    if (data_.size() + value.size() > max_event_bytes_) {
      Fail();
      return;
    }
    event_.assign(value.data(), value.size());
  } else if (field == "id") {
    // Spec: an id containing NUL is ignored (it could not round-trip through
    // the Last-Event-ID header).
    if (FindByte(value, 0, '\0') == value.size()) {
      last_id_.assign(value.data(), value.size());
    }
  }
  // "retry" only steers the browser's reconnection delay, which we don't
  // implement; it and unknown fields are ignored, as the spec says.
}

}  // namespace assistants::upstream
