#!/usr/bin/env bash
# compare.sh: time sealift against skopeo, cp and tar on the same big OCI layout.
#
# Builds a layout of BENCH_LAYERS uncompressed tar layers of BENCH_LAYER_MB MiB of
# incompressible bytes each (default 16 x 64 MiB = 1 GiB; ref name "big"), then times, on
# that same data:
#
#   import dir     -> store:  sealift import DIR      | skopeo copy oci:->oci: | cp -r | tar c|tar x
#   import tarball -> store:  sealift import X.tar    | skopeo copy oci-archive:->oci: | tar -xf
#   export store   -> dir:    sealift export -o DIR   | skopeo copy oci:->oci: | cp -r | cp -rl
#   export store   -> tarball sealift export -o X.tar | skopeo copy oci:->oci-archive: | tar -cf
#
# Each command runs once as a warm-up, then BENCH_RUNS times (default 3); the table shows
# the median wall time, the median peak RSS and the median user+sys CPU time. Every run
# writes a fresh output (a fresh store for sealift import); `sync` runs, untimed, before
# each run so one run's writeback does not land in the next. The page cache is not dropped:
# sources are warm for every tool alike. "vs sealift" is tool seconds / sealift seconds
# (above 1: sealift is faster).
#
# What differs between the tools (read the ratios with it): sealift hashes every blob
# against its digest and fsyncs each file, its directory and its metadata before it reports
# success (and the export tarball before renaming it into place); skopeo verifies digests
# but does not fsync; cp and tar neither verify nor fsync. sealift's directory export
# hard-links blobs out of the store (cp -rl is the like-for-like row).
#
# Needs: cargo, GNU time at /usr/bin/time for peak RSS (Debian/Ubuntu: apt-get install -y
# time), skopeo (rows skipped without it), GNU tar, cp. Roughly 3 x the layout size of free
# disk under the work dir.
#
# Environment:
#   BENCH_LAYERS    number of layers (16)
#   BENCH_LAYER_MB  MiB per layer (64)
#   BENCH_RUNS      measured runs per command (3)
#   BENCH_DIR       where the work dir is created (/var/tmp); it is removed at the end
#   BENCH_KEEP=1    keep the work dir
#   BENCH_NO_BUILD=1  use the binaries already built (SEALIFT, MKLAYOUT: their paths;
#                   default target/release/{sealift,mklayout})
#
# Usage: benches/compare.sh
set -euo pipefail

BENCH_NAME=compare.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_need_time
HAVE_SKOPEO=1
if ! command -v skopeo >/dev/null; then
    echo "compare.sh: skopeo not found; its rows are skipped" >&2
    HAVE_SKOPEO=0
fi

bench_build
bench_workdir sealift-compare

LAYOUT=$W/layout
echo "== writing a $LAYERS x $LAYER_MB MiB layout to $LAYOUT" >&2
"$MKLAYOUT" "$LAYOUT" "$LAYERS" "${LAYER_MB}M" >/dev/null
tar -C "$LAYOUT" -cf "$W/big.tar" oci-layout index.json blobs
SIZE_MIB=$(du -sm --apparent-size "$LAYOUT" | cut -f1)

# The reference store that the exports read from, and the ref name import gives the image.
"$SEALIFT" --store "$W/store" --quiet import "$LAYOUT" >/dev/null
REF=$("$SEALIFT" --store "$W/store" --json images |
    sed -n 's/^ *"reference": *"\([^"]*\)".*/\1/p' | head -n1)
if [[ -z $REF ]]; then
    echo "compare.sh: no image in the store after importing $LAYOUT" >&2
    exit 1
fi
echo "== image imported as $REF ($SIZE_MIB MiB); $RUNS runs + 1 warm-up per command" >&2

# measure (lib.sh) OP TOOL CMD...: CMD writes to $OUT (a directory) or $OUT.tar.
S=("$SEALIFT" --quiet)
SK=(skopeo --insecure-policy copy -q)

OP="import dir -> store"
measure "$OP" "sealift import DIR" "${S[@]}" --store "$OUT" import "$LAYOUT"
((HAVE_SKOPEO)) && measure "$OP" "skopeo copy oci: oci:" "${SK[@]}" "oci:$LAYOUT:big" "oci:$OUT:big"
measure "$OP" "cp -r" cp -r "$LAYOUT" "$OUT"
measure "$OP" "tar -c | tar -x" sh -c 'mkdir "$2" && tar -C "$1" -cf - . | tar -C "$2" -xf -' sh "$LAYOUT" "$OUT"

OP="import tarball -> store"
measure "$OP" "sealift import X.tar" "${S[@]}" --store "$OUT" import "$W/big.tar"
((HAVE_SKOPEO)) && measure "$OP" "skopeo copy oci-archive: oci:" "${SK[@]}" "oci-archive:$W/big.tar:big" "oci:$OUT:big"
measure "$OP" "tar -xf" sh -c 'mkdir "$2" && tar -C "$2" -xf "$1"' sh "$W/big.tar" "$OUT"

OP="export store -> dir"
measure "$OP" "sealift export -o DIR" "${S[@]}" --store "$W/store" export -o "$OUT" "$REF"
((HAVE_SKOPEO)) && measure "$OP" "skopeo copy oci: oci:" "${SK[@]}" "oci:$LAYOUT:big" "oci:$OUT:big"
measure "$OP" "cp -r" cp -r "$LAYOUT" "$OUT"
measure "$OP" "cp -rl (hard links)" cp -rl "$LAYOUT" "$OUT"

OP="export store -> tarball"
measure "$OP" "sealift export -o X.tar" "${S[@]}" --store "$W/store" export -o "$OUT.tar" "$REF"
((HAVE_SKOPEO)) && measure "$OP" "skopeo copy oci: oci-archive:" "${SK[@]}" "oci:$LAYOUT:big" "oci-archive:$OUT.tar:big"
measure "$OP" "tar -cf" tar -C "$LAYOUT" -cf "$OUT.tar" oci-layout index.json blobs

rm -rf "$OUT" "$OUT.tar"

echo
echo "sealift vs skopeo, cp, tar: $LAYERS layers x $LAYER_MB MiB = $SIZE_MIB MiB, median of $RUNS runs (warm cache)"
echo "$(nproc) cores, $(uname -r), $(skopeo --version 2>/dev/null || echo 'no skopeo'), $(tar --version | head -n1)"
bench_table
