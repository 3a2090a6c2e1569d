// fake-openai's model: request validation that mirrors the real API's 400s,
// the deterministic default behaviour, scripted steps, and rendering of
// Responses / Chat Completions bodies and SSE streams.
//
// Default behaviour, in order:
//  1. The input ends with function outputs: if a calculator-like tool that
//     the question asked for has not run yet and a price and a quantity are
//     known, call it ("1000 * 237.5"); otherwise answer in text using the
//     outputs (price x quantity when both are found).
//  2. Function tools match the last user message (a word of the tool name,
//     split on _ - and camelCase and ignoring get/set/fetch/the, or a
//     distinctive word of its description, compared after light stemming):
//     call them (all of them in parallel unless parallel_tool_calls is
//     false). A calculator-like tool is deferred while another tool matches,
//     because its input usually depends on that tool's output.
//  3. code_interpreter is offered and the user asks to calculate/compute:
//     a code_interpreter_call that evaluates the expression, then text.
//  4. Otherwise a short text echoing the question.
// Usage: input tokens = ceil(characters of input text, instructions and
// tool definitions / 4); output tokens = number of deltas streamed.
#include "upstream/fake/scenario.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace assistants::fake_openai {
namespace {

constexpr size_t kMaxStoredResponses = 10000;

std::string Lower(const std::string& s) { return absl::AsciiStrToLower(s); }

std::string Dump(const OrderedJson& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string TypeName(const Json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "a boolean";
  if (j.is_number_integer()) return "an integer";
  if (j.is_number()) return "a decimal";
  if (j.is_string()) return "a string";
  if (j.is_array()) return "an array";
  return "an object";
}

bool IsUtf8Continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Byte offsets of code point starts, plus the end.
std::vector<size_t> CodePointStarts(const std::string& s) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!IsUtf8Continuation(static_cast<unsigned char>(s[i])))
      starts.push_back(i);
  }
  starts.push_back(s.size());
  return starts;
}

bool IsWordByte(unsigned char c) { return std::isalnum(c) || c >= 0x80; }

// Words of `text` (letters/digits/apostrophes), original case.
std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> words;
  std::string cur;
  for (unsigned char c : text) {
    if (IsWordByte(c)) {
      cur.push_back(static_cast<char>(c));
    } else if (!cur.empty()) {
      words.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(cur);
  return words;
}

const std::set<std::string>& StopWords() {
  static const auto* words = new std::set<std::string>{
      "a",        "an",       "and",         "are",       "about",
      "any",      "as",       "at",          "be",        "by",
      "can",      "could",    "current",     "currently", "data",
      "details",  "do",       "does",        "for",       "from",
      "function", "get",      "given",       "have",      "how",
      "i",        "in",       "information", "is",        "it",
      "its",      "latest",   "like",        "look",      "lookup",
      "me",       "much",     "my",          "of",        "on",
      "or",       "please",   "provide",     "provided",  "provides",
      "return",   "returns",  "retrieve",    "retrieves", "set",
      "should",   "show",     "some",        "specific",  "specified",
      "tell",     "that",     "the",         "their",     "them",
      "then",     "there",    "these",       "this",      "to",
      "tool",     "use",      "used",        "using",     "value",
      "values",   "want",     "was",         "what",      "whats",
      "when",     "where",    "which",       "who",       "why",
      "will",     "with",     "would",       "you",       "your",
      "fetch",    "fetches",  "gets",        "name",      "given",
      "input",    "output",   "result",      "results",   "call",
      "calls",    "user",     "request",     "string",    "number",
      "optional", "required", "worth",       "also",      "just",
      "into",     "over",     "than",        "thing",     "things",
      "well",     "know",     "need",        "make"};
  return *words;
}

// Light stemming so "calculate"/"calculator", "price"/"prices" and
// "share"/"shares" compare equal.
std::string Stem(std::string w) {
  w = Lower(w);
  // Possessive / contraction tails: "what's" arrives as "what" + "s".
  static const char* kSuffixes[] = {
      "ations", "ation", "ators", "ator", "ates", "ate", "ings", "ing", "ers",
      "er",     "ors",   "or",    "ies",  "es",   "ed",  "s",    "e"};
  for (const char* suffix : kSuffixes) {
    const size_t n = std::strlen(suffix);
    if (w.size() >= n + 4 && w.compare(w.size() - n, n, suffix) == 0) {
      w.resize(w.size() - n);
      if (std::strcmp(suffix, "ies") == 0) w += "y";
      break;
    }
  }
  return w;
}

// Splits a tool name on _ - . and camelCase into lower-case parts.
std::vector<std::string> NameParts(const std::string& name) {
  std::vector<std::string> parts;
  std::string cur;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '_' || c == '-' || c == '.' || c == ' ') {
      if (!cur.empty()) parts.push_back(Lower(cur));
      cur.clear();
      continue;
    }
    if (std::isupper(static_cast<unsigned char>(c)) && !cur.empty() &&
        std::islower(static_cast<unsigned char>(cur.back()))) {
      parts.push_back(Lower(cur));
      cur.clear();
    }
    cur.push_back(c);
  }
  if (!cur.empty()) parts.push_back(Lower(cur));
  return parts;
}

bool IsCalculatorLike(const ToolDef& tool) {
  const Json& props = tool.parameters.contains("properties")
                          ? tool.parameters["properties"]
                          : Json::object();
  if (props.is_object() && props.contains("expression")) return true;
  const std::string name = Lower(tool.name);
  return absl::StrContains(name, "calc") || absl::StrContains(name, "math");
}

struct NumberToken {
  double value;
  std::string text;  // As written, without thousands separators.
  size_t begin;
  size_t end;
};

// Numbers written in `text` ("1,000", "237.5", "42"), skipping digits that
// are part of a word such as "B2" or "gpt4".
std::vector<NumberToken> ExtractNumbers(const std::string& text) {
  std::vector<NumberToken> numbers;
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = text[i];
    if (!std::isdigit(c)) {
      ++i;
      continue;
    }
    const bool glued =
        i > 0 && std::isalpha(static_cast<unsigned char>(text[i - 1]));
    size_t j = i;
    std::string digits;
    while (j < text.size()) {
      const unsigned char d = text[j];
      if (std::isdigit(d)) {
        digits.push_back(static_cast<char>(d));
        ++j;
      } else if ((d == ',' || d == '.') && j + 1 < text.size() &&
                 std::isdigit(static_cast<unsigned char>(text[j + 1])) &&
                 !(d == '.' && digits.find('.') != std::string::npos)) {
        if (d == '.') digits.push_back('.');
        ++j;
      } else {
        break;
      }
    }
    const bool glued_after =
        j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]));
    if (!glued && !glued_after) {
      numbers.push_back({std::strtod(digits.c_str(), nullptr), digits, i, j});
    }
    i = j;
  }
  return numbers;
}

std::string Trim(const std::string& s) {
  return std::string(absl::StripAsciiWhitespace(s));
}

std::string Truncate(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t cut = max_bytes;
  while (cut > 0 && IsUtf8Continuation(static_cast<unsigned char>(s[cut])))
    --cut;
  return s.substr(0, cut) + "...";
}

// An all-caps token of 1-5 letters (a ticker/symbol), preferring longer ones
// over the pronoun "I" and the article "A".
std::string FindCapsToken(const std::string& text) {
  std::string fallback;
  for (const std::string& w : Words(text)) {
    if (w.size() > 5) continue;
    bool caps = true;
    for (char c : w) caps = caps && std::isupper(static_cast<unsigned char>(c));
    if (!caps) continue;
    if (w == "I" || w == "A") {
      if (fallback.empty()) fallback = w;
      continue;
    }
    return w;
  }
  return fallback;
}

std::string FindQuoted(const std::string& text) {
  for (const char* quotes : {"\"\"", "''", "``"}) {
    const size_t open = text.find(quotes[0]);
    if (open == std::string::npos) continue;
    const size_t close = text.find(quotes[1], open + 1);
    if (close == std::string::npos || close == open + 1) continue;
    // Skip apostrophes inside words ("what's").
    if (quotes[0] == '\'' && open > 0 &&
        std::isalpha(static_cast<unsigned char>(text[open - 1])))
      continue;
    return text.substr(open + 1, close - open - 1);
  }
  return "";
}

// A capitalised word that does not start a sentence ("Paris"), else the
// longest non-stop word.
std::string RelevantWord(const std::string& text) {
  const std::vector<std::string> words = Words(text);
  // Recompute sentence starts by scanning the raw text.
  size_t pos = 0;
  bool sentence_start = true;
  std::string best_caps;
  for (const std::string& w : words) {
    const size_t at = text.find(w, pos);
    for (size_t k = pos; k < at && k < text.size(); ++k) {
      if (text[k] == '.' || text[k] == '?' || text[k] == '!')
        sentence_start = true;
    }
    pos = at + w.size();
    const bool cap = std::isupper(static_cast<unsigned char>(w[0]));
    if (cap && !sentence_start && best_caps.empty() &&
        !StopWords().count(Lower(w)) && w.size() > 1) {
      best_caps = w;
    }
    sentence_start = false;
  }
  if (!best_caps.empty()) return best_caps;
  std::string longest;
  for (const std::string& w : words) {
    if (StopWords().count(Lower(w))) continue;
    if (std::isdigit(static_cast<unsigned char>(w[0]))) continue;
    if (w.size() > longest.size()) longest = w;
  }
  return longest.empty() ? "example" : longest;
}

std::string FirstNonNullType(const Json& schema) {
  if (!schema.is_object() || !schema.contains("type")) {
    if (schema.is_object() && schema.contains("properties")) return "object";
    if (schema.is_object() && schema.contains("enum")) return "string";
    return "string";
  }
  const Json& t = schema["type"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const Json& x : t)
      if (x.is_string() && x != "null") return x.get<std::string>();
  }
  return "string";
}

std::string LastUserText(const std::vector<ConvItem>& items, int* index) {
  for (int i = static_cast<int>(items.size()) - 1; i >= 0; --i) {
    if (items[i].kind == ConvItem::kMessage && items[i].role == "user") {
      if (index) *index = i;
      return items[i].text;
    }
  }
  if (index) *index = -1;
  return "";
}

bool AsksToCompute(const std::string& text) {
  const std::string l = Lower(text);
  return absl::StrContains(l, "calculat") || absl::StrContains(l, "comput");
}

std::string FallbackExpression(const std::string& text) {
  std::string expr = ExtractExpression(text);
  if (!expr.empty()) return expr;
  const std::vector<NumberToken> nums = ExtractNumbers(text);
  if (nums.size() >= 2) return nums[0].text + " * " + nums[1].text;
  if (nums.size() == 1) return nums[0].text;
  return "0";
}

std::string StringArgument(const std::string& prop_name, const Json& prop,
                           const std::string& text) {
  const std::string l = Lower(prop_name);
  if (prop.is_object() && prop.contains("enum") && prop["enum"].is_array() &&
      !prop["enum"].empty()) {
    for (const Json& v : prop["enum"]) {
      if (v.is_string() &&
          absl::StrContains(Lower(text), Lower(v.get<std::string>())))
        return v.get<std::string>();
    }
    return prop["enum"][0].is_string() ? prop["enum"][0].get<std::string>()
                                       : Dump(prop["enum"][0]);
  }
  if (absl::StrContains(l, "expression") || absl::StrContains(l, "formula"))
    return FallbackExpression(text);
  if (absl::StrContains(l, "ticker") || absl::StrContains(l, "symbol") ||
      l == "code" || absl::StrContains(l, "currency")) {
    const std::string caps = FindCapsToken(text);
    if (!caps.empty()) return caps;
  }
  const std::string quoted = FindQuoted(text);
  if (!quoted.empty()) return quoted;
  for (const char* whole : {"query", "question", "prompt", "text", "input",
                            "message", "search", "content", "description"}) {
    if (absl::StrContains(l, whole)) return Trim(text);
  }
  return RelevantWord(text);
}

struct ItemOutput {
  const ConvItem* call = nullptr;  // May be null when unmatched.
  const ConvItem* output = nullptr;
};

bool NumberFrom(const Json& j, double* v) {
  if (j.is_number()) {
    *v = j.get<double>();
    return true;
  }
  if (j.is_string()) {
    const std::vector<NumberToken> n = ExtractNumbers(j.get<std::string>());
    if (!n.empty()) {
      *v = n[0].value;
      return true;
    }
  }
  return false;
}

// Finds a price-like number (and its currency) in a tool output.
bool FindPrice(const std::string& output, double* price, std::string* cur) {
  const Json j = Json::parse(output, nullptr, false);
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string key = Lower(it.key());
      if (absl::StrContains(key, "price") || key == "cost" || key == "amount" ||
          key == "rate" || key == "value") {
        if (NumberFrom(it.value(), price)) {
          if (j.contains("currency") && j["currency"].is_string())
            *cur = j["currency"].get<std::string>();
          return true;
        }
      }
    }
  }
  return false;
}

std::string CallSubject(const ConvItem* call) {
  if (call == nullptr) return "The tool";
  const Json args = Json::parse(call->arguments, nullptr, false);
  if (args.is_object()) {
    for (auto it = args.begin(); it != args.end(); ++it)
      if (it.value().is_string()) return it.value().get<std::string>();
  }
  return call->name;
}

