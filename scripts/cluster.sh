#!/usr/bin/env bash
# cluster.sh: run a local N-node Roster cluster on 127.0.0.1, for development,
# demos and chaos runs. Run it with --help for usage.
set -euo pipefail

prog=cluster.sh
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/cli-json.sh
. "$root/scripts/cli-json.sh"

usage() {
  cat <<EOF
usage: scripts/$prog COMMAND [ARGS]

Runs a local N-node Roster cluster on 127.0.0.1. Node nI listens for gRPC on
BASE+10*(I-1), for Raft on BASE+10*(I-1)+1, for HTTP (the JSON API,
/health, /ready) on BASE+10*(I-1)+2 and for DNS (UDP and TCP) on
BASE+10*(I-1)+3 (BASE is 7420 by default: n1 serves gRPC on 7420, HTTP on
7422 and DNS on 7423, n2 on 7430, 7432 and 7433, ...). Every node starts
with the same --initial-cluster.

commands:
  up [N] [--tls] [-- FLAGS...]
                        start an N-node cluster (default 3) and wait for a leader;
                        FLAGS are extra rosterd flags for every node (kept for
                        restarts). On an existing cluster, starts nodes that are
                        down, from their data. --tls (new clusters only) creates
                        a CA, a server and a client certificate in DIR/tls with
                        roster tls, and runs every link over TLS: the APIs with
                        --tls-verify-incoming (clients need the client
                        certificate), Raft and forwarding with mutual TLS; up
                        prints the ROSTER_TLS_* exports the roster CLI needs
  down [--purge]        SIGTERM every node, SIGKILL whatever is left after a
                        bounded wait; --purge also deletes the cluster directory
  status                one line per node: process state and Raft view
  leader                print the leader's node id (exit 1 if there is none)
  addrs [--http]        print the comma-separated gRPC addresses, or with
                        --http the HTTP base URLs (http://HOST:PORT, https://
                        with --tls)
  kill ID               SIGKILL node ID (kill -9)
  stop ID               SIGTERM node ID and wait for it to exit (SIGKILL and
                        exit 1 if it has not exited in time)
  restart ID            stop node ID if it runs, start it again from its data
                        dir with the same command line, wait until it answers.
                        Once the cluster has formed, every node starts with
                        --initial-cluster-state existing: a node whose data dir
                        was deleted waits for the leader to copy the state back
                        and never bootstraps a cluster of its own
  pause ID | resume ID  SIGSTOP / SIGCONT node ID
  logs ID [-f]          print the last lines of node ID's log, or follow it

ID is n1, n2, ... (or just 1, 2, ...).

environment:
  ROSTER_CLUSTER_DIR    data, pid files, command lines, logs (default .data/cluster
                        under the repository)
  ROSTER_BASE_PORT      first gRPC port (default 7420)
  ROSTER_BIN            directory holding prebuilt rosterd and roster; otherwise
                        bin/rosterd and bin/roster are built with go build when
                        missing or older than the sources
  ROSTER_UP_TIMEOUT     seconds to wait for a leader / for a node to answer (30)
  ROSTER_STOP_TIMEOUT   seconds to wait after SIGTERM before SIGKILL (15)
  ROSTER_LOG_LINES      lines printed by logs (200)
  ROSTER_KEEP_ON_FAIL=1 leave the nodes running when up fails

exit status: 0 ok, 1 failure, 2 usage error.
EOF
}

die() { echo "$prog: $*" >&2; exit 1; }
usage_error() { echo "$prog: $*" >&2; echo "run scripts/$prog --help for usage" >&2; exit 2; }
info() { echo "$prog: $*" >&2; }

