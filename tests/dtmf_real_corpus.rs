//! Real recordings through `starcode detect`'s path (file -> decoder -> in-band detector):
//! keys pressed on real phones and softphones, through real codecs, over real speech and
//! talk radio, and real speech with no key at all. The files, their sources and licences, and
//! where each file's truth comes from are in `fixtures/dtmf/README.md`; `truth.tsv` beside them
//! lists the keys each must give.
//!
//! A `keys` file must give every key, in order, and nothing else; a `speech` file no key at
//! all. A `hard` file (keys under talk radio: at its level, where starcode still misses one
//! key, and 7 dB under it, where the reference decoders miss keys too) must give no false key
//! and its keys in order, and the test reports how many it found.

use std::path::{Path, PathBuf};

use starcode::detect::{detect_path, DetectOptions};
use starcode::dtmf::KeySource;

/// One line of `truth.tsv`.
struct Entry {
    path: PathBuf,
    keys: String,
    kind: String,
}

fn corpus() -> Vec<Entry> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dtmf");
    let text = std::fs::read_to_string(dir.join("truth.tsv")).expect("fixtures/dtmf/truth.tsv");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            assert_eq!(fields.len(), 3, "truth.tsv: {l}");
            Entry {
                path: dir.join(fields[0]),
                keys: if fields[1] == "-" {
                    String::new()
                } else {
                    fields[1].to_string()
                },
                kind: fields[2].to_string(),
            }
        })
        .collect()
}

/// The in-band keys `starcode detect` finds in `path`, in time order.
fn inband_keys(path: &Path) -> String {
    let detection = detect_path(path, &DetectOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    detection
        .keys
        .iter()
        .filter(|k| k.source == KeySource::Inband)
        .map(|k| k.key.as_char())
        .collect()
}

/// Whether `found` is `wanted` with some keys left out (same order, nothing added).
fn is_subsequence(found: &str, wanted: &str) -> bool {
    let mut rest = wanted.chars();
    found.chars().all(|c| rest.any(|w| w == c))
}

#[test]
fn every_key_of_the_real_recordings_in_order_and_no_key_in_real_speech() {
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for entry in corpus() {
        let found = inband_keys(&entry.path);
        let name = entry.path.display().to_string();
        report.push(format!("{name}: want {:?}, found {found:?}", entry.keys));
        let ok = match entry.kind.as_str() {
            "keys" | "speech" => found == entry.keys,
            "hard" => is_subsequence(&found, &entry.keys),
            other => panic!("{name}: unknown kind {other}"),
        };
        if !ok {
            failures.push(format!("{name}: want {:?}, found {found:?}", entry.keys));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_subsequence_check_refuses_added_and_reordered_keys() {
    assert!(is_subsequence("135", "12345"));
    assert!(is_subsequence("", "12"));
    assert!(!is_subsequence("31", "123"));
    assert!(!is_subsequence("1233", "123"));
}
