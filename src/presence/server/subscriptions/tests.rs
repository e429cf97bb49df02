use super::*;

fn target() -> DialogTarget {
    DialogTarget {
        local_uri: "<sip:1001@pbx>".into(),
        remote_uri: "<sip:2002@pbx>".into(),
        remote_target: "sip:2002@10.0.0.2:5060".into(),
        route_set: vec!["<sip:proxy;lr>".into()],
    }
}

fn initial(
    call_id: &str,
    extension: &str,
    watcher: &str,
    expires: Option<u32>,
) -> SubscribeRequest {
    SubscribeRequest {
        dialog: DialogKey {
            call_id: call_id.into(),
            remote_tag: format!("rt-{call_id}"),
            local_tag: None,
        },
        cseq: 1,
        event_id: None,
        extension: extension.into(),
        watcher: watcher.into(),
        accept: vec![],
        expires,
        target: target(),
    }
}

fn in_dialog(sub: &SubscriptionRecord, cseq: u32, expires: Option<u32>) -> SubscribeRequest {
    SubscribeRequest {
        dialog: DialogKey {
            call_id: sub.call_id.clone(),
            remote_tag: sub.remote_tag.clone(),
            local_tag: Some(sub.local_tag.clone()),
        },
        cseq,
        event_id: sub.event_id.clone(),
        extension: String::new(),
        watcher: sub.watcher.clone(),
        accept: vec![],
        expires,
        target: DialogTarget {
            remote_target: String::new(),
            ..target()
        },
    }
}

fn wall0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn table(t0: Instant) -> SubscriptionTable {
    SubscriptionTable::new(wall0(), t0)
}

fn accept(d: SubscribeDecision) -> (SubscriptionId, u32, BodyFormat, bool) {
    match d {
        SubscribeDecision::Accept {
            id,
            granted_expires,
            format,
            new,
            ..
        } => (id, granted_expires, format, new),
        other => panic!("expected Accept, got {other:?}"),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn an_initial_subscribe_is_accepted_with_pidf_and_the_requested_interval() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let d = t.subscribe(
        initial("c1", "1001", "2002", Some(600)),
        &policy,
        t0,
        || "lt1".into(),
    );
    let SubscribeDecision::Accept {
        id,
        local_tag,
        granted_expires,
        format,
        new,
    } = d
    else {
        panic!("{d:?}")
    };
    assert_eq!(
        (local_tag.as_str(), granted_expires, format, new),
        ("lt1", 600, BodyFormat::Pidf, true)
    );
    let sub = t.get(id).unwrap();
    assert_eq!(sub.expires_at, t0 + secs(600));
    assert_eq!(sub.record.expires_at, wall0() + secs(600));
    assert_eq!(sub.record.remote_target, "sip:2002@10.0.0.2:5060");
    assert_eq!(sub.record.route_set, ["<sip:proxy;lr>"]);
    assert_eq!(sub.record.local_cseq, 0);
    assert_eq!(
        sub.active_state(t0 + Duration::from_millis(500)),
        "active;expires=600"
    );
    assert_eq!(t.watchers_of("1001"), [id]);
    assert_eq!(t.watcher_count("1001"), 1);
    assert_eq!(t.watcher_count("1002"), 0);
}

#[test]
fn expires_is_defaulted_clamped_and_refused_below_the_minimum() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy {
        default_expires: 1800,
        ..SubscribePolicy::default()
    };
    let (_, granted, _, _) =
        accept(t.subscribe(initial("a", "1001", "w", None), &policy, t0, || "x".into()));
    assert_eq!(granted, 1800);
    let (_, granted, _, _) = accept(t.subscribe(
        initial("b", "1001", "w", Some(86_400)),
        &policy,
        t0,
        || "y".into(),
    ));
    assert_eq!(granted, 3600);
    let (_, granted, _, _) = accept(t.subscribe(
        initial("c", "1001", "w", Some(60)),
        &policy,
        t0,
        || "z".into(),
    ));
    assert_eq!(granted, 60, "the minimum itself is fine");
    let d = t.subscribe(initial("d", "1001", "w", Some(59)), &policy, t0, || {
        "q".into()
    });
    let SubscribeDecision::Reject(reject) = d else {
        panic!("{d:?}")
    };
    assert_eq!(reject.code(), 423);
    assert_eq!(reject.headers(), [("Min-Expires", "60".to_string())]);
    assert_eq!(t.len(), 3);
}

