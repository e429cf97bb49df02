//! The real recordings of `fixtures/dtmf/` (listed with their keys in `truth.tsv` there):
//! audio files only, as 8 kHz PCM. The captures (`.pcap`) are left to the test
//! `tests/dtmf_real_corpus.rs`, which runs them through `starcode detect`; the other receivers
//! here take PCM only.

use std::path::Path;

use starcode::dtmf::Key;
use starcode::media::{decode_file, f32_to_i16, resample};

/// One recording.
pub struct Recording {
    /// Path under `fixtures/dtmf/`.
    pub name: String,
    /// The keys it holds, in order (none for speech).
    pub keys: Vec<Key>,
    /// `keys`, `hard` or `speech`.
    pub kind: String,
    /// 8 kHz PCM.
    pub pcm: Vec<i16>,
}

/// Every audio file of the corpus, in `truth.tsv` order.
pub fn recordings() -> Result<Vec<Recording>, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/dtmf");
    let truth = std::fs::read_to_string(dir.join("truth.tsv"))
        .map_err(|e| format!("{}: {e}", dir.join("truth.tsv").display()))?;
    let mut out = Vec::new();
    for line in truth
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, keys, kind] = fields[..] else {
            return Err(format!("truth.tsv: bad line {line:?}"));
        };
        if name.ends_with(".pcap") {
            continue;
        }
        let keys = if keys == "-" {
            Vec::new()
        } else {
            keys.chars()
                .map(|c| Key::from_char(c).map_err(|e| format!("truth.tsv: {e}")))
                .collect::<Result<_, _>>()?
        };
        let path = dir.join(name);
        let audio = decode_file(&path, 600).map_err(|e| format!("{}: {e}", path.display()))?;
        let pcm = resample(&audio.samples, audio.sample_rate, 8000)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(Recording {
            name: name.to_string(),
            keys,
            kind: kind.to_string(),
            pcm: f32_to_i16(&pcm),
        });
    }
    Ok(out)
}
