//! Abuse limits, decided without IO: how fast one source may send INVITE, SUBSCRIBE, PUBLISH,
//! other requests and garbage, how many calls it may hold open, and what happens over a limit
//! (a stateless `503` with `Retry-After`, at most one a second per source, or a silent drop).
//!
//! Everything here is bounded in memory itself: sources live in a table of at most
//! [`LimitSettings::max_sources`] entries and the idlest are forgotten first, so a flood from a
//! million spoofed addresses costs no more than one from a few thousand. Open-call counters
//! only exist for sources that hold a call, so they are bounded by the calls themselves.
//!
//! The TCP side (connections per source and in total, bytes per second and slow senders on one
//! connection) is in [`connections`]: the transport asks, and acts on the answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

pub mod connections;

/// A sustained rate with the burst allowed above it (a token bucket's refill and size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: u32,
    /// Most tokens held at once: what a quiet source may send in one go.
    pub burst: u32,
}

impl Rate {
    /// A rate of `per_second` with room for `burst`.
    pub const fn new(per_second: u32, burst: u32) -> Rate {
        Rate { per_second, burst }
    }
}

/// What a request counts against. Each kind has its own bucket per source, so a SUBSCRIBE
/// flood does not starve the same PBX's calls or in-dialog requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A dialog-creating INVITE (to a feature code or not).
    Invite,
    /// A SUBSCRIBE that creates a subscription (no To tag).
    Subscribe,
    /// A PUBLISH.
    Publish,
    /// Any other request except ACK: in-dialog requests, OPTIONS, CANCEL, BYE, INFO.
    Other,
    /// Bytes that are not a SIP message, or a request too malformed to serve.
    Garbage,
    /// Any request from a source outside the trusted peers when `sip.auth = "never"` (it only
    /// ever gets 403). With authentication on, such a source is limited like any other.
    Untrusted,
}

const KINDS: usize = 6;

impl Kind {
    fn index(self) -> usize {
        match self {
            Kind::Invite => 0,
            Kind::Subscribe => 1,
            Kind::Publish => 2,
            Kind::Other => 3,
            Kind::Garbage => 4,
            Kind::Untrusted => 5,
        }
    }

    /// The name in logs and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Invite => "invite",
            Kind::Subscribe => "subscribe",
            Kind::Publish => "publish",
            Kind::Other => "other",
            Kind::Garbage => "garbage",
            Kind::Untrusted => "untrusted",
        }
    }

    /// Whether an over-limit request of this kind may get a `503` (garbage and untrusted
    /// sources never do: an answer would only help a reflection attack).
    fn may_answer(self) -> bool {
        !matches!(self, Kind::Garbage | Kind::Untrusted)
    }
}

/// The limits, from config (`[limits]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// Sources remembered at once; the idlest are forgotten beyond this.
    pub max_sources: usize,
    pub invite: Rate,
    pub subscribe: Rate,
    pub publish: Rate,
    pub other: Rate,
    pub garbage: Rate,
    /// Per untrusted source: requests answered (403) before the rest are dropped.
    pub untrusted: Rate,
    /// All untrusted sources together, so spoofed addresses cannot each get their own 403s.
    pub untrusted_total: Rate,
    /// Calls one source may hold open at once (signalling state: pending to closing).
    pub max_calls_per_source: u32,
    /// Calls held open in total.
    pub max_calls: u32,
    /// Subscriptions one watcher (extension) may hold.
    pub max_subscriptions_per_watcher: u32,
    /// Subscriptions held in total.
    pub max_subscriptions: u32,
    /// Sent in `Retry-After` on a `503` (seconds).
    pub retry_after: u32,
    /// Sources with no per-source limits (a large PBX); totals still apply.
    pub exempt: Vec<IpNet>,
    /// TCP connection limits.
    pub tcp: connections::TcpLimits,
}

impl Default for LimitSettings {
    /// Sized for a site of a few thousand phones whose calls and subscriptions all come
    /// through one PBX address (see the README's limits table).
    fn default() -> LimitSettings {
        LimitSettings {
            max_sources: 4096,
            invite: Rate::new(100, 500),
            subscribe: Rate::new(200, 2000),
            publish: Rate::new(100, 500),
            other: Rate::new(500, 5000),
            garbage: Rate::new(20, 100),
            untrusted: Rate::new(2, 10),
            untrusted_total: Rate::new(50, 200),
            max_calls_per_source: 1000,
            max_calls: 2000,
            max_subscriptions_per_watcher: 200,
            max_subscriptions: 50_000,
            retry_after: 5,
            exempt: Vec::new(),
            tcp: connections::TcpLimits::default(),
        }
    }
}

