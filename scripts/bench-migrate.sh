#!/usr/bin/env bash
# Migration benchmark: one legacy database seeded at SCALE (default 10: ~3.8 M rows), copied
# back to back, each time into freshly prepared service databases, by
#   (a) mfe migrate copy
#   (b) pg_dump -Fd -j 2 + pg_restore -j 2 --data-only into the prepared schema
#   (c) the raw pipe: psql COPY ... TO STDOUT (binary) | psql COPY ... FROM STDIN, two tables at
#       a time, into bare tables, indexes and constraints built afterwards (the hardware's ceiling)
# then times `mfe migrate verify` and reports mfe's peak memory, and measures a live cutover:
#   (d) with `mfe legacy write-load` writing all along (LOAD_RATE operations/s): copy, sync,
#       verify, then `mfe migrate cutover`, whose write freeze is the downtime; against
#   (e) the seed's plain path: writes stopped for a whole copy and a verify.
# Prints the figures and ratios.
#
#   SCALE=10 JOBS=4 bash scripts/bench-migrate.sh
#   ONLY=cutover SCALE=10 bash scripts/bench-migrate.sh     # (d) and (e) alone
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${SCALE:-10}"
JOBS="${JOBS:-4}"
ONLY="${ONLY:-all}"
LOAD_RATE="${LOAD_RATE:-200}"
PG="postgresql://postgres:postgres@localhost"
LEGACY="$PG:5432/bench_legacy"
declare -A PORT=([auth]=5432 [payments]=5433 [admin]=5434 [profile]=5435)
declare -A TABLES=([auth]="users refresh_tokens" [payments]="payments payment_transactions" [admin]="audit_logs system_config" [profile]="user_profiles")
ALL_TABLES="users refresh_tokens payments payment_transactions audit_logs system_config user_profiles"

bash scripts/stack.sh up >/dev/null
command -v bc >/dev/null && [ -x /usr/bin/time ] || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bc time >/dev/null
}
cargo build --release --bin mfe >/dev/null 2>&1 || cargo build --release --bin mfe
# A cutover leaves the legacy database frozen and a slot may be left by an interrupted run: the
# benchmark puts its legacy database back as it was (rollback proper is `mfe migrate rollback`).
thaw_legacy() {
    psql -X -q -h 127.0.0.1 -U postgres -d bench_legacy -c "DROP SCHEMA IF EXISTS mfe_cutover CASCADE" 2>/dev/null || true
    $MFE migrate abort --forget-way-back >/dev/null 2>&1 || true
}
MFE=target/release/mfe
export SHARED_DATABASE_URL="$LEGACY"
for s in auth payments admin profile; do
    export "${s^^}_DATABASE_URL=$PG:${PORT[$s]}/bench_$s"
