//! Reading a PBX's extension export for `starcode ext import`: which column is the
//! extension, the name and the SIP secret, found by header name (case and punctuation
//! ignored) so the export can be loaded as it is. Shapes (samples in `tests/data/accounts/`):
//!
//! - FreePBX Bulk Handler (13+): `extension,name,description,tech,dial,secret,...,
//!   languages_language,...`; the legacy Bulk Extensions module names the secret
//!   `devinfo_secret`.
//! - 3CX: `Number,FirstName,LastName,EmailAddress,MobileNumber,AuthID,AuthPassword,...`.
//! - Switchvox: `ext,fname,lname,...,phone_password,...`.
//! - Plain `extension,name,secret`, with or without a header row.
//!
//! Every row is checked before anything is written, and a problem names its line and column
//! but echoes no cell: a stray quote can shift a secret into any column.

use std::collections::HashMap;

use crate::accounts::validate::{validate_language, validate_name, MIN_SIP_SECRET_CHARS};
use crate::presence::validate_extension;

/// One account as a row gave it; the secrets are still plaintext (hashed by the caller).
pub struct ImportRow {
    /// The row's line in the file (1-based), for messages.
    pub line: u64,
    pub extension: String,
    pub name: String,
    pub language: Option<String>,
    /// Empty when the row has none (the account then cannot authenticate until `ext passwd`).
    pub sip_secret: String,
    pub portal_password: Option<String>,
}

/// What the rows of a file are, or every problem found in it.
pub struct Parsed {
    pub rows: Vec<ImportRow>,
    pub problems: Vec<String>,
}

/// The fields we read, and the header names (normalised) each may have.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Field {
    Extension,
    Name,
    FirstName,
    LastName,
    Secret,
    Language,
    PortalPassword,
    AuthId,
}

const ALIASES: &[(Field, &[&str])] = &[
    (
        Field::Extension,
        &["extension", "ext", "number", "extensionnumber"],
    ),
    (Field::Name, &["name", "displayname", "fullname"]),
    (Field::FirstName, &["firstname", "fname"]),
    (Field::LastName, &["lastname", "lname"]),
    (
        Field::Secret,
        &[
            "secret",
            "devinfosecret",
            "authpassword",
            "phonepassword",
            "sipsecret",
            "sippassword",
            "registrationpassword",
        ],
    ),
    (Field::Language, &["language", "languageslanguage"]),
    (Field::PortalPassword, &["portalpassword"]),
    (Field::AuthId, &["authid"]),
];

/// A header cell reduced to lowercase letters and digits: `Display Name`, `display_name`
/// and `DisplayName` are one name.
fn normalise(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn field_of(header: &str) -> Option<Field> {
    let name = normalise(header);
    ALIASES
        .iter()
        .find(|(_, names)| names.contains(&name.as_str()))
        .map(|(field, _)| *field)
}

/// Where each field is, and what the file calls it (for messages).
struct Columns {
    at: HashMap<Field, (usize, String)>,
}

impl Columns {
    fn get<'a>(&self, record: &'a csv::StringRecord, field: Field) -> Option<&'a str> {
        self.at
            .get(&field)
            .and_then(|(i, _)| record.get(*i))
            .map(str::trim)
    }

    fn name(&self, field: Field) -> &str {
        self.at.get(&field).map_or("?", |(_, name)| name.as_str())
    }
}