#[test]
fn accept_negotiates_pidf_then_xpidf_else_406() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let strict = SubscribePolicy::default();
    let both = SubscribePolicy {
        allow_xpidf: true,
        ..SubscribePolicy::default()
    };
    let with_accept = |call: &str, accept: &[&str]| SubscribeRequest {
        accept: accept.iter().map(|s| s.to_string()).collect(),
        ..initial(call, "1001", "w", Some(600))
    };
    let (_, _, f, _) = accept(t.subscribe(
        with_accept(
            "1",
            &["application/xpidf+xml", "application/pidf+xml;q=0.5"],
        ),
        &both,
        t0,
        || "a".into(),
    ));
    assert_eq!(f, BodyFormat::Pidf, "pidf wins when listed");
    let (_, _, f, _) = accept(t.subscribe(
        with_accept("2", &["application/xpidf+xml"]),
        &both,
        t0,
        || "b".into(),
    ));
    assert_eq!(f, BodyFormat::Xpidf);
    let (_, _, f, _) = accept(t.subscribe(with_accept("3", &["*/*"]), &strict, t0, || "c".into()));
    assert_eq!(f, BodyFormat::Pidf);
    let d = t.subscribe(
        with_accept("4", &["application/xpidf+xml"]),
        &strict,
        t0,
        || "d".into(),
    );
    let SubscribeDecision::Reject(reject) = d else {
        panic!("{d:?}")
    };
    assert_eq!(reject.code(), 406);
    assert_eq!(
        reject.headers(),
        [("Accept", "application/pidf+xml".to_string())]
    );
    let d = t.subscribe(with_accept("5", &["text/plain"]), &both, t0, || "e".into());
    let SubscribeDecision::Reject(reject) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        reject.headers(),
        [(
            "Accept",
            "application/pidf+xml, application/xpidf+xml".to_string()
        )]
    );
}

#[test]
fn allow_lists_refuse_other_watchers_and_unlisted_extensions() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy {
        watchers: WatcherPolicy::AllowList(HashMap::from([(
            "1001".to_string(),
            vec!["2002".to_string()],
        )])),
        ..SubscribePolicy::default()
    };
    accept(
        t.subscribe(initial("1", "1001", "2002", None), &policy, t0, || {
            "a".into()
        }),
    );
    for (call, ext, watcher) in [("2", "1001", "3003"), ("3", "1002", "2002")] {
        let d = t.subscribe(initial(call, ext, watcher, None), &policy, t0, || {
            "b".into()
        });
        assert_eq!(d, SubscribeDecision::Reject(SubscribeReject::Forbidden));
    }
    assert_eq!(t.len(), 1);
}

#[test]
fn a_refresh_extends_the_same_subscription_and_updates_the_target() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let (id, _, _, _) = accept(t.subscribe(
        initial("c", "1001", "w", Some(600)),
        &policy,
        t0,
        || "lt".into(),
    ));
    let rec = t.record(id).unwrap();
    let mut req = in_dialog(&rec, 2, Some(1200));
    req.target.remote_target = "sip:w@10.0.0.9:5070".into();
    let now = t0 + secs(500);
    let (rid, granted, _, new) = accept(t.subscribe(req, &policy, now, || unreachable!()));
    assert_eq!((rid, granted, new), (id, 1200, false));
    let sub = t.get(id).unwrap();
    assert_eq!(sub.expires_at, now + secs(1200));
    assert_eq!(sub.record.remote_target, "sip:w@10.0.0.9:5070");
    assert_eq!(sub.record.remote_cseq, 2);
    assert_eq!(t.poll_timeout(), Some(now + secs(1200)));
    assert!(
        t.handle_timeout(t0 + secs(600)).is_empty(),
        "the old expiry is gone"
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn refreshes_for_unknown_dialogs_wrong_ids_or_old_cseqs_are_refused() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let mut req = initial("c", "1001", "w", Some(600));
    req.event_id = Some("e1".into());
    let (id, _, _, _) = accept(t.subscribe(req, &policy, t0, || "lt".into()));
    let rec = t.record(id).unwrap();

    let mut unknown = in_dialog(&rec, 5, Some(600));
    unknown.dialog.local_tag = Some("other".into());
    assert_eq!(
        t.subscribe(unknown, &policy, t0, || unreachable!()),
        SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription)
    );
    let mut wrong_id = in_dialog(&rec, 5, Some(600));
    wrong_id.event_id = Some("e2".into());
    assert_eq!(
        t.subscribe(wrong_id, &policy, t0, || unreachable!())
            .clone(),
        SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription)
    );
    let d = t.subscribe(
        in_dialog(&rec, 1, Some(600)),
        &policy,
        t0,
        || unreachable!(),
    );
    let SubscribeDecision::Reject(reject) = d else {
        panic!("{d:?}")
    };
    assert_eq!(reject.code(), 500);
    let d = t.subscribe(in_dialog(&rec, 2, Some(10)), &policy, t0, || unreachable!());
    assert_eq!(
        d,
        SubscribeDecision::Reject(SubscribeReject::IntervalTooBrief { min_expires: 60 })
    );
    // A refused refresh leaves the subscription as it was.
    assert_eq!(t.get(id).unwrap().expires_at, t0 + secs(600));
    // Past its expiry a refresh finds nothing, even before the timer ran.
    let late = t.subscribe(
        in_dialog(&rec, 3, Some(600)),
        &policy,
        t0 + secs(600),
        || unreachable!(),
    );
    assert_eq!(
        late,
        SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription)
    );
    assert_eq!(SubscribeReject::NoSuchSubscription.code(), 481);
    assert_eq!(SubscribeReject::Forbidden.code(), 403);
    assert_eq!(SubscribeReject::BadEvent.code(), 489);
    assert_eq!(
        SubscribeReject::BadEvent.headers(),
        [("Allow-Events", "presence".to_string())]
    );
}

