//! The account writes every backend makes the same way: adding one account, and an import's
//! add-or-replace loop. A backend implements [`AccountWriter`] over its own transaction (or
//! working copy), so the decisions are made once and each import stays all or nothing.

use super::validate::{placement, Placement};
use super::{AccountChange, AccountError, ImportSummary, NewAccount};

/// What a backend does inside one account write, on which [`add`] and [`import`] decide.
pub(crate) trait AccountWriter {
    /// Whether `extension` has an account (as this write sees it so far).
    fn exists(&mut self, extension: &str) -> Result<bool, AccountError>;
    /// Keeps a new account, its credentials included.
    fn insert(&mut self, account: &NewAccount) -> Result<(), AccountError>;
    /// Applies `change` to the existing account of `extension`.
    fn change(&mut self, extension: &str, change: &AccountChange) -> Result<(), AccountError>;
}

/// Adds `account`; [`AccountError::Exists`] if its extension has one.
pub(crate) fn add(
    writer: &mut impl AccountWriter,
    account: &NewAccount,
) -> Result<(), AccountError> {
    let exists = writer.exists(&account.extension)?;
    placement(&account.extension, exists, false)?;
    writer.insert(account)
}

/// Adds each of `accounts`, or with `replace` updates an existing one with
/// [`NewAccount::replacement`]; stops at the first refusal (the caller then drops the write).
pub(crate) fn import(
    writer: &mut impl AccountWriter,
    accounts: &[NewAccount],
    replace: bool,
) -> Result<ImportSummary, AccountError> {
    let mut summary = ImportSummary::default();
    for account in accounts {
        let exists = writer.exists(&account.extension)?;
        match placement(&account.extension, exists, replace)? {
            Placement::Add => {
                writer.insert(account)?;
                summary.added += 1;
            }
            Placement::Replace => {
                writer.change(&account.extension, &account.replacement())?;
                summary.updated += 1;
            }
        }
    }
    Ok(summary)
}