std::string SummariseOutput(const std::string& output) {
  const Json j = Json::parse(output, nullptr, false);
  if (j.is_object() && !j.empty()) {
    std::vector<std::string> parts;
    for (auto it = j.begin(); it != j.end() && parts.size() < 6; ++it) {
      const std::string v = it.value().is_string()
                                ? it.value().get<std::string>()
                                : Dump(it.value());
      parts.push_back(absl::StrCat(it.key(), " is ", Truncate(v, 80)));
    }
    return absl::StrJoin(parts, ", ");
  }
  if (j.is_string()) return Truncate(j.get<std::string>(), 200);
  return Truncate(Trim(output), 200);
}

struct Quantity {
  bool found = false;
  double value = 0;
  std::string text;
  std::string unit;
};

Quantity FindQuantity(const std::string& question) {
  Quantity q;
  for (const NumberToken& n : ExtractNumbers(question)) {
    q.found = true;
    q.value = n.value;
    q.text = question.substr(n.begin, n.end - n.begin);
    size_t k = n.end;
    while (k < question.size() && question[k] == ' ') ++k;
    std::string unit;
    while (k < question.size() &&
           std::isalpha(static_cast<unsigned char>(question[k])))
      unit.push_back(question[k++]);
    q.unit = unit.empty() ? "units" : Lower(unit);
    return q;
  }
  return q;
}

std::string WithCurrency(const std::string& amount, const std::string& cur) {
  return cur.empty() ? amount : absl::StrCat(amount, " ", cur);
}

std::string AnswerFromOutputs(const std::string& question,
                              const std::vector<ItemOutput>& outputs) {
  std::vector<std::string> sentences;
  const Quantity qty = FindQuantity(question);
  for (const ItemOutput& io : outputs) {
    // A calculator's own result is folded into the price sentence.
    if (io.call != nullptr) {
      ToolDef t;
      t.name = io.call->name;
      const Json a = Json::parse(io.call->arguments, nullptr, false);
      if (IsCalculatorLike(t) || (a.is_object() && a.contains("expression"))) {
        bool has_price = false;
        for (const ItemOutput& other : outputs) {
          double p;
          std::string c;
          has_price = has_price || FindPrice(other.output->output, &p, &c);
        }
        if (has_price) continue;
        sentences.push_back(absl::StrCat(
            "The result is ", SummariseOutput(io.output->output), "."));
        continue;
      }
    }
    double price = 0;
    std::string currency;
    if (FindPrice(io.output->output, &price, &currency)) {
      const std::string subject = CallSubject(io.call);
      std::string s = absl::StrCat(subject, " is trading at ",
                                   WithCurrency(FormatMoney(price), currency));
      if (qty.found) {
        absl::StrAppend(&s, ", so ", qty.text, " ", qty.unit,
                        " would be worth ",
                        WithCurrency(FormatMoney(price * qty.value), currency));
      }
      sentences.push_back(s + ".");
      continue;
    }
    const std::string who =
        io.call != nullptr ? io.call->name : std::string("The tool");
    sentences.push_back(absl::StrCat("According to ", who, ": ",
                                     SummariseOutput(io.output->output), "."));
  }
  if (sentences.empty()) return "Done.";
  return absl::StrJoin(sentences, " ");
}

// --- Expression evaluation -------------------------------------------------

class ExprParser {
 public:
  explicit ExprParser(const std::string& s) : s_(s) {}
  bool Parse(double* v, bool* is_float) {
    if (!Expr(v)) return false;
    Skip();
    *is_float = is_float_;
    return pos_ == s_.size();
  }

 private:
  void Skip() {
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
  }
  bool Expr(double* v) {
    if (!Term(v)) return false;
    for (;;) {
      Skip();
      if (pos_ >= s_.size() || (s_[pos_] != '+' && s_[pos_] != '-'))
        return true;
      const char op = s_[pos_++];
      double r;
      if (!Term(&r)) return false;
      *v = op == '+' ? *v + r : *v - r;
    }
  }
  bool Term(double* v) {
    if (!Power(v)) return false;
    for (;;) {
      Skip();
      if (pos_ >= s_.size()) return true;
      const char op = s_[pos_];
      if (op != '*' && op != '/' && op != '%') return true;
      if (op == '*' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '*') return true;
      ++pos_;
      double r;
      if (!Power(&r)) return false;
      if (op == '*') {
        *v *= r;
      } else if (r == 0) {
        return false;
      } else if (op == '/') {
        *v /= r;
        is_float_ = true;
      } else {
        *v = std::fmod(*v, r);
      }
    }
  }
  bool Power(double* v) {
    if (!Unary(v)) return false;
    Skip();
    if (pos_ + 1 < s_.size() && s_[pos_] == '*' && s_[pos_ + 1] == '*') {
      pos_ += 2;
      double r;
      if (!Power(&r)) return false;
      *v = std::pow(*v, r);
    } else if (pos_ < s_.size() && s_[pos_] == '^') {
      ++pos_;
      double r;
      if (!Power(&r)) return false;
      *v = std::pow(*v, r);
    }
    return true;
  }
  bool Unary(double* v) {
    Skip();
    if (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+')) {
      const char op = s_[pos_++];
      if (!Unary(v)) return false;
      if (op == '-') *v = -*v;
      return true;
    }
    return Primary(v);
  }
  bool Primary(double* v) {
    Skip();
    if (pos_ < s_.size() && s_[pos_] == '(') {
      ++pos_;
      if (!Expr(v)) return false;
      Skip();
      if (pos_ >= s_.size() || s_[pos_] != ')') return false;
      ++pos_;
      return true;
    }
    const size_t start = pos_;
    while (
        pos_ < s_.size() &&
        (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.'))
      ++pos_;
    if (pos_ == start) return false;
    const std::string num = s_.substr(start, pos_ - start);
    if (num.find('.') != std::string::npos) is_float_ = true;
    *v = std::strtod(num.c_str(), nullptr);
    return true;
  }

  const std::string& s_;
  size_t pos_ = 0;
  bool is_float_ = false;
};

// --- Request parsing helpers -----------------------------------------------

Reply InvalidRequest(const std::string& message, const Json& param,
                     const Json& code = nullptr) {
  return ErrorReply(400, message, "invalid_request_error", param, code);
}

Reply MissingParam(const std::string& param) {
  return InvalidRequest(
      absl::StrCat("Missing required parameter: '", param, "'."), param,
      "missing_required_parameter");
}

Reply InvalidType(const std::string& param, const std::string& expected,
                  const Json& got) {
  return InvalidRequest(
      absl::StrCat("Invalid type for '", param, "': expected ", expected,
                   ", but got ", TypeName(got), " instead."),
      param, "invalid_type");
}

Reply InvalidValue(const std::string& param, const std::string& value,
                   const std::vector<std::string>& supported) {
  std::vector<std::string> quoted;
  for (const std::string& s : supported) quoted.push_back("'" + s + "'");
  std::string list;
  if (quoted.size() <= 1) {
    list = absl::StrJoin(quoted, "");
  } else {
    list = absl::StrCat(absl::StrJoin(quoted.begin(), quoted.end() - 1, ", "),
                        quoted.size() > 2 ? ", and " : " and ", quoted.back());
  }
  return InvalidRequest(absl::StrCat("Invalid value: '", value,
                                     "'. Supported values are: ", list, "."),
                        param, "invalid_value");
}

const char kBadJsonMessage[] =
    "We could not parse the JSON body of your request. (HINT: This likely "
    "means you aren't using your HTTP library correctly. The OpenAI API "
    "expects a JSON payload, but what was sent was not valid JSON. If you "
    "have trouble figuring out how to fix this, please contact us through "
    "our help center at help.openai.com.)";

bool CheckNumberRange(const Json& raw, const char* key, double lo, double hi,
                      Reply* error) {
  if (!raw.contains(key) || raw[key].is_null()) return true;
  const Json& v = raw[key];
  if (!v.is_number()) {
    *error = InvalidType(key, "a decimal", v);
    return false;
  }
  const double d = v.get<double>();
  if (d < lo) {
    *error = InvalidRequest(
        absl::StrCat("Invalid '", key,
                     "': decimal below minimum value. Expected a value >= ", lo,
                     ", but got ", d, " instead."),
        key, "decimal_below_min_value");
    return false;
  }
  if (d > hi) {
    *error = InvalidRequest(
        absl::StrCat("Invalid '", key,
                     "': decimal above maximum value. Expected a value <= ", hi,
                     ", but got ", d, " instead."),
        key, "decimal_above_max_value");
    return false;
  }
  return true;
}

bool CheckBool(const Json& raw, const char* key, bool* out, Reply* error) {
  if (!raw.contains(key) || raw[key].is_null()) return true;
  if (!raw[key].is_boolean()) {
    *error = InvalidType(key, "a boolean", raw[key]);
    return false;
  }
  *out = raw[key].get<bool>();
  return true;
}

bool CheckMaxTokens(const Json& raw, const char* key, int64_t minimum,
                    int64_t* out, Reply* error) {
  if (!raw.contains(key) || raw[key].is_null()) return true;
  const Json& v = raw[key];
  if (!v.is_number_integer()) {
    *error = InvalidType(key, "an integer", v);
    return false;
  }
  const int64_t n = v.get<int64_t>();
  if (n < minimum) {
    *error = InvalidRequest(
        absl::StrCat("Invalid '", key,
                     "': integer below minimum value. Expected a value >= ",
                     minimum, ", but got ", n, " instead."),
        key, "integer_below_min_value");
    return false;
  }
  *out = n;
  return true;
}

bool IsValidFunctionName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
      return false;
  }
  return true;
}

bool ParseTextFormat(const Json& format, const std::string& param, Json* out,
                     Reply* error) {
  if (!format.is_object()) {
    *error = InvalidType(param, "an object", format);
    return false;
  }
  if (!format.contains("type")) {
    *error = MissingParam(param + ".type");
    return false;
  }
  const std::string type =
      format["type"].is_string() ? format["type"].get<std::string>() : "";
  if (type != "text" && type != "json_schema" && type != "json_object") {
    *error = InvalidValue(param + ".type", type,
                          {"text", "json_schema", "json_object"});
    return false;
  }
  *out = format;
  return true;
}

size_t ContentChars(const Json& content) {
  if (content.is_string()) return content.get<std::string>().size();
  return Dump(content).size();
}

// Extracts text parts of a Responses message content array; validates part
// types per role the way the real API does.
bool ResponsesContent(const Json& content, const std::string& role,
                      const std::string& param, std::string* text,
                      Reply* error) {
  if (content.is_string()) {
    *text = content.get<std::string>();
    return true;
  }
  if (!content.is_array()) {
    *error = InvalidType(param, "one of a string or array of input content",
                         content);
    return false;
  }
  std::vector<std::string> texts;
  for (size_t j = 0; j < content.size(); ++j) {
    const Json& part = content[j];
    const std::string pp = absl::StrCat(param, "[", j, "]");
    if (!part.is_object()) {
      *error = InvalidType(pp, "an object", part);
      return false;
    }
    if (!part.contains("type") || !part["type"].is_string()) {
      *error = MissingParam(pp + ".type");
      return false;
    }
    const std::string type = part["type"].get<std::string>();
    if (role == "assistant") {
      if (type != "output_text" && type != "refusal") {
        *error = InvalidValue(pp, type, {"output_text", "refusal"});
        return false;
      }
    } else if (type != "input_text" && type != "input_image" &&
               type != "input_file" && type != "input_audio") {
      *error =
          InvalidValue(pp, type,
                       {"input_text", "input_image", "output_text", "refusal",
                        "input_file", "computer_screenshot", "summary_text"});
      return false;
    }
    if (type == "input_text" || type == "output_text") {
      if (!part.contains("text") || !part["text"].is_string()) {
        *error = MissingParam(pp + ".text");
        return false;
      }
      texts.push_back(part["text"].get<std::string>());
    }
  }
  *text = absl::StrJoin(texts, "\n");
  return true;
}

// Structured-output rules the real API enforces for `strict: true`
// function schemas: every object needs additionalProperties: false and must
// list every property as required.
bool CheckStrictSchema(const Json& schema, const std::string& context,
                       std::string* problem) {
  if (!schema.is_object()) return true;
  const bool is_object =
      schema.contains("properties") ||
      (schema.contains("type") &&
       (schema["type"] == "object" ||
        (schema["type"].is_array() &&
         std::find(schema["type"].begin(), schema["type"].end(), "object") !=
             schema["type"].end())));
  if (is_object) {
    if (!schema.contains("additionalProperties") ||
        schema["additionalProperties"] != false) {
      *problem = absl::StrCat("In context=", context,
                              ", 'additionalProperties' is required to be "
                              "supplied and to be false.");
      return false;
    }
    if (schema.contains("properties") && schema["properties"].is_object()) {
      const Json& props = schema["properties"];
      const Json required =
          schema.contains("required") ? schema["required"] : Json::array();
      for (auto it = props.begin(); it != props.end(); ++it) {
        if (!required.is_array() || std::find(required.begin(), required.end(),
                                              it.key()) == required.end()) {
          *problem = absl::StrCat(
              "In context=", context,
              ", 'required' is required to be supplied and to be an array "
              "including every key in properties. Missing '",
              it.key(), "'.");
          return false;
        }
        const std::string inner =
            context == "()"
                ? absl::StrCat("('properties', '", it.key(), "')")
                : absl::StrCat(context.substr(0, context.size() - 1),
                               ", 'properties', '", it.key(), "')");
        if (!CheckStrictSchema(it.value(), inner, problem)) return false;
      }
    }
  }
  if (schema.contains("items") &&
      !CheckStrictSchema(schema["items"], context, problem))
    return false;
  for (const char* key : {"anyOf", "$defs", "definitions"}) {
    if (!schema.contains(key)) continue;
    for (auto it = schema[key].begin(); it != schema[key].end(); ++it)
      if (!CheckStrictSchema(it.value(), context, problem)) return false;
  }
  return true;
}

