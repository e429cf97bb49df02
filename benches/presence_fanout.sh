#!/usr/bin/env bash
# Presence fan-out benchmark (not a test): N watchers on loopback SUBSCRIBE to one extension
# of the release engine and answer every NOTIFY with 200 OK; a publisher changes its status
# with SIP PUBLISH. Reports PUBLISH -> first NOTIFY (an upper bound of commit -> first NOTIFY,
# durable write included), PUBLISH -> last of the N NOTIFYs (fan-out), and sustained NOTIFY/s
# with changes back to back. Timings are printed, never asserted.
#
#   benches/presence_fanout.sh [N=1000] [CHANGES=100] [BURST=200]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
CHANGES=${2:-100}
BURST=${3:-200}
ulimit -n 65536 2>/dev/null || ulimit -n $((N + 1024)) 2>/dev/null || true
cargo build --release --quiet
exec cargo bench --quiet --bench presence_fanout -- "$N" "$CHANGES" "$BURST"
