#!/usr/bin/env bash
# The main job: bring the local stack up, seed a legacy shared database (`mfe_poc2`, scale
# $SCALE, default 1: ~380k rows) if it is not there yet, then migrate it to the four service
# databases with `mfe migrate plan / prepare / copy / verify` (verify's summary table), start the
# services on the migrated databases and run a flow through them (scripts/flow.sh), ending with
# the audit trail of the flow's payment and the audit chain verified.
#
# Each run rehearses the migration from scratch: the four service databases are dropped first (the
# legacy database is kept), because the flow writes to them and a second verify would rightly
# report those writes as differences.
#
#   bash scripts/main.sh            # migrate, start the services, run the flow, stop them
#   bash scripts/main.sh --serve    # ... and keep the services running (Ctrl-C stops)
#   SCALE=0.1 bash scripts/main.sh  # a smaller legacy database
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${SCALE:-1}"
bash scripts/stack.sh up
cargo build --release --bin mfe --bin auth-service --bin profile-service --bin payments-service --bin admin-service --bin psp-sandbox
MFE=target/release/mfe

export SHARED_DATABASE_URL="${SHARED_DATABASE_URL:-postgresql://postgres:postgres@localhost:5432/mfe_poc2}"
seeded=$(psql -X -Atq "$SHARED_DATABASE_URL" -c "SELECT to_regclass('public.users') IS NOT NULL" 2>/dev/null || echo f)
if [ "$seeded" != "t" ]; then
    echo "== seeding the legacy database (scale $SCALE)"
    $MFE legacy seed --url "$SHARED_DATABASE_URL" --scale "$SCALE" --seed 42
fi

export AUTH_DATABASE_URL="${AUTH_DATABASE_URL:-postgresql://postgres:postgres@localhost:5432/auth_db}"
export PAYMENTS_DATABASE_URL="${PAYMENTS_DATABASE_URL:-postgresql://postgres:postgres@localhost:5433/payments_db}"
export ADMIN_DATABASE_URL="${ADMIN_DATABASE_URL:-postgresql://postgres:postgres@localhost:5434/admin_db}"
export PROFILE_DATABASE_URL="${PROFILE_DATABASE_URL:-postgresql://postgres:postgres@localhost:5435/profile_db}"
echo "== fresh service databases"
for url in "$AUTH_DATABASE_URL" "$PAYMENTS_DATABASE_URL" "$ADMIN_DATABASE_URL" "$PROFILE_DATABASE_URL"; do
    db="${url##*/}"; db="${db%%\?*}"
    psql -X -q "${url%/*}/postgres" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
done

echo "== plan";    $MFE migrate plan
echo "== prepare"; $MFE migrate prepare
echo "== copy";    $MFE migrate copy
echo "== verify";  $MFE migrate verify
# copy made a capture slot on the legacy database (live sync); this job does not sync yet, and
# an unread slot makes the server keep WAL without bound.
echo "== abort";   $MFE migrate abort

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
mkdir -p data/logs
pids=()
stop_services() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_services EXIT

echo "== event hub: exchange and consumer queues (before any publisher runs)"
$MFE events declare

echo "== services (logs in data/logs/)"
for svc in psp-sandbox auth-service admin-service profile-service payments-service; do
    target/release/$svc >"data/logs/$svc.log" 2>&1 &
    pids+=("$!")
done
# The sandbox has no dependencies to be ready for: its health is its readiness.
for url in "$PSP_URL/health" "http://localhost:$AUTH_SERVICE_PORT/ready" \
    "http://localhost:$ADMIN_SERVICE_PORT/ready" "http://localhost:$PROFILE_SERVICE_PORT/ready" \
    "http://localhost:$PAYMENTS_SERVICE_PORT/ready"; do
    for _ in $(seq 1 200); do
        curl -fsS "$url" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "$url" >/dev/null || { echo "not ready: $url (see data/logs/)" >&2; exit 1; }
    echo "  ready: $url"
done

AUTH="http://localhost:$AUTH_SERVICE_PORT" PROFILE="http://localhost:$PROFILE_SERVICE_PORT" \
    PAYMENTS="http://localhost:$PAYMENTS_SERVICE_PORT" ADMIN="http://localhost:$ADMIN_SERVICE_PORT" \
    bash scripts/flow.sh

echo "== the audit chain, checked straight in admin_db"
$MFE admin verify-audit

if [ "${1:-}" = "--serve" ]; then
    echo "== serving: auth :$AUTH_SERVICE_PORT, payments :$PAYMENTS_SERVICE_PORT, admin :$ADMIN_SERVICE_PORT, profile :$PROFILE_SERVICE_PORT, psp-sandbox :$PSP_SANDBOX_PORT (Ctrl-C stops; migrated users log in with their legacy passwords)"
    wait
fi
