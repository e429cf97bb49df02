//! Digest authentication as a phone outside the trusted peers meets it, on a virtual clock:
//! real SIP text in, 401/403/200 out. The phone's answers are computed here from the RFC 7616
//! formulas with the hashing crates directly, not with the code under test.

use super::*;
use crate::accounts::secrets::digest_hex;
use crate::accounts::test_accounts::{account, office_directory, REALM};
use crate::accounts::{AccountDirectory, DigestAlgorithm};
use crate::config::AuthMode;
use crate::sip::auth::guard::GuardSettings;
use crate::sip::auth::AuthSettings;

/// A phone on the office LAN, outside `sip.trusted_peers` (127.0.0.0/8 in these tests).
const OFFICE: &str = "192.0.2.10:5062";

fn auth_settings(mode: AuthMode) -> AuthSettings {
    AuthSettings {
        mode,
        realm: REALM.into(),
        nonce_lifetime: Duration::from_secs(300),
        algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
        methods: ["INVITE", "SUBSCRIBE", "PUBLISH", "INFO", "BYE"]
            .iter()
            .map(|m| m.to_string())
            .collect(),
        guard: GuardSettings {
            failures_per_source: 3,
            failures_per_extension: 20,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
        },
    }
}

/// A user agent with accounts 1001, 1002 (enabled) and 1009 (disabled), and a phone at
/// [`OFFICE`].
fn office(mode: AuthMode) -> Phone {
    let mut p = Phone::new();
    p.ua.set_accounts(office_directory());
    p.ua.set_auth(auth_settings(mode), [9; 32], p.now);
    p.from = OFFICE.parse().unwrap();
    p
}

/// A request from the office phone. `to_tag` makes it in-dialog.
#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    target: &str,
    from: &str,
    call_id: &str,
    branch: &str,
    cseq: u32,
    to_tag: Option<&str>,
    extra: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let body = if method == "INVITE" { SDP } else { "" };
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:{target}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {OFFICE};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{from}@192.0.2.1>;tag=ph-{call_id}\r\n\
         To: <sip:{target}@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:{from}@{OFFICE}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn presence_headers(expires: u32) -> String {
    format!("Event: presence\r\nAccept: application/pidf+xml\r\nExpires: {expires}\r\n")
}

