// Loading and validating GatewayConfig; see config.h. The key table
// (kConfigKeys) is the single list of settings: file key, environment
// variable, flag, type, range and checks.
#include "service/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <variant>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

extern char** environ;

// Every configuration flag is a string, parsed and validated by LoadConfig
// like the file and environment values, so all three give the same errors.
// An empty default means "not given"; IsSpecifiedOnCommandLine tells.
ABSL_FLAG(std::string, config, "",
          "JSON configuration file (env ASSISTANTS_CONFIG); environment "
          "variables and flags override its keys");
#define CONFIG_FLAG(name, key, env) \
  ABSL_FLAG(std::string, name, "", "config key " key " (env " env ")")
CONFIG_FLAG(listen, "listen", "ASSISTANTS_LISTEN");
CONFIG_FLAG(db, "store.path", "ASSISTANTS_DB");
CONFIG_FLAG(store_postgres_url, "store.postgres_url",
            "ASSISTANTS_STORE_POSTGRES_URL");
CONFIG_FLAG(store_postgres_pool_size, "store.postgres_pool_size",
            "ASSISTANTS_STORE_POSTGRES_POOL_SIZE");
CONFIG_FLAG(log_level, "log.level", "ASSISTANTS_LOG_LEVEL");
CONFIG_FLAG(metrics_listen, "metrics.listen", "ASSISTANTS_METRICS_LISTEN");
CONFIG_FLAG(shutdown_grace_ms, "shutdown.grace_ms",
            "ASSISTANTS_SHUTDOWN_GRACE_MS");
CONFIG_FLAG(engine_threads, "runs.engine_threads", "ASSISTANTS_ENGINE_THREADS");
CONFIG_FLAG(requires_action_timeout_s, "runs.requires_action_timeout_s",
            "ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S");
CONFIG_FLAG(active_run_policy, "runs.active_run_policy",
            "ASSISTANTS_ACTIVE_RUN_POLICY");
CONFIG_FLAG(heartbeat_ms, "streams.heartbeat_ms", "ASSISTANTS_HEARTBEAT_MS");
CONFIG_FLAG(tls_cert_file, "tls.cert_file", "ASSISTANTS_TLS_CERT_FILE");
CONFIG_FLAG(tls_key_file, "tls.key_file", "ASSISTANTS_TLS_KEY_FILE");
CONFIG_FLAG(tls_client_ca_file, "tls.client_ca_file",
            "ASSISTANTS_TLS_CLIENT_CA_FILE");
CONFIG_FLAG(tls_reload_interval_s, "tls.reload_interval_s",
            "ASSISTANTS_TLS_RELOAD_INTERVAL_S");
CONFIG_FLAG(api_keys_file, "auth.api_keys_file", "ASSISTANTS_API_KEYS_FILE");
CONFIG_FLAG(auth_reload_interval_s, "auth.reload_interval_s",
            "ASSISTANTS_AUTH_RELOAD_INTERVAL_S");
CONFIG_FLAG(auth_open_methods, "auth.open_methods",
            "ASSISTANTS_AUTH_OPEN_METHODS");
CONFIG_FLAG(max_message_bytes, "limits.max_message_bytes",
            "ASSISTANTS_MAX_MESSAGE_BYTES");
CONFIG_FLAG(max_active_runs_per_project, "limits.max_active_runs_per_project",
            "ASSISTANTS_MAX_ACTIVE_RUNS_PER_PROJECT");
CONFIG_FLAG(max_streams_per_project, "limits.max_streams_per_project",
            "ASSISTANTS_MAX_STREAMS_PER_PROJECT");
CONFIG_FLAG(requests_per_second_per_key, "limits.requests_per_second_per_key",
            "ASSISTANTS_REQUESTS_PER_SECOND_PER_KEY");
CONFIG_FLAG(burst_per_key, "limits.burst_per_key", "ASSISTANTS_BURST_PER_KEY");
CONFIG_FLAG(worker_token_file, "workers.token_file",
            "ASSISTANTS_WORKER_TOKEN_FILE");
CONFIG_FLAG(worker_allowlist, "workers.allowlist",
            "ASSISTANTS_WORKER_ALLOWLIST");
CONFIG_FLAG(workers_config, "workers.static_file", "ASSISTANTS_WORKERS_CONFIG");
CONFIG_FLAG(worker_lease_ttl_ms, "workers.lease_ttl_ms",
            "ASSISTANTS_WORKER_LEASE_TTL_MS");
CONFIG_FLAG(worker_wait_ms, "workers.wait_ms", "ASSISTANTS_WORKER_WAIT_MS");
CONFIG_FLAG(worker_tls_ca_file, "workers.tls.ca_file",
            "ASSISTANTS_WORKER_TLS_CA_FILE");
