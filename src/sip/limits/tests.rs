//! The limiter on a virtual clock, and its memory bound under any input.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

fn small() -> LimitSettings {
    LimitSettings {
        max_sources: 16,
        invite: Rate::new(2, 4),
        subscribe: Rate::new(10, 5),
        publish: Rate::new(1, 1),
        other: Rate::new(100, 100),
        garbage: Rate::new(10, 3),
        untrusted: Rate::new(1, 2),
        untrusted_total: Rate::new(10, 5),
        max_calls_per_source: 2,
        max_calls: 3,
        max_subscriptions_per_watcher: 2,
        max_subscriptions: 10,
        retry_after: 7,
        exempt: vec!["192.0.2.0/24".parse().unwrap()],
        tcp: connections::TcpLimits::default(),
    }
}

#[test]
fn a_burst_then_one_503_a_second_then_drops() {
    let t0 = Instant::now();
    let mut l = Limiter::new(small());
    let a = ip(1);
    for _ in 0..5 {
        assert_eq!(l.check(a, Kind::Subscribe, t0), Admission::Admit);
    }
    assert_eq!(
        l.check(a, Kind::Subscribe, t0),
        Admission::Refuse { retry_after: 7 }
    );
    // Within the second: dropped, not answered again.
    assert_eq!(l.check(a, Kind::Subscribe, t0), Admission::Drop);
    let later = t0 + Duration::from_millis(50);
    assert_eq!(l.check(a, Kind::Subscribe, later), Admission::Drop);
    // 100 ms refill one token at 10/s.
    let refilled = t0 + Duration::from_millis(160);
    assert_eq!(l.check(a, Kind::Subscribe, refilled), Admission::Admit);
    // After a second the next refusal is answered again.
    let next = t0 + Duration::from_secs(1);
    for _ in 0..5 {
        assert_eq!(l.check(a, Kind::Subscribe, next), Admission::Admit);
    }
    assert_eq!(
        l.check(a, Kind::Subscribe, next),
        Admission::Refuse { retry_after: 7 }
    );
    let c = l.counters();
    assert_eq!((c.refused, c.dropped), (2, 2));
}

#[test]
fn kinds_and_sources_have_their_own_buckets() {
    let t0 = Instant::now();
    let mut l = Limiter::new(small());
    for _ in 0..5 {
        l.check(ip(1), Kind::Subscribe, t0);
    }
    assert_ne!(l.check(ip(1), Kind::Subscribe, t0), Admission::Admit);
    // The same source's calls and in-dialog requests are not starved ...
    assert_eq!(l.check(ip(1), Kind::Invite, t0), Admission::Admit);
    assert_eq!(l.check(ip(1), Kind::Other, t0), Admission::Admit);
    // ... and another source is not touched.
    assert_eq!(l.check(ip(2), Kind::Subscribe, t0), Admission::Admit);
}

#[test]
fn garbage_and_untrusted_are_never_answered() {
    let t0 = Instant::now();
    let mut l = Limiter::new(small());
    for _ in 0..3 {
        assert_eq!(l.check(ip(1), Kind::Garbage, t0), Admission::Admit);
    }
    assert_eq!(l.check(ip(1), Kind::Garbage, t0), Admission::Drop);
    assert!(l.muted(ip(1), t0));
    assert!(!l.muted(ip(2), t0));
    // One token back after 100 ms: parsed again.
    assert!(!l.muted(ip(1), t0 + Duration::from_millis(100)));
    for _ in 0..2 {
        assert_eq!(l.check(ip(3), Kind::Untrusted, t0), Admission::Admit);
    }
    assert_eq!(l.check(ip(3), Kind::Untrusted, t0), Admission::Drop);
    assert_eq!(l.counters().garbage, 4);
}

#[test]
fn spoofed_untrusted_sources_share_one_budget() {
    let t0 = Instant::now();
    let mut l = Limiter::new(small());
    let admitted = (0..100)
        .filter(|n| l.check(ip(*n), Kind::Untrusted, t0) == Admission::Admit)
        .count();
    assert_eq!(admitted, 5);
}

#[test]
fn open_calls_are_capped_per_source_and_in_total_and_released() {
    let t0 = Instant::now();
    let mut l = Limiter::new(small());
    assert_eq!(l.open_call(ip(1), t0), Admission::Admit);
    assert_eq!(l.open_call(ip(1), t0), Admission::Admit);
    assert_eq!(l.open_call(ip(1), t0), Admission::Refuse { retry_after: 7 });
    assert_eq!(l.open_call(ip(2), t0), Admission::Admit);
    assert_eq!(l.open_call(ip(3), t0), Admission::Refuse { retry_after: 7 });
    l.close_call(ip(1));
    assert_eq!(l.open_call(ip(3), t0), Admission::Admit);
    l.close_call(ip(9));
    assert_eq!(l.open_calls(), 3);
}

