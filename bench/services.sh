#!/usr/bin/env bash
# Service throughput against the database's own ceiling (issue 13 §1). Not a test.
#
# Starts the real services (release build; honours CARGO_TARGET_DIR, default target/) on their own
# fresh databases bench_auth (:5432), bench_payments (:5433), bench_admin (:5434), bench_profile
# (:5435), on ports 3101-3104 and the sandbox on 3110, with their own exchange and queues
# (bench.*). Seeds through the APIs and with SQL for volume: 10,000 users with profiles, a user
# with 1,000 payments (and 50,000 other payments), 1,000,000 audit_logs rows. Then, for each
# endpoint, wrk at a fixed concurrency (C connections, 2 threads, T seconds) and pgbench running
# the SQL that route runs (the store/*.rs queries, -M prepared, -c C -j 2 -T T), and prints
# endpoint, req/s, p50, p99, pgbench tps and the ratio req/s / tps.
#
#   bash bench/services.sh                  # C=16 T=15
#   C=32 T=20 bash bench/services.sh
#   ONLY=users,pay bash bench/services.sh   # some endpoints: users profile list audit pay
#
# Needs the stack up (bash scripts/stack.sh up); installs wrk from Debian when missing. Databases
# bench_* are dropped and created again on every run; the services are stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=bench/lib.sh
source bench/lib.sh

# --- seed volume with SQL -------------------------------------------------------------------
say "seeding 10k users + profiles, 1k payments of one user (+50k others), 1M audit_logs rows"
HASH=$(db auth -Atc "SELECT password_hash FROM users WHERE id = '$PAYER_ID'")
db auth -c "INSERT INTO users (id, email, password_hash, name, role, email_verified, created_at, updated_at)
    SELECT 'bench-u-' || n, 'u' || n || '@bench.local', '$HASH', 'User ' || n, 'CUSTOMER', true,
           now() - n * interval '1 minute', now()
    FROM generate_series(1, 10000) n" -c "ANALYZE users"
db profile -c "INSERT INTO user_profiles (id, user_id, bio, created_at, updated_at)
    SELECT 'bench-p-' || n, 'bench-u-' || n, 'bio ' || n, now(), now() FROM generate_series(1, 10000) n" \
    -c "ANALYZE user_profiles"
db payments -c "INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type,
        description, psp_transaction_id, psp_status, completed_at, created_at, updated_at)
    SELECT 'bench-pay-' || n, CASE WHEN n <= 1000 THEN '$LISTER_ID' ELSE 'bench-u-' || (n % 10000 + 1) END,
           CASE WHEN n <= 1000 THEN '$PAYEE_ID' ELSE 'bench-u-' || ((n * 7) % 10000 + 1) END,
           (n % 1900) + 1.25, 'USD', 'completed', 'instant', 'seeded ' || n, 'psp-' || n, 'succeeded',
           now() - n * interval '1 minute', now() - n * interval '1 minute', now() - n * interval '1 minute'
    FROM generate_series(1, 51000) n" -c "ANALYZE payments"
db admin -c "INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, details, ip_address, created_at)
    SELECT 'bench-a-' || n, 'bench-u-' || (n % 10000 + 1),
           (ARRAY['payment.created','payment.processing','payment.completed','payment.failed',
                  'user.registered','user.login','profile.updated','admin.access_denied'])[n % 8 + 1],
           'payment', 'bench-pay-' || (n % 51000 + 1), jsonb_build_object('amount', n % 1900, 'n', n),
           '10.0.' || (n % 250) || '.1', now() - n * interval '1 second'
    FROM generate_series(1, 1000000) n" -c "ANALYZE audit_logs"
# The seeding's writes are flushed now, not by a checkpoint in the middle of whichever
# measurement comes first (which then ran the service against a busy disk and pgbench without).
say "vacuum and checkpoint after seeding"
for svc in auth payments admin profile; do
    db "$svc" -qc "VACUUM ANALYZE" -c "CHECKPOINT"
done

# --- pgbench ---------------------------------------------------------------------------------
run_pgbench() { # name port db sqlfile [-D ...]
    local name="$1" port="$2" dbname="$3" file="$4"; shift 4
    pgbench -n -M prepared -h 127.0.0.1 -p "$port" -U postgres -c "$C" -j 2 -T "$T" -f "$file" "$@" \
        "$dbname" >"$WORK/$name.pgbench" 2>&1 || { cat "$WORK/$name.pgbench" >&2; echo 0; return; }
    awk '/^tps = / {print $3}' "$WORK/$name.pgbench" | tail -1
}

USER_COLS="id, email, password_hash, name, role::text AS role, email_verified, created_at, updated_at"
PROFILE_COLS="id, user_id, avatar_url, phone, address, bio, preferences, created_at, updated_at"
PAY_COLS="p.id, p.sender_id, p.recipient_id, p.amount, p.currency, p.status::text AS status, p.type::text AS payment_type, p.description, p.metadata, p.psp_transaction_id, p.psp_status, p.failure_reason, p.completed_at, p.created_at, p.updated_at, s.scheduled_at, s.\"interval\""
PAY_FROM="payments p LEFT JOIN payments.schedules s ON s.payment_id = p.id"
AUDIT_COLS="a.id, a.user_id, a.action, a.resource_type, a.resource_id, a.details::text AS details, a.ip_address, a.user_agent, a.created_at"

