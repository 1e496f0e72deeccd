#!/usr/bin/env bash
# HTTP throughput of the API with wrk, on the embedded default (SQLite) or, with CAREHUB_DATABASE_URL and
# CAREHUB_MIGRATION_DATABASE_URL set, on PostgreSQL. One uvicorn process; wrk runs on the same machine.
# Usage: bench/http.sh [seconds]   (run through `make bench`)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DURATION=${1:-10}
PORT=${PORT:-$("$BIN/python" -c "import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])")}
command -v wrk >/dev/null || { echo "bench: wrk is needed (Debian/Ubuntu: apt-get install wrk)" >&2; exit 1; }

server=""
work=$(mktemp -d)
trap '[ -n "$server" ] && kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
export CAREHUB_DATABASE_URL=${CAREHUB_DATABASE_URL:-sqlite+aiosqlite:///$work/bench.sqlite3}
# wrk is one client; the per-client rate limit would only answer 429. Off, as behind a limiting gateway.
export CAREHUB_RATE_LIMIT_API_PER_MINUTE=0 CAREHUB_RATE_LIMIT_TOKEN_PER_MINUTE=0
"$BIN/carehub" db upgrade >/dev/null
"$BIN/carehub" seed-demo >/dev/null
"$BIN/carehub" serve --port "$PORT" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done

token=$("$BIN/carehub" token --user dr.lee@stmarys.example --tenant st-marys)
patient=$(curl -sf "http://127.0.0.1:$PORT/api/v1/patients?limit=1" -H "Authorization: Bearer $token" \
  | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')

echo "machine: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "database: ${CAREHUB_DATABASE_URL%%:*}; one API process; wrk -t2 -c16 -d${DURATION}s"
WRK_CONN=${WRK_CONN:-16}
run() {
  local name=$1; shift
  local out
  out=$(wrk -t"$(( WRK_CONN < 2 ? 1 : 2 ))" -c"$WRK_CONN" -d"${DURATION}s" --latency "$@")
  printf '%-34s %10s req/s   p50 %8s   p99 %8s\n' "$name" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out")" "$(awk '$1 == "99%" {print $2}' <<<"$out")"
}
run "GET /healthz (no auth, no db)" "http://127.0.0.1:$PORT/healthz"
run "GET /api/v1/patients/{id}" -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/api/v1/patients/$patient"
run "GET /api/v1/patients?limit=20" -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/api/v1/patients?limit=20"
plan=$(curl -sf "http://127.0.0.1:$PORT/api/v1/care-plans?limit=1" -H "Authorization: Bearer $token" \
  | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
run "GET /api/v1/care-plans/{id}" -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/api/v1/care-plans/$plan"
run "GET /api/v1/tasks?queue=mine" -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/api/v1/tasks?queue=mine"
run "GET /fhir/CarePlan/{id}" -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/fhir/CarePlan/$plan"
