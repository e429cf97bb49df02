//! `WebAuth` on a virtual clock over a `MemoryStore`: logins, session expiry, tokens.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::accounts::{AccountChange, NewAccount};
use crate::config::HumanDuration;
use crate::presence::memory::MemoryStore;
use crate::web_auth::{AdminChange, NewAdmin};

const ADMIN_PASSWORD: &str = "root-Password-1";
const PORTAL_PASSWORD: &str = "ann-Portal-2";

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

struct Setup {
    store: Arc<MemoryStore>,
    auth: WebAuth,
}

/// Admin `root`, extension 1001 (Ann) with a portal password, 1002 without one; sessions
/// idle out after 10 minutes and end 1 hour after login.
fn setup() -> Setup {
    let store = Arc::new(MemoryStore::new());
    store
        .add_admin(
            &NewAdmin {
                name: "root".into(),
                password_hash: hash_portal_password(ADMIN_PASSWORD).unwrap(),
                enabled: true,
            },
            t(0),
        )
        .unwrap();
    for (ext, portal) in [("1001", Some(PORTAL_PASSWORD)), ("1002", None)] {
        store
            .add_account(&NewAccount {
                extension: ext.into(),
                name: "Someone".into(),
                language: None,
                enabled: true,
                credentials: Vec::new(),
                portal_password: portal.map(|p| hash_portal_password(p).unwrap()),
            })
            .unwrap();
    }
    let http = HttpConfig {
        session_idle: HumanDuration(Duration::from_secs(600)),
        session_lifetime: HumanDuration(Duration::from_secs(3600)),
        ..HttpConfig::default()
    };
    let limits = LoginLimitsConfig {
        failures_per_source: 5,
        failures_per_user: 3,
        ..LoginLimitsConfig::default()
    };
    let auth = WebAuth::new(store.clone(), store.clone(), &http, &limits).unwrap();
    Setup { store, auth }
}

/// Whether the session of `cookie` is valid at `t(secs)` (and so moved on).
fn alive(s: &Setup, cookie: &str, secs: u64) -> bool {
    s.auth.session(cookie, t(secs)).unwrap().is_some()
}

fn disable_extension(store: &MemoryStore, ext: &str) {
    let change = AccountChange {
        enabled: Some(false),
        ..Default::default()
    };
    store.update_account(ext, &change).unwrap();
}

#[test]
fn an_admin_and_an_extension_log_in_and_their_sessions_say_who_they_are() {
    let s = setup();
    let admin = s.auth.login("root", ADMIN_PASSWORD, ip(1), t(0)).unwrap();
    assert_eq!(admin.principal, Principal::Admin("root".into()));
    assert_eq!(admin.expires_at, t(3600));
    let ann = s
        .auth
        .login(" 1001 ", PORTAL_PASSWORD, ip(2), t(0))
        .unwrap();
    assert_eq!(ann.principal, Principal::Extension("1001".into()));
    assert_ne!(admin.cookie, ann.cookie);

    let found = s.auth.session(ann.cookie.expose(), t(5)).unwrap().unwrap();
    assert_eq!(found.principal, Principal::Extension("1001".into()));
    assert!(found.csrf.matches(ann.csrf.expose()));
    assert!(
        !found.csrf.matches(admin.csrf.expose()),
        "one CSRF token per session"
    );
    assert!(!alive(&s, "not a cookie", 5));
    assert!(!alive(&s, "", 5));
    assert!(!alive(&s, &"a".repeat(10_000), 5));
}

#[test]
fn wrong_passwords_unknown_users_and_users_without_a_portal_password_are_alike() {
    let s = setup();
    for (n, (user, password)) in [
        ("root", "wrong"),
        ("1001", ADMIN_PASSWORD),
        ("nobody", ADMIN_PASSWORD),
        ("1002", ""),
        ("9999", PORTAL_PASSWORD),
        ("bad name!", "x"),
    ]
    .into_iter()
    .enumerate()
    {
        let err = s
            .auth
            .login(user, password, IpAddr::from([10, 0, 0, n as u8]), t(0));
        assert!(
            matches!(err, Err(LoginError::BadCredentials)),
            "{user}: {err:?}"
        );
    }
}

#[test]
fn admins_come_first_when_a_name_is_both() {
    let s = setup();
    s.store
        .add_account(&NewAccount {
            extension: "root".into(),
            name: "Extension named root".into(),
            language: None,
            enabled: true,
            credentials: Vec::new(),
            portal_password: Some(hash_portal_password(PORTAL_PASSWORD).unwrap()),
        })
        .unwrap();
    assert!(matches!(
        s.auth.login("root", PORTAL_PASSWORD, ip(1), t(0)),
        Err(LoginError::BadCredentials)
    ));
    let ok = s.auth.login("root", ADMIN_PASSWORD, ip(1), t(0)).unwrap();
    assert_eq!(ok.principal, Principal::Admin("root".into()));
}