# GET /users/{id}: directory::get -> users::find_by_id
lua_get "$SERVICE_TOKEN" 'request = function() return wrk.format("GET", "/users/bench-u-" .. math.random(1, 10000)) end' >"$WORK/users.lua"
printf '\\set n random(1, 10000)\nSELECT %s FROM users WHERE id = %s;\n' "$USER_COLS" "'bench-u-' || :n" >"$WORK/users.sql"
# GET /profile/me: profiles::mine -> profiles::find_by_user (the profile exists)
lua_get "$PAYER_TOKEN" >"$WORK/profile.lua"
printf 'SELECT %s FROM user_profiles WHERE user_id = :uid;\n' "$PROFILE_COLS" >"$WORK/profile.sql"
# GET /payments (first page, direction all, default limit 20 asked as 21 to know of a next page):
# the union of the sent and the received side, each newest first, schedules joined to the page
# (store/payments.rs `list`)
lua_get "$LISTER_TOKEN" >"$WORK/list.lua"
SIDE="SELECT p.* FROM payments p WHERE"
ORDER="ORDER BY p.created_at DESC, p.id DESC LIMIT 21"
printf 'SELECT %s FROM ((%s p.sender_id = :uid %s) UNION ALL (%s p.recipient_id = :uid AND p.sender_id <> :uid %s)) p LEFT JOIN payments.schedules s ON s.payment_id = p.id %s;\n' \
    "$PAY_COLS" "$SIDE" "$ORDER" "$SIDE" "$ORDER" "$ORDER" >"$WORK/list.sql"
# GET /admin/audit-logs?action=payment.completed (first page)
lua_get "$ADMIN_TOKEN" >"$WORK/audit.lua"
printf "SELECT %s FROM audit_logs a WHERE TRUE AND a.action = 'payment.completed' ORDER BY a.created_at DESC, a.id DESC LIMIT 21;\n" \
    "$AUDIT_COLS" >"$WORK/audit.sql"
