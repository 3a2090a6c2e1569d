// CurlHttpClient: the production HttpClient. One event-loop thread owns a
// curl multi handle and runs every transfer on it; other threads hand Start
// and Cancel to the loop through a mutex-protected queue and wake it with
// curl_multi_wakeup. Connections (HTTP/1.1 keep-alive, HTTP/2 multiplexed over
// TLS) live in the multi handle's shared pool so that steady traffic reuses
// them. First-byte and idle deadlines, and retry backoff, are the loop's own
// timers; connect and total deadlines are libcurl's.
#ifndef UPSTREAM_HTTP_CURL_HTTP_CLIENT_H_
#define UPSTREAM_HTTP_CURL_HTTP_CLIENT_H_

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "upstream/http/http_client.h"

namespace assistants::upstream {

struct CurlHttpClientOptions {
  // Connection pool limits (CURLMOPT_MAX_HOST_CONNECTIONS /
  // CURLMOPT_MAX_TOTAL_CONNECTIONS); transfers beyond them queue inside curl.
  int max_connections_per_host = 64;
  int max_total_connections = 256;
  // Negotiate HTTP/2 (ALPN) for https:// URLs and multiplex requests over it.
  // Plain http:// always uses HTTP/1.1 keep-alive.
  bool http2 = true;
  // PEM bundle of trusted CAs; empty uses the system store. Peers are always
  // verified.
  std::string ca_file;
  // Factor applied to every computed backoff delay. Empty means uniformly
  // random in [0.5, 1.5); tests pin it to 1.0.
  std::function<double()> jitter;
  // Advertise every encoding libcurl can decode (gzip, br, zstd) and decode
  // responses transparently. libcurl decodes incrementally, so event streams
  // still arrive chunk by chunk.
  bool accept_compressed = true;
  // Easy handles kept after their request finished, to be reused by the next
  // one (avoids re-allocating curl's per-handle state and buffers).
  int max_spare_handles = 64;
};

class CurlHttpClient : public HttpClient {
 public:
  explicit CurlHttpClient(CurlHttpClientOptions options = {});
  // Stops the loop; requests still running complete with CANCELLED. Must not
  // run on the loop thread (from a handler callback).
  ~CurlHttpClient() override;

  CurlHttpClient(const CurlHttpClient&) = delete;
  CurlHttpClient& operator=(const CurlHttpClient&) = delete;

  RequestId Start(HttpRequest request,
                  std::shared_ptr<HttpStreamHandler> handler) override;
  void Cancel(RequestId id) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Transfer;
  // Work handed to the loop: a Start (`start` set) or a Cancel (`start` null).
  struct Command {
    RequestId id;
    std::unique_ptr<Transfer> start;
  };

  // Loop thread only, below.
  void Run();
  // Applies queued commands; false once the client is shutting down.
  bool DrainCommands();
  void AddTransfer(std::unique_ptr<Transfer> transfer);
  void ConfigureEasy(Transfer& t);
  void BeginAttempt(Transfer& t);
  void ReapFinished();
  // Ends the running attempt of `t`: completes the request or schedules the
  // next attempt.
  void FinishAttempt(Transfer& t, CURLcode code);
  void ScheduleRetry(Transfer& t, std::chrono::milliseconds delay);
  bool CanRetry(const Transfer& t, std::chrono::milliseconds delay) const;
  std::chrono::milliseconds Backoff(const Transfer& t);
  void CheckTimers(Clock::time_point now);
  void NoteDeadline(Clock::time_point deadline);
  // Completes the request exactly once and forgets it.
  void Complete(Transfer& t, absl::Status status);
  void Shutdown();
  CURL* TakeEasy();
  void ReturnEasy(CURL* easy);
  void HeadersComplete(Transfer& t);

  static size_t HeaderCallback(char* data, size_t size, size_t count,
                               void* user);
  static size_t WriteCallback(char* data, size_t size, size_t count,
                              void* user);
  static int PrereqCallback(void* user, char* conn_primary_ip,
                            char* conn_local_ip, int conn_primary_port,
                            int conn_local_port);

  const CurlHttpClientOptions options_;
  std::atomic<RequestId> next_id_{1};
  // Created before the loop starts and destroyed by it; other threads only
  // call curl_multi_wakeup on it, which libcurl allows.
  CURLM* const multi_;

  absl::Mutex mu_;
  std::vector<Command> commands_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Owned by the loop thread; never touched elsewhere.
  absl::flat_hash_map<RequestId, std::unique_ptr<Transfer>> transfers_;
  std::vector<Command> draining_;
  std::vector<RequestId> expired_;
  std::vector<CURL*> spare_easies_;
  // No first-byte/idle deadline or retry is due before this instant; timers
  // are scanned only once it passes. Deadlines only move later as data
  // arrives, so this lazy lower bound keeps the per-chunk path free of
  // timer bookkeeping.
  Clock::time_point next_timer_check_;
  absl::BitGen bitgen_;

  std::thread loop_;
  std::thread::id loop_id_;
};

}  // namespace assistants::upstream

#endif  // UPSTREAM_HTTP_CURL_HTTP_CLIENT_H_
