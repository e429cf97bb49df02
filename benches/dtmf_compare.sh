#!/usr/bin/env bash
# Runs starcode's in-band DTMF detector, the `dtmf` crate, spandsp's dtmf_rx and multimon-ng side by side on
# the same audio (the standard receiver tests, codec passes, talk-off speech, speed) and prints
# Markdown tables. Installs what it needs where it is missing: the main build's tools (through
# scripts/bootstrap.sh, without the end-to-end extras), espeak-ng for synthetic speech, and
# libspandsp-dev, which only this bench links, and multimon-ng, its fourth receiver. Arguments go to the bench binary
# (--speed-runs N, --no-espeak).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

STARCODE_BOOTSTRAP_E2E=0 scripts/bootstrap.sh

missing=""
for pkg in libspandsp-dev multimon-ng; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "dtmf_compare: installing$missing" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "dtmf_compare: need root or sudo to install libspandsp-dev" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Share the main build's target directory so starcode's dependencies are compiled once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
exec cargo run --release --locked --quiet --manifest-path benches/dtmf_compare/Cargo.toml -- "$@"
