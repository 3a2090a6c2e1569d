// run_stream_bench: what a RunEvents stream costs in the gateway, measured
// against baselines in the same run (the machine is shared and noisy, so only
// ratios and differences are meaningful).
//
// It starts fake-openai and one assistants-gateway per store (SQLite in a
// temporary directory, the production default, and :memory:) as child
// processes, and measures:
//   1. Stream relay: one run whose model streams N text deltas with no delay,
//      through the gateway (RunEvents with create_thread_and_run) and, as the
//      baseline, the same stream read directly from fake-openai with libcurl.
//      Reports call -> done, deltas/s, the gap between deltas at the client
//      (p50/p99) and the gateway's CPU per relayed delta (its process CPU
//      clock: utime+stime of every thread, at ns resolution).
//   2. First delta: short runs (5 deltas), call -> first delta through the
//      gateway against the direct call; and the gateway's fixed CPU per run.
//   3. Latency on one clock: a second gateway per store talks to fake-openai
//      through a pass-through proxy inside this process, which stamps each
//      SSE event as it hands it to the gateway. The client stamps each
//      thread.message.delta it receives, so per-delta latency (paced and
//      burst) and "first delta after the upstream's first byte" are measured
//      on one clock; a libcurl client reading through the same proxy is the
//      baseline.
//   4. Idle streams: K runs left in requires_action (a function tool the
//      fake's default model calls), one RunEvents stream attached to each
//      (callback API, spread over --channels connections), the gateway's RSS
//      before and after, its CPU while they idle, then tool outputs for all
//      runs and the time until every stream has received `done`. Each K of
//      --streams (e.g. 1000,10000) runs on a fresh gateway per store, so its
//      RSS holds nothing but start-up, the K runs and the K streams.
//   5. The gateway's RSS right after start.
// With --secured_stores, sections 1 and 2 also measure, per store listed, a
// gateway with issue 8's features on: an API key (the client sends
// `authorization: Bearer KEY`, the gateway looks up its SHA-256 hash), the
// per-key rate limiter (1,000,000/s, never refusing) and metrics.listen (the
// RPC interceptor and the run, provider and tool recorders). Its rows sit
// beside the plain gateway's, so "CPU per relayed event, features on vs
// off" is read in one run; its /metrics is scraped at the end and must have
// counted the RunEvents calls.
// Every repeated figure is the median (CPU also shows the least sample: the
// work is identical, so the spread above it is interference from other
// processes); the paths are interleaved so drifting load hits them alike.
//
//   run_stream_bench [--tokens=2000] [--streams=1000,10000]
//                    [--stores=sqlite,memory] [--idle_stores=...]
//                    [--secured_stores=memory]
//   run_stream_bench --quick    (seconds; the CTest smoke test)
//
// Exits non-zero only on a functional failure (a run or stream that does not
// end with `done`, a lost delta), never because of a timing.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "assistants/v1/assistant.grpc.pb.h"
#include "assistants/v1/run_service.grpc.pb.h"
#include "bench/bench_support.h"
#include "nlohmann/json.hpp"
#include "service/auth/api_keys.h"
#include "tests/support/prometheus_text.h"
#include "tests/support/server_process.h"

ABSL_FLAG(bool, quick, false,
          "smoke mode: 50 deltas, 20 streams, few repeats, 1 s idle");
ABSL_FLAG(int, tokens, 2000, "text deltas in the relayed run");
ABSL_FLAG(std::string, streams, "1000",
          "idle RunEvents streams (runs in requires_action): a list of counts "
          "K, each measured on a fresh gateway per store; 0 skips them");
ABSL_FLAG(std::string, idle_stores, "",
          "stores for the idle streams (a subset of --stores); empty: every "
          "store up to 1,000 streams, sqlite only above (the memory store "
          "keeps about 53 KiB per waiting run)");
ABSL_FLAG(int, repeats, 9, "relay measurements per path (the median is shown)");
ABSL_FLAG(int, first_repeats, 20, "short runs per path for the first delta");
ABSL_FLAG(int, paced_tokens, 500,
          "deltas of the paced run (1 ms apart) for per-delta latency");
ABSL_FLAG(int, channels, 8,
          "gRPC connections the idle streams are spread over");
ABSL_FLAG(int, idle_seconds, 5, "window for the gateway's idle CPU");
ABSL_FLAG(bool, verbose, false, "print every relay sample to stderr");
ABSL_FLAG(std::string, stores, "sqlite,memory",
          "gateway stores to measure: sqlite (a file in a temp dir), memory");
ABSL_FLAG(std::string, upstream, "openai",
          "gateway backend: openai (Responses API) or openai-chat");
ABSL_FLAG(std::string, secured_stores, "",
          "stores that also get a gateway with an API key, the rate limiter "
          "and metrics on, in the relay and short-run sections");
ABSL_FLAG(std::string, gateway, "",
          "assistants-gateway binary (default: the build tree's)");
ABSL_FLAG(std::string, fake_openai, "",
          "fake-openai binary (default: the build tree's)");

namespace assistants::bench {
namespace {

namespace v1 = ::assistants::v1;
using nlohmann::json;
using TimePoints = std::vector<Clock::time_point>;

constexpr int kShortTokens = 5;

// ---------------------------------------------------------------------------
// Statistics.

// Gaps in microseconds between consecutive time points.
std::vector<double> GapsUs(const TimePoints& times) {
  std::vector<double> gaps;
  for (size_t i = 1; i < times.size(); ++i) {
    gaps.push_back(Seconds(times[i] - times[i - 1]) * 1e6);
  }
  return gaps;
}

// received[i] - sent[i] in microseconds, over the common prefix.
std::vector<double> LatenciesUs(const TimePoints& sent,
                                const TimePoints& received) {
  std::vector<double> latencies;
  for (size_t i = 0; i < std::min(sent.size(), received.size()); ++i) {
    latencies.push_back(Seconds(received[i] - sent[i]) * 1e6);
  }
  return latencies;
}

// ---------------------------------------------------------------------------
// fake-openai, and clients that read a model's stream without the gateway.

struct Fake {
  test_support::ServerProcess process;
  std::string base;  // http://127.0.0.1:PORT
  // Queues one reply of `tokens` text deltas, `delay_ms` apart.
  void ScriptText(int tokens, int delay_ms = 0) {
    std::string text;
    for (int i = 0; i < tokens; ++i) text += "tok ";
    json step = {{"text", text}, {"tokens", tokens}};
    if (delay_ms > 0) step["token_delay_ms"] = delay_ms;
    HttpCall(base + "/_fake/script",
             json{{"responses", json::array({step})}}.dump());
  }
};

// The SSE event of one text delta contains this.
const char* DeltaMarker(bool chat) {
  return chat ? "\"delta\":{\"content\":" : "event: response.output_text.delta";
}

// A streamed model reply read with libcurl over a kept-alive connection,
// noting when each text delta's SSE event is complete: what a client of the
// upstream sees without the gateway.
class DirectClient {
 public:
  DirectClient(const std::string& base, bool chat)
      : chat_(chat),
        client_(base + (chat ? "/v1/chat/completions" : "/v1/responses"),
                chat ? R"({"model":"gpt-4o","stream":true,)"
                       R"("messages":[{"role":"user","content":"hi"}]})"
                     : R"({"model":"gpt-4o","input":"hi","stream":true})") {}

  // Streams one reply; returns the arrival time of each text delta and, in
  // `*last_event`, of the last SSE event (response.completed / [DONE]): the
  // end of the turn, as the gateway sees it. (The end of the HTTP body can
  // come later: the fake's last chunk may wait for a delayed ACK.)
  TimePoints Stream(Clock::time_point* last_event) {
    TimePoints deltas;
    *last_event = Clock::now();
    client_.Post([&](absl::string_view event, Clock::time_point arrived) {
      if (absl::StrContains(event, DeltaMarker(chat_))) {
        deltas.push_back(arrived);
      }
      *last_event = arrived;
    });
    return deltas;
  }

