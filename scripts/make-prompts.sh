#!/usr/bin/env bash
# Regenerates the bundled voice prompts with espeak-ng:
#   scripts/make-prompts.sh [LANG] [VOICE]     (defaults: en en-us)
# writes prompts/<LANG>/<stem>.wav as 16 kHz mono 16-bit PCM WAV, trimmed, normalised to about
# -3 dBFS peak, with a 100 ms tail so consecutive prompts do not run into each other.
#
# Translators: copy texts_en below to texts_<lang>, translate the right-hand side of each line
# (keep the stems: they are PromptId::file_stem() in src/media/prompt_id.rs), then run
#   scripts/make-prompts.sh <lang> <espeak-ng voice>
# Recorded voices can replace any file later (.wav, .flac or .ogg, any rate) without this script.
set -euo pipefail

LANG_CODE="${1:-en}"
VOICE="${2:-en-us}"
SPEED="${SPEED:-150}" # words per minute; a little slower than espeak's 175 for phone lines

texts_en() {
    cat <<'TEXTS'
your_status_is|Your presence status is
status_unavailable|Unavailable
status_available|Available
status_away|Away
status_chat|Chat
status_dnd|Do not disturb
status_custom|Custom status
menu_intro|Please choose your new status.
menu_unavailable|For unavailable, press
menu_available|For available, press
menu_away|For away, press
menu_chat|For chat, press
menu_dnd|For do not disturb, press
menu_custom|For your custom status, press
digit_0|zero
digit_1|one
digit_2|two
digit_3|three
digit_4|four
digit_5|five
digit_6|six
digit_7|seven
digit_8|eight
digit_9|nine
digit_star|star
digit_pound|pound
digit_a|A
digit_b|B
digit_c|C
digit_d|D
or|or
you_chose|You chose
to_confirm_press|To confirm, press
to_choose_again_press|To choose again, press
saved|Your status has been saved.
no_change|No change was made.
invalid_key|That key is not valid.
no_key_pressed|No key was pressed.
goodbye|Goodbye.
no_custom_status|No custom status is set.
save_failed|Sorry, the status could not be saved.
TEXTS
}

for tool in espeak-ng sox; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is not installed (apt-get install -y espeak-ng sox)" >&2
        exit 1
    fi
done

if ! declare -F "texts_${LANG_CODE}" >/dev/null; then
    echo "error: no texts for language '${LANG_CODE}'; copy texts_en in $0 to texts_${LANG_CODE} and translate it" >&2
    exit 1
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/prompts/${LANG_CODE}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"

count=0
while IFS='|' read -r stem text; do
    [ -z "$stem" ] && continue
    espeak-ng -v "$VOICE" -s "$SPEED" -w "$TMP/raw.wav" -- "$text"
    # silence/reverse/silence/reverse trims leading and trailing silence (threshold 0.1%);
    # -D keeps the output free of dither noise so regenerating gives identical files.
    sox -D "$TMP/raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$OUT/${stem}.wav" \
        silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse \
        norm -3 pad 0.02 0.1 rate 16000
    count=$((count + 1))
done < <("texts_${LANG_CODE}")

echo "wrote ${count} prompts to ${OUT} (voice ${VOICE})"
