//! The streaming pass: tar bytes are hashed (diff_id) and cut into fixed-size blocks, each block
//! is compressed, and the compressed bytes are hashed and counted on their way to the output.
//! Nothing holds more than a few blocks at a time.
//!
//! Compressed bytes depend only on the tar bytes: every compressor sees the same fixed-size
//! pieces whatever the file sizes or read sizes were (zlib-rs output depends on how its input
//! is chunked), and gzip blocks are compressed independently, so the number of threads does
//! not show in the result either.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::Scope;

use flate2::{Compress, Compression as Level, Crc, FlushCompress};

use crate::error::{Error, Result};
use crate::oci::digest::{Algorithm, Digest, Digester};

/// The tar stream is compressed in pieces of exactly this many bytes (the last one may be
/// shorter). Changing it changes every gzip digest.
pub const CHUNK: usize = 1 << 20;

/// The gzip (deflate) level: 6, the default of `gzip`, Go's `compress/gzip` and so of
/// docker/containerd layers.
pub const GZIP_LEVEL: u32 = 6;

/// The zstd level: 3, zstd's own default.
pub const ZSTD_LEVEL: i32 = 3;

/// A gzip member header as `gzip -n` writes it: no name, mtime 0, no extra flags, OS Unix.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03];

/// An empty final deflate block with fixed Huffman codes: ends the stream after the
/// byte-aligned blocks.
const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// Counts and (optionally) hashes everything written to `out`.
pub struct HashingWriter<W> {
    out: W,
    digester: Option<Digester>,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `out`; with `hash` false only the length is kept.
    pub fn new(out: W, hash: bool) -> Self {
        HashingWriter {
            out,
            digester: hash.then(|| Digester::new(Algorithm::Sha256)),
            len: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(Error::LayerWrite)?;
        if let Some(d) = &mut self.digester {
            d.update(bytes);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Flush the output; the digest (if hashed) and the byte count.
    pub fn finish(mut self) -> Result<(Option<Digest>, u64)> {
        self.out.flush().map_err(Error::LayerWrite)?;
        Ok((self.digester.map(Digester::finish), self.len))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(d) = &mut self.digester {
            d.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Where full blocks of the tar stream go.
pub trait BlockSink {
    /// Take one block (exactly [`CHUNK`] bytes, except the last).
    fn block(&mut self, data: Vec<u8>) -> Result<()>;
    /// The stream has ended: write what is left.
    fn finish(&mut self) -> Result<()>;
}

/// Tar bytes in, fixed-size blocks out, hashing the whole stream for the diff_id.
pub struct Blocks<'a> {
    buf: Vec<u8>,
    diff_id: Digester,
    sink: Box<dyn BlockSink + 'a>,
}

impl<'a> Blocks<'a> {
    /// Blocks for `sink`.
    pub fn new(sink: Box<dyn BlockSink + 'a>) -> Self {
        Blocks {
            buf: Vec::with_capacity(CHUNK),
            diff_id: Digester::new(Algorithm::Sha256),
            sink,
        }
    }

    /// Append bytes to the stream.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let n = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == CHUNK {
                self.push()?;
            }
        }
        Ok(())
    }

    /// Append exactly `size` bytes read from `reader` (the file at `path`): an error if it
    /// has fewer or more.
    pub fn copy_exact(&mut self, reader: &mut impl Read, size: u64, path: &Path) -> Result<()> {
        let mut left = size;
        while left > 0 {
            let start = self.buf.len();
            let want = ((CHUNK - start) as u64).min(left) as usize;
            self.buf.resize(start + want, 0);
            let mut filled = 0;
            while filled < want {
                match reader.read(&mut self.buf[start + filled..start + want]) {
                    Ok(0) => {
                        return Err(Error::Layer {
                            path: path.to_path_buf(),
                            reason: format!(
                                "the file shrank while the layer was built (expected {size} bytes)"
                            ),
                        })
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io("reading layer file", path, e)),
                }
            }
            left -= want as u64;
            if self.buf.len() == CHUNK {
                self.push()?;
            }
        }
        let mut probe = [0u8; 1];
        loop {
            match reader.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(Error::Layer {
                        path: path.to_path_buf(),
                        reason: format!(
                            "the file grew while the layer was built (expected {size} bytes)"
                        ),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading layer file", path, e)),
            }
        }
    }

    fn push(&mut self) -> Result<()> {
        self.diff_id.update(&self.buf);
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.sink.block(full)
    }

    /// End the stream: the diff_id and the uncompressed length.
    pub fn finish(mut self) -> Result<(Digest, u64)> {
        if !self.buf.is_empty() {
            self.push()?;
        }
        self.sink.finish()?;
        let len = self.diff_id.len();
        Ok((self.diff_id.finish(), len))
    }
}

/// Uncompressed: blocks go straight to the output.
pub struct PlainSink<'o, W: Write>(pub &'o mut HashingWriter<W>);

impl<W: Write> BlockSink for PlainSink<'_, W> {
    fn block(&mut self, data: Vec<u8>) -> Result<()> {
        self.0.put(&data)
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// zstd at [`ZSTD_LEVEL`], single-threaded (zstd's multi-threaded format differs), with a
/// content checksum, fed whole blocks.
pub struct ZstdSink<'o, W: Write> {
    encoder: Option<zstd::stream::write::Encoder<'static, &'o mut HashingWriter<W>>>,
}

impl<'o, W: Write> ZstdSink<'o, W> {
    /// A zstd frame written to `out`.
    pub fn new(out: &'o mut HashingWriter<W>) -> Result<Self> {
        let mut encoder =
            zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(Error::LayerWrite)?;
        encoder.include_checksum(true).map_err(Error::LayerWrite)?;
        encoder.include_dictid(false).map_err(Error::LayerWrite)?;
        Ok(ZstdSink {
            encoder: Some(encoder),
        })
    }
}

impl<W: Write> BlockSink for ZstdSink<'_, W> {
    fn block(&mut self, data: Vec<u8>) -> Result<()> {
        let encoder = self.encoder.as_mut().expect("block after finish");
        encoder.write_all(&data).map_err(Error::LayerWrite)
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(encoder) = self.encoder.take() {
            encoder.finish().map_err(Error::LayerWrite)?;
        }
        Ok(())
    }
}

type Job = (u64, Vec<u8>);
type Done = (u64, io::Result<Vec<u8>>);

/// gzip in the manner of `pigz -i`: every block is deflated on its own (a fresh stream, ended
/// with a sync flush so it stops on a byte boundary) by a pool of threads; the pieces are
/// written in order between a fixed header and the CRC/size trailer. The bytes do not depend
/// on the number of threads.
pub struct ParallelGzip<'o, W: Write> {
    out: &'o mut HashingWriter<W>,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    ready: BTreeMap<u64, Vec<u8>>,
    submitted: u64,
    written: u64,
    max_in_flight: u64,
    crc: Crc,
    started: bool,
}