/// The values of a header in a message.
fn headers<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn status(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

/// A quoted parameter of a challenge.
fn param(challenge: &str, name: &str) -> String {
    let start = challenge.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
    let len = challenge[start..].find('"').expect("closing quote");
    challenge[start..start + len].to_string()
}

/// The nonce of a 401's challenge for `algorithm`.
fn nonce_of(unauthorized: &str, algorithm: DigestAlgorithm) -> String {
    let token = format!("algorithm={}", algorithm.as_str());
    let challenge = headers(unauthorized, "WWW-Authenticate")
        .into_iter()
        .find(|c| c.contains(&token))
        .expect("a challenge for the algorithm");
    param(challenge, "nonce")
}

/// The phone's `Authorization` header line (RFC 7616 §3.4.1, qop=auth).
#[allow(clippy::too_many_arguments)]
fn authorization(
    user: &str,
    secret: &str,
    algorithm: DigestAlgorithm,
    nonce: &str,
    nc: u32,
    method: &str,
    uri: &str,
) -> String {
    let h = |s: String| digest_hex(algorithm, s.as_bytes());
    let ha1 = h(format!("{user}:{REALM}:{secret}"));
    let ha2 = h(format!("{method}:{uri}"));
    let cnonce = "4b2f9e1a";
    let response = h(format!("{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm={}, cnonce=\"{cnonce}\", qop=auth, \
         nc={nc:08x}\r\n",
        algorithm.as_str()
    )
}

/// Sends an INVITE to `*46` as `from`, answers the 401 as `user`/`secret`; returns the final
/// answer (or 100 Trying) sent to the authenticated INVITE.
fn call_with(
    p: &mut Phone,
    call_id: &str,
    from: &str,
    user: &str,
    secret: &str,
    extra: &str,
) -> String {
    p.send(&request(
        "INVITE",
        "*46",
        from,
        call_id,
        &format!("z9hG4bK{call_id}a"),
        1,
        None,
        extra,
    ));
    let challenge = p.take_sent().pop().expect("an answer");
    assert!(status(&challenge).starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = nonce_of(&challenge, DigestAlgorithm::Sha256);
    let auth = authorization(
        user,
        secret,
        DigestAlgorithm::Sha256,
        &nonce,
        1,
        "INVITE",
        "sip:*46@127.0.0.1",
    );
    p.send(&request(
        "INVITE",
        "*46",
        from,
        call_id,
        &format!("z9hG4bK{call_id}b"),
        2,
        None,
        &format!("{extra}{auth}"),
    ));
    p.take_sent().pop().expect("an answer")
}

#[test]
fn an_office_phone_is_challenged_answers_and_calls_then_hangs_up_with_its_own_credentials() {
    let mut p = office(AuthMode::Untrusted);
    let invite = request("INVITE", "*46", "1001", "a1", "z9hG4bKa1a", 1, None, "");
    p.send(&invite);
    let unauthorized = p.take_sent().pop().unwrap();
    assert!(
        status(&unauthorized).starts_with("SIP/2.0 401 Unauthorized"),
        "{unauthorized}"
    );
    let challenges = headers(&unauthorized, "WWW-Authenticate");
    assert_eq!(challenges.len(), 2, "{unauthorized}");
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
    assert!(challenges[0].starts_with("Digest realm=\"starcode\", qop=\"auth\""));
    assert!(!headers(&unauthorized, "To")[0].is_empty());
    // A retransmission gets the same 401 from the transaction; its ACK is absorbed.
    p.send(&invite);
    assert_eq!(p.take_sent(), std::slice::from_ref(&unauthorized));
    let tag = Phone::to_tag(&unauthorized);
    let ack = request("ACK", "*46", "1001", "a1", "z9hG4bKa1a", 1, Some(&tag), "");
    p.send(&ack);
    assert!(p.take_sent().is_empty());
    assert!(p.events.is_empty(), "no call before authentication");

    let nonce = nonce_of(&unauthorized, DigestAlgorithm::Sha256);
    let auth = authorization(
        "1001",
        "s3cret",
        DigestAlgorithm::Sha256,
        &nonce,
        1,
        "INVITE",
        "sip:*46@127.0.0.1",
    );
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "a1",
        "z9hG4bKa1b",
        2,
        None,
        &auth,
    ));
    assert!(status(&p.take_sent()[0]).starts_with("SIP/2.0 100"));
    let id = p.incoming_id();
    assert!(matches!(&p.events[0], UaEvent::IncomingCall { caller, .. } if caller == "1001"));
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().unwrap();
    assert!(status(&ok).starts_with("SIP/2.0 200"), "{ok}");
    let tag = Phone::to_tag(&ok);
    p.send(&request(
        "ACK",
        "*46",
        "1001",
        "a1",
        "z9hG4bKa1c",
        2,
        Some(&tag),
        "",
    ));
    assert!(p.take_sent().is_empty(), "ACK is never challenged");

    // BYE is challenged too; the phone answers with the same nonce, counting on.
    p.send(&request(
        "BYE",
        "*46",
        "1001",
        "a1",
        "z9hG4bKa1d",
        3,
        Some(&tag),
        "",
    ));
    let bye_401 = p.take_sent().pop().unwrap();
    assert!(status(&bye_401).starts_with("SIP/2.0 401"), "{bye_401}");
    assert_eq!(p.ua.active_calls(), 1);
    let auth = authorization(
        "1001",
        "s3cret",
        DigestAlgorithm::Sha256,
        &nonce,
        2,
        "BYE",
        "sip:*46@127.0.0.1",
    );
    p.send(&request(
        "BYE",
        "*46",
        "1001",
        "a1",
        "z9hG4bKa1e",
        4,
        Some(&tag),
        &auth,
    ));
    let bye_ok = p.take_sent().pop().unwrap();
    assert!(
        status(&bye_ok).starts_with("SIP/2.0 200") && bye_ok.contains("CSeq: 4 BYE"),
        "{bye_ok}"
    );
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::RemoteBye
    }));
    let c = p.ua.auth_counters();
    assert_eq!((c.challenges, c.successes, c.failures()), (2, 2, 0));
}

