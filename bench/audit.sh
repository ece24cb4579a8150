#!/usr/bin/env bash
# The audit log's filtered export and deep pages (issue 24 §3). Not a test.
#
# Starts the real services (scripts/platform.sh: release build, databases benchaudit_<service>,
# ports 3201-3204), seeds ROWS (1,000,000) audit rows of one action among as many of others, and
# measures, RUNS (2) times each:
#   - GET /admin/audit-logs/export?format=csv&action=<that action>: seconds, rows, admin's peak
#     RSS; against the raw COPY pipe of the same rows in the same order (psql \copy of the
#     export's query to /dev/null), the native anchor;
#   - GET /admin/audit-logs?action=<that action>&limit=100: the first page and a page 900,000 rows
#     deep (its cursor made from the row there), median of 20 requests each.
#
#   bash bench/audit.sh
#   ROWS=200000 RUNS=3 bash bench/audit.sh
#
# Needs the stack up (bash scripts/stack.sh up). Its databases are dropped and made again on every
# run; the services are stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${ROWS:-1000000}"
RUNS="${RUNS:-2}"
NAME=benchaudit PORT=3200
# shellcheck source=scripts/platform.sh
source scripts/platform.sh
ADMIN_PID="${PIDS[3]}"

say "seeding $ROWS rows of action bench.export and as many of others"
db admin -qc "INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, ip_address, created_at)
    SELECT 'bench-a-' || n, 'bench-u-' || (n % 10000 + 1),
           CASE WHEN n % 2 = 0 THEN 'bench.export' ELSE 'bench.other.' || (n % 7) END,
           'payment', 'bench-pay-' || (n % 51000 + 1), jsonb_build_object('amount', n % 1900, 'n', n),
           '10.0.' || (n % 250) || '.1', now() - n * interval '10 milliseconds'
    FROM generate_series(1, 2 * $ROWS) n" -c "VACUUM ANALYZE audit_logs" -c "CHECKPOINT"

COLS="a.id, a.user_id, a.action, a.resource_type, a.resource_id, a.details::text AS details, a.ip_address, a.user_agent, a.created_at"
QUERY="SELECT $COLS FROM audit_logs a WHERE TRUE AND a.action = 'bench.export' ORDER BY a.created_at DESC, a.id DESC"

peak_mib() { awk '/^VmHWM:/ { printf "%d", $2 / 1024 }' "/proc/$ADMIN_PID/status"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo
printf '%-4s %-44s %10s %12s %10s\n' run measurement seconds rows "peak MiB"
for run in $(seq 1 "$RUNS"); do
    t0=$(date +%s.%N)
    rows=$(curl -fsS -H "Authorization: Bearer $ADMIN_TOKEN" \
        "$ADMIN/admin/audit-logs/export?format=csv&action=bench.export" | wc -l)
    t1=$(date +%s.%N)
    export_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    printf '%-4s %-44s %10s %12s %10s\n' "$run" "export csv, action filter (service)" "$export_s" "$((rows - 1))" "$(peak_mib)"

    t0=$(date +%s.%N)
    db admin -qc "\\copy ($QUERY) TO '/dev/null' WITH (FORMAT csv)"
    t1=$(date +%s.%N)
    copy_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    printf '%-4s %-44s %10s %12s %10s\n' "$run" "raw COPY pipe of the same rows (anchor)" "$copy_s" "$ROWS" "-"
    awk -v s="$export_s" -v c="$copy_s" -v r="$run" 'BEGIN { printf "%-4s %-44s %10.2fx\n", r, "export / COPY", s / c }'

    deep=$(db admin -Atc "SELECT to_char(created_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '|' || id
        FROM audit_logs WHERE action = 'bench.export' ORDER BY created_at DESC, id DESC
        OFFSET $((ROWS * 9 / 10)) LIMIT 1")
    # The API's cursors are the key base64url-encoded without padding.
    deep=$(printf '%s' "$deep" | base64 -w0 | tr '+/' '-_' | tr -d '=')
    page() { # extra query string -> seconds of one request
        curl -fsS -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $ADMIN_TOKEN" \
            --get --data-urlencode "action=bench.export" --data-urlencode "limit=100" "$@" \
            "$ADMIN/admin/audit-logs"
    }
    first=$(for _ in $(seq 1 20); do page; done | median)
    deep_ms=$(for _ in $(seq 1 20); do page --data-urlencode "cursor=$deep"; done | median)
    awk -v f="$first" -v d="$deep_ms" -v r="$run" -v n="$((ROWS * 9 / 10))" 'BEGIN {
        printf "%-4s %-44s %10.4f\n", r, "first page (100 rows), median of 20", f
        printf "%-4s %-44s %10.4f\n", r, "page " n " rows deep, median of 20", d }'
done
echo
echo "$(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'); $((2 * ROWS)) audit rows, $ROWS matching"
