#!/usr/bin/env bash
# The main job, as far as the platform goes today: bring the local stack up and run the auth
# service on :3001 against auth_db (created and migrated at start), with a bootstrap admin and a
# service client so the API can be tried at once. Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/stack.sh up
cargo build --release --bin auth-service

export AUTH_DATABASE_URL="${AUTH_DATABASE_URL:-postgresql://postgres:postgres@localhost:5432/auth_db}"
export AUTH_DATA_DIR="${AUTH_DATA_DIR:-data/auth}"
export AUTH_BOOTSTRAP_ADMIN_EMAIL="${AUTH_BOOTSTRAP_ADMIN_EMAIL:-admin@mfe.local}"
export AUTH_BOOTSTRAP_ADMIN_PASSWORD="${AUTH_BOOTSTRAP_ADMIN_PASSWORD:-change-me-admin}"
export AUTH_SERVICE_CLIENTS="${AUTH_SERVICE_CLIENTS:-payments-service=dev-payments-secret-123,admin-service=dev-admin-secret-12345,profile-service=dev-profile-secret-1234}"

cat <<INFO
auth-service on http://localhost:${AUTH_SERVICE_PORT:-3001}
  try:   curl -s localhost:${AUTH_SERVICE_PORT:-3001}/health
         curl -s -XPOST localhost:${AUTH_SERVICE_PORT:-3001}/auth/login -H 'content-type: application/json' \\
              -d '{"email":"$AUTH_BOOTSTRAP_ADMIN_EMAIL","password":"<AUTH_BOOTSTRAP_ADMIN_PASSWORD>"}'
  docs:  http://localhost:${AUTH_SERVICE_PORT:-3001}/openapi.json
INFO
exec target/release/auth-service
