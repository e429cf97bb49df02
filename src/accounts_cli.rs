//! `starcode ext add|passwd|disable|enable|list|remove|import`: extensions as accounts, kept
//! in the same store as presence. Secrets come only from stdin (never the command line, which
//! `ps` shows) or are generated, and are stored only hashed: HA1 for the config's `sip.realm`
//! and every [`DigestAlgorithm`], argon2id for the portal password. Nothing here prints a
//! secret or a hash, except a generated secret, once. Kept apart from `main.rs` so it can be
//! tested against a [`MemoryStore`] with its input and output captured.
//!
//! [`MemoryStore`]: crate::presence::memory::MemoryStore
//! [`DigestAlgorithm`]: crate::accounts::DigestAlgorithm

pub mod import;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use rand::Rng;

use crate::accounts::{
    hash_portal_password, Account, AccountChange, AccountStore, NewAccount, SipCredential,
};
use crate::presence::PresenceStore;
use import::{check_portal_password, check_sip_secret};

/// The `ext` subcommands, parsed by clap in `main.rs`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum ExtCommand {
    /// Add an extension's account. Secrets are read from stdin (one line each, SIP secret
    /// first) or generated; without one the account cannot authenticate until `ext passwd`.
    Add {
        /// The extension, e.g. 1001 (also the digest username).
        extension: String,
        /// Display name, e.g. "Ann Smith".
        #[arg(long)]
        name: String,
        /// Prompt language for this extension, e.g. en or de-CH (default: the config's).
        #[arg(long)]
        language: Option<String>,
        #[command(flatten)]
        secrets: SecretArgs,
        /// Add the account disabled (it cannot authenticate until `ext enable`).
        #[arg(long)]
        disabled: bool,
    },
    /// Set a new SIP secret (replacing those of every realm) and/or portal password.
    Passwd {
        extension: String,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Refuse the extension's authentication (403) until enabled again; presence is kept.
    Disable { extension: String },
    /// Let a disabled extension authenticate again.
    Enable { extension: String },
    /// Show every account (never a secret or hash).
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an account; the extension's presence and history are kept.
    Remove { extension: String },
    /// Add many accounts from a PBX's CSV export (FreePBX, 3CX, Switchvox, or plain
    /// extension,name,secret), all or nothing.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Update the name and secret of extensions that already have an account (default:
        /// such a row is an error).
        #[arg(long)]
        replace: bool,
        /// Check the file and say what would change, without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Accept SIP secrets shorter than 8 characters.
        #[arg(long)]
        allow_weak_secret: bool,
    },
}

/// Where `add` and `passwd` take secrets from.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SecretArgs {
    /// Read the SIP secret from stdin (one line).
    #[arg(long)]
    sip_secret_stdin: bool,
    /// Make a strong random SIP secret and print it once.
    #[arg(long, conflicts_with = "sip_secret_stdin")]
    generate_sip_secret: bool,
    /// Read the web portal password from stdin (the line after the SIP secret, if both).
    #[arg(long)]
    portal_password_stdin: bool,
    /// Accept a SIP secret shorter than 8 characters.
    #[arg(long)]
    allow_weak_secret: bool,
}

/// What the commands need from the config.
pub struct ExtContext {
    /// `sip.realm`: the realm HA1s are computed for.
    pub realm: String,
    /// Stdin is a terminal: say on stderr what to type (it is shown as typed; a pipe hides it).
    pub interactive: bool,
}

/// Characters a generated secret is made of (no look-alikes such as 0/O or 1/l, so it can be
/// typed into a phone's web page from a printout).
const GENERATED_ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// 24 characters of a 57-letter alphabet: about 140 bits.
const GENERATED_LEN: usize = 24;

/// The largest CSV `ext import` reads (100,000 extensions of a wide PBX export fit).
const MAX_IMPORT_BYTES: u64 = 64 << 20;

/// Secrets as read for one command (plaintext, dropped when the command ends).
struct Secrets {
    sip: Option<String>,
    portal: Option<String>,
}

