#!/usr/bin/env bash
# Records a live call on loopback into fixtures/: starts starcode, captures with tshark while
# sipp places one call, and leaves NAME.pcap for `starcode replay`. The .expect file is written
# by hand from what the live call decided (the engine's "call finished" log line is printed).
#
#   scripts/record-live-call.sh NAME SCENARIO CHOICE CONFIRM CALLER CODE PT CODEC
#   scripts/record-live-call.sh live_away_pcmu caller_rfc2833.xml 3 1 2001 '*46' 0 PCMU
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 scenario=$2 choice=$3 confirm=$4 caller=$5 code=$6 pt=$7 codec=$8
command -v tshark >/dev/null || { echo "needs tshark (apt-get install tshark)"; exit 1; }
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)"; exit 1; }
cargo build --quiet
work=$(mktemp -d)
trap 'kill $engine $capture 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/starcode.toml" <<EOT
[prompts]
dir = "$PWD/prompts"
[store]
path = "$work/presence.db"
[http]
listen = "127.0.0.1:0"
[media]
rtp_ports = "41000-41099"
[sip]
listen = ["udp:127.0.0.1:25060"]
EOT
RUST_LOG=info target/debug/starcode run --config "$work/starcode.toml" 2> "$work/engine.log" &
engine=$!
sleep 1
tshark -q -i lo -f "udp and (port 25060 or port 25070 or portrange 41000-41099 or portrange 42000-42003)" \
  -w "$work/capture.pcapng" 2>/dev/null &
capture=$!
sleep 2
sed "s/@CHOICE@/$choice/; s/@CONFIRM@/$confirm/" "tests/e2e/$scenario" > "$work/scenario.xml"
(cd "$work" && timeout 90 sipp 127.0.0.1:25060 -sf scenario.xml -m 1 -i 127.0.0.1 -p 25070 -mp 42000 \
  -key caller "$caller" -key code "$code" -key codec_pt "$pt" -key codec_name "$codec" \
  -timeout 60s -nostdin >/dev/null) || echo "sipp reported a failure"
sleep 2
kill "$capture"; wait "$capture" 2>/dev/null || true
# Plain pcap keeps fixtures readable by every tool.
tshark -r "$work/capture.pcapng" -F pcap -w "fixtures/$name.pcap"
grep -a "call finished" "$work/engine.log" | sed 's/\x1b\[[0-9;]*m//g' || true
echo "wrote fixtures/$name.pcap"