impl LimitSettings {
    fn rate(&self, kind: Kind) -> Rate {
        match kind {
            Kind::Invite => self.invite,
            Kind::Subscribe => self.subscribe,
            Kind::Publish => self.publish,
            Kind::Other => self.other,
            Kind::Garbage => self.garbage,
            Kind::Untrusted => self.untrusted,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve it.
    Admit,
    /// Answer `503 Service Unavailable` with this `Retry-After` (seconds), keeping no state.
    Refuse { retry_after: u32 },
    /// Drop it without an answer.
    Drop,
}

/// How many requests the limits turned away, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitCounters {
    /// Answered `503`.
    pub refused: u64,
    /// Dropped without an answer (over a limit, or from a muted source).
    pub dropped: u64,
    /// Not SIP, or too malformed to serve.
    pub garbage: u64,
    /// Sources forgotten to keep the table bounded.
    pub evicted: u64,
}

/// Log lines about sources over their limits, across all sources.
const LOG_RATE: Rate = Rate::new(1, 20);
/// At most one log line per source per this interval.
const SOURCE_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// At most one `503` per source per this interval; the rest are dropped.
const REFUSE_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket on the caller's clock; full until first used.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn full(rate: Rate) -> Bucket {
        Bucket {
            tokens: f64::from(rate.burst),
            at: None,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let at = *self.at.get_or_insert(now);
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(rate.per_second)).min(f64::from(rate.burst));
        self.at = Some(at.max(now));
    }

    /// Takes one token when there is one.
    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn empty(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        self.tokens < 1.0
    }
}

/// What we remember about one source address.
#[derive(Debug, Clone)]
struct Source {
    buckets: [Bucket; KINDS],
    last_seen: Instant,
    last_refused: Option<Instant>,
    last_logged: Option<Instant>,
    /// Turned away since the last log line.
    unlogged: u64,
}

/// Per-source rates and call counts, bounded in memory. One per user agent.
#[derive(Debug)]
pub struct Limiter {
    settings: LimitSettings,
    sources: HashMap<IpAddr, Source>,
    calls: HashMap<IpAddr, u32>,
    open_calls: u32,
    untrusted_total: Bucket,
    log_budget: Bucket,
    counters: LimitCounters,
}

