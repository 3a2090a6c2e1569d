// ApiKeys: parsing the keys file (every malformed entry named), hashing,
// and lookup by the presented key.
#include "service/auth/api_keys.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/support/server_process.h"

namespace assistants::auth {
namespace {

// printf %s key-a | sha256sum
const std::string kKeyA = "key-a";

std::string Entry(const std::string& project, const std::string& name,
                  const std::string& key) {
  return absl::StrCat(R"({"project":")", project, R"(","name":")", name,
                      R"(","sha256":")", ApiKeys::Sha256Hex(key), R"("})");
}

TEST(ApiKeysTest, Sha256MatchesTheCoreutilsDigest) {
  // printf %s abc | sha256sum
  EXPECT_EQ(ApiKeys::Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ApiKeysTest, FindsTheProjectOfAKeyByItsHash) {
  auto keys =
      ApiKeys::Parse(absl::StrCat(R"({"keys":[)", Entry("proj_a", "ci", kKeyA),
                                  ",", Entry("proj_b", "web", "key-b"), "]}"),
                     "keys.json");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 2u);
  std::optional<Principal> a = keys->Find(kKeyA);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->project, "proj_a");
  EXPECT_EQ(a->key_name, "ci");
  EXPECT_EQ(keys->Find("key-b")->project, "proj_b");
  EXPECT_FALSE(keys->Find("key-c").has_value());
  EXPECT_FALSE(keys->Find("").has_value());
  // The hash itself is not a key.
  EXPECT_FALSE(keys->Find(ApiKeys::Sha256Hex(kKeyA)).has_value());
}

TEST(ApiKeysTest, UppercaseHashesAreAccepted) {
  std::string hash = ApiKeys::Sha256Hex(kKeyA);
  for (char& c : hash) c = static_cast<char>(std::toupper(c));
  auto keys = ApiKeys::Parse(
      absl::StrCat(R"({"keys":[{"project":"p","name":"n","sha256":")", hash,
                   R"("}]})"),
      "k");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_TRUE(keys->Find(kKeyA).has_value());
}

struct BadFile {
  std::string name;
  std::string json;
  std::string expected;  // in the message
};

class ApiKeysErrorTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(ApiKeysErrorTest, NamesTheBadEntry) {
  auto keys = ApiKeys::Parse(GetParam().json, "keys.json");
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(keys.status().message().find(GetParam().expected),
            std::string::npos)
      << keys.status().message();
  EXPECT_NE(keys.status().message().find("keys.json"), std::string::npos);
}

const std::string kGoodHash = ApiKeys::Sha256Hex("x");

INSTANTIATE_TEST_SUITE_P(
    Table, ApiKeysErrorTest,
    ::testing::Values(
        BadFile{"NotJson", "{", "not valid JSON"},
        BadFile{"NotObject", "[]", "must be an object"},
        BadFile{"UnknownTopKey", R"({"keys":[],"extra":1})",
                "extra: unknown key"},
        BadFile{"KeysNotArray", R"({"keys":{}})", "keys: must be an array"},
        BadFile{"EntryNotObject", R"({"keys":[1]})",
                "keys[0]: must be an object"},
        BadFile{"UnknownEntryKey",
                R"({"keys":[{"project":"p","name":"n","sha265":"x"}]})",
                "keys[0].sha265: unknown key"},
        BadFile{"NonString", R"({"keys":[{"project":1}]})",
                "keys[0].project: must be a string"},
        BadFile{"MissingProject",
                absl::StrCat(R"({"keys":[{"name":"n","sha256":")", kGoodHash,
                             R"("}]})"),
                "keys[0].project"},
        BadFile{"BadProject",
                absl::StrCat(R"({"keys":[{"project":"a b","name":"n",)",
                             R"("sha256":")", kGoodHash, R"("}]})"),
                "keys[0].project"},
        BadFile{"MissingName",
                absl::StrCat(R"({"keys":[{"project":"p","sha256":")", kGoodHash,
                             R"("}]})"),
                "keys[0].name"},
        BadFile{"ShortHash",
                R"({"keys":[{"project":"p","name":"n","sha256":"abc"}]})",
                "keys[0].sha256: must be 64 hex digits"},
        BadFile{"PlaintextKey",
                R"({"keys":[{"project":"p","name":"n","sha256":"sk-live-)"
                R"(0123456789012345678901234567890123456789012345678901"}]})",
                "keys[0].sha256"},
        BadFile{"Duplicate",
                absl::StrCat(R"({"keys":[)", Entry("p", "a", "same"), ",",
                             Entry("q", "b", "same"), "]}"),
                "keys[1].sha256: lists a key twice"}),
    [](const auto& info) { return info.param.name; });

