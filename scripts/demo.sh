#!/usr/bin/env bash
# The README's first command: build sealift, import the sample layout shipped in
# examples/ into the default store, list it, and export it as a bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p sealift
bin=target/release/sealift
out=${SEALIFT_DEMO_OUT:-out}
mkdir -p "$out"
echo "== sealift import examples/sample-layout"
$bin import examples/sample-layout
echo "== sealift images"
$bin images
echo "== sealift export -o $out/sample.tar --referrers sample/hello:1.0 sample/tools:1.0"
$bin export -o "$out/sample.tar" --referrers sample/hello:1.0 sample/tools:1.0
echo "== sealift du"
$bin du
echo "== sealift verify"
$bin verify
