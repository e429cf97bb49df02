//! The brute-force guard: failed digest answers are counted per source address and per
//! claimed extension within a window; over a limit the source (or the extension) is locked
//! out for a while, longer at each repeat. While locked out, requests get 403 without a
//! challenge: no nonce, so nothing more to guess against.
//!
//! An extension's lockout does not shut out the phone that really is that extension: a source
//! that authenticated as it within the last [`KNOWN_FOR`] is still served, so an attacker
//! guessing 1001's secret from elsewhere cannot lock 1001's own phone out.
//!
//! Every table is bounded; the idlest entries are forgotten first.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a successful authentication keeps a source exempt from its extension's lockout.
pub const KNOWN_FOR: Duration = Duration::from_secs(3600);
/// Entries per table (sources, extensions, known pairs).
pub const MAX_ENTRIES: usize = 4096;

/// `[limits.auth]` in the guard's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSettings {
    pub failures_per_source: u32,
    pub failures_per_extension: u32,
    pub window: Duration,
    pub lockout: Duration,
    pub max_lockout: Duration,
}

impl Default for GuardSettings {
    fn default() -> GuardSettings {
        let c = crate::config::AuthLimitsConfig::default();
        GuardSettings::from(&c)
    }
}

impl From<&crate::config::AuthLimitsConfig> for GuardSettings {
    fn from(c: &crate::config::AuthLimitsConfig) -> GuardSettings {
        GuardSettings {
            failures_per_source: c.failures_per_source.max(1),
            failures_per_extension: c.failures_per_extension.max(1),
            window: c.failure_window.0,
            lockout: c.lockout.0,
            max_lockout: c.max_lockout.0.max(c.lockout.0),
        }
    }
}

/// Who is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Source { until: Instant },
    Extension { until: Instant },
}

/// A lockout that just began, for the log and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockoutStarted {
    Source {
        source: IpAddr,
        duration: Duration,
    },
    Extension {
        extension: String,
        duration: Duration,
    },
}

/// Failures of one source or extension.
#[derive(Debug, Clone)]
struct Tally {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
    /// Lockouts so far: the next one lasts `lockout * 2^strikes`.
    strikes: u32,
    last_seen: Instant,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally {
            window_start: now,
            failures: 0,
            locked_until: None,
            strikes: 0,
            last_seen: now,
        }
    }

    fn locked(&self, now: Instant) -> Option<Instant> {
        self.locked_until.filter(|until| *until > now)
    }

    /// Counts one failure; returns the lockout it starts, if any.
    fn fail(&mut self, limit: u32, s: &GuardSettings, now: Instant) -> Option<Duration> {
        self.last_seen = now;
        if let Some(until) = self.locked_until {
            if now >= until + s.max_lockout {
                // Quiet for long after its last lockout: start over.
                self.strikes = 0;
                self.locked_until = None;
            }
        }
        if now.saturating_duration_since(self.window_start) >= s.window {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures < limit {
            return None;
        }
        let factor = 1u32.checked_shl(self.strikes.min(31)).unwrap_or(u32::MAX);
        let duration = s
            .lockout
            .checked_mul(factor)
            .unwrap_or(s.max_lockout)
            .min(s.max_lockout);
        self.strikes = self.strikes.saturating_add(1);
        self.failures = 0;
        self.window_start = now;
        self.locked_until = Some(now + duration);
        Some(duration)
    }

    /// Nothing left to remember: not locked, the window over, no recent lockout.
    fn idle(&self, s: &GuardSettings, now: Instant) -> bool {
        let window_over = now.saturating_duration_since(self.window_start) >= s.window;
        let lock_forgotten = self
            .locked_until
            .is_none_or(|until| now >= until + s.max_lockout);
        window_over && lock_forgotten
    }
}

/// Counts failures and decides lockouts.
pub struct Guard {
    settings: GuardSettings,
    sources: HashMap<IpAddr, Tally>,
    extensions: HashMap<String, Tally>,
    /// (extension, source) -> when that source last authenticated as it.
    known: HashMap<(String, IpAddr), Instant>,
}

