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

/// A request from the office phone. Each test names only what differs from an
/// out-of-dialog request by 1001 with CSeq 1; an INVITE carries [`SDP`].
#[derive(Clone)]
struct Req {
    method: String,
    target: String,
    from: String,
    call_id: String,
    cseq: u32,
    /// `None`: `z9hG4bK{call_id}-{cseq}`, so a CANCEL or a non-2xx ACK names its INVITE's
    /// transaction and every other request a new one.
    branch: Option<String>,
    /// Set for an in-dialog request.
    to_tag: Option<String>,
    /// Header lines, each ending in CRLF.
    headers: String,
    /// Content type and body.
    body: Option<(String, String)>,
}

/// `method` to `target` (an extension or `*46`) in call `call_id`.
fn req(method: &str, target: &str, call_id: &str) -> Req {
    Req {
        method: method.into(),
        target: target.into(),
        from: "1001".into(),
        call_id: call_id.into(),
        cseq: 1,
        branch: None,
        to_tag: None,
        headers: String::new(),
        body: (method == "INVITE").then(|| ("application/sdp".into(), SDP.into())),
    }
}

impl Req {
    /// Sent by extension `from` (From and Contact).
    fn from(mut self, from: &str) -> Req {
        self.from = from.into();
        self
    }

    fn cseq(mut self, cseq: u32) -> Req {
        self.cseq = cseq;
        self
    }

    /// A branch of its own, as the ACK of a 2xx needs.
    fn branch(mut self, branch: &str) -> Req {
        self.branch = Some(branch.into());
        self
    }

    /// In the dialog whose To tag is `tag`.
    fn in_dialog(mut self, tag: &str) -> Req {
        self.to_tag = Some(tag.into());
        self
    }

    /// Adds header lines (each ending in CRLF).
    fn header(mut self, lines: &str) -> Req {
        self.headers.push_str(lines);
        self
    }

    fn body(mut self, content_type: &str, body: &str) -> Req {
        self.body = Some((content_type.into(), body.into()));
        self
    }

    /// The request URI, as the phone puts it in `uri=` too.
    fn uri(&self) -> String {
        format!("sip:{}@127.0.0.1", self.target)
    }

    /// With the phone's SHA-256 answer to `nonce` as `user`/`secret`, count `nc`.
    fn authorized(self, user: &str, secret: &str, nonce: &str, nc: u32) -> Req {
        self.authorized_with(DigestAlgorithm::Sha256, user, secret, nonce, nc)
    }

    /// The same request sent again (next CSeq, new transaction) answering a challenge's
    /// `nonce` as `user`/`secret`, as a phone does after a 401.
    fn retry(self, user: &str, secret: &str, nonce: &str) -> Req {
        let cseq = self.cseq + 1;
        self.cseq(cseq).authorized(user, secret, nonce, 1)
    }

    /// With the phone's `Authorization` for this method and URI (RFC 7616 §3.4.1, qop=auth).
    fn authorized_with(
        self,
        algorithm: DigestAlgorithm,
        user: &str,
        secret: &str,
        nonce: &str,
        nc: u32,
    ) -> Req {
        let h = |s: String| digest_hex(algorithm, s.as_bytes());
        let ha1 = h(format!("{user}:{REALM}:{secret}"));
        let uri = self.uri();
        let ha2 = h(format!("{}:{uri}", self.method));
        let cnonce = "4b2f9e1a";
        let response = h(format!("{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}"));
        self.header(&format!(
            "Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm={}, cnonce=\"{cnonce}\", \
             qop=auth, nc={nc:08x}\r\n",
            algorithm.as_str()
        ))
    }

    /// The SIP text.
    fn text(&self) -> String {
        let Req {
            method,
            target,
            from,
            call_id,
            cseq,
            headers,
            ..
        } = self;
        let branch = self
            .branch
            .clone()
            .unwrap_or_else(|| format!("z9hG4bK{call_id}-{cseq}"));
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let (ct, body) = match &self.body {
            Some((ct, body)) => (format!("Content-Type: {ct}\r\n"), body.as_str()),
            None => (String::new(), ""),
        };
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {OFFICE};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{from}@192.0.2.1>;tag=ph-{call_id}\r\n\
             To: <sip:{target}@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:{from}@{OFFICE}>\r\n{headers}{ct}Content-Length: {}\r\n\r\n{body}",
            self.uri(),
            body.len()
        )
    }
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

/// Sends `r` without credentials, expects a 401 and returns its SHA-256 nonce.
fn challenge(p: &mut Phone, r: &Req) -> String {
    challenge_for(p, r, DigestAlgorithm::Sha256)
}

