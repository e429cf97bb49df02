//! Writes a new `feature_codes` list back into the config file, which stays the source of
//! truth: the document is edited in place with `toml_edit`, so every comment, the order of
//! the keys and every other value stay byte-for-byte as the admin wrote them; the result is
//! validated exactly as `Config::load` would before anything is written; and the file is
//! replaced atomically, so the engine (or a crash) never sees half a file.
//!
//! The functions here block (file IO): the HTTP layer calls them from `spawn_blocking`, then
//! asks the running engine to reload (`runtime::ReloadHandle`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use toml_edit::{Array, DocumentMut, InlineTable, Item, Key, RawString, Value};

use super::{Config, ConfigError, FeatureCode};

/// Why a new list of feature codes was not written. Nothing was written in every case.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file on disk is not TOML now (someone broke it by hand): we do not guess.
    #[error("config file {path} is not valid TOML, so it was not edited: {message}")]
    NotToml { path: PathBuf, message: String },
    /// The edited file would not load; every problem is named, edit or not.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("cannot write config file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One edit at a time in this process: two concurrent read-modify-writes would lose one.
static EDITS: Mutex<()> = Mutex::new(());

/// Replaces `feature_codes` in the config file at `path` with `codes`, keeping everything else
/// as it is; returns the config the file now holds. The edited text must load exactly as
/// `Config::load` would load it (all problems reported otherwise, and nothing written). The
/// write is atomic: a temporary file in the same directory, synced, renamed over the old one
/// (with its permissions). A symlinked config is written through to its target.
pub fn write_feature_codes(path: &Path, codes: &[FeatureCode]) -> Result<Config, EditError> {
    let _one_at_a_time = EDITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let read_error = |source| EditError::Read {
        path: path.to_path_buf(),
        source,
    };
    let target = std::fs::canonicalize(path).map_err(read_error)?;
    let text = std::fs::read_to_string(&target).map_err(read_error)?;
    let edited = with_feature_codes(&text, codes).map_err(|message| EditError::NotToml {
        path: path.to_path_buf(),
        message,
    })?;
    let config = Config::from_toml(&edited, path)?;
    if edited != text {
        replace_atomically(&target, edited.as_bytes()).map_err(|source| EditError::Write {
            path: path.to_path_buf(),
            source,
        })?;
        tracing::info!(
            path = %path.display(),
            enabled = ?config.enabled_feature_codes(),
            "feature codes written to the config file"
        );
    }
    Ok(config)
}

/// The config text with `feature_codes` set to `codes` (the pure half of
/// [`write_feature_codes`]; not validated). `Err` carries the parser's message when `text`
/// is not TOML.
pub fn with_feature_codes(text: &str, codes: &[FeatureCode]) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string().trim_end().to_string())?;
    let root = doc.as_table_mut();
    match root.get_mut("feature_codes") {
        Some(Item::Value(old)) => {
            let mut new = Value::Array(codes_array(codes, old.as_array()));
            // The space after `=` and a comment after the list stay.
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        Some(other) => {
            // An array of tables or a table: not a form `Config::load` reads; replace it.
            *other = Item::Value(Value::Array(codes_array(codes, None)));
        }
        None => {
            let mut key = Key::new("feature_codes");
            key.leaf_decor_mut().set_prefix(
                "# Codes that reach the presence menu; { code = \"*48\", enabled = false } keeps one switched off.\n",
            );
            root.insert_formatted(&key, Item::Value(Value::Array(codes_array(codes, None))));
        }
    }
    Ok(doc.to_string())
}

/// The new list, laid out like `old` when there is one: a code that was already listed keeps
/// its comments, and new entries take the spacing of the entries around them (one per line
/// in a list written one per line).
fn codes_array(codes: &[FeatureCode], old: Option<&Array>) -> Array {
    let mut array = Array::new();
    let old_entries: Vec<&Value> = old.map(|a| a.iter().collect()).unwrap_or_default();
    let mut used = vec![false; old_entries.len()];
    for (i, code) in codes.iter().enumerate() {
        let mut value = entry_value(code);
        let same = old_entries
            .iter()
            .enumerate()
            .position(|(j, v)| !used[j] && entry_code(v) == Some(code.code.as_str()));
        let spacing = spacing_at(&old_entries, i);
        match same {
            Some(j) if has_comment(old_entries[j].decor()) => {
                used[j] = true;
                *value.decor_mut() = old_entries[j].decor().clone();
            }
            _ => {
                if let Some(j) = same {
                    used[j] = true;
                }
                if let Some((prefix, suffix)) = spacing {
                    value.decor_mut().set_prefix(prefix);
                    value.decor_mut().set_suffix(suffix);
                }
            }
        }
        array.push_formatted(value);
    }
    if let Some(old) = old {
        array.set_trailing_comma(old.trailing_comma());
        array.set_trailing(old.trailing().clone());
        *array.decor_mut() = old.decor().clone();
    }
    array
}

