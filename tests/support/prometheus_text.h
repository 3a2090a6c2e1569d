// Reading Prometheus text exposition in tests: the samples of a /metrics
// page, and the value of one series picked by name and labels. Header-only.
#ifndef TESTS_SUPPORT_PROMETHEUS_TEXT_H_
#define TESTS_SUPPORT_PROMETHEUS_TEXT_H_

#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace assistants::test_support {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Every sample line of `text` (comments and malformed lines skipped).
inline std::vector<PromSample> ParsePrometheusText(const std::string& text) {
  std::vector<PromSample> samples;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    PromSample sample;
    size_t i = line.find_first_of("{ ");
    if (i == std::string::npos) continue;
    sample.name = line.substr(0, i);
    if (line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() ||
            line[eq + 1] != '"') {
          break;
        }
        const std::string key = line.substr(i, eq - i);
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) ++j;
          value += line[j];
        }
        sample.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      i = line.find(' ', i);
      if (i == std::string::npos) continue;
    }
    sample.value = std::strtod(line.c_str() + i + 1, nullptr);
    samples.push_back(std::move(sample));
  }
  return samples;
}

// The value of the sample named `name` whose labels include every pair of
// `labels`; the sum when several match; nullopt when none does.
inline std::optional<double> SeriesValue(
    const std::string& text, const std::string& name,
    const std::map<std::string, std::string>& labels = {}) {
  std::optional<double> total;
  for (const PromSample& sample : ParsePrometheusText(text)) {
    if (sample.name != name) continue;
    bool match = true;
    for (const auto& [key, value] : labels) {
      auto it = sample.labels.find(key);
      if (it == sample.labels.end() || it->second != value) {
        match = false;
        break;
      }
    }
    if (match) total = total.value_or(0) + sample.value;
  }
  return total;
}

}  // namespace assistants::test_support

#endif  // TESTS_SUPPORT_PROMETHEUS_TEXT_H_
