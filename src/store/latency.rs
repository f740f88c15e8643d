//! A lock-free latency histogram: fixed log-scale buckets of atomic counters (upper bounds
//! 2^(i/4) µs, about 19% apart, from 1 µs to about 67 s; slower samples land in the last
//! bucket). Recording is one relaxed atomic add, so readers of the counters (a stats
//! snapshot) never hold up the fetches that record. It only counts: quantiles are read
//! from the buckets, at bucket resolution; it keeps no samples.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per doubling of the latency.
const STEPS_PER_DOUBLING: f64 = 4.0;
/// Number of buckets: the last upper bound is 2^(104/4) µs = 2^26 µs, about 67 s.
const BUCKETS: usize = 105;

/// Counts of samples per latency bucket.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram({} samples)", self.count())
    }
}

fn bucket_of(d: Duration) -> usize {
    let us = d.as_secs_f64() * 1e6;
    if us <= 1.0 {
        return 0;
    }
    let i = (STEPS_PER_DOUBLING * us.log2()).ceil();
    (i as usize).min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, in milliseconds.
fn upper_ms(i: usize) -> f64 {
    (i as f64 / STEPS_PER_DOUBLING).exp2() / 1000.0
}

impl Histogram {
    /// Count one sample.
    pub fn record(&self, d: Duration) {
        self.buckets[bucket_of(d)].fetch_add(1, Ordering::Relaxed);
    }

    /// Samples counted so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The latency, in milliseconds, at or below which a fraction `q` (0..=1) of the
    /// samples fall: the upper bound of the bucket holding that rank. `None` without
    /// samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the sample asked for, 1-based: at least the first one.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper_ms(i));
            }
        }
        Some(upper_ms(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_the_bucket_of_the_sample() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for _ in 0..98 {
            h.record(Duration::from_millis(2));
        }
        h.record(Duration::from_millis(500));
        h.record(Duration::from_secs(3600));
        assert_eq!(h.count(), 100);
        let p50 = h.quantile_ms(0.5).unwrap();
        assert!((2.0..2.0 * 1.19).contains(&p50), "{p50}");
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((500.0..500.0 * 1.19).contains(&p99), "{p99}");
        // beyond the last bucket: its bound
        let max = h.quantile_ms(1.0).unwrap();
        assert!(max > 60_000.0 && max < 70_000.0, "{max}");
        // below a microsecond: the first bucket, still above zero
        let tiny = Histogram::default();
        tiny.record(Duration::from_nanos(10));
        assert!(tiny.quantile_ms(0.5).unwrap() > 0.0);
    }
}
