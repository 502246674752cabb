#!/usr/bin/env bash
# chaos.sh: build rosterd and roster-chaos, run a checked chaos run against a
# process cluster (in network namespaces when possible) and, when the Docker
# daemon answers, against the compose cluster; print where the results are and
# exit with the worst status. Run with --help.
set -euo pipefail

prog=chaos.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<EOF
usage: scripts/$prog [--duration 2m] [--seed N] [--nodes 3] [--docker auto|on|off]
                     [--results DIR] [-- ROSTER-CHAOS-FLAGS...]

  --duration D   time spent injecting faults (Go duration: 90s, 2m, 30m, 1h);
                 with Docker, two thirds go to the process cluster and one third
                 (at least 30s) to the Docker cluster. Default 2m. Warm-up,
                 settle, final reads and checking add about 30s per run.
  --seed N       random seed (default: from the clock; printed for repeats)
  --nodes N      process cluster size (default 3)
  --docker MODE  auto: also run against Docker when the daemon answers (default);
                 on: require it; off: process cluster only
  --results DIR  results directory (default results/chaos-<timestamp>)
  -- ...         further flags for roster-chaos (DIR/bin/roster-chaos --help),
                 e.g. -- --faults crash-leader,partition-leader --allow-skips

Each run prints the faults it injected, operation counts and one verdict line:
  verdict: PASS | FAIL | INCOMPLETE (L ..., W ..., D ..., X ..., R ...)
and keeps history.json, report.txt, porcupine.html (on a violation), run.log and
nodes/*.log under DIR/process (and DIR/docker for the Docker run).

exit status: 0 PASS, 1 FAIL (a violation, or a checker could not decide),
2 the harness could not run, 4 INCOMPLETE (W or X SKIPPED: server without
Watch or Heartbeat; 0 with -- --allow-skips).
EOF
}

die() {
  echo "$prog: $*" >&2
  exit 2
}

duration=2m seed=0 nodes=3 docker=auto results=''
extra=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --seed) seed=${2:?--seed needs a value}; shift 2 ;;
    --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
    --docker) docker=${2:?--docker needs a value}; shift 2 ;;
    --results) results=${2:?--results needs a value}; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "$prog: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $docker =~ ^(auto|on|off)$ ]] || die "--docker must be auto, on or off"
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a number"
if ! [[ $nodes =~ ^[0-9]+$ ]] || ((nodes < 3)); then die "--nodes must be a number >= 3"; fi

# seconds D: a Go-style duration (h, m, s and combinations) in whole seconds.
seconds() {
  local d=$1 total=0 re='^([0-9]+)(h|m|s)(.*)$'
  if [[ $d =~ ^[0-9]+$ ]]; then
    echo "$d"
    return
  fi
  while [[ -n $d ]]; do
    [[ $d =~ $re ]] || die "bad duration '$1' (use e.g. 90s, 2m, 1h30m)"
    case ${BASH_REMATCH[2]} in
      h) total=$((total + BASH_REMATCH[1] * 3600)) ;;
      m) total=$((total + BASH_REMATCH[1] * 60)) ;;
      s) total=$((total + BASH_REMATCH[1])) ;;
    esac
    d=${BASH_REMATCH[3]}
  done
  echo "$total"
}
total=$(seconds "$duration")
((total >= 20)) || die "--duration must be at least 20s"
((seed)) || seed=$(($(date +%s%N) % 1000000000))
[[ -n $results ]] || results=$root/results/chaos-$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
results=$(cd "$results" && pwd)

# Partitions and the slow network need iproute2 and iptables; install them
# when we can, otherwise roster-chaos says plainly that it skips them.
if [[ $(id -u) == 0 ]] && ! { command -v ip && command -v iptables; } >/dev/null 2>&1; then
  if command -v apt-get >/dev/null; then
    echo "$prog: installing iproute2 and iptables for partitions" >&2
    timeout 300 apt-get install -y -qq iproute2 iptables >/dev/null 2>&1 ||
      echo "$prog: apt-get install iproute2 iptables failed; partitions will be SKIPPED" >&2
  fi
fi

bin=$results/bin
mkdir -p "$bin"
echo "$prog: building rosterd and roster-chaos into $bin" >&2
(cd "$root" && go build -o "$bin/rosterd" ./cmd/rosterd && go build -o "$bin/roster-chaos" ./cmd/roster-chaos) ||
  die "go build failed"

use_docker=0
if [[ $docker != off ]]; then
  if command -v docker >/dev/null && timeout 15 docker info >/dev/null 2>&1; then
    use_docker=1
  elif [[ $docker == on ]]; then
    die "--docker on, but the Docker daemon does not answer"
  else
    echo "$prog: Docker run SKIPPED: the Docker daemon does not answer (or docker is not installed)" >&2
  fi
fi

proc_secs=$total docker_secs=0
if ((use_docker)); then
  docker_secs=$((total / 3))
  ((docker_secs >= 30)) || docker_secs=30
  proc_secs=$((total - docker_secs))
  ((proc_secs >= 20)) || proc_secs=20
fi
# Porcupine gets more time on longer runs; running out is a failure, not a pass.
check_timeout=$((total / 2))
((check_timeout >= 180)) || check_timeout=180

child=''
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    # roster-chaos stops its cluster on SIGTERM; give it up to 60s to.
    kill -TERM "$child" 2>/dev/null || true
    local _
    for _ in $(seq 1 120); do
      kill -0 "$child" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$child" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'echo "$prog: interrupted" >&2; exit 130' INT TERM

# run_chaos NAME ARGS...: one roster-chaos run in the background (so a signal
# reaches this script's trap), returning its status.
run_chaos() {
  local name=$1 status=0
  shift
  "$bin/roster-chaos" "$@" --seed "$seed" --check-timeout "${check_timeout}s" --repo "$root" ${extra[@]+"${extra[@]}"} &
  child=$!
  wait "$child" || status=$?
  child=''
  echo "$prog: $name run exited $status" >&2
  return "$status"
}

worst=0
# note STATUS: keep the worst status: 1 FAIL > 2 harness error > 4 INCOMPLETE > 0.
note() {
  case $1 in
    0) ;;
    1) worst=1 ;;
    4) ((worst != 0)) || worst=4 ;;
    *) ((worst != 0 && worst != 4)) || worst=2 ;;
  esac
}

plan="process run ${proc_secs}s"
((use_docker)) && plan+=", docker run ${docker_secs}s"
echo "$prog: seed $seed; $plan" >&2
s=0
run_chaos process --target process --rosterd "$bin/rosterd" --nodes "$nodes" \
  --duration "${proc_secs}s" --results "$results/process" || s=$?
note "$s"
if ((use_docker)); then
  s=0
  run_chaos docker --target docker --duration "${docker_secs}s" --results "$results/docker" || s=$?
  note "$s"
fi

echo
echo "results: $results"
for r in process docker; do
  if [[ -f $results/$r/report.txt ]]; then
    echo "  $r: $(tail -n 1 "$results/$r/report.txt")"
  fi
done
echo "exit status $worst"
exit "$worst"
