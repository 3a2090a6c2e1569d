// replica_bench: several gateway replicas on one PostgreSQL database (issue
// 9), each figure against a baseline measured in the same run (the machine
// is shared and noisy, so only ratios and differences are meaningful).
//
// It starts fake-openai and, per measurement, assistants-gateway processes
// on a fresh PostgreSQL schema of --pg_url (or SQLite in a temporary
// directory, the reference), and measures:
//   1. Throughput: --concurrency client streams, each repeatedly one
//      RunEvents{create_thread_and_run} read to `done` (a --tokens-token
//      answer, no delay), round-robin over the replicas, for --seconds after
//      a warm-up. Completed runs per second with 1 gateway on SQLite (the
//      reference), 1 gateway on PostgreSQL and --replicas gateways on
//      PostgreSQL, the same total concurrency each; the ratios between them;
//      the gateways' CPU per run (sum over replicas, each process's CPU
//      clock), the database's CPU per run (the postmaster and its backends
//      from /proc, when the server is local) and this load generator's own.
//      --rounds rounds, the configurations rotated; the median round shows.
//   2. Cross-replica stream latency: a run created on gateway A, its model
//      paced (--latency_tokens tokens --latency_token_delay_ms apart, after
//      a first-byte delay so every stream attaches first), streamed at once
//      by two RunEvents streams on A and one on B. Per event (same sequence),
//      arrival on B minus arrival on the first stream on A (B is woken by
//      LISTEN/NOTIFY and reads the store; A relays from its in-memory hub),
//      against the baseline of A's second stream minus its first (the
//      measurement's own noise: client threads and scheduling).
//
//   replica_bench [--seconds=10] [--concurrency=32] [--replicas=3]
//   replica_bench --quick    (seconds; the CTest smoke test)
//
// Without a PostgreSQL URL (--pg_url, default $ASSISTANTS_TEST_PG_URL) it
// says why and exits 77 (CTest: skipped). Exits 1 only on a functional
// failure (a run that does not complete, a stream that misses an event),
// never because of a timing.
#include <curl/curl.h>
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "bench/bench_support.h"
#include "nlohmann/json.hpp"
#include "service/store/pg/pg_client.h"
#include "tests/support/pg_test_db.h"
#include "tests/support/server_process.h"

ABSL_FLAG(bool, quick, false,
          "smoke mode: 1 s per measurement, 4 streams, one short paced run");
ABSL_FLAG(std::string, pg_url, "",
          "libpq URL of a database where the benchmark may CREATE SCHEMA "
          "(default: $ASSISTANTS_TEST_PG_URL)");
ABSL_FLAG(double, seconds, 10, "measured window per throughput measurement");
ABSL_FLAG(double, warmup_seconds, 2, "load before each measured window");
ABSL_FLAG(int, concurrency, 32, "concurrent client streams (total)");
ABSL_FLAG(int, replicas, 3, "gateways on PostgreSQL in the scaled-out row");
ABSL_FLAG(int, rounds, 2,
          "throughput rounds, configurations rotated (the median shows)");
ABSL_FLAG(int, tokens, 20, "tokens of each answer in the throughput section");
ABSL_FLAG(int, latency_runs, 5, "paced runs in the latency section");
ABSL_FLAG(int, latency_tokens, 200, "tokens of each paced run");
ABSL_FLAG(int, latency_token_delay_ms, 10, "delay between those tokens");
ABSL_FLAG(int, latency_first_byte_ms, 1000,
          "the paced run's delay before its first token (the streams attach "
          "meanwhile; events before every stream attached are not counted)");
ABSL_FLAG(int, run_lease_ttl_ms, 10000, "--cluster_run_lease_ttl_ms");
ABSL_FLAG(bool, verbose, false, "print progress to stderr");
ABSL_FLAG(std::string, gateway, "",
          "assistants-gateway binary (default: the build tree's)");
ABSL_FLAG(std::string, fake_openai, "",
          "fake-openai binary (default: the build tree's)");

