#!/usr/bin/env bash
# The README's picture of the live view: a legacy database seeded at SCALE (1) copied into fresh
# service databases (shot_*) by `mfe migrate copy --ui`, slowed to MAX_RATE rows/s so that the
# page is caught part-way, photographed by the browser test's script (laptop and phone sizes).
#
#   bash scripts/dashboard-screenshot.sh                 # docs/img/dashboard-copy.png (+ -phone)
#   SCALE=10 MAX_RATE=200000 OUT=/tmp/x.png bash scripts/dashboard-screenshot.sh
#
# Databases shot_* are dropped and created again; they are dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${SCALE:-1}"
MAX_RATE="${MAX_RATE:-20000}"
WAIT="${WAIT:-15}"
OUT="${OUT:-docs/img/dashboard-copy.png}"
TARGET="${CARGO_TARGET_DIR:-target}"

bash scripts/stack.sh up >/dev/null
bash scripts/ui-deps.sh
cargo build -q --bin mfe
MFE="$TARGET/debug/mfe"

declare -A PORT_OF=([legacy]=5432 [auth]=5432 [payments]=5433 [admin]=5434 [profile]=5435)
reset() {
    for part in legacy auth payments admin profile; do
        psql -qX -h 127.0.0.1 -U postgres -p "${PORT_OF[$part]}" -d postgres \
            -c "DROP DATABASE IF EXISTS shot_$part WITH (FORCE)" "$@" >/dev/null
    done
}
cleanup() {
    [[ -n "${COPY_PID:-}" ]] && kill "$COPY_PID" 2>/dev/null && wait "$COPY_PID" 2>/dev/null
    reset
    rm -f "$LOG"
}
LOG=$(mktemp)
trap cleanup EXIT
reset
psql -qX -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE shot_legacy" >/dev/null

export SHARED_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/shot_legacy
export AUTH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/shot_auth
export PAYMENTS_DATABASE_URL=postgresql://postgres@127.0.0.1:5433/shot_payments
export ADMIN_DATABASE_URL=postgresql://postgres@127.0.0.1:5434/shot_admin
export PROFILE_DATABASE_URL=postgresql://postgres@127.0.0.1:5435/shot_profile

echo "== seeding the legacy database at scale $SCALE"
"$MFE" legacy seed --url "$SHARED_DATABASE_URL" --scale "$SCALE" --seed 42 >/dev/null
"$MFE" migrate prepare >/dev/null
echo "== copying at $MAX_RATE rows/s at most, with the live view"
"$MFE" migrate copy --ui 127.0.0.1:0 --max-rate "$MAX_RATE" 2>"$LOG" &
COPY_PID=$!
for _ in $(seq 100); do
    URL=$(sed -n 's/^live view: //p' "$LOG" | head -1)
    [[ -n "$URL" ]] && break
    sleep 0.2
done
[[ -n "${URL:-}" ]] || { cat "$LOG" >&2; echo "the copy announced no view" >&2; exit 1; }
sleep "$WAIT" # some history for the throughput chart
mkdir -p "$(dirname "$OUT")"
(cd crates/dashboard/ui-tests && node page.mjs "$URL" "$OLDPWD/$OUT" --expect-moving >/dev/null)
echo "== $OUT and ${OUT%.png}-phone.png"
