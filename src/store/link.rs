//! An estimate of the link to the stores, from the reads the router makes: the round trip
//! (the shortest recent read), the bandwidth (the highest recent delivery rate while reads
//! were in flight) and the average object size, and from them how many fetches should be
//! in flight to keep the link busy (twice the bandwidth-delay product in objects, plus
//! one, between bounds the caller gives). Reads only feed it; it never fetches, never
//! sleeps, and its figures are atomics a statistics snapshot reads without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the shortest read counts as the round trip before a newer one replaces it.
const RTT_WINDOW: Duration = Duration::from_secs(10);
/// Busy time over which one delivery rate is measured.
const RATE_SAMPLE: Duration = Duration::from_millis(100);
/// Delivery rates kept: the bandwidth is the highest of them.
const RATES: usize = 8;
/// The in-flight target is this many bandwidth-delay products: room for the rate to
/// grow, since a link is only seen as fast as the fetches in flight let it be.
const GAIN: f64 = 2.0;
/// A round trip below this is a local store: the minimum in flight already hides it.
const LOCAL_RTT: Duration = Duration::from_millis(2);

/// The link estimate of one router (see the module doc).
#[derive(Debug, Default)]
pub struct Link {
    state: Mutex<State>,
    rtt_us: AtomicU64,
    bandwidth: AtomicU64,
    object_bytes: AtomicU64,
    inflight: AtomicU64,
    peak: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    inflight: u64,
    /// When the busy time was last accounted (while reads are in flight).
    mark: Option<Instant>,
    rtt: Option<(Duration, Instant)>,
    busy: Duration,
    busy_bytes: u64,
    rates: [u64; RATES],
    next_rate: usize,
    /// Average object size (exponentially weighted), bytes.
    avg: f64,
}

/// What [`Link`] knows now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFigures {
    /// The round trip, `None` before the first read.
    pub rtt: Option<Duration>,
    /// Bytes per second, 0 before a rate was measured.
    pub bandwidth: u64,
    /// Average object size, bytes.
    pub object_bytes: u64,
    /// Reads in flight now.
    pub inflight: u64,
    /// The most reads that were ever in flight at once.
    pub peak: u64,
}

impl LinkFigures {
    /// Fetches to keep in flight, within `min..=max`: `GAIN` bandwidth-delay products
    /// in objects, plus one; `min` until a round trip and a rate were measured, and for
    /// a local store (a round trip under `LOCAL_RTT`).
    pub fn target(&self, min: usize, max: usize) -> usize {
        let max = max.max(min);
        let (Some(rtt), true) = (self.rtt, self.bandwidth > 0 && self.object_bytes > 0) else {
            return min;
        };
        if rtt < LOCAL_RTT {
            return min;
        }
        let bdp = self.bandwidth as f64 * rtt.as_secs_f64();
        let n = (GAIN * bdp / self.object_bytes as f64).ceil() + 1.0;
        if n.is_finite() {
            (n as usize).clamp(min, max)
        } else {
            min
        }
    }
}

/// A read in flight: [`Link::end`] it when answered (dropping it unanswered only takes
/// it out of the count).
pub struct Read<'a> {
    link: &'a Link,
    started: Instant,
    ended: bool,
}

impl Link {
    /// A read starts now.
    pub fn begin(&self) -> Read<'_> {
        let now = Instant::now();
        self.begin_at(now);
        Read {
            link: self,
            started: now,
            ended: false,
        }
    }

    /// The figures now.
    pub fn figures(&self) -> LinkFigures {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rtt = ld(&self.rtt_us);
        LinkFigures {
            rtt: (rtt > 0).then(|| Duration::from_micros(rtt)),
            bandwidth: ld(&self.bandwidth),
            object_bytes: ld(&self.object_bytes),
            inflight: ld(&self.inflight),
            peak: ld(&self.peak),
        }
    }

    fn begin_at(&self, now: Instant) {
        if let Ok(mut s) = self.state.lock() {
            s.account(now);
            s.inflight += 1;
            self.inflight.store(s.inflight, Ordering::Relaxed);
            self.peak.fetch_max(s.inflight, Ordering::Relaxed);
        }
    }

    /// A read that started at `started` was answered at `now` with `bytes` (0: missing).
    fn end_at(&self, started: Instant, now: Instant, bytes: u64, answered: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        s.account(now);
        s.inflight = s.inflight.saturating_sub(1);
        self.inflight.store(s.inflight, Ordering::Relaxed);
        if !answered {
            return;
        }
        let took = now
            .saturating_duration_since(started)
            .max(Duration::from_micros(1));
        let replace = match s.rtt {
            None => true,
            Some((rtt, at)) => took <= rtt || now.saturating_duration_since(at) > RTT_WINDOW,
        };
        if replace {
            s.rtt = Some((took, now));
            self.rtt_us.store(
                took.as_micros().min(u64::MAX as u128) as u64,
                Ordering::Relaxed,
            );
        }
        if bytes > 0 {
            s.avg = if s.avg == 0.0 {
                bytes as f64
            } else {
                s.avg * 0.875 + bytes as f64 * 0.125
            };
            self.object_bytes.store(s.avg as u64, Ordering::Relaxed);
        }
        s.busy_bytes += bytes;
        if s.busy >= RATE_SAMPLE {
            let rate = (s.busy_bytes as f64 / s.busy.as_secs_f64()) as u64;
            let i = s.next_rate;
            s.rates[i] = rate;
            s.next_rate = (i + 1) % RATES;
            s.busy = Duration::ZERO;
            s.busy_bytes = 0;
            let best = s.rates.iter().copied().max().unwrap_or(0);
            self.bandwidth.store(best, Ordering::Relaxed);
        }
    }
}

