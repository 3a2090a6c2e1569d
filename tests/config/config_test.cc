// Tests of GatewayConfig loading: defaults, precedence (file < env < flags),
// every kind of bad value naming its key and source, secrets, printing, and
// the committed example file.
#include "service/config/config.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace assistants::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// A file under the test's temp dir, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    static int counter = 0;
    path_ = ::testing::TempDir() + "/config_test_" + std::to_string(getpid()) +
            "_" + std::to_string(counter++);
    std::ofstream(path_) << contents;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

ConfigSources FromFile(const std::string& path) {
  ConfigSources sources;
  sources.file_path = path;
  sources.file_origin = "flag --config";
  return sources;
}

TEST(ConfigTest, DefaultsAreTodaysBehaviour) {
  absl::StatusOr<GatewayConfig> config = LoadConfig({});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "127.0.0.1:50051");
  EXPECT_EQ(config->store.path, "assistants.db");
  EXPECT_EQ(config->log.level, LogLevel::kInfo);
  EXPECT_EQ(config->metrics.listen, "");
  EXPECT_EQ(config->shutdown.grace_ms, 5000);
  EXPECT_EQ(config->runs.engine_threads, 4);
  EXPECT_EQ(config->runs.requires_action_timeout_s, 600);
  EXPECT_EQ(config->runs.active_run_policy, "reject");
  EXPECT_EQ(config->streams.heartbeat_ms, 15000);
  EXPECT_EQ(config->tls.cert_file, "");
  EXPECT_EQ(config->auth.api_keys_file, "");
  EXPECT_EQ(config->limits.max_message_bytes, 4 * 1024 * 1024);
  EXPECT_EQ(config->limits.max_active_runs_per_project, 0);
  EXPECT_EQ(config->limits.max_streams_per_project, 0);
  EXPECT_EQ(config->limits.requests_per_second_per_key, 0);
  EXPECT_EQ(config->limits.burst_per_key, 0);
  EXPECT_THAT(config->workers.allowlist,
              ElementsAre("127.0.0.0/8", "[::1]", "localhost"));
  EXPECT_EQ(config->workers.lease_ttl_ms, 15000);
  EXPECT_EQ(config->workers.wait_ms, 15000);
  EXPECT_EQ(config->upstream.default_backend, "openai");
  EXPECT_EQ(config->upstream.openai.base_url, "https://api.openai.com/v1");
  EXPECT_EQ(config->upstream.max_attempts, 3);
  EXPECT_TRUE(config->origins.empty());
}

TEST(ConfigTest, EveryPlannedKeyHasOneEnvAndOneFlag) {
  const std::set<std::string> planned = {"listen",
                                         "store.path",
                                         "log.level",
                                         "metrics.listen",
                                         "shutdown.grace_ms",
                                         "runs.engine_threads",
                                         "runs.requires_action_timeout_s",
                                         "runs.active_run_policy",
                                         "streams.heartbeat_ms",
                                         "tls.cert_file",
                                         "tls.key_file",
                                         "tls.client_ca_file",
                                         "tls.reload_interval_s",
                                         "auth.api_keys_file",
                                         "auth.reload_interval_s",
                                         "auth.open_methods",
                                         "limits.max_message_bytes",
                                         "limits.max_active_runs_per_project",
                                         "limits.max_streams_per_project",
                                         "limits.requests_per_second_per_key",
                                         "limits.burst_per_key",
                                         "workers.token_file",
                                         "workers.allowlist",
                                         "workers.static_file",
                                         "workers.lease_ttl_ms",
                                         "workers.wait_ms",
                                         "workers.tls.ca_file",
                                         "workers.tls.cert_file",
                                         "workers.tls.key_file",
                                         "store.postgres_url",
                                         "store.postgres_pool_size"};
  std::set<std::string> keys, envs, flags;
  for (const KeyInfo& info : ConfigKeys()) {
    EXPECT_TRUE(keys.insert(info.key).second) << info.key;
    EXPECT_TRUE(envs.insert(info.env).second) << info.env;
    EXPECT_TRUE(flags.insert(info.flag).second) << info.flag;
  }
  for (const std::string& key : planned) EXPECT_EQ(keys.count(key), 1) << key;
}

