//! Benchmarks live in benches/benches and benches/*.sh.

pub mod report;
