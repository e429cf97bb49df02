//! When each watcher's next NOTIFY may go (RFC 6665 §4.2.2). One NOTIFY in flight per
//! subscription: a status that changes faster than NOTIFYs are answered is coalesced, so only
//! the latest version goes out after the one in flight, and the watcher always ends on the
//! latest state. In-order delivery also keeps the watcher from seeing an older state after a
//! newer one.
//!
//! Failures: `481` ends the subscription at once (RFC 6665 §4.2.2 MUST). A timeout or another
//! error response counts as a failure; the subscription is kept (the next change tries again)
//! until [`NotifierConfig::max_failures`] in a row. RFC 6665 says a notifier SHOULD remove the
//! subscription on a NOTIFY timeout; counting instead keeps LEDs alive across a phone reboot
//! or a short outage, and `max_failures: 1` gives the strict behaviour.

use std::collections::HashMap;

use super::subscriptions::{SubscriptionId, SubscriptionTable};

/// Default for [`NotifierConfig::max_failures`].
pub const DEFAULT_MAX_FAILURES: u32 = 5;

/// Notifier tuning, from config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifierConfig {
    /// Consecutive failed NOTIFYs after which a subscription is given up.
    pub max_failures: u32,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            max_failures: DEFAULT_MAX_FAILURES,
        }
    }
}

/// One NOTIFY to build and send now: the state of `version` (or newer) in CSeq `cseq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyJob {
    pub id: SubscriptionId,
    pub cseq: u32,
    pub version: u64,
}

/// Why the shell must drop a subscription (without a final NOTIFY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// The watcher answered `481`: it no longer knows the subscription.
    NoSuchSubscription,
    /// This many NOTIFYs failed in a row.
    TooManyFailures(u32),
}

/// What a NOTIFY's outcome means for the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// Not the NOTIFY in flight (late, duplicate, provisional, or forgotten): nothing to do.
    Ignored,
    /// Delivered. When `more` is true a newer version is waiting: call `next_to_send`.
    Delivered { more: bool },
    /// Failed and counted; kept. When `more` is true a newer version is waiting.
    Failed { failures: u32, more: bool },
    /// Remove the subscription from the table (and its stored record); no final NOTIFY.
    Remove(RemoveReason),
}

/// Delivery state of one subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Delivery {
    /// The NOTIFY awaiting its final response: (CSeq, version).
    in_flight: Option<(u32, u64)>,
    /// The version owed once nothing is in flight.
    pending: Option<u64>,
    /// The highest version sent (or being sent), to ignore stale change announcements.
    sent: Option<u64>,
    consecutive_failures: u32,
}

/// Per-subscription NOTIFY sequencing for every watcher.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    config: NotifierConfig,
    states: HashMap<SubscriptionId, Delivery>,
}

impl Notifier {
    /// A notifier with nothing to send.
    pub fn new(config: NotifierConfig) -> Notifier {
        Notifier {
            config,
            states: HashMap::new(),
        }
    }

    /// The presentity of `id` changed to `version`; returns true when a NOTIFY is now owed.
    /// Versions not newer than what was already sent or owed are ignored (a late or repeated
    /// announcement must not take the watcher back).
    pub fn changed(&mut self, id: SubscriptionId, version: u64) -> bool {
        let state = self.states.entry(id).or_default();
        let newest = state.pending.max(state.sent);
        if newest.is_some_and(|v| version <= v) {
            return state.pending.is_some();
        }
        state.pending = Some(version);
        true
    }

    /// A NOTIFY is required whatever was sent before: after accepting a SUBSCRIBE or a refresh
    /// (RFC 6665 §4.2.1.2), so the watcher learns the new `Subscription-State` too.
    pub fn force(&mut self, id: SubscriptionId, version: u64) {
        let state = self.states.entry(id).or_default();
        state.pending = Some(state.pending.map_or(version, |p| p.max(version)));
    }

    /// [`Notifier::changed`] for every watcher of `extension`; returns those now owed a NOTIFY.
    pub fn changed_extension(
        &mut self,
        table: &SubscriptionTable,
        extension: &str,
        version: u64,
    ) -> Vec<SubscriptionId> {
        table
            .watchers_of(extension)
            .into_iter()
            .filter(|id| self.changed(*id, version))
            .collect()
    }