 private:
  const bool chat_;
  SseClient client_;
};

// A pass-through HTTP/1.1 proxy to fake-openai that notes when it hands the
// response's first byte and each text delta event to its client (one
// write, TCP_NODELAY, per SSE event). It runs in this process, so its stamps
// and the bench client's share one clock. One thread per connection; it
// forwards only Authorization and Content-Type.
class StampingProxy {
 public:
  struct Exchange {
    Clock::time_point first_byte;
    TimePoints deltas;
  };

  StampingProxy(std::string upstream, bool chat)
      : upstream_(std::move(upstream)), chat_(chat) {}
  ~StampingProxy() { Stop(); }
  StampingProxy(const StampingProxy&) = delete;
  StampingProxy& operator=(const StampingProxy&) = delete;

  bool Start(std::string* error) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (listen_fd_ < 0 ||
        bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        listen(listen_fd_, 64) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address),
                    &length) != 0) {
      *error = absl::StrCat("proxy socket: ", std::strerror(errno));
      return false;
    }
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
    return true;
  }

  void Stop() {
    if (listen_fd_ < 0) return;
    shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    close(listen_fd_);
    listen_fd_ = -1;
    std::vector<int> connections;
    std::vector<std::thread> servers;
    {
      absl::MutexLock lock(&mu_);
      connections.swap(connections_);
      servers.swap(servers_);
    }
    for (int fd : connections) shutdown(fd, SHUT_RDWR);
    for (std::thread& thread : servers) thread.join();
    for (int fd : connections) close(fd);
  }

  std::string base() const { return absl::StrCat("http://127.0.0.1:", port_); }

  // The exchanges completed since the last call, once there are at least
  // `count` (or `timeout` has passed): the gateway ends a run at the
  // upstream's last SSE event, which can reach it before this proxy has
  // finished the exchange and recorded it.
  std::vector<Exchange> Take(size_t count = 0,
                             absl::Duration timeout = absl::ZeroDuration()) {
    absl::MutexLock lock(&mu_);
    const std::vector<Exchange>* exchanges = &exchanges_;
    auto enough = [exchanges, count] { return exchanges->size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    std::vector<Exchange> taken;
    taken.swap(exchanges_);
    return taken;
  }

 private:
  void AcceptLoop() {
    for (;;) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // Stop() shut the socket down.
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      absl::MutexLock lock(&mu_);
      connections_.push_back(fd);
      servers_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  static bool ReadMore(int fd, std::string* buffer) {
    char chunk[16384];
    for (;;) {
      const ssize_t n = read(fd, chunk, sizeof(chunk));
      if (n > 0) {
        buffer->append(chunk, static_cast<size_t>(n));
        return true;
      }
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
  }

  static bool WriteAll(int fd, absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Requests on one kept-alive connection until it closes (Stop() closes
  // the descriptor).
  void Serve(int fd) {
    std::string buffer;
    for (;;) {
      size_t head_end;
      while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
        if (!ReadMore(fd, &buffer)) return;
      }
      std::vector<std::string> lines =
          absl::StrSplit(buffer.substr(0, head_end), "\r\n");
      buffer.erase(0, head_end + 4);
      std::vector<std::string> request_line = absl::StrSplit(lines[0], ' ');
      if (request_line.size() < 2) return;
      size_t content_length = 0;
      std::vector<std::string> forwarded;
      for (size_t i = 1; i < lines.size(); ++i) {
        const std::string lower = absl::AsciiStrToLower(lines[i]);
        if (absl::StartsWith(lower, "content-length:")) {
          absl::SimpleAtoi(absl::StripAsciiWhitespace(lines[i].substr(15)),
                           &content_length);
        } else if (absl::StartsWith(lower, "authorization:") ||
                   absl::StartsWith(lower, "content-type:")) {
          forwarded.push_back(lines[i]);
        } else if (absl::StartsWith(lower, "expect: 100-continue") &&
                   !WriteAll(fd, "HTTP/1.1 100 Continue\r\n\r\n")) {
          return;
        }
      }
      while (buffer.size() < content_length) {
        if (!ReadMore(fd, &buffer)) return;
      }
      const std::string body = buffer.substr(0, content_length);
      buffer.erase(0, content_length);
      if (!Forward(fd, request_line[0], request_line[1], forwarded, body)) {
        return;
      }
    }
  }

  struct Transfer {
    StampingProxy* proxy = nullptr;
    CURL* curl = nullptr;
    int fd = -1;
    bool head_sent = false;
    bool failed = false;
    std::string pending;
    Exchange exchange;

    // Sends the response head once, with the upstream's status and type.
    bool SendHead() {
      if (head_sent) return true;
      head_sent = true;
      long status = 0;
      char* type = nullptr;
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &type);
      exchange.first_byte = Clock::now();
      return WriteAll(
          fd, absl::StrCat("HTTP/1.1 ", status, " X\r\n", "Content-Type: ",
                           type != nullptr ? type : "text/plain",
                           "\r\nTransfer-Encoding: chunked\r\n\r\n"));
    }
    bool SendChunk(absl::string_view data) {
      if (data.empty()) return true;
      char size[32];
      std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
      return WriteAll(fd, absl::StrCat(size, data, "\r\n"));
    }
  };

  bool Forward(int fd, const std::string& method, const std::string& path,
               const std::vector<std::string>& headers,
               const std::string& body) {
    CURL* curl = curl_easy_init();
    curl_slist* list = curl_slist_append(nullptr, "Expect:");
    for (const std::string& header : headers) {
      list = curl_slist_append(list, header.c_str());
    }
    const std::string url = upstream_ + path;
    Transfer transfer;
    transfer.proxy = this;
    transfer.curl = curl;
    transfer.fd = fd;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "POST") {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                       static_cast<long>(body.size()));
    }
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION,
        +[](char* data, size_t size, size_t n, void* transfer_ptr) -> size_t {
          auto* t = static_cast<Transfer*>(transfer_ptr);
          t->pending.append(data, size * n);
          if (!t->SendHead()) return 0;
          const char* marker = DeltaMarker(t->proxy->chat_);
          TakeSseEvents(&t->pending, [&](absl::string_view event) {
            if (t->failed) return;
            const bool delta = absl::StrContains(event, marker);
            const Clock::time_point now = Clock::now();
            if (!t->SendChunk(event)) t->failed = true;
            if (delta) t->exchange.deltas.push_back(now);
          });
          return t->failed ? 0 : size * n;
        });
    const CURLcode code = curl_easy_perform(curl);
    bool ok = code == CURLE_OK && transfer.SendHead() &&
              transfer.SendChunk(transfer.pending);
    curl_slist_free_all(list);
    curl_easy_cleanup(curl);
    {
      // Before the last chunk, which ends the client's transfer.
      absl::MutexLock lock(&mu_);
      exchanges_.push_back(std::move(transfer.exchange));
    }
    ok = ok && WriteAll(fd, "0\r\n\r\n");
    return ok;
  }

  const std::string upstream_;
  const bool chat_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<int> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> servers_ ABSL_GUARDED_BY(mu_);
  std::vector<Exchange> exchanges_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// The gateway.

v1::Tool StockPriceTool() {
  v1::Tool tool;
  v1::FunctionDefinition* function =
      tool.mutable_function()->mutable_function();
  function->set_name("get_stock_price");
  function->set_description("Latest price of a stock");
  google::protobuf::Struct& schema = *function->mutable_parameters();
  (*schema.mutable_fields())["type"].set_string_value("object");
  google::protobuf::Struct& symbol = *(*(*schema.mutable_fields())["properties"]
                                            .mutable_struct_value()
                                            ->mutable_fields())["symbol"]
                                          .mutable_struct_value();
  (*symbol.mutable_fields())["type"].set_string_value("string");
  (*schema.mutable_fields())["required"]
      .mutable_list_value()
      ->add_values()
      ->set_string_value("symbol");
  return tool;
}

// One relayed (or direct) stream.
struct RelaySample {
  double seconds = 0;        // call -> done (or the last SSE event)
  double first_delta_s = 0;  // call -> first text delta
  double cpu_s = 0;          // gateway CPU over the call
  int deltas = 0;
  double gap_p50_us = 0;
  double gap_p99_us = 0;
  // Arrival of the first event the model's output causes (its step's
  // thread.run.step.created), before the first delta.
  Clock::time_point first_step_at{};
};

