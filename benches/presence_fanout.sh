#!/usr/bin/env bash
# Presence fan-out benchmark (not a test): N watchers on loopback SUBSCRIBE to one extension
# of the release engine and answer every NOTIFY with 200 OK; a publisher changes its status
# with SIP PUBLISH. Reports PUBLISH -> first NOTIFY (an upper bound of commit -> first NOTIFY,
# durable write included), PUBLISH -> last of the N NOTIFYs (fan-out), and sustained NOTIFY/s
# with changes back to back. Timings are printed, never asserted.
#
#   benches/presence_fanout.sh [--target T] [N=1000] [CHANGES=100] [BURST=200]
#
# --target: starcode-sqlite (the default: the release engine, SQLite store), starcode-postgres-1
# (one node on a throwaway PostgreSQL the bench starts with initdb + pg_ctl in a temp dir, fsync
# and synchronous_commit on, stopped at exit), starcode-postgres-2 (two nodes on that database:
# half the watchers on each, the PUBLISHes to node 1), kamailio (Kamailio's presence server on
# SQLite, write-through: benches/kamailio/presence.cfg, started by benches/kamailio/run.sh;
# needs the kamailio, kamailio-presence-modules and kamailio-sqlite-modules packages),
# kamailio-postgres (the same on the throwaway PostgreSQL; kamailio-postgres-modules), or all
# (each in turn). scripts/bootstrap.sh installs the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
target=()
if [ "${1:-}" = --target ]; then
  target=(--target "${2:?--target needs all, starcode-sqlite, starcode-postgres-1, starcode-postgres-2, kamailio or kamailio-postgres}")
  shift 2
fi
N=${1:-1000}
CHANGES=${2:-100}
BURST=${3:-200}
ulimit -n 65536 2>/dev/null || ulimit -n $((N + 1024)) 2>/dev/null || true
cargo build --release --quiet
exec cargo bench --quiet --bench presence_fanout -- "${target[@]}" "$N" "$CHANGES" "$BURST"
