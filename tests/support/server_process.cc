// Child-process helpers for the end-to-end tests; see gateway_process.h.
#include "tests/support/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

extern char** environ;

namespace assistants::test_support {
namespace {

// Every server binary of the project announces "<name> listening on HOST:PORT".
constexpr char kReadyMarker[] = " listening on ";

#ifndef ASSISTANTS_BINARY_DIR
#define ASSISTANTS_BINARY_DIR "."
#endif

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string ErrnoText(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// Our environment with `overrides` ("NAME=VALUE") replacing or adding
// variables.
std::vector<std::string> ChildEnvironment(
    const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    const std::string name = text.substr(0, text.find('='));
    bool replaced = false;
    for (const std::string& o : overrides) {
      replaced = replaced || o.substr(0, o.find('=')) == name;
    }
    if (!replaced) env.push_back(text);
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

// Spawns `argv` with stdin from /dev/null and the given descriptors as its
// stdout/stderr (-1 keeps ours), with our environment plus `env_overrides`.
// Returns the pid, or -1 with *error set.
pid_t Spawn(const std::vector<std::string>& argv, int stdout_fd, int stderr_fd,
            std::string* error,
            const std::vector<std::string>& env_overrides = {}) {
  std::vector<char*> raw_argv;
  for (const std::string& arg : argv) {
    raw_argv.push_back(const_cast<char*>(arg.c_str()));
  }
  raw_argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  if (stdout_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
  }
  if (stderr_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, stderr_fd, STDERR_FILENO);
  }
  std::vector<std::string> env;
  std::vector<char*> raw_env;
  if (!env_overrides.empty()) {
    env = ChildEnvironment(env_overrides);
    for (std::string& entry : env) raw_env.push_back(entry.data());
    raw_env.push_back(nullptr);
  }
  pid_t pid = -1;
  const int rc =
      posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, raw_argv.data(),
                  env_overrides.empty() ? environ : raw_env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    *error = "cannot start " + argv[0] + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

// waitpid() that retries on EINTR.
int WaitFor(pid_t pid, int options, int* status) {
  int rc;
  do {
    rc = waitpid(pid, status, options);
  } while (rc < 0 && errno == EINTR);
  return rc;
}

// Reads what is available on `fd` into `out`; returns false at end of file
// or on an error other than EINTR/EAGAIN.
bool ReadSome(int fd, std::string* out) {
  char buffer[4096];
  const ssize_t n = read(fd, buffer, sizeof(buffer));
  if (n > 0) {
    out->append(buffer, static_cast<size_t>(n));
    return true;
  }
  return n < 0 && (errno == EINTR || errno == EAGAIN);
}

}  // namespace

std::string GatewayBinary() {
  return EnvOr("ASSISTANTS_GATEWAY_BIN", std::string(ASSISTANTS_BINARY_DIR) +
                                             "/service/assistants-gateway");
}

std::string CliBinary() {
  return EnvOr("ASSISTANTSCTL_BIN",
               std::string(ASSISTANTS_BINARY_DIR) + "/cli/assistantsctl");
}

std::string FakeOpenAiBinary() {
  return EnvOr("FAKE_OPENAI_BIN",
               std::string(ASSISTANTS_BINARY_DIR) + "/upstream/fake-openai");
}

TempDir::TempDir() {
  std::string pattern = EnvOr("TEST_TMPDIR", "/tmp") + "/assistants-e2e-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    std::abort();  // No scratch space: nothing sensible a test can do.
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

ServerProcess::~ServerProcess() { Kill(); }

bool ServerProcess::Start(const std::string& binary,
                          const std::vector<std::string>& args,
                          std::string* error,
                          std::chrono::milliseconds timeout) {
  if (running()) {
    *error = "already started";
    return false;
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    *error = ErrnoText("pipe2");
    return false;
  }
  std::vector<std::string> argv = {binary, "--listen=127.0.0.1:0"};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = Spawn(argv, -1, pipe_fds[1], error, env_);
  close(pipe_fds[1]);  // Only the child writes; EOF then means it exited.
  if (pid_ < 0) {
    close(pipe_fds[0]);
    return false;
  }
  port_ = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stderr_.clear();
    stderr_closed_ = false;
  }
  reader_ = std::thread(&ServerProcess::ReadStderr, this, pipe_fds[0]);

  // Wait for a complete "listening on" line.
  std::string line;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto ready = [&] {
      const size_t at = stderr_.find(kReadyMarker);
      if (at == std::string::npos) return false;
      const size_t end = stderr_.find('\n', at);
      if (end == std::string::npos) return false;
      line = stderr_.substr(at, end - at);
      return true;
    };
    changed_.wait_for(lock, timeout, [&] { return ready() || stderr_closed_; });
  }
  // The address is the first word after the marker (the line may go on, e.g.
  // with the store in use); the port follows its last ':'.
  if (!line.empty()) {
    std::string address = line.substr(std::strlen(kReadyMarker));
    address = address.substr(0, address.find_first_of(" \t\r"));
    const size_t colon = address.rfind(':');
    if (colon != std::string::npos) {
      port_ = std::atoi(address.c_str() + colon + 1);
    }
  }
  if (port_ > 0) return true;

  *error = (line.empty() ? "no \"listening on\" line"
                         : "cannot parse port from \"" + line + "\"");
  Kill();
  *error += "; stderr was:\n" + captured_stderr();
  return false;
}

std::shared_ptr<grpc::Channel> ServerProcess::Connect(
    std::chrono::milliseconds timeout) const {
  auto channel =
      grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + timeout)) {
    return nullptr;
  }
  return channel;
}

