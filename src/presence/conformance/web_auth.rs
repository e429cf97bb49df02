//! The web access half of the store contract, run on every backend (memory, SQLite,
//! PostgreSQL): what `starcode admin`, `starcode token` and `WebAuth` rely on.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::presence::memory::MemoryStore;
use crate::presence::postgres::PostgresStore;
use crate::presence::sqlite::SqliteStore;
use crate::presence::StoreError;
use crate::web_auth::{
    AdminChange, ApiToken, NewAdmin, Principal, StoredSession, TokenScope, WebAuthError,
    WebAuthStore,
};

/// A store under test plus whatever must outlive it (the SQLite temp dir).
struct Fixture {
    store: Arc<dyn WebAuthStore>,
    _dir: Option<tempfile::TempDir>,
}

/// Each backend's fixture; `None` skips the check (PostgreSQL not installed, outside CI).
fn memory() -> Option<Fixture> {
    Some(Fixture {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    })
}

fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("presence.db")).unwrap());
    Some(Fixture {
        store,
        _dir: Some(dir),
    })
}

/// A fresh database on the throwaway server (see `postgres/test_server.rs`).
fn postgres() -> Option<Fixture> {
    let url = crate::presence::postgres::test_server::fresh_database()?;
    Some(Fixture {
        store: Arc::new(PostgresStore::open(&url).unwrap()),
        _dir: None,
    })
}

macro_rules! web_auth_conformance_tests {
    ($backend:ident) => {
        mod $backend {
            web_auth_conformance_tests!(@checks $backend:
                admins_read_back_and_list_by_name,
                an_existing_admin_name_is_refused,
                invalid_admins_are_refused_and_nothing_is_stored,
                an_admin_update_changes_only_what_it_names,
                tokens_read_back_and_list_oldest_first,
                revoking_keeps_the_first_time_and_the_row,
                invalid_tokens_are_refused,
                sessions_round_trip_and_slide,
                sessions_of_one_principal_end_together,
                expired_sessions_are_forgotten_by_either_end,
                using_an_unknown_token_or_session_changes_nothing,
                a_removed_admins_tokens_stay_until_revoked,
                sessions_keep_their_principal_and_a_long_idle_limit,
            );
        }
    };
    (@checks $backend:ident: $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                let Some(fixture) = super::$backend() else { return };
                super::$check(&*fixture.store);
            }
        )*
    };
}

web_auth_conformance_tests!(memory);
web_auth_conformance_tests!(sqlite);
web_auth_conformance_tests!(postgres);

/// A fixed time `secs` seconds into the test, at whole milliseconds (what SQLite keeps).
fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn admin(name: &str) -> NewAdmin {
    NewAdmin {
        name: name.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
        enabled: true,
    }
}

fn hex64(fill: char) -> String {
    std::iter::repeat_n(fill, 64).collect()
}

fn token(id: &str, scope: TokenScope, created: u64) -> ApiToken {
    ApiToken {
        id: id.into(),
        name: format!("token {id}"),
        scope,
        token_hash: hex64('a'),
        created_by: "admin:root".into(),
        created_at: at(created),
        last_used_at: None,
        revoked_at: None,
    }
}

fn session(fill: char, principal: Principal, created: u64) -> StoredSession {
    StoredSession {
        id_hash: hex64(fill),
        principal,
        csrf: format!("csrf-{fill}"),
        credential_tag: "0123456789abcdef".into(),
        created_at: at(created),
        expires_at: at(created + 3600),
        last_seen_at: at(created),
    }
}

