//! `feature_codes`: the dialled codes that reach the presence menu, each with an enabled flag
//! so an admin can switch a code off without losing it (the reference product's Feature Codes
//! page). In the file an entry is either a plain string (enabled) or an inline table
//! `{ code = "*48", enabled = false }`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Problem;

/// One feature code and whether calls to it are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Entry", into = "Entry")]
pub struct FeatureCode {
    /// What the caller dials, e.g. `*46`.
    pub code: String,
    /// Off: the code is kept in the file but calls to it get 404 like any unknown code.
    pub enabled: bool,
}

impl FeatureCode {
    /// An enabled code (the plain-string form in the file).
    pub fn enabled(code: impl Into<String>) -> FeatureCode {
        FeatureCode {
            code: code.into(),
            enabled: true,
        }
    }

    /// A code kept in the file but switched off.
    pub fn disabled(code: impl Into<String>) -> FeatureCode {
        FeatureCode {
            code: code.into(),
            enabled: false,
        }
    }
}

/// The two ways an entry is written: untagged, so the common case stays a plain string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "a feature code such as \"*46\", or a table such as { code = \"*48\", enabled = false }"
)]
enum Entry {
    Code(String),
    Table(Table),
}

/// `{ code = "*48", enabled = false }`; a misspelt key is an error, not an enabled code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    code: String,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

impl From<Entry> for FeatureCode {
    fn from(entry: Entry) -> FeatureCode {
        match entry {
            Entry::Code(code) => FeatureCode::enabled(code),
            Entry::Table(Table { code, enabled }) => FeatureCode { code, enabled },
        }
    }
}

impl From<FeatureCode> for Entry {
    /// Enabled codes print as plain strings, so a file that never disables one keeps the old
    /// `feature_codes = ["*46", "*48"]` form.
    fn from(code: FeatureCode) -> Entry {
        match code.enabled {
            true => Entry::Code(code.code),
            false => Entry::Table(Table {
                code: code.code,
                enabled: false,
            }),
        }
    }
}

/// The codes calls are served on, in file order.
pub fn enabled_codes(codes: &[FeatureCode]) -> Vec<String> {
    codes
        .iter()
        .filter(|c| c.enabled)
        .map(|c| c.code.clone())
        .collect()
}

/// Every problem with the list: each code's syntax and uniqueness (disabled ones too: they
/// can be switched back on), at least one code, at least one of them enabled.
pub(super) fn problems(codes: &[FeatureCode]) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |key: String, message: String| out.push(Problem { key, message });
    if codes.is_empty() {
        problem(
            "feature_codes".into(),
            "at least one feature code is needed, e.g. [\"*46\"]".into(),
        );
    } else if !codes.iter().any(|c| c.enabled) {
        problem(
            "feature_codes".into(),
            "every code is disabled; at least one must be enabled, or no call reaches the menu"
                .into(),
        );
    }
    let mut seen = BTreeMap::new();
    for (i, FeatureCode { code, .. }) in codes.iter().enumerate() {
        let key = format!("feature_codes[{i}]");
        if let Err(message) = check_code(code) {
            problem(key.clone(), message);
        }
        if let Some(first) = seen.insert(code.as_str(), i) {
            problem(
                key,
                format!("\"{code}\" is listed twice (also feature_codes[{first}])"),
            );
        }
    }
    out
}

/// Checks one feature code: 1 to 16 characters from `0-9 * #`.
fn check_code(code: &str) -> Result<(), String> {
    if code.is_empty() {
        return Err("a feature code cannot be empty".into());
    }
    if code.chars().count() > 16 {
        return Err(format!(
            "\"{code}\" has {} characters; at most 16 are allowed",
            code.chars().count()
        ));
    }
    if let Some(bad) = code
        .chars()
        .find(|c| !(c.is_ascii_digit() || *c == '*' || *c == '#'))
    {
        return Err(format!(
            "\"{code}\" contains '{bad}'; only 0-9, * and # are allowed"
        ));
    }
    Ok(())
}
