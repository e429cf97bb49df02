//! Runs starcode's in-band DTMF detector, the `dtmf` crate and spandsp's `dtmf_rx` side by side
//! on the same audio: the standard receiver tests (`starcode::dtmf::q24`) directly and through
//! PCMU, PCMA and Opus; talk-off on speech; and speed in ns per 8 kHz sample. Prints Markdown
//! tables, ready to paste into the README.
//!
//! Run with `benches/dtmf_compare.sh` (or `cargo run --release --manifest-path
//! benches/dtmf_compare/Cargo.toml`). `--speed-runs N` changes the number of timed runs
//! (default 11); `--no-espeak` skips the synthetic speech.
//!
//! multimon-ng (a subprocess, when installed) is a fourth receiver on the receiver tests and on
//! the real recordings of `fixtures/dtmf/`; the per-corpus table at the end sums keys found and
//! false keys for all four.

mod detectors;
mod multimon;
mod real;
mod spandsp;
mod speech;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use starcode::dtmf::q24::{self, Requirement, Score};
use starcode::dtmf::Key;
use starcode::media::Codec;

use detectors::{Receiver, Which, PACKET};

/// One way the audio reaches the receivers.
#[derive(Clone, Copy)]
struct Pass {
    name: &'static str,
    codec: Option<Codec>,
}

const PASSES: [Pass; 4] = [
    Pass {
        name: "direct",
        codec: None,
    },
    Pass {
        name: "PCMU",
        codec: Some(Codec::Pcmu),
    },
    Pass {
        name: "PCMA",
        codec: Some(Codec::Pcma),
    },
    Pass {
        name: "Opus",
        codec: Some(Codec::Opus),
    },
];

/// `pcm` as it comes out of `pass`, at 8 kHz.
fn through(pass: Pass, pcm: &[i16]) -> Vec<i16> {
    match pass.codec {
        None => pcm.to_vec(),
        Some(codec) => q24::through(codec, pcm)
            .unwrap_or_else(|e| panic!("{codec} pass failed on test audio: {e}")),
    }
}

/// Scores of the three receivers on one signal, in [`Which::ALL`] order.
type Scores = [Score; 3];

fn run_all(expected: &[Key], pcm: &[i16]) -> Scores {
    Which::ALL.map(|which| q24::score(expected, &detectors::keys(which, pcm)))
}

fn accept_cell(s: Score) -> String {
    let mut cell = format!("{}/{}", s.detected, s.expected);
    if s.false_keys > 0 {
        cell.push_str(&format!(" +{}f", s.false_keys));
    }
    cell
}

fn reject_cell(s: Score) -> String {
    if s.false_keys == 0 {
        "none".to_string()
    } else {
        format!("**{} keys**", s.false_keys)
    }
}

fn pct(num: usize, den: usize) -> String {
    if den == 0 {
        "-".to_string()
    } else {
        format!("{:.1} %", 100.0 * num as f64 / den as f64)
    }
}

/// A key reported on audio without keys, and where.
struct TalkOffHit {
    which: Which,
    source: String,
    pass: &'static str,
    key: Key,
    at: f64,
}

/// Receivers in the per-corpus table: the three of [`Which::ALL`], then multimon-ng.
const CORPUS_RECEIVERS: [&str; 4] = ["ours", "dtmf crate", "spandsp", "multimon-ng"];

/// Keys sent, keys found and false keys per receiver (in [`CORPUS_RECEIVERS`] order) over one
/// corpus; multimon-ng's stay `None` when it is not installed.
#[derive(Default, Clone)]
struct CorpusTotals {
    files: usize,
    expected: usize,
    detected: [usize; 4],
    false_keys: [usize; 4],
    /// Receivers that did not run on some file.
    missing: [bool; 4],
}

impl CorpusTotals {
    /// Adds one file's scores (multimon-ng's `None` when it did not run).
    fn add(&mut self, scores: &Scores, multimon: Option<Score>) {
        self.files += 1;
        self.expected += scores[0].expected;
        let all = [Some(scores[0]), Some(scores[1]), Some(scores[2]), multimon];
        for (i, s) in all.iter().enumerate() {
            match s {
                Some(s) => {
                    self.detected[i] += s.detected;
                    self.false_keys[i] += s.false_keys;
                }
                None => self.missing[i] = true,
            }
        }
    }

