#!/usr/bin/env bash
# The main job: installs dependencies, builds, starts the upstream
# (fake-openai, or OpenAI itself when OPENAI_API_KEY is set) and the gateway
# on loopback with a fresh SQLite store, and two tool workers that register
# with it: get_stock_price in C++ and calculator in Python. Then it plays the
# seed tutorial: the assistant (naming the workers' tools without repeating
# their schemas), a thread with the user's question, and the run streamed to
# the terminal the way the tutorial's AgentStreamHandler prints it, the
# tool calls executed by the workers with no client code involved; then the
# same question with the seed's polling loop through Chat Completions, and a
# restart that keeps it all.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

./scripts/install-deps.sh
echo "==> building (first build takes a few minutes)"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target assistants-gateway assistantsctl \
  fake-openai stock-price-worker

work="$(mktemp -d)"
gateway_pid=""
fake_pid=""
worker_pids=""
cleanup() {
  for pid in $worker_pids $gateway_pid $fake_pid; do
    kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits for "<name> listening on HOST:PORT" in a log and prints HOST:PORT.
listening_on() {
  for _ in $(seq 1 100); do
    grep -q "listening on" "$1" 2>/dev/null && break
    sleep 0.1
  done
  sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$1" | head -1
}

if [ -n "${OPENAI_API_KEY:-}" ]; then
  export OPENAI_BASE_URL="${OPENAI_BASE_URL:-https://api.openai.com/v1}"
  model="${DEMO_MODEL:-gpt-4o-mini}"
  echo "==> upstream: OpenAI at $OPENAI_BASE_URL (model $model)"
else
  "$root/build/upstream/fake-openai" --listen=127.0.0.1:0 2>"$work/fake.log" &
  fake_pid=$!
  fake="$(listening_on "$work/fake.log")"
  [ -n "$fake" ] || { cat "$work/fake.log"; echo "fake-openai did not start" >&2; exit 1; }
  export OPENAI_BASE_URL="http://$fake/v1" OPENAI_API_KEY="sk-fake"
  model="gpt-4o"
  echo "==> upstream: fake-openai at $OPENAI_BASE_URL (set OPENAI_API_KEY to use OpenAI)"
fi

# Workers register with this token (a Kubernetes Secret in a cluster).
head -c 24 /dev/urandom | base64 >"$work/worker-token"
start_gateway() {
  "$root/build/service/assistants-gateway" --listen="$1" --db="$work/assistants.db" \
    --worker_token_file="$work/worker-token" 2>>"$work/gateway.log" &
  gateway_pid=$!
}
echo "==> starting assistants-gateway (store: $work/assistants.db)"
start_gateway 127.0.0.1:0
target="$(listening_on "$work/gateway.log")"
[ -n "$target" ] || { cat "$work/gateway.log"; echo "gateway did not start" >&2; exit 1; }
cat "$work/gateway.log"

ctl() {
  echo
  echo "\$ assistantsctl $*"
  "$root/build/cli/assistantsctl" --target="$target" "$@"
}

echo
echo "==> starting the tool workers: get_stock_price (C++), calculator (Python)"
"$root/build/tool_workers/examples/stock-price-worker" --gateway="$target" \
  --token_file="$work/worker-token" --worker_id=stock-price-1 2>"$work/stock.log" &
worker_pids="$!"
"$root/tool_workers/examples/python/run.sh" --gateway "$target" \
  --token_file "$work/worker-token" --worker_id calculator-1 2>"$work/calculator.log" &
worker_pids="$worker_pids $!"
for log in stock calculator; do
  [ -n "$(listening_on "$work/$log.log")" ] || {
    cat "$work/$log.log"; echo "the $log worker did not start" >&2; exit 1; }
done
ctl workers list
ctl tools list
json_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

# The seed's assistant, its tools served by the workers: named only, the
# gateway fills in the schemas the workers registered.
tools='[{"type":"function","function":{"name":"get_stock_price"}},{"type":"function","function":{"name":"calculator"}}]'
instructions="You are a data analyst agent. When given data or questions about data, answer with the tools you have. Always show your work. If you need to make calculations, use the calculator tool."
question="What's the stock price of AAPL, and calculate what 1000 shares would be worth?"

assistant_id="$("$root/build/cli/assistantsctl" --target="$target" --json assistants create \
  --model "$model" --name "Data Analyst" --instructions "$instructions" \
  --tools-json "$tools" | json_id)"
ctl assistants get "$assistant_id"
thread_id="$("$root/build/cli/assistantsctl" --target="$target" --json threads create | json_id)"
echo; echo "thread: $thread_id"
ctl messages create "$thread_id" --role user --text "$question"

echo
echo "==> the run, streamed (one RunEvents call; Responses API upstream);"
echo "    the workers execute the tool calls, no client-side tool code"
ctl run --assistant "$assistant_id" --thread "$thread_id"
ctl runs list "$thread_id"
ctl messages list "$thread_id" --order asc

echo
echo "==> the same question with the seed's polling loop (GetRun every second),"
echo "    through the Chat Completions backend"
chat_assistant="$("$root/build/cli/assistantsctl" --target="$target" --json assistants create \
  --model "$model" --name "Data Analyst (chat)" --instructions "$instructions" \
  --tools-json "$tools" --upstream openai-chat | json_id)"
ctl run --assistant "$chat_assistant" --message "$question" --poll

echo
echo "==> a tool with no worker still surfaces to the caller (requires_action),"
echo "    here answered by the seed's own functions (--demo-tools)"
seed_tools='[{"type":"function","function":{"name":"get_stock_price"}},{"type":"function","function":{"name":"get_weather","description":"Get the weather for a city.","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]'
mixed_assistant="$("$root/build/cli/assistantsctl" --target="$target" --json assistants create \
  --model "$model" --name "Mixed tools" --tools-json "$seed_tools" | json_id)"
ctl run --assistant "$mixed_assistant" --message "What's the weather in Paris?" --demo-tools

echo
echo "# a bad request gets a typed error (code, reason, field):"
ctl run --assistant "$assistant_id" --thread thread_doesnotexist || true

echo
echo "==> restarting the gateway: runs, steps and messages are kept"
kill -TERM "$gateway_pid"; wait "$gateway_pid" || true
start_gateway "$target"
sleep 0.5
ctl runs list "$thread_id"
ctl messages list "$thread_id" --order desc --limit 1
# The workers notice the restart at their next heartbeat and register again.
sleep 6
ctl workers list
