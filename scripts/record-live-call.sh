#!/usr/bin/env bash
# Records a live call on loopback into fixtures/: starts starcode, captures with tshark while
# sipp places one call, and leaves NAME.pcap for `starcode replay` and NAME.transcript.jsonl,
# the live engine's own transcript of the call (its "call transcript" log lines, logged as JSON
# at debug level), which tests/live_replay.rs compares with the replay's. The .expect file is
# written by hand from what the live call decided (the engine's "call finished" log line is
# printed).
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
RUST_LOG=info,starcode::runtime::media=debug target/debug/starcode --log-format json \
  run --config "$work/starcode.toml" 2> "$work/engine.log" &
engine=$!
# Call only once the engine listens (loading the prompts takes seconds in a debug build): an
# INVITE retransmitted until then would make the capture's first INVITE one the engine never
# heard.
for _ in $(seq 1 600); do
  grep -q '"starcode ready"' "$work/engine.log" 2>/dev/null && break
  sleep 0.1
done
grep -q '"starcode ready"' "$work/engine.log" || { echo "the engine did not start"; cat "$work/engine.log"; exit 1; }
tshark -q -i lo -f "udp and (port 25060 or port 25070 or portrange 41000-41099 or portrange 42000-42003)" \
  -w "$work/capture.pcapng" 2> "$work/tshark.log" &
capture=$!
# Call only once tshark captures: a capture that starts late misses the INVITE.
for _ in $(seq 1 300); do
  grep -q "Capturing on" "$work/tshark.log" 2>/dev/null && break
  sleep 0.1
done
sleep 0.5
sed "s/@CHOICE@/$choice/; s/@CONFIRM@/$confirm/" "tests/e2e/$scenario" > "$work/scenario.xml"
(cd "$work" && timeout 90 sipp 127.0.0.1:25060 -sf scenario.xml -m 1 -i 127.0.0.1 -p 25070 -mp 42000 \
  -key caller "$caller" -key code "$code" -key codec_pt "$pt" -key codec_name "$codec" \
  -timeout 60s -nostdin >/dev/null) || echo "sipp reported a failure"
sleep 2
kill "$capture"; wait "$capture" 2>/dev/null || true
# Plain pcap keeps fixtures readable by every tool.
tshark -r "$work/capture.pcapng" -F pcap -w "fixtures/$name.pcap"
# Each transcript line is a JSON string in the log record's `transcript` field.
python3 - "$work/engine.log" "fixtures/$name.transcript.jsonl" <<'PY'
import json, sys
lines = []
for raw in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        record = json.loads(raw)
    except ValueError:
        continue
    fields = record.get("fields", {})
    if fields.get("message") == "call transcript":
        lines.append(fields["transcript"])
    elif fields.get("message") == "call finished":
        print("call finished:", {k: v for k, v in fields.items() if k != "message"})
if not lines:
    sys.exit("the engine logged no call transcript")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
echo "wrote fixtures/$name.pcap and fixtures/$name.transcript.jsonl"
