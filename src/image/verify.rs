//! The layer stream: stored bytes hashed (SHA-256) and counted as they pass, then
//! decompressed (gzip members with flate2, zstd frames with ruzstd, or as is). At EOF
//! the digest, the size and the absence of trailing bytes are checked; every failure is
//! an `io::Error` whose message names the image and the layer's digest. Buffers: one
//! 64 KiB read buffer, plus the decoder's own state (a zstd window).

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::MultiGzDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use sha2::{Digest, Sha256};

use super::{Compression, Layer};
use crate::error::{Error, ErrorKind};

const BUF: usize = 64 << 10;

/// An error already named (image, blob), with the [`ErrorKind`] it means: passed
/// through the decoders unchanged, and found again by [`layer_error`].
#[derive(Debug)]
struct Named(String, ErrorKind);

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Named {}

/// A verification failure: corrupt data.
fn named(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, Named(msg, ErrorKind::Corrupt))
}

/// The [`Error`] a failed read of a layer stream (or of a reader wrapping it, such as a
/// tar parser) means: `Corrupt` for a digest, size, trailing-data or decompression
/// failure; `Store` or `Timeout` for a registry connection that failed mid-layer; `Io`
/// for a local file. The message names the image and the layer's digest.
pub fn layer_error(e: io::Error) -> Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> =
        e.get_ref().map(|r| r as &(dyn std::error::Error + 'static));
    while let Some(c) = cur {
        if let Some(n) = c.downcast_ref::<Named>() {
            let outer = e.to_string();
            let msg = if outer == n.0 {
                outer
            } else {
                format!("{}: {outer}", n.0)
            };
            return Error::with_source(n.1, msg, e);
        }
        cur = c.source();
    }
    Error::from(e)
}

/// Whether `e` (or an error it wraps) is a failure of a layer stream itself, which
/// [`layer_error`] names and classifies; else it is the reader above it that failed (e.g.
/// a tar parser finding a bad header).
pub fn is_layer_error(e: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> =
        e.get_ref().map(|r| r as &(dyn std::error::Error + 'static));
    while let Some(c) = cur {
        if c.is::<Named>() {
            return true;
        }
        cur = c.source();
    }
    false
}

fn is_named(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<Named>())
}

/// A decoder failure, named unless it already is.
fn decode_error(label: &str, what: &str, e: io::Error) -> io::Error {
    if is_named(&e) {
        e
    } else {
        named(
            io::ErrorKind::InvalidData,
            format!("{label}: truncated or corrupt {what} stream: {e}"),
        )
    }
}

/// Hashes and counts what passes; at EOF compares with the expected digest and size.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    digest: Option<String>,
    size: Option<u64>,
    label: String,
    /// What a failed read of `inner` means (`Store` for a registry, `Io` for a file).
    source_kind: ErrorKind,
    finished: Option<Result<(), String>>,
}

impl<R> Hashing<R> {
    fn new(inner: R, digest: Option<String>, size: Option<u64>, label: String) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
            digest,
            size,
            label,
            source_kind: ErrorKind::Io,
            finished: None,
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.finished.is_none() {
            let mut outcome = Ok(());
            if let Some(size) = self.size {
                if self.count != size {
                    outcome = Err(format!(
                        "{}: size mismatch: expected {size} bytes, got {}",
                        self.label, self.count
                    ));
                }
            }
            if let (Ok(()), Some(want)) = (&outcome, &self.digest) {
                let got = format!(
                    "sha256:{}",
                    hex::encode(std::mem::take(&mut self.hasher).finalize())
                );
                if &got != want {
                    outcome = Err(format!(
                        "{}: digest mismatch: expected {want}, got {got} ({} bytes)",
                        self.label, self.count
                    ));
                }
            }
            self.finished = Some(outcome);
        }
        match &self.finished {
            Some(Err(m)) => Err(named(io::ErrorKind::InvalidData, m.clone())),
            _ => Ok(()),
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished.is_some() || buf.is_empty() {
            self.finish()?;
            return Ok(0);
        }
        let n = loop {
            match self.inner.read(buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_named(&e) => return Err(e),
                Err(e) => {
                    let kind = match e.kind() {
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
                        _ => self.source_kind,
                    };
                    let msg = format!("{}: reading: {e}", self.label);
                    return Err(io::Error::new(e.kind(), Named(msg, kind)));
                }
            }
        };
        if n == 0 {
            self.finish()?;
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(size) = self.size {
            if self.count > size {
                self.finished = Some(Err(format!(
                    "{}: size mismatch: more than the {size} bytes expected",
                    self.label
                )));
                self.finish()?;
            }
        }
        Ok(n)
    }
}

type Stored<'a> = BufReader<Hashing<Box<dyn Read + Send + 'a>>>;

/// Checks that the stored stream ends where the compressed data ended: anything left is
/// trailing garbage (reaching the stored stream's EOF runs its checks).
fn drain_trailing(src: &mut Stored<'_>, label: &str, what: &str) -> io::Result<()> {
    if src.fill_buf()?.is_empty() {
        return Ok(());
    }
    Err(named(
        io::ErrorKind::InvalidData,
        format!("{label}: trailing data after the {what} stream"),
    ))
}

enum Dec<'a> {
    Plain(Hashing<Box<dyn Read + Send + 'a>>),
    Gzip(Box<MultiGzDecoder<Stored<'a>>>),
    Zstd {
        src: Stored<'a>,
        dec: Box<FrameDecoder>,
        in_frame: bool,
    },
}

struct LayerStream<'a> {
    dec: Dec<'a>,
    /// The uncompressed stream's expected digest (docker-archive diff_ids).
    out_hash: Option<Hashing<()>>,
    label: String,
    done: bool,
}

impl Read for LayerStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.done {
            if let Some(h) = &mut self.out_hash {
                h.finish()?;
            }
            return Ok(0);
        }
        let n = match &mut self.dec {
            Dec::Plain(r) => r.read(buf)?,
            Dec::Gzip(g) => {
                let n = g
                    .read(buf)
                    .map_err(|e| decode_error(&self.label, "gzip", e))?;
                if n == 0 {
                    drain_trailing(g.get_mut(), &self.label, "gzip")?;
                }
                n
            }
            Dec::Zstd { src, dec, in_frame } => zstd_read(src, dec, in_frame, buf, &self.label)?,
        };
        if n == 0 {
            self.done = true;
            if let Some(h) = &mut self.out_hash {
                h.finish()?;
            }
            return Ok(0);
        }
        if let Some(h) = &mut self.out_hash {
            h.hasher.update(&buf[..n]);
            h.count += n as u64;
        }
        Ok(n)
    }
}

