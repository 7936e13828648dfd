#!/usr/bin/env bash
# serve.sh: `sealift serve` against the distribution registry, serving the same big image.
#
# Writes a layout of BENCH_LAYERS uncompressed tar layers of BENCH_LAYER_MB MiB of
# incompressible bytes each (default 16 x 64 MiB = 1 GiB; ref name "big") with mklayout,
# imports it into a sealift store as bench/big:1 and pushes it to a distribution registry
# (docker-registry 2.8, plain HTTP, filesystem storage) as bench/big:1 with
# `skopeo copy --preserve-digests` (untimed; same digests on both sides). Then starts
# `sealift serve` on the store and times, on each server,
#
#   skopeo copy --preserve-digests docker://SERVER/bench/big:1 oci:OUT:big
#
# (--preserve-digests: without it skopeo gzips the uncompressed layers on their way into
# the layout, and its own compression, not the server, sets the pace.)
# one warm-up run each, then BENCH_RUNS runs each (default 3), alternating servers, a fresh
# OUT and `sync` before every run. Both servers read from a warm page cache. Reported per
# server: the median wall time, the median CPU time (user+sys) the SERVER spent per copy
# (from /proc/PID/stat before and after each run), the server's peak RSS over the whole
# benchmark (VmHWM from /proc/PID/status) and skopeo's own median CPU time (the client
# does the same work for both). "vs sealift" is distribution's seconds / sealift's (above
# 1: sealift is faster). The last lines check the goal: sealift at least as fast as
# distribution, with less server CPU.
#
# Needs: cargo, GNU time at /usr/bin/time, skopeo, docker-registry, curl (Debian/Ubuntu:
# apt-get install -y time skopeo docker-registry curl). Roughly 4 x the layout size of free
# disk under the work dir (layout, store, registry, output).
#
# Environment:
#   BENCH_LAYERS     number of layers (16)
#   BENCH_LAYER_MB   MiB per layer (64)
#   BENCH_RUNS       measured runs per server (3)
#   BENCH_DIR        where the work dir is created (/var/tmp); it is removed at the end
#   BENCH_KEEP=1     keep the work dir
#   BENCH_NO_BUILD=1 use the binaries already built (SEALIFT, MKLAYOUT: their paths;
#                    default target/release/{sealift,mklayout})
#   REGISTRY_BIN     the registry binary (/usr/bin/docker-registry)
#
# Usage: benches/serve.sh
set -euo pipefail

BENCH_NAME=serve.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=benches/lib-registry.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-registry.sh"
bench_need_time
registry_need_tools

bench_build
bench_workdir sealift-serve

SERVE_PID=
bench_on_exit() {
    registry_stop DIST
    if [[ -n $SERVE_PID ]]; then
        kill "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
}

# --- the image, in both servers ---------------------------------------------------------

SK=(skopeo --insecure-policy copy -q)
LAYOUT=$W/layout
STORE=$W/store
echo "== writing a $LAYERS x $LAYER_MB MiB layout" >&2
"$MKLAYOUT" "$LAYOUT" "$LAYERS" "${LAYER_MB}M" >/dev/null
SIZE_MIB=$(du -sm --apparent-size "$LAYOUT" | cut -f1)
BIG_DIGEST=$(grep -o 'sha256:[0-9a-f]\{64\}' "$LAYOUT/index.json" | head -n1)
# The layout's ref name "big" is a bare tag: it lands as bench/big:big; name it :1 too.
"$SEALIFT" --quiet --store "$STORE" import "$LAYOUT" --tag bench/big:1
"$SEALIFT" --quiet --store "$STORE" tag bench/big:big bench/big:1
registry_start DIST
echo "== pushing it to the distribution registry at $DIST_HOST" >&2
"${SK[@]}" --dest-tls-verify=false --preserve-digests "oci:$LAYOUT:big" "docker://$DIST_HOST/bench/big:1"
rm -rf "$LAYOUT"

SERVE_LOG=$W/serve.log
: >"$W/serve.out"
"$SEALIFT" --store "$STORE" serve --addr 127.0.0.1:0 >"$W/serve.out" 2>"$SERVE_LOG" &
SERVE_PID=$!
for ((t = 0; t < 200; t++)); do
    SERVE_HOST=$(sed -n 's#^Serving .* on http://##p' "$W/serve.out")
    [[ -n $SERVE_HOST ]] && curl -fsS -o /dev/null "http://$SERVE_HOST/v2/" && break
    kill -0 "$SERVE_PID" || { cat "$SERVE_LOG" >&2; exit 1; }
    sleep 0.05
