# A local platform for the scripts that drive the real services from outside (bench/*.sh,
# scripts/schemathesis.sh). Sourced from the repository's root after setting:
#
#   NAME           prefix of its databases (NAME_auth, ...), exchange (NAME.events), queues
#                  (NAME.<service>.events), users (payer@NAME.local) and secrets
#   PORT           base port: auth PORT+1, payments +2, admin +3, profile +4, the sandbox +10
#   BUILD_PROFILE  release (default) or debug; NO_BUILD=1 runs the binaries as already built
#   PSP_SANDBOX_*  the sandbox's settings, where its defaults do not suit
#
# It builds (honouring CARGO_TARGET_DIR), brings the stack up, creates the four databases afresh
# on the stack's clusters, starts the sandbox and the four services, waits for /ready, registers
# payer@NAME.local and payee@NAME.local and takes the bootstrap ADMIN's and a service credential's
# tokens. It leaves: WORK (logs), say, db SERVICE PSQL-ARGS, post, register EMAIL -> "id token",
# AUTH PAYMENTS ADMIN PROFILE_URL SANDBOX, PAYER_ID PAYER_TOKEN PAYEE_ID, ADMIN_TOKEN,
# SERVICE_TOKEN. Everything started is stopped at exit; WORK is removed unless KEEP is set.

BUILD_PROFILE="${BUILD_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="$(mktemp -d "/tmp/mfe-$NAME.XXXXXX")"
PG=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n "${KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '== %s\n' "$*" >&2; }

# --- binaries and the stack -------------------------------------------------------------------
case "$BUILD_PROFILE" in
    debug) BUILD=() BIN="$TARGET/debug" ;;
    release) BUILD=(--release) BIN="$TARGET/release" ;;
    *) echo "the build profile must be debug or release, not $BUILD_PROFILE" >&2; exit 2 ;;
esac
if [[ -z "${NO_BUILD:-}" ]]; then
    say "$BUILD_PROFILE build ($TARGET)"
    cargo build "${BUILD[@]}" -q --bin auth-service --bin payments-service --bin admin-service \
        --bin profile-service --bin psp-sandbox
fi
bash scripts/stack.sh up >/dev/null

# --- databases --------------------------------------------------------------------------------
declare -A PORT_OF=([auth]=5432 [payments]=5433 [admin]=5434 [profile]=5435)
for svc in auth payments admin profile; do
    "${PG[@]}" -p "${PORT_OF[$svc]}" -d postgres -c "DROP DATABASE IF EXISTS ${NAME}_$svc WITH (FORCE)" \
        -c "CREATE DATABASE ${NAME}_$svc"
done
db() { "${PG[@]}" -p "${PORT_OF[$1]}" -d "${NAME}_$1" "${@:2}"; }

# --- services ---------------------------------------------------------------------------------
AUTH=http://127.0.0.1:$((PORT + 1)) PAYMENTS=http://127.0.0.1:$((PORT + 2))
ADMIN=http://127.0.0.1:$((PORT + 3)) PROFILE_URL=http://127.0.0.1:$((PORT + 4))
SANDBOX=http://127.0.0.1:$((PORT + 10))
export DATABASE_TOPOLOGY=split MFE_TOPOLOGY_FILE="$WORK/topology.env"
for svc in auth payments admin profile; do
    export "${svc^^}_DATABASE_URL=postgresql://postgres@127.0.0.1:${PORT_OF[$svc]}/${NAME}_$svc"
done
export AUTH_SERVICE_PORT=$((PORT + 1)) PAYMENTS_SERVICE_PORT=$((PORT + 2))
export ADMIN_SERVICE_PORT=$((PORT + 3)) PROFILE_SERVICE_PORT=$((PORT + 4)) PSP_SANDBOX_PORT=$((PORT + 10))
export AUTH_SERVICE_URL="$AUTH" PSP_URL="$SANDBOX" PSP_WEBHOOK_URL="$PAYMENTS/psp/webhooks"
export PSP_WEBHOOK_SECRET="$NAME-psp-webhook-secret-0123456789"
export AUTH_DATA_DIR="$WORK/auth" AUTH_ACCESS_TOKEN_TTL_SECS=7200
export AUTH_BOOTSTRAP_ADMIN_EMAIL="admin@$NAME.local" AUTH_BOOTSTRAP_ADMIN_PASSWORD="$NAME-admin-password"
CLIENT_SECRET="$NAME-client-secret-0123456789"
export PAYMENTS_AUTH_CLIENT_SECRET="$NAME-payments-secret-0123456789"
export ADMIN_AUTH_CLIENT_SECRET="$NAME-admin-secret-0123456789"
export PROFILE_AUTH_CLIENT_SECRET="$NAME-profile-secret-0123456789"
export AUTH_SERVICE_CLIENTS="$NAME-client=$CLIENT_SECRET,payments-service=$PAYMENTS_AUTH_CLIENT_SECRET,admin-service=$ADMIN_AUTH_CLIENT_SECRET,profile-service=$PROFILE_AUTH_CLIENT_SECRET"
export EVENTS_EXCHANGE="$NAME.events" RUST_LOG="${RUST_LOG:-warn}"

start() { # name binary
    EVENTS_QUEUE="$NAME.$1.events" "$BIN/$2" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
}
start sandbox psp-sandbox
start auth auth-service
start payments payments-service
start admin admin-service
start profile profile-service
# The sandbox has no database, so no /ready: it is up when it answers.
for url in "$SANDBOX/health" "$AUTH/ready" "$PAYMENTS/ready" "$ADMIN/ready" "$PROFILE_URL/ready"; do
    for _ in $(seq 1 300); do
        curl -fsS "$url" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "$url" >/dev/null || { echo "$url not ready; logs in $WORK" >&2; KEEP=1; exit 1; }
done
say "services up (logs in $WORK)"

# --- users and tokens through the APIs --------------------------------------------------------
post() { curl -fsS -X POST -H 'Content-Type: application/json' "$@"; }
register() { # email -> "id token"
    post "$AUTH/auth/register" --data "{\"email\":\"$1\",\"password\":\"$NAME-password-1\",\"name\":\"User ${1%%@*}\"}" |
        jq -r '"\(.user.id) \(.accessToken)"'
}
read -r PAYER_ID PAYER_TOKEN < <(register "payer@$NAME.local")
read -r PAYEE_ID _ < <(register "payee@$NAME.local")
ADMIN_TOKEN=$(post "$AUTH/auth/login" --data \
    "{\"email\":\"$AUTH_BOOTSTRAP_ADMIN_EMAIL\",\"password\":\"$AUTH_BOOTSTRAP_ADMIN_PASSWORD\"}" | jq -r .accessToken)
SERVICE_TOKEN=$(post "$AUTH/auth/service-token" --data \
    "{\"clientId\":\"$NAME-client\",\"clientSecret\":\"$CLIENT_SECRET\"}" | jq -r .accessToken)
for t in "$PAYER_TOKEN" "$ADMIN_TOKEN" "$SERVICE_TOKEN"; do
    [[ -n "$t" && "$t" != null ]] || { echo "no token; logs in $WORK" >&2; KEEP=1; exit 1; }
done
