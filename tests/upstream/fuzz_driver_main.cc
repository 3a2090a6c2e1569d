// A stand-in for libFuzzer's main() so the SSE fuzz target also runs where
// there is no libFuzzer (g++ builds, ASan/UBSan CI): it calls
// LLVMFuzzerTestOneInput on pseudo-random SSE-like inputs from a fixed seed,
// then on every file of tests/upstream/testdata under several chunkings and
// limits. Failures abort inside the target, so exit status 0 means all passed.
//
// Usage: sse_parser_fuzz_driver [iterations=20000] [file-or-dir...]
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()),
                         input.size());
}

// Pieces the parser treats specially, so random inputs reach its corners
// far more often than uniformly random bytes would.
const std::vector<std::string>& Tokens() {
  static const auto* tokens = new std::vector<std::string>{
      "data:",
      "data: ",
      "data",
      "event:",
      "event: ",
      "id:",
      "id: ",
      "retry: 1000",
      ":",
      ": keep-alive",
      " ",
      "\r",
      "\n",
      "\r\n",
      "\n\n",
      "\r\n\r\n",
      "\xEF\xBB\xBF",
      "\xEF",
      "\xEF\xBB",
      std::string("\0", 1),
      "[DONE]",
      "{\"type\":\"response.output_text.delta\",\"delta\":\"x\"}",
      "caf\xC3\xA9",
      "\xF0\x9F\x8E\x89",
      "x",
      "yz",
      "DATA:"};
  return *tokens;
}

std::string RandomInput(std::mt19937& rng) {
  std::string input;
  // Header (see sse_parser_fuzz.cc): chunk-length count and limit.
  const int num_lengths = static_cast<int>(rng() % 16);
  const int limit_bits = rng() % 3 == 0 ? static_cast<int>(rng() % 16) : 0;
  input.push_back(static_cast<char>(limit_bits << 4 | num_lengths));
  for (int i = 0; i < num_lengths; ++i) {
    // Mostly short chunks, which exercise the boundary handling.
    input.push_back(
        static_cast<char>(rng() % 4 == 0 ? rng() % 256 : rng() % 8));
  }
  const int pieces = static_cast<int>(rng() % 64);
  for (int i = 0; i < pieces; ++i) {
    if (rng() % 8 == 0) {
      input.push_back(static_cast<char>(rng() % 256));
    } else {
      input += Tokens()[rng() % Tokens().size()];
    }
  }
  return input;
}

bool ReadFile(const std::filesystem::path& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in),
              std::istreambuf_iterator<char>());
  return true;
}

// Runs a recorded stream under a few chunkings and limits.
void RunFile(const std::string& stream) {
  static const std::vector<std::string> headers = {
      std::string(1, '\x00'),              // byte by byte
      std::string("\x01\x01", 2),          // 1-byte chunks via a length
      std::string("\x03\x02\x00\x05", 4),  // with empty reads
      std::string("\x02\x07\xFF", 3),
      std::string("\x01\x40", 2),  // 64-byte chunks
      std::string("\xF1\x0D", 2),  // limit 120: fails partway
      std::string("\x80", 1),      // limit 64, byte by byte
  };
  for (const std::string& header : headers) Run(header + stream);
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = 20000;
  if (argc > 1) iterations = std::strtol(argv[1], nullptr, 10);

  std::mt19937 rng(0x55E5EED);
  for (long i = 0; i < iterations; ++i) Run(RandomInput(rng));

  std::vector<std::filesystem::path> inputs;
#ifdef ASSISTANTS_SOURCE_DIR
  inputs.emplace_back(ASSISTANTS_SOURCE_DIR "/tests/upstream/testdata");
#endif
  for (int i = 2; i < argc; ++i) inputs.emplace_back(argv[i]);

  size_t files = 0;
  for (const auto& path : inputs) {
    std::vector<std::filesystem::path> paths;
    if (std::filesystem::is_directory(path)) {
      for (const auto& entry : std::filesystem::directory_iterator(path)) {
        if (entry.is_regular_file()) paths.push_back(entry.path());
      }
    } else {
      paths.push_back(path);
    }
    for (const auto& p : paths) {
      std::string stream;
      if (!ReadFile(p, &stream)) {
        std::fprintf(stderr, "cannot read %s\n", p.c_str());
        return 1;
      }
      RunFile(stream);
      ++files;
    }
  }
  std::printf("sse_parser_fuzz_driver: %ld random inputs, %zu files: OK\n",
              iterations, files);
  return 0;
}
