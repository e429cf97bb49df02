//! Extensions as accounts: who may authenticate to the SIP side (digest, RFC 3261 §22 /
//! RFC 7616 / RFC 8760) and, later, to the user portal. Secrets are never kept: the SIP
//! secret only as HA1 per realm and algorithm, the portal password only as an argon2id hash.
//!
//! The store keeps accounts ([`AccountStore`]); the user agent never reads the store, it gets
//! an [`AccountDirectory`] snapshot from the shell (sans-IO), refreshed when
//! [`AccountStore::accounts_version`] moves.

pub mod secrets;
#[cfg(test)]
pub mod test_accounts;
pub mod validate;
pub(crate) mod writes;

use std::collections::HashMap;
use std::time::SystemTime;

use crate::presence::StoreError;

pub use secrets::{ha1, hash_portal_password, verify_portal_password, SecretError};

/// A digest algorithm we challenge with (RFC 7616 §3.3, RFC 8760 §2), most preferred first
/// in a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-256 (RFC 8760): what current phones answer first.
    Sha256,
    /// MD5 (RFC 3261 §22): what every SIP phone speaks.
    Md5,
}

impl DigestAlgorithm {
    /// Every algorithm an account's secret is kept for, in challenge order.
    pub const ALL: [DigestAlgorithm; 2] = [DigestAlgorithm::Sha256, DigestAlgorithm::Md5];

    /// The token in `algorithm=` and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Md5 => "MD5",
        }
    }

    /// Reads an `algorithm=` token (case-insensitive, RFC 7616 §3.3).
    pub fn parse(token: &str) -> Option<DigestAlgorithm> {
        if token.eq_ignore_ascii_case("SHA-256") {
            Some(DigestAlgorithm::Sha256)
        } else if token.eq_ignore_ascii_case("MD5") {
            Some(DigestAlgorithm::Md5)
        } else {
            None
        }
    }
}

impl std::fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DigestAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DigestAlgorithm::parse(s).ok_or_else(|| format!("unknown digest algorithm '{s}'"))
    }
}

/// A SIP digest secret as kept: `H(username:realm:secret)` in lowercase hex, for one realm and
/// algorithm. Changing the realm needs the secret again (`starcode ext passwd`).
#[derive(Clone, PartialEq, Eq)]
pub struct SipCredential {
    pub realm: String,
    pub algorithm: DigestAlgorithm,
    /// Lowercase hex. Never logged: [`std::fmt::Debug`] hides it.
    pub ha1: String,
}

impl std::fmt::Debug for SipCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCredential")
            .field("realm", &self.realm)
            .field("algorithm", &self.algorithm)
            .field("ha1", &"<hidden>")
            .finish()
    }
}

impl SipCredential {
    /// The credentials for `secret` in `realm`, one per algorithm in [`DigestAlgorithm::ALL`].
    pub fn for_secret(extension: &str, realm: &str, secret: &str) -> Vec<SipCredential> {
        DigestAlgorithm::ALL
            .iter()
            .map(|&algorithm| SipCredential {
                realm: realm.to_string(),
                algorithm,
                ha1: ha1(algorithm, extension, realm, secret),
            })
            .collect()
    }
}