#[test]
fn expires_zero_unsubscribes_with_a_final_notify_cseq() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let (id, _, _, _) = accept(t.subscribe(
        initial("c", "1001", "w", Some(600)),
        &policy,
        t0,
        || "lt".into(),
    ));
    assert_eq!(t.next_cseq(id), Some(1));
    assert_eq!(t.next_cseq(id), Some(2));
    let rec = t.record(id).unwrap();
    let d = t.subscribe(
        in_dialog(&rec, 2, Some(0)),
        &policy,
        t0 + secs(10),
        || unreachable!(),
    );
    let SubscribeDecision::Terminated(ended) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        (ended.id, ended.reason, ended.cseq),
        (id, EndReason::Unsubscribed, 3)
    );
    assert_eq!(ended.record.local_cseq, 3);
    assert_eq!(ended.reason.subscription_state(), "terminated");
    assert!(t.is_empty());
    assert_eq!(t.watcher_count("1001"), 0);
    assert_eq!(t.poll_timeout(), None);
    assert_eq!(t.next_cseq(id), None);
}

#[test]
fn an_initial_expires_zero_is_a_fetch_that_keeps_nothing() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let d = t.subscribe(
        initial("c", "1001", "w", Some(0)),
        &SubscribePolicy::default(),
        t0,
        || "lt".into(),
    );
    let SubscribeDecision::Terminated(ended) = d else {
        panic!("{d:?}")
    };
    assert_eq!((ended.reason, ended.cseq), (EndReason::Fetched, 1));
    assert_eq!(ended.record.local_tag, "lt");
    assert!(t.is_empty());
    // The next subscription gets a fresh id.
    let (id, _, _, _) = accept(t.subscribe(
        initial("d", "1001", "w", None),
        &SubscribePolicy::default(),
        t0,
        || "x".into(),
    ));
    assert_ne!(id, ended.id);
}

#[test]
fn subscriptions_expire_in_order_with_reason_timeout() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let (a, _, _, _) = accept(t.subscribe(
        initial("a", "1001", "w", Some(120)),
        &policy,
        t0,
        || "1".into(),
    ));
    let (b, _, _, _) = accept(t.subscribe(
        initial("b", "1001", "v", Some(60)),
        &policy,
        t0,
        || "2".into(),
    ));
    let (c, _, _, _) = accept(t.subscribe(
        initial("c", "1002", "w", Some(3600)),
        &policy,
        t0,
        || "3".into(),
    ));
    assert_eq!(t.poll_timeout(), Some(t0 + secs(60)));
    assert!(t.handle_timeout(t0 + secs(59)).is_empty());
    let ended = t.handle_timeout(t0 + secs(121));
    assert_eq!(ended.iter().map(|e| e.id).collect::<Vec<_>>(), [b, a]);
    assert!(ended
        .iter()
        .all(|e| e.reason == EndReason::Timeout && e.cseq == 1));
    assert_eq!(
        ended[0].reason.subscription_state(),
        "terminated;reason=timeout"
    );
    assert_eq!(t.watchers_of("1001"), Vec::<SubscriptionId>::new());
    assert_eq!(t.watchers_of("1002"), [c]);
    assert_eq!(t.poll_timeout(), Some(t0 + secs(3600)));
}