impl Guard {
    /// A guard with nothing counted.
    pub fn new(settings: GuardSettings) -> Guard {
        Guard {
            settings,
            sources: HashMap::new(),
            extensions: HashMap::new(),
            known: HashMap::new(),
        }
    }

    /// New limits (a config reload); counts kept so far stay.
    pub fn set_settings(&mut self, settings: GuardSettings) {
        self.settings = settings;
    }

    /// Whether `source` is locked out.
    pub fn source_locked(&self, source: IpAddr, now: Instant) -> Option<Locked> {
        self.sources
            .get(&source)
            .and_then(|t| t.locked(now))
            .map(|until| Locked::Source { until })
    }

    /// Whether `extension` is locked out for `source` (never for a source that authenticated
    /// as it lately).
    pub fn extension_locked(
        &self,
        extension: &str,
        source: IpAddr,
        now: Instant,
    ) -> Option<Locked> {
        let until = self.extensions.get(extension)?.locked(now)?;
        if self.is_known(extension, source, now) {
            return None;
        }
        Some(Locked::Extension { until })
    }

    /// One failed answer from `source` claiming `extension`; returns the lockouts it starts.
    pub fn failure(
        &mut self,
        source: IpAddr,
        extension: &str,
        now: Instant,
    ) -> Vec<LockoutStarted> {
        let mut started = Vec::new();
        let s = self.settings.clone();
        let tally = entry(&mut self.sources, source, &s, now);
        if let Some(duration) = tally.fail(s.failures_per_source, &s, now) {
            started.push(LockoutStarted::Source { source, duration });
        }
        if !self.is_known(extension, source, now) {
            // The real phone's own mistakes do not count against its extension.
            let tally = entry(&mut self.extensions, extension.to_string(), &s, now);
            if let Some(duration) = tally.fail(s.failures_per_extension, &s, now) {
                started.push(LockoutStarted::Extension {
                    extension: extension.to_string(),
                    duration,
                });
            }
        }
        started
    }

    /// `source` authenticated as `extension`: its own failures are forgiven, and it stays
    /// exempt from the extension's lockout for [`KNOWN_FOR`].
    pub fn success(&mut self, source: IpAddr, extension: &str, now: Instant) {
        if let Some(tally) = self.sources.get_mut(&source) {
            if tally.locked(now).is_none() {
                self.sources.remove(&source);
            }
        }
        let key = (extension.to_string(), source);
        if !self.known.contains_key(&key) && self.known.len() >= MAX_ENTRIES {
            self.known
                .retain(|_, at| now.saturating_duration_since(*at) < KNOWN_FOR);
            if self.known.len() >= MAX_ENTRIES {
                if let Some(oldest) = self
                    .known
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
                {
                    self.known.remove(&oldest);
                }
            }
        }
        self.known.insert(key, now);
    }

    /// Sources and extensions with something counted (for tests and status).
    pub fn tracked(&self) -> (usize, usize, usize) {
        (self.sources.len(), self.extensions.len(), self.known.len())
    }

    fn is_known(&self, extension: &str, source: IpAddr, now: Instant) -> bool {
        self.known
            .get(&(extension.to_string(), source))
            .is_some_and(|at| now.saturating_duration_since(*at) < KNOWN_FOR)
    }
}

