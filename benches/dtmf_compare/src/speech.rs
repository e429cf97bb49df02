//! Speech with no keys in it, for talk-off: the bundled prompts, and espeak-ng reading a text
//! in several voices (when espeak-ng is installed). Everything comes back as 8 kHz PCM.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../../tests/support/speech.rs"]
mod corpus;

use corpus::{PASSAGE, PASSAGE_VOICES as VOICES};
use starcode::media::{decode_file, f32_to_i16, resample};

/// One stretch of speech and where it came from.
pub struct Speech {
    /// Shown in the talk-off table.
    pub name: String,
    /// 8 kHz PCM.
    pub pcm: Vec<i16>,
}

/// The longest file read (prompts are seconds long; this only guards against a wrong file).
const MAX_SECONDS: u32 = 600;

/// Decodes `path` to 8 kHz PCM.
fn load_8k(path: &Path) -> Result<Vec<i16>, String> {
    let audio = decode_file(path, MAX_SECONDS).map_err(|e| format!("{}: {e}", path.display()))?;
    let pcm = resample(&audio.samples, audio.sample_rate, 8000)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(f32_to_i16(&pcm))
}

/// Every prompt under `dir/<language>/*.wav`, one [`Speech`] per language with the prompts
/// back to back (each followed by 300 ms of silence, as between prompts in a call).
pub fn prompts(dir: &Path) -> Vec<Speech> {
    let mut out = Vec::new();
    let Ok(languages) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut languages: Vec<PathBuf> = languages
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    languages.sort();
    for lang in languages {
        let Ok(files) = std::fs::read_dir(&lang) else {
            continue;
        };
        let mut files: Vec<PathBuf> = files
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wav"))
            .collect();
        files.sort();
        let mut pcm = Vec::new();
        for file in &files {
            match load_8k(file) {
                Ok(p) => {
                    pcm.extend(p);
                    pcm.extend(std::iter::repeat_n(0, 2400));
                }
                Err(e) => eprintln!("skipping prompt {e}"),
            }
        }
        if !pcm.is_empty() {
            let name = lang
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push(Speech {
                name: format!("prompts/{name} ({} files)", files.len()),
                pcm,
            });
        }
    }
    out
}

/// The passage read by espeak-ng in every voice of [`VOICES`] it has, written to a temporary
/// directory and decoded to 8 kHz; empty (with a note on stderr) without espeak-ng.
pub fn espeak() -> Vec<Speech> {
    let mut out = Vec::new();
    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("no temporary directory; skipping espeak-ng speech");
        return out;
    };
    for (i, &(voice, pitch, wpm)) in VOICES.iter().enumerate() {
        let wav = dir.path().join(format!("voice{i}.wav"));
        let status = Command::new("espeak-ng")
            .args([
                "-v",
                voice,
                "-p",
                &pitch.to_string(),
                "-s",
                &wpm.to_string(),
            ])
            .arg("-w")
            .arg(&wav)
            .arg(PASSAGE)
            .output();
        match status {
            Ok(o) if o.status.success() => match load_8k(&wav) {
                Ok(pcm) => out.push(Speech {
                    name: format!("espeak-ng {voice} p{pitch} {wpm} wpm"),
                    pcm,
                }),
                Err(e) => eprintln!("skipping espeak-ng voice {voice}: {e}"),
            },
            Ok(o) => eprintln!(
                "skipping espeak-ng voice {voice}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => {
                eprintln!("espeak-ng not runnable ({e}); skipping synthetic speech");
                break;
            }
        }
    }
    out
}