/// How an entry is written: a plain string when enabled, an inline table when not.
fn entry_value(code: &FeatureCode) -> Value {
    if code.enabled {
        return Value::from(code.code.as_str());
    }
    let mut table = InlineTable::new();
    table.insert("code", Value::from(code.code.as_str()));
    table.insert("enabled", Value::from(false));
    Value::InlineTable(table)
}

/// The code of an entry as it stands in the file, in either form.
fn entry_code(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s.value()),
        Value::InlineTable(t) => t.get("code").and_then(Value::as_str),
        _ => None,
    }
}

/// The whitespace around the old entry at `i` (or the last one, for entries past the old
/// end): a decoration that holds a comment lends only its last line's indentation. `None`
/// leaves toml_edit's default (`"a", "b"`).
fn spacing_at(old: &[&Value], i: usize) -> Option<(String, String)> {
    // The first entry often has no leading space where the others have one: entries after
    // the first take their spacing from the old second entry on.
    let from = match i {
        0 => old.first()?,
        _ => old.get(i.min(old.len().checked_sub(1)?).max(1))?,
    };
    let layout = |raw: Option<&RawString>| {
        let text = raw.and_then(RawString::as_str).unwrap_or_default();
        if text.chars().all(char::is_whitespace) {
            return Some(text.to_string());
        }
        let (_, indent) = text.rsplit_once('\n')?;
        indent
            .chars()
            .all(char::is_whitespace)
            .then(|| format!("\n{indent}"))
    };
    let prefix = layout(from.decor().prefix())?;
    let suffix = from
        .decor()
        .suffix()
        .and_then(RawString::as_str)
        .filter(|s| s.chars().all(char::is_whitespace))
        .unwrap_or_default();
    Some((prefix, suffix.to_string()))
}

/// Whether an entry's decoration holds a comment worth carrying over.
fn has_comment(decor: &toml_edit::Decor) -> bool {
    [decor.prefix(), decor.suffix()]
        .into_iter()
        .flatten()
        .any(|raw| raw.as_str().is_some_and(|s| s.contains('#')))
}

