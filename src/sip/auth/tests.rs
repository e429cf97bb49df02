//! The authenticator on a virtual clock, and the digest arithmetic against other people's
//! worked examples.

use super::*;
use crate::accounts::test_accounts::{account, office_directory, REALM};
use crate::accounts::{ha1, Account, SipCredential};

// ---- Worked examples written by others ----

/// RFC 7616 §3.9.1 (Mufasa, "Circle of Life", GET /dir/index.html): SHA-256 and MD5 answers.
/// The values were checked against the RFC text and several independent implementations'
/// test suites (found with the code search; none of their code is used here).
#[test]
fn rfc_7616_section_3_9_1_sha256_and_md5() {
    let realm = "http-auth@example.org";
    for (algorithm, token, expected) in [
        (
            DigestAlgorithm::Sha256,
            "SHA-256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
        (
            DigestAlgorithm::Md5,
            "MD5",
            "8ca523f5e9506fed4657c9700eebdbec",
        ),
    ] {
        let text = format!(
            "Digest username=\"Mufasa\", realm=\"{realm}\", uri=\"/dir/index.html\", \
             algorithm={token}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"{expected}\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        );
        let creds = header::parse_credentials(&text).unwrap();
        assert_eq!(creds.algorithm(), Some(algorithm));
        let ha1 = ha1(algorithm, "Mufasa", realm, "Circle of Life");
        assert_eq!(response(algorithm, &ha1, &creds, "GET"), expected);
        assert_eq!(creds.response, expected);
    }
}

/// RFC 2617 §3.5 (Mufasa, "Circle Of Life", testrealm@host.com), as printed in the RFC.
#[test]
fn rfc_2617_section_3_5() {
    let text = "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n \
        nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n uri=\"/dir/index.html\",\r\n \
        qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n \
        response=\"6629fae49393a05397450978507c4ef1\",\r\n \
        opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
    let creds = header::parse_credentials(text).unwrap();
    let ha1 = ha1(
        DigestAlgorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
    );
    assert_eq!(
        response(DigestAlgorithm::Md5, &ha1, &creds, "GET"),
        "6629fae49393a05397450978507c4ef1"
    );
}

/// A SIP example: draft-smith-sipping-auth-examples-01 §3.3 (bob, "zanzibar", biloxi.com,
/// INVITE sip:bob@biloxi.com, qop=auth, MD5), whose response and HA1
/// (12af60467a33e8518da5c68bbff12b11) are also asserted by rtckit/php-sip's tests.
#[test]
fn sip_auth_examples_draft_section_3_3() {
    let text = "Digest username=\"bob\", realm=\"biloxi.com\", \
        nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:bob@biloxi.com\", qop=auth, \
        nc=00000001, cnonce=\"0a4f113b\", response=\"89eb0059246c02b2f6ee02c7961d5ea3\", \
        algorithm=MD5, opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
    let creds = header::parse_credentials(text).unwrap();
    let ha1 = ha1(DigestAlgorithm::Md5, "bob", "biloxi.com", "zanzibar");
    assert_eq!(ha1, "12af60467a33e8518da5c68bbff12b11");
    assert_eq!(
        response(DigestAlgorithm::Md5, &ha1, &creds, "INVITE"),
        creds.response
    );
}

/// Authorization headers real SIP peers wrote, answering a stub that sent our challenge
/// format (`Digest realm="starcode", qop="auth", algorithm=..., nonce="...", opaque="..."`):
/// baresip 1.0.0 (Debian `baresip-core`, account 1001 / "s3cret", INVITE to *46; it answers
/// only MD5 challenges: offered SHA-256 too, it gives up with ENOSYS) and linphonec 5.1.65
/// (Debian `linphone-cli`, account 1002 / "other", SUBSCRIBE to 1001, SHA-256). Captured on
/// loopback for this test; their spacing and parameter order are kept as sent.
#[test]
fn authorization_headers_written_by_baresip_and_linphone() {
    let baresip = "Digest username=\"1001\", realm=\"starcode\", \
        nonce=\"00000000000012340000000155aa66bb77cc88dd99ee00ff11223344\", \
        uri=\"sip:*46@127.0.0.1:5112\", response=\"a7f5ee9d8f2e339502816fe0f209b5a3\", \
        opaque=\"efee1fbcb28f6201\", cnonce=\"3c11f15c01579a7e\", qop=auth, nc=00000001";
    let linphone = " Digest realm=\"starcode\", \
        nonce=\"00000000000012340000000155aa66bb77cc88dd99ee00ff11223344\", algorithm=SHA-256, \
        opaque=\"efee1fbcb28f6201\", username=\"1002\",  uri=\"sip:1001@127.0.0.1:5130\", \
        response=\"8ca5ff47ea6cda1d8f349334203124f9c7b0e88c4ce0ddd9046d2ccf16899bac\", \
        cnonce=\"SLLZ9xBWFCbVODjF\", nc=00000001, qop=auth";
    // sipp 3.6.1's `[authentication username=1001 password=wrong]` against the engine with
    // `digest_algorithms = ["MD5"]`: no spaces, and only our host in `uri`.
    let sipp = "Digest username=\"1001\",realm=\"starcode\",cnonce=\"6b8b4567\",nc=00000001,\
        qop=auth,uri=\"sip:127.0.0.1:5300\",\
        nonce=\"00000000000001c5000000008265156393d97c47838873e21248794f\",\
        response=\"93104515a0ab9c710ea10a32efbf2d23\",algorithm=MD5,opaque=\"3b848f291e8773c4\"";
    for (text, user, secret, method, request_uri) in [
        (sipp, "1001", "wrong", "INVITE", "sip:*46@127.0.0.1:5300"),
        (
            baresip,
            "1001",
            "s3cret",
            "INVITE",
            "sip:*46@127.0.0.1:5112",
        ),
        (
            linphone,
            "1002",
            "other",
            "SUBSCRIBE",
            "sip:1001@127.0.0.1:5130",
        ),
    ] {
        let creds = header::parse_credentials(text).unwrap();
        assert_eq!(creds.username, user);
        assert_eq!(creds.nonce_count(), Some(1));
        assert!(header::same_uri(&creds.uri, request_uri));
        let algorithm = creds.algorithm().unwrap();
        let ha1 = ha1(algorithm, user, "starcode", secret);
        assert_eq!(
            response(algorithm, &ha1, &creds, method),
            creds.response,
            "{text}"
        );
    }
}

// ---- The authenticator ----

const PHONE: &str = "192.0.2.10";
const URI: &str = "sip:*46@192.0.2.1";

fn settings() -> AuthSettings {
    AuthSettings {
        mode: AuthMode::Untrusted,
        realm: REALM.into(),
        nonce_lifetime: Duration::from_secs(300),
        algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
        methods: vec!["INVITE".into(), "SUBSCRIBE".into()],
        guard: GuardSettings {
            failures_per_source: 3,
            failures_per_extension: 5,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(600),
        },
    }
}

struct Bench {
    auth: Authenticator,
    accounts: AccountDirectory,
    now: Instant,
}

impl Bench {
    fn new() -> Bench {
        let now = Instant::now();
        Bench {
            auth: Authenticator::new(settings(), [42; 32], now),
            accounts: office_directory(),
            now,
        }
    }

    fn check_from(&mut self, source: &str, authorization: &[&str]) -> AuthOutcome {
        self.auth.check(
            AuthRequest {
                method: "INVITE",
                uri: URI,
                authorization,
                source: source.parse().unwrap(),
            },
            &self.accounts,
            self.now,
        )
    }

    fn check(&mut self, authorization: &[&str]) -> AuthOutcome {
        self.check_from(PHONE, authorization)
    }

    /// A fresh challenge's nonce.
    fn nonce(&mut self) -> String {
        match self.check(&[]) {
            AuthOutcome::Challenge {
                www_authenticate, ..
            } => param(&www_authenticate[0], "nonce"),
            other => panic!("{other:?}"),
        }
    }
}

/// A quoted parameter of a challenge.
fn param(challenge: &str, name: &str) -> String {
    let start = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    let len = challenge[start..].find('"').unwrap();
    challenge[start..start + len].to_string()
}

/// What a phone answers: `Authorization` for `user`/`secret` with this nonce and count.
fn answer(user: &str, secret: &str, algorithm: DigestAlgorithm, nonce: &str, nc: u32) -> String {
    let creds = Credentials {
        username: user.into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: URI.into(),
        response: String::new(),
        algorithm: Some(algorithm.as_str().into()),
        cnonce: Some("0a4f113b".into()),
        opaque: None,
        qop: Some("auth".into()),
        nc: Some(format!("{nc:08x}")),
        userhash: false,
    };
    let ha1 = ha1(algorithm, user, REALM, secret);
    let response = response(algorithm, &ha1, &creds, "INVITE");
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", \
         response=\"{response}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, nc={nc:08x}",
        algorithm.as_str()
    )
}

