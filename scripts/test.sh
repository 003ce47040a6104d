#!/usr/bin/env bash
# `make test`: the whole suite (unit, integration, real model, end-to-end, browser), then the smoke test
# against a real `make up` stack. Exits non-zero on any failure, and when no test ran at all.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p artifacts

echo "==> pytest (unit, integration, real model, end-to-end, browser)"
"$PY" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee artifacts/pytest.log
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 5 ]; then echo "!! pytest collected no tests"; exit 1; fi
[ "$rc" -eq 0 ] || exit "$rc"

if [ $# -eq 0 ] && [ -x scripts/smoke_chat.sh ]; then
  echo "==> smoke test against a real 'make up' stack (ports 18080-18082)"
  export BFF_PORT=18080 QS_PORT=18081 LLM_PORT=18082 BFF_URL=http://127.0.0.1:18080
  export QS_DB_PATH=${QS_DB_PATH:-artifacts/smoke-qs.sqlite3}
  rm -f "$QS_DB_PATH"
  trap 'bash scripts/stack.sh down >/dev/null 2>&1 || true' EXIT
  bash scripts/stack.sh up || { echo "!! make up failed"; exit 1; }
  bash scripts/smoke_chat.sh || { echo "!! smoke test failed"; tail -n 20 .run/*.log; exit 1; }
  echo "==> smoke test passed"
fi
