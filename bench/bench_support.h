// Pieces every benchmark shares: clocks, another process's CPU and memory
// from /proc, latency statistics, gRPC call contexts, the fake upstream's
// control calls and markdown number formatting. Benchmarks measure the
// gateway against a baseline in the same run, so these stay small and exact.
#ifndef BENCH_BENCH_SUPPORT_H_
#define BENCH_BENCH_SUPPORT_H_

#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace assistants::bench {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d);
double Micros(Clock::duration d);

// CPU time (user + system, every thread, exited ones included) of `pid`: its
// process CPU clock at ns resolution, else utime+stime from /proc/<pid>/stat.
double ProcessCpuSeconds(pid_t pid);

// VmRSS of `pid` in KiB (0 if unreadable).
int64_t RssKiB(pid_t pid);

// Nearest-rank percentile, p in [0, 1]; 0 for no values.
double Percentile(std::vector<double> values, double p);
double Median(const std::vector<double>& values);

// The latency histogram every load report prints.
struct LatencySummary {
  size_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
};
LatencySummary Summarize(std::vector<double> values);

// A context with a deadline `seconds` from now.
std::unique_ptr<grpc::ClientContext> Context(int seconds = 30);

// "CODE message" of a failed call.
std::string Describe(const grpc::Status& status);

// Plain HTTP call over loopback (GET without a body, else a JSON POST).
// Returns the HTTP status (0 when the call failed) and the body in `*out`.
long HttpCall(const std::string& url, const std::string& body,
              std::string* out = nullptr);

// Replaces fake-openai's script: its next responses follow `steps` (see
// upstream/fake). True when the fake accepted it.
bool ScriptFake(int port, const nlohmann::json& steps);

// fake-openai's counters (GET /_fake/stats), or null when unreachable.
nlohmann::json FakeStats(int port);

// printf into a std::string (table cells).
std::string Format(const char* format, double a, double b = 0);
std::string MiB(int64_t kib);

// Clears fake-openai's script and queues `steps` instead (PUT
// /_fake/script), so steps a failed run left unused cannot answer the next
// one. True when the fake accepted it.
bool ResetFakeScript(int port, const nlohmann::json& steps);

// Splits complete SSE events ("...\n\n") off the front of `*pending` and
// calls `on_event(event)` for each.
template <typename OnEvent>
void TakeSseEvents(std::string* pending, OnEvent&& on_event) {
  size_t start = 0;
  for (size_t end; (end = pending->find("\n\n", start)) != std::string::npos;
       start = end + 2) {
    on_event(absl::string_view(*pending).substr(start, end + 2 - start));
  }
  pending->erase(0, start);
}

// A streamed POST to an SSE endpoint (fake-openai's /v1/responses or
// /v1/chat/completions, with its API key) on one kept-alive libcurl handle:
// what a client of the model sees without the gateway.
class SseClient {
 public:
  // `timeout_ms` 0: no limit.
  SseClient(const std::string& url, const std::string& body,
            long timeout_ms = 0);
  ~SseClient();
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  // Gets each complete SSE event and when the chunk completing it arrived.
  using OnEvent =
      std::function<void(absl::string_view event, Clock::time_point arrived)>;
  // One request; returns the HTTP status (0 when the transfer failed) and
  // curl's word on the transfer in `*error` (may be null).
  long Post(const OnEvent& on_event, std::string* error = nullptr);

 private:
  static size_t OnData(char* data, size_t size, size_t n, void* self);

  const std::string url_;
  const std::string body_;
  curl_slist* headers_ = nullptr;
  CURL* curl_ = nullptr;
  std::string pending_;
  const OnEvent* on_event_ = nullptr;
};

}  // namespace assistants::bench

#endif  // BENCH_BENCH_SUPPORT_H_