int ServerProcess::Stop(std::chrono::milliseconds timeout) {
  if (!running()) return -1;
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (WaitFor(pid_, WNOHANG, &status) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      Kill();
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return status;
}

std::string ServerProcess::address() const {
  return "127.0.0.1:" + std::to_string(port_);
}

std::string ServerProcess::captured_stderr() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stderr_;
}

void ServerProcess::ReadStderr(int fd) {
  std::string chunk;
  while (ReadSome(fd, &chunk)) {
    if (chunk.empty()) continue;
    std::lock_guard<std::mutex> lock(mu_);
    stderr_ += chunk;
    chunk.clear();
    changed_.notify_all();
  }
  close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  stderr_closed_ = true;
  changed_.notify_all();
}

void ServerProcess::Kill() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    WaitFor(pid_, 0, &status);
    pid_ = -1;
  }
  if (reader_.joinable()) reader_.join();
}

std::string DescribeWaitStatus(int status) {
  if (status == -1) return "did not exit in time (killed)";
  if (WIFEXITED(status)) {
    return "exited with code " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout,
                         const std::vector<std::string>& env) {
  CommandResult result;
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.stderr_text = ErrnoText("pipe2");
    return result;
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.stderr_text = ErrnoText("pipe2");
    close(out_pipe[0]);
    close(out_pipe[1]);
    return result;
  }
  std::string error;
  const pid_t pid = Spawn(argv, out_pipe[1], err_pipe[1], &error, env);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    result.stderr_text = error;
    return result;
  }

  // Drain both pipes together so neither can fill up and stall the child.
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.stdout_text, &result.stderr_text};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int open_count = 2;
  bool killed = false;
  while (open_count > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 && !killed) {
      kill(pid, SIGKILL);  // Pipes then reach EOF and the loop ends.
      killed = true;
    }
    const int ready =
        poll(fds, 2, killed ? 1000 : static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      if (!ReadSome(fds[i].fd, sinks[i])) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  for (const pollfd& fd : fds) {
    if (fd.fd >= 0) close(fd.fd);
  }
  int status = 0;
  WaitFor(pid, 0, &status);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace assistants::test_support
