//! The bounded worker pipeline: the one way zvfs spreads work over threads (pack's
//! encoders, convert, unpack's fetches, clone, verify, warm). A driver on the calling
//! thread feeds items into a bounded queue; `workers` scoped threads take them (one at a
//! time, or up to `batch` already queued, for work that gains from doing several at once)
//! and hand results back. Memory stays bounded: at most `queue` items wait and each
//! worker holds one batch. The first error stops everything: workers skip what is still
//! queued, the driver's next call returns that error, and `run` returns it once every
//! worker has stopped. A panicking worker is an error, not a hang.
//!
//! It owns threads and queues only; it knows nothing of chunks, files or stores.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use crate::error::{Error, Result};

/// The shape of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Items that may wait for a worker before [`Feed::push`] blocks (at least 1).
    pub queue: usize,
    /// Most items a worker takes at once (already queued ones only; at least 1).
    pub batch: usize,
}

impl Config {
    /// `workers` threads, a queue of twice as many items, one item at a time.
    pub fn new(workers: usize) -> Config {
        let workers = workers.max(1);
        Config {
            workers,
            queue: 2 * workers,
            batch: 1,
        }
    }

    /// The same with a queue of `queue` items.
    pub fn queue(self, queue: usize) -> Config {
        Config {
            queue: queue.max(1),
            ..self
        }
    }

    /// The same with workers taking up to `batch` queued items at once.
    pub fn batch(self, batch: usize) -> Config {
        Config {
            batch: batch.max(1),
            ..self
        }
    }
}

/// What workers and the driver share: the stop flag and the first error.
struct Shared {
    stop: AtomicBool,
    first: Mutex<Option<Error>>,
}

impl Shared {
    fn fail(&self, e: Error) {
        if let Ok(mut first) = self.first.lock() {
            if first.is_none() {
                *first = Some(e);
            }
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn error(&self) -> Error {
        match self.first.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => e,
            None => Error::invalid("pipeline stopped"),
        }
    }
}

/// The driver's end of a running pipeline: push items, take results.
pub struct Feed<'p, T, R> {
    tx: Option<mpsc::SyncSender<T>>,
    rx: mpsc::Receiver<Option<R>>,
    shared: &'p Shared,
    in_flight: usize,
}