bool CheckStrictTool(const Json& strict, const ToolDef& def,
                     const std::string& param, Reply* error) {
  if (!strict.is_boolean() || !strict.get<bool>()) return true;
  std::string problem;
  if (CheckStrictSchema(def.parameters, "()", &problem)) return true;
  *error = InvalidRequest(
      absl::StrCat("Invalid schema for function '", def.name, "': ", problem),
      param, "invalid_function_parameters");
  return false;
}

bool ParseResponsesRequest(const Json& raw, ModelRequest* r, Reply* error) {
  static const std::set<std::string> kKnown = {"background",
                                               "context_management",
                                               "conversation",
                                               "include",
                                               "input",
                                               "instructions",
                                               "max_output_tokens",
                                               "max_tool_calls",
                                               "metadata",
                                               "model",
                                               "moderation",
                                               "parallel_tool_calls",
                                               "previous_response_id",
                                               "prompt",
                                               "prompt_cache_key",
                                               "prompt_cache_options",
                                               "prompt_cache_retention",
                                               "reasoning",
                                               "safety_identifier",
                                               "service_tier",
                                               "store",
                                               "stream",
                                               "stream_options",
                                               "temperature",
                                               "text",
                                               "tool_choice",
                                               "tools",
                                               "top_logprobs",
                                               "top_p",
                                               "truncation",
                                               "user"};
  for (auto it = raw.begin(); it != raw.end(); ++it) {
    if (!kKnown.count(it.key())) {
      *error =
          InvalidRequest(absl::StrCat("Unknown parameter: '", it.key(), "'."),
                         it.key(), "unknown_parameter");
      return false;
    }
  }
  size_t chars = 0;
  if (raw.contains("instructions") && !raw["instructions"].is_null()) {
    if (!raw["instructions"].is_string()) {
      *error = InvalidType("instructions", "a string", raw["instructions"]);
      return false;
    }
    r->instructions = raw["instructions"].get<std::string>();
    chars += r->instructions.size();
  }
  const bool has_prev = raw.contains("previous_response_id") &&
                        !raw["previous_response_id"].is_null();
  if (has_prev && !raw["previous_response_id"].is_string()) {
    *error = InvalidType("previous_response_id", "a string",
                         raw["previous_response_id"]);
    return false;
  }
  if (!raw.contains("input") || raw["input"].is_null()) {
    if (!has_prev && !raw.contains("prompt") && !raw.contains("conversation")) {
      *error = MissingParam("input");
      return false;
    }
  } else if (raw["input"].is_string()) {
    ConvItem item;
    item.kind = ConvItem::kMessage;
    item.role = "user";
    item.text = raw["input"].get<std::string>();
    chars += item.text.size();
    r->items.push_back(item);
  } else if (raw["input"].is_array()) {
    const Json& input = raw["input"];
    for (size_t i = 0; i < input.size(); ++i) {
      const Json& it = input[i];
      const std::string p = absl::StrCat("input[", i, "]");
      if (!it.is_object()) {
        *error = InvalidType(p, "an object", it);
        return false;
      }
      std::string type = "message";
      if (it.contains("type")) {
        if (!it["type"].is_string()) {
          *error = InvalidType(p + ".type", "a string", it["type"]);
          return false;
        }
        type = it["type"].get<std::string>();
      }
      ConvItem item;
      if (it.contains("id") && it["id"].is_string())
        item.id = it["id"].get<std::string>();
      if (type == "message") {
        if (!it.contains("role")) {
          *error = MissingParam(p + ".role");
          return false;
        }
        const std::string role =
            it["role"].is_string() ? it["role"].get<std::string>() : "";
        if (role != "user" && role != "assistant" && role != "system" &&
            role != "developer") {
          *error = InvalidValue(p + ".role", role,
                                {"user", "assistant", "system", "developer"});
          return false;
        }
        if (!it.contains("content")) {
          *error = MissingParam(p + ".content");
          return false;
        }
        item.kind = ConvItem::kMessage;
        item.role = role;
        if (!ResponsesContent(it["content"], role, p + ".content", &item.text,
                              error))
          return false;
        chars += ContentChars(it["content"]);
      } else if (type == "function_call") {
        for (const char* f : {"call_id", "name", "arguments"}) {
          if (!it.contains(f)) {
            *error = MissingParam(absl::StrCat(p, ".", f));
            return false;
          }
          if (!it[f].is_string()) {
            *error = InvalidType(absl::StrCat(p, ".", f), "a string", it[f]);
            return false;
          }
        }
        item.kind = ConvItem::kFunctionCall;
        item.call_id = it["call_id"].get<std::string>();
        item.name = it["name"].get<std::string>();
        item.arguments = it["arguments"].get<std::string>();
        chars += item.name.size() + item.arguments.size();
      } else if (type == "function_call_output") {
        if (!it.contains("call_id")) {
          *error = MissingParam(p + ".call_id");
          return false;
        }
        if (!it["call_id"].is_string()) {
          *error = InvalidType(p + ".call_id", "a string", it["call_id"]);
          return false;
        }
        if (!it.contains("output")) {
          *error = MissingParam(p + ".output");
          return false;
        }
        item.kind = ConvItem::kFunctionOutput;
        item.call_id = it["call_id"].get<std::string>();
        if (it["output"].is_string()) {
          item.output = it["output"].get<std::string>();
        } else if (it["output"].is_array()) {
          std::vector<std::string> texts;
          for (const Json& part : it["output"])
            if (part.is_object() && part.contains("text") &&
                part["text"].is_string())
              texts.push_back(part["text"].get<std::string>());
          item.output = absl::StrJoin(texts, "\n");
        } else {
          *error = InvalidType(p + ".output", "a string", it["output"]);
          return false;
        }
        chars += item.output.size();
      } else if (type == "reasoning" || type == "code_interpreter_call" ||
                 type == "item_reference" || type == "file_search_call" ||
                 type == "web_search_call" || type == "computer_call" ||
                 type == "computer_call_output" || type == "mcp_call" ||
                 type == "mcp_list_tools" || type == "image_generation_call" ||
                 type == "custom_tool_call" ||
                 type == "custom_tool_call_output" ||
                 type == "local_shell_call" ||
                 type == "local_shell_call_output" ||
                 type == "mcp_approval_request" ||
                 type == "mcp_approval_response") {
        item.kind = ConvItem::kOther;
        chars += Dump(it).size();
      } else {
        *error = InvalidValue(
            p + ".type", type,
            {"message", "function_call", "function_call_output", "reasoning",
             "code_interpreter_call", "item_reference"});
        return false;
      }
      r->items.push_back(std::move(item));
    }
  } else {
    *error = InvalidType("input", "one of a string or array of input items",
                         raw["input"]);
    return false;
  }

  if (raw.contains("tools") && !raw["tools"].is_null()) {
    const Json& tools = raw["tools"];
    if (!tools.is_array()) {
      *error = InvalidType("tools", "an array", tools);
      return false;
    }
    for (size_t i = 0; i < tools.size(); ++i) {
      const Json& t = tools[i];
      const std::string p = absl::StrCat("tools[", i, "]");
      if (!t.is_object()) {
        *error = InvalidType(p, "an object", t);
        return false;
      }
      if (!t.contains("type") || !t["type"].is_string()) {
        *error = MissingParam(p + ".type");
        return false;
      }
      const std::string type = t["type"].get<std::string>();
      if (type == "function") {
        // Chat-style {type, function:{...}} lands here without a name, which
        // is exactly the real API's complaint.
        if (!t.contains("name")) {
          *error = MissingParam(p + ".name");
          return false;
        }
        if (!t["name"].is_string()) {
          *error = InvalidType(p + ".name", "a string", t["name"]);
          return false;
        }
        ToolDef def;
        def.name = t["name"].get<std::string>();
        if (!IsValidFunctionName(def.name)) {
          *error = InvalidRequest(
              absl::StrCat("Invalid '", p,
                           ".name': string does not match pattern. Expected "
                           "a string that matches the pattern "
                           "'^[a-zA-Z0-9_-]+$'."),
              p + ".name", "invalid_value");
          return false;
        }
        if (t.contains("description") && t["description"].is_string())
          def.description = t["description"].get<std::string>();
        if (t.contains("parameters") && !t["parameters"].is_null()) {
          if (!t["parameters"].is_object()) {
            *error =
                InvalidType(p + ".parameters", "an object", t["parameters"]);
            return false;
          }
          def.parameters = t["parameters"];
        }
        if (t.contains("strict") &&
            !CheckStrictTool(t["strict"], def, p + ".parameters", error))
          return false;
        r->tools.push_back(std::move(def));
      } else if (type == "code_interpreter") {
        if (!t.contains("container")) {
          *error = MissingParam(p + ".container");
          return false;
        }
        r->code_interpreter = true;
      } else if (type == "file_search" || type == "web_search" ||
                 type == "web_search_preview" ||
                 type == "web_search_preview_2025_03_11" || type == "mcp" ||
                 type == "image_generation" || type == "computer_use_preview" ||
                 type == "local_shell" || type == "custom" || type == "shell" ||
                 type == "apply_patch") {
        // Accepted, never used by the fake model.
      } else {
        *error =
            InvalidValue(p + ".type", type,
                         {"function", "file_search", "web_search",
                          "code_interpreter", "mcp", "image_generation",
                          "computer_use_preview", "local_shell", "custom"});
        return false;
      }
    }
    chars += Dump(tools).size();
  }

  if (raw.contains("tool_choice") && !raw["tool_choice"].is_null()) {
    const Json& tc = raw["tool_choice"];
    if (tc.is_string()) {
      const std::string s = tc.get<std::string>();
      if (s != "none" && s != "auto" && s != "required") {
        *error = InvalidValue("tool_choice", s, {"none", "auto", "required"});
        return false;
      }
      r->tool_choice = s;
    } else if (tc.is_object()) {
      const std::string type = tc.contains("type") && tc["type"].is_string()
                                   ? tc["type"].get<std::string>()
                                   : "";
      if (type == "function") {
        if (!tc.contains("name") || !tc["name"].is_string()) {
          *error = MissingParam("tool_choice.name");
          return false;
        }
        r->tool_choice = "function";
        r->tool_choice_name = tc["name"].get<std::string>();
        bool found = false;
        for (const ToolDef& d : r->tools)
          found = found || d.name == r->tool_choice_name;
        if (!found) {
          *error = InvalidRequest(
              "Tool choice 'function' not found in 'tools' parameter.",
              "tool_choice");
          return false;
        }
      } else if (type == "allowed_tools") {
        r->tool_choice =
            tc.value("mode", "auto") == "required" ? "required" : "auto";
      } else if (type == "code_interpreter") {
        r->tool_choice = "auto";
      } else {
        r->tool_choice = "auto";
      }
    } else {
      *error = InvalidType("tool_choice", "one of a string or object", tc);
      return false;
    }
  }
  if (!CheckBool(raw, "parallel_tool_calls", &r->parallel_tool_calls, error))
    return false;
  if (!CheckBool(raw, "stream", &r->stream, error)) return false;
  bool store = true;
  if (!CheckBool(raw, "store", &store, error)) return false;
  if (!CheckMaxTokens(raw, "max_output_tokens", 16, &r->max_output_tokens,
                      error))
    return false;
  if (!CheckNumberRange(raw, "temperature", 0, 2, error)) return false;
  if (!CheckNumberRange(raw, "top_p", 0, 1, error)) return false;
  if (raw.contains("include") && !raw["include"].is_null()) {
    if (!raw["include"].is_array()) {
      *error = InvalidType("include", "an array", raw["include"]);
      return false;
    }
    for (const Json& inc : raw["include"])
      if (inc == "code_interpreter_call.outputs") r->include_ci_outputs = true;
  }
  if (raw.contains("stream_options") && raw["stream_options"].is_object())
    r->include_obfuscation =
        raw["stream_options"].value("include_obfuscation", true);
  if (raw.contains("text") && raw["text"].is_object() &&
      raw["text"].contains("format")) {
    if (!ParseTextFormat(raw["text"]["format"], "text.format", &r->text_format,
                         error))
      return false;
    if (r->text_format.value("type", "") == "json_schema") {
      if (!r->text_format.contains("name")) {
        *error = MissingParam("text.format.name");
        return false;
      }
      if (!r->text_format.contains("schema")) {
        *error = MissingParam("text.format.schema");
        return false;
      }
    }
  }
  r->input_chars = chars;
  return true;
}

std::string ChatContentText(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::vector<std::string> texts;
  if (content.is_array()) {
    for (const Json& part : content)
      if (part.is_object() && part.contains("text") && part["text"].is_string())
        texts.push_back(part["text"].get<std::string>());
  }
  return absl::StrJoin(texts, "\n");
}

