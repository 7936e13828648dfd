#!/usr/bin/env bash
# scale.sh: the table of issue 13 (the store at fleet scale) from one run of `scale`
# (benches/src/bin/scale.rs): work | before | now | goal.
#
# Builds sealift and the bench binaries (release) unless BENCH_NO_BUILD=1, then builds one
# store of SCALE_BLOBS blobs in SCALE_MANIFESTS tagged images (`scale --build-only`, through
# ingest batches; its blobs per second of ingest are the ingest row, and the same build with
# `--unbatched`, a lone put per item as before group commit, is its "before"), and measures on a copy of it (`scale --prebuilt`): GC
# with nothing to collect, `sealift --json images` and `du` (wall time and peak RSS under
# GNU time), the release of a lease holding every blob (peak memory above the RSS before
# it), GC removing half the images (grace 0), and sled's size on disk.
#
# The "before" column: with BEFORE=DIR (a directory holding `scale` and `sealift` built from
# an older checkout whose scale.rs has --prebuilt, e.g. main's, copied out of its target
# dir), the same measurements on another copy of the same store, one after the other; without
# it, the figures issue 13 gives for main (marked "issue").
#
# Rows this script does not measure say which script does: the 1 GiB import
# (benches/compare.sh) and the no-op sync against skopeo (benches/sync.sh).
#
# Environment:
#   SCALE_BLOBS, SCALE_MANIFESTS  store shape (100000, 10000)
#   BEFORE                        directory with an older build's scale and sealift
#   BENCH_DIR, BENCH_KEEP=1       work dir base (/var/tmp), keep it
#   BENCH_NO_BUILD=1              use target/release/{scale,sealift} as built
#   SCALE                         the scale binary (its directory also gives sealift)
#
# Needs: cargo, GNU time at /usr/bin/time, about 1.5 GiB of free disk per 100k blobs.
# Usage: benches/scale.sh
set -euo pipefail

BENCH_NAME=scale.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BLOBS=${SCALE_BLOBS:-100000}
MANIFESTS=${SCALE_MANIFESTS:-10000}
SCALE=${SCALE:-$TARGET/release/scale}

bench_need_time
bench_build
bench_workdir sealift-scale

echo "== building a store of $BLOBS blobs in $MANIFESTS images" >&2
"$SCALE" --blobs "$BLOBS" --manifests "$MANIFESTS" --dir "$W/built" --build-only \
    >"$W/build.out" 2>"$W/build.err"
INGEST=$(awk '$1 == "metric" && $2 == "ingest_blobs_per_s" { printf "%.0f", $3 }' "$W/build.out")
echo "== the same build unbatched (a lone put per item)" >&2
"$SCALE" --blobs "$BLOBS" --manifests "$MANIFESTS" --dir "$W/unbatched" --build-only \
    --unbatched >"$W/unbatched.out" 2>"$W/unbatched.err"
UNBATCHED=$(awk '$1 == "metric" && $2 == "ingest_blobs_per_s" { printf "%.0f", $3 }' "$W/unbatched.out")
rm -rf "$W/unbatched"

# An older build may keep another store format (format 1 before redb): it builds a store
# of its own, the same shape, and its own ingest figure.
if [[ -n ${BEFORE:-} ]]; then
    echo "== the same build with $BEFORE/scale" >&2
    "$BEFORE/scale" --blobs "$BLOBS" --manifests "$MANIFESTS" --dir "$W/built-before" \
        --build-only >"$W/build-before.out" 2>"$W/build-before.err"
    INGEST_BEFORE=$(awk '$1 == "metric" && $2 == "ingest_blobs_per_s" { printf "%.0f", $3 }' \
        "$W/build-before.out")
fi

# measure NAME BINDIR [STORE]: scale --prebuilt on a fresh copy of the built store (or of
# STORE); the metric lines go to $W/NAME.metrics.
measure_scale() {
    local name=$1 bin=$2 store=${3:-$W/built}
    rm -rf "$W/run"
    cp -a "$store" "$W/run"
    # The copy's dirty pages would otherwise be written back during the measurements
    # (GC's flushes and unlinks waited behind them: 2-5x slower, varying run to run).
    sync
    echo "== measuring with $bin/scale" >&2
    "$bin/scale" --blobs "$BLOBS" --manifests "$MANIFESTS" --dir "$W/run" --prebuilt \
        --sealift "$bin/sealift" >"$W/$name.out" 2>"$W/$name.err"
    grep '^metric ' "$W/$name.out" >"$W/$name.metrics" || true
    rm -rf "$W/run"
}

