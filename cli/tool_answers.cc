#include "cli/tool_answers.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace assistants {
namespace cli {
namespace {

// A JSON string literal as Python's json.dumps writes it (ensure_ascii).
std::string PyJsonString(absl::string_view text) {
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', /*ensure_ascii=*/true,
            nlohmann::json::error_handler_t::replace);
}

// {"k1": v1, "k2": v2}: json.dumps' separators, keys in the given order (the
// seed builds its dicts in that order). Values are JSON text already.
std::string PyJsonObject(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<std::string> parts;
  parts.reserve(fields.size());
  for (const auto& [key, value] : fields) {
    parts.push_back(absl::StrCat(PyJsonString(key), ": ", value));
  }
  return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
}

std::string ErrorOutput(absl::string_view message) {
  return PyJsonObject({{"error", PyJsonString(message)}});
}

// The seed's fetch_stock_price table.
double FetchStockPrice(const std::string& ticker) {
  if (ticker == "AAPL") return 237.50;
  if (ticker == "GOOGL") return 191.30;
  if (ticker == "MSFT") return 452.80;
  return 0.0;
}

// The string argument `name` of a call's JSON arguments, or the error output
// to submit instead.
absl::StatusOr<std::string> StringArgument(absl::string_view arguments,
                                           const std::string& name) {
  const nlohmann::json args =
      nlohmann::json::parse(arguments, nullptr, /*allow_exceptions=*/false);
  if (!args.is_object()) {
    return absl::InvalidArgumentError(
        ErrorOutput("Invalid arguments: expected a JSON object"));
  }
  auto it = args.find(name);
  if (it == args.end() || !it->is_string()) {
    return absl::InvalidArgumentError(
        ErrorOutput(absl::StrCat("Missing string argument: ", name)));
  }
  return it->get<std::string>();
}

// A number with Python's int/float distinction.
struct Number {
  double value;
  bool is_int;
};

// Recursive descent over
//   expression := term (("+" | "-") term)*
//   term       := factor (("*" | "/") factor)*
//   factor     := ("+" | "-") factor | "(" expression ")" | number
class ArithmeticParser {
 public:
  explicit ArithmeticParser(absl::string_view text) : text_(text) {}

  absl::StatusOr<Number> Parse() {
    absl::StatusOr<Number> value = Expression();
    if (!value.ok()) return value;
    SkipSpaces();
    if (pos_ < text_.size()) return Unexpected();
    return value;
  }

 private:
  // Deep enough for any real expression, shallow enough for the stack.
  static constexpr int kMaxDepth = 100;

  absl::StatusOr<Number> Expression() {
    absl::StatusOr<Number> left = Term();
    while (left.ok()) {
      const char op = Peek();
      if (op != '+' && op != '-') break;
      ++pos_;
      absl::StatusOr<Number> right = Term();
      if (!right.ok()) return right;
      left = Number{
          op == '+' ? left->value + right->value : left->value - right->value,
          left->is_int && right->is_int};
    }
    return left;
  }

  absl::StatusOr<Number> Term() {
    absl::StatusOr<Number> left = Factor();
    while (left.ok()) {
      const char op = Peek();
      if (op != '*' && op != '/') break;
      ++pos_;
      absl::StatusOr<Number> right = Factor();
      if (!right.ok()) return right;
      if (op == '*') {
        left =
            Number{left->value * right->value, left->is_int && right->is_int};
      } else if (right->value == 0) {
        return absl::InvalidArgumentError("division by zero");
      } else {
        left = Number{left->value / right->value, false};
      }
    }
    return left;
  }

  absl::StatusOr<Number> Factor() {
    if (++depth_ > kMaxDepth) {
      return absl::InvalidArgumentError("expression nested too deeply");
    }
    absl::StatusOr<Number> result = FactorBody();
    --depth_;
    return result;
  }

  absl::StatusOr<Number> FactorBody() {
    const char c = Peek();
    if (c == '+' || c == '-') {
      ++pos_;
      absl::StatusOr<Number> operand = Factor();
      if (operand.ok() && c == '-') operand->value = -operand->value;
      return operand;
    }
    if (c == '(') {
      ++pos_;
      absl::StatusOr<Number> inner = Expression();
      if (!inner.ok()) return inner;
      if (Peek() != ')') return Unexpected();
      ++pos_;
      return inner;
    }
    return Literal();
  }