# POST /payments: instant, fresh Idempotency-Key each, recipient cached by payments after the first.
{
    cat "$WORK/common.lua"
    cat <<LUA
$(cat "$WORK/post.lua")
wrk.headers["Authorization"] = "Bearer $PAYER_TOKEN"
wrk.body = '{"recipientEmail":"payee@bench.local","amount":"12.34","type":"instant","description":"bench"}'
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = string.format("bench-%s-%d-%d-%d", "$RANDOM", tid or 0, counter, math.random(1, 1e9))
  return wrk.format()
end
LUA
} >"$WORK/pay.lua"
# The statements of create_claimed + charge_now + finish (store/idempotency_keys.rs, payments.rs,
# transactions.rs, jobs.rs, events outbox): claim the key; one transaction inserting the payment,
# its pending history row, payment.created, the job, reading it back and storing the answer;
# the charge moving it to processing and to completed (history, events, job removed); read back;
# the key's final answer. The provider call itself is not in it.
cat >"$WORK/pay.sql" <<SQL
\\set k random(1, 2000000000)
SELECT gen_random_uuid()::text AS pid \\gset
INSERT INTO payments.idempotency_keys AS k (caller, key, fingerprint, owner, locked_until) VALUES (:payer, 'pg-' || :k || '-' || :pid, 'fp', gen_random_uuid(), now() + interval '30 seconds') ON CONFLICT (caller, key) DO NOTHING;
BEGIN;
INSERT INTO payments (id, sender_id, recipient_id, amount, currency, status, type, description, metadata, created_at, updated_at) VALUES (:pid, :payer, :payee, 12.34, 'USD', 'pending', 'instant'::text::"PaymentType", 'bench', NULL, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC');
INSERT INTO payment_transactions (id, payment_id, status, status_message, psp_transaction_id, metadata, created_at) VALUES (gen_random_uuid()::text, :pid, 'pending'::text::"PaymentStatus", 'Payment created', NULL, NULL, clock_timestamp() AT TIME ZONE 'UTC');
INSERT INTO payments.outbox (id, event_type, payload) VALUES (gen_random_uuid(), 'payment.created', '{"paymentId":"x","amount":"12.34"}');
INSERT INTO payments.jobs (payment_id, kind, due_at) VALUES (:pid, 'charge', now() + interval '10 seconds') ON CONFLICT (payment_id) DO UPDATE SET kind = EXCLUDED.kind, due_at = EXCLUDED.due_at;
SELECT $PAY_COLS FROM $PAY_FROM WHERE p.id = :pid;
UPDATE payments.idempotency_keys SET response_status = 201, response_body = '{"id":"x"}' WHERE caller = :payer AND key = 'pg-' || :k || '-' || :pid;
COMMIT;
BEGIN;
SELECT $PAY_COLS FROM $PAY_FROM WHERE p.id = :pid FOR UPDATE OF p;
UPDATE payments SET status = 'processing'::text::"PaymentStatus", updated_at = now() AT TIME ZONE 'UTC' WHERE id = :pid;
INSERT INTO payment_transactions (id, payment_id, status, status_message, psp_transaction_id, metadata, created_at) VALUES (gen_random_uuid()::text, :pid, 'processing'::text::"PaymentStatus", 'Charging', NULL, NULL, clock_timestamp() AT TIME ZONE 'UTC');
INSERT INTO payments.outbox (id, event_type, payload) VALUES (gen_random_uuid(), 'payment.processing', '{"paymentId":"x"}');
COMMIT;
BEGIN;
SELECT $PAY_COLS FROM $PAY_FROM WHERE p.id = :pid FOR UPDATE OF p;
UPDATE payments SET status = 'completed'::text::"PaymentStatus", psp_transaction_id = 'psp-x', psp_status = 'succeeded', completed_at = now() AT TIME ZONE 'UTC', updated_at = now() AT TIME ZONE 'UTC' WHERE id = :pid;
INSERT INTO payment_transactions (id, payment_id, status, status_message, psp_transaction_id, metadata, created_at) VALUES (gen_random_uuid()::text, :pid, 'completed'::text::"PaymentStatus", 'Payment completed', 'psp-x', NULL, clock_timestamp() AT TIME ZONE 'UTC');
INSERT INTO payments.outbox (id, event_type, payload) VALUES (gen_random_uuid(), 'payment.completed', '{"paymentId":"x"}');
DELETE FROM payments.jobs WHERE payment_id = :pid;
COMMIT;
SELECT $PAY_COLS FROM $PAY_FROM WHERE p.id = :pid;
UPDATE payments.idempotency_keys SET response_status = 201, response_body = '{"id":"x"}', locked_until = NULL WHERE caller = :payer AND key = 'pg-' || :k || '-' || :pid;
SQL

declare -A ROW
ONLY="${ONLY:-users,profile,list,audit,pay}"
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }
bench() { # name label url lua port db sql [pgbench -D ...]
    wanted "$1" || return 0
    local name="$1" label="$2" url="$3" lua="$4" port="$5" dbname="$6" sql="$7"; shift 7
    say "$label: wrk -c $C -t 2 -d ${T}s, then pgbench -c $C -j 2 -T $T"
    local w t
    w=$(run_wrk "$name" "$url" "$lua")
    t=$(run_pgbench "$name" "$port" "$dbname" "$sql" "$@")
    ROW[$name]="$label|$w|$t"
}
bench users "GET /users/{id}" "$AUTH/users/x" "$WORK/users.lua" 5432 bench_auth "$WORK/users.sql"
bench profile "GET /profile/me" "$PROFILE_URL/profile/me" "$WORK/profile.lua" 5435 bench_profile "$WORK/profile.sql" -D "uid=$PAYER_ID"
bench list "GET /payments (1,000 payments, page 1)" "$PAYMENTS/payments" "$WORK/list.lua" 5433 bench_payments "$WORK/list.sql" -D "uid=$LISTER_ID"
bench audit "GET /admin/audit-logs?action= (1M rows)" "$ADMIN/admin/audit-logs?action=payment.completed" "$WORK/audit.lua" 5434 bench_admin "$WORK/audit.sql"
bench pay "POST /payments (instant, new key each)" "$PAYMENTS/payments" "$WORK/pay.lua" 5433 bench_payments "$WORK/pay.sql" -D "payer=$PAYER_ID" -D "payee=$PAYEE_ID"

echo
echo "services on their own databases, C=$C connections (wrk -t 2, pgbench -j 2 -M prepared), T=${T}s each, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%-42s %9s %9s %9s %12s %7s  %s\n' endpoint "req/s" "p50 ms" "p99 ms" "pgbench tps" ratio "non-2xx/errors"
for name in users profile list audit pay; do
    wanted "$name" || continue
    IFS='|' read -r label w t <<<"${ROW[$name]}"
    read -r rps p50 p99 non2xx errs <<<"$w"
    ratio=$(awk -v a="$rps" -v b="$t" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    printf '%-42s %9s %9s %9s %12.1f %7s  %s\n' "$label" "$rps" "$p50" "$p99" "$t" "${ratio}x" "$non2xx/$errs"
    ROW[$name.ratio]=$ratio
done
goal() { awk -v r="$2" -v g="$3" -v n="$1" 'BEGIN { printf "goal %s >= %.1fx pgbench: %s (%.2fx)\n", n, g, (r >= g ? "met" : "NOT met"), r }'; }
echo
if wanted users; then goal "GET /users/{id}" "${ROW[users.ratio]}" 0.5; fi
if wanted pay; then goal "POST /payments" "${ROW[pay.ratio]}" 0.3; fi
