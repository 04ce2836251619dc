#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL server for the control-plane tests.
#
#   url="$(bash .ci/postgres.sh start)"   # prints the SQLAlchemy URL on stdout
#   bash .ci/postgres.sh stop
#
# `start` installs PostgreSQL from Debian's packages when it is missing, creates a new
# cluster under $HERALD_PG_DIR that listens on 127.0.0.1 only (port $HERALD_PG_PORT),
# and creates the database `herald_test`. Authentication is `trust`, which is safe only
# because nothing but this machine can reach the port. All logs go to stderr.
set -euo pipefail

PG_DIR="${HERALD_PG_DIR:-/tmp/herald-postgres}"
PG_PORT="${HERALD_PG_PORT:-55432}"
PG_DB="herald_test"

pg_bin() {
    local dirs
    dirs=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V || true)
    if [[ -n "$dirs" ]]; then
        echo "$dirs" | tail -n 1
    fi
}

as_postgres() {
    runuser -u postgres -- "$@"
}

install_postgres() {
    if [[ -z "$(pg_bin)" ]]; then
        echo "installing PostgreSQL from Debian's packages" >&2
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    fi
}

start() {
    install_postgres
    local bin
    bin="$(pg_bin)"
    stop_server quietly
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    chown postgres:postgres "$PG_DIR"
    as_postgres "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 >&2
    as_postgres "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off" start >&2
    as_postgres "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$PG_DB" >&2
    echo "postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/$PG_DB"
}

stop_server() {
    local bin
    bin="$(pg_bin)"
    if [[ -n "$bin" && -f "$PG_DIR/data/postmaster.pid" ]]; then
        as_postgres "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >&2 || [[ "${1:-}" == quietly ]]
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop_server ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