impl State {
    /// Add the time since the last event to the busy time if reads were in flight.
    fn account(&mut self, now: Instant) {
        if let Some(m) = self.mark {
            if self.inflight > 0 {
                self.busy += now.saturating_duration_since(m);
            }
        }
        self.mark = Some(now);
    }
}

impl Read<'_> {
    /// The read was answered: `bytes` of object (0 when the store had none).
    pub fn end(mut self, bytes: u64) {
        self.ended = true;
        self.link.end_at(self.started, Instant::now(), bytes, true);
    }
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.link.end_at(self.started, Instant::now(), 0, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// One read alone taking `alone`, then `rounds` times `n` reads of `bytes` at once,
    /// each taking `took`.
    fn feed(
        link: &Link,
        t0: Instant,
        bytes: u64,
        alone: Duration,
        n: u64,
        took: Duration,
        rounds: u32,
    ) -> Instant {
        link.begin_at(t0);
        link.end_at(t0, t0 + alone, bytes, true);
        let mut t = t0 + alone;
        for _ in 0..rounds {
            for _ in 0..n {
                link.begin_at(t);
            }
            for _ in 0..n {
                link.end_at(t, t + took, bytes, true);
            }
            t += took;
        }
        t
    }

    #[test]
    fn a_local_store_needs_no_more_than_the_minimum() {
        let link = Link::default();
        // 0.2 ms a 300 KB read alone, 0.25 ms 4 at once: 4.8 GB/s.
        feed(&link, Instant::now(), 300_000, MS / 5, 4, MS / 4, 1000);
        let f = link.figures();
        assert_eq!(f.rtt, Some(MS / 5));
        assert!(f.bandwidth > 4_000_000_000, "{f:?}");
        assert_eq!(f.target(4, 32), 4, "{f:?}");
        assert_eq!(f.peak, 4);
        assert_eq!(f.inflight, 0);
    }

    #[test]
    fn a_long_fat_link_gets_more_fetches_in_flight_bounded() {
        let link = Link::default();
        // 100 ms round trip, 25 MB/s: 121 ms a 512 KiB read alone, 184 ms 4 at once.
        feed(&link, Instant::now(), 512 << 10, 121 * MS, 4, 184 * MS, 20);
        let f = link.figures();
        assert_eq!(f.rtt, Some(121 * MS));
        assert!(
            f.bandwidth > 11_000_000 && f.bandwidth < 11_800_000,
            "{f:?}"
        );
        // ceil(2 x 11.4 MB/s x 0.121 s / 512 KiB) + 1 = 7
        assert_eq!(f.target(4, 32), 7, "{f:?}");
        assert_eq!(f.target(4, 6), 6);
        assert_eq!(f.target(8, 6), 8, "the minimum wins over a smaller maximum");
        assert_eq!(LinkFigures::default().target(4, 32), 4);
    }

    #[test]
    fn idle_time_does_not_lower_the_rate_and_unanswered_reads_leave_the_count() {
        let link = Link::default();
        let t = Instant::now();
        let t = feed(&link, t, 100_000, 10 * MS, 2, 10 * MS, 20);
        let before = link.figures().bandwidth;
        assert!(before > 0);
        // a long pause, then the same pattern: the same rate
        feed(
            &link,
            t + Duration::from_secs(5),
            100_000,
            10 * MS,
            2,
            10 * MS,
            20,
        );
        assert_eq!(link.figures().bandwidth, before);
        {
            let _r = link.begin();
            assert_eq!(link.figures().inflight, 1);
        }
        assert_eq!(link.figures().inflight, 0);
    }
}
