// Unit tests of the validation helpers (service/core/validation.h) without
// gRPC: character counting, id shapes, list options and metadata limits,
// each exactly at and just past its boundary. The full rule table runs
// through the wire in tests/api/service_test.cc.
#include "service/core/validation.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "service/common/errors.h"

namespace assistants {
namespace {

// Repeats `unit` (one character, possibly multi-byte) `n` times.
std::string Repeat(size_t n, const std::string& unit) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += unit;
  return out;
}

// Asserts that `status` is INVALID_ARGUMENT with `reason` naming `field` in
// both ErrorInfo.metadata["field"] and the BadRequest violation.
void ExpectFieldError(const absl::Status& status, absl::string_view reason,
                      absl::string_view field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(ErrorReason(status), reason) << status;
  auto info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value()) << status;
  EXPECT_EQ(info->domain(), "assistants.gateway");
  auto it = info->metadata().find("field");
  ASSERT_NE(it, info->metadata().end()) << status;
  EXPECT_EQ(it->second, field);
  auto bad_request = GetBadRequest(status);
  ASSERT_TRUE(bad_request.has_value()) << status;
  ASSERT_EQ(bad_request->field_violations_size(), 1);
  EXPECT_EQ(bad_request->field_violations(0).field(), field);
}

// --- CharCount ---

TEST(CharCountTest, CountsAsciiBytes) {
  EXPECT_EQ(CharCount(""), 0u);
  EXPECT_EQ(CharCount("a"), 1u);
  EXPECT_EQ(CharCount("hello world"), 11u);
}

TEST(CharCountTest, CountsMultiByteCharactersOnce) {
  EXPECT_EQ(CharCount("\xC3\xA9"), 1u);          // é, 2 bytes
  EXPECT_EQ(CharCount("\xE6\x97\xA5"), 1u);      // 日, 3 bytes
  EXPECT_EQ(CharCount("\xF0\x9F\x98\x80"), 1u);  // 😀, 4 bytes
  EXPECT_EQ(CharCount("caf\xC3\xA9 \xE6\x97\xA5\xF0\x9F\x98\x80"), 7u);
  EXPECT_EQ(CharCount(Repeat(256, "\xC3\xA9")), 256u);
}

// --- ValidateId ---

TEST(ValidateIdTest, AcceptsWellFormedIds) {
  EXPECT_TRUE(ValidateId("asst_abc123", "asst_", "assistant_id").ok());
  EXPECT_TRUE(ValidateId("thread_a-b_C", "thread_", "thread_id").ok());
  EXPECT_TRUE(
      ValidateId("msg_" + std::string(64, 'x'), "msg_", "message_id").ok());
}

TEST(ValidateIdTest, EmptyIsRequired) {
  ExpectFieldError(ValidateId("", "asst_", "assistant_id"), kFieldRequired,
                   "assistant_id");
}

TEST(ValidateIdTest, RejectsMalformedIds) {
  for (const std::string& id :
       {std::string("thread_abc"), std::string("asst_"), std::string("asst"),
        std::string("ASST_abc"), std::string("asst_a b"),
        std::string("asst_a/b"), std::string("asst_\xC3\xA9"),
        "asst_" + std::string(65, 'x')}) {
    SCOPED_TRACE(id);
    ExpectFieldError(ValidateId(id, "asst_", "assistant_id"), kInvalidFormat,
                     "assistant_id");
  }
}

// --- ValidateRequestId ---

TEST(ValidateRequestIdTest, LengthAndPrintability) {
  EXPECT_TRUE(ValidateRequestId("").ok());
  EXPECT_TRUE(ValidateRequestId("retry-1 of req/42").ok());
  EXPECT_TRUE(ValidateRequestId(std::string(256, 'k')).ok());
  ExpectFieldError(ValidateRequestId(std::string(257, 'k')), kFieldTooLong,
                   "request_id");
  ExpectFieldError(ValidateRequestId("a\tb"), kInvalidFormat, "request_id");
  ExpectFieldError(ValidateRequestId(std::string("a\0b", 3)), kInvalidFormat,
                   "request_id");
  ExpectFieldError(ValidateRequestId("caf\xC3\xA9"), kInvalidFormat,
                   "request_id");
}

// --- ToListQuery ---

