#!/usr/bin/env bash
# The test command: brings the local stack up (installing it on a fresh machine), makes sure
# cargo-nextest is there, and runs every test of the workspace against real PostgreSQL and RabbitMQ.
# Extra arguments go to `cargo nextest run` (e.g. `scripts/test.sh -p auth-service`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/stack.sh up >/dev/null

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest (not on this machine)..."
    cargo install cargo-nextest --locked
fi

exec cargo nextest run --workspace --profile "${NEXTEST_PROFILE:-default}" "$@"
