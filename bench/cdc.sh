#!/usr/bin/env bash
# Live sync against PostgreSQL's own logical replication, on the same backlog, in one run:
#
#   1. A legacy database at SCALE (default 1: ~370k rows), copied into fresh service databases
#      (prepare, copy: the capture slot). At the same moment a second slot for the built-in apply
#      worker, and a subscriber database on the payments cluster (:5433) holding the same rows.
#   2. The burst: pgbench, CLIENTS (8) clients for BURST seconds (60), each transaction updating
#      one payment and inserting one payment transaction and one audit row (3 row changes).
#   3. `mfe migrate sync` from that backlog, then the subscription (copy_data = false, enabled
#      after the burst) from the same backlog: changes/s of each and their ratio.
#   4. `mfe migrate sync --follow` while the burst runs FOLLOW seconds (300): its lag every 5 s.
#   5. `mfe migrate verify`: the service databases equal the legacy one.
#   6. `mfe migrate cutover` under the burst (the write freeze).
#   7. A burst written into the service databases for ROLLBACK_BURST seconds (20), then
#      `mfe migrate rollback`, then two subscriptions (the built-in apply worker) of those
#      databases' slots made before the burst: the same backlog applied both ways.
#
#   bash bench/cdc.sh                       # the whole run
#   BURST=20 FOLLOW=30 bash bench/cdc.sh    # a quick one
#   SCALE=10 FOLLOW=0 bash bench/cdc.sh     # the cutover's freeze at scale 10
#   NO_BUILD=1 ...                          # use target/release/mfe as it is
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${SCALE:-1}"
CLIENTS="${CLIENTS:-8}"
BURST="${BURST:-60}"
FOLLOW="${FOLLOW:-300}"
ROLLBACK_BURST="${ROLLBACK_BURST:-20}"
PG="postgresql://postgres:postgres@localhost"
LEGACY_DB="bench_cdc_s${SCALE//./_}"
SUB_DB=bench_cdc_sub
SUB_PORT=5433
declare -A PORT=([auth]=5432 [payments]=5433 [admin]=5434 [profile]=5435)

bash scripts/stack.sh up >/dev/null
command -v pgbench >/dev/null || { echo "pgbench missing (postgresql-client)" >&2; exit 1; }
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[ -n "${NO_BUILD:-}" ] || cargo build --release --bin mfe >/dev/null 2>&1 || cargo build --release --bin mfe
MFE="$TARGET_DIR/release/mfe"
export SHARED_DATABASE_URL="$PG:5432/$LEGACY_DB"
for s in auth payments admin profile; do
    export "${s^^}_DATABASE_URL=$PG:${PORT[$s]}/bench_cdc_$s"
