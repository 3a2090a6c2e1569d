#!/usr/bin/env bash
# The main job: installs dependencies, builds, starts the gateway on loopback
# with a fresh SQLite store, and walks through the seed tutorial's set-up with
# assistantsctl (assistant with code_interpreter + get_stock_price, a thread,
# the user's question), printing each step. Runs, the fake upstream and the
# tool workers join this scenario as they land.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

./scripts/install-deps.sh
echo "==> building (first build takes a few minutes)"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target assistants-gateway assistantsctl \
  fake-openai upstream-probe

work="$(mktemp -d)"
gateway_pid=""
fake_pid=""
cleanup() {
  for pid in $gateway_pid $fake_pid; do
    kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting assistants-gateway (store: $work/assistants.db)"
"$root/build/service/assistants-gateway" --listen=127.0.0.1:0 --db="$work/assistants.db" \
  2>"$work/gateway.log" &
gateway_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/gateway.log" 2>/dev/null && break
  sleep 0.1
done
target="$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$work/gateway.log" | head -1)"
[ -n "$target" ] || { cat "$work/gateway.log"; echo "gateway did not start" >&2; exit 1; }
cat "$work/gateway.log"

ctl() {
  echo
  echo "\$ assistantsctl $*"
  "$root/build/cli/assistantsctl" --target="$target" "$@"
}

tools='[{"type":"code_interpreter"},{"type":"function","function":{"name":"get_stock_price","description":"Get the current stock price for a given ticker symbol.","parameters":{"type":"object","properties":{"ticker":{"type":"string","description":"Stock ticker symbol, e.g. AAPL"}},"required":["ticker"]}}}]'
instructions="You are a data analyst agent. When given data or questions about data, write and execute Python code to answer. Always show your work. If you need to make calculations, use code_interpreter."

assistant_id="$("$root/build/cli/assistantsctl" --target="$target" --json assistants create \
  --model gpt-4o --name "Data Analyst" --instructions "$instructions" --tools-json "$tools" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
ctl assistants get "$assistant_id"
ctl --json assistants get "$assistant_id"
thread_json="$("$root/build/cli/assistantsctl" --target="$target" --json threads create)"
thread_id="$(printf '%s' "$thread_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
echo; echo "thread: $thread_id"
ctl messages create "$thread_id" --role user \
  --text "What's the stock price of AAPL, and calculate what 1000 shares would be worth?"
ctl messages list "$thread_id" --order asc
ctl assistants list
echo
echo "# a bad request gets a typed error (code, reason, field):"
ctl assistants create --model gpt-4o --temperature 3 || true

echo
echo "==> restarting the gateway: the store keeps everything"
kill -TERM "$gateway_pid"; wait "$gateway_pid" || true
"$root/build/service/assistants-gateway" --listen="$target" --db="$work/assistants.db" \
  2>>"$work/gateway.log" &
gateway_pid=$!
sleep 0.5
ctl messages list "$thread_id" --order asc

# The upstream half: the seed's two model turns streamed through the
# gateway's providers, from fake-openai (or real OpenAI with a key).
if [ -n "${OPENAI_API_KEY:-}" ]; then
  base_url="${OPENAI_BASE_URL:-https://api.openai.com/v1}"; key="$OPENAI_API_KEY"
  echo; echo "==> upstream: real OpenAI at $base_url"
else
  "$root/build/upstream/fake-openai" --listen=127.0.0.1:0 2>"$work/fake.log" &
  fake_pid=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$work/fake.log" 2>/dev/null && break; sleep 0.1; done
  base_url="http://$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$work/fake.log" | head -1)/v1"
  key="sk-fake"
  echo; echo "==> upstream: fake-openai at $base_url (set OPENAI_API_KEY to use OpenAI)"
fi
show_turn() {
  # Renders the provider's events as a terminal client would.
  python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    t = e.get("type")
    if t == "text_delta": print(e["text"], end="", flush=True)
    elif t == "tool_call_started": print("[calling %s] " % e["name"], end="", flush=True)
    elif t == "tool_call_arguments_delta": print(e["text"], end="", flush=True)
    elif t == "tool_call_done": print()
    elif t == "code_interpreter_code_delta": print(e["text"], end="", flush=True)
    elif t == "usage": print("\n  (usage: %s)" % e["usage"])
    elif t == "finished": print("  (finish: %s)" % e["finish_reason"])
    elif "error" in e: print("  error: %s" % e["error"])
'
}
for api in responses chat; do
  echo; echo "--- $api API: the user asks; the model calls get_stock_price"
  "$root/build/upstream/upstream-probe" --api=$api --scenario=seed \
    --base_url="$base_url" --api_key="$key" | show_turn
  echo "--- $api API: get_stock_price returned {\"price\": 237.5}; the model answers"
  echo -n "assistant > "
  "$root/build/upstream/upstream-probe" --api=$api --scenario=tool_outputs \
    --base_url="$base_url" --api_key="$key" | show_turn
done

echo
echo "Runs (CreateRun, RunEvents) join these halves next: the run engine will drive"
echo "the provider turns above from threads, and tool workers will answer the calls;"
echo "until then RunService answers UNIMPLEMENTED (reason NOT_IMPLEMENTED)."