fn zstd_error(label: &str, e: FrameDecoderError) -> io::Error {
    named(
        io::ErrorKind::InvalidData,
        format!("{label}: truncated or corrupt zstd stream: {e}"),
    )
}

/// The next decoded bytes of a sequence of zstd frames (skippable frames skipped);
/// 0 at the end of the stored stream.
fn zstd_read(
    src: &mut Stored<'_>,
    dec: &mut FrameDecoder,
    in_frame: &mut bool,
    buf: &mut [u8],
    label: &str,
) -> io::Result<usize> {
    loop {
        if *in_frame {
            while dec.can_collect() == 0 && !dec.is_finished() {
                dec.decode_blocks(&mut *src, BlockDecodingStrategy::UptoBlocks(1))
                    .map_err(|e| zstd_error(label, e))?;
            }
            let n = dec.read(buf).map_err(|e| decode_error(label, "zstd", e))?;
            if n > 0 {
                return Ok(n);
            }
            if dec.is_finished() && dec.can_collect() == 0 {
                if let (Some(stored), Some(computed)) =
                    (dec.get_checksum_from_data(), dec.get_calculated_checksum())
                {
                    if stored != computed {
                        return Err(named(
                            io::ErrorKind::InvalidData,
                            format!("{label}: corrupt zstd stream: frame checksum mismatch"),
                        ));
                    }
                }
                *in_frame = false;
            }
            continue;
        }
        if src.fill_buf()?.is_empty() {
            return Ok(0);
        }
        match dec.init(&mut *src) {
            Ok(()) => *in_frame = true,
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                let skipped = io::copy(&mut (&mut *src).take(u64::from(length)), &mut io::sink())?;
                if skipped != u64::from(length) {
                    return Err(named(
                        io::ErrorKind::InvalidData,
                        format!("{label}: truncated zstd stream (in a skippable frame)"),
                    ));
                }
            }
            Err(e) => return Err(zstd_error(label, e)),
        }
    }
}

