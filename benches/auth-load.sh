#!/bin/bash
# How long an authorised skopeo pull from `sealift serve --htpasswd` takes, alone and
# while 64 clients (each from its own loopback address) guess passwords as fast as they
# can (issue 9, item 6). Usage: benches/auth-load.sh [path/to/sealift]
set -eu
BIN=${1:-target/debug/sealift}
T=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
"$BIN" --store "$T/store" import examples/sample-layout >/dev/null
# bcrypt cost 10, as `htpasswd -B` makes by default.
perl -e 'print "alice:", crypt("pw-of-alice", q($2b$10$abcdefghijklmnopqrstuu)), "\n"' >"$T/htpasswd"
"$BIN" --store "$T/store" --json serve --addr 127.0.0.1:0 --htpasswd "$T/htpasswd" >"$T/addr" 2>/dev/null &
until [ -s "$T/addr" ]; do sleep 0.1; done
ADDR=$(sed 's/.*"address":"\([^"]*\)".*/\1/' "$T/addr")
pull() {
  /usr/bin/time -f %e skopeo copy -q --insecure-policy --src-tls-verify=false \
    --src-creds alice:pw-of-alice "docker://$ADDR/sample/hello:1.0" "oci:$T/out$1:x" 2>&1
}
echo "alone: $(pull 0) s"
for i in $(seq 2 65); do
  (while :; do curl -s -o /dev/null --interface "127.0.0.$i" -u "alice:guess$RANDOM" "http://$ADDR/v2/"; done) &
done
sleep 3
for n in 1 2 3 4 5; do echo "with 64 guessers: $(pull "$n") s"; done
