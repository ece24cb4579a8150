#!/usr/bin/env bash
# Local dev/test infrastructure for the workspace: four PostgreSQL clusters and RabbitMQ.
#
#   scripts/stack.sh up          install (if missing), configure and start everything; fast no-op if already up
#   scripts/stack.sh down        stop the three per-service clusters (payments, admin, profile)
#   scripts/stack.sh down --all  also stop the main cluster and RabbitMQ
#   scripts/stack.sh status      report each part; exit 0 if everything is up, 1 otherwise
#
# Layout (Debian postgresql-common clusters; no systemd needed):
#   15/main      :5432  auth_db, legacy mfe_poc2
#   15/payments  :5433  payments_db
#   15/admin     :5434  admin_db
#   15/profile   :5435  profile_db
#   RabbitMQ     :5672  guest/guest, vhost /
#
# Every cluster trusts loopback connections and the postgres role has password 'postgres', so both
# postgresql://postgres:postgres@localhost:PORT/DB and postgresql://postgres@127.0.0.1:PORT/DB work.
# The databases themselves are created by the services. Must run as root (no sudo used).
#
# Environment: STACK_WAIT_SECS (default 60) - how long to wait for a service to come up.
set -euo pipefail

readonly CLUSTERS=(main payments admin profile)
declare -A PORT=([main]=5432 [payments]=5433 [admin]=5434 [profile]=5435)
readonly EXTRA_CLUSTERS=(payments admin profile)
readonly RABBIT_PORT=5672
readonly LOCK_FILE=/tmp/stack.sh.lock
readonly WAIT_SECS="${STACK_WAIT_SECS:-60}"
readonly POLICY_RC=/usr/sbin/policy-rc.d
readonly POLICY_RC_BACKUP=/usr/sbin/policy-rc.d.stack-sh-backup

# Settings for the per-service clusters (dev/test box: many parallel tests, bulk loads).
# Durability settings (fsync, synchronous_commit, full_page_writes) deliberately keep their defaults.
readonly EXTRA_CONF="# Managed by scripts/stack.sh - rewritten on every 'up'.
listen_addresses = 'localhost'
max_connections = 200
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 15min
maintenance_work_mem = 256MB
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64"
readonly EXTRA_HBA="# Managed by scripts/stack.sh - dev/test only: trust every loopback connection.
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust"
readonly MAIN_HBA_BEGIN="# BEGIN scripts/stack.sh (dev/test: trust loopback)"
readonly MAIN_HBA_END="# END scripts/stack.sh"

# Expected pg_settings.setting values (base units: MB, kB, 8kB pages, s).
readonly WANT_MAX_CONN=200 WANT_MAX_WAL_MB=4096 WANT_MWM_KB=262144 WANT_SB_PAGES=32768 WANT_CKPT_S=900
# Logical decoding for the migration's change capture: a slot per migrated database (tests run
# many side by side).
readonly WANT_SLOTS=64
# Each sync streams over a WAL sender, a rollback over one per service database; parallel tests
# run many at once (the default, 10, runs out).
readonly WANT_SENDERS=64

# Never let libpq pick up a caller's environment (we test the exact URLs the services use).
unset PGHOST PGHOSTADDR PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE PGSERVICEFILE PGPASSFILE \
      PGOPTIONS PGSSLMODE PGTARGETSESSIONATTRS 2>/dev/null || true
export PGCONNECT_TIMEOUT=5
cd /

PGV=""     # PostgreSQL major version in use (15 unless only another one is installed)
WORK=""    # scratch dir for captured command output

say() { printf '%s\n' "$*"; }
ACTED=0
act() { ACTED=1; say "$@"; }   # report something we changed
warn() { printf 'stack.sh: warning: %s\n' "$*" >&2; }
die() { printf 'stack.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: scripts/stack.sh up | down [--all] | status
EOF
    exit 2
}