TEST(ApiKeysTest, UnreadableFileIsNotFound) {
  auto keys = ApiKeys::LoadFile("/nonexistent/keys.json");
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(keys.status().message().find("/nonexistent/keys.json"),
            std::string::npos);
}

// --- ApiKeysFile: the keys file re-read while the gateway runs ------------

class ApiKeysFileTest : public ::testing::Test {
 protected:
  void Write(const std::string& contents) {
    // A rename, as a Kubernetes Secret volume swaps its files.
    const std::string next = path_ + ".next";
    std::ofstream(next) << contents;
    ASSERT_EQ(std::rename(next.c_str(), path_.c_str()), 0);
  }
  static std::string Keys(const std::string& entries) {
    return absl::StrCat(R"({"keys":[)", entries, "]}");
  }

  test_support::TempDir dir_;
  const std::string path_ = dir_.path() + "/keys.json";
};

TEST_F(ApiKeysFileTest, ReloadAddsAndRevokesKeys) {
  Write(Keys(Entry("p", "a", kKeyA)));
  auto file = ApiKeysFile::Open(path_, absl::ZeroDuration());
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find(kKeyA)->project, "p");
  EXPECT_FALSE((*file)->Find("key-b").has_value());

  Write(Keys(Entry("q", "b", "key-b")));
  ASSERT_TRUE((*file)->Reload().ok());
  EXPECT_FALSE((*file)->Find(kKeyA).has_value()) << "revoked key still works";
  EXPECT_EQ((*file)->Find("key-b")->project, "q");
  EXPECT_EQ((*file)->size(), 1u);
}

TEST_F(ApiKeysFileTest, BadVersionsKeepTheLastGoodKeys) {
  Write(Keys(Entry("p", "a", kKeyA)));
  auto file = ApiKeysFile::Open(path_, absl::ZeroDuration());
  ASSERT_TRUE(file.ok()) << file.status();
  Write("{\"keys\": [");  // half written
  absl::Status reloaded = (*file)->Reload();
  EXPECT_EQ(reloaded.code(), absl::StatusCode::kInvalidArgument) << reloaded;
  EXPECT_EQ((*file)->Find(kKeyA)->project, "p");
  ASSERT_EQ(std::remove(path_.c_str()), 0);
  EXPECT_EQ((*file)->Reload().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*file)->Find(kKeyA)->project, "p");
}

TEST_F(ApiKeysFileTest, OpenRefusesWhatLoadFileRefuses) {
  EXPECT_EQ(ApiKeysFile::Open(path_, absl::Seconds(1)).status().code(),
            absl::StatusCode::kNotFound);
  Write("sk-plaintext");
  EXPECT_EQ(ApiKeysFile::Open(path_, absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ApiKeysFileTest, TheWatcherPicksUpANewVersion) {
  Write(Keys(Entry("p", "a", kKeyA)));
  auto file = ApiKeysFile::Open(path_, absl::Milliseconds(20));
  ASSERT_TRUE(file.ok()) << file.status();
  Write(Keys(Entry("q", "b", "key-b")));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*file)->Find(kKeyA).has_value() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_FALSE((*file)->Find(kKeyA).has_value());
  EXPECT_EQ((*file)->Find("key-b")->project, "q");
}

}  // namespace
}  // namespace assistants::auth