fn admins_read_back_and_list_by_name(store: &dyn WebAuthStore) {
    assert!(store.get_admin("root").unwrap().is_none());
    let added = store.add_admin(&admin("root"), at(1)).unwrap();
    store.add_admin(&admin("alice"), at(2)).unwrap();
    assert_eq!(added.name, "root");
    assert_eq!(added.password_hash, admin("root").password_hash);
    assert!(added.enabled);
    assert_eq!((added.created_at, added.updated_at), (at(1), at(1)));
    assert_eq!(store.get_admin("root").unwrap(), Some(added));
    let names: Vec<String> = store
        .list_admins()
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["alice", "root"]);
    store.remove_admin("alice").unwrap();
    assert!(store.get_admin("alice").unwrap().is_none());
    assert!(matches!(
        store.remove_admin("alice"),
        Err(WebAuthError::AdminNotFound(n)) if n == "alice"
    ));
}

fn an_existing_admin_name_is_refused(store: &dyn WebAuthStore) {
    store.add_admin(&admin("root"), at(1)).unwrap();
    let mut other = admin("root");
    other.password_hash = "$argon2id$other".into();
    assert!(matches!(
        store.add_admin(&other, at(2)),
        Err(WebAuthError::AdminExists(n)) if n == "root"
    ));
    let kept = store.get_admin("root").unwrap().unwrap();
    assert_eq!(kept.password_hash, admin("root").password_hash);
    assert_eq!(kept.created_at, at(1));
}

fn invalid_admins_are_refused_and_nothing_is_stored(store: &dyn WebAuthStore) {
    for name in [
        "",
        "1001",
        "ann smith",
        "token:ab",
        "a'; DROP TABLE web_admins; --",
    ] {
        assert!(
            matches!(
                store.add_admin(&admin(name), at(1)),
                Err(WebAuthError::InvalidAdminName(_))
            ),
            "{name:?}"
        );
    }
    let mut plaintext = admin("root");
    plaintext.password_hash = "my admin password".into();
    assert!(matches!(
        store.add_admin(&plaintext, at(1)),
        Err(WebAuthError::NotAHash(_))
    ));
    assert!(store.list_admins().unwrap().is_empty());
    store.add_admin(&admin("root"), at(1)).unwrap();
    assert!(matches!(
        store.update_admin(
            "root",
            &AdminChange {
                password_hash: Some("plain".into()),
                ..Default::default()
            },
            at(2)
        ),
        Err(WebAuthError::NotAHash(_))
    ));
    assert_eq!(
        store.get_admin("root").unwrap().unwrap().password_hash,
        admin("root").password_hash
    );
}

fn an_admin_update_changes_only_what_it_names(store: &dyn WebAuthStore) {
    store.add_admin(&admin("root"), at(1)).unwrap();
    let disabled = store
        .update_admin(
            "root",
            &AdminChange {
                enabled: Some(false),
                ..Default::default()
            },
            at(2),
        )
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.password_hash, admin("root").password_hash);
    assert_eq!((disabled.created_at, disabled.updated_at), (at(1), at(2)));
    let rehashed = store
        .update_admin(
            "root",
            &AdminChange {
                password_hash: Some("$argon2id$new".into()),
                ..Default::default()
            },
            at(3),
        )
        .unwrap();
    assert_eq!(rehashed.password_hash, "$argon2id$new");
    assert!(!rehashed.enabled, "untouched");
    assert_eq!(store.get_admin("root").unwrap(), Some(rehashed));
    assert!(matches!(
        store.update_admin("nobody", &AdminChange::default(), at(4)),
        Err(WebAuthError::AdminNotFound(n)) if n == "nobody"
    ));
}

fn tokens_read_back_and_list_oldest_first(store: &dyn WebAuthStore) {
    let admin_token = token("0b", TokenScope::Admin, 5);
    let ext_token = token("0a", TokenScope::Extension("1001".into()), 7);
    store.add_token(&ext_token).unwrap();
    store.add_token(&admin_token).unwrap();
    assert_eq!(store.get_token("0b").unwrap(), Some(admin_token.clone()));
    assert_eq!(store.get_token("0a").unwrap(), Some(ext_token.clone()));
    assert!(store.get_token("ff").unwrap().is_none());
    let ids: Vec<String> = store
        .list_tokens()
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["0b", "0a"], "oldest first");
    store.token_used("0a", at(9)).unwrap();
    assert_eq!(
        store.get_token("0a").unwrap().unwrap().last_used_at,
        Some(at(9))
    );
    assert!(matches!(
        store.add_token(&token("0a", TokenScope::Admin, 8)),
        Err(WebAuthError::TokenExists(id)) if id == "0a"
    ));
    assert_eq!(
        store.get_token("0a").unwrap().unwrap().scope,
        TokenScope::Extension("1001".into()),
        "the first token stays"
    );
}

