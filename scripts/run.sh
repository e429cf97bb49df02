#!/usr/bin/env bash
# Runs the engine on the embedded defaults: SQLite in data/presence.db, the bundled English
# prompts, config/starcode.toml. Extra arguments go to `starcode run`.
set -euo pipefail
cd "$(dirname "$0")/.."
STARCODE_BOOTSTRAP_AUDIO=0 STARCODE_BOOTSTRAP_E2E=0 STARCODE_BOOTSTRAP_WEB=0 scripts/bootstrap.sh
exec cargo run --release --quiet -- run --config config/starcode.toml "$@"