/// The tally of `key`, made room for when the table is full.
fn entry<'a, K: Hash + Eq + Clone>(
    table: &'a mut HashMap<K, Tally>,
    key: K,
    s: &GuardSettings,
    now: Instant,
) -> &'a mut Tally {
    if !table.contains_key(&key) && table.len() >= MAX_ENTRIES {
        table.retain(|_, t| !t.idle(s, now));
        if table.len() >= MAX_ENTRIES {
            // Still full: forget the idlest that is not locked out, else the idlest.
            let victim = table
                .iter()
                .filter(|(_, t)| t.locked(now).is_none())
                .min_by_key(|(_, t)| t.last_seen)
                .or_else(|| table.iter().min_by_key(|(_, t)| t.last_seen))
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                table.remove(&victim);
            }
        }
    }
    table.entry(key).or_insert_with(|| Tally::new(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GuardSettings {
        GuardSettings {
            failures_per_source: 3,
            failures_per_extension: 5,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(200),
        }
    }

    const ATTACKER: &str = "198.51.100.9";
    const PHONE: &str = "192.0.2.10";

    #[test]
    fn a_source_is_locked_out_after_its_limit_and_longer_each_time() {
        let t0 = Instant::now();
        let mut g = Guard::new(settings());
        let ip: IpAddr = ATTACKER.parse().unwrap();
        assert!(g.failure(ip, "1001", t0).is_empty());
        assert!(g.failure(ip, "1002", t0).is_empty());
        assert_eq!(
            g.failure(ip, "1003", t0),
            [LockoutStarted::Source {
                source: ip,
                duration: Duration::from_secs(60)
            }]
        );
        assert!(g.source_locked(ip, t0 + Duration::from_secs(59)).is_some());
        let t1 = t0 + Duration::from_secs(60);
        assert!(g.source_locked(ip, t1).is_none(), "the lockout ends");
        // Three more: twice as long, then capped at max_lockout.
        g.failure(ip, "1001", t1);
        g.failure(ip, "1001", t1);
        let second = g.failure(ip, "1001", t1);
        assert!(second.contains(&LockoutStarted::Source {
            source: ip,
            duration: Duration::from_secs(120)
        }));
        let t2 = t1 + Duration::from_secs(120);
        for _ in 0..3 {
            g.failure(ip, "1009", t2);
        }
        assert_eq!(
            g.source_locked(ip, t2),
            Some(Locked::Source {
                until: t2 + Duration::from_secs(200)
            })
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut g = Guard::new(settings());
        let ip: IpAddr = ATTACKER.parse().unwrap();
        for i in 0..10u64 {
            g.failure(ip, "1001", t0 + Duration::from_secs(200 * i));
        }
        assert!(g
            .source_locked(ip, t0 + Duration::from_secs(1800))
            .is_none());
    }

    #[test]
    fn an_extension_lockout_spares_the_phone_that_authenticated_as_it() {
        let t0 = Instant::now();
        let mut g = Guard::new(GuardSettings {
            failures_per_source: 100,
            ..settings()
        });
        let phone: IpAddr = PHONE.parse().unwrap();
        g.success(phone, "1001", t0);
        let mut started = Vec::new();
        for i in 0..5u8 {
            let attacker = IpAddr::from([198, 51, 100, i]);
            started.extend(g.failure(attacker, "1001", t0));
        }
        assert_eq!(
            started,
            [LockoutStarted::Extension {
                extension: "1001".into(),
                duration: Duration::from_secs(60)
            }]
        );
        let stranger: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(g.extension_locked("1001", stranger, t0).is_some());
        assert!(g.extension_locked("1001", phone, t0).is_none());
        // A wrong answer by the phone itself does not count against 1001.
        g.failure(phone, "1001", t0);
        assert!(g.extension_locked("1002", stranger, t0).is_none());
        // After an hour without authenticating, the phone is a stranger too.
        let later = t0 + KNOWN_FOR;
        for i in 0..5u8 {
            g.failure(IpAddr::from([198, 51, 100, i]), "1001", later);
        }
        assert!(g.extension_locked("1001", phone, later).is_some());
    }

    #[test]
    fn success_forgives_a_source_that_is_not_locked_out() {
        let t0 = Instant::now();
        let mut g = Guard::new(settings());
        let phone: IpAddr = PHONE.parse().unwrap();
        g.failure(phone, "1001", t0);
        g.failure(phone, "1001", t0);
        g.success(phone, "1001", t0);
        g.failure(phone, "1001", t0);
        g.failure(phone, "1001", t0);
        assert!(g.source_locked(phone, t0).is_none());
    }

    #[test]
    fn tables_stay_bounded() {
        let t0 = Instant::now();
        let mut g = Guard::new(settings());
        for i in 0..(MAX_ENTRIES as u32 + 100) {
            let ip = IpAddr::from(i.to_be_bytes());
            g.failure(ip, &format!("x{i}"), t0);
            g.success(ip, &format!("y{i}"), t0);
        }
        let (sources, extensions, known) = g.tracked();
        assert!(sources <= MAX_ENTRIES, "{sources}");
        assert!(extensions <= MAX_ENTRIES, "{extensions}");
        assert!(known <= MAX_ENTRIES, "{known}");
    }
}
