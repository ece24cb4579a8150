#!/usr/bin/env bash
# Engines that replicate their own state, on this one machine, for the failover tests: a
# three-node RabbitMQ cluster from Debian's package (the same rabbitmq-server the stack runs),
# and a PostgreSQL primary with a synchronous streaming standby (the stack's PostgreSQL).
#
#   scripts/cluster.sh rabbit up       start three nodes and cluster them (idempotent)
#   scripts/cluster.sh rabbit down     stop them and forget their data
#   scripts/cluster.sh rabbit status   the cluster as node 1 sees it; exit 1 unless all three run
#   scripts/cluster.sh rabbit kill N   SIGKILL node N (1-3), as a crashed host
#   scripts/cluster.sh rabbit start N  start node N again (it rejoins with its data)
#   scripts/cluster.sh rabbit url      the RABBITMQ_URL list of the three nodes
#   scripts/cluster.sh pg up           a primary (node 1) and its standby made by pg_basebackup
#                                      (node 2), replicating synchronously (idempotent: made
#                                      again unless node 1 is the primary and node 2 streams)
#   scripts/cluster.sh pg down         stop both and forget their data
#   scripts/cluster.sh pg status       each node's role; exit 1 unless 1 is primary, 2 in sync
#   scripts/cluster.sh pg stop N       stop node N at once (-m immediate: as a crashed host)
#   scripts/cluster.sh pg promote N    promote standby N to primary
#   scripts/cluster.sh pg url DB       a libpq URL of database DB on both nodes, read-write wanted
#
# Nodes mfe-rabbit-N@localhost, AMQP on 5700+N, distribution on 25700+N, data under
# MFE_CLUSTER_DIR (default /tmp/mfe-cluster); guest/guest from loopback; no plugins (the stack's
# node keeps 15672). PostgreSQL nodes on 5800+N, data under the same directory, trust auth from
# loopback. The stack's own servers are left alone. Must run as root.
set -euo pipefail

readonly BASE="${MFE_CLUSTER_DIR:-/tmp/mfe-cluster}"
readonly NODES=(1 2 3)
readonly WAIT_SECS="${CLUSTER_WAIT_SECS:-60}"

name() { echo "mfe-rabbit-$1@localhost"; }
amqp_port() { echo $((5700 + $1)); }

# rabbitmq-server and rabbitmqctl switch to the rabbitmq user when run as root: its home holds
# the Erlang cookie every node and rabbitmqctl share, and its files must be its own.
node_env() {
    local n=$1 dir="$BASE/rabbit-$1"
    shift
    env RABBITMQ_NODENAME="$(name "$n")" \
        RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
        RABBITMQ_DIST_PORT=$((25700 + n)) \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$dir/pid" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
        "$@"
}

ctl() { local n=$1; shift; rabbitmqctl -q -n "$(name "$n")" "$@"; }

running() { ctl "$1" await_startup --timeout 1 >/dev/null 2>&1; }

prepare() {
    local n=$1 dir="$BASE/rabbit-$1"
    mkdir -p "$dir/mnesia" "$dir/log"
    echo '[].' >"$dir/enabled_plugins"
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = $(amqp_port "$n")
loopback_users.guest = true
CONF
    chown -R rabbitmq:rabbitmq "$dir"
}

start_node() {
    local n=$1
    running "$n" && return 0
    prepare "$n"
    node_env "$n" setsid rabbitmq-server >"$BASE/rabbit-$n/log/console.log" 2>&1 &
    local waited=0
    # await_startup needs the node reachable first: it is not until it has registered.
    until running "$n"; do
        if ((waited >= WAIT_SECS)); then
            echo "node $(name "$n") did not start in ${WAIT_SECS}s (see $BASE/rabbit-$n/log)" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

joined() { ctl 1 cluster_status --formatter json 2>/dev/null | grep -q "\"$(name "$1")\""; }

rabbit_up() {
    command -v rabbitmq-server >/dev/null || apt-get install -y -q rabbitmq-server >/dev/null
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in 2 3; do
        joined "$n" && continue
        {
            ctl "$n" stop_app
            ctl "$n" reset
            ctl "$n" join_cluster "$(name 1)"
            ctl "$n" start_app
        } >/dev/null 2>&1 || { echo "node $(name "$n") could not join $(name 1)" >&2; exit 1; }
    done
    rabbit_status >/dev/null
    echo "rabbitmq cluster up: $(rabbit_url)"
}

rabbit_down() {
    for n in "${NODES[@]}"; do
        if running "$n"; then ctl "$n" stop >/dev/null 2>&1 || true; fi
        kill_node "$n" 2>/dev/null || true
    done
    rm -rf "$BASE"
    echo "rabbitmq cluster down"
}

kill_node() {
    local pid
    pid=$(cat "$BASE/rabbit-$1/pid" 2>/dev/null) || return 0
    kill -9 "$pid" 2>/dev/null || true
}

rabbit_status() {
    local all=0
    for n in "${NODES[@]}"; do
        if running "$n"; then echo "$(name "$n") :$(amqp_port "$n") running"; else echo "$(name "$n") :$(amqp_port "$n") DOWN"; all=1; fi
    done
    return $all
}

rabbit_url() {
    local urls=()
    for n in "${NODES[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/%2f"); done
    (IFS=,; echo "${urls[*]}")
}


