#!/usr/bin/env bash
# Fuzzes every parser that sees outside bytes (cargo fuzz / libFuzzer), MINUTES per target,
# one target after the other, one job each (the machine is shared: -jobs=1 -workers=1).
#
#   scripts/fuzz.sh [MINUTES] [TARGET...]      default: 3 minutes, every target
#
# Installs what it needs when missing: a nightly toolchain (rustup, minimal profile; stable with
# RUSTC_BOOTSTRAP=1 when nightly cannot be had, see below) and cargo-fuzz (cargo install).
# Builds the seed corpora (fuzz/seeds.py: captures in fixtures/, the sipp scenarios in
# tests/e2e/, RFC 4475 messages in tests/data/rfc4475/ when present;
# FUZZ_RFC4475=DIR adds another directory of .dat files). The corpus libFuzzer grows is kept in
# fuzz/corpus/TARGET (not committed); findings land in fuzz/artifacts/TARGET/, and each one
# must become a regression test in the crate (see README "Fuzzing").
# Not part of CI or scripts/test.sh: it needs nightly (or the bootstrap switch) and minutes
# per target.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
MINUTES=${1:-3}
shift || true
ALL=(sip_message sip_stream ua sdp rtp_dtmf sip_info pidf capture config sip_auth)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
case $MINUTES in ''|*[!0-9.]*) echo "MINUTES must be a number, got '$MINUTES'" >&2; exit 2;; esac
SECONDS_PER_TARGET=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
[ "$SECONDS_PER_TARGET" -ge 1 ] || { echo "MINUTES too small" >&2; exit 2; }

# cargo fuzz passes -Z flags (sanitizer, coverage), which only nightly takes. When nightly is
# missing and cannot be installed (no network, no rustup), stable is used with
# RUSTC_BOOTSTRAP=1, which lets a stable compiler accept them; FUZZ_TOOLCHAIN=stable forces it.
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
if [ "$TOOLCHAIN" = nightly ] && ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "== installing the nightly toolchain (cargo fuzz needs it)" >&2
    if ! rustup toolchain install nightly --profile minimal >&2; then
        echo "== nightly cannot be installed: stable with RUSTC_BOOTSTRAP=1 instead" >&2
        TOOLCHAIN=stable
    fi
fi
if [ "$TOOLCHAIN" != nightly ]; then
    export RUSTC_BOOTSTRAP=1
fi
CARGO=(cargo "+$TOOLCHAIN")
command -v rustup >/dev/null || CARGO=(cargo)
if ! "${CARGO[@]}" fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz" >&2
    nice -n 10 cargo install cargo-fuzz --locked
fi
command -v python3 >/dev/null || { echo "python3 is needed for the seed corpora (fuzz/seeds.py)" >&2; exit 1; }

extra=()
[ -n "${FUZZ_RFC4475:-}" ] && extra=(--rfc4475 "$FUZZ_RFC4475")
rm -rf fuzz/seeds
python3 fuzz/seeds.py "${extra[@]}"

echo "== building the fuzz targets ($TOOLCHAIN${RUSTC_BOOTSTRAP:+ with RUSTC_BOOTSTRAP=1}, release, address sanitizer)" >&2
(cd fuzz && "${CARGO[@]}" fuzz build -O) >&2
BIN=$ROOT/fuzz/target/x86_64-unknown-linux-gnu/release

RUN=$ROOT/fuzz/runs/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
ROWS=()
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$RUN/$t"
    dict=()
    case $t in sip_message|sip_stream|ua|sdp|sip_auth) dict=(-dict="$ROOT/fuzz/sip.dict");; esac
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    echo "== $t: $SECONDS_PER_TARGET s" >&2
    start=$(date +%s)
    # -jobs=1 writes the fuzzer's output to fuzz-0.log in the working directory.
    (cd "$RUN/$t" && "$BIN/$t" "$ROOT/fuzz/corpus/$t" "$ROOT/fuzz/seeds/$t" "${dict[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" -jobs=1 -workers=1 \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$ROOT/fuzz/artifacts/$t/" >/dev/null 2>&1) || true
    secs=$(( $(date +%s) - start ))
    log=$RUN/$t/fuzz-0.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then
        # A crash ends the job before the final stats: take the last status line.
        execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    fi
    execs=${execs:-0}
    crashes=$(( $(find "fuzz/artifacts/$t" -type f | wc -l) - before ))
    rate=$(( secs > 0 ? execs / secs : 0 ))
    ROWS+=("$(printf '%-12s %8s %12s %9s %8s' "$t" "$secs" "$execs" "$rate" "$crashes")")
done

{
    printf '%-12s %8s %12s %9s %8s\n' target seconds executions execs/s crashes
    printf '%s\n' "${ROWS[@]}"
} | tee "$RUN/summary.txt"
echo "logs: $RUN; findings: fuzz/artifacts/TARGET/" >&2