fn revoking_keeps_the_first_time_and_the_row(store: &dyn WebAuthStore) {
    store.add_token(&token("ab", TokenScope::Admin, 1)).unwrap();
    let revoked = store.revoke_token("ab", at(2)).unwrap();
    assert_eq!(revoked.revoked_at, Some(at(2)));
    let again = store.revoke_token("ab", at(3)).unwrap();
    assert_eq!(again.revoked_at, Some(at(2)));
    assert_eq!(store.list_tokens().unwrap().len(), 1, "kept for the record");
    assert!(matches!(
        store.revoke_token("cd", at(3)),
        Err(WebAuthError::TokenNotFound(id)) if id == "cd"
    ));
}

fn invalid_tokens_are_refused(store: &dyn WebAuthStore) {
    let mut plaintext = token("ab", TokenScope::Admin, 1);
    plaintext.token_hash = "sc_ab_0123".into();
    assert!(matches!(
        store.add_token(&plaintext),
        Err(WebAuthError::NotAHash(_))
    ));
    for id in ["", "AB", "x1", "ab_cd"] {
        assert!(
            matches!(
                store.add_token(&token(id, TokenScope::Admin, 1)),
                Err(WebAuthError::InvalidTokenId(_))
            ),
            "{id:?}"
        );
        assert!(store.get_token(id).is_err(), "{id:?}");
    }
    let mut unnamed = token("ab", TokenScope::Admin, 1);
    unnamed.name = " ".into();
    assert!(matches!(
        store.add_token(&unnamed),
        Err(WebAuthError::InvalidTokenName(_))
    ));
    assert!(matches!(
        store.add_token(&token("ab", TokenScope::Extension("10 01".into()), 1)),
        Err(WebAuthError::Store(StoreError::InvalidExtension(_)))
    ));
    assert!(store.list_tokens().unwrap().is_empty());
}

fn sessions_round_trip_and_slide(store: &dyn WebAuthStore) {
    let ann = session('1', Principal::Extension("1001".into()), 10);
    store.add_session(&ann).unwrap();
    assert_eq!(store.get_session(&ann.id_hash).unwrap(), Some(ann.clone()));
    assert!(store.get_session(&hex64('2')).unwrap().is_none());
    store.session_seen(&ann.id_hash, at(70)).unwrap();
    let seen = store.get_session(&ann.id_hash).unwrap().unwrap();
    assert_eq!(seen.last_seen_at, at(70));
    assert_eq!(seen.expires_at, ann.expires_at, "the absolute end stays");
    assert!(store.remove_session(&ann.id_hash).unwrap());
    assert!(!store.remove_session(&ann.id_hash).unwrap());
    assert!(store.get_session(&ann.id_hash).unwrap().is_none());
    let mut plaintext = session('3', Principal::Admin("root".into()), 1);
    plaintext.id_hash = "the cookie value itself".into();
    assert!(matches!(
        store.add_session(&plaintext),
        Err(WebAuthError::NotAHash(_))
    ));
}

