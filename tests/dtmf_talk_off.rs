//! Talk-off: speech must never be taken for a key. The bundled prompts, espeak-ng speech in
//! many languages and voices (digits and phone numbers among it) and free recordings on the
//! machine go through our in-band detector straight, louder, and through PCMU, PCMA and Opus;
//! not one key may come out.

use std::path::Path;

use starcode::dtmf::q24::{self, speech, speech::Utterance};
use starcode::media::Codec;

/// Every piece of speech we can get here. Without espeak-ng the test still runs on the rest,
/// unless `CI` is set: CI machines must have it (scripts/bootstrap.sh installs it).
fn corpus(dir: &Path) -> Vec<Utterance> {
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let mut all = speech::bundled_prompts(&prompts, "en").unwrap();
    all.extend(speech::installed_recordings().unwrap());
    if speech::espeak_available() {
        all.extend(speech::espeak_corpus(dir).unwrap());
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "espeak-ng is missing (run scripts/bootstrap.sh); CI needs it for the talk-off test"
        );
        eprintln!("espeak-ng not found: talk-off runs on the prompts and recordings only");
    }
    all
}

/// The keys our detector finds in `pcm` (at `rate`), with their letters for the report.
fn talk_off(rate: u32, pcm: &[i16]) -> String {
    q24::inband_keys(rate, pcm)
        .unwrap()
        .iter()
        .map(|k| k.as_char())
        .collect()
}

#[test]
fn speech_never_talks_off() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let seconds: f64 = corpus.iter().map(Utterance::seconds).sum();
    let mut failures = Vec::new();
    let mut paths = 0;
    for u in &corpus {
        let louder = speech::at_level(&u.pcm, speech::SPEECH_LEVEL_DBM0 + 6.0);
        let runs = [
            ("direct", q24::RATE, u.pcm.clone()),
            ("direct +6 dB", q24::RATE, louder),
            (
                "PCMU",
                q24::RATE,
                q24::through(Codec::Pcmu, &u.pcm).unwrap(),
            ),
            (
                "PCMA",
                q24::RATE,
                q24::through(Codec::Pcma, &u.pcm).unwrap(),
            ),
            (
                "Opus",
                Codec::Opus.pcm_rate(),
                q24::through_native(Codec::Opus, &u.pcm).unwrap(),
            ),
        ];
        paths = runs.len();
        for (path, rate, pcm) in runs {
            let keys = talk_off(rate, &pcm);
            if !keys.is_empty() {
                failures.push(format!("{} via {path}: false keys {keys}", u.name));
            }
        }
    }
    println!(
        "talk-off: {} utterances, {:.1} minutes of speech, each through {paths} paths \
         ({:.1} minutes in all): {} false keys",
        corpus.len(),
        seconds / 60.0,
        seconds * paths as f64 / 60.0,
        failures.len()
    );
    assert!(seconds > 60.0, "too little speech: {seconds:.0} s");
    assert!(failures.is_empty(), "talk-off:\n{}", failures.join("\n"));
}