/// Replaces `target` with `bytes` so a reader sees the old file or the new one, never a mix,
/// and a crash leaves one of the two: a temporary file in the same directory (same
/// filesystem, so the rename is atomic) with the old file's permissions, synced, renamed over
/// `target`, then the directory synced so the rename itself is durable.
fn replace_atomically(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let permissions = std::fs::metadata(target)?.permissions();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::options().write(true).create_new(true).open(&temp)?;
        file.set_permissions(permissions)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, target)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // Without this the rename may not survive a power cut (the file's data would).
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(super::super::DEFAULT_PATH);
        std::fs::read_to_string(path).unwrap()
    }

    /// The lines of `a` and `b` that differ, as (line in a, line in b); same line count.
    fn changed_lines<'a>(a: &'a str, b: &'a str) -> Vec<(&'a str, &'a str)> {
        assert_eq!(a.lines().count(), b.lines().count(), "{b}");
        a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect()
    }

    #[test]
    fn the_shipped_file_keeps_every_comment_and_key_byte_for_byte() {
        let before = shipped();
        let codes = [
            FeatureCode::enabled("*47"),
            FeatureCode::disabled("*48"),
            FeatureCode::enabled("#9"),
        ];
        let after = with_feature_codes(&before, &codes).unwrap();
        assert_eq!(
            changed_lines(&before, &after),
            [(
                "feature_codes = [\"*46\", \"*48\"]",
                "feature_codes = [\"*47\", { code = \"*48\", enabled = false }, \"#9\"]"
            )]
        );
        let config = Config::from_toml(&after, Path::new("edited.toml")).unwrap();
        assert_eq!(config.feature_codes, codes);
        assert_eq!(config.enabled_feature_codes(), ["*47", "#9"]);
        // Everything else loads as before.
        let original = Config::from_toml(&before, Path::new("shipped.toml")).unwrap();
        assert_eq!(
            Config {
                feature_codes: original.feature_codes.clone(),
                ..config
            },
            original
        );
        // Writing the same list back is the identity.
        let back = with_feature_codes(&after, &original.feature_codes).unwrap();
        assert_eq!(back, before);
    }

    #[test]
    fn a_list_written_one_per_line_keeps_its_layout_and_comments() {
        let before = "# top\nfeature_codes = [\n    \"*46\", # the main one\n    # the old code\n    \"*48\",\n]  # after\n\n[menu]\naway = \"3\" # keep\n";
        let after = with_feature_codes(
            before,
            &[
                FeatureCode::enabled("*46"),
                FeatureCode::disabled("*48"),
                FeatureCode::enabled("*49"),
            ],
        )
        .unwrap();
        assert_eq!(
            after,
            "# top\nfeature_codes = [\n    \"*46\", # the main one\n    # the old code\n    { code = \"*48\", enabled = false },\n    \"*49\",\n]  # after\n\n[menu]\naway = \"3\" # keep\n"
        );
    }

    #[test]
    fn a_file_without_feature_codes_gets_the_key_before_its_tables() {
        let before = "# an engine's config\n[store]\npath = \"x.db\" # here\n";
        let after = with_feature_codes(before, &[FeatureCode::enabled("*99")]).unwrap();
        assert!(after.ends_with(before), "{after}");
        let config = Config::from_toml(&after, Path::new("t.toml")).unwrap();
        assert_eq!(config.enabled_feature_codes(), ["*99"]);
        assert_eq!(config.store.path, Path::new("x.db"));
    }

    #[test]
    fn the_file_on_disk_is_replaced_with_its_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("starcode.toml");
        std::fs::write(&path, shipped()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let config = write_feature_codes(
            &path,
            &[FeatureCode::enabled("*47"), FeatureCode::disabled("*46")],
        )
        .unwrap();
        assert_eq!(config.enabled_feature_codes(), ["*47"]);
        assert_eq!(Config::load(&path).unwrap(), config);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["starcode.toml"], "no temporary file left behind");
    }

    #[test]
    fn an_invalid_edit_names_every_problem_and_leaves_the_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("starcode.toml");
        // The file already has another problem: it is reported too.
        let before = shipped().replacen("lockout = \"1m\"", "lockout = \"2h\"", 1);
        assert_ne!(before, shipped());
        std::fs::write(&path, &before).unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let error = write_feature_codes(
            &path,
            &[FeatureCode::enabled("*4A"), FeatureCode::disabled("*48")],
        )
        .unwrap_err();
        match &error {
            EditError::Invalid(ConfigError::Invalid { problems, .. }) => {
                let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
                assert_eq!(keys, ["feature_codes[0]", "limits.auth.lockout"], "{error}");
            }
            other => panic!("expected validation problems, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        let all_off = write_feature_codes(&path, &[FeatureCode::disabled("*46")]).unwrap_err();
        assert!(
            all_off.to_string().contains("at least one must be enabled"),
            "{all_off}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn a_file_that_is_not_toml_or_not_there_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("starcode.toml");
        std::fs::write(&path, "feature_codes = [\"*46\"\n").unwrap();
        let error = write_feature_codes(&path, &[FeatureCode::enabled("*46")]).unwrap_err();
        assert!(matches!(error, EditError::NotToml { .. }), "{error:?}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "feature_codes = [\"*46\"\n"
        );
        let missing = dir.path().join("missing.toml");
        let error = write_feature_codes(&missing, &[FeatureCode::enabled("*46")]).unwrap_err();
        assert!(matches!(error, EditError::Read { .. }), "{error:?}");
        assert!(!missing.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_config_is_written_through_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        let link = dir.path().join("starcode.toml");
        std::fs::write(&real, "feature_codes = [\"*46\"]\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_feature_codes(&link, &[FeatureCode::enabled("*47")]).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(&real).unwrap(),
            "feature_codes = [\"*47\"]\n"
        );
    }
}