# --- PostgreSQL: a primary and a synchronous standby ------------------------------------------
readonly PG_NODES=(1 2)
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
pg_port() { echo $((5800 + $1)); }
pg_dir() { echo "$BASE/pg-$1"; }
as_pg() { runuser -u postgres -- "$@"; }
pg_sql() { local n=$1; shift; as_pg "$PGBIN/psql" -XAtq -h 127.0.0.1 -p "$(pg_port "$n")" -U postgres -d postgres "$@"; }
pg_running() { as_pg "$PGBIN/pg_ctl" -D "$(pg_dir "$1")" status >/dev/null 2>&1; }
pg_start() {
    local n=$1
    pg_running "$n" && return 0
    as_pg "$PGBIN/pg_ctl" -D "$(pg_dir "$n")" -l "$(pg_dir "$n")/server.log" -w -t "$WAIT_SECS" start >/dev/null ||
        { echo "PostgreSQL node $n did not start (see $(pg_dir "$n")/server.log)" >&2; exit 1; }
}

# Node 1 primary, node 2 streaming from it as the synchronous standby.
pg_healthy() {
    pg_running 1 && pg_running 2 &&
        [ "$(pg_sql 1 -c "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] &&
        [ "$(pg_sql 1 -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'mfe_standby'" 2>/dev/null)" = sync ]
}

pg_up() {
    [ -n "$PGBIN" ] || { echo "PostgreSQL's server is not installed (run scripts/stack.sh up)" >&2; exit 1; }
    if pg_healthy; then echo "postgres cluster up: $(pg_url '<db>')"; return 0; fi
    pg_down >/dev/null
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    local one two
    one="$(pg_dir 1)" two="$(pg_dir 2)"
    install -d -o postgres -g postgres -m 700 "$one"
    install -d -o postgres -g postgres -m 755 "$BASE/pg-run"
    as_pg "$PGBIN/initdb" -D "$one" -U postgres --auth=trust --locale=C.UTF-8 --encoding=UTF8 >/dev/null
    # Every commit waits for the standby to have it on disk: a payment answered 2xx survives the
    # primary's loss. The standby's copy of this file gets its own line after it.
    cat >>"$one/postgresql.conf" <<CONF
port = $(pg_port 1)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE/pg-run'
synchronous_standby_names = 'mfe_standby'
max_connections = 200
wal_keep_size = '256MB'
CONF
    pg_start 1
    install -d -o postgres -g postgres -m 700 "$two"
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$(pg_port 1)" -U postgres -D "$two" -R -X stream >/dev/null
    # Promoted, node 2 has no standby of its own: it must not wait for one.
    cat >>"$two/postgresql.conf" <<CONF
port = $(pg_port 2)
synchronous_standby_names = ''
CONF
    echo "primary_conninfo = 'host=127.0.0.1 port=$(pg_port 1) user=postgres application_name=mfe_standby'" >>"$two/postgresql.auto.conf"
    pg_start 2
    local waited=0
    until pg_healthy; do
        if ((waited >= WAIT_SECS)); then
            echo "the standby did not reach synchronous streaming in ${WAIT_SECS}s (see $two/server.log)" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "postgres cluster up: $(pg_url '<db>')"
}

pg_down() {
    for n in "${PG_NODES[@]}"; do
        [ -d "$(pg_dir "$n")" ] && as_pg "$PGBIN/pg_ctl" -D "$(pg_dir "$n")" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$(pg_dir "$n")"
    done
    rm -rf "$BASE/pg-run"
    echo "postgres cluster down"
}

pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$(pg_dir "${1:?which node (1-2)}")" -m immediate stop >/dev/null; }

pg_promote() { as_pg "$PGBIN/pg_ctl" -D "$(pg_dir "${1:?which node (1-2)}")" -w promote >/dev/null; }

pg_status() {
    for n in "${PG_NODES[@]}"; do
        if ! pg_running "$n"; then echo "node $n :$(pg_port "$n") DOWN"; continue; fi
        case "$(pg_sql "$n" -c "SELECT pg_is_in_recovery()" 2>/dev/null)" in
            f) echo "node $n :$(pg_port "$n") primary" ;;
            t) echo "node $n :$(pg_port "$n") standby" ;;
            *) echo "node $n :$(pg_port "$n") not answering" ;;
        esac
    done
    pg_healthy
}

pg_url() {
    echo "postgresql://postgres:postgres@127.0.0.1:$(pg_port 1),127.0.0.1:$(pg_port 2)/${1:?which database}?target_session_attrs=read-write"
}

case "${1:-}/${2:-}" in
    rabbit/up) rabbit_up ;;
    rabbit/down) rabbit_down ;;
    rabbit/status) rabbit_status ;;
    rabbit/kill) kill_node "${3:?which node (1-3)}" ;;
    rabbit/start) start_node "${3:?which node (1-3)}" ;;
    rabbit/url) rabbit_url ;;
    pg/up) pg_up ;;
    pg/down) pg_down ;;
    pg/status) pg_status ;;
    pg/stop) pg_stop "${3:-}" ;;
    pg/promote) pg_promote "${3:-}" ;;
    pg/url) pg_url "${3:-}" ;;
    *) sed -n '2,26p' "$0" >&2; exit 2 ;;
esac
