//! `mklayout DIR LAYERS LAYER_SIZE [SEED]`: write a big OCI image layout for benchmarks.
//!
//! Wraps [`sealift_fixtures::big_layout_dir`]: `LAYERS` uncompressed tar layers, each one
//! file of `LAYER_SIZE` incompressible bytes (a plain number of bytes, or with a `K`, `M` or
//! `G` suffix for KiB, MiB, GiB), under the ref name `big`. Prints the manifest digest.

use std::path::PathBuf;
use std::process::ExitCode;

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!(
            "usage: mklayout DIR LAYERS LAYER_SIZE [SEED]   (LAYER_SIZE: bytes, or 64M, 1G...)"
        );
        ExitCode::from(2)
    };
    if !(3..=4).contains(&args.len()) {
        return usage();
    }
    let dir = PathBuf::from(&args[0]);
    let (Ok(layers), Some(size)) = (args[1].parse::<usize>(), parse_size(&args[2])) else {
        return usage();
    };
    let seed = match args.get(3).map(|s| s.parse::<u64>()) {
        None => 1,
        Some(Ok(s)) => s,
        Some(Err(_)) => return usage(),
    };
    match sealift_fixtures::big_layout_dir(&dir, layers, size, seed) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mklayout: writing {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
