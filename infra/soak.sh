#!/usr/bin/env bash
# Many more consistency seeds than CI runs, for as long as asked. Seeds
# cycle through the schedule kinds (seed % 3: rollback, plain, second
# migration; see docs/harness.md), so a third of them roll back.
#
#   infra/soak.sh                 10 minutes of seeds from 1000
#   infra/soak.sh 60 5000         60 minutes, seeds from 5000
#   FERRY_SEED=1234 cargo test --test consistency seeds_1_to_5     replay one seed
#
# The drain check reads unacknowledged counts with rabbitmqctl: run as
# root (or a user rabbitmqctl accepts) on the machine of the broker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
infra/stack.sh up
eval "$(infra/stack.sh env)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}
export FERRY_SOAK_MINUTES=${1:-10} FERRY_SOAK_FROM=${2:-1000}
export FERRY_TEST_WORKER_LOG=${FERRY_TEST_WORKER_LOG:-error}
cargo test --locked --test consistency soak -- --ignored --nocapture