#[test]
fn a_request_without_credentials_gets_one_challenge_per_algorithm_sha256_first() {
    let mut b = Bench::new();
    let AuthOutcome::Challenge {
        stale,
        www_authenticate,
    } = b.check(&[])
    else {
        panic!()
    };
    assert!(!stale);
    assert_eq!(www_authenticate.len(), 2);
    assert!(www_authenticate[0].contains("algorithm=SHA-256"));
    assert!(www_authenticate[1].contains("algorithm=MD5"));
    for c in &www_authenticate {
        assert!(
            c.starts_with("Digest realm=\"starcode\", qop=\"auth\""),
            "{c}"
        );
        assert!(!c.contains("stale"));
    }
    assert_eq!(b.auth.counters().challenges, 1);
}

#[test]
fn a_right_answer_authenticates_once_per_nonce_count() {
    let mut b = Bench::new();
    let nonce = b.nonce();
    for algorithm in [DigestAlgorithm::Sha256, DigestAlgorithm::Md5] {
        let nonce = if algorithm == DigestAlgorithm::Md5 {
            b.nonce()
        } else {
            nonce.clone()
        };
        let first = answer("1001", "s3cret", algorithm, &nonce, 1);
        assert_eq!(
            b.check(&[&first]),
            AuthOutcome::Authenticated {
                username: "1001".into()
            }
        );
        // The same Authorization again: a replay.
        assert_eq!(b.check(&[&first]), AuthOutcome::Refused(Failure::Replayed));
        // The phone's next request with the same nonce counts up.
        let second = answer("1001", "s3cret", algorithm, &nonce, 2);
        assert!(matches!(
            b.check(&[&second]),
            AuthOutcome::Authenticated { .. }
        ));
    }
    let c = b.auth.counters();
    assert_eq!((c.successes, c.replayed), (4, 2));
}

