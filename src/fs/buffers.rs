//! The reply buffers of reads: a fixed number of reusable buffers of the largest request
//! size. A read takes one before it assembles its reply and gives it back when the reply
//! is sent, so the memory of reads in flight is bounded however many requests the kernel
//! queues (1 MiB requests on 8 workers would otherwise hold 8 MiB), and a buffer is never
//! allocated nor zeroed again for each request.
//! This module knows nothing of chunks or FUSE; callers must fill what they send.

use std::sync::{Condvar, Mutex};

pub struct Buffers {
    free: Mutex<Free>,
    cv: Condvar,
    size: usize,
}

struct Free {
    /// Buffers given back, ready for reuse.
    spare: Vec<Vec<u8>>,
    /// Buffers that may still be created.
    unmade: usize,
}

/// A buffer lent to one read; it goes back to its [`Buffers`] when dropped.
pub struct Lent<'a> {
    buf: Vec<u8>,
    owner: &'a Buffers,
}

impl Buffers {
    /// At most `count` buffers of `size` bytes, created when first needed.
    pub fn new(count: usize, size: usize) -> Buffers {
        Buffers {
            free: Mutex::new(Free {
                spare: Vec::new(),
                unmade: count.max(1),
            }),
            cv: Condvar::new(),
            size,
        }
    }

    /// A buffer of at least `len` bytes (its first `len` bytes hold stale data to be
    /// overwritten), waiting while all are lent. A request larger than the buffers gets
    /// a buffer of its own.
    pub fn lend(&self, len: usize) -> Lent<'_> {
        if len > self.size {
            return Lent {
                buf: vec![0; len],
                owner: self,
            };
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(buf) = free.spare.pop() {
                return Lent { buf, owner: self };
            }
            if free.unmade > 0 {
                free.unmade -= 1;
                drop(free);
                return Lent {
                    buf: vec![0; self.size],
                    owner: self,
                };
            }
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Lent<'_> {
    /// The first `len` bytes of the buffer.
    pub fn slice(&mut self, len: usize) -> &mut [u8] {
        &mut self.buf[..len]
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if self.buf.len() != self.owner.size {
            return; // an oversized one-off
        }
        let buf = std::mem::take(&mut self.buf);
        let mut free = self.owner.free.lock().unwrap_or_else(|p| p.into_inner());
        free.spare.push(buf);
        drop(free);
        self.owner.cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn at_most_count_buffers_are_lent_at_once_and_they_are_reused() {
        let b = Arc::new(Buffers::new(2, 64));
        let out = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (b, out, most) = (b.clone(), out.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let mut lent = b.lend(64);
                        let now = out.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        lent.slice(64).fill(7);
                        std::thread::yield_now();
                        out.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        let free = b.free.lock().unwrap();
        assert_eq!(free.spare.len() + free.unmade, 2, "no buffer lost or added");
    }

    #[test]
    fn an_oversized_request_gets_its_own_buffer() {
        let b = Buffers::new(1, 16);
        let _held = b.lend(16);
        let mut big = b.lend(100); // must not wait for the one that is lent
        assert_eq!(big.slice(100).len(), 100);
    }
}
