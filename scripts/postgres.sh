#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: Debian's postgresql package, a cluster in a
# temporary directory on a free loopback port, trust authentication for local connections
# only. `initdb` refuses root, so the server runs as the `postgres` user.
#
#   eval "$(scripts/postgres.sh start)"   # starts it; exports RUNNER_TEST_POSTGRES=postgresql://...
#   scripts/postgres.sh stop              # stops it and removes the directory
set -euo pipefail
DIR=${RUNNER_PG_DIR:-/tmp/runner-test-postgres}
bindir() {
  if command -v pg_config > /dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
  else
    ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1
  fi
}
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$*"
  else
    sh -c "$*"
  fi
}
case "${1:-start}" in
  start)
    BIN=$(bindir)
    [ -d "$DIR" ] && as_postgres "$BIN/pg_ctl -D $DIR/data stop -m immediate" > /dev/null 2>&1 || true
    rm -rf "$DIR"
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_postgres "$BIN/initdb -D $DIR/data -A trust -U postgres --no-sync" > "$DIR/initdb.log" 2>&1
    as_postgres "$BIN/pg_ctl -D $DIR/data -l $DIR/server.log -w -o \"-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off\" start" > /dev/null
    as_postgres "$BIN/psql -h 127.0.0.1 -p $PORT -U postgres -q -c 'CREATE DATABASE runner_test'"
    echo "export RUNNER_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$PORT/runner_test"
    ;;
  stop)
    as_postgres "$(bindir)/pg_ctl -D $DIR/data stop -m fast" > /dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
  *)
    echo "usage: scripts/postgres.sh start|stop" >&2
    exit 2
    ;;
esac
