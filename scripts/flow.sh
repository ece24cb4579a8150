#!/usr/bin/env bash
# A flow through the running services, as a client sees them: a migrated user logs in with their
# POC-2 password and reads their migrated profile; a new user registers and gets a profile through
# the event hub; the new user edits it. Migrated alice pays migrated bob through the payment
# provider; both see it with names; a declined payment fails with its reason; a retried POST with
# the same Idempotency-Key gets the same payment. The bootstrap ADMIN then reads the payment's audit
# trail (created, processing, completed) from admin, sees a customer's refused attempt audited,
# and verifies the audit chain. Exits non-zero at the first step that does not hold.
#
#   AUTH=http://localhost:3001 PROFILE=http://localhost:3004 PAYMENTS=http://localhost:3002 \
#     ADMIN=http://localhost:3003 bash scripts/flow.sh
set -euo pipefail

AUTH="${AUTH:-http://localhost:3001}"
PROFILE="${PROFILE:-http://localhost:3004}"
PAYMENTS="${PAYMENTS:-http://localhost:3002}"
ADMIN="${ADMIN:-http://localhost:3003}"
ADMIN_EMAIL="${AUTH_BOOTSTRAP_ADMIN_EMAIL:-admin@mfe.local}"
ADMIN_PASSWORD="${AUTH_BOOTSTRAP_ADMIN_PASSWORD:-change-me-admin}"

step() { printf '  %-66s' "$1"; }
ok() { printf 'ok  %s\n' "${1:-}"; }
fail() { printf 'FAILED\n    %s\n' "$1" >&2; exit 1; }

# call METHOD URL [TOKEN] [BODY] -> prints the body; the status goes to $STATUS_FILE
STATUS_FILE="$(mktemp)"
trap 'rm -f "$STATUS_FILE"' EXIT
call() {
    local method="$1" url="$2" token="${3:-}" body="${4:-}"
    local args=(-sS -X "$method" -o - -w '%{stderr}%{http_code}')
    [[ -n "$token" ]] && args+=(-H "Authorization: Bearer $token")
    [[ -n "${IDEMPOTENCY_KEY:-}" ]] && args+=(-H "Idempotency-Key: $IDEMPOTENCY_KEY")
    [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data "$body")
    curl "${args[@]}" "$url" 2>"$STATUS_FILE"
}
status() { cat "$STATUS_FILE"; }

echo "== flow: auth $AUTH, profile $PROFILE, payments $PAYMENTS, admin $ADMIN"

step "migrated user alice@legacy.test logs in (legacy bcrypt)"
login=$(call POST "$AUTH/auth/login" "" '{"email":"alice@legacy.test","password":"alice-legacy-2024"}')
[[ "$(status)" == 200 ]] || fail "login: HTTP $(status): $login"
alice_token=$(jq -r .accessToken <<<"$login")
alice_id=$(jq -r .user.id <<<"$login")
ok "$alice_id"

step "alice reads her profile from profile_db"
me=$(call GET "$PROFILE/profile/me" "$alice_token")
[[ "$(status)" == 200 ]] || fail "profile: HTTP $(status): $me"
[[ "$(jq -r .userId <<<"$me")" == "$alice_id" ]] || fail "profile of someone else: $me"
ok "bio: $(jq -c .bio <<<"$me" | cut -c1-40)"

email="flow-$(date +%s)-$RANDOM@example.com"
step "a new user registers with auth"
reg=$(call POST "$AUTH/auth/register" "" "{\"email\":\"$email\",\"password\":\"flow-password-1\",\"name\":\"Flow User\"}")
[[ "$(status)" == 201 ]] || fail "register: HTTP $(status): $reg"
new_token=$(jq -r .accessToken <<<"$reg")
new_id=$(jq -r .user.id <<<"$reg")
ok "$email"

