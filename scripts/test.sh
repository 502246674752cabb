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