bool ParseChatRequest(const Json& raw, ModelRequest* r, Reply* error) {
  static const std::set<std::string> kKnown = {"audio",
                                               "frequency_penalty",
                                               "function_call",
                                               "functions",
                                               "logit_bias",
                                               "logprobs",
                                               "max_completion_tokens",
                                               "max_tokens",
                                               "messages",
                                               "metadata",
                                               "modalities",
                                               "model",
                                               "moderation",
                                               "n",
                                               "parallel_tool_calls",
                                               "prediction",
                                               "presence_penalty",
                                               "prompt_cache_key",
                                               "prompt_cache_options",
                                               "prompt_cache_retention",
                                               "reasoning_effort",
                                               "response_format",
                                               "safety_identifier",
                                               "seed",
                                               "service_tier",
                                               "stop",
                                               "store",
                                               "stream",
                                               "stream_options",
                                               "temperature",
                                               "tool_choice",
                                               "tools",
                                               "top_logprobs",
                                               "top_p",
                                               "user",
                                               "verbosity",
                                               "web_search_options"};
  for (auto it = raw.begin(); it != raw.end(); ++it) {
    if (!kKnown.count(it.key())) {
      *error = InvalidRequest(
          absl::StrCat("Unrecognized request argument supplied: ", it.key()),
          nullptr);
      return false;
    }
  }
  if (!raw.contains("messages")) {
    *error = MissingParam("messages");
    return false;
  }
  const Json& messages = raw["messages"];
  if (!messages.is_array()) {
    *error = InvalidType("messages", "an array", messages);
    return false;
  }
  if (messages.empty()) {
    *error = InvalidRequest(
        "Invalid 'messages': empty array. Expected an array with minimum "
        "length 1, but got an empty array instead.",
        "messages", "empty_array");
    return false;
  }
  size_t chars = 0;
  // Tool-call pairing: ids of the latest assistant tool_calls still waiting
  // for their tool messages, and where that assistant message was.
  std::set<std::string> pending;
  int pending_at = -1;
  bool in_tool_run = false;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    const std::string p = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) {
      *error = InvalidType(p, "an object", m);
      return false;
    }
    if (!m.contains("role")) {
      *error = MissingParam(p + ".role");
      return false;
    }
    const std::string role =
        m["role"].is_string() ? m["role"].get<std::string>() : "";
    if (role != "system" && role != "developer" && role != "user" &&
        role != "assistant" && role != "tool" && role != "function") {
      *error = InvalidValue(
          p + ".role", role,
          {"system", "assistant", "user", "function", "tool", "developer"});
      return false;
    }
    if (role != "tool" && !pending.empty()) {
      *error = InvalidRequest(
          absl::StrCat("An assistant message with 'tool_calls' must be "
                       "followed by tool messages responding to each "
                       "'tool_call_id'. The following tool_call_ids did not "
                       "have response messages: ",
                       absl::StrJoin(pending, ", ")),
          absl::StrCat("messages.[", pending_at, "].role"));
      return false;
    }
    if (role == "tool") {
      if (!m.contains("tool_call_id")) {
        *error = MissingParam(p + ".tool_call_id");
        return false;
      }
      if (!m.contains("content")) {
        *error = MissingParam(p + ".content");
        return false;
      }
      const std::string id = m["tool_call_id"].is_string()
                                 ? m["tool_call_id"].get<std::string>()
                                 : "";
      if (!in_tool_run || !pending.count(id)) {
        *error = InvalidRequest(
            "Invalid parameter: messages with role 'tool' must be a response "
            "to a preceeding message with 'tool_calls'.",
            absl::StrCat("messages.[", i, "].role"));
        return false;
      }
      pending.erase(id);
      ConvItem item;
      item.kind = ConvItem::kFunctionOutput;
      item.call_id = id;
      item.output = ChatContentText(m["content"]);
      chars += item.output.size();
      r->items.push_back(std::move(item));
      continue;
    }
    in_tool_run = false;
    if (role != "assistant" && !m.contains("content")) {
      *error = MissingParam(p + ".content");
      return false;
    }
    if (m.contains("content") && !m["content"].is_null() &&
        !m["content"].is_string() && !m["content"].is_array()) {
      *error =
          InvalidType(p + ".content", "one of a string or array", m["content"]);
      return false;
    }
    if (m.contains("content") && !m["content"].is_null()) {
      ConvItem item;
      item.kind = ConvItem::kMessage;
      item.role = role == "function" ? "tool" : role;
      item.text = ChatContentText(m["content"]);
      chars += ContentChars(m["content"]);
      r->items.push_back(std::move(item));
    }
    if (role == "assistant" && m.contains("tool_calls") &&
        !m["tool_calls"].is_null()) {
      const Json& calls = m["tool_calls"];
      if (!calls.is_array()) {
        *error = InvalidType(p + ".tool_calls", "an array", calls);
        return false;
      }
      for (size_t k = 0; k < calls.size(); ++k) {
        const Json& c = calls[k];
        const std::string cp = absl::StrCat(p, ".tool_calls[", k, "]");
        if (!c.is_object() || !c.contains("id")) {
          *error = MissingParam(cp + ".id");
          return false;
        }
        if (!c.contains("function") || !c["function"].is_object()) {
          *error = MissingParam(cp + ".function");
          return false;
        }
        if (!c.contains("type")) {
          *error = MissingParam(cp + ".type");
          return false;
        }
        const Json& f = c["function"];
        if (!f.contains("name")) {
          *error = MissingParam(cp + ".function.name");
          return false;
        }
        if (!f.contains("arguments")) {
          *error = MissingParam(cp + ".function.arguments");
          return false;
        }
        ConvItem item;
        item.kind = ConvItem::kFunctionCall;
        item.call_id = c["id"].is_string() ? c["id"].get<std::string>() : "";
        item.name = f["name"].is_string() ? f["name"].get<std::string>() : "";
        item.arguments = f["arguments"].is_string()
                             ? f["arguments"].get<std::string>()
                             : Dump(f["arguments"]);
        chars += item.name.size() + item.arguments.size();
        pending.insert(item.call_id);
        r->items.push_back(std::move(item));
      }
      if (!calls.empty()) {
        pending_at = static_cast<int>(i);
        in_tool_run = true;
      }
    }
  }
  if (!pending.empty()) {
    *error = InvalidRequest(
        absl::StrCat("An assistant message with 'tool_calls' must be "
                     "followed by tool messages responding to each "
                     "'tool_call_id'. The following tool_call_ids did not "
                     "have response messages: ",
                     absl::StrJoin(pending, ", ")),
        absl::StrCat("messages.[", pending_at, "].role"));
    return false;
  }

  if (raw.contains("tools") && !raw["tools"].is_null()) {
    const Json& tools = raw["tools"];
    if (!tools.is_array()) {
      *error = InvalidType("tools", "an array", tools);
      return false;
    }
    for (size_t i = 0; i < tools.size(); ++i) {
      const Json& t = tools[i];
      const std::string p = absl::StrCat("tools[", i, "]");
      if (!t.is_object()) {
        *error = InvalidType(p, "an object", t);
        return false;
      }
      const std::string type = t.contains("type") && t["type"].is_string()
                                   ? t["type"].get<std::string>()
                                   : "";
      if (type == "custom") continue;
      if (type != "function") {
        *error = InvalidValue(p + ".type", type, {"function", "custom"});
        return false;
      }
      // Responses-style flat tools land here without `function`.
      if (!t.contains("function")) {
        *error = MissingParam(p + ".function");
        return false;
      }
      const Json& f = t["function"];
      if (!f.is_object()) {
        *error = InvalidType(p + ".function", "an object", f);
        return false;
      }
      if (!f.contains("name")) {
        *error = MissingParam(p + ".function.name");
        return false;
      }
      ToolDef def;
      def.name = f["name"].is_string() ? f["name"].get<std::string>() : "";
      if (!IsValidFunctionName(def.name)) {
        *error = InvalidRequest(
            absl::StrCat("Invalid '", p,
                         ".function.name': string does not match pattern. "
                         "Expected a string that matches the pattern "
                         "'^[a-zA-Z0-9_-]+$'."),
            p + ".function.name", "invalid_value");
        return false;
      }
      if (f.contains("description") && f["description"].is_string())
        def.description = f["description"].get<std::string>();
      if (f.contains("parameters") && f["parameters"].is_object())
        def.parameters = f["parameters"];
      if (f.contains("strict") &&
          !CheckStrictTool(f["strict"], def, p + ".function.parameters", error))
        return false;
      r->tools.push_back(std::move(def));
    }
    chars += Dump(tools).size();
  }
  if (raw.contains("tool_choice") && !raw["tool_choice"].is_null()) {
    const Json& tc = raw["tool_choice"];
    if (tc.is_string()) {
      const std::string s = tc.get<std::string>();
      if (s != "none" && s != "auto" && s != "required") {
        *error = InvalidValue("tool_choice", s, {"none", "auto", "required"});
        return false;
      }
      r->tool_choice = s;
    } else if (tc.is_object() && tc.value("type", "") == "function") {
      if (!tc.contains("function") || !tc["function"].is_object() ||
          !tc["function"].contains("name")) {
        *error = MissingParam("tool_choice.function.name");
        return false;
      }
      r->tool_choice = "function";
      r->tool_choice_name = tc["function"]["name"].is_string()
                                ? tc["function"]["name"].get<std::string>()
                                : "";
      bool found = false;
      for (const ToolDef& d : r->tools)
        found = found || d.name == r->tool_choice_name;
      if (!found) {
        *error = InvalidRequest(
            absl::StrCat("Invalid value for 'tool_choice': function '",
                         r->tool_choice_name, "' not found in 'tools'."),
            "tool_choice");
        return false;
      }
    } else if (tc.is_object() && tc.value("type", "") == "allowed_tools") {
      r->tool_choice =
          tc.contains("allowed_tools") && tc["allowed_tools"].is_object() &&
                  tc["allowed_tools"].value("mode", "") == "required"
              ? "required"
              : "auto";
    } else {
      *error = InvalidType("tool_choice", "one of a string or object", tc);
      return false;
    }
    if (r->tool_choice != "none" && r->tools.empty() &&
        r->tool_choice != "auto") {
      *error = InvalidRequest(
          "Invalid value for 'tool_choice': 'tool_choice' is only allowed "
          "when 'tools' are specified.",
          "tool_choice");
      return false;
    }
  }
  if (!CheckBool(raw, "parallel_tool_calls", &r->parallel_tool_calls, error))
    return false;
  if (!CheckBool(raw, "stream", &r->stream, error)) return false;
  if (raw.contains("stream_options") && !raw["stream_options"].is_null()) {
    if (!r->stream) {
      *error = InvalidRequest(
          "The 'stream_options' parameter is only allowed when 'stream' is "
          "enabled.",
          "stream_options");
      return false;
    }
    const Json& so = raw["stream_options"];
    if (!so.is_object()) {
      *error = InvalidType("stream_options", "an object", so);
      return false;
    }
    r->include_usage = so.value("include_usage", false);
    r->include_obfuscation = so.value("include_obfuscation", true);
  }
  if (!CheckMaxTokens(raw, "max_tokens", 1, &r->max_output_tokens, error))
    return false;
  if (!CheckMaxTokens(raw, "max_completion_tokens", 1, &r->max_output_tokens,
                      error))
    return false;
  if (!CheckNumberRange(raw, "temperature", 0, 2, error)) return false;
  if (!CheckNumberRange(raw, "top_p", 0, 1, error)) return false;
  if (raw.contains("response_format") && !raw["response_format"].is_null()) {
    if (!ParseTextFormat(raw["response_format"], "response_format",
                         &r->text_format, error))
      return false;
    if (r->text_format.value("type", "") == "json_schema") {
      if (!r->text_format.contains("json_schema") ||
          !r->text_format["json_schema"].is_object()) {
        *error = MissingParam("response_format.json_schema");
        return false;
      }
      if (!r->text_format["json_schema"].contains("name")) {
        *error = MissingParam("response_format.json_schema.name");
        return false;
      }
    }
  }
  r->input_chars = chars;
  return true;
}

// The JSON schema of a structured-output request, if any.
const Json* StructuredSchema(const ModelRequest& r) {
  if (!r.text_format.is_object()) return nullptr;
  if (r.text_format.value("type", "") != "json_schema") return nullptr;
  if (r.api == Api::kResponses) {
    return r.text_format.contains("schema") ? &r.text_format["schema"]
                                            : nullptr;
  }
  const Json& js = r.text_format["json_schema"];
  return js.contains("schema") ? &js["schema"] : nullptr;
}

std::string ApplyTextFormat(const ModelRequest& r, const std::string& text,
                            const std::string& question) {
  if (const Json* schema = StructuredSchema(r)) {
    return Dump(BuildArguments(*schema, question));
  }
  if (r.text_format.is_object() &&
      r.text_format.value("type", "") == "json_object") {
    return Dump(Json{{"answer", text}});
  }
  return text;
}

}  // namespace

// ---------------------------------------------------------------------------
// Default behaviour.

std::vector<const ToolDef*> MatchTools(const std::vector<ToolDef>& tools,
                                       const std::string& user_text) {
  std::set<std::string> user_stems;
  for (const std::string& w : Words(user_text)) {
    const std::string l = Lower(w);
    if (StopWords().count(l) || l.size() < 3) continue;
    user_stems.insert(Stem(l));
  }
  std::vector<const ToolDef*> matched;
  for (const ToolDef& tool : tools) {
    bool match = false;
    for (const std::string& part : NameParts(tool.name)) {
      if (part == "get" || part == "set" || part == "fetch" || part == "the" ||
          part.size() < 3)
        continue;
      match = match || user_stems.count(Stem(part)) > 0;
    }
    for (const std::string& w : Words(tool.description)) {
      const std::string l = Lower(w);
      if (l.size() < 4 || StopWords().count(l)) continue;
      match = match || user_stems.count(Stem(l)) > 0;
    }
    if (match) matched.push_back(&tool);
  }
  return matched;
}