step "user.registered reaches profile: default profile exists"
found=""
for _ in $(seq 1 100); do
    got=$(call GET "$PROFILE/profiles/$new_id" "$new_token")
    if [[ "$(status)" == 200 ]]; then found=1; break; fi
    sleep 0.05
done
[[ -n "$found" ]] || fail "no profile for $new_id after 5 s (last: HTTP $(status) $got)"
ok "created by the event, not by this request"

step "the new user edits the profile (PATCH)"
edited=$(call PATCH "$PROFILE/profile/me" "$new_token" '{"bio":"Hello from the flow","phone":"+4915112345678"}')
[[ "$(status)" == 200 ]] || fail "patch: HTTP $(status): $edited"
[[ "$(jq -r .bio <<<"$edited")" == "Hello from the flow" ]] || fail "edit not applied: $edited"
ok

step "an invalid edit is refused with 422 naming the field"
bad=$(call PATCH "$PROFILE/profile/me" "$new_token" '{"phone":"12345"}')
[[ "$(status)" == 422 && "$(jq -r '.error.fields[0].field' <<<"$bad")" == phone ]] || fail "HTTP $(status): $bad"
ok

step "another user cannot see that profile"
call GET "$PROFILE/profiles/$new_id" "$alice_token" >/dev/null
[[ "$(status)" == 404 ]] || fail "HTTP $(status)"
ok

step "migrated user bob@legacy.test logs in"
login=$(call POST "$AUTH/auth/login" "" '{"email":"bob@legacy.test","password":"bob-legacy-2024"}')
[[ "$(status)" == 200 ]] || fail "login: HTTP $(status): $login"
bob_token=$(jq -r .accessToken <<<"$login")
bob_id=$(jq -r .user.id <<<"$login")
ok "$bob_id"

step "alice's migrated payments are listed with names"
listed=$(call GET "$PAYMENTS/payments?direction=all&limit=5" "$alice_token")
[[ "$(status)" == 200 ]] || fail "list: HTTP $(status): $listed"
[[ "$(jq '.items | length' <<<"$listed")" -gt 0 ]] || fail "no legacy payments: $listed"
ok "$(jq -r '.items[0] | "\(.amount) \(.currency) \(.senderName) -> \(.recipientName)"' <<<"$listed")"

key="flow-$(date +%s)-$RANDOM"
step "alice pays bob 12.34 (Idempotency-Key $key)"
paid=$(IDEMPOTENCY_KEY="$key" call POST "$PAYMENTS/payments" "$alice_token" \
    '{"recipientEmail":"bob@legacy.test","amount":"12.34","type":"instant","description":"flow"}')
[[ "$(status)" == 201 || "$(status)" == 202 ]] || fail "pay: HTTP $(status): $paid"
payment_id=$(jq -r .id <<<"$paid")
ok "$payment_id ($(jq -r .status <<<"$paid"))"

step "the payment completes through the provider"
final=""
for _ in $(seq 1 100); do
    final=$(call GET "$PAYMENTS/payments/$payment_id" "$alice_token")
    [[ "$(jq -r .status <<<"$final")" == completed ]] && break
    sleep 0.1
done
[[ "$(jq -r .status <<<"$final")" == completed ]] || fail "not completed: $final"
ok "psp $(jq -r .pspTransactionId <<<"$final")"

step "its history: pending, processing, completed"
history=$(call GET "$PAYMENTS/payments/$payment_id/transactions" "$alice_token")
[[ "$(jq -r '[.items[].status] | join(",")' <<<"$history")" == "pending,processing,completed" ]] || fail "$history"
ok

step "bob sees it received, with alice's name"
received=$(call GET "$PAYMENTS/payments?direction=received&limit=1" "$bob_token")
[[ "$(jq -r '.items[0].id' <<<"$received")" == "$payment_id" ]] || fail "not in bob's list: $received"
ok "from $(jq -r '.items[0].senderName' <<<"$received")"

