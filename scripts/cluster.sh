#!/usr/bin/env bash
# Engines that replicate their own state, on this one machine, for the failover tests: a
# three-node RabbitMQ cluster from Debian's package (the same rabbitmq-server the stack runs).
#
#   scripts/cluster.sh rabbit up       start three nodes and cluster them (idempotent)
#   scripts/cluster.sh rabbit down     stop them and forget their data
#   scripts/cluster.sh rabbit status   the cluster as node 1 sees it; exit 1 unless all three run
#   scripts/cluster.sh rabbit kill N   SIGKILL node N (1-3), as a crashed host
#   scripts/cluster.sh rabbit start N  start node N again (it rejoins with its data)
#   scripts/cluster.sh rabbit url      the RABBITMQ_URL list of the three nodes
#
# Nodes mfe-rabbit-N@localhost, AMQP on 5700+N, distribution on 25700+N, data under
# MFE_CLUSTER_DIR (default /tmp/mfe-cluster); guest/guest from loopback; no plugins (the stack's
# node keeps 15672). The stack's own node (5672) is left alone. Must run as root.
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

case "${1:-}/${2:-}" in
    rabbit/up) rabbit_up ;;
    rabbit/down) rabbit_down ;;
    rabbit/status) rabbit_status ;;
    rabbit/kill) kill_node "${3:?which node (1-3)}" ;;
    rabbit/start) start_node "${3:?which node (1-3)}" ;;
    rabbit/url) rabbit_url ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