/// Runs one `ext` command. `presence` is read for `list`'s status column; `input` is where
/// `--*-stdin` secrets come from.
pub fn run(
    presence: &dyn PresenceStore,
    accounts: &dyn AccountStore,
    cmd: ExtCommand,
    ctx: &ExtContext,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        ExtCommand::Add {
            extension,
            name,
            language,
            secrets,
            disabled,
        } => {
            let read = read_secrets(&secrets, ctx.interactive, input, out)?;
            let account = NewAccount {
                credentials: read
                    .sip
                    .as_deref()
                    .map(|s| SipCredential::for_secret(&extension, &ctx.realm, s))
                    .unwrap_or_default(),
                portal_password: read.portal.as_deref().map(hash).transpose()?,
                extension: extension.clone(),
                name,
                language,
                enabled: !disabled,
            };
            let added = accounts
                .add_account(&account)
                .with_context(|| format!("adding {extension}"))?;
            writeln!(
                out,
                "added {} ({}){}: SIP secret {}, portal password {}",
                added.extension,
                added.name,
                if added.enabled { "" } else { ", disabled" },
                if added.credentials.is_empty() {
                    "not set (it cannot authenticate until `ext passwd`)".to_string()
                } else {
                    format!("set for realm {}", ctx.realm)
                },
                if added.portal_password.is_some() {
                    "set"
                } else {
                    "not set"
                },
            )?;
        }
        ExtCommand::Passwd { extension, secrets } => {
            if !secrets.sip_secret_stdin
                && !secrets.generate_sip_secret
                && !secrets.portal_password_stdin
            {
                bail!(
                    "nothing to change: give --sip-secret-stdin, --generate-sip-secret or \
                     --portal-password-stdin"
                );
            }
            // Checked first, so a mistyped extension does not consume the secrets for nothing.
            if accounts
                .get_account(&extension)
                .with_context(|| format!("reading {extension}"))?
                .is_none()
            {
                bail!("extension {extension} has no account");
            }
            let read = read_secrets(&secrets, ctx.interactive, input, out)?;
            let change = AccountChange {
                credentials: read
                    .sip
                    .as_deref()
                    .map(|s| SipCredential::for_secret(&extension, &ctx.realm, s)),
                portal_password: read.portal.as_deref().map(hash).transpose()?.map(Some),
                ..Default::default()
            };
            accounts
                .update_account(&extension, &change)
                .with_context(|| format!("changing the secrets of {extension}"))?;
            if read.sip.is_some() {
                writeln!(
                    out,
                    "{extension}: SIP secret changed for realm {}",
                    ctx.realm
                )?;
            }
            if read.portal.is_some() {
                writeln!(out, "{extension}: portal password changed")?;
            }
        }
        ExtCommand::Disable { extension } => {
            set_enabled(accounts, &extension, false)?;
            writeln!(out, "{extension} disabled")?;
        }
        ExtCommand::Enable { extension } => {
            set_enabled(accounts, &extension, true)?;
            writeln!(out, "{extension} enabled")?;
        }
        ExtCommand::List { json } => {
            let all = accounts.list_accounts().context("listing accounts")?;
            let statuses: BTreeMap<String, crate::presence::Presence> = presence
                .list()
                .context("reading statuses")?
                .into_iter()
                .map(|p| (p.extension.clone(), p))
                .collect();
            let rows: Vec<ListRow> = all
                .iter()
                .map(|a| ListRow::of(a, &ctx.realm, statuses.get(&a.extension)))
                .collect();
            if json {
                for row in &rows {
                    serde_json::to_writer(&mut *out, row)?;
                    writeln!(out)?;
                }
            } else {
                write_list(out, &rows)?;
            }
        }
        ExtCommand::Remove { extension } => {
            accounts
                .remove_account(&extension)
                .with_context(|| format!("removing {extension}"))?;
            writeln!(
                out,
                "removed the account of {extension} (its presence and history are kept)"
            )?;
        }
        ExtCommand::Import {
            file,
            replace,
            dry_run,
            allow_weak_secret,
        } => {
            let size = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            if size > MAX_IMPORT_BYTES {
                bail!(
                    "{} has {size} bytes; an extension export is far smaller (at most {} MiB)",
                    file.display(),
                    MAX_IMPORT_BYTES >> 20
                );
            }
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            import_file(
                accounts,
                &bytes,
                replace,
                dry_run,
                allow_weak_secret,
                ctx,
                out,
            )
            .with_context(|| format!("importing {}", file.display()))?;
        }
    }
    Ok(())
}

fn set_enabled(accounts: &dyn AccountStore, extension: &str, enabled: bool) -> anyhow::Result<()> {
    accounts
        .update_account(
            extension,
            &AccountChange {
                enabled: Some(enabled),
                ..Default::default()
            },
        )
        .with_context(|| {
            format!(
                "{} {extension}",
                if enabled { "enabling" } else { "disabling" }
            )
        })?;
    Ok(())
}

fn hash(password: &str) -> anyhow::Result<String> {
    hash_portal_password(password).context("hashing the portal password")
}

