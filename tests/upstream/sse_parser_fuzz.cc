// libFuzzer target for SseParser. The input's first bytes choose how the rest
// is cut into chunks; the target then checks that the chunked parse agrees
// exactly with a one-piece parse of the same bytes (events, Feed results,
// HasPartialEvent) and that the output is bounded by the input and the
// parser's limit. Built by clang with -fsanitize=fuzzer, or with g++ and
// fuzz_driver_main.cc, which replays pseudo-random and recorded inputs.
//
// Input layout:
//   byte 0:  bits 0-3: k, the number of chunk-length bytes that follow;
//            bits 4-7: the limit; 0 means the default 8 MiB, otherwise
//            (bits) * 8 bytes, so the fuzzer can reach the limit paths.
//   bytes 1..k: chunk lengths (0 allowed: an empty read), used cyclically;
//            if k is 0 or all are 0, the stream is fed byte by byte.
//   the rest: the SSE byte stream.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "upstream/sse/sse_parser.h"

namespace {

using assistants::upstream::SseEvent;
using assistants::upstream::SseParser;

struct Ev {
  std::string event;
  std::string data;
  std::string id;
  bool operator==(const Ev& o) const {
    return std::tie(event, data, id) == std::tie(o.event, o.data, o.id);
  }
};

struct Outcome {
  std::vector<Ev> events;
  bool ok = true;
  bool partial = false;
};

// Aborts with a message: libFuzzer and the driver both report an abort as a
// failure, with the offending input saved by libFuzzer.
void Check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "sse_parser_fuzz: invariant violated: %s\n", what);
  std::abort();
}

class Collector {
 public:
  explicit Collector(size_t max) : parser_(max) {}

  void Feed(absl::string_view chunk) {
    const bool ok = parser_.Feed(chunk, [this](SseEvent&& e) {
      outcome_.events.push_back(
          Ev{std::move(e.event), std::move(e.data), std::move(e.id)});
    });
    // Failure is sticky: once Feed returned false, it always does.
    if (!outcome_.ok) Check(!ok, "Feed succeeded after a failure");
    outcome_.ok &= ok;
  }

  Outcome Finish() {
    outcome_.partial = parser_.HasPartialEvent();
    return std::move(outcome_);
  }

 private:
  SseParser parser_;
  Outcome outcome_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t num_lengths = data[0] & 0x0F;
  const size_t limit_bits = data[0] >> 4;
  const size_t max = limit_bits == 0 ? size_t{8} << 20 : limit_bits * 8;
  if (size < 1 + num_lengths) return 0;
  const uint8_t* lengths = data + 1;
  const absl::string_view stream(
      reinterpret_cast<const char*>(data) + 1 + num_lengths,
      size - 1 - num_lengths);

  Collector whole(max);
  whole.Feed(stream);
  const Outcome reference = whole.Finish();

  // Lengths are used cyclically, so all-zero lengths would never advance.
  size_t cycle = 0;
  for (size_t i = 0; i < num_lengths; ++i) cycle += lengths[i];

  Collector chunked(max);
  if (cycle == 0) {
    // No (non-zero) lengths given: byte by byte, the most demanding split.
    for (size_t i = 0; i < stream.size(); ++i)
      chunked.Feed(stream.substr(i, 1));
  } else {
    size_t pos = 0;
    for (size_t n = 0; pos < stream.size(); ++n) {
      const size_t len = lengths[n % num_lengths];
      chunked.Feed(stream.substr(pos, len));
      pos += len;
    }
    chunked.Feed(absl::string_view());
  }
  const Outcome got = chunked.Finish();

  Check(got.ok == reference.ok, "Feed result depends on chunking");
  Check(got.partial == reference.partial,
        "HasPartialEvent depends on chunking");
  Check(got.events == reference.events, "events depend on chunking");

  // Every byte of an event's type and data comes from a distinct input byte
  // (a data line's "\n" from its line end), so the totals can't exceed the
  // input; and no event may exceed the limit.
  size_t total = 0;
  for (const Ev& e : got.events) {
    total += e.event.size() + e.data.size();
    Check(e.event.size() + e.data.size() < max, "event exceeds the limit");
    Check(e.id.size() <= stream.size(), "id larger than the input");
  }
  Check(total <= stream.size(), "output larger than the input");
  // By the same argument nothing in a stream within the limit can trip it.
  if (stream.size() <= max) Check(reference.ok, "a short stream failed");
  return 0;
}
