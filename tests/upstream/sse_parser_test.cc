// Tests of SseParser: one case per rule of WHATWG "9.2.6 Interpreting an
// event stream", then the property that matters most for a network parser:
// recorded OpenAI streams (tests/upstream/testdata/*.sse) yield exactly the
// same events however the bytes are split into chunks.
#include "upstream/sse/sse_parser.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace assistants::upstream {
namespace {

// SseEvent has no operator== (production code doesn't need one), so tests
// compare this copy, which also prints readably in failure messages.
struct Ev {
  std::string event;
  std::string data;
  std::string id;

  friend bool operator==(const Ev& a, const Ev& b) {
    return std::tie(a.event, a.data, a.id) == std::tie(b.event, b.data, b.id);
  }
  friend void PrintTo(const Ev& e, std::ostream* os) {
    *os << "{event=\"" << absl::CHexEscape(e.event) << "\" data=\""
        << absl::CHexEscape(e.data) << "\" id=\"" << absl::CHexEscape(e.id)
        << "\"}";
  }
};

Ev E(absl::string_view data, absl::string_view event = "",
     absl::string_view id = "") {
  return Ev{std::string(event), std::string(data), std::string(id)};
}

// Everything observable about one parse: the events, whether every Feed
// succeeded, and what HasPartialEvent says at the end.
struct Outcome {
  std::vector<Ev> events;
  bool ok = true;
  bool partial = false;

  friend bool operator==(const Outcome& a, const Outcome& b) {
    return std::tie(a.events, a.ok, a.partial) ==
           std::tie(b.events, b.ok, b.partial);
  }
  friend void PrintTo(const Outcome& o, std::ostream* os) {
    *os << "ok=" << o.ok << " partial=" << o.partial << " " << o.events.size()
        << " events:";
    for (const Ev& e : o.events) {
      *os << "\n  ";
      PrintTo(e, os);
    }
  }
};

// Feeds chunks to a parser, recording the outcome. Copyable, so a test can
// fork the state after a prefix and try many different continuations.
class Harness {
 public:
  explicit Harness(size_t max_event_bytes = 8 << 20)
      : parser_(max_event_bytes) {}

  void Feed(absl::string_view chunk) {
    outcome_.ok &= parser_.Feed(chunk, [this](SseEvent&& e) {
      outcome_.events.push_back(
          Ev{std::move(e.event), std::move(e.data), std::move(e.id)});
    });
  }

  Outcome Finish() {
    outcome_.partial = parser_.HasPartialEvent();
    return outcome_;
  }

 private:
  SseParser parser_;
  Outcome outcome_;
};

// Like Harness, but compares events with an expected outcome as they arrive
// instead of storing them: the exhaustive split tests run millions of parses,
// and this keeps each one free of allocations beyond the parser's own.
class Checker {
 public:
  explicit Checker(const Outcome& want) : want_(&want) {}

  void Feed(absl::string_view chunk) {
    ok_ &= parser_.Feed(chunk, [this](SseEvent&& e) {
      const std::vector<Ev>& events = want_->events;
      if (next_ >= events.size() || e.event != events[next_].event ||
          e.data != events[next_].data || e.id != events[next_].id) {
        mismatch_ = true;
      }
      ++next_;
    });
  }

  bool Matches() const {
    return !mismatch_ && next_ == want_->events.size() && ok_ == want_->ok &&
           parser_.HasPartialEvent() == want_->partial;
  }

