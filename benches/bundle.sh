#!/usr/bin/env bash
# bundle.sh: air-gapped bundles. Time sealift exporting and importing a ≥ 1 GiB two-image
# bundle against skopeo copy to and from oci-archive: and against tar, on the same data.
#
# Writes two images with mklayout (BENCH_LAYERS/2 uncompressed layers of BENCH_LAYER_MB MiB
# of incompressible bytes each, different seeds; default 2 x 8 x 64 MiB = 1 GiB) and imports
# them, untimed, into a reference store as bench/a:big and bench/b:big. Then, on that data:
#
#   export -> bundle:  sealift export -o X.tar 'bench/*'          (one tarball, both images)
#                      sealift export --split 256M -o X.tar 'bench/*'   (parts + .sha256)
#                      skopeo copy oci:A oci-archive:A.tar + the same for B (one image each)
#                      tar -cf of both layout directories
#   import bundle:     sealift import X.tar                          (fresh store)
#                      sealift import X.tar.000                      (split: hash every part, then stream)
#                      sealift import X.tar again                    (store already has all: idempotent)
#                      skopeo copy oci-archive:A.tar oci:OUT + the same for B
#                      tar -xf of the tar of both layouts
#
# Runs, medians, sync and the table are lib.sh's (see compare.sh); "vs sealift" is the other
# tool's seconds / the first sealift row's of that operation (above 1: sealift is faster).
# sealift verifies every digest and fsyncs what it writes; skopeo verifies, does not fsync;
# tar does neither.
#
# Needs: cargo, GNU time at /usr/bin/time, skopeo, GNU tar; about 5 x the data size free
# under BENCH_DIR.
#
# Environment: BENCH_LAYERS (16, split over the two images), BENCH_LAYER_MB (64),
# BENCH_RUNS (3), BENCH_DIR (/var/tmp), BENCH_KEEP=1, BENCH_NO_BUILD=1, SEALIFT, MKLAYOUT.
#
# Usage: benches/bundle.sh
set -euo pipefail

BENCH_NAME=bundle.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_need_time
if ! command -v skopeo >/dev/null; then
    echo "bundle.sh: skopeo is needed (apt-get install -y skopeo)" >&2
    exit 2
fi
bench_build
bench_workdir sealift-bundle

PER=$((LAYERS / 2))
((PER >= 1)) || PER=1
for img in a b; do
    seed=1
    [[ $img == b ]] && seed=2
    "$MKLAYOUT" "$W/$img" "$PER" "${LAYER_MB}M" "$seed" >/dev/null
    "$SEALIFT" --store "$W/store" --quiet import "$W/$img" --tag "bench/$img:1" >/dev/null
done
SIZE_MIB=$(du -smc --apparent-size "$W/a" "$W/b" | tail -n1 | cut -f1)
echo "== 2 images x $PER layers x $LAYER_MB MiB = $SIZE_MIB MiB; $RUNS runs + 1 warm-up per command" >&2

S=("$SEALIFT" --quiet)
SK=(skopeo --insecure-policy copy -q)

# Inputs of the import rows, made once, untimed.
"${S[@]}" --store "$W/store" export -o "$W/bundle.tar" 'bench/*'
mkdir "$W/parts"
"${S[@]}" --store "$W/store" export --split 256M -o "$W/parts/bundle.tar" 'bench/*'
for img in a b; do
    "${SK[@]}" "oci:$W/$img:big" "oci-archive:$W/$img.tar:big"
done
tar -C "$W" -cf "$W/layouts.tar" a b
"${S[@]}" --store "$W/again" import "$W/bundle.tar"

OP="export -> bundle"
measure "$OP" "sealift export -o X.tar" "${S[@]}" --store "$W/store" export -o "$OUT.tar" 'bench/*'
measure "$OP" "sealift export --split 256M" sh -c 'mkdir "$2" && "$1" --quiet --store "$3" export --split 256M -o "$2/x.tar" "bench/*"' sh "$SEALIFT" "$OUT" "$W/store"
measure "$OP" "skopeo copy oci: oci-archive: (x2)" sh -c 'mkdir "$2" && for i in a b; do skopeo --insecure-policy copy -q "oci:$1/$i:big" "oci-archive:$2/$i.tar:big"; done' sh "$W" "$OUT"
measure "$OP" "tar -cf" tar -C "$W" -cf "$OUT.tar" a b

OP="bundle -> import"
measure "$OP" "sealift import X.tar" "${S[@]}" --store "$OUT" import "$W/bundle.tar"
measure "$OP" "sealift import X.tar.000 (split)" "${S[@]}" --store "$OUT" import "$W/parts/bundle.tar.000"
measure "$OP" "sealift import X.tar (all present)" "${S[@]}" --store "$W/again" import "$W/bundle.tar"
measure "$OP" "skopeo copy oci-archive: oci: (x2)" sh -c 'for i in a b; do skopeo --insecure-policy copy -q "oci-archive:$1/$i.tar:big" "oci:$2:$i"; done' sh "$W" "$OUT"
measure "$OP" "tar -xf" sh -c 'mkdir "$2" && tar -C "$2" -xf "$1"' sh "$W/layouts.tar" "$OUT"

rm -rf "$OUT" "$OUT.tar"

echo
echo "bundles: sealift vs skopeo (oci-archive:) and tar, 2 images = $SIZE_MIB MiB, median of $RUNS runs (warm cache)"
echo "$(nproc) cores, $(uname -r), $(skopeo --version), $(tar --version | head -n1)"
TABLE_TOOL_W=36 bench_table
