#!/usr/bin/env bash
# `make local-llm-up|down|health`: llama.cpp's OpenAI-compatible server (python -m llama_cpp.server) with the
# packaged Gemma 3 270M, in the background on LOCAL_LLM_PORT (default 8090, the gateway's default
# LLM_BASE_URL for LLM_PROVIDER=openai_compat). Pid and log in .run/. Health = GET /v1/models.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run
PY=.venv/bin/python
PORT=${LOCAL_LLM_PORT:-8090}
HOST=${LOCAL_LLM_HOST:-127.0.0.1}
PID=$RUN/local-llm.pid
LOG=$RUN/local-llm.log
mkdir -p "$RUN"

alive() { [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }
healthy() { curl -fs -o /dev/null --max-time 2 "http://$HOST:$PORT/v1/models"; }

up() {
  if alive && healthy; then echo "==> local model server already running on http://$HOST:$PORT/v1"; return 0; fi
  if alive; then kill "$(cat "$PID")" 2>/dev/null || true; sleep 1; fi
  # The same file the gateway's llamacpp provider uses: assembled once from the PyPI parts, sha256-checked.
  local model
  model=$(LLM_MODEL_PATH="" "$PY" -c "
from cairn_gateway.in_process import resolve_gguf
import os
print(resolve_gguf(os.environ.get('LOCAL_LLM_MODEL_PATH'), os.environ.get('LLM_MODEL_CACHE_DIR'))[0])")
  echo "==> starting llama.cpp server with $(basename "$model") on http://$HOST:$PORT/v1 (log: $LOG)"
  # Gemma 3 270M is a base model: clients get the best answers from /v1/completions with a "Q: …\nA:" prompt
  # (docs/models.md); --model_alias is the name /v1/models reports and requests may send.
  nohup "$PY" -m llama_cpp.server --model "$model" --model_alias gemma-3-270m --host "$HOST" --port "$PORT" \
    --n_ctx "${LLM_CONTEXT_SIZE:-4096}" >>"$LOG" 2>&1 &
  echo $! >"$PID"
  local deadline=$((SECONDS + ${LOCAL_LLM_TIMEOUT_S:-120}))
  until healthy; do
    if ! alive; then echo "!! the local model server exited; last lines of $LOG:"; tail -n 30 "$LOG"; return 1; fi
    if [ $SECONDS -ge $deadline ]; then echo "!! not ready after ${LOCAL_LLM_TIMEOUT_S:-120} s; see $LOG"; return 1; fi
    sleep 0.3
  done
  echo "==> ready. Use it from the gateway: LLM_PROVIDER=openai_compat LLM_BASE_URL=http://$HOST:$PORT/v1"
}

down() {
  if alive; then
    kill "$(cat "$PID")"
    for _ in $(seq 50); do alive || break; sleep 0.1; done
    alive && kill -9 "$(cat "$PID")" 2>/dev/null || true
    echo "==> stopped the local model server"
  else
    echo "==> the local model server is not running"
  fi
  rm -f "$PID"
}

health() {
  if healthy; then
    echo "ok: http://$HOST:$PORT/v1/models"; curl -fsS "http://$HOST:$PORT/v1/models"; echo
  else
    echo "!! no local model server answers on http://$HOST:$PORT/v1/models"; return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  health) health ;;
  *) echo "usage: $0 up|down|health" >&2; exit 2 ;;
esac
