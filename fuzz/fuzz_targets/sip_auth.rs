//! An `Authorization` header value (the whole input, lossy UTF-8): reading it never panics,
//! and whatever reads back renders and checks without panicking either. The same value then
//! goes to the `Authenticator` as a SUBSCRIBE's only `Authorization`, from an untrusted
//! source, twice: a nonce the fuzzer cannot guess would stop it at the nonce check, so
//! `{nonce}` in the value stands for one the authenticator issued that source, and
//! `{response}` for the right answer with extension 1001's secret. An answer is accepted at
//! most once, and only for the account that exists.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use starcode::accounts::{Account, AccountDirectory, SipCredential};
use starcode::sip::auth::header::{is_digest, parse_credentials, realm_of, Challenge};
use starcode::sip::auth::{response, AuthOutcome, AuthRequest, AuthSettings, Authenticator};

const METHOD: &str = "SUBSCRIBE";
const REQUEST_URI: &str = "sip:*46@192.0.2.1";

fn accounts(realm: &str) -> AccountDirectory {
    let account = Account {
        extension: "1001".into(),
        name: "Fuzz".into(),
        language: None,
        enabled: true,
        credentials: SipCredential::for_secret("1001", realm, "secret"),
        portal_password: None,
        created_at: std::time::SystemTime::UNIX_EPOCH,
        updated_at: std::time::SystemTime::UNIX_EPOCH,
    };
    AccountDirectory::from_accounts(&[account])
}

/// The `nonce="..."` of a challenge we rendered.
fn nonce_of(challenge: &str) -> &str {
    challenge
        .split_once("nonce=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(nonce, _)| nonce)
        .expect("our challenge carries a nonce")
}

/// `value` with `{response}` replaced by the right answer, when it reads as credentials of an
/// account and algorithm we know.
fn answered(value: &str, accounts: &AccountDirectory, realm: &str) -> String {
    if !value.contains("{response}") {
        return value.to_string();
    }
    let Ok(creds) = parse_credentials(value) else {
        return value.to_string();
    };
    let ha1 = creds.algorithm().and_then(|algorithm| {
        let ha1 = accounts.get(&creds.username)?.ha1(realm, algorithm)?;
        Some(response(algorithm, ha1, &creds, METHOD))
    });
    match ha1 {
        Some(answer) => value.replace("{response}", &answer),
        None => value.to_string(),
    }
}

fn check_authenticator(value: &str) {
    let now = Instant::now();
    let settings = AuthSettings::default();
    let realm = settings.realm.clone();
    let accounts = accounts(&realm);
    let mut auth = Authenticator::new(settings, [7; 32], now);
    let source: IpAddr = "192.0.2.7".parse().expect("literal address");
    let request = |authorization| AuthRequest {
        method: METHOD,
        uri: REQUEST_URI,
        authorization,
        source,
    };
    let AuthOutcome::Challenge {
        www_authenticate, ..
    } = auth.check(request(&[]), &accounts, now)
    else {
        panic!("a request without Authorization is challenged");
    };
    let nonce = nonce_of(&www_authenticate[0]).to_string();
    let value = answered(&value.replace("{nonce}", &nonce), &accounts, &realm);
    let values = [value.as_str()];
    let mut accepted = 0;
    for (i, at) in [now, now + Duration::from_secs(1)].into_iter().enumerate() {
        match auth.check(request(&values), &accounts, at) {
            AuthOutcome::Authenticated { username } => {
                assert_eq!(username, "1001", "only the account that exists");
                accepted += 1;
            }
            AuthOutcome::Challenge {
                www_authenticate, ..
            } => {
                assert!(!www_authenticate.is_empty());
                for challenge in &www_authenticate {
                    assert!(parse_credentials(challenge).is_err());
                    assert_eq!(realm_of(challenge).as_deref(), Some(realm.as_str()));
                }
            }
            AuthOutcome::Refused(_) | AuthOutcome::Malformed(_) => {}
        }
        assert!(accepted <= 1, "the same answer accepted twice (check {i})");
    }
}

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let _ = is_digest(&value);
    let _ = realm_of(&value);
    if let Ok(creds) = parse_credentials(&value) {
        let _ = creds.nonce_count();
        if let Some(algorithm) = creds.algorithm() {
            // The challenge of what was read renders, and reads back as a non-credential.
            let challenge = Challenge {
                realm: &creds.realm,
                algorithm,
                nonce: &creds.nonce,
                opaque: creds.opaque.as_deref().unwrap_or_default(),
                stale: false,
            }
            .render();
            assert!(challenge.starts_with("Digest realm=\""));
            assert!(parse_credentials(&challenge).is_err());
        }
    }
    check_authenticator(&value);
});
