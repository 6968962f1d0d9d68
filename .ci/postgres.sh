#!/usr/bin/env bash
# Make sure the local PostgreSQL answers on 127.0.0.1:5432; start the cluster if it is down.
# Exit 0 when it answers, 1 when it cannot be reached.
set -u
url="${TENDERPOOL_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
url="${url/postgresql+psycopg:/postgresql:}"
answers() { psql "$url" -Atqc 'select 1' >/dev/null 2>&1 || pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if answers; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  done
  for _ in $(seq 1 30); do answers && exit 0; sleep 1; done
fi
exit 1