TEST(ConfigTest, ExistingFlagAndEnvNamesKeepWorking) {
  std::map<std::string, std::string> flag_of, env_of;
  for (const KeyInfo& info : ConfigKeys()) {
    flag_of[info.key] = info.flag;
    env_of[info.key] = info.env;
  }
  EXPECT_EQ(flag_of["listen"], "listen");
  EXPECT_EQ(env_of["listen"], "ASSISTANTS_LISTEN");
  EXPECT_EQ(flag_of["store.path"], "db");
  EXPECT_EQ(env_of["store.path"], "ASSISTANTS_DB");
  EXPECT_EQ(flag_of["shutdown.grace_ms"], "shutdown_grace_ms");
  EXPECT_EQ(flag_of["runs.requires_action_timeout_s"],
            "requires_action_timeout_s");
  EXPECT_EQ(env_of["runs.requires_action_timeout_s"],
            "ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S");
  EXPECT_EQ(flag_of["runs.active_run_policy"], "active_run_policy");
  EXPECT_EQ(env_of["runs.active_run_policy"], "ASSISTANTS_ACTIVE_RUN_POLICY");
  EXPECT_EQ(flag_of["streams.heartbeat_ms"], "heartbeat_ms");
  EXPECT_EQ(flag_of["runs.engine_threads"], "engine_threads");
  EXPECT_EQ(flag_of["workers.token_file"], "worker_token_file");
  EXPECT_EQ(env_of["workers.token_file"], "ASSISTANTS_WORKER_TOKEN_FILE");
  EXPECT_EQ(flag_of["workers.allowlist"], "worker_allowlist");
  EXPECT_EQ(env_of["workers.allowlist"], "ASSISTANTS_WORKER_ALLOWLIST");
  EXPECT_EQ(flag_of["workers.static_file"], "workers_config");
  EXPECT_EQ(env_of["workers.static_file"], "ASSISTANTS_WORKERS_CONFIG");
  EXPECT_EQ(flag_of["workers.lease_ttl_ms"], "worker_lease_ttl_ms");
  EXPECT_EQ(flag_of["workers.wait_ms"], "worker_wait_ms");
  EXPECT_EQ(flag_of["log.level"], "log_level");
  EXPECT_EQ(env_of["upstream.default"], "ASSISTANTS_DEFAULT_UPSTREAM");
  EXPECT_EQ(env_of["upstream.openai.base_url"], "OPENAI_BASE_URL");
  EXPECT_EQ(env_of["upstream.openai.api_key_file"], "OPENAI_API_KEY_FILE");
  EXPECT_EQ(env_of["upstream.idle_timeout_ms"],
            "ASSISTANTS_UPSTREAM_IDLE_TIMEOUT_MS");
  EXPECT_EQ(env_of["upstream.max_attempts"],
            "ASSISTANTS_UPSTREAM_MAX_ATTEMPTS");
}

TEST(ConfigTest, FlagsBeatEnvironmentBeatsFileBeatsDefaults) {
  TempFile file(
      R"({"listen": "127.0.0.1:1001", "streams": {"heartbeat_ms": 500},
                    "runs": {"engine_threads": 2}})");
  ConfigSources sources = FromFile(file.path());
  sources.env = {{"ASSISTANTS_LISTEN", "127.0.0.1:1002"},
                 {"ASSISTANTS_HEARTBEAT_MS", "600"}};
  sources.flags = {{"listen", "127.0.0.1:1003"}};
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "127.0.0.1:1003");
  EXPECT_EQ(config->origins["listen"], "flag --listen");
  EXPECT_EQ(config->streams.heartbeat_ms, 600);
  EXPECT_EQ(config->origins["streams.heartbeat_ms"],
            "env ASSISTANTS_HEARTBEAT_MS");
  EXPECT_EQ(config->runs.engine_threads, 2);
  EXPECT_EQ(config->origins["runs.engine_threads"], "config " + file.path());
  EXPECT_EQ(config->runs.requires_action_timeout_s, 600);  // Default.

  sources.flags.clear();
  config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "127.0.0.1:1002");
  sources.env.clear();
  config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "127.0.0.1:1001");
}

