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

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace assistants::auth {

// Who is calling: the key's project and its name (for logs and limits).
struct Principal {
  std::string project;
  std::string key_name;
};

// Looks up the principal of a presented key (Admission's view of the keys).
class KeyLookup {
 public:
  virtual ~KeyLookup() = default;
  // The principal holding `key`, if any. Thread-safe.
  virtual std::optional<Principal> Find(absl::string_view key) const = 0;
};

class ApiKeys : public KeyLookup {
 public:
  // INVALID_ARGUMENT naming the bad entry and key (source: keys[1].sha256:
  // ...) for malformed JSON, unknown or missing fields, a malformed hash or
  // project name, or a hash listed twice.
  static absl::StatusOr<ApiKeys> Parse(absl::string_view json,
                                       absl::string_view source);
  // Parse() of a file's contents; NOT_FOUND when it cannot be read.
  static absl::StatusOr<ApiKeys> LoadFile(const std::string& path);

  std::optional<Principal> Find(absl::string_view key) const override;
  size_t size() const { return by_hash_.size(); }

  // Lowercase hex SHA-256 of `data`.
  static std::string Sha256Hex(absl::string_view data);

 private:
  absl::flat_hash_map<std::string, Principal> by_hash_;
};

// The keys of a file, re-read every `reload_interval` so keys are added and
// revoked without a restart: a valid new version replaces the keys whole
// (a revoked key stops working within one interval); an unreadable or
// invalid version is logged and the last good keys stay in force.
class ApiKeysFile : public KeyLookup {
 public:
  // Reads the file now (its errors, as LoadFile's, stop the start) and,
  // when `reload_interval` is positive, watches it on a thread of its own.
  static absl::StatusOr<std::unique_ptr<ApiKeysFile>> Open(
      const std::string& path, absl::Duration reload_interval);
  ~ApiKeysFile() override;

  std::optional<Principal> Find(absl::string_view key) const override;
  size_t size() const;

  // Re-reads the file: OK when it was read and parsed (changed or not);
  // otherwise the error, with the keys unchanged. The watcher calls it.
  absl::Status Reload();

 private:
  ApiKeysFile(std::string path, ApiKeys keys, std::string contents);
  void Watch(absl::Duration interval);

  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const ApiKeys> keys_ ABSL_GUARDED_BY(mu_);
  // What the keys were parsed from: an unchanged file is not parsed again.
  std::string contents_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread watcher_;
};

}  // namespace assistants::auth

#endif  // SERVICE_AUTH_API_KEYS_H_