Json BuildArguments(const Json& schema, const std::string& user_text) {
  Json out = Json::object();
  if (!schema.is_object() || !schema.contains("properties") ||
      !schema["properties"].is_object())
    return out;
  const Json& props = schema["properties"];
  std::vector<std::string> names;
  if (schema.contains("required") && schema["required"].is_array()) {
    for (const Json& n : schema["required"])
      if (n.is_string() && props.contains(n.get<std::string>()))
        names.push_back(n.get<std::string>());
  } else {
    for (auto it = props.begin(); it != props.end(); ++it)
      names.push_back(it.key());
  }
  const std::vector<NumberToken> numbers = ExtractNumbers(user_text);
  size_t next_number = 0;
  for (const std::string& name : names) {
    const Json& p = props[name];
    const std::string type = FirstNonNullType(p);
    if (type == "string") {
      out[name] = StringArgument(name, p, user_text);
    } else if (type == "number" || type == "integer") {
      double v = 1;
      if (p.is_object() && p.contains("enum") && p["enum"].is_array() &&
          !p["enum"].empty() && p["enum"][0].is_number()) {
        v = p["enum"][0].get<double>();
      } else if (next_number < numbers.size()) {
        v = numbers[next_number++].value;
      } else if (p.is_object() && p.contains("default") &&
                 p["default"].is_number()) {
        v = p["default"].get<double>();
      }
      if (type == "integer") {
        out[name] = static_cast<int64_t>(std::llround(v));
      } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
        out[name] = static_cast<int64_t>(v);
      } else {
        out[name] = v;
      }
    } else if (type == "boolean") {
      out[name] = false;
    } else if (type == "array") {
      const Json items =
          p.is_object() && p.contains("items") ? p["items"] : Json::object();
      const std::string it = FirstNonNullType(items);
      if (it == "string") {
        out[name] = Json::array({StringArgument(name, items, user_text)});
      } else if (it == "object") {
        out[name] = Json::array({BuildArguments(items, user_text)});
      } else {
        out[name] = Json::array();
      }
    } else if (type == "object") {
      out[name] = BuildArguments(p, user_text);
    } else {
      out[name] = nullptr;
    }
  }
  return out;
}

std::string ExtractExpression(const std::string& text) {
  // Tokenise into numbers, operators and parentheses; words that spell an
  // operator are translated, every other word breaks a run.
  struct Tok {
    enum Kind { kNum, kOp, kOpen, kClose, kBreak } kind;
    std::string text;
  };
  std::vector<Tok> toks;
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = text[i];
    if (std::isspace(c)) {
      ++i;
    } else if (std::isdigit(c) ||
               (c == '.' && i + 1 < text.size() &&
                std::isdigit(static_cast<unsigned char>(text[i + 1])))) {
      std::string num;
      while (i < text.size()) {
        const unsigned char d = text[i];
        if (std::isdigit(d) || d == '.') {
          num.push_back(static_cast<char>(d));
          ++i;
        } else if (d == ',' && i + 3 < text.size() + 0 &&
                   std::isdigit(static_cast<unsigned char>(text[i + 1])) &&
                   std::isdigit(static_cast<unsigned char>(text[i + 2])) &&
                   std::isdigit(static_cast<unsigned char>(text[i + 3]))) {
          ++i;  // Thousands separator.
        } else {
          break;
        }
      }
      if (!num.empty() && num.back() == '.') num.pop_back();
      toks.push_back({Tok::kNum, num});
    } else if (c == '*' && i + 1 < text.size() && text[i + 1] == '*') {
      toks.push_back({Tok::kOp, "**"});
      i += 2;
    } else if (c == '+' || c == '-' || c == '*' || c == '/' || c == '^' ||
               c == '%') {
      toks.push_back({Tok::kOp, std::string(1, static_cast<char>(c))});
      ++i;
    } else if (c == '(') {
      toks.push_back({Tok::kOpen, "("});
      ++i;
    } else if (c == ')') {
      toks.push_back({Tok::kClose, ")"});
      ++i;
    } else if (std::isalpha(c)) {
      std::string w;
      while (i < text.size() &&
             std::isalpha(static_cast<unsigned char>(text[i])))
        w.push_back(static_cast<char>(std::tolower(text[i++])));
      if (w == "times" || w == "x" || w == "multiplied") {
        toks.push_back({Tok::kOp, "*"});
      } else if (w == "plus") {
        toks.push_back({Tok::kOp, "+"});
      } else if (w == "minus") {
        toks.push_back({Tok::kOp, "-"});
      } else if (w == "divided" || w == "over") {
        toks.push_back({Tok::kOp, "/"});
      } else if (w == "by" && !toks.empty() && toks.back().kind == Tok::kOp) {
        // "multiplied by", "divided by".
      } else {
        toks.push_back({Tok::kBreak, w});
      }
    } else if (c == 0xC3 && i + 1 < text.size() &&
               (static_cast<unsigned char>(text[i + 1]) == 0x97 ||
                static_cast<unsigned char>(text[i + 1]) == 0xB7)) {
      // U+00D7 multiplication sign, U+00F7 division sign.
      toks.push_back({Tok::kOp, static_cast<unsigned char>(text[i + 1]) == 0x97
                                    ? "*"
                                    : "/"});
      i += 2;
    } else {
      toks.push_back({Tok::kBreak, std::string(1, static_cast<char>(c))});
      ++i;
    }
  }
  // Longest run of non-break tokens that evaluates and has an operator.
  std::string best;
  size_t best_tokens = 0;
  for (size_t start = 0; start < toks.size(); ++start) {
    if (toks[start].kind == Tok::kBreak || toks[start].kind == Tok::kClose)
      continue;
    std::string expr;
    bool has_op = false;
    for (size_t end = start; end < toks.size(); ++end) {
      const Tok& t = toks[end];
      if (t.kind == Tok::kBreak) break;
      if (!expr.empty()) {
        const bool spaced =
            t.kind == Tok::kOp || (toks[end - 1].kind == Tok::kOp);
        const bool unary =
            toks[end - 1].kind == Tok::kOp &&
            (end - 1 == start || toks[end - 2].kind == Tok::kOp ||
             toks[end - 2].kind == Tok::kOpen);
        if (spaced && !unary) expr += " ";
      }
      expr += t.text;
      if (t.kind == Tok::kOp && end > start) has_op = true;
      double v;
      bool f;
      if (has_op && t.kind != Tok::kOp && end - start + 1 > best_tokens &&
          EvaluateExpression(expr, &v, &f)) {
        best = expr;
        best_tokens = end - start + 1;
      }
    }
  }
  return best;
}

bool EvaluateExpression(const std::string& expression, double* value,
                        bool* is_float) {
  ExprParser parser(expression);
  return parser.Parse(value, is_float) && std::isfinite(*value);
}

std::string FormatPythonNumber(double value, bool is_float) {
  if (!is_float && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(std::llround(value)));
  }
  if (value == std::floor(value) && std::fabs(value) < 1e16) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.1f", value);
    return buf;
  }
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, res.ptr);
}

std::string FormatMoney(double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2f", std::fabs(value));
  std::string s(buf);
  const size_t dot = s.find('.');
  std::string whole = s.substr(0, dot);
  std::string grouped;
  for (size_t i = 0; i < whole.size(); ++i) {
    if (i > 0 && (whole.size() - i) % 3 == 0) grouped.push_back(',');
    grouped.push_back(whole[i]);
  }
  return (value < 0 ? "-" : "") + grouped + s.substr(dot);
}

std::vector<std::string> SplitIntoDeltas(const std::string& text, int n) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  const std::vector<size_t> starts = CodePointStarts(text);
  const size_t cps = starts.size() - 1;
  if (n > 0) {
    const size_t pieces = std::min<size_t>(n, cps);
    for (size_t k = 0; k < pieces; ++k) {
      const size_t a = starts[k * cps / pieces];
      const size_t b = starts[(k + 1) * cps / pieces];
      out.push_back(text.substr(a, b - a));
    }
    return out;
  }
  // Word-ish tokens: leading whitespace + a word of up to ~5 characters
  // (longer words continue in 4-character pieces); punctuation alone.
  size_t i = 0;
  while (i < text.size()) {
    const size_t begin = i;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (i < text.size() && IsWordByte(static_cast<unsigned char>(text[i]))) {
      size_t chars = 0;
      size_t j = i;
      while (j < text.size() &&
             IsWordByte(static_cast<unsigned char>(text[j]))) {
        if (!IsUtf8Continuation(static_cast<unsigned char>(text[j]))) ++chars;
        ++j;
      }
      if (chars <= 6) {
        i = j;
      } else {
        size_t taken = 0;
        while (i < text.size() && taken <= 4) {
          if (!IsUtf8Continuation(static_cast<unsigned char>(text[i]))) {
            if (taken == 4) break;
            ++taken;
          }
          ++i;
        }
      }
    } else if (i < text.size()) {
      // A short run of punctuation is one token, e.g. `{"` or `":"`.
      int taken = 0;
      while (i < text.size() && taken < 3 &&
             !IsWordByte(static_cast<unsigned char>(text[i])) &&
             text[i] != ' ' && text[i] != '\t') {
        ++i;
        ++taken;
      }
    }
    out.push_back(text.substr(begin, i - begin));
  }
  return out;
}

Completion DecideDefault(const ModelRequest& r) {
  Completion c;
  int last_user = -1;
  const std::string question = LastUserText(r.items, &last_user);
  size_t first_out = r.items.size();
  while (first_out > 0 &&
         r.items[first_out - 1].kind == ConvItem::kFunctionOutput)
    --first_out;
  const bool answering = first_out < r.items.size();
  const bool tools_allowed = r.tool_choice != "none" && !r.tools.empty();
  auto call_tool = [&](const ToolDef& tool, const std::string& args) {
    PlannedCall pc;
    pc.name = tool.name;
    pc.arguments = args;
    c.calls.push_back(std::move(pc));
  };
  auto tool_args = [&](const ToolDef& tool) {
    Json args = BuildArguments(tool.parameters, question);
    if (IsCalculatorLike(tool)) {
      const Json& props = tool.parameters.contains("properties")
                              ? tool.parameters["properties"]
                              : Json::object();
      if (props.is_object() && props.contains("expression"))
        args["expression"] = FallbackExpression(question);
    }
    return Dump(args);
  };

  if (answering) {
    const size_t since = last_user < 0 ? 0 : static_cast<size_t>(last_user);
    std::map<std::string, const ConvItem*> calls;
    std::set<std::string> called_names;
    std::vector<ItemOutput> outputs;
    for (size_t i = since; i < r.items.size(); ++i) {
      const ConvItem& it = r.items[i];
      if (it.kind == ConvItem::kFunctionCall) {
        calls[it.call_id] = &it;
        called_names.insert(it.name);
      } else if (it.kind == ConvItem::kFunctionOutput) {
        auto f = calls.find(it.call_id);
        outputs.push_back({f == calls.end() ? nullptr : f->second, &it});
      }
    }
    if (tools_allowed && r.tool_choice == "function") {
      // A forced tool is called again, as the real model does.
      for (const ToolDef& t : r.tools)
        if (t.name == r.tool_choice_name) call_tool(t, tool_args(t));
      return c;
    }
    if (tools_allowed) {
      // Deferred calculator: multiply the price the first tool returned by
      // the quantity the user asked about.
      for (const ToolDef* t : MatchTools(r.tools, question)) {
        if (!IsCalculatorLike(*t) || called_names.count(t->name)) continue;
        const Quantity qty = FindQuantity(question);
        for (const ItemOutput& io : outputs) {
          double price;
          std::string cur;
          if (qty.found && FindPrice(io.output->output, &price, &cur)) {
            Json args = BuildArguments(t->parameters, question);
            const std::string expr = absl::StrCat(
                qty.text, " * ",
                FormatPythonNumber(price, price != std::floor(price)));
            const Json& props = t->parameters.contains("properties")
                                    ? t->parameters["properties"]
                                    : Json::object();
            if (props.is_object() && props.contains("expression"))
              args["expression"] = expr;
            call_tool(*t, Dump(args));
            return c;
          }
        }
      }
    }
    c.has_text = true;
    c.text = ApplyTextFormat(r, AnswerFromOutputs(question, outputs), question);
    return c;
  }

  if (tools_allowed) {
    std::vector<const ToolDef*> chosen;
    if (r.tool_choice == "function") {
      for (const ToolDef& t : r.tools)
        if (t.name == r.tool_choice_name) chosen.push_back(&t);
    } else {
      std::vector<const ToolDef*> matched = MatchTools(r.tools, question);
      std::vector<const ToolDef*> non_calc;
      for (const ToolDef* t : matched)
        if (!IsCalculatorLike(*t)) non_calc.push_back(t);
      chosen = non_calc.empty() ? matched : non_calc;
      if (chosen.empty() && r.tool_choice == "required")
        chosen.push_back(&r.tools[0]);
    }
    if (!r.parallel_tool_calls && chosen.size() > 1) chosen.resize(1);
    if (!chosen.empty()) {
      for (const ToolDef* t : chosen) call_tool(*t, tool_args(*t));
      return c;
    }
  }

  if (r.code_interpreter && r.tool_choice != "none" &&
      AsksToCompute(question)) {
    const std::string expr = FallbackExpression(question);
    double v = 0;
    bool is_float = false;
    c.has_code_interpreter = true;
    if (EvaluateExpression(expr, &v, &is_float)) {
      const std::string shown = FormatPythonNumber(v, is_float);
      c.ci_code = absl::StrCat("result = ", expr, "\nprint(result)");
      c.ci_logs = shown + "\n";
      c.has_text = true;
      c.text = ApplyTextFormat(
          r, absl::StrCat("The result of ", expr, " is ", shown, "."),
          question);
    } else {
      c.ci_code = "print(\"I could not find an expression to compute.\")";
      c.ci_logs = "I could not find an expression to compute.\n";
      c.has_text = true;
      c.text = ApplyTextFormat(r, "I could not find an expression to compute.",
                               question);
    }
    return c;
  }

  c.has_text = true;
  const std::string q = Trim(question);
  const std::string echo =
      q.empty() ? "Hello! How can I help you today?"
                : absl::StrCat("You asked: \"", Truncate(q, 120),
                               "\". This is a deterministic answer from "
                               "fake-openai.");
  c.text = ApplyTextFormat(r, echo, question);
  return c;
}