    /// The NOTIFY to send now for `id`, if one is owed, none is in flight and the table's
    /// durable record allows its CSeq ([`SubscriptionTable::may_notify`]; else it stays owed
    /// until the record is stored). Allocates its CSeq from the table (persist the record
    /// before or just after sending). When the subscription is gone from the table, its
    /// delivery state is dropped.
    pub fn next_to_send(
        &mut self,
        table: &mut SubscriptionTable,
        id: SubscriptionId,
    ) -> Option<NotifyJob> {
        let state = self.states.get_mut(&id)?;
        if state.in_flight.is_some() {
            return None;
        }
        if state.pending.is_some() && table.get(id).is_some() && !table.may_notify(id) {
            tracing::debug!(%id, "NOTIFY waits for its subscription's checkpoint to be stored");
            return None;
        }
        let version = state.pending?;
        let Some(cseq) = table.next_cseq(id) else {
            self.states.remove(&id);
            return None;
        };
        state.pending = None;
        state.in_flight = Some((cseq, version));
        state.sent = Some(state.sent.map_or(version, |s| s.max(version)));
        tracing::trace!(%id, cseq, version, "NOTIFY out");
        Some(NotifyJob { id, cseq, version })
    }

    /// The final response to the NOTIFY with `cseq` (provisional responses are ignored).
    pub fn on_response(&mut self, id: SubscriptionId, cseq: u32, status: u16) -> NotifyOutcome {
        if status < 200 || !self.is_in_flight(id, cseq) {
            return NotifyOutcome::Ignored;
        }
        match status {
            200..=299 => {
                let Some(state) = self.states.get_mut(&id) else {
                    return NotifyOutcome::Ignored;
                };
                state.in_flight = None;
                state.consecutive_failures = 0;
                NotifyOutcome::Delivered {
                    more: state.pending.is_some(),
                }
            }
            481 => {
                self.states.remove(&id);
                tracing::info!(%id, "NOTIFY got 481: subscription removed");
                NotifyOutcome::Remove(RemoveReason::NoSuchSubscription)
            }
            _ => self.fail(id, status),
        }
    }

    /// The NOTIFY with `cseq` got no final response (transaction timeout or transport error).
    pub fn on_timeout(&mut self, id: SubscriptionId, cseq: u32) -> NotifyOutcome {
        if !self.is_in_flight(id, cseq) {
            return NotifyOutcome::Ignored;
        }
        self.fail(id, 408)
    }

    /// Drops `id`'s delivery state (the subscription ended); later responses are ignored.
    pub fn forget(&mut self, id: SubscriptionId) {
        self.states.remove(&id);
    }

    /// The NOTIFY of `id` awaiting a response: (CSeq, version).
    pub fn in_flight(&self, id: SubscriptionId) -> Option<(u32, u64)> {
        self.states.get(&id).and_then(|s| s.in_flight)
    }

    /// Consecutive failures of `id` so far.
    pub fn failures(&self, id: SubscriptionId) -> u32 {
        self.states.get(&id).map_or(0, |s| s.consecutive_failures)
    }

    fn is_in_flight(&self, id: SubscriptionId, cseq: u32) -> bool {
        self.in_flight(id).is_some_and(|(c, _)| c == cseq)
    }

    fn fail(&mut self, id: SubscriptionId, status: u16) -> NotifyOutcome {
        let Some(state) = self.states.get_mut(&id) else {
            return NotifyOutcome::Ignored;
        };
        state.in_flight = None;
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let failures = state.consecutive_failures;
        if failures >= self.config.max_failures {
            self.states.remove(&id);
            tracing::info!(%id, failures, "NOTIFYs keep failing: subscription removed");
            return NotifyOutcome::Remove(RemoveReason::TooManyFailures(failures));
        }
        tracing::debug!(%id, status, failures, "NOTIFY failed");
        NotifyOutcome::Failed {
            failures,
            more: state.pending.is_some(),
        }
    }
}

#[cfg(test)]
mod tests;