done
WORK="$(mktemp -d /tmp/bench-cdc.XXXXXX)"
export MFE_TOPOLOGY_FILE="$WORK/topology.env"
FOLLOWER=""
drop_rb_subs() {
    for sp in payments:5433 admin:5434; do
        local s=${sp%%:*} p=${sp#*:}
        psql_on "$SUB_PORT" "$SUB_DB" -c "ALTER SUBSCRIPTION bench_rb_$s DISABLE" >/dev/null 2>&1 || true
        psql_on "$SUB_PORT" "$SUB_DB" -c "ALTER SUBSCRIPTION bench_rb_$s SET (slot_name = NONE)" >/dev/null 2>&1 || true
        psql_on "$SUB_PORT" "$SUB_DB" -c "DROP SUBSCRIPTION IF EXISTS bench_rb_$s" >/dev/null 2>&1 || true
        psql_on "$p" "bench_cdc_$s" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'bench_rb_$s'" >/dev/null 2>&1 || true
        psql_on "$p" "bench_cdc_$s" -c "DROP PUBLICATION IF EXISTS bench_rb" >/dev/null 2>&1 || true
    done
}
cleanup() {
    [ -z "$FOLLOWER" ] || kill "$FOLLOWER" 2>/dev/null || true
    drop_rb_subs
    psql_on "$SUB_PORT" "$SUB_DB" -c "ALTER SUBSCRIPTION bench_cdc_sub DISABLE" >/dev/null 2>&1 || true
    psql_on "$SUB_PORT" "$SUB_DB" -c "ALTER SUBSCRIPTION bench_cdc_sub SET (slot_name = NONE)" >/dev/null 2>&1 || true
    psql_on "$SUB_PORT" "$SUB_DB" -c "DROP SUBSCRIPTION IF EXISTS bench_cdc_sub" >/dev/null 2>&1 || true
    psql_on 5432 "$LEGACY_DB" -c "SELECT pg_drop_replication_slot('bench_cdc_sub') FROM pg_replication_slots WHERE slot_name = 'bench_cdc_sub'" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

psql_on() { local port=$1 db=$2; shift 2; psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"; }
now() { date +%s.%N; }
say() { printf '%s\n' "$*"; }

# --- 1. the legacy database, its copy, and the subscriber ------------------------------------
want_users=$(python3 -c "import math; print(math.ceil($SCALE * 10000))")
have_users=$(psql_on 5432 "$LEGACY_DB" -Atc "SELECT count(*) FROM users" 2>/dev/null || echo 0)
if [ "$have_users" -lt "$want_users" ]; then
    say "== seeding $LEGACY_DB at scale $SCALE"
    $MFE legacy seed --url "$SHARED_DATABASE_URL" --scale "$SCALE" --replace >/dev/null
fi
# Leftovers of an interrupted run: the slots, the freeze, the bench's rows.
$MFE migrate abort --forget-way-back >/dev/null 2>&1 || true
psql_on 5432 "$LEGACY_DB" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'bench_cdc_sub'" >/dev/null
psql_on "$SUB_PORT" postgres -c "DROP DATABASE IF EXISTS $SUB_DB WITH (FORCE)" >/dev/null
psql_on 5432 "$LEGACY_DB" >/dev/null <<'SQL'
DROP SCHEMA IF EXISTS mfe_cutover CASCADE;
DROP SCHEMA IF EXISTS mfe_rollback CASCADE;
-- A rollback leaves the services' schemas in legacy (their own state, and admin's trigger on
-- audit_logs, which the subscriber's copy of the tables could not be given).
DROP SCHEMA IF EXISTS auth, payments, admin, profile CASCADE;
-- What earlier runs wrote: every run starts from the same rows.
DELETE FROM payment_transactions WHERE status_message IN ('cdc bench', 'cdc rollback bench');
DELETE FROM audit_logs WHERE action IN ('bench.cdc', 'bench.cdc.rollback');
CREATE SCHEMA IF NOT EXISTS bench_cdc;
DROP TABLE IF EXISTS bench_cdc.pay;
CREATE TABLE bench_cdc.pay AS SELECT row_number() OVER (ORDER BY id) AS n, id FROM payments;
ALTER TABLE bench_cdc.pay ADD PRIMARY KEY (n);
DELETE FROM system_config WHERE key LIKE 'bench.cdc.%';
VACUUM (ANALYZE);
SQL
NPAY=$(psql_on 5432 "$LEGACY_DB" -Atc "SELECT count(*) FROM bench_cdc.pay")
rows=$(psql_on 5432 "$LEGACY_DB" -Atc "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM refresh_tokens) + (SELECT count(*) FROM payments) + (SELECT count(*) FROM payment_transactions) + (SELECT count(*) FROM audit_logs) + (SELECT count(*) FROM system_config) + (SELECT count(*) FROM user_profiles)")
say "legacy: $rows rows (scale $SCALE); machine: $(nproc) cores; burst: $CLIENTS clients x ${BURST}s"

for s in auth payments admin profile; do
    psql_on "${PORT[$s]}" postgres -c "DROP DATABASE IF EXISTS bench_cdc_$s WITH (FORCE)" >/dev/null
done
$MFE migrate prepare >/dev/null
$MFE migrate copy >/dev/null
# The built-in apply worker's slot, made with no write since the copy: both slots start at the
# same rows, and the subscriber gets exactly those rows.
psql_on 5432 "$LEGACY_DB" -Atc "SELECT 1 FROM pg_create_logical_replication_slot('bench_cdc_sub', 'pgoutput')" >/dev/null
psql_on "$SUB_PORT" postgres -c "CREATE DATABASE $SUB_DB" >/dev/null
pg_dump -h 127.0.0.1 -p 5432 -U postgres --no-publications --no-subscriptions \
    -t public.users -t public.refresh_tokens -t public.payments -t public.payment_transactions \
    -t public.audit_logs -t public.system_config -t public.user_profiles "$LEGACY_DB" >"$WORK/tables.sql"
# The enum types the tables use come first.
pg_dump -h 127.0.0.1 -p 5432 -U postgres --schema-only "$LEGACY_DB" |
    awk '/^CREATE TYPE public\./,/\);/' >"$WORK/types.sql"
psql_on "$SUB_PORT" "$SUB_DB" -f "$WORK/types.sql" >/dev/null
psql_on "$SUB_PORT" "$SUB_DB" -f "$WORK/tables.sql" >/dev/null
psql_on "$SUB_PORT" "$SUB_DB" -c "VACUUM (ANALYZE)" >/dev/null
psql_on "$SUB_PORT" "$SUB_DB" -c "CREATE SUBSCRIPTION bench_cdc_sub
    CONNECTION 'host=127.0.0.1 port=5432 dbname=$LEGACY_DB user=postgres password=postgres'
    PUBLICATION mfe_migration
    WITH (create_slot = false, slot_name = 'bench_cdc_sub', copy_data = false, enabled = false)" >/dev/null
for p in 5432 5433 5434 5435; do psql_on "$p" postgres -c CHECKPOINT >/dev/null; done

# --- 2. the burst -----------------------------------------------------------------------------
cat >"$WORK/burst.sql" <<'SQL'
\set n random(1, :npay)
BEGIN;
UPDATE payments SET status = 'processing', psp_status = 'bench', updated_at = now()::timestamp(3)
  WHERE id = (SELECT id FROM bench_cdc.pay WHERE n = :n);
INSERT INTO payment_transactions (id, payment_id, status, status_message, created_at)
  SELECT gen_random_uuid()::text, id, 'processing', 'cdc bench', now() FROM bench_cdc.pay WHERE n = :n;
INSERT INTO audit_logs (id, action, resource_type, resource_id, details, created_at)
  VALUES (gen_random_uuid()::text, 'bench.cdc', 'payment', :n, '{"bench": true}', now());
END;
SQL
burst() {
    pgbench -n -h 127.0.0.1 -p 5432 -U postgres -c "$CLIENTS" -j 2 -T "$1" -D npay="$NPAY" \
        -f "$WORK/burst.sql" "$LEGACY_DB" 2>&1 |
        awk '/number of transactions actually processed/ {split($NF, n, "/"); tx = n[1]} /^tps/ {tps = $3} END {print tx, tps}'
}
say "== burst: pgbench ${BURST}s on the legacy database"
read -r burst_tx burst_tps < <(burst "$BURST")
# The end of the backlog, in both streams: a row the subscriber's side is watched for.
psql_on 5432 "$LEGACY_DB" -c "INSERT INTO system_config (key, value, updated_at) VALUES ('bench.cdc.end', '{}', now())" >/dev/null
changes=$((burst_tx * 3 + 1))
say "burst: $burst_tx transactions ($burst_tps/s), $changes row changes"

# --- 3. the same backlog, twice ----------------------------------------------------------------
say "== mfe migrate sync from the backlog"
t0=$(now)
$MFE migrate sync --json >"$WORK/sync.json"
t1=$(now)
mfe_secs=$(echo "$t1 - $t0" | bc)
mfe_rate=$(echo "$changes / $mfe_secs" | bc)
say "mfe migrate sync: $(python3 -c "import json; r=json.load(open('$WORK/sync.json')); print(r['transactions'], 'transactions,', r['rows'], 'rows')") in ${mfe_secs}s: $mfe_rate changes/s"

say "== the built-in apply worker (subscription) from the same backlog"
t0=$(now)
psql_on "$SUB_PORT" "$SUB_DB" -c "ALTER SUBSCRIPTION bench_cdc_sub ENABLE" >/dev/null
until [ "$(psql_on "$SUB_PORT" "$SUB_DB" -Atc "SELECT count(*) FROM system_config WHERE key = 'bench.cdc.end'")" = 1 ]; do
    sleep 0.05
done
t1=$(now)
sub_secs=$(echo "$t1 - $t0" | bc)
sub_rate=$(echo "$changes / $sub_secs" | bc)
say "subscription: ${sub_secs}s: $sub_rate changes/s"
cleanup_sub() {
    psql_on "$SUB_PORT" "$SUB_DB" -c "DROP SUBSCRIPTION bench_cdc_sub" >/dev/null
}
cleanup_sub
printf 'RESULT backlog=%s changes mfe=%s/s (%.1fs) builtin=%s/s (%.1fs) ratio=%.2f\n' \
    "$changes" "$mfe_rate" "$mfe_secs" "$sub_rate" "$sub_secs" "$(echo "$mfe_rate / $sub_rate" | bc -l)"

# --- 4. sync --follow under the burst ----------------------------------------------------------
if [ "$FOLLOW" -gt 0 ]; then
    say "== mfe migrate sync --follow while pgbench writes for ${FOLLOW}s (lag every 5 s)"
    $MFE migrate sync --follow >"$WORK/follow.log" 2>&1 &
    FOLLOWER=$!
    sleep 1
    burst "$FOLLOW" >"$WORK/follow-burst.txt" &
    load=$!
    start=$(now)
    printf '%6s %12s %10s\n' "t (s)" "lag (bytes)" "lag (s)"
    max_bytes=0
    max_secs=0
    while kill -0 "$load" 2>/dev/null; do
        sleep 5
        # Only while the writes run: once they stop, "seconds behind the last commit" only grows.
        kill -0 "$load" 2>/dev/null || break
        read -r bytes secs < <(psql_on 5432 "$LEGACY_DB" -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'mfe_migration_$LEGACY_DB'" | tr '\n' ' '; psql_on 5433 bench_cdc_payments -Atc "SELECT round(extract(epoch FROM clock_timestamp() - commit_time)::numeric, 2) FROM mfe_migration.sync_position")
        printf '%6.0f %12s %10s\n' "$(echo "$(now) - $start" | bc)" "$bytes" "$secs"
        [ "$bytes" -le "$max_bytes" ] || max_bytes=$bytes
        max_secs=$(echo "if ($secs > $max_secs) $secs else $max_secs" | bc)
    done
    wait "$load" || true
    read -r ftx ftps <"$WORK/follow-burst.txt"
    # Caught up once the writes stop.
    t0=$(now)
    until [ "$(psql_on 5432 "$LEGACY_DB" -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) < 100000 FROM pg_replication_slots WHERE slot_name = 'mfe_migration_$LEGACY_DB'")" = t ]; do
        sleep 0.2
    done
    drain=$(echo "$(now) - $t0" | bc)
    kill -INT "$FOLLOWER"
    wait "$FOLLOWER" || true
    FOLLOWER=""
    printf 'RESULT follow: %s transactions (%s/s, %s changes/s) for %ss; lag max %s bytes, %ss; drained %.1fs after the writes stopped\n' \
        "$ftx" "$ftps" "$(echo "$ftps * 3" | bc)" "$FOLLOW" "$max_bytes" "$max_secs" "$drain"
fi

# --- 5. exact -------------------------------------------------------------------------------
say "== verify"
$MFE migrate verify >/dev/null && say "verify: the service databases equal the legacy database"

# --- 6. cutover under the burst ----------------------------------------------------------------
say "== cutover while pgbench writes (sync --follow running, verify under the load first)"
$MFE migrate sync --follow >"$WORK/follow2.log" 2>&1 &
FOLLOWER=$!
burst 3600 >"$WORK/cutover-burst.txt" &
load=$!
sleep 10
t0=$(now)
$MFE migrate verify >/dev/null
verify_secs=$(echo "$(now) - $t0" | bc)
$MFE migrate cutover --json >"$WORK/cutover.json"
# The freeze ended every legacy session: pgbench's clients and the follower.
wait "$load" || true
wait "$FOLLOWER" || true
FOLLOWER=""
python3 - "$WORK/cutover.json" "$verify_secs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
steps = ", ".join(f"{name} {secs:.3f}s" for name, secs in r["steps"])
print(f"RESULT cutover under the burst: verify (writes running) {float(sys.argv[2]):.1f}s; "
      f"write freeze {r['freezeSeconds']:.3f}s ({r['transactionsInFreeze']} transactions synced "
      f"and {r['verifiedRows']} rows verified inside it); steps: {steps}")
PY

# --- 7. rollback of a burst written into the service databases -----------------------------------
if [ "$ROLLBACK_BURST" -gt 0 ]; then
    say "== rollback of ${ROLLBACK_BURST}s of writes into the service databases"
    cat >"$WORK/payments.sql" <<'SQL'
\set n random(1, :npay)
BEGIN;
UPDATE payments SET status = 'completed', psp_status = 'rollback', updated_at = now()::timestamp(3)
  WHERE id = (SELECT id FROM payments ORDER BY id LIMIT 1 OFFSET :n - 1);
INSERT INTO payment_transactions (id, payment_id, status, status_message, created_at)
  SELECT gen_random_uuid()::text, id, 'completed', 'cdc rollback bench', now() FROM payments
  ORDER BY id LIMIT 1 OFFSET :n - 1;
END;
SQL
    cat >"$WORK/admin.sql" <<'SQL'
INSERT INTO audit_logs (id, action, resource_type, details, created_at)
  VALUES (gen_random_uuid()::text, 'bench.cdc.rollback', 'payment', '{"bench": true}', now());
SQL
    count() {
        awk '/number of transactions actually processed/ {split($NF, n, "/"); print n[1]}'
    }
    # The built-in apply worker on the same backlog: a slot per service database made before the
    # burst, and a subscription of each into the subscriber (a copy of legacy's tables), enabled
    # after the rollback, each applying its own database's changes (two apply workers at once).
    RB_SUBS="payments:5433 admin:5434"
    for sp in $RB_SUBS; do
        s=${sp%%:*} p=${sp#*:}
        psql_on "$p" "bench_cdc_$s" >/dev/null <<SQL
CREATE PUBLICATION bench_rb FOR TABLE $( [ "$s" = payments ] && echo "payments, payment_transactions" || echo "audit_logs" );
SELECT 1 FROM pg_create_logical_replication_slot('bench_rb_$s', 'pgoutput');
SQL
        psql_on "$SUB_PORT" "$SUB_DB" -c "CREATE SUBSCRIPTION bench_rb_$s
            CONNECTION 'host=127.0.0.1 port=$p dbname=bench_cdc_$s user=postgres password=postgres'
            PUBLICATION bench_rb
            WITH (create_slot = false, slot_name = 'bench_rb_$s', copy_data = false, enabled = false)" >/dev/null
    done
    pgbench -n -h 127.0.0.1 -p 5433 -U postgres -c 4 -j 1 -T "$ROLLBACK_BURST" -D npay=1000 \
        -f "$WORK/payments.sql" bench_cdc_payments 2>&1 | count >"$WORK/rb-payments.txt" &
    p1=$!
    pgbench -n -h 127.0.0.1 -p 5434 -U postgres -c 4 -j 1 -T "$ROLLBACK_BURST" \
        -f "$WORK/admin.sql" bench_cdc_admin 2>&1 | count >"$WORK/rb-admin.txt" &
    p2=$!
    wait "$p1" "$p2"
    # The end of the backlog in each database: a row the subscriber is watched for.
    tag="end-$(date +%s%N)"
    psql_on 5433 bench_cdc_payments -c "INSERT INTO payment_transactions (id, payment_id, status, status_message, created_at) SELECT '$tag', id, 'completed', 'cdc rollback bench', now() FROM payments ORDER BY id LIMIT 1" >/dev/null
    psql_on 5434 bench_cdc_admin -c "INSERT INTO audit_logs (id, action, resource_type, details, created_at) VALUES ('$tag', 'bench.cdc.rollback', 'payment', '{}', now())" >/dev/null
    rb_changes=$(( $(cat "$WORK/rb-payments.txt") * 2 + $(cat "$WORK/rb-admin.txt") + 2 ))
    t0=$(now)
    $MFE migrate rollback --json >"$WORK/rollback.json"
    rb_secs=$(echo "$(now) - $t0" | bc)
    t0=$(now)
    for sp in $RB_SUBS; do
        psql_on "$SUB_PORT" "$SUB_DB" -c "ALTER SUBSCRIPTION bench_rb_${sp%%:*} ENABLE" >/dev/null
    done
    until [ "$(psql_on "$SUB_PORT" "$SUB_DB" -Atc "SELECT (SELECT count(*) FROM payment_transactions WHERE id = '$tag') + (SELECT count(*) FROM audit_logs WHERE id = '$tag')")" = 2 ]; do
        sleep 0.05
        if [ "$(echo "$(now) - $t0 > 600" | bc)" = 1 ]; then
            echo "the subscriptions did not apply the rollback's backlog in 600 s (see the 5433 cluster's log)" >&2
            exit 1
        fi
    done
    rb_sub_secs=$(echo "$(now) - $t0" | bc)
    rb_sub_rate=$(echo "$rb_changes / $rb_sub_secs" | bc)
    drop_rb_subs
    python3 - "$WORK/rollback.json" "$rb_changes" "$rb_secs" "$sub_rate" "$rb_sub_secs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
changes, secs, builtin = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
same_secs = float(sys.argv[5])
rate = changes / secs
written = sum(t["inserted"] + t["updated"] + t["deleted"] for t in r.get("tables", []))
print(f"RESULT rollback: {changes} row changes in the service databases, {written} rows written "
      f"back, in {secs:.1f}s: {rate:.0f} changes/s; the built-in apply worker on the same "
      f"backlog (two subscriptions) {same_secs:.1f}s: {changes / same_secs:.0f}/s, ratio "
      f"{same_secs / secs:.2f} (on the forward backlog {builtin:.0f}/s: ratio {rate / builtin:.2f}); "
      f"freeze {r.get('freezeSeconds', 0):.3f}s")
print("rollback report:", json.dumps({k: v for k, v in r.items() if k not in ("tables", "carried")}))
PY
fi
