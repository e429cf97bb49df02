//! The change bus between nodes: every history row's trigger (migration 0004) sends
//! `NOTIFY starcode_presence` in the writing transaction (delivered at commit), and a listener thread per node wakes
//! [`PresenceStore::poll_external_changes`] as soon as another node commits, instead of at
//! the runtime's next periodic poll.
//!
//! A notice only says *that* something changed (`<extension> <version> <history id>`); what
//! changed is always read from the history, from the store's cursor. So a notice lost to a
//! dropped connection, a gap in ids, or a garbage payload never loses or repeats a change:
//! the next poll (after a notice, right after a reconnect, or the runtime's safety-net tick)
//! announces every row past the cursor once, in id order.
//!
//! The listener uses a dedicated connection (a pooled one would be lent to writers), and
//! holds only a [`Weak`] reference to the store between wake-ups, so it ends by itself
//! within [`IDLE_CHECK`] of the store being dropped.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::{Client, NoTls};

use super::PostgresStore;
use crate::presence::store::{PresenceStore, StoreError};

/// The channel every node notifies and listens on.
pub(super) const CHANNEL: &str = "starcode_presence";

/// How long the listener blocks waiting for a notice before it checks whether the store is
/// still alive and retries a failed poll: the bound on how long it outlives the store.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The payload the history trigger sends (migration 0004 builds it in SQL): extension,
/// version and history id, separated by spaces (extensions never contain one).
#[cfg(test)]
pub(super) fn payload(extension: &str, version: i64, history_id: i64) -> String {
    format!("{extension} {version} {history_id}")
}

/// One parsed notice: which change another (or this) node committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Notice {
    pub extension: String,
    pub version: u64,
    pub history_id: i64,
}

/// A payload that is not `<extension> <version> <history id>`: logged and ignored, since
/// the history read finds every change anyway.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not '<extension> <version> <history id>': {0:?}")]
pub(super) struct BadNotice(String);

/// Parses a payload made by [`payload`]. Anyone with access to the database can `NOTIFY`
/// this channel, so nothing is trusted beyond its shape.
pub(super) fn parse(payload: &str) -> Result<Notice, BadNotice> {
    let bad = || BadNotice(payload.chars().take(80).collect());
    let mut parts = payload.split(' ');
    let (Some(extension), Some(version), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    crate::presence::store::validate_extension(extension).map_err(|_| bad())?;
    let version = version.parse::<u64>().map_err(|_| bad())?;
    let history_id = id.parse::<i64>().map_err(|_| bad())?;
    if history_id <= 0 {
        return Err(bad());
    }
    Ok(Notice {
        extension: extension.to_string(),
        version,
        history_id,
    })
}

/// What a notice means for the listener, given the store's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// Already read from the history, or written by this handle: nothing to do.
    Known,
    /// The next id after everything seen: poll.
    Next,
    /// Ids between the last one seen and this one have not been noticed (a notice lost while
    /// reconnecting, or ids of rolled-back writes): poll, which reads them all if they exist.
    Gap { missing: i64 },
}

/// The highest history id the listener has been told of, to notice gaps.
#[derive(Debug, Default)]
pub(super) struct Notices {
    highest: i64,
}

impl Notices {
    /// Classifies `id` given the store's cursor (`read`: highest id polled) and whether this
    /// handle wrote it, and remembers it.
    pub(super) fn observe(&mut self, id: i64, read: i64, own: bool) -> Seen {
        let seen = self.highest.max(read);
        self.highest = seen.max(id);
        if id <= read || own {
            Seen::Known
        } else if id > seen + 1 {
            Seen::Gap {
                missing: id - seen - 1,
            }
        } else {
            Seen::Next
        }
    }
}

/// Reconnection delays: 100 ms doubling to 5 s, back to 100 ms once connected.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The delay before the next attempt.
    pub(super) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Connected again: the next outage starts with a short delay.
    pub(super) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: Self::FIRST }
    }
}