CONFIG_FLAG(worker_tls_cert_file, "workers.tls.cert_file",
            "ASSISTANTS_WORKER_TLS_CERT_FILE");
CONFIG_FLAG(worker_tls_key_file, "workers.tls.key_file",
            "ASSISTANTS_WORKER_TLS_KEY_FILE");
CONFIG_FLAG(cluster_worker_sync_ms, "cluster.worker_sync_ms",
            "ASSISTANTS_CLUSTER_WORKER_SYNC_MS");
CONFIG_FLAG(default_upstream, "upstream.default",
            "ASSISTANTS_DEFAULT_UPSTREAM");
CONFIG_FLAG(openai_base_url, "upstream.openai.base_url", "OPENAI_BASE_URL");
CONFIG_FLAG(openai_api_key_file, "upstream.openai.api_key_file",
            "OPENAI_API_KEY_FILE");
CONFIG_FLAG(openai_organization, "upstream.openai.organization",
            "OPENAI_ORGANIZATION");
CONFIG_FLAG(openai_project, "upstream.openai.project", "OPENAI_PROJECT");
CONFIG_FLAG(chat_base_url, "upstream.chat.base_url",
            "CHAT_COMPLETIONS_BASE_URL");
CONFIG_FLAG(chat_api_key_file, "upstream.chat.api_key_file",
            "CHAT_COMPLETIONS_API_KEY_FILE");
CONFIG_FLAG(upstream_connect_timeout_ms, "upstream.connect_timeout_ms",
            "ASSISTANTS_UPSTREAM_CONNECT_TIMEOUT_MS");
CONFIG_FLAG(upstream_first_byte_timeout_ms, "upstream.first_byte_timeout_ms",
            "ASSISTANTS_UPSTREAM_FIRST_BYTE_TIMEOUT_MS");
CONFIG_FLAG(upstream_idle_timeout_ms, "upstream.idle_timeout_ms",
            "ASSISTANTS_UPSTREAM_IDLE_TIMEOUT_MS");
CONFIG_FLAG(upstream_total_timeout_ms, "upstream.total_timeout_ms",
            "ASSISTANTS_UPSTREAM_TOTAL_TIMEOUT_MS");
CONFIG_FLAG(upstream_max_attempts, "upstream.max_attempts",
            "ASSISTANTS_UPSTREAM_MAX_ATTEMPTS");
CONFIG_FLAG(cluster_replica_id, "cluster.replica_id",
            "ASSISTANTS_CLUSTER_REPLICA_ID");
CONFIG_FLAG(cluster_run_lease_ttl_ms, "cluster.run_lease_ttl_ms",
            "ASSISTANTS_CLUSTER_RUN_LEASE_TTL_MS");
#undef CONFIG_FLAG

