// loadgen: what the gateway adds to a unary call, against bench-echo-server
// (a trivial callback-API server answering the same methods with a fixed
// object of the same shape) measured in the same run. The machine is shared
// and noisy, so differences against the echo baseline are what to read.
//
// It starts bench-echo-server and one assistants-gateway per store (SQLite in
// a temporary directory, the production default, and :memory:) as child
// processes, creates an assistant (instructions + one function tool) in
// each gateway, and drives GetAssistant and CreateMessage with the gRPC
// callback client API over --channels HTTP/2 connections per server.
// CreateMessage rotates over --threads threads created fresh (untimed) for
// every measurement, so each one starts from the same store state: the
// gateway's cost per message grows with the thread's length (see
// --nofresh_threads), and threads of tens of messages are the common case.
// Loads:
//   - closed loop: C callers, each issuing its next call when the previous
//     one completes (--concurrency=1,64);
//   - open loop: calls sent at fixed planned times (--rate calls/s, and a
//     rate every server sustains: --open_fraction of the slowest server's
//     throughput at the highest concurrency). Latency runs from the planned
//     send time, so a sender or server falling behind is counted
//     (no coordinated omission).
// Variants (--variants, for each store in --stores) measure what the
// security and observability features cost, against the plain gateway on
// the same store in the same run (issue 8):
//   - plain:   the gateway as above (the access-log interceptor is always
//              on; at the default log level it writes nothing per call);
//   - auth:    an API keys file with one project's key (SHA-256 hash), the
//              client sending `authorization: Bearer KEY`, and the per-key
//              rate limiter on at 1,000,000 calls/s (burst as large), so it
//              is consulted on every call and never refuses one;
//   - metrics: metrics.listen on a free 127.0.0.1 port (the RPC metrics
//              interceptor and recorders); scraped once at the end, and the
//              run fails unless assistants_rpcs_total counted the calls;
//   - tls:     server TLS with a certificate made at start (openssl CLI, see
//              tests/support/test_certificates.h), the client trusting its
//              CA;
//   - tls_once: tls with the files read once at start
//              (tls.reload_interval_s=0: gRPC's SSL credentials) instead of
//              watched for rotation (the default: its TLS credentials over
//              a file-watching certificate provider);
//   - all:     auth+metrics+tls, what a production deployment runs.
// Any '+'-joined set of auth, metrics and tls is a variant too
// ("auth+metrics", "auth+tls_once"). Every call checks its ids' owner
// (tenancy), plain included: without keys the caller is the default project.
// Every call's latency is kept; each measurement reports count, calls/s,
// p50/p90/p99/p99.9/max, errors, the server's CPU (its process CPU clock:
// utime+stime of all threads) per call, calls per server CPU second
// ("calls/s per core") and its RSS. Servers are measured in turn (echo,
// gateway sqlite, gateway memory), --slices times per load with the slices
// pooled, so drifting load hits them alike; with --repeats > 1 every figure
// is the median over the repeats.
//
//   loadgen [--seconds=3] [--concurrency=1,64] [--rate=2000]
//           [--stores=sqlite,memory] [--variants=plain]
//           [--methods=GetAssistant,CreateMessage]
//           [--slices=3] [--repeats=1] [--threads=64] [--gateway=BIN]
//           [--echo=BIN] [--verbose]
//   loadgen --quick    (a few seconds; the CTest smoke test)
//
// Exits non-zero only on a functional failure (a call that fails, a wrong
// answer, a measurement without completed calls), never because of a timing.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/message.grpc.pb.h"
#include "assistants/v1/thread.grpc.pb.h"
#include "bench/bench_support.h"
#include "bench/weather_assistant.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "service/auth/api_keys.h"
#include "tests/support/prometheus_text.h"
#include "tests/support/server_process.h"
#include "tests/support/test_certificates.h"

#ifndef LOADGEN_ECHO_BIN
#define LOADGEN_ECHO_BIN "bench-echo-server"
#endif

ABSL_FLAG(std::string, gateway, "",
          "assistants-gateway binary (default: the build tree's)");
ABSL_FLAG(std::string, echo, "",
          "bench-echo-server binary (default: the build tree's)");
ABSL_FLAG(double, seconds, 3, "length of each measurement");
ABSL_FLAG(std::string, concurrency, "1,64",
          "closed-loop caller counts; the largest is the saturation point");
ABSL_FLAG(double, rate, 2000, "open-loop rate in calls/s (0 skips it)");
ABSL_FLAG(double, open_fraction, 0.5,
          "also run open loop at this fraction of the slowest server's "
          "throughput at the largest concurrency (0 skips it)");
ABSL_FLAG(std::string, stores, "sqlite,memory", "gateway stores to measure");
ABSL_FLAG(std::string, variants, "plain",
          "gateway variants per store: plain, auth, metrics, tls, tls_once, "
          "all, or a "
          "'+'-joined set of auth, metrics and tls");
ABSL_FLAG(std::string, methods, "GetAssistant,CreateMessage",
          "unary methods to measure");
ABSL_FLAG(int, slices, 3,
          "each measurement's --seconds are split into this many slices, "
          "interleaved across the servers and pooled");
ABSL_FLAG(int, repeats, 1, "measurements per server and load (median shown)");
ABSL_FLAG(double, warmup_seconds, 1, "warm-up per server and method");
ABSL_FLAG(int, channels, 2, "HTTP/2 connections per server");
ABSL_FLAG(int, threads, 64, "threads CreateMessage rotates over");
ABSL_FLAG(bool, fresh_threads, true,
          "new threads for every CreateMessage measurement (false: the same "
          "threads all along, so they grow through the run)");
ABSL_FLAG(bool, quick, false,
          "smoke mode: 0.3 s per measurement, 200 calls/s open loop");
ABSL_FLAG(bool, verbose, false,
          "print server pids and every measurement to stderr");