#[test]
fn wrong_unknown_and_disabled_are_all_refused_alike() {
    let mut b = Bench::new();
    for (user, secret, failure) in [
        ("1001", "guess", Failure::WrongResponse),
        ("4242", "guess", Failure::UnknownExtension),
        ("1009", "gone", Failure::Disabled),
    ] {
        let nonce = b.nonce();
        let a = answer(user, secret, DigestAlgorithm::Sha256, &nonce, 1);
        assert_eq!(b.check(&[&a]), AuthOutcome::Refused(failure));
        // Forgive the phone so the lockout test is elsewhere.
        b.auth.guard.success(PHONE.parse().unwrap(), "x", b.now);
    }
    let c = b.auth.counters();
    assert_eq!((c.wrong_response, c.unknown_or_disabled), (1, 2));
}

#[test]
fn a_stale_nonce_with_a_right_answer_gets_stale_true() {
    let mut b = Bench::new();
    let nonce = b.nonce();
    b.now += Duration::from_secs(301);
    let right = answer("1001", "s3cret", DigestAlgorithm::Sha256, &nonce, 1);
    let AuthOutcome::Challenge {
        stale: true,
        www_authenticate,
    } = b.check(&[&right])
    else {
        panic!("expected a stale challenge")
    };
    assert!(www_authenticate.iter().all(|c| c.ends_with(", stale=true")));
    // The retry with the new nonce goes through.
    let fresh = param(&www_authenticate[0], "nonce");
    let retry = answer("1001", "s3cret", DigestAlgorithm::Sha256, &fresh, 1);
    assert!(matches!(
        b.check(&[&retry]),
        AuthOutcome::Authenticated { .. }
    ));
    // A wrong answer with a stale nonce is a failure, not a stale challenge.
    let wrong = answer("1001", "guess", DigestAlgorithm::Sha256, &nonce, 2);
    assert_eq!(
        b.check(&[&wrong]),
        AuthOutcome::Refused(Failure::WrongResponse)
    );
    assert_eq!(b.auth.counters().stale, 1);
}