fn sessions_of_one_principal_end_together(store: &dyn WebAuthStore) {
    let root = Principal::Admin("root".into());
    // An extension named like the admin is another principal.
    let ext_root = Principal::Extension("root".into());
    store.add_session(&session('1', root.clone(), 1)).unwrap();
    store.add_session(&session('2', root.clone(), 2)).unwrap();
    store
        .add_session(&session('3', ext_root.clone(), 3))
        .unwrap();
    assert_eq!(store.remove_sessions_of(&root).unwrap(), 2);
    assert!(store.get_session(&hex64('1')).unwrap().is_none());
    assert_eq!(
        store.get_session(&hex64('3')).unwrap().unwrap().principal,
        ext_root
    );
    assert_eq!(store.remove_sessions_of(&root).unwrap(), 0);
}

fn expired_sessions_are_forgotten_by_either_end(store: &dyn WebAuthStore) {
    let idle = Duration::from_secs(600);
    let p = || Principal::Admin("root".into());
    // Idle since 0: ends at 600.
    store.add_session(&session('1', p(), 0)).unwrap();
    // Used at 3500 but its absolute end is 3600.
    store.add_session(&session('2', p(), 0)).unwrap();
    store.session_seen(&hex64('2'), at(3500)).unwrap();
    // Logged in at 3000, fresh.
    store.add_session(&session('3', p(), 3000)).unwrap();
    assert_eq!(store.remove_expired_sessions(at(599), idle).unwrap(), 0);
    assert_eq!(store.remove_expired_sessions(at(600), idle).unwrap(), 1);
    assert!(store.get_session(&hex64('1')).unwrap().is_none());
    assert_eq!(store.remove_expired_sessions(at(3599), idle).unwrap(), 0);
    assert_eq!(store.remove_expired_sessions(at(3600), idle).unwrap(), 2);
    assert!(store.get_session(&hex64('3')).unwrap().is_none());
}

fn using_an_unknown_token_or_session_changes_nothing(store: &dyn WebAuthStore) {
    store.token_used("ab", at(1)).unwrap();
    store.session_seen(&hex64('1'), at(1)).unwrap();
    assert!(store.list_tokens().unwrap().is_empty());
    assert!(store.get_session(&hex64('1')).unwrap().is_none());
    assert_eq!(
        store
            .remove_sessions_of(&Principal::Admin("root".into()))
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .remove_expired_sessions(at(10), Duration::from_secs(1))
            .unwrap(),
        0
    );
}

fn a_removed_admins_tokens_stay_until_revoked(store: &dyn WebAuthStore) {
    store.add_admin(&admin("root"), at(1)).unwrap();
    let mut made = token("ab", TokenScope::Admin, 2);
    made.created_by = "admin:root".into();
    store.add_token(&made).unwrap();
    store.remove_admin("root").unwrap();
    assert_eq!(store.get_token("ab").unwrap(), Some(made));
    let revoked = store.revoke_token("ab", at(3)).unwrap();
    assert_eq!(revoked.revoked_at, Some(at(3)));
    assert_eq!(revoked.created_by, "admin:root");
    store.token_used("ab", at(4)).unwrap();
    let used = store.get_token("ab").unwrap().unwrap();
    assert_eq!(
        (used.revoked_at, used.last_used_at),
        (Some(at(3)), Some(at(4))),
        "a use after the revocation does not undo it"
    );
}

fn sessions_keep_their_principal_and_a_long_idle_limit(store: &dyn WebAuthStore) {
    let ann = session('1', Principal::Extension("1001".into()), 10);
    let root = session('2', Principal::Admin("root".into()), 20);
    store.add_session(&ann).unwrap();
    store.add_session(&root).unwrap();
    assert_eq!(store.get_session(&ann.id_hash).unwrap(), Some(ann.clone()));
    assert_eq!(store.get_session(&root.id_hash).unwrap(), Some(root));
    assert!(
        store.add_session(&ann).is_err(),
        "a session id is kept once"
    );
    // An idle limit longer than the clock has run: only the absolute end counts.
    assert_eq!(
        store
            .remove_expired_sessions(at(3609), Duration::MAX)
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .remove_expired_sessions(at(3610), Duration::MAX)
            .unwrap(),
        1
    );
    assert!(store.get_session(&ann.id_hash).unwrap().is_none());
}
