//! The account half of the store contract, run on every backend (memory, SQLite,
//! PostgreSQL): what `starcode ext`, the engine's account reload and the web rely on.

use crate::accounts::{
    AccountChange, AccountError, AccountStore, DigestAlgorithm, NewAccount, SipCredential,
};
use crate::presence::{PresenceStore, StatusKind, StoreError};

macro_rules! account_conformance_tests {
    ($backend:ident) => {
        mod $backend {
            account_conformance_tests!(@checks $backend:
                an_added_account_reads_back_whole,
                adding_an_existing_extension_fails_and_changes_nothing,
                invalid_fields_are_refused_and_nothing_is_stored,
                an_update_changes_only_what_it_names,
                removing_keeps_presence_and_history,
                every_account_write_moves_the_version_and_failures_do_not,
                an_import_is_all_or_nothing,
                an_import_with_replace_updates_and_keeps_what_it_does_not_name,
                each_account_lists_with_its_own_credentials,
                a_removed_account_takes_its_credentials_along,
            );
        }
    };
    (@checks $backend:ident: $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                let Some(fixture) = super::super::$backend() else { return };
                super::$check(&*fixture.store, &*fixture.accounts);
            }
        )*
    };
}

account_conformance_tests!(memory);
account_conformance_tests!(sqlite);
account_conformance_tests!(postgres);

fn new(extension: &str, name: &str, secret: &str) -> NewAccount {
    NewAccount {
        extension: extension.into(),
        name: name.into(),
        language: None,
        enabled: true,
        credentials: SipCredential::for_secret(extension, "starcode", secret),
        portal_password: None,
    }
}

fn an_added_account_reads_back_whole(_: &dyn PresenceStore, store: &dyn AccountStore) {
    assert!(store.get_account("1001").unwrap().is_none());
    let mut ann = new("1001", "Ann Smith", "s3cret-ann");
    ann.language = Some("de-CH".into());
    ann.portal_password = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    let added = store.add_account(&ann).unwrap();
    store
        .add_account(&new("0999", "Zed", "s3cret-zed"))
        .unwrap();
    let read = store.get_account("1001").unwrap().unwrap();
    assert_eq!(read, added);
    assert_eq!(read.name, "Ann Smith");
    assert_eq!(read.language.as_deref(), Some("de-CH"));
    assert!(read.enabled);
    assert_eq!(read.portal_password, ann.portal_password);
    assert_eq!(read.created_at, read.updated_at);
    let mut creds = read.credentials.clone();
    creds.sort_by_key(|c| c.algorithm);
    let mut expected = ann.credentials.clone();
    expected.sort_by_key(|c| c.algorithm);
    assert_eq!(creds, expected);
    let extensions: Vec<String> = store
        .list_accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.extension)
        .collect();
    assert_eq!(extensions, ["0999", "1001"], "ordered by extension");
    assert_eq!(
        store.account_names().unwrap(),
        [
            ("0999".to_string(), "Zed".to_string()),
            ("1001".to_string(), "Ann Smith".to_string())
        ],
        "the board's names: ordered by extension, as list_accounts"
    );
}

fn adding_an_existing_extension_fails_and_changes_nothing(
    _: &dyn PresenceStore,
    store: &dyn AccountStore,
) {
    store
        .add_account(&new("1001", "Ann", "first-secret"))
        .unwrap();
    let version = store.accounts_version().unwrap();
    let err = store
        .add_account(&new("1001", "Bob", "other-secret"))
        .unwrap_err();
    assert!(
        matches!(&err, AccountError::Exists(e) if e == "1001"),
        "{err}"
    );
    let kept = store.get_account("1001").unwrap().unwrap();
    assert_eq!(kept.name, "Ann");
    assert_eq!(
        kept.credentials
            .iter()
            .find(|c| c.algorithm == DigestAlgorithm::Md5)
            .map(|c| c.ha1.clone()),
        Some(crate::accounts::ha1(
            DigestAlgorithm::Md5,
            "1001",
            "starcode",
            "first-secret"
        ))
    );
    assert_eq!(store.accounts_version().unwrap(), version);
}