TEST(ConfigTest, EmptyEnvironmentVariableCountsAsUnset) {
  ConfigSources sources;
  sources.env = {{"ASSISTANTS_ACTIVE_RUN_POLICY", ""},
                 {"ASSISTANTS_REQUIRES_ACTION_TIMEOUT_S", ""}};
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->runs.active_run_policy, "reject");
}

TEST(ConfigTest, EmptyFlagIsAValue) {
  TempFile file(R"({"metrics": {"listen": "127.0.0.1:9090"}})");
  ConfigSources sources = FromFile(file.path());
  sources.flags = {{"metrics_listen", ""}};
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->metrics.listen, "");
}

TEST(ConfigTest, ListsAreCommaSeparatedInEnvAndArraysInTheFile) {
  TempFile file(R"({"auth": {"open_methods": ["/a.B/", "/c.D/Get"]}})");
  ConfigSources sources = FromFile(file.path());
  sources.env = {{"ASSISTANTS_WORKER_ALLOWLIST", " 10.0.0.0/8, *.svc ,,x"}};
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->workers.allowlist,
              ElementsAre("10.0.0.0/8", "*.svc", "x"));
  EXPECT_THAT(config->auth.open_methods, ElementsAre("/a.B/", "/c.D/Get"));
}

TEST(ConfigTest, TrailingSlashOfBaseUrlsIsDropped) {
  ConfigSources sources;
  sources.env = {{"OPENAI_BASE_URL", "http://127.0.0.1:8080/v1/"}};
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->upstream.openai.base_url, "http://127.0.0.1:8080/v1");
}

TEST(ConfigTest, SecretsComeFromEnvironmentOrFilesAndArePrintedRedacted) {
  TempFile key_file("  sk-from-file\n");
  TempFile token_file("worker-token-123\n");
  ConfigSources sources;
  sources.env = {{"OPENAI_API_KEY", "sk-from-env"},
                 {"CHAT_COMPLETIONS_API_KEY", "sk-chat"},
                 {"CHAT_COMPLETIONS_BASE_URL", "http://127.0.0.1:1/v1"}};
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->upstream.openai.api_key, "sk-from-env");
  EXPECT_EQ(config->upstream.chat.api_key, "sk-chat");
  EXPECT_EQ(config->workers.token, "");

  sources.env["OPENAI_API_KEY_FILE"] = key_file.path();
  sources.flags = {{"worker_token_file", token_file.path()}};
  config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->upstream.openai.api_key, "sk-from-file");
  EXPECT_EQ(config->workers.token, "worker-token-123");

  const std::string printed = ConfigToJson(*config);
  EXPECT_THAT(printed, Not(HasSubstr("sk-from")));
  EXPECT_THAT(printed, Not(HasSubstr("sk-chat")));
  EXPECT_THAT(printed, Not(HasSubstr("worker-token-123")));
  const auto parsed = nlohmann::json::parse(printed);
  EXPECT_EQ(parsed["upstream"]["openai"]["api_key"], "<redacted>");
  EXPECT_EQ(parsed["upstream"]["chat"]["api_key"], "<redacted>");
  EXPECT_EQ(parsed["workers"]["token"], "<redacted>");
  EXPECT_EQ(parsed["workers"]["token_file"], token_file.path());
}

TEST(ConfigTest, PrintedConfigLoadsBackOnceSecretsAreRemoved) {
  ConfigSources sources;
  sources.env = {{"ASSISTANTS_LOG_LEVEL", "debug"},
                 {"ASSISTANTS_MAX_STREAMS_PER_PROJECT", "7"},
                 {"ASSISTANTS_REQUESTS_PER_SECOND_PER_KEY", "2.5"}};
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  auto printed = nlohmann::json::parse(ConfigToJson(*config));
  EXPECT_EQ(printed["log"]["level"], "debug");
  printed["upstream"]["openai"].erase("api_key");
  printed["upstream"]["chat"].erase("api_key");
  printed["workers"].erase("token");
  TempFile file(printed.dump());
  absl::StatusOr<GatewayConfig> reloaded = LoadConfig(FromFile(file.path()));
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(ConfigToJson(*reloaded), ConfigToJson(*config));
}

