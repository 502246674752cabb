#!/usr/bin/env bash
# Regenerates the Go code for proto/ (committed, so builds need no protoc).
# Needs protoc (Debian: protobuf-compiler) and three Go plugins, which it
# installs at pinned versions when missing: protoc-gen-go, protoc-gen-go-grpc
# and protoc-gen-grpc-gateway (the HTTP JSON routes of the google.api.http
# annotations, *.pb.gw.go). google/api/{annotations,http}.proto are kept in
# proto/third_party.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v protoc >/dev/null; then
  echo "gen-proto: protoc not found; install it (apt-get install -y protobuf-compiler)" >&2
  exit 1
fi
command -v protoc-gen-go >/dev/null || go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
command -v protoc-gen-go-grpc >/dev/null || go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
command -v protoc-gen-grpc-gateway >/dev/null || go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.33.0
protoc -I proto -I proto/third_party \
  --go_out=paths=source_relative:proto \
  --go-grpc_out=paths=source_relative:proto \
  proto/roster/v1/registry.proto proto/roster/v1/cluster.proto proto/roster/v1/acl.proto proto/raftcmd/v1/raftcmd.proto
protoc -I proto -I proto/third_party \
  --grpc-gateway_out=paths=source_relative:proto \
  proto/roster/v1/registry.proto proto/roster/v1/cluster.proto
echo "gen-proto: ok"