fn invalid_fields_are_refused_and_nothing_is_stored(
    _: &dyn PresenceStore,
    store: &dyn AccountStore,
) {
    let version = store.accounts_version().unwrap();
    let bad_ext = new("10 01", "Ann", "secret-123");
    assert!(matches!(
        store.add_account(&bad_ext),
        Err(AccountError::Store(StoreError::InvalidExtension(_)))
    ));
    for name in ["", "Ann\u{0}", &"x".repeat(65)] {
        assert!(
            matches!(
                store.add_account(&new("1001", name, "secret-123")),
                Err(AccountError::InvalidName(_))
            ),
            "{name:?}"
        );
    }
    let mut bad_lang = new("1001", "Ann", "secret-123");
    bad_lang.language = Some("../../etc".into());
    assert!(matches!(
        store.add_account(&bad_lang),
        Err(AccountError::InvalidLanguage(_))
    ));
    let mut plaintext = new("1001", "Ann", "secret-123");
    plaintext.portal_password = Some("my portal password".into());
    assert!(matches!(
        store.add_account(&plaintext),
        Err(AccountError::NotAHash(_))
    ));
    let mut plaintext = new("1001", "Ann", "secret-123");
    plaintext.credentials[0].ha1 = "secret-123".into();
    assert!(matches!(
        store.import_accounts(&[plaintext], false),
        Err(AccountError::NotAHash(_))
    ));
    assert!(store.list_accounts().unwrap().is_empty());
    assert_eq!(store.accounts_version().unwrap(), version);
    assert!(matches!(
        store.get_account("1001'; DROP TABLE accounts"),
        Err(AccountError::Store(StoreError::InvalidExtension(_)))
    ));
}