/// Sends `r` without credentials, expects a 401 and returns its nonce for `algorithm`.
fn challenge_for(p: &mut Phone, r: &Req, algorithm: DigestAlgorithm) -> String {
    p.send(&r.text());
    let unauthorized = p.take_sent().pop().expect("an answer");
    assert!(
        status(&unauthorized).starts_with("SIP/2.0 401"),
        "{unauthorized}"
    );
    nonce_of(&unauthorized, algorithm)
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
    let invite = req("INVITE", "*46", call_id).from(from).header(extra);
    let nonce = challenge(p, &invite);
    p.send(&invite.retry(user, secret, &nonce).text());
    p.take_sent().pop().expect("an answer")
}

/// An authenticated call from 1001 to `*46`, answered and acknowledged; returns its handle
/// and the dialog's To tag.
fn established(p: &mut Phone, call_id: &str) -> (CallHandle, String) {
    let answer = call_with(p, call_id, "1001", "1001", "s3cret", "");
    assert!(status(&answer).starts_with("SIP/2.0 100"), "{answer}");
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().expect("a 200 OK");
    let tag = Phone::to_tag(&ok);
    let ack = req("ACK", "*46", call_id)
        .cseq(2)
        .branch(&format!("z9hG4bK{call_id}ack"))
        .in_dialog(&tag);
    p.send(&ack.text());
    (id, tag)
}

#[test]
fn an_office_phone_is_challenged_answers_and_calls_then_hangs_up_with_its_own_credentials() {
    let mut p = office(AuthMode::Untrusted);
    let invite = req("INVITE", "*46", "a1").text();
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
    p.send(&req("ACK", "*46", "a1").in_dialog(&tag).text());
    assert!(p.take_sent().is_empty());
    assert!(p.events.is_empty(), "no call before authentication");

    let nonce = nonce_of(&unauthorized, DigestAlgorithm::Sha256);
    let invite = req("INVITE", "*46", "a1").cseq(2);
    p.send(&invite.authorized("1001", "s3cret", &nonce, 1).text());
    assert!(status(&p.take_sent()[0]).starts_with("SIP/2.0 100"));
    let id = p.incoming_id();
    assert!(matches!(&p.events[0], UaEvent::IncomingCall { caller, .. } if caller == "1001"));
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().unwrap();
    assert!(status(&ok).starts_with("SIP/2.0 200"), "{ok}");
    let tag = Phone::to_tag(&ok);
    let ack = req("ACK", "*46", "a1").cseq(2).branch("z9hG4bKa1c");
    p.send(&ack.in_dialog(&tag).text());
    assert!(p.take_sent().is_empty(), "ACK is never challenged");

    // BYE is challenged too; the phone answers with the same nonce, counting on.
    let bye = req("BYE", "*46", "a1").cseq(3).in_dialog(&tag);
    p.send(&bye.text());
    let bye_401 = p.take_sent().pop().unwrap();
    assert!(status(&bye_401).starts_with("SIP/2.0 401"), "{bye_401}");
    assert_eq!(p.ua.active_calls(), 1);
    p.send(&bye.cseq(4).authorized("1001", "s3cret", &nonce, 2).text());
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
    let invite = req("INVITE", "*46", "m1");
    let nonce = challenge_for(&mut p, &invite, DigestAlgorithm::Md5);
    let md5 = invite
        .cseq(2)
        .authorized_with(DigestAlgorithm::Md5, "1001", "s3cret", &nonce, 1);
    p.send(&md5.text());
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
    let nonce = challenge(&mut p, &req("INVITE", "*46", "r1"));
    let authorized = req("INVITE", "*46", "r1")
        .cseq(2)
        .authorized("1001", "s3cret", &nonce, 1);
    p.send(&authorized.text());
    assert!(status(&p.take_sent()[0]).starts_with("SIP/2.0 100"));
    let replay = Req {
        call_id: "r2".into(),
        ..authorized
    };
    p.send(&replay.text());
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
    let publish = req("PUBLISH", "1002", "i3").header("Event: presence\r\nExpires: 600\r\n");
    let nonce = challenge(&mut p, &publish);
    p.send(&publish.retry("1001", "s3cret", &nonce).text());
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
    let publish = req("PUBLISH", "1001", "pb1")
        .header("Event: presence\r\nExpires: 600\r\n")
        .body("application/pidf+xml", AWAY_PIDF);
    let nonce = challenge(&mut p, &publish);
    p.send(&publish.retry("1001", "s3cret", &nonce).text());
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
    let subscribe = req("SUBSCRIBE", target, call_id)
        .from(watcher)
        .header(&presence_headers(600));
    let nonce = challenge(p, &subscribe);
    p.send(&subscribe.retry(user, secret, &nonce).text());
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
    let refresh = req("SUBSCRIBE", "1001", "st1")
        .from("1002")
        .in_dialog(&tag)
        .header(&presence_headers(600));
    p.send(
        &refresh
            .clone()
            .cseq(3)
            .authorized("1002", "other", &nonce, 2)
            .text(),
    );
    let stale = p.take_sent().pop().unwrap();
    assert!(status(&stale).starts_with("SIP/2.0 401"), "{stale}");
    let challenges = headers(&stale, "WWW-Authenticate");
    assert!(
        challenges.iter().all(|c| c.ends_with("stale=true")),
        "{stale}"
    );
    assert_eq!(Phone::to_tag(&stale), tag, "in-dialog: the dialog's tag");
    let fresh = nonce_of(&stale, DigestAlgorithm::Sha256);
    p.send(
        &refresh
            .cseq(4)
            .authorized("1002", "other", &fresh, 1)
            .text(),
    );
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
    let end = req("SUBSCRIBE", "1001", "o1")
        .cseq(3)
        .in_dialog(&tag)
        .header(&presence_headers(0));
    let nonce = challenge(&mut p, &end);
    p.send(&end.retry("1001", "s3cret", &nonce).text());
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
    p.send(&req("INVITE", "*46", "b9").text());
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
    p.send(&req("OPTIONS", "1001", "op1").text());
    let ok = p.take_sent().pop().unwrap();
    assert!(status(&ok).starts_with("SIP/2.0 200"), "{ok}");
}

