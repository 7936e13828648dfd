# benches/lib-registry.sh: the distribution registry for benchmark scripts (registry.sh,
# serve.sh). Source it after lib.sh. Sourcing sets REGISTRY_BIN (default
# /usr/bin/docker-registry); the functions use W (from bench_workdir) and BENCH_NAME.
#
#   registry_need_tools        exit 2 unless skopeo, curl and REGISTRY_BIN are installed
#   free_port                  a TCP port on 127.0.0.1 nothing answers on
#   registry_start NAME [PORT] serve $W/NAME.data on 127.0.0.1:PORT; sets NAME_PID, NAME_HOST;
#                              its log (with BENCH_ACCESSLOG=1, one line per request) is
#                              $W/NAME.log
#   registry_stop NAME         kill it and wait

REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}

registry_need_tools() {
    local tool
    for tool in skopeo curl "$REGISTRY_BIN"; do
        if ! command -v "$tool" >/dev/null; then
            echo "$BENCH_NAME: $tool not found (Debian/Ubuntu: apt-get install -y skopeo docker-registry curl)" >&2
            exit 2
        fi
    done
}

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        # Nothing accepts a connection there (yet); the nonce check below catches a race.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

# registry_start NAME [PORT]: serve $W/NAME.data on 127.0.0.1:PORT (a free port if none);
# sets NAME_PID and NAME_HOST. Waits up to 10 s for GET /v2/ to answer with our nonce header.
registry_start() {
    local name=$1 want=${2:-} port pid nonce hdrs attempt t
    local cfg=$W/$name.yml log=$W/$name.log data=$W/$name.data
    mkdir -p "$data"
    for ((attempt = 0; attempt < 5; attempt++)); do
        port=${want:-$(free_port)}
        nonce=$RANDOM$RANDOM$RANDOM
        cat >"$cfg" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: $([[ ${BENCH_ACCESSLOG:-0} == 1 ]] && echo false || echo true)
storage:
  filesystem:
    rootdirectory: "$data"
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: "127.0.0.1:$port"
  secret: sealift-bench-secret
  headers:
    X-Sealift-Bench: ["$nonce"]
health:
  storagedriver:
    enabled: false
EOF
        "$REGISTRY_BIN" serve "$cfg" </dev/null >"$log" 2>&1 &
        pid=$!
        for ((t = 0; t < 200; t++)); do
            kill -0 "$pid" 2>/dev/null || break
            if hdrs=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null) &&
                [[ ${hdrs,,} == *"x-sealift-bench: $nonce"* ]]; then
                printf -v "${name}_PID" '%s' "$pid"
                printf -v "${name}_HOST" '%s' "127.0.0.1:$port"
                return 0
            fi
            sleep 0.05
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        if [[ -n $want ]] || ! grep -q 'address already in use' "$log"; then
            echo "$BENCH_NAME: $REGISTRY_BIN did not answer on 127.0.0.1:$port; its log:" >&2
            cat "$log" >&2
            exit 1
        fi
    done
    echo "$BENCH_NAME: no free port for $name after 5 attempts" >&2
    exit 1
}

# registry_stop NAME: kill the registry and wait for it.
registry_stop() {
    local var=${1}_PID
    local pid=${!var:-}
    if [[ -n $pid ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        printf -v "$var" '%s' ""
    fi
}