/// The uncompressed, verified stream of `layer` whose stored bytes `raw` gives; `label`
/// ("IMAGE: layer DIGEST") starts every error message; a failed read of `raw` is an
/// error of `source_kind` (a timeout is `Timeout`).
pub fn layer_stream<'a>(
    raw: Box<dyn Read + Send + 'a>,
    layer: &Layer,
    label: String,
    source_kind: ErrorKind,
) -> Box<dyn Read + Send + 'a> {
    let stored_digest = (!layer.uncompressed_digest).then(|| layer.digest.clone());
    let mut hashing = Hashing::new(raw, stored_digest, layer.size, label.clone());
    hashing.source_kind = source_kind;
    let dec = match layer.compression {
        Compression::None => Dec::Plain(hashing),
        Compression::Gzip => Dec::Gzip(Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            BUF, hashing,
        )))),
        Compression::Zstd => Dec::Zstd {
            src: BufReader::with_capacity(BUF, hashing),
            dec: Box::new(FrameDecoder::new()),
            in_frame: false,
        },
    };
    let out_hash = layer
        .uncompressed_digest
        .then(|| Hashing::new((), Some(layer.digest.clone()), None, label.clone()));
    Box::new(LayerStream {
        dec,
        out_hash,
        label,
        done: false,
    })
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::image::manifest::sha256_digest;
    use std::io::Write;

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let data = vec![7u8; 200_000];
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", &data[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A zstd stream of raw (uncompressed) blocks, written by hand: a frame header with
    /// a single-segment content size, blocks of up to 128 KiB, no checksum.
    fn zstd_raw(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
        // Frame header descriptor: FCS field size 8 bytes (flag 3), single segment.
        out.push(0b1110_0000);
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        let chunks: Vec<&[u8]> = data.chunks(128 << 10).collect();
        for (i, c) in chunks.iter().enumerate() {
            let last = u32::from(i + 1 == chunks.len());
            let header = last | ((c.len() as u32) << 3); // type 0 = raw
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            out.extend_from_slice(c);
        }
        out
    }

    fn layer(digest: String, compression: Compression, size: Option<u64>) -> Layer {
        Layer {
            digest,
            media_type: String::new(),
            compression,
            size,
            uncompressed_digest: false,
        }
    }

    fn read_all(stored: Vec<u8>, l: &Layer) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        layer_stream(
            Box::new(io::Cursor::new(stored)),
            l,
            format!("img: layer {}", l.digest),
            ErrorKind::Io,
        )
        .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn good_streams() {
        let t = tar_bytes();
        for (stored, c) in [
            (t.clone(), Compression::None),
            (gzip(&t), Compression::Gzip),
            (
                [gzip(&t[..1000]), gzip(&t[1000..])].concat(),
                Compression::Gzip,
            ),
            (zstd_raw(&t), Compression::Zstd),
            (
                [zstd_raw(&t[..5000]), zstd_raw(&t[5000..])].concat(),
                Compression::Zstd,
            ),
        ] {
            let l = layer(sha256_digest(&stored), c, Some(stored.len() as u64));
            assert_eq!(read_all(stored, &l).unwrap(), t, "{c:?}");
        }
        // The uncompressed stream against a diff_id.
        let stored = gzip(&t);
        let mut l = layer(sha256_digest(&t), Compression::Gzip, None);
        l.uncompressed_digest = true;
        assert_eq!(read_all(stored.clone(), &l).unwrap(), t);
        l.digest = sha256_digest(b"other");
        let e = read_all(stored, &l).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
    }

    fn expect_err(stored: Vec<u8>, l: &Layer, what: &str) {
        let e = read_all(stored.clone(), l).unwrap_err();
        let err = layer_error(read_all(stored, l).unwrap_err());
        assert_eq!(err.kind, ErrorKind::Corrupt, "{}", err.msg);
        assert_eq!(err.msg, e.to_string());
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let m = e.to_string();
        assert!(m.starts_with(&format!("img: layer {}", l.digest)), "{m}");
        assert!(m.contains(what), "{m}");
    }

    #[test]
    fn zstd_skippable_frames_and_checksums() {
        let t = tar_bytes();
        // A skippable frame before the data frame is skipped.
        let mut z = vec![0x50, 0x2a, 0x4d, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5];
        z.extend(zstd_raw(&t));
        let l = layer(sha256_digest(&z), Compression::Zstd, None);
        assert_eq!(read_all(z, &l).unwrap(), t);
        // A frame whose content checksum (flag in the header, 4 bytes at the end) is wrong.
        let mut z = zstd_raw(&t);
        z[4] |= 0b100;
        z.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let l = layer(sha256_digest(&z), Compression::Zstd, None);
        expect_err(z, &l, "checksum");
    }

    #[test]
    fn mismatches() {
        let t = tar_bytes();
        let l = layer(sha256_digest(b"x"), Compression::None, None);
        expect_err(t.clone(), &l, "digest mismatch");
        let l = layer(
            sha256_digest(&t),
            Compression::None,
            Some(t.len() as u64 + 1),
        );
        expect_err(t.clone(), &l, "size mismatch");
        let l = layer(
            sha256_digest(&t),
            Compression::None,
            Some(t.len() as u64 - 1),
        );
        expect_err(t.clone(), &l, "size mismatch");
        // Trailing garbage after a gzip stream whose digest covers it.
        let g = [gzip(&t), b"garbage".to_vec()].concat();
        let l = layer(sha256_digest(&g), Compression::Gzip, None);
        expect_err(g, &l, "gzip");
        let z = [zstd_raw(&t), b"garbage".to_vec()].concat();
        let l = layer(sha256_digest(&z), Compression::Zstd, None);
        expect_err(z, &l, "zstd");
    }

    #[test]
    fn truncated_and_corrupt() {
        let t = tar_bytes();
        let g = gzip(&t);
        let cut = g[..g.len() / 2].to_vec();
        let l = layer(sha256_digest(&cut), Compression::Gzip, None);
        expect_err(cut, &l, "truncated or corrupt gzip stream");
        let g = gzip(&t);
        let cut = g[..g.len() - 4].to_vec();
        let l = layer(sha256_digest(&cut), Compression::Gzip, None);
        expect_err(cut, &l, "gzip stream");

        let z = zstd_raw(&t);
        let cut = z[..z.len() / 2].to_vec();
        let l = layer(sha256_digest(&cut), Compression::Zstd, None);
        expect_err(cut, &l, "zstd stream");
        // A corrupt block header (reserved block type 3).
        let mut bad = zstd_raw(&t);
        bad[13] |= 0b110;
        let l = layer(sha256_digest(&bad), Compression::Zstd, None);
        expect_err(bad, &l, "corrupt zstd stream");
        // Not zstd at all.
        let l = layer(sha256_digest(&t), Compression::Zstd, None);
        expect_err(t.clone(), &l, "zstd stream");
        // Not gzip at all.
        let l = layer(sha256_digest(&t), Compression::Gzip, None);
        expect_err(t, &l, "gzip stream");
    }
}