namespace assistants::bench {
namespace {

namespace v1 = ::assistants::v1;
using nlohmann::json;
using test_support::PgTestDb;
using test_support::ServerProcess;

// CTest's SKIP_RETURN_CODE for replica_bench_smoke.
constexpr int kSkipped = 77;

// "1-minute 5-minute 15-minute" load averages, as `uptime` shows them.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double one = 0, five = 0, fifteen = 0;
  in >> one >> five >> fifteen;
  return absl::StrFormat("%.2f, %.2f, %.2f", one, five, fifteen);
}

// A fresh schema on the benchmark's database, dropped with everything in it
// on destruction, so every measurement starts from empty tables.
class BenchSchema {
 public:
  explicit BenchSchema(std::string admin_url) : admin_url_(admin_url) {
    std::random_device random;
    schema_ = absl::StrFormat("replica_bench_%08x", random());
    url_ = PgTestDb::WithSearchPath(admin_url_, schema_);
    auto admin = pg::Connection::Open(admin_url_);
    status_ =
        admin.ok()
            ? (*admin)->Exec(absl::StrCat("CREATE SCHEMA ", schema_)).status()
            : admin.status();
  }
  ~BenchSchema() {
    auto admin = pg::Connection::Open(admin_url_);
    if (!admin.ok()) return;
    (*admin)
        ->Exec(absl::StrCat("DROP SCHEMA IF EXISTS ", schema_, " CASCADE"))
        .IgnoreError();
  }
  BenchSchema(const BenchSchema&) = delete;
  BenchSchema& operator=(const BenchSchema&) = delete;

  const absl::Status& status() const { return status_; }
  const std::string& url() const { return url_; }

 private:
  const std::string admin_url_;
  std::string schema_;
  std::string url_;
  absl::Status status_;
};

// utime, stime, cutime and cstime of `pid` (seconds) and its parent pid;
// false when /proc does not have it.
bool ReadStat(pid_t pid, double* own, double* children, pid_t* ppid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t name_end = text.rfind(')');
  if (name_end == std::string::npos) return false;
  std::istringstream fields(text.substr(name_end + 2));
  std::string field;
  double ticks[4] = {0, 0, 0, 0};
  for (int i = 3; i <= 17 && fields >> field; ++i) {
    if (i == 4) *ppid = static_cast<pid_t>(std::atol(field.c_str()));
    if (i >= 14) ticks[i - 14] = std::atof(field.c_str());
  }
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  *own = (ticks[0] + ticks[1]) / hz;
  *children = (ticks[2] + ticks[3]) / hz;
  return true;
}

// CPU of a local PostgreSQL server: the postmaster's own and its reaped
// children's (cutime/cstime), plus every live child's (its backends, the
// walwriter...). Differences of two readings are exact up to the 10 ms
// tick: a backend alive at both readings counts its growth, one that exited
// between them moves into the postmaster's cutime.
class DatabaseCpu {
 public:
  // Finds the postmaster from the server's data_directory (needs a
  // superuser and a server on this machine); available() says whether.
  explicit DatabaseCpu(const std::string& url) {
    auto conn = pg::Connection::Open(url);
    if (!conn.ok()) return;
    auto dir = (*conn)->Exec("SHOW data_directory");
    if (!dir.ok() || dir->rows() != 1) return;
    std::ifstream pid_file(dir->Text(0, 0) + "/postmaster.pid");
    long pid = 0;
    if (pid_file >> pid && pid > 0 && kill(static_cast<pid_t>(pid), 0) == 0) {
      postmaster_ = static_cast<pid_t>(pid);
    }
  }

  bool available() const { return postmaster_ > 0; }

  double Seconds() const {
    if (!available()) return 0;
    double own = 0, children = 0;
    pid_t ppid = 0;
    if (!ReadStat(postmaster_, &own, &children, &ppid)) return 0;
    double total = own + children;
    // Live children: every process whose parent is the postmaster.
    DIR* proc = opendir("/proc");
    if (proc == nullptr) return total;
    while (const dirent* entry = readdir(proc)) {
      const long pid = std::atol(entry->d_name);
      double child_own = 0, child_children = 0;
      pid_t parent = 0;
      if (pid > 0 &&
          ReadStat(static_cast<pid_t>(pid), &child_own, &child_children,
                   &parent) &&
          parent == postmaster_) {
        total += child_own;
      }
    }
    closedir(proc);
    return total;
  }