#[test]
fn md5_works_as_well_as_sha256() {
    let mut p = office(AuthMode::Untrusted);
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "m1",
        "z9hG4bKm1a",
        1,
        None,
        "",
    ));
    let challenge = p.take_sent().pop().unwrap();
    let nonce = nonce_of(&challenge, DigestAlgorithm::Md5);
    let auth = authorization(
        "1001",
        "s3cret",
        DigestAlgorithm::Md5,
        &nonce,
        1,
        "INVITE",
        "sip:*46@127.0.0.1",
    );
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "m1",
        "z9hG4bKm1b",
        2,
        None,
        &auth,
    ));
    assert!(status(&p.take_sent()[0]).starts_with("SIP/2.0 100"));
}

#[test]
fn a_wrong_secret_gets_403_and_a_replayed_authorization_too() {
    let mut p = office(AuthMode::Untrusted);
    let answer = call_with(&mut p, "w1", "1001", "1001", "guess", "");
    assert!(
        status(&answer).starts_with("SIP/2.0 403 Forbidden"),
        "{answer}"
    );
    assert!(headers(&answer, "WWW-Authenticate").is_empty());
    assert!(p.events.is_empty());

    // A captured, good Authorization sent again (new transaction, same nonce and count).
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "r1",
        "z9hG4bKr1a",
        1,
        None,
        "",
    ));
    let nonce = nonce_of(&p.take_sent().pop().unwrap(), DigestAlgorithm::Sha256);
    let auth = authorization(
        "1001",
        "s3cret",
        DigestAlgorithm::Sha256,
        &nonce,
        1,
        "INVITE",
        "sip:*46@127.0.0.1",
    );
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "r1",
        "z9hG4bKr1b",
        2,
        None,
        &auth,
    ));
    assert!(status(&p.take_sent()[0]).starts_with("SIP/2.0 100"));
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "r2",
        "z9hG4bKr2b",
        2,
        None,
        &auth,
    ));
    let replayed = p.take_sent().pop().unwrap();
    assert!(status(&replayed).starts_with("SIP/2.0 403"), "{replayed}");
    assert_eq!(p.ua.active_calls(), 1, "only the first got a call");
    let c = p.ua.auth_counters();
    assert_eq!((c.wrong_response, c.replayed), (1, 1));
}

/// The parts of a response that could tell one refusal from another.
fn shape(response: &str) -> Vec<String> {
    response
        .lines()
        .map(|l| match l.split_once(':') {
            Some((name, _)) if !l.starts_with("SIP/2.0") => name.to_string(),
            _ => l.to_string(),
        })
        .collect()
}

#[test]
fn unknown_disabled_and_wrong_secret_get_the_same_403() {
    let mut p = office(AuthMode::Untrusted);
    let wrong = call_with(&mut p, "u1", "1001", "1001", "guess", "");
    let unknown = call_with(&mut p, "u2", "4242", "4242", "guess", "");
    p.now += Duration::from_secs(61); // past the lockout three failures started
    let disabled = call_with(&mut p, "u3", "1009", "1009", "gone", "");
    for answer in [&wrong, &unknown, &disabled] {
        assert!(
            status(answer).starts_with("SIP/2.0 403 Forbidden"),
            "{answer}"
        );
    }
    assert_eq!(shape(&wrong), shape(&unknown));
    assert_eq!(shape(&wrong), shape(&disabled));
    assert_eq!(p.ua.auth_counters().unknown_or_disabled, 2);
}

