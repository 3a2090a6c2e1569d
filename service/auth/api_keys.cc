#include "service/auth/api_keys.h"

#include <openssl/sha.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "service/common/errors.h"
#include "service/common/log.h"
#include "service/common/status_macros.h"

namespace assistants::auth {
namespace {

absl::Status Invalid(absl::string_view source, absl::string_view where,
                     absl::string_view problem) {
  return MakeError(absl::StatusCode::kInvalidArgument, "INVALID_API_KEYS",
                   absl::StrCat(source, ": ", where, ": ", problem),
                   {{"field", std::string(where)}});
}

// Project names appear in metrics labels and logs: keep them plain.
bool ValidProject(const std::string& project) {
  if (project.empty() || project.size() > 64) return false;
  for (char c : project) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

bool ValidHash(const std::string& hash) {
  if (hash.size() != 64) return false;
  for (char c : hash) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

std::string ApiKeys::Sha256Hex(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * SHA256_DIGEST_LENGTH);
  for (unsigned char byte : digest) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 0xf]);
  }
  return hex;
}

absl::StatusOr<ApiKeys> ApiKeys::Parse(absl::string_view json,
                                       absl::string_view source) {
  nlohmann::json doc = nlohmann::json::parse(json, nullptr,
                                             /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Invalid(source, "(file)", "not valid JSON");
  if (!doc.is_object()) return Invalid(source, "(file)", "must be an object");
  for (const auto& [key, value] : doc.items()) {
    if (key != "keys") return Invalid(source, key, "unknown key");
  }
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) {
    return Invalid(source, "keys", "must be an array");
  }
  ApiKeys result;
  for (size_t i = 0; i < keys->size(); ++i) {
    const nlohmann::json& entry = (*keys)[i];
    const std::string where = absl::StrCat("keys[", i, "]");
    if (!entry.is_object()) return Invalid(source, where, "must be an object");
    for (const auto& [key, value] : entry.items()) {
      if (key != "project" && key != "name" && key != "sha256") {
        return Invalid(source, absl::StrCat(where, ".", key), "unknown key");
      }
      if (!value.is_string()) {
        return Invalid(source, absl::StrCat(where, ".", key),
                       "must be a string");
      }
    }
    Principal principal;
    principal.project = entry.value("project", "");
    principal.key_name = entry.value("name", "");
    std::string hash = absl::AsciiStrToLower(entry.value("sha256", ""));
    if (!ValidProject(principal.project)) {
      return Invalid(source, where + ".project",
                     "must be 1-64 letters, digits, '_', '-' or '.'");
    }
    if (principal.key_name.empty() || principal.key_name.size() > 64) {
      return Invalid(source, where + ".name", "must be 1-64 characters");
    }
    if (!ValidHash(hash)) {
      return Invalid(source, where + ".sha256",
                     "must be 64 hex digits (printf %s KEY | sha256sum)");
    }
    if (!result.by_hash_.emplace(std::move(hash), std::move(principal))
             .second) {
      return Invalid(source, where + ".sha256", "lists a key twice");
    }
  }
  return result;
}

namespace {

// The file's contents; NOT_FOUND (API_KEYS_UNREADABLE) when it cannot be
// read.
absl::StatusOr<std::string> ReadKeysFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return MakeError(absl::StatusCode::kNotFound, "API_KEYS_UNREADABLE",
                     absl::StrCat("cannot read API keys file ", path),
                     {{"path", path}});
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::LoadFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string contents, ReadKeysFile(path));
  return Parse(contents, path);
}

std::optional<Principal> ApiKeys::Find(absl::string_view key) const {
  if (key.empty()) return std::nullopt;
  auto it = by_hash_.find(Sha256Hex(key));
  if (it == by_hash_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::unique_ptr<ApiKeysFile>> ApiKeysFile::Open(
    const std::string& path, absl::Duration reload_interval) {
  ASSIGN_OR_RETURN(std::string contents, ReadKeysFile(path));
  ASSIGN_OR_RETURN(ApiKeys keys, ApiKeys::Parse(contents, path));
  std::unique_ptr<ApiKeysFile> file(
      new ApiKeysFile(path, std::move(keys), std::move(contents)));
  if (reload_interval > absl::ZeroDuration()) {
    file->watcher_ = std::thread([watched = file.get(), reload_interval] {
      watched->Watch(reload_interval);
    });
  }
  return file;
}

ApiKeysFile::ApiKeysFile(std::string path, ApiKeys keys, std::string contents)
    : path_(std::move(path)),
      keys_(std::make_shared<const ApiKeys>(std::move(keys))),
      contents_(std::move(contents)) {}

ApiKeysFile::~ApiKeysFile() {
  stop_.Notify();
  if (watcher_.joinable()) watcher_.join();
}

std::optional<Principal> ApiKeysFile::Find(absl::string_view key) const {
  std::shared_ptr<const ApiKeys> keys;
  {
    absl::ReaderMutexLock lock(&mu_);
    keys = keys_;
  }
  return keys->Find(key);
}

size_t ApiKeysFile::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return keys_->size();
}

absl::Status ApiKeysFile::Reload() {
  ASSIGN_OR_RETURN(std::string contents, ReadKeysFile(path_));
  {
    absl::ReaderMutexLock lock(&mu_);
    if (contents == contents_) return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(ApiKeys keys, ApiKeys::Parse(contents, path_));
  const size_t count = keys.size();
  {
    absl::MutexLock lock(&mu_);
    keys_ = std::make_shared<const ApiKeys>(std::move(keys));
    contents_ = std::move(contents);
  }
  Log(LogLevel::kInfo, "API keys reloaded",
      {{"path", path_}, {"keys", static_cast<int64_t>(count)}});
  return absl::OkStatus();
}

void ApiKeysFile::Watch(absl::Duration interval) {
  // A bad version is reported once, not at every check while it stays.
  std::string reported;
  while (!stop_.WaitForNotificationWithTimeout(interval)) {
    absl::Status reloaded = Reload();
    if (reloaded.ok()) {
      reported.clear();
    } else if (reloaded.ToString() != reported) {
      reported = reloaded.ToString();
      Log(LogLevel::kWarning,
          "API keys file not reloaded; the last good keys stay",
          {{"path", path_}, {"error", reloaded.message()}});
    }
  }
}

}  // namespace assistants::auth
