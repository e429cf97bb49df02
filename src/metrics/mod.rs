//! Prometheus metrics of the engine: one [`Metrics`] registry, created once by
//! `runtime::run` and shared as `Arc<Metrics>` by the SIP task, the call tasks, the store and
//! the HTTP layer, whose `/metrics` returns [`Metrics::render`] as [`CONTENT_TYPE`].
//!
//! The engine's hot path stays cheap: RTP send lateness is the lock-free `stats::Lateness`
//! read at scrape time (`lateness.rs`); everything else moves once per call, key, store call,
//! change or SIP turn, by atomic increments. The sans-IO user agent knows nothing of metrics:
//! it keeps plain totals (authentication, limits, NOTIFYs) and the SIP task hands their
//! growth over after every turn ([`UaExport`]). Store calls are timed by [`TimedStore`], a
//! wrapper any `PresenceStore` goes through, so no call site changes.
//!
//! Family names, units and label values are listed in the README's "Metrics" section.

mod lateness;
mod store;
mod ua;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::dtmf::KeySource;
use crate::ivr::Outcome;
use crate::presence::ChangeSource;
use crate::runtime::stats::Lateness;

pub use store::TimedStore;
pub use ua::{UaExport, UaTotals};

/// The `Content-Type` of [`Metrics::render`]'s text: OpenMetrics 1.0, which Prometheus asks
/// for first and parses natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one series: `(name, value)` pairs, every value one of a fixed few.
type Labels = Vec<(&'static str, &'static str)>;

/// A family of histograms that all share one set of bucket bounds.
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Store call bounds: a read is tens of microseconds, a durable write a disk sync (ms).
const STORE_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Change-to-NOTIFY bounds: a durable write plus building and sending the first NOTIFY.
const CHANGE_BUCKETS: [f64; 13] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Every writer of a status, so each per-writer series exists from the first scrape.
const CHANGE_SOURCES: [ChangeSource; 5] = [
    ChangeSource::FeatureCode,
    ChangeSource::Publish,
    ChangeSource::Cli,
    ChangeSource::Api,
    ChangeSource::Web,
];

/// Every store operation the runtime makes, so each series exists from the first scrape.
const STORE_OPS: [&str; 7] = [
    "get",
    "set",
    "list",
    "poll_external_changes",
    "write_subscriptions",
    "load_subscriptions",
    "history",
];

/// Every call outcome label set, so each series exists from the first scrape.
const CALL_OUTCOMES: [(&str, Option<&str>); 8] = [
    ("saved", None),
    ("no_change", Some("too_many_attempts")),
    ("no_change", Some("caller_hung_up")),
    ("no_change", Some("max_call_time")),
    ("save_failed", None),
    ("commit_in_flight", None),
    ("not_started", Some("media_setup")),
    ("not_started", Some("caller_hung_up")),
];

/// Why a call answered by the user agent never ran its IVR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStarted {
    /// The call's media could not be set up (no prompts for its codec).
    MediaSetup,
    /// The caller hung up before the media was agreed (late offer).
    CallerHungUp,
}

impl NotStarted {
    fn as_str(self) -> &'static str {
        match self {
            NotStarted::MediaSetup => "media_setup",
            NotStarted::CallerHungUp => "caller_hung_up",
        }
    }
}

