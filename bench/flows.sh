#!/usr/bin/env bash
# End-to-end flows through the real services (issue 13 §1). Not a test.
#
# - events: wrk registers new users (POST /auth/register, a unique email each) at C connections
#   for T seconds; then the script waits until every registered user has a profile, which the
#   profile service creates from `user.registered` (auth's outbox -> relay -> RabbitMQ -> profile's
#   consumer). Prints registrations/s until the last profile exists, and p50/p99 from commit to
#   consumer: auth's outbox row (`occurred_at`, the registration's transaction) to profile's inbox
#   row (`processed_at`, the transaction that applied it), matched by event id.
# - psp: wrk posts instant payments (a fresh Idempotency-Key each) at C connections for T seconds
#   through the sandbox PSP at its own defaults (80 ms per call); then waits until none of them is
#   `pending` or `processing`. Prints payments/s from the first POST until the last is `completed`,
#   and p50/p99 of created -> completed.
# - settle: the same with amounts the sandbox leaves `pending` and settles later by a signed
#   webhook (3000.xx, PSP_SANDBOX_SETTLE_DELAY_MS, 2 s by default): payments/s until the last
#   webhook completed its payment.
#
#   bash bench/flows.sh                    # C=16 T=15, all three
#   ONLY=events C=32 bash bench/flows.sh
#
# Needs the stack up (bash scripts/stack.sh up); uses bench/lib.sh (release build, bench_*
# databases, ports 3101-3104/3110).
set -euo pipefail
cd "$(dirname "$0")/.."

# The provider as it is by default, not the instant one of bench/services.sh.
export PSP_SANDBOX_LATENCY_MS="${PSP_SANDBOX_LATENCY_MS:-80}"
# shellcheck source=bench/lib.sh
source bench/lib.sh

ONLY="${ONLY:-events,psp,settle}"
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }
now() { date +%s.%N; }
# Waits until `db <svc> -Atc SQL` prints 0 (at most 300 s); prints the time it did.
wait_zero() { # svc sql
    for _ in $(seq 1 3000); do
        [[ "$(db "$1" -Atc "$2")" == 0 ]] && { now; return; }
        sleep 0.1
    done
    echo "still not done after 300 s: $2" >&2
    exit 1
}
# p50 and p99 (ms) of the numbers on stdin.
percentiles() {
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- -"; exit }
        i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999)
        printf "%.1f %.1f\n", v[i50], v[i99] }'
}
declare -A ROW

# --- events: registration -> profile ------------------------------------------------------------
if wanted events; then
    say "events: wrk POST /auth/register -c $C -d ${T}s, then wait for every profile"
    cat >"$WORK/register.lua" <<LUA
$(cat "$WORK/common.lua")
$(cat "$WORK/post.lua")
request = function()
  counter = counter + 1
  local email = string.format("reg-%s-%d-%d@bench.local", "$RANDOM", tid or 0, counter)
  wrk.body = '{"email":"' .. email .. '","password":"bench-password-1","name":"Registered"}'
  return wrk.format()