step "alice sees it sent, with bob's name"
sent=$(call GET "$PAYMENTS/payments?direction=sent&limit=1" "$alice_token")
[[ "$(jq -r '.items[0].id' <<<"$sent")" == "$payment_id" ]] || fail "not in alice's list: $sent"
ok "to $(jq -r '.items[0].recipientName' <<<"$sent")"

step "the same POST with the same Idempotency-Key: the same payment"
again=$(IDEMPOTENCY_KEY="$key" call POST "$PAYMENTS/payments" "$alice_token" \
    '{"recipientEmail":"bob@legacy.test","amount":"12.34","type":"instant","description":"flow"}')
[[ "$(jq -r .id <<<"$again")" == "$payment_id" ]] || fail "HTTP $(status): $again"
ok "replayed"

step "a declined payment (2001.00) ends failed with its reason"
declined=$(call POST "$PAYMENTS/payments" "$alice_token" \
    '{"recipientEmail":"bob@legacy.test","amount":"2001.00","type":"instant"}')
[[ "$(jq -r .status <<<"$declined")" == failed ]] || fail "HTTP $(status): $declined"
ok "$(jq -r .failureReason <<<"$declined")"

step "the bootstrap ADMIN logs in"
login=$(call POST "$AUTH/auth/login" "" "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}")
[[ "$(status)" == 200 ]] || fail "login: HTTP $(status): $login"
admin_token=$(jq -r .accessToken <<<"$login")
ok "$ADMIN_EMAIL"

step "the payment's audit trail: created, processing, completed"
trail_steps=""
for _ in $(seq 1 100); do
    trail=$(call GET "$ADMIN/admin/audit-logs?resourceType=payment&resourceId=$payment_id" "$admin_token")
    [[ "$(status)" == 200 ]] || fail "audit: HTTP $(status): $trail"
    trail_steps=$(jq -r '[.items | reverse | .[] | if .action == "payment.created" then "created" else .details.to end] | join(",")' <<<"$trail")
    [[ "$trail_steps" == "created,processing,completed" ]] && break
    sleep 0.1
done
[[ "$trail_steps" == "created,processing,completed" ]] || fail "trail: $trail_steps: $trail"
ok "by $(jq -r '.items[0].details.userName' <<<"$trail")"

step "alice may not read the audit log (403), and that is audited"
call GET "$ADMIN/admin/audit-logs" "$alice_token" >/dev/null
[[ "$(status)" == 403 ]] || fail "HTTP $(status)"
denied=""
for _ in $(seq 1 100); do
    denied=$(call GET "$ADMIN/admin/audit-logs?action=admin.access_denied&userId=$alice_id&limit=1" "$admin_token")
    [[ "$(jq '.items | length' <<<"$denied")" -gt 0 ]] && break
    sleep 0.1
done
[[ "$(jq '.items | length' <<<"$denied")" -gt 0 ]] || fail "not audited: $denied"
ok "$(jq -r '.items[0] | "\(.details.method) \(.resourceId) from \(.ipAddress)"' <<<"$denied")"

step "the audit chain verifies (every row as it was written)"
verified=$(call GET "$ADMIN/admin/audit-logs/verify" "$admin_token")
[[ "$(jq -r .valid <<<"$verified")" == true ]] || fail "HTTP $(status): $verified"
ok "$(jq -r '"\(.chainedRows) chained, \(.anchoredRows) legacy rows anchored"' <<<"$verified")"

echo "== flow: all steps passed"
# What the flow wrote, for the caller (main.sh shows it in the legacy database after a rollback).
if [[ -n "${FLOW_OUT:-}" ]]; then
    jq -n --arg email "$email" --arg user "$new_id" --arg payment "$payment_id" \
        --arg declined "$(jq -r .id <<<"$declined")" \
        '{email: $email, userId: $user, paymentId: $payment, declinedPaymentId: $declined}' >"$FLOW_OUT"
fi
