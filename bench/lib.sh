# Shared by the bench/ scripts (sourced, from the repository's root): wrk and pgbench, then the
# platform of scripts/platform.sh (release build, databases bench_<service>, the services on ports
# 3101-3104 and the sandbox on 3110, exchange and queues bench.*), a third user with payments to
# list, and wrk with a Lua reporter. Everything started is stopped at exit.

C="${C:-16}"
T="${T:-15}"

# --- tools and binaries ---------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    printf '== installing wrk\n' >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
command -v pgbench >/dev/null || { echo "pgbench missing (postgresql-client)" >&2; exit 1; }

NAME=bench PORT=3100
# The sandbox answers at once unless the script says otherwise: the figures are the platform's.
export PSP_SANDBOX_LATENCY_MS="${PSP_SANDBOX_LATENCY_MS:-0}"
# shellcheck source=scripts/platform.sh
source scripts/platform.sh
read -r LISTER_ID LISTER_TOKEN < <(register lister@bench.local)

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
# The start of a POST script whose requests each need something unique: `tid` (the wrk thread,
# set by setup) and `counter` (per thread), e.g. for an Idempotency-Key or an email.
cat >"$WORK/post.lua" <<'LUA'
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", thread_id); thread_id = thread_id + 1 end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
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