 private:
  const Outcome* want_;
  SseParser parser_;
  size_t next_ = 0;
  bool mismatch_ = false;
  bool ok_ = true;
};

Outcome ParseWhole(absl::string_view input, size_t max = 8 << 20) {
  Harness h(max);
  h.Feed(input);
  return h.Finish();
}

std::vector<Ev> Events(absl::string_view input) {
  return ParseWhole(input).events;
}

// Feeds `input` split at the ascending positions `cuts`.
Outcome ParseSplit(absl::string_view input, const std::vector<size_t>& cuts,
                   size_t max = 8 << 20) {
  Harness h(max);
  size_t from = 0;
  for (size_t cut : cuts) {
    h.Feed(input.substr(from, cut - from));
    from = cut;
  }
  h.Feed(input.substr(from));
  return h.Finish();
}

Outcome ParseBytewise(absl::string_view input, size_t max = 8 << 20) {
  Harness h(max);
  for (size_t i = 0; i < input.size(); ++i) h.Feed(input.substr(i, 1));
  return h.Finish();
}

// ---------------------------------------------------------------------------
// Fields and dispatch.

TEST(SseParserTest, SingleDataLine) {
  EXPECT_EQ(Events("data: hello\n\n"), std::vector<Ev>{E("hello")});
}

TEST(SseParserTest, EventFieldSetsType) {
  EXPECT_EQ(Events("event: response.created\ndata: {}\n\n"),
            std::vector<Ev>{E("{}", "response.created")});
}

TEST(SseParserTest, EventTypeResetsAfterDispatch) {
  EXPECT_EQ(Events("event: a\ndata: 1\n\ndata: 2\n\n"),
            (std::vector<Ev>{E("1", "a"), E("2")}));
}

TEST(SseParserTest, FieldOrderWithinEventDoesNotMatter) {
  EXPECT_EQ(Events("data: 1\nevent: late\n\n"),
            std::vector<Ev>{E("1", "late")});
}

TEST(SseParserTest, MultiLineDataIsJoinedWithNewlines) {
  EXPECT_EQ(Events("data: a\ndata: b\ndata:\ndata: c\n\n"),
            std::vector<Ev>{E("a\nb\n\nc")});
}

TEST(SseParserTest, DataWithOnlyEmptyValueDispatchesEmptyData) {
  // "data:" appends "\n", so the buffer is not empty and the event fires.
  EXPECT_EQ(Events("data:\n\n"), std::vector<Ev>{E("")});
  EXPECT_EQ(Events("data\ndata\n\n"), std::vector<Ev>{E("\n")});
}

TEST(SseParserTest, OnlyOneLeadingSpaceIsRemoved) {
  EXPECT_EQ(Events("data:  two\n\n"), std::vector<Ev>{E(" two")});
  EXPECT_EQ(Events("data:no-space\n\n"), std::vector<Ev>{E("no-space")});
  EXPECT_EQ(Events("data:\ttab\n\n"), std::vector<Ev>{E("\ttab")});
  EXPECT_EQ(Events("data: trailing \n\n"), std::vector<Ev>{E("trailing ")});
  EXPECT_EQ(Events("event:  spaced\ndata: x\n\n"),
            std::vector<Ev>{E("x", " spaced")});
}

TEST(SseParserTest, FieldWithoutColonHasEmptyValue) {
  EXPECT_EQ(Events("event: a\nevent\ndata\n\n"), std::vector<Ev>{E("")});
}

TEST(SseParserTest, ValueKeepsLaterColons) {
  EXPECT_EQ(Events("data: a: b:c\n\n"), std::vector<Ev>{E("a: b:c")});
  EXPECT_EQ(Events("data::\n\n"), std::vector<Ev>{E(":")});
}

TEST(SseParserTest, CommentsAreIgnored) {
  EXPECT_EQ(Events(": keep-alive\n\n"), std::vector<Ev>{});
  EXPECT_EQ(Events(":\n:comment\ndata: x\n: more\n\n"),
            std::vector<Ev>{E("x")});
  // A comment does not end an event; only a blank line does.
  EXPECT_EQ(Events("data: a\n: ping\ndata: b\n\n"), std::vector<Ev>{E("a\nb")});
}

TEST(SseParserTest, BlankLineWithoutDataDispatchesNothingAndResetsType) {
  EXPECT_EQ(Events("\n\n\n"), std::vector<Ev>{});
  EXPECT_EQ(Events("event: lost\n\ndata: x\n\n"), std::vector<Ev>{E("x")});
}

TEST(SseParserTest, IdPersistsAcrossEvents) {
  EXPECT_EQ(Events("id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"),
            (std::vector<Ev>{E("a", "", "1"), E("b", "", "1"), E("c")}));
  // An id on an event that is never dispatched still sets the last id.
  EXPECT_EQ(Events("id: 7\n\ndata: x\n\n"), std::vector<Ev>{E("x", "", "7")});
}

TEST(SseParserTest, IdContainingNulIsIgnored) {
  constexpr char kInput[] = "id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n";
  const std::string input(kInput, sizeof(kInput) - 1);
  EXPECT_EQ(Events(input), (std::vector<Ev>{E("a", "", "1"), E("b", "", "1")}));
}

TEST(SseParserTest, NulInDataIsKept) {
  constexpr char kInput[] = "data: a\0b\n\n";
  const std::string input(kInput, sizeof(kInput) - 1);
  EXPECT_EQ(Events(input), std::vector<Ev>{E(std::string("a\0b", 3))});
}

TEST(SseParserTest, RetryAndUnknownFieldsAreIgnored) {
  // Field names are case-sensitive: "DATA" and "Event" are unknown fields.
  EXPECT_EQ(Events("retry: 3000\nfoo: bar\ndata: x\nDATA: y\nEvent: z\n"
                   "data : w\n\n"),
            std::vector<Ev>{E("x")});
  EXPECT_EQ(Events("retry: 10\n\n"), std::vector<Ev>{});
}

TEST(SseParserTest, DoneSentinelIsPlainData) {
  EXPECT_EQ(Events("data: {\"a\":1}\n\ndata: [DONE]\n\n"),
            (std::vector<Ev>{E("{\"a\":1}"), E("[DONE]")}));
}

TEST(SseParserTest, Utf8PassesThroughUnchanged) {
  EXPECT_EQ(Events("event: caf\xC3\xA9\ndata: \xE6\x97\xA5\xE6\x9C\xAC "
                   "\xF0\x9F\x8E\x89\n\n"),
            std::vector<Ev>{
                E("\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\x89", "caf\xC3\xA9")});
}

// ---------------------------------------------------------------------------
// Line ends.

TEST(SseParserTest, LfLineEnds) {
  EXPECT_EQ(Events("data: a\ndata: b\n\n"), std::vector<Ev>{E("a\nb")});
}

TEST(SseParserTest, CrLineEnds) {
  EXPECT_EQ(Events("data: a\rdata: b\r\rdata: c\r\r"),
            (std::vector<Ev>{E("a\nb"), E("c")}));
}

TEST(SseParserTest, CrLfLineEnds) {
  EXPECT_EQ(Events("event: e\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"),
            (std::vector<Ev>{E("a\nb", "e"), E("c")}));
}

TEST(SseParserTest, MixedLineEnds) {
  // "\n\r\n": LF ends "data: c", CRLF is the blank line.
  EXPECT_EQ(Events("data: a\rdata: b\r\ndata: c\n\r\n"),
            std::vector<Ev>{E("a\nb\nc")});
  // "\r\r\n": CR ends the line, CRLF is one blank line, not two.
  EXPECT_EQ(Events("data: a\r\r\ndata: b\n\r"),
            (std::vector<Ev>{E("a"), E("b")}));
  // "\n\r" is two line ends (LF, then CR), not one.
  EXPECT_EQ(Events("data: a\n\rdata: b\n\n"),
            (std::vector<Ev>{E("a"), E("b")}));
}

TEST(SseParserTest, CrAtChunkEndAndLfAtNextStartAreOneLineEnd) {
  Harness h;
  h.Feed("data: a\r");
  h.Feed("\ndata: b\r");
  h.Feed("\n\r");
  h.Feed("\n");
  // Had a "\n" after a chunk-final "\r" been taken for a blank line, "a"
  // and "b" would have been two events.
  Outcome o = h.Finish();
  EXPECT_EQ(o.events, std::vector<Ev>{E("a\nb")});
  EXPECT_FALSE(o.partial);
}

TEST(SseParserTest, CrLfSplitSurvivesEmptyChunkInBetween) {
  Harness h;
  h.Feed("data: a\r");
  h.Feed("");
  h.Feed("\n");
  h.Feed("data: b\n\n");
  EXPECT_EQ(h.Finish().events, std::vector<Ev>{E("a\nb")});
}

TEST(SseParserTest, CrAtChunkEndFollowedByOtherByte) {
  Harness h;
  h.Feed("data: a\r");
  h.Feed("data: b\r");
  h.Feed("\r");
  EXPECT_EQ(h.Finish().events, std::vector<Ev>{E("a\nb")});
}

// ---------------------------------------------------------------------------
// Byte order mark.

constexpr absl::string_view kBom = "\xEF\xBB\xBF";

TEST(SseParserTest, LeadingBomIsSkipped) {
  EXPECT_EQ(Events(absl::StrCat(kBom, "data: x\n\n")), std::vector<Ev>{E("x")});
  EXPECT_EQ(Events(absl::StrCat(kBom, "\ndata: x\n\n")),
            std::vector<Ev>{E("x")});
}

TEST(SseParserTest, BomSplitAcrossChunksIsSkipped) {
  const std::string input = absl::StrCat(kBom, "data: x\n\n");
  for (size_t i = 0; i <= 3; ++i) {
    for (size_t j = i; j <= 4; ++j) {
      EXPECT_EQ(ParseSplit(input, {i, j}).events, std::vector<Ev>{E("x")})
          << "cuts " << i << "," << j;
    }
  }
  EXPECT_EQ(ParseBytewise(input).events, std::vector<Ev>{E("x")});
}

TEST(SseParserTest, OnlyTheFirstBomIsSkipped) {
  // A second BOM is part of the first line's field name, making it unknown.
  EXPECT_EQ(Events(absl::StrCat(kBom, kBom, "data: x\n\n")), std::vector<Ev>{});
  EXPECT_EQ(Events(absl::StrCat("data: a\n\n", kBom, "data: b\n\n")),
            std::vector<Ev>{E("a")});
  // Not even when it starts a later chunk.
  EXPECT_EQ(
      ParseSplit(absl::StrCat("data: a\n\n", kBom, "data: b\n\n"), {9}).events,
      std::vector<Ev>{E("a")});
}

TEST(SseParserTest, BomPrefixThatIsNotABomIsContent) {
  // "\xEF\xBB" then "d": not a BOM, so the bytes start the field name.
  EXPECT_EQ(Events("\xEF\xBB"
                   "data: x\n\ndata: y\n\n"),
            std::vector<Ev>{E("y")});
  EXPECT_EQ(ParseSplit("\xEF\xBB"
                       "data: x\n\ndata: y\n\n",
                       {1, 2})
                .events,
            std::vector<Ev>{E("y")});
  // A BOM prefix ended by a line end is a (meaningless) line of its own.
  EXPECT_EQ(Events("\xEF\ndata: x\n\n"), std::vector<Ev>{E("x")});
  EXPECT_EQ(Events("\xEF\xBB\r\ndata: x\n\n"), std::vector<Ev>{E("x")});
}

TEST(SseParserTest, BomAloneIsNoPartialEvent) {
  EXPECT_FALSE(ParseWhole(kBom).partial);
  // Two bytes might still become a BOM or a field name: bytes are pending.
  EXPECT_TRUE(ParseWhole("\xEF\xBB").partial);
}

// ---------------------------------------------------------------------------
// End of stream.

TEST(SseParserTest, IncompleteEventIsNotDispatched) {
  for (absl::string_view input :
       {"data: x", "data: x\n", "data: x\r", "data: x\r\n",
        "data: a\n\ndata: b\n", "event: e\n", "id: 1\n", "retry: 1\n"}) {
    Outcome o = ParseWhole(input);
    EXPECT_TRUE(o.partial) << absl::CHexEscape(input);
    if (absl::StartsWith(input, "data: a")) {
      EXPECT_EQ(o.events, std::vector<Ev>{E("a")});
    } else {
      EXPECT_EQ(o.events, std::vector<Ev>{}) << absl::CHexEscape(input);
    }
  }
}

TEST(SseParserTest, CompleteStreamHasNoPartialEvent) {
  for (absl::string_view input :
       {"", "\n", "data: x\n\n", "data: x\r\r", "data: x\r\n\r\n",
        ": keep-alive\n", ": keep-alive", "event: e\n\n", "data: x\n\n\n"}) {
    EXPECT_FALSE(ParseWhole(input).partial) << absl::CHexEscape(input);
  }
}

TEST(SseParserTest, ParserKeepsWorkingAcrossManyEvents) {
  std::string input;
  std::vector<Ev> want;
  for (int i = 0; i < 1000; ++i) {
    absl::StrAppend(&input, "event: e", i, "\ndata: ", i, "\n\n");
    want.push_back(E(absl::StrCat(i), absl::StrCat("e", i)));
  }
  EXPECT_EQ(Events(input), want);
  EXPECT_EQ(ParseSplit(input, {7, 100, 4095, 5000}).events, want);
}

TEST(SseParserTest, LargeDataLineAcrossManyChunks) {
  const std::string payload(1 << 20, 'x');
  const std::string input = absl::StrCat("data: ", payload, "\n\n");
  Harness h;
  for (size_t i = 0; i < input.size(); i += 4096) {
    h.Feed(absl::string_view(input).substr(i, 4096));
  }
  Outcome o = h.Finish();
  ASSERT_TRUE(o.ok);
  ASSERT_EQ(o.events.size(), 1u);
  EXPECT_EQ(o.events[0].data, payload);
}

// ---------------------------------------------------------------------------
// Limits.

TEST(SseParserTest, LineAtTheLimitIsAccepted) {
  // "data: " + 10 bytes = 16 bytes of line, 11 bytes of data buffer.
  const std::string input = "data: 0123456789\n\n";
  EXPECT_EQ(ParseWhole(input, 16).events, std::vector<Ev>{E("0123456789")});
  EXPECT_TRUE(ParseWhole(input, 16).ok);
  EXPECT_TRUE(ParseBytewise(input, 16).ok);
}

TEST(SseParserTest, OverlongUnterminatedLineFails) {
  SseParser parser(16);
  auto no_event = [](SseEvent&&) { ADD_FAILURE() << "unexpected event"; };
  EXPECT_TRUE(parser.Feed("data: 0123456789", no_event));  // 16 bytes
  EXPECT_FALSE(parser.Feed("A", no_event));
  EXPECT_TRUE(parser.HasPartialEvent());
}

TEST(SseParserTest, OverlongCompleteLineFails) {
  EXPECT_FALSE(ParseWhole("data: 0123456789A\n\n", 16).ok);
  EXPECT_FALSE(ParseBytewise("data: 0123456789A\n\n", 16).ok);
  // Comments are bounded too: the bytes have to be buffered all the same.
  EXPECT_FALSE(ParseBytewise(": 0123456789ABCDEF\n\n", 16).ok);
}

TEST(SseParserTest, AccumulatedDataOverLimitFails) {
  // Each line is short, but the event's data outgrows 16 bytes.
  Outcome o = ParseWhole(
      "data: 1\n\ndata: 0123\ndata: 4567\ndata: 89AB\n"
      "data: CDEF\n\n",
      16);
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.events, std::vector<Ev>{E("1")});  // Only what preceded it.
}