cleanup() {
    restore_policy_rc
    if [[ -n "$WORK" && -d "$WORK" ]]; then rm -rf -- "$WORK"; fi
}

scratch() {
    if [[ -z "$WORK" ]]; then WORK="$(mktemp -d /tmp/stack.sh.XXXXXX)"; fi
}

# Run a command that may leave daemons behind, without leaking the lock fd (9) to them: a
# postmaster or beam.smp inheriting it would keep the flock held forever.
detach() { "$@" 9>&- </dev/null; }

# Run a command, capturing its output; show the output only if it fails.
quietly() {
    scratch
    local log="$WORK/cmd.log" rc=0
    detach "$@" >"$log" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat "$log" >&2
        return "$rc"
    fi
}

url_pw() { printf 'postgresql://postgres:postgres@localhost:%s/postgres' "$1"; }
url_trust() { printf 'postgresql://postgres@127.0.0.1:%s/postgres' "$1"; }

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

pg_ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p "$1" -t 2; }

detect_pgv() {
    PGV=""
    if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
        PGV=15
        return 0
    fi
    local d
    for d in /usr/lib/postgresql/*/bin/postgres; do
        [[ -x "$d" ]] || continue
        d="${d#/usr/lib/postgresql/}"
        d="${d%%/*}"
        if [[ -z "$PGV" ]] || ((d > PGV)); then PGV="$d"; fi
    done
    [[ -n "$PGV" ]]
}

cluster_dir() { printf '/etc/postgresql/%s/%s' "$PGV" "$1"; }

# Admin SQL over the unix socket as the postgres OS user: works with Debian's default peer auth
# even before pg_hba.conf is fixed.
admin_sql() {
    local port="$1"
    shift
    runuser -u postgres -- psql -XAtqw -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$port" -d postgres "$@"
}

# "cluster_name|max_connections|max_wal_size|maintenance_work_mem|shared_buffers|checkpoint_timeout|has_password|wal_level|max_replication_slots|max_wal_senders"
readonly STATE_SQL="select current_setting('cluster_name'),
  (select setting from pg_settings where name = 'max_connections'),
  (select setting from pg_settings where name = 'max_wal_size'),
  (select setting from pg_settings where name = 'maintenance_work_mem'),
  (select setting from pg_settings where name = 'shared_buffers'),
  (select setting from pg_settings where name = 'checkpoint_timeout'),
  (select rolpassword is not null from pg_authid where rolname = 'postgres'),
  current_setting('wal_level'),
  current_setting('max_replication_slots'),
  current_setting('max_wal_senders')"

# Do the current settings ($2 = state line) satisfy what cluster $1 should have?
state_ok() {
    local name="$1" cname maxc walmb mwm sb ckpt haspw wal slots senders
    IFS='|' read -r cname maxc walmb mwm sb ckpt haspw wal slots senders <<<"$2"
    [[ "$cname" == "$PGV/$name" && "$haspw" == t && "$wal" == logical ]] || return 1
    ((slots >= WANT_SLOTS && senders >= WANT_SENDERS)) || return 1
    [[ "$walmb" == "$WANT_MAX_WAL_MB" && "$mwm" == "$WANT_MWM_KB" ]] || return 1
    if [[ "$name" == main ]]; then
        ((maxc >= WANT_MAX_CONN))
    else
        [[ "$maxc" == "$WANT_MAX_CONN" && "$sb" == "$WANT_SB_PAGES" && "$ckpt" == "$WANT_CKPT_S" ]]
    fi
}

file_is() { [[ -f "$1" && "$(<"$1")" == "$2" ]]; }

# Fast, read-only check: is cluster $1 up, reachable through both URL forms and fully configured?
pg_fast_ok() {
    local name="$1" port="${PORT[$1]}" state dir
    [[ -n "$PGV" ]] && command -v psql >/dev/null 2>&1 || return 1
    if [[ "$name" != main ]]; then
        dir="$(cluster_dir "$name")"
        file_is "$dir/conf.d/90-stack.conf" "$EXTRA_CONF" || return 1
        file_is "$dir/pg_hba.conf" "$EXTRA_HBA" || return 1
    fi
    state="$(psql -XAtqw -F'|' "$(url_pw "$port")" -c "$STATE_SQL" 2>/dev/null)" || return 1
    state_ok "$name" "$state" || return 1
    [[ "$(psql -XAtqw "$(url_trust "$port")" -c 'select 1' 2>/dev/null)" == 1 ]]
}

urls_work() {
    local port="$1"
    [[ "$(psql -XAtqw "$(url_pw "$port")" -c 'select 1' 2>/dev/null)" == 1 ]] &&
        [[ "$(psql -XAtqw "$(url_trust "$port")" -c 'select 1' 2>/dev/null)" == 1 ]]
}

cluster_running() { pg_ctlcluster "$PGV" "$1" status >/dev/null 2>&1; }

wait_pg() {
    local port="$1" i
    for ((i = 0; i < WAIT_SECS; i++)); do
        pg_ready "$port" && return 0
        sleep 1
    done
    return 1
}

pg_log_tail() {
    local log="/var/log/postgresql/postgresql-$PGV-$1.log"
    if [[ -r "$log" ]]; then
        printf -- '--- last lines of %s ---\n' "$log" >&2
        tail -n 20 "$log" >&2
    fi
}

pg_ctl_do() { # action name
    local action="$1" name="$2"
    if ! quietly pg_ctlcluster --skip-systemctl-redirect "$PGV" "$name" "$action"; then
        pg_log_tail "$name"
        die "pg_ctlcluster $action $PGV/$name failed"
    fi
}

# Write $2 to file $1 (owned by postgres) if the content differs; return 0 if it changed.
write_if_changed() {
    local file="$1" content="$2" mode="$3"
    file_is "$file" "$content" && return 1
    local tmp
    tmp="$(mktemp "$file.stack.XXXXXX")"
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    chown postgres:postgres "$tmp"
    mv -f "$tmp" "$file"
    return 0
}

# After a reload: restart if some changed setting only takes effect on restart.
restart_if_pending() {
    local name="$1" port="${PORT[$1]}" pending
    pending="$(admin_sql "$port" -c 'select count(*) from pg_settings where pending_restart')" || pending=0
    if ((pending > 0)); then
        pg_ctl_do restart "$name"
        act "restarted cluster $PGV/$name on :$port (settings needing a restart changed)"
    fi
}

create_cluster() {
    local name="$1" port="${PORT[$1]}" other
    other="$(pg_lsclusters -h 2>/dev/null | awk -v p="$port" -v c="$name" -v v="$PGV" \
        '$3 == p && !($1 == v && $2 == c) { print $1 "/" $2 }')"
    [[ -z "$other" ]] || die "cannot create $PGV/$name: port $port is already used by cluster $other"
    # C.UTF-8 is built into Debian's libc, so this works even without generated locales.
    quietly pg_createcluster --locale=C.UTF-8 --encoding=UTF8 -p "$port" "$PGV" "$name" ||
        die "pg_createcluster $PGV $name -p $port failed"
    act "created cluster $PGV/$name on :$port"
}

# Slow path: create/configure/start cluster $1 and make sure it is usable.
pg_ensure() {
    local name="$1" port="${PORT[$1]}" dir changed=0 started=0 state cname maxc walmb mwm sb ckpt haspw wal slots senders
    dir="$(cluster_dir "$name")"
    ACTED=0

    [[ -f "$dir/postgresql.conf" ]] || create_cluster "$name"

    if [[ "$name" != main ]]; then
        local cur_port
        cur_port="$(pg_conftool -s "$PGV" "$name" show port 2>/dev/null || true)"
        if [[ "$cur_port" != "$port" ]]; then
            quietly pg_conftool "$PGV" "$name" set port "$port"
            changed=1
        fi
        mkdir -p "$dir/conf.d"
        chown postgres:postgres "$dir/conf.d"
        if ! grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'conf\.d'" "$dir/postgresql.conf"; then
            printf "include_dir = 'conf.d'\n" >>"$dir/postgresql.conf"
            changed=1
        fi
        if write_if_changed "$dir/conf.d/90-stack.conf" "$EXTRA_CONF" 0644; then changed=1; fi
        if write_if_changed "$dir/pg_hba.conf" "$EXTRA_HBA" 0640; then changed=1; fi
    fi

    if ! cluster_running "$name"; then
        pg_ctl_do start "$name"
        started=1
    elif ((changed)); then
        pg_ctl_do reload "$name"
    fi
    if ! wait_pg "$port"; then
        if [[ "$name" == main ]] && cluster_running main &&
            runuser -u postgres -- pg_isready -q -h /var/run/postgresql -p "$port"; then
            # Up on the unix socket but not on TCP: it does not listen on loopback.
            admin_sql "$port" -c "alter system set listen_addresses = 'localhost'"
            pg_ctl_do restart main
            act "main cluster was not listening on 127.0.0.1: set listen_addresses = 'localhost', restarted"
            wait_pg "$port" || die "cluster $PGV/$name is not accepting connections on 127.0.0.1:$port"
        else
            pg_log_tail "$name"
            die "cluster $PGV/$name did not accept connections on 127.0.0.1:$port within ${WAIT_SECS}s"
        fi
    fi
    if ((started)); then
        act "started cluster $PGV/$name on :$port"
    elif ((changed)); then
        restart_if_pending "$name"
        act "reconfigured cluster $PGV/$name on :$port"
    fi

    state="$(admin_sql "$port" -F'|' -c "$STATE_SQL")" || die "cannot query cluster $PGV/$name"
    IFS='|' read -r cname maxc walmb mwm sb ckpt haspw wal slots senders <<<"$state"
    [[ "$cname" == "$PGV/$name" ]] ||
        die "port $port is served by cluster '$cname', expected $PGV/$name"

    # Harmless with trust auth, but lets password-based clients (and a future non-trust pg_hba) work.
    if [[ "$haspw" != t ]] || ! urls_work "$port"; then
        admin_sql "$port" -c "alter role postgres with password 'postgres'" >/dev/null
        act "set password of role postgres on $PGV/$name"
    fi

    if [[ "$name" == main ]]; then
        local reload=0
        if ((maxc < WANT_MAX_CONN)); then
            admin_sql "$port" -c "alter system set max_connections = $WANT_MAX_CONN" >/dev/null
            pg_ctl_do restart main
            wait_pg "$port" || die "cluster $PGV/main did not come back after restart"
            act "raised max_connections on $PGV/main from $maxc to $WANT_MAX_CONN (restarted)"
        fi
        if [[ "$wal" != logical ]] || ((slots < WANT_SLOTS || senders < WANT_SENDERS)); then
            # The migration captures the legacy database's changes by logical decoding.
            admin_sql "$port" -c "alter system set wal_level = logical" >/dev/null
            admin_sql "$port" -c "alter system set max_replication_slots = $WANT_SLOTS" >/dev/null
            admin_sql "$port" -c "alter system set max_wal_senders = $WANT_SENDERS" >/dev/null
            pg_ctl_do restart main
            wait_pg "$port" || die "cluster $PGV/main did not come back after restart"
            act "set wal_level=logical, max_replication_slots=$WANT_SLOTS, max_wal_senders=$WANT_SENDERS on $PGV/main for the migration's change capture (restarted)"
        fi
        if [[ "$walmb" != "$WANT_MAX_WAL_MB" ]]; then
            admin_sql "$port" -c "alter system set max_wal_size = '4GB'" >/dev/null
            reload=1
        fi
        if [[ "$mwm" != "$WANT_MWM_KB" ]]; then
            admin_sql "$port" -c "alter system set maintenance_work_mem = '256MB'" >/dev/null
            reload=1
        fi
        if ((reload)); then
            admin_sql "$port" -c 'select pg_reload_conf()' >/dev/null
            sleep 0.2
            act "set max_wal_size=4GB, maintenance_work_mem=256MB on $PGV/main (reloaded)"
        fi
        if ! urls_work "$port"; then
            # Only now touch main's pg_hba.conf: prepend trust rules for loopback (first match wins).
            local hba
            hba="$(admin_sql "$port" -c 'show hba_file')"
            if ! grep -qF "$MAIN_HBA_BEGIN" "$hba"; then
                local tmp
                tmp="$(mktemp "$hba.stack.XXXXXX")"
                {
                    printf '%s\n' "$MAIN_HBA_BEGIN"
                    printf 'local   all   all                  trust\n'
                    printf 'host    all   all   127.0.0.1/32   trust\n'
                    printf 'host    all   all   ::1/128        trust\n'
                    printf '%s\n' "$MAIN_HBA_END"
                    cat "$hba"
                } >"$tmp"
                chmod --reference="$hba" "$tmp"
                chown --reference="$hba" "$tmp"
                mv -f "$tmp" "$hba"
                admin_sql "$port" -c 'select pg_reload_conf()' >/dev/null
                sleep 0.2
                act "added loopback trust rules to $hba (reloaded)"
            fi
        fi
    elif [[ "$maxc" != "$WANT_MAX_CONN" || "$sb" != "$WANT_SB_PAGES" || "$ckpt" != "$WANT_CKPT_S" ||
        "$walmb" != "$WANT_MAX_WAL_MB" || "$mwm" != "$WANT_MWM_KB" || "$wal" != logical ||
        "$slots" != "$WANT_SLOTS" || "$senders" != "$WANT_SENDERS" ]]; then
        # Something (ALTER SYSTEM in postgresql.auto.conf) overrides conf.d/90-stack.conf.
        admin_sql "$port" -c 'alter system reset all' >/dev/null
        admin_sql "$port" -c 'select pg_reload_conf()' >/dev/null
        sleep 0.2
        restart_if_pending "$name"
        wait_pg "$port" || die "cluster $PGV/$name did not come back"
        act "dropped ALTER SYSTEM overrides on $PGV/$name"
    fi

    urls_work "$port" ||
        die "cluster $PGV/$name on :$port is up but $(url_pw "$port") / $(url_trust "$port") do not connect"
    ((ACTED)) || say "already running: cluster $PGV/$name on :$port"
}

# --- RabbitMQ -----------------------------------------------------------------------------------

# Full AMQP 0-9-1 handshake as guest/guest on vhost "/" (proves the broker is ready and guest works).
amqp_probe() {
    command -v python3 >/dev/null 2>&1 || {
        timeout 15 rabbitmq-diagnostics -q ping >/dev/null 2>&1
        return
    }
    python3 - "$RABBIT_PORT" <<'PY' 2>/dev/null
import socket, struct, sys

def shortstr(s):
    b = s.encode()
    return struct.pack("B", len(b)) + b

def send_method(sock, cls, mid, args):
    payload = struct.pack(">HH", cls, mid) + args
    sock.sendall(struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce")

def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed by broker")
        buf += chunk
    return buf

def recv_method(sock):
    while True:
        ftype, _chan, size = struct.unpack(">BHI", recv_exact(sock, 7))
        payload = recv_exact(sock, size)
        recv_exact(sock, 1)
        if ftype == 1:
            cls, mid = struct.unpack(">HH", payload[:4])
            return cls, mid, payload[4:]

def expect(got, want, what):
    if got[:2] != want:
        raise RuntimeError("%s: got method %r" % (what, got[:2]))

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.settimeout(5)
s.sendall(b"AMQP\x00\x00\x09\x01")
expect(recv_method(s), (10, 10), "connection.start")
auth = b"\x00guest\x00guest"
send_method(s, 10, 11, struct.pack(">I", 0) + shortstr("PLAIN")
            + struct.pack(">I", len(auth)) + auth + shortstr("en_US"))
tune = recv_method(s)
expect(tune, (10, 30), "login as guest")
channel_max, frame_max, _hb = struct.unpack(">HIH", tune[2][:8])
send_method(s, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0))
send_method(s, 10, 40, shortstr("/") + shortstr("") + b"\x00")
expect(recv_method(s), (10, 41), "open vhost /")
send_method(s, 10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))
try:
    recv_method(s)
except Exception:
    pass
s.close()
PY
}

rabbit_fast_ok() { tcp_open "$RABBIT_PORT" && amqp_probe; }

rabbit_node_up() { timeout 15 rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

# (no pgrep: procps is not installed on minimal Debian images)
rabbit_beam_running() {
    local f comm
    for f in /proc/[0-9]*/comm; do
        comm="$(cat "$f" 2>/dev/null)" || continue
        [[ "$comm" == beam.smp ]] && return 0
    done
    return 1
}