#[test]
fn an_extension_may_only_act_as_itself() {
    let mut p = office(AuthMode::Untrusted);
    // Dialling *46 with another extension in From, or asserted.
    let as_other = call_with(&mut p, "i1", "1002", "1001", "s3cret", "");
    assert!(status(&as_other).starts_with("SIP/2.0 403"), "{as_other}");
    let asserted = call_with(
        &mut p,
        "i2",
        "1001",
        "1001",
        "s3cret",
        "P-Asserted-Identity: <sip:1002@pbx>\r\n",
    );
    assert!(status(&asserted).starts_with("SIP/2.0 403"), "{asserted}");
    assert!(p.events.is_empty());
    assert_eq!(
        p.ua.auth_counters().failures(),
        0,
        "proven, just not allowed"
    );

    // PUBLISH someone else's status.
    p.send(&request(
        "PUBLISH",
        "1002",
        "1001",
        "i3",
        "z9hG4bKi3a",
        1,
        None,
        "Event: presence\r\nExpires: 600\r\n",
    ));
    let nonce = nonce_of(&p.take_sent().pop().unwrap(), DigestAlgorithm::Sha256);
    let auth = authorization(
        "1001",
        "s3cret",
        DigestAlgorithm::Sha256,
        &nonce,
        1,
        "PUBLISH",
        "sip:1002@127.0.0.1",
    );
    p.send(&request(
        "PUBLISH",
        "1002",
        "1001",
        "i3",
        "z9hG4bKi3b",
        2,
        None,
        &format!("Event: presence\r\nExpires: 600\r\n{auth}"),
    ));
    let refused = p.take_sent().pop().unwrap();
    assert!(status(&refused).starts_with("SIP/2.0 403"), "{refused}");
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::Publish { .. })));
}

#[test]
fn a_phone_publishes_its_own_status() {
    let mut p = office(AuthMode::Untrusted);
    let extra = "Event: presence\r\nExpires: 600\r\nContent-Type: application/pidf+xml\r\n";
    let text = |branch: &str, cseq: u32, auth: &str| {
        request(
            "PUBLISH",
            "1001",
            "1001",
            "pb1",
            branch,
            cseq,
            None,
            &format!("{extra}{auth}"),
        )
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: {}\r\n\r\n{AWAY_PIDF}", AWAY_PIDF.len()),
        )
    };
    p.send(&text("z9hG4bKpb1a", 1, ""));
    let nonce = nonce_of(&p.take_sent().pop().unwrap(), DigestAlgorithm::Sha256);
    let auth = authorization(
        "1001",
        "s3cret",
        DigestAlgorithm::Sha256,
        &nonce,
        1,
        "PUBLISH",
        "sip:1001@127.0.0.1",
    );
    p.send(&text("z9hG4bKpb1b", 2, &auth));
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, UaEvent::Publish { extension, .. } if extension == "1001")),
        "{:?}",
        p.events
    );
}