namespace assistants::config {
namespace {

using json = nlohmann::json;
using Field = std::variant<std::string*, int64_t*, double*,
                           std::vector<std::string>*, LogLevel*>;

// Checks on a key's final value, beyond its type and range.
enum class Check {
  kNone,
  kNonEmpty,
  kHostPort,         // HOST:PORT with a port in 0..65535.
  kHostPortOrEmpty,  // the same, or empty (feature off).
  kReadableFile,     // empty, or a file this process can read.
  kUrl,              // empty, or http(s)://...
  kMethodPrefixes,   // each entry starts with '/'.
};

struct KeySpec {
  const char* key;
  const char* env;
  const char* flag;
  Field (*field)(GatewayConfig&);
  Check check = Check::kNone;
  // Integers and doubles: the inclusive range.
  double min = 0;
  double max = 0;
  // Strings with a fixed set of values.
  std::vector<const char*> choices = {};
};

#define FIELD(member) [](GatewayConfig& c) -> Field { return &c.member; }

constexpr double kHour = 3'600'000;  // ms
constexpr double kDay = 24 * kHour;

const std::vector<KeySpec>& Keys() {
  static const auto* keys = new std::vector<KeySpec>{
      {"listen", "ASSISTANTS_LISTEN", "listen", FIELD(listen),
       Check::kHostPort},
      {"store.path", "ASSISTANTS_DB", "db", FIELD(store.path),
       Check::kNonEmpty},
      {"store.postgres_url", "ASSISTANTS_STORE_POSTGRES_URL",
       "store_postgres_url", FIELD(store.postgres_url)},
      {"store.postgres_pool_size", "ASSISTANTS_STORE_POSTGRES_POOL_SIZE",
       "store_postgres_pool_size", FIELD(store.postgres_pool_size),
       Check::kNone, 1, 256},
      {"log.level", "ASSISTANTS_LOG_LEVEL", "log_level", FIELD(log.level)},
      {"metrics.listen", "ASSISTANTS_METRICS_LISTEN", "metrics_listen",
       FIELD(metrics.listen), Check::kHostPortOrEmpty},
      {"shutdown.grace_ms", "ASSISTANTS_SHUTDOWN_GRACE_MS", "shutdown_grace_ms",
       FIELD(shutdown.grace_ms), Check::kNone, 0, kHour},
      {"runs.engine_threads", "ASSISTANTS_ENGINE_THREADS", "engine_threads",
       FIELD(runs.engine_threads), Check::kNone, 1, 256},
      {"runs.requires_action_timeout_s", "ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S",
       "requires_action_timeout_s", FIELD(runs.requires_action_timeout_s),
       Check::kNone, 1, 7 * 24 * 3600},
      {"runs.active_run_policy",
       "ASSISTANTS_ACTIVE_RUN_POLICY",
       "active_run_policy",
       FIELD(runs.active_run_policy),
       Check::kNone,
       0,
       0,
       {"reject", "queue", "interrupt"}},
      {"streams.heartbeat_ms", "ASSISTANTS_HEARTBEAT_MS", "heartbeat_ms",
       FIELD(streams.heartbeat_ms), Check::kNone, 10, kHour},
      {"tls.cert_file", "ASSISTANTS_TLS_CERT_FILE", "tls_cert_file",
       FIELD(tls.cert_file), Check::kReadableFile},
      {"tls.key_file", "ASSISTANTS_TLS_KEY_FILE", "tls_key_file",
       FIELD(tls.key_file), Check::kReadableFile},
      {"tls.client_ca_file", "ASSISTANTS_TLS_CLIENT_CA_FILE",
       "tls_client_ca_file", FIELD(tls.client_ca_file), Check::kReadableFile},
      {"tls.reload_interval_s", "ASSISTANTS_TLS_RELOAD_INTERVAL_S",
       "tls_reload_interval_s", FIELD(tls.reload_interval_s), Check::kNone, 0,
       24 * 3600},
      {"auth.api_keys_file", "ASSISTANTS_API_KEYS_FILE", "api_keys_file",
       FIELD(auth.api_keys_file), Check::kReadableFile},
      {"auth.reload_interval_s", "ASSISTANTS_AUTH_RELOAD_INTERVAL_S",
       "auth_reload_interval_s", FIELD(auth.reload_interval_s), Check::kNone, 0,
       24 * 3600},
      {"auth.open_methods", "ASSISTANTS_AUTH_OPEN_METHODS", "auth_open_methods",
       FIELD(auth.open_methods), Check::kMethodPrefixes},
      {"limits.max_message_bytes", "ASSISTANTS_MAX_MESSAGE_BYTES",
       "max_message_bytes", FIELD(limits.max_message_bytes), Check::kNone, 1024,
       64 * 1024 * 1024},
      {"limits.max_active_runs_per_project",
       "ASSISTANTS_MAX_ACTIVE_RUNS_PER_PROJECT", "max_active_runs_per_project",
       FIELD(limits.max_active_runs_per_project), Check::kNone, 0, 1'000'000},
      {"limits.max_streams_per_project", "ASSISTANTS_MAX_STREAMS_PER_PROJECT",
       "max_streams_per_project", FIELD(limits.max_streams_per_project),
       Check::kNone, 0, 1'000'000},
      {"limits.requests_per_second_per_key",
       "ASSISTANTS_REQUESTS_PER_SECOND_PER_KEY", "requests_per_second_per_key",
       FIELD(limits.requests_per_second_per_key), Check::kNone, 0, 1'000'000},
      {"limits.burst_per_key", "ASSISTANTS_BURST_PER_KEY", "burst_per_key",
       FIELD(limits.burst_per_key), Check::kNone, 0, 1'000'000},
      {"workers.token_file", "ASSISTANTS_WORKER_TOKEN_FILE",
       "worker_token_file", FIELD(workers.token_file), Check::kReadableFile},
      {"workers.allowlist", "ASSISTANTS_WORKER_ALLOWLIST", "worker_allowlist",
       FIELD(workers.allowlist)},
      {"workers.static_file", "ASSISTANTS_WORKERS_CONFIG", "workers_config",
       FIELD(workers.static_file), Check::kReadableFile},
      {"workers.lease_ttl_ms", "ASSISTANTS_WORKER_LEASE_TTL_MS",
       "worker_lease_ttl_ms", FIELD(workers.lease_ttl_ms), Check::kNone, 1000,
       kDay},
      {"workers.wait_ms", "ASSISTANTS_WORKER_WAIT_MS", "worker_wait_ms",
       FIELD(workers.wait_ms), Check::kNone, 0, kHour},
      {"workers.tls.ca_file", "ASSISTANTS_WORKER_TLS_CA_FILE",
       "worker_tls_ca_file", FIELD(workers.tls.ca_file), Check::kReadableFile},
      {"workers.tls.cert_file", "ASSISTANTS_WORKER_TLS_CERT_FILE",
       "worker_tls_cert_file", FIELD(workers.tls.cert_file),
       Check::kReadableFile},
      {"workers.tls.key_file", "ASSISTANTS_WORKER_TLS_KEY_FILE",
       "worker_tls_key_file", FIELD(workers.tls.key_file),
       Check::kReadableFile},
      {"cluster.worker_sync_ms", "ASSISTANTS_CLUSTER_WORKER_SYNC_MS",
       "cluster_worker_sync_ms", FIELD(cluster.worker_sync_ms), Check::kNone,
       50, kHour},
      {"upstream.default",
       "ASSISTANTS_DEFAULT_UPSTREAM",
       "default_upstream",
       FIELD(upstream.default_backend),
       Check::kNone,
       0,
       0,
       {"openai", "openai-chat", "chat"}},
      {"upstream.openai.base_url", "OPENAI_BASE_URL", "openai_base_url",
       FIELD(upstream.openai.base_url), Check::kUrl},
      {"upstream.openai.api_key_file", "OPENAI_API_KEY_FILE",
       "openai_api_key_file", FIELD(upstream.openai.api_key_file),
       Check::kReadableFile},
      {"upstream.openai.organization", "OPENAI_ORGANIZATION",
       "openai_organization", FIELD(upstream.openai.organization)},
      {"upstream.openai.project", "OPENAI_PROJECT", "openai_project",
       FIELD(upstream.openai.project)},
      {"upstream.chat.base_url", "CHAT_COMPLETIONS_BASE_URL", "chat_base_url",
       FIELD(upstream.chat.base_url), Check::kUrl},
      {"upstream.chat.api_key_file", "CHAT_COMPLETIONS_API_KEY_FILE",
       "chat_api_key_file", FIELD(upstream.chat.api_key_file),
       Check::kReadableFile},
      {"upstream.connect_timeout_ms", "ASSISTANTS_UPSTREAM_CONNECT_TIMEOUT_MS",
       "upstream_connect_timeout_ms", FIELD(upstream.connect_timeout_ms),
       Check::kNone, 1, kDay},
      {"upstream.first_byte_timeout_ms",
       "ASSISTANTS_UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
       "upstream_first_byte_timeout_ms", FIELD(upstream.first_byte_timeout_ms),
       Check::kNone, 1, kDay},
      {"upstream.idle_timeout_ms", "ASSISTANTS_UPSTREAM_IDLE_TIMEOUT_MS",
       "upstream_idle_timeout_ms", FIELD(upstream.idle_timeout_ms),
       Check::kNone, 1, kDay},
      {"upstream.total_timeout_ms", "ASSISTANTS_UPSTREAM_TOTAL_TIMEOUT_MS",
       "upstream_total_timeout_ms", FIELD(upstream.total_timeout_ms),
       Check::kNone, 1, kDay},
      {"upstream.max_attempts", "ASSISTANTS_UPSTREAM_MAX_ATTEMPTS",
       "upstream_max_attempts", FIELD(upstream.max_attempts), Check::kNone, 1,
       100},
      {"cluster.replica_id", "ASSISTANTS_CLUSTER_REPLICA_ID",
       "cluster_replica_id", FIELD(cluster.replica_id)},
      {"cluster.run_lease_ttl_ms", "ASSISTANTS_CLUSTER_RUN_LEASE_TTL_MS",
       "cluster_run_lease_ttl_ms", FIELD(cluster.run_lease_ttl_ms),
       Check::kNone, 400, kHour},
  };
  return *keys;
}

#undef FIELD

// Secrets: never in the file or on the command line (they would end up in
// ConfigMaps and `ps`), only in the environment or in files named by keys.
struct SecretSpec {
  const char* key;
  const char* env;
  const char* file_key;  // the key naming a file that holds the secret.
  std::string* (*field)(GatewayConfig&);
};

const std::vector<SecretSpec>& Secrets() {
  static const auto* secrets = new std::vector<SecretSpec>{
      {"workers.token", "ASSISTANTS_WORKER_TOKEN", "workers.token_file",
       [](GatewayConfig& c) { return &c.workers.token; }},
      {"upstream.openai.api_key", "OPENAI_API_KEY",
       "upstream.openai.api_key_file",
       [](GatewayConfig& c) { return &c.upstream.openai.api_key; }},
      {"upstream.chat.api_key", "CHAT_COMPLETIONS_API_KEY",
       "upstream.chat.api_key_file",
       [](GatewayConfig& c) { return &c.upstream.chat.api_key; }},
  };
  return *secrets;
}

absl::Status Error(absl::string_view origin, absl::string_view key,
                   absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(origin, ": ", key, ": ", problem));
}

// Whole numbers in full (no exponent), fractions as StrCat prints them.
std::string FormatNumber(double value) {
  return std::floor(value) == value ? absl::StrFormat("%.0f", value)
                                    : absl::StrCat(value);
}

std::string JsonTypeName(const json& value) {
  if (value.is_number_integer()) return "an integer";
  if (value.is_number()) return "a number";
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  return "null";
}

absl::Status CheckRange(const KeySpec& spec, absl::string_view origin,
                        double value) {
  if (value < spec.min || value > spec.max) {
    return Error(
        origin, spec.key,
        absl::StrCat("must be between ", FormatNumber(spec.min), " and ",
                     FormatNumber(spec.max), ", got ", FormatNumber(value)));
  }
  return absl::OkStatus();
}

absl::Status CheckChoice(const KeySpec& spec, absl::string_view origin,
                         const std::string& value) {
  if (spec.choices.empty()) return absl::OkStatus();
  for (const char* choice : spec.choices) {
    if (value == choice) return absl::OkStatus();
  }
  return Error(
      origin, spec.key,
      absl::StrCat("must be one of ", absl::StrJoin(spec.choices, ", "),
                   ", got \"", value, "\""));
}

// Comma-separated lists in environment variables and flags.
std::vector<std::string> SplitList(absl::string_view text) {
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

// Sets the key from an environment variable or flag value.
absl::Status ApplyText(const KeySpec& spec, absl::string_view origin,
                       const std::string& text, GatewayConfig& config) {
  Field field = spec.field(config);
  if (auto* s = std::get_if<std::string*>(&field)) {
    if (absl::Status ok = CheckChoice(spec, origin, text); !ok.ok()) return ok;
    **s = text;
  } else if (auto* i = std::get_if<int64_t*>(&field)) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(text, &value)) {
      return Error(origin, spec.key,
                   absl::StrCat("must be an integer, got \"", text, "\""));
    }
    if (absl::Status ok = CheckRange(spec, origin, static_cast<double>(value));
        !ok.ok()) {
      return ok;
    }
    **i = value;
  } else if (auto* d = std::get_if<double*>(&field)) {
    double value = 0;
    if (!absl::SimpleAtod(text, &value) || !std::isfinite(value)) {
      return Error(origin, spec.key,
                   absl::StrCat("must be a number, got \"", text, "\""));
    }
    if (absl::Status ok = CheckRange(spec, origin, value); !ok.ok()) return ok;
    **d = value;
  } else if (auto* l = std::get_if<std::vector<std::string>*>(&field)) {
    **l = SplitList(text);
  } else if (auto* level = std::get_if<LogLevel*>(&field)) {
    std::optional<LogLevel> parsed = ParseLogLevel(text);
    if (!parsed.has_value()) {
      return Error(origin, spec.key,
                   absl::StrCat("must be one of debug, info, warning, error, "
                                "got \"",
                                text, "\""));
    }
    **level = *parsed;
  }
  return absl::OkStatus();
}

