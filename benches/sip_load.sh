#!/usr/bin/env bash
# Load benchmark (not a test): N concurrent sipp calls against the release engine on loopback.
# Each call hears the prompts for 20 s, then picks Away and confirms by SIP INFO. Reports the
# calls whose status was saved right, RTP send lateness (the engine's own histogram: due time
# vs. actual send), CPU per call and resident memory per call.
#
#   benches/sip_load.sh [N=100] [RATE=50 calls/s]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
RATE=${2:-50}
command -v sipp >/dev/null || { echo "needs sipp (apt-get install sip-tester)"; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill $engine 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/starcode.toml" <<EOT
[prompts]
dir = "$PWD/prompts"
[store]
path = "$work/presence.db"
[http]
listen = "127.0.0.1:0"
[media]
rtp_ports = "30000-39999"
rtp_timeout = "120s"
[sip]
listen = ["udp:127.0.0.1:35060"]
EOT
RUST_LOG=warn,starcode::runtime=info target/release/starcode --log-format json run --config "$work/starcode.toml" 2> "$work/engine.log" &
engine=$!
for _ in $(seq 100); do grep -q "starcode ready" "$work/engine.log" 2>/dev/null && break; sleep 0.1; done
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$engine/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$engine/stat"; }
base_rss=$(rss_kib)
ticks0=$(cpu_ticks)
scenario="$PWD/benches/sip_load.xml"
start=$(date +%s.%N)
(cd "$work" && timeout $((N / RATE + 120)) sipp 127.0.0.1:35060 -sf "$scenario" \
   -m "$N" -l "$N" -r "$RATE" -i 127.0.0.1 -p 35070 -mp 36000 -timeout $((N / RATE + 100))s \
   -nostdin -trace_stat -fd 1 >/dev/null 2>&1) &
sipp_pid=$!
# Peak memory: sample while all calls are up (they overlap from N/RATE s to 20 s).
peak_rss=$base_rss
while kill -0 $sipp_pid 2>/dev/null; do
  r=$(rss_kib); [ "$r" -gt "$peak_rss" ] && peak_rss=$r
  sleep 0.5
done
wait $sipp_pid || echo "sipp reported failed calls"
end=$(date +%s.%N)
ticks1=$(cpu_ticks)
kill -TERM $engine; wait $engine 2>/dev/null || true
hz=$(getconf CLK_TCK)
saved=$(target/release/starcode status --db "$work/presence.db" list --json | grep -c '"status":"away"' || true)
line=$(grep '"RTP send lateness"\|send lateness' "$work/engine.log" | tail -1)
field() { echo "$line" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
python3 - "$N" "$saved" "$base_rss" "$peak_rss" "$ticks0" "$ticks1" "$hz" "$start" "$end" \
  "$(field rtp_packets)" "$(field lateness_p50_us)" "$(field lateness_p99_us)" "$(field lateness_p999_us)" "$(field lateness_max_us)" <<'PY'
import sys
n, saved, base, peak, t0, t1, hz, start, end, pk, p50, p99, p999, mx = sys.argv[1:]
n, saved, base, peak = int(n), int(saved), int(base), int(peak)
cpu_s = (int(t1) - int(t0)) / int(hz)
wall = float(end) - float(start)
print(f"calls: {n}, saved right: {saved} ({n - saved} wrong or lost)")
print(f"RTP packets sent: {pk}; send lateness p50 {int(p50)/1000:.2f} ms, p99 {int(p99)/1000:.2f} ms, "
      f"p99.9 {int(p999)/1000:.2f} ms, max {int(mx)/1000:.2f} ms")
print(f"engine CPU: {cpu_s:.1f} s over {wall:.1f} s wall = {100*cpu_s/wall:.0f}% of one core; "
      f"{1000*cpu_s/n:.1f} ms CPU per call")
print(f"resident memory: {base/1024:.1f} MiB idle, {peak/1024:.1f} MiB at peak; "
      f"{(peak-base)/max(n,1):.1f} KiB per concurrent call")
PY
