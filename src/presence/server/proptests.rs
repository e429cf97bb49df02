//! Random sequences of SUBSCRIBE, refresh, unsubscribe, NOTIFY outcomes, timeouts and restarts
//! must keep the table's invariants: nothing outlives its expiry, the per-extension indexes
//! agree with the subscriptions, and no dialog ever sees a NOTIFY CSeq twice or going back.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Subscribe {
        ext: u8,
        watcher: u8,
        expires: Option<u32>,
    },
    Refresh {
        pick: usize,
        expires: Option<u32>,
    },
    Unsubscribe {
        pick: usize,
    },
    Change {
        ext: u8,
    },
    Respond {
        pick: usize,
        status: u16,
    },
    NotifyTimeout {
        pick: usize,
    },
    Advance {
        secs: u64,
    },
    Restart {
        lost_secs: u64,
    },
}

fn expires() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![
        Just(None),
        Just(Some(0)),
        (1u32..120).prop_map(Some),
        (60u32..8000).prop_map(Some),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0u8..3, expires())
            .prop_map(|(ext, watcher, expires)| Op::Subscribe { ext, watcher, expires }),
        2 => (any::<usize>(), expires()).prop_map(|(pick, expires)| Op::Refresh { pick, expires }),
        1 => any::<usize>().prop_map(|pick| Op::Unsubscribe { pick }),
        3 => (0u8..3).prop_map(|ext| Op::Change { ext }),
        3 => (any::<usize>(), prop_oneof![Just(200u16), Just(481), Just(503), Just(100)])
            .prop_map(|(pick, status)| Op::Respond { pick, status }),
        1 => any::<usize>().prop_map(|pick| Op::NotifyTimeout { pick }),
        3 => (0u64..2000).prop_map(|secs| Op::Advance { secs }),
        1 => (0u64..600).prop_map(|lost_secs| Op::Restart { lost_secs }),
    ]
}

struct World {
    now: Instant,
    wall: SystemTime,
    table: SubscriptionTable,
    notifier: Notifier,
    policy: SubscribePolicy,
    versions: [u64; 3],
    /// Highest CSeq used per dialog (by subscription id: one subscription per dialog).
    last_cseq: HashMap<SubscriptionId, u32>,
    calls: u64,
}

impl World {
    fn live(&self) -> Vec<SubscriptionRecord> {
        self.table.records()
    }

    fn pick(&self, pick: usize) -> Option<SubscriptionRecord> {
        let live = self.live();
        (!live.is_empty()).then(|| live[pick % live.len()].clone())
    }

    fn saw_cseq(&mut self, id: SubscriptionId, cseq: u32) -> Result<(), TestCaseError> {
        let last = self.last_cseq.insert(id, cseq).unwrap_or(0);
        prop_assert!(cseq > last, "{id}: CSeq {cseq} after {last}");
        Ok(())
    }

    fn ended(&mut self, ended: &Ended) -> Result<(), TestCaseError> {
        self.notifier.forget(ended.id);
        self.saw_cseq(ended.id, ended.cseq)
    }

    fn pump(&mut self, id: SubscriptionId) -> Result<(), TestCaseError> {
        if let Some(job) = self.notifier.next_to_send(&mut self.table, id) {
            self.saw_cseq(id, job.cseq)?;
        }
        Ok(())
    }

    fn outcome(&mut self, id: SubscriptionId, outcome: NotifyOutcome) -> Result<(), TestCaseError> {
        match outcome {
            NotifyOutcome::Remove(_) => {
                self.table.remove(id);
            }
            NotifyOutcome::Delivered { more: true } | NotifyOutcome::Failed { more: true, .. } => {
                self.pump(id)?
            }
            _ => {}
        }
        Ok(())
    }

