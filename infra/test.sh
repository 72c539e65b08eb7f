#!/usr/bin/env bash
# The whole test suite, from a fresh clone: starts (and if needed installs)
# the local stack, then runs formatting and lint checks and every test
# against the real services.
#
#   infra/test.sh              everything
#   infra/test.sh --test NAME  extra arguments go to `cargo test`
#
# Build output lives outside the clone (CARGO_TARGET_DIR, default
# ~/.cache/ferry/target) so that repeated runs and CI reuse it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# In CI, start the in-memory services afresh: every run leaves indices,
# buckets and tables behind, and nobody else uses the stack then.
if [ "${CI:-}" = true ]; then
  infra/stack.sh down
fi
infra/stack.sh up
# The browser test drives Debian's Chromium through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >&2
fi
eval "$(infra/stack.sh env)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ferry/target}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

if [ "${FERRY_TEST_LINT:-1}" = 1 ]; then
  cargo fmt --check
  cargo clippy --locked --all-targets -- -D warnings
fi
if [ "$#" -gt 0 ]; then
  exec cargo test --locked "$@"
fi
if cargo nextest --version >/dev/null 2>&1; then
  # Alone, after the rest, one at a time: the broker-restart test stops
  # RabbitMQ; the latency-budget test measures edit latency, which the
  # parallel suite's load would swamp.
  alone='binary(broker_restart) | binary(latency_budget)'
  # The model checker's explorations use both cores each: beside the
  # parallel suite they starve its worker processes, so they run after it,
  # one at a time.
  cargo nextest run --locked --config-file infra/nextest.toml -E "not ($alone | binary(model))"
  cargo nextest run --locked --config-file infra/nextest.toml --test-threads 1 -E "$alone | binary(model)"
  # Three workers and two kills, alone too (it loads the index server);
  # 5,000 documents here, the full 20,000 with infra/scale.sh.
  FERRY_SCALE_DOCS=${FERRY_SCALE_DOCS:-5000} cargo nextest run --locked \
    --config-file infra/nextest.toml --run-ignored only -E 'binary(scale_out)'
else
  echo "cargo-nextest not found: running with cargo test (slower)" >&2
  # One test binary at a time, so the broker restart has the broker alone.
  cargo test --locked
  FERRY_SCALE_DOCS=${FERRY_SCALE_DOCS:-5000} cargo test --locked --test scale_out -- --ignored
fi
# The consistency checker must catch a rule broken on purpose (test-only build).
cargo test --locked --features fault-injection --test checker_fails
