#!/usr/bin/env bash
# The main job, the whole platform in one command:
#
#   1. the local stack (four PostgreSQL clusters, RabbitMQ) up; release build;
#   2. a legacy shared database (`mfe_poc2`, scale $SCALE, default 1: ~380k rows), seeded if it is
#      not there, and the live POC-2 writing to it all along (`mfe legacy write-load`);
#   3. the migration with the writes running: plan, prepare, copy, sync, verify;
#   4. cutover, printing how long writes were frozen; the write load then stops with its report;
#   5. the platform started with `mfe dev` (four services and the PSP sandbox, on the split
#      databases), and a flow through all four (scripts/flow.sh): a new user registers and gets a
#      profile by event, migrated users log in with their legacy passwords, one pays the other
#      through the sandbox, the audit log shows the payment and its chain verifies;
#   6. what happened, and where each service listens.
#
#   bash scripts/main.sh              # the above, then stop the platform
#   bash scripts/main.sh --rollback   # ... then roll back to the legacy database (the platform
#                                     #     restarted on it by mfe dev) and show the flow's writes there
#   bash scripts/main.sh --serve      # ... and keep the platform running (Ctrl-C stops);
#                                     #     combine with --rollback to serve from legacy
#   SCALE=0.1 bash scripts/main.sh    # a smaller legacy database
#   UI=127.0.0.1:8090 bash scripts/main.sh   # each phase serves its live view there (a browser
#                                     #     on that page follows copy, sync, verify, cutover)
#
# Each run rehearses from scratch: the service databases are dropped, and a legacy database left
# frozen or captured by an earlier run is released first (its data, with that run's writes, stays).
# Logs: data/logs/ (mfe dev's prefixed service logs in data/logs/dev.log).
set -euo pipefail
cd "$(dirname "$0")/.."

ROLLBACK=0 SERVE=0
for arg in "$@"; do
    case "$arg" in
        --rollback) ROLLBACK=1 ;;
        --serve) SERVE=1 ;;
        *) echo "usage: $0 [--rollback] [--serve]" >&2; exit 2 ;;
    esac
done

SCALE="${SCALE:-1}"
bash scripts/stack.sh up
cargo build --release --bin mfe --bin auth-service --bin profile-service --bin payments-service --bin admin-service --bin psp-sandbox
BIN="${CARGO_TARGET_DIR:-target}/release"
MFE="$BIN/mfe"
started=$(date +%s)

export SHARED_DATABASE_URL="${SHARED_DATABASE_URL:-postgresql://postgres:postgres@localhost:5432/mfe_poc2}"
export AUTH_DATABASE_URL="${AUTH_DATABASE_URL:-postgresql://postgres:postgres@localhost:5432/auth_db}"
export PAYMENTS_DATABASE_URL="${PAYMENTS_DATABASE_URL:-postgresql://postgres:postgres@localhost:5433/payments_db}"
export ADMIN_DATABASE_URL="${ADMIN_DATABASE_URL:-postgresql://postgres:postgres@localhost:5434/admin_db}"
export PROFILE_DATABASE_URL="${PROFILE_DATABASE_URL:-postgresql://postgres:postgres@localhost:5435/profile_db}"
export MFE_TOPOLOGY_FILE="${MFE_TOPOLOGY_FILE:-data/topology.env}"
export MFE_DEV_PIDFILE="${MFE_DEV_PIDFILE:-data/dev.pid}"
mkdir -p data/logs

seeded=$(psql -X -Atq "$SHARED_DATABASE_URL" -c "SELECT to_regclass('public.users') IS NOT NULL" 2>/dev/null || echo f)
if [ "$seeded" != "t" ]; then
    echo "== seeding the legacy database (scale $SCALE)"
    $MFE legacy seed --url "$SHARED_DATABASE_URL" --scale "$SCALE" --seed 42
else
    echo "== releasing the legacy database from an earlier run (freeze, capture slot, rollback state)"
    psql -X -q "$SHARED_DATABASE_URL" -c "DROP SCHEMA IF EXISTS mfe_cutover CASCADE" \
        -c "DROP SCHEMA IF EXISTS mfe_rollback CASCADE" \
        -c "DROP SCHEMA IF EXISTS auth CASCADE" -c "DROP SCHEMA IF EXISTS payments CASCADE" \
        -c "DROP SCHEMA IF EXISTS admin CASCADE" -c "DROP SCHEMA IF EXISTS profile CASCADE"