#[test]
fn a_refresh_from_a_watcher_no_longer_allowed_revokes_the_subscription() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let (id, _, _, _) = accept(t.subscribe(
        initial("c", "1001", "w", None),
        &SubscribePolicy::default(),
        t0,
        || "lt".into(),
    ));
    let rec = t.record(id).unwrap();
    let closed = SubscribePolicy {
        watchers: WatcherPolicy::AllowList(HashMap::new()),
        ..SubscribePolicy::default()
    };
    let d = t.subscribe(in_dialog(&rec, 2, None), &closed, t0, || unreachable!());
    let SubscribeDecision::Revoked(ended) = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        ended.reason.subscription_state(),
        "terminated;reason=rejected"
    );
    assert!(t.is_empty());
}

#[test]
fn remove_forgets_every_index() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let (id, _, _, _) =
        accept(t.subscribe(initial("c", "1001", "w", None), &policy, t0, || "lt".into()));
    let rec = t.record(id).unwrap();
    assert!(t.remove(id).is_some());
    assert!(t.remove(id).is_none());
    assert_eq!(t.poll_timeout(), None);
    assert_eq!(t.watcher_count("1001"), 0);
    assert_eq!(
        t.subscribe(in_dialog(&rec, 2, None), &policy, t0, || unreachable!()),
        SubscribeDecision::Reject(SubscribeReject::NoSuchSubscription)
    );
}

#[test]
fn records_round_trip_through_json_and_restore_keeps_expiry_and_cseq() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let (a, _, _, _) = accept(t.subscribe(
        initial("a", "1001", "w", Some(600)),
        &policy,
        t0,
        || "1".into(),
    ));
    let (b, _, _, _) = accept(t.subscribe(
        initial("b", "1001", "v", Some(60)),
        &policy,
        t0,
        || "2".into(),
    ));
    for _ in 0..7 {
        t.next_cseq(a);
    }
    let json = serde_json::to_string(&t.records()).unwrap();
    assert!(json.contains("\"expires_at\":1700000600000"), "{json}");
    let records: Vec<SubscriptionRecord> = serde_json::from_str(&json).unwrap();
    assert_eq!(records, t.records());

    // Restart 100 s later, on a new monotonic clock.
    let t1 = t0 + secs(5000);
    let (mut r, dropped) = SubscriptionTable::restore(records, wall0() + secs(100), t1);
    assert_eq!(dropped, [b], "b expired while we were down");
    assert_eq!(r.watchers_of("1001"), [a]);
    assert_eq!(r.get(a).unwrap().expires_at, t1 + secs(500));
    assert_eq!(r.get(a).unwrap().record.expires_at, wall0() + secs(600));
    assert_eq!(r.next_cseq(a), Some(7 + RESTORE_CSEQ_GAP + 1));
    // A refresh in the restored dialog is matched.
    let rec = r.record(a).unwrap();
    let (rid, _, _, _) =
        accept(r.subscribe(in_dialog(&rec, 2, None), &policy, t1, || unreachable!()));
    assert_eq!(rid, a);
    // New ids do not collide with restored ones.
    let (n, _, _, _) =
        accept(r.subscribe(initial("n", "1001", "u", None), &policy, t1, || "9".into()));
    assert!(n > b);
}

#[test]
fn restore_drops_duplicate_dialogs_and_exhausted_cseqs() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let (a, _, _, _) =
        accept(t.subscribe(initial("a", "1001", "w", None), &policy, t0, || "1".into()));
    let (b, _, _, _) =
        accept(t.subscribe(initial("b", "1001", "w", None), &policy, t0, || "2".into()));
    let rec_a = t.record(a).unwrap();
    let mut same_dialog = rec_a.clone();
    same_dialog.id = SubscriptionId(77);
    let mut exhausted = t.record(b).unwrap();
    exhausted.local_cseq = MAX_CSEQ - 1;
    let (r, dropped) = SubscriptionTable::restore(
        vec![rec_a.clone(), rec_a, same_dialog, exhausted],
        wall0(),
        t0,
    );
    assert_eq!(dropped, [SubscriptionId(77), b]);
    assert_eq!(r.len(), 1);
}

