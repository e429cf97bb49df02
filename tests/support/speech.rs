//! Speech for talk-off tests: audio with no key in it that a receiver must stay silent on.
//!
//! Real speech is the hardest thing a DTMF receiver hears: voiced sounds are sums of harmonics,
//! and now and then two of them line up with a row and a column tone. The standard talk-off
//! tapes are copyrighted, so this module gathers what can be had freely: the bundled prompts,
//! speech synthesised by `espeak-ng` in many languages, voices, speeds and pitches (digits and
//! phone numbers among it, the words callers say while pressing keys), and free recordings
//! installed on the machine. Everything comes out as 8 kHz PCM at a stated level.
//!
//! Test and bench code only (it starts `espeak-ng`, a subprocess, and reads fixed system
//! paths), so it lives outside the library: `tests/dtmf_talk_off.rs` and
//! `benches/dtmf_compare` include this file with `#[path]`. Each user takes only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use starcode::dtmf::q24::{dbm0_to_amplitude, RATE};
use starcode::media::{
    decode_file, f32_to_i16, resample, Codec, PromptCatalog, PromptError, PromptId,
};

/// One piece of speech, 8 kHz PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// Where it came from (prompt id, voice and settings, or file), for reports.
    pub name: String,
    /// The speech at [`RATE`].
    pub pcm: Vec<i16>,
}

impl Utterance {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.pcm.len() as f64 / f64::from(RATE)
    }
}

/// Why speech could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// `espeak-ng` could not be started.
    #[error("cannot run espeak-ng: {0}")]
    Spawn(#[source] std::io::Error),
    /// `espeak-ng` ran and failed.
    #[error("espeak-ng -v {voice} failed: {stderr}")]
    Synthesis {
        /// The voice asked for.
        voice: String,
        /// What it printed.
        stderr: String,
    },
    /// The audio file it wrote (or a recording) could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: starcode::media::AudioFileError,
    },
    /// Conversion to 8 kHz failed.
    #[error(transparent)]
    Resample(#[from] starcode::media::ResampleError),
}

/// The speech level utterances are brought to: RMS −15 dBm0, a loud talker, so that most of
/// the speech is above the receivers' minimum tone level and can cause talk-off.
pub const SPEECH_LEVEL_DBM0: f64 = -15.0;

/// The longest file read (s).
const MAX_SECONDS: u32 = 600;

/// One `espeak-ng` rendering: voice (with variant), words per minute, pitch (0-99), text.
type Rendering = (&'static str, u32, u32, &'static str);

const EN_PROSE: &str = "Thank you for calling. To set your status, press one for unavailable, \
two for available, three for away, four for chat, five for do not disturb, or six for a \
custom status. Please call me back on zero one seven seven, four nine two, three six eight \
one, or on extension four four five. My account number is nine eight seven six five four \
three two one zero, and the code is star four six, then the pound key. Seven, eight, nine, \
ten, eleven, twelve. Hello? Yes, I can hear you. The weather was lovely this morning, \
wasn't it? Oh, hmm, I see, well, no, not at all, that's fine.";

const EN_NUMBERS: &str = "One. Two. Three. Four. Five. Six. Seven. Eight. Nine. Zero. Oh. \
Star. Hash. Pound. Twenty two, thirty three, forty four, fifty five, sixty six, seventy seven, \
eighty eight, ninety nine. Five five five, one two one two. Nine one one. Eight hundred, \
two seven three, four six six eight.";

/// A passage read in every voice: ordinary sentences with numbers, names and a menu, the kind
/// of speech a caller's line carries while the detector listens.
pub const PASSAGE: &str = "Good morning, and thank you for calling. Your call is important to us. \
    To check your balance, press one. To speak to somebody about an order placed before the \
    twenty-third of March, press two. Our offices in Manchester, Berlin and Toronto are open \
    from nine in the morning until half past five, Monday to Friday. \
    The weather tomorrow will be mostly cloudy, with a chance of showers in the afternoon and \
    highs of around seventeen degrees. Winds light and variable. \
    She sells sea shells by the sea shore; the shells she sells are surely sea shells. \
    Peter Piper picked a peck of pickled peppers. How much wood would a woodchuck chuck? \
    Please listen carefully, as our menu options have changed. If you know the extension of \
    the person you wish to reach, you may dial it at any time. For quality and training \
    purposes, this call may be recorded. Four hundred and fifty-six thousand, seven hundred and \
    eighty-nine. Zero, one, two, three, four, five, six, seven, eight, nine. \
    Oh, hello! Yes, I'm still here. No, I was just looking for the number. Hang on a second. \
    Right, it's zero two zero, seven nine four six, double one eight five. Is that right? \
    Lovely. Thank you so much, goodbye, goodbye now.";

