# benches/lib.sh: helpers shared by compare.sh and registry.sh. Source it, do not run it.
#
# Set BENCH_NAME (the script's name, for messages) before sourcing. Sourcing sets LAYERS,
# LAYER_MB, RUNS, ROOT, TARGET, SEALIFT and MKLAYOUT from the environment (BENCH_LAYERS,
# BENCH_LAYER_MB, BENCH_RUNS, CARGO_TARGET_DIR, SEALIFT, MKLAYOUT) and defines:
#
#   bench_need_time          exit 2 unless GNU time is at /usr/bin/time (peak RSS)
#   bench_build              cargo build --release -p sealift -p sealift-benches, unless
#                            BENCH_NO_BUILD=1
#   bench_workdir PREFIX     W=$BENCH_DIR/PREFIX.XXXXXX (BENCH_DIR: /var/tmp); at exit calls
#                            bench_on_exit if the script defines it, then removes W unless
#                            BENCH_KEEP=1. Also sets RESULTS (empty) and OUT.
#   median                   the median of the numbers on stdin, one a line
#   measure OP TOOL CMD...   one warm-up run of CMD, then RUNS timed runs; appends
#                            "OP TOOL seconds rss_MiB cpu_s size_MiB" (medians; size is
#                            $SIZE_MIB) to $RESULTS. Before every run: rm -rf $OUT $OUT.tar,
#                            bench_prepare RUN if the script defines it, sync. "@RUN@" in
#                            CMD's arguments becomes the run number (0 = warm-up).
#   bench_table [RATIO_HEAD] the results table on stdout; the first row of a tool starting
#                            "sealift" is the base of its operation's "N.NNx vs sealift" (other
#                            tool's seconds / sealift's). TABLE_OP_W and TABLE_TOOL_W (24,
#                            32) set the first two columns' widths; RATIO_HEAD, if given,
#                            heads the ratio column.

LAYERS=${BENCH_LAYERS:-16}
LAYER_MB=${BENCH_LAYER_MB:-64}
RUNS=${BENCH_RUNS:-3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SEALIFT=${SEALIFT:-$TARGET/release/sealift}
MKLAYOUT=${MKLAYOUT:-$TARGET/release/mklayout}

bench_need_time() {
    if [[ ! -x /usr/bin/time ]]; then
        echo "$BENCH_NAME: /usr/bin/time (GNU time) is needed for peak RSS." >&2
        echo "  Debian/Ubuntu: apt-get install -y time" >&2
        exit 2
    fi
}

bench_build() {
    if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
        echo "== building sealift and the bench tools (release)" >&2
        (cd "$ROOT" && cargo build --release -q -p sealift -p sealift-benches)
    fi
}

bench_workdir() {
    local base=${BENCH_DIR:-/var/tmp}
    mkdir -p "$base"
    W=$(mktemp -d "$base/$1.XXXXXX")
    RESULTS=$W/results.tsv
    : >"$RESULTS"
    OUT=$W/out
    trap _bench_cleanup EXIT
}

_bench_cleanup() {
    if declare -F bench_on_exit >/dev/null; then
        bench_on_exit || true
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "$BENCH_NAME: kept $W" >&2
    else
        rm -rf "$W"
    fi
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

measure() {
    local op=$1 tool=$2
    shift 2
    local secs=() rss=() cpu=() i t0 t1 m u s
    for ((i = 0; i <= RUNS; i++)); do
        rm -rf "$OUT" "$OUT.tar"
        if declare -F bench_prepare >/dev/null; then
            bench_prepare "$i"
        fi
        sync
        t0=$(date +%s%N)
        if ! /usr/bin/time -o "$W/time.txt" -f '%M %U %S' "${@//@RUN@/$i}" >"$W/cmd.out" 2>"$W/cmd.err"; then
            echo "$BENCH_NAME: failed: ${*//@RUN@/$i}" >&2
            cat "$W/cmd.err" >&2
            exit 1
        fi
        t1=$(date +%s%N)
        ((i == 0)) && continue
        secs+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')")
        read -r m u s <"$W/time.txt"
        rss+=("$(awk -v m="$m" 'BEGIN { printf "%.1f", m / 1024 }')")
        cpu+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
    done
    local ms mr mc
    ms=$(printf '%s\n' "${secs[@]}" | median)
    mr=$(printf '%s\n' "${rss[@]}" | median)
    mc=$(printf '%s\n' "${cpu[@]}" | median)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "$tool" "$ms" "$mr" "$mc" "$SIZE_MIB" >>"$RESULTS"
    printf '  %-24s %-44s %8.3f s %8.1f MiB\n' "$op" "$tool" "$ms" "$mr" >&2
}

bench_table() {
    awk -F'\t' -v ow="${TABLE_OP_W:-24}" -v tw="${TABLE_TOOL_W:-32}" -v rh="${1:-}" '
    BEGIN {
        lead = "%-" ow "s %-" tw "s"
        printf lead " %9s %9s %9s %11s%s\n", "operation", "tool", "seconds", "MiB/s", "CPU s", "peak RSS", (rh == "" ? "" : "  " rh)
    }
    $2 ~ /^sealift/ && !($1 in base) { base[$1] = $3 }
    { op[NR] = $1; tool[NR] = $2; s[NR] = $3; rss[NR] = $4; cpu[NR] = $5; size[NR] = $6 }
    END {
        for (i = 1; i <= NR; i++) {
            if (i > 1 && op[i] != op[i - 1]) print ""
            ratio = (op[i] in base && base[op[i]] > 0) ? sprintf("%.2fx", s[i] / base[op[i]]) : "-"
            vs = (tool[i] ~ /^sealift/) ? "" : "  " ratio " vs sealift"
            printf lead " %9.3f %9.0f %9.2f %7.1f MiB%s\n", op[i], tool[i], s[i], size[i] / s[i], cpu[i], rss[i], vs
        }
    }' "$RESULTS"
}
