#!/usr/bin/env bash
# Generates the Python messages and gRPC stubs of proto/assistants/v1 into
# OUT_DIR (as OUT_DIR/assistants/v1/*_pb2.py and *_pb2_grpc.py), for every
# Python program of the repository: the examples, the Python tool workers and
# their tests. Stubs are generated, not shipped, to show the .proto files are
# all another language needs.
#   scripts/python-stubs.sh OUT_DIR
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
out="$1"
proto_dir="$(cd "$(dirname "$0")/../proto" && pwd)"
# Debian's interpreter sees python3-grpcio even when another python3 is first
# on PATH.
python=/usr/bin/python3

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
mkdir -p "$out"
out="$(cd "$out" && pwd)"  # protoc runs from proto/
# /usr/include has google/protobuf/*.proto (struct, field_mask).
(cd "$proto_dir" && "${protoc[@]}" -I . -I /usr/include \
  --python_out="$out" --grpc_python_out="$out" assistants/v1/*.proto)