    fn expire(&mut self) -> Result<(), TestCaseError> {
        for ended in self.table.handle_timeout(self.now) {
            prop_assert_eq!(ended.reason, EndReason::Timeout);
            self.ended(&ended)?;
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Subscribe {
                ext,
                watcher,
                expires,
            } => {
                self.calls += 1;
                let req = SubscribeRequest {
                    dialog: DialogKey {
                        call_id: format!("c{}", self.calls),
                        remote_tag: "r".into(),
                        local_tag: None,
                    },
                    cseq: 1,
                    event_id: None,
                    extension: format!("10{ext}"),
                    watcher: format!("20{watcher}"),
                    accept: vec![],
                    expires,
                    target: DialogTarget {
                        local_uri: "<sip:x@h>".into(),
                        remote_uri: "<sip:y@h>".into(),
                        remote_target: "sip:y@h".into(),
                        route_set: vec![],
                    },
                };
                let tag = format!("l{}", self.calls);
                match self.table.subscribe(req, &self.policy, self.now, || tag) {
                    SubscribeDecision::Accept {
                        id,
                        new,
                        granted_expires,
                        ..
                    } => {
                        prop_assert!(new);
                        prop_assert!((60..=3600).contains(&granted_expires));
                        self.notifier.force(id, self.versions[usize::from(ext)]);
                        self.pump(id)?;
                    }
                    SubscribeDecision::Terminated(ended) => {
                        prop_assert_eq!(expires, Some(0));
                        prop_assert_eq!(ended.reason, EndReason::Fetched);
                    }
                    SubscribeDecision::Reject(r) => {
                        prop_assert_eq!(r.code(), 423);
                        prop_assert!(expires.is_some_and(|e| e > 0 && e < 60));
                    }
                    SubscribeDecision::Revoked(_) => prop_assert!(false, "nothing is revoked"),
                }
            }
            Op::Refresh { pick, expires } => {
                let Some(rec) = self.pick(pick) else {
                    return Ok(());
                };
                let req = SubscribeRequest {
                    dialog: DialogKey {
                        call_id: rec.call_id.clone(),
                        remote_tag: rec.remote_tag.clone(),
                        local_tag: Some(rec.local_tag.clone()),
                    },
                    cseq: rec.remote_cseq + 1,
                    event_id: None,
                    extension: String::new(),
                    watcher: rec.watcher.clone(),
                    accept: vec![],
                    expires,
                    target: DialogTarget {
                        local_uri: String::new(),
                        remote_uri: String::new(),
                        remote_target: String::new(),
                        route_set: vec![],
                    },
                };
                match self
                    .table
                    .subscribe(req, &self.policy, self.now, String::new)
                {
                    SubscribeDecision::Accept { id, new, .. } => {
                        prop_assert!(!new);
                        prop_assert_eq!(id, rec.id);
                        self.notifier.force(id, 0);
                        self.pump(id)?;
                    }
                    SubscribeDecision::Terminated(ended) => {
                        prop_assert_eq!(expires, Some(0));
                        self.ended(&ended)?;
                    }
                    SubscribeDecision::Reject(r) => {
                        prop_assert_eq!(r.code(), 423);
                    }
                    SubscribeDecision::Revoked(_) => prop_assert!(false, "nothing is revoked"),
                }
            }
            Op::Unsubscribe { pick } => {
                if let Some(rec) = self.pick(pick) {
                    self.table.remove(rec.id);
                    self.notifier.forget(rec.id);
                }
            }
            Op::Change { ext } => {
                let slot = usize::from(ext);
                self.versions[slot] += 1;
                let ext = format!("10{ext}");
                for id in self
                    .notifier
                    .changed_extension(&self.table, &ext, self.versions[slot])
                {
                    self.pump(id)?;
                }
            }
            Op::Respond { pick, status } => {
                let Some(rec) = self.pick(pick) else {
                    return Ok(());
                };
                if let Some((cseq, _)) = self.notifier.in_flight(rec.id) {
                    let outcome = self.notifier.on_response(rec.id, cseq, status);
                    self.outcome(rec.id, outcome)?;
                }
            }
            Op::NotifyTimeout { pick } => {
                let Some(rec) = self.pick(pick) else {
                    return Ok(());
                };
                if let Some((cseq, _)) = self.notifier.in_flight(rec.id) {
                    let outcome = self.notifier.on_timeout(rec.id, cseq);
                    self.outcome(rec.id, outcome)?;
                }
            }
            Op::Advance { secs } => {
                self.now += Duration::from_secs(secs);
                self.wall += Duration::from_secs(secs);
                self.expire()?;
            }
            Op::Restart { lost_secs } => {
                let records = self.table.records();
                let before: Vec<_> = records.iter().map(|r| r.id).collect();
                self.wall += Duration::from_secs(lost_secs);
                self.now += Duration::from_secs(lost_secs + 7);
                let (table, dropped) = SubscriptionTable::restore(records, self.wall, self.now);
                for id in &dropped {
                    prop_assert!(before.contains(id));
                    prop_assert!(table.get(*id).is_none());
                }
                prop_assert_eq!(table.len() + dropped.len(), before.len());
                self.table = table;
                self.notifier = Notifier::default();
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let live = self.live();
        for rec in &live {
            let sub = self.table.get(rec.id).unwrap();
            prop_assert!(sub.expires_at > self.now || self.table.poll_timeout() <= Some(self.now));
            prop_assert!(rec.local_cseq >= self.last_cseq.get(&rec.id).copied().unwrap_or(0));
        }
        let earliest = live
            .iter()
            .map(|r| self.table.get(r.id).unwrap().expires_at)
            .min();
        prop_assert_eq!(self.table.poll_timeout(), earliest);
        for ext in ["100", "101", "102", "999"] {
            let ids = self.table.watchers_of(ext);
            let expected: Vec<_> = live
                .iter()
                .filter(|r| r.extension == ext)
                .map(|r| r.id)
                .collect();
            prop_assert_eq!(self.table.watcher_count(ext), ids.len());
            prop_assert_eq!(ids, expected);
        }
        // The per-watcher counts (for the per-watcher limit) agree with the subscriptions,
        // for every watcher the ops can name.
        for watcher in (0..=u8::MAX).map(|w| format!("20{w}")) {
            let expected = live.iter().filter(|r| r.watcher == watcher).count();
            prop_assert_eq!(self.table.watcher_len(&watcher), expected);
        }
        Ok(())
    }
}

proptest! {
    #[test]
    fn subscription_invariants_hold(ops in proptest::collection::vec(op(), 1..80)) {
        let t0 = Instant::now();
        let mut w = World {
            now: t0,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            table: SubscriptionTable::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000), t0),
            notifier: Notifier::default(),
            policy: SubscribePolicy::default(),
            versions: [0; 3],
            last_cseq: HashMap::new(),
            calls: 0,
        };
        for op in ops {
            w.step(op)?;
            // Expiry is reported on time: after handling `now`, nothing live is past it.
            w.expire()?;
            for rec in w.live() {
                prop_assert!(w.table.get(rec.id).unwrap().expires_at > w.now);
            }
        }
    }
}
