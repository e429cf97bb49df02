//! The user agent's own totals as metrics. The sans-IO `UserAgent` counts authentication,
//! abuse limits and NOTIFYs in plain integers; the SIP task reads them after every turn of its
//! loop and [`UaExport`] adds what moved since the last turn to atomic counters, so a scrape
//! never touches the user agent and the user agent never knows about Prometheus.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Labels, Metrics};
use crate::sip::auth::AuthCounters;
use crate::sip::limits::LimitCounters;
use crate::sip::ua::NotifyCounters;

/// What the user agent has counted since it started, read by the SIP task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UaTotals {
    pub auth: AuthCounters,
    pub limits: LimitCounters,
    pub notify: NotifyCounters,
    /// Active subscriptions now (a level, not a total).
    pub subscriptions: usize,
}

/// The SIP task's memory of the totals it last exported.
#[derive(Debug, Default)]
pub struct UaExport {
    last: UaTotals,
}

impl UaExport {
    /// Adds to `metrics` what each total grew by since the last call. A total that went down
    /// was started afresh (a new authenticator after a config reload): all of it is new.
    pub fn export(&mut self, now: UaTotals, metrics: &Metrics) {
        if now == self.last {
            return;
        }
        let last = std::mem::replace(&mut self.last, now);
        let f = &metrics.ua;
        let (a, b) = (now.auth, last.auth);
        let (l, m) = (now.limits, last.limits);
        let (n, o) = (now.notify, last.notify);
        let [fresh, stale] = &f.auth_challenges;
        let [wrong, unknown, replayed, unsupported, malformed, locked_out] = &f.auth_failures;
        let [refused, dropped, garbage, evicted] = &f.limits;
        let [rejected, no_answer] = &f.notifies_failed;
        // (series, its total now, its total last time)
        let moves = [
            // `challenges` counts stale ones too; the two series split it.
            (
                fresh,
                a.challenges.saturating_sub(a.stale),
                b.challenges.saturating_sub(b.stale),
            ),
            (stale, a.stale, b.stale),
            (&f.auth_successes, a.successes, b.successes),
            (&f.auth_lockouts, a.lockouts, b.lockouts),
            (wrong, a.wrong_response, b.wrong_response),
            (unknown, a.unknown_or_disabled, b.unknown_or_disabled),
            (replayed, a.replayed, b.replayed),
            (unsupported, a.unsupported, b.unsupported),
            (malformed, a.malformed, b.malformed),
            (locked_out, a.locked_out, b.locked_out),
            (refused, l.refused, m.refused),
            (dropped, l.dropped, m.dropped),
            (garbage, l.garbage, m.garbage),
            (evicted, l.evicted, m.evicted),
            (&f.notifies_sent, n.sent, o.sent),
            (&f.notifies_delivered, n.delivered, o.delivered),
            (rejected, n.rejected, o.rejected),
            (no_answer, n.timed_out, o.timed_out),
        ];
        for (counter, now, last) in moves {
            let by = if now >= last { now - last } else { now };
            if by > 0 {
                counter.inc_by(by);
            }
        }
        f.subscriptions
            .set(i64::try_from(now.subscriptions).unwrap_or(i64::MAX));
    }
}

/// Authentication failure reasons, in the order of `UaFamilies::auth_failures`.
const AUTH_FAILURES: [&str; 6] = [
    "wrong_response",
    "unknown_or_disabled",
    "replayed",
    "unsupported",
    "malformed",
    "locked_out",
];

/// Limit events, in the order of `UaFamilies::limits`.
const LIMIT_EVENTS: [&str; 4] = ["refused_503", "dropped", "garbage", "source_evicted"];

/// The families the user agent's totals feed, with a handle on each series (no label lookup
/// when they move).
pub(super) struct UaFamilies {
    /// `stale="false"`, `stale="true"`.
    auth_challenges: [Counter; 2],
    auth_successes: Counter,
    /// In [`AUTH_FAILURES`] order.
    auth_failures: [Counter; 6],
    auth_lockouts: Counter,
    /// In [`LIMIT_EVENTS`] order.
    limits: [Counter; 4],
    notifies_sent: Counter,
    notifies_delivered: Counter,
    /// `reason="rejected"`, `reason="no_answer"`.
    notifies_failed: [Counter; 2],
    subscriptions: Gauge,
}

impl UaFamilies {
    pub(super) fn register(registry: &mut Registry) -> UaFamilies {
        let series = |family: &Family<Labels, Counter>, name: &'static str, value: &'static str| {
            family.get_or_create_owned(&vec![(name, value)])
        };
        let challenges = Family::<Labels, Counter>::default();
        let auth_challenges = [
            series(&challenges, "stale", "false"),
            series(&challenges, "stale", "true"),
        ];
        registry.register(
            "sip_auth_challenges",
            "Digest challenges sent (401), stale=true when a known nonce had only expired",
            challenges,
        );
        let auth_successes = Counter::default();
        registry.register(
            "sip_auth_successes",
            "Requests whose digest answer proved the extension",
            auth_successes.clone(),
        );
        let failures = Family::<Labels, Counter>::default();
        let auth_failures = AUTH_FAILURES.map(|reason| series(&failures, "reason", reason));
        registry.register(
            "sip_auth_failures",
            "Requests refused by digest authentication (403 or 400), by reason; locked_out: refused while the source or extension was locked out",
            failures,
        );
        let auth_lockouts = Counter::default();
        registry.register(
            "sip_auth_lockouts",
            "Lockouts begun, of a source or of an extension, after repeated failures",
            auth_lockouts.clone(),
        );
        let limit_family = Family::<Labels, Counter>::default();
        let limits = LIMIT_EVENTS.map(|event| series(&limit_family, "event", event));
        registry.register(
            "sip_limit_events",
            "Abuse-limit actions: requests refused with 503 or dropped over a limit, garbage datagrams, sources forgotten to keep the table bounded",
            limit_family,
        );
        let notifies_sent = Counter::default();
        registry.register(
            "notifies_sent",
            "Presence NOTIFYs sent (each a new transaction; retransmissions not counted)",
            notifies_sent.clone(),
        );
        let notifies_delivered = Counter::default();
        registry.register(
            "notifies_delivered",
            "Presence NOTIFYs the watcher answered with 2xx",
            notifies_delivered.clone(),
        );
        let failed = Family::<Labels, Counter>::default();
        let notifies_failed = [
            series(&failed, "reason", "rejected"),
            series(&failed, "reason", "no_answer"),
        ];
        registry.register(
            "notifies_failed",
            "Presence NOTIFYs that failed: rejected (an error answer, 481 included) or no_answer (timed out or could not be sent)",
            failed,
        );
        let subscriptions = Gauge::default();
        registry.register(
            "subscriptions",
            "Presence subscriptions active now",
            subscriptions.clone(),
        );
        UaFamilies {
            auth_challenges,
            auth_successes,
            auth_failures,
            auth_lockouts,
            limits,
            notifies_sent,
            notifies_delivered,
            notifies_failed,
            subscriptions,
        }
    }
}
