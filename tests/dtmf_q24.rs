//! The standard DTMF receiver tests (ITU-T Q.24 figures, in the order of the classic receiver
//! test tapes) run against our in-band detector: straight, and after a pass through each codec a
//! call may use. Every key that must be accepted is, in order; nothing else is reported.

use starcode::dtmf::q24::{self, Q24Test, Requirement, Score};
use starcode::media::{f32_to_i16, resample, Codec};

/// Runs every catalogue test on the signal `path` makes of it and fails with a table of every
/// test that did not pass.
fn run_suite(label: &str, path: impl Fn(&Q24Test) -> (u32, Vec<i16>)) {
    let mut failures = Vec::new();
    let mut total = Score::default();
    for test in q24::suite() {
        let (rate, pcm) = path(&test);
        let reported = q24::inband_keys(rate, &pcm).unwrap();
        let score = test.score(&reported);
        total = total + score;
        let line = format!(
            "{label:>8} | {:<34} | {:?} | {}/{} detected, {} false | {}",
            test.name,
            test.requirement,
            score.detected,
            score.expected,
            score.false_keys,
            reported.iter().map(|k| k.as_char()).collect::<String>()
        );
        println!("{line}");
        if !score.passed() {
            failures.push(line);
        }
    }
    println!(
        "{label}: {}/{} keys detected, {} false",
        total.detected, total.expected, total.false_keys
    );
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

#[test]
fn q24_direct() {
    run_suite("direct", |t| (q24::RATE, t.pcm.clone()));
}

#[test]
fn q24_through_pcmu() {
    run_suite("PCMU", |t| {
        (q24::RATE, q24::through(Codec::Pcmu, &t.pcm).unwrap())
    });
}

#[test]
fn q24_through_pcma() {
    run_suite("PCMA", |t| {
        (q24::RATE, q24::through(Codec::Pcma, &t.pcm).unwrap())
    });
}

/// Opus decoded at 48 kHz, as a call feeds it to the detector (which decimates).
#[test]
fn q24_through_opus_at_48k() {
    run_suite("Opus48k", |t| {
        (
            Codec::Opus.pcm_rate(),
            q24::through_native(Codec::Opus, &t.pcm).unwrap(),
        )
    });
}

/// Opus resampled back to 8 kHz, the form narrowband-only receivers are benchmarked on.
#[test]
fn q24_through_opus_at_8k() {
    run_suite("Opus8k", |t| {
        (q24::RATE, q24::through(Codec::Opus, &t.pcm).unwrap())
    });
}

/// Wideband audio (16 kHz, as from G.722 or a wideband phone), which the detector decimates.
#[test]
fn q24_at_16k() {
    run_suite("16k", |t| {
        let f: Vec<f32> = t.pcm.iter().map(|&s| f32::from(s) / 32767.0).collect();
        let wide = resample(&f, q24::RATE, 16_000).unwrap();
        (16_000, f32_to_i16(&wide))
    });
}

#[test]
fn every_requirement_is_covered() {
    let suite = q24::suite();
    for requirement in [
        Requirement::Accept,
        Requirement::Reject,
        Requirement::TalkOff,
    ] {
        assert!(suite.iter().any(|t| t.requirement == requirement));
    }
}
