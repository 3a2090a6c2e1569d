#!/usr/bin/env bash
# Runs the Python calculator worker: generates the Python stubs from proto/
# into a temporary directory and runs calculator_worker.py with them, under
# Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf). Arguments go
# to the worker:
#   tool_workers/examples/python/run.sh --gateway 127.0.0.1:50051 \
#       --token_file /path/to/registration-token
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python=/usr/bin/python3

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$here/../../../scripts/python-stubs.sh" "$out"

# Not exec: the stubs directory is removed when the worker exits. So that
# SIGTERM/SIGINT to this script still drain the worker (unregister, finish
# calls in flight), they are forwarded to it and the script waits for it.
PYTHONPATH="$out:$here${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" "$here/calculator_worker.py" "$@" &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null || true' TERM INT
# `wait` returns early when a trapped signal arrives; wait again until the
# worker has exited, then take its exit code (bash remembers it).
while kill -0 "$worker" 2>/dev/null; do
  wait "$worker" || true
done
status=0
wait "$worker" || status=$?
exit "$status"
