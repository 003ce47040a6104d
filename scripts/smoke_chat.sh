#!/usr/bin/env bash
# Smoke test of a running Cairn stack through the BFF: upload, non-stream chat, stream chat, the NO_CONTEXT
# fallback. Exits non-zero with a clear message on the first failure.
#
#   BFF_URL=http://127.0.0.1:8080 scripts/smoke_chat.sh
#   BFF_API_KEY=...            sent as a Bearer token (needed outside local mode)
#   SMOKE_ALLOW_FALLBACK=1     accept a degraded (fallback) answer from the model as a pass
#   SMOKE_TIMEOUT_S=120        per request (a real model on 2 cores answers in seconds; the first call loads it)
set -euo pipefail

BFF_URL=${BFF_URL:-http://127.0.0.1:8080}
BFF_URL=${BFF_URL%/}
TIMEOUT=${SMOKE_TIMEOUT_S:-120}
COLLECTION=smoke
DOC_ID=cairn-smoke-doc
PY=$(command -v python3 || command -v python)
AUTH=()
if [ -n "${BFF_API_KEY:-}" ]; then AUTH=(-H "Authorization: Bearer $BFF_API_KEY"); fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

# request METHOD PATH [JSON] -> body in $TMP/body, HTTP status in $STATUS
request() {
  local args=(-sS -o "$TMP/body" -w '%{http_code}' --max-time "$TIMEOUT" -X "$1" "${AUTH[@]}")
  if [ $# -ge 3 ]; then args+=(-H 'Content-Type: application/json' --data-binary "$3"); fi
  STATUS=$(curl "${args[@]}" "$BFF_URL$2") || fail "$1 $2: no answer from $BFF_URL (is the stack up? try 'make status')"
}

# json EXPR: evaluate a Python expression over the last body (bound to d)
json() { "$PY" -c "import json,sys; d=json.load(open('$TMP/body')); print($1)" 2>/dev/null || fail "unexpected body: $(head -c 400 "$TMP/body")"; }

echo "Smoke test against $BFF_URL"

request GET /healthz
[ "$STATUS" = 200 ] || fail "BFF /healthz answered HTTP $STATUS"
request GET /readyz
[ "$STATUS" = 200 ] || fail "BFF /readyz answered HTTP $STATUS: the query service is not reachable: $(head -c 300 "$TMP/body")"
ok "BFF healthy and ready"

DOC='{"id":"'$DOC_ID'","collection":"'$COLLECTION'","title":"Cairn smoke test","text":"Cairn smoke test document. The lighthouse keeper on Skerry Island logs the tide every four hours. The keeper uses a brass telescope to watch passing ships."}'
request POST /api/documents "$DOC"
case "$STATUS" in 200|201) ;; *) fail "upload answered HTTP $STATUS: $(head -c 400 "$TMP/body")" ;; esac
ok "document stored ($(json 'd["chunks"]') chunks)"

ALLOWED="ok"
if [ "${SMOKE_ALLOW_FALLBACK:-0}" = 1 ]; then ALLOWED="ok fallback"; fi
QUESTION='How often does the lighthouse keeper on Skerry Island log the tide?'
# A different question for the stream, so it is generated (and streamed token by token), not a cache hit.
STREAM_QUESTION='What does the Skerry Island lighthouse keeper use to watch passing ships?'

# 1. non-stream chat
request POST /api/chat '{"query":"'"$QUESTION"'","collection":"'$COLLECTION'","stream":false}'
[ "$STATUS" = 200 ] || fail "non-stream chat answered HTTP $STATUS: $(head -c 400 "$TMP/body")"
st=$(json 'd["status"]')
[[ " $ALLOWED " == *" $st "* ]] || fail "non-stream chat status '$st' ($(json 'd.get("reason_code")'): $(json 'd.get("message")')); set SMOKE_ALLOW_FALLBACK=1 to accept a degraded answer"
[ -n "$(json 'd["answer"].strip()')" ] || fail "non-stream chat returned an empty answer"
[ "$(json 'len(d["sources"]) > 0')" = True ] || fail "non-stream chat returned no sources"
ok "non-stream chat: status $st, $(json 'len(d["citations"])') citation(s): $(json 'd["answer"][:80]')"
# A tiny model may copy the prompt's JSON example instead of answering: worth a loud warning, not a failure.
if [ "$(json 'd["answer"].strip().startswith("<") and d["answer"].strip().endswith(">")')" = True ]; then
  echo "WARN the answer looks like a template placeholder, not an answer: the model copied the prompt's example" >&2
fi

# 2. stream chat: several SSE events, the last one `done`
code=$(curl -sS -N -o "$TMP/stream" -w '%{http_code}' --max-time "$TIMEOUT" "${AUTH[@]}" -X POST \
  -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
  --data-binary '{"query":"'"$STREAM_QUESTION"'","collection":"'$COLLECTION'","stream":true}' "$BFF_URL/api/chat") \
  || fail "stream chat: the connection failed or timed out after ${TIMEOUT}s"
[ "$code" = 200 ] || fail "stream chat answered HTTP $code: $(head -c 400 "$TMP/stream")"
summary=$("$PY" - "$TMP/stream" <<'PYEOF'
import json, sys
events = []
for block in open(sys.argv[1], encoding="utf-8").read().strip().split("\n\n"):
    name, data = "message", []
    for line in block.splitlines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        events.append((name, json.loads("\n".join(data))))
names = [n for n, _ in events]
done = events[-1][1] if events and names[-1] == "done" else {}
print(len(events), names.count("delta"), names[-1] if names else "-", done.get("status", "-"), done.get("reason_code"), ",".join(dict.fromkeys(names)))
PYEOF
) || fail "stream chat: the body is not valid SSE with JSON data: $(head -c 400 "$TMP/stream")"
read -r n_events n_deltas last st reason kinds <<<"$summary"
[ "$last" = done ] || fail "stream chat: the last event is '$last', not 'done' (events: $kinds)"
[ "$n_events" -ge 3 ] || fail "stream chat: only $n_events events (events: $kinds)"
[[ " $ALLOWED " == *" $st "* ]] || fail "stream chat ended with status '$st' ($reason); set SMOKE_ALLOW_FALLBACK=1 to accept a degraded answer"
# An extractive answer (the default llamacpp model) arrives as its quoted sentences, so one delta is enough.
if [ "$st" = ok ]; then [ "$n_deltas" -ge 1 ] || fail "stream chat: status ok but no delta event"; fi
ok "stream chat: $n_events events ($kinds), $n_deltas deltas, done status $st"

# 3. the "no chunks" fallback: a collection with no documents can never have context
request POST /api/chat '{"query":"What is the airspeed of an unladen swallow?","collection":"smoke-empty-'$$'","stream":false}'
[ "$STATUS" = 200 ] || fail "no-context chat answered HTTP $STATUS: $(head -c 400 "$TMP/body")"
[ "$(json 'd["status"]')" = fallback ] || fail "no-context chat: status '$(json 'd["status"]')', expected fallback"
[ "$(json 'd["reason_code"]')" = NO_CONTEXT ] || fail "no-context chat: reason '$(json 'd["reason_code"]')', expected NO_CONTEXT"
ok "no-context fallback: NO_CONTEXT, \"$(json 'd["answer"]')\""

request DELETE "/api/documents/$DOC_ID"
[ "$STATUS" = 200 ] || fail "deleting the smoke document answered HTTP $STATUS"
ok "smoke document deleted"
echo "PASS: the stack answers through $BFF_URL"
