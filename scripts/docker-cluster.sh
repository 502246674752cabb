#!/usr/bin/env bash
# docker-cluster.sh: the 3-node Roster cluster of docker-compose.yml, with the
# faults chaos runs need (kill, pause, network partition). Run with --help.
set -euo pipefail

prog=docker-cluster.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/cli-json.sh
. "$root/scripts/cli-json.sh"

usage() {
  cat <<EOF
usage: scripts/$prog COMMAND [ARGS]

Runs docker-compose.yml: nodes r1, r2, r3 on the bridge network roster-net
(r1 172.29.42.11, r2 .12, r3 .13), gRPC published on 127.0.0.1:17420/17430/17440.

commands:
  up [--no-build]     build the static binaries and the roster:dev image (FROM
                      scratch, nothing pulled), start the cluster (reconnecting and
                      unpausing nodes left so), wait for a leader; --no-build uses
                      the image as it is
  down [--purge]      remove the containers and the network; --purge also removes
                      the data volumes
  status              one line per node: container state, network, Raft view
  leader              print the leader's node id
  addrs               print the comma-separated published gRPC addresses
  kill NODE           SIGKILL the node's container
  stop NODE           SIGTERM it (docker stop)
  start NODE          start a killed or stopped node again (same volume)
  pause NODE          freeze it (docker pause)
  unpause NODE        thaw it
  partition NODE...   cut each NODE off the network (docker network disconnect):
                      each one is alone, it cannot reach the others nor they it
  heal                reconnect every cut-off node with its fixed IP
  logs NODE [-f]      the node's log

NODE is r1, r2 or r3.

environment:
  ROSTER_UP_TIMEOUT   seconds to wait for a leader (60)
  ROSTER_LOG_LEVEL    rosterd log level in the containers (info)

exit status: 0 ok, 1 failure, 2 usage error, 3 docker unavailable.
EOF
}

die() { echo "$prog: $*" >&2; exit 1; }
usage_error() { echo "$prog: $*" >&2; echo "run scripts/$prog --help for usage" >&2; exit 2; }
info() { echo "$prog: $*" >&2; }

project=roster
network=roster-net
image=roster:dev
compose_file=$root/docker-compose.yml
nodes=(r1 r2 r3)
# These must match docker-compose.yml.
declare -A ip=([r1]=172.29.42.11 [r2]=172.29.42.12 [r3]=172.29.42.13)
declare -A port=([r1]=17420 [r2]=17430 [r3]=17440)
up_timeout=${ROSTER_UP_TIMEOUT:-60}
[[ $up_timeout =~ ^[0-9]+$ ]] || usage_error "ROSTER_UP_TIMEOUT must be a number of seconds, got '$up_timeout'"

container() { echo "roster-$1"; }