/// (voice, pitch 0-99, words per minute) reading [`PASSAGE`] in the receiver comparison
/// (`benches/dtmf_compare`): men, women, accents, and a few other languages reading the same
/// text, so formants and pitch vary widely. The talk-off test reads it in all of them.
pub const PASSAGE_VOICES: [(&str, u32, u32); 12] = [
    ("en-us", 50, 160),
    ("en-gb", 40, 150),
    ("en-us+f2", 60, 170),
    ("en-us+f4", 75, 150),
    ("en-gb-scotland", 35, 140),
    ("en+m3", 20, 175),
    ("en-029", 55, 160),
    ("en-us+f3", 90, 190),
    ("en-gb+m7", 10, 130),
    ("de", 50, 160),
    ("fr", 65, 165),
    ("es", 45, 170),
];

/// More voices on the English texts, chosen for where talk-off lives: women's voices from low
/// to very high pitch (a high voice's harmonics are far enough apart for a formant to leave
/// just two of them standing, as `en-us+f4` at pitch 75 once did on a `*`), and low, creaky
/// men's voices whose dense harmonics crowd the tones. Voice, words per minute, pitch, text.
const MORE_RENDERINGS: &[Rendering] = &[
    ("en-us+f1", 150, 20, EN_PROSE),
    ("en-us+f1", 170, 95, EN_PROSE),
    ("en-us+f2", 150, 30, EN_PROSE),
    ("en-us+f2", 160, 80, EN_NUMBERS),
    ("en-us+f3", 140, 45, EN_PROSE),
    ("en-us+f4", 150, 60, EN_PROSE),
    ("en-us+f4", 150, 75, EN_PROSE),
    ("en-us+f4", 150, 85, EN_NUMBERS),
    ("en-us+f4", 130, 95, EN_PROSE),
    ("en-us+f5", 160, 25, EN_PROSE),
    ("en-us+f5", 180, 70, EN_NUMBERS),
    ("en-us+croak", 150, 10, EN_PROSE),
    ("en+m1", 140, 0, EN_PROSE),
    ("en-gb+m7", 120, 5, EN_NUMBERS),
    ("en-us+m3", 150, 15, EN_PROSE),
];

/// More voices reading [`PASSAGE`]: the two that talked off before the comb check (`*` from
/// `en-us+f4` at pitch 75, `7` from `en-gb+f4` at pitch 98, both high women's voices whose
/// formants left two harmonics standing), and the first one a little lower and higher.
/// Voice, pitch, words per minute, as in [`PASSAGE_VOICES`].
const PASSAGE_MORE: [(&str, u32, u32); 3] = [
    ("en-gb+f4", 98, 150),
    ("en-us+f4", 70, 150),
    ("en-us+f4", 80, 150),
];

