# Shared by the bench/ scripts (sourced, from the repository's root): the release build, fresh
# databases bench_<service> on the stack's four clusters, the real services and the sandbox on ports
# 3101-3104 and 3110 with their own exchange and queues (bench.*), users and tokens made through
# the APIs, and wrk with a Lua reporter. Everything started is stopped at exit.

C="${C:-16}"
T="${T:-15}"
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET/release"
WORK="$(mktemp -d /tmp/mfe-bench.XXXXXX)"
PG=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n "${KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '== %s\n' "$*" >&2; }

# --- tools and binaries ---------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    say "installing wrk"
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
command -v pgbench >/dev/null || { echo "pgbench missing (postgresql-client)" >&2; exit 1; }
# NO_BUILD=1 runs the binaries already in $TARGET/release as they are.
if [[ -z "${NO_BUILD:-}" ]]; then
    say "release build ($TARGET)"
    cargo build --release -q --bin auth-service --bin payments-service --bin admin-service \
        --bin profile-service --bin psp-sandbox
fi

# --- databases ------------------------------------------------------------------------------
declare -A PORT_OF=([auth]=5432 [payments]=5433 [admin]=5434 [profile]=5435)
for svc in auth payments admin profile; do
    "${PG[@]}" -p "${PORT_OF[$svc]}" -d postgres -c "DROP DATABASE IF EXISTS bench_$svc WITH (FORCE)" \
        -c "CREATE DATABASE bench_$svc"
done
db() { "${PG[@]}" -p "${PORT_OF[$1]}" -d "bench_$1" "${@:2}"; }

# --- services -------------------------------------------------------------------------------
export DATABASE_TOPOLOGY=split MFE_TOPOLOGY_FILE="$WORK/topology.env"
export AUTH_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/bench_auth"
export PAYMENTS_DATABASE_URL="postgresql://postgres@127.0.0.1:5433/bench_payments"
export ADMIN_DATABASE_URL="postgresql://postgres@127.0.0.1:5434/bench_admin"
export PROFILE_DATABASE_URL="postgresql://postgres@127.0.0.1:5435/bench_profile"
export AUTH_SERVICE_PORT=3101 PAYMENTS_SERVICE_PORT=3102 ADMIN_SERVICE_PORT=3103 PROFILE_SERVICE_PORT=3104
export PSP_SANDBOX_PORT=3110
export AUTH_SERVICE_URL=http://127.0.0.1:3101 PSP_URL=http://127.0.0.1:3110
export PSP_WEBHOOK_URL=http://127.0.0.1:3102/psp/webhooks
export PSP_WEBHOOK_SECRET=bench-psp-webhook-secret-123
# The sandbox answers at once: the figures are the platform's, not a provider's simulated 80 ms.
export PSP_SANDBOX_LATENCY_MS="${PSP_SANDBOX_LATENCY_MS:-0}"
export AUTH_DATA_DIR="$WORK/auth" AUTH_ACCESS_TOKEN_TTL_SECS=7200
export AUTH_BOOTSTRAP_ADMIN_EMAIL=bench-admin@bench.local AUTH_BOOTSTRAP_ADMIN_PASSWORD=bench-admin-password
export AUTH_SERVICE_CLIENTS="bench-client=bench-client-secret-123,payments-service=bench-payments-secret-123,admin-service=bench-admin-secret-12345,profile-service=bench-profile-secret-1234"
export PAYMENTS_AUTH_CLIENT_SECRET=bench-payments-secret-123 ADMIN_AUTH_CLIENT_SECRET=bench-admin-secret-12345
export PROFILE_AUTH_CLIENT_SECRET=bench-profile-secret-1234
export EVENTS_EXCHANGE=bench.events RUST_LOG="${RUST_LOG:-warn}"
AUTH=http://127.0.0.1:3101 PAYMENTS=http://127.0.0.1:3102 ADMIN=http://127.0.0.1:3103 PROFILE=http://127.0.0.1:3104

start() { # name binary
    EVENTS_QUEUE="bench.$1.events" "$BIN/$2" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
}
start psp psp-sandbox
start auth auth-service
start payments payments-service
start admin admin-service
start profile profile-service
for url in "$AUTH" "$PAYMENTS" "$ADMIN" "$PROFILE"; do
    for _ in $(seq 1 300); do
        curl -fsS "$url/ready" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "$url/ready" >/dev/null || { echo "$url not ready; logs in $WORK" >&2; KEEP=1; exit 1; }
done
say "services up (logs in $WORK)"

# --- seed through the APIs ------------------------------------------------------------------
post() { curl -fsS -X POST -H 'Content-Type: application/json' "$@"; }
register() { # email -> "id token"
    post "$AUTH/auth/register" --data "{\"email\":\"$1\",\"password\":\"bench-password-1\",\"name\":\"Bench ${1%%@*}\"}" |
        jq -r '"\(.user.id) \(.accessToken)"'
}
read -r PAYER_ID PAYER_TOKEN < <(register payer@bench.local)
read -r PAYEE_ID _ < <(register payee@bench.local)
read -r LISTER_ID LISTER_TOKEN < <(register lister@bench.local)
ADMIN_TOKEN=$(post "$AUTH/auth/login" --data \
    "{\"email\":\"$AUTH_BOOTSTRAP_ADMIN_EMAIL\",\"password\":\"$AUTH_BOOTSTRAP_ADMIN_PASSWORD\"}" | jq -r .accessToken)
SERVICE_TOKEN=$(post "$AUTH/auth/service-token" --data \
    '{"clientId":"bench-client","clientSecret":"bench-client-secret-123"}' | jq -r .accessToken)
[[ "$SERVICE_TOKEN" != null && "$ADMIN_TOKEN" != null ]] || { echo "no service/admin token" >&2; exit 1; }

# --- wrk --------------------------------------------------------------------------------------
# wrk -s LUA URL -> "req/s p50_ms p99_ms non2xx"
cat >"$WORK/common.lua" <<'LUA'
local bad = 0
response = function(status) if status >= 300 then bad = bad + 1 end end
done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("RESULT %.1f %.2f %.2f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
lua_get() { # token [path-lua-expr]
    cat "$WORK/common.lua"
    cat <<LUA
wrk.headers["Authorization"] = "Bearer $1"
${2:-}
LUA
}
run_wrk() { # name url lua-file
    wrk -t 2 -c "$C" -d "${T}s" --latency -s "$3" "$2" >"$WORK/$1.wrk" 2>&1
    grep '^RESULT' "$WORK/$1.wrk" | cut -d' ' -f2-
}
