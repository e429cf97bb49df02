//! `admin` and `token` against a `MemoryStore`, input and output captured.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;

use super::*;
use crate::accounts::{verify_portal_password, NewAccount};
use crate::config::{HttpConfig, LoginLimitsConfig};
use crate::presence::memory::MemoryStore;
use crate::web_auth::{LoginError, WebAuth};

#[derive(Parser)]
enum Cli {
    #[command(subcommand)]
    Admin(AdminCommand),
    #[command(subcommand)]
    Token(TokenCommand),
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

/// Runs `args` (starting with `admin` or `token`) at `t(at)` with `stdin`; the output, or
/// the error with its causes.
fn run(store: &MemoryStore, at: u64, args: &[&str], stdin: &str) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("starcode").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let ctx = WebCliContext {
        interactive: false,
        now: t(at),
    };
    let mut out = Vec::new();
    let mut input = stdin.as_bytes();
    match cli {
        Cli::Admin(cmd) => run_admin(store, store, cmd, &ctx, &mut input, &mut out),
        Cli::Token(cmd) => run_token(store, store, cmd, &ctx, &mut out),
    }
    .map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).unwrap())
}

/// The web access service over `store` with the default settings.
fn web_auth(store: &Arc<MemoryStore>) -> WebAuth {
    WebAuth::new(
        store.clone(),
        store.clone(),
        &HttpConfig::default(),
        &LoginLimitsConfig::default(),
    )
    .unwrap()
}

fn add_extension(store: &MemoryStore, ext: &str) {
    store
        .add_account(&NewAccount {
            extension: ext.into(),
            name: "Ann".into(),
            language: None,
            enabled: true,
            credentials: Vec::new(),
            portal_password: None,
        })
        .unwrap();
}

#[test]
fn the_first_admin_gets_a_generated_password_printed_once_and_can_log_in() {
    let store = Arc::new(MemoryStore::new());
    let out = run(&store, 0, &["admin", "add", "root"], "").unwrap();
    let mut lines = out.lines();
    let password = lines
        .next()
        .and_then(|l| l.strip_prefix("generated password (shown once, kept only hashed): "))
        .unwrap()
        .to_string();
    assert_eq!(lines.next(), Some("added admin root"));
    assert_eq!(password.len(), 24);
    let kept = store.get_admin("root").unwrap().unwrap();
    assert!(verify_portal_password(&kept.password_hash, &password));
    assert_eq!(kept.created_at, t(0));

    let auth = web_auth(&store);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(auth.login("root", &password, ip, t(1)).is_ok());
}

#[test]
fn a_password_from_stdin_is_checked_and_never_echoed() {
    let store = MemoryStore::new();
    let err = run(
        &store,
        0,
        &["admin", "add", "root", "--password-stdin"],
        "short\n",
    )
    .unwrap_err();
    assert_eq!(err, "the password is shorter than 8 characters");
    let err = run(&store, 0, &["admin", "add", "root", "--password-stdin"], "").unwrap_err();
    assert!(err.contains("found the end of input"), "{err}");
    assert!(store.list_admins().unwrap().is_empty());
    let out = run(
        &store,
        0,
        &["admin", "add", "root", "--password-stdin"],
        "root-Password-1\r\n",
    )
    .unwrap();
    assert_eq!(out, "added admin root\n");
    assert!(!out.contains("root-Password-1"));
    let kept = store.get_admin("root").unwrap().unwrap();
    assert!(verify_portal_password(
        &kept.password_hash,
        "root-Password-1"
    ));
}

#[test]
fn admin_names_are_checked_and_cannot_shadow_an_extension() {
    let store = MemoryStore::new();
    add_extension(&store, "reception");
    let err = run(&store, 0, &["admin", "add", "reception"], "").unwrap_err();
    assert!(err.contains("is an extension's account"), "{err}");
    let err = run(&store, 0, &["admin", "add", "1001"], "").unwrap_err();
    assert!(err.starts_with("invalid admin name '1001'"), "{err}");
    run(&store, 0, &["admin", "add", "root"], "").unwrap();
    let err = run(&store, 0, &["admin", "add", "root"], "").unwrap_err();
    assert_eq!(err, "admin root already exists");
    assert_eq!(store.list_admins().unwrap().len(), 1);
}