TEST(SseParserTest, EventTypeCountsTowardsTheLimit) {
  // Every line fits in 20 bytes, but type (10) + data (10 + "\n") doesn't.
  EXPECT_FALSE(ParseWhole("event: 0123456789\ndata: 0123456789\n\n", 20).ok);
  EXPECT_TRUE(ParseWhole("event: 0123\ndata: 0123456789\n\n", 20).ok);
}

TEST(SseParserTest, FailureIsSticky) {
  SseParser parser(8);
  std::vector<std::string> got;
  auto collect = [&got](SseEvent&& e) { got.push_back(e.data); };
  EXPECT_FALSE(parser.Feed("data: 0123456789\n\n", collect));
  EXPECT_FALSE(parser.Feed("data: ok\n\n", collect));
  EXPECT_TRUE(got.empty());
}

TEST(SseParserTest, LimitOutcomeDoesNotDependOnChunking) {
  const std::string input =
      "data: ok\n\ndata: 0123\ndata: 4567\n\ndata: 0123456789ABCDEFGHIJ\n\n";
  const Outcome want = ParseWhole(input, 20);
  ASSERT_FALSE(want.ok);
  ASSERT_EQ(want.events, (std::vector<Ev>{E("ok"), E("0123\n4567")}));
  for (size_t i = 0; i <= input.size(); ++i) {
    for (size_t j = i; j <= input.size(); ++j) {
      ASSERT_EQ(ParseSplit(input, {i, j}, 20), want) << i << "," << j;
    }
  }
}