/// Reads (or generates) the secrets `args` ask for, checking each; a generated SIP secret is
/// printed once.
fn read_secrets(
    args: &SecretArgs,
    interactive: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<Secrets> {
    let ask = |what: &str| {
        if interactive {
            eprint!("{what} (shown as you type; pipe it in to hide it), then Enter: ");
        }
    };
    let sip = if args.sip_secret_stdin {
        ask("SIP secret");
        let secret = read_line(input, "the SIP secret")?;
        check_sip_secret(&secret, args.allow_weak_secret).map_err(anyhow::Error::msg)?;
        Some(secret)
    } else if args.generate_sip_secret {
        let secret = generate_secret();
        writeln!(
            out,
            "generated SIP secret (shown once, kept only hashed): {secret}"
        )?;
        Some(secret)
    } else {
        None
    };
    let portal = if args.portal_password_stdin {
        ask("Portal password");
        let password = read_line(input, "the portal password")?;
        check_portal_password(&password).map_err(anyhow::Error::msg)?;
        Some(password)
    } else {
        None
    };
    Ok(Secrets { sip, portal })
}

/// A strong random secret of [`GENERATED_LEN`] characters without look-alikes, for a
/// secret or password that is printed once.
pub(crate) fn generate_secret() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_LEN)
        .map(|_| {
            let i = rng.random_range(0..GENERATED_ALPHABET.len());
            char::from(GENERATED_ALPHABET.get(i).copied().unwrap_or(b'x'))
        })
        .collect()
}

/// One line of stdin without its line ending; EOF or an empty line is an error.
pub(crate) fn read_line(input: &mut dyn BufRead, what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = input
        .read_line(&mut line)
        .with_context(|| format!("reading {what} from stdin"))?;
    if n == 0 {
        bail!("expected {what} on stdin (one line), found the end of input");
    }
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        bail!("{what} read from stdin is empty");
    }
    Ok(line.to_string())
}

