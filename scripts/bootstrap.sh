#!/usr/bin/env bash
# Installs what building and testing starcode needs, only where it is missing, so the README's
# two commands work on a fresh Debian/Ubuntu machine. Safe to run again: it does nothing when
# everything is there.
set -euo pipefail

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }

# cmake builds the bundled static libopus (the `opus` crate); a C compiler builds SQLite.
have cmake || need_pkgs+=(cmake)
have cc || need_pkgs+=(build-essential)
have pkg-config || need_pkgs+=(pkg-config)
# PostgreSQL's initdb and pg_ctl: the store tests start a throwaway server of their own in a
# temp dir on a free loopback port (src/presence/postgres/test_server.rs), never the cluster
# the package may set up.
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need_pkgs+=(postgresql)
# sipp (Debian package sip-tester) is the caller in the end-to-end tests.
if [ "${STARCODE_BOOTSTRAP_E2E:-1}" = 1 ]; then
  have sipp || need_pkgs+=(sip-tester)
  # xmllint validates PIDF bodies against the schemas in tests/schemas.
  have xmllint || need_pkgs+=(libxml2-utils)
  # baresip (Debian package baresip-core) is the real softphone that watches presence.
  have baresip || need_pkgs+=(baresip-core)
  # linphonec (Debian package linphone-cli) is a second softphone that watches presence.
  have linphonec || need_pkgs+=(linphone-cli)
  # Kamailio (Debian kamailio, 5.6 on bookworm) is the real SIP proxy in front of the engine
  # (tests/e2e/kamailio.rs with tests/kamailio/dispatcher.cfg); its presence modules and
  # db_sqlite run it as the presence server the fan-out bench compares with
  # (benches/kamailio/presence.cfg).
  have kamailio || [ -x /usr/sbin/kamailio ] || need_pkgs+=(kamailio)
  compgen -G '/usr/lib/*/kamailio/modules/presence_xml.so' >/dev/null ||
    need_pkgs+=(kamailio-presence-modules)
  compgen -G '/usr/lib/*/kamailio/modules/db_sqlite.so' >/dev/null ||
    need_pkgs+=(kamailio-sqlite-modules)
  # db_postgres: the bench's Kamailio on PostgreSQL (presence_fanout --target kamailio-postgres).
  compgen -G '/usr/lib/*/kamailio/modules/db_postgres.so' >/dev/null ||
    need_pkgs+=(kamailio-postgres-modules)
  # curl reads the engine's HTTP side; the Prometheus project's Python parser checks /metrics.
  have curl || need_pkgs+=(curl)
  [ -f /usr/lib/python3/dist-packages/prometheus_client/openmetrics/parser.py ] ||
    need_pkgs+=(python3-prometheus-client)
  # A Python venv holds the OpenAPI validators (PyPI) that check the API against its document.
  /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
fi
# chromium + chromedriver (Debian package chromium-driver) run the pages' browser tests
# (tests/web_pages.rs), headless.
if [ "${STARCODE_BOOTSTRAP_WEB:-1}" = 1 ]; then
  have chromium || need_pkgs+=(chromium)
  have chromedriver || need_pkgs+=(chromium-driver)
  have curl || need_pkgs+=(curl)
fi
# espeak-ng and sox regenerate the prompts and make test audio.
if [ "${STARCODE_BOOTSTRAP_AUDIO:-1}" = 1 ]; then
  have espeak-ng || need_pkgs+=(espeak-ng)
  have sox || need_pkgs+=(sox)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_pkgs[*]}" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if have sudo; then sudo="sudo"; else
      echo "bootstrap: need root or sudo to install: ${need_pkgs[*]}" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# openapi-spec-validator and openapi-core (pinned, from PyPI) read the engine's OpenAPI
# document and check real requests and answers against it (tests/e2e/openapi.rs).
openapi_venv="$(cd "$(dirname "$0")/.." && pwd)/target/tools/openapi"
if [ "${STARCODE_BOOTSTRAP_E2E:-1}" = 1 ] && [ ! -x "$openapi_venv/bin/openapi-spec-validator" ]; then
  echo "bootstrap: installing the OpenAPI validators into $openapi_venv" >&2
  rm -rf "$openapi_venv"
  /usr/bin/python3 -m venv "$openapi_venv"
  "$openapi_venv/bin/pip" install -q --disable-pip-version-check \
    "openapi-spec-validator==0.7.1" "openapi-core==0.19.4"
fi

# axe-core (Deque, MPL-2.0), the accessibility rules the page tests run inside Chromium,
# fetched from the npm registry at a pinned version and checked against its SHA-256.
axe_dir="$(cd "$(dirname "$0")/.." && pwd)/target/tools/axe-core"
axe_version="4.10.2"
axe_sha256="9ea2d2d6917da998122bdacfd3b473e31ead53f4b87146c716a12edf89158100"
if [ "${STARCODE_BOOTSTRAP_WEB:-1}" = 1 ] && [ ! -f "$axe_dir/$axe_version/axe.min.js" ]; then
  echo "bootstrap: fetching axe-core $axe_version into $axe_dir" >&2
  have curl || { echo "bootstrap: curl is needed to fetch axe-core" >&2; exit 1; }
  mkdir -p "$axe_dir/$axe_version"
  tarball="$axe_dir/axe-core-$axe_version.tgz"
  curl -fsSL -o "$tarball" "https://registry.npmjs.org/axe-core/-/axe-core-$axe_version.tgz"
  echo "$axe_sha256  $tarball" | sha256sum -c --quiet -
  tar -xzf "$tarball" -C "$axe_dir/$axe_version" --strip-components=1 package/axe.min.js package/LICENSE
  rm -f "$tarball"
fi

if ! have cargo; then
  echo "bootstrap: cargo is missing; install Rust from https://rustup.rs and run this again" >&2
  exit 1
fi