/// Whether the listener is in an outage, so it logs its start and end once each, however
/// many reconnection attempts fail in between.
#[derive(Debug, Default)]
pub(super) struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// A failed attempt or a lost connection at `now`: true if this starts an outage (log
    /// it), false if one is already under way.
    pub(super) fn failed(&mut self, now: Instant) -> bool {
        let starts = self.since.is_none();
        self.since.get_or_insert(now);
        starts
    }

    /// Connected at `now`: how long the outage that ends lasted, if there was one.
    pub(super) fn connected(&mut self, now: Instant) -> Option<Duration> {
        self.since
            .take()
            .map(|since| now.saturating_duration_since(since))
    }
}

/// Starts the listener thread of `store`. It connects (retrying with [`Backoff`]), polls
/// once (changes made before it listened), then polls after each notice of another node's
/// change, until the store is dropped. The polls go through `poller` while it lives (the
/// engine's timed handle of this store, so they count in the store metrics like every other
/// call), else straight to the store.
pub(super) fn spawn(
    store: &Arc<PostgresStore>,
    poller: Option<Weak<dyn PresenceStore>>,
    config: ::postgres::Config,
) -> Result<JoinHandle<()>, StoreError> {
    let weak = Arc::downgrade(store);
    let target = store.target.clone();
    std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || run(&weak, poller.as_ref(), &config, &target))
        .map_err(|e| StoreError::Database(format!("{}: starting the listener: {e}", store.target)))
}

/// Why one connection's listening ended.
enum Ended {
    StoreGone,
    Lost(String),
}

