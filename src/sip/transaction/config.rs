//! The RFC 3261 timer base values, kept in one place so every transaction and the 2xx
//! retransmitter derive their schedules (E, F, G, H, I, J, K, L) from the same numbers.

use std::time::Duration;

use super::TxnError;

/// The longest base timer we accept: 64 times it must still be a sane instant offset, and a
/// retransmission interval longer than this is a configuration mistake, not a network need.
pub const MAX_BASE_TIMER: Duration = Duration::from_secs(3600);

/// T1/T2/T4 (RFC 3261 defaults 500 ms / 4 s / 5 s), configurable so deployments on slow links
/// (or tests) can stretch or shrink every derived timer at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate: first retransmission interval; 64*T1 bounds every transaction.
    pub t1: Duration,
    /// Cap on the retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// How long the network may still hold a message; lingering time in Completed/Confirmed.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// Builds a checked config, so a bad value from a file is an error rather than a
    /// retransmission storm (T1 = 0) or an overflowing deadline.
    pub fn new(t1: Duration, t2: Duration, t4: Duration) -> Result<Self, TxnError> {
        let config = TimerConfig { t1, t2, t4 };
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants the schedules rely on: T1 > 0, T1 <= T2, all bounded.
    pub fn validate(&self) -> Result<(), TxnError> {
        if self.t1.is_zero() {
            return Err(TxnError::InvalidTimers("T1 must be greater than zero"));
        }
        if self.t2 < self.t1 {
            return Err(TxnError::InvalidTimers("T2 must not be shorter than T1"));
        }
        if self.t2 > MAX_BASE_TIMER || self.t4 > MAX_BASE_TIMER {
            return Err(TxnError::InvalidTimers(
                "T1, T2 and T4 must be at most one hour",
            ));
        }
        Ok(())
    }

    /// 64*T1: Timers B, F, H, J and L — how long any transaction may keep trying.
    pub fn timeout_64t1(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The next retransmission interval after `current`: doubled, capped at T2.
    pub(super) fn backoff(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rfc_3261_values() {
        let c = TimerConfig::default();
        assert_eq!(c.t1, Duration::from_millis(500));
        assert_eq!(c.t2, Duration::from_secs(4));
        assert_eq!(c.t4, Duration::from_secs(5));
        assert_eq!(c.timeout_64t1(), Duration::from_secs(32));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_zero_t1_and_t2_below_t1() {
        let ms = Duration::from_millis;
        assert!(TimerConfig::new(ms(0), ms(4000), ms(5000)).is_err());
        assert!(TimerConfig::new(ms(500), ms(400), ms(5000)).is_err());
        assert!(TimerConfig::new(ms(500), Duration::from_secs(7200), ms(5000)).is_err());
        assert!(TimerConfig::new(ms(100), ms(100), ms(0)).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_t2() {
        let c = TimerConfig::default();
        let ms = Duration::from_millis;
        assert_eq!(c.backoff(ms(500)), ms(1000));
        assert_eq!(c.backoff(ms(2000)), ms(4000));
        assert_eq!(c.backoff(ms(4000)), ms(4000));
    }
}