  absl::StatusOr<Number> Literal() {
    SkipSpaces();
    const size_t start = pos_;
    bool is_int = true;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
      return pos_ > from;
    };
    bool any = digits();
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      is_int = false;
      any = digits() || any;
    }
    if (!any) {
      pos_ = start;
      return Unexpected();
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      const size_t mark = pos_++;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) {
        ++pos_;
      }
      if (digits()) {
        is_int = false;
      } else {
        pos_ = mark;  // "2e" is 2 followed by garbage, reported by Parse().
      }
    }
    double value = 0;
    if (!absl::SimpleAtod(text_.substr(start, pos_ - start), &value) ||
        !std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "number out of range: ", text_.substr(start, pos_ - start)));
    }
    return Number{value, is_int};
  }

  void SkipSpaces() {
    while (pos_ < text_.size() && absl::ascii_isspace(text_[pos_])) ++pos_;
  }

  // The next non-space character, or '\0' at the end.
  char Peek() {
    SkipSpaces();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }

  absl::Status Unexpected() const {
    if (pos_ >= text_.size()) {
      return absl::InvalidArgumentError("unexpected end of expression");
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected '", text_.substr(pos_, 1), "' at position ", pos_ + 1));
  }

  absl::string_view text_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

absl::StatusOr<OutputsByFunction> ParseOutputsJson(absl::string_view json) {
  // ordered_json keeps an output object's keys in the file's order.
  const nlohmann::ordered_json root =
      nlohmann::ordered_json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError("--outputs: invalid JSON");
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        "--outputs: expected a JSON object mapping function names to outputs");
  }
  OutputsByFunction outputs;
  for (const auto& [name, value] : root.items()) {
    outputs[name] =
        value.is_string()
            ? value.get<std::string>()
            : value.dump(-1, ' ', false,
                         nlohmann::ordered_json::error_handler_t::replace);
  }
  return outputs;
}

std::string UnknownFunctionOutput(absl::string_view name) {
  return ErrorOutput(absl::StrCat("Unknown function: ", name));
}

std::string DemoToolOutput(absl::string_view name,
                           absl::string_view arguments) {
  if (name == "get_stock_price") {
    absl::StatusOr<std::string> ticker = StringArgument(arguments, "ticker");
    if (!ticker.ok()) return std::string(ticker.status().message());
    return PyJsonObject({{"price", PythonFloat(FetchStockPrice(*ticker))},
                         {"currency", PyJsonString("USD")}});
  }
  if (name == "calculator" || name == "calculate") {
    absl::StatusOr<std::string> expression =
        StringArgument(arguments, "expression");
    if (!expression.ok()) return std::string(expression.status().message());
    absl::StatusOr<std::string> result = EvaluateArithmetic(*expression);
    if (!result.ok()) return ErrorOutput(result.status().message());
    return PyJsonObject({{"result", *result}});
  }
  return UnknownFunctionOutput(name);
}

absl::StatusOr<std::string> EvaluateArithmetic(absl::string_view expression) {
  absl::StatusOr<Number> number = ArithmeticParser(expression).Parse();
  if (!number.ok()) return number.status();
  if (!std::isfinite(number->value)) {
    return absl::InvalidArgumentError("result out of range");
  }
  if (number->is_int) {
    // Python ints print without a fraction; "+ 0.0" turns -0 into 0.
    return absl::StrFormat("%.0f", number->value + 0.0);
  }
  return PythonFloat(number->value);
}

std::string PythonFloat(double value) {
  if (std::isnan(value)) return "NaN";  // json.dumps' spellings
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  // The shortest scientific form that reads back exactly ("2.375e+05").
  char buffer[40];
  for (int precision = 0; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*e", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  absl::string_view text = buffer;
  const bool negative = absl::ConsumePrefix(&text, "-");
  const size_t e = text.find('e');
  std::string digits =
      absl::StrCat(text.substr(0, 1), text.substr(2, e > 2 ? e - 2 : 0));
  int exponent = 0;
  (void)absl::SimpleAtoi(text.substr(e + 1), &exponent);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();

  std::string out = negative ? "-" : "";
  // Python's repr switches to exponent notation outside [1e-4, 1e16).
  if (exponent < -4 || exponent >= 16) {
    absl::StrAppend(&out, digits.substr(0, 1));
    if (digits.size() > 1) absl::StrAppend(&out, ".", digits.substr(1));
    absl::StrAppend(&out, absl::StrFormat("e%c%02d", exponent < 0 ? '-' : '+',
                                          std::abs(exponent)));
  } else if (exponent < 0) {
    absl::StrAppend(&out, "0.", std::string(-exponent - 1, '0'), digits);
  } else {
    const size_t int_digits = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= int_digits) {
      absl::StrAppend(&out, digits,
                      std::string(int_digits - digits.size(), '0'), ".0");
    } else {
      absl::StrAppend(&out, digits.substr(0, int_digits), ".",
                      digits.substr(int_digits));
    }
  }
  return out;
}

absl::StatusOr<std::string> AnswerToolCall(const ToolAnswerSources& sources,
                                           const v1::RequiredToolCall& call) {
  const std::string& name = call.function().name();
  if (sources.outputs.has_value()) {
    auto it = sources.outputs->find(name);
    if (it != sources.outputs->end()) return it->second;
  }
  if (sources.demo_tools)
    return DemoToolOutput(name, call.function().arguments());
  if (sources.outputs.has_value()) return UnknownFunctionOutput(name);
  if (sources.prompt_in == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("no output for ", name, " (", call.id(),
                     "): give --outputs or --demo-tools"));
  }
  if (sources.prompt_out != nullptr) {
    *sources.prompt_out << "output for " << name << " (" << call.id() << ")> ";
    sources.prompt_out->flush();
  }
  std::string line;
  if (!std::getline(*sources.prompt_in, line)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no output for ", name, " (", call.id(), "): standard input closed"));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

}  // namespace cli
}  // namespace assistants
