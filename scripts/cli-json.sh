# shellcheck shell=bash
# cli-json.sh: read fields of the roster CLI's JSON output in bash, without jq.
# Sourced by cluster.sh and docker-cluster.sh.

# json_field JSON NAME: a top-level scalar field of the CLI's JSON, by its
# snake_case name; strings lose their quotes.
json_field() {
  local json=$1 name=$2 re
  re="\"$name\"[[:space:]]*:[[:space:]]*(\"([^\"]*)\"|[-0-9.]+|true|false)"
  [[ $json =~ $re ]] || return 1
  if [[ -n ${BASH_REMATCH[2]} || ${BASH_REMATCH[1]} == '""' ]]; then
    echo "${BASH_REMATCH[2]}"
  else
    echo "${BASH_REMATCH[1]}"
  fi
}

# raft_state JSON: leader, follower, candidate or shutdown; "?" when absent.
raft_state() {
  json_field "$1" state || echo "?"
}