#[test]
fn disabled_accounts_are_refused_only_with_their_right_password() {
    let s = setup();
    s.store
        .update_admin(
            "root",
            &AdminChange {
                enabled: Some(false),
                ..Default::default()
            },
            t(0),
        )
        .unwrap();
    disable_extension(&s.store, "1001");
    assert!(matches!(
        s.auth.login("root", ADMIN_PASSWORD, ip(1), t(0)),
        Err(LoginError::Disabled)
    ));
    assert!(matches!(
        s.auth.login("1001", PORTAL_PASSWORD, ip(1), t(0)),
        Err(LoginError::Disabled)
    ));
    assert!(matches!(
        s.auth.login("1001", "guess", ip(1), t(0)),
        Err(LoginError::BadCredentials)
    ));
}

#[test]
fn sessions_slide_with_use_and_end_when_idle_or_at_their_lifetime() {
    let s = setup();
    let login = s.auth.login("root", ADMIN_PASSWORD, ip(1), t(0)).unwrap();
    let cookie = login.cookie.expose();
    // Used every 9 minutes: alive past the idle time, until the 1-hour lifetime.
    let mut now = 0;
    while now + 540 < 3600 {
        now += 540;
        assert!(
            s.auth.session(cookie, t(now)).unwrap().is_some(),
            "at {now}s"
        );
    }
    assert!(!alive(&s, cookie, 3600));
    assert!(
        s.store.get_session(&login.cookie.hash()).unwrap().is_none(),
        "an ended session is forgotten"
    );

    let idle = s.auth.login("root", ADMIN_PASSWORD, ip(1), t(0)).unwrap();
    assert!(alive(&s, idle.cookie.expose(), 599));
    // That use moved the idle end to 599 + 600.
    assert!(alive(&s, idle.cookie.expose(), 1198));
    assert!(!alive(&s, idle.cookie.expose(), 1798));
}

#[test]
fn last_seen_is_written_at_most_once_a_minute() {
    let s = setup();
    let login = s.auth.login("1001", PORTAL_PASSWORD, ip(1), t(0)).unwrap();
    let seen = || {
        s.store
            .get_session(&login.cookie.hash())
            .unwrap()
            .unwrap()
            .last_seen_at
    };
    s.auth
        .session(login.cookie.expose(), t(30))
        .unwrap()
        .unwrap();
    assert_eq!(seen(), t(0));
    s.auth
        .session(login.cookie.expose(), t(61))
        .unwrap()
        .unwrap();
    assert_eq!(seen(), t(61));
}

#[test]
fn a_recheck_does_not_keep_a_session_from_its_idle_end() {
    let s = setup();
    let login = s.auth.login("1001", PORTAL_PASSWORD, ip(1), t(0)).unwrap();
    let cookie = login.cookie.expose();
    // An open event stream asks every few seconds; none of it is use.
    for secs in (5..600).step_by(5) {
        assert!(
            s.auth.session_still_valid(cookie, t(secs)).unwrap(),
            "at {secs}s"
        );
    }
    assert!(!s.auth.session_still_valid(cookie, t(600)).unwrap());
    assert!(
        s.store.get_session(&login.cookie.hash()).unwrap().is_none(),
        "an ended session is forgotten"
    );
    // And it sees a disabled user at once.
    let other = s.auth.login("1001", PORTAL_PASSWORD, ip(1), t(0)).unwrap();
    assert!(s
        .auth
        .session_still_valid(other.cookie.expose(), t(1))
        .unwrap());
    disable_extension(&s.store, "1001");
    assert!(!s
        .auth
        .session_still_valid(other.cookie.expose(), t(2))
        .unwrap());
}

#[test]
fn sessions_survive_a_new_service_on_the_same_store() {
    let s = setup();
    let login = s.auth.login("1001", PORTAL_PASSWORD, ip(1), t(0)).unwrap();
    let restarted = WebAuth::new(
        s.store.clone(),
        s.store.clone(),
        &HttpConfig::default(),
        &LoginLimitsConfig::default(),
    )
    .unwrap();
    let found = restarted
        .session(login.cookie.expose(), t(10))
        .unwrap()
        .unwrap();
    assert!(found.csrf.matches(login.csrf.expose()));
}

#[test]
fn a_password_change_or_disabling_ends_sessions_and_logout_ends_one() {
    let s = setup();
    let a = s.auth.login("root", ADMIN_PASSWORD, ip(1), t(0)).unwrap();
    let b = s.auth.login("1001", PORTAL_PASSWORD, ip(1), t(0)).unwrap();
    let c = s.auth.login("1001", PORTAL_PASSWORD, ip(3), t(0)).unwrap();
    s.store
        .update_admin(
            "root",
            &AdminChange {
                password_hash: Some(hash_portal_password("new-Password-9").unwrap()),
                ..Default::default()
            },
            t(1),
        )
        .unwrap();
    assert!(!alive(&s, a.cookie.expose(), 2));
    assert!(s.auth.logout(b.cookie.expose()).unwrap());
    assert!(!s.auth.logout(b.cookie.expose()).unwrap());
    assert!(!alive(&s, b.cookie.expose(), 2));
    assert!(alive(&s, c.cookie.expose(), 2));
    disable_extension(&s.store, "1001");
    assert!(!alive(&s, c.cookie.expose(), 3));
}