TEST(ConfigTest, ClusterWorkerSyncFromEnvAndFlag) {
  absl::StatusOr<GatewayConfig> config = LoadConfig({});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster.worker_sync_ms, 1000);

  ConfigSources sources;
  sources.env["ASSISTANTS_CLUSTER_WORKER_SYNC_MS"] = "250";
  config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster.worker_sync_ms, 250);

  sources.flags["cluster_worker_sync_ms"] = "5000";
  config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->cluster.worker_sync_ms, 5000);
  EXPECT_EQ(config->origins["cluster.worker_sync_ms"],
            "flag --cluster_worker_sync_ms");
}

TEST(ConfigTest, PostgresUrlIsRedactedWhenPrinted) {
  ConfigSources sources;
  sources.env["ASSISTANTS_STORE_POSTGRES_URL"] =
      "postgresql://gateway:s3cret-pw@db:5432/assistants";
  sources.flags = {{"store_postgres_pool_size", "16"}};
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->store.postgres_url,
            "postgresql://gateway:s3cret-pw@db:5432/assistants");
  EXPECT_EQ(config->store.postgres_pool_size, 16);
  const std::string printed = ConfigToJson(*config);
  EXPECT_THAT(printed, Not(HasSubstr("s3cret-pw")));
  const auto parsed = nlohmann::json::parse(printed);
  EXPECT_EQ(parsed["store"]["postgres_url"], "<redacted>");
  EXPECT_EQ(parsed["store"]["postgres_pool_size"], 16);

  // Unset, it prints empty (nothing to hide).
  config = LoadConfig(ConfigSources());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(
      nlohmann::json::parse(ConfigToJson(*config))["store"]["postgres_url"],
      "");

  sources.flags = {{"store_postgres_pool_size", "0"}};
  EXPECT_FALSE(LoadConfig(sources).ok());
}

TEST(ConfigTest, ExampleFileLoads) {
  const std::string path =
      std::string(ASSISTANTS_SOURCE_DIR) + "/config/gateway.example.json";
  absl::StatusOr<GatewayConfig> config = LoadConfig(FromFile(path));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->origins["listen"], "config " + path);
}

TEST(ConfigTest, UnreadableConfigFileNamesWhereItsNameCameFrom) {
  ConfigSources sources;
  sources.file_path = "/nonexistent/gateway.json";
  sources.file_origin = "env ASSISTANTS_CONFIG";
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              HasSubstr("config /nonexistent/gateway.json: cannot read the "
                        "file (named by env ASSISTANTS_CONFIG)"));
}

// --- Every kind of bad value, table driven ---------------------------------