/// An extension's account as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub extension: String,
    /// The display name ("Ann Smith").
    pub name: String,
    /// Prompt language for this extension's calls (`None`: the config's).
    pub language: Option<String>,
    /// A disabled account cannot authenticate (403), but keeps its presence and history.
    pub enabled: bool,
    /// The SIP digest secret as HA1s; empty when no SIP secret was set (cannot authenticate).
    pub credentials: Vec<SipCredential>,
    /// The portal password as an argon2id PHC string; `None` when not set.
    pub portal_password: Option<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl Account {
    /// Applies `change` at `now`: the one update rule of `update_account` and an import's
    /// replacements, whatever the backend (the database ones write the result back).
    pub fn apply(&mut self, change: &AccountChange, now: SystemTime) {
        if let Some(name) = &change.name {
            self.name = name.clone();
        }
        if let Some(language) = &change.language {
            self.language = language.clone();
        }
        if let Some(enabled) = change.enabled {
            self.enabled = enabled;
        }
        if let Some(credentials) = &change.credentials {
            self.credentials = credentials.clone();
        }
        if let Some(portal) = &change.portal_password {
            self.portal_password = portal.clone();
        }
        self.updated_at = now;
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("extension", &self.extension)
            .field("name", &self.name)
            .field("language", &self.language)
            .field("enabled", &self.enabled)
            .field("credentials", &self.credentials)
            .field(
                "portal_password",
                &self.portal_password.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// A new account, as `ext add` and the CSV import give it (secrets already hashed).
#[derive(Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub extension: String,
    pub name: String,
    pub language: Option<String>,
    pub enabled: bool,
    pub credentials: Vec<SipCredential>,
    pub portal_password: Option<String>,
}

impl NewAccount {
    /// What `ext import --replace` changes in an existing account: the name always, the
    /// language, portal password and SIP credentials only where the import gives them, the
    /// enabled flag never. Every backend applies it as an update, so they cannot disagree.
    pub fn replacement(&self) -> AccountChange {
        AccountChange {
            name: Some(self.name.clone()),
            language: self.language.clone().map(Some),
            enabled: None,
            credentials: (!self.credentials.is_empty()).then(|| self.credentials.clone()),
            portal_password: self.portal_password.clone().map(Some),
        }
    }
}

impl std::fmt::Debug for NewAccount {
    /// Like [`Account`]'s: the portal password hash is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("extension", &self.extension)
            .field("name", &self.name)
            .field("language", &self.language)
            .field("enabled", &self.enabled)
            .field("credentials", &self.credentials)
            .field(
                "portal_password",
                &self.portal_password.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// A change to an existing account; `None` leaves a field as it is.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AccountChange {
    pub name: Option<String>,
    /// `Some(Some(lang))` sets, `Some(None)` clears.
    pub language: Option<Option<String>>,
    pub enabled: Option<bool>,
    /// Replaces every kept HA1 (all realms).
    pub credentials: Option<Vec<SipCredential>>,
    /// `Some(Some(hash))` sets, `Some(None)` clears.
    pub portal_password: Option<Option<String>>,
}

impl std::fmt::Debug for AccountChange {
    /// The portal password hash is never printed, only whether it changes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountChange")
            .field("name", &self.name)
            .field("language", &self.language)
            .field("enabled", &self.enabled)
            .field("credentials", &self.credentials)
            .field(
                "portal_password",
                &self
                    .portal_password
                    .as_ref()
                    .map(|p| p.as_ref().map(|_| "<hidden>")),
            )
            .finish()
    }
}

/// What a bulk import did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ImportSummary {
    pub added: usize,
    pub updated: usize,
}

/// Errors of the account store.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("extension {0} already has an account")]
    Exists(String),
    #[error("extension {0} has no account")]
    NotFound(String),
    /// A display name that cannot be kept (empty, too long, control characters).
    #[error("invalid name: {0}; use 1 to 64 characters without control characters")]
    InvalidName(String),
    /// A language that is not a tag like "en" or "de-CH".
    #[error("invalid language '{0}': use a tag like en or de-CH")]
    InvalidLanguage(String),
    /// Something that is not a hash where only hashes are kept (a bug in a writer, never a
    /// user's input): refused so a plaintext secret can never reach the database.
    #[error("refusing to store {0}")]
    NotAHash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where accounts live (the same database as presence). Every write is one transaction and
/// moves [`AccountStore::accounts_version`], which every process sharing the database sees.
pub trait AccountStore: Send + Sync {
    /// Adds an account; [`AccountError::Exists`] if the extension has one.
    fn add_account(&self, account: &NewAccount) -> Result<Account, AccountError>;

    /// Adds (or with `replace`, overwrites name and credentials of) many accounts in one
    /// transaction: all or nothing.
    fn import_accounts(
        &self,
        accounts: &[NewAccount],
        replace: bool,
    ) -> Result<ImportSummary, AccountError>;

    /// One account, `None` when the extension has none.
    fn get_account(&self, extension: &str) -> Result<Option<Account>, AccountError>;

    /// Every account, ordered by extension.
    fn list_accounts(&self) -> Result<Vec<Account>, AccountError>;

    /// Every account's extension and name, ordered by extension: what the board shows, which
    /// a backend can read without the SIP credentials `list_accounts` brings along (with
    /// 10,000 accounts those were more than half of each `GET /extensions`).
    fn account_names(&self) -> Result<Vec<(String, String)>, AccountError> {
        Ok(self
            .list_accounts()?
            .into_iter()
            .map(|a| (a.extension, a.name))
            .collect())
    }

    /// Applies `change`; [`AccountError::NotFound`] if there is no account.
    fn update_account(
        &self,
        extension: &str,
        change: &AccountChange,
    ) -> Result<Account, AccountError>;

    /// Removes the account (its presence and history stay); [`AccountError::NotFound`] if none.
    fn remove_account(&self, extension: &str) -> Result<(), AccountError>;

    /// A number that changes whenever any process changes any account: the engine reloads its
    /// [`AccountDirectory`] when it moves.
    fn accounts_version(&self) -> Result<u64, AccountError>;
}

/// What the SIP side needs of one account to check a digest answer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirectoryEntry {
    pub enabled: bool,
    pub credentials: Vec<SipCredential>,
}