#[test]
fn a_nonce_given_to_another_source_gets_a_fresh_challenge() {
    let mut b = Bench::new();
    let nonce = b.nonce();
    let captured = answer("1001", "s3cret", DigestAlgorithm::Sha256, &nonce, 1);
    assert!(matches!(
        b.check_from("203.0.113.5", &[&captured]),
        AuthOutcome::Challenge { stale: false, .. }
    ));
    let forged = answer("1001", "s3cret", DigestAlgorithm::Sha256, "0123abcd", 1);
    assert!(matches!(
        b.check(&[&forged]),
        AuthOutcome::Challenge { stale: false, .. }
    ));
}

#[test]
fn answers_without_qop_or_with_an_algorithm_not_offered_are_refused() {
    let mut b = Bench::new();
    let nonce = b.nonce();
    let ha1 = ha1(DigestAlgorithm::Md5, "1001", REALM, "s3cret");
    let ha2 = digest_hex(DigestAlgorithm::Md5, format!("INVITE:{URI}").as_bytes());
    let rfc2069 = digest_hex(
        DigestAlgorithm::Md5,
        format!("{ha1}:{nonce}:{ha2}").as_bytes(),
    );
    let old = format!(
        "Digest username=\"1001\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", response=\"{rfc2069}\""
    );
    assert_eq!(b.check(&[&old]), AuthOutcome::Refused(Failure::Unsupported));
    b.auth.set_settings(AuthSettings {
        algorithms: vec![DigestAlgorithm::Sha256],
        ..settings()
    });
    let nonce = b.nonce();
    let md5 = answer("1001", "s3cret", DigestAlgorithm::Md5, &nonce, 1);
    assert_eq!(b.check(&[&md5]), AuthOutcome::Refused(Failure::Unsupported));
}

#[test]
fn our_realm_is_picked_among_several_authorization_headers() {
    let mut b = Bench::new();
    let nonce = b.nonce();
    let ours = answer("1001", "s3cret", DigestAlgorithm::Sha256, &nonce, 1);
    let theirs = ours.replace("realm=\"starcode\"", "realm=\"pbx.example\"");
    assert!(matches!(
        b.check(&["Basic Zm9vOmJhcg==", &theirs, &ours]),
        AuthOutcome::Authenticated { .. }
    ));
    // Only another realm's: as if there were none.
    assert!(matches!(
        b.check(&[&theirs]),
        AuthOutcome::Challenge { stale: false, .. }
    ));
}

#[test]
fn an_unreadable_authorization_for_our_realm_is_malformed() {
    let mut b = Bench::new();
    let broken = "Digest realm=\"starcode\", username=\"1001\"";
    assert_eq!(
        b.check(&[broken]),
        AuthOutcome::Malformed(HeaderError::Missing("nonce"))
    );
    assert_eq!(b.auth.counters().malformed, 1);
    // Unreadable to the point that its realm is unknown: as if it were someone else's.
    let dup = "Digest realm=\"starcode\", username=\"1001\", nonce=\"n\", uri=\"u\", response=\"r\", nc=1, nc=2";
    assert!(matches!(b.check(&[dup]), AuthOutcome::Challenge { .. }));
}

