// Helpers for end-to-end tests that drive the real binaries from outside:
// start a server child process (assistants-gateway, fake-openai, a tool
// worker) on a free port and stop it the way an operator would (SIGTERM), run a
// command-line tool and capture its output, and make a scratch directory. They
// deliberately use only the public surface (flags, the "listening on" line,
// exit codes, gRPC) so the tests catch regressions in exactly what deployments
// rely on.
#ifndef TESTS_SUPPORT_SERVER_PROCESS_H_
#define TESTS_SUPPORT_SERVER_PROCESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace assistants::test_support {

// Path of the gateway binary: $ASSISTANTS_GATEWAY_BIN, else the build tree's
// service/assistants-gateway.
std::string GatewayBinary();

// Path of the CLI: $ASSISTANTSCTL_BIN, else the build tree's cli/assistantsctl.
std::string CliBinary();

// Path of the fake OpenAI server: $FAKE_OPENAI_BIN, else the build tree's
// upstream/fake-openai.
std::string FakeOpenAiBinary();

// A directory under $TEST_TMPDIR (or /tmp) removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One running server process. Its stderr is read by a background
// thread for the whole life of the process: first to learn the port from the
// "assistants-gateway listening on HOST:PORT" line, then so the child never
// blocks on a full pipe while it logs.
class ServerProcess {
 public:
  ServerProcess() = default;
  // Kills the process (SIGKILL) if it is still running: a test that failed
  // halfway must not leave a server behind.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts `binary --listen=127.0.0.1:0 <args...>` and waits up to `timeout`
  // for the "listening on" line. On failure returns false with `*error`
  // describing why (including what the process printed).
  bool Start(const std::string& binary, const std::vector<std::string>& args,
             std::string* error,
             std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Environment entries ("NAME=VALUE") the next Start() adds to the one this
  // process passes down; an entry replaces an inherited variable of the same
  // name, and "NAME=" sets it empty.
  void set_env(std::vector<std::string> env) { env_ = std::move(env); }

  // A channel to the gateway once it accepts connections, or nullptr when it
  // does not within `timeout`.
  std::shared_ptr<grpc::Channel> Connect(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // Sends SIGTERM and waits up to `timeout` for the process to exit. Returns
  // the waitpid() status, so 0 means "exited with code 0"; -1 means it did
  // not exit in time and was killed with SIGKILL.
  int Stop(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Kills the process with SIGKILL, as a crash would, and reaps it (a no-op
  // when it is not running).
  void Kill();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  // "127.0.0.1:PORT", usable as a gRPC target.
  std::string address() const;
  // Everything the process wrote to stderr so far.
  std::string captured_stderr() const;

 private:
  void ReadStderr(int fd);

  std::vector<std::string> env_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::string stderr_;          // Guarded by mu_.
  bool stderr_closed_ = false;  // Guarded by mu_.
};

// "human readable" description of a waitpid() status, for failure messages.
std::string DescribeWaitStatus(int status);

struct CommandResult {
  // The exit code, or -1 if the command was killed by a signal or could not
  // be started.
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
};

// Runs `argv` (argv[0] is the program path) to completion with stdin from
// /dev/null and returns its exit code and output. The command is killed if it
// runs longer than `timeout`. `env` entries ("NAME=VALUE") replace or add
// variables of the environment passed down, as in ServerProcess::set_env.
CommandResult RunCommand(
    const std::vector<std::string>& argv,
    std::chrono::milliseconds timeout = std::chrono::seconds(60),
    const std::vector<std::string>& env = {});

}  // namespace assistants::test_support

#endif  // TESTS_SUPPORT_SERVER_PROCESS_H_