#[test]
fn failed_logins_lock_the_user_out_then_the_lockout_passes() {
    let s = setup();
    for n in 0..3 {
        assert!(matches!(
            s.auth.login("1001", "guess", ip(100 + n), t(0)),
            Err(LoginError::BadCredentials)
        ));
    }
    match s.auth.login("1001", PORTAL_PASSWORD, ip(200), t(10)) {
        Err(LoginError::Locked { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(50))
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(
        s.auth.login("root", ADMIN_PASSWORD, ip(200), t(10)).is_ok(),
        "other users are not locked"
    );
    assert!(s
        .auth
        .login("1001", PORTAL_PASSWORD, ip(200), t(60))
        .is_ok());
}

#[test]
fn a_source_trying_many_users_is_locked_out() {
    let s = setup();
    let attacker = IpAddr::from([198, 51, 100, 1]);
    for user in ["a1", "a2", "a3", "a4", "a5"] {
        let _ = s.auth.login(user, "x", attacker, t(0));
    }
    assert!(matches!(
        s.auth.login("root", ADMIN_PASSWORD, attacker, t(1)),
        Err(LoginError::Locked { .. })
    ));
    assert!(s.auth.login("root", ADMIN_PASSWORD, ip(1), t(1)).is_ok());
}

#[test]
fn tokens_act_for_their_scope_until_revoked() {
    let s = setup();
    let (admin_token, admin_secret) = s
        .auth
        .create_token("deploy", TokenScope::Admin, "admin:root", t(0))
        .unwrap();
    let (_, ann_secret) = s
        .auth
        .create_token(
            "wallboard",
            TokenScope::Extension("1001".into()),
            "cli",
            t(0),
        )
        .unwrap();
    assert_eq!(
        s.auth.check_token(admin_secret.expose(), t(1)).unwrap(),
        Some(Principal::Admin(format!("token:{}", admin_token.id)))
    );
    assert_eq!(
        s.auth.check_token(ann_secret.expose(), t(1)).unwrap(),
        Some(Principal::Extension("1001".into()))
    );
    // A right id with a wrong secret, garbage, another prefix.
    let forged = format!("sc_{}_{}", admin_token.id, "0".repeat(64));
    for bad in [forged.as_str(), "", "sc_", "Bearer x", "sc_zz_00"] {
        assert_eq!(s.auth.check_token(bad, t(1)).unwrap(), None, "{bad}");
    }
    s.store.revoke_token(&admin_token.id, t(2)).unwrap();
    assert_eq!(
        s.auth.check_token(admin_secret.expose(), t(3)).unwrap(),
        None
    );
    // An extension's token stops with its account.
    disable_extension(&s.store, "1001");
    assert_eq!(s.auth.check_token(ann_secret.expose(), t(3)).unwrap(), None);
    assert!(matches!(
        s.auth
            .create_token("x", TokenScope::Extension("4004".into()), "cli", t(0)),
        Err(WebAuthError::Accounts(AccountError::NotFound(_)))
    ));
}

#[test]
fn token_use_is_recorded_at_most_once_a_minute() {
    let s = setup();
    let (token, secret) = s
        .auth
        .create_token("script", TokenScope::Admin, "cli", t(0))
        .unwrap();
    let last_used = || s.store.get_token(&token.id).unwrap().unwrap().last_used_at;
    assert_eq!(last_used(), None);
    s.auth.check_token(secret.expose(), t(10)).unwrap().unwrap();
    assert_eq!(last_used(), Some(t(10)));
    s.auth.check_token(secret.expose(), t(69)).unwrap().unwrap();
    assert_eq!(last_used(), Some(t(10)));
    s.auth.check_token(secret.expose(), t(70)).unwrap().unwrap();
    assert_eq!(last_used(), Some(t(70)));
}

#[test]
fn purge_forgets_only_ended_sessions() {
    let s = setup();
    let old = s.auth.login("root", ADMIN_PASSWORD, ip(1), t(0)).unwrap();
    let fresh = s.auth.login("root", ADMIN_PASSWORD, ip(1), t(500)).unwrap();
    assert_eq!(s.auth.purge_expired(t(700)).unwrap(), 1);
    assert!(s.store.get_session(&old.cookie.hash()).unwrap().is_none());
    assert!(alive(&s, fresh.cookie.expose(), 700));
}

#[test]
fn nothing_secret_reaches_debug_output() {
    let s = setup();
    let login = s.auth.login("root", ADMIN_PASSWORD, ip(1), t(0)).unwrap();
    let text = format!("{login:?}");
    assert!(!text.contains(login.cookie.expose()), "{text}");
    assert!(!text.contains(login.csrf.expose()), "{text}");
    let err = s
        .auth
        .login("root", "my-Secret-pw", ip(1), t(0))
        .unwrap_err();
    assert!(!format!("{err:?} {err}").contains("my-Secret-pw"));
}