end
LUA
    started=$(now)
    w=$(run_wrk register "$AUTH/auth/register" "$WORK/register.lua")
    users=$(db auth -Atc "SELECT count(*) FROM users WHERE email LIKE 'reg-%'")
    # Profiles live in another database: wait until profile has applied every `user.registered`
    # auth committed (profile records the event in the transaction that creates the profile).
    published=$(db auth -Atc "SELECT count(*) FROM auth.outbox WHERE event_type = 'user.registered'")
    done_at=""
    for _ in $(seq 1 3000); do
        applied=$(db profile -Atc "SELECT count(*) FROM profile.processed_events WHERE event_type = 'user.registered'")
        [[ "$applied" == "$published" ]] && { done_at=$(now); break; }
        sleep 0.1
    done
    [[ -n "$done_at" ]] || { echo "profiles: $applied of $published events applied after 300 s" >&2; exit 1; }
    profiles=$(db profile -Atc "SELECT count(*) FROM user_profiles")
    rate=$(awk -v n="$users" -v a="$started" -v b="$done_at" 'BEGIN { printf "%.1f", n / (b - a) }')
    # Commit -> consumer, by event id, across the two databases.
    db auth -Atc "SELECT id, extract(epoch FROM occurred_at) FROM auth.outbox WHERE event_type = 'user.registered'" |
        sort >"$WORK/outbox.txt"
    db profile -Atc "SELECT event_id, extract(epoch FROM processed_at) FROM profile.processed_events WHERE event_type = 'user.registered'" |
        sort >"$WORK/inbox.txt"
    read -r p50 p99 < <(join -t '|' "$WORK/outbox.txt" "$WORK/inbox.txt" |
        awk -F'|' '{ printf "%.3f\n", ($3 - $2) * 1000 }' | percentiles)
    read -r rps _ _ non2xx errs <<<"$w"
    ROW[events]="registration -> profile exists|$users|$rate|$p50|$p99|$rps req/s answered, $non2xx non-2xx, $errs errors; $profiles profiles"
fi

# --- psp: POST /payments -> completed -----------------------------------------------------------
pay_flow() { # name amount-lua-expr label
    local name="$1" amount="$2" label="$3"
    cat >"$WORK/$name.lua" <<LUA
$(cat "$WORK/common.lua")
$(cat "$WORK/post.lua")
wrk.headers["Authorization"] = "Bearer $PAYER_TOKEN"
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = string.format("$name-%s-%d-%d", "$RANDOM", tid or 0, counter)
  wrk.body = '{"recipientEmail":"payee@bench.local","amount":"' .. $amount .. '","type":"instant","description":"$name"}'
  return wrk.format()
end
LUA
    say "$name: wrk POST /payments -c $C -d ${T}s, then wait until every payment completed"
    local started w done_at count rate p50 p99 rps non2xx errs failed
    started=$(now)
    w=$(run_wrk "$name" "$PAYMENTS/payments" "$WORK/$name.lua")
    done_at=$(wait_zero payments "SELECT count(*) FROM payments WHERE description = '$name' AND status IN ('pending', 'processing')")
    count=$(db payments -Atc "SELECT count(*) FROM payments WHERE description = '$name' AND status = 'completed'")
    failed=$(db payments -Atc "SELECT count(*) FROM payments WHERE description = '$name' AND status <> 'completed'")
    rate=$(awk -v n="$count" -v a="$started" -v b="$done_at" 'BEGIN { printf "%.1f", n / (b - a) }')
    read -r p50 p99 < <(db payments -Atc "SELECT extract(epoch FROM completed_at - created_at) * 1000
        FROM payments WHERE description = '$name' AND status = 'completed'" | percentiles)
    read -r rps _ _ non2xx errs <<<"$w"
    ROW[$name]="$label|$count|$rate|$p50|$p99|$rps req/s answered, $non2xx non-2xx, $errs errors, $failed not completed"
}
# Amounts the sandbox accepts at once; 3000.xx it leaves pending and settles by webhook.
if wanted psp; then pay_flow psp '"12.34"' "POST /payments -> completed (PSP ${PSP_SANDBOX_LATENCY_MS} ms)"; fi
if wanted settle; then pay_flow settle 'string.format("3000.%02d", counter % 100)' "POST /payments -> webhook -> completed"; fi

echo
echo "flows through the real services, C=$C connections, T=${T}s of load each, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%-44s %8s %10s %12s %12s  %s\n' flow count "per s" "p50 ms" "p99 ms" "load"
for name in events psp settle; do
    wanted "$name" || continue
    IFS='|' read -r label count rate p50 p99 note <<<"${ROW[$name]}"
    printf '%-44s %8s %10s %12s %12s  %s\n' "$label" "$count" "$rate" "$p50" "$p99" "$note"
done
echo "(events: p50/p99 from auth's outbox commit to profile's consumer; psp/settle: created -> completed)"
