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

# dig checks the DNS server as resolvers see it; the DNS tests skip that
# check (and say so) when it cannot be installed.
if ! command -v dig >/dev/null 2>&1; then
  step "installing dig (dnsutils), if apt-get can"
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsutils >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsutils >/dev/null 2>&1; } ||
      echo "could not install dnsutils; the dig test will be skipped"
  else
    echo "no apt-get as root; the dig test will be skipped"
  fi
fi

# A real Prometheus server discovers targets through the Consul-compatible
# API (internal/e2e TestPrometheusConsulSD). Debian's package, installed
# here when missing, never fails the run: the test skips, saying why, when
# there is no binary or it lacks Consul discovery (Debian bookworm's does);
# ROSTER_PROMETHEUS names another build.
if ! command -v prometheus >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  step "installing prometheus (Debian package, once)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null 2>&1 \
    || echo "could not install prometheus here; TestPrometheusConsulSD will skip"
fi
# Debian bookworm's prometheus is built with Consul discovery disabled; then
# build the upstream server once (pinned, like grpcurl) for the test.
if [ -z "${ROSTER_PROMETHEUS:-}" ]; then
  probe=$(mktemp)
  printf 'scrape_configs:\n  - job_name: probe\n    consul_sd_configs:\n      - server: 127.0.0.1:8500\n' >"$probe"
  if ! { command -v promtool >/dev/null 2>&1 && promtool check config "$probe" >/dev/null 2>&1; }; then
    upstream="$(go env GOPATH)/bin/prometheus-upstream"
    if [ ! -x "$upstream" ]; then
      step "building upstream prometheus with Consul discovery (once; takes minutes)"
      tmpbin=$(mktemp -d)
      if GOBIN="$tmpbin" go install github.com/prometheus/prometheus/cmd/prometheus@v0.316.0 >/dev/null 2>&1; then
        mv "$tmpbin/prometheus" "$upstream"
      else
        echo "could not build prometheus here; TestPrometheusConsulSD will skip"
      fi
      rm -rf "$tmpbin"
    fi
    [ -x "$upstream" ] && export ROSTER_PROMETHEUS="$upstream"
  fi
  rm -f "$probe"
fi

# The web console's end-to-end test (internal/e2e TestConsoleInChromium)
# drives Debian's headless chromium; installed here when missing, never
# failing the run: without it the test skips and says so.
if ! command -v chromium >/dev/null 2>&1 && [ -z "${ROSTER_CHROMIUM:-}" ]; then
  step "installing chromium (Debian package, once), if apt-get can"
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } ||
      echo "could not install chromium; TestConsoleInChromium will skip"
  else
    echo "no apt-get as root; TestConsoleInChromium will skip"
  fi
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

# The copy of go-immutable-radix in third_party is a module of its own: its
# upstream tests and the ones for its one change run here.
step "go test -race ./third_party/iradix"
(cd third_party/iradix && go vet . && go test -race -count=1 .)

# So is the copy of hashicorp/raft: its upstream tests are left out, and the
# tests of its leader verification change run here.
step "go test -race ./third_party/raft"
(cd third_party/raft && go vet . && go test -race -count=1 .)

# Benchmarks run once each so they never rot; numbers come from longer runs.
step "go test -bench . -benchtime=1x ./..."
go test -count=1 -run '^$' -bench . -benchtime=1x ./...