if [[ -n ${BEFORE:-} ]]; then
    measure_scale before "$BEFORE" "$W/built-before"
fi
measure_scale now "$(dirname "$SCALE")"

# metric FILE NAME: the value, or empty.
metric() {
    [[ -f $1 ]] && awk -v n="$2" '$1 == "metric" && $2 == n { print $3 }' "$1"
}
# fig NAME FORMAT: the before and now cells for a metric (before from BEFORE, else $3).
cell() {
    local v
    v=$(metric "$W/$1.metrics" "$2")
    if [[ -n $v ]]; then printf "$3" "$v"; else echo "${4:-?}"; fi
}

row() { printf '| %s | %s | %s | %s |\n' "$@"; }
b() { if [[ -n ${BEFORE:-} ]]; then cell before "$@"; else echo "$3 (issue)"; fi; }
REMOVED=$(metric "$W/now.metrics" gc_removed)

echo
echo "issue 13 at $BLOBS blobs / $MANIFESTS tagged images; $(nproc) cores, $(uname -r)"
echo "before: ${BEFORE:-figures from the issue (main)}; now: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo this checkout)"
echo
row "work" "before" "now" "goal"
row "---" "---" "---" "---"
row "ingest of $BLOBS small blobs (scale build)" \
    "${INGEST_BEFORE:+$INGEST_BEFORE blobs/s batched; }${UNBATCHED:-?} blobs/s unbatched (578 in the issue)" \
    "${INGEST:-?} blobs/s batched" "≥ 5,000 blobs/s, durable before recorded"
row "GC, nothing to collect" "$(b gc_noop_s '%.2f s' '2.5 s')" \
    "$(cell now gc_noop_s '%.2f s')" "≤ 0.5 s"
row "GC removing ${REMOVED%.*} items" \
    "$(b gc_remove_s '%.2f s' '19.6 s'), $(b gc_remove_peak_mib '%.0f MiB peak' '?')" \
    "$(cell now gc_remove_s '%.2f s'), $(cell now gc_remove_peak_mib '%.0f MiB peak')" \
    "≤ 2 s, memory O(batch)"
row "\`images --json\`, $MANIFESTS tags" \
    "$(b images_cli_s '%.2f s' '1.50 s'), $(b images_cli_mib '%.0f MiB' '80 MiB')" \
    "$(cell now images_cli_s '%.2f s'), $(cell now images_cli_mib '%.0f MiB')" \
    "≤ 0.3 s, ≤ 64 MiB"
row "\`du\`, $MANIFESTS tags" \
    "$(b du_cli_s '%.2f s' '1.68 s'), $(b du_cli_mib '%.0f MiB' '145 MiB')" \
    "$(cell now du_cli_s '%.2f s'), $(cell now du_cli_mib '%.0f MiB')" \
    "≤ 0.3 s, ≤ 64 MiB"
row "release of a lease holding every blob (peak above start)" \
    "$(b release_peak_mib '%.0f MiB' '420 MiB')" \
    "$(cell now release_peak_mib '%.0f MiB')" "≤ 64 MiB (chunked)"
row "import of 1 GiB layout (dir and tarball)" "1.7× tar -xf (issue)" \
    "benches/compare.sh" "≤ 1.2× tar -xf"
row "no-op sync of the corpus vs skopeo sync" "7–9× (issue)" "benches/sync.sh" "≥ 10×"
row "metadata on disk per 100k blobs (as built; sled before format 2, redb since)" \
    "$(b db_mb_per_100k '%.0f MB' 'not measured')" \
    "$(cell now db_mb_per_100k '%.0f MB')" "≤ 30 MB, or say why not"
echo
echo "full step tables: $W/{before,now}.out (BENCH_KEEP=1 keeps them)"
