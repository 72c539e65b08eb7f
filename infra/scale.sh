#!/usr/bin/env bash
# The scale-out test on its own: three `ferry worker` processes migrate
# 20,000 documents (FERRY_SCALE_DOCS overrides) while edits flow; one
# scanner at a time, every worker a share, the lease holder and another
# worker killed, the final state checked against the stores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
infra/stack.sh up
eval "$(infra/stack.sh env)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}
cargo test --locked --test scale_out -- --ignored --nocapture