/// Checks every row, then writes all of them in one transaction (or, in a dry run, says
/// what would change).
fn import_file(
    accounts: &dyn AccountStore,
    bytes: &[u8],
    replace: bool,
    dry_run: bool,
    allow_weak: bool,
    ctx: &ExtContext,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let parsed = import::parse(bytes, allow_weak);
    let mut problems = parsed.problems;
    let existing: std::collections::HashSet<String> = accounts
        .list_accounts()
        .context("listing accounts")?
        .into_iter()
        .map(|a| a.extension)
        .collect();
    if !replace {
        for row in &parsed.rows {
            if existing.contains(&row.extension) {
                problems.push(format!(
                    "line {}: extension {} already has an account (use --replace to update it)",
                    row.line, row.extension
                ));
            }
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| line_of(p));
        const SHOWN: usize = 20;
        let mut message = format!(
            "{} problem{}; nothing imported:",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in problems.iter().take(SHOWN) {
            message.push_str("\n  ");
            message.push_str(p);
        }
        if problems.len() > SHOWN {
            message.push_str(&format!("\n  ... and {} more", problems.len() - SHOWN));
        }
        bail!(message);
    }
    let updating = parsed
        .rows
        .iter()
        .filter(|r| existing.contains(&r.extension))
        .count();
    let without_secret = parsed
        .rows
        .iter()
        .filter(|r| r.sip_secret.is_empty())
        .count();
    if dry_run {
        writeln!(
            out,
            "dry run: would add {}, update {} (realm {}); {} without a SIP secret; nothing written",
            parsed.rows.len() - updating,
            updating,
            ctx.realm,
            without_secret
        )?;
        return Ok(());
    }
    let mut batch = Vec::with_capacity(parsed.rows.len());
    for row in &parsed.rows {
        batch.push(NewAccount {
            credentials: if row.sip_secret.is_empty() {
                Vec::new()
            } else {
                SipCredential::for_secret(&row.extension, &ctx.realm, &row.sip_secret)
            },
            // argon2id is deliberately slow (tens of ms): only rows that carry one pay.
            portal_password: row.portal_password.as_deref().map(hash).transpose()?,
            extension: row.extension.clone(),
            name: row.name.clone(),
            language: row.language.clone(),
            enabled: true,
        });
    }
    let summary = accounts
        .import_accounts(&batch, replace)
        .context("writing the accounts")?;
    writeln!(
        out,
        "imported {} accounts: {} added, {} updated (realm {}); {} without a SIP secret",
        summary.added + summary.updated,
        summary.added,
        summary.updated,
        ctx.realm,
        without_secret
    )?;
    Ok(())
}

/// The line number a problem message starts with, to list problems in file order.
fn line_of(problem: &str) -> u64 {
    problem
        .strip_prefix("line ")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One account as `list` shows it: whether secrets are set, never what they are.
#[derive(serde::Serialize)]
struct ListRow {
    extension: String,
    name: String,
    enabled: bool,
    language: Option<String>,
    /// A SIP secret is kept for the current realm (so the account can authenticate).
    sip_secret: bool,
    portal_password: bool,
    status: String,
    custom_text: Option<String>,
}

impl ListRow {
    fn of(account: &Account, realm: &str, presence: Option<&crate::presence::Presence>) -> ListRow {
        let presence = presence
            .cloned()
            .unwrap_or_else(|| crate::presence::Presence::default_for(&account.extension));
        ListRow {
            extension: account.extension.clone(),
            name: account.name.clone(),
            enabled: account.enabled,
            language: account.language.clone(),
            sip_secret: account.credentials.iter().any(|c| c.realm == realm),
            portal_password: account.portal_password.is_some(),
            status: presence.status.as_str().to_string(),
            custom_text: presence.custom_text,
        }
    }
}

fn write_list(out: &mut dyn Write, rows: &[ListRow]) -> std::io::Result<()> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.extension.clone(),
                r.name.clone(),
                yes_no(r.enabled),
                r.language.clone().unwrap_or_else(|| "-".into()),
                yes_no(r.sip_secret),
                yes_no(r.portal_password),
                r.status.clone(),
            ]
        })
        .collect();
    let header = [
        "EXTENSION",
        "NAME",
        "ENABLED",
        "LANGUAGE",
        "SIP_SECRET",
        "PORTAL",
        "STATUS",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 7]| -> std::io::Result<()> {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            text.push_str(&format!("{cell:<width$}  "));
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, header)?;
    for row in &cells {
        line(out, row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::accounts::{ha1, verify_portal_password, DigestAlgorithm};
    use crate::presence::memory::MemoryStore;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ExtCommand,
    }

    fn ctx() -> ExtContext {
        ExtContext {
            realm: "office".into(),
            interactive: false,
        }
    }

    /// Runs `args` with `stdin`; the output, or the error with its causes.
    fn run_ext(store: &MemoryStore, args: &[&str], stdin: &str) -> Result<String, String> {
        let cmd = Cli::try_parse_from(std::iter::once("ext").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?
            .cmd;
        let mut out = Vec::new();
        let mut input = stdin.as_bytes();
        run(store, store, cmd, &ctx(), &mut input, &mut out).map_err(|e| format!("{e:#}"))?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn add_keeps_only_hashes_of_both_secrets() {
        let store = MemoryStore::new();
        let out = run_ext(
            &store,
            &[
                "add",
                "1001",
                "--name",
                "Ann Smith",
                "--language",
                "de-CH",
                "--sip-secret-stdin",
                "--portal-password-stdin",
            ],
            "sip-Secret-1\r\nportal-Pass-2\n",
        )
        .unwrap();
        assert_eq!(
            out,
            "added 1001 (Ann Smith): SIP secret set for realm office, portal password set\n"
        );
        let account = store.get_account("1001").unwrap().unwrap();
        assert_eq!(account.language.as_deref(), Some("de-CH"));
        for algorithm in DigestAlgorithm::ALL {
            let kept = account
                .credentials
                .iter()
                .find(|c| c.algorithm == algorithm && c.realm == "office")
                .unwrap();
            assert_eq!(kept.ha1, ha1(algorithm, "1001", "office", "sip-Secret-1"));
        }
        let portal = account.portal_password.unwrap();
        assert!(portal.starts_with("$argon2id$"));
        assert!(verify_portal_password(&portal, "portal-Pass-2"));
    }

    #[test]
    fn weak_empty_or_missing_secrets_are_refused_without_echoing_them() {
        let store = MemoryStore::new();
        let add = ["add", "1001", "--name", "Ann", "--sip-secret-stdin"];
        let err = run_ext(&store, &add, "abc12\n").unwrap_err();
        assert!(err.contains("shorter than 8 characters"), "{err}");
        assert!(!err.contains("abc12"), "{err}");
        let err = run_ext(&store, &add, "\n").unwrap_err();
        assert_eq!(err, "the SIP secret read from stdin is empty");
        let err = run_ext(&store, &add, "").unwrap_err();
        assert!(err.contains("found the end of input"), "{err}");
        assert!(store.list_accounts().unwrap().is_empty());
        let weak = [
            "add",
            "1001",
            "--name",
            "Ann",
            "--sip-secret-stdin",
            "--allow-weak-secret",
        ];
        assert!(run_ext(&store, &weak, "abc12\n").is_ok());
        let err = run_ext(
            &store,
            &["passwd", "1001", "--portal-password-stdin"],
            "short\n",
        )
        .unwrap_err();
        assert!(err.contains("portal password is shorter"), "{err}");
    }

    #[test]
    fn a_generated_secret_is_printed_once_and_is_what_is_kept() {
        let store = MemoryStore::new();
        let out = run_ext(
            &store,
            &["add", "1001", "--name", "Ann", "--generate-sip-secret"],
            "",
        )
        .unwrap();
        let secret = out
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("generated SIP secret (shown once, kept only hashed): "))
            .unwrap()
            .to_string();
        assert_eq!(secret.len(), GENERATED_LEN);
        assert!(secret.bytes().all(|b| GENERATED_ALPHABET.contains(&b)));
        let account = store.get_account("1001").unwrap().unwrap();
        assert!(account
            .credentials
            .iter()
            .any(|c| c.ha1 == ha1(c.algorithm, "1001", "office", &secret)));
        let again = run_ext(&store, &["passwd", "1001", "--generate-sip-secret"], "").unwrap();
        assert!(!again.contains(&secret), "a new one each time");
    }

    #[test]
    fn passwd_replaces_every_realm_and_needs_something_to_change() {
        let store = MemoryStore::new();
        store
            .add_account(&NewAccount {
                extension: "1001".into(),
                name: "Ann".into(),
                language: None,
                enabled: true,
                credentials: SipCredential::for_secret("1001", "old-realm", "old-secret"),
                portal_password: None,
            })
            .unwrap();
        let err = run_ext(&store, &["passwd", "1001"], "").unwrap_err();
        assert!(err.starts_with("nothing to change"), "{err}");
        let err = run_ext(
            &store,
            &["passwd", "2002", "--sip-secret-stdin"],
            "secret-xyz\n",
        )
        .unwrap_err();
        assert_eq!(err, "extension 2002 has no account");
        let out = run_ext(
            &store,
            &["passwd", "1001", "--sip-secret-stdin"],
            "new-secret\n",
        )
        .unwrap();
        assert_eq!(out, "1001: SIP secret changed for realm office\n");
        let account = store.get_account("1001").unwrap().unwrap();
        assert!(account.credentials.iter().all(|c| c.realm == "office"));
    }

    #[test]
    fn disable_enable_remove_and_list() {
        let store = MemoryStore::new();
        run_ext(
            &store,
            &["add", "1002", "--name", "Bob", "--sip-secret-stdin"],
            "secret-bob\n",
        )
        .unwrap();
        run_ext(
            &store,
            &["add", "1001", "--name", "Ann Smith", "--disabled"],
            "",
        )
        .unwrap();
        assert_eq!(
            run_ext(&store, &["enable", "1001"], "").unwrap(),
            "1001 enabled\n"
        );
        assert_eq!(
            run_ext(&store, &["disable", "1002"], "").unwrap(),
            "1002 disabled\n"
        );
        let err = run_ext(&store, &["disable", "3003"], "").unwrap_err();
        assert_eq!(err, "disabling 3003: extension 3003 has no account");
        store
            .set(&crate::presence::StatusUpdate {
                extension: "1002".into(),
                status: crate::presence::StatusKind::DoNotDisturb,
                custom_text: None,
                source: crate::presence::ChangeSource::Cli,
                at: std::time::SystemTime::UNIX_EPOCH,
                actor: None,
                expected_version: None,
            })
            .unwrap();
        assert_eq!(
            run_ext(&store, &["list"], "").unwrap(),
            "\
EXTENSION  NAME       ENABLED  LANGUAGE  SIP_SECRET  PORTAL  STATUS
1001       Ann Smith  yes      -         no          no      available
1002       Bob        no       -         yes         no      dnd
"
        );
        let json = run_ext(&store, &["list", "--json"], "").unwrap();
        let rows: Vec<serde_json::Value> = json
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            rows[1],
            serde_json::json!({"extension": "1002", "name": "Bob", "enabled": false,
                "language": null, "sip_secret": true, "portal_password": false,
                "status": "dnd", "custom_text": null})
        );
        assert_eq!(
            run_ext(&store, &["remove", "1002"], "").unwrap(),
            "removed the account of 1002 (its presence and history are kept)\n"
        );
        assert_eq!(store.get("1002").unwrap().version, 1);
        assert_eq!(store.list_accounts().unwrap().len(), 1);
    }
}
