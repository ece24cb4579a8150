#!/usr/bin/env bash
# A timed rehearsal of every phase of the runbook (docs/RUNBOOK.md), at SCALE (default 10:
# ~3.8 M rows), on databases of its own (rehearsal_*), with the live POC-2 writing to the legacy
# database until cutover (LOAD_RATE operations/s, default 100):
#
#   plan, prepare, copy, sync, verify, cutover (its freeze), then CHANGES rows changed in the
#   service databases after cutover (default 100000, spread over every table's owner), status (the
#   way back's lag), rollback (its freeze and rows written back), verify after the rollback.
#
# Prints one line per phase with its wall-clock seconds; the runbook quotes these.
#
#   SCALE=10 bash scripts/rehearse.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${SCALE:-10}"
LOAD_RATE="${LOAD_RATE:-100}"
CHANGES="${CHANGES:-100000}"
PG="postgresql://postgres:postgres@localhost"
declare -A PORT=([auth]=5432 [payments]=5433 [admin]=5434 [profile]=5435)

bash scripts/stack.sh up >/dev/null
command -v bc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bc >/dev/null; }
cargo build --release --bin mfe >/dev/null 2>&1 || cargo build --release --bin mfe
MFE="${CARGO_TARGET_DIR:-target}/release/mfe"
export SHARED_DATABASE_URL="$PG:5432/rehearsal_legacy"
for s in auth payments admin profile; do
    export "${s^^}_DATABASE_URL=$PG:${PORT[$s]}/rehearsal_$s"
done
export MFE_TOPOLOGY_FILE=/tmp/rehearsal-topology.env
export MFE_DEV_PIDFILE=/tmp/rehearsal-no-dev.pid
psql_on() { local port=$1 db=$2; shift 2; psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"; }

# From scratch: a fresh legacy database at SCALE, no service databases.
for s in auth payments admin profile; do
    psql_on "${PORT[$s]}" postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = 'rehearsal_$s'" >/dev/null
    psql_on "${PORT[$s]}" postgres -c "DROP DATABASE IF EXISTS rehearsal_$s WITH (FORCE)"
done
psql_on 5432 postgres -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = 'rehearsal_legacy'" >/dev/null
echo "seeding rehearsal_legacy at scale $SCALE..."
$MFE legacy seed --url "$SHARED_DATABASE_URL" --scale "$SCALE" --replace >/dev/null
psql_on 5432 rehearsal_legacy -c "VACUUM (FREEZE, ANALYZE)"
rows=$(psql_on 5432 rehearsal_legacy -Atc "SELECT sum(n_live_tup) FROM pg_stat_user_tables")
size=$(psql_on 5432 rehearsal_legacy -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")

results=()
timed() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/tmp/rehearsal-step.out 2>/tmp/rehearsal-step.err || {
        cat /tmp/rehearsal-step.out /tmp/rehearsal-step.err; echo "FAILED: $name" >&2; exit 1; }
    t1=$(date +%s.%N)
    results+=("$(printf '%-44s %8.1f s' "$name" "$(echo "$t1 - $t0" | bc)")")
}

$MFE legacy write-load --url "$SHARED_DATABASE_URL" --rate "$LOAD_RATE" --duration 86400 --workers 4 >/tmp/rehearsal-load.out 2>&1 &
load_pid=$!
trap 'kill -TERM $load_pid 2>/dev/null || true' EXIT
sleep 2
timed "plan" $MFE migrate plan
timed "prepare" $MFE migrate prepare
timed "copy (writes running)" $MFE migrate copy
timed "sync (catch up)" $MFE migrate sync
timed "verify (writes running)" $MFE migrate verify
timed "cutover (total)" $MFE migrate cutover --json
freeze=$(jq -r .freezeSeconds /tmp/rehearsal-step.out)
cutover_steps=$(jq -r '.steps[] | "    \(.[0]): \(.[1] * 1000 | round) ms"' /tmp/rehearsal-step.out)
kill -TERM "$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true

# The services at work after cutover: CHANGES rows changed, a quarter per service database.
quarter=$(( CHANGES / 4 ))
t0=$(date +%s.%N)
psql_on 5432 rehearsal_auth -c "UPDATE users SET name = name || '.' WHERE id IN (SELECT id FROM users ORDER BY id LIMIT $quarter)"
psql_on 5433 rehearsal_payments -c "UPDATE payments SET description = 'after cutover' WHERE id IN (SELECT id FROM payments ORDER BY id LIMIT $quarter)"
psql_on 5434 rehearsal_admin -c "INSERT INTO audit_logs (id, action, created_at) SELECT 'rehearsal-' || g, 'rehearsal', now() FROM generate_series(1, $quarter) g"
psql_on 5435 rehearsal_profile -c "UPDATE user_profiles SET bio = 'after cutover' WHERE id IN (SELECT id FROM user_profiles ORDER BY id LIMIT $quarter)"
t1=$(date +%s.%N)
results+=("$(printf '%-44s %8.1f s' "($CHANGES rows changed after cutover)" "$(echo "$t1 - $t0" | bc)")")
timed "status (the way back's lag)" $MFE migrate status
timed "rollback (total)" $MFE migrate rollback --json
rb_freeze=$(jq -r .freezeSeconds /tmp/rehearsal-step.out)
rb_rows=$(jq -r '[.tables[] | .inserted + .updated + .deleted] | add' /tmp/rehearsal-step.out)
rollback_steps=$(jq -r '.steps[] | "    \(.[0]): \(.[1] * 1000 | round) ms"' /tmp/rehearsal-step.out)
timed "verify (after rollback)" $MFE migrate verify

echo
echo "rehearsal: scale $SCALE ($rows rows, $size), $(nproc) cores, write load $LOAD_RATE operations/s until cutover"
printf '%s\n' "${results[@]}"
printf '%-44s %8.3f s\n' "cutover write freeze" "$freeze"
echo "$cutover_steps"
printf '%-44s %8.3f s (%s rows written back)\n' "rollback write freeze" "$rb_freeze" "$rb_rows"
echo "$rollback_steps"