done

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
psql_on() { local port=$1 db=$2; shift 2; psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"; }

fresh_targets() {
    for s in auth payments admin profile; do
        psql_on "${PORT[$s]}" postgres -c "DROP DATABASE IF EXISTS bench_$s WITH (FORCE)"
    done
    $MFE migrate prepare >/dev/null
    # Each method starts with no dirty buffers pending, on every cluster.
    for s in auth payments admin profile; do psql_on "${PORT[$s]}" postgres -c "CHECKPOINT"; done
}

# The legacy database, seeded once per scale (kept between runs).
want_users=$(echo "($SCALE * 10000 + 0.999)/1" | bc)
have_users=$(psql_on 5432 bench_legacy -Atc "SELECT count(*) FROM users" 2>/dev/null || echo 0)
if [ "$have_users" -lt "$want_users" ]; then
    echo "seeding bench_legacy at scale $SCALE..."
    $MFE legacy seed --url "$LEGACY" --scale "$SCALE" --replace >/dev/null
fi
# Settle the legacy heap before measuring: freshly loaded rows have no hint bits, and the first
# reader would pay for setting them (and compete with autovacuum), which would bias whichever
# method runs first. A no-op when already frozen.
psql_on 5432 bench_legacy -c "VACUUM (FREEZE, ANALYZE)"
rows=$(for t in $ALL_TABLES; do psql_on 5432 bench_legacy -Atc "SELECT count(*) FROM $t"; done | paste -sd+ | bc)
size=$(psql_on 5432 bench_legacy -Atc "SELECT pg_size_pretty(pg_database_size('bench_legacy'))")
echo "legacy: $rows rows, $size (scale $SCALE); machine: $(nproc) cores"

live_cutover() {
    # (d) live: the platform writes while it is copied, synced, verified and cut over.
    thaw_legacy
    fresh_targets
    $MFE legacy write-load --url "$LEGACY" --rate "$LOAD_RATE" --duration 3600 --workers 4 --json >/tmp/bench-load.json 2>/tmp/bench-load.err &
    load_pid=$!
    sleep 2
    t0=$(now)
    $MFE migrate copy --jobs "$JOBS" >/dev/null
    $MFE migrate sync >/dev/null
    $MFE migrate verify >/dev/null
    t1=$(now)
    live_prep_s=$(secs "$t0" "$t1")
    $MFE migrate cutover --json --topology-file /tmp/bench-topology.env >/tmp/bench-cutover.json
    freeze_s=$(jq -r .freezeSeconds /tmp/bench-cutover.json)
    kill -TERM "$load_pid" 2>/dev/null || true
    wait "$load_pid" 2>/dev/null || true
    load_ops=$(jq -r '[.operations[]] | add // 0' /tmp/bench-load.json 2>/dev/null || echo "?")
    $MFE migrate verify >/dev/null
    thaw_legacy

    # (e) the seed's plain path: writes stopped for a whole copy and verify.
    fresh_targets
    t0=$(now)
    $MFE migrate copy --jobs "$JOBS" >/dev/null
    $MFE migrate verify >/dev/null
    t1=$(now)
    plain_s=$(secs "$t0" "$t1")
    thaw_legacy
}
live_report() {
    cat <<REPORT
  (d) live: copy + sync + verify with writes running  $(printf '%.1f' "$live_prep_s") s ($load_ops writes committed by the load)
      cutover write freeze                            $(printf '%.3f' "$freeze_s") s   (goal < 2)
  (e) plain: writes stopped for copy + verify         $(printf '%.1f' "$plain_s") s
  plain downtime / live freeze  $(printf '%.0f' "$(echo "scale=6; $plain_s / $freeze_s" | bc)")x
REPORT
}
if [ "$ONLY" = cutover ]; then
    live_cutover
    echo
    echo "live cutover: scale $SCALE, $(nproc) cores, write load $LOAD_RATE operations/s"
    live_report
    exit 0
fi

# (a) mfe migrate copy
fresh_targets
t0=$(now)
/usr/bin/time -f "%M" -o /tmp/bench-mfe-rss $MFE migrate copy --jobs "$JOBS" >/dev/null
t1=$(now)
copy_s=$(secs "$t0" "$t1")
copy_rss_mb=$(( $(cat /tmp/bench-mfe-rss) / 1024 ))
t0=$(now)
/usr/bin/time -f "%M" -o /tmp/bench-verify-rss $MFE migrate verify >/dev/null
t1=$(now)
verify_s=$(secs "$t0" "$t1")
verify_rss_mb=$(( $(cat /tmp/bench-verify-rss) / 1024 ))
# copy made a capture slot; nothing syncs it here, and it would keep WAL.
$MFE migrate abort --forget-way-back >/dev/null

# (b) pg_dump -Fd -j 2 + pg_restore -j 2 --data-only
fresh_targets
dump=$(mktemp -d)/dump
t0=$(now)
pg_dump -h 127.0.0.1 -p 5432 -U postgres -d bench_legacy -Fd -j 2 --data-only $(for t in $ALL_TABLES; do echo "-t public.$t"; done) -f "$dump"
for s in auth payments admin profile; do
    pg_restore -h 127.0.0.1 -p "${PORT[$s]}" -U postgres -d "bench_$s" -j 2 --data-only --disable-triggers \
        $(for t in ${TABLES[$s]}; do echo "-t $t"; done) "$dump" &
done
wait
t1=$(now)
dump_s=$(secs "$t0" "$t1")
rm -rf "$(dirname "$dump")"

# (c) raw binary pipe, two tables at a time, indexes after
fresh_targets
declare -A SERVICE_OF
for s in auth payments admin profile; do for t in ${TABLES[$s]}; do SERVICE_OF[$t]=$s; done; done
ddl_dir=$(mktemp -d)
for t in $ALL_TABLES; do
    s=${SERVICE_OF[$t]}
    # Save and drop this table's constraints and indexes (foreign keys first).
    psql_on "${PORT[$s]}" "bench_$s" -Atc "
        SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s;', conrelid::regclass, conname, pg_get_constraintdef(oid))
        FROM pg_constraint WHERE conrelid = 'public.$t'::regclass AND contype IN ('p','u','f') ORDER BY contype DESC" > "$ddl_dir/$t.constraints"
    psql_on "${PORT[$s]}" "bench_$s" -Atc "
        SELECT pg_get_indexdef(indexrelid) || ';' FROM pg_index i
        WHERE indrelid = 'public.$t'::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)" > "$ddl_dir/$t.indexes"
