//! The test accounts the digest tests share (the authenticator's and the user agent's), so
//! both meet the same extensions, secrets and realm, and a change to what an account holds
//! is made once.

use std::time::SystemTime;

use super::{Account, AccountDirectory, SipCredential};

/// The realm the test accounts' HA1s are kept for.
pub const REALM: &str = "starcode";

/// An account of `ext` whose SIP secret is `secret` in [`REALM`] (every algorithm).
pub fn account(ext: &str, secret: &str, enabled: bool) -> Account {
    Account {
        extension: ext.into(),
        name: format!("Ext {ext}"),
        language: None,
        enabled,
        credentials: SipCredential::for_secret(ext, REALM, secret),
        portal_password: None,
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
    }
}

/// The office the tests authenticate against: 1001 ("s3cret") and 1002 ("other") enabled,
/// 1009 ("gone") disabled.
pub fn office_directory() -> AccountDirectory {
    AccountDirectory::from_accounts(&[
        account("1001", "s3cret", true),
        account("1002", "other", true),
        account("1009", "gone", false),
    ])
}
