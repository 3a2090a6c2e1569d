// ApiKeys: the client API keys the gateway accepts, each belonging to a
// project. Only SHA-256 hashes are stored (a leaked keys file or Secret does
// not leak usable keys); a key presented as `authorization: Bearer KEY` is
// hashed and looked up.
//
// File format (JSON):
//   {"keys": [{"project": "proj_a", "name": "ci", "sha256": "<64 hex>"}]}
// Make a hash with: printf %s "$KEY" | sha256sum
#ifndef SERVICE_AUTH_API_KEYS_H_
#define SERVICE_AUTH_API_KEYS_H_

#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace assistants::auth {

// Who is calling: the key's project and its name (for logs and limits).
struct Principal {
  std::string project;
  std::string key_name;
};

class ApiKeys {
 public:
  // INVALID_ARGUMENT naming the bad entry and key (source: keys[1].sha256:
  // ...) for malformed JSON, unknown or missing fields, a malformed hash or
  // project name, or a hash listed twice.
  static absl::StatusOr<ApiKeys> Parse(absl::string_view json,
                                       absl::string_view source);
  // Parse() of a file's contents; NOT_FOUND when it cannot be read.
  static absl::StatusOr<ApiKeys> LoadFile(const std::string& path);

  // The principal holding `key`, if any.
  std::optional<Principal> Find(absl::string_view key) const;
  size_t size() const { return by_hash_.size(); }

  // Lowercase hex SHA-256 of `data`.
  static std::string Sha256Hex(absl::string_view data);

 private:
  absl::flat_hash_map<std::string, Principal> by_hash_;
};

}  // namespace assistants::auth

#endif  // SERVICE_AUTH_API_KEYS_H_
