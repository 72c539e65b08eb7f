#!/usr/bin/env bash
# The main job on the local stack, from a fresh clone: starts (and if needed
# installs) the stack, builds ferry, then `ferry demo`: seed documents (a few
# broken on purpose), migrate them while uploads, edits and deletes flow,
# complete, verify every document against the stores, and print a report.
# The worker's logs go to a file (named below), not between the progress
# lines and the report.
#
#   infra/demo.sh                       3,000 documents
#   infra/demo.sh --count 20000         more
#   infra/demo.sh --cross-cluster       migrate from one index server to
#                                       another (the stack's second one)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cross=0
args=()
for a in "$@"; do
  if [[ $a == --cross-cluster ]]; then cross=1; else args+=("$a"); fi
done

step() { printf '\n== %s\n' "$*" >&2; }

step "starting the local stack (RabbitMQ, moto, osmem)"
infra/stack.sh up
eval "$(infra/stack.sh env)"
if ((cross)); then
  export FERRY_TARGET_INDEX_URL=$FERRY_SECOND_INDEX_URL
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}

step "building ferry (the first build takes about ten minutes)"
cargo build --locked --bin ferry

logs=$HOME/.cache/ferry/logs
mkdir -p "$logs"
export FERRY_LOG_FILE=${FERRY_LOG_FILE:-$logs/demo-$(date +%Y%m%d-%H%M%S).log}
export FERRY_LOG=${FERRY_LOG:-info}
step "running the demo (worker logs: $FERRY_LOG_FILE)"
"$CARGO_TARGET_DIR/debug/ferry" demo ${args[@]+"${args[@]}"}