rabbit_ensure() {
    local i started=0
    if ! rabbit_node_up; then
        if ! rabbit_beam_running; then
            # A fresh container's hostname often does not resolve, and the default node name is
            # rabbit@<hostname>; pin it to localhost in that case.
            local envconf=/etc/rabbitmq/rabbitmq-env.conf
            local host
            host="$(uname -n)"
            if ! getent hosts "${host%%.*}" >/dev/null 2>&1 &&
                ! grep -qs '^[[:space:]]*NODENAME=' "$envconf"; then
                mkdir -p /etc/rabbitmq
                printf 'NODENAME=rabbit@localhost\n' >>"$envconf"
                say "set NODENAME=rabbit@localhost in $envconf (hostname does not resolve)"
            fi
            scratch
            detach rabbitmq-server -detached >"$WORK/rabbit-start.log" 2>&1 || {
                cat "$WORK/rabbit-start.log" >&2
                die "rabbitmq-server -detached failed"
            }
            started=1
        fi
    fi
    for ((i = 0; i < WAIT_SECS; i++)); do
        if rabbit_node_up && tcp_open "$RABBIT_PORT"; then break; fi
        sleep 1
    done
    if ! rabbit_node_up || ! tcp_open "$RABBIT_PORT"; then
        tail -n 20 /var/log/rabbitmq/*.log 2>/dev/null >&2 || true
        die "RabbitMQ did not answer on 127.0.0.1:$RABBIT_PORT within ${WAIT_SECS}s"
    fi
    if ((started)); then
        say "started rabbitmq on :$RABBIT_PORT"
    else
        say "rabbitmq on :$RABBIT_PORT was running"
    fi
    if ! amqp_probe; then
        # guest missing / wrong password / no permissions on "/": restore the stock defaults.
        quietly rabbitmqctl add_vhost / || true
        if timeout 60 rabbitmqctl -q list_users 2>/dev/null | awk '{ print $1 }' | grep -qx guest; then
            quietly rabbitmqctl change_password guest guest
        else
            quietly rabbitmqctl add_user guest guest
        fi
        quietly rabbitmqctl set_user_tags guest administrator
        quietly rabbitmqctl set_permissions -p / guest '.*' '.*' '.*'
        say "reset rabbitmq user guest/guest with full permissions on vhost /"
        amqp_probe || die "guest/guest cannot connect to amqp://localhost:$RABBIT_PORT/%2f"
    fi
}

# --- installation -------------------------------------------------------------------------------

pkg_installed() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'; }

restore_policy_rc() {
    if [[ -n "${POLICY_RC_INSTALLED:-}" ]]; then
        rm -f "$POLICY_RC"
        if [[ -e "$POLICY_RC_BACKUP" ]]; then mv -f "$POLICY_RC_BACKUP" "$POLICY_RC"; fi
        POLICY_RC_INSTALLED=""
    fi
}

# Make maintainer scripts skip starting services (there is no init system); we start them ourselves.
install_policy_rc() {
    if [[ -e "$POLICY_RC" ]]; then mv -f "$POLICY_RC" "$POLICY_RC_BACKUP"; fi
    POLICY_RC_INSTALLED=1
    printf '#!/bin/sh\n# temporary, written by scripts/stack.sh during apt-get install\nexit 101\n' >"$POLICY_RC"
    chmod 0755 "$POLICY_RC"
}

apt_install() {
    local apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if ! detach env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$@"; then
        # A failed maintainer script leaves packages half-configured; finish and retry once.
        detach env DEBIAN_FRONTEND=noninteractive dpkg --configure -a || true
        detach env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "$@"
    fi
}

install_missing() {
    local need_pg=0 need_rabbit=0 pkgs=() cand
    if ! command -v pg_createcluster >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1 ||
        ! command -v pg_isready >/dev/null 2>&1 || ! detect_pgv; then
        need_pg=1
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1 || ! pkg_installed rabbitmq-server; then
        need_rabbit=1
    fi
    # curl and jq: the main job's flow through the running services (scripts/flow.sh).
    local tools=()
    command -v curl >/dev/null 2>&1 || tools+=(curl ca-certificates)
    command -v jq >/dev/null 2>&1 || tools+=(jq)
    ((need_pg || need_rabbit || ${#tools[@]})) || return 0
    [[ "$(id -u)" == 0 ]] || die "packages are missing and installing them needs root"

    say "installing missing packages (apt-get update + install) ..."
    detach env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=300 ||
        die "apt-get update failed"
    if ((need_pg)); then
        cand="$(apt-cache policy postgresql-15 2>/dev/null | awk '/Candidate:/ { print $2 }')"
        if [[ -n "$cand" && "$cand" != "(none)" ]]; then
            pkgs+=(postgresql-15 postgresql-client-15)
        else
            pkgs+=(postgresql postgresql-client)
        fi
    fi
    if ((need_rabbit)); then pkgs+=(rabbitmq-server); fi
    pkgs+=("${tools[@]}")

    install_policy_rc
    apt_install "${pkgs[@]}" || die "apt-get install ${pkgs[*]} failed"
    restore_policy_rc
    say "installed ${pkgs[*]}"
    ((need_pg || need_rabbit)) || return 0
    detect_pgv || die "no PostgreSQL server found under /usr/lib/postgresql after installation"
    # postgresql-NN's postinst normally created (but, with no init system, did not start) NN/main;
    # pg_ensure creates it if that failed (e.g. broken locale) and starts it.
}

# --- commands -----------------------------------------------------------------------------------

print_summary() {
    cat <<EOF
stack is up:
  auth      postgresql://postgres:postgres@localhost:5432/auth_db
  payments  postgresql://postgres:postgres@localhost:5433/payments_db
  admin     postgresql://postgres:postgres@localhost:5434/admin_db
  profile   postgresql://postgres:postgres@localhost:5435/profile_db
  legacy    postgresql://postgres:postgres@localhost:5432/mfe_poc2
  rabbitmq  amqp://guest:guest@localhost:5672/%2f
EOF
}

take_lock() {
    exec 9>>"$LOCK_FILE"
    flock -w 900 9 || die "timed out waiting for $LOCK_FILE (another stack.sh running?)"
}

cmd_up() {
    take_lock
    detect_pgv || true

    # Fast path: check everything in parallel (each probe is a separate connection).
    local name pids=() rabbit_pid all_ok=1
    declare -A ok=()
    for name in "${CLUSTERS[@]}"; do
        pg_fast_ok "$name" &
        pids+=("$!")
    done
    rabbit_fast_ok &
    rabbit_pid=$!
    local i=0
    for name in "${CLUSTERS[@]}"; do
        if wait "${pids[$i]}"; then ok[$name]=1; else ok[$name]=0; all_ok=0; fi
        i=$((i + 1))
    done
    local rabbit_ok=0
    if wait "$rabbit_pid"; then rabbit_ok=1; else all_ok=0; fi
    { command -v curl && command -v jq; } >/dev/null 2>&1 || all_ok=0

    if ((all_ok)); then
        for name in "${CLUSTERS[@]}"; do say "already running: cluster $PGV/$name on :${PORT[$name]}"; done
        say "already running: rabbitmq on :$RABBIT_PORT"
        print_summary
        return 0
    fi

    [[ "$(id -u)" == 0 ]] || die "must run as root to start/configure the stack"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    install_missing

    for name in "${CLUSTERS[@]}"; do
        if ((ok[$name])); then
            say "already running: cluster $PGV/$name on :${PORT[$name]}"
        else
            pg_ensure "$name"
        fi
    done
    if ((rabbit_ok)); then
        say "already running: rabbitmq on :$RABBIT_PORT"
    else
        rabbit_ensure
    fi
    print_summary
}

cmd_down() {
    local all=0 name
    case "${1:-}" in
        --all) all=1 ;;
        "") ;;
        *) usage ;;
    esac
    take_lock
    trap cleanup EXIT
    if detect_pgv && command -v pg_ctlcluster >/dev/null 2>&1; then
        local targets=("${EXTRA_CLUSTERS[@]}")
        if ((all)); then targets+=(main); fi
        for name in "${targets[@]}"; do
            if [[ ! -f "$(cluster_dir "$name")/postgresql.conf" ]]; then
                say "no cluster $PGV/$name"
            elif cluster_running "$name"; then
                pg_ctl_do stop "$name"
                say "stopped cluster $PGV/$name on :${PORT[$name]}"
            else
                say "already stopped: cluster $PGV/$name on :${PORT[$name]}"
            fi
        done
    else
        say "PostgreSQL is not installed"
    fi
    if ((all)); then
        if ! command -v rabbitmqctl >/dev/null 2>&1; then
            say "RabbitMQ is not installed"
        elif rabbit_node_up; then
            quietly timeout 120 rabbitmqctl stop || die "rabbitmqctl stop failed"
            say "stopped rabbitmq"
        else
            say "already stopped: rabbitmq"
        fi
    else
        say "left running: cluster ${PGV:-15}/main on :5432 and rabbitmq (use 'down --all' to stop them)"
    fi
}

cmd_status() {
    local name rc=0 ver="${PGV:-15}"
    detect_pgv && ver="$PGV"
    for name in "${CLUSTERS[@]}"; do
        if pg_ready "${PORT[$name]}"; then
            printf '%-22s :%-5s up\n' "postgres $ver/$name" "${PORT[$name]}"
        else
            printf '%-22s :%-5s DOWN\n' "postgres $ver/$name" "${PORT[$name]}"
            rc=1
        fi
    done
    if tcp_open "$RABBIT_PORT" && amqp_probe; then
        printf '%-22s :%-5s up\n' rabbitmq "$RABBIT_PORT"
    elif tcp_open "$RABBIT_PORT"; then
        printf '%-22s :%-5s DEGRADED (port open, guest/guest cannot open vhost /; run: stack.sh up)\n' \
            rabbitmq "$RABBIT_PORT"
        rc=1
    else
        printf '%-22s :%-5s DOWN\n' rabbitmq "$RABBIT_PORT"
        rc=1
    fi
    return "$rc"
}

main() {
    case "${1:-}" in
        up) [[ $# -eq 1 ]] || usage; cmd_up ;;
        down) [[ $# -le 2 ]] || usage; cmd_down "${2:-}" ;;
        status) [[ $# -eq 1 ]] || usage; cmd_status ;;
        *) usage ;;
    esac
}

main "$@"
