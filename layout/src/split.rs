//! Split bundles: a tarball written as numbered parts (`bundle.tar.000`, `.001`, …) of at
//! most a given size, plus `bundle.tar.sha256` in `sha256sum` format, so media with file
//! size limits can carry it and `sha256sum -c` checks it anywhere.
//!
//! Import verifies every part against the checksum file before reading any of it as a tar,
//! then streams the concatenation: nothing is reassembled on disk.

use std::fs::{self, File};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use sealift_oci::digest::Hasher;
use sealift_oci::{Algorithm, Digest};

use super::error::LayoutError;

/// The largest checksum file read (one line per part: ~100 bytes each).
const MAX_CHECKSUM_FILE: u64 = 4 << 20;

/// Parse a size such as `500M`, `1G`, `4096`, `1.5G` (binary units: K = 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let mult: u64 = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 500M or 1G"))?;
    let v = (n * mult as f64) as u64;
    if !(n.is_finite() && n > 0.0) || v < 4096 {
        return Err(format!("{s:?}: a part must be at least 4096 bytes"));
    }
    Ok(v)
}

/// Path of part `i` of `base` (`bundle.tar` → `bundle.tar.003`).
pub fn part_path(base: &Path, i: usize) -> PathBuf {
    let mut n = base.as_os_str().to_owned();
    n.push(format!(".{i:03}"));
    PathBuf::from(n)
}

/// Path of the checksum file of `base` (`bundle.tar` → `bundle.tar.sha256`).
pub fn checksum_path(base: &Path) -> PathBuf {
    let mut n = base.as_os_str().to_owned();
    n.push(".sha256");
    PathBuf::from(n)
}

/// Writes a stream as parts of at most `size` bytes, each through a `.partial` name, hashing
/// as it goes. [`SplitWriter::finish`] renames the parts into place, removes stale parts of
/// an older, longer export, and writes the checksum file last: without it no import starts.
pub struct SplitWriter {
    base: PathBuf,
    size: u64,
    current: Option<(io::BufWriter<File>, Hasher, u64)>,
    done: Vec<(PathBuf, Digest)>,
}

impl SplitWriter {
    /// Parts of `base`, each at most `size` bytes.
    pub fn new(base: &Path, size: u64) -> SplitWriter {
        SplitWriter {
            base: base.to_path_buf(),
            size,
            current: None,
            done: Vec::new(),
        }
    }

    fn partial(&self, i: usize) -> PathBuf {
        crate::format::tmp_path(&part_path(&self.base, i))
    }

    fn close_part(&mut self) -> io::Result<()> {
        if let Some((w, h, _)) = self.current.take() {
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            let i = self.done.len();
            self.done.push((self.partial(i), h.finish()));
        }
        Ok(())
    }

