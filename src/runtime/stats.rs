//! Engine-wide counters the load benchmark reads from the shutdown log (and `/metrics` reads
//! at every scrape): how late RTP packets left compared with when they were due, and how calls
//! ended. Lock-free, cheap per packet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket width of the lateness histogram.
const BUCKET_MICROS: u64 = 10;
/// Buckets cover 0 to 50 ms; later packets land in the last bucket.
const BUCKETS: usize = 5_000;

/// A histogram of RTP send lateness.
pub struct Lateness {
    buckets: Vec<AtomicU64>,
    max_micros: AtomicU64,
    /// Every recorded lateness added up, for the Prometheus histogram's `_sum`.
    sum_micros: AtomicU64,
}

/// The figures reported at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatenessSummary {
    pub packets: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

/// [`Lateness::histogram`]: one count per bound, the last for everything above the last bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatenessHistogram {
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: Duration,
}

impl Default for Lateness {
    fn default() -> Lateness {
        Lateness {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_micros: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Lateness {
    /// Records one packet sent `late` after its due time.
    pub fn record(&self, late: Duration) {
        let micros = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let index = usize::try_from(micros / BUCKET_MICROS)
            .unwrap_or(usize::MAX)
            .min(BUCKETS - 1);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.max_micros.fetch_max(micros, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The recordings as a histogram with upper bounds `bounds` (ascending; each a multiple of
    /// the 10 µs bucket width below 50 ms, where the count is exact), for Prometheus: a count
    /// per bound of the recordings above the previous bound, then the count above the last.
    /// Read bucket by bucket while packets keep coming, so a scrape may be a packet behind in
    /// places; never wrong by more than what arrived during the read.
    pub fn histogram(&self, bounds: &[Duration]) -> LatenessHistogram {
        let mut counts = vec![0u64; bounds.len() + 1];
        let mut slot = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            // Bucket i holds [i, i + 1) * BUCKET_MICROS; it is at or below a bound b when its
            // upper end is, i.e. all it holds is < b.
            let upper = Duration::from_micros((i as u64 + 1) * BUCKET_MICROS);
            while slot < bounds.len() && bounds.get(slot).is_some_and(|b| upper > *b) {
                slot += 1;
            }
            if let Some(count) = counts.get_mut(slot) {
                *count += bucket.load(Ordering::Relaxed);
            }
        }
        LatenessHistogram {
            count: counts.iter().sum(),
            sum: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
            counts,
        }
    }

    /// Percentiles so far (upper bucket bounds, so never optimistic).
    pub fn summary(&self) -> LatenessSummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let packets: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            if packets == 0 {
                return Duration::ZERO;
            }
            let rank = ((packets as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_micros((i as u64 + 1) * BUCKET_MICROS);
                }
            }
            Duration::from_micros(BUCKETS as u64 * BUCKET_MICROS)
        };
        LatenessSummary {
            packets,
            p50: quantile(0.50),
            p99: quantile(0.99),
            p999: quantile(0.999),
            max: Duration::from_micros(self.max_micros.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_packets() {
        let h = Lateness::default();
        assert_eq!(h.summary().packets, 0);
        for _ in 0..990 {
            h.record(Duration::from_micros(95));
        }
        for _ in 0..9 {
            h.record(Duration::from_millis(3));
        }
        h.record(Duration::from_secs(2));
        let s = h.summary();
        assert_eq!(s.packets, 1000);
        assert_eq!(s.p50, Duration::from_micros(100));
        assert_eq!(s.p99, Duration::from_micros(100));
        assert_eq!(s.p999, Duration::from_micros(3010));
        assert_eq!(s.max, Duration::from_secs(2));
    }

    #[test]
    fn histogram_counts_each_recording_under_the_first_bound_above_it() {
        let h = Lateness::default();
        for micros in [0, 9, 10, 95, 99, 100, 240, 3_000, 49_000] {
            h.record(Duration::from_micros(micros));
        }
        h.record(Duration::from_secs(2));
        let bounds = [
            Duration::from_micros(10),
            Duration::from_micros(100),
            Duration::from_millis(1),
            Duration::from_millis(40),
        ];
        let hist = h.histogram(&bounds);
        // < 10 µs: 0, 9; < 100 µs: 10, 95, 99; < 1 ms: 100, 240; < 40 ms: 3 ms; above: 49 ms, 2 s.
        assert_eq!(hist.counts, vec![2, 3, 2, 1, 2]);
        assert_eq!(hist.count, 10);
        assert_eq!(
            hist.sum,
            Duration::from_micros(9 + 10 + 95 + 99 + 100 + 240 + 3_000 + 49_000 + 2_000_000)
        );
        let empty = Lateness::default().histogram(&bounds);
        assert_eq!(empty.counts, vec![0; 5]);
        assert_eq!(empty.sum, Duration::ZERO);
    }
}
