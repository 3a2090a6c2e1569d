// GatewayConfig: every setting of assistants-gateway, loaded once at start
// from (lowest to highest precedence) built-in defaults, a JSON configuration
// file (--config / ASSISTANTS_CONFIG), environment variables and flags given
// on the command line. Each key has exactly one environment variable and one
// flag (see kConfigKeys in config.cc, documented in README "Configuration").
// Validation happens here, at start: an error names the key, the source it
// came from and what is wrong with it.
#ifndef SERVICE_CONFIG_CONFIG_H_
#define SERVICE_CONFIG_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "service/common/log.h"

namespace assistants::config {

struct GatewayConfig {
  // host:port the gRPC server listens on; port 0 picks a free port.
  std::string listen = "127.0.0.1:50051";

  struct Store {
    // SQLite database file, or ":memory:" for the in-memory store.
    std::string path = "assistants.db";
    // PostgreSQL connection (libpq URI or key=value string). Non-empty
    // selects the PostgreSQL store, shared by every replica, and `path` is
    // ignored. It may hold a password: printed redacted.
    std::string postgres_url;
    // Connections one gateway opens to PostgreSQL at most.
    int64_t postgres_pool_size = 8;
  } store;

  struct Log {
    LogLevel level = LogLevel::kInfo;
  } log;

  struct Metrics {
    // host:port of the Prometheus /metrics endpoint; empty: off.
    std::string listen;
  } metrics;

  struct Shutdown {
    // On SIGTERM/SIGINT, how long calls in flight may finish.
    int64_t grace_ms = 5000;
  } shutdown;

  struct Runs {
    int64_t engine_threads = 4;
    int64_t requires_action_timeout_s = 600;
    // reject, queue or interrupt.
    std::string active_run_policy = "reject";
  } runs;

  struct Streams {
    int64_t heartbeat_ms = 15000;
  } streams;

  struct Tls {
    // Server certificate chain and key (PEM); both or neither.
    std::string cert_file;
    std::string key_file;
    // When set, clients must present a certificate signed by this CA.
    std::string client_ca_file;
    // Seconds between checks of the three files for renewed contents (new
    // connections get them without a restart); 0 reads them once.
    int64_t reload_interval_s = 60;
  } tls;

  struct Auth {
    // JSON file of API keys; empty turns auth off (development only).
    std::string api_keys_file;
    // Seconds between re-reads of the keys file (keys added or revoked
    // without a restart); 0 reads it once.
    int64_t reload_interval_s = 10;
    // Method prefixes served without an API key.
    std::vector<std::string> open_methods = {
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1alpha.ServerReflection/"};
  } auth;

  struct Limits {
    int64_t max_message_bytes = 4 * 1024 * 1024;
    // 0 means unlimited for all of these.
    int64_t max_active_runs_per_project = 0;
    int64_t max_streams_per_project = 0;
    double requests_per_second_per_key = 0;
    int64_t burst_per_key = 0;
  } limits;

  struct Workers {
    // File holding the registration token of tool workers.
    std::string token_file;
    // The token itself: the contents of token_file, else the environment
    // variable ASSISTANTS_WORKER_TOKEN (a secret: never printed). Empty: only
    // static workers serve.
    std::string token;
    // Endpoints workers may register: IPv4 blocks, addresses, host globs, *.
    std::vector<std::string> allowlist = {"127.0.0.0/8", "[::1]", "localhost"};
    // JSON file of static workers ({"workers": [...]} as in ListWorkers).
    std::string static_file;
    int64_t lease_ttl_ms = 15000;
    int64_t wait_ms = 15000;
    struct Tls {
      // CA that verifies workers; a client certificate for mTLS.
      std::string ca_file;
      std::string cert_file;
      std::string key_file;
    } tls;
  } workers;

  struct Upstream {
    // The backend of assistants that name none: openai, openai-chat or chat.
    std::string default_backend = "openai";
    struct OpenAi {
      std::string base_url = "https://api.openai.com/v1";
      std::string api_key_file;
      // OPENAI_API_KEY, or the contents of api_key_file (a secret).
      std::string api_key;
      std::string organization;
      std::string project;
    } openai;
    struct Chat {
      // A Chat Completions server (vLLM, Ollama, ...); empty: no "chat".
      std::string base_url;
      std::string api_key_file;
      // CHAT_COMPLETIONS_API_KEY, or the contents of api_key_file (secret).
      std::string api_key;
    } chat;
    int64_t connect_timeout_ms = 10'000;
    int64_t first_byte_timeout_ms = 60'000;
    int64_t idle_timeout_ms = 60'000;
    int64_t total_timeout_ms = 600'000;
    int64_t max_attempts = 3;
  } upstream;

  // Several replicas on one PostgreSQL database (store.postgres_url).
  struct Cluster {
    // This replica's name as a run lease owner; empty: host-pid-random.
    std::string replica_id;
    // A replica that stops renewing its runs' leases loses them after this.
    int64_t run_lease_ttl_ms = 10000;
    // How often each replica re-reads the shared tool-worker registry
    // besides when it is told of a change.
    int64_t worker_sync_ms = 1000;
  } cluster;

  // Where each key's value came from: "default", "config FILE",
  // "env NAME" or "flag --name".
  std::map<std::string, std::string> origins;
};

// Everything LoadConfig reads, so tests need neither files of flags nor the
// process environment.
struct ConfigSources {
  // The configuration file; empty: none.
  std::string file_path;
  // Where file_path came from ("flag --config", "env ASSISTANTS_CONFIG").
  std::string file_origin;
  // Environment variables; an empty value counts as unset.
  std::map<std::string, std::string> env;
  // Flags given on the command line, by flag name (without dashes); an empty
  // value is a value.
  std::map<std::string, std::string> flags;
};

// The sources of this process: --config / ASSISTANTS_CONFIG, the
// environment, and the configuration flags given on the command line. Call
// after absl::ParseCommandLine.
ConfigSources ProcessSources();

// Merges defaults < file < env < flags, validates every key and their
// combinations, and reads the secret files (API key files, worker token
// file). Errors are INVALID_ARGUMENT with a message such as
//   config gateway.json: limits.max_message_bytes: must be between 1024 and
//   67108864, got 10
absl::StatusOr<GatewayConfig> LoadConfig(const ConfigSources& sources);

// The effective configuration as pretty JSON, nested by section, secrets
// replaced by "<redacted>" (empty secrets stay empty).
std::string ConfigToJson(const GatewayConfig& config);

// One row of the key table, for documentation and tests.
struct KeyInfo {
  std::string key;
  std::string env;
  std::string flag;
};
std::vector<KeyInfo> ConfigKeys();

}  // namespace assistants::config

#endif  // SERVICE_CONFIG_CONFIG_H_
