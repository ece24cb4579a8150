#!/usr/bin/env bash
# The test command: brings the local stack up (installing it on a fresh machine), makes sure
# cargo-nextest is there, and runs every test of the workspace against real PostgreSQL and RabbitMQ:
# first everything that can share the machine, in parallel; then, alone, the tests that stop and
# restart a shared server, RabbitMQ or the payments cluster, or run clusters of their own, three
# RabbitMQ nodes or a PostgreSQL primary and standby (nextest profile `outages`). Installs what the browser test of the dashboard needs
# (scripts/ui-deps.sh) too.
# Extra arguments go to the first `cargo nextest run` only (e.g. `scripts/test.sh -p auth-service`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/stack.sh up >/dev/null
# The browser test of the migration's live view: Debian's chromium and playwright-core.
bash scripts/ui-deps.sh

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest (not on this machine)..."
    cargo install cargo-nextest --locked
fi

cargo nextest run --workspace --profile "${NEXTEST_PROFILE:-default}" "$@"
if [ "$#" -eq 0 ]; then
    # The failover tests bring up a three-node RabbitMQ cluster and a PostgreSQL primary with
    # its standby (scripts/cluster.sh); they go down afterwards whatever the outcome.
    trap 'bash scripts/cluster.sh rabbit down >/dev/null 2>&1 || true; bash scripts/cluster.sh pg down >/dev/null 2>&1 || true' EXIT
    cargo nextest run --workspace --profile outages
fi
