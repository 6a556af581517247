#!/usr/bin/env bash
# Makes a PostgreSQL reachable for the store tests and prints its SQLAlchemy URL.
# Uses VAKTPOST_TEST_PG_URL when set; otherwise starts (or installs) the Debian
# cluster and creates a `vaktpost_test` role that may create databases.
# Prints nothing (and the PostgreSQL tests skip) when none can be had.
set -uo pipefail
if [ -n "${VAKTPOST_TEST_PG_URL:-}" ]; then echo "$VAKTPOST_TEST_PG_URL"; exit 0; fi

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if [ "$SUDO" = none ]; then echo "postgres.sh: no PostgreSQL and no root/sudo to install one; PostgreSQL tests will skip" >&2; exit 0; fi
  echo "postgres.sh: installing PostgreSQL for the store tests" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq >&2 && \
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2 || exit 0
fi
if [ "$SUDO" = none ]; then
  # Without root we can only use what answers already.
  pg_isready -q -h 127.0.0.1 && echo "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
  exit 0
fi
if ! pg_isready -q -h 127.0.0.1 2>/dev/null; then
  for v in $(ls /etc/postgresql 2>/dev/null); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start >&2 2>&1 || true
  done
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
fi
pg_isready -q -h 127.0.0.1 || { echo "postgres.sh: PostgreSQL did not start; PostgreSQL tests will skip" >&2; exit 0; }
$SUDO su postgres -s /bin/sh -c "psql -qtA -c \"DO \\\$\\\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='vaktpost_test') THEN
    CREATE ROLE vaktpost_test LOGIN CREATEDB PASSWORD 'vaktpost_test';
  END IF; END\\\$\\\$;\"" >&2 || exit 0
echo "postgresql+psycopg://vaktpost_test:vaktpost_test@127.0.0.1:5432/postgres"