// Sets the key from a value of the configuration file.
absl::Status ApplyJson(const KeySpec& spec, absl::string_view origin,
                       const json& value, GatewayConfig& config) {
  Field field = spec.field(config);
  const auto wrong_type = [&](absl::string_view wanted) {
    return Error(origin, spec.key,
                 absl::StrCat("must be ", wanted, ", got ", JsonTypeName(value),
                              " (", value.dump(), ")"));
  };
  if (std::holds_alternative<std::string*>(field) ||
      std::holds_alternative<LogLevel*>(field)) {
    if (!value.is_string()) return wrong_type("a string");
    return ApplyText(spec, origin, value.get<std::string>(), config);
  }
  if (auto* i = std::get_if<int64_t*>(&field)) {
    if (value.is_number_unsigned() &&
        value.get<uint64_t>() >
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return CheckRange(spec, origin, value.get<double>());
    }
    if (!value.is_number_integer()) return wrong_type("an integer");
    const int64_t number = value.get<int64_t>();
    if (absl::Status ok = CheckRange(spec, origin, static_cast<double>(number));
        !ok.ok()) {
      return ok;
    }
    **i = number;
    return absl::OkStatus();
  }
  if (auto* d = std::get_if<double*>(&field)) {
    if (!value.is_number()) return wrong_type("a number");
    const double number = value.get<double>();
    if (absl::Status ok = CheckRange(spec, origin, number); !ok.ok()) return ok;
    **d = number;
    return absl::OkStatus();
  }
  auto* list = std::get<std::vector<std::string>*>(field);
  if (!value.is_array()) return wrong_type("an array of strings");
  std::vector<std::string> items;
  for (const json& item : value) {
    if (!item.is_string()) return wrong_type("an array of strings");
    items.push_back(item.get<std::string>());
  }
  *list = std::move(items);
  return absl::OkStatus();
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean \"x\"?)" for the closest known key or section, or "".
std::string DidYouMean(absl::string_view unknown) {
  std::vector<std::string> candidates;
  for (const KeySpec& spec : Keys()) {
    const std::string key = spec.key;
    candidates.push_back(key);
    for (size_t dot = key.find('.'); dot != std::string::npos;
         dot = key.find('.', dot + 1)) {
      candidates.push_back(key.substr(0, dot));
    }
  }
  // A key written without its section: "heartbeat_ms" -> streams.heartbeat_ms.
  for (const KeySpec& spec : Keys()) {
    if (absl::EndsWith(spec.key, absl::StrCat(".", unknown))) {
      return absl::StrCat(" (did you mean \"", spec.key, "\"?)");
    }
  }
  std::string best;
  size_t best_distance = std::string::npos;
  for (const std::string& candidate : candidates) {
    const size_t distance = EditDistance(unknown, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  const size_t tolerance = std::max<size_t>(2, unknown.size() / 4);
  if (best_distance == 0 || best_distance > tolerance) return "";
  return absl::StrCat(" (did you mean \"", best, "\"?)");
}

const KeySpec* FindKey(absl::string_view key) {
  for (const KeySpec& spec : Keys()) {
    if (key == spec.key) return &spec;
  }
  return nullptr;
}

bool IsSection(absl::string_view prefix) {
  for (const KeySpec& spec : Keys()) {
    if (absl::StartsWith(spec.key, absl::StrCat(prefix, "."))) return true;
  }
  return false;
}

absl::Status ApplyObject(const json& object, const std::string& prefix,
                         absl::string_view origin, GatewayConfig& config) {
  for (const auto& [name, value] : object.items()) {
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    if (const KeySpec* spec = FindKey(key)) {
      if (absl::Status ok = ApplyJson(*spec, origin, value, config); !ok.ok()) {
        return ok;
      }
      config.origins[key] = std::string(origin);
    } else if (IsSection(key)) {
      if (!value.is_object()) {
        return Error(origin, key,
                     absl::StrCat("must be an object (a section), got ",
                                  JsonTypeName(value)));
      }
      if (absl::Status ok = ApplyObject(value, key, origin, config); !ok.ok()) {
        return ok;
      }
    } else {
      for (const SecretSpec& secret : Secrets()) {
        if (key == secret.key) {
          return Error(origin, key,
                       absl::StrCat("secrets cannot be set in the "
                                    "configuration file; set the environment "
                                    "variable ",
                                    secret.env, " or the key ", secret.file_key,
                                    " instead"));
        }
      }
      return Error(origin, key, absl::StrCat("unknown key", DidYouMean(key)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(std::strerror(errno));
  return text.str();
}

absl::Status ApplyFile(const ConfigSources& sources, GatewayConfig& config) {
  const std::string origin = absl::StrCat("config ", sources.file_path);
  absl::StatusOr<std::string> text = ReadWholeFile(sources.file_path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": cannot read the file (named by ",
                     sources.file_origin, "): ", text.status().message()));
  }
  json document;
  try {
    document = json::parse(*text);
  } catch (const json::parse_error& error) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": not valid JSON: ", error.what()));
  }
  if (!document.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": must be a JSON object, got ", JsonTypeName(document)));
  }
  return ApplyObject(document, "", origin, config);
}