// ---------------------------------------------------------------------------
// Scripts.

bool ParseScript(const Json& script, std::vector<Step>* steps,
                 std::string* error) {
  const Json* list = &script;
  if (script.is_object()) {
    if (!script.contains("responses") || !script["responses"].is_array()) {
      *error = "expected {\"responses\": [steps...]}";
      return false;
    }
    list = &script["responses"];
  } else if (!script.is_array()) {
    *error = "expected {\"responses\": [steps...]}";
    return false;
  }
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& s = (*list)[i];
    const std::string where = absl::StrCat("responses[", i, "]");
    if (!s.is_object()) {
      *error = where + ": a step must be an object";
      return false;
    }
    Step step;
    step.source = s;
    try {
      if (s.contains("text")) step.text = s["text"].get<std::string>();
      if (s.contains("refusal")) step.refusal = s["refusal"].get<std::string>();
      if (s.contains("tool_calls")) {
        for (const Json& tc : s["tool_calls"]) {
          ScriptedToolCall call;
          call.name = tc.at("name").get<std::string>();
          if (tc.contains("arguments")) {
            call.arguments = tc["arguments"].is_string()
                                 ? tc["arguments"].get<std::string>()
                                 : Dump(tc["arguments"]);
          } else {
            call.arguments = "{}";
          }
          if (tc.contains("call_id"))
            call.call_id = tc["call_id"].get<std::string>();
          step.tool_calls.push_back(std::move(call));
        }
      }
      if (s.contains("code_interpreter")) {
        const Json& ci = s["code_interpreter"];
        step.has_code_interpreter = true;
        step.code_interpreter_code = ci.value("code", "");
        step.code_interpreter_logs = ci.value("logs", "");
      }
      step.tokens = s.value("tokens", 0);
      step.token_delay_ms = s.value("token_delay_ms", 0);
      step.first_byte_delay_ms = s.value("first_byte_delay_ms", 0);
      if (s.contains("usage")) {
        const Json& u = s["usage"];
        if (u.contains("input_tokens"))
          step.usage_input_tokens = u["input_tokens"].get<int>();
        if (u.contains("prompt_tokens"))
          step.usage_input_tokens = u["prompt_tokens"].get<int>();
        if (u.contains("output_tokens"))
          step.usage_output_tokens = u["output_tokens"].get<int>();
        if (u.contains("completion_tokens"))
          step.usage_output_tokens = u["completion_tokens"].get<int>();
      }
      step.finish = s.value("finish", "");
      if (!step.finish.empty() && step.finish != "stop" &&
          step.finish != "length" && step.finish != "content_filter" &&
          step.finish != "tool_calls") {
        *error = where + ": finish must be stop|length|content_filter";
        return false;
      }
      step.incomplete_reason = s.value("incomplete_reason", "");
      step.status = s.value("status", 0);
      if (step.status != 0 && (step.status < 400 || step.status > 599)) {
        *error = where + ": status must be 4xx or 5xx";
        return false;
      }
      if (s.contains("error")) step.error = s["error"];
      if (s.contains("retry_after"))
        step.retry_after_s = s["retry_after"].get<double>();
      if (s.contains("retry_after_ms"))
        step.retry_after_ms = s["retry_after_ms"].get<int64_t>();
      step.drop_after_events = s.value("drop_after_events", -1);
      step.stall_after_events = s.value("stall_after_events", -1);
      step.malformed_after_events = s.value("malformed_after_events", -1);
      if (s.contains("failed")) {
        const Json& f = s["failed"];
        if (f.is_boolean()) {
          step.failed = f.get<bool>();
        } else if (f.is_object()) {
          step.failed = true;
          step.failed_error = f;
        } else {
          *error = where + ": failed must be a boolean or {code, message}";
          return false;
        }
      }
      step.repeat = s.value("repeat", 1);
      if (step.repeat < 1) {
        *error = where + ": repeat must be >= 1";
        return false;
      }
    } catch (const Json::exception& e) {
      *error = absl::StrCat(where, ": ", e.what());
      return false;
    }
    steps->push_back(std::move(step));
  }
  return true;
}

// ---------------------------------------------------------------------------
// Errors.

std::string ErrorBody(const std::string& message, const std::string& type,
                      const Json& param, const Json& code) {
  OrderedJson err;
  err["message"] = message;
  err["type"] = type;
  err["param"] = param;
  err["code"] = code;
  OrderedJson body;
  body["error"] = err;
  return Dump(body);
}

Reply ErrorReply(int status, const std::string& message,
                 const std::string& type, const Json& param, const Json& code) {
  Reply r;
  r.status = status;
  r.body = ErrorBody(message, type, param, code);
  return r;
}

bool ParseRequest(Api api, const std::string& body, ModelRequest* request,
                  Json* raw, Reply* error) {
  *raw = Json::parse(body, nullptr, false);
  if (raw->is_discarded() || !raw->is_object()) {
    *error = InvalidRequest(kBadJsonMessage, nullptr);
    return false;
  }
  request->api = api;
  if (!raw->contains("model")) {
    *error = MissingParam("model");
    return false;
  }
  if (!(*raw)["model"].is_string()) {
    *error = InvalidType("model", "a string", (*raw)["model"]);
    return false;
  }
  request->model = (*raw)["model"].get<std::string>();
  if (request->model.empty()) {
    *error = InvalidRequest(
        "Invalid 'model': empty string. Expected a string with minimum "
        "length 1, but got an empty string instead.",
        "model", "empty_string");
    return false;
  }
  return api == Api::kResponses ? ParseResponsesRequest(*raw, request, error)
                                : ParseChatRequest(*raw, request, error);
}

// ---------------------------------------------------------------------------
// FakeModel.

FakeModel::FakeModel(uint64_t seed) : rng_(seed) {}

void FakeModel::Enqueue(std::vector<Step> steps) {
  for (Step& s : steps) script_.push_back(std::move(s));
}

Json FakeModel::ScriptJson() const {
  Json list = Json::array();
  for (const Step& s : script_) {
    Json j = s.source;
    j["remaining_uses"] = s.repeat;
    list.push_back(j);
  }
  return Json{{"responses", list}};
}

std::string FakeModel::NewId(const std::string& prefix, int hex_chars) {
  static const char kHex[] = "0123456789abcdef";
  std::string id = prefix;
  uint64_t bits = 0;
  for (int i = 0; i < hex_chars; ++i) {
    if (i % 16 == 0) bits = rng_();
    id.push_back(kHex[bits & 15]);
    bits >>= 4;
  }
  return id;
}

std::string FakeModel::Obfuscation() {
  // Real deltas carry 1-16 characters of padding that hide token lengths.
  return NewAlnumId("", 1 + static_cast<int>(rng_() % 16));
}

