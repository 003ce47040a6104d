#!/usr/bin/env bash
# Run the three services in the background with their embedded defaults; `up` is safe to re-run.
# `up-scaled` runs two gateways and two QS behind one BFF on this box (docs/operations.md, Scaling out).
# Each service runs under scripts/supervise.py, which restarts it with backoff when it exits unexpectedly.
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything the stack writes (the store, its WAL, logs, tokens) holds documents, chats or secrets: readable
# by this user only (docs/operations.md, Security).
umask 077
RUN=${CAIRN_RUN_DIR:-.run}
PY=.venv/bin/python
mkdir -p "$RUN"
chmod 700 "$RUN"

LLM_PORT=${LLM_PORT:-8082}; QS_PORT=${QS_PORT:-8081}; BFF_PORT=${BFF_PORT:-8080}
LLM_PORT_2=${LLM_PORT_2:-8084}; QS_PORT_2=${QS_PORT_2:-8083}  # the second replicas of up-scaled
# The store and the gateway's keys live in the run directory (CAIRN_RUN_DIR, default .run) unless set.
export QS_DB_PATH=${QS_DB_PATH:-$RUN/cairn-qs.sqlite3}
export LLM_KEYS_PATH=${LLM_KEYS_PATH:-$RUN/cairn-gateway-keys.sqlite3}
export QS_GATEWAY_URL=${QS_GATEWAY_URL:-http://127.0.0.1:$LLM_PORT}
export BFF_QS_URL=${BFF_QS_URL:-http://127.0.0.1:$QS_PORT}
export BFF_GATEWAY_URL=${BFF_GATEWAY_URL:-http://127.0.0.1:$LLM_PORT}

# The token QS and the gateway require from their callers (docs/operations.md, Security): without it, anyone
# on this machine could reach them around the BFF. Generated once, kept private to this user.
if [ -z "${CAIRN_INTERNAL_TOKEN:-}" ]; then
  if [ ! -s "$RUN/internal-token" ]; then
    (umask 077; "$PY" -c "import secrets; print(secrets.token_hex(32))" >"$RUN/internal-token")
  fi
  CAIRN_INTERNAL_TOKEN=$(cat "$RUN/internal-token")
fi
export CAIRN_INTERNAL_TOKEN
# The operator's key for the audit page (/audit) and QS's /admin/* (docs/governance.md); the same rules.
if [ -z "${CAIRN_ADMIN_TOKEN:-}" ]; then
  if [ ! -s "$RUN/admin-token" ]; then
    (umask 077; "$PY" -c "import secrets; print(secrets.token_hex(16))" >"$RUN/admin-token")
  fi
  CAIRN_ADMIN_TOKEN=$(cat "$RUN/admin-token")
fi
export CAIRN_ADMIN_TOKEN

# name  module  port  readiness path  the env var that sets its port
SINGLE=(
  "gateway cairn_gateway $LLM_PORT /readyz LLM_PORT"
  "query cairn_query $QS_PORT /healthz QS_PORT"
  "bff cairn_bff $BFF_PORT /healthz BFF_PORT"
)
SCALED=(
  "gateway cairn_gateway $LLM_PORT /readyz LLM_PORT"
  "gateway-2 cairn_gateway $LLM_PORT_2 /readyz LLM_PORT"
  "query cairn_query $QS_PORT /healthz QS_PORT"
  "query-2 cairn_query $QS_PORT_2 /healthz QS_PORT"
  "bff cairn_bff $BFF_PORT /healthz BFF_PORT"
)
SERVICES=("${SINGLE[@]}")
# Whatever was started, `down` and `status` see it: the scaled list holds every name.
if [ "${1:-}" = up-scaled ] || [ "$(cat "$RUN/stack-mode" 2>/dev/null)" = scaled ]; then SERVICES=("${SCALED[@]}"); fi

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
healthy() { curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$1$2"; }

exited_at_start() {  # the supervisor saw the service exit before it was ready once: a setting, not bad luck
  grep -qE '"restarts": [1-9]|"gave_up": true' "$RUN/$1.state.json" 2>/dev/null
}

wait_ready() { # name port path timeout
  local deadline=$((SECONDS + $4))
  until healthy "$2" "$3"; do
    if ! alive "$1" || exited_at_start "$1"; then
      echo "!! $1 exited; last lines of $RUN/$1.log:"; tail -n 30 "$RUN/$1.log"
      alive "$1" && kill "$(cat "$RUN/$1.pid")" 2>/dev/null
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then echo "!! $1 not ready after $4 s; see $RUN/$1.log"; return 1; fi
    sleep 0.3
  done
}

up() {
  local mode=${1:-single}
  # Switching between one and two replicas changes what the BFF and QS are told: start over.
  if [ -f "$RUN/stack-mode" ] && [ "$(cat "$RUN/stack-mode")" != "$mode" ]; then SERVICES=("${SCALED[@]}"); down; fi
  if [ "$mode" = scaled ]; then SERVICES=("${SCALED[@]}"); else SERVICES=("${SINGLE[@]}"); fi
  echo "$mode" >"$RUN/stack-mode"
  for spec in "${SERVICES[@]}"; do
    read -r name module port path portvar <<<"$spec"
    if alive "$name" && healthy "$port" "$path"; then echo "==> $name already running on :$port"; continue; fi
    if alive "$name"; then kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true; sleep 1; fi
    echo "==> starting $name on :$port (log: $RUN/$name.log)"
    rm -f "$RUN/$name.state.json"
    env "$portvar=$port" nohup "$PY" scripts/supervise.py "$name" "$RUN" -- "$PY" -m "$module" \
      >>"$RUN/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    wait_ready "$name" "$port" "$path" "${STACK_TIMEOUT_S:-180}"
  done
  echo
  echo "Cairn is up:  http://127.0.0.1:$BFF_PORT"
  if [ -f "$RUN/llama-build.pid" ] && kill -0 "$(cat "$RUN/llama-build.pid")" 2>/dev/null; then
    echo "  (llama.cpp is still compiling: answers are quoted from your documents until the model loads"
    echo "   by itself; progress: make status)"
  fi
  echo "  dashboard:   http://127.0.0.1:$BFF_PORT/dashboard"
  echo "  audit log:   http://127.0.0.1:$BFF_PORT/audit  (admin key in $RUN/admin-token unless CAIRN_ADMIN_TOKEN is set)"
  echo "  query API:   http://127.0.0.1:$QS_PORT    gateway: http://127.0.0.1:$LLM_PORT/v1"
  echo "  (both need the internal token: header X-Cairn-Internal-Token, or Bearer on the gateway;"
  echo "   it is in $RUN/internal-token unless CAIRN_INTERNAL_TOKEN is set)"
  if [ "$mode" = scaled ]; then
    echo "  scaled: gateways :$LLM_PORT :$LLM_PORT_2, query services :$QS_PORT :$QS_PORT_2, one BFF"
    echo "  store: ${QS_STORE_URL:-as set in .env}"
    echo "  redis: ${CAIRN_REDIS_URL:-as set in .env}"
  fi
  echo "  logs: make logs   stop: make down"
}

# Two QS and two gateways on this box, on a local Postgres and Redis (scripts/scaled_state.py) unless
# QS_STORE_URL or CAIRN_REDIS_URL is set in the environment or .env, which then pass through unchanged.
up-scaled() {
  eval "$("$PY" scripts/scaled_state.py up)"
  export QS_GATEWAY_URLS=${QS_GATEWAY_URLS:-http://127.0.0.1:$LLM_PORT,http://127.0.0.1:$LLM_PORT_2}
  export BFF_QS_URLS=${BFF_QS_URLS:-http://127.0.0.1:$QS_PORT,http://127.0.0.1:$QS_PORT_2}
  up scaled
}

down() {
  for spec in "${SERVICES[@]}"; do
    read -r name _ <<<"$spec"
    if alive "$name"; then
      kill "$(cat "$RUN/$name.pid")"; echo "==> stopped $name"
      for _ in $(seq 50); do alive "$name" || break; sleep 0.1; done
      alive "$name" && kill -9 "$(cat "$RUN/$name.pid")" 2>/dev/null || true
    fi
    rm -f "$RUN/$name.pid"
  done
  if [ "$(cat "$RUN/stack-mode" 2>/dev/null)" = scaled ]; then "$PY" scripts/scaled_state.py down; fi
  rm -f "$RUN/stack-mode"
}

restarts() {  # "  restarted N time(s) (last: SIGKILL)" from the supervisor's state, or nothing
  "$PY" -c "
import json, sys
s = json.load(open(sys.argv[1]))
if s.get('gave_up'):
    print(f\"  gave up after repeated crashes (last: {s['last_exit']}); see the log, then make up\")
elif s.get('restarts'):
    print(f\"  restarted {s['restarts']} time(s) (last: {s['last_exit']})\")
" "$RUN/$1.state.json" 2>/dev/null || true
}

status() {
  for spec in "${SERVICES[@]}"; do
    read -r name _ port path _ <<<"$spec"
    if alive "$name"; then
      if healthy "$port" "$path"; then s=healthy; else s=unhealthy; fi
      echo "$name  pid $(cat "$RUN/$name.pid")  :$port  $s$(restarts "$name")"
    else echo "$name  stopped"; fi
  done
  # The model's own state: degraded while llama.cpp compiles on a first run, or when the model failed to load.
  if alive gateway; then
    curl -fs --max-time 2 "http://127.0.0.1:$LLM_PORT/readyz" 2>/dev/null | "$PY" -c "
import json, sys
d = json.load(sys.stdin)
print('model  ' + d['status'] + '  ' + d.get('model', '') + (('  ' + d['message']) if d.get('message') else ''))
if d.get('notice'):
    print('       ' + d['notice'])
" 2>/dev/null || echo "model  unavailable (see make logs)"
  fi
}

logs() { tail -n 50 -F "$RUN"/*.log; }

"${1:-status}"
