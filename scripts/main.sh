#!/usr/bin/env bash
# The main job: bring the local stack up, seed a legacy shared database (`mfe_poc2`, scale
# $SCALE, default 1: ~380k rows) if it is not there yet, then migrate it to the four service
# databases with `mfe migrate plan / prepare / copy / verify`, ending with verify's summary table.
#
#   bash scripts/main.sh            # the migration
#   bash scripts/main.sh --serve    # ... then run auth-service on the migrated auth_db (Ctrl-C stops)
#   SCALE=0.1 bash scripts/main.sh  # a smaller legacy database
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE="${SCALE:-1}"
bash scripts/stack.sh up
cargo build --release --bin mfe --bin auth-service
MFE=target/release/mfe

export SHARED_DATABASE_URL="${SHARED_DATABASE_URL:-postgresql://postgres:postgres@localhost:5432/mfe_poc2}"
seeded=$(psql -X -Atq "$SHARED_DATABASE_URL" -c "SELECT to_regclass('public.users') IS NOT NULL" 2>/dev/null || echo f)
if [ "$seeded" != "t" ]; then
    echo "== seeding the legacy database (scale $SCALE)"
    $MFE legacy seed --url "$SHARED_DATABASE_URL" --scale "$SCALE" --seed 42
fi

echo "== plan";    $MFE migrate plan
echo "== prepare"; $MFE migrate prepare
echo "== copy";    $MFE migrate copy
echo "== verify";  $MFE migrate verify

if [ "${1:-}" = "--serve" ]; then
    export AUTH_DATA_DIR="${AUTH_DATA_DIR:-data/auth}"
    export AUTH_BOOTSTRAP_ADMIN_EMAIL="${AUTH_BOOTSTRAP_ADMIN_EMAIL:-admin@mfe.local}"
    export AUTH_BOOTSTRAP_ADMIN_PASSWORD="${AUTH_BOOTSTRAP_ADMIN_PASSWORD:-change-me-admin}"
    export AUTH_SERVICE_CLIENTS="${AUTH_SERVICE_CLIENTS:-payments-service=dev-payments-secret-123,admin-service=dev-admin-secret-12345,profile-service=dev-profile-secret-1234}"
    echo "== auth-service on http://localhost:${AUTH_SERVICE_PORT:-3001} (migrated users log in with their legacy passwords)"
    exec target/release/auth-service
fi
