#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: Debian's postgresql package, a cluster in a
# temporary directory on a free loopback port. `initdb` refuses root, so the server runs as
# the `postgres` user. Three roles, each with its own database:
#   postgres    trust                      RUNNER_TEST_POSTGRES
#   runner_pw   password (scram-sha-256)   RUNNER_TEST_POSTGRES_PASSWORD_URL, ..._PASSWORD
#   runner_tls  only over TLS              RUNNER_TEST_POSTGRES_TLS_URL, ..._CA (its certificate)
#
#   eval "$(scripts/postgres.sh start)"   # starts it; prints the exports above
#   scripts/postgres.sh pause|resume      # stops and restarts the same server (restart tests)
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
serve() {
  local port listen
  port=$(cat "$DIR/port")
  listen=$(cat "$DIR/listen")
  as_postgres "$(bindir)/pg_ctl -D $DIR/data -l $DIR/server.log -w -o \"-c listen_addresses=$listen -p $port -k $DIR -c fsync=off -c ssl=on -c max_connections=200\" start" > /dev/null
}
case "${1:-start}" in
  start)
    BIN=$(bindir)
    [ -d "$DIR" ] && as_postgres "$BIN/pg_ctl -D $DIR/data stop -m immediate" > /dev/null 2>&1 || true
    rm -rf "$DIR"
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' > "$DIR/port"
    # Extra addresses (a veth for a second "host") come from RUNNER_PG_LISTEN.
    echo "127.0.0.1${RUNNER_PG_LISTEN:+,$RUNNER_PG_LISTEN}" > "$DIR/listen"
    PORT=$(cat "$DIR/port")
    as_postgres "$BIN/initdb -D $DIR/data -A trust -U postgres --no-sync" > "$DIR/initdb.log" 2>&1
    # A throwaway CA (what a verify-full client trusts) and a certificate for 127.0.0.1.
    openssl req -new -x509 -days 2 -nodes -subj "/CN=runner test CA" \
      -keyout "$DIR/ca.key" -out "$DIR/ca.crt" > /dev/null 2>&1
    openssl req -new -nodes -subj "/CN=127.0.0.1" \
      -keyout "$DIR/data/server.key" -out "$DIR/server.csr" > /dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$DIR/server.ext"
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
      -CAcreateserial -days 2 -extfile "$DIR/server.ext" -out "$DIR/data/server.crt" > /dev/null 2>&1
    chmod 600 "$DIR/data/server.key"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR/data/server.key" "$DIR/data/server.crt" "$DIR/port" "$DIR/listen"
    # First match wins: the two test roles get their rules before initdb's trust lines.
    HBA="$DIR/data/pg_hba.conf"
    { echo "host all runner_pw 0.0.0.0/0 scram-sha-256"
      echo "hostssl all runner_tls 0.0.0.0/0 trust"
      echo "hostnossl all runner_tls 0.0.0.0/0 reject"
      echo "host all all 0.0.0.0/0 trust"
      cat "$HBA"; } > "$HBA.new"
    mv "$HBA.new" "$HBA"
    [ "$(id -u)" = 0 ] && chown postgres "$HBA"
    serve
    PSQL="$BIN/psql -h 127.0.0.1 -p $PORT -U postgres -q"
    as_postgres "$PSQL -c 'CREATE DATABASE runner_test'"
    as_postgres "$PSQL -c \"CREATE ROLE runner_pw LOGIN PASSWORD 'pw-secret'\""
    as_postgres "$PSQL -c 'CREATE DATABASE runner_pw OWNER runner_pw'"
    as_postgres "$PSQL -c 'CREATE ROLE runner_tls LOGIN'"
    as_postgres "$PSQL -c 'CREATE DATABASE runner_tls OWNER runner_tls'"
    echo "export RUNNER_PG_DIR=$DIR"
    echo "export RUNNER_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$PORT/runner_test"
    echo "export RUNNER_TEST_POSTGRES_PASSWORD_URL=postgresql://runner_pw@127.0.0.1:$PORT/runner_pw"
    echo "export RUNNER_TEST_POSTGRES_PASSWORD=pw-secret"
    echo "export RUNNER_TEST_POSTGRES_TLS_URL=postgresql://runner_tls@127.0.0.1:$PORT/runner_tls"
    echo "export RUNNER_TEST_POSTGRES_CA=$DIR/ca.crt"
    ;;
  pause)
    as_postgres "$(bindir)/pg_ctl -D $DIR/data stop -m fast" > /dev/null
    ;;
  resume)
    serve
    ;;
  stop)
    as_postgres "$(bindir)/pg_ctl -D $DIR/data stop -m fast" > /dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
  *)
    echo "usage: scripts/postgres.sh start|pause|resume|stop" >&2
    exit 2
    ;;
esac