#[test]
fn a_source_over_its_failure_limit_is_refused_without_a_challenge_until_the_lockout_ends() {
    let mut b = Bench::new();
    for i in 0..3 {
        let nonce = b.nonce();
        let a = answer("1001", "guess", DigestAlgorithm::Sha256, &nonce, 1);
        assert_eq!(
            b.check(&[&a]),
            AuthOutcome::Refused(Failure::WrongResponse),
            "{i}"
        );
    }
    assert_eq!(b.check(&[]), AuthOutcome::Refused(Failure::LockedOut));
    // Another phone is not affected.
    assert!(matches!(
        b.check_from("192.0.2.11", &[]),
        AuthOutcome::Challenge { .. }
    ));
    b.now += Duration::from_secs(60);
    assert!(matches!(b.check(&[]), AuthOutcome::Challenge { .. }));
    let c = b.auth.counters();
    assert_eq!((c.lockouts, c.locked_out), (1, 1));
}

#[test]
fn an_extension_under_attack_still_lets_its_own_phone_in() {
    let mut b = Bench::new();
    b.auth.set_settings(AuthSettings {
        guard: GuardSettings {
            failures_per_source: 100,
            ..settings().guard
        },
        ..settings()
    });
    let nonce = b.nonce();
    let right = answer("1001", "s3cret", DigestAlgorithm::Sha256, &nonce, 1);
    assert!(matches!(
        b.check(&[&right]),
        AuthOutcome::Authenticated { .. }
    ));
    for i in 0..5u8 {
        let attacker = format!("198.51.100.{i}");
        let nonce = match b.check_from(&attacker, &[]) {
            AuthOutcome::Challenge {
                www_authenticate, ..
            } => param(&www_authenticate[0], "nonce"),
            other => panic!("{other:?}"),
        };
        let a = answer("1001", "guess", DigestAlgorithm::Sha256, &nonce, 1);
        assert_eq!(
            b.check_from(&attacker, &[&a]),
            AuthOutcome::Refused(Failure::WrongResponse)
        );
    }
    // A new attacker claiming 1001 is refused at once; the phone goes on.
    let nonce = b.nonce();
    let probe = answer("1001", "guess", DigestAlgorithm::Sha256, &nonce, 1);
    assert_eq!(
        b.check_from("203.0.113.9", &[&probe]),
        AuthOutcome::Refused(Failure::LockedOut)
    );
    let next = answer("1001", "s3cret", DigestAlgorithm::Sha256, &nonce, 1);
    assert!(matches!(
        b.check(&[&next]),
        AuthOutcome::Authenticated { .. }
    ));
}

#[test]
fn ha1_for_another_realm_cannot_authenticate() {
    let mut b = Bench::new();
    b.accounts = AccountDirectory::from_accounts(&[Account {
        credentials: SipCredential::for_secret("1001", "old-realm", "s3cret"),
        ..account("1001", "s3cret", true)
    }]);
    let nonce = b.nonce();
    let a = answer("1001", "s3cret", DigestAlgorithm::Sha256, &nonce, 1);
    assert_eq!(b.check(&[&a]), AuthOutcome::Refused(Failure::NoCredential));
}

#[test]
fn an_answer_for_another_uri_is_refused() {
    let mut b = Bench::new();
    let nonce = b.nonce();
    let elsewhere = answer("1001", "s3cret", DigestAlgorithm::Sha256, &nonce, 1)
        .replace(URI, "sip:*48@192.0.2.1");
    assert_eq!(
        b.check(&[&elsewhere]),
        AuthOutcome::Malformed(HeaderError::UriMismatch)
    );
}

#[test]
fn usernames_are_logged_short_and_escaped() {
    assert_eq!(printable("1001"), "1001");
    assert_eq!(printable("a\nb\"c"), "a\\nb\\\"c");
    assert_eq!(printable(&"x".repeat(100)).chars().count(), 65);
}

#[test]
fn constant_time_eq_compares_bytes() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