# The cluster directory is made absolute now, since the nodes, pid files and
# later invocations must agree on it whatever the caller's working directory.
cluster_dir=${ROSTER_CLUSTER_DIR:-$root/.data/cluster}
case $cluster_dir in
  /*) ;;
  *) cluster_dir=$PWD/$cluster_dir ;;
esac
cluster_dir=${cluster_dir%/}
[[ -n $cluster_dir ]] || die "ROSTER_CLUSTER_DIR must not be /"
state_file=$cluster_dir/cluster.env
up_timeout=${ROSTER_UP_TIMEOUT:-30}
stop_timeout=${ROSTER_STOP_TIMEOUT:-15}
host=127.0.0.1

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$up_timeout" || usage_error "ROSTER_UP_TIMEOUT must be a number of seconds, got '$up_timeout'"
is_uint "$stop_timeout" || usage_error "ROSTER_STOP_TIMEOUT must be a number of seconds, got '$stop_timeout'"

# --- binaries ---------------------------------------------------------------

rosterd_bin=
roster_bin=

resolve_bins() {
  if [[ -n ${ROSTER_BIN:-} ]]; then
    local dir=$ROSTER_BIN
    [[ -f $dir ]] && dir=$(dirname "$dir")
    dir=$(cd "$dir" 2>/dev/null && pwd) || die "ROSTER_BIN: no such directory: $ROSTER_BIN"
    rosterd_bin=$dir/rosterd
    roster_bin=$dir/roster
    [[ -x $rosterd_bin ]] || die "ROSTER_BIN: $rosterd_bin is missing or not executable"
    [[ -x $roster_bin ]] || die "ROSTER_BIN: $roster_bin is missing or not executable"
    return
  fi
  rosterd_bin=$root/bin/rosterd
  roster_bin=$root/bin/roster
}

# stale BIN: true when BIN is missing or any Go source, go.mod or go.sum of the
# module is newer than it.
stale() {
  [[ -x $1 ]] || return 0
  [[ -n $(find "$root" \( -path "$root/.git" -o -path "$root/.data" -o -path "$root/bin" \) -prune \
    -o \( -name '*.go' -o -name go.mod -o -name go.sum \) -newer "$1" -print -quit) ]]
}

build_bins() {
  resolve_bins
  [[ -n ${ROSTER_BIN:-} ]] && return
  command -v go >/dev/null || die "go not found; install Go or set ROSTER_BIN to prebuilt binaries"
  local name
  for name in rosterd roster; do
    if stale "$root/bin/$name"; then
      [[ -d $root/cmd/$name ]] || die "cannot build bin/$name: $root/cmd/$name does not exist"
      info "building bin/$name"
      (cd "$root" && go build -buildvcs=auto -o "bin/$name" "./cmd/$name") || die "go build ./cmd/$name failed"
    fi
  done
}

# --- cluster layout ---------------------------------------------------------

nodes=0
base_port=${ROSTER_BASE_PORT:-7420}
# tls=1: the cluster runs with TLS, its files in $tls_dir.
tls=0
tls_dir=$cluster_dir/tls
tls_ca=$tls_dir/roster-agent-ca.pem
tls_server_cert=$tls_dir/dc1-server-roster-0.pem
tls_server_key=$tls_dir/dc1-server-roster-0-key.pem
tls_client_cert=$tls_dir/dc1-client-roster-0.pem
tls_client_key=$tls_dir/dc1-client-roster-0-key.pem

load_state() {
  [[ -f $state_file ]] || die "no cluster in $cluster_dir (run scripts/$prog up)"
  local line key val
  while IFS= read -r line; do
    key=${line%%=*}
    val=${line#*=}
    case $key in
      nodes) nodes=$val ;;
      base_port) base_port=$val ;;
      tls) tls=$val ;;
    esac
  done <"$state_file"
  if ! is_uint "$nodes" || ((nodes == 0)); then die "$state_file is damaged (nodes='$nodes')"; fi
  is_uint "$base_port" || die "$state_file is damaged (base_port='$base_port')"
  if [[ -n ${ROSTER_BASE_PORT:-} && $ROSTER_BASE_PORT != "$base_port" ]]; then
    info "warning: ROSTER_BASE_PORT=$ROSTER_BASE_PORT ignored; the cluster in $cluster_dir uses $base_port"
  fi
}

grpc_port() { echo $((base_port + 10 * ($1 - 1))); }
raft_port() { echo $((base_port + 10 * ($1 - 1) + 1)); }
http_port() { echo $((base_port + 10 * ($1 - 1) + 2)); }
dns_port() { echo $((base_port + 10 * ($1 - 1) + 3)); }
grpc_addr() { echo "$host:$(grpc_port "$1")"; }
http_addr() { echo "$host:$(http_port "$1")"; }
# has_http I: node I was started with --http-addr (clusters made by an
# older cluster.sh were not).
has_http() { grep -qxF -- --http-addr "$(node_dir "$1")/cmdline" 2>/dev/null; }
has_dns() { grep -qxF -- --dns-addr "$(node_dir "$1")/cmdline" 2>/dev/null; }
# node_ports I: the ports node I listens on.
node_ports() {
  grpc_port "$1"
  raft_port "$1"
  if has_http "$1"; then http_port "$1"; fi
  if has_dns "$1"; then dns_port "$1"; fi
}
node_dir() { echo "$cluster_dir/n$1"; }
http_scheme() { if ((tls)); then echo https; else echo http; fi; }

all_addrs() {
  local i out=
  for ((i = 1; i <= nodes; i++)); do out+=${out:+,}$(grpc_addr "$i"); done
  echo "$out"
}

all_http_urls() {
  local i out=
  for ((i = 1; i <= nodes; i++)); do
    has_http "$i" && out+=${out:+,}$(http_scheme)://$(http_addr "$i")
  done
  echo "$out"
}

# node_index ID: prints I for ID n<I> or <I>, after checking it is in the cluster.
node_index() {
  local id=${1:-}
  [[ -n $id ]] || usage_error "missing node id (n1..n$nodes)"
  local i=${id#n}
  if ! is_uint "$i" || ((10#$i < 1 || 10#$i > nodes)); then
    usage_error "no node '$id' in this cluster (n1..n$nodes)"
  fi
  echo $((10#$i))
}

# --- processes --------------------------------------------------------------

# node_pid I: prints the pid of node I if its process is alive and really is
# node I's rosterd (pids are reused), else nothing. A zombie counts as dead.
node_pid() {
  local dir pidfile pid
  dir=$(node_dir "$1")
  pidfile=$dir/pid
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  is_uint "$pid" || return 0
  [[ -r /proc/$pid/cmdline ]] || return 0
  [[ $(proc_state "$pid") == Z ]] && return 0
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$dir/data" || return 0
  echo "$pid"
}

# proc_state PID: the one-letter state from /proc/PID/stat (R, S, D, T, Z...).
proc_state() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo X; return; }
  stat=${stat##*) }
  echo "${stat%% *}"
}

alive() { [[ -r /proc/$1/stat && $(proc_state "$1") != [ZX] ]]; }

# wait_exit TIMEOUT PID...: waits until every PID has exited; returns 1 if some
# are still alive after TIMEOUT seconds.
wait_exit() {
  local deadline=$((SECONDS + $1)) pid left
  shift
  while :; do
    left=0
    for pid in "$@"; do alive "$pid" && left=1; done
    ((left)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }

# start_node I: starts node I from the command line stored in its directory.
start_node() {
  local i=$1 dir cmdfile pid
  dir=$(node_dir "$i")
  cmdfile=$dir/cmdline
  [[ -f $cmdfile ]] || die "n$i has no stored command line ($cmdfile)"
  local -a cmd
  mapfile -t cmd <"$cmdfile"
  ((${#cmd[@]} > 0)) || die "$cmdfile is empty"
  # After the first leader, no node bootstraps again, whatever its data dir holds.
  [[ -f $cluster_dir/formed ]] && cmd+=(--initial-cluster-state existing)
  [[ -x ${cmd[0]} ]] || die "n$i: ${cmd[0]} is missing or not executable"
  local p
  for p in $(node_ports "$i"); do
    port_open "$p" && die "n$i: port $p on $host is already in use by another process"
  done
  {
    echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) $prog: starting n$i: ${cmd[*]}"
  } >>"$dir/rosterd.log"
  # The variables this script sets by flag are removed from the environment, so
  # a stray ROSTER_JOIN or ROSTER_BOOTSTRAP in the caller's shell cannot clash
  # with --initial-cluster. setsid: the nodes outlive the terminal.
  env -u ROSTER_NODE_ID -u ROSTER_DATA_DIR -u ROSTER_RAFT_ADDR -u ROSTER_RAFT_ADVERTISE \
    -u ROSTER_GRPC_ADDR -u ROSTER_GRPC_ADVERTISE -u ROSTER_INITIAL_CLUSTER -u ROSTER_HTTP_ADDR \
    -u ROSTER_BOOTSTRAP -u ROSTER_JOIN -u ROSTER_DEV -u ROSTER_INITIAL_CLUSTER_STATE \
    -u ROSTER_TLS_CA -u ROSTER_TLS_CERT -u ROSTER_TLS_KEY -u ROSTER_TLS_VERIFY_INCOMING -u ROSTER_TLS_SERVER_NAME \
    setsid "${cmd[@]}" >>"$dir/rosterd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  # Until the child has exec'd, its /proc cmdline is this script's, and
  # node_pid would take it for dead.
  local deadline=$((SECONDS + 5))
  while alive "$pid" && ! tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$dir/data"; do
    ((SECONDS < deadline)) || break
    sleep 0.02
  done
}

# signal_stop TIMEOUT I...: SIGTERM the given nodes (SIGCONT first, a stopped
# process cannot act on SIGTERM), wait, then SIGKILL the rest. Prints the ids
# that needed SIGKILL; returns 1 if there were any.
signal_stop() {
  local timeout=$1 i pid
  shift
  local -a pids=() ids=()
  for i in "$@"; do
    pid=$(node_pid "$i")
    [[ -n $pid ]] || continue
    pids+=("$pid")
    ids+=("$i")
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
  done
  ((${#pids[@]})) || return 0
  local rc=0 k
  if ! wait_exit "$timeout" "${pids[@]}"; then
    for k in "${!pids[@]}"; do
      if alive "${pids[$k]}"; then
        echo "n${ids[$k]}"
        kill -KILL "${pids[$k]}" 2>/dev/null || true
        rc=1
      fi
    done
    wait_exit 5 "${pids[@]}" || true
  fi
  for i in "${ids[@]}"; do rm -f "$(node_dir "$i")/pid"; done
  return $rc
}

# --- talking to nodes -------------------------------------------------------

# node_status I: prints `roster status -o json` of node I, or fails. The CLI
# uses the cluster's client certificate when it runs TLS, and never the
# caller's ROSTER_TLS_* otherwise.
node_status() {
  local -a cli=(env -u ROSTER_TLS_CA -u ROSTER_TLS_CERT -u ROSTER_TLS_KEY -u ROSTER_TLS_SERVER_NAME "$roster_bin")
  ((tls)) && cli+=(--tls-ca "$tls_ca" --tls-cert "$tls_client_cert" --tls-key "$tls_client_key")
  timeout 4 "${cli[@]}" --addr "$(grpc_addr "$1")" --timeout 2s status -o json 2>/dev/null
}

# create_tls: a CA, one server certificate (127.0.0.1 and localhost, so
# every local node can use it) and one client certificate in $tls_dir.
create_tls() {
  mkdir -p "$tls_dir"
  chmod 700 "$tls_dir"
  "$roster_bin" tls ca create --dir "$tls_dir" >/dev/null || die "roster tls ca create failed"
  "$roster_bin" tls cert create --server --dir "$tls_dir" >/dev/null || die "roster tls cert create --server failed"
  "$roster_bin" tls cert create --client --dir "$tls_dir" >/dev/null || die "roster tls cert create --client failed"
  info "created a CA and certificates in $tls_dir"
}

# print_exports: what a shell needs to talk to the cluster with roster.
print_exports() {
  echo "export ROSTER_ADDR=$(all_addrs)"
  if ((tls)); then
    echo "export ROSTER_TLS_CA=$tls_ca ROSTER_TLS_CERT=$tls_client_cert ROSTER_TLS_KEY=$tls_client_key"
  fi
}

# find_leader: prints "ID TERM" of the running node that calls itself leader, at
# the highest term if several do (a deposed leader may not know yet), or fails.
# The leader_id of followers is not trusted: it names a killed leader until the
# election timeout.
find_leader() {
  local i json state term best='' best_term=-1
  local pid
  for ((i = 1; i <= nodes; i++)); do
    pid=$(node_pid "$i")
    # A paused node cannot answer; asking it would only wait for the timeout.
    [[ -n $pid && $(proc_state "$pid") != T ]] || continue
    json=$(node_status "$i") || continue
    state=$(raft_state "$json")
    term=$(json_field "$json" term) || term=0
    is_uint "$term" || term=0
    if [[ $state == leader ]] && ((term > best_term)); then
      best=$(json_field "$json" node_id) || best=n$i
      best_term=$term
    fi
  done
  [[ -n $best ]] || return 1
  echo "$best $best_term"
}

# --- commands ---------------------------------------------------------------

print_nodes() {
  local i pid http dns
  for ((i = 1; i <= nodes; i++)); do
    pid=$(node_pid "$i")
    http=-
    has_http "$i" && http=$(http_scheme)://$(http_addr "$i")
    dns=-
    has_dns "$i" && dns=$host:$(dns_port "$i")
    printf 'n%-3s grpc %s  raft %s:%s  http %s  dns %s  pid %-7s log %s\n' "$i" "$(grpc_addr "$i")" \
      "$host" "$(raft_port "$i")" "$http" "$dns" "${pid:--}" "$(node_dir "$i")/rosterd.log"
  done
}

cmd_up() {
  local want='' arg want_tls=0
  local -a extra=()
  while (($#)); do
    arg=$1
    shift
    case $arg in
      --) extra=("$@"); break ;;
      --tls) want_tls=1 ;;
      -h | --help) usage; exit 0 ;;
      *)
        [[ -z $want ]] || usage_error "up: unexpected argument '$arg'"
        if ! is_uint "$arg" || ((10#$arg < 1 || 10#$arg > 99)); then
          usage_error "up: N must be a number from 1 to 99, got '$arg'"
        fi
        want=$((10#$arg))
        ;;
    esac
  done

  local i fresh=0
  if [[ -f $state_file ]]; then
    load_state
    if [[ -n $want && $want != "$nodes" ]]; then
      die "the cluster in $cluster_dir has $nodes nodes, not $want; run 'scripts/$prog down --purge' first to change its size"
    fi
    ((${#extra[@]} == 0)) || die "up: extra flags are only taken by a new cluster; run 'scripts/$prog down --purge' first"
    ((want_tls <= tls)) || die "up: --tls is only taken by a new cluster; run 'scripts/$prog down --purge' first"
  else
    tls=$want_tls
    nodes=${want:-3}
    if ! is_uint "$base_port" || ((base_port == 0 || base_port + 10 * nodes > 65535)); then
      usage_error "ROSTER_BASE_PORT must be a port number leaving room for $nodes nodes, got '$base_port'"
    fi
    fresh=1
  fi

  local -a down=()
  for ((i = 1; i <= nodes; i++)); do
    [[ -n $(node_pid "$i") ]] || down+=("$i")
  done
  if ((${#down[@]} == 0)); then
    resolve_bins
    echo "cluster already up: $nodes nodes in $cluster_dir"
    print_nodes
    print_exports
    return 0
  fi

  # All ports are checked before any node starts, so a clash leaves nothing behind.
  local p
  local -a ports
  for i in "${down[@]}"; do
    mapfile -t ports < <(node_ports "$i")
    # A new cluster's nodes get HTTP and DNS ports too (their cmdline is
    # written below, so node_ports cannot see them yet).
    if ((fresh)); then ports+=("$(http_port "$i")" "$(dns_port "$i")"); fi
    for p in "${ports[@]}"; do
      port_open "$p" && die "port $p on $host (n$i) is already in use by another process"
    done
  done
  build_bins
  if ((fresh)); then
    local initial=
    for ((i = 1; i <= nodes; i++)); do initial+=${initial:+,}n$i=$host:$(raft_port "$i"); done
    mkdir -p "$cluster_dir"
    local -a tls_flags=()
    if ((tls)); then
      [[ -e $tls_dir ]] || create_tls
      tls_flags=(--tls-ca "$tls_ca" --tls-cert "$tls_server_cert" --tls-key "$tls_server_key" --tls-verify-incoming)
    fi
    for ((i = 1; i <= nodes; i++)); do
      local dir
      dir=$(node_dir "$i")
      mkdir -p "$dir/data"
      printf '%s\n' "$rosterd_bin" --node-id "n$i" --data-dir "$dir/data" \
        --raft-addr "$host:$(raft_port "$i")" --grpc-addr "$(grpc_addr "$i")" \
        --http-addr "$(http_addr "$i")" --dns-addr "$host:$(dns_port "$i")" \
        --initial-cluster "$initial" ${tls_flags[@]+"${tls_flags[@]}"} ${extra[@]+"${extra[@]}"} >"$dir/cmdline"
    done
    printf 'nodes=%s\nbase_port=%s\ntls=%s\n' "$nodes" "$base_port" "$tls" >"$state_file"
  fi

  ((fresh)) || info "starting ${#down[@]} stopped node(s) of the cluster in $cluster_dir from their data"
  for i in "${down[@]}"; do start_node "$i"; done

  local started=$SECONDS deadline=$((SECONDS + up_timeout)) leader=
  local -a dead
  while :; do
    dead=()
    for i in "${down[@]}"; do [[ -n $(node_pid "$i") ]] || dead+=("n$i"); done
    if ((${#dead[@]})); then
      up_failed "node(s) ${dead[*]} exited during startup" "${dead[@]}"
    fi
    if leader=$(find_leader); then
      # Every node started now must answer too, so the printed addresses work.
      local answered=1
      for i in "${down[@]}"; do node_status "$i" >/dev/null || answered=0; done
      ((answered)) && break
    fi
    ((SECONDS < deadline)) || up_failed "no leader within ${up_timeout}s"
    sleep 0.2
  done
  touch "$cluster_dir/formed"
  print_nodes
  echo "cluster ready: $nodes nodes, leader ${leader% *} (term ${leader#* }) after $((SECONDS - started))s"
  print_exports
}

# up_failed MESSAGE [nI...]: shows the log tails of the given (or all) nodes and,
# unless ROSTER_KEEP_ON_FAIL=1, stops the nodes that this invocation started.
up_failed() {
  local msg=$1 id i
  shift
  local -a show=("$@")
  ((${#show[@]})) || for i in "${down[@]}"; do show+=("n$i"); done
  for id in "${show[@]}"; do
    echo "--- last lines of $id's log ($(node_dir "${id#n}")/rosterd.log):" >&2
    tail -n 15 "$(node_dir "${id#n}")/rosterd.log" >&2 || true
  done
  if [[ ${ROSTER_KEEP_ON_FAIL:-0} == 1 ]]; then
    info "nodes left running (ROSTER_KEEP_ON_FAIL=1); stop them with scripts/$prog down"
  else
    signal_stop "$stop_timeout" "${down[@]}" >/dev/null || true
  fi
  die "up failed: $msg"
}

cmd_down() {
  local purge=0
  case ${1:-} in
    "") ;;
    --purge) purge=1 ;;
    *) usage_error "down: unexpected argument '$1'" ;;
  esac
  (($# <= 1)) || usage_error "down: too many arguments"
  if [[ ! -d $cluster_dir ]]; then
    echo "no cluster in $cluster_dir; nothing to do"
    return 0
  fi
  if [[ ! -f $state_file ]]; then
    # Never delete a directory this script did not make.
    ((purge)) && [[ -n $(ls -A "$cluster_dir") ]] &&
      die "refusing to purge $cluster_dir: it has no cluster.env, so it was not made by $prog"
    ((purge)) && rmdir "$cluster_dir"
    echo "no cluster in $cluster_dir; nothing to do"
    return 0
  fi
  # Every nI directory with a pid file counts, whatever cluster.env says.
  local d i
  local -a ids=()
  for d in "$cluster_dir"/n*/; do
    i=${d%/}
    i=${i##*/n}
    is_uint "$i" && ids+=("$i")
  done
  local running=0 killed
  for i in ${ids[@]+"${ids[@]}"}; do [[ -n $(node_pid "$i") ]] && running=$((running + 1)); done
  if ((running)); then
    if killed=$(signal_stop "$stop_timeout" "${ids[@]}"); then
      echo "stopped $running node(s)"
    else
      echo "stopped $running node(s); SIGKILLed after ${stop_timeout}s: ${killed//$'\n'/ }"
    fi
  else
    echo "no node running"
  fi
  for i in ${ids[@]+"${ids[@]}"}; do rm -f "$(node_dir "$i")/pid"; done
  if ((purge)); then
    rm -rf -- "$cluster_dir"
    echo "purged $cluster_dir"
  else
    echo "data kept in $cluster_dir (down --purge deletes it)"
  fi
}

