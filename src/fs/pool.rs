//! A fixed pool of worker threads fed through a bounded queue. The FUSE session thread
//! hands slow requests (reads, opens, directory loads) to it, and blocks when the queue is
//! full (back-pressure instead of unbounded buffering). A panicking job is contained: its
//! reply object is dropped, which answers the kernel with EIO. Dropping a pool waits a
//! bounded time for its workers: a job stuck on a slow store is left to end on its own
//! (its reply has nowhere to go once the session ended), so an unmount never waits for it.
//! A [`Gate`] holds the jobs of a pool to a limit that may change while they wait.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long dropping a pool waits for its workers to finish what they hold.
const DRAIN_WAIT: Duration = Duration::from_millis(500);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A running pool: named worker threads taking jobs from one bounded queue. Dropping it
/// closes the queue and waits at most `DRAIN_WAIT` for the workers.
pub struct Pool {
    tx: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `threads` workers sharing a queue of `queue` pending jobs.
    pub fn new(name: &str, threads: usize, queue: usize) -> std::io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .stack_size(256 * 1024)
                    .spawn(move || worker(&rx))?,
            );
        }
        Ok(Pool {
            tx: Some(tx),
            threads: handles,
        })
    }

    /// Queue a job, waiting while the queue is full.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.send(Box::new(job)) {
                // Workers are gone (shutdown): run inline so the reply is still sent.
                (e.0)();
            }
        }
    }

    /// A handle that queues jobs on this pool from elsewhere (another pool's jobs); it
    /// keeps the queue open while it lives.
    pub fn spawner(&self) -> Option<Spawner> {
        self.tx.clone().map(Spawner)
    }

    /// Queue a job unless the queue is full; returns whether it was queued.
    pub fn try_spawn(&self, job: impl FnOnce() + Send + 'static) -> bool {
        match &self.tx {
            Some(tx) => match tx.try_send(Box::new(job)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(g) => g.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                    log::error!("a filesystem worker job panicked; its request got EIO");
                }
            }
            Err(_) => return,
        }
    }
}

/// Queues jobs on a [`Pool`] (see [`Pool::spawner`]).
#[derive(Clone)]
pub struct Spawner(SyncSender<Job>);

impl Spawner {
    /// Queue a job, waiting while the queue is full; runs it here if the pool is gone.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        if let Err(e) = self.0.send(Box::new(job)) {
            (e.0)();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx = None;
        let until = Instant::now() + DRAIN_WAIT;
        for t in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// How often a job waiting at a [`Gate`] looks at its limit again.
const GATE_RECHECK: Duration = Duration::from_millis(20);

/// Lets at most a changing number of jobs through at once (see [`Gate::enter`]).
#[derive(Default)]
pub struct Gate {
    inside: Mutex<usize>,
    left: Condvar,
}

/// A job inside a [`Gate`]; it leaves when dropped.
pub struct Inside<'a>(&'a Gate);

impl Gate {
    /// Wait until fewer than `limit()` jobs are inside, then enter. The limit is asked
    /// again whenever one leaves (and every `GATE_RECHECK`); a poisoned gate lets every
    /// job through rather than stopping them.
    pub fn enter(&self, limit: impl Fn() -> usize) -> Inside<'_> {
        if let Ok(mut n) = self.inside.lock() {
            while *n >= limit().max(1) {
                match self.left.wait_timeout(n, GATE_RECHECK) {
                    Ok((g, _)) => n = g,
                    Err(_) => return Inside(self),
                }
            }
            *n += 1;
        }
        Inside(self)
    }

    /// Jobs inside now.
    pub fn inside(&self) -> usize {
        self.inside.lock().map(|n| *n).unwrap_or(0)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        if let Ok(mut n) = self.0.inside.lock() {
            *n = n.saturating_sub(1);
        }
        self.0.left.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_gate_holds_jobs_to_its_limit_as_it_changes() {
        let gate = Arc::new(Gate::default());
        let limit = Arc::new(AtomicUsize::new(2));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let run = |jobs: usize| {
            let hs: Vec<_> = (0..jobs)
                .map(|_| {
                    let (gate, limit, now, most) =
                        (gate.clone(), limit.clone(), now.clone(), most.clone());
                    std::thread::spawn(move || {
                        let _in = gate.enter(|| limit.load(Ordering::Relaxed));
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        };
        run(8);
        assert_eq!(most.load(Ordering::SeqCst), 2);
        limit.store(5, Ordering::Relaxed);
        most.store(0, Ordering::SeqCst);
        run(8);
        assert_eq!(most.load(Ordering::SeqCst), 5);
        assert_eq!(gate.inside(), 0);
    }
}