std::string FakeModel::NewAlnumId(const std::string& prefix, int chars) {
  static const char kAlnum[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::string id = prefix;
  for (int i = 0; i < chars; ++i) id.push_back(kAlnum[rng_() % 62]);
  return id;
}

bool FakeModel::GetStoredResponse(const std::string& id,
                                  std::string* json) const {
  auto it = stored_.find(id);
  if (it == stored_.end()) return false;
  *json = it->second.response_json;
  return true;
}

void FakeModel::Store(const std::string& id, Stored stored) {
  if (stored_.size() >= kMaxStoredResponses && !stored_order_.empty()) {
    stored_.erase(stored_order_.front());
    stored_order_.pop_front();
  }
  stored_[id] = std::move(stored);
  stored_order_.push_back(id);
}

namespace {

Reply StepErrorReply(const Step& step) {
  std::string message;
  std::string type;
  Json code = nullptr;
  switch (step.status) {
    case 400:
      message = "Invalid request.";
      type = "invalid_request_error";
      break;
    case 401:
      message =
          "Incorrect API key provided. You can find your API key at "
          "https://platform.openai.com/account/api-keys.";
      type = "invalid_request_error";
      code = "invalid_api_key";
      break;
    case 403:
      message = "You are not allowed to sample from this model";
      type = "invalid_request_error";
      break;
    case 404:
      message = "The model does not exist or you do not have access to it.";
      type = "invalid_request_error";
      code = "model_not_found";
      break;
    case 429:
      message =
          "Rate limit reached for requests. Please try again in 1s. Visit "
          "https://platform.openai.com/account/rate-limits to learn more.";
      type = "requests";
      code = "rate_limit_exceeded";
      break;
    case 500:
      message =
          "The server had an error while processing your request. Sorry "
          "about that!";
      type = "server_error";
      break;
    case 502:
      message = "Bad gateway.";
      type = "server_error";
      break;
    case 503:
      message = "The engine is currently overloaded, please try again later.";
      type = "server_error";
      break;
    default:
      message = step.status >= 500 ? "Internal server error" : "Request error";
      type = step.status >= 500 ? "server_error" : "invalid_request_error";
  }
  Json param = nullptr;
  if (step.error.is_object()) {
    if (step.error.contains("message")) message = step.error["message"];
    if (step.error.contains("type")) type = step.error["type"];
    if (step.error.contains("code")) code = step.error["code"];
    if (step.error.contains("param")) param = step.error["param"];
    // insufficient_quota is both the type and the code on the real API.
    if (code == "insufficient_quota" && !step.error.contains("type"))
      type = "insufficient_quota";
  }
  Reply r = ErrorReply(step.status, message, type, param, code);
  if (step.retry_after_s >= 0) {
    const double s = step.retry_after_s;
    r.headers.emplace_back("retry-after",
                           s == std::floor(s)
                               ? std::to_string(static_cast<int64_t>(s))
                               : absl::StrCat(s));
  }
  if (step.retry_after_ms >= 0)
    r.headers.emplace_back("retry-after-ms",
                           std::to_string(step.retry_after_ms));
  r.first_byte_delay_ms = step.first_byte_delay_ms;
  return r;
}

// An output item as planned for rendering: its deltas and final state.
struct PlannedItem {
  enum Kind { kMessage, kFunctionCall, kCodeInterpreter } kind;
  std::string id;
  bool refusal = false;
  std::string full;  // Text, refusal, arguments or code.
  std::vector<std::string> deltas;
  bool truncated = false;
  std::string name, call_id;       // Function call.
  std::string logs, container_id;  // Code interpreter.
  std::string Final() const { return absl::StrJoin(deltas, ""); }
};

void SplitText(const std::string& text, int tokens,
               std::vector<std::string>* deltas) {
  std::string t = text;
  if (tokens > 0 && !t.empty()) {
    // Scripted token counts larger than the text pad it by repetition so a
    // benchmark can ask for any number of deltas.
    while (CodePointStarts(t).size() - 1 < static_cast<size_t>(tokens))
      t += " " + text;
  }
  *deltas = SplitIntoDeltas(t, tokens);
}

// Applies a token budget across items in order; returns true if anything
// was cut.
bool ApplyBudget(std::vector<PlannedItem>* items, int64_t budget) {
  if (budget < 0) return false;
  bool cut = false;
  std::vector<PlannedItem> kept;
  for (PlannedItem& item : *items) {
    if (budget <= 0 && !item.deltas.empty()) {
      cut = true;
      break;
    }
    if (static_cast<int64_t>(item.deltas.size()) > budget) {
      item.deltas.resize(budget);
      item.truncated = true;
      cut = true;
    }
    budget -= static_cast<int64_t>(item.deltas.size());
    kept.push_back(std::move(item));
    if (cut) break;
  }
  *items = std::move(kept);
  return cut;
}

int64_t CountDeltas(const std::vector<PlannedItem>& items) {
  int64_t n = 0;
  for (const PlannedItem& i : items) n += i.deltas.size();
  return n;
}

Completion FromStep(const Step& step) {
  Completion c;
  if (step.text) {
    c.has_text = true;
    c.text = *step.text;
  }
  if (step.refusal) {
    c.has_refusal = true;
    c.refusal = *step.refusal;
  }
  for (const ScriptedToolCall& tc : step.tool_calls)
    c.calls.push_back({tc.name, tc.arguments, tc.call_id});
  if (step.has_code_interpreter) {
    c.has_code_interpreter = true;
    c.ci_code = step.code_interpreter_code;
    c.ci_logs = step.code_interpreter_logs;
  }
  return c;
}

bool StepHasContent(const Step& step) {
  return step.text || step.refusal || !step.tool_calls.empty() ||
         step.has_code_interpreter;
}

void ApplyStepTiming(const Step* step, Reply* reply) {
  if (step == nullptr) return;
  reply->first_byte_delay_ms = step->first_byte_delay_ms;
  reply->token_delay_ms = step->token_delay_ms;
  reply->drop_after_events = step->drop_after_events;
  reply->stall_after_events = step->stall_after_events;
  reply->malformed_after_events = step->malformed_after_events;
}

void AddSse(std::vector<SseEvent>* events, int* seq, OrderedJson ev,
            bool delta) {
  ev["sequence_number"] = (*seq)++;
  const std::string type = ev["type"].get<std::string>();
  events->push_back(
      {absl::StrCat("event: ", type, "\ndata: ", Dump(ev), "\n\n"), delta});
}

OrderedJson EchoTools(const Json& raw) {
  OrderedJson tools = OrderedJson::array();
  if (!raw.contains("tools") || !raw["tools"].is_array()) return tools;
  for (const Json& t : raw["tools"]) {
    if (t.value("type", "") == "function") {
      OrderedJson f;
      f["type"] = "function";
      f["name"] = t["name"];
      f["description"] =
          t.contains("description") ? t["description"] : Json(nullptr);
      f["parameters"] =
          t.contains("parameters") ? t["parameters"] : Json(nullptr);
      f["strict"] = t.contains("strict") && !t["strict"].is_null() ? t["strict"]
                                                                   : Json(true);
      tools.push_back(f);
    } else {
      tools.push_back(OrderedJson::parse(Dump(t)));
    }
  }
  return tools;
}

OrderedJson ToOrdered(const Json& j) { return OrderedJson::parse(Dump(j)); }

}  // namespace

Reply FakeModel::Handle(Api api, const std::string& body) {
  ModelRequest req;
  Json raw;
  Reply error;
  if (!ParseRequest(api, body, &req, &raw, &error)) return error;

  if (api == Api::kResponses && raw.contains("previous_response_id") &&
      raw["previous_response_id"].is_string()) {
    const std::string prev = raw["previous_response_id"].get<std::string>();
    auto it = stored_.find(prev);
    if (it == stored_.end()) {
      return InvalidRequest(
          absl::StrCat("Previous response with id '", prev, "' not found."),
          "previous_response_id", "previous_response_not_found");
    }
    std::vector<ConvItem> items = it->second.items;
    items.insert(items.end(), req.items.begin(), req.items.end());
    req.items = std::move(items);
  }
  if (api == Api::kResponses) {
    // Every function output needs its call and every call its output, as
    // the real API insists.
    std::set<std::string> calls, outputs;
    for (const ConvItem& it : req.items) {
      if (it.kind == ConvItem::kFunctionCall) calls.insert(it.call_id);
      if (it.kind == ConvItem::kFunctionOutput) {
        if (!calls.count(it.call_id)) {
          return InvalidRequest(
              absl::StrCat("No tool call found for function call output "
                           "with call_id ",
                           it.call_id, "."),
              "input");
        }
        outputs.insert(it.call_id);
      }
    }
    for (const std::string& id : calls) {
      if (!outputs.count(id)) {
        return InvalidRequest(
            absl::StrCat("No tool output found for function call ", id, "."),
            "input");
      }
    }
  }

  std::optional<Step> step;
  if (!script_.empty()) {
    step = script_.front();
    if (--script_.front().repeat <= 0) script_.pop_front();
  }
  if (step && step->status != 0) return StepErrorReply(*step);

  const Completion completion =
      step && StepHasContent(*step) ? FromStep(*step) : DecideDefault(req);
  const Step* s = step ? &*step : nullptr;
  Reply reply = api == Api::kResponses
                    ? RenderResponses(req, raw, completion, s)
                    : RenderChat(req, raw, completion, s);
  reply.headers.emplace_back("x-ratelimit-limit-requests", "10000");
  reply.headers.emplace_back("x-ratelimit-remaining-requests", "9999");
  reply.headers.emplace_back("x-ratelimit-reset-requests", "6ms");
  reply.headers.emplace_back("x-ratelimit-limit-tokens", "30000000");
  reply.headers.emplace_back("x-ratelimit-remaining-tokens", "29999000");
  reply.headers.emplace_back("x-ratelimit-reset-tokens", "2ms");
  return reply;
}

Reply FakeModel::RenderResponses(const ModelRequest& req, const Json& raw,
                                 const Completion& c, const Step* step) {
  const int tokens = step ? step->tokens : 0;
  std::vector<PlannedItem> items;
  if (c.has_code_interpreter) {
    PlannedItem it;
    it.kind = PlannedItem::kCodeInterpreter;
    it.id = NewId("ci_", 48);
    it.full = c.ci_code;
    it.logs = c.ci_logs;
    it.container_id = NewId("cntr_", 48);
    it.deltas = SplitIntoDeltas(c.ci_code, tokens);
    items.push_back(std::move(it));
  }
  if (c.has_text || c.has_refusal) {
    PlannedItem it;
    it.kind = PlannedItem::kMessage;
    it.id = NewId("msg_", 48);
    it.refusal = !c.has_text;
    it.full = c.has_text ? c.text : c.refusal;
    SplitText(it.full, tokens, &it.deltas);
    items.push_back(std::move(it));
  }
  for (const PlannedCall& call : c.calls) {
    PlannedItem it;
    it.kind = PlannedItem::kFunctionCall;
    it.id = NewId("fc_", 48);
    it.name = call.name;
    it.call_id = call.call_id.empty() ? NewAlnumId("call_", 24) : call.call_id;
    it.full = call.arguments;
    it.deltas = SplitIntoDeltas(call.arguments, tokens);
    items.push_back(std::move(it));
  }
  std::string incomplete_reason;
  if (ApplyBudget(&items, req.max_output_tokens))
    incomplete_reason = "max_output_tokens";
  if (step != nullptr) {
    if (step->finish == "length") incomplete_reason = "max_output_tokens";
    if (step->finish == "content_filter") incomplete_reason = "content_filter";
    if (!step->incomplete_reason.empty())
      incomplete_reason = step->incomplete_reason;
  }
  const bool failed = step != nullptr && step->failed;

  const std::string resp_id = NewId("resp_", 48);
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  const int64_t out_tokens = step && step->usage_output_tokens
                                 ? *step->usage_output_tokens
                                 : CountDeltas(items);
  const int64_t in_tokens =
      step && step->usage_input_tokens
          ? *step->usage_input_tokens
          : std::max<int64_t>(1, (req.input_chars + 3) / 4);

  auto item_json = [&](const PlannedItem& it, bool done) {
    OrderedJson j;
    const std::string status =
        !done ? "in_progress" : (it.truncated ? "incomplete" : "completed");
    switch (it.kind) {
      case PlannedItem::kMessage: {
        j["id"] = it.id;
        j["type"] = "message";
        j["status"] = status;
        j["role"] = "assistant";
        j["content"] = OrderedJson::array();
        if (done) {
          OrderedJson part;
          if (it.refusal) {
            part["type"] = "refusal";
            part["refusal"] = it.Final();
          } else {
            part["type"] = "output_text";
            part["annotations"] = OrderedJson::array();
            part["logprobs"] = OrderedJson::array();
            part["text"] = it.Final();
          }
          j["content"].push_back(part);
        }
        break;
      }
      case PlannedItem::kFunctionCall:
        j["id"] = it.id;
        j["type"] = "function_call";
        j["status"] = status;
        j["arguments"] = done ? it.Final() : "";
        j["call_id"] = it.call_id;
        j["name"] = it.name;
        break;
      case PlannedItem::kCodeInterpreter:
        j["id"] = it.id;
        j["type"] = "code_interpreter_call";
        j["status"] = status;
        j["code"] = done ? it.Final() : "";
        j["container_id"] = it.container_id;
        if (done && req.include_ci_outputs) {
          OrderedJson log;
          log["type"] = "logs";
          log["logs"] = it.logs;
          j["outputs"] = OrderedJson::array({log});
        } else {
          j["outputs"] = nullptr;
        }
        break;
    }
    return j;
  };

  auto response_json = [&](const std::string& status, bool final) {
    OrderedJson r;
    r["id"] = resp_id;
    r["object"] = "response";
    r["created_at"] = created;
    r["status"] = status;
    r["background"] = raw.value("background", false);
    r["error"] = nullptr;
    r["incomplete_details"] = nullptr;
    r["instructions"] = raw.contains("instructions")
                            ? ToOrdered(raw["instructions"])
                            : OrderedJson(nullptr);
    r["max_output_tokens"] = raw.contains("max_output_tokens")
                                 ? ToOrdered(raw["max_output_tokens"])
                                 : OrderedJson(nullptr);
    r["max_tool_calls"] = raw.contains("max_tool_calls")
                              ? ToOrdered(raw["max_tool_calls"])
                              : OrderedJson(nullptr);
    r["model"] = req.model;
    r["output"] = OrderedJson::array();
    if (final) {
      for (const PlannedItem& it : items)
        r["output"].push_back(item_json(it, true));
    }
    r["parallel_tool_calls"] = req.parallel_tool_calls;
    r["previous_response_id"] = raw.contains("previous_response_id")
                                    ? ToOrdered(raw["previous_response_id"])
                                    : OrderedJson(nullptr);
    r["prompt_cache_key"] = nullptr;
    OrderedJson reasoning;
    reasoning["effort"] = nullptr;
    reasoning["summary"] = nullptr;
    r["reasoning"] = reasoning;
    r["safety_identifier"] = nullptr;
    r["service_tier"] = "default";
    r["store"] = raw.value("store", true);
    r["temperature"] =
        raw.contains("temperature") && !raw["temperature"].is_null()
            ? ToOrdered(raw["temperature"])
            : OrderedJson(1.0);
    OrderedJson text;
    text["format"] = req.text_format.is_object()
                         ? ToOrdered(req.text_format)
                         : OrderedJson({{"type", "text"}});
    text["verbosity"] = "medium";
    r["text"] = text;
    r["tool_choice"] =
        raw.contains("tool_choice") && !raw["tool_choice"].is_null()
            ? ToOrdered(raw["tool_choice"])
            : OrderedJson("auto");
    r["tools"] = EchoTools(raw);
    r["top_logprobs"] = 0;
    r["top_p"] = raw.contains("top_p") && !raw["top_p"].is_null()
                     ? ToOrdered(raw["top_p"])
                     : OrderedJson(1.0);
    r["truncation"] = "disabled";
    if (final) {
      OrderedJson usage;
      usage["input_tokens"] = in_tokens;
      usage["input_tokens_details"] = {{"cached_tokens", 0},
                                       {"cache_write_tokens", 0}};
      usage["output_tokens"] = out_tokens;
      usage["output_tokens_details"] = {{"reasoning_tokens", 0}};
      usage["total_tokens"] = in_tokens + out_tokens;
      r["usage"] = usage;
      r["completed_at"] =
          status == "completed"
              ? OrderedJson(static_cast<int64_t>(std::time(nullptr)))
              : OrderedJson(nullptr);
    } else {
      r["usage"] = nullptr;
      r["completed_at"] = nullptr;
    }
    r["user"] = nullptr;
    r["metadata"] = raw.contains("metadata") && raw["metadata"].is_object()
                        ? ToOrdered(raw["metadata"])
                        : OrderedJson::object();
    if (status == "incomplete") {
      r["incomplete_details"] = {{"reason", incomplete_reason}};
    }
    if (status == "failed") {
      OrderedJson err;
      err["code"] = step && step->failed_error.is_object()
                        ? ToOrdered(step->failed_error.value(
                              "code", Json("server_error")))
                        : OrderedJson("server_error");
      err["message"] =
          step && step->failed_error.is_object()
              ? ToOrdered(step->failed_error.value(
                    "message", Json("The model failed to generate a "
                                    "response.")))
              : OrderedJson("The model failed to generate a response.");
      r["error"] = err;
      r["output"] = OrderedJson::array();
      r["usage"] = nullptr;
    }
    return r;
  };

  const std::string final_status =
      failed ? "failed"
             : (incomplete_reason.empty() ? "completed" : "incomplete");
  const OrderedJson final_response = response_json(final_status, true);

  // Remember the conversation for previous_response_id chaining.
  if (raw.value("store", true) && !failed) {
    Stored st;
    st.items = req.items;
    for (const PlannedItem& it : items) {
      ConvItem ci;
      if (it.kind == PlannedItem::kMessage) {
        ci.kind = ConvItem::kMessage;
        ci.role = "assistant";
        ci.text = it.Final();
      } else if (it.kind == PlannedItem::kFunctionCall) {
        ci.kind = ConvItem::kFunctionCall;
        ci.name = it.name;
        ci.call_id = it.call_id;
        ci.arguments = it.Final();
      } else {
        ci.kind = ConvItem::kOther;
      }
      ci.id = it.id;
      st.items.push_back(std::move(ci));
    }
    st.response_json = Dump(final_response);
    Store(resp_id, std::move(st));
  }

  Reply reply;
  ApplyStepTiming(step, &reply);
  if (!req.stream) {
    if (failed) {
      Reply err = ErrorReply(500,
                             "The server had an error while processing your "
                             "request. Sorry about that!",
                             "server_error");
      err.first_byte_delay_ms = reply.first_byte_delay_ms;
      return err;
    }
    reply.body = Dump(final_response);
    return reply;
  }
  reply.stream = true;
  reply.content_type = "text/event-stream; charset=utf-8";
  reply.malformed_wire =
      "event: response.output_text.delta\ndata: "
      "{\"type\":\"response.output_text.delta\",\"delta\":\"unterminated\n\n";
  int seq = 0;
  std::vector<SseEvent>& ev = reply.events;
  {
    OrderedJson e;
    e["type"] = "response.created";
    e["response"] = response_json("in_progress", false);
    AddSse(&ev, &seq, e, false);
    e["type"] = "response.in_progress";
    AddSse(&ev, &seq, e, false);
  }
  if (!failed) {
    for (size_t idx = 0; idx < items.size(); ++idx) {
      const PlannedItem& it = items[idx];
      OrderedJson added;
      added["type"] = "response.output_item.added";
      added["output_index"] = idx;
      added["item"] = item_json(it, false);
      AddSse(&ev, &seq, added, false);
      if (it.kind == PlannedItem::kMessage) {
        OrderedJson part;
        if (it.refusal) {
          part["type"] = "refusal";
          part["refusal"] = "";
        } else {
          part["type"] = "output_text";
          part["annotations"] = OrderedJson::array();
          part["logprobs"] = OrderedJson::array();
          part["text"] = "";
        }
        OrderedJson e;
        e["type"] = "response.content_part.added";
        e["item_id"] = it.id;
        e["output_index"] = idx;
        e["content_index"] = 0;
        e["part"] = part;
        AddSse(&ev, &seq, e, false);
        for (const std::string& d : it.deltas) {
          OrderedJson de;
          de["type"] = it.refusal ? "response.refusal.delta"
                                  : "response.output_text.delta";
          de["item_id"] = it.id;
          de["output_index"] = idx;
          de["content_index"] = 0;
          de["delta"] = d;
          if (!it.refusal) de["logprobs"] = OrderedJson::array();
          if (req.include_obfuscation) de["obfuscation"] = Obfuscation();
          AddSse(&ev, &seq, de, true);
        }
        OrderedJson done;
        done["type"] =
            it.refusal ? "response.refusal.done" : "response.output_text.done";
        done["item_id"] = it.id;
        done["output_index"] = idx;
        done["content_index"] = 0;
        done[it.refusal ? "refusal" : "text"] = it.Final();
        if (!it.refusal) done["logprobs"] = OrderedJson::array();
        AddSse(&ev, &seq, done, false);
        if (it.refusal) {
          part["refusal"] = it.Final();
        } else {
          part["text"] = it.Final();
        }
        OrderedJson pd;
        pd["type"] = "response.content_part.done";
        pd["item_id"] = it.id;
        pd["output_index"] = idx;
        pd["content_index"] = 0;
        pd["part"] = part;
        AddSse(&ev, &seq, pd, false);
      } else if (it.kind == PlannedItem::kFunctionCall) {
        for (const std::string& d : it.deltas) {
          OrderedJson de;
          de["type"] = "response.function_call_arguments.delta";
          de["item_id"] = it.id;
          de["output_index"] = idx;
          de["delta"] = d;
          if (req.include_obfuscation) de["obfuscation"] = Obfuscation();
          AddSse(&ev, &seq, de, true);
        }
        OrderedJson done;
        done["type"] = "response.function_call_arguments.done";
        done["item_id"] = it.id;
        done["name"] = it.name;
        done["output_index"] = idx;
        done["arguments"] = it.Final();
        AddSse(&ev, &seq, done, false);
      } else {
        OrderedJson e;
        e["type"] = "response.code_interpreter_call.in_progress";
        e["output_index"] = idx;
        e["item_id"] = it.id;
        AddSse(&ev, &seq, e, false);
        for (const std::string& d : it.deltas) {
          OrderedJson de;
          de["type"] = "response.code_interpreter_call_code.delta";
          de["output_index"] = idx;
          de["item_id"] = it.id;
          de["delta"] = d;
          AddSse(&ev, &seq, de, true);
        }
        OrderedJson done;
        done["type"] = "response.code_interpreter_call_code.done";
        done["output_index"] = idx;
        done["item_id"] = it.id;
        done["code"] = it.Final();
        AddSse(&ev, &seq, done, false);
        OrderedJson interp;
        interp["type"] = "response.code_interpreter_call.interpreting";
        interp["output_index"] = idx;
        interp["item_id"] = it.id;
        AddSse(&ev, &seq, interp, false);
        interp["type"] = "response.code_interpreter_call.completed";
        AddSse(&ev, &seq, interp, false);
      }
      OrderedJson item_done;
      item_done["type"] = "response.output_item.done";
      item_done["output_index"] = idx;
      item_done["item"] = item_json(it, true);
      AddSse(&ev, &seq, item_done, false);
    }
  }
  OrderedJson fin;
  fin["type"] = failed ? "response.failed"
                       : (incomplete_reason.empty() ? "response.completed"
                                                    : "response.incomplete");
  fin["response"] = final_response;
  AddSse(&ev, &seq, fin, false);
  return reply;
}

Reply FakeModel::RenderChat(const ModelRequest& req, const Json& raw,
                            const Completion& c, const Step* step) {
  const int tokens = step ? step->tokens : 0;
  std::vector<PlannedItem> items;
  if (c.has_text || c.has_refusal || (c.has_code_interpreter && c.has_text)) {
    PlannedItem it;
    it.kind = PlannedItem::kMessage;
    it.refusal = !c.has_text;
    it.full = c.has_text ? c.text : c.refusal;
    SplitText(it.full, tokens, &it.deltas);
    items.push_back(std::move(it));
  }
  for (const PlannedCall& call : c.calls) {
    PlannedItem it;
    it.kind = PlannedItem::kFunctionCall;
    it.name = call.name;
    it.call_id = call.call_id.empty() ? NewAlnumId("call_", 24) : call.call_id;
    it.full = call.arguments;
    it.deltas = SplitIntoDeltas(call.arguments, tokens);
    items.push_back(std::move(it));
  }
  std::string finish = c.calls.empty() ? "stop" : "tool_calls";
  if (ApplyBudget(&items, req.max_output_tokens)) finish = "length";
  if (step != nullptr) {
    if (!step->finish.empty()) finish = step->finish;
    if (step->incomplete_reason == "max_output_tokens") finish = "length";
    if (step->incomplete_reason == "content_filter") finish = "content_filter";
  }
  const bool failed = step != nullptr && step->failed;
  const std::string id = NewAlnumId("chatcmpl-", 29);
  const std::string fingerprint = NewId("fp_", 10);
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  const int64_t out_tokens = step && step->usage_output_tokens
                                 ? *step->usage_output_tokens
                                 : CountDeltas(items);
  const int64_t in_tokens =
      step && step->usage_input_tokens
          ? *step->usage_input_tokens
          : std::max<int64_t>(1, (req.input_chars + 3) / 4);
  OrderedJson usage;
  usage["prompt_tokens"] = in_tokens;
  usage["completion_tokens"] = out_tokens;
  usage["total_tokens"] = in_tokens + out_tokens;
  usage["prompt_tokens_details"] = {{"cached_tokens", 0}, {"audio_tokens", 0}};
  usage["completion_tokens_details"] = {{"reasoning_tokens", 0},
                                        {"audio_tokens", 0},
                                        {"accepted_prediction_tokens", 0},
                                        {"rejected_prediction_tokens", 0}};

  Reply reply;
  ApplyStepTiming(step, &reply);
  const PlannedItem* message = nullptr;
  for (const PlannedItem& it : items)
    if (it.kind == PlannedItem::kMessage) message = &it;

  if (!req.stream) {
    if (failed) {
      Reply err = ErrorReply(500,
                             "The server had an error while processing your "
                             "request. Sorry about that!",
                             "server_error");
      err.first_byte_delay_ms = reply.first_byte_delay_ms;
      return err;
    }
    OrderedJson msg;
    msg["role"] = "assistant";
    msg["content"] = message && !message->refusal
                         ? OrderedJson(message->Final())
                         : OrderedJson(nullptr);
    msg["refusal"] = message && message->refusal ? OrderedJson(message->Final())
                                                 : OrderedJson(nullptr);
    OrderedJson calls = OrderedJson::array();
    for (const PlannedItem& it : items) {
      if (it.kind != PlannedItem::kFunctionCall) continue;
      OrderedJson tc;
      tc["id"] = it.call_id;
      tc["type"] = "function";
      tc["function"] = {{"name", it.name}, {"arguments", it.Final()}};
      calls.push_back(tc);
    }
    if (!calls.empty()) msg["tool_calls"] = calls;
    msg["annotations"] = OrderedJson::array();
    OrderedJson choice;
    choice["index"] = 0;
    choice["message"] = msg;
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = finish;
    OrderedJson body;
    body["id"] = id;
    body["object"] = "chat.completion";
    body["created"] = created;
    body["model"] = req.model;
    body["choices"] = OrderedJson::array({choice});
    body["usage"] = usage;
    body["service_tier"] = "default";
    body["system_fingerprint"] = fingerprint;
    reply.body = Dump(body);
    return reply;
  }

  reply.stream = true;
  reply.content_type = "text/event-stream; charset=utf-8";
  reply.malformed_wire =
      absl::StrCat("data: {\"id\":\"", id, "\",\"choices\":[{\"delta\":\n\n");
  auto chunk = [&](OrderedJson delta, const OrderedJson& finish_reason) {
    OrderedJson ch;
    ch["id"] = id;
    ch["object"] = "chat.completion.chunk";
    ch["created"] = created;
    ch["model"] = req.model;
    ch["service_tier"] = "default";
    ch["system_fingerprint"] = fingerprint;
    OrderedJson choice;
    choice["index"] = 0;
    choice["delta"] = std::move(delta);
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = finish_reason;
    ch["choices"] = OrderedJson::array({choice});
    if (req.include_usage) ch["usage"] = nullptr;
    if (req.include_obfuscation) ch["obfuscation"] = Obfuscation();
    return ch;
  };
  auto add = [&](const OrderedJson& ch, bool delta) {
    reply.events.push_back({absl::StrCat("data: ", Dump(ch), "\n\n"), delta});
  };

  // First chunk carries the role (and, for a pure tool call, the first
  // call header, as the real service does).
  size_t tool_index = 0;
  OrderedJson first;
  first["role"] = "assistant";
  if (message != nullptr && !message->refusal) {
    first["content"] = "";
  } else {
    first["content"] = nullptr;
  }
  first["refusal"] = message != nullptr && message->refusal
                         ? OrderedJson("")
                         : OrderedJson(nullptr);
  bool first_sent = false;
  if (message == nullptr && !items.empty() &&
      items[0].kind == PlannedItem::kFunctionCall) {
    OrderedJson tc;
    tc["index"] = 0;
    tc["id"] = items[0].call_id;
    tc["type"] = "function";
    tc["function"] = {{"name", items[0].name}, {"arguments", ""}};
    first["tool_calls"] = OrderedJson::array({tc});
  }
  add(chunk(first, nullptr), false);
  first_sent = true;
  for (size_t k = 0; k < items.size(); ++k) {
    const PlannedItem& it = items[k];
    if (it.kind == PlannedItem::kMessage) {
      for (const std::string& d : it.deltas) {
        OrderedJson delta;
        delta[it.refusal ? "refusal" : "content"] = d;
        add(chunk(delta, nullptr), true);
      }
      continue;
    }
    const size_t index = tool_index++;
    const bool header_sent = first_sent && k == 0 && message == nullptr;
    if (!header_sent) {
      OrderedJson tc;
      tc["index"] = index;
      tc["id"] = it.call_id;
      tc["type"] = "function";
      tc["function"] = {{"name", it.name}, {"arguments", ""}};
      add(chunk({{"tool_calls", OrderedJson::array({tc})}}, nullptr), false);
    }
    for (const std::string& d : it.deltas) {
      OrderedJson tc;
      tc["index"] = index;
      tc["function"] = {{"arguments", d}};
      add(chunk({{"tool_calls", OrderedJson::array({tc})}}, nullptr), true);
    }
  }
  if (failed) {
    // Mid-stream errors arrive as a data line holding an error object.
    OrderedJson err;
    err["message"] =
        step->failed_error.is_object()
            ? step->failed_error.value("message",
                                       "The server had an error while "
                                       "processing your request.")
            : "The server had an error while processing your "
              "request.";
    err["type"] = "server_error";
    err["param"] = nullptr;
    err["code"] = step->failed_error.is_object()
                      ? ToOrdered(step->failed_error.value("code", Json()))
                      : OrderedJson(nullptr);
    add({{"error", err}}, false);
    return reply;
  }
  add(chunk(OrderedJson::object(), finish), false);
  if (req.include_usage) {
    OrderedJson ch;
    ch["id"] = id;
    ch["object"] = "chat.completion.chunk";
    ch["created"] = created;
    ch["model"] = req.model;
    ch["service_tier"] = "default";
    ch["system_fingerprint"] = fingerprint;
    ch["choices"] = OrderedJson::array();
    ch["usage"] = usage;
    if (req.include_obfuscation) ch["obfuscation"] = Obfuscation();
    add(ch, false);
  }
  reply.events.push_back({"data: [DONE]\n\n", false});
  (void)raw;
  return reply;
}

}  // namespace assistants::fake_openai
