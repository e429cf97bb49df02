#!/usr/bin/env bash
# Starts Kamailio as a presence server (benches/kamailio/presence.cfg) on loopback, in the
# foreground, with a fresh SQLite database in DIR, for the fan-out bench
# (benches/presence_fanout.sh --target kamailio, which runs this and stops it by its PID) or
# by hand:
#
#   benches/kamailio/run.sh PORT [DIR]     # DIR: a new temp dir when not given
#
# KAMAILIO_SUBS_DB_MODE=2 runs the presence module write-back (subscriptions flushed to the
# database by a timer; not durable) instead of the default write-through (1), to see what
# durability costs.
#
# KAMAILIO_DB_URL=postgres://USER@HOST:PORT/DB puts the presence tables in that (empty)
# PostgreSQL database instead (db_postgres, kamailio-postgres-modules; Debian's
# presence-create.sql for PostgreSQL loaded with psql), e.g. the throwaway server the fan-out
# bench starts for --target kamailio-postgres.
#
# The SQLite database gets Debian's own schema for the presence tables (kamailio-sqlite-modules'
# presence-create.sql and the version table), in WAL mode. This script ends by exec'ing kamailio, so its
# PID is Kamailio's main process; Kamailio's log goes to stderr. 1 GiB of shared memory: every
# NOTIFY waiting for its answer holds a transaction there (256 MiB ran out with write-back, 50
# changes back to back to 1,000 watchers).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port=${1:?usage: run.sh PORT [DIR]}
dir=${2:-$(mktemp -d -t kamailio-presence.XXXXXX)}
mkdir -p "$dir"
kamailio=$(command -v kamailio || echo /usr/sbin/kamailio)
[ -x "$kamailio" ] || { echo "run.sh: kamailio is missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }
if [ -n "${KAMAILIO_DB_URL:-}" ]; then
  schema=/usr/share/kamailio/postgres
  [ -f "$schema/presence-create.sql" ] ||
    { echo "run.sh: no $schema/presence-create.sql (install kamailio-postgres-modules)" >&2; exit 1; }
  for script in standard-create.sql presence-create.sql; do
    psql -q -v ON_ERROR_STOP=1 -d "$KAMAILIO_DB_URL" -f "$schema/$script" >&2
  done
  db_url=$KAMAILIO_DB_URL
  db_module=db_postgres.so
  echo "kamailio presence server on udp:127.0.0.1:$port, PostgreSQL database" >&2
else
  schema=$(ls -d /usr/share/kamailio/db_sqlite 2>/dev/null || true)
  [ -f "$schema/presence-create.sql" ] ||
    { echo "run.sh: no $schema/presence-create.sql (install kamailio-sqlite-modules)" >&2; exit 1; }
  db="$dir/presence.sqlite"
  rm -f "$db"
  # python3's sqlite3 module, so no sqlite3 command-line tool is needed.
  python3 - "$db" "$schema/standard-create.sql" "$schema/presence-create.sql" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
# WAL, like starcode's store (kept in the file): readers do not wait for the writer.
db.execute("PRAGMA journal_mode=WAL")
for script in sys.argv[2:]:
    with open(script) as f:
        db.executescript(f.read())
db.commit()
PY
  db_url="sqlite:///$db"
  db_module=db_sqlite.so
  echo "kamailio presence server on udp:127.0.0.1:$port, database $db" >&2
fi
exec "$kamailio" -f "$here/presence.cfg" -DD -E -m 1024 -M 16 \
  -l "udp:127.0.0.1:$port" -Y "$dir" -P "$dir/kamailio.pid" -w "$dir" \
  -A "DB_URL=\"$db_url\"" -A "DB_MODULE=\"$db_module\"" \
  -A "SERVER_ADDRESS=\"sip:127.0.0.1:$port\"" -A "SUBS_DB_MODE=${KAMAILIO_SUBS_DB_MODE:-1}"
