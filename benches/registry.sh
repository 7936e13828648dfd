#!/usr/bin/env bash
# registry.sh: time sealift against skopeo copying a big image out of a real registry.
#
# Starts two distribution registries (docker-registry 2.8, plain HTTP on free 127.0.0.1
# ports, filesystem storage in the work dir): SRC and DST. Writes a layout of BENCH_LAYERS
# uncompressed tar layers of BENCH_LAYER_MB MiB of incompressible bytes each (default
# 16 x 64 MiB = 1 GiB; ref name "big") with mklayout and pushes it, untimed, to SRC as
# bench/big:1 (skopeo copy --preserve-digests). Then times, on that same image:
#
#   registry -> store:    sealift --store S pull SRC/bench/big:1    | skopeo copy docker: oci:
#   registry -> layout:   sealift copy docker://SRC/… oci:OUT:big    | skopeo copy docker: oci:
#   registry -> registry: sealift copy docker://SRC/… docker://DST/… | skopeo copy docker: docker:
#
# skopeo has no store: an OCI layout directory is its local equivalent, so its
# "registry -> store" row is the same command as its "registry -> layout" row.
# Registry -> registry goes to the second registry, so nothing can be cross-repo mounted,
# and DST is restarted with empty storage before every run (and each run pushes to a new
# repository, bench/sealift-N or bench/skopeo-N): no blob is ever already there.
#
# One more row checks that sealift's memory does not grow with the layer size: a second
# image of ONE layer of BENCH_BIG_LAYER_MB MiB (bench/one:1) pulled registry -> store.
#
# Each command runs once as a warm-up, then BENCH_RUNS times (default 3); the table shows
# the median wall time, the median peak RSS and the median user+sys CPU time of the client
# (the registries' own CPU is not counted; they share the 2 cores with it). Every run writes
# a fresh output (a fresh store, layout or DST registry); `sync` runs, untimed, before each
# run. The page cache is not dropped: SRC's blobs are warm for every tool alike.
# "vs sealift" is skopeo seconds / sealift seconds (above 1: sealift is faster). The last
# lines check the goals: sealift at least 1.5x faster than skopeo, peak RSS under 100 MiB.
#
# What differs between the tools: both verify digests; sealift fsyncs every blob it writes
# (in the store also its directory and metadata) before it reports success, skopeo does not.
# Neither compresses (the layers are uncompressed tar and keep their digests).
#
# Needs: cargo, GNU time at /usr/bin/time, skopeo, docker-registry (Debian/Ubuntu:
# apt-get install -y time skopeo docker-registry), curl. Roughly 3 x the layout size (plus
# 2 x BENCH_BIG_LAYER_MB) of free disk under the work dir.
#
# Environment:
#   BENCH_LAYERS        number of layers (16)
#   BENCH_LAYER_MB      MiB per layer (64)
#   BENCH_BIG_LAYER_MB  MiB of the single layer of the memory-scaling image (1024; 0 skips it)
#   BENCH_RUNS          measured runs per command (3)
#   BENCH_DIR           where the work dir is created (/var/tmp); it is removed at the end
#   BENCH_KEEP=1        keep the work dir
#   BENCH_NO_BUILD=1    use the binaries already built (SEALIFT, MKLAYOUT: their paths;
#                       default target/release/{sealift,mklayout})
#   REGISTRY_BIN        the registry binary (/usr/bin/docker-registry)
#
# Usage: benches/registry.sh
set -euo pipefail

BENCH_NAME=registry.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIG_LAYER_MB=${BENCH_BIG_LAYER_MB:-1024}
# shellcheck source=benches/lib-registry.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-registry.sh"
bench_need_time
registry_need_tools

bench_build
bench_workdir sealift-registry

# --- registries ------------------------------------------------------------------------

bench_on_exit() {
    registry_stop SRC
    registry_stop DST
}