// ---------------------------------------------------------------------------
// Every chunking of recorded OpenAI streams.

std::string ReadTestdata(const std::string& name) {
  const std::string path =
      absl::StrCat(ASSISTANTS_SOURCE_DIR, "/tests/upstream/testdata/", name);
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

constexpr char kResponses[] = "responses_stream.sse";
constexpr char kChat[] = "chat_completions_stream.sse";
constexpr char kChatCrlf[] = "chat_completions_crlf_comments.sse";

// The fixtures are shared with other tests; pin down what they contain.
TEST(SseFixtureTest, ResponsesStreamHasTheExpectedEvents) {
  const Outcome o = ParseWhole(ReadTestdata(kResponses));
  ASSERT_TRUE(o.ok);
  EXPECT_FALSE(o.partial);
  ASSERT_EQ(o.events.size(), 22u);
  EXPECT_EQ(o.events.front().event, "response.created");
  EXPECT_EQ(o.events[1].event, "response.in_progress");
  EXPECT_EQ(o.events.back().event, "response.completed");
  std::string text;
  for (size_t i = 0; i < o.events.size(); ++i) {
    const Ev& e = o.events[i];
    // OpenAI repeats the SSE event name as the JSON "type", and numbers
    // events from 0.
    EXPECT_TRUE(
        absl::StartsWith(e.data, absl::StrCat("{\"type\":\"", e.event, "\"")))
        << e.data;
    EXPECT_TRUE(
        absl::StrContains(e.data, absl::StrCat("\"sequence_number\":", i)))
        << e.data;
    if (e.event == "response.output_text.delta") {
      const size_t start = e.data.find("\"delta\":\"") + 9;
      text += e.data.substr(start, e.data.find('"', start) - start);
    }
  }
  EXPECT_EQ(
      text,
      "Bonjour ! Un caf\xC3\xA9 \xC3\xA0 Tokyo (\xE6\x97\xA5\xE6\x9C\xAC) "
      "\xF0\x9F\x8E\x89\\nDone.");
}

TEST(SseFixtureTest, ChatCompletionsStreamHasTheExpectedEvents) {
  const Outcome o = ParseWhole(ReadTestdata(kChat));
  ASSERT_TRUE(o.ok);
  EXPECT_FALSE(o.partial);
  ASSERT_EQ(o.events.size(), 7u);
  for (const Ev& e : o.events) {
    EXPECT_EQ(e.event, "");
    EXPECT_EQ(e.id, "");
  }
  for (size_t i = 0; i + 1 < o.events.size(); ++i) {
    EXPECT_TRUE(absl::StrContains(o.events[i].data,
                                  "\"object\":\"chat.completion.chunk\""));
  }
  EXPECT_TRUE(absl::StrContains(o.events[1].data, "caf\xC3\xA9"));
  EXPECT_TRUE(
      absl::StrContains(o.events[4].data, "\"finish_reason\":\"stop\""));
  EXPECT_TRUE(absl::StrContains(o.events[5].data, "\"choices\":[]"));
  EXPECT_EQ(o.events.back().data, "[DONE]");
}

TEST(SseFixtureTest, CrlfAndCommentsDoNotChangeTheEvents) {
  const std::string crlf = ReadTestdata(kChatCrlf);
  ASSERT_TRUE(absl::StrContains(crlf, "\r\n: keep-alive\r\n"));
  EXPECT_EQ(ParseWhole(crlf), ParseWhole(ReadTestdata(kChat)));
}

// A fixture, optionally with its "\n" line ends rewritten: the Responses
// stream's "event:" + "data:" pairs make a spurious blank line between "\r"
// and "\n" visible (it would drop the event type), which the single-line
// events of the chat streams cannot show.
struct Stream {
  const char* file;
  const char* line_end;  // nullptr: as recorded
  const char* name;
};

class EveryChunkingTest : public testing::TestWithParam<Stream> {
 protected:
  void SetUp() override {
    input_ = ReadTestdata(GetParam().file);
    ASSERT_FALSE(input_.empty());
    const Outcome recorded = ParseWhole(input_);
    if (GetParam().line_end != nullptr) {
      ASSERT_FALSE(absl::StrContains(input_, "\r"));
      input_ = absl::StrReplaceAll(input_, {{"\n", GetParam().line_end}});
    }
    reference_ = ParseWhole(input_);
    ASSERT_TRUE(reference_.ok);
    ASSERT_FALSE(reference_.events.empty());
    EXPECT_EQ(reference_, recorded) << "line ends changed the events";
  }

  std::string input_;
  Outcome reference_;
};

TEST_P(EveryChunkingTest, OnePiece) {
  Harness h;
  h.Feed(input_);
  h.Feed("");  // A trailing empty read changes nothing.
  EXPECT_EQ(h.Finish(), reference_);
}

TEST_P(EveryChunkingTest, ByteByByte) {
  EXPECT_EQ(ParseBytewise(input_), reference_);
}

TEST_P(EveryChunkingTest, EverySingleSplit) {
  for (size_t i = 0; i <= input_.size(); ++i) {
    ASSERT_EQ(ParseSplit(input_, {i}), reference_) << "split at " << i;
  }
}

TEST_P(EveryChunkingTest, SplitPairs) {
  const size_t n = input_.size();
  std::vector<std::pair<size_t, size_t>> pairs;
  if (n <= 4096) {
    // Small fixtures: every pair. The parser is copied after the first chunk
    // so each prefix is parsed once per i rather than once per (i, j).
    const absl::string_view in(input_);
    for (size_t i = 1; i < n; ++i) {
      Checker prefix(reference_);
      prefix.Feed(in.substr(0, i));
      for (size_t j = i + 1; j < n; ++j) {
        Checker c = prefix;
        c.Feed(in.substr(i, j - i));
        c.Feed(in.substr(j));
        if (!c.Matches()) {
          // Re-parse with the storing harness for a readable diff.
          ASSERT_EQ(ParseSplit(input_, {i, j}), reference_)
              << "split at " << i << ", " << j;
          FAIL() << "Checker and Harness disagree at " << i << ", " << j;
        }
      }
    }
    return;
  }
  // Bigger fixtures: a fixed random sample, plus every pair of positions
  // within two bytes of a line end, where the state machine is busiest.
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<size_t> pos(0, n);
  for (int k = 0; k < 2000; ++k) {
    size_t i = pos(rng), j = pos(rng);
    pairs.emplace_back(std::min(i, j), std::max(i, j));
  }
  std::vector<size_t> near;
  for (size_t p = 0; p < n; ++p) {
    if (input_[p] != '\n' && input_[p] != '\r') continue;
    for (size_t q = p >= 2 ? p - 2 : 0; q <= std::min(n, p + 2); ++q) {
      near.push_back(q);
    }
  }
  std::sort(near.begin(), near.end());
  near.erase(std::unique(near.begin(), near.end()), near.end());
  for (size_t a = 0; a < near.size(); ++a) {
    for (size_t b = a; b < near.size(); ++b) {
      pairs.emplace_back(near[a], near[b]);
    }
  }
  for (const auto& [i, j] : pairs) {
    ASSERT_EQ(ParseSplit(input_, {i, j}), reference_)
        << "split at " << i << ", " << j;
  }
}

TEST_P(EveryChunkingTest, RandomChunkSizes) {
  for (uint32_t seed : {1u, 2u, 3u, 42u, 1234u, 987654321u}) {
    for (size_t max_chunk :
         {size_t{3}, size_t{17}, size_t{256}, size_t{4096}}) {
      std::mt19937 rng(seed);
      // Zero-sized chunks are included: reads can legitimately be empty.
      std::uniform_int_distribution<size_t> len(0, max_chunk);
      std::vector<size_t> cuts;
      for (size_t p = len(rng); p < input_.size(); p += len(rng)) {
        cuts.push_back(p);
      }
      ASSERT_EQ(ParseSplit(input_, cuts), reference_)
          << "seed " << seed << " max chunk " << max_chunk;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    OpenAiStreams, EveryChunkingTest,
    testing::Values(Stream{kResponses, nullptr, "Responses"},
                    Stream{kResponses, "\r\n", "ResponsesCrLf"},
                    Stream{kResponses, "\r", "ResponsesCr"},
                    Stream{kChat, nullptr, "Chat"},
                    Stream{kChatCrlf, nullptr, "ChatCrLfComments"}),
    [](const testing::TestParamInfo<Stream>& info) {
      return std::string(info.param.name);
    });

}  // namespace
}  // namespace assistants::upstream