impl DirectoryEntry {
    /// The HA1 for `realm` and `algorithm`, if kept.
    pub fn ha1(&self, realm: &str, algorithm: DigestAlgorithm) -> Option<&str> {
        self.credentials
            .iter()
            .find(|c| c.algorithm == algorithm && c.realm == realm)
            .map(|c| c.ha1.as_str())
    }
}

/// The accounts as the user agent sees them: a snapshot the shell replaces when the store's
/// [`AccountStore::accounts_version`] moves. Cheap to look up on every request.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct AccountDirectory {
    entries: HashMap<String, DirectoryEntry>,
}

impl AccountDirectory {
    /// The snapshot of these accounts.
    pub fn from_accounts<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> AccountDirectory {
        AccountDirectory {
            entries: accounts
                .into_iter()
                .map(|a| {
                    (
                        a.extension.clone(),
                        DirectoryEntry {
                            enabled: a.enabled,
                            credentials: a.credentials.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The account of `extension`, if any.
    pub fn get(&self, extension: &str) -> Option<&DirectoryEntry> {
        self.entries.get(extension)
    }

    /// Accounts in the snapshot.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no account exists (then only trusted peers can be served).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Accounts with no HA1 for `realm`: they cannot authenticate until their secret is set
    /// again (the realm changed since).
    pub fn without_realm(&self, realm: &str) -> Vec<&str> {
        let mut missing: Vec<&str> = self
            .entries
            .iter()
            .filter(|(_, e)| e.credentials.iter().all(|c| c.realm != realm))
            .map(|(ext, _)| ext.as_str())
            .collect();
        missing.sort_unstable();
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(ext: &str, enabled: bool, realm: &str) -> Account {
        Account {
            extension: ext.into(),
            name: "Ann".into(),
            language: None,
            enabled,
            credentials: SipCredential::for_secret(ext, realm, "secret"),
            portal_password: Some("$argon2id$v=19$...".into()),
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn directory_finds_the_ha1_of_a_realm_and_algorithm() {
        let accounts = [
            account("1001", true, "office"),
            account("1002", false, "old"),
        ];
        let dir = AccountDirectory::from_accounts(&accounts);
        let entry = dir.get("1001").unwrap();
        assert_eq!(
            entry.ha1("office", DigestAlgorithm::Md5),
            Some(ha1(DigestAlgorithm::Md5, "1001", "office", "secret").as_str())
        );
        assert!(entry.ha1("other", DigestAlgorithm::Md5).is_none());
        assert!(!dir.get("1002").unwrap().enabled);
        assert_eq!(dir.without_realm("office"), ["1002"]);
        assert!(dir.get("1003").is_none());
    }

    #[test]
    fn debug_output_hides_hashes() {
        let text = format!("{:?}", account("1001", true, "office"));
        let md5 = ha1(DigestAlgorithm::Md5, "1001", "office", "secret");
        assert!(!text.contains(&md5), "{text}");
        assert!(!text.contains("argon2id"), "{text}");
        let new = NewAccount {
            extension: "1001".into(),
            name: "Ann".into(),
            language: None,
            enabled: true,
            credentials: SipCredential::for_secret("1001", "office", "secret"),
            portal_password: Some("$argon2id$v=19$m=19456,t=2,p=1$salt$hash".into()),
        };
        let change = AccountChange {
            portal_password: Some(new.portal_password.clone()),
            credentials: Some(new.credentials.clone()),
            ..AccountChange::default()
        };
        for text in [format!("{new:?}"), format!("{change:?}")] {
            assert!(!text.contains(&md5), "{text}");
            assert!(!text.contains("argon2id"), "{text}");
        }
    }

    #[test]
    fn algorithm_tokens_are_case_insensitive() {
        assert_eq!(
            DigestAlgorithm::parse("sha-256"),
            Some(DigestAlgorithm::Sha256)
        );
        assert_eq!(DigestAlgorithm::parse("MD5"), Some(DigestAlgorithm::Md5));
        assert_eq!(DigestAlgorithm::parse("MD5-sess"), None);
        assert_eq!(DigestAlgorithm::parse("SHA-512-256"), None);
    }
}