/// SUBSCRIBE as `watcher` to `target`, answering the 401 as `user`; returns the final answer
/// and the nonce used.
fn subscribe_as(
    p: &mut Phone,
    call_id: &str,
    watcher: &str,
    user: &str,
    secret: &str,
    target: &str,
) -> (String, String) {
    let extra = presence_headers(600);
    p.send(&request(
        "SUBSCRIBE",
        target,
        watcher,
        call_id,
        &format!("z9hG4bK{call_id}a"),
        1,
        None,
        &extra,
    ));
    let challenge = p.take_sent().pop().unwrap();
    assert!(status(&challenge).starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = nonce_of(&challenge, DigestAlgorithm::Sha256);
    let uri = format!("sip:{target}@127.0.0.1");
    let auth = authorization(
        user,
        secret,
        DigestAlgorithm::Sha256,
        &nonce,
        1,
        "SUBSCRIBE",
        &uri,
    );
    p.send(&request(
        "SUBSCRIBE",
        target,
        watcher,
        call_id,
        &format!("z9hG4bK{call_id}b"),
        2,
        None,
        &format!("{extra}{auth}"),
    ));
    let sent = p.take_sent();
    let answer = sent
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0"))
        .expect("an answer");
    (answer, nonce)
}

#[test]
fn a_watcher_subscribes_as_itself_only_and_as_the_watcher_list_allows() {
    let mut p = office(AuthMode::Untrusted);
    let (ok, _) = subscribe_as(&mut p, "s1", "1002", "1002", "other", "1001");
    assert!(status(&ok).starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(p.ua.watcher_count("1001"), 1);
    let (as_other, _) = subscribe_as(&mut p, "s2", "1009", "1002", "other", "1001");
    assert!(status(&as_other).starts_with("SIP/2.0 403"), "{as_other}");

    // With [presence.watchers]: 1001 may be watched by 1002 only.
    let mut settings = super::settings();
    settings.subscribe.watchers = crate::presence::server::WatcherPolicy::AllowList(
        [("1001".to_string(), vec!["1002".to_string()])]
            .into_iter()
            .collect(),
    );
    let mut p = office(AuthMode::Untrusted);
    p.ua = UserAgent::new(settings, 7).unwrap();
    p.ua.set_accounts(AccountDirectory::from_accounts(&[
        account("1001", "s3cret", true),
        account("1002", "other", true),
    ]));
    p.ua.set_auth(auth_settings(AuthMode::Untrusted), [9; 32], p.now);
    let (allowed, _) = subscribe_as(&mut p, "s3", "1002", "1002", "other", "1001");
    assert!(status(&allowed).starts_with("SIP/2.0 200"), "{allowed}");
    let (listed_elsewhere, _) = subscribe_as(&mut p, "s4", "1001", "1001", "s3cret", "1002");
    assert!(
        status(&listed_elsewhere).starts_with("SIP/2.0 403"),
        "{listed_elsewhere}"
    );
}

#[test]
fn a_refresh_with_a_stale_nonce_is_challenged_again_and_the_subscription_survives() {
    let mut p = office(AuthMode::Untrusted);
    let (ok, nonce) = subscribe_as(&mut p, "st1", "1002", "1002", "other", "1001");
    assert!(status(&ok).starts_with("SIP/2.0 200"), "{ok}");
    let tag = Phone::to_tag(&ok);
    // Six minutes later (nonce lifetime 5 min, subscription 10 min) the phone refreshes with
    // the nonce it has.
    let later = p.now + Duration::from_secs(360);
    p.advance_to(later);
    p.take_sent();
    let extra = presence_headers(600);
    let auth = authorization(
        "1002",
        "other",
        DigestAlgorithm::Sha256,
        &nonce,
        2,
        "SUBSCRIBE",
        "sip:1001@127.0.0.1",
    );
    p.send(&request(
        "SUBSCRIBE",
        "1001",
        "1002",
        "st1",
        "z9hG4bKst1c",
        3,
        Some(&tag),
        &format!("{extra}{auth}"),
    ));
    let stale = p.take_sent().pop().unwrap();
    assert!(status(&stale).starts_with("SIP/2.0 401"), "{stale}");
    let challenges = headers(&stale, "WWW-Authenticate");
    assert!(
        challenges.iter().all(|c| c.ends_with("stale=true")),
        "{stale}"
    );
    assert_eq!(Phone::to_tag(&stale), tag, "in-dialog: the dialog's tag");
    let fresh = nonce_of(&stale, DigestAlgorithm::Sha256);
    let auth = authorization(
        "1002",
        "other",
        DigestAlgorithm::Sha256,
        &fresh,
        1,
        "SUBSCRIBE",
        "sip:1001@127.0.0.1",
    );
    p.send(&request(
        "SUBSCRIBE",
        "1001",
        "1002",
        "st1",
        "z9hG4bKst1d",
        4,
        Some(&tag),
        &format!("{extra}{auth}"),
    ));
    let refreshed = p
        .take_sent()
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0"))
        .unwrap();
    assert!(status(&refreshed).starts_with("SIP/2.0 200"), "{refreshed}");
    assert_eq!(p.ua.watcher_count("1001"), 1);
    assert_eq!(p.ua.auth_counters().stale, 1);
}

#[test]
fn only_the_watcher_may_refresh_or_end_its_subscription() {
    let mut p = office(AuthMode::Untrusted);
    let (ok, _) = subscribe_as(&mut p, "o1", "1002", "1002", "other", "1001");
    let tag = Phone::to_tag(&ok);
    // 1001 learned the dialog's identifiers and tries to end it.
    let extra = presence_headers(0);
    p.send(&request(
        "SUBSCRIBE",
        "1001",
        "1001",
        "o1",
        "z9hG4bKo1c",
        3,
        Some(&tag),
        &extra,
    ));
    let nonce = nonce_of(&p.take_sent().pop().unwrap(), DigestAlgorithm::Sha256);
    let auth = authorization(
        "1001",
        "s3cret",
        DigestAlgorithm::Sha256,
        &nonce,
        1,
        "SUBSCRIBE",
        "sip:1001@127.0.0.1",
    );
    p.send(&request(
        "SUBSCRIBE",
        "1001",
        "1001",
        "o1",
        "z9hG4bKo1d",
        4,
        Some(&tag),
        &format!("{extra}{auth}"),
    ));
    let refused = p.take_sent().pop().unwrap();
    assert!(status(&refused).starts_with("SIP/2.0 403"), "{refused}");
    assert_eq!(p.ua.watcher_count("1001"), 1);
}

#[test]
fn after_too_many_failures_a_source_gets_403_without_a_challenge_until_the_lockout_ends() {
    let mut p = office(AuthMode::Untrusted);
    for i in 0..3 {
        let answer = call_with(&mut p, &format!("b{i}"), "1001", "1001", "guess", "");
        assert!(status(&answer).starts_with("SIP/2.0 403"), "{answer}");
    }
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "b9",
        "z9hG4bKb9",
        1,
        None,
        "",
    ));
    let locked = p.take_sent().pop().unwrap();
    assert!(status(&locked).starts_with("SIP/2.0 403"), "{locked}");
    assert!(headers(&locked, "WWW-Authenticate").is_empty());
    p.now += Duration::from_secs(60);
    let answer = call_with(&mut p, "b10", "1001", "1001", "s3cret", "");
    assert!(status(&answer).starts_with("SIP/2.0 100"), "{answer}");
    let c = p.ua.auth_counters();
    assert_eq!((c.lockouts, c.locked_out), (1, 1));
}

