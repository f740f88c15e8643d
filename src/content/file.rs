//! The content of one regular file of an flist, and the checks every reader of it needs
//! (cat, diff, convert, dedup, the FUSE open): the chunk list covers the size, each
//! chunk's plaintext has the length its place needs, and the chunks add up to the size.
//! Readers that need random access (FUSE, cat) need the fixed layout (every chunk but the
//! last one full); streaming readers (convert, diff) accept any chunk sizes (legacy flists
//! cut files in other sizes) as long as they add up. It reads through a [`Source`]; it
//! never caches nor writes anything.

use std::sync::Arc;

use crate::codec::{chunk_len, ChunkRef, CHUNK_SIZE};
use crate::error::{Context, Error, Result};
use crate::flist::{Entry, Flist, Kind};
use crate::store::router::Router;

use super::Chunks;

/// Where verified chunk plaintext comes from.
pub trait Source {
    /// The verified plaintext of `chunk`.
    fn plain(&self, chunk: &ChunkRef) -> Result<Arc<Vec<u8>>>;
}

impl Source for Chunks {
    fn plain(&self, chunk: &ChunkRef) -> Result<Arc<Vec<u8>>> {
        self.fetch(chunk)
    }
}

impl Source for Router {
    fn plain(&self, chunk: &ChunkRef) -> Result<Arc<Vec<u8>>> {
        self.fetch(chunk).map(Arc::new)
    }
}

/// How the chunks of a file must be cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Every chunk but the last holds [`CHUNK_SIZE`] bytes (needed for random access).
    Fixed,
    /// Any sizes that add up to the file's size (legacy flists; streaming readers).
    Any,
}

/// One regular file's size and chunk list, checked to cover the size.
#[derive(Clone, Debug)]
pub struct FileContent {
    size: u64,
    chunks: Arc<Vec<ChunkRef>>,
    what: String,
}

impl FileContent {
    /// The content of `e` (a regular file; a hard link's content is its target's), named
    /// `what` in errors (a path, or `inode N`).
    pub fn open(fl: &dyn Flist, e: &Entry, what: impl Into<String>) -> Result<FileContent> {
        let what = what.into();
        if e.kind() != Kind::File {
            return Err(Error::invalid(format!(
                "{what}: is a {}, not a regular file",
                e.kind().name()
            )));
        }
        let chunks = fl.blocks(e.content_ino()).with_ctx(|| what.clone())?;
        Ok(Self::new(e.size, Arc::new(chunks), what))
    }

    /// The content of a file of `size` bytes made of `chunks` (already read from its flist).
    pub fn new(size: u64, chunks: Arc<Vec<ChunkRef>>, what: impl Into<String>) -> Self {
        FileContent {
            size,
            chunks,
            what: what.into(),
        }
    }

    /// Check that the chunk list can hold the size in the fixed layout (what random
    /// access needs; done at open by FUSE).
    pub fn check_fixed(&self) -> Result<()> {
        let need = self.size.div_ceil(CHUNK_SIZE as u64);
        if (self.chunks.len() as u64) < need {
            return Err(Error::corrupt(self.named(format!(
                "{} bytes need {need} chunks, the flist lists {}",
                self.size,
                self.chunks.len()
            ))));
        }
        Ok(())
    }

    /// `msg` prefixed with what the file is (nothing when the caller names it itself).
    fn named(&self, msg: String) -> String {
        if self.what.is_empty() {
            msg
        } else {
            format!("{}: {msg}", self.what)
        }
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The chunk list, in file order.
    pub fn chunks(&self) -> &Arc<Vec<ChunkRef>> {
        &self.chunks
    }

    /// Check the plaintext of chunk `index` in the fixed layout: it holds exactly the
    /// bytes of the file that fall in it.
    pub fn check_chunk(&self, index: usize, plain: &[u8]) -> Result<()> {
        let want = chunk_len(self.size, index);
        if plain.len() as u64 != want {
            return Err(Error::corrupt(self.named(format!(
                "chunk {index} of {} ({}) holds {} bytes, expected {want} for a file of {} bytes",
                self.chunks.len(),
                self.chunks.get(index).map(|c| c.to_string()).unwrap_or_default(),
                plain.len(),
                self.size
            ))));
        }
        Ok(())
    }

    /// Read the whole content in order, one chunk at a time (bounded memory), handing each
    /// chunk's index and plaintext to `sink` once it passed the checks of `layout`. Returns
    /// the bytes read (the size).
    pub fn read(
        &self,
        src: &dyn Source,
        layout: Layout,
        mut sink: impl FnMut(usize, &[u8]) -> Result<()>,
    ) -> Result<u64> {
        if layout == Layout::Fixed {
            self.check_fixed()?;
        }
        let n = self.chunks.len();
        let mut total = 0u64;
        for (i, c) in self.chunks.iter().enumerate() {
            let plain = src
                .plain(c)
                .with_ctx(|| self.named(format!("chunk {i} of {n}")))?;
            if layout == Layout::Fixed {
                self.check_chunk(i, &plain)?;
            }
            total += plain.len() as u64;
            if total > self.size {
                return Err(Error::corrupt(self.named(format!(
                    "its chunks hold more than the {} bytes the flist records",
                    self.size
                ))));
            }
            sink(i, &plain)?;
        }
        if total != self.size {
            return Err(Error::corrupt(self.named(format!(
                "its chunks hold {total} bytes but the flist records {}",
                self.size
            ))));
        }
        Ok(total)
    }
}