#[test]
fn notify_cseqs_stop_below_the_limit_and_keep_one_for_the_final_notify() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let (id, _, _, _) = accept(t.subscribe(
        initial("a", "1001", "w", Some(60)),
        &SubscribePolicy::default(),
        t0,
        || "1".into(),
    ));
    let mut rec = t.record(id).unwrap();
    rec.local_cseq = MAX_CSEQ - 2 - RESTORE_CSEQ_GAP;
    let (mut t, _) = SubscriptionTable::restore(vec![rec], wall0(), t0);
    assert_eq!(t.next_cseq(id), Some(MAX_CSEQ - 1));
    assert_eq!(t.next_cseq(id), None);
    let ended = t.handle_timeout(t0 + secs(60));
    assert_eq!(ended[0].cseq, MAX_CSEQ);
}

#[test]
fn policy_validation_names_the_problem() {
    assert_eq!(SubscribePolicy::default().validate(), Ok(()));
    let p = SubscribePolicy {
        min_expires: 0,
        ..SubscribePolicy::default()
    };
    assert_eq!(p.validate(), Err(PolicyError::ZeroMinimum));
    let p = SubscribePolicy {
        min_expires: 100,
        max_expires: 50,
        ..SubscribePolicy::default()
    };
    assert!(matches!(p.validate(), Err(PolicyError::MinAboveMax { .. })));
    let p = SubscribePolicy {
        default_expires: 10,
        ..SubscribePolicy::default()
    };
    assert!(p
        .validate()
        .unwrap_err()
        .to_string()
        .contains("default_expires (10)"));
}

#[test]
fn cseq_checkpoints_come_every_so_often_and_restore_never_reuses_a_cseq() {
    let t0 = Instant::now();
    let mut t = table(t0);
    let policy = SubscribePolicy::default();
    let (a, _, _, _) =
        accept(t.subscribe(initial("a", "1001", "w", None), &policy, t0, || "1".into()));
    // What the shell would have on disk: the record stored at subscribe time...
    let mut on_disk = t.record_to_store(a).unwrap();
    let mut checkpoints = 0;
    let mut last_sent = 0;
    for _ in 0..1000 {
        last_sent = t.next_cseq(a).unwrap();
        if let Some(record) = t.cseq_checkpoint(a) {
            checkpoints += 1;
            assert_eq!(record.local_cseq, last_sent);
            // ...and a checkpoint whose write is still queued when the engine dies.
            if checkpoints % 2 == 0 {
                on_disk = record;
            }
        }
        // Whatever was lost, a restart continues above every CSeq sent so far.
        let (mut restored, _) =
            SubscriptionTable::restore(vec![on_disk.clone()], wall0(), t0 + secs(1));
        assert!(restored.next_cseq(a).unwrap() > last_sent);
    }
    assert_eq!(last_sent, 1000);
    assert_eq!(checkpoints, 1000 / CSEQ_CHECKPOINT as usize);
    // A refresh stores the record and restarts the count.
    assert!(t.record_to_store(a).is_some());
    assert!(t.cseq_checkpoint(a).is_none());
}

#[test]
fn crash_after_crash_never_reuses_a_cseq_when_restored_records_are_stored() {
    // The disk holds what the shell wrote; the engine dies every few NOTIFYs (fewer than a
    // checkpoint), many times over, as the crash-safety test kills it.
    let t0 = Instant::now();
    let mut t = table(t0);
    let (a, _, _, _) = accept(t.subscribe(
        initial("a", "1001", "w", None),
        &SubscribePolicy::default(),
        t0,
        || "1".into(),
    ));
    let mut disk = t.record_to_store(a).unwrap();
    let mut sent = Vec::new();
    for crash in 1..=20u32 {
        for _ in 0..(crash % 5) + 1 {
            let cseq = t.next_cseq(a).unwrap();
            assert!(
                sent.last().is_none_or(|&last| cseq > last),
                "{cseq} after {sent:?}"
            );
            sent.push(cseq);
            if let Some(record) = t.cseq_checkpoint(a) {
                disk = record;
            }
        }
        let (restored, dropped) = SubscriptionTable::restore(vec![disk.clone()], wall0(), t0);
        assert!(dropped.is_empty());
        t = restored;
        // What the shell writes before the first NOTIFY of the new run.
        disk = t.records().pop().unwrap();
        assert!(disk.local_cseq > *sent.last().unwrap());
    }
    assert_eq!(sent.len(), 60);
}