impl<'o, W: Write> ParallelGzip<'o, W> {
    /// Start `threads` workers in `scope`, writing to `out`.
    pub fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        out: &'o mut HashingWriter<W>,
        threads: usize,
    ) -> Self {
        let threads = threads.max(1);
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                let mut compress = Compress::new(Level::new(GZIP_LEVEL), false);
                loop {
                    let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((index, data)) = job else { break };
                    let result = deflate_block(&mut compress, &data);
                    if done_tx.send((index, result)).is_err() {
                        break;
                    }
                }
            });
        }
        ParallelGzip {
            out,
            jobs: Some(jobs),
            done,
            ready: BTreeMap::new(),
            submitted: 0,
            written: 0,
            max_in_flight: 2 * threads as u64,
            crc: Crc::new(),
            started: false,
        }
    }

    /// Write finished blocks in order; with `wait`, block until at least one more arrives.
    fn drain(&mut self, wait: bool) -> Result<()> {
        let mut wait = wait;
        loop {
            let next = if wait {
                match self.done.recv() {
                    Ok(d) => Some(d),
                    Err(_) => return Err(worker_gone()),
                }
            } else {
                // Empty, or disconnected: every worker has ended after sending all it had.
                self.done.try_recv().ok()
            };
            let Some((index, result)) = next else {
                return Ok(());
            };
            wait = false;
            self.ready.insert(index, result.map_err(Error::LayerWrite)?);
            while let Some(bytes) = self.ready.remove(&self.written) {
                self.out.put(&bytes)?;
                self.written += 1;
            }
        }
    }

    fn header(&mut self) -> Result<()> {
        if !self.started {
            self.out.put(&GZIP_HEADER)?;
            self.started = true;
        }
        Ok(())
    }
}

fn worker_gone() -> Error {
    Error::LayerWrite(io::Error::other("a compression thread stopped"))
}

impl<W: Write> BlockSink for ParallelGzip<'_, W> {
    fn block(&mut self, data: Vec<u8>) -> Result<()> {
        self.header()?;
        self.crc.update(&data);
        let jobs = self.jobs.as_ref().expect("block after finish");
        jobs.send((self.submitted, data))
            .map_err(|_| worker_gone())?;
        self.submitted += 1;
        self.drain(false)?;
        while self.submitted - self.written > self.max_in_flight {
            self.drain(true)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.header()?;
        self.jobs = None;
        while self.written < self.submitted {
            self.drain(true)?;
        }
        self.out.put(&DEFLATE_END)?;
        self.out.put(&self.crc.sum().to_le_bytes())?;
        self.out.put(&self.crc.amount().to_le_bytes())?;
        Ok(())
    }
}

/// Deflate one block from a fresh state, ending with a sync flush (byte-aligned, not final).
fn deflate_block(compress: &mut Compress, data: &[u8]) -> io::Result<Vec<u8>> {
    compress.reset();
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 1024);
    let mut consumed = 0usize;
    loop {
        let before = compress.total_in();
        compress
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        consumed += (compress.total_in() - before) as usize;
        // Done when all input is in and the flush had room to complete.
        if consumed == data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(64 * 1024);
    }
}
