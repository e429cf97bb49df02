//! RTP send lateness as a Prometheus histogram, read at scrape time from the lock-free
//! `stats::Lateness` the call tasks record into: a `prometheus_client` histogram takes a lock
//! per observation, and this one is observed for every packet of every call.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::runtime::stats::Lateness;

/// Upper bounds in microseconds: multiples of the 10 µs recording grid, all below its 50 ms
/// cap (where the counts are exact). A phone's jitter buffer absorbs tens of milliseconds.
const BOUNDS_MICROS: [u64; 9] = [100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 40_000];

/// Encodes `starcode_rtp_send_lateness_seconds` from the shared recorder.
pub(super) struct LatenessCollector {
    lateness: Arc<Lateness>,
    bounds: Vec<Duration>,
}

impl LatenessCollector {
    pub(super) fn new(lateness: Arc<Lateness>) -> LatenessCollector {
        LatenessCollector {
            lateness,
            bounds: BOUNDS_MICROS
                .iter()
                .map(|&m| Duration::from_micros(m))
                .collect(),
        }
    }
}

impl std::fmt::Debug for LatenessCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatenessCollector").finish_non_exhaustive()
    }
}

impl Collector for LatenessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let histogram = self.lateness.histogram(&self.bounds);
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .map(Duration::as_secs_f64)
            .chain(std::iter::once(f64::INFINITY))
            .zip(histogram.counts.iter().copied())
            .collect();
        let mut metric = encoder.encode_descriptor(
            "rtp_send_lateness",
            "How late each RTP packet of a call's prompts left, compared with when it was due.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(
            histogram.sum.as_secs_f64(),
            histogram.count,
            &buckets,
            None,
        )
    }
}