const std::string& OriginOf(const GatewayConfig& config, const char* key) {
  static const std::string kDefault = "default";
  auto it = config.origins.find(key);
  return it == config.origins.end() ? kDefault : it->second;
}

bool IsHostPort(absl::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  int port = 0;
  return absl::SimpleAtoi(text.substr(colon + 1), &port) && port >= 0 &&
         port <= 65535 && text.find_first_of(" \t") == absl::string_view::npos;
}

// Per-key checks on the merged values.
absl::Status CheckValue(const KeySpec& spec, GatewayConfig& config) {
  if (spec.check == Check::kNone) return absl::OkStatus();
  const std::string& origin = OriginOf(config, spec.key);
  Field field = spec.field(config);
  if (spec.check == Check::kMethodPrefixes) {
    for (const std::string& method :
         *std::get<std::vector<std::string>*>(field)) {
      if (!absl::StartsWith(method, "/")) {
        return Error(origin, spec.key,
                     absl::StrCat("each entry must be a method prefix such as "
                                  "\"/grpc.health.v1.Health/\", got \"",
                                  method, "\""));
      }
    }
    return absl::OkStatus();
  }
  std::string& value = *std::get<std::string*>(field);
  switch (spec.check) {
    case Check::kNonEmpty:
      if (value.empty()) return Error(origin, spec.key, "must not be empty");
      break;
    case Check::kHostPort:
    case Check::kHostPortOrEmpty:
      if (value.empty() && spec.check == Check::kHostPortOrEmpty) break;
      if (!IsHostPort(value)) {
        return Error(origin, spec.key,
                     absl::StrCat("must be HOST:PORT (port 0..65535), got \"",
                                  value, "\""));
      }
      break;
    case Check::kReadableFile:
      if (value.empty()) break;
      if (absl::StatusOr<std::string> text = ReadWholeFile(value); !text.ok()) {
        return Error(origin, spec.key,
                     absl::StrCat("cannot read \"", value,
                                  "\": ", text.status().message()));
      }
      break;
    case Check::kUrl:
      if (value.empty()) break;
      if (!absl::StartsWith(value, "http://") &&
          !absl::StartsWith(value, "https://")) {
        return Error(origin, spec.key,
                     absl::StrCat("must start with http:// or https://, got \"",
                                  value, "\""));
      }
      value = std::string(absl::StripSuffix(value, "/"));
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

// Keys that only make sense together.
absl::Status CheckCombinations(const GatewayConfig& config) {
  struct Pair {
    const char* key;
    const std::string* value;
    const char* needs;
    const std::string* needed;
    const char* why;
  };
  const Pair pairs[] = {
      {"tls.cert_file", &config.tls.cert_file, "tls.key_file",
       &config.tls.key_file, "a certificate needs its private key"},
      {"tls.key_file", &config.tls.key_file, "tls.cert_file",
       &config.tls.cert_file, "a private key needs its certificate"},
      {"tls.client_ca_file", &config.tls.client_ca_file, "tls.cert_file",
       &config.tls.cert_file,
       "client certificates are only checked when the server serves TLS"},
      {"workers.tls.cert_file", &config.workers.tls.cert_file,
       "workers.tls.key_file", &config.workers.tls.key_file,
       "a client certificate needs its private key"},
      {"workers.tls.key_file", &config.workers.tls.key_file,
       "workers.tls.cert_file", &config.workers.tls.cert_file,
       "a private key needs its certificate"},
  };
  for (const Pair& pair : pairs) {
    if (!pair.value->empty() && pair.needed->empty()) {
      return Error(
          OriginOf(config, pair.key), pair.key,
          absl::StrCat("is set but ", pair.needs, " is not (", pair.why, ")"));
    }
  }
  if (config.upstream.default_backend == "chat" &&
      config.upstream.chat.base_url.empty()) {
    return Error(OriginOf(config, "upstream.default"), "upstream.default",
                 "is \"chat\" but upstream.chat.base_url is not set");
  }
  return absl::OkStatus();
}

// Secrets from the environment, replaced by the contents of their files.
absl::Status LoadSecrets(const ConfigSources& sources, GatewayConfig& config) {
  for (const SecretSpec& secret : Secrets()) {
    std::string* value = secret.field(config);
    if (auto it = sources.env.find(secret.env); it != sources.env.end()) {
      *value = it->second;
    }
    const KeySpec* file_spec = FindKey(secret.file_key);
    const std::string& path = *std::get<std::string*>(file_spec->field(config));
    if (path.empty()) continue;
    absl::StatusOr<std::string> text = ReadWholeFile(path);
    if (!text.ok()) {
      return Error(OriginOf(config, secret.file_key), secret.file_key,
                   absl::StrCat("cannot read \"", path,
                                "\": ", text.status().message()));
    }
    *value = std::string(absl::StripAsciiWhitespace(*text));
    if (value->empty()) {
      return Error(OriginOf(config, secret.file_key), secret.file_key,
                   absl::StrCat("the file \"", path, "\" is empty"));
    }
  }
  return absl::OkStatus();
}

json FieldToJson(const Field& field) {
  if (auto* s = std::get_if<std::string*>(&field)) return **s;
  if (auto* i = std::get_if<int64_t*>(&field)) return **i;
  if (auto* d = std::get_if<double*>(&field)) return **d;
  if (auto* l = std::get_if<std::vector<std::string>*>(&field)) return **l;
  return std::string(LogLevelName(**std::get_if<LogLevel*>(&field)));
}

// Sets `value` at the dotted `key` inside `root`, creating sections.
void SetDotted(json& root, absl::string_view key, json value) {
  json* node = &root;
  std::vector<std::string> parts = absl::StrSplit(key, '.');
  for (size_t i = 0; i + 1 < parts.size(); ++i) node = &(*node)[parts[i]];
  (*node)[parts.back()] = std::move(value);
}

// The current value of a string flag of this file.
std::string FlagValue(absl::string_view name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  return flag != nullptr ? flag->CurrentValue() : "";
}

}  // namespace

ConfigSources ProcessSources() {
  ConfigSources sources;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    absl::string_view text = *entry;
    const size_t equals = text.find('=');
    if (equals == absl::string_view::npos) continue;
    absl::string_view value = text.substr(equals + 1);
    if (value.empty()) continue;  // Empty counts as unset.
    sources.env.emplace(std::string(text.substr(0, equals)),
                        std::string(value));
  }
  // Abseil 20220623 keeps CommandLineFlag::IsSpecifiedOnCommandLine()
  // private; WasPresentOnCommandLine is the same answer, from the parser.
  for (const KeySpec& spec : Keys()) {
    if (absl::flags_internal::WasPresentOnCommandLine(spec.flag)) {
      sources.flags[spec.flag] = FlagValue(spec.flag);
    }
  }
  if (absl::flags_internal::WasPresentOnCommandLine("config")) {
    sources.file_path = absl::GetFlag(FLAGS_config);
    sources.file_origin = "flag --config";
  } else if (auto it = sources.env.find("ASSISTANTS_CONFIG");
             it != sources.env.end()) {
    sources.file_path = it->second;
    sources.file_origin = "env ASSISTANTS_CONFIG";
  }
  return sources;
}

