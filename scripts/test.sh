#!/usr/bin/env bash
# The one test command: formatting, vet, and every test with the race
# detector. Real parts only: 3-node Raft clusters with real bolt files and
# real rosterd processes are started by the tests themselves.
#
#   scripts/test.sh            everything
#   scripts/test.sh -short     skip the tests that start processes
#   scripts/test.sh -run X     extra flags go to go test
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# grpcurl is the stock gRPC client; an e2e test proves it works against
# rosterd with no .proto files (reflection). Installed once, pinned.
export PATH="$(go env GOPATH)/bin:$PATH"
if ! command -v grpcurl >/dev/null 2>&1; then
  step "installing grpcurl (once)"
  go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
fi

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '\.pb\.go$') 2>&1 || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"
  exit 1
fi
echo "ok"

step "go vet ./..."
go vet ./...
echo "ok"

step "go test -race ./..."
go test -race -count=1 -timeout 20m "$@" ./...

# Benchmarks run once each so they never rot; numbers come from longer runs.
step "go test -bench . -benchtime=1x ./..."
go test -count=1 -run '^$' -bench . -benchtime=1x ./...