impl<T, R> Feed<'_, T, R> {
    fn check(&self) -> Result<()> {
        if self.shared.stop.load(Ordering::SeqCst) {
            return Err(self.shared.error());
        }
        Ok(())
    }

    /// Queue `item` for the workers, waiting while the queue is full. Fails with the
    /// first error once any item failed.
    pub fn push(&mut self, item: T) -> Result<()> {
        self.check()?;
        let Some(tx) = &self.tx else {
            return Err(Error::invalid("pipeline closed"));
        };
        if tx.send(item).is_err() {
            return Err(self.shared.error());
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Items pushed whose results were not taken yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn take(&mut self, got: Option<R>) -> Result<R> {
        self.in_flight -= 1;
        match got {
            Some(r) => Ok(r),
            None => Err(self.shared.error()),
        }
    }

    /// A finished result if one is ready, without waiting.
    pub fn try_next(&mut self) -> Result<Option<R>> {
        self.check()?;
        match self.rx.try_recv() {
            Ok(got) => self.take(got).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Wait for the next finished result (in completion order); `None` once nothing is
    /// in flight.
    // Not an `Iterator`: the result is fallible (the pipeline's first error), for `?`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<R>> {
        self.check()?;
        if self.in_flight == 0 {
            return Ok(None);
        }
        match self.rx.recv() {
            Ok(got) => self.take(got).map(Some),
            Err(_) => Err(self.shared.error()),
        }
    }

    /// Stop with `e` as the pipeline's error (a failure the driver found).
    pub fn fail(&self, e: Error) {
        self.shared.fail(e);
    }
}

/// Run a pipeline whose workers take batches: `init` makes each worker's state (e.g. an
/// encoder), `work` turns a batch into one result per item, in the batch's order (an
/// `Err` stops the pipeline). `drive` feeds it and takes the results; what it returns is
/// returned once all workers stopped (results it did not take are dropped).
pub fn run_batched<T, R, S, X>(
    cfg: Config,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, Vec<T>) -> Vec<Result<R>> + Sync,
    drive: impl FnOnce(&mut Feed<'_, T, R>) -> Result<X>,
) -> Result<X>
where
    T: Send,
    R: Send,
{
    let shared = Shared {
        stop: AtomicBool::new(false),
        first: Mutex::new(None),
    };
    let (tx, jobs) = mpsc::sync_channel::<T>(cfg.queue.max(1));
    let jobs = Mutex::new(jobs);
    let (done_tx, rx) = mpsc::channel::<Option<R>>();
    std::thread::scope(|s| {
        for _ in 0..cfg.workers.max(1) {
            let (jobs, done, shared, init, work) = (&jobs, done_tx.clone(), &shared, &init, &work);
            s.spawn(move || worker(jobs, done, shared, cfg.batch.max(1), init, work));
        }
        drop(done_tx);
        let mut feed = Feed {
            tx: Some(tx),
            rx,
            shared: &shared,
            in_flight: 0,
        };
        let out = drive(&mut feed);
        if out.is_err() {
            shared.stop.store(true, Ordering::SeqCst);
        }
        // Closing the queue ends the workers once they finish what they hold.
        drop(feed);
        out
    })
}

/// Run a pipeline of one item at a time (see [`run_batched`]).
pub fn run<T, R, X>(
    cfg: Config,
    work: impl Fn(T) -> Result<R> + Sync,
    drive: impl FnOnce(&mut Feed<'_, T, R>) -> Result<X>,
) -> Result<X>
where
    T: Send,
    R: Send,
{
    let cfg = cfg.batch(1);
    run_batched(
        cfg,
        || (),
        |(), batch| batch.into_iter().map(&work).collect(),
        drive,
    )
}

/// Process every item of `items` with `workers` threads, handing each result to `done`
/// on the calling thread as it comes (in completion order). Stops at the first error,
/// from `work` or `done`.
pub fn each<T, R>(
    workers: usize,
    items: impl IntoIterator<Item = T>,
    work: impl Fn(T) -> Result<R> + Sync,
    mut done: impl FnMut(R) -> Result<()>,
) -> Result<()>
where
    T: Send,
    R: Send,
{
    run(Config::new(workers), work, |feed| {
        for item in items {
            while let Some(r) = feed.try_next()? {
                done(r)?;
            }
            feed.push(item)?;
        }
        while let Some(r) = feed.next()? {
            done(r)?;
        }
        Ok(())
    })
}

fn worker<T, R, S>(
    jobs: &Mutex<mpsc::Receiver<T>>,
    done: mpsc::Sender<Option<R>>,
    shared: &Shared,
    batch: usize,
    init: &(impl Fn() -> S + Sync),
    work: &(impl Fn(&mut S, Vec<T>) -> Vec<Result<R>> + Sync),
) {
    let mut state = init();
    loop {
        let items = {
            let Ok(rx) = jobs.lock() else { return };
            let Ok(first) = rx.recv() else { return };
            let mut items = vec![first];
            while items.len() < batch {
                match rx.try_recv() {
                    Ok(item) => items.push(item),
                    Err(_) => break,
                }
            }
            items
        };
        let n = items.len();
        if shared.stop.load(Ordering::SeqCst) {
            for _ in 0..n {
                let _ = done.send(None);
            }
            continue;
        }
        let results = match std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut state, items))) {
            Ok(r) if r.len() == n => r,
            Ok(r) => {
                let msg = format!("a worker returned {} results for {n} items", r.len());
                (0..n).map(|_| Err(Error::invalid(msg.clone()))).collect()
            }
            Err(_) => (0..n)
                .map(|_| Err(Error::invalid("a worker thread panicked")))
                .collect(),
        };
        for r in results {
            let msg = match r {
                Ok(r) => Some(r),
                Err(e) => {
                    shared.fail(e);
                    None
                }
            };
            if done.send(msg).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_item_once_and_bounded() {
        let busy = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let mut sum = 0u64;
        each(
            3,
            1..=1000u64,
            |i| {
                let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                busy.fetch_sub(1, Ordering::SeqCst);
                Ok(i)
            },
            |i| {
                sum += i;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(sum, 500_500);
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }

    #[test]
    fn first_error_stops_the_rest() {
        let worked = AtomicUsize::new(0);
        let r = each(
            2,
            0..10_000u32,
            |i| {
                worked.fetch_add(1, Ordering::SeqCst);
                if i == 10 {
                    Err(Error::corrupt(format!("item {i} is bad")))
                } else {
                    Ok(i)
                }
            },
            |_| Ok(()),
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert_eq!(e.msg, "item 10 is bad");
        // Bounded queue: the driver learns of the failure after a few more items at most.
        assert!(worked.load(Ordering::SeqCst) < 100, "{worked:?}");
        let r = each(2, 0..100u32, Ok, |i| {
            if i == 5 {
                Err(Error::not_found("driver says no"))
            } else {
                Ok(())
            }
        });
        assert_eq!(r.unwrap_err().kind, ErrorKind::NotFound);
    }

    #[test]
    fn a_panicking_worker_is_an_error() {
        let r = each(
            2,
            0..50u32,
            |i| {
                if i == 7 {
                    panic!("boom");
                }
                Ok(i)
            },
            |_| Ok(()),
        );
        assert!(r.unwrap_err().msg.contains("panicked"));
    }

    #[test]
    fn batches_take_what_is_queued() {
        let most = AtomicUsize::new(0);
        let got = run_batched(
            Config::new(1).queue(16).batch(4),
            || 0usize,
            |calls, items: Vec<u32>| {
                *calls += 1;
                most.fetch_max(items.len(), Ordering::SeqCst);
                items.into_iter().map(|i| Ok(i * 2)).collect()
            },
            |feed| {
                for i in 0..16 {
                    feed.push(i)?;
                }
                let mut out = Vec::new();
                while let Some(r) = feed.next()? {
                    out.push(r);
                }
                out.sort();
                Ok(out)
            },
        )
        .unwrap();
        assert_eq!(got, (0..16).map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 4);
    }
}
