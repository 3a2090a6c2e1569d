// Tests of id generation and id shape checks (service/common/ids.h).
#include "service/common/ids.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace assistants {
namespace {

TEST(IdsTest, NewIdHasPrefixAnd22Base62Chars) {
  for (absl::string_view prefix :
       {kAssistantPrefix, kThreadPrefix, kMessagePrefix, kRunPrefix,
        kStepPrefix, kCallPrefix}) {
    std::string id = NewId(prefix);
    EXPECT_TRUE(absl::StartsWith(id, prefix)) << id;
    ASSERT_EQ(id.size(), prefix.size() + 22) << id;
    for (char c : id.substr(prefix.size())) {
      EXPECT_TRUE(absl::ascii_isalnum(static_cast<unsigned char>(c))) << id;
    }
    EXPECT_TRUE(LooksLikeId(id, prefix)) << id;
  }
}

TEST(IdsTest, IdsDoNotRepeat) {
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < 100000; ++i) {
    ASSERT_TRUE(seen.insert(NewId(kMessagePrefix)).second);
  }
}

TEST(IdsTest, LooksLikeIdRejectsWrongShapes) {
  EXPECT_FALSE(LooksLikeId("", kThreadPrefix));
  EXPECT_FALSE(LooksLikeId("thread_", kThreadPrefix));
  EXPECT_FALSE(LooksLikeId("asst_abc", kThreadPrefix));
  EXPECT_FALSE(LooksLikeId("thread_a b", kThreadPrefix));
  EXPECT_FALSE(LooksLikeId("thread_a/b", kThreadPrefix));
  EXPECT_FALSE(LooksLikeId("thread_" + std::string(65, 'a'), kThreadPrefix));
  EXPECT_TRUE(LooksLikeId("thread_" + std::string(64, 'a'), kThreadPrefix));
  // Ids OpenAI issued (migrated data) keep working.
  EXPECT_TRUE(LooksLikeId("thread_abc123", kThreadPrefix));
}

}  // namespace
}  // namespace assistants