namespace {

namespace v1 = assistants::v1;
namespace ts = assistants::test_support;
using assistants::bench::Clock;
using assistants::bench::Describe;
using assistants::bench::Format;
using assistants::bench::LatencySummary;
using assistants::bench::Median;
using assistants::bench::MiB;
using assistants::bench::Micros;
using assistants::bench::ProcessCpuSeconds;
using assistants::bench::RssKiB;
using assistants::bench::Seconds;
using assistants::bench::Summarize;

constexpr std::chrono::seconds kCallDeadline(30);

constexpr char kMessageText[] =
    "What is the weather in Paris right now? Answer in celsius, please.";

enum class Method { kGetAssistant, kCreateMessage };

const char* MethodName(Method method) {
  return method == Method::kGetAssistant ? "GetAssistant" : "CreateMessage";
}

bool Fail(const std::string& message) {
  std::fprintf(stderr, "loadgen: %s\n", message.c_str());
  return false;
}

// The features a gateway variant turns on (see the banner).
struct Variant {
  std::string name = "plain";
  bool auth = false;
  bool metrics = false;
  bool tls = false;
  // TLS files read once at start (tls.reload_interval_s=0) instead of the
  // default watched files (gRPC's TLS credentials over a file watcher).
  bool tls_read_once = false;

  bool plain() const { return !auth && !metrics && !tls; }
};

// "plain", "all" or a '+'-joined set of auth, metrics and tls; false for
// anything else.
bool ParseVariant(absl::string_view text, Variant* variant) {
  *variant = Variant();
  variant->name = std::string(text);
  if (text == "plain") return true;
  if (text == "all") {
    variant->auth = variant->metrics = variant->tls = true;
    return true;
  }
  for (absl::string_view part : absl::StrSplit(text, '+')) {
    if (part == "tls_once") {
      if (variant->tls) return false;
      variant->tls = variant->tls_read_once = true;
      continue;
    }
    bool* feature = part == "auth"      ? &variant->auth
                    : part == "metrics" ? &variant->metrics
                    : part == "tls"     ? &variant->tls
                                        : nullptr;
    if (feature == nullptr || *feature) return false;
    *feature = true;
  }
  return true;
}

// One server under load: echo or a gateway with one store and variant.
struct Target {
  std::string name;  // "echo", "sqlite", "memory", "memory+auth", ...
  std::string store;
  Variant variant;
  bool gateway = false;
  // "Bearer KEY" sent with every call (auth variants), else empty.
  std::string authorization;
  int metrics_port = 0;  // metrics variants
  ts::ServerProcess process;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::AssistantService::Stub>> assistants;
  std::vector<std::unique_ptr<v1::MessageService::Stub>> messages;
  std::string assistant_id;
  std::vector<std::string> thread_ids;
  int64_t rss_start_kib = 0;
  size_t response_bytes[2] = {0, 0};  // by Method

  std::string Label() const {
    return gateway ? "gateway, " + name : std::string("echo (baseline)");
  }
};

// Reads the metrics port a metrics variant announced on stderr ("metrics
// listening on 127.0.0.1:PORT", printed after the gRPC port's line).
bool FindMetricsPort(Target* target) {
  const std::string marker = "metrics listening on 127.0.0.1:";
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < give_up) {
    const std::string text = target->process.captured_stderr();
    const size_t at = text.find(marker);
    const size_t end = at == std::string::npos ? at : text.find('\n', at);
    if (end != std::string::npos &&
        absl::SimpleAtoi(
            text.substr(at + marker.size(), end - at - marker.size()),
            &target->metrics_port)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Fail(target->Label() + ": no \"metrics listening on\" line");
}

// Scrapes a metrics variant's /metrics once and checks the RPC interceptor
// counted `method`'s successful calls, so the variant was really on. Puts
// the count in `*calls`.
bool CheckMetrics(Target* target, Method method, double* calls) {
  std::string page;
  const long status = assistants::bench::HttpCall(
      absl::StrCat("http://127.0.0.1:", target->metrics_port, "/metrics"), "",
      &page);
  if (status != 200) {
    return Fail(
        absl::StrCat(target->Label(), ": GET /metrics answered ", status));
  }
  const std::string service =
      method == Method::kGetAssistant ? "AssistantService" : "MessageService";
  *calls = ts::SeriesValue(page, "assistants_rpcs_total",
                           {{"method", absl::StrCat("/assistants.v1.", service,
                                                    "/", MethodName(method))},
                            {"code", "OK"}})
               .value_or(0);
  if (*calls <= 0) {
    return Fail(absl::StrCat(target->Label(), ": assistants_rpcs_total of ",
                             MethodName(method), " is 0 on /metrics"));
  }
  return true;
}

// A context for a setup call to `target`, with its API key if it has one.
std::unique_ptr<grpc::ClientContext> SetupContext(const Target& target) {
  std::unique_ptr<grpc::ClientContext> context = assistants::bench::Context();
  if (!target.authorization.empty()) {
    context->AddMetadata("authorization", target.authorization);
  }
  return context;
}

// Starts `target` and opens its channels with `credentials`: a local
// subchannel pool per channel (and distinct args), so each one is its own
// TCP connection.
bool StartTarget(Target* target, const std::string& binary,
                 const std::vector<std::string>& args, int channels,
                 const std::shared_ptr<grpc::ChannelCredentials>& credentials =
                     grpc::InsecureChannelCredentials()) {
  std::string error;
  if (!target->process.Start(binary, args, &error)) {
    return Fail(target->Label() + ": " + error);
  }
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments channel_args;
    channel_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel_args.SetInt("assistants.loadgen_channel", i);
    auto channel = grpc::CreateCustomChannel(target->process.address(),
                                             credentials, channel_args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(10))) {
      return Fail(target->Label() + " does not accept connections");
    }
    target->assistants.push_back(v1::AssistantService::NewStub(channel));
    target->messages.push_back(v1::MessageService::NewStub(channel));
    target->channels.push_back(std::move(channel));
  }
  return true;
}