#[test]
fn passwd_disable_and_remove_end_the_admins_sessions() {
    let store = Arc::new(MemoryStore::new());
    run(
        &store,
        0,
        &["admin", "add", "root", "--password-stdin"],
        "root-Password-1\n",
    )
    .unwrap();
    let auth = web_auth(&store);
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    auth.login("root", "root-Password-1", ip, t(1)).unwrap();
    auth.login("root", "root-Password-1", ip, t(1)).unwrap();
    let out = run(
        &store,
        2,
        &["admin", "passwd", "root", "--password-stdin"],
        "new-Password-2\n",
    )
    .unwrap();
    assert_eq!(out, "root: password changed; 2 browser sessions ended\n");
    assert!(matches!(
        auth.login("root", "root-Password-1", ip, t(3)),
        Err(LoginError::BadCredentials)
    ));
    auth.login("root", "new-Password-2", ip, t(3)).unwrap();
    assert_eq!(
        run(&store, 4, &["admin", "disable", "root"], "").unwrap(),
        "root disabled; 1 browser session ended\n"
    );
    assert!(matches!(
        auth.login("root", "new-Password-2", ip, t(5)),
        Err(LoginError::Disabled)
    ));
    assert_eq!(
        run(&store, 6, &["admin", "enable", "root"], "").unwrap(),
        "root enabled\n"
    );
    auth.login("root", "new-Password-2", ip, t(7)).unwrap();
    assert_eq!(
        run(&store, 8, &["admin", "remove", "root"], "").unwrap(),
        "removed admin root; 1 browser session ended\n"
    );
    let err = run(&store, 9, &["admin", "passwd", "root"], "").unwrap_err();
    assert_eq!(err, "there is no admin root");
    let err = run(&store, 9, &["admin", "disable", "root"], "").unwrap_err();
    assert_eq!(err, "disabling admin root: there is no admin root");
}

#[test]
fn admin_list_shows_no_hash() {
    let store = MemoryStore::new();
    run(&store, 0, &["admin", "add", "root"], "").unwrap();
    run(&store, 60, &["admin", "add", "alice", "--disabled"], "").unwrap();
    assert_eq!(
        run(&store, 0, &["admin", "list"], "").unwrap(),
        "\
NAME   ENABLED  CREATED                   UPDATED
alice  no       2027-01-15T08:01:00.000Z  2027-01-15T08:01:00.000Z
root   yes      2027-01-15T08:00:00.000Z  2027-01-15T08:00:00.000Z
"
    );
    let json = run(&store, 0, &["admin", "list", "--json"], "").unwrap();
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"name": "alice", "enabled": false,
            "created_ms": 1_800_000_060_000_i64, "updated_ms": 1_800_000_060_000_i64})
    );
    assert!(!json.contains("argon2"), "{json}");
}

#[test]
fn a_token_is_printed_once_works_and_is_listed_without_its_secret_until_revoked() {
    let store = Arc::new(MemoryStore::new());
    add_extension(&store, "1001");
    let out = run(
        &store,
        0,
        &[
            "token",
            "create",
            "--name",
            "wallboard",
            "--extension",
            "1001",
        ],
        "",
    )
    .unwrap();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("token (shown once, kept only hashed): "))
        .unwrap()
        .to_string();
    let id = crate::web_auth::secrets::token_id(&secret)
        .unwrap()
        .to_string();
    assert_eq!(
        out.lines().next().unwrap(),
        format!("created token {id} (wallboard, scope extension 1001)")
    );
    let auth = web_auth(&store);
    assert_eq!(
        auth.check_token(&secret, t(1)).unwrap(),
        Some(Principal::Extension("1001".into()))
    );

    let list = run(&store, 2, &["token", "list"], "").unwrap();
    assert!(!list.contains(&secret[16..]), "{list}");
    assert!(list.starts_with("ID  "), "{list}");
    assert!(
        list.contains(&format!(
            "{id}  wallboard  extension 1001  cli         2027-01-15T08:00:00.000Z  2027-01-15T08:00:01.000Z  -"
        )),
        "{list}"
    );
    // The whole token can be pasted to revoke it.
    assert_eq!(
        run(&store, 3, &["token", "revoke", &secret], "").unwrap(),
        format!("revoked token {id} (wallboard)\n")
    );
    assert_eq!(auth.check_token(&secret, t(4)).unwrap(), None);
    let json = run(&store, 5, &["token", "list", "--json"], "").unwrap();
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(row["revoked_ms"], 1_800_000_003_000_i64);
    assert_eq!(row["scope"], "extension");
    assert_eq!(row["extension"], "1001");
    assert!(row.get("token_hash").is_none());
    let err = run(&store, 5, &["token", "revoke", "abcdef"], "").unwrap_err();
    assert_eq!(err, "revoking token abcdef: there is no API token abcdef");
}

#[test]
fn a_token_needs_exactly_one_scope_and_an_existing_extension() {
    let store = MemoryStore::new();
    let err = run(&store, 0, &["token", "create", "--name", "x"], "").unwrap_err();
    assert!(err.contains("required"), "{err}");
    let err = run(
        &store,
        0,
        &[
            "token",
            "create",
            "--name",
            "x",
            "--admin",
            "--extension",
            "1001",
        ],
        "",
    )
    .unwrap_err();
    assert!(err.contains("cannot be used with"), "{err}");
    let err = run(
        &store,
        0,
        &["token", "create", "--name", "x", "--extension", "1001"],
        "",
    )
    .unwrap_err();
    assert_eq!(err, "creating the token: extension 1001 has no account");
    let err = run(
        &store,
        0,
        &["token", "create", "--name", " ", "--admin"],
        "",
    )
    .unwrap_err();
    assert!(err.starts_with("invalid token name"), "{err}");
    let out = run(
        &store,
        0,
        &["token", "create", "--name", "deploy", "--admin"],
        "",
    )
    .unwrap();
    assert!(out.contains("scope admin"), "{out}");
    assert_eq!(store.list_tokens().unwrap().len(), 1);
}
