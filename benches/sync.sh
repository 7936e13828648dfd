#!/usr/bin/env bash
# sync.sh: time `sealift sync` against `skopeo sync` mirroring many small images from one
# registry to another, cold (empty destination) and no-op (nothing changed since).
#
# Starts two distribution registries (docker-registry 2.8, plain HTTP on 127.0.0.1, access
# logs on): SRC and DST. Writes the mirror corpus (sealift_fixtures::mirror_corpus, with
# make-mirror-corpus): BENCH_REPOS repositories mirror/rNN x BENCH_TAGS tags (default 12 x 5 =
# 60 tags; repository 0's tags are two-platform indexes) of small images, and pushes it,
# untimed, to SRC with a sealift job. Then times:
#
#   cold:  sealift sync (job: docker://SRC, catalog mirror/*, -> docker://DST/sealift)
#          skopeo sync --all --preserve-digests (YAML source: every mirror/* repo, all tags)
#          DST restarted empty and sealift's store removed before every run.
#   no-op: the same commands again on an up-to-date DST (and sealift's store from its cold
#          run, which holds the job's state).
#
# Each command runs once as a warm-up, then BENCH_RUNS times (default 3); the table shows
# medians. Then each of the four runs once more with its requests counted from both
# registries' access logs. "vs sealift" is skopeo seconds / sealift seconds. The last lines
# check the goal: a no-op sync at least 10x faster than skopeo's.
#
# Needs: cargo, GNU time at /usr/bin/time, skopeo, docker-registry, curl.
#
# Environment:
#   BENCH_REPOS, BENCH_TAGS   corpus shape (12, 5)
#   BENCH_RUNS                measured runs per command (3)
#   BENCH_DIR, BENCH_KEEP=1   work dir base (/var/tmp), keep it
#   BENCH_NO_BUILD=1          use target/release/{sealift,make-mirror-corpus} as built
#   REGISTRY_BIN              the registry binary (/usr/bin/docker-registry)
#
# Usage: benches/sync.sh
set -euo pipefail

BENCH_NAME=sync.sh
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPOS=${BENCH_REPOS:-12}
NTAGS=${BENCH_TAGS:-5}
MKCORPUS=$TARGET/release/make-mirror-corpus
# shellcheck source=benches/lib-registry.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib-registry.sh"

bench_need_time
registry_need_tools
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    echo "== building sealift and make-mirror-corpus (release)" >&2
    (cd "$ROOT" && cargo build --release -q -p sealift -p sealift-fixtures)
fi
bench_workdir sealift-sync

export BENCH_ACCESSLOG=1

bench_on_exit() {
    registry_stop SRC
    registry_stop DST
}

