#!/usr/bin/env bash
# Web API benchmark (not a test): one release engine on loopback with EXTENSIONS accounts (nine
# in ten with a status) and an admin API token from the CLI. Times GET /api/v1/extensions (the
# first page, every page of the board, a filtered query) and, with CLIENTS SSE clients on
# /api/v1/events, the time from a PUT of a presence to its event at the first and at the last
# client. Prints p50/p99, requests/s, the engine's CPU and the load average; never asserts.
#
#   benches/web_api.sh [EXTENSIONS=10000] [REPS=50] [CLIENTS=1000] [PUTS=50]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTENSIONS=${1:-10000}
REPS=${2:-50}
CLIENTS=${3:-1000}
PUTS=${4:-50}
# One socket per SSE client in the bench and one in the engine (which inherits this limit).
WANT=$((CLIENTS + 512))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$WANT" ]; then
    ulimit -n "$WANT" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
cargo build --release --quiet
exec cargo bench --quiet --bench web_api -- "$EXTENSIONS" "$REPS" "$CLIENTS" "$PUTS"
