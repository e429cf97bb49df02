#!/usr/bin/env bash
# Renders the `starcode detect` fixtures in fixtures/detect/ with tools that are not ours:
# sox makes the key tones, LAME encodes the MP3, ffmpeg encodes G.722 and sends it as RTP,
# dumpcap captures that RTP on loopback. Needs: sox, lame, ffmpeg, dumpcap (Debian: sox lame
# ffmpeg tshark). The keys and their times are the KEYS table below; fixtures/detect/README.md
# and the tests in tests/detect_fixtures.rs state the same truth.
set -euo pipefail

out="$(cd "$(dirname "$0")/.." && pwd)/fixtures/detect"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# key  low  high  start_ms  length_ms  (in time order, no overlap)
KEYS="
1 697 1209 500 100
5 770 1336 800 100
9 852 1477 1100 100
# 941 1477 1400 100
0 941 1336 1800 400
* 941 1209 2500 60
"
TOTAL_MS=3000

seconds() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# Renders the key sequence as mono 16-bit WAV at rate $1 into $2: each key's two tones at
# about -10.5 dBFS each (sox averages the two sines, then vol 0.6), silence between.
render() {
    local rate=$1 dest=$2 at=0 n=0 parts=()
    while read -r key low high start len; do
        [ -z "$key" ] && continue
        n=$((n + 1))
        if [ "$start" -gt "$at" ]; then
            sox -n -r "$rate" -b 16 -c 1 "$work/s$n.wav" trim 0 "$(seconds $((start - at)))"
            parts+=("$work/s$n.wav")
        fi
        sox -n -r "$rate" -b 16 "$work/k$n.wav" synth "$(seconds "$len")" \
            sine "$low" sine "$high" remix - vol 0.6
        parts+=("$work/k$n.wav")
        at=$((start + len))
    done <<<"$KEYS"
    sox -n -r "$rate" -b 16 -c 1 "$work/tail.wav" trim 0 "$(seconds $((TOTAL_MS - at)))"
    parts+=("$work/tail.wav")
    sox "${parts[@]}" "$dest"
}

# MP3: 44.1 kHz (detect converts it to 8 kHz), LAME at 64 kbit/s CBR, no ID3 tag.
render 44100 "$work/keys_44k.wav"
lame --quiet --noreplaygain -t -b 64 --cbr "$work/keys_44k.wav" "$out/keys_lame.mp3"
# The same with an ID3v2 tag in front, as most tools write it.
lame --quiet --noreplaygain -b 64 --cbr --tt "starcode detect fixture" --add-id3v2 \
    "$work/keys_44k.wav" "$out/keys_lame_id3.mp3"

# G.722: 16 kHz audio, ffmpeg's G.722 encoder and RTP muxer (payload type 9, 20 ms packets:
# 160 bytes of payload), sent in real time to a loopback port while dumpcap records it.
render 16000 "$work/keys_16k.wav"
port=40722
dumpcap -q -i lo -f "udp port $port" -w "$work/g722.pcapng" &
capture=$!
sleep 2
ffmpeg -loglevel error -re -i "$work/keys_16k.wav" -c:a g722 -packetsize 172 \
    -f rtp "rtp://127.0.0.1:$port"
sleep 1
kill -INT "$capture"
wait "$capture" || true
# A classic pcap, as tcpdump users hand it over.
editcap -F pcap "$work/g722.pcapng" "$out/g722_ffmpeg.pcap"
echo "wrote $out"
