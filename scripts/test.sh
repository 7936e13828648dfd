#!/usr/bin/env bash
# The README's test command: set up, then run every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace "$@"
