//! Copying a blob's stream into a staged write while hashing it: on the same thread for
//! small blobs, on a second thread for large ones. Stops as soon as the stream passes the
//! declared size; the caller checks the digest before anything is published.

use std::io::Read;

use crate::backend::Staged;
use crate::error::{Error, Result};
use sealift_oci::digest::{Digest, Hasher};

/// Bytes read at a time.
const COPY_BUF: usize = 1024 * 1024;

/// Blobs at least this large are hashed on a thread of their own while the reading thread
/// writes them: hashing and writing then take the time of the slower, not of both.
pub(crate) const HASH_THREAD_MIN: u64 = 4 * 1024 * 1024;
/// Buffers in flight between the reading thread and the hashing thread.
const HASH_BUFFERS: usize = 4;

/// Read one chunk, retrying on `Interrupted`; counts it against the declared `size`.
fn read_chunk(
    reader: &mut dyn Read,
    buf: &mut [u8],
    digest: &Digest,
    size: u64,
    seen: &mut u64,
) -> Result<usize> {
    let n = loop {
        match reader.read(buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::Read {
                    digest: digest.clone(),
                    source,
                })
            }
        }
    };
    *seen += n as u64;
    if *seen > size {
        return Err(Error::SizeMismatch {
            digest: digest.clone(),
            expected: size,
            actual: *seen,
            truncated: true,
        });
    }
    Ok(n)
}

/// Copy `reader` into `staged`, hashing on this thread; stops past `size`. Returns the
/// bytes seen and their digest.
pub(crate) fn copy_hashing(
    reader: &mut dyn Read,
    staged: &mut dyn Staged,
    digest: &Digest,
    size: u64,
) -> Result<(u64, Digest)> {
    let mut hasher = Hasher::new(digest.algorithm());
    let mut buf = vec![0u8; COPY_BUF.min(size as usize + 1)];
    let mut seen = 0;
    loop {
        let n = read_chunk(reader, &mut buf, digest, size, &mut seen)?;
        if n == 0 {
            return Ok((seen, hasher.finish()));
        }
        hasher.update(&buf[..n]);
        staged.write(&buf[..n])?;
    }
}

/// [`copy_hashing`] with the hashing on a scoped thread: each chunk is written here, then
/// handed over to be hashed while the next is read; [`HASH_BUFFERS`] buffers go round, so
/// memory stays bounded whatever the blob's size. Nothing is published before the digest
/// the hashing thread returns is checked, so writing before hashing is safe.
pub(crate) fn copy_hashing_aside(
    reader: &mut dyn Read,
    staged: &mut dyn Staged,
    digest: &Digest,
    size: u64,
) -> Result<(u64, Digest)> {
    use std::sync::mpsc::{channel, sync_channel};
    let alg = digest.algorithm();
    std::thread::scope(|scope| {
        let (to_hash, chunks) = sync_channel::<(Vec<u8>, usize)>(HASH_BUFFERS);
        let (give_back, free) = channel::<Vec<u8>>();
        for _ in 0..HASH_BUFFERS {
            let _ = give_back.send(vec![0u8; COPY_BUF]);
        }
        let hashing = scope.spawn(move || {
            let mut hasher = Hasher::new(alg);
            for (buf, n) in chunks {
                hasher.update(&buf[..n]);
                // The reader may have stopped (an error): nobody wants the buffer then.
                let _ = give_back.send(buf);
            }
            hasher.finish()
        });
        let mut seen = 0;
        let copied = (|| loop {
            // Only a panicked hashing thread drops its end; the join below reports it.
            let Ok(mut buf) = free.recv() else {
                return Ok(());
            };
            let n = read_chunk(reader, &mut buf, digest, size, &mut seen)?;
            if n == 0 {
                return Ok(());
            }
            staged.write(&buf[..n])?;
            if to_hash.send((buf, n)).is_err() {
                return Ok(());
            }
        })();
        drop(to_hash);
        let actual = hashing
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        copied.map(|()| (seen, actual))
    })
}
