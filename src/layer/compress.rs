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
use std::thread::{Scope, ScopedJoinHandle};

use crc32fast::Hasher as Crc;
use flate2::{Compress, Compression as Level, FlushCompress};

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
    /// Take one block (exactly [`CHUNK`] bytes, except the last), shared with the diff_id
    /// hasher.
    fn block(&mut self, data: Arc<Vec<u8>>) -> Result<()>;
    /// The stream has ended: write what is left.
    fn finish(&mut self) -> Result<()>;
}

/// Tar bytes in, fixed-size blocks out, hashing the whole stream for the diff_id on a thread
/// of its own (so hashing overlaps reading the files and writing the output).
pub struct Blocks<'a> {
    buf: Vec<u8>,
    hash: Option<mpsc::SyncSender<Arc<Vec<u8>>>>,
    hasher: Option<ScopedJoinHandle<'a, (Digest, u64)>>,
    sink: Box<dyn BlockSink + 'a>,
}

impl<'a> Blocks<'a> {
    /// Blocks for `sink`, the diff_id hashed on a thread of `scope`.
    pub fn new<'env>(scope: &'a Scope<'a, 'env>, sink: Box<dyn BlockSink + 'a>) -> Self {
        let (hash, blocks) = mpsc::sync_channel::<Arc<Vec<u8>>>(4);
        let hasher = scope.spawn(move || {
            let mut diff_id = Digester::new(Algorithm::Sha256);
            for block in blocks {
                diff_id.update(&block);
            }
            let len = diff_id.len();
            (diff_id.finish(), len)
        });
        Blocks {
            buf: Vec::with_capacity(CHUNK),
            hash: Some(hash),
            hasher: Some(hasher),
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
        let full = Arc::new(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let hash = self.hash.as_ref().expect("push after finish");
        if hash.send(Arc::clone(&full)).is_err() {
            return Err(worker_gone());
        }
        self.sink.block(full)
    }

    /// End the stream: the diff_id and the uncompressed length.
    pub fn finish(mut self) -> Result<(Digest, u64)> {
        if !self.buf.is_empty() {
            self.push()?;
        }
        self.sink.finish()?;
        self.hash = None;
        let hasher = self.hasher.take().expect("finish once");
        hasher.join().map_err(|_| worker_gone())
    }
}

/// Uncompressed: blocks go straight to the output.
pub struct PlainSink<'o, W: Write>(pub &'o mut HashingWriter<W>);

impl<W: Write> BlockSink for PlainSink<'_, W> {
    fn block(&mut self, data: Arc<Vec<u8>>) -> Result<()> {
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
    fn block(&mut self, data: Arc<Vec<u8>>) -> Result<()> {
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

type Job = (u64, Arc<Vec<u8>>);
type Done = (u64, io::Result<(Vec<u8>, Crc)>);

/// gzip in the manner of `pigz -i`: every block is deflated on its own (a fresh stream, ended
/// with a sync flush so it stops on a byte boundary) by a pool of threads, or stored as is when
/// sampling shows it does not compress; the pieces are written in order between a fixed header
/// and the CRC/size trailer by a writer thread (which also hashes them). The bytes do not
/// depend on the number of threads.
pub struct ParallelGzip<'scope> {
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    ready: BTreeMap<u64, (Vec<u8>, Crc)>,
    submitted: u64,
    written: u64,
    max_in_flight: u64,
    crc: Crc,
    /// Uncompressed bytes so far (the trailer keeps them modulo 2^32).
    size: u64,
    started: bool,
    out: Option<mpsc::SyncSender<Vec<u8>>>,
    writer: Option<ScopedJoinHandle<'scope, Result<()>>>,
}

impl<'scope> ParallelGzip<'scope> {
    /// Start `threads` compression workers and a writer in `scope`, writing to `out`.
    pub fn start<'env, W: Write + Send>(
        scope: &'scope Scope<'scope, 'env>,
        out: &'scope mut HashingWriter<W>,
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
                let mut sampler = Compress::new(Level::new(SAMPLE_LEVEL), false);
                loop {
                    let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((index, data)) = job else { break };
                    let mut crc = Crc::new();
                    crc.update(&data);
                    let result = match incompressible(&mut sampler, &data) {
                        Ok(true) => Ok(stored_blocks(&data)),
                        Ok(false) => deflate_block(&mut compress, &data),
                        Err(e) => Err(e),
                    };
                    if done_tx.send((index, result.map(|b| (b, crc)))).is_err() {
                        break;
                    }
                }
            });
        }
        let (out_tx, pieces) = mpsc::sync_channel::<Vec<u8>>(2 * threads);
        let writer = scope.spawn(move || -> Result<()> {
            for piece in pieces {
                out.put(&piece)?;
            }
            Ok(())
        });
        ParallelGzip {
            jobs: Some(jobs),
            done,
            ready: BTreeMap::new(),
            submitted: 0,
            written: 0,
            max_in_flight: 2 * threads as u64,
            crc: Crc::new(),
            size: 0,
            started: false,
            out: Some(out_tx),
            writer: Some(writer),
        }
    }

    /// Hand bytes to the writer thread.
    fn emit(&mut self, bytes: Vec<u8>) -> Result<()> {
        let out = self.out.as_ref().expect("emit after finish");
        if out.send(bytes).is_err() {
            // The writer stopped: its error says why.
            return Err(self.stop_writer().err().unwrap_or_else(worker_gone));
        }
        Ok(())
    }

    /// Close the writer's queue and wait for it.
    fn stop_writer(&mut self) -> Result<()> {
        self.out = None;
        match self.writer.take().map(ScopedJoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(worker_gone()),
            None => Ok(()),
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
            while let Some((bytes, crc)) = self.ready.remove(&self.written) {
                self.crc.combine(&crc);
                self.emit(bytes)?;
                self.written += 1;
            }
        }
    }

    fn header(&mut self) -> Result<()> {
        if !self.started {
            self.emit(GZIP_HEADER.to_vec())?;
            self.started = true;
        }
        Ok(())
    }
}