/// The thread: connect, listen until the connection is lost, reconnect; logs one warning
/// when an outage starts and one info line when it ends, whatever the number of attempts.
fn run(
    store: &Weak<PostgresStore>,
    poller: Option<&Weak<dyn PresenceStore>>,
    config: &::postgres::Config,
    target: &str,
) {
    let mut backoff = Backoff::default();
    let mut outage = Outage::default();
    loop {
        if store.strong_count() == 0 {
            return;
        }
        let client = match connect(config) {
            Ok(client) => client,
            Err(error) => {
                if outage.failed(Instant::now()) {
                    tracing::warn!(database = target, %error, "presence listener cannot connect; retrying");
                } else {
                    tracing::debug!(database = target, %error, "presence listener still cannot connect");
                }
                if !sleep_while_alive(store, backoff.next_delay()) {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        match outage.connected(Instant::now()) {
            Some(down) => tracing::info!(
                database = target,
                down_ms = u64::try_from(down.as_millis()).unwrap_or(u64::MAX),
                "presence listener reconnected; resyncing from the history"
            ),
            None => tracing::debug!(database = target, "presence listener connected"),
        }
        match listen(store, poller, client, target) {
            Ended::StoreGone => return,
            Ended::Lost(error) => {
                outage.failed(Instant::now());
                tracing::warn!(database = target, %error, "presence listener lost its connection; reconnecting");
            }
        }
    }
}

/// A dedicated connection listening on [`CHANNEL`].
fn connect(config: &::postgres::Config) -> Result<Client, ::postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    Ok(client)
}

/// Sleeps `delay` in slices, returning false as soon as the store is gone.
fn sleep_while_alive(store: &Weak<PostgresStore>, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        if store.strong_count() == 0 {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(IDLE_CHECK));
    }
}

/// Listens on one connection. The first poll resyncs whatever was committed while nobody
/// listened; a failed poll is retried every [`IDLE_CHECK`] until one succeeds.
fn listen(
    store: &Weak<PostgresStore>,
    poller: Option<&Weak<dyn PresenceStore>>,
    mut client: Client,
    target: &str,
) -> Ended {
    let mut notices = Notices::default();
    let mut poll_due = true;
    let mut poll_failing = false;
    loop {
        if poll_due {
            let Some(store) = store.upgrade() else {
                return Ended::StoreGone;
            };
            let polled = match poller.and_then(Weak::upgrade) {
                Some(timed) => timed.poll_external_changes(),
                None => store.poll_external_changes(),
            };
            match polled {
                Ok(n) => {
                    poll_due = false;
                    poll_failing = false;
                    if n > 0 {
                        tracing::trace!(
                            database = target,
                            changes = n,
                            "other nodes' changes announced"
                        );
                    }
                }
                Err(error) if !poll_failing => {
                    poll_failing = true;
                    tracing::warn!(database = target, %error, "cannot read other nodes' changes; retrying");
                }
                Err(_) => {}
            }
        }
        if store.strong_count() == 0 {
            return Ended::StoreGone;
        }
        // Block for the first notice, then take whatever else already arrived, so a burst
        // of commits costs one poll rather than one each.
        let received = match receive(&mut client) {
            Ok(received) => received,
            Err(e) => return Ended::Lost(e.to_string()),
        };
        if !received.is_empty() {
            let Some(store) = store.upgrade() else {
                return Ended::StoreGone;
            };
            let cursor = store.cursor();
            for notification in &received {
                let notice = match parse(notification.payload()) {
                    Ok(notice) => notice,
                    Err(error) => {
                        tracing::warn!(database = target, channel = notification.channel(), %error, "ignoring a malformed presence notice");
                        continue;
                    }
                };
                let own = cursor.own_ids.contains(&notice.history_id);
                let seen = notices.observe(notice.history_id, cursor.last_history_id, own);
                tracing::trace!(
                    extension = %notice.extension,
                    version = notice.version,
                    history_id = notice.history_id,
                    ?seen,
                    "presence notice"
                );
                match seen {
                    Seen::Known => {}
                    Seen::Next => poll_due = true,
                    Seen::Gap { missing } => {
                        tracing::debug!(
                            database = target,
                            missing,
                            "gap in presence notices; resyncing from the history"
                        );
                        poll_due = true;
                    }
                }
            }
        }
        // A closed connection reads as "no notice": only `is_closed` tells them apart.
        if client.is_closed() {
            return Ended::Lost("the server closed the connection".into());
        }
    }
}

/// Waits up to [`IDLE_CHECK`] for a notice, then takes the ones already buffered too.
fn receive(client: &mut Client) -> Result<Vec<::postgres::Notification>, ::postgres::Error> {
    let mut waiting = client.notifications();
    let Some(first) = waiting.timeout_iter(IDLE_CHECK).next()? else {
        return Ok(Vec::new());
    };
    let mut received = vec![first];
    let mut more = waiting.iter();
    while let Some(n) = more.next()? {
        received.push(n);
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        assert_eq!(
            parse(&payload("1001", 7, 42)),
            Ok(Notice {
                extension: "1001".into(),
                version: 7,
                history_id: 42
            })
        );
        assert_eq!(parse("sales.desk+2 1 9").unwrap().extension, "sales.desk+2");
    }

    #[test]
    fn garbage_payloads_are_refused() {
        for bad in [
            "",
            "1001",
            "1001 7",
            "1001 7 42 extra",
            "1001  7 42",
            "1001 seven 42",
            "1001 7 -3",
            "1001 7 0",
            "1001 -1 42",
            "10 01 7 42",
            "bad/ext 7 42",
            "1001 7 99999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let long = "x".repeat(10_000);
        assert!(parse(&long).unwrap_err().0.len() <= 80 * 4);
    }

    #[test]
    fn notices_tell_known_next_and_gaps_apart() {
        let mut n = Notices::default();
        assert_eq!(n.observe(5, 5, false), Seen::Known, "already read");
        assert_eq!(n.observe(6, 5, false), Seen::Next);
        assert_eq!(n.observe(7, 5, true), Seen::Known, "our own write");
        assert_eq!(n.observe(8, 5, false), Seen::Next, "7 was noticed");
        assert_eq!(n.observe(12, 5, false), Seen::Gap { missing: 3 });
        // The poll moved the cursor past everything: the same ids again are known.
        assert_eq!(n.observe(12, 12, false), Seen::Known);
        assert_eq!(n.observe(13, 12, false), Seen::Next);
        // The cursor ahead of what was noticed (read by the safety-net poll) is no gap.
        assert_eq!(n.observe(21, 20, false), Seen::Next);
    }

    #[test]
    fn an_outage_is_reported_once_at_each_end() {
        let t0 = Instant::now();
        let mut outage = Outage::default();
        assert_eq!(outage.connected(t0), None, "first connection: no outage");
        assert!(outage.failed(t0), "lost: starts one");
        for attempt in 1..20 {
            assert!(!outage.failed(t0 + Duration::from_millis(attempt)));
        }
        assert_eq!(
            outage.connected(t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert!(outage.failed(t0 + Duration::from_secs(4)), "the next one");
    }

    #[test]
    fn backoff_doubles_to_a_bound_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
