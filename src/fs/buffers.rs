//! Read slots: at most a fixed number of reads assemble their reply at once, so the
//! memory of reads in flight is bounded however many requests the kernel queues. A read
//! replies from a window mapped straight from the cache when it can; only a read that
//! must copy takes one of the slots' reusable buffers of the largest request size, which
//! is then never allocated nor zeroed again.
//! This module knows nothing of chunks or FUSE; callers must fill what they send.

use std::sync::{Condvar, Mutex};

/// The read slots of one mount and the buffers they keep; shared by every reading thread
/// ([`Buffers::new`] sets how many reads may assemble a reply at once).
pub struct Buffers {
    free: Mutex<Free>,
    cv: Condvar,
    size: usize,
}

struct Free {
    /// Slots not lent.
    slots: usize,
    /// Buffers given back, ready for reuse (never more than the slots).
    spare: Vec<Vec<u8>>,
}

/// One read's slot; its buffer (if it took one) and the slot go back when dropped.
pub struct Lent<'a> {
    buf: Vec<u8>,
    /// Whether this holds one of the slots (an oversized request does not).
    slotted: bool,
    owner: &'a Buffers,
}

impl Buffers {
    /// `count` slots, each with a buffer of `size` bytes created when first needed.
    pub fn new(count: usize, size: usize) -> Buffers {
        Buffers {
            free: Mutex::new(Free {
                slots: count.max(1),
                spare: Vec::new(),
            }),
            cv: Condvar::new(),
            size,
        }
    }

    /// A slot for a read of `len` bytes, waiting while all are lent. A request larger
    /// than the buffers gets a buffer of its own instead.
    pub fn lend(&self, len: usize) -> Lent<'_> {
        if len > self.size {
            return Lent {
                buf: vec![0; len],
                slotted: false,
                owner: self,
            };
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while free.slots == 0 {
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        free.slots -= 1;
        Lent {
            buf: Vec::new(),
            slotted: true,
            owner: self,
        }
    }
}

impl Lent<'_> {
    /// The first `len` bytes of the slot's buffer (stale data, to be overwritten),
    /// taking a spare buffer or making one the first time.
    pub fn slice(&mut self, len: usize) -> &mut [u8] {
        if self.buf.len() < len {
            let spare = {
                let mut free = self.owner.free.lock().unwrap_or_else(|p| p.into_inner());
                free.spare.pop()
            };
            self.buf = spare.unwrap_or_else(|| vec![0; self.owner.size.max(len)]);
        }
        &mut self.buf[..len]
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if !self.slotted {
            return; // an oversized one-off
        }
        let buf = std::mem::take(&mut self.buf);
        let mut free = self.owner.free.lock().unwrap_or_else(|p| p.into_inner());
        if buf.len() == self.owner.size {
            free.spare.push(buf);
        }
        free.slots += 1;
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
        assert_eq!(free.slots, 2, "no slot lost or added");
        assert!(free.spare.len() <= 2, "at most one buffer per slot");
    }

    #[test]
    fn a_slot_that_does_not_copy_makes_no_buffer() {
        let b = Buffers::new(2, 64);
        drop(b.lend(64));
        assert!(b.free.lock().unwrap().spare.is_empty());
        let mut lent = b.lend(64);
        lent.slice(10).fill(1);
        drop(lent);
        assert_eq!(
            b.free.lock().unwrap().spare.len(),
            1,
            "the buffer is kept for reuse"
        );
    }

    #[test]
    fn an_oversized_request_gets_its_own_buffer() {
        let b = Buffers::new(1, 16);
        let _held = b.lend(16);
        let mut big = b.lend(100); // must not wait for the one that is lent
        assert_eq!(big.slice(100).len(), 100);
    }
}