fn worker_gone() -> Error {
    Error::LayerWrite(io::Error::other("a compression thread stopped"))
}

impl BlockSink for ParallelGzip<'_> {
    fn block(&mut self, data: Arc<Vec<u8>>) -> Result<()> {
        self.header()?;
        self.size += data.len() as u64;
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
        let mut trailer = DEFLATE_END.to_vec();
        trailer.extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        trailer.extend_from_slice(&(self.size as u32).to_le_bytes());
        self.emit(trailer)?;
        self.stop_writer()
    }
}

/// How many windows of a block are test-compressed to decide whether to store it.
const SAMPLE_WINDOWS: usize = 8;

/// The length of each test window: 8 × 8 KiB is 1/16 of a block.
const SAMPLE_LEN: usize = 8 * 1024;

/// The level the windows are test-compressed at: the fastest, as only the ratio is wanted.
const SAMPLE_LEVEL: u32 = 1;

/// A block is stored rather than deflated when its sampled windows together deflate to at
/// least this many hundredths of their size (already-compressed data: wheels, archives,
/// media). A tar header inside a window saves a few hundred bytes, not enough to matter.
const STORE_PERCENT: usize = 97;

/// The most a stored deflate block can hold.
const STORED_MAX: usize = 0xffff;

/// Whether `data` looks incompressible: [`SAMPLE_WINDOWS`] evenly spaced windows of
/// [`SAMPLE_LEN`] bytes are deflated at [`SAMPLE_LEVEL`] and together they do not shrink below
/// [`STORE_PERCENT`]%. A pure function of the bytes (and the pinned zlib-rs), so the choice,
/// like the rest of the output, is the same on every machine. Blocks too short to sample are
/// always deflated.
fn incompressible(compress: &mut Compress, data: &[u8]) -> io::Result<bool> {
    if data.len() < 2 * SAMPLE_WINDOWS * SAMPLE_LEN {
        return Ok(false);
    }
    let step = data.len() / SAMPLE_WINDOWS;
    let mut deflated = 0;
    for i in 0..SAMPLE_WINDOWS {
        let window = &data[i * step..i * step + SAMPLE_LEN];
        deflated += deflate_block(compress, window)?.len();
    }
    Ok(deflated * 100 >= SAMPLE_WINDOWS * SAMPLE_LEN * STORE_PERCENT)
}

/// `data` as stored (uncompressed) deflate blocks, not final, each at most [`STORED_MAX`]
/// bytes: a zero header byte (BFINAL 0, BTYPE 00, padding: blocks start byte-aligned), LEN
/// and its complement NLEN (little-endian), then the bytes. Ends byte-aligned, like the sync
/// flush of a deflated block.
fn stored_blocks(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5 * data.len().div_ceil(STORED_MAX));
    for piece in data.chunks(STORED_MAX) {
        let len = piece.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
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