#[test]
fn options_from_an_untrusted_phone_is_answered_without_a_challenge() {
    let mut p = office(AuthMode::Untrusted);
    p.send(&request(
        "OPTIONS",
        "1001",
        "1001",
        "op1",
        "z9hG4bKop1",
        1,
        None,
        "",
    ));
    let ok = p.take_sent().pop().unwrap();
    assert!(status(&ok).starts_with("SIP/2.0 200"), "{ok}");
}

#[test]
fn never_mode_refuses_untrusted_sources_as_before() {
    let mut p = office(AuthMode::Never);
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "n1",
        "z9hG4bKn1",
        1,
        None,
        "",
    ));
    let refused = p.take_sent().pop().unwrap();
    assert!(status(&refused).starts_with("SIP/2.0 403"), "{refused}");
    assert!(headers(&refused, "WWW-Authenticate").is_empty());
    assert_eq!(p.ua.auth_counters(), Default::default());
}

#[test]
fn trusted_peers_assert_callers_under_untrusted_and_authenticate_under_always() {
    let mut p = office(AuthMode::Untrusted);
    p.from = PHONE.parse().unwrap();
    p.send(&invite("t1", "z9hG4bKt1", "*46", SDP));
    assert!(status(&p.take_sent()[0]).starts_with("SIP/2.0 100"));
    assert!(matches!(&p.events[0], UaEvent::IncomingCall { caller, .. } if caller == "1001"));

    let mut p = office(AuthMode::Always);
    p.from = PHONE.parse().unwrap();
    p.send(&invite("t2", "z9hG4bKt2", "*46", SDP));
    let challenge = p.take_sent().pop().unwrap();
    assert!(status(&challenge).starts_with("SIP/2.0 401"), "{challenge}");
}

