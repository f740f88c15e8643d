//! Cache files mapped read-only, back to back, into one address range: a read that spans
//! several chunks becomes one contiguous slice that the kernel copies straight from the
//! page cache into the reply, one copy fewer than reading the files into a buffer.
//! This module owns the mappings and unmaps them; it knows nothing of chunks, checks or
//! FUSE. Callers must map only files that are long enough and that nobody truncates
//! while mapped (cache files are replaced by rename and removed by unlink, which leave a
//! mapping intact); they hand the bytes to the kernel rather than touching them.

use rustix::mm::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};
use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::OnceLock;

/// One file range to map: `len` bytes of `file` from `offset`.
pub struct Part<'a> {
    /// The file, open for reading.
    pub file: &'a File,
    /// Start of the range in the file, in bytes (a multiple of the page size).
    pub offset: u64,
    /// Length of the range, in bytes.
    pub len: usize,
}

/// Several file ranges mapped back to back; unmapped on drop.
pub struct Window {
    base: NonNull<c_void>,
    reserved: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by the window alone (no other handle to the
// pointer exists), so moving the window to another thread moves sole ownership.
unsafe impl Send for Window {}
// SAFETY: the mapping is read-only; sharing `&Window` only gives out `&[u8]` views of it,
// which any number of threads may read at once.
unsafe impl Sync for Window {}

/// The system's page size, asked of libc once. (Not `rustix::param`: without the
/// `PR_GET_AUXV` of Linux 6.4 it reads `/proc/self/auxv`, and panics when /proc is not
/// there, as in an initramfs that has moved it into the new root.)
pub fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf only reads a constant of the C library.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
    })
}

/// Whether file ranges `(offset, len)` can be mapped back to back: every one starts at a
/// page boundary of its file, and every one but the last fills whole pages.
pub fn can_map(ranges: impl ExactSizeIterator<Item = (u64, usize)>) -> bool {
    let page = page_size() as u64;
    let n = ranges.len();
    n > 0
        && ranges.enumerate().all(|(i, (offset, len))| {
            len > 0
                && offset.is_multiple_of(page)
                && (i + 1 == n || (len as u64).is_multiple_of(page))
        })
}

impl Window {
    /// Map `parts` (whose ranges must pass [`can_map`]) back to back, their pages read in now.
    pub fn map(parts: &[Part<'_>]) -> io::Result<Window> {
        if !can_map(parts.iter().map(|p| (p.offset, p.len))) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ranges not aligned to pages",
            ));
        }
        let page = page_size();
        let len: usize = parts.iter().map(|p| p.len).sum();
        let reserved = len.div_ceil(page) * page;
        // Reserve the whole range first, then lay each file over its place in it.
        // SAFETY: a fresh anonymous mapping at an address the kernel picks.
        let base = unsafe {
            mmap_anonymous(
                std::ptr::null_mut(),
                reserved,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )?
        };
        let Some(base) = NonNull::new(base) else {
            return Err(io::Error::other("mmap returned a null address"));
        };
        let window = Window {
            base,
            reserved,
            len,
        };
        let mut at = 0usize;
        for p in parts {
            let span = p.len.div_ceil(page) * page;
            // SAFETY: the target lies inside our own reservation (`at + span <=
            // reserved`), so MAP_FIXED replaces nothing else.
            unsafe {
                mmap(
                    window.base.as_ptr().cast::<u8>().add(at).cast(),
                    span,
                    ProtFlags::READ,
                    MapFlags::SHARED | MapFlags::FIXED | MapFlags::POPULATE,
                    p.file,
                    p.offset,
                )?;
            }
            at += p.len;
        }
        Ok(window)
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes from `base` are mapped readable for the window's life.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the reservation is ours and no slice of it outlives the window.
        if let Err(e) = unsafe { munmap(self.base.as_ptr(), self.reserved) } {
            log::warn!("cache: unmapping a read window: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn parts_of_several_files_read_as_one_slice() {
        let page = page_size();
        let a: Vec<u8> = (0..3 * page).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..page + 100).map(|i| (i % 13) as u8).collect();
        let (fa, fb) = (file_of(&a), file_of(&b));
        let parts = [
            Part {
                file: &fa,
                offset: page as u64,
                len: 2 * page,
            },
            Part {
                file: &fb,
                offset: 0,
                len: page + 50,
            },
        ];
        let w = Window::map(&parts).unwrap();
        let mut want = a[page..].to_vec();
        want.extend_from_slice(&b[..page + 50]);
        assert_eq!(w.bytes(), &want[..]);
    }

    #[test]
    fn unaligned_ranges_are_refused() {
        let page = page_size();
        let f = file_of(&vec![1u8; 2 * page]);
        let odd_start = [Part {
            file: &f,
            offset: 10,
            len: 100,
        }];
        assert!(!can_map([(10u64, 100usize)].into_iter()));
        assert_eq!(
            Window::map(&odd_start).err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
        let short_middle = [
            Part {
                file: &f,
                offset: 0,
                len: 100,
            },
            Part {
                file: &f,
                offset: 0,
                len: 100,
            },
        ];
        assert_eq!(
            Window::map(&short_middle).err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
        assert!(can_map([(0u64, page), (0, 100)].into_iter()));
    }
}