#[test]
fn never_mode_refuses_untrusted_sources_as_before() {
    let mut p = office(AuthMode::Never);
    p.send(&req("INVITE", "*46", "n1").text());
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
    p.send(&req("INVITE", "*46", "x1").text());
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
    p.send(&req("CANCEL", "*46", "cx1").cseq(2).text());
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
        p.send(&req("INVITE", "*46", &format!("lm{i}")).text());
        let answer = p.take_sent().pop().unwrap();
        assert!(status(&answer).starts_with("SIP/2.0 401"), "{answer}");
    }
    p.send(&req("INVITE", "*46", "lm2").text());
    let busy = p.take_sent().pop().unwrap();
    assert!(status(&busy).starts_with("SIP/2.0 503"), "{busy}");
}

#[test]
fn only_the_caller_may_end_or_key_its_call() {
    let mut p = office(AuthMode::Untrusted);
    let (_, tag) = established(&mut p, "cb1");
    // 1002 learned the dialog and tries to hang it up, then to press a key in it.
    for (method, cseq, extra) in [
        ("BYE", 3, ""),
        ("INFO", 5, "Content-Type: application/dtmf-relay\r\n"),
    ] {
        let r = req(method, "*46", "cb1")
            .cseq(cseq)
            .in_dialog(&tag)
            .header(extra);
        let nonce = challenge(&mut p, &r);
        p.send(&r.retry("1002", "other", &nonce).text());
        let refused = p.take_sent().pop().unwrap();
        assert!(status(&refused).starts_with("SIP/2.0 403"), "{refused}");
    }
    assert_eq!(p.ua.active_calls(), 1);
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::CallEnded { .. } | UaEvent::Key { .. })));
}

/// An in-dialog INFO of call `call_id` by 1001 carrying the dtmf-relay `body`.
fn keyed_info(call_id: &str, cseq: u32, tag: &str, body: &str) -> Req {
    req("INFO", "*46", call_id)
        .cseq(cseq)
        .in_dialog(tag)
        .body("application/dtmf-relay", body)
}

#[test]
fn an_info_challenged_as_stale_keeps_its_first_time_when_sent_again() {
    // Linphone sends each press as RFC 4733 and as INFO. Past the nonce lifetime its INFO
    // meets `stale=true` and comes back about a second later; its key must keep the first
    // attempt's time, or the call's merger would count the press twice.
    let mut p = office(AuthMode::Untrusted);
    let call_id = "ki1";
    let (_, tag) = established(&mut p, call_id);
    let old_nonce = challenge(
        &mut p,
        &keyed_info(call_id, 3, &tag, "Signal=2\r\nDuration=160\r\n"),
    );
    let press = |cseq: u32, nonce: &str, nc: u32| {
        keyed_info(call_id, cseq, &tag, "Signal=1\r\nDuration=160\r\n")
            .authorized("1001", "s3cret", nonce, nc)
            .text()
    };
    // Six minutes on (nonce lifetime 5 min) the phone presses 1 with the nonce it has.
    let later = p.now + Duration::from_secs(360);
    p.advance_to(later);
    p.take_sent();
    p.events.clear();
    p.send(&press(4, &old_nonce, 2));
    let stale = p.take_sent().pop().unwrap();
    assert!(status(&stale).starts_with("SIP/2.0 401"), "{stale}");
    assert!(stale.contains("stale=true"), "{stale}");
    let fresh = nonce_of(&stale, DigestAlgorithm::Sha256);
    let first_attempt = p.now;
    let retry = first_attempt + Duration::from_millis(1100);
    p.advance_to(retry);
    p.send(&press(5, &fresh, 1));
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
    p.send(&press(6, &fresh, 2));
    assert!(status(&p.take_sent().pop().unwrap()).starts_with("SIP/2.0 200"));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::Key { sent, .. } if *sent == next)));
}