 private:
  pid_t postmaster_ = -1;
};

// One gateway configuration: `count` assistants-gateway processes on one
// store (replicas of a cluster on PostgreSQL, or one on SQLite).
class Gateways {
 public:
  // `pg_url` empty: SQLite in a temporary directory (count must be 1).
  bool Start(const std::string& binary, const std::string& fake_base,
             const std::string& pg_url, int count, int lease_ttl_ms,
             std::string* error) {
    processes_.clear();
    for (int i = 0; i < count; ++i) {
      auto process = std::make_unique<ServerProcess>();
      process->set_env(
          {"OPENAI_BASE_URL=" + fake_base + "/v1", "OPENAI_API_KEY=sk-fake"});
      std::vector<std::string> args;
      if (pg_url.empty()) {
        args = {"--db=" + dir_.path() + "/gateway.db"};
      } else {
        args = {"--store_postgres_url=" + pg_url,
                absl::StrCat("--cluster_replica_id=bench-", i),
                absl::StrCat("--cluster_run_lease_ttl_ms=", lease_ttl_ms)};
      }
      if (!process->Start(binary, args, error)) {
        *error = absl::StrCat("gateway ", i, ": ", *error);
        return false;
      }
      if (process->Connect() == nullptr) {
        *error = absl::StrCat("gateway ", i, " never accepted connections");
        return false;
      }
      processes_.push_back(std::move(process));
    }
    return true;
  }

  int count() const { return static_cast<int>(processes_.size()); }
  std::string address(int i) const { return processes_[i]->address(); }

  // Sum of every replica's CPU clock.
  double CpuSeconds() const {
    double total = 0;
    for (const auto& process : processes_) {
      total += ProcessCpuSeconds(process->pid());
    }
    return total;
  }

  // A new channel of its own (its own HTTP/2 connection) to replica `i`.
  std::shared_ptr<grpc::Channel> NewChannel(int i, int tag) const {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("assistants.bench_channel", tag);
    return grpc::CreateCustomChannel(address(i),
                                     grpc::InsecureChannelCredentials(), args);
  }

  // A plain assistant (no tools) created through replica 0; every replica
  // of a cluster sees it.
  bool CreateAssistant(std::string* id, std::string* error) const {
    auto stub = v1::AssistantService::NewStub(NewChannel(0, -1));
    v1::CreateAssistantRequest request;
    request.set_model("gpt-4o");
    request.set_instructions("You are a benchmark.");
    v1::CreateAssistantResponse response;
    const grpc::Status status =
        stub->CreateAssistant(Context().get(), request, &response);
    if (!status.ok()) {
      *error = "CreateAssistant: " + Describe(status);
      return false;
    }
    *id = response.assistant().id();
    return true;
  }

  // Stops every replica; what a replica printed when it did not exit
  // cleanly goes to stderr.
  void Stop() {
    for (auto& process : processes_) {
      const int status = process->Stop();
      if (status != 0) {
        std::fprintf(stderr, "gateway exited %s:\n%s\n",
                     test_support::DescribeWaitStatus(status).c_str(),
                     process->captured_stderr().c_str());
      }
    }
    processes_.clear();
  }