    /// Close the last part, rename every part into place and write the checksum file.
    /// Returns the part paths.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, LayoutError> {
        let sums = checksum_path(&self.base);
        self.close_part()
            .map_err(LayoutError::io("writing", &self.base))?;
        if self.done.is_empty() {
            // An empty stream still makes one (empty) part, so import finds something.
            let p = self.partial(0);
            File::create(&p).map_err(LayoutError::io("creating", &p))?;
            self.done.push((p, Digest::sha256(b"")));
        }
        // A stale checksum file must not vouch for the new parts while they are renamed.
        let _ = fs::remove_file(&sums);
        let mut lines = String::new();
        let mut parts = Vec::new();
        for (i, (partial, d)) in self.done.iter().enumerate() {
            let p = part_path(&self.base, i);
            fs::rename(partial, &p).map_err(LayoutError::io("renaming", &p))?;
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            lines.push_str(&format!("{}  {name}\n", d.hex()));
            parts.push(p);
        }
        let mut i = parts.len();
        while fs::remove_file(part_path(&self.base, i)).is_ok() {
            i += 1;
        }
        let tmp = crate::format::tmp_path(&sums);
        fs::write(&tmp, lines).map_err(LayoutError::io("writing", &tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(LayoutError::io("syncing", &tmp))?;
        fs::rename(&tmp, &sums).map_err(LayoutError::io("renaming", &sums))?;
        Ok(parts)
    }

    /// Remove every partial part written so far (after a failure).
    pub fn abandon(mut self) {
        let n = self.done.len() + usize::from(self.current.take().is_some());
        for i in 0..n {
            let _ = fs::remove_file(self.partial(i));
        }
    }
}

impl Write for SplitWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.current.as_ref().is_some_and(|c| c.2 >= self.size) {
            self.close_part()?;
        }
        if self.current.is_none() {
            let p = self.partial(self.done.len());
            let f = File::create(&p)?;
            self.current = Some((
                io::BufWriter::with_capacity(1 << 20, f),
                Hasher::new(Algorithm::Sha256),
                0,
            ));
        }
        let size = self.size;
        let (w, h, n) = self.current.as_mut().ok_or(io::ErrorKind::Other)?;
        let take = buf.len().min((size - *n) as usize);
        let written = w.write(&buf[..take])?;
        h.update(&buf[..written]);
        *n += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((w, _, _)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// A split bundle found on disk: its parts in order with their expected digests.
#[derive(Clone, Debug)]
pub struct SplitBundle {
    /// The checksum file.
    pub checksums: PathBuf,
    /// Parts in order, with the sha256 the checksum file gives each.
    pub parts: Vec<(PathBuf, Digest)>,
}

/// Whether `path` names a split bundle: its checksum file, its first part (`NAME.000`), or a
/// folder holding exactly one `*.sha256` file and no index.json. `None` when it is not one.
pub fn find(path: &Path) -> Result<Option<SplitBundle>, LayoutError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sums = if path.is_dir() {
        if path.join("index.json").exists() {
            return Ok(None);
        }
        let mut found: Vec<PathBuf> = fs::read_dir(path)
            .map_err(LayoutError::io("reading", path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sha256") && p.is_file())
            .collect();
        found.sort();
        match found.len() {
            0 => return Ok(None),
            1 => found.remove(0),
            _ => {
                return Err(LayoutError::BadPart {
                    checksums: path.display().to_string(),
                    reason: format!(
                        "the folder holds {} checksum files; name the bundle's first part",
                        found.len()
                    ),
                })
            }
        }
    } else if name.ends_with(".sha256") {
        path.to_path_buf()
    } else if let Some(stem) = name.strip_suffix(".000") {
        path.with_file_name(format!("{stem}.sha256"))
    } else {
        return Ok(None);
    };
    read_checksums(&sums).map(Some)
}

fn read_checksums(sums: &Path) -> Result<SplitBundle, LayoutError> {
    let bad = |reason: String| LayoutError::BadPart {
        checksums: sums.display().to_string(),
        reason,
    };
    let f = File::open(sums).map_err(|e| bad(format!("cannot open the checksum file: {e}")))?;
    let mut text = String::new();
    f.take(MAX_CHECKSUM_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("unreadable: {e}")))?;
    if text.len() as u64 > MAX_CHECKSUM_FILE {
        return Err(bad("checksum file over 4 MiB".into()));
    }
    let stem = sums
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".sha256"))
        .ok_or_else(|| bad("the checksum file's name must end in .sha256".into()))?;
    let dir = sums.parent().unwrap_or(Path::new("."));
    let mut parts = Vec::new();
    for (n, line) in text.as_bytes().lines().enumerate() {
        let line = line.map_err(|e| bad(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let (hex, file) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .ok_or_else(|| bad(format!("line {}: expected \"<sha256>  <file>\"", n + 1)))?;
        let d: Digest = format!("sha256:{hex}")
            .parse()
            .map_err(|_| bad(format!("line {}: {hex:?} is not a sha256", n + 1)))?;
        // Parts must sit beside the checksum file, numbered from 000 in order: a hostile
        // checksum file cannot point the import anywhere else.
        let expected = format!("{stem}.{:03}", parts.len());
        if file != expected {
            return Err(bad(format!(
                "line {}: expected part {expected:?}, found {file:?}",
                n + 1
            )));
        }
        parts.push((dir.join(file), d));
    }
    if parts.is_empty() {
        return Err(bad("lists no parts".into()));
    }
    Ok(SplitBundle {
        checksums: sums.to_path_buf(),
        parts,
    })
}

impl SplitBundle {
    /// Hash every part and compare with the checksum file; returns the total size. Fails
    /// on the first missing, unreadable or wrong part, naming it.
    pub fn verify(&self, progress: Option<&super::Progress>) -> Result<u64, LayoutError> {
        let bad = |reason: String| LayoutError::BadPart {
            checksums: self.checksums.display().to_string(),
            reason,
        };
        let total: u64 = self
            .parts
            .iter()
            .map(|(p, _)| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let mut done = 0;
        let mut buf = vec![0u8; 1 << 20];
        for (p, want) in &self.parts {
            let meta = fs::symlink_metadata(p)
                .map_err(|e| bad(format!("part {} is missing: {e}", p.display())))?;
            if !meta.is_file() {
                return Err(bad(format!("part {} is not a regular file", p.display())));
            }
            let mut f = File::open(p).map_err(|e| bad(format!("part {}: {e}", p.display())))?;
            let mut h = Hasher::new(Algorithm::Sha256);
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| bad(format!("reading part {}: {e}", p.display())))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                done += n as u64;
                if let Some(pr) = progress {
                    pr(done, total * 2);
                }
            }
            let got = h.finish();
            if &got != want {
                return Err(bad(format!(
                    "part {} has sha256 {}, the checksum file says {} (truncated or damaged)",
                    p.display(),
                    got.hex(),
                    want.hex()
                )));
            }
        }
        Ok(total)
    }

    /// The parts as one stream, in order.
    pub fn reader(&self) -> Result<impl Read, LayoutError> {
        let mut chain: Box<dyn Read> = Box::new(io::empty());
        for (p, _) in &self.parts {
            let f = File::open(p).map_err(LayoutError::io("opening", p))?;
            chain = Box::new(chain.chain(f));
        }
        Ok(chain)
    }

    /// A name for messages and for bare-tag repositories: the checksum file's stem.
    pub fn stem(&self) -> PathBuf {
        self.checksums.with_extension("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("10").is_err());
        assert!(parse_size("-1G").is_err());
    }

    #[test]
    fn writes_parts_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("b.tar");
        let mut w = SplitWriter::new(&base, 5000);
        let data: Vec<u8> = (0..12_345u32).map(|i| (i % 251) as u8).collect();
        w.write_all(&data).unwrap();
        let parts = w.finish().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(fs::metadata(&parts[0]).unwrap().len(), 5000);
        assert_eq!(fs::metadata(&parts[2]).unwrap().len(), 2345);
        let b = find(&parts[0]).unwrap().unwrap();
        assert_eq!(b.verify(None).unwrap(), 12_345);
        let mut back = Vec::new();
        b.reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(find(dir.path()).unwrap().is_some());
    }
}