cmd_status() {
  (($# == 0)) || usage_error "status: unexpected argument '$1'"
  load_state
  resolve_bins
  local i pid proc json state term leader commit applied up=0
  printf '%-4s %-8s %-8s %-16s %-10s %-6s %-7s %-8s %s\n' NODE PID PROCESS GRPC STATE TERM LEADER COMMIT APPLIED
  for ((i = 1; i <= nodes; i++)); do
    pid=$(node_pid "$i")
    state=- term=- leader=- commit=- applied=-
    if [[ -z $pid ]]; then
      proc=down
    elif [[ $(proc_state "$pid") == T ]]; then
      proc=paused
    else
      proc=running
      up=$((up + 1))
      if json=$(node_status "$i"); then
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
    printf '%-4s %-8s %-8s %-16s %-10s %-6s %-7s %-8s %s\n' "n$i" "${pid:--}" "$proc" \
      "$(grpc_addr "$i")" "$state" "$term" "$leader" "$commit" "$applied"
  done
  echo "$up of $nodes nodes running; data in $cluster_dir"
}

cmd_leader() {
  (($# == 0)) || usage_error "leader: unexpected argument '$1'"
  load_state
  resolve_bins
  local leader
  leader=$(find_leader) || die "no leader (no running node reports one)"
  echo "${leader% *}"
}

cmd_addrs() {
  local http=0
  case ${1:-} in
    "") ;;
    --http) http=1; shift ;;
  esac
  (($# == 0)) || usage_error "addrs: unexpected argument '$1'"
  load_state
  if ((http)); then
    all_http_urls
  else
    all_addrs
  fi
}

cmd_kill() {
  (($# == 1)) || usage_error "kill: expected one node id"
  load_state
  local i pid
  i=$(node_index "$1")
  pid=$(node_pid "$i")
  [[ -n $pid ]] || die "n$i is not running"
  kill -KILL "$pid"
  wait_exit 5 "$pid" || die "n$i (pid $pid) survived SIGKILL for 5s"
  rm -f "$(node_dir "$i")/pid"
  echo "killed n$i (pid $pid)"
}

cmd_stop() {
  (($# == 1)) || usage_error "stop: expected one node id"
  load_state
  local i pid
  i=$(node_index "$1")
  pid=$(node_pid "$i")
  [[ -n $pid ]] || die "n$i is not running"
  signal_stop "$stop_timeout" "$i" >/dev/null ||
    die "n$i (pid $pid) did not exit within ${stop_timeout}s of SIGTERM; sent SIGKILL"
  echo "stopped n$i (pid $pid)"
}

cmd_restart() {
  (($# == 1)) || usage_error "restart: expected one node id"
  load_state
  resolve_bins
  local i pid
  i=$(node_index "$1")
  pid=$(node_pid "$i")
  if [[ -n $pid ]]; then
    signal_stop "$stop_timeout" "$i" >/dev/null ||
      info "warning: n$i (pid $pid) did not exit within ${stop_timeout}s of SIGTERM; sent SIGKILL"
  fi
  start_node "$i"
  local deadline=$((SECONDS + up_timeout))
  until node_status "$i" >/dev/null; do
    if [[ -z $(node_pid "$i") ]]; then
      echo "--- last lines of n$i's log:" >&2
      tail -n 15 "$(node_dir "$i")/rosterd.log" >&2 || true
      die "n$i exited during restart"
    fi
    ((SECONDS < deadline)) || die "n$i started (pid $(node_pid "$i")) but did not answer within ${up_timeout}s"
    sleep 0.2
  done
  echo "restarted n$i (pid $(node_pid "$i")) at $(grpc_addr "$i")"
}

# signal_node SIGNAL VERB ID: send SIGNAL to node ID and say "VERB nI".
signal_node() {
  local sig=$1 verb=$2
  shift 2
  (($# == 1)) || usage_error "expected one node id"
  load_state
  local i pid
  i=$(node_index "$1")
  pid=$(node_pid "$i")
  [[ -n $pid ]] || die "n$i is not running"
  kill "-$sig" "$pid"
  echo "$verb n$i (pid $pid)"
}

cmd_pause() { signal_node STOP paused "$@"; }
cmd_resume() { signal_node CONT resumed "$@"; }

cmd_logs() {
  (($# >= 1 && $# <= 2)) || usage_error "logs: expected a node id and optionally -f"
  load_state
  local i log
  i=$(node_index "$1")
  log=$(node_dir "$i")/rosterd.log
  [[ -f $log ]] || die "n$i has no log yet ($log)"
  case ${2:-} in
    "") tail -n "${ROSTER_LOG_LINES:-200}" "$log" ;;
    -f) exec tail -n "${ROSTER_LOG_LINES:-200}" -F "$log" ;;
    *) usage_error "logs: unexpected argument '$2'" ;;
  esac
}

main() {
  (($#)) || { usage >&2; exit 2; }
  local command=$1
  shift
  case $command in
    -h | --help | help) usage ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    leader) cmd_leader "$@" ;;
    addrs) cmd_addrs "$@" ;;
    kill) cmd_kill "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_restart "$@" ;;
    pause) cmd_pause "$@" ;;
    resume) cmd_resume "$@" ;;
    logs) cmd_logs "$@" ;;
    *) usage_error "unknown command '$command'" ;;
  esac
}

main "$@"
