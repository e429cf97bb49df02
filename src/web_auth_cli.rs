//! `starcode admin add|passwd|list|disable|enable|remove` and `starcode token
//! create|list|revoke`: who may use the web interface and the API, kept in the same store
//! as presence and accounts. Passwords come only from stdin (never the command line, which
//! `ps` shows) or are generated and printed once; an API token is printed once at creation.
//! Only hashes are stored, and nothing here prints one. Kept apart from `main.rs` so it can
//! be tested against a [`MemoryStore`] with its input and output captured.
//!
//! [`MemoryStore`]: crate::presence::memory::MemoryStore

use std::io::{BufRead, Write};
use std::time::SystemTime;

use anyhow::{bail, Context};

use crate::accounts::{hash_portal_password, AccountStore};
use crate::accounts_cli::import::check_portal_password;
use crate::accounts_cli::{generate_secret, read_line};
use crate::presence::to_unix_millis;
use crate::status_cli::{format_time, write_table};
use crate::web_auth::service::create_token;
use crate::web_auth::{
    AdminChange, ApiToken, NewAdmin, Principal, TokenScope, WebAuthError, WebAuthStore,
};

/// The `admin` subcommands, parsed by clap in `main.rs`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum AdminCommand {
    /// Add an admin of the web interface (sees and sets everything). The password is read
    /// from stdin with --password-stdin, else generated and printed once.
    Add {
        /// The login name: letters, digits, '.', '_' or '-', starting with a letter.
        name: String,
        /// Read the password from stdin (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Add the admin disabled (it cannot log in until `admin enable`).
        #[arg(long)]
        disabled: bool,
    },
    /// Set a new password (from stdin, or generated and printed once); the admin's browser
    /// sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show every admin (never a password or hash).
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Refuse the admin's logins until enabled again; its browser sessions end.
    Disable { name: String },
    /// Let a disabled admin log in again.
    Enable { name: String },
    /// Remove an admin; its browser sessions end (tokens it created stay until revoked).
    Remove { name: String },
}

/// The `token` subcommands, parsed by clap in `main.rs`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token for scripts; it is printed once and only its hash is kept.
    Create {
        /// What the token is for, e.g. "wallboard script".
        #[arg(long)]
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Show every token, revoked ones too (never the secret).
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token for good (it stays listed).
    Revoke {
        /// The token's id (the part after `sc_`, as `token list` shows it).
        id: String,
    },
}

/// What a new token may do: exactly one of `--admin` and `--extension EXT`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// Everything an admin may do.
    #[arg(long)]
    admin: bool,
    /// What this extension may do in the portal (its own status, the board).
    #[arg(long, value_name = "EXT")]
    extension: Option<String>,
}

impl ScopeArgs {
    fn scope(self) -> TokenScope {
        match self.extension {
            Some(ext) => TokenScope::Extension(ext),
            None => TokenScope::Admin,
        }
    }
}

/// What the commands need from their surroundings.
pub struct WebCliContext {
    /// Stdin is a terminal: say on stderr what to type.
    pub interactive: bool,
    /// The time recorded for what the command changes.
    pub now: SystemTime,
}

/// Who the command line acts as, in `created_by` and the logs.
const CLI_ACTOR: &str = "cli";

/// Runs one `admin` command. `accounts` is read so an admin cannot take an extension's name
/// (admins come first at login, which would lock that extension out of the portal).
pub fn run_admin(
    store: &dyn WebAuthStore,
    accounts: &dyn AccountStore,
    cmd: AdminCommand,
    ctx: &WebCliContext,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Add {
            name,
            password_stdin,
            disabled,
        } => {
            crate::web_auth::validate::validate_admin_name(&name)?;
            if crate::presence::validate_extension(&name).is_ok()
                && accounts
                    .get_account(&name)
                    .context("reading the accounts")?
                    .is_some()
            {
                bail!(
                    "{name} is an extension's account; an admin of that name would shut it \
                     out of the portal (admins come first at login): choose another name"
                );
            }
            if store.get_admin(&name)?.is_some() {
                bail!(WebAuthError::AdminExists(name));
            }
            let password = password(password_stdin, ctx.interactive, input, out)?;
            let added = store
                .add_admin(
                    &NewAdmin {
                        name: name.clone(),
                        password_hash: hash(&password)?,
                        enabled: !disabled,
                    },
                    ctx.now,
                )
                .with_context(|| format!("adding admin {name}"))?;
            writeln!(
                out,
                "added admin {}{}",
                added.name,
                if added.enabled { "" } else { " (disabled)" }
            )?;
        }
        AdminCommand::Passwd {
            name,
            password_stdin,
        } => {
            // Checked first, so a mistyped name does not consume the password for nothing.
            if store.get_admin(&name)?.is_none() {
                bail!(WebAuthError::AdminNotFound(name));
            }
            let password = password(password_stdin, ctx.interactive, input, out)?;
            let change = AdminChange {
                password_hash: Some(hash(&password)?),
                ..Default::default()
            };
            store
                .update_admin(&name, &change, ctx.now)
                .with_context(|| format!("changing the password of {name}"))?;
            let ended = end_sessions(store, &name)?;
            writeln!(out, "{name}: password changed{ended}")?;
        }
        AdminCommand::List { json } => {
            let admins = store.list_admins().context("listing admins")?;
            if json {
                for a in &admins {
                    let row = serde_json::json!({
                        "name": a.name,
                        "enabled": a.enabled,
                        "created_ms": to_unix_millis(a.created_at),
                        "updated_ms": to_unix_millis(a.updated_at),
                    });
                    serde_json::to_writer(&mut *out, &row)?;
                    writeln!(out)?;
                }
            } else {
                write_table(
                    out,
                    ["NAME", "ENABLED", "CREATED", "UPDATED"],
                    admins.iter().map(|a| {
                        [
                            a.name.clone(),
                            yes_no(a.enabled),
                            format_time(a.created_at),
                            format_time(a.updated_at),
                        ]
                    }),
                )?;
            }
        }
        AdminCommand::Disable { name } => {
            set_enabled(store, &name, false, ctx.now)?;
            let ended = end_sessions(store, &name)?;
            writeln!(out, "{name} disabled{ended}")?;
        }
        AdminCommand::Enable { name } => {
            set_enabled(store, &name, true, ctx.now)?;
            writeln!(out, "{name} enabled")?;
        }
        AdminCommand::Remove { name } => {
            store
                .remove_admin(&name)
                .with_context(|| format!("removing admin {name}"))?;
            let ended = end_sessions(store, &name)?;
            writeln!(out, "removed admin {name}{ended}")?;
        }
    }
    Ok(())
}