fi
echo "== fresh service databases"
for url in "$AUTH_DATABASE_URL" "$PAYMENTS_DATABASE_URL" "$ADMIN_DATABASE_URL" "$PROFILE_DATABASE_URL"; do
    db="${url##*/}"; db="${db%%\?*}"
    psql -X -q "${url%/*}/postgres" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$db'" >/dev/null
    psql -X -q "${url%/*}/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
done
# Before cutover the platform runs on the legacy database.
printf '# main.sh: before cutover\nDATABASE_TOPOLOGY=shared\n' >"$MFE_TOPOLOGY_FILE"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== the live POC-2 writes to the legacy database (logs: data/logs/write-load.log)"
$MFE legacy write-load --url "$SHARED_DATABASE_URL" --rate 100 --duration 86400 --workers 4 \
    >data/logs/write-load.log 2>&1 &
load_pid=$!
pids+=("$load_pid")

echo "== plan";    $MFE migrate plan
echo "== prepare"; $MFE migrate prepare
# With UI set, each long phase serves the live view on it; the page reconnects to the next.
VIEW=(${UI:+--ui "$UI"})
echo "== copy (writes running)"; $MFE migrate copy "${VIEW[@]}"
echo "== sync";    $MFE migrate sync "${VIEW[@]}"
echo "== verify (writes running: rows still changing are left to cutover)"; $MFE migrate verify "${VIEW[@]}"
echo "== cutover"
$MFE migrate cutover "${VIEW[@]}" | tee data/logs/cutover.txt

echo "== the live POC-2 stops: its writes after the freeze were refused"
kill -TERM "$load_pid"
wait "$load_pid" || true
tail -n 20 data/logs/write-load.log

echo "== event hub: exchange and consumer queues (before any publisher runs)"
$MFE events declare

export AUTH_DATA_DIR="${AUTH_DATA_DIR:-data/auth}"
export AUTH_BOOTSTRAP_ADMIN_EMAIL="${AUTH_BOOTSTRAP_ADMIN_EMAIL:-admin@mfe.local}"
export AUTH_BOOTSTRAP_ADMIN_PASSWORD="${AUTH_BOOTSTRAP_ADMIN_PASSWORD:-change-me-admin}"
export AUTH_SERVICE_CLIENTS="${AUTH_SERVICE_CLIENTS:-payments-service=dev-payments-secret-123,admin-service=dev-admin-secret-12345,profile-service=dev-profile-secret-1234}"
export AUTH_SERVICE_PORT="${AUTH_SERVICE_PORT:-3001}" PROFILE_SERVICE_PORT="${PROFILE_SERVICE_PORT:-3004}"
export PAYMENTS_SERVICE_PORT="${PAYMENTS_SERVICE_PORT:-3002}" PSP_SANDBOX_PORT="${PSP_SANDBOX_PORT:-3010}"
export ADMIN_SERVICE_PORT="${ADMIN_SERVICE_PORT:-3003}"
export PAYMENTS_AUTH_CLIENT_SECRET="${PAYMENTS_AUTH_CLIENT_SECRET:-dev-payments-secret-123}"
export ADMIN_AUTH_CLIENT_SECRET="${ADMIN_AUTH_CLIENT_SECRET:-dev-admin-secret-12345}"
export PSP_WEBHOOK_SECRET="${PSP_WEBHOOK_SECRET:-dev-psp-webhook-secret-123}"
export PSP_URL="${PSP_URL:-http://localhost:$PSP_SANDBOX_PORT}"
export PSP_WEBHOOK_URL="${PSP_WEBHOOK_URL:-http://localhost:$PAYMENTS_SERVICE_PORT/psp/webhooks}"
export AUTH_SERVICE_URL="${AUTH_SERVICE_URL:-http://localhost:$AUTH_SERVICE_PORT}"
AUTH="http://localhost:$AUTH_SERVICE_PORT" PROFILE="http://localhost:$PROFILE_SERVICE_PORT"
PAYMENTS="http://localhost:$PAYMENTS_SERVICE_PORT" ADMIN="http://localhost:$ADMIN_SERVICE_PORT"
export AUTH PROFILE PAYMENTS ADMIN