done
for s in auth payments admin profile; do
    psql_on "${PORT[$s]}" "bench_$s" -Atc "
        SELECT format('ALTER TABLE %s DROP CONSTRAINT %I;', conrelid::regclass, conname) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND contype = 'f'" | psql_on "${PORT[$s]}" "bench_$s"
    psql_on "${PORT[$s]}" "bench_$s" -Atc "
        SELECT format('ALTER TABLE %s DROP CONSTRAINT %I;', conrelid::regclass, conname) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND contype IN ('p','u')" | psql_on "${PORT[$s]}" "bench_$s"
    psql_on "${PORT[$s]}" "bench_$s" -Atc "
        SELECT format('DROP INDEX %s;', indexrelid::regclass) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        WHERE c.relnamespace = 'public'::regnamespace" | psql_on "${PORT[$s]}" "bench_$s"
done
pipe_table() {
    local t=$1 s=${SERVICE_OF[$1]}
    local cols
    cols=$(psql_on 5432 bench_legacy -Atc "SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'public.$t'::regclass AND attnum > 0 AND NOT attisdropped")
    psql_on 5432 bench_legacy -c "COPY (SELECT $cols FROM public.$t) TO STDOUT (FORMAT binary)" \
        | psql_on "${PORT[$s]}" "bench_$s" -c "COPY public.$t ($cols) FROM STDIN (FORMAT binary)"
    psql_on "${PORT[$s]}" "bench_$s" -f "$ddl_dir/$t.indexes"
    grep -v 'FOREIGN KEY' "$ddl_dir/$t.constraints" | psql_on "${PORT[$s]}" "bench_$s"
}
export -f pipe_table psql_on
export ddl_dir
export SERVICE_OF_DECL="$(declare -p SERVICE_OF PORT)"
t0=$(now)
printf '%s\n' payment_transactions payments audit_logs users user_profiles refresh_tokens system_config \
    | xargs -P 2 -I{} bash -c 'eval "$SERVICE_OF_DECL"; pipe_table {}'
for t in $ALL_TABLES; do
    s=${SERVICE_OF[$t]}
    grep 'FOREIGN KEY' "$ddl_dir/$t.constraints" | psql_on "${PORT[$s]}" "bench_$s" || true
done
t1=$(now)
pipe_s=$(secs "$t0" "$t1")
rm -rf "$ddl_dir"

live_cutover

# Rounded to 3 decimals (bc alone truncates, which would show 0.508 as .50).
ratio() { printf '%.3f' "$(echo "scale=6; $1 / $2" | bc)"; }
cat <<REPORT

migration benchmark: $rows rows, $size, scale $SCALE, $(nproc) cores, mfe --jobs $JOBS
  (a) mfe migrate copy                    $(printf '%.1f' "$copy_s") s   peak RSS ${copy_rss_mb} MB
  (b) pg_dump -Fd -j2 + pg_restore -j2    $(printf '%.1f' "$dump_s") s
  (c) raw binary COPY pipe, indexes after $(printf '%.1f' "$pipe_s") s
  mfe migrate verify                      $(printf '%.1f' "$verify_s") s   peak RSS ${verify_rss_mb} MB
  copy / raw pipe      $(ratio "$copy_s" "$pipe_s")x   (target <= 1.10)
  pg_dump+restore / copy  $(ratio "$dump_s" "$copy_s")x   (target >= 3)
  verify / copy        $(ratio "$verify_s" "$copy_s")x   (target <= 0.50)
REPORT
live_report