# node_name ARG: r1 for r1, roster-r1 or 1.
node_name() {
  local n=${1:-}
  n=${n#roster-}
  [[ $n =~ ^[0-9]+$ ]] && n=r$n
  [[ -n ${ip[$n]:-} ]] || usage_error "no node '${1:-}' (r1, r2 or r3)"
  echo "$n"
}

# --- docker -----------------------------------------------------------------

compose_cmd=()

need_docker() {
  if ! command -v docker >/dev/null; then
    echo "$prog: docker unavailable: the docker command is not installed" >&2
    exit 3
  fi
  local err
  if ! err=$(timeout 15 docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
    echo "$prog: docker unavailable: the daemon does not answer (${err:-timed out})" | head -c 400 >&2
    echo >&2
    exit 3
  fi
  if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
  elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
  else
    echo "$prog: docker unavailable: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 3
  fi
}

compose() { "${compose_cmd[@]}" -p "$project" -f "$compose_file" "$@"; }

# cstate NODE: running, paused, exited, created... or absent.
cstate() {
  local st
  # docker inspect prints an empty line for a missing container before failing.
  if st=$(docker inspect -f '{{.State.Status}}' "$(container "$1")" 2>/dev/null) && [[ -n $st ]]; then
    echo "$st"
  else
    echo absent
  fi
}

# connected NODE: the container is attached to the cluster network.
connected() {
  local nets
  nets=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$(container "$1")" 2>/dev/null) || return 1
  [[ " $nets " == *" $network "* ]]
}

# node_status NODE: `roster status -o json` run inside the node's container, so it
# works on a partitioned node too.
node_status() {
  timeout 5 docker exec "$(container "$1")" roster --addr 127.0.0.1:7420 --timeout 3s status -o json 2>/dev/null
}

# find_leader: "ID TERM" of the running, connected node that calls itself leader,
# at the highest term if several do. A cut-off node is not asked: it may still
# believe it leads. The leader_id of followers is not trusted: it names a killed
# leader until the election timeout.
find_leader() {
  local n json state term best='' best_term=-1
  for n in "${nodes[@]}"; do
    if [[ $(cstate "$n") != running ]] || ! connected "$n"; then continue; fi
    json=$(node_status "$n") || continue
    state=$(raft_state "$json")
    term=$(json_field "$json" term) || term=0
    [[ $term =~ ^[0-9]+$ ]] || term=0
    if [[ $state == leader ]] && ((term > best_term)); then
      best=$(json_field "$json" node_id) || best=$n
      best_term=$term
    fi
  done
  [[ -n $best ]] || return 1
  echo "$best $best_term"
}

all_addrs() {
  local n out=''
  for n in "${nodes[@]}"; do out+=${out:+,}127.0.0.1:${port[$n]}; done
  echo "$out"
}

# --- commands ---------------------------------------------------------------

build() {
  command -v go >/dev/null || die "go not found; it is needed to build the static binaries"
  [[ -d $root/cmd/rosterd && -d $root/cmd/roster ]] || die "cmd/rosterd or cmd/roster does not exist yet"
  local name
  for name in rosterd roster; do
    info "building bin/$name-linux-amd64 (static)"
    (cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -o "bin/$name-linux-amd64" "./cmd/$name") ||
      die "go build ./cmd/$name failed"
  done
  info "building image $image (FROM scratch)"
  local out
  # The classic builder: FROM scratch needs nothing from a registry either way, and
  # BuildKit may not be installed.
  out=$(cd "$root" && DOCKER_BUILDKIT=0 docker build -q -t "$image" -f Dockerfile . 2>&1) || {
    echo "$out" >&2
    die "docker build failed"
  }
}

cmd_up() {
  local build=1
  case ${1:-} in
    "") ;;
    --no-build) build=0 ;;
    *) usage_error "up: unexpected argument '$1'" ;;
  esac
  (($# <= 1)) || usage_error "up: too many arguments"
  if ((build)); then
    build
  elif ! docker image inspect "$image" >/dev/null 2>&1; then
    die "up --no-build: there is no image $image yet; run scripts/$prog up"
  fi
  # Paused or cut-off nodes from an earlier run would stall the wait below.
  local n
  for n in "${nodes[@]}"; do
    [[ $(cstate "$n") == paused ]] && docker unpause "$(container "$n")" >/dev/null
  done
  heal_all quiet
  compose up -d --no-build 2>&1 | sed "s/^/$prog: compose: /" >&2
  ((PIPESTATUS[0] == 0)) || die "docker-compose up failed"
  local started=$SECONDS deadline=$((SECONDS + up_timeout)) leader st
  while :; do
    for n in "${nodes[@]}"; do
      st=$(cstate "$n")
      if [[ $st != running ]]; then
        echo "--- last lines of $n's log:" >&2
        docker logs --tail 15 "$(container "$n")" >&2 2>&1 || true
        die "up failed: $n is $st"
      fi
    done
    if leader=$(find_leader); then
      local all=1
      for n in "${nodes[@]}"; do node_status "$n" >/dev/null || all=0; done
      ((all)) && break
    fi
    ((SECONDS < deadline)) || die "up failed: no leader within ${up_timeout}s (see scripts/$prog logs r1)"
    sleep 0.5
  done
  for n in "${nodes[@]}"; do
    printf '%s  grpc 127.0.0.1:%s (in network %s:7420)  container %s\n' "$n" "${port[$n]}" "${ip[$n]}" "$(container "$n")"
  done
  echo "cluster ready: 3 nodes, leader ${leader% *} (term ${leader#* }) after $((SECONDS - started))s"
  echo "export ROSTER_ADDR=$(all_addrs)"
}

cmd_down() {
  local purge=0
  case ${1:-} in
    "") ;;
    --purge) purge=1 ;;
    *) usage_error "down: unexpected argument '$1'" ;;
  esac
  (($# <= 1)) || usage_error "down: too many arguments"
  local n
  for n in "${nodes[@]}"; do
    [[ $(cstate "$n") == paused ]] && docker unpause "$(container "$n")" >/dev/null
  done
  local -a args=(down --remove-orphans)
  ((purge)) && args+=(-v)
  compose "${args[@]}" 2>&1 | sed "s/^/$prog: compose: /" >&2
  ((PIPESTATUS[0] == 0)) || die "docker-compose down failed"
  if ((purge)); then
    echo "cluster removed, volumes purged"
  else
    echo "cluster removed; data kept in volumes roster-r1-data, roster-r2-data, roster-r3-data (down --purge deletes them)"
  fi
}

cmd_status() {
  (($# == 0)) || usage_error "status: unexpected argument '$1'"
  local n st net json state term leader commit applied
  printf '%-4s %-10s %-9s %-16s %-10s %-6s %-7s %-8s %s\n' NODE CONTAINER NETWORK GRPC STATE TERM LEADER COMMIT APPLIED
  for n in "${nodes[@]}"; do
    st=$(cstate "$n")
    if [[ $st == absent ]]; then net=-; elif connected "$n"; then net=connected; else net=CUT-OFF; fi
    state=- term=- leader=- commit=- applied=-
    if [[ $st == running ]]; then
      if json=$(node_status "$n"); then
        state=$(raft_state "$json")
        term=$(json_field "$json" term) || term='?'
        leader=$(json_field "$json" leader_id) || leader='?'
        commit=$(json_field "$json" commit_index) || commit='?'
        applied=$(json_field "$json" applied_index) || applied='?'
        [[ -n $leader ]] || leader=none
      else
        state=no-answer
      fi
    fi
    printf '%-4s %-10s %-9s %-16s %-10s %-6s %-7s %-8s %s\n' "$n" "$st" "$net" "127.0.0.1:${port[$n]}" \
      "$state" "$term" "$leader" "$commit" "$applied"
  done
}

cmd_leader() {
  (($# == 0)) || usage_error "leader: unexpected argument '$1'"
  local leader
  leader=$(find_leader) || die "no leader (no running, connected node reports one)"
  echo "${leader% *}"
}

# node_cmd VERB NODE: the one-node commands.
node_cmd() {
  local verb=$1
  shift
  (($# == 1)) || usage_error "$verb: expected one node (r1, r2 or r3)"
  local n c st
  n=$(node_name "$1")
  c=$(container "$n")
  st=$(cstate "$n")
  [[ $st != absent ]] || die "$n has no container (run scripts/$prog up)"
  case $verb in
    kill)
      [[ $st == running || $st == paused ]] || die "$n is not running ($st)"
      docker kill -s KILL "$c" >/dev/null
      echo "killed $n"
      ;;
    stop)
      [[ $st == running || $st == paused ]] || die "$n is not running ($st)"
      [[ $st == paused ]] && docker unpause "$c" >/dev/null
      docker stop "$c" >/dev/null
      echo "stopped $n (exit code $(docker inspect -f '{{.State.ExitCode}}' "$c"))"
      ;;
    start)
      [[ $st != running && $st != paused ]] || die "$n is already running ($st)"
      docker start "$c" >/dev/null
      echo "started $n"
      ;;
    pause)
      [[ $st == running ]] || die "$n is not running ($st)"
      docker pause "$c" >/dev/null
      echo "paused $n"
      ;;
    unpause)
      [[ $st == paused ]] || die "$n is not paused ($st)"
      docker unpause "$c" >/dev/null
      echo "unpaused $n"
      ;;
  esac
}

cmd_partition() {
  (($# >= 1)) || usage_error "partition: expected one or more nodes"
  local arg n
  local -a cut=()
  for arg in "$@"; do cut+=("$(node_name "$arg")"); done
  for n in "${cut[@]}"; do
    [[ $(cstate "$n") != absent ]] || die "$n has no container (run scripts/$prog up)"
    if ! connected "$n"; then
      echo "$n is already cut off"
      continue
    fi
    docker network disconnect "$network" "$(container "$n")"
    echo "cut off $n (${ip[$n]})"
  done
}

# heal_all [quiet]: reconnects every node that is off the network, with its fixed
# IP and its service name as alias, as docker-compose attached it.
heal_all() {
  local n healed=0
  docker network inspect "$network" >/dev/null 2>&1 || return 0
  for n in "${nodes[@]}"; do
    [[ $(cstate "$n") != absent ]] || continue
    connected "$n" && continue
    docker network connect --ip "${ip[$n]}" --alias "$n" "$network" "$(container "$n")"
    echo "reconnected $n (${ip[$n]})"
    healed=$((healed + 1))
  done
  ((healed)) || [[ ${1:-} == quiet ]] || echo "nothing to heal: every node is connected"
}

cmd_logs() {
  (($# >= 1 && $# <= 2)) || usage_error "logs: expected a node and optionally -f"
  local n
  n=$(node_name "$1")
  case ${2:-} in
    "") docker logs --tail 200 "$(container "$n")" 2>&1 ;;
    -f) exec docker logs --tail 200 -f "$(container "$n")" ;;
    *) usage_error "logs: unexpected argument '$2'" ;;
  esac
}

main() {
  (($#)) || { usage >&2; exit 2; }
  local command=$1
  shift
  case $command in
    -h | --help | help) usage; return ;;
    addrs) (($# == 0)) || usage_error "addrs: unexpected argument '$1'"; all_addrs; return ;;
    up | down | status | leader | kill | stop | start | pause | unpause | partition | heal | logs) ;;
    *) usage_error "unknown command '$command'" ;;
  esac
  need_docker
  case $command in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    leader) cmd_leader "$@" ;;
    kill | stop | start | pause | unpause) node_cmd "$command" "$@" ;;
    partition) cmd_partition "$@" ;;
    heal) (($# == 0)) || usage_error "heal: unexpected argument '$1'"; heal_all ;;
    logs) cmd_logs "$@" ;;
  esac
}

main "$@"
