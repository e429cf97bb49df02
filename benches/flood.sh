#!/usr/bin/env bash
# Flood benchmark (not a test): source A (127.0.0.2) floods the release engine on loopback with
# garbage datagrams and SUBSCRIBEs while source B (127.0.0.1) makes feature-code calls and has
# watchers. Reports the engine's peak resident memory (VmHWM) idle and after the flood, B's
# calls and watchers served, and the 503s/drops. Figures are printed, never asserted.
#
#   benches/flood.sh [GARBAGE=100000] [SUBSCRIBES=20000] [CALLS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
GARBAGE=${1:-100000}
SUBSCRIBES=${2:-20000}
CALLS=${3:-20}
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
cargo build --release --quiet
exec cargo bench --quiet --bench flood -- "$GARBAGE" "$SUBSCRIBES" "$CALLS"
