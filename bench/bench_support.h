// Pieces every benchmark shares: clocks, another process's CPU and memory
// from /proc, latency statistics, gRPC call contexts, the fake upstream's
// control calls and markdown number formatting. Benchmarks measure the
// gateway against a baseline in the same run, so these stay small and exact.
#ifndef BENCH_BENCH_SUPPORT_H_
#define BENCH_BENCH_SUPPORT_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

}  // namespace assistants::bench

#endif  // BENCH_BENCH_SUPPORT_H_