impl Limiter {
    /// A limiter with these settings; every bucket starts full.
    pub fn new(settings: LimitSettings) -> Limiter {
        Limiter {
            untrusted_total: Bucket::full(settings.untrusted_total),
            log_budget: Bucket::full(LOG_RATE),
            settings,
            sources: HashMap::new(),
            calls: HashMap::new(),
            open_calls: 0,
            counters: LimitCounters::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// What the limits turned away so far.
    pub fn counters(&self) -> LimitCounters {
        self.counters
    }

    /// Sources remembered now (never above `max_sources`).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Calls counted open now.
    pub fn open_calls(&self) -> u32 {
        self.open_calls
    }

    fn is_exempt(&self, ip: IpAddr) -> bool {
        self.settings.exempt.iter().any(|net| net.contains(&ip))
    }

    /// Counts one request of `kind` from `ip` and says whether to serve it.
    pub fn check(&mut self, ip: IpAddr, kind: Kind, now: Instant) -> Admission {
        let ip = canonical(ip);
        if kind == Kind::Garbage {
            self.counters.garbage += 1;
        }
        if kind == Kind::Untrusted
            && !self
                .untrusted_total
                .take(self.settings.untrusted_total, now)
        {
            self.counters.dropped += 1;
            self.log_over(None, kind, now);
            return Admission::Drop;
        }
        if self.is_exempt(ip) {
            return Admission::Admit;
        }
        let rate = self.settings.rate(kind);
        let retry_after = self.settings.retry_after;
        let source = self.source(ip, now);
        if source.buckets[kind.index()].take(rate, now) {
            return Admission::Admit;
        }
        let answer = kind.may_answer()
            && source
                .last_refused
                .is_none_or(|at| now.saturating_duration_since(at) >= REFUSE_INTERVAL);
        let admission = if answer {
            source.last_refused = Some(now);
            Admission::Refuse { retry_after }
        } else {
            Admission::Drop
        };
        self.over_limit(ip, kind, admission, now);
        admission
    }

    /// True when `ip` has sent so much garbage lately that its next datagram is dropped
    /// without being parsed (until its garbage bucket refills by one).
    pub fn muted(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = canonical(ip);
        if self.is_exempt(ip) {
            return false;
        }
        let rate = self.settings.garbage;
        let muted = self
            .sources
            .get_mut(&ip)
            .is_some_and(|s| s.buckets[Kind::Garbage.index()].empty(rate, now));
        if muted {
            self.over_limit(ip, Kind::Garbage, Admission::Drop, now);
        }
        muted
    }

    /// A new call from `ip` is about to be kept: admitted (and counted) or refused with 503.
    pub fn open_call(&mut self, ip: IpAddr, now: Instant) -> Admission {
        let ip = canonical(ip);
        let held = self.calls.get(&ip).copied().unwrap_or(0);
        let per_source_full = !self.is_exempt(ip) && held >= self.settings.max_calls_per_source;
        if per_source_full || self.open_calls >= self.settings.max_calls {
            let admission = Admission::Refuse {
                retry_after: self.settings.retry_after,
            };
            self.over_limit(ip, Kind::Invite, admission, now);
            return admission;
        }
        self.calls.insert(ip, held + 1);
        self.open_calls += 1;
        Admission::Admit
    }

    /// A call counted by [`Limiter::open_call`] is over.
    pub fn close_call(&mut self, ip: IpAddr) {
        let ip = canonical(ip);
        match self.calls.get_mut(&ip) {
            Some(held) if *held > 1 => *held -= 1,
            Some(_) => {
                self.calls.remove(&ip);
            }
            None => return,
        }
        self.open_calls = self.open_calls.saturating_sub(1);
    }

    /// A subscription limit (per watcher or in total) was hit: counts and logs the `503` the
    /// caller sends, and returns its `Retry-After`.
    pub fn refuse_subscription(&mut self, ip: IpAddr, now: Instant) -> u32 {
        let ip = canonical(ip);
        let retry_after = self.settings.retry_after;
        self.over_limit(ip, Kind::Subscribe, Admission::Refuse { retry_after }, now);
        retry_after
    }

    /// The source's entry, made (evicting the idlest sources when the table is full).
    fn source(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.settings.max_sources {
            self.evict();
        }
        let settings = &self.settings;
        let source = self.sources.entry(ip).or_insert_with(|| Source {
            buckets: [
                Kind::Invite,
                Kind::Subscribe,
                Kind::Publish,
                Kind::Other,
                Kind::Garbage,
                Kind::Untrusted,
            ]
            .map(|k| Bucket::full(settings.rate(k))),
            last_seen: now,
            last_refused: None,
            last_logged: None,
            unlogged: 0,
        });
        source.last_seen = source.last_seen.max(now);
        source
    }

    /// Forgets the idlest eighth of the table at once, so a stream of new sources costs
    /// amortised constant time per source rather than a scan each.
    fn evict(&mut self) {
        let mut seen: Vec<(Instant, IpAddr)> = self
            .sources
            .iter()
            .map(|(ip, s)| (s.last_seen, *ip))
            .collect();
        let count = (seen.len() / 8).max(1).min(seen.len());
        if count == 0 {
            return;
        }
        let _ = seen.select_nth_unstable(count - 1);
        for (_, ip) in seen.iter().take(count) {
            self.sources.remove(ip);
        }
        self.counters.evicted += count as u64;
    }

    fn over_limit(&mut self, ip: IpAddr, kind: Kind, admission: Admission, now: Instant) {
        match admission {
            Admission::Refuse { .. } => self.counters.refused += 1,
            Admission::Drop => self.counters.dropped += 1,
            Admission::Admit => return,
        }
        let Some(source) = self.sources.get_mut(&ip) else {
            return self.log_over(Some((ip, 1)), kind, now);
        };
        source.unlogged += 1;
        let due = source
            .last_logged
            .is_none_or(|at| now.saturating_duration_since(at) >= SOURCE_LOG_INTERVAL);
        if due && self.log_budget.take(LOG_RATE, now) {
            let count = std::mem::take(&mut source.unlogged);
            source.last_logged = Some(now);
            let action = if kind.may_answer() {
                "503 (at most one a second), then drop"
            } else {
                "drop"
            };
            tracing::warn!(
                source = %ip,
                limit = kind.as_str(),
                turned_away = count,
                action,
                "source over its limit"
            );
        }
    }

    /// A log line not tied to one remembered source, within the global log budget.
    fn log_over(&mut self, source: Option<(IpAddr, u64)>, kind: Kind, now: Instant) {
        if !self.log_budget.take(LOG_RATE, now) {
            return;
        }
        match source {
            Some((ip, count)) => {
                tracing::warn!(source = %ip, limit = kind.as_str(), turned_away = count, "source over its limit")
            }
            None => tracing::warn!(
                limit = "untrusted_total",
                dropped = self.counters.dropped,
                "untrusted sources over their shared limit: dropping"
            ),
        }
    }
}

/// One address per host: an IPv4 peer seen on a dual-stack socket (`::ffff:a.b.c.d`) is the
/// same source as `a.b.c.d`, and matches IPv4 networks in `exempt`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
