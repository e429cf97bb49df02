//! The web login rate limiter: the SIP brute-force [`Guard`] (failures per source and per
//! claimed user within a window, lockouts that double at each repeat, a user's lockout
//! sparing the sources that logged in as it lately, bounded tables) reused with
//! `[limits.http_login]`, on the wall clock the web entry points take.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::config::LoginLimitsConfig;
use crate::sip::auth::guard::{Guard, GuardSettings, Locked, LockoutStarted};

/// `[limits.http_login]` in the guard's terms (its "extension" is the login's user name).
pub type LoginLimits = GuardSettings;

impl From<&LoginLimitsConfig> for GuardSettings {
    fn from(c: &LoginLimitsConfig) -> GuardSettings {
        GuardSettings {
            failures_per_source: c.failures_per_source.max(1),
            failures_per_extension: c.failures_per_user.max(1),
            window: c.failure_window.0,
            lockout: c.lockout.0,
            max_lockout: c.max_lockout.0.max(c.lockout.0),
        }
    }
}

/// Counts failed logins and says who must wait.
pub struct LoginLimiter {
    guard: Guard,
    /// The guard counts on a monotonic scale; wall-clock times map onto it from this fixed
    /// origin, so tests drive the limiter with plain `SystemTime`s. A clock stepped back
    /// only shortens nothing: the guard's arithmetic saturates.
    origin: Instant,
}

impl LoginLimiter {
    /// A limiter with nothing counted.
    pub fn new(limits: &LoginLimitsConfig) -> LoginLimiter {
        LoginLimiter {
            guard: Guard::new(limits.into()),
            origin: Instant::now(),
        }
    }

    /// New limits (a config reload); counts kept so far stay.
    pub fn set_limits(&mut self, limits: &LoginLimitsConfig) {
        self.guard.set_settings(limits.into());
    }

    fn instant(&self, now: SystemTime) -> Instant {
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.origin.checked_add(since_epoch).unwrap_or(self.origin)
    }

    /// How long `source` must wait before trying `user` again, if locked out.
    pub fn wait(&self, user: &str, source: IpAddr, now: SystemTime) -> Option<Duration> {
        let at = self.instant(now);
        let locked = self
            .guard
            .source_locked(source, at)
            .or_else(|| self.guard.extension_locked(user, source, at))?;
        let (Locked::Source { until } | Locked::Extension { until }) = locked;
        Some(
            until
                .saturating_duration_since(at)
                .max(Duration::from_secs(1)),
        )
    }

    /// One failed login; returns the lockouts it starts (for the log and the metrics).
    pub fn failure(&mut self, user: &str, source: IpAddr, now: SystemTime) -> Vec<LockoutStarted> {
        let at = self.instant(now);
        self.guard.failure(source, user, at)
    }

    /// A successful login: the source's failures are forgiven and it stays exempt from the
    /// user's lockout for a while.
    pub fn success(&mut self, user: &str, source: IpAddr, now: SystemTime) {
        let at = self.instant(now);
        self.guard.success(source, user, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn limits() -> LoginLimitsConfig {
        LoginLimitsConfig {
            failures_per_source: 4,
            failures_per_user: 3,
            failure_window: HumanDuration(Duration::from_secs(600)),
            lockout: HumanDuration(Duration::from_secs(60)),
            max_lockout: HumanDuration(Duration::from_secs(240)),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn a_user_is_locked_after_its_limit_then_longer_each_time() {
        let mut l = LoginLimiter::new(&limits());
        let owner: IpAddr = "192.0.2.10".parse().unwrap();
        l.success("ann", owner, at(0));
        for i in 0..2u8 {
            l.failure("ann", IpAddr::from([198, 51, 100, i]), at(1));
            assert_eq!(l.wait("ann", IpAddr::from([198, 51, 100, 9]), at(1)), None);
        }
        let started = l.failure("ann", IpAddr::from([198, 51, 100, 2]), at(1));
        assert!(
            matches!(&started[..], [LockoutStarted::Extension { extension, duration }]
                if extension == "ann" && duration.as_secs() == 60),
            "{started:?}"
        );
        let stranger: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(
            l.wait("ann", stranger, at(31)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            l.wait("bob", stranger, at(31)),
            None,
            "other users are free"
        );
        assert_eq!(
            l.wait("ann", owner, at(31)),
            None,
            "where ann logged in from lately is spared"
        );
        assert_eq!(l.wait("ann", stranger, at(61)), None, "the lockout ends");
        for _ in 0..3 {
            l.failure("ann", stranger, at(62));
        }
        assert_eq!(
            l.wait("ann", stranger, at(62)),
            Some(Duration::from_secs(120)),
            "the second lockout is twice as long"
        );
    }

    #[test]
    fn a_source_guessing_many_users_is_locked_out_of_all() {
        let mut l = LoginLimiter::new(&limits());
        let attacker: IpAddr = "198.51.100.7".parse().unwrap();
        for (i, user) in ["a", "b", "c", "d"].iter().enumerate() {
            l.failure(user, attacker, at(i as u64));
        }
        assert_eq!(
            l.wait("zed", attacker, at(10)),
            Some(Duration::from_secs(53))
        );
        assert_eq!(l.wait("zed", "198.51.100.8".parse().unwrap(), at(10)), None);
    }

    #[test]
    fn failures_spread_beyond_the_window_never_lock() {
        let mut l = LoginLimiter::new(&limits());
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        for i in 0..20 {
            l.failure("ann", ip, at(i * 601));
            assert_eq!(l.wait("ann", ip, at(i * 601)), None, "attempt {i}");
        }
    }
}
