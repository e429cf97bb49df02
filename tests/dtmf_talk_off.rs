//! Talk-off: speech must never be taken for a key. The bundled prompts, espeak-ng speech in
//! many languages and voices (digits and phone numbers among it; the receiver comparison's
//! passage in its twelve voices; high women's and low, creaky men's voices) and free
//! recordings on the machine and the real speech of `fixtures/dtmf/speech/` go through our
//! in-band detector straight, louder, and through
//! PCMU, PCMA and Opus; not one key may come out.

use std::path::Path;

#[path = "support/speech.rs"]
mod speech;

use speech::Utterance;
use starcode::dtmf::q24;
use starcode::media::Codec;

/// Every piece of speech we can get here. Without espeak-ng the test still runs on the rest,
/// unless `CI` is set: CI machines must have it (scripts/bootstrap.sh installs it).
fn corpus(dir: &Path) -> Vec<Utterance> {
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let mut all = speech::bundled_prompts(&prompts, "en").unwrap();
    all.extend(speech::installed_recordings().unwrap());
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dtmf/speech");
    all.extend(speech::fixture_recordings(&real).unwrap());
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

/// The false keys in `u` through every path (direct, 6 dB louder, PCMU, PCMA, Opus),
/// one line per path that had any.
fn failures(u: &Utterance) -> Vec<String> {
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
        // Back at 8 kHz through rubato rather than our decimator: the decimator built without
        // optimisation would take longer than the rest of the test together, and the Q.24
        // suite already runs every test signal through it after Opus.
        (
            "Opus",
            q24::RATE,
            q24::through(Codec::Opus, &u.pcm).unwrap(),
        ),
    ];
    runs.into_iter()
        .filter_map(|(path, rate, pcm)| {
            let keys = talk_off(rate, &pcm);
            (!keys.is_empty()).then(|| format!("{} via {path}: false keys {keys}", u.name))
        })
        .collect()
}

/// How many paths [`failures`] runs each utterance through.
const PATHS: usize = 5;

#[test]
fn speech_never_talks_off() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let seconds: f64 = corpus.iter().map(Utterance::seconds).sum();
    // Half an hour of speech through five paths: split over the cores.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let corpus = &corpus;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    corpus
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .flat_map(failures)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    println!(
        "talk-off: {} utterances, {:.1} minutes of speech, each through {PATHS} paths \
         ({:.1} minutes in all): {} false keys",
        corpus.len(),
        seconds / 60.0,
        seconds * PATHS as f64 / 60.0,
        failures.len()
    );
    assert!(seconds > 60.0, "too little speech: {seconds:.0} s");
    assert!(failures.is_empty(), "talk-off:\n{}", failures.join("\n"));
}