// Replaces the threads CreateMessage rotates over with `threads` new empty
// ones; the echo server gets ids of the same shape (it stores nothing).
bool NewThreads(Target* target, int threads) {
  target->thread_ids.clear();
  if (!target->gateway) {
    for (int i = 0; i < threads; ++i) {
      target->thread_ids.push_back(
          absl::StrCat("thread_0123456789abcdef012", 10000 + i));
    }
    return true;
  }
  auto thread_stub = v1::ThreadService::NewStub(target->channels[0]);
  for (int i = 0; i < threads; ++i) {
    v1::CreateThreadResponse thread;
    grpc::Status status = thread_stub->CreateThread(
        SetupContext(*target).get(), v1::CreateThreadRequest(), &thread);
    if (!status.ok()) {
      return Fail(target->Label() + ": CreateThread: " + Describe(status));
    }
    target->thread_ids.push_back(thread.thread().id());
  }
  return true;
}

// Gives a gateway the assistant and threads the calls use.
bool SetUpTarget(Target* target, int threads) {
  if (!target->gateway) {
    target->assistant_id = "asst_0123456789abcdef01234567";
    return NewThreads(target, threads);
  }
  v1::CreateAssistantRequest create;
  if (!assistants::bench::FillWeatherAssistant(&create)) {
    return Fail("bad tool parameters");
  }
  v1::CreateAssistantResponse created;
  grpc::Status status = target->assistants[0]->CreateAssistant(
      SetupContext(*target).get(), create, &created);
  if (!status.ok()) {
    return Fail(target->Label() + ": CreateAssistant: " + Describe(status));
  }
  target->assistant_id = created.assistant().id();
  return NewThreads(target, threads);
}

template <typename Request, typename Response>
struct Call {
  grpc::ClientContext context;
  Request request;
  Response response;
};

using Done = std::function<void(const grpc::Status&)>;

// Starts call number `n` of `method` on `target` (callback API); `done` runs
// on a gRPC thread with the status, or INTERNAL for a wrong answer.
void StartCall(Target* target, Method method, uint64_t n, Done done) {
  const size_t channel = n % target->channels.size();
  const auto deadline = std::chrono::system_clock::now() + kCallDeadline;
  if (method == Method::kGetAssistant) {
    auto* call = new Call<v1::GetAssistantRequest, v1::GetAssistantResponse>;
    call->context.set_deadline(deadline);
    if (!target->authorization.empty()) {
      call->context.AddMetadata("authorization", target->authorization);
    }
    call->request.set_assistant_id(target->assistant_id);
    target->assistants[channel]->async()->GetAssistant(
        &call->context, &call->request, &call->response,
        [call, done = std::move(done)](grpc::Status status) {
          if (status.ok() && (call->response.assistant().id() !=
                                  call->request.assistant_id() ||
                              call->response.assistant().tools_size() != 1)) {
            status = grpc::Status(grpc::StatusCode::INTERNAL,
                                  "GetAssistant: wrong assistant");
          }
          done(status);
          delete call;
        });
    return;
  }
  auto* call = new Call<v1::CreateMessageRequest, v1::CreateMessageResponse>;
  call->context.set_deadline(deadline);
  if (!target->authorization.empty()) {
    call->context.AddMetadata("authorization", target->authorization);
  }
  call->request.set_thread_id(target->thread_ids[(n / target->channels.size()) %
                                                 target->thread_ids.size()]);
  call->request.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
  call->request.mutable_message()->set_text(kMessageText);
  target->messages[channel]->async()->CreateMessage(
      &call->context, &call->request, &call->response,
      [call, done = std::move(done)](grpc::Status status) {
        const v1::Message& message = call->response.message();
        if (status.ok() &&
            (message.id().empty() ||
             message.thread_id() != call->request.thread_id() ||
             message.content_size() != 1 ||
             message.content(0).text().value() != kMessageText)) {
          status = grpc::Status(grpc::StatusCode::INTERNAL,
                                "CreateMessage: wrong message");
        }
        done(status);
        delete call;
      });
}

// One blocking call: checks the method works and keeps the response size.
bool ResponseBytes(Target* target, Method method) {
  grpc::Status result;
  size_t bytes = 0;
  if (method == Method::kGetAssistant) {
    v1::GetAssistantRequest request;
    request.set_assistant_id(target->assistant_id);
    v1::GetAssistantResponse response;
    result = target->assistants[0]->GetAssistant(SetupContext(*target).get(),
                                                 request, &response);
    bytes = response.ByteSizeLong();
  } else {
    v1::CreateMessageRequest request;
    request.set_thread_id(target->thread_ids[0]);
    request.mutable_message()->set_role(v1::MESSAGE_ROLE_USER);
    request.mutable_message()->set_text(kMessageText);
    v1::CreateMessageResponse response;
    result = target->messages[0]->CreateMessage(SetupContext(*target).get(),
                                                request, &response);
    bytes = response.ByteSizeLong();
  }
  if (!result.ok()) {
    return Fail(absl::StrCat(target->Label(), ": ", MethodName(method), ": ",
                             Describe(result)));
  }
  target->response_bytes[static_cast<int>(method)] = bytes;
  return true;
}

// A load: closed loop with `callers` outstanding calls, or open loop at
// `rate` calls/s.
struct Load {
  int callers = 0;  // > 0: closed loop
  double rate = 0;  // > 0: open loop
  bool sustainable = false;

  std::string Label() const {
    if (callers > 0) {
      return absl::StrCat(callers, callers == 1 ? " caller" : " callers");
    }
    return absl::StrCat("open ", static_cast<int64_t>(rate), "/s",
                        sustainable ? " (sustainable)" : "");
  }
};

// What one measurement found.
struct Figures {
  LatencySummary latency;  // µs
  double calls = 0;
  double calls_per_s = 0;
  double errors = 0;
  double server_cpu_us_per_call = 0;
  double server_cores = 0;      // server CPU s / wall s
  double calls_per_core_s = 0;  // calls / server CPU s
  double client_cpu_us_per_call = 0;
  double rss_after_kib = 0;
  double max_send_lag_us = 0;  // open loop: how late the sender was
};