/// Runs one `token` command.
pub fn run_token(
    store: &dyn WebAuthStore,
    accounts: &dyn AccountStore,
    cmd: TokenCommand,
    ctx: &WebCliContext,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { name, scope } => {
            crate::web_auth::validate::validate_token_name(&name)?;
            let scope = scope.scope();
            let (token, secret) = create_token(store, accounts, &name, scope, CLI_ACTOR, ctx.now)
                .context("creating the token")?;
            writeln!(
                out,
                "created token {} ({}, scope {})",
                token.id, token.name, token.scope
            )?;
            writeln!(
                out,
                "token (shown once, kept only hashed): {}",
                secret.expose()
            )?;
        }
        TokenCommand::List { json } => {
            let tokens = store.list_tokens().context("listing tokens")?;
            if json {
                for t in &tokens {
                    serde_json::to_writer(&mut *out, &token_json(t))?;
                    writeln!(out)?;
                }
            } else {
                let when = |t: Option<SystemTime>| t.map_or_else(|| "-".to_string(), format_time);
                write_table(
                    out,
                    [
                        "ID",
                        "NAME",
                        "SCOPE",
                        "CREATED_BY",
                        "CREATED",
                        "LAST_USED",
                        "REVOKED",
                    ],
                    tokens.iter().map(|t| {
                        [
                            t.id.clone(),
                            t.name.clone(),
                            t.scope.to_string(),
                            t.created_by.clone(),
                            format_time(t.created_at),
                            when(t.last_used_at),
                            when(t.revoked_at),
                        ]
                    }),
                )?;
            }
        }
        TokenCommand::Revoke { id } => {
            let id = id.trim();
            // Accept the whole token too, so a leaked one can be pasted as found.
            let id = crate::web_auth::secrets::token_id(id).unwrap_or(id);
            let token = store
                .revoke_token(id, ctx.now)
                .with_context(|| format!("revoking token {id}"))?;
            writeln!(out, "revoked token {} ({})", token.id, token.name)?;
        }
    }
    Ok(())
}

/// A token as `token list --json` shows it: never the hash.
fn token_json(t: &ApiToken) -> serde_json::Value {
    let (scope, extension) = match &t.scope {
        TokenScope::Admin => ("admin", None),
        TokenScope::Extension(ext) => ("extension", Some(ext.as_str())),
    };
    serde_json::json!({
        "id": t.id,
        "name": t.name,
        "scope": scope,
        "extension": extension,
        "created_by": t.created_by,
        "created_ms": to_unix_millis(t.created_at),
        "last_used_ms": t.last_used_at.map(to_unix_millis),
        "revoked_ms": t.revoked_at.map(to_unix_millis),
    })
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn hash(password: &str) -> anyhow::Result<String> {
    hash_portal_password(password).context("hashing the password")
}

fn set_enabled(
    store: &dyn WebAuthStore,
    name: &str,
    enabled: bool,
    now: SystemTime,
) -> anyhow::Result<()> {
    let change = AdminChange {
        enabled: Some(enabled),
        ..Default::default()
    };
    store.update_admin(name, &change, now).with_context(|| {
        format!(
            "{} admin {name}",
            if enabled { "enabling" } else { "disabling" }
        )
    })?;
    Ok(())
}

/// Ends the admin's browser sessions; a note for the output when there were any.
fn end_sessions(store: &dyn WebAuthStore, name: &str) -> anyhow::Result<String> {
    let ended = store
        .remove_sessions_of(&Principal::Admin(name.to_string()))
        .context("ending the admin's sessions")?;
    Ok(match ended {
        0 => String::new(),
        1 => "; 1 browser session ended".to_string(),
        n => format!("; {n} browser sessions ended"),
    })
}

/// The password from stdin (checked like a portal password), or a generated one printed once.
fn password(
    from_stdin: bool,
    interactive: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<String> {
    if from_stdin {
        if interactive {
            eprint!("Password (shown as you type; pipe it in to hide it), then Enter: ");
        }
        let password = read_line(input, "the password")?;
        check_portal_password(&password)
            .map_err(|e| anyhow::anyhow!(e.replace("portal password", "password")))?;
        Ok(password)
    } else {
        let password = generate_secret();
        writeln!(
            out,
            "generated password (shown once, kept only hashed): {password}"
        )?;
        Ok(password)
    }
}

#[cfg(test)]
mod tests;