/// Parses an export. `allow_weak` accepts SIP secrets shorter than
/// [`MIN_SIP_SECRET_CHARS`].
pub fn parse(bytes: &[u8], allow_weak: bool) -> Parsed {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter_of(bytes))
        .from_reader(bytes);
    let mut problems = Vec::new();
    let mut records = Vec::new();
    for record in reader.records() {
        match record {
            Ok(r) if r.iter().all(|c| c.trim().is_empty()) => {}
            Ok(r) => records.push(r),
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(format!(
                    "line {line}: not readable as CSV ({})",
                    csv_reason(&e)
                ));
                return Parsed {
                    rows: Vec::new(),
                    problems,
                };
            }
        }
    }
    let Some(first) = records.first() else {
        problems.push("the file has no rows".to_string());
        return Parsed {
            rows: Vec::new(),
            problems,
        };
    };
    let mut at = HashMap::new();
    for (i, cell) in first.iter().enumerate() {
        if let Some(field) = field_of(cell) {
            at.entry(field).or_insert((i, cell.trim().to_string()));
        }
    }
    let (columns, data) = if at.contains_key(&Field::Extension) {
        (Columns { at }, &records[1..])
    } else {
        // No header: the plain `extension,name,secret` shape. A first cell that is no
        // extension but a word was meant as a header we do not know.
        if let Some(cell) = first.get(0).map(str::trim) {
            if validate_extension(cell).is_err() && cell.chars().any(char::is_alphabetic) {
                problems.push(format!(
                    "line 1: no extension column; name it one of: {}",
                    ALIASES
                        .iter()
                        .find(|(f, _)| *f == Field::Extension)
                        .map_or(String::new(), |(_, names)| names.join(", "))
                ));
                return Parsed {
                    rows: Vec::new(),
                    problems,
                };
            }
        }
        let positional = [
            (Field::Extension, "extension"),
            (Field::Name, "name"),
            (Field::Secret, "secret"),
        ];
        let at = positional
            .iter()
            .enumerate()
            .map(|(i, (field, name))| (*field, (i, format!("{} ({name})", i + 1))))
            .collect();
        (Columns { at }, &records[..])
    };
    let has_name = [Field::Name, Field::FirstName, Field::LastName]
        .iter()
        .any(|f| columns.at.contains_key(f));
    if !has_name {
        problems.push(
            "line 1: no name column (name, display name, or first name/last name)".to_string(),
        );
        return Parsed {
            rows: Vec::new(),
            problems,
        };
    }
    let mut rows = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in data {
        let line = record.position().map_or(0, |p| p.line());
        match parse_row(record, line, &columns, allow_weak) {
            Ok(row) => {
                if let Some(first_line) = seen.insert(row.extension.clone(), line) {
                    problems.push(format!(
                        "line {line}, column {}: the same extension as on line {first_line}",
                        columns.name(Field::Extension),
                    ));
                }
                rows.push(row);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if rows.is_empty() && problems.is_empty() {
        problems.push("the file has a header but no extensions".to_string());
    }
    Parsed { rows, problems }
}

fn parse_row(
    record: &csv::StringRecord,
    line: u64,
    columns: &Columns,
    allow_weak: bool,
) -> Result<ImportRow, String> {
    let problem =
        |field: Field, what: &str| format!("line {line}, column {}: {what}", columns.name(field));
    let extension = columns.get(record, Field::Extension).unwrap_or_default();
    if extension.is_empty() {
        return Err(problem(Field::Extension, "no extension"));
    }
    if validate_extension(extension).is_err() {
        // Not echoed: after a stray quote a secret can end up in any column.
        return Err(problem(
            Field::Extension,
            "not an extension (use 1-64 of A-Z a-z 0-9 . _ + -)",
        ));
    }
    if let Some(auth_id) = columns.get(record, Field::AuthId) {
        if !auth_id.is_empty() && auth_id != extension {
            return Err(problem(
                Field::AuthId,
                "differs from the extension; starcode authenticates an extension by its number",
            ));
        }
    }
    let name = match columns.get(record, Field::Name) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => {
            let first = columns.get(record, Field::FirstName).unwrap_or_default();
            let last = columns.get(record, Field::LastName).unwrap_or_default();
            format!("{first} {last}").trim().to_string()
        }
    };
    let name_field = if columns.at.contains_key(&Field::Name) {
        Field::Name
    } else {
        Field::FirstName
    };
    if name.is_empty() {
        return Err(problem(name_field, "no name"));
    }
    if let Err(e) = validate_name(&name) {
        return Err(problem(name_field, &e.to_string()));
    }
    let language = columns
        .get(record, Field::Language)
        .filter(|l| !l.is_empty())
        .map(str::to_string);
    if let Some(language) = &language {
        if validate_language(language).is_err() {
            return Err(problem(
                Field::Language,
                "not a language tag like en or de-CH",
            ));
        }
    }
    // Secrets are taken as they are (no trimming), and never echoed.
    let raw = |field| {
        columns
            .at
            .get(&field)
            .and_then(|(i, _)| record.get(*i))
            .unwrap_or_default()
    };
    let sip_secret = raw(Field::Secret).to_string();
    if let Err(why) = check_sip_secret(&sip_secret, allow_weak) {
        if !sip_secret.is_empty() {
            return Err(problem(Field::Secret, &why));
        }
    }
    let portal = raw(Field::PortalPassword);
    let portal_password = if portal.is_empty() {
        None
    } else {
        check_portal_password(portal).map_err(|why| problem(Field::PortalPassword, &why))?;
        Some(portal.to_string())
    };
    Ok(ImportRow {
        line,
        extension: extension.to_string(),
        name,
        language,
        sip_secret,
        portal_password,
    })
}

/// Why a SIP secret is refused, without repeating it.
pub fn check_sip_secret(secret: &str, allow_weak: bool) -> Result<(), String> {
    if secret.is_empty() {
        Err("the SIP secret is empty".to_string())
    } else if secret.chars().any(char::is_control) {
        Err("the SIP secret contains control characters".to_string())
    } else if !allow_weak && secret.chars().count() < MIN_SIP_SECRET_CHARS {
        Err(format!(
            "the SIP secret is shorter than {MIN_SIP_SECRET_CHARS} characters (use a longer \
             one, or --allow-weak-secret)"
        ))
    } else {
        Ok(())
    }
}

/// The shortest portal password accepted: the portal faces a browser, so no override.
pub const MIN_PORTAL_PASSWORD_CHARS: usize = 8;

/// Why a portal password is refused, without repeating it.
pub fn check_portal_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PORTAL_PASSWORD_CHARS {
        Err(format!(
            "the portal password is shorter than {MIN_PORTAL_PASSWORD_CHARS} characters"
        ))
    } else if password.chars().any(char::is_control) {
        Err("the portal password contains control characters".to_string())
    } else {
        Ok(())
    }
}