TEST(ToListQueryTest, Defaults) {
  auto query = ToListQuery(v1::ListOptions(), "options");
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(query->limit, 20);
  EXPECT_FALSE(query->ascending);
  EXPECT_EQ(query->after, "");
  EXPECT_EQ(query->before, "");
}

TEST(ToListQueryTest, CopiesLimitOrderAndCursors) {
  v1::ListOptions options;
  options.set_limit(100);
  options.set_order(v1::LIST_ORDER_ASC);
  options.set_after("asst_a");
  options.set_before("asst_b");
  auto query = ToListQuery(options, "options");
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(query->limit, 100);
  EXPECT_TRUE(query->ascending);
  EXPECT_EQ(query->after, "asst_a");
  EXPECT_EQ(query->before, "asst_b");

  options.set_limit(1);
  options.set_order(v1::LIST_ORDER_DESC);
  query = ToListQuery(options, "options");
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(query->limit, 1);
  EXPECT_FALSE(query->ascending);
}

TEST(ToListQueryTest, RejectsLimitOutOfRange) {
  for (int limit : {101, -1, 1000000}) {
    SCOPED_TRACE(limit);
    v1::ListOptions options;
    options.set_limit(limit);
    ExpectFieldError(ToListQuery(options, "options").status(), kValueOutOfRange,
                     "options.limit");
  }
}

TEST(ToListQueryTest, RejectsUnknownOrder) {
  v1::ListOptions options;
  options.set_order(static_cast<v1::ListOrder>(3));
  ExpectFieldError(ToListQuery(options, "options").status(), kInvalidValue,
                   "options.order");
}

TEST(ToListQueryTest, CursorsUpTo128Characters) {
  v1::ListOptions options;
  options.set_after(std::string(128, 'a'));
  options.set_before(std::string(128, 'b'));
  EXPECT_TRUE(ToListQuery(options, "options").ok());
  options.set_after(std::string(129, 'a'));
  ExpectFieldError(ToListQuery(options, "options").status(), kFieldTooLong,
                   "options.after");
  options.set_after("");
  options.set_before(std::string(129, 'b'));
  ExpectFieldError(ToListQuery(options, "options").status(), kFieldTooLong,
                   "options.before");
}

// --- ValidateMetadata ---

using Metadata = google::protobuf::Map<std::string, std::string>;

TEST(ValidateMetadataTest, SixteenPairsPassSeventeenFail) {
  Metadata metadata;
  for (int i = 0; i < 16; ++i) metadata["key" + std::to_string(i)] = "v";
  EXPECT_TRUE(ValidateMetadata(metadata, "metadata").ok());
  metadata["key16"] = "v";
  ExpectFieldError(ValidateMetadata(metadata, "metadata"), kTooManyItems,
                   "metadata");
}

TEST(ValidateMetadataTest, KeyLengthInCharacters) {
  Metadata metadata;
  metadata[std::string(64, 'k')] = "v";
  metadata[Repeat(64, "\xC3\xA9")] = "v";  // 64 characters, 128 bytes
  EXPECT_TRUE(ValidateMetadata(metadata, "metadata").ok());
  metadata[std::string(65, 'k')] = "v";
  ExpectFieldError(ValidateMetadata(metadata, "metadata"), kFieldTooLong,
                   "metadata");
}

TEST(ValidateMetadataTest, ValueLengthInCharacters) {
  Metadata metadata;
  metadata["a"] = std::string(512, 'v');
  metadata["b"] = Repeat(512, "\xC3\xA9");  // 512 characters, 1024 bytes
  metadata["c"] = "";
  EXPECT_TRUE(ValidateMetadata(metadata, "metadata").ok());
  metadata["d"] = std::string(513, 'v');
  ExpectFieldError(ValidateMetadata(metadata, "metadata"), kFieldTooLong,
                   "metadata[d]");
}

TEST(ValidateMetadataTest, EmptyKeyIsRejected) {
  Metadata metadata;
  metadata[""] = "v";
  ExpectFieldError(ValidateMetadata(metadata, "message.metadata"),
                   kFieldRequired, "message.metadata");
}

TEST(ValidateMetadataTest, EmptyMetadataPasses) {
  EXPECT_TRUE(ValidateMetadata(Metadata(), "metadata").ok());
}

}  // namespace
}  // namespace assistants