# Before every run of a registry -> registry command: DST restarted with empty storage.
FRESH_DST=0
bench_prepare() {
    if ((FRESH_DST)); then
        local port=${DST_HOST##*:}
        registry_stop DST
        rm -rf "$W/DST.data"
        registry_start DST "$port"
    fi
}

registry_start SRC
registry_start DST
echo "== registries: source $SRC_HOST, destination $DST_HOST" >&2

# --- the images ------------------------------------------------------------------------

SK=(skopeo --insecure-policy copy -q)

# push_layout DIR REPO: DIR's image "big" to SRC/REPO:1, digests kept.
push_layout() {
    "${SK[@]}" --dest-tls-verify=false --preserve-digests "oci:$1:big" "docker://$SRC_HOST/$2:1"
}

LAYOUT=$W/layout
echo "== writing a $LAYERS x $LAYER_MB MiB layout and pushing it to $SRC_HOST/bench/big:1" >&2
"$MKLAYOUT" "$LAYOUT" "$LAYERS" "${LAYER_MB}M" >/dev/null
SIZE_MIB=$(du -sm --apparent-size "$LAYOUT" | cut -f1)
push_layout "$LAYOUT" bench/big
rm -rf "$LAYOUT"
if ((BIG_LAYER_MB > 0)); then
    echo "== writing a 1 x $BIG_LAYER_MB MiB layout and pushing it to $SRC_HOST/bench/one:1" >&2
    "$MKLAYOUT" "$W/one" 1 "${BIG_LAYER_MB}M" >/dev/null
    ONE_MIB=$(du -sm --apparent-size "$W/one" | cut -f1)
    push_layout "$W/one" bench/one
    rm -rf "$W/one"
fi
echo "== $SIZE_MIB MiB image; $RUNS runs + 1 warm-up per command" >&2

# --- the runs --------------------------------------------------------------------------

S=("$SEALIFT" --quiet)
SKS=("${SK[@]}" --src-tls-verify=false)
BIG=docker://$SRC_HOST/bench/big:1

OP="registry -> store"
measure "$OP" "sealift pull" "${S[@]}" --store "$OUT" pull "$SRC_HOST/bench/big:1"
measure "$OP" "skopeo copy docker: oci: (no store)" "${SKS[@]}" "$BIG" "oci:$OUT:big"

OP="registry -> layout"
measure "$OP" "sealift copy docker: oci:" "${S[@]}" copy "$BIG" "oci:$OUT:big"
measure "$OP" "skopeo copy docker: oci:" "${SKS[@]}" "$BIG" "oci:$OUT:big"

OP="registry -> registry"
# dst_has REPO: the last run's copy is really in DST.
dst_has() {
    curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$DST_HOST/v2/$1/manifests/1"
}
FRESH_DST=1
measure "$OP" "sealift copy docker: docker:" \
    "${S[@]}" copy "$BIG" "docker://$DST_HOST/bench/sealift-@RUN@:1"
dst_has bench/sealift-$RUNS
measure "$OP" "skopeo copy docker: docker:" \
    "${SKS[@]}" --dest-tls-verify=false "$BIG" "docker://$DST_HOST/bench/skopeo-@RUN@:1"
dst_has bench/skopeo-$RUNS
FRESH_DST=0

if ((BIG_LAYER_MB > 0)); then
    SIZE_MIB=$ONE_MIB measure "registry -> store, 1 layer" "sealift pull (1 x $BIG_LAYER_MB MiB layer)" \
        "${S[@]}" --store "$OUT" pull "$SRC_HOST/bench/one:1"
fi
rm -rf "$OUT"

echo
echo "sealift vs skopeo through a registry: $LAYERS layers x $LAYER_MB MiB = $SIZE_MIB MiB, median of $RUNS runs (warm cache)"
echo "$(nproc) cores, $(uname -r), $(skopeo --version), $("$REGISTRY_BIN" --version 2>&1 | head -n1)"
echo "skopeo has no store: its registry -> store row writes an OCI layout (the same command as registry -> layout)"
TABLE_OP_W=26 TABLE_TOOL_W=36 bench_table "skopeo/sealift"
echo
awk -F'\t' '
    $2 ~ /^sealift/ { sl[$1] = $3; if ($1 !~ /1 layer/ && $4 > rss) rss = $4 }
    $2 ~ /^skopeo/ { sk[$1] = $3; order[++n] = $1 }
    $1 ~ /1 layer/ { one = $4; onetool = $2 }
    END {
        for (i = 1; i <= n; i++) {
            op = order[i]
            if (!(op in sl) || sl[op] <= 0) continue
            x = sk[op] / sl[op]
            name = op; sub(/^registry -> /, "", name)
            printf "registry→%s: sealift %.2fx faster than skopeo (goal ≥ 1.5x): %s\n", name, x, (x >= 1.5 ? "met" : "NOT met")
        }
        printf "peak RSS sealift: %.1f MiB (goal < 100 MiB): %s\n", rss, (rss < 100 ? "met" : "NOT met")
        if (onetool != "")
            printf "peak RSS sealift, %s: %.1f MiB (goal < 100 MiB): %s\n", substr(onetool, 15, length(onetool) - 15), one, (one < 100 ? "met" : "NOT met")
    }' "$RESULTS"