FRESH=0
bench_prepare() {
    if ((FRESH)); then
        local port=${DST_HOST##*:}
        registry_stop DST
        rm -rf "$W/DST.data"
        registry_start DST "$port"
        rm -rf "$W/store"
    fi
}

registry_start SRC
registry_start DST
echo "== registries: source $SRC_HOST, destination $DST_HOST" >&2

# --- the corpus ------------------------------------------------------------------------

TAGS=()
for ((i = 0; i < NTAGS; i++)); do TAGS+=("1.$i.0"); done
"$MKCORPUS" "$W/corpus" "$REPOS" "${TAGS[@]}"
cat >"$W/seed.toml" <<EOF
[[job]]
name = "seed"
source = "oci:corpus"
destination = "docker://$SRC_HOST"
EOF
"$SEALIFT" --quiet --store "$W/seed-store" sync --config "$W/seed.toml" >/dev/null
rm -rf "$W/seed-store" "$W/corpus"
SIZE_MIB=$(du -sm --apparent-size "$W/SRC.data" | cut -f1)
echo "== $REPOS repositories x $NTAGS tags in $SRC_HOST ($SIZE_MIB MiB); $RUNS runs + 1 warm-up per command" >&2

cat >"$W/sync.toml" <<EOF
[[job]]
name = "mirror"
source = "docker://$SRC_HOST"
destination = "docker://$DST_HOST/sealift"
[job.repositories]
allow = ["mirror/*"]
EOF
{
    echo "$SRC_HOST:"
    echo "  tls-verify: false"
    echo "  images-by-tag-regex:"
    for ((i = 0; i < REPOS; i++)); do printf '    mirror/r%02d: ".*"\n' "$i"; done
} >"$W/skopeo.yaml"

SL=("$SEALIFT" --quiet --store "$W/store" sync --config "$W/sync.toml")
SK=(skopeo --insecure-policy sync --all --preserve-digests --src yaml --dest docker
    --dest-tls-verify=false "$W/skopeo.yaml" "$DST_HOST/skopeo")

# --- timed runs ------------------------------------------------------------------------

FRESH=1
measure "cold" "sealift sync" "${SL[@]}"
measure "cold" "skopeo sync --all" "${SK[@]}"
FRESH=0
# Each command's warm-up run brings its destination (and sealift's state) up to date; the
# measured runs then find nothing to do.
measure "no-op" "sealift sync" "${SL[@]}"
measure "no-op" "skopeo sync --all" "${SK[@]}"

# --- request counts --------------------------------------------------------------------

requests() { grep -cE '"(GET|HEAD|PUT|POST|PATCH|DELETE) /v2/' "$W/$1.log" || true; }
COUNTS=$W/counts.tsv
: >"$COUNTS"
# count OP TOOL CMD...: run once, append "OP TOOL src_requests dst_requests".
count() {
    local op=$1 tool=$2 s0 s1 d0 d1
    shift 2
    s0=$(requests SRC)
    d0=$(requests DST)
    "$@" >/dev/null 2>&1
    s1=$(requests SRC)
    d1=$(requests DST)
    printf '%s\t%s\t%s\t%s\n' "$op" "$tool" "$((s1 - s0))" "$((d1 - d0))" >>"$COUNTS"
}
fresh() {
    FRESH=1
    bench_prepare 1
    FRESH=0
}
fresh
count "cold" "sealift sync" "${SL[@]}"
count "no-op" "sealift sync" "${SL[@]}"
# The mirror is complete: every tag at the destination with the source's digest.
ACCEPT='application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json'
digest_of() {
    curl -fsSI -H "Accept: $ACCEPT" "$1" 2>/dev/null | tr -d '\r' |
        awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
}
for ((i = 0; i < REPOS; i++)); do
    r=$(printf 'mirror/r%02d' "$i")
    for t in "${TAGS[@]}"; do
        a=$(digest_of "http://$SRC_HOST/v2/$r/manifests/$t")
        b=$(digest_of "http://$DST_HOST/v2/sealift/$r/manifests/$t")
        if [[ -z $a || $a != "$b" ]]; then
            echo "$BENCH_NAME: $r:$t not mirrored by sealift (${a:-missing} vs ${b:-missing})" >&2
            exit 1
        fi
    done
done
fresh
count "cold" "skopeo sync --all" "${SK[@]}"
count "no-op" "skopeo sync --all" "${SK[@]}"

echo
echo "sealift sync vs skopeo sync: $REPOS repositories x $NTAGS tags ($((REPOS * NTAGS)) tags, $SIZE_MIB MiB at the source), median of $RUNS runs"
echo "$(nproc) cores, $(uname -r), $(skopeo --version), $("$REGISTRY_BIN" --version 2>&1 | head -n1)"
TABLE_OP_W=8 TABLE_TOOL_W=20 bench_table "skopeo/sealift"
echo
printf '%-8s %-20s %14s %14s\n' "run" "tool" "SRC requests" "DST requests"
awk -F'\t' '{ printf "%-8s %-20s %14d %14d\n", $1, $2, $3, $4 }' "$COUNTS"
echo
awk -F'\t' '
    $2 ~ /^sealift/ { sl[$1] = $3 }
    $2 ~ /^skopeo/ { sk[$1] = $3 }
    END {
        x = sk["cold"] / sl["cold"]
        printf "cold: sealift %.2fx faster than skopeo sync\n", x
        x = sk["no-op"] / sl["no-op"]
        printf "no-op: sealift %.2fx faster than skopeo sync (goal >= 10x): %s\n", x, (x >= 10 ? "met" : "NOT met")
    }' "$RESULTS"