#[test]
fn an_untrusted_request_whose_method_is_not_challenged_cannot_make_state() {
    let mut p = office(AuthMode::Untrusted);
    let mut settings = auth_settings(AuthMode::Untrusted);
    settings.methods = vec!["SUBSCRIBE".into()];
    p.ua.set_auth(settings, [9; 32], p.now);
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "x1",
        "z9hG4bKx1",
        1,
        None,
        "",
    ));
    let refused = p.take_sent().pop().unwrap();
    assert!(status(&refused).starts_with("SIP/2.0 403"), "{refused}");
}

#[test]
fn an_untrusted_phone_cancels_its_authenticated_call_without_credentials() {
    let mut p = office(AuthMode::Untrusted);
    let answer = call_with(&mut p, "cx1", "1001", "1001", "s3cret", "");
    assert!(status(&answer).starts_with("SIP/2.0 100"), "{answer}");
    let id = p.incoming_id();
    // CANCEL names the authenticated INVITE's branch; it is never challenged.
    let cancel = request("CANCEL", "*46", "1001", "cx1", "z9hG4bKcx1b", 2, None, "");
    p.send(&cancel);
    let sent = p.take_sent();
    assert!(status(&sent[0]).starts_with("SIP/2.0 200"), "{sent:?}");
    assert!(status(&sent[1]).starts_with("SIP/2.0 487"), "{sent:?}");
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::Cancelled
    }));
}

#[test]
fn with_auth_on_an_untrusted_phone_is_limited_like_any_source() {
    use crate::sip::limits::{LimitSettings, Rate};
    let mut p = office(AuthMode::Untrusted);
    p.ua.set_limits(
        LimitSettings {
            invite: Rate::new(1, 2),
            // Were the phone counted as untrusted, this would silence it at once.
            untrusted: Rate::new(1, 1),
            ..LimitSettings::default()
        },
        p.now,
    );
    for i in 0..2 {
        p.send(&request(
            "INVITE",
            "*46",
            "1001",
            &format!("lm{i}"),
            &format!("z9hG4bKlm{i}"),
            1,
            None,
            "",
        ));
        let answer = p.take_sent().pop().unwrap();
        assert!(status(&answer).starts_with("SIP/2.0 401"), "{answer}");
    }
    p.send(&request(
        "INVITE",
        "*46",
        "1001",
        "lm2",
        "z9hG4bKlm2",
        1,
        None,
        "",
    ));
    let busy = p.take_sent().pop().unwrap();
    assert!(status(&busy).starts_with("SIP/2.0 503"), "{busy}");
}

#[test]
fn only_the_caller_may_end_or_key_its_call() {
    let mut p = office(AuthMode::Untrusted);
    let answer = call_with(&mut p, "cb1", "1001", "1001", "s3cret", "");
    assert!(status(&answer).starts_with("SIP/2.0 100"), "{answer}");
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().unwrap();
    let tag = Phone::to_tag(&ok);
    p.send(&request(
        "ACK",
        "*46",
        "1001",
        "cb1",
        "z9hG4bKcb1c",
        2,
        Some(&tag),
        "",
    ));
    // 1002 learned the dialog and tries to hang it up, then to press a key in it.
    for (method, cseq, extra) in [
        ("BYE", 3, String::new()),
        (
            "INFO",
            5,
            "Content-Type: application/dtmf-relay\r\n".to_string(),
        ),
    ] {
        p.send(&request(
            method,
            "*46",
            "1001",
            "cb1",
            &format!("z9hG4bKcb{cseq}"),
            cseq,
            Some(&tag),
            &extra,
        ));
        let nonce = nonce_of(&p.take_sent().pop().unwrap(), DigestAlgorithm::Sha256);
        let auth = authorization(
            "1002",
            "other",
            DigestAlgorithm::Sha256,
            &nonce,
            1,
            method,
            "sip:*46@127.0.0.1",
        );
        let text = request(
            method,
            "*46",
            "1001",
            "cb1",
            &format!("z9hG4bKcb{}", cseq + 1),
            cseq + 1,
            Some(&tag),
            &format!("{extra}{auth}"),
        );
        p.send(&text);
        let refused = p.take_sent().pop().unwrap();
        assert!(status(&refused).starts_with("SIP/2.0 403"), "{refused}");
    }
    assert_eq!(p.ua.active_calls(), 1);
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::CallEnded { .. } | UaEvent::Key { .. })));
}