    /// `found/sent, N false` for receiver `i`.
    fn cell(&self, i: usize) -> String {
        if self.missing[i] {
            return "-".to_string();
        }
        format!(
            "{}/{}, {} false",
            self.detected[i], self.expected, self.false_keys[i]
        )
    }
}

/// multimon-ng's score on `pcm`, or `None` when it is not installed (a failure to run it
/// when it is installed is a broken bench, not a missing receiver).
fn multimon_score(enabled: bool, expected: &[Key], pcm: &[i16]) -> Option<Score> {
    enabled.then(|| {
        let keys = multimon::keys(pcm).unwrap_or_else(|e| panic!("multimon-ng: {e}"));
        q24::score(expected, &keys)
    })
}

/// Totals kept across every section for the summary.
#[derive(Default)]
struct Totals {
    /// Accept rows where ours detected at least as many keys as spandsp.
    ours_at_least_spandsp: usize,
    accept_rows: usize,
    /// (test, pass, ours, spandsp) where ours detected fewer.
    shortfalls: Vec<(String, &'static str, Score, Score)>,
    /// Detected/expected over every Accept row, per receiver.
    scores: [Score; 3],
    /// False keys on Reject rows, per receiver.
    reject_false: [usize; 3],
    /// False keys on talk-off audio (keyless suite tests and speech), per receiver.
    talkoff_false: [usize; 3],
    talkoff_minutes: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let speed_runs = args
        .iter()
        .position(|a| a == "--speed-runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(11)
        .max(1);
    let with_espeak = !args.iter().any(|a| a == "--no-espeak");
    let with_multimon = multimon::available();
    if !with_multimon {
        eprintln!("multimon-ng not found (apt-get install multimon-ng): its columns stay empty");
    }
    let mut q24_direct = CorpusTotals::default();
    let mut q24_codecs = CorpusTotals::default();

    let suite = q24::suite();
    let mut totals = Totals::default();
    let mut speed_corpus: Vec<i16> = Vec::new();

    println!("# DTMF receivers side by side\n");
    println!(
        "Receivers: **ours** = starcode `InbandDetector`; **dtmf crate** = `dtmf` 0.1.5 \
         `Decoder` (f32 input); **spandsp** = `dtmf_rx` from libspandsp (dial-tone filter off, \
         twist 8 dB, reverse twist 4 dB, threshold -42 dBm0). All are fed the same 8 kHz PCM \
         in 20 ms packets. Cells: detected/expected keys, `+Nf` = N false keys; for reject \
         tests, the keys wrongly reported.\n"
    );

    // Section 1: the receiver tests, per pass.
    for pass in PASSES {
        println!("## Receiver tests, {}\n", pass.name);
        println!(
            "| test | requirement | expected keys | ours | dtmf crate | spandsp | ours ≥ spandsp |"
        );
        println!("|---|---|---|---|---|---|---|");
        let mut pass_scores = [Score::default(); 3];
        for test in &suite {
            let pcm = through(pass, &test.pcm);
            speed_corpus.extend_from_slice(&pcm);
            if test.requirement == Requirement::TalkOff {
                continue; // in the talk-off section
            }
            let scores = run_all(&test.expected, &pcm);
            let mm = multimon_score(with_multimon, &test.expected, &pcm);
            if pass.codec.is_none() {
                q24_direct.add(&scores, mm);
            } else {
                q24_codecs.add(&scores, mm);
            }
            let [ours, _, sp] = scores;
            match test.requirement {
                Requirement::Accept => {
                    let ok = ours.detected >= sp.detected;
                    totals.accept_rows += 1;
                    if ok {
                        totals.ours_at_least_spandsp += 1;
                    } else {
                        totals
                            .shortfalls
                            .push((test.name.clone(), pass.name, ours, sp));
                    }
                    for (i, s) in scores.iter().enumerate() {
                        pass_scores[i] = pass_scores[i] + *s;
                        totals.scores[i] = totals.scores[i] + *s;
                    }
                    println!(
                        "| {} | accept | {} | {} | {} | {} | {} |",
                        test.name,
                        test.expected.len(),
                        accept_cell(scores[0]),
                        accept_cell(scores[1]),
                        accept_cell(scores[2]),
                        if ok { "yes" } else { "**NO**" }
                    );
                }
                Requirement::Reject => {
                    for (i, s) in scores.iter().enumerate() {
                        totals.reject_false[i] += s.false_keys;
                        pass_scores[i].false_keys += s.false_keys;
                    }
                    println!(
                        "| {} | reject | 0 ({} sent) | {} | {} | {} | {} |",
                        test.name,
                        test.sent.len(),
                        reject_cell(scores[0]),
                        reject_cell(scores[1]),
                        reject_cell(scores[2]),
                        if ours.false_keys <= sp.false_keys {
                            "yes"
                        } else {
                            "**NO**"
                        }
                    );
                }
                Requirement::TalkOff => {}
            }
        }
        println!(
            "| **all ({})** | | {} | {} det, {} false | {} det, {} false | {} det, {} false | |\n",
            pass.name,
            pass_scores[0].expected,
            pct(pass_scores[0].detected, pass_scores[0].expected),
            pass_scores[0].false_keys,
            pct(pass_scores[1].detected, pass_scores[1].expected),
            pass_scores[1].false_keys,
            pct(pass_scores[2].detected, pass_scores[2].expected),
            pass_scores[2].false_keys,
        );
    }

    // Section 2: talk-off. Each source through every pass; false keys summed over passes.
    println!("## Talk-off (no keys sent; every reported key is false)\n");
    println!(
        "Each source is run direct and through PCMU, PCMA and Opus; minutes and false keys are \
         summed over the four passes.\n"
    );
    println!("| source | minutes | ours | dtmf crate | spandsp |");
    println!("|---|---|---|---|---|");
    let mut sources: Vec<speech::Speech> = suite
        .iter()
        .filter(|t| t.requirement == Requirement::TalkOff)
        .map(|t| speech::Speech {
            name: format!("suite: {}", t.name),
            pcm: t.pcm.clone(),
        })
        .collect();
    let prompt_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts");
    sources.extend(speech::prompts(&prompt_dir));
    if with_espeak {
        sources.extend(speech::espeak());
    }
    let mut per_pass = [[0usize; 3]; PASSES.len()];
    let mut talkoff_hits: Vec<TalkOffHit> = Vec::new();
    for source in &sources {
        let mut false_keys = [0usize; 3];
        for (p, &pass) in PASSES.iter().enumerate() {
            let pcm = through(pass, &source.pcm);
            for (i, &which) in Which::ALL.iter().enumerate() {
                let reported = detectors::keys_timed(which, &pcm);
                false_keys[i] += reported.len();
                per_pass[p][i] += reported.len();
                if which != Which::DtmfCrate {
                    for (key, at) in reported {
                        talkoff_hits.push(TalkOffHit {
                            which,
                            source: source.name.clone(),
                            pass: pass.name,
                            key,
                            at,
                        });
                    }
                }
            }
        }
        let minutes = source.pcm.len() as f64 / 8000.0 / 60.0 * PASSES.len() as f64;
        totals.talkoff_minutes += minutes;
        for (total, n) in totals.talkoff_false.iter_mut().zip(false_keys) {
            *total += n;
        }
        println!(
            "| {} | {:.2} | {} | {} | {} |",
            source.name, minutes, false_keys[0], false_keys[1], false_keys[2]
        );
    }
    for (p, pass) in PASSES.iter().enumerate() {
        println!(
            "| *subtotal {}* | | {} | {} | {} |",
            pass.name, per_pass[p][0], per_pass[p][1], per_pass[p][2]
        );
    }
    println!(
        "| **all** | {:.1} | {} | {} | {} |\n",
        totals.talkoff_minutes,
        totals.talkoff_false[0],
        totals.talkoff_false[1],
        totals.talkoff_false[2]
    );

    if !talkoff_hits.is_empty() {
        println!(
            "Talk-off keys reported by ours and spandsp (time = end of the 20 ms packet after \
             which the key came):\n"
        );
        for hit in &talkoff_hits {
            println!(
                "- {}: {}, {}: `{}` at {:.2} s",
                hit.which.label(),
                hit.source,
                hit.pass,
                hit.key,
                hit.at
            );
        }
        println!();
    }

    // Section 2a: the real recordings of fixtures/dtmf (audio files), four receivers.
    let (real_keys, real_speech) = real_section(with_multimon);

    // Section 2b: spandsp's twist convention is the mirror of the suite's.
    println!("## spandsp's twist convention\n");
    println!(
        "spandsp (like Asterisk's detector) calls a louder *low* tone \"normal\" twist (8 dB) and \
         a louder *high* tone \"reverse\" twist (4 dB); the suite and our detector use the other \
         convention (high louder = normal, 8 dB; low louder = reverse, 4 dB). The tables above \
         use spandsp's defaults; here the twist and frequency tests (direct) are rerun with its \
         limits mirrored (`dtmf_rx_parms(s, 0, 4, 8, -42)`) to show how much of its shortfall \
         is the convention.\n"
    );
    println!("| test | requirement | ours | spandsp defaults | spandsp mirrored twist |");
    println!("|---|---|---|---|---|");
    let mirrored = spandsp::SpandspParms {
        twist_db: 4,
        reverse_twist_db: 8,
        ..spandsp::SpandspParms::default()
    };
    for test in suite
        .iter()
        .filter(|t| t.name.starts_with("twist") || t.name.starts_with("frequency"))
    {
        let cell = |s: Score| match test.requirement {
            Requirement::Accept => accept_cell(s),
            _ => reject_cell(s),
        };
        let ours = test.score(&detectors::keys(Which::Ours, &test.pcm));
        let sp = test.score(&detectors::keys(Which::Spandsp, &test.pcm));
        let sp_m = test.score(&detectors::spandsp_keys(mirrored, &test.pcm));
        let req = match test.requirement {
            Requirement::Accept => "accept",
            _ => "reject",
        };
        println!(
            "| {} | {req} | {} | {} | {} |",
            test.name,
            cell(ours),
            cell(sp),
            cell(sp_m)
        );
    }
    println!();

    // Section 3: speed over every suite signal through every pass, back to back.
    let seconds = speed_corpus.len() as f64 / 8000.0;
    assert!(seconds >= 60.0, "speed corpus is only {seconds:.1} s");
    println!("## Speed\n");
    println!(
        "{seconds:.1} s of 8 kHz audio (every receiver test, direct and through each codec, back \
         to back), fed in 20 ms packets to a fresh receiver per run; {speed_runs} runs, \
         interleaved between receivers; median and fastest run. Release build.\n"
    );
    let mut runs: [Vec<f64>; 3] = Default::default();
    for _ in 0..speed_runs {
        for (i, &which) in Which::ALL.iter().enumerate() {
            runs[i].push(time_ns_per_sample(which, &speed_corpus));
        }
    }
    let medians = runs.clone().map(|mut r| {
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    });
    let fastest = runs.map(|r| r.into_iter().fold(f64::INFINITY, f64::min));
    println!("| receiver | ns/sample (median) | ns/sample (fastest) | × real time (median) |");
    println!("|---|---|---|---|");
    for (i, which) in Which::ALL.iter().enumerate() {
        println!(
            "| {} | {:.2} | {:.2} | {:.0} |",
            which.label(),
            medians[i],
            fastest[i],
            1e9 / 8000.0 / medians[i]
        );
    }
    println!(
        "\nours / spandsp: {:.2} (median), {:.2} (fastest)\n",
        medians[0] / medians[2],
        fastest[0] / fastest[2]
    );

    // Section 3a: keys found and false keys per corpus, four receivers.
    println!("## Per corpus\n");
    println!(
        "Keys found of keys sent, and false keys, summed over each corpus: the receiver tests \
         (accept and reject tests) direct and through the three codecs, the real recordings \
         with keys and the real speech of `fixtures/dtmf/`.\n"
    );
    println!("| corpus | files | {} |", CORPUS_RECEIVERS.join(" | "));
    println!("|---|---|---|---|---|---|");
    for (name, totals) in [
        ("receiver tests, direct", &q24_direct),
        ("receiver tests, PCMU + PCMA + Opus", &q24_codecs),
        ("real recordings with keys", &real_keys),
        ("real speech (no keys)", &real_speech),
    ] {
        let cells: Vec<String> = (0..4).map(|i| totals.cell(i)).collect();
        println!("| {name} | {} | {} |", totals.files, cells.join(" | "));
    }
    println!();

    // Section 4: totals against the targets.
    println!("## Totals\n");
    println!("| | ours | dtmf crate | spandsp |");
    println!("|---|---|---|---|");
    println!(
        "| keys detected, accept tests (all passes) | {} | {} | {} |",
        pct(totals.scores[0].detected, totals.scores[0].expected),
        pct(totals.scores[1].detected, totals.scores[1].expected),
        pct(totals.scores[2].detected, totals.scores[2].expected),
    );
    for (label, f) in [
        (
            "false keys, accept tests",
            [0, 1, 2].map(|i| totals.scores[i].false_keys),
        ),
        ("false keys, reject tests", totals.reject_false),
        ("false keys, talk-off", totals.talkoff_false),
    ] {
        println!("| {label} | {} | {} | {} |", f[0], f[1], f[2]);
    }
    println!(
        "| ns/sample (median) | {:.2} | {:.2} | {:.2} |\n",
        medians[0], medians[1], medians[2]
    );
    println!(
        "Accept tests where ours detects at least as many keys as spandsp: {} of {}.",
        totals.ours_at_least_spandsp, totals.accept_rows
    );
    for (name, pass, ours, sp) in &totals.shortfalls {
        println!(
            "- below spandsp: {name} ({pass}): ours {}/{}, spandsp {}/{} ({} keys fewer)",
            ours.detected,
            ours.expected,
            sp.detected,
            sp.expected,
            sp.detected - ours.detected
        );
    }
    let talk_off_ok = totals.talkoff_false[0] == 0;
    let speed_ok = medians[0] <= 2.0;
    println!(
        "\nTargets: at least spandsp on every test: {}; zero talk-off: {}; ≤ 2 ns/sample: {}.",
        yes_no(totals.shortfalls.is_empty()),
        yes_no(talk_off_ok),
        yes_no(speed_ok)
    );
}

/// Runs the four receivers on every audio file of `fixtures/dtmf/` and prints one row each;
/// returns the totals for the files with keys and for the speech.
fn real_section(with_multimon: bool) -> (CorpusTotals, CorpusTotals) {
    let recordings = real::recordings().unwrap_or_else(|e| panic!("real recordings: {e}"));
    println!("## Real recordings (`fixtures/dtmf/`)\n");
    println!(
        "Audio files only (the two captures are run through `starcode detect` by \
         `tests/dtmf_real_corpus.rs`), at 8 kHz; sources and truth in `fixtures/dtmf/README.md`. \
         Cells: keys found/sent, `+Nf` = N false keys.\n"
    );
    println!("| file | kind | {} |", CORPUS_RECEIVERS.join(" | "));
    println!("|---|---|---|---|---|---|");
    let (mut keys, mut speech) = (CorpusTotals::default(), CorpusTotals::default());
    for r in &recordings {
        let scores = run_all(&r.keys, &r.pcm);
        let mm = multimon_score(with_multimon, &r.keys, &r.pcm);
        let cells: Vec<String> = scores
            .iter()
            .map(|&s| accept_cell(s))
            .chain(std::iter::once(mm.map_or("-".to_string(), accept_cell)))
            .collect();
        println!("| `{}` | {} | {} |", r.name, r.kind, cells.join(" | "));
        if r.kind == "speech" {
            speech.add(&scores, mm);
        } else {
            keys.add(&scores, mm);
        }
    }
    println!();
    (keys, speech)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "**not met**"
    }
}

/// Feeds all of `pcm` to a fresh `which` in 20 ms packets; ns per sample.
fn time_ns_per_sample(which: Which, pcm: &[i16]) -> f64 {
    let mut receiver = Receiver::new(which);
    let mut keys = Vec::with_capacity(4096);
    let start = Instant::now();
    for packet in pcm.chunks(PACKET) {
        receiver.process(black_box(packet), &mut keys);
    }
    let elapsed = start.elapsed();
    black_box(&keys);
    elapsed.as_nanos() as f64 / pcm.len() as f64
}