// The median of every figure over repeats.
Figures MedianOf(const std::vector<Figures>& all) {
  if (all.size() == 1) return all[0];
  Figures median;
  auto field = [&](auto member) {
    std::vector<double> values;
    for (const Figures& f : all)
      values.push_back(static_cast<double>(f.*member));
    return Median(values);
  };
  auto latency = [&](double LatencySummary::*member) {
    std::vector<double> values;
    for (const Figures& f : all) values.push_back(f.latency.*member);
    return Median(values);
  };
  median.latency.count = static_cast<size_t>(field(&Figures::calls));
  median.latency.p50 = latency(&LatencySummary::p50);
  median.latency.p90 = latency(&LatencySummary::p90);
  median.latency.p99 = latency(&LatencySummary::p99);
  median.latency.p999 = latency(&LatencySummary::p999);
  median.latency.max = latency(&LatencySummary::max);
  median.calls = field(&Figures::calls);
  median.calls_per_s = field(&Figures::calls_per_s);
  median.errors = field(&Figures::errors);
  median.server_cpu_us_per_call = field(&Figures::server_cpu_us_per_call);
  median.server_cores = field(&Figures::server_cores);
  median.calls_per_core_s = field(&Figures::calls_per_core_s);
  median.client_cpu_us_per_call = field(&Figures::client_cpu_us_per_call);
  median.rss_after_kib = field(&Figures::rss_after_kib);
  median.max_send_lag_us = field(&Figures::max_send_lag_us);
  return median;
}

// Shared by the calls of one measurement: counts, the first error, the end.
class Tally {
 public:
  explicit Tally(size_t expected) : outstanding_(expected) {}

  // Counts one finished call (or caller, in a closed loop).
  void Finish() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--outstanding_ == 0) all_done_.notify_all();
  }
  void Error(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    if (errors_++ == 0) first_error_ = Describe(status);
  }
  // Waits until every call finished. Every call carries a deadline, so gRPC
  // finishes it; waiting with a timeout and returning early would leave
  // callbacks pointing at state the caller frees.
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    all_done_.wait(lock, [&] { return outstanding_ == 0; });
  }
  size_t errors() const {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }
  std::string first_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable all_done_;
  size_t outstanding_;
  size_t errors_ = 0;
  std::string first_error_;
};

// Closed loop: `callers` chains of calls; a chain issues its next call from
// the previous one's completion until `seconds` have passed.
class ClosedLoop {
 public:
  ClosedLoop(Target* target, Method method, int callers, double seconds)
      : target_(target),
        method_(method),
        slots_(static_cast<size_t>(callers)),
        tally_(static_cast<size_t>(callers)),
        seconds_(seconds) {}

  // Runs the loop; `latencies_us` gets every call's latency.
  bool Run(std::vector<double>* latencies_us, Tally** tally) {
    end_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(seconds_));
    for (size_t i = 0; i < slots_.size(); ++i) {
      slots_[i].latencies.reserve(
          static_cast<size_t>(seconds_ * 20000 / slots_.size()) + 16);
      Issue(i);
    }
    tally_.Wait();
    for (Slot& slot : slots_) {
      latencies_us->insert(latencies_us->end(), slot.latencies.begin(),
                           slot.latencies.end());
    }
    *tally = &tally_;
    return true;
  }

 private:
  struct Slot {
    std::vector<double> latencies;
    Clock::time_point started;
  };

  void Issue(size_t slot) {
    slots_[slot].started = Clock::now();
    StartCall(target_, method_, next_.fetch_add(1, std::memory_order_relaxed),
              [this, slot](const grpc::Status& status) {
                const Clock::time_point now = Clock::now();
                Slot& s = slots_[slot];
                if (status.ok()) {
                  s.latencies.push_back(Micros(now - s.started));
                } else {
                  tally_.Error(status);
                }
                if (now < end_ && status.ok()) {
                  Issue(slot);
                } else {
                  tally_.Finish();
                }
              });
  }

  Target* target_;
  Method method_;
  std::vector<Slot> slots_;
  Tally tally_;
  double seconds_;
  Clock::time_point end_;
  std::atomic<uint64_t> next_{0};
};

// Open loop: call i is due at start + i / rate; its latency runs from then.
bool OpenLoop(Target* target, Method method, double rate, double seconds,
              std::vector<double>* latencies_us, double* max_lag_us,
              size_t* errors, std::string* first_error) {
  const size_t count = std::max<size_t>(1, std::llround(rate * seconds));
  std::vector<double> latencies(count, -1);
  Tally tally(count);
  const Clock::time_point start = Clock::now();
  double max_lag = 0;
  for (size_t i = 0; i < count; ++i) {
    const Clock::time_point due =
        start + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double>(i / rate));
    Clock::time_point now = Clock::now();
    if (now < due) {
      std::this_thread::sleep_until(due);
      now = Clock::now();
    }
    max_lag = std::max(max_lag, Micros(now - due));
    StartCall(target, method, i,
              [&latencies, &tally, i, due](const grpc::Status& status) {
                if (status.ok()) {
                  latencies[i] = Micros(Clock::now() - due);
                } else {
                  tally.Error(status);
                }
                tally.Finish();
              });
  }
  tally.Wait();
  for (double latency : latencies) {
    if (latency >= 0) latencies_us->push_back(latency);
  }
  *max_lag_us = max_lag;
  *errors = tally.errors();
  *first_error = tally.first_error();
  return true;
}

// The raw outcome of one or more slices of a measurement, pooled.
struct Sample {
  std::vector<double> latencies_us;
  double wall_s = 0;
  double server_cpu_s = 0;
  double client_cpu_s = 0;
  double max_send_lag_us = 0;
  int64_t rss_after_kib = 0;
  size_t errors = 0;
};