 private:
  test_support::TempDir dir_;
  std::vector<std::unique_ptr<ServerProcess>> processes_;
};

// ---------------------------------------------------------------------------
// 1. Throughput.

struct ThroughputOptions {
  double seconds = 10;
  double warmup_seconds = 2;
  int concurrency = 32;
  int tokens = 20;
  int rounds = 2;
  bool verbose = false;
};

struct Config {
  std::string store;  // "SQLite" or "PostgreSQL"
  int gateways = 1;
};

struct ThroughputSample {
  int runs = 0;
  double seconds = 0;  // first start -> last done
  double gateway_cpu_s = 0;
  double db_cpu_s = -1;  // -1: not measurable
  double client_cpu_s = 0;
  std::vector<double> run_ms;
  double runs_per_s() const { return seconds > 0 ? runs / seconds : 0; }
};

// One short run: RunEvents{create_thread_and_run} read to `done`; checks
// it completed with `tokens` text deltas.
bool ShortRun(v1::RunService::Stub* stub, const std::string& assistant_id,
              int tokens, std::string* error) {
  v1::RunEventsRequest request;
  auto* create = request.mutable_create_thread_and_run();
  create->mutable_options()->set_assistant_id(assistant_id);
  v1::MessageInput* message = create->mutable_thread()->add_messages();
  message->set_role(v1::MESSAGE_ROLE_USER);
  message->set_text("hi");
  auto context = Context(60);
  auto reader = stub->RunEvents(context.get(), request);
  v1::RunEventsResponse response;
  bool done = false;
  int deltas = 0;
  v1::RunStatus last = v1::RUN_STATUS_UNSPECIFIED;
  std::string last_error;
  while (reader->Read(&response)) {
    const v1::RunEvent& event = response.event();
    if (event.has_message_delta()) {
      ++deltas;
    } else if (event.has_run()) {
      last = event.run().status();
      last_error = event.run().last_error().message();
    } else if (event.has_done()) {
      done = true;
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) {
    *error = "RunEvents: " + Describe(status);
    return false;
  }
  if (!done || last != v1::RUN_STATUS_COMPLETED) {
    *error = absl::StrCat("run ended ", v1::RunStatus_Name(last),
                          done ? "" : ", no done",
                          last_error.empty() ? "" : ": ", last_error);
    return false;
  }
  if (deltas != tokens) {
    *error = absl::StrCat(deltas, " text deltas, want ", tokens);
    return false;
  }
  return true;
}

// `o.concurrency` callers, each with a channel of its own to every replica,
// start runs back to back for `seconds`, caller c's k-th run on replica
// (c + k) % replicas; the runs in flight at the deadline finish and count.
bool Drive(const Gateways& gateways, const std::string& assistant_id,
           double seconds, const ThroughputOptions& o,
           std::vector<double>* run_ms, double* elapsed, std::string* error) {
  std::vector<std::vector<std::unique_ptr<v1::RunService::Stub>>> stubs(
      o.concurrency);
  for (int c = 0; c < o.concurrency; ++c) {
    for (int r = 0; r < gateways.count(); ++r) {
      stubs[c].push_back(
          v1::RunService::NewStub(gateways.NewChannel(r, c * 16 + r)));
    }
  }
  std::atomic<int> failed{0};
  absl::Mutex mu;
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      start + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
  std::vector<std::thread> callers;
  for (int c = 0; c < o.concurrency; ++c) {
    callers.emplace_back([&, c] {
      for (int k = 0; Clock::now() < deadline && failed == 0; ++k) {
        const int replica = (c + k) % gateways.count();
        const Clock::time_point begin = Clock::now();
        std::string run_error;
        const bool ok = ShortRun(stubs[c][replica].get(), assistant_id,
                                 o.tokens, &run_error);
        const double ms = Micros(Clock::now() - begin) / 1e3;
        absl::MutexLock lock(&mu);
        if (!ok) {
          if (failed++ == 0) {
            *error = absl::StrCat("run via replica ", replica, ": ", run_error);
          }
          return;
        }
        run_ms->push_back(ms);
      }
    });
  }
  for (std::thread& caller : callers) caller.join();
  *elapsed = Seconds(Clock::now() - start);
  return failed == 0;
}

// One configuration's measurement on fresh gateways (and a fresh schema).
bool MeasureThroughput(const Config& config, const std::string& gateway_bin,
                       const std::string& fake_base, int fake_port,
                       const std::string& pg_admin_url, int lease_ttl_ms,
                       const ThroughputOptions& o, ThroughputSample* sample,
                       std::string* error) {
  std::unique_ptr<BenchSchema> schema;
  std::string url;
  if (config.store == "PostgreSQL") {
    schema = std::make_unique<BenchSchema>(pg_admin_url);
    if (!schema->status().ok()) {
      *error = absl::StrCat("CREATE SCHEMA: ", schema->status().ToString());
      return false;
    }
    url = schema->url();
  }
  Gateways gateways;
  if (!gateways.Start(gateway_bin, fake_base, url, config.gateways,
                      lease_ttl_ms, error)) {
    gateways.Stop();
    return false;
  }
  std::string assistant_id;
  std::string text;
  for (int i = 0; i < o.tokens; ++i) text += "tok ";
  // Enough steps for any run count: the script is replaced per measurement.
  bool ok = gateways.CreateAssistant(&assistant_id, error);
  if (ok &&
      !ResetFakeScript(fake_port, json::array({{{"text", text},
                                                {"tokens", o.tokens},
                                                {"repeat", 100000000}}}))) {
    *error = "cannot script fake-openai";
    ok = false;
  }
  std::vector<double> ignored;
  double warmup_elapsed = 0;
  if (ok && o.warmup_seconds > 0) {
    ok = Drive(gateways, assistant_id, o.warmup_seconds, o, &ignored,
               &warmup_elapsed, error);
  }
  if (ok) {
    const DatabaseCpu database(pg_admin_url);
    const bool with_db = config.store == "PostgreSQL" && database.available();
    const double gateway_cpu = gateways.CpuSeconds();
    const double db_cpu = database.Seconds();
    const double client_cpu = ProcessCpuSeconds(getpid());
    ok = Drive(gateways, assistant_id, o.seconds, o, &sample->run_ms,
               &sample->seconds, error);
    sample->gateway_cpu_s = gateways.CpuSeconds() - gateway_cpu;
    sample->db_cpu_s = with_db ? database.Seconds() - db_cpu : -1;
    sample->client_cpu_s = ProcessCpuSeconds(getpid()) - client_cpu;
    sample->runs = static_cast<int>(sample->run_ms.size());
  }
  gateways.Stop();
  if (ok && sample->runs == 0) {
    *error = "no run completed in the window";
    ok = false;
  }
  if (o.verbose && ok) {
    std::fprintf(stderr, "%s x%d: %d runs in %.2f s\n", config.store.c_str(),
                 config.gateways, sample->runs, sample->seconds);
  }
  return ok;
}

// The round whose runs/s is the median of `samples` (the lower middle one).
const ThroughputSample& MedianRound(
    const std::vector<ThroughputSample>& samples) {
  std::vector<size_t> order(samples.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return samples[a].runs_per_s() < samples[b].runs_per_s();
  });
  return samples[order[(order.size() - 1) / 2]];
}

std::string PerRunMs(double seconds, int runs) {
  return seconds < 0 || runs == 0
             ? "n/a"
             : absl::StrFormat("%.2f ms", seconds * 1e3 / runs);
}

void PrintThroughput(const std::vector<Config>& configs,
                     const std::vector<std::vector<ThroughputSample>>& samples,
                     const ThroughputOptions& o) {
  std::printf(
      "## Throughput: %d concurrent RunEvents{create_thread_and_run} "
      "streams, round-robin over the gateways, %g s after %g s of warm-up "
      "(median of %d round(s), configurations rotated)\n\n",
      o.concurrency, o.seconds, o.warmup_seconds, o.rounds);
  std::printf(
      "Model (fake-openai): a %d-token answer, no delay. CPU per run: "
      "gateways summed over replicas; PostgreSQL = the postmaster and its "
      "backends (every client of that server counts); load generator = this "
      "process.\n\n",
      o.tokens);
  std::printf(
      "| store | gateways | runs | runs/s | run p50 / p99 | gateway CPU / "
      "run | PostgreSQL CPU / run | load generator CPU / run |\n"
      "|---|---|---|---|---|---|---|---|\n");
  std::vector<double> rate(configs.size(), 0);
  for (size_t i = 0; i < configs.size(); ++i) {
    if (samples[i].empty()) {
      std::printf("| %s | %d | failed | | | | | |\n", configs[i].store.c_str(),
                  configs[i].gateways);
      continue;
    }
    const ThroughputSample& s = MedianRound(samples[i]);
    rate[i] = s.runs_per_s();
    std::printf("| %s | %d | %d | %.1f | %.1f / %.1f ms | %s | %s | %s |\n",
                configs[i].store.c_str(), configs[i].gateways, s.runs, rate[i],
                Percentile(s.run_ms, 0.5), Percentile(s.run_ms, 0.99),
                PerRunMs(s.gateway_cpu_s, s.runs).c_str(),
                PerRunMs(s.db_cpu_s, s.runs).c_str(),
                PerRunMs(s.client_cpu_s, s.runs).c_str());
  }
  // configs: 0 = SQLite x1, 1 = PostgreSQL x1, 2 = PostgreSQL xN.
  if (rate[0] > 0 && rate[1] > 0) {
    std::printf(
        "| **PostgreSQL / SQLite** (1 gateway each) | | | **%.2fx** "
        "| | | | |\n",
        rate[1] / rate[0]);
  }
  if (rate[1] > 0 && rate[2] > 0) {
    std::printf(
        "| **PostgreSQL %d gateways / 1 gateway** | | | **%.2fx** | "
        "| | | |\n",
        configs[2].gateways, rate[2] / rate[1]);
  }
  std::printf("\n");
}

// ---------------------------------------------------------------------------
// 2. Cross-replica stream latency.

struct LatencyOptions {
  int runs = 5;
  int tokens = 200;
  int token_delay_ms = 10;
  int first_byte_ms = 1000;
  bool verbose = false;
};

// One attached RunEvents stream: when each event (by sequence) arrived.
struct StreamLog {
  std::map<int64_t, Clock::time_point> arrived;
  Clock::time_point first{};
  bool done = false;
  grpc::Status status;
};

void ReadStream(v1::RunService::Stub* stub, const v1::Run& run,
                StreamLog* log) {
  v1::RunEventsRequest request;
  request.set_thread_id(run.thread_id());
  request.set_run_id(run.id());
  auto context = Context(120);
  auto reader = stub->RunEvents(context.get(), request);
  v1::RunEventsResponse response;
  while (reader->Read(&response)) {
    const Clock::time_point now = Clock::now();
    const v1::RunEvent& event = response.event();
    // Heartbeats and draining notices repeat the last real sequence.
    if (event.has_heartbeat() || event.has_draining()) continue;
    if (log->arrived.empty()) log->first = now;
    log->arrived.emplace(event.sequence(), now);
    if (event.has_done()) log->done = true;
  }
  log->status = reader->Finish();
}

struct LatencyResult {
  int runs = 0;
  int events = 0;                // counted (every stream attached)
  int all_events = 0;            // every event of the runs
  std::vector<double> cross_ms;  // B - A1
  std::vector<double> same_ms;   // A2 - A1
};

// Whether `log` holds sequences 1..n without a gap and ended with `done`.
bool Complete(const StreamLog& log, const char* name, std::string* error) {
  if (!log.status.ok()) {
    *error = absl::StrCat(name, ": RunEvents: ", Describe(log.status));
    return false;
  }
  if (!log.done || log.arrived.empty() || log.arrived.begin()->first != 1 ||
      log.arrived.rbegin()->first != static_cast<int64_t>(log.arrived.size())) {
    *error = absl::StrCat(name, ": ", log.arrived.size(),
                          " events, not 1..n ending with done");
    return false;
  }
  return true;
}

bool MeasureLatency(const std::string& gateway_bin,
                    const std::string& fake_base, int fake_port,
                    const std::string& pg_admin_url, int lease_ttl_ms,
                    const LatencyOptions& o, LatencyResult* result,
                    std::string* error) {
  BenchSchema schema(pg_admin_url);
  if (!schema.status().ok()) {
    *error = absl::StrCat("CREATE SCHEMA: ", schema.status().ToString());
    return false;
  }
  Gateways gateways;
  if (!gateways.Start(gateway_bin, fake_base, schema.url(), 2, lease_ttl_ms,
                      error)) {
    gateways.Stop();
    return false;
  }
  auto a = v1::RunService::NewStub(gateways.NewChannel(0, 1));
  auto a2 = v1::RunService::NewStub(gateways.NewChannel(0, 2));
  auto b = v1::RunService::NewStub(gateways.NewChannel(1, 3));
  std::string assistant_id;
  bool ok = gateways.CreateAssistant(&assistant_id, error);
  std::string text;
  for (int i = 0; i < o.tokens; ++i) text += "tok ";
  for (int r = 0; ok && r < o.runs; ++r) {
    if (!ResetFakeScript(
            fake_port, json::array({{{"text", text},
                                     {"tokens", o.tokens},
                                     {"first_byte_delay_ms", o.first_byte_ms},
                                     {"token_delay_ms", o.token_delay_ms}}}))) {
      *error = "cannot script fake-openai";
      ok = false;
      break;
    }
    // Created on A, so A drives it.
    v1::CreateThreadAndRunRequest create;
    create.mutable_options()->set_assistant_id(assistant_id);
    v1::MessageInput* message = create.mutable_thread()->add_messages();
    message->set_role(v1::MESSAGE_ROLE_USER);
    message->set_text("hi");
    v1::CreateThreadAndRunResponse created;
    const grpc::Status status =
        a->CreateThreadAndRun(Context().get(), create, &created);
    if (!status.ok()) {
      *error = "CreateThreadAndRun: " + Describe(status);
      ok = false;
      break;
    }
    StreamLog on_a, on_a2, on_b;
    {
      std::thread ta(ReadStream, a.get(), created.run(), &on_a);
      std::thread ta2(ReadStream, a2.get(), created.run(), &on_a2);
      std::thread tb(ReadStream, b.get(), created.run(), &on_b);
      ta.join();
      ta2.join();
      tb.join();
    }
    if (!Complete(on_a, "stream on A", error) ||
        !Complete(on_a2, "second stream on A", error) ||
        !Complete(on_b, "stream on B", error)) {
      ok = false;
      break;
    }
    if (on_a.arrived.size() != on_b.arrived.size() ||
        on_a.arrived.size() != on_a2.arrived.size()) {
      *error = absl::StrCat("streams saw ", on_a.arrived.size(), ", ",
                            on_a2.arrived.size(), " and ", on_b.arrived.size(),
                            " events");
      ok = false;
      break;
    }
    // Only events every stream received live: after each had attached
    // (its first event, possibly a replay, had arrived).
    const Clock::time_point attached =
        std::max({on_a.first, on_a2.first, on_b.first});
    int counted = 0;
    for (const auto& [sequence, at_a] : on_a.arrived) {
      const Clock::time_point at_a2 = on_a2.arrived.at(sequence);
      const Clock::time_point at_b = on_b.arrived.at(sequence);
      if (std::min({at_a, at_a2, at_b}) <= attached) continue;
      result->cross_ms.push_back(Micros(at_b - at_a) / 1e3);
      result->same_ms.push_back(Micros(at_a2 - at_a) / 1e3);
      ++counted;
      if (o.verbose) {
        std::fprintf(stderr, "  event %lld: B %+.2f ms, A2 %+.2f ms\n",
                     static_cast<long long>(sequence), result->cross_ms.back(),
                     result->same_ms.back());
      }
    }
    result->events += counted;
    result->all_events += static_cast<int>(on_a.arrived.size());
    ++result->runs;
    if (o.verbose) {
      std::fprintf(stderr, "paced run %d: %zu events, %d counted\n", r,
                   on_a.arrived.size(), counted);
    }
  }
  gateways.Stop();
  return ok;
}

void PrintLatency(const LatencyResult& r, const LatencyOptions& o) {
  std::printf(
      "## Cross-replica stream latency: a run driven by gateway A, streamed "
      "at once from A (twice) and from B\n\n");
  std::printf(
      "Model: %d tokens %d ms apart after %d ms (the streams attach "
      "meanwhile). Per event (same sequence), arrival on the stream minus "
      "arrival on A's first stream; %d of %d events of %d run(s) counted "
      "(those after every stream had attached). Negative: that stream got "
      "the event first.\n\n",
      o.tokens, o.token_delay_ms, o.first_byte_ms, r.events, r.all_events,
      r.runs);
  std::printf(
      "| stream | p50 | p99 | max | min | events > 100 ms late "
      "|\n|---|---|---|---|---|---|\n");
  auto row = [](const char* name, const std::vector<double>& values) {
    if (values.empty()) {
      std::printf("| %s | n/a | n/a | n/a | n/a | n/a |\n", name);
      return;
    }
    const LatencySummary s = Summarize(values);
    const auto late = std::count_if(values.begin(), values.end(),
                                    [](double ms) { return ms > 100; });
    std::printf(
        "| %s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %lld (%.1f %%) |\n",
        name, s.p50, s.p99, s.max,
        *std::min_element(values.begin(), values.end()),
        static_cast<long long>(late), 100.0 * late / values.size());
  };
  row("A, second stream (baseline: same replica, in-memory hub)", r.same_ms);
  row("**B, another replica (LISTEN/NOTIFY, then a store read)**", r.cross_ms);
  std::printf("\n");
}

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const bool quick = absl::GetFlag(FLAGS_quick);
  std::string pg_url = absl::GetFlag(FLAGS_pg_url);
  if (pg_url.empty()) pg_url = PgTestDb::AdminUrl();
  if (pg_url.empty()) {
    std::printf(
        "replica_bench: skipped, no PostgreSQL: pass --pg_url or set "
        "ASSISTANTS_TEST_PG_URL to a libpq URL of a database where the "
        "benchmark may CREATE SCHEMA (e.g. `export "
        "ASSISTANTS_TEST_PG_URL=$(scripts/pg-test-server.sh start)`)\n");
    return kSkipped;
  }
  ThroughputOptions throughput;
  throughput.seconds = quick ? 1 : std::max(0.1, absl::GetFlag(FLAGS_seconds));
  throughput.warmup_seconds =
      quick ? 0.3 : std::max(0.0, absl::GetFlag(FLAGS_warmup_seconds));
  throughput.concurrency =
      quick ? 4 : std::max(1, absl::GetFlag(FLAGS_concurrency));
  throughput.tokens = std::max(1, absl::GetFlag(FLAGS_tokens));
  throughput.rounds = quick ? 1 : std::max(1, absl::GetFlag(FLAGS_rounds));
  throughput.verbose = absl::GetFlag(FLAGS_verbose);
  LatencyOptions latency;
  latency.runs = quick ? 1 : std::max(1, absl::GetFlag(FLAGS_latency_runs));
  latency.tokens =
      quick ? 20 : std::max(1, absl::GetFlag(FLAGS_latency_tokens));
  latency.token_delay_ms =
      std::max(0, absl::GetFlag(FLAGS_latency_token_delay_ms));
  latency.first_byte_ms =
      std::max(0, absl::GetFlag(FLAGS_latency_first_byte_ms));
  latency.verbose = absl::GetFlag(FLAGS_verbose);
  const int replicas = std::max(2, absl::GetFlag(FLAGS_replicas));
  const int lease_ttl_ms = std::max(100, absl::GetFlag(FLAGS_run_lease_ttl_ms));
  std::string gateway_bin = absl::GetFlag(FLAGS_gateway);
  if (gateway_bin.empty()) gateway_bin = test_support::GatewayBinary();
  std::string fake_bin = absl::GetFlag(FLAGS_fake_openai);
  if (fake_bin.empty()) fake_bin = test_support::FakeOpenAiBinary();

  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::string error;
  ServerProcess fake;
  if (!fake.Start(fake_bin, {"--max_recorded_requests=0"}, &error)) {
    std::fprintf(stderr, "cannot start fake-openai: %s\n", error.c_str());
    return 1;
  }
  const std::string fake_base = absl::StrCat("http://127.0.0.1:", fake.port());
  const std::string load_before = LoadAverage();
  const bool db_cpu = DatabaseCpu(pg_url).available();

