//! Printing: aligned tables, JSON documents, byte sizes, short digests and media type names.
//!
//! Everything writes to a `&mut dyn Write` and returns its error, so a closed pipe surfaces
//! as an error `main` recognises instead of a panic in `println!`.

use std::io::{self, Write};

use sealift_oci::media_type as mt;
use sealift_oci::Digest;
use serde::Serialize;

/// A table of left-aligned text columns separated by three spaces, as `docker images` prints.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Add a row (missing cells print empty, extra cells are ignored).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Write headers and rows; the last column is not padded.
    pub fn write(&self, w: &mut dyn Write) -> io::Result<()> {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(n).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |w: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
            let mut out = String::new();
            for (i, cell) in cells.enumerate() {
                if i + 1 < n {
                    out.push_str(cell);
                    out.extend(std::iter::repeat_n(
                        ' ',
                        widths[i] - cell.chars().count() + 3,
                    ));
                } else {
                    out.push_str(cell);
                }
            }
            writeln!(w, "{}", out.trim_end())
        };
        line(w, &mut self.headers.iter().copied())?;
        for row in &self.rows {
            let mut cells = (0..n).map(|i| row.get(i).map_or("", String::as_str));
            line(w, &mut cells)?;
        }
        Ok(())
    }
}

/// Write `value` as pretty JSON followed by a newline.
pub fn json<T: Serialize + ?Sized>(w: &mut dyn Write, value: &T) -> io::Result<()> {
    // `From` hands back serde_json's own I/O error as it was, so a closed pipe stays a
    // BrokenPipe that `main` treats as success (`io::Error::other` hid it).
    serde_json::to_writer_pretty(&mut *w, value).map_err(io::Error::from)?;
    writeln!(w)
}

/// Bytes in SI units, as docker prints them: `523 B`, `13.3 kB`, `1.2 MB`, `456 MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.5 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if v >= 99.95 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The first 12 hex digits of a digest, as image IDs are shown.
pub fn short_digest(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

/// A short name for well-known media types ("oci index", "docker manifest"); others are
/// returned whole, since an unknown type is information the user may need.
pub fn short_media_type(media_type: &str) -> String {
    let s = match media_type {
        mt::OCI_INDEX | mt::OCI_INDEX_PRERELEASE => "oci index",
        mt::DOCKER_MANIFEST_LIST => "docker list",
        mt::OCI_MANIFEST => "oci manifest",
        mt::DOCKER_MANIFEST => "docker manifest",
        mt::OCI_CONFIG => "oci config",
        mt::DOCKER_CONFIG => "docker config",
        mt::OCI_EMPTY => "oci empty",
        mt::OCI_LAYER_TAR => "oci layer tar",
        mt::OCI_LAYER_GZIP => "oci layer gzip",
        mt::OCI_LAYER_ZSTD => "oci layer zstd",
        mt::OCI_LAYER_ND_TAR => "oci non-distributable layer tar",
        mt::OCI_LAYER_ND_GZIP => "oci non-distributable layer gzip",
        mt::OCI_LAYER_ND_ZSTD => "oci non-distributable layer zstd",
        "application/vnd.docker.image.rootfs.diff.tar" => "docker layer tar",
        mt::DOCKER_LAYER_GZIP => "docker layer gzip",
        mt::DOCKER_LAYER_FOREIGN => "docker foreign layer gzip",
        "" => "unknown",
        other => other,
    };
    s.to_string()
}

/// "1 item" / "2 items".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// An error and its causes, `: `-separated, each cause once: library errors print their
/// source in their own message too, so `{:#}` said every cause twice ("… over the 4 MiB
/// limit: … over the 4 MiB limit").
pub fn error_message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(13_300), "13.3 kB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(456_000_000), "456 MB");
        assert_eq!(human_bytes(999_999), "1.0 MB");
        assert_eq!(human_bytes(u64::MAX), "18.4 EB");
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["A", "LONGER", "C"]);
        t.row(vec!["xxxx".into(), "y".into(), "z".into()]);
        t.row(vec!["1".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A      LONGER   C\nxxxx   y        z\n1\n"
        );
    }

    #[test]
    fn media_type_names() {
        assert_eq!(short_media_type(mt::DOCKER_MANIFEST_LIST), "docker list");
        assert_eq!(short_media_type(mt::OCI_INDEX), "oci index");
        assert_eq!(
            short_media_type("application/x-custom"),
            "application/x-custom"
        );
    }
}
