#!/usr/bin/env bash
# First-run timeline from a fresh clone with empty caches (uv, wheelhouse, model cache).
# It compiles llama.cpp (about 10 minutes on 2 cores) and uses ports 28080-28082; the timeline table in
# docs/operations.md ("The first run") came from it.
set -uo pipefail
rm -rf /tmp/fresh-pipcache /tmp/fresh /tmp/fresh-wheels /tmp/fresh-uvcache /tmp/fresh-models
git clone -q "$(cd "$(dirname "$0")/.." && pwd)" /tmp/fresh && cd /tmp/fresh
export CAIRN_WHEELHOUSE=/tmp/fresh-wheels UV_CACHE_DIR=/tmp/fresh-uvcache LLM_MODEL_CACHE_DIR=/tmp/fresh-models PIP_CACHE_DIR=/tmp/fresh-pipcache
export BFF_PORT=28080 QS_PORT=28081 LLM_PORT=28082
T0=$(date +%s.%N)
t() { python3 -c "import time; print(f'{time.time() - $T0:.1f}')"; }
echo "t=0 make up"
make up > /tmp/first-run-up.log 2>&1; echo "make up returned rc=$? at t=$(t) s"
B=http://127.0.0.1:$BFF_PORT
curl -s -o /dev/null -w "page HTTP %{http_code} at t=$(t) s\n" $B/
curl -s $B/api/documents -H 'content-type: application/json' -d '{"id":"tide","title":"Tide log","text":"The keeper logs the tide every four hours. The log book is kept in the lamp room."}' > /dev/null
r=$(curl -s $B/api/chat -H 'content-type: application/json' -d '{"query":"How often is the tide logged?"}')
echo "first answer at t=$(t) s: $(echo "$r" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d.get("answered_by"), d.get("provider"), repr(d["answer"][:60]))')"
curl -s $B/api/status | python3 -c 'import json,sys; d=json.load(sys.stdin); print("status:", d["status"], d.get("message"))'
while true; do
  s=$(curl -s $B/api/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null)
  [ "$s" = ready ] && break
  sleep 5
done
echo "model ready at t=$(t) s"
r=$(curl -s $B/api/chat -H 'content-type: application/json' -d '{"query":"How often does the keeper log the tide?"}')
echo "model answer at t=$(t) s: $(echo "$r" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d.get("answered_by"), d.get("provider"), repr(d["answer"][:60]))')"
cat .run/llama-build.json
bash scripts/stack.sh status
bash scripts/stack.sh down