done
echo "== sealift serve at $SERVE_HOST, distribution at $DIST_HOST; $SIZE_MIB MiB image" >&2

# --- the runs ---------------------------------------------------------------------------

TICKS=$(getconf CLK_TCK)
# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
peak_rss_mib() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# one_copy SERVER HOST PID RUN: one timed copy; appends "SERVER secs server_cpu client_cpu".
one_copy() {
    local server=$1 host=$2 pid=$3 run=$4 t0 t1 c0 c1 u s
    rm -rf "$OUT"
    sync
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s%N)
    if ! /usr/bin/time -o "$W/time.txt" -f '%U %S' "${SK[@]}" --src-tls-verify=false --preserve-digests \
        "docker://$host/bench/big:1" "oci:$OUT:big" >"$W/cmd.out" 2>"$W/cmd.err"; then
        echo "$BENCH_NAME: skopeo copy from $server failed:" >&2
        cat "$W/cmd.err" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    c1=$(cpu_ticks "$pid")
    read -r u s <"$W/time.txt"
    ((run == 0)) && return
    awk -v n="$server" -v a="$t0" -v b="$t1" -v c0="$c0" -v c1="$c1" -v k="$TICKS" -v u="$u" -v s="$s" \
        'BEGIN { printf "%s\t%.3f\t%.2f\t%.2f\n", n, (b - a) / 1e9, (c1 - c0) / k, u + s }' >>"$W/runs.tsv"
    printf '  %-14s run %d: %s\n' "$server" "$run" "$(tail -n1 "$W/runs.tsv" | cut -f2-)" >&2
}

: >"$W/runs.tsv"
for ((i = 0; i <= RUNS; i++)); do
    one_copy "sealift serve" "$SERVE_HOST" "$SERVE_PID" "$i"
    one_copy "distribution" "$DIST_HOST" "$DIST_PID" "$i"
done
# The copies are real: the last one holds the image, digest unchanged.
if ! grep -q "$BIG_DIGEST" "$OUT/index.json"; then
    echo "$BENCH_NAME: the last copy does not hold $BIG_DIGEST" >&2
    exit 1
fi
SL_RSS=$(peak_rss_mib "$SERVE_PID")
DI_RSS=$(peak_rss_mib "$DIST_PID")
rm -rf "$OUT"

col() { awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$W/runs.tsv" | median; }
SL_S=$(col "sealift serve" 2) SL_CPU=$(col "sealift serve" 3) SL_CLI=$(col "sealift serve" 4)
DI_S=$(col distribution 2) DI_CPU=$(col distribution 3) DI_CLI=$(col distribution 4)

echo
echo "skopeo copy --preserve-digests docker://SERVER/bench/big:1 oci:OUT: $LAYERS layers x $LAYER_MB MiB = $SIZE_MIB MiB, median of $RUNS runs (warm cache)"
echo "$(nproc) cores, $(uname -r), $(skopeo --version), $("$REGISTRY_BIN" --version 2>&1 | head -n1)"
printf '%-14s %9s %9s %13s %16s %13s  %s\n' server seconds MiB/s "server CPU s" "server peak RSS" "skopeo CPU s" "vs sealift"
for row in "sealift serve|$SL_S|$SL_CPU|$SL_RSS|$SL_CLI" "distribution|$DI_S|$DI_CPU|$DI_RSS|$DI_CLI"; do
    IFS='|' read -r n s c r k <<<"$row"
    awk -v n="$n" -v s="$s" -v c="$c" -v r="$r" -v k="$k" -v base="$SL_S" -v size="$SIZE_MIB" 'BEGIN {
        vs = (n == "sealift serve") ? "" : sprintf("%.2fx", s / base)
        printf "%-14s %9.3f %9.0f %13.2f %12.1f MiB %13.2f  %s\n", n, s, size / s, c, r, k, vs
    }'
done
echo
awk -v sl="$SL_S" -v di="$DI_S" -v slc="$SL_CPU" -v dic="$DI_CPU" 'BEGIN {
    printf "wall: sealift serve %.2fx the speed of distribution (goal >= 1.00x): %s\n", di / sl, (di / sl >= 1 ? "met" : "NOT met")
    printf "server CPU: sealift serve %.2f s, distribution %.2f s (goal: less): %s\n", slc, dic, (slc < dic ? "met" : "NOT met")
}'