struct BadCase {
  const char* name;
  // One of these is the source of the bad value.
  const char* file;  // JSON text; "$FILE" is replaced by a readable file and
                     // "$EMPTY" by an empty one.
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> flags;
  // The message after the origin ("config PATH: ", "env X: ", "flag --x: ").
  const char* origin;  // "config", or the exact env / flag origin.
  const char* message;
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class BadConfigTest : public ::testing::TestWithParam<BadCase> {};

std::string ReplaceAll(std::string text, const std::string& from,
                       const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

TEST_P(BadConfigTest, FailsNamingTheKeyAndItsSource) {
  const BadCase& c = GetParam();
  TempFile readable("-----BEGIN CERTIFICATE-----\n");
  TempFile empty("");
  ConfigSources sources;
  std::unique_ptr<TempFile> file;
  if (c.file != nullptr) {
    std::string text = ReplaceAll(c.file, "$FILE", readable.path());
    text = ReplaceAll(text, "$EMPTY", empty.path());
    file = std::make_unique<TempFile>(text);
    sources = FromFile(file->path());
  }
  sources.env = c.env;
  sources.flags = c.flags;
  absl::StatusOr<GatewayConfig> config = LoadConfig(sources);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  std::string message = ReplaceAll(c.message, "$FILE", readable.path());
  message = ReplaceAll(message, "$EMPTY", empty.path());
  const std::string origin = std::string(c.origin) == "config"
                                 ? "config " + file->path()
                                 : std::string(c.origin);
  EXPECT_EQ(config.status().message(), origin + ": " + message);
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, BadConfigTest,
    ::testing::Values(
        BadCase{"OutOfRange",
                R"({"limits": {"max_message_bytes": 10}})",
                {},
                {},
                "config",
                "limits.max_message_bytes: must be between 1024 and 67108864, "
                "got 10"},
        BadCase{"WorkerSyncTooOften",
                R"({"cluster": {"worker_sync_ms": 10}})",
                {},
                {},
                "config",
                "cluster.worker_sync_ms: must be between 50 and 3600000, "
                "got 10"},
        BadCase{"HugeUnsigned",
                R"({"limits": {"max_message_bytes": 18446744073709551615}})",
                {},
                {},
                "config",
                "limits.max_message_bytes: must be between 1024 and 67108864, "
                "got 18446744073709551616"},
        BadCase{"NegativeRate",
                R"({"limits": {"requests_per_second_per_key": -0.5}})",
                {},
                {},
                "config",
                "limits.requests_per_second_per_key: must be between 0 and "
                "1000000, got -0.5"},
        BadCase{"UnknownKeyWithSuggestion",
                R"({"limits": {"max_mesage_bytes": 2048}})",
                {},
                {},
                "config",
                "limits.max_mesage_bytes: unknown key (did you mean "
                "\"limits.max_message_bytes\"?)"},
        BadCase{"KeyOutsideItsSection",
                R"({"heartbeat_ms": 100})",
                {},
                {},
                "config",
                "heartbeat_ms: unknown key (did you mean "
                "\"streams.heartbeat_ms\"?)"},
        BadCase{"MisspelledSection",
                R"({"limit": {}})",
                {},
                {},
                "config",
                "limit: unknown key (did you mean \"limits\"?)"},
        BadCase{"UnknownKeyFarFromAll",
                R"({"zzzzzzzzzzzz": 1})",
                {},
                {},
                "config",
                "zzzzzzzzzzzz: unknown key"},
        BadCase{"StringExpected",
                R"({"listen": 50051})",
                {},
                {},
                "config",
                "listen: must be a string, got an integer (50051)"},
        BadCase{"IntegerExpectedGotString",
                R"({"runs": {"engine_threads": "4"}})",
                {},
                {},
                "config",
                "runs.engine_threads: must be an integer, got a string "
                "(\"4\")"},
        BadCase{"IntegerExpectedGotFraction",
                R"({"runs": {"engine_threads": 1.5}})",
                {},
                {},
                "config",
                "runs.engine_threads: must be an integer, got a number (1.5)"},
        BadCase{"SectionExpected",
                R"({"tls": "on"})",
                {},
                {},
                "config",
                "tls: must be an object (a section), got a string"},
        BadCase{"ArrayExpected",
                R"({"auth": {"open_methods": "/grpc.health.v1.Health/"}})",
                {},
                {},
                "config",
                "auth.open_methods: must be an array of strings, got a string "
                "(\"/grpc.health.v1.Health/\")"},
        BadCase{"BadMethodPrefix",
                R"({"auth": {"open_methods": ["grpc.health"]}})",
                {},
                {},
                "config",
                "auth.open_methods: each entry must be a method prefix such "
                "as \"/grpc.health.v1.Health/\", got \"grpc.health\""},
        BadCase{"BadEnum",
                R"({"runs": {"active_run_policy": "fifo"}})",
                {},
                {},
                "config",
                "runs.active_run_policy: must be one of reject, queue, "
                "interrupt, got \"fifo\""},
        BadCase{"BadLogLevel",
                R"({"log": {"level": "verbose"}})",
                {},
                {},
                "config",
                "log.level: must be one of debug, info, warning, error, got "
                "\"verbose\""},
        BadCase{"BadListen",
                R"({"metrics": {"listen": "9090"}})",
                {},
                {},
                "config",
                "metrics.listen: must be HOST:PORT (port 0..65535), got "
                "\"9090\""},
        BadCase{"BadUrl",
                R"({"upstream": {"openai": {"base_url": "ftp://x"}}})",
                {},
                {},
                "config",
                "upstream.openai.base_url: must start with http:// or "
                "https://, got \"ftp://x\""},
        BadCase{"UnreadableFile",
                R"({"auth": {"api_keys_file": "/nonexistent/keys.json"}})",
                {},
                {},
                "config",
                "auth.api_keys_file: cannot read \"/nonexistent/keys.json\": "
                "No such file or directory"},
        BadCase{"EmptyTokenFile",
                R"({"workers": {"token_file": "$EMPTY"}})",
                {},
                {},
                "config",
                "workers.token_file: the file \"$EMPTY\" is empty"},
        BadCase{"CertWithoutKey",
                R"({"tls": {"cert_file": "$FILE"}})",
                {},
                {},
                "config",
                "tls.cert_file: is set but tls.key_file is not (a certificate "
                "needs its private key)"},
        BadCase{"KeyWithoutCert",
                nullptr,
                {{"ASSISTANTS_TLS_KEY_FILE", "/etc/hostname"}},
                {},
                "env ASSISTANTS_TLS_KEY_FILE",
                "tls.key_file: is set but tls.cert_file is not (a private key "
                "needs its certificate)"},
        BadCase{"ClientCaWithoutCert",
                R"({"tls": {"client_ca_file": "$FILE"}})",
                {},
                {},
                "config",
                "tls.client_ca_file: is set but tls.cert_file is not (client "
                "certificates are only checked when the server serves TLS)"},
        BadCase{"WorkerCertWithoutKey",
                R"({"workers": {"tls": {"cert_file": "$FILE"}}})",
                {},
                {},
                "config",
                "workers.tls.cert_file: is set but workers.tls.key_file is "
                "not (a client certificate needs its private key)"},
        BadCase{"ChatDefaultWithoutChatServer",
                nullptr,
                {},
                {{"default_upstream", "chat"}},
                "flag --default_upstream",
                "upstream.default: is \"chat\" but upstream.chat.base_url is "
                "not set"},
        BadCase{"SecretInFile",
                R"({"upstream": {"openai": {"api_key": "sk-123"}}})",
                {},
                {},
                "config",
                "upstream.openai.api_key: secrets cannot be set in the "
                "configuration file; set the environment variable "
                "OPENAI_API_KEY or the key upstream.openai.api_key_file "
                "instead"},
        BadCase{"NotAnObject",
                "[1, 2]",
                {},
                {},
                "config",
                "must be a JSON object, got an array"},
        BadCase{"EnvNotAnInteger",
                nullptr,
                {{"ASSISTANTS_ENGINE_THREADS", "many"}},
                {},
                "env ASSISTANTS_ENGINE_THREADS",
                "runs.engine_threads: must be an integer, got \"many\""},
        BadCase{"EnvOutOfRange",
                nullptr,
                {{"ASSISTANTS_WORKER_LEASE_TTL_MS", "10"}},
                {},
                "env ASSISTANTS_WORKER_LEASE_TTL_MS",
                "workers.lease_ttl_ms: must be between 1000 and 86400000, got "
                "10"},
        BadCase{"EnvNotANumber",
                nullptr,
                {{"ASSISTANTS_REQUESTS_PER_SECOND_PER_KEY", "fast"}},
                {},
                "env ASSISTANTS_REQUESTS_PER_SECOND_PER_KEY",
                "limits.requests_per_second_per_key: must be a number, got "
                "\"fast\""},
        BadCase{"FlagOutOfRange",
                nullptr,
                {},
                {{"heartbeat_ms", "0"}},
                "flag --heartbeat_ms",
                "streams.heartbeat_ms: must be between 10 and 3600000, got 0"},
        BadCase{"FlagBadLevel",
                nullptr,
                {},
                {{"log_level", "loud"}},
                "flag --log_level",
                "log.level: must be one of debug, info, warning, error, got "
                "\"loud\""},
        BadCase{"FlagEmptyStorePath",
                nullptr,
                {},
                {{"db", ""}},
                "flag --db",
                "store.path: must not be empty"}),
    [](const ::testing::TestParamInfo<BadCase>& info) {
      return std::string(info.param.name);
    });

TEST(ConfigTest, InvalidJsonSaysSo) {
  TempFile file(R"({"listen": )");
  absl::StatusOr<GatewayConfig> config = LoadConfig(FromFile(file.path()));
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              HasSubstr("config " + file.path() + ": not valid JSON: "));
}

}  // namespace
}  // namespace assistants::config