Figures ToFigures(Sample sample) {
  Figures figures;
  const double calls = static_cast<double>(sample.latencies_us.size());
  figures.latency = Summarize(std::move(sample.latencies_us));
  figures.calls = calls;
  figures.calls_per_s = sample.wall_s > 0 ? calls / sample.wall_s : 0;
  figures.errors = static_cast<double>(sample.errors);
  figures.server_cpu_us_per_call =
      calls > 0 ? sample.server_cpu_s * 1e6 / calls : 0;
  figures.server_cores =
      sample.wall_s > 0 ? sample.server_cpu_s / sample.wall_s : 0;
  figures.calls_per_core_s =
      sample.server_cpu_s > 0 ? calls / sample.server_cpu_s : 0;
  figures.client_cpu_us_per_call =
      calls > 0 ? sample.client_cpu_s * 1e6 / calls : 0;
  figures.rss_after_kib = static_cast<double>(sample.rss_after_kib);
  figures.max_send_lag_us = sample.max_send_lag_us;
  return figures;
}

// Runs `load` on `target` for `seconds` and adds the outcome to `*sample`;
// CreateMessage first gets `new_threads` fresh threads unless that is 0.
// False on a functional failure (a failed call, no call completed).
bool Measure(Target* target, Method method, const Load& load, double seconds,
             int new_threads, Sample* sample) {
  if (method == Method::kCreateMessage && new_threads > 0 &&
      !NewThreads(target, new_threads)) {
    return false;
  }
  const pid_t pid = target->process.pid();
  std::vector<double> latencies;
  size_t errors = 0;
  std::string first_error;
  double max_lag = 0;
  const double server_cpu_before = ProcessCpuSeconds(pid);
  const double client_cpu_before = ProcessCpuSeconds(getpid());
  const Clock::time_point start = Clock::now();
  if (load.callers > 0) {
    ClosedLoop loop(target, method, load.callers, seconds);
    Tally* tally = nullptr;
    if (!loop.Run(&latencies, &tally)) {
      return Fail("closed loop: calls did not finish");
    }
    errors = tally->errors();
    first_error = tally->first_error();
  } else if (!OpenLoop(target, method, load.rate, seconds, &latencies, &max_lag,
                       &errors, &first_error)) {
    return false;
  }
  const double wall = Seconds(Clock::now() - start);
  const double server_cpu = ProcessCpuSeconds(pid) - server_cpu_before;
  const double client_cpu = ProcessCpuSeconds(getpid()) - client_cpu_before;
  const size_t calls = latencies.size();
  if (absl::GetFlag(FLAGS_verbose)) {
    std::fprintf(stderr,
                 "loadgen: %s %s %s: %zu calls in %.2f s, p50 %.0f us, "
                 "server cpu %.1f us/call, %zu errors\n",
                 MethodName(method), load.Label().c_str(),
                 target->Label().c_str(), calls, wall,
                 assistants::bench::Percentile(latencies, 0.5),
                 calls > 0 ? server_cpu * 1e6 / calls : 0.0, errors);
  }
  sample->latencies_us.insert(sample->latencies_us.end(), latencies.begin(),
                              latencies.end());
  sample->wall_s += wall;
  sample->server_cpu_s += server_cpu;
  sample->client_cpu_s += client_cpu;
  sample->max_send_lag_us = std::max(sample->max_send_lag_us, max_lag);
  sample->rss_after_kib = RssKiB(pid);
  sample->errors += errors;
  if (errors > 0) {
    return Fail(absl::StrCat(MethodName(method), " ", load.Label(), " on ",
                             target->Label(), ": ", errors,
                             " calls failed, first: ", first_error));
  }
  if (calls == 0) {
    return Fail(absl::StrCat(MethodName(method), " ", load.Label(), " on ",
                             target->Label(), ": no call completed"));
  }
  return true;
}

// Results of one method and load, by target (median over repeats).
struct Row {
  Method method;
  Load load;
  std::vector<Figures> by_target;
};