wait_ready() {
    for url in "$PSP_URL/health" "$AUTH/ready" "$ADMIN/ready" "$PROFILE/ready" "$PAYMENTS/ready"; do
        for _ in $(seq 1 300); do
            curl -fsS "$url" >/dev/null 2>&1 && break
            sleep 0.1
        done
        curl -fsS "$url" >/dev/null || { echo "not ready: $url (see data/logs/dev.log)" >&2; exit 1; }
    done
}

echo "== mfe dev: the platform, in the topology the cutover switched to (logs: data/logs/dev.log)"
$MFE dev >data/logs/dev.log 2>&1 &
dev_pid=$!
pids+=("$dev_pid")
wait_ready
grep -m1 -i "topology" data/logs/dev.log || true

FLOW_OUT=data/logs/flow.json bash scripts/flow.sh

echo "== the audit chain, checked straight in admin_db"
$MFE admin verify-audit

elapsed=$(( $(date +%s) - started ))
echo
echo "== what happened (${elapsed} s)"
echo "  legacy mfe_poc2 (scale $SCALE) migrated live to auth_db, payments_db, admin_db, profile_db"
grep -m1 "frozen for" data/logs/cutover.txt | sed 's/^/  /' || true
echo "  the flow registered $(jq -r .email data/logs/flow.json), paid $(jq -r .paymentId data/logs/flow.json) through the sandbox; the audit chain verifies"
echo "  listening: auth $AUTH, payments $PAYMENTS, admin $ADMIN, profile $PROFILE, psp-sandbox $PSP_URL"
status_json=$($MFE migrate status --json)
echo "  migration: $(jq -r '.state' <<<"$status_json"); legacy capture slot: $(jq -r 'if .capture.exists then "still there" else "dropped by cutover" end' <<<"$status_json"); WAL kept by the way back: $(jq -r '[.wayBack[].retainedBytes] | add // 0' <<<"$status_json") bytes in $(jq -r '.wayBack | length' <<<"$status_json") slots"

if [ "$ROLLBACK" = 1 ]; then
    echo
    echo "== rollback: back to the legacy database with every write made since cutover"
    $MFE migrate rollback "${VIEW[@]}"
    $MFE migrate verify >/dev/null 2>&1 && echo "  mfe migrate verify: the legacy and service databases are equal"
    wait_ready
    echo "== the flow's writes, in the legacy database"
    user_id=$(jq -r .userId data/logs/flow.json) payment_id=$(jq -r .paymentId data/logs/flow.json)
    psql -X "$SHARED_DATABASE_URL" -v user_id="$user_id" -v payment_id="$payment_id" <<'SQL'
SELECT id, email, name FROM users WHERE id = :'user_id';
SELECT user_id, bio, phone FROM user_profiles WHERE user_id = :'user_id';
SELECT id, amount, currency, status, psp_transaction_id FROM payments WHERE id = :'payment_id';
SELECT status, created_at FROM payment_transactions WHERE payment_id = :'payment_id' ORDER BY created_at;
SELECT action, details->>'to' AS "to", created_at FROM audit_logs WHERE resource_id = :'payment_id' ORDER BY created_at;
SQL
    echo "== the services, restarted on the legacy database, serve it"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$AUTH/auth/login" -H 'Content-Type: application/json' \
        --data "{\"email\":\"$(jq -r .email data/logs/flow.json)\",\"password\":\"flow-password-1\"}")
    [ "$code" = 200 ] || { echo "the flow's user cannot log in after the rollback: HTTP $code" >&2; exit 1; }
    echo "  the flow's user logs in against the shared topology: HTTP $code"
fi

if [ "$SERVE" = 1 ]; then
    echo "== serving (Ctrl-C stops): auth $AUTH, payments $PAYMENTS, admin $ADMIN, profile $PROFILE, psp-sandbox $PSP_URL"
    wait "$dev_pid"
fi
