#!/usr/bin/env bash
# Generates the Python stubs from proto/ into a temporary directory and runs
# seed_agent.py with them, under Debian's /usr/bin/python3 (which sees
# python3-grpcio and python3-protobuf even when another python3 is first on
# PATH). Arguments go to the script:
#   examples/python/run.sh --target 127.0.0.1:50051
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_dir="$(cd "$here/../../proto" && pwd)"
python=/usr/bin/python3

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# grpcio-tools when installed, else protoc with Debian's gRPC Python plugin.
if "$python" -c 'import grpc_tools.protoc' 2>/dev/null; then
  protoc=("$python" -m grpc_tools.protoc)
else
  plugin="$(command -v grpc_python_plugin)" || {
    echo "need grpcio-tools, or protoc and grpc_python_plugin" \
      "(Debian: protobuf-compiler-grpc)" >&2
    exit 1
  }
  protoc=(protoc "--plugin=protoc-gen-grpc_python=$plugin")
fi
# /usr/include has google/protobuf/*.proto (struct, field_mask).
(cd "$proto_dir" && "${protoc[@]}" -I . -I /usr/include \
  --python_out="$out" --grpc_python_out="$out" assistants/v1/*.proto)

PYTHONPATH="$out${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" "$here/seed_agent.py" "$@"