/// What is rendered: many voices on the English texts, and each language on its own words.
const RENDERINGS: &[Rendering] = &[
    ("en-gb", 175, 50, EN_PROSE),
    ("en-us", 175, 50, EN_PROSE),
    ("en-us+f3", 150, 70, EN_PROSE),
    ("en+f1", 200, 60, EN_PROSE),
    ("en+f2", 130, 85, EN_PROSE),
    ("en+f4", 250, 99, EN_PROSE),
    ("en+f5", 175, 40, EN_PROSE),
    ("en+m3", 160, 30, EN_PROSE),
    ("en-gb-scotland", 175, 50, EN_PROSE),
    ("en-029+m7", 220, 20, EN_PROSE),
    ("en-us+croak", 175, 50, EN_PROSE),
    ("en-gb", 120, 50, EN_NUMBERS),
    ("en-us+f3", 175, 90, EN_NUMBERS),
    ("en+f2", 260, 99, EN_NUMBERS),
    ("en+m1", 175, 10, EN_NUMBERS),
    ("en-us+whisper", 175, 50, EN_NUMBERS),
    (
        "de",
        170,
        50,
        "Eins, zwei, drei, vier, fünf, sechs, sieben, acht, neun, null. Bitte rufen Sie mich \
         unter null sieben elf, vier drei zwei, achtzehn neunzig an. Guten Tag, hier ist die \
         Mailbox von Frau Müller. Drücken Sie die Raute-Taste, um Ihre Nachricht zu beenden.",
    ),
    (
        "de+f3",
        200,
        80,
        "Eins, zwei, drei, vier, fünf, sechs, sieben, acht, neun, null. Sternchen, Raute. \
         Zweiundzwanzig, dreiunddreißig, vierundvierzig. Ja, genau, das passt mir gut.",
    ),
    (
        "fr-fr",
        170,
        50,
        "Un, deux, trois, quatre, cinq, six, sept, huit, neuf, zéro. Étoile, dièse. Bonjour, \
         vous êtes bien sur la messagerie de Pierre. Rappelez-moi au zéro six, douze, \
         trente-quatre, cinquante-six, soixante-dix-huit. Merci et bonne journée.",
    ),
    (
        "fr-fr+f2",
        210,
        85,
        "Un, deux, trois, quatre, cinq, six, sept, huit, neuf, zéro. Quatre-vingt-dix-neuf, \
         soixante-six, vingt-deux. Oui, d'accord, à tout à l'heure.",
    ),
    (
        "es",
        180,
        50,
        "Uno, dos, tres, cuatro, cinco, seis, siete, ocho, nueve, cero. Asterisco, \
         almohadilla. Hola, buenas tardes, llámeme al seis uno dos, tres cuatro cinco, \
         seis siete ocho. Muchas gracias por su llamada.",
    ),
    (
        "it+f4",
        180,
        75,
        "Uno, due, tre, quattro, cinque, sei, sette, otto, nove, zero. Asterisco, cancelletto. \
         Pronto, chi parla? Mi richiami al tre tre nove, uno due tre, quattro cinque sei sette.",
    ),
    (
        "pl",
        170,
        50,
        "Jeden, dwa, trzy, cztery, pięć, sześć, siedem, osiem, dziewięć, zero. Gwiazdka, \
         krzyżyk. Dzień dobry, proszę zadzwonić pod numer sześćset, dwanaście, \
         trzydzieści cztery.",
    ),
    (
        "nl",
        175,
        50,
        "Een, twee, drie, vier, vijf, zes, zeven, acht, negen, nul. Sterretje, hekje. Goedemiddag, \
         u spreekt met de voicemail van Jan. Belt u mij terug op nul zes, twaalf, \
         vierendertig, zesenvijftig.",
    ),
    (
        "pt-br+f3",
        175,
        70,
        "Um, dois, três, quatro, cinco, seis, sete, oito, nove, zero. Asterisco, cerquilha. \
         Alô, bom dia, por favor ligue para onze, nove oito sete seis, cinco quatro três dois.",
    ),
    (
        "sv",
        175,
        50,
        "Ett, två, tre, fyra, fem, sex, sju, åtta, nio, noll. Stjärna, fyrkant. Hej, ring mig \
         på noll sju tre, fyrtiofem, sextiosju, åttionio.",
    ),
    (
        "ru",
        170,
        50,
        "Один, два, три, четыре, пять, шесть, семь, восемь, девять, ноль. Звёздочка, решётка. \
         Здравствуйте, перезвоните мне по номеру восемь, девятьсот шестнадцать, \
         сто двадцать три, сорок пять, шестьдесят семь.",
    ),
    (
        "cmn",
        160,
        60,
        "一，二，三，四，五，六，七，八，九，零。你好，请拨打一三八，一二三四，五六七八。谢谢。",
    ),
    (
        "ja",
        170,
        60,
        "いち、に、さん、よん、ご、ろく、なな、はち、きゅう、ゼロ。もしもし、ゼロサン、\
         いちにさんよん、ごろくななはち にお電話ください。",
    ),
    (
        "hi",
        170,
        50,
        "एक, दो, तीन, चार, पांच, छह, सात, आठ, नौ, शून्य। नमस्ते, कृपया मुझे नौ आठ सात छह, \
         पांच चार तीन दो पर फ़ोन करें।",
    ),
];

