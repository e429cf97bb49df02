use super::*;

fn etags() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("e{n}")
    }
}

fn req(if_match: Option<&str>, expires: Option<u32>, has_body: bool) -> PublishRequest {
    PublishRequest {
        extension: "1001".into(),
        if_match: if_match.map(str::to_string),
        expires,
        has_body,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_four_kinds_of_publish_each_get_a_fresh_etag() {
    let t0 = Instant::now();
    let mut t = PublicationTable::new();
    let p = PublishPolicy::default();
    let mut gen = etags();
    assert_eq!(
        t.publish(req(None, Some(600), true), &p, t0, &mut gen),
        PublishDecision::Initial {
            etag: "e1".into(),
            expires: 600
        }
    );
    assert_eq!(
        t.publish(req(Some("e1"), None, false), &p, t0 + secs(10), &mut gen),
        PublishDecision::Refresh {
            etag: "e2".into(),
            expires: 3600
        }
    );
    assert_eq!(
        t.publish(
            req(Some("e1"), Some(600), false),
            &p,
            t0 + secs(20),
            &mut gen
        ),
        PublishDecision::Reject(PublishReject::ConditionalRequestFailed),
        "a replaced etag is dead"
    );
    assert_eq!(
        t.publish(
            req(Some("e2"), Some(9999), true),
            &p,
            t0 + secs(20),
            &mut gen
        ),
        PublishDecision::Modify {
            etag: "e3".into(),
            expires: 3600
        }
    );
    assert_eq!(t.get("e3").unwrap().expires_at, t0 + secs(3620));
    assert_eq!(
        t.publish(req(Some("e3"), Some(0), false), &p, t0 + secs(30), &mut gen),
        PublishDecision::Remove {
            etag: "e3".into(),
            extension: "1001".into()
        }
    );
    assert!(t.is_empty());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn bad_initial_publishes_are_400() {
    let t0 = Instant::now();
    let mut t = PublicationTable::new();
    let p = PublishPolicy::default();
    for r in [req(None, Some(600), false), req(None, Some(0), true)] {
        let d = t.publish(r, &p, t0, etags());
        let PublishDecision::Reject(reject) = d else {
            panic!("{d:?}")
        };
        assert_eq!(reject.code(), 400);
    }
    assert!(t.is_empty());
}

#[test]
fn unknown_expired_or_foreign_etags_are_412() {
    let t0 = Instant::now();
    let mut t = PublicationTable::new();
    let p = PublishPolicy::default();
    let mut gen = etags();
    t.publish(req(None, Some(60), true), &p, t0, &mut gen);
    let d = t.publish(req(Some("nope"), None, true), &p, t0, &mut gen);
    assert_eq!(
        d,
        PublishDecision::Reject(PublishReject::ConditionalRequestFailed)
    );
    assert_eq!(PublishReject::ConditionalRequestFailed.code(), 412);
    let mut other = req(Some("e1"), None, false);
    other.extension = "1002".into();
    assert_eq!(
        t.publish(other, &p, t0, &mut gen),
        PublishDecision::Reject(PublishReject::ConditionalRequestFailed)
    );
    // At its expiry the etag is dead even before the timer ran.
    assert_eq!(
        t.publish(req(Some("e1"), Some(0), false), &p, t0 + secs(60), &mut gen),
        PublishDecision::Reject(PublishReject::ConditionalRequestFailed)
    );
}

#[test]
fn short_intervals_are_423_with_min_expires() {
    let t0 = Instant::now();
    let mut t = PublicationTable::new();
    let p = PublishPolicy {
        min_expires: 120,
        ..PublishPolicy::default()
    };
    let d = t.publish(req(None, Some(119), true), &p, t0, etags());
    let PublishDecision::Reject(reject) = d else {
        panic!("{d:?}")
    };
    assert_eq!(reject.code(), 423);
    assert_eq!(reject.headers(), [("Min-Expires", "120".to_string())]);
    let mut gen = etags();
    t.publish(req(None, Some(120), true), &p, t0, &mut gen);
    assert_eq!(
        t.publish(req(Some("e1"), Some(30), false), &p, t0, &mut gen),
        PublishDecision::Reject(PublishReject::IntervalTooBrief { min_expires: 120 })
    );
    assert!(
        t.get("e1").is_some(),
        "a refused refresh leaves the publication alone"
    );
}

#[test]
fn publications_expire_on_the_virtual_clock() {
    let t0 = Instant::now();
    let mut t = PublicationTable::new();
    let p = PublishPolicy::default();
    let mut gen = etags();
    t.publish(req(None, Some(60), true), &p, t0, &mut gen);
    let mut desk = req(None, Some(300), true);
    desk.extension = "1002".into();
    t.publish(desk, &p, t0, &mut gen);
    assert_eq!(t.poll_timeout(), Some(t0 + secs(60)));
    assert!(t.handle_timeout(t0 + secs(59)).is_empty());
    assert_eq!(
        t.handle_timeout(t0 + secs(60)),
        [ExpiredPublication {
            extension: "1001".into(),
            etag: "e1".into()
        }]
    );
    assert_eq!(t.poll_timeout(), Some(t0 + secs(300)));
    assert_eq!(t.publications_of("1002").len(), 1);
    assert_eq!(t.handle_timeout(t0 + secs(1000)).len(), 1);
    assert!(t.is_empty());
}

#[test]
fn several_phones_publish_for_one_extension_and_repeated_etags_are_made_unique() {
    let t0 = Instant::now();
    let mut t = PublicationTable::new();
    let p = PublishPolicy::default();
    let a = t.publish(req(None, None, true), &p, t0, || "same".into());
    let b = t.publish(req(None, None, true), &p, t0, || "same".into());
    let (PublishDecision::Initial { etag: a, .. }, PublishDecision::Initial { etag: b, .. }) =
        (a, b)
    else {
        panic!()
    };
    assert_ne!(a, b);
    assert_eq!(t.publications_of("1001").len(), 2);
    let c = t.publish(req(None, None, true), &p, t0, String::new);
    let PublishDecision::Initial { etag: c, .. } = c else {
        panic!()
    };
    assert!(!c.is_empty());
}

#[test]
fn publish_policy_validation() {
    assert_eq!(PublishPolicy::default().validate(), Ok(()));
    let p = PublishPolicy {
        min_expires: 0,
        ..PublishPolicy::default()
    };
    assert_eq!(p.validate(), Err(PolicyError::ZeroMinimum));
}
