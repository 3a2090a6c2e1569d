#!/usr/bin/env bash
# Generates the Python stubs from proto/ into a temporary directory and runs
# seed_agent.py with them, under Debian's /usr/bin/python3 (which sees
# python3-grpcio and python3-protobuf even when another python3 is first on
# PATH). Arguments go to the script:
#   examples/python/run.sh --target 127.0.0.1:50051
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python=/usr/bin/python3

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$here/../../scripts/python-stubs.sh" "$out"

PYTHONPATH="$out${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" "$here/seed_agent.py" "$@"
