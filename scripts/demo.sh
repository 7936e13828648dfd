#!/usr/bin/env bash
# The README's first command: build sealift and run the jobs of config.example.toml, which
# mirror the sample layout shipped in examples/ into the default store and export a bundle
# of it to out/sample.tar; then list the store, show its disk use and verify it. Running it
# again shows the no-op path: every image is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p sealift
bin=target/release/sealift
echo "== sealift sync --config config.example.toml"
$bin sync --config config.example.toml
echo "== sealift images"
$bin images
echo "== sealift sync status"
$bin sync status
echo "== sealift du"
$bin du
echo "== sealift verify"
$bin verify
