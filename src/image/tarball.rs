//! Ready-made layer tarballs given on the command line: digest, size and diff_id in one
//! streaming pass, compression detected from the magic bytes.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};
use crate::oci::{media_types as mt, Algorithm, Descriptor, Digester};

/// A layer file's descriptor (digest and size of the file's bytes) and diff_id.
pub fn inspect_tarball(path: &Path) -> Result<(Descriptor, crate::oci::Digest)> {
    let io = |e| Error::io("reading layer file", path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let media_type = match &magic[..n] {
        [0x1f, 0x8b, ..] => mt::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => mt::OCI_LAYER_ZSTD,
        _ => mt::OCI_LAYER_TAR,
    };
    let mut outer = Digester::new(Algorithm::Sha256);
    let counting = HashingReader {
        inner: BufReader::with_capacity(256 << 10, file),
        digester: &mut outer,
    };
    let mut inner = Digester::new(Algorithm::Sha256);
    let mut reader: Box<dyn Read> = match media_type {
        mt::OCI_LAYER_GZIP => Box::new(flate2::read::MultiGzDecoder::new(counting)),
        mt::OCI_LAYER_ZSTD => Box::new(zstd::stream::read::Decoder::new(counting).map_err(io)?),
        _ => Box::new(counting),
    };
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::Invalid {
            what: format!("layer file {}", path.display()),
            reason: format!("cannot decompress it: {e}"),
        })?;
        if n == 0 {
            break;
        }
        inner.update(&buf[..n]);
    }
    drop(reader);
    let size = outer.len();
    let desc = Descriptor::new(media_type, outer.finish(), size);
    Ok((desc, inner.finish()))
}

struct HashingReader<'a, R> {
    inner: R,
    digester: &'a mut Digester,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_plain() {
        let dir = tempfile::tempdir().unwrap();
        let tar = b"pretend this is a tar stream".repeat(100);
        let plain = dir.path().join("l.tar");
        std::fs::write(&plain, &tar).unwrap();
        let (d, diff) = inspect_tarball(&plain).unwrap();
        assert_eq!(d.media_type, mt::OCI_LAYER_TAR);
        assert_eq!(d.digest, diff);
        let gz = dir.path().join("l.tar.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&tar).unwrap();
        let bytes = enc.finish().unwrap();
        std::fs::write(&gz, &bytes).unwrap();
        let (d, diff2) = inspect_tarball(&gz).unwrap();
        assert_eq!(d.media_type, mt::OCI_LAYER_GZIP);
        assert_eq!(d.size, bytes.len() as u64);
        assert_eq!(diff2, diff);
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
        assert!(inspect_tarball(&gz)
            .unwrap_err()
            .to_string()
            .contains("decompress"));
    }
}