std::string Verdict(bool meets) { return meets ? "meets" : "**misses**"; }

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const bool quick = absl::GetFlag(FLAGS_quick);
  const bool verbose = absl::GetFlag(FLAGS_verbose);
  const double seconds = quick ? 0.3 : absl::GetFlag(FLAGS_seconds);
  const double warmup = quick ? 0.1 : absl::GetFlag(FLAGS_warmup_seconds);
  const double rate = quick ? std::min(200.0, absl::GetFlag(FLAGS_rate))
                            : absl::GetFlag(FLAGS_rate);
  const double open_fraction = absl::GetFlag(FLAGS_open_fraction);
  const int repeats = quick ? 1 : std::max(1, absl::GetFlag(FLAGS_repeats));
  const int slices = quick ? 1 : std::max(1, absl::GetFlag(FLAGS_slices));
  const int channels = std::max(1, absl::GetFlag(FLAGS_channels));
  const int threads = quick ? 4 : std::max(1, absl::GetFlag(FLAGS_threads));
  const int new_threads = absl::GetFlag(FLAGS_fresh_threads) ? threads : 0;
  if (seconds <= 0) {
    std::fprintf(stderr, "--seconds must be positive\n");
    return 2;
  }
  std::vector<int> concurrency;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_concurrency),
                                               ',', absl::SkipEmpty())) {
    int callers = 0;
    if (!absl::SimpleAtoi(part, &callers) || callers < 1) {
      std::fprintf(stderr, "--concurrency: bad caller count \"%s\"\n",
                   std::string(part).c_str());
      return 2;
    }
    concurrency.push_back(callers);
  }
  std::vector<Method> methods;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_methods), ',', absl::SkipEmpty())) {
    if (part == "GetAssistant") {
      methods.push_back(Method::kGetAssistant);
    } else if (part == "CreateMessage") {
      methods.push_back(Method::kCreateMessage);
    } else {
      std::fprintf(stderr, "--methods: unknown method %s\n",
                   std::string(part).c_str());
      return 2;
    }
  }
  std::vector<std::string> stores =
      absl::StrSplit(absl::GetFlag(FLAGS_stores), ',', absl::SkipEmpty());
  for (const std::string& store : stores) {
    if (store != "sqlite" && store != "memory") {
      std::fprintf(stderr, "--stores: unknown store %s\n", store.c_str());
      return 2;
    }
  }
  std::vector<Variant> variants;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_variants), ',', absl::SkipEmpty())) {
    Variant variant;
    if (!ParseVariant(part, &variant)) {
      std::fprintf(stderr, "--variants: unknown variant %s\n",
                   std::string(part).c_str());
      return 2;
    }
    variants.push_back(variant);
  }
  if (variants.empty()) {
    std::fprintf(stderr, "--variants: none given\n");
    return 2;
  }
  std::string gateway_bin = absl::GetFlag(FLAGS_gateway);
  if (gateway_bin.empty()) gateway_bin = ts::GatewayBinary();
  std::string echo_bin = absl::GetFlag(FLAGS_echo);
  if (echo_bin.empty()) echo_bin = LOADGEN_ECHO_BIN;

  // What the variants need: one project's API key (the gateway keeps only
  // its hash) and a server certificate with the CA the client trusts.
  ts::TempDir dir;
  const bool any_auth = std::any_of(variants.begin(), variants.end(),
                                    [](const Variant& v) { return v.auth; });
  const bool any_tls = std::any_of(variants.begin(), variants.end(),
                                   [](const Variant& v) { return v.tls; });
  constexpr char kApiKey[] = "loadgen-key-0123456789abcdef";
  const std::string keys_file = dir.path() + "/api-keys.json";
  if (any_auth) {
    std::ofstream(keys_file)
        << nlohmann::json{{"keys",
                           {{{"project", "proj_loadgen"},
                             {"name", "loadgen"},
                             {"sha256",
                              assistants::auth::ApiKeys::Sha256Hex(kApiKey)}}}}}
               .dump()
        << "\n";
  }
  ts::TestCertificates certs;
  std::shared_ptr<grpc::ChannelCredentials> tls_credentials;
  if (any_tls) {
    std::string error;
    if (!ts::MakeTestCertificates(dir.path(), &certs, &error)) {
      std::fprintf(stderr, "loadgen: test certificates: %s\n", error.c_str());
      return 1;
    }
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ts::ReadTextFile(certs.ca_cert);
    tls_credentials = grpc::SslCredentials(options);
  }

  // Target 0 is the echo baseline, then one gateway per store and variant.
  std::vector<std::unique_ptr<Target>> targets;
  targets.push_back(std::make_unique<Target>());
  targets.back()->name = "echo";
  if (!StartTarget(targets.back().get(), echo_bin, {}, channels)) return 1;
  for (const std::string& store : stores) {
    for (const Variant& variant : variants) {
      targets.push_back(std::make_unique<Target>());
      Target* target = targets.back().get();
      target->store = store;
      target->variant = variant;
      target->name =
          variant.plain() ? store : absl::StrCat(store, "+", variant.name);
      target->gateway = true;
      const std::string db =
          store == "memory"
              ? ":memory:"
              : absl::StrCat(dir.path(), "/", targets.size(), ".db");
      std::vector<std::string> args = {"--db=" + db};
      if (variant.auth) {
        args.push_back("--api_keys_file=" + keys_file);
        args.push_back("--requests_per_second_per_key=1000000");
        args.push_back("--burst_per_key=1000000");
        target->authorization = absl::StrCat("Bearer ", kApiKey);
      }
      if (variant.metrics) args.push_back("--metrics_listen=127.0.0.1:0");
      if (variant.tls) {
        args.push_back("--tls_cert_file=" + certs.server_cert);
        args.push_back("--tls_key_file=" + certs.server_key);
        if (variant.tls_read_once) {
          args.push_back("--tls_reload_interval_s=0");
        }
      }
      if (!StartTarget(target, gateway_bin, args, channels,
                       variant.tls ? tls_credentials
                                   : grpc::InsecureChannelCredentials())) {
        return 1;
      }
      if (variant.metrics && !FindMetricsPort(target)) return 1;
    }
  }
  for (auto& target : targets) {
    if (!SetUpTarget(target.get(), threads)) return 1;
    for (Method method : methods) {
      if (!ResponseBytes(target.get(), method)) return 1;
    }
    target->rss_start_kib = RssKiB(target->process.pid());
    if (verbose) {
      std::fprintf(stderr, "loadgen: %s pid %d at %s\n",
                   target->Label().c_str(), target->process.pid(),
                   target->process.address().c_str());
    }
  }

  std::vector<Row> rows;
  for (Method method : methods) {
    // Warm-up: connections, allocators, the store's caches and statements.
    for (auto& target : targets) {
      Sample ignored;
      if (!Measure(target.get(), method, Load{16, 0, false}, warmup,
                   new_threads, &ignored)) {
        return 1;
      }
    }
    std::vector<Load> loads;
    for (int callers : concurrency) loads.push_back(Load{callers, 0, false});
    if (rate > 0) loads.push_back(Load{0, rate, false});
    // Each repeat pools `slices` rounds of (echo, gateway, ...) in rotating
    // order, so drifting load from other processes hits every server alike.
    auto measure = [&](const Load& load) {
      std::vector<std::vector<Figures>> samples(targets.size());
      for (int r = 0; r < repeats; ++r) {
        std::vector<Sample> pooled(targets.size());
        for (int slice = 0; slice < slices; ++slice) {
          // The order rotates, so the work one server leaves behind (SQLite's
          // checkpoint thread) does not always land in the same neighbour.
          for (size_t k = 0; k < targets.size(); ++k) {
            const size_t t =
                (k + static_cast<size_t>(slice + r * slices)) % targets.size();
            if (!Measure(targets[t].get(), method, load, seconds / slices,
                         new_threads, &pooled[t])) {
              return false;
            }
          }
        }
        for (size_t t = 0; t < targets.size(); ++t) {
          samples[t].push_back(ToFigures(std::move(pooled[t])));
        }
      }
      Row row{method, load, {}};
      for (const auto& per_target : samples) {
        row.by_target.push_back(MedianOf(per_target));
      }
      rows.push_back(std::move(row));
      return true;
    };
    for (const Load& load : loads) {
      if (!measure(load)) return 1;
    }
    if (open_fraction > 0 && !concurrency.empty()) {
      // A rate every server sustains: a fraction of the slowest one's
      // throughput at the largest concurrency.
      const int saturation =
          *std::max_element(concurrency.begin(), concurrency.end());
      double slowest = 0;
      for (const Row& row : rows) {
        if (row.method != method || row.load.callers != saturation) continue;
        for (const Figures& figures : row.by_target) {
          if (slowest == 0 || figures.calls_per_s < slowest) {
            slowest = figures.calls_per_s;
          }
        }
      }
      double sustainable = std::floor(slowest * open_fraction / 100) * 100;
      if (sustainable < 100) sustainable = std::max(10.0, slowest / 2);
      // Within 10 % of --rate, the --rate measurement already shows it.
      if (!(rate > 0 && std::abs(sustainable - rate) <= rate / 10) &&
          !measure(Load{0, sustainable, true})) {
        return 1;
      }
    }
  }

  // The metrics variants prove they were on: their /metrics counted the
  // calls.
  std::vector<std::pair<std::string, std::string>> metrics_proof;
  for (auto& target : targets) {
    if (!target->gateway || !target->variant.metrics) continue;
    std::vector<std::string> counts;
    for (Method method : methods) {
      double calls = 0;
      if (!CheckMetrics(target.get(), method, &calls)) return 1;
      counts.push_back(
          absl::StrCat(MethodName(method), " ", static_cast<int64_t>(calls)));
    }
    metrics_proof.emplace_back(target->Label(), absl::StrJoin(counts, ", "));
  }

  // ---- Report.
  const size_t n = targets.size();
  std::vector<std::string> variant_names;
  for (const Variant& variant : variants) variant_names.push_back(variant.name);
  std::printf(
      "## Unary calls through the gateway (variants: %s) vs a trivial echo "
      "server (%s per measurement in %d interleaved slice%s, %d repeat%s, %d "
      "connections per server)\n\n",
      absl::StrJoin(variant_names, ", ").c_str(),
      Format("%.1f s", seconds).c_str(), slices, slices == 1 ? "" : "s",
      repeats, repeats == 1 ? "" : "s", channels);
  std::printf("Response sizes (bytes, echo vs gateway):");
  for (Method method : methods) {
    std::printf(" %s %zu vs", MethodName(method),
                targets[0]->response_bytes[static_cast<int>(method)]);
    for (size_t t = 1; t < n; ++t) {
      std::printf(" %zu (%s)%s",
                  targets[t]->response_bytes[static_cast<int>(method)],
                  targets[t]->name.c_str(), t + 1 < n ? "," : "");
    }
    std::printf(";");
  }
  std::printf("\n\n");

  std::printf(
      "| method | load | store | echo p50 / p99 | gateway p50 / p99 | added "
      "p50 / p99 | gateway CPU/call (echo) | added CPU/call | gateway calls/s "
      "(echo) | calls/s per gateway core (echo) |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& row : rows) {
    const Figures& echo = row.by_target[0];
    for (size_t t = 1; t < n; ++t) {
      const Figures& gw = row.by_target[t];
      std::printf(
          "| %s | %s | %s | %.0f / %.0f µs | %.0f / %.0f µs | **%+.0f / %+.0f "
          "µs** | %.1f µs (%.1f) | %+.1f µs | %.0f (%.0f) | %.0f (%.0f) |\n",
          MethodName(row.method), row.load.Label().c_str(),
          targets[t]->name.c_str(), echo.latency.p50, echo.latency.p99,
          gw.latency.p50, gw.latency.p99, gw.latency.p50 - echo.latency.p50,
          gw.latency.p99 - echo.latency.p99, gw.server_cpu_us_per_call,
          echo.server_cpu_us_per_call,
          gw.server_cpu_us_per_call - echo.server_cpu_us_per_call,
          gw.calls_per_s, echo.calls_per_s, gw.calls_per_core_s,
          echo.calls_per_core_s);
    }
  }

  // Each variant against the plain gateway on its store, same load.
  auto plain_of = [&](size_t t) -> size_t {
    for (size_t p = 1; p < n; ++p) {
      if (targets[p]->store == targets[t]->store &&
          targets[p]->variant.plain()) {
        return p;
      }
    }
    return 0;
  };
  bool any_variant = false;
  for (size_t t = 1; t < n; ++t) {
    any_variant = any_variant || (!targets[t]->variant.plain() && plain_of(t));
  }
  if (any_variant) {
    std::printf(
        "\n### Security and observability overhead: each variant vs the plain "
        "gateway on the same store, same run\n\n"
        "Variants: auth = API key (`authorization: Bearer`, SHA-256 lookup) + "
        "per-key rate limiter (1,000,000/s, never refusing); metrics = "
        "metrics.listen (RPC metrics interceptor and recorders); tls = server "
        "TLS; all = the three.\n\n"
        "| method | load | gateway | p50 / p99 (plain) | added vs plain p50 / "
        "p99 | CPU/call (plain) | added CPU/call | CPU ratio | calls/s "
        "(plain) | added vs echo p50 / p99 | tenancy cache misses |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const Row& row : rows) {
      const Figures& echo = row.by_target[0];
      for (size_t t = 1; t < n; ++t) {
        const size_t p = plain_of(t);
        if (targets[t]->variant.plain() || p == 0) continue;
        const Figures& gw = row.by_target[t];
        const Figures& plain = row.by_target[p];
        // GetAssistant names one assistant: after the first call, every
        // owner check is a cache hit. CreateMessage's fresh threads miss
        // once each per slice.
        const double misses = row.method == Method::kCreateMessage
                                  ? static_cast<double>(new_threads) * slices
                                  : 0;
        std::printf(
            "| %s | %s | %s | %.0f / %.0f µs (%.0f / %.0f) | **%+.0f / %+.0f "
            "µs** | %.1f µs (%.1f) | **%+.1f µs** | %.2f | %.0f (%.0f) | %+.0f "
            "/ %+.0f µs | %.0f of %.0f calls |\n",
            MethodName(row.method), row.load.Label().c_str(),
            targets[t]->name.c_str(), gw.latency.p50, gw.latency.p99,
            plain.latency.p50, plain.latency.p99,
            gw.latency.p50 - plain.latency.p50,
            gw.latency.p99 - plain.latency.p99, gw.server_cpu_us_per_call,
            plain.server_cpu_us_per_call,
            gw.server_cpu_us_per_call - plain.server_cpu_us_per_call,
            plain.server_cpu_us_per_call > 0
                ? gw.server_cpu_us_per_call / plain.server_cpu_us_per_call
                : 0.0,
            gw.calls_per_s, plain.calls_per_s,
            gw.latency.p50 - echo.latency.p50,
            gw.latency.p99 - echo.latency.p99, misses, gw.calls);
      }
    }
    std::printf(
        "\nEvery gateway, plain included, checks the owner of each id a "
        "request names (tenancy; without keys the caller is the default "
        "project), so the tenancy check is in plain's figures too. Its owner "
        "cache makes the steady state a hit: GetAssistant names one "
        "assistant, so every measured call hits; CreateMessage rotates over "
        "fresh threads each slice, so the first call on each one misses "
        "(last column). The access-log interceptor is on in every gateway "
        "and writes nothing per call at the default level.\n");
  }
  for (const auto& [label, counts] : metrics_proof) {
    std::printf(
        "\nMetrics were on in %s: its /metrics, scraped after the run, counts "
        "assistants_rpcs_total{code=\"OK\"}: %s.\n",
        label.c_str(), counts.c_str());
  }

  std::printf(
      "\n### Every measurement (latency in µs; open loop from the planned "
      "send time)\n\n| method | load | server | calls | calls/s | p50 | p90 | "
      "p99 | p99.9 | max | errors | server CPU µs/call | server cores | "
      "loadgen CPU µs/call | server RSS after |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& row : rows) {
    for (size_t t = 0; t < n; ++t) {
      const Figures& f = row.by_target[t];
      std::printf(
          "| %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | "
          "%.0f | %.1f | %.2f | %.1f | %s |\n",
          MethodName(row.method), row.load.Label().c_str(),
          targets[t]->Label().c_str(), f.calls, f.calls_per_s, f.latency.p50,
          f.latency.p90, f.latency.p99, f.latency.p999, f.latency.max, f.errors,
          f.server_cpu_us_per_call, f.server_cores, f.client_cpu_us_per_call,
          MiB(static_cast<int64_t>(f.rss_after_kib)).c_str());
    }
  }
  bool lagged = false;
  for (const Row& row : rows) {
    if (row.load.rate <= 0) continue;
    for (const Figures& f : row.by_target) {
      lagged = lagged || f.max_send_lag_us > 1000;
    }
  }
  if (lagged) {
    std::printf(
        "\nNote: in some open-loop measurement loadgen sent a call more than "
        "1 ms after its planned time (it shares the cores); that delay is in "
        "the latencies.\n");
  }

  std::printf(
      "\n| server | RSS after setup | RSS at the end |\n|---|---|---|\n");
  for (auto& target : targets) {
    std::printf("| %s | %s | %s |\n", target->Label().c_str(),
                MiB(target->rss_start_kib).c_str(),
                MiB(RssKiB(target->process.pid())).c_str());
  }

  // Goals: added latency at each closed-loop concurrency; CPU and calls per
  // core at saturation (the largest concurrency).
  std::printf("\n### Against the goals (unary overhead)\n\n| figure |");
  for (size_t t = 1; t < n; ++t) {
    std::printf(" gateway, %s |", targets[t]->name.c_str());
  }
  std::printf(" goal |\n|---|");
  for (size_t t = 1; t < n; ++t) std::printf("---|");
  std::printf("---|\n");
  const int saturation =
      concurrency.empty()
          ? 0
          : *std::max_element(concurrency.begin(), concurrency.end());
  for (const Row& row : rows) {
    if (row.load.callers == 0) continue;
    const Figures& echo = row.by_target[0];
    const std::string what =
        absl::StrCat(MethodName(row.method), ", ", row.load.Label());
    std::printf("| %s: added p50 |", what.c_str());
    for (size_t t = 1; t < n; ++t) {
      const double added = row.by_target[t].latency.p50 - echo.latency.p50;
      std::printf(" %+.0f µs, %s |", added, Verdict(added <= 250).c_str());
    }
    std::printf(" <= 250 µs |\n| %s: added p99 |", what.c_str());
    for (size_t t = 1; t < n; ++t) {
      const double added = row.by_target[t].latency.p99 - echo.latency.p99;
      std::printf(" %+.0f µs, %s |", added, Verdict(added <= 1000).c_str());
    }
    std::printf(" <= 1 ms |\n");
    if (row.load.callers != saturation) continue;
    std::printf("| %s: gateway CPU per call |", what.c_str());
    for (size_t t = 1; t < n; ++t) {
      const double cpu = row.by_target[t].server_cpu_us_per_call;
      std::printf(" %.1f µs, %s |", cpu, Verdict(cpu <= 100).c_str());
    }
    std::printf(" <= 100 µs |\n| %s: of which over echo's CPU per call |",
                what.c_str());
    for (size_t t = 1; t < n; ++t) {
      std::printf(" %+.1f µs |", row.by_target[t].server_cpu_us_per_call -
                                     echo.server_cpu_us_per_call);
    }
    std::printf(" — |\n| %s: calls/s per gateway core |", what.c_str());
    for (size_t t = 1; t < n; ++t) {
      const double per_core = row.by_target[t].calls_per_core_s;
      std::printf(" %.0f, %s |", per_core, Verdict(per_core >= 4000).c_str());
    }
    std::printf(" >= 4,000 |\n");
  }
  std::printf(
      "\nAdded = gateway minus echo at the same load. Calls/s per core = "
      "calls / the server's CPU seconds (utime+stime of the process). loadgen "
      "and the servers share this machine's %ld cores, so calls/s at "
      "saturation is bounded by both; the per-core figure is not.\n",
      sysconf(_SC_NPROCESSORS_ONLN));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