fn an_update_changes_only_what_it_names(_: &dyn PresenceStore, store: &dyn AccountStore) {
    let mut ann = new("1001", "Ann", "secret-one");
    ann.language = Some("en".into());
    store.add_account(&ann).unwrap();
    let disabled = store
        .update_account(
            "1001",
            &AccountChange {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.name, "Ann");
    assert_eq!(disabled.language.as_deref(), Some("en"));
    assert_eq!(disabled.credentials.len(), ann.credentials.len());

    let other_realm = SipCredential::for_secret("1001", "office", "secret-two");
    let changed = store
        .update_account(
            "1001",
            &AccountChange {
                name: Some("Ann Smith".into()),
                language: Some(None),
                credentials: Some(other_realm.clone()),
                portal_password: Some(Some("$argon2id$x".into())),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(store.get_account("1001").unwrap().unwrap(), changed);
    assert_eq!(changed.name, "Ann Smith");
    assert_eq!(changed.language, None);
    assert!(!changed.enabled, "untouched");
    assert!(changed.credentials.iter().all(|c| c.realm == "office"));
    assert_eq!(changed.credentials.len(), other_realm.len());
    assert_eq!(changed.portal_password.as_deref(), Some("$argon2id$x"));
    assert!(changed.updated_at >= changed.created_at);

    assert!(matches!(
        store.update_account("2002", &AccountChange::default()),
        Err(AccountError::NotFound(e)) if e == "2002"
    ));
    assert!(matches!(
        store.update_account(
            "1001",
            &AccountChange {
                name: Some(" ".into()),
                ..Default::default()
            }
        ),
        Err(AccountError::InvalidName(_))
    ));
    assert_eq!(
        store.get_account("1001").unwrap().unwrap().name,
        "Ann Smith"
    );
}

fn removing_keeps_presence_and_history(presence: &dyn PresenceStore, store: &dyn AccountStore) {
    store
        .add_account(&new("1001", "Ann", "secret-one"))
        .unwrap();
    presence
        .set(&crate::presence::StatusUpdate {
            extension: "1001".into(),
            status: StatusKind::Away,
            custom_text: None,
            source: crate::presence::ChangeSource::Cli,
            at: super::at(1),
            actor: None,
            expected_version: None,
        })
        .unwrap();
    store.remove_account("1001").unwrap();
    assert!(store.get_account("1001").unwrap().is_none());
    assert!(matches!(
        store.remove_account("1001"),
        Err(AccountError::NotFound(_))
    ));
    assert_eq!(presence.get("1001").unwrap().status, StatusKind::Away);
    assert_eq!(presence.history("1001", 10).unwrap().len(), 1);
    // The extension can get an account again, without the old credentials.
    let again = store
        .add_account(&NewAccount {
            credentials: Vec::new(),
            ..new("1001", "Ann again", "")
        })
        .unwrap();
    assert!(again.credentials.is_empty());
}

fn every_account_write_moves_the_version_and_failures_do_not(
    _: &dyn PresenceStore,
    store: &dyn AccountStore,
) {
    let mut last = store.accounts_version().unwrap();
    let mut moved = |store: &dyn AccountStore, what: &str| {
        let now = store.accounts_version().unwrap();
        assert!(now > last, "{what}: {now} after {last}");
        last = now;
    };
    store
        .add_account(&new("1001", "Ann", "secret-one"))
        .unwrap();
    moved(store, "add");
    store
        .update_account(
            "1001",
            &AccountChange {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    moved(store, "update");
    store
        .import_accounts(&[new("1002", "Bob", "secret-two")], false)
        .unwrap();
    moved(store, "import");
    store.remove_account("1002").unwrap();
    moved(store, "remove");
    let before = store.accounts_version().unwrap();
    assert!(store.remove_account("1002").is_err());
    assert!(store
        .update_account("9999", &AccountChange::default())
        .is_err());
    assert!(store
        .import_accounts(&[new("1001", "Dup", "secret-dup")], false)
        .is_err());
    assert_eq!(store.accounts_version().unwrap(), before);
}

fn an_import_is_all_or_nothing(_: &dyn PresenceStore, store: &dyn AccountStore) {
    store
        .add_account(&new("1005", "Existing", "secret-old"))
        .unwrap();
    let batch: Vec<NewAccount> = (1000..1010)
        .map(|n| new(&n.to_string(), &format!("User {n}"), "secret-new"))
        .collect();
    let err = store.import_accounts(&batch, false).unwrap_err();
    assert!(
        matches!(&err, AccountError::Exists(e) if e == "1005"),
        "{err}"
    );
    assert_eq!(store.list_accounts().unwrap().len(), 1, "nothing imported");

    let mut bad = batch.clone();
    bad[7].name = String::new();
    assert!(matches!(
        store.import_accounts(&bad, true),
        Err(AccountError::InvalidName(_))
    ));
    assert_eq!(store.list_accounts().unwrap().len(), 1, "nothing imported");
    assert_eq!(store.get_account("1005").unwrap().unwrap().name, "Existing");
}

fn an_import_with_replace_updates_and_keeps_what_it_does_not_name(
    _: &dyn PresenceStore,
    store: &dyn AccountStore,
) {
    let mut kept = new("1001", "Ann", "secret-old");
    kept.language = Some("fr".into());
    kept.portal_password = Some("$argon2id$kept".into());
    kept.enabled = false;
    store.add_account(&kept).unwrap();
    store
        .add_account(&new("1002", "Bob", "secret-bob"))
        .unwrap();
    let no_secret = NewAccount {
        credentials: Vec::new(),
        ..new("1002", "Bob B.", "")
    };
    let summary = store
        .import_accounts(
            &[
                new("1001", "Ann Smith", "secret-new"),
                no_secret,
                new("1003", "Cy", "secret-cy"),
            ],
            true,
        )
        .unwrap();
    assert_eq!((summary.added, summary.updated), (1, 2));
    let ann = store.get_account("1001").unwrap().unwrap();
    assert_eq!(ann.name, "Ann Smith");
    assert_eq!(
        ann.language.as_deref(),
        Some("fr"),
        "not in the import: kept"
    );
    assert_eq!(ann.portal_password.as_deref(), Some("$argon2id$kept"));
    assert!(!ann.enabled, "an import does not re-enable");
    let md5 = |a: &crate::accounts::Account| {
        a.credentials
            .iter()
            .find(|c| c.algorithm == DigestAlgorithm::Md5)
            .map(|c| c.ha1.clone())
    };
    assert_eq!(
        md5(&ann),
        Some(crate::accounts::ha1(
            DigestAlgorithm::Md5,
            "1001",
            "starcode",
            "secret-new"
        ))
    );
    let bob = store.get_account("1002").unwrap().unwrap();
    assert_eq!(bob.name, "Bob B.");
    assert_eq!(
        md5(&bob),
        Some(crate::accounts::ha1(
            DigestAlgorithm::Md5,
            "1002",
            "starcode",
            "secret-bob"
        )),
        "a row without a secret keeps the old one"
    );
    assert_eq!(store.list_accounts().unwrap().len(), 3);
}

fn each_account_lists_with_its_own_credentials(_: &dyn PresenceStore, store: &dyn AccountStore) {
    for (ext, name) in [
        ("2001", "Dee"),
        ("1001", "Ann"),
        ("alice", "Al"),
        ("Bob", "Bo"),
    ] {
        store
            .add_account(&new(ext, name, &format!("secret-{ext}")))
            .unwrap();
    }
    store
        .update_account(
            "alice",
            &AccountChange {
                credentials: Some(
                    [
                        SipCredential::for_secret("alice", "office", "secret-office"),
                        SipCredential::for_secret("alice", "starcode", "secret-alice"),
                    ]
                    .concat(),
                ),
                ..Default::default()
            },
        )
        .unwrap();
    let all = store.list_accounts().unwrap();
    let extensions: Vec<&str> = all.iter().map(|a| a.extension.as_str()).collect();
    assert_eq!(
        extensions,
        ["1001", "2001", "Bob", "alice"],
        "byte order, as the presence list"
    );
    for account in &all {
        assert_eq!(
            Some(account),
            store.get_account(&account.extension).unwrap().as_ref(),
            "list and get agree"
        );
        let realms = if account.extension == "alice" { 2 } else { 1 };
        assert_eq!(
            account.credentials.len(),
            realms * DigestAlgorithm::ALL.len(),
            "{}",
            account.extension
        );
        for c in &account.credentials {
            let secret = if c.realm == "office" {
                "secret-office".to_string()
            } else {
                format!("secret-{}", account.extension)
            };
            assert_eq!(
                c.ha1,
                crate::accounts::ha1(c.algorithm, &account.extension, &c.realm, &secret),
                "{}: its own HA1 for {} {}",
                account.extension,
                c.realm,
                c.algorithm
            );
        }
    }
    let names: Vec<(String, String)> = all
        .iter()
        .map(|a| (a.extension.clone(), a.name.clone()))
        .collect();
    assert_eq!(store.account_names().unwrap(), names);
}

fn a_removed_account_takes_its_credentials_along(_: &dyn PresenceStore, store: &dyn AccountStore) {
    store
        .add_account(&new("1001", "Ann", "secret-old"))
        .unwrap();
    store
        .add_account(&new("1002", "Bob", "secret-bob"))
        .unwrap();
    store.remove_account("1001").unwrap();
    let again = store
        .import_accounts(
            &[NewAccount {
                credentials: Vec::new(),
                ..new("1001", "Ann again", "")
            }],
            false,
        )
        .unwrap();
    assert_eq!((again.added, again.updated), (1, 0));
    assert!(store
        .get_account("1001")
        .unwrap()
        .unwrap()
        .credentials
        .is_empty());
    assert_eq!(
        store
            .get_account("1002")
            .unwrap()
            .unwrap()
            .credentials
            .len(),
        DigestAlgorithm::ALL.len(),
        "another account's credentials stay"
    );
    assert_eq!(
        store
            .account_names()
            .unwrap()
            .into_iter()
            .map(|(_, name)| name)
            .collect::<Vec<_>>(),
        ["Ann again", "Bob"]
    );
}
