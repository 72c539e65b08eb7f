#!/usr/bin/env bash
# The main job on the local stack, from a fresh clone: starts (and if needed
# installs) the stack, then `ferry demo`: seed documents (a few broken on
# purpose), migrate them while uploads, edits and deletes flow, complete,
# verify every document against the stores, and print what happened.
#
#   infra/demo.sh                       3,000 documents
#   infra/demo.sh --count 20000         more
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

infra/stack.sh up
eval "$(infra/stack.sh env)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}
export FERRY_LOG=${FERRY_LOG:-warn}
cargo run --locked --quiet -- demo "$@"