absl::StatusOr<GatewayConfig> LoadConfig(const ConfigSources& sources) {
  GatewayConfig config;
  if (!sources.file_path.empty()) {
    if (absl::Status ok = ApplyFile(sources, config); !ok.ok()) return ok;
  }
  for (const KeySpec& spec : Keys()) {
    auto it = sources.env.find(spec.env);
    if (it == sources.env.end() || it->second.empty()) continue;
    const std::string origin = absl::StrCat("env ", spec.env);
    if (absl::Status ok = ApplyText(spec, origin, it->second, config);
        !ok.ok()) {
      return ok;
    }
    config.origins[spec.key] = origin;
  }
  for (const auto& [name, value] : sources.flags) {
    const auto spec =
        std::find_if(Keys().begin(), Keys().end(),
                     [&](const KeySpec& s) { return name == s.flag; });
    if (spec == Keys().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, ": not a configuration flag"));
    }
    const std::string origin = absl::StrCat("flag --", name);
    if (absl::Status ok = ApplyText(*spec, origin, value, config); !ok.ok()) {
      return ok;
    }
    config.origins[spec->key] = origin;
  }
  for (const KeySpec& spec : Keys()) {
    if (absl::Status ok = CheckValue(spec, config); !ok.ok()) return ok;
  }
  if (absl::Status ok = CheckCombinations(config); !ok.ok()) return ok;
  if (absl::Status ok = LoadSecrets(sources, config); !ok.ok()) return ok;
  return config;
}

std::string ConfigToJson(const GatewayConfig& config) {
  // The table's accessors take a mutable config; printing changes nothing.
  GatewayConfig& view = const_cast<GatewayConfig&>(config);
  json root = json::object();
  for (const KeySpec& spec : Keys()) {
    SetDotted(root, spec.key, FieldToJson(spec.field(view)));
  }
  // Keys that may be set anywhere but can hold a password.
  for (const char* key : {"store.postgres_url"}) {
    const std::string* value =
        std::get<std::string*>(FindKey(key)->field(view));
    if (!value->empty()) SetDotted(root, key, "<redacted>");
  }
  for (const SecretSpec& secret : Secrets()) {
    const std::string* value = secret.field(view);
    SetDotted(root, secret.key, value->empty() ? "" : "<redacted>");
  }
  return root.dump(2);
}

std::vector<KeyInfo> ConfigKeys() {
  std::vector<KeyInfo> keys;
  for (const KeySpec& spec : Keys()) {
    keys.push_back({spec.key, spec.env, spec.flag});
  }
  return keys;
}

}  // namespace assistants::config
