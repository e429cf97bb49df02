#!/usr/bin/env bash
# SIP digest benchmark (not a test): in one run against one release engine on loopback, the same
# phones make feature-code calls (INVITE -> 200 -> ACK -> BYE) and subscriptions (SUBSCRIBE ->
# 200 + NOTIFY, unsubscribe) from a trusted source (127.0.0.1) and from an untrusted one
# (127.0.0.2) answering SHA-256 digest challenges. Prints calls/s and SUBSCRIBE/s, medians over
# the rounds, and the ratio digest/trusted. Figures are printed, never asserted.
#
#   benches/auth.sh [PHONES=16] [CYCLES=40] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
PHONES=${1:-16}
CYCLES=${2:-40}
ROUNDS=${3:-5}
cargo build --release --quiet
exec cargo bench --quiet --bench auth -- "$PHONES" "$CYCLES" "$ROUNDS"