/// True when `espeak-ng` can be run here.
pub fn espeak_available() -> bool {
    Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Renders `text` with `espeak-ng` (voice, words per minute, pitch 0-99) through a WAV file
/// in `dir`, as 8 kHz PCM at [`SPEECH_LEVEL_DBM0`].
pub fn espeak(
    dir: &Path,
    voice: &str,
    speed_wpm: u32,
    pitch: u32,
    text: &str,
) -> Result<Vec<i16>, SpeechError> {
    let file_name: String = format!("{voice}-{speed_wpm}-{pitch}-{}.wav", text.len())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(file_name);
    let output = Command::new("espeak-ng")
        .arg("-v")
        .arg(voice)
        .arg("-s")
        .arg(speed_wpm.to_string())
        .arg("-p")
        .arg(pitch.to_string())
        .arg("-w")
        .arg(&path)
        .arg(text)
        .output()
        .map_err(SpeechError::Spawn)?;
    if !output.status.success() {
        return Err(SpeechError::Synthesis {
            voice: voice.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    read_8k(&path)
}

/// Every rendering of the built-in texts (about 41 minutes of speech in 14 languages and many
/// voices, half of it [`PASSAGE`] in the comparison's voices), synthesised into `dir`.
pub fn espeak_corpus(dir: &Path) -> Result<Vec<Utterance>, SpeechError> {
    let passage = PASSAGE_VOICES
        .iter()
        .chain(&PASSAGE_MORE)
        .map(|&(voice, pitch, wpm)| (voice, wpm, pitch, PASSAGE));
    RENDERINGS
        .iter()
        .chain(MORE_RENDERINGS)
        .copied()
        .chain(passage)
        .map(|(voice, speed, pitch, text)| {
            let opening: Vec<&str> = text.split_whitespace().take(3).collect();
            Ok(Utterance {
                name: format!(
                    "espeak-ng -v {voice} -s {speed} -p {pitch} \"{} …\"",
                    opening.join(" ")
                ),
                pcm: espeak(dir, voice, speed, pitch, text)?,
            })
        })
        .collect()
}

/// The bundled prompts of `language` under `prompts_dir`, one utterance each, at
/// [`SPEECH_LEVEL_DBM0`].
pub fn bundled_prompts(prompts_dir: &Path, language: &str) -> Result<Vec<Utterance>, PromptError> {
    let catalog = PromptCatalog::load(prompts_dir, language, &[Codec::Pcmu], 20)?;
    Ok(PromptId::all()
        .into_iter()
        .map(|id| Utterance {
            name: format!("prompt {id:?}"),
            pcm: at_level(catalog.pcm_8k(id), SPEECH_LEVEL_DBM0),
        })
        .collect())
}

/// Free speech recordings that come with packages often installed on telephony machines
/// (linphone's announcement); the ones present here, at [`SPEECH_LEVEL_DBM0`].
pub fn installed_recordings() -> Result<Vec<Utterance>, SpeechError> {
    const CANDIDATES: &[&str] = &["/usr/share/sounds/linphone/hello16000.wav"];
    CANDIDATES
        .iter()
        .map(Path::new)
        .filter(|p| p.is_file())
        .map(|p| {
            Ok(Utterance {
                name: p.display().to_string(),
                pcm: read_8k(p)?,
            })
        })
        .collect()
}

/// The real speech recordings of `fixtures/dtmf/speech/` (codec and DSP projects' own test
/// speech; sources in the README there), at [`SPEECH_LEVEL_DBM0`], in file name order.
pub fn fixture_recordings(dir: &Path) -> Result<Vec<Utterance>, SpeechError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| SpeechError::Read {
            path: dir.to_path_buf(),
            source: starcode::media::AudioFileError::Open(e),
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flac" || x == "wav"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            Ok(Utterance {
                name: p.display().to_string(),
                pcm: read_8k(p)?,
            })
        })
        .collect()
}

/// Reads an audio file as 8 kHz PCM at [`SPEECH_LEVEL_DBM0`].
fn read_8k(path: &Path) -> Result<Vec<i16>, SpeechError> {
    let audio = decode_file(path, MAX_SECONDS).map_err(|source| SpeechError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let samples = resample(&audio.samples, audio.sample_rate, RATE)?;
    Ok(at_level(&f32_to_i16(&samples), SPEECH_LEVEL_DBM0))
}

/// `pcm` scaled so its RMS is `dbm0` (silence stays silence).
pub fn at_level(pcm: &[i16], dbm0: f64) -> Vec<i16> {
    let power = pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len().max(1) as f64;
    if power <= 0.0 {
        return pcm.to_vec();
    }
    // A sine at L dBm0 has RMS A/√2.
    let gain = dbm0_to_amplitude(dbm0) / 2f64.sqrt() / power.sqrt();
    pcm.iter()
        .map(|&s| (f64::from(s) * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}