/// The engine's metrics: the registry and a handle on every family in it.
pub struct Metrics {
    registry: Registry,
    calls: Family<Labels, Counter>,
    calls_active: Gauge,
    keys: Family<Labels, Counter>,
    status_changes: Family<Labels, Counter>,
    change_to_notify: HistogramFamily,
    rtp_lateness: Arc<Lateness>,
    store_latency: HistogramFamily,
    store_errors: Family<Labels, Counter>,
    send_failures: Counter,
    /// Families the user agent's totals move; see [`UaExport`].
    ua: ua::UaFamilies,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered and every known label set at zero, so a
    /// dashboard sees each series from the first scrape.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("starcode");
        let calls = Family::<Labels, Counter>::default();
        for (outcome, reason) in CALL_OUTCOMES {
            calls.get_or_create_owned(&call_labels(outcome, reason));
        }
        registry.register(
            "calls",
            "Feature-code calls finished, by how they ended (outcome; reason for no_change and not_started)",
            calls.clone(),
        );
        let calls_active = Gauge::default();
        registry.register(
            "calls_active",
            "Feature-code calls whose media task is running now",
            calls_active.clone(),
        );
        let keys = Family::<Labels, Counter>::default();
        for source in [KeySource::Rfc4733, KeySource::Inband, KeySource::SipInfo] {
            keys.get_or_create_owned(&vec![("source", key_source(source))]);
        }
        registry.register(
            "keys",
            "Key presses the IVR acted on, by the source that reported them first (one press is one key whatever mix of sources the phone sends)",
            keys.clone(),
        );
        let status_changes = Family::<Labels, Counter>::default();
        for source in CHANGE_SOURCES {
            status_changes.get_or_create_owned(&vec![("source", source.as_str())]);
        }
        registry.register(
            "status_changes",
            "Committed status changes the engine announced to watchers, by writer",
            status_changes.clone(),
        );
        let change_to_notify: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(CHANGE_BUCKETS));
        for source in CHANGE_SOURCES {
            change_to_notify.get_or_create_owned(&vec![("source", source.as_str())]);
        }
        registry.register_with_unit(
            "change_to_notify",
            "Time from a status change (the start of its durable write here; its commit time when another process or node wrote it) to its first NOTIFY handed to the socket, by writer",
            Unit::Seconds,
            change_to_notify.clone(),
        );
        let rtp_lateness = Arc::new(Lateness::default());
        registry.register_collector(Box::new(lateness::LatenessCollector::new(
            rtp_lateness.clone(),
        )));
        let store_latency: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(STORE_BUCKETS));
        let store_errors = Family::<Labels, Counter>::default();
        for op in STORE_OPS {
            store_latency.get_or_create_owned(&vec![("op", op)]);
            store_errors.get_or_create_owned(&vec![("op", op)]);
        }
        registry.register_with_unit(
            "store_latency",
            "Time one presence store call took (its blocking work, not the wait for a blocking thread), by operation",
            Unit::Seconds,
            store_latency.clone(),
        );
        registry.register(
            "store_errors",
            "Presence store calls that returned an error, by operation",
            store_errors.clone(),
        );
        let send_failures = Counter::default();
        registry.register(
            "sip_send_failures",
            "SIP messages that could not be handed to the network (full or closed connection, socket error)",
            send_failures.clone(),
        );
        let ua = ua::UaFamilies::register(&mut registry);
        Metrics {
            registry,
            calls,
            calls_active,
            keys,
            status_changes,
            change_to_notify,
            rtp_lateness,
            store_latency,
            store_errors,
            send_failures,
            ua,
        }
    }

    /// The OpenMetrics text of every family, as `/metrics` returns it (serve it as
    /// [`CONTENT_TYPE`]). Ends with `# EOF`.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) = encode(&mut text, &self.registry) {
            // Writing into a String cannot fail; a broken encoder must not take the engine.
            tracing::error!(%error, "metrics could not be rendered");
        }
        text
    }

    /// A call's IVR is over: counted by its outcome (`None`: it never reached one).
    pub fn call_finished(&self, outcome: Option<&Outcome>) {
        let (name, reason) = match outcome {
            Some(Outcome::NoChange(reason)) => ("no_change", Some(reason.as_str())),
            Some(outcome) => (outcome.name(), None),
            None => ("unknown", None),
        };
        self.calls.get_or_create(&call_labels(name, reason)).inc();
    }

    /// A call the user agent answered that never ran its IVR.
    pub fn call_not_started(&self, why: NotStarted) {
        self.calls
            .get_or_create(&call_labels("not_started", Some(why.as_str())))
            .inc();
    }

    /// A key press the IVR acted on.
    pub fn key_pressed(&self, source: KeySource) {
        self.keys
            .get_or_create(&vec![("source", key_source(source))])
            .inc();
    }

    /// A committed status change reached the engine.
    pub fn status_changed(&self, source: ChangeSource) {
        self.status_changes
            .get_or_create(&vec![("source", source.as_str())])
            .inc();
    }

    /// A change by `source` had its first NOTIFY leave, `waited` after it was made.
    pub fn change_notified(&self, source: ChangeSource, waited: Duration) {
        self.change_to_notify
            .get_or_create(&vec![("source", source.as_str())])
            .observe(waited.as_secs_f64());
    }

    /// The RTP send lateness histogram the call tasks record into, one packet at a time.
    pub fn rtp_lateness(&self) -> &Arc<Lateness> {
        &self.rtp_lateness
    }

    /// One store call of `op` took `took`; `ok` false when it returned an error.
    pub fn store_call(&self, op: &'static str, took: Duration, ok: bool) {
        let labels = vec![("op", op)];
        self.store_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.store_errors.get_or_create(&labels).inc();
        }
    }

    /// A SIP message could not be handed to the network.
    pub fn send_failed(&self) {
        self.send_failures.inc();
    }

    /// Running call tasks now.
    pub fn set_calls_active(&self, calls: usize) {
        self.calls_active
            .set(i64::try_from(calls).unwrap_or(i64::MAX));
    }
}

fn call_labels(outcome: &'static str, reason: Option<&'static str>) -> Labels {
    let mut labels = vec![("outcome", outcome)];
    if let Some(reason) = reason {
        labels.push(("reason", reason));
    }
    labels
}

/// The transcripts' names for key sources.
fn key_source(source: KeySource) -> &'static str {
    match source {
        KeySource::Rfc4733 => "rfc4733",
        KeySource::Inband => "inband",
        KeySource::SipInfo => "sip_info",
    }
}

#[cfg(test)]
mod tests;