/// An in-dialog request of call `call_id` by 1001 carrying `body`, authenticated with `nonce`
/// and count `nc` when given.
fn keyed_info(call_id: &str, cseq: u32, tag: &str, auth: &str, body: &str) -> String {
    let text = request(
        "INFO",
        "*46",
        "1001",
        call_id,
        &format!("z9hG4bK{call_id}{cseq}"),
        cseq,
        Some(tag),
        &format!("Content-Type: application/dtmf-relay\r\n{auth}"),
    );
    text.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
    )
}

#[test]
fn an_info_challenged_as_stale_keeps_its_first_time_when_sent_again() {
    // Linphone sends each press as RFC 4733 and as INFO. Past the nonce lifetime its INFO
    // meets `stale=true` and comes back about a second later; its key must keep the first
    // attempt's time, or the call's merger would count the press twice.
    let mut p = office(AuthMode::Untrusted);
    let call_id = "ki1";
    let answer = call_with(&mut p, call_id, "1001", "1001", "s3cret", "");
    assert!(status(&answer).starts_with("SIP/2.0 100"), "{answer}");
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().unwrap();
    let tag = Phone::to_tag(&ok);
    p.send(&request(
        "ACK",
        "*46",
        "1001",
        call_id,
        "z9hG4bKki1ack",
        2,
        Some(&tag),
        "",
    ));
    let old_nonce = nonce_of(
        &answer_challenge(&mut p, call_id, &tag),
        DigestAlgorithm::Sha256,
    );
    let auth = |nonce: &str, nc: u32| {
        authorization(
            "1001",
            "s3cret",
            DigestAlgorithm::Sha256,
            nonce,
            nc,
            "INFO",
            "sip:*46@127.0.0.1",
        )
    };
    // Six minutes on (nonce lifetime 5 min) the phone presses 1 with the nonce it has.
    let later = p.now + Duration::from_secs(360);
    p.advance_to(later);
    p.take_sent();
    p.events.clear();
    let body = "Signal=1\r\nDuration=160\r\n";
    p.send(&keyed_info(call_id, 4, &tag, &auth(&old_nonce, 2), body));
    let stale = p.take_sent().pop().unwrap();
    assert!(status(&stale).starts_with("SIP/2.0 401"), "{stale}");
    assert!(stale.contains("stale=true"), "{stale}");
    let fresh = nonce_of(&stale, DigestAlgorithm::Sha256);
    let first_attempt = p.now;
    let retry = first_attempt + Duration::from_millis(1100);
    p.advance_to(retry);
    p.send(&keyed_info(call_id, 5, &tag, &auth(&fresh, 1), body));
    let ok = p.take_sent().pop().unwrap();
    assert!(status(&ok).starts_with("SIP/2.0 200"), "{ok}");
    let sent: Vec<Instant> = p
        .events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Key {
                key: Key::D1, sent, ..
            } => Some(*sent),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [first_attempt]);
    // The next press is a new INFO no challenge preceded: it is dated when it comes.
    p.events.clear();
    let next = retry + Duration::from_secs(2);
    p.advance_to(next);
    p.send(&keyed_info(call_id, 6, &tag, &auth(&fresh, 2), body));
    assert!(status(&p.take_sent().pop().unwrap()).starts_with("SIP/2.0 200"));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::Key { sent, .. } if *sent == next)));
}

/// Sends an unauthenticated INFO in the call to get a challenge; returns the 401.
fn answer_challenge(p: &mut Phone, call_id: &str, tag: &str) -> String {
    p.send(&keyed_info(
        call_id,
        3,
        tag,
        "",
        "Signal=2\r\nDuration=160\r\n",
    ));
    let challenge = p.take_sent().pop().unwrap();
    assert!(status(&challenge).starts_with("SIP/2.0 401"), "{challenge}");
    challenge
}