/// The field separator: a comma, unless the first line has more semicolons (what a
/// spreadsheet saves in locales whose decimal mark is a comma) or tabs.
fn delimiter_of(bytes: &[u8]) -> u8 {
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let count = |d: u8| first_line.iter().filter(|&&b| b == d).count();
    let (commas, semicolons, tabs) = (count(b','), count(b';'), count(b'\t'));
    if semicolons > commas && semicolons >= tabs {
        b';'
    } else if tabs > commas && tabs > semicolons {
        b'\t'
    } else {
        b','
    }
}

/// The CSV reader's complaint without the field's content (it may be a secret).
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8; save the file as UTF-8 CSV".to_string(),
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => "malformed quoting or fields".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<(String, String, String)> {
        let parsed = parse(text.as_bytes(), false);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        parsed
            .rows
            .into_iter()
            .map(|r| (r.extension, r.name, r.sip_secret))
            .collect()
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text.as_bytes(), false).problems
    }

    #[test]
    fn plain_files_with_or_without_a_header() {
        let expected = vec![
            ("1001".into(), "Ann Smith".into(), "secret-ann".into()),
            ("1002".into(), "Bob".into(), "secret-bob".into()),
        ];
        assert_eq!(
            rows("extension,name,secret\n1001,Ann Smith,secret-ann\n1002,Bob,secret-bob\n"),
            expected
        );
        assert_eq!(
            rows("1001,Ann Smith,secret-ann\r\n1002,Bob,secret-bob\r\n"),
            expected
        );
        assert_eq!(
            rows("\u{feff}Extension,Name\n1001,Ann Smith\n"),
            vec![("1001".into(), "Ann Smith".into(), String::new())]
        );
    }

    #[test]
    fn header_names_ignore_case_spaces_and_underscores_and_extra_columns() {
        assert_eq!(
            rows(
                "Number,FirstName,LastName,EmailAddress,AuthID,AuthPassword,Extra\n\
                  1001,Ann,Smith,ann@example.com,1001,secret-ann,x\n"
            ),
            vec![("1001".into(), "Ann Smith".into(), "secret-ann".into())]
        );
        let parsed = parse(
            b"EXTENSION,Display Name,languages_language,SECRET\n1001,Ann,de-CH,secret-ann\n",
            false,
        );
        assert!(parsed.problems.is_empty());
        assert_eq!(parsed.rows[0].language.as_deref(), Some("de-CH"));
        assert_eq!(parsed.rows[0].line, 2);
    }

    #[test]
    fn problems_name_the_line_and_column_and_never_the_secret() {
        let p = problems(
            "extension,name,secret\n1001,Ann,secret-ann\n10 02,Bob,secret-bob\n1003,,secret-cy\n\
             1004,Dee,abc12\n1001,Ann again,secret-ann2\n",
        );
        assert_eq!(
            p,
            [
                "line 3, column extension: not an extension (use 1-64 of A-Z a-z 0-9 . _ + -)",
                "line 4, column name: no name",
                "line 5, column secret: the SIP secret is shorter than 8 characters (use a longer one, or --allow-weak-secret)",
                "line 6, column extension: the same extension as on line 2",
            ]
        );
        assert!(p.iter().all(|m| !m.contains("abc12")), "{p:?}");
        assert!(parse(b"extension,name,secret\n1004,Dee,abc12\n", true)
            .problems
            .is_empty());
    }

    #[test]
    fn semicolon_and_tab_separated_exports_are_read() {
        let expected = vec![("1001".into(), "Ann; Smith".into(), "secret,ann".into())];
        assert_eq!(
            rows("Extension;Name;Secret\n1001;\"Ann; Smith\";secret,ann\n"),
            expected
        );
        assert_eq!(
            rows("extension\tname\tsecret\n1001\tAnn; Smith\tsecret,ann\n"),
            expected
        );
    }

    #[test]
    fn a_3cx_auth_id_must_be_the_extension() {
        assert_eq!(
            problems("Number,FirstName,AuthID,AuthPassword\n1001,Ann,x7f3k,secret-ann\n"),
            ["line 2, column AuthID: differs from the extension; starcode authenticates an extension by its number"]
        );
    }

    proptest::proptest! {
        /// Whatever a file holds, the import answers with rows or problems, never a panic, and
        /// no problem repeats a secret cell.
        #[test]
        fn any_file_gets_an_answer(
            cells in proptest::collection::vec("[a-zA-Z0-9 ,;\"\t\r\n._+-]{0,12}", 0..40),
            secret in "[A-Za-z]{12}",
        ) {
            let mut text = String::from("extension,name,secret\n");
            for (i, cell) in cells.iter().enumerate() {
                text.push_str(cell);
                if i % 3 == 2 {
                    text.push_str(&format!(",{secret}\n"));
                }
            }
            let parsed = parse(text.as_bytes(), false);
            for problem in &parsed.problems {
                proptest::prop_assert!(!problem.contains(&secret), "{}", problem);
            }
        }
    }

    #[test]
    fn broken_files_are_clear() {
        assert_eq!(problems(""), ["the file has no rows"]);
        assert_eq!(
            problems("extension,name,secret\n"),
            ["the file has a header but no extensions"]
        );
        assert_eq!(
            problems("extension,email\n1001,a@b\n"),
            ["line 1: no name column (name, display name, or first name/last name)"]
        );
        let p = problems("extension,name,secret\n1001,Ann,\"unterminated secret-xyz\n");
        assert!(p.iter().all(|m| !m.contains("secret-xyz")), "{p:?}");
        let p = parse(b"extension,name\n1001,\xff\xfe\n", false).problems;
        assert_eq!(
            p,
            ["line 2: not readable as CSV (not UTF-8; save the file as UTF-8 CSV)"]
        );
        assert_eq!(
            problems("Extension No.,Name,Secret\n1001,Ann,secret-ann\n"),
            ["line 1: no extension column; name it one of: extension, ext, number, extensionnumber"]
        );
    }
}