RelaySample FromDeltaTimes(Clock::time_point start, Clock::time_point end,
                           const TimePoints& deltas) {
  RelaySample sample;
  sample.seconds = Seconds(end - start);
  sample.deltas = static_cast<int>(deltas.size());
  if (!deltas.empty()) sample.first_delta_s = Seconds(deltas.front() - start);
  std::vector<double> gaps = GapsUs(deltas);
  sample.gap_p50_us = Percentile(gaps, 0.5);
  sample.gap_p99_us = Percentile(gaps, 0.99);
  return sample;
}

// Samples of one path and their medians.
struct RelayRow {
  std::string name;
  std::vector<RelaySample> samples;

  RelaySample Median() const {
    RelaySample m;
    auto median_of = [&](double RelaySample::*field) {
      std::vector<double> values;
      for (const RelaySample& s : samples) values.push_back(s.*field);
      return bench::Median(values);
    };
    m.seconds = median_of(&RelaySample::seconds);
    m.first_delta_s = median_of(&RelaySample::first_delta_s);
    m.cpu_s = median_of(&RelaySample::cpu_s);
    m.gap_p50_us = median_of(&RelaySample::gap_p50_us);
    m.gap_p99_us = median_of(&RelaySample::gap_p99_us);
    m.deltas = samples.empty() ? 0 : samples.front().deltas;
    return m;
  }
  // The least gateway CPU of the samples: the same work every time, so the
  // spread above it is interference from the shared machine.
  double MinCpu() const {
    double least = samples.empty() ? 0 : samples.front().cpu_s;
    for (const RelaySample& s : samples) least = std::min(least, s.cpu_s);
    return least;
  }
};

// A run whose tool calls wait for outputs.
struct PendingRun {
  std::string thread_id;
  std::string run_id;
  int64_t requires_action_sequence = 0;
  std::vector<std::string> call_ids;
};