#[test]
fn an_exempt_source_has_no_per_source_limits_but_the_totals_hold() {
    let t0 = Instant::now();
    let mut l = Limiter::new(small());
    let pbx: IpAddr = "192.0.2.10".parse().unwrap();
    for _ in 0..1000 {
        assert_eq!(l.check(pbx, Kind::Invite, t0), Admission::Admit);
    }
    assert!(!l.muted(pbx, t0));
    for _ in 0..3 {
        assert_eq!(l.open_call(pbx, t0), Admission::Admit);
    }
    assert_ne!(l.open_call(pbx, t0), Admission::Admit);
    assert_eq!(l.tracked_sources(), 0);
}

#[test]
fn an_ipv4_peer_on_a_dual_stack_socket_is_the_same_source() {
    let t0 = Instant::now();
    let mut l = Limiter::new(small());
    let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
    assert_eq!(l.open_call(ip(1), t0), Admission::Admit);
    assert_eq!(l.open_call(mapped, t0), Admission::Admit);
    assert_ne!(
        l.open_call(ip(1), t0),
        Admission::Admit,
        "two calls from one host"
    );
    let pbx: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
    for _ in 0..10 {
        assert_eq!(l.check(pbx, Kind::Publish, t0), Admission::Admit, "exempt");
    }
}

#[test]
fn the_idlest_sources_are_forgotten_first() {
    let t0 = Instant::now();
    let mut l = Limiter::new(small());
    // Source 0 is busy; 1..=40 each send once, later and later.
    for n in 1..=40u32 {
        let now = t0 + Duration::from_millis(u64::from(n));
        l.check(ip(0), Kind::Other, now);
        l.check(ip(n), Kind::Other, now);
        assert!(l.tracked_sources() <= 16);
    }
    assert!(l.sources.contains_key(&ip(0)));
    assert!(l.sources.contains_key(&ip(40)));
    assert!(!l.sources.contains_key(&ip(1)));
    assert!(l.counters().evicted > 0);
}

#[derive(Debug, Clone)]
enum Op {
    Check { source: u32, kind: u8 },
    Muted { source: u32 },
    Open { source: u32 },
    Close { source: u32 },
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..10_000, 0u8..6).prop_map(|(source, kind)| Op::Check { source, kind }),
        1 => (0u32..10_000).prop_map(|source| Op::Muted { source }),
        1 => (0u32..8).prop_map(|source| Op::Open { source }),
        1 => (0u32..8).prop_map(|source| Op::Close { source }),
        1 => (0u64..3_000).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    /// Whatever arrives, the table never holds more than `max_sources`, call counts never pass
    /// their caps and match the opens minus the closes, and a remembered source never gets
    /// more than one 503 a second.
    #[test]
    fn memory_and_counts_stay_bounded(ops in proptest::collection::vec(op(), 1..400)) {
        let settings = small();
        let t0 = Instant::now();
        let mut now = t0;
        let mut l = Limiter::new(settings.clone());
        let mut held: std::collections::HashMap<IpAddr, u32> = Default::default();
        let mut last_refusal: std::collections::HashMap<IpAddr, Instant> = Default::default();
        let kinds = [Kind::Invite, Kind::Subscribe, Kind::Publish, Kind::Other, Kind::Garbage, Kind::Untrusted];
        for op in ops {
            match op {
                Op::Check { source, kind } => {
                    let kind = kinds[usize::from(kind) % kinds.len()];
                    if let Admission::Refuse { .. } = l.check(ip(source), kind, now) {
                        prop_assert!(kind.may_answer());
                        if let Some(at) = last_refusal.insert(ip(source), now) {
                            // Only when the source was forgotten in between may it be sooner.
                            prop_assert!(now - at >= REFUSE_INTERVAL || l.counters().evicted > 0);
                        }
                    }
                }
                Op::Muted { source } => { l.muted(ip(source), now); }
                Op::Open { source } => {
                    if l.open_call(ip(source), now) == Admission::Admit {
                        *held.entry(ip(source)).or_default() += 1;
                    }
                }
                Op::Close { source } => {
                    l.close_call(ip(source));
                    if let Some(n) = held.get_mut(&ip(source)) {
                        *n = n.saturating_sub(1);
                    }
                }
                Op::Advance { ms } => now += Duration::from_millis(ms),
            }
            prop_assert!(l.tracked_sources() <= settings.max_sources);
            prop_assert!(l.open_calls() <= settings.max_calls);
            prop_assert_eq!(l.open_calls(), held.values().sum::<u32>());
            prop_assert!(l.calls.values().all(|n| *n >= 1 && *n <= settings.max_calls_per_source));
        }
    }
}