  int failures = 0;
  const std::vector<Config> configs = {
      {"SQLite", 1}, {"PostgreSQL", 1}, {"PostgreSQL", replicas}};
  std::vector<std::vector<ThroughputSample>> samples(configs.size());
  for (int round = 0; round < throughput.rounds; ++round) {
    for (size_t j = 0; j < configs.size(); ++j) {
      const size_t i = (j + round) % configs.size();
      ThroughputSample sample;
      if (!MeasureThroughput(configs[i], gateway_bin, fake_base, fake.port(),
                             pg_url, lease_ttl_ms, throughput, &sample,
                             &error)) {
        std::fprintf(stderr, "throughput (%s, %d gateway(s)): %s\n",
                     configs[i].store.c_str(), configs[i].gateways,
                     error.c_str());
        ++failures;
        continue;
      }
      samples[i].push_back(std::move(sample));
    }
  }
  LatencyResult latency_result;
  if (!MeasureLatency(gateway_bin, fake_base, fake.port(), pg_url, lease_ttl_ms,
                      latency, &latency_result, &error)) {
    std::fprintf(stderr, "cross-replica latency: %s\n", error.c_str());
    ++failures;
  }
  const std::string load_after = LoadAverage();

  std::printf(
      "Machine: %u cores; load average %s before, %s after. Every gateway, "
      "PostgreSQL (%s), fake-openai and this load generator share these "
      "cores: with %d gateways the replicas compete with each other and with "
      "the database for the same CPUs, so the scaled-out row measures the "
      "cost of coordination, not the headroom of %d machines.\n\n",
      std::thread::hardware_concurrency(), load_before.c_str(),
      load_after.c_str(),
      db_cpu ? "local, its CPU read from /proc" : "its CPU not measurable here",
      replicas, replicas);
  PrintThroughput(configs, samples, throughput);
  PrintLatency(latency_result, latency);
  std::fflush(stdout);
  fake.Stop();
  curl_global_cleanup();
  if (failures > 0) {
    std::fprintf(stderr, "replica_bench: %d functional failure(s)\n", failures);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace assistants::bench

int main(int argc, char** argv) { return assistants::bench::Main(argc, argv); }
