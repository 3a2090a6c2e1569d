#include "service/common/ids.h"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace assistants {
namespace {

constexpr char kBase62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void FillRandom(uint8_t* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = getrandom(out + done, size - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Without entropy no id is safe to hand out.
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace

std::string NewId(absl::string_view prefix) {
  std::array<uint8_t, 16> bytes;
  FillRandom(bytes.data(), bytes.size());
  unsigned __int128 value = 0;
  for (uint8_t b : bytes) value = (value << 8) | b;
  // 62^22 > 2^128, so 22 digits hold every 128-bit value.
  std::string digits(22, '0');
  for (int i = 21; i >= 0; --i) {
    digits[i] = kBase62[static_cast<int>(value % 62)];
    value /= 62;
  }
  return absl::StrCat(prefix, digits);
}

bool LooksLikeId(absl::string_view id, absl::string_view prefix) {
  if (!absl::StartsWith(id, prefix)) return false;
  absl::string_view rest = id.substr(prefix.size());
  if (rest.empty() || rest.size() > 64) return false;
  for (char c : rest) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace assistants