// Counts idle streams reaching milestones; waits for them.
class Tally {
 public:
  void Replayed() {
    absl::MutexLock lock(&mu_);
    ++replayed_;
  }
  void Finished() {
    absl::MutexLock lock(&mu_);
    ++finished_;
  }
  // Wait until `target` streams got their first event / ended; false on
  // timeout.
  bool WaitReplayed(int target, absl::Duration timeout) {
    return Wait(&replayed_, target, timeout);
  }
  bool WaitFinished(int target, absl::Duration timeout) {
    return Wait(&finished_, target, timeout);
  }
  int replayed() {
    absl::MutexLock lock(&mu_);
    return replayed_;
  }
  int finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }

 private:
  bool Wait(const int* counter, int target, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [counter, target] { return *counter >= target; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  absl::Mutex mu_;
  int replayed_ ABSL_GUARDED_BY(mu_) = 0;
  int finished_ ABSL_GUARDED_BY(mu_) = 0;
};

// One RunEvents stream attached to a waiting run (callback API, so one
// process holds thousands). It attaches with after_sequence one below the
// requires_action event: that event is replayed, which proves the gateway
// has opened the stream and reached the run's live tail, and then the
// stream idles until tool outputs arrive.
class IdleStream : public grpc::ClientReadReactor<v1::RunEventsResponse> {
 public:
  explicit IdleStream(Tally* tally) : tally_(tally) {}

  void Start(v1::RunService::Stub* stub, const PendingRun& run) {
    request_.set_thread_id(run.thread_id);
    request_.set_run_id(run.run_id);
    request_.set_after_sequence(run.requires_action_sequence - 1);
    stub->async()->RunEvents(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status.
    if (events_++ == 0) {
      tally_->Replayed();
    } else if (response_.event().event() == "done") {
      got_done_ = true;
    } else if (response_.event().event() == "thread.run.completed") {
      completed_ = true;
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    status_ = status;
    tally_->Finished();
  }

  // Read after OnDone only.
  int events() const { return events_; }
  bool got_done() const { return got_done_; }
  bool completed() const { return completed_; }
  const grpc::Status& status() const { return status_; }

 private:
  Tally* const tally_;
  grpc::ClientContext context_;
  v1::RunEventsRequest request_;
  v1::RunEventsResponse response_;
  int events_ = 0;
  bool got_done_ = false;
  bool completed_ = false;
  grpc::Status status_;
};

struct IdleResult {
  bool measured = false;
  int64_t rss_before_runs_kib = 0;
  int64_t rss_runs_kib = 0;     // K runs in requires_action, no streams
  int64_t rss_streams_kib = 0;  // plus K idle streams
  int64_t rss_after_kib = 0;    // every run done, streams closed
  double setup_s = 0;
  double idle_cpu_s = 0;
  double idle_window_s = 0;
  double submit_to_all_done_s = 0;
  int streams = 0;
  int streams_done = 0;
  int streams_completed = 0;
  int min_events = 0;
  int max_events = 0;
};

// One gateway process with one store.
class Gateway {
 public:
  // `settle`: how long to let the gateway settle before reading its RSS.
  Gateway(std::string store, std::chrono::milliseconds settle)
      : store_(std::move(store)), settle_(settle) {}

  // Before Start: the gateway also gets `args`, and every call sends
  // `authorization` metadata (when not empty).
  void Secure(std::vector<std::string> args, std::string authorization) {
    extra_args_ = std::move(args);
    authorization_ = std::move(authorization);
  }

  // Starts the gateway with its upstream at `upstream_base` (http://...).
  bool Start(const std::string& binary, const std::string& upstream_base,
             std::string* error) {
    const std::string db =
        store_ == "memory" ? ":memory:" : dir_.path() + "/gateway.db";
    setenv("OPENAI_BASE_URL", (upstream_base + "/v1").c_str(), 1);
    std::vector<std::string> args = {"--db=" + db};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    if (!process_.Start(binary, args, error)) return false;
    channel_ = process_.Connect();
    if (channel_ == nullptr) {
      *error = "the gateway never accepted connections";
      return false;
    }
    runs_ = v1::RunService::NewStub(channel_);
    // Let start-up work (threads, first allocations) settle.
    std::this_thread::sleep_for(settle_);
    rss_start_kib_ = RssKiB(process_.pid());
    return true;
  }

  bool CreateAssistant(bool with_tool, std::string* id, std::string* error) {
    auto stub = v1::AssistantService::NewStub(channel_);
    v1::CreateAssistantRequest request;
    request.set_model("gpt-4o");
    request.set_instructions("You are a benchmark.");
    if (with_tool) *request.add_tools() = StockPriceTool();
    v1::CreateAssistantResponse response;
    grpc::Status status =
        stub->CreateAssistant(CallContext().get(), request, &response);
    if (!status.ok()) {
      *error = "CreateAssistant: " + Describe(status);
      return false;
    }
    *id = response.assistant().id();
    return true;
  }

  // One run of `assistant_id` streamed to `done` through RunEvents; the
  // arrival time of each thread.message.delta goes to `*deltas`.
  bool Relay(const std::string& assistant_id, RelaySample* sample,
             TimePoints* deltas, std::string* error) {
    v1::RunEventsRequest request;
    auto* create = request.mutable_create_thread_and_run();
    v1::MessageInput* message = create->mutable_thread()->add_messages();
    message->set_role(v1::MESSAGE_ROLE_USER);
    message->set_text("hi");
    create->mutable_options()->set_assistant_id(assistant_id);
    deltas->clear();
    deltas->reserve(100000);
    bool done = false;
    auto context = CallContext(300);
    const double cpu = ProcessCpuSeconds(process_.pid());
    const Clock::time_point start = Clock::now();
    Clock::time_point end = start;
    auto reader = runs_->RunEvents(context.get(), request);
    v1::RunEventsResponse response;
    std::string last_status;
    Clock::time_point first_step_at{};
    while (reader->Read(&response)) {
      const Clock::time_point now = Clock::now();
      const std::string& name = response.event().event();
      if (name == "thread.message.delta") {
        deltas->push_back(now);
      } else if (name == "thread.run.step.created" &&
                 first_step_at == Clock::time_point{}) {
        first_step_at = now;
      } else if (name == "done") {
        done = true;
        end = now;
      } else if (response.event().has_run()) {
        last_status = name;
      }
    }
    grpc::Status status = reader->Finish();
    *sample = FromDeltaTimes(start, end, *deltas);
    sample->first_step_at = first_step_at;
    sample->cpu_s = ProcessCpuSeconds(process_.pid()) - cpu;
    if (!status.ok() || !done || last_status != "thread.run.completed") {
      *error = absl::StrCat("relayed run ended with ", Describe(status),
                            done ? ", done" : ", no done", ", last run event ",
                            last_status);
      return false;
    }
    return true;
  }

  // The idle-stream measurement with `count` runs.
  bool Idle(const std::string& assistant_id, int count, int channels,
            int idle_seconds, IdleResult* result, std::string* error);

  const std::string& store() const { return store_; }
  pid_t pid() const { return process_.pid(); }
  std::string captured_stderr() const { return process_.captured_stderr(); }
  int64_t rss_start_kib() const { return rss_start_kib_; }
  void Stop() {
    runs_.reset();
    channel_.reset();
    process_.Stop();
  }

 private:
  // Creates runs that stop in requires_action, `parallel` at a time, each
  // through a RunEvents stream read up to its requires_action event (then
  // cancelled: the run goes on without it). At most `parallel` streams are
  // open at once, so their freed memory cannot hide the idle streams' cost.
  bool CreateWaitingRuns(const std::string& assistant_id, int count,
                         int parallel, std::vector<PendingRun>* runs,
                         std::string* error);

  // A context with the gateway's API key, if it has one.
  std::unique_ptr<grpc::ClientContext> CallContext(int seconds = 30) const {
    std::unique_ptr<grpc::ClientContext> context = Context(seconds);
    if (!authorization_.empty()) {
      context->AddMetadata("authorization", authorization_);
    }
    return context;
  }

  const std::string store_;
  const std::chrono::milliseconds settle_;
  std::vector<std::string> extra_args_;
  std::string authorization_;
  test_support::TempDir dir_;
  test_support::ServerProcess process_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::RunService::Stub> runs_;
  int64_t rss_start_kib_ = 0;
};

bool Gateway::CreateWaitingRuns(const std::string& assistant_id, int count,
                                int parallel, std::vector<PendingRun>* runs,
                                std::string* error) {
  runs->assign(count, PendingRun{});
  std::atomic<int> next{0};
  absl::Mutex mu;
  std::string first_error;
  auto worker = [&] {
    for (int i; (i = next.fetch_add(1)) < count;) {
      v1::RunEventsRequest request;
      auto* create = request.mutable_create_thread_and_run();
      v1::MessageInput* message = create->mutable_thread()->add_messages();
      message->set_role(v1::MESSAGE_ROLE_USER);
      message->set_text("What is the stock price of ACME?");
      create->mutable_options()->set_assistant_id(assistant_id);
      auto context = Context(120);
      auto reader = runs_->RunEvents(context.get(), request);
      v1::RunEventsResponse response;
      PendingRun& run = (*runs)[i];
      std::string last;
      while (reader->Read(&response)) {
        const v1::RunEvent& event = response.event();
        if (!event.has_run()) continue;
        last = event.event();
        if (event.run().status() != v1::RUN_STATUS_REQUIRES_ACTION) continue;
        run.thread_id = event.run().thread_id();
        run.run_id = event.run().id();
        run.requires_action_sequence = event.sequence();
        for (const auto& call :
             event.run().required_action().submit_tool_outputs().tool_calls()) {
          run.call_ids.push_back(call.id());
        }
        context->TryCancel();
        break;
      }
      grpc::Status status = reader->Finish();
      if (run.run_id.empty()) {
        absl::MutexLock lock(&mu);
        if (first_error.empty()) {
          first_error = absl::StrCat("run ", i,
                                     " did not reach requires_action (last "
                                     "run event ",
                                     last, ", ", Describe(status), ")");
        }
        next = count;  // Stop the other workers too.
      }
    }
  };
  std::vector<std::thread> workers;
  for (int i = 0; i < parallel; ++i) workers.emplace_back(worker);
  for (std::thread& thread : workers) thread.join();
  *error = first_error;
  return first_error.empty();
}

bool Gateway::Idle(const std::string& assistant_id, int count, int channels,
                   int idle_seconds, IdleResult* result, std::string* error) {
  result->streams = count;
  result->rss_before_runs_kib = RssKiB(pid());
  const Clock::time_point setup_start = Clock::now();
  std::vector<PendingRun> runs;
  if (!CreateWaitingRuns(assistant_id, count, 8, &runs, error)) return false;
  result->setup_s = Seconds(Clock::now() - setup_start);
  std::this_thread::sleep_for(settle_);
  result->rss_runs_kib = RssKiB(pid());

  // Distinct connections: a local subchannel pool per channel (and distinct
  // args), so the channels do not share one HTTP/2 connection.
  std::vector<std::shared_ptr<grpc::Channel>> pool;
  std::vector<std::unique_ptr<v1::RunService::Stub>> stubs;
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("assistants.bench_channel", i);
    pool.push_back(grpc::CreateCustomChannel(
        process_.address(), grpc::InsecureChannelCredentials(), args));
    stubs.push_back(v1::RunService::NewStub(pool.back()));
  }
  Tally tally;
  std::vector<std::unique_ptr<IdleStream>> streams;
  for (int i = 0; i < count; ++i) {
    streams.push_back(std::make_unique<IdleStream>(&tally));
    streams.back()->Start(stubs[i % channels].get(), runs[i]);
  }
  // Cancels whatever is still open and waits for every OnDone, so the
  // reactors can be destroyed.
  // After a cancel gRPC always ends the call (OnDone), so this waits without
  // a timeout: the streams must not be read or freed while still running.
  auto close_all = [&] {
    for (auto& stream : streams) stream->Cancel();
    tally.WaitFinished(count, absl::InfiniteDuration());
  };
  if (!tally.WaitReplayed(count, absl::Seconds(30 + count / 20))) {
    *error = absl::StrCat("only ", tally.replayed(), " of ", count,
                          " idle streams received their first event");
    close_all();
    return false;
  }
  std::this_thread::sleep_for(settle_);
  result->rss_streams_kib = RssKiB(pid());
  const double cpu = ProcessCpuSeconds(pid());
  const Clock::time_point idle_start = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(idle_seconds));
  result->idle_cpu_s = ProcessCpuSeconds(pid()) - cpu;
  result->idle_window_s = Seconds(Clock::now() - idle_start);
  if (tally.finished() != 0) {
    *error = absl::StrCat(tally.finished(),
                          " idle streams ended before tool outputs were "
                          "submitted");
    close_all();
    return false;
  }

  // Tool outputs for every run, from a few threads.
  const Clock::time_point submit_start = Clock::now();
  std::atomic<int> next{0};
  std::atomic<int> refused{0};
  std::string submit_error;
  absl::Mutex mu;
  std::vector<std::thread> submitters;
  for (int t = 0; t < std::min(count, 8); ++t) {
    submitters.emplace_back([&, t] {
      for (int i; (i = next.fetch_add(1)) < count;) {
        v1::SubmitToolOutputsRequest request;
        request.set_thread_id(runs[i].thread_id);
        request.set_run_id(runs[i].run_id);
        for (const std::string& id : runs[i].call_ids) {
          v1::ToolOutput* output = request.add_tool_outputs();
          output->set_tool_call_id(id);
          output->set_output(R"({"symbol":"ACME","price":237.5})");
        }
        v1::SubmitToolOutputsResponse response;
        grpc::Status status = stubs[t % stubs.size()]->SubmitToolOutputs(
            Context().get(), request, &response);
        if (!status.ok()) {
          refused.fetch_add(1);
          absl::MutexLock lock(&mu);
          if (submit_error.empty()) {
            submit_error = "SubmitToolOutputs: " + Describe(status);
          }
        }
      }
    });
  }
  for (std::thread& thread : submitters) thread.join();
  const bool all_finished =
      tally.WaitFinished(count, absl::Seconds(60 + count / 10));
  result->submit_to_all_done_s = Seconds(Clock::now() - submit_start);
  if (!all_finished) close_all();

  result->min_events = count > 0 ? streams.front()->events() : 0;
  for (const auto& stream : streams) {
    if (stream->got_done() && stream->status().ok()) ++result->streams_done;
    if (stream->completed()) ++result->streams_completed;
    result->min_events = std::min(result->min_events, stream->events());
    result->max_events = std::max(result->max_events, stream->events());
  }
  streams.clear();
  stubs.clear();
  pool.clear();
  std::this_thread::sleep_for(settle_);
  result->rss_after_kib = RssKiB(pid());
  result->measured = true;
  if (refused > 0 || result->streams_done != count) {
    *error = absl::StrCat(result->streams_done, " of ", count,
                          " idle streams received done");
    if (!submit_error.empty()) {
      absl::StrAppend(error, "; ", refused.load(), " submissions refused (",
                      submit_error, ")");
    }
    if (!all_finished) absl::StrAppend(error, "; some streams never ended");
    return false;
  }
  return true;
}

// Per-delta latency on one clock (section 3), for one path.
struct LatencyResult {
  bool measured = false;
  std::vector<double> first_after_first_byte_us;  // one per short run
  // The first event of the model's output (thread.run.step.created; the
  // baseline's first delta), one per short run.
  std::vector<double> first_event_after_first_byte_us;
  std::vector<double> paced_us;  // one per delta
  std::vector<double> burst_us;  // one per delta
};

// ---------------------------------------------------------------------------
// Report.

// 10000 -> "10,000".
std::string Thousands(int64_t value) {
  std::string digits = std::to_string(value);
  for (int i = static_cast<int>(digits.size()) - 3;
       i > 0 && digits[i - 1] != '-'; i -= 3) {
    digits.insert(static_cast<size_t>(i), ",");
  }
  return digits;
}

// A markdown table with one column per gateway store (or case) and a goal
// column.
class GoalTable {
 public:
  explicit GoalTable(const std::vector<std::string>& columns) {
    std::printf("| figure |");
    for (const std::string& column : columns) {
      std::printf(" %s |", column.c_str());
    }
    std::printf(" goal |\n|---|");
    for (size_t i = 0; i < columns.size(); ++i) std::printf("---|");
    std::printf("---|\n");
    columns_ = columns.size();
  }
  template <typename Cell>
  void Row(const std::string& figure, const std::string& goal, Cell&& cell) {
    std::printf("| %s |", figure.c_str());
    for (size_t i = 0; i < columns_; ++i) {
      std::printf(" %s |", cell(i).c_str());
    }
    std::printf(" %s |\n", goal.c_str());
  }

 private:
  size_t columns_ = 0;
};

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const bool quick = absl::GetFlag(FLAGS_quick);
  const int tokens = quick ? 50 : std::max(2, absl::GetFlag(FLAGS_tokens));
  std::vector<int> stream_counts;
  if (quick) {
    stream_counts = {20};
  } else {
    for (absl::string_view part :
         absl::StrSplit(absl::GetFlag(FLAGS_streams), ',', absl::SkipEmpty())) {
      int count = 0;
      if (!absl::SimpleAtoi(part, &count) || count < 0) {
        std::fprintf(stderr, "--streams: not a count: %s\n",
                     std::string(part).c_str());
        return 2;
      }
      if (count > 0) stream_counts.push_back(count);
    }
  }
  const int repeats = quick ? 1 : std::max(1, absl::GetFlag(FLAGS_repeats));
  const int first_repeats =
      quick ? 3 : std::max(1, absl::GetFlag(FLAGS_first_repeats));
  const int paced_tokens =
      quick ? 20 : std::max(2, absl::GetFlag(FLAGS_paced_tokens));
  const int channels = std::max(1, absl::GetFlag(FLAGS_channels));
  const int idle_seconds = quick ? 1 : absl::GetFlag(FLAGS_idle_seconds);
  const std::chrono::milliseconds settle(quick ? 200 : 1000);
  const std::string upstream = absl::GetFlag(FLAGS_upstream);
  const bool chat = upstream == "openai-chat";
  if (!chat && upstream != "openai") {
    std::fprintf(stderr, "--upstream must be openai or openai-chat\n");
    return 2;
  }
  std::vector<std::string> stores =
      absl::StrSplit(absl::GetFlag(FLAGS_stores), ',', absl::SkipEmpty());
  for (const std::string& store : stores) {
    if (store != "sqlite" && store != "memory") {
      std::fprintf(stderr, "--stores: unknown store %s\n", store.c_str());
      return 2;
    }
  }
  const std::vector<std::string> secured_stores = absl::StrSplit(
      absl::GetFlag(FLAGS_secured_stores), ',', absl::SkipEmpty());
  for (const std::string& store : secured_stores) {
    if (store != "sqlite" && store != "memory") {
      std::fprintf(stderr, "--secured_stores: unknown store %s\n",
                   store.c_str());
      return 2;
    }
  }
  const std::vector<std::string> idle_stores =
      absl::StrSplit(absl::GetFlag(FLAGS_idle_stores), ',', absl::SkipEmpty());
  for (const std::string& store : idle_stores) {
    if (std::find(stores.begin(), stores.end(), store) == stores.end()) {
      std::fprintf(stderr, "--idle_stores: %s is not one of --stores\n",
                   store.c_str());
      return 2;
    }
  }
  // The stores measured with `count` idle streams.
  auto idle_stores_for = [&](int count) {
    if (!idle_stores.empty()) return idle_stores;
    std::vector<std::string> chosen;
    for (const std::string& store : stores) {
      if (count <= 1000 || store == "sqlite") chosen.push_back(store);
    }
    return chosen.empty() ? stores : chosen;
  };
  std::string gateway_bin = absl::GetFlag(FLAGS_gateway);
  if (gateway_bin.empty()) gateway_bin = test_support::GatewayBinary();
  std::string fake_bin = absl::GetFlag(FLAGS_fake_openai);
  if (fake_bin.empty()) fake_bin = test_support::FakeOpenAiBinary();

  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::string error;
  Fake fake;
  if (!fake.process.Start(fake_bin, {"--max_recorded_requests=0"}, &error)) {
    std::fprintf(stderr, "cannot start fake-openai: %s\n", error.c_str());
    return 1;
  }
  fake.base = absl::StrCat("http://127.0.0.1:", fake.process.port());
  StampingProxy proxy(fake.base, chat);
  if (!proxy.Start(&error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  setenv("OPENAI_API_KEY", "sk-fake", 1);
  setenv("ASSISTANTS_DEFAULT_UPSTREAM", upstream.c_str(), 1);

  // Per store: a gateway on fake-openai directly (sections 1, 2, 4, 5) and
  // one behind the stamping proxy (section 3).
  const size_t n = stores.size();
  std::vector<std::unique_ptr<Gateway>> gateways;
  std::vector<std::unique_ptr<Gateway>> stamped;
  std::vector<std::string> assistants(n);
  std::vector<std::string> stamped_assistants(n);
  for (size_t g = 0; g < n; ++g) {
    gateways.push_back(std::make_unique<Gateway>(stores[g], settle));
    stamped.push_back(std::make_unique<Gateway>(stores[g], settle));
    if (!gateways[g]->Start(gateway_bin, fake.base, &error) ||
        !gateways[g]->CreateAssistant(false, &assistants[g], &error) ||
        !stamped[g]->Start(gateway_bin, proxy.base(), &error) ||
        !stamped[g]->CreateAssistant(false, &stamped_assistants[g], &error)) {
      std::fprintf(stderr, "gateway (%s): %s\n", stores[g].c_str(),
                   error.c_str());
      return 1;
    }
  }

  // Per --secured_stores entry: a gateway with an API key, the rate limiter
  // and metrics on (sections 1 and 2 only).
  test_support::TempDir secured_dir;
  constexpr char kApiKey[] = "run-stream-bench-key-0123456789";
  const std::string keys_file = secured_dir.path() + "/api-keys.json";
  if (!secured_stores.empty()) {
    std::ofstream(keys_file)
        << json{{"keys",
                 {{{"project", "proj_bench"},
                   {"name", "bench"},
                   {"sha256", auth::ApiKeys::Sha256Hex(kApiKey)}}}}}
               .dump()
        << "\n";
  }
  std::vector<std::unique_ptr<Gateway>> secured;
  std::vector<std::string> secured_assistants(secured_stores.size());
  for (size_t s = 0; s < secured_stores.size(); ++s) {
    secured.push_back(std::make_unique<Gateway>(secured_stores[s], settle));
    secured.back()->Secure(
        {"--api_keys_file=" + keys_file,
         "--requests_per_second_per_key=1000000", "--burst_per_key=1000000",
         "--metrics_listen=127.0.0.1:0"},
        absl::StrCat("Bearer ", kApiKey));
    if (!secured[s]->Start(gateway_bin, fake.base, &error) ||
        !secured[s]->CreateAssistant(false, &secured_assistants[s], &error)) {
      std::fprintf(stderr, "gateway (%s, auth+metrics): %s\n",
                   secured_stores[s].c_str(), error.c_str());
      return 1;
    }
  }

  int failures = 0;
  TimePoints deltas;
  // Runs one gateway relay of `count` deltas; false (counted) on failure.
  auto relay = [&](Gateway& gateway, const std::string& assistant, int count,
                   RelaySample* sample) {
    if (!gateway.Relay(assistant, sample, &deltas, &error)) {
      std::fprintf(stderr, "gateway (%s): %s\n", gateway.store().c_str(),
                   error.c_str());
      ++failures;
      return false;
    }
    if (sample->deltas != count) {
      std::fprintf(stderr,
                   "gateway (%s): %d thread.message.delta events for %d "
                   "upstream deltas\n",
                   gateway.store().c_str(), sample->deltas, count);
      ++failures;
      return false;
    }
    return true;
  };

  // 1 and 2. Relay of N deltas and short runs, each path in turn, after one
  // unmeasured warm-up round (connections, prepared statements, caches).
  DirectClient direct(fake.base, chat);
  RelayRow long_direct{"direct from fake-openai, libcurl (baseline)", {}};
  RelayRow short_direct = long_direct;
  // Rows 0..n-1: the plain gateways; then the secured ones.
  std::vector<RelayRow> long_rows(n + secured.size());
  std::vector<RelayRow> short_rows(n + secured.size());
  for (size_t g = 0; g < n; ++g) {
    long_rows[g].name = short_rows[g].name =
        "through the gateway, " + stores[g] + " store";
  }
  for (size_t s = 0; s < secured.size(); ++s) {
    long_rows[n + s].name = short_rows[n + s].name =
        "through the gateway, " + secured_stores[s] +
        " store, API key + rate limiter + metrics on";
  }
  const bool verbose = absl::GetFlag(FLAGS_verbose);
  auto log_sample = [&](const std::string& path, const RelaySample& sample) {
    if (!verbose) return;
    std::fprintf(stderr,
                 "%s: %d deltas, call->first %.2f ms, call->done %.2f ms, "
                 "CPU %.0f us\n",
                 path.c_str(), sample.deltas, sample.first_delta_s * 1e3,
                 sample.seconds * 1e3, sample.cpu_s * 1e6);
  };
  auto measure_round = [&](int count, RelayRow* direct_row,
                           std::vector<RelayRow>* rows, bool keep) {
    fake.ScriptText(count);
    const Clock::time_point start = Clock::now();
    Clock::time_point end;
    TimePoints direct_deltas = direct.Stream(&end);
    RelaySample sample = FromDeltaTimes(start, end, direct_deltas);
    if (sample.deltas != count) {
      std::fprintf(stderr, "direct stream: %d deltas, want %d\n", sample.deltas,
                   count);
      ++failures;
    }
    log_sample("direct", sample);
    if (keep) direct_row->samples.push_back(sample);
    for (size_t g = 0; g < n; ++g) {
      fake.ScriptText(count);
      if (!relay(*gateways[g], assistants[g], count, &sample)) continue;
      log_sample(stores[g], sample);
      if (keep) (*rows)[g].samples.push_back(sample);
    }
    for (size_t s = 0; s < secured.size(); ++s) {
      fake.ScriptText(count);
      if (!relay(*secured[s], secured_assistants[s], count, &sample)) continue;
      log_sample(secured_stores[s] + "+auth+metrics", sample);
      if (keep) (*rows)[n + s].samples.push_back(sample);
    }
  };
  for (int round = 0; round <= repeats; ++round) {
    measure_round(tokens, &long_direct, &long_rows, round > 0);
  }
  for (int round = 0; round <= first_repeats; ++round) {
    measure_round(kShortTokens, &short_direct, &short_rows, round > 0);
  }
  std::vector<int64_t> rss_after_relay(n);
  for (size_t g = 0; g < n; ++g) {
    rss_after_relay[g] = RssKiB(gateways[g]->pid());
  }
  // The secured gateways prove metrics were on (their /metrics counted the
  // RunEvents calls), then stop so they cost nothing in later sections.
  std::vector<double> secured_rpcs(secured.size());
  for (size_t s = 0; s < secured.size(); ++s) {
    const std::string marker = "metrics listening on 127.0.0.1:";
    const std::string text = secured[s]->captured_stderr();
    const size_t at = text.find(marker);
    int port = 0;
    if (at != std::string::npos) {
      port = std::atoi(text.c_str() + at + marker.size());
    }
    std::string page;
    if (port <= 0 ||
        HttpCall(absl::StrCat("http://127.0.0.1:", port, "/metrics"), "",
                 &page) != 200) {
      std::fprintf(stderr, "gateway (%s, auth+metrics): no /metrics\n",
                   secured_stores[s].c_str());
      ++failures;
    } else {
      secured_rpcs[s] = test_support::SeriesValue(
                            page, "assistants_rpcs_total",
                            {{"method", "/assistants.v1.RunService/RunEvents"},
                             {"code", "OK"}})
                            .value_or(0);
      if (secured_rpcs[s] <= 0) {
        std::fprintf(stderr,
                     "gateway (%s, auth+metrics): /metrics counted no "
                     "RunEvents call\n",
                     secured_stores[s].c_str());
        ++failures;
      }
    }
    secured[s]->Stop();
  }

  // 3. Latency on one clock, through the stamping proxy: the direct client
  // (baseline) and each stamped gateway, in turn.
  LatencyResult direct_latency;
  std::vector<LatencyResult> latency(n);
  DirectClient proxied(proxy.base(), chat);
  // Streams one reply of `count` deltas `delay_ms` apart on path `path`
  // (-1: the direct client); appends each delta's latency to `*per_delta`
  // and the first delta's delay after the upstream's first byte to
  // `*first_after_first_byte` (either may be null).
  auto stamped_round = [&](int path, int count, int delay_ms,
                           std::vector<double>* per_delta,
                           std::vector<double>* first_after_first_byte) {
    fake.ScriptText(count, delay_ms);
    proxy.Take();
    RelaySample sample;
    if (path < 0) {
      Clock::time_point end;
      deltas = proxied.Stream(&end);
    } else if (!relay(*stamped[path], stamped_assistants[path], count,
                      &sample)) {
      return;
    }
    std::vector<StampingProxy::Exchange> exchanges =
        proxy.Take(1, absl::Seconds(5));
    if (exchanges.size() != 1 ||
        exchanges.front().deltas.size() != deltas.size()) {
      std::fprintf(stderr,
                   "stamped %s: %zu upstream exchanges, %zu deltas sent, %zu "
                   "received\n",
                   path < 0 ? "direct" : stores[path].c_str(), exchanges.size(),
                   exchanges.empty() ? 0 : exchanges.front().deltas.size(),
                   deltas.size());
      ++failures;
      return;
    }
    const StampingProxy::Exchange& exchange = exchanges.front();
    if (per_delta != nullptr) {
      std::vector<double> us = LatenciesUs(exchange.deltas, deltas);
      per_delta->insert(per_delta->end(), us.begin(), us.end());
    }
    if (first_after_first_byte != nullptr && !deltas.empty()) {
      first_after_first_byte->push_back(
          Seconds(deltas.front() - exchange.first_byte) * 1e6);
      LatencyResult& result = path < 0 ? direct_latency : latency[path];
      const Clock::time_point first_event =
          path < 0 ? deltas.front() : sample.first_step_at;
      if (first_event == Clock::time_point{}) {
        std::fprintf(stderr, "stamped %s: no thread.run.step.created\n",
                     stores[path].c_str());
        ++failures;
        return;
      }
      result.first_event_after_first_byte_us.push_back(
          Seconds(first_event - exchange.first_byte) * 1e6);
    }
  };
  for (int path = -1; path < static_cast<int>(n); ++path) {
    LatencyResult& result = path < 0 ? direct_latency : latency[path];
    stamped_round(path, kShortTokens, 0, nullptr, nullptr);  // Warm-up.
    for (int i = 0; i < first_repeats; ++i) {
      stamped_round(path, kShortTokens, 0, nullptr,
                    &result.first_after_first_byte_us);
    }
    stamped_round(path, paced_tokens, 1, &result.paced_us, nullptr);
    stamped_round(path, tokens, 0, &result.burst_us, nullptr);
    result.measured = !result.paced_us.empty() && !result.burst_us.empty() &&
                      !result.first_after_first_byte_us.empty() &&
                      !result.first_event_after_first_byte_us.empty();
  }
  for (auto& gateway : stamped) gateway->Stop();
  proxy.Stop();

  for (auto& gateway : gateways) gateway->Stop();

  // 4. Idle streams: each count on a fresh gateway per store, so its RSS
  // holds only start-up, the waiting runs and their streams.
  struct IdleCase {
    std::string store;
    int count = 0;
    int64_t rss_start_kib = 0;
    IdleResult result;
  };
  std::vector<IdleCase> idle;
  for (int count : stream_counts) {
    for (const std::string& store : idle_stores_for(count)) {
      idle.push_back(IdleCase{store, count, 0, IdleResult()});
    }
  }
  for (IdleCase& c : idle) {
    Gateway gateway(c.store, settle);
    std::string assistant_id;
    if (!gateway.Start(gateway_bin, fake.base, &error) ||
        !gateway.CreateAssistant(true, &assistant_id, &error) ||
        !gateway.Idle(assistant_id, c.count, channels, idle_seconds, &c.result,
                      &error)) {
      std::fprintf(stderr, "idle streams (%s, %d): %s\n", c.store.c_str(),
                   c.count, error.c_str());
      ++failures;
    }
    c.rss_start_kib = gateway.rss_start_kib();
    gateway.Stop();
  }

  // Report.
  std::printf(
      "## Stream relay: one run of %d text deltas (upstream %s, no delay), "
      "median of %d\n\n",
      tokens, chat ? "Chat Completions" : "Responses", repeats);
  std::printf(
      "| path | call -> done | deltas/s | call -> first delta | gap p50 | "
      "gap p99 | gateway CPU per delta |\n|---|---|---|---|---|---|---|\n");
  auto print_relay = [&](const RelayRow& row, bool has_cpu) {
    if (row.samples.empty()) {
      std::printf("| %s | failed | | | | | |\n", row.name.c_str());
      return;
    }
    const RelaySample m = row.Median();
    std::printf("| %s | %.1f ms | %.0f | %.2f ms | %.1f us | %.1f us | %s |\n",
                row.name.c_str(), m.seconds * 1e3,
                m.seconds > 0 ? m.deltas / m.seconds : 0.0,
                m.first_delta_s * 1e3, m.gap_p50_us, m.gap_p99_us,
                has_cpu ? Format("%.1f us (min %.1f)", m.cpu_s * 1e6 / m.deltas,
                                 row.MinCpu() * 1e6 / m.deltas)
                              .c_str()
                        : "-");
  };
  print_relay(long_direct, false);
  for (const RelayRow& row : long_rows) print_relay(row, true);
  // Features on vs off: the secured gateway against the plain one on the
  // same store, same run.
  for (size_t s = 0; s < secured.size(); ++s) {
    const size_t g = static_cast<size_t>(
        std::find(stores.begin(), stores.end(), secured_stores[s]) -
        stores.begin());
    const RelayRow& on = long_rows[n + s];
    if (g >= n || on.samples.empty() || long_rows[g].samples.empty()) continue;
    const RelaySample m_on = on.Median();
    const RelaySample m_off = long_rows[g].Median();
    const double cpu_on = m_on.cpu_s * 1e6 / m_on.deltas;
    const double cpu_off = m_off.cpu_s * 1e6 / m_off.deltas;
    const double min_on = on.MinCpu() * 1e6 / m_on.deltas;
    const double min_off = long_rows[g].MinCpu() * 1e6 / m_off.deltas;
    std::printf(
        "\nFeatures on vs off, %s store: gateway CPU per relayed delta %.1f "
        "vs %.1f us (%+.1f us, ratio %.2f; least %.1f vs %.1f us, %+.1f); "
        "gap between deltas p50 %+.1f us, p99 %+.1f us. Metrics were on: "
        "assistants_rpcs_total{RunEvents, OK} = %.0f.\n",
        secured_stores[s].c_str(), cpu_on, cpu_off, cpu_on - cpu_off,
        cpu_off > 0 ? cpu_on / cpu_off : 0.0, min_on, min_off, min_on - min_off,
        m_on.gap_p50_us - m_off.gap_p50_us, m_on.gap_p99_us - m_off.gap_p99_us,
        secured_rpcs[s]);
  }
  std::printf("\n## Short runs: %d text deltas, median of %d\n\n", kShortTokens,
              first_repeats);
  std::printf(
      "| path | call -> done | call -> first delta | gateway CPU per run "
      "|\n|---|---|---|---|\n");
  auto print_short = [&](const RelayRow& row, bool has_cpu) {
    if (row.samples.empty()) {
      std::printf("| %s | failed | | |\n", row.name.c_str());
      return;
    }
    const RelaySample m = row.Median();
    std::printf("| %s | %.2f ms | %.2f ms | %s |\n", row.name.c_str(),
                m.seconds * 1e3, m.first_delta_s * 1e3,
                has_cpu ? Format("%.0f us", m.cpu_s * 1e6).c_str() : "-");
  };
  print_short(short_direct, false);
  for (const RelayRow& row : short_rows) print_short(row, true);
  for (size_t s = 0; s < secured.size(); ++s) {
    const size_t g = static_cast<size_t>(
        std::find(stores.begin(), stores.end(), secured_stores[s]) -
        stores.begin());
    const RelayRow& on = short_rows[n + s];
    if (g >= n || on.samples.empty() || short_rows[g].samples.empty()) {
      continue;
    }
    const RelaySample m_on = on.Median();
    const RelaySample m_off = short_rows[g].Median();
    std::printf(
        "\nFeatures on vs off, %s store: gateway CPU per short run %.0f vs "
        "%.0f us (%+.0f us, ratio %.2f); call -> first delta %+.2f ms.\n",
        secured_stores[s].c_str(), m_on.cpu_s * 1e6, m_off.cpu_s * 1e6,
        (m_on.cpu_s - m_off.cpu_s) * 1e6,
        m_off.cpu_s > 0 ? m_on.cpu_s / m_off.cpu_s : 0.0,
        (m_on.first_delta_s - m_off.first_delta_s) * 1e3);
  }

  std::printf(
      "\n## Relay latency on one clock (proxy stamp -> client receipt), "
      "median of the per-delta values\n\n");
  std::printf(
      "| path | first delta after upstream first byte (%d runs) | paced: %d "
      "deltas 1 ms apart, p50 / p99 | burst: %d deltas, p50 / p99 "
      "|\n|---|---|---|---|\n",
      first_repeats, paced_tokens, tokens);
  auto print_latency = [&](const std::string& name, const LatencyResult& r) {
    if (!r.measured) {
      std::printf("| %s | failed | | |\n", name.c_str());
      return;
    }
    std::printf("| %s | %.0f us | %.0f / %.0f us | %.0f / %.0f us |\n",
                name.c_str(), Median(r.first_after_first_byte_us),
                Percentile(r.paced_us, 0.5), Percentile(r.paced_us, 0.99),
                Percentile(r.burst_us, 0.5), Percentile(r.burst_us, 0.99));
  };
  print_latency("libcurl through the proxy (baseline)", direct_latency);
  for (size_t g = 0; g < n; ++g) {
    print_latency("gateway through the proxy, " + stores[g] + " store",
                  latency[g]);
  }

  std::printf("\n## Against the goals (ENGINEERING.md section 10)\n\n");
  GoalTable table(stores);
  const RelaySample long_base = long_direct.Median();
  const RelaySample short_base = short_direct.Median();
  // A cell from the medians of gateway g, or "failed".
  auto relay_cell = [&](const std::vector<RelayRow>& rows, size_t g,
                        auto&& format) -> std::string {
    if (rows[g].samples.empty()) return "failed";
    return format(rows[g].Median());
  };
  auto latency_cell = [&](size_t g, auto&& format) -> std::string {
    if (!latency[g].measured || !direct_latency.measured) return "failed";
    return format(latency[g]);
  };
  table.Row("gateway CPU per relayed delta (all-in, N-delta run)", "<= 30 us",
            [&](size_t g) {
              return relay_cell(long_rows, g, [&](const RelaySample& m) {
                return Format("%.1f us (min %.1f)", m.cpu_s * 1e6 / m.deltas,
                              long_rows[g].MinCpu() * 1e6 / m.deltas);
              });
            });
  table.Row("gateway CPU per delta, marginal: (CPU(N) - CPU(5)) / (N - 5)",
            "<= 30 us", [&](size_t g) {
              if (short_rows[g].samples.empty()) return std::string("failed");
              const double fixed = short_rows[g].Median().cpu_s;
              return relay_cell(long_rows, g, [&](const RelaySample& m) {
                return Format("%.1f us", (m.cpu_s - fixed) * 1e6 /
                                             (tokens - kShortTokens));
              });
            });
  table.Row("added time per delta, (gateway - direct) / N, burst", "",
            [&](size_t g) {
              return relay_cell(long_rows, g, [&](const RelaySample& m) {
                return Format("%+.1f us",
                              (m.seconds - long_base.seconds) * 1e6 / tokens);
              });
            });
  table.Row("added per-delta latency, paced 1 ms apart: p50 / p99",
            "p50 added <= 0.5 ms", [&](size_t g) {
              return latency_cell(g, [&](const LatencyResult& r) {
                return Format("%+.0f / %+.0f us",
                              Percentile(r.paced_us, 0.5) -
                                  Percentile(direct_latency.paced_us, 0.5),
                              Percentile(r.paced_us, 0.99) -
                                  Percentile(direct_latency.paced_us, 0.99));
              });
            });
  table.Row("added gap between deltas at the client, burst: p50 / p99",
            "no batching", [&](size_t g) {
              return relay_cell(long_rows, g, [&](const RelaySample& m) {
                return Format("%+.1f / %+.1f us",
                              m.gap_p50_us - long_base.gap_p50_us,
                              m.gap_p99_us - long_base.gap_p99_us);
              });
            });
  // Absolute, in the goal's terms, and added over the direct client's first
  // delta through the same proxy.
  table.Row(
      "first event (thread.run.step.created) after the upstream's first "
      "byte (added over the direct client's first delta)",
      "<= 1 ms", [&](size_t g) {
        return latency_cell(g, [&](const LatencyResult& r) {
          return Format(
              "%.0f us (%+.0f us)", Median(r.first_event_after_first_byte_us),
              Median(r.first_event_after_first_byte_us) -
                  Median(direct_latency.first_event_after_first_byte_us));
        });
      });
  table.Row(
      "first delta after the upstream's first byte, added "
      "(4 events precede it)",
      "", [&](size_t g) {
        return latency_cell(g, [&](const LatencyResult& r) {
          return Format("%+.0f us",
                        Median(r.first_after_first_byte_us) -
                            Median(direct_latency.first_after_first_byte_us));
        });
      });
  table.Row("call -> first delta, added (creates thread + run; short runs)", "",
            [&](size_t g) {
              return relay_cell(short_rows, g, [&](const RelaySample& m) {
                return Format(
                    "%+.2f ms",
                    (m.first_delta_s - short_base.first_delta_s) * 1e3);
              });
            });
  table.Row("RSS right after start", "<= 30 MiB",
            [&](size_t g) { return MiB(gateways[g]->rss_start_kib()); });
  table.Row(absl::StrCat("RSS after the relay runs (",
                         repeats + first_repeats + 2, " runs)"),
            "", [&](size_t g) { return MiB(rss_after_relay[g]); });
  if (!idle.empty()) {
    std::printf(
        "\n## Idle RunEvents streams: K runs waiting in requires_action, one "
        "stream each, over %d HTTP/2 connections (a fresh gateway per "
        "column)\n\n",
        channels);
    std::vector<std::string> columns;
    for (const IdleCase& c : idle) {
      columns.push_back(absl::StrCat(c.store, ", K = ", Thousands(c.count)));
    }
    GoalTable idle_table(columns);
    auto idle_cell = [&](size_t i, auto&& format) -> std::string {
      if (!idle[i].result.measured) return "failed";
      return format(idle[i].result);
    };
    idle_table.Row("RSS right after start", "<= 30 MiB",
                   [&](size_t i) { return MiB(idle[i].rss_start_kib); });
    idle_table.Row(
        "RSS with the K runs in requires_action, no stream", "", [&](size_t i) {
          return idle_cell(
              i, [&](const IdleResult& r) { return MiB(r.rss_runs_kib); });
        });
    idle_table.Row("RSS with the K idle streams open",
                   "1,000 streams in <= 128 MiB", [&](size_t i) {
                     return idle_cell(i, [&](const IdleResult& r) {
                       return MiB(r.rss_streams_kib);
                     });
                   });
    idle_table.Row("RSS per idle stream", "<= 64 KiB", [&](size_t i) {
      return idle_cell(i, [&](const IdleResult& r) {
        return Format("%.1f KiB",
                      double(r.rss_streams_kib - r.rss_runs_kib) / r.streams);
      });
    });
    idle_table.Row("RSS per waiting run (no stream)", "", [&](size_t i) {
      return idle_cell(i, [&](const IdleResult& r) {
        return Format(
            "%.1f KiB",
            double(r.rss_runs_kib - r.rss_before_runs_kib) / r.streams);
      });
    });
    idle_table.Row("gateway CPU while the streams idle", "", [&](size_t i) {
      return idle_cell(i, [&](const IdleResult& r) {
        return Format("%.2f %% of a core (%.0f s)",
                      r.idle_cpu_s * 100 / r.idle_window_s, r.idle_window_s);
      });
    });
    idle_table.Row("creating the waiting runs, 8 at a time", "", [&](size_t i) {
      return idle_cell(i, [&](const IdleResult& r) {
        return Format("%.2f s (%.0f runs/s)", r.setup_s, r.streams / r.setup_s);
      });
    });
    idle_table.Row("submit all tool outputs -> every stream got done", "",
                   [&](size_t i) {
                     return idle_cell(i, [&](const IdleResult& r) {
                       return Format("%.2f s", r.submit_to_all_done_s);
                     });
                   });
    idle_table.Row("streams that received done (events each, min-max)", "all",
                   [&](size_t i) {
                     return idle_cell(i, [&](const IdleResult& r) {
                       return absl::StrCat(r.streams_done, " / ", r.streams,
                                           " (", r.min_events, "-",
                                           r.max_events, ")");
                     });
                   });
    idle_table.Row(
        "RSS after every run ended and the streams closed", "", [&](size_t i) {
          return idle_cell(
              i, [&](const IdleResult& r) { return MiB(r.rss_after_kib); });
        });
  }
  std::fflush(stdout);

  fake.process.Stop();
  curl_global_cleanup();
  if (failures > 0) {
    std::fprintf(stderr, "run_stream_bench: %d functional failure(s)\n",
                 failures);
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace assistants::bench

int main(int argc, char** argv) { return assistants::bench::Main(argc, argv); }
