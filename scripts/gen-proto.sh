#!/usr/bin/env bash
# Regenerates the Go code for proto/ (committed, so builds need no protoc).
# Needs protoc (Debian: protobuf-compiler) and the two Go plugins, which it
# installs at pinned versions when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v protoc >/dev/null; then
  echo "gen-proto: protoc not found; install it (apt-get install -y protobuf-compiler)" >&2
  exit 1
fi
command -v protoc-gen-go >/dev/null || go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
command -v protoc-gen-go-grpc >/dev/null || go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
protoc -I proto \
  --go_out=paths=source_relative:proto \
  --go-grpc_out=paths=source_relative:proto \
  proto/roster/v1/registry.proto proto/roster/v1/cluster.proto proto/raftcmd/v1/raftcmd.proto
echo "gen-proto: ok"
