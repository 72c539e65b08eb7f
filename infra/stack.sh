#!/usr/bin/env bash
# ferry's local stack, without Docker:
#   RabbitMQ      (AMQP)                       127.0.0.1:$FERRY_AMQP_PORT
#   moto          (S3 + DynamoDB, one process) 127.0.0.1:$FERRY_AWS_PORT
#   osmem-server  (OpenSearch REST API)        127.0.0.1:$FERRY_INDEX_PORT
#   osmem-server  (a second cluster)           127.0.0.1:$FERRY_SECOND_INDEX_PORT
#                 for cross-cluster tests; `env` names it FERRY_SECOND_INDEX_URL
#
# Usage: infra/stack.sh up|down|status|env
#   up      start what is not already answering, create the bucket and tables
#   down    stop only what this script started
#   status  one line per service; exit 1 if any is down
#   env     export lines for a shell or test runner: eval "$(infra/stack.sh env)"
#
# Every command is idempotent. Everything is configurable by environment:
#   FERRY_CACHE        state dir (venv/, logs/, run/)      default ~/.cache/ferry
#   FERRY_AMQP_PORT    default 5672
#   FERRY_AWS_PORT     default 4566
#   FERRY_INDEX_PORT   default 9200
#   FERRY_SECOND_INDEX_PORT default 9201
#   FERRY_START_TIMEOUT seconds to wait for each service   default 60
#   FERRY_RABBIT_NODE  node name if we must start RabbitMQ default ferry-<port>@localhost
#
# FERRY_PROFILE=fast adds faster S3 and DynamoDB servers for benchmarks (moto
# serves ~320 S3 GETs/s, which would hide everything ferry does):
#   Garage        (S3)                         127.0.0.1:$FERRY_FAST_S3_PORT     default 4567
#   dynoxide      (DynamoDB)                   127.0.0.1:$FERRY_FAST_DYNAMO_PORT default 4568
# built once with `cargo install` into $FERRY_CACHE/tools (Garage takes 15-25
# minutes to build). `up` starts them too, `env` points FERRY_S3_ENDPOINT and
# FERRY_DYNAMO_ENDPOINT (and the AWS keys, Garage's) at them, `status` shows
# them, and `down` stops only them (RabbitMQ, osmem and moto are shared).
set -euo pipefail

FERRY_CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
FERRY_AMQP_PORT=${FERRY_AMQP_PORT:-5672}
FERRY_AWS_PORT=${FERRY_AWS_PORT:-4566}
FERRY_INDEX_PORT=${FERRY_INDEX_PORT:-9200}
FERRY_SECOND_INDEX_PORT=${FERRY_SECOND_INDEX_PORT:-9201}
FERRY_START_TIMEOUT=${FERRY_START_TIMEOUT:-60}
# Our own node name, so that starting a second broker never collides with the
# machine's node (rabbit@localhost) and `down` can stop exactly this one.
FERRY_RABBIT_NODE=${FERRY_RABBIT_NODE:-ferry-$FERRY_AMQP_PORT@localhost}

FERRY_PROFILE=${FERRY_PROFILE:-default}
FERRY_FAST_S3_PORT=${FERRY_FAST_S3_PORT:-4567}
FERRY_FAST_DYNAMO_PORT=${FERRY_FAST_DYNAMO_PORT:-4568}
FERRY_GARAGE_RPC_PORT=${FERRY_GARAGE_RPC_PORT:-3901}

HOST=127.0.0.1 # every service binds to loopback only
VENV=$FERRY_CACHE/venv
LOG_DIR=$FERRY_CACHE/logs
RUN_DIR=$FERRY_CACHE/run
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STORES_SCRIPT=$REPO_ROOT/localstack/init/ready.d/10-ferry-stores.sh

# Exact pins, checked against PyPI. awscli v1 pins botocore exactly, and pip
# picks the boto3 that matches it for moto. Changing a line here makes the next
# `up` reinstall (see ensure_venv).
PY_REQUIREMENTS=(
  "moto[server]==5.2.5"
  "osmem-server==0.1.6"
  "awscli==1.46.3"
)

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- probes -----------------------------------------------------------------

# TCP connect to 127.0.0.1:$1. bash's /dev/tcp needs no extra tools; `timeout`
# guards against a port that accepts nothing and never refuses either.
tcp_open() {
  timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Something speaks AMQP 0-9-1 on port $1: send the protocol header and expect
# a method frame (type byte 0x01, Connection.Start) back. Stricter than a TCP
# connect, so that an unrelated program on the port is not taken for RabbitMQ.
amqp_answers() {
  local first
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  first=$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "AMQP\x00\x00\x09\x01" >&3
    head -c 1 <&3 | od -An -tx1' "$HOST" "$1" 2>/dev/null) || return 1
  [[ ${first// /} == 01 ]]
}

http_answers() { # any HTTP response at all, even 4xx/5xx
  curl -sS -o /dev/null --max-time 5 "$1" 2>/dev/null
}

http_ok() { # a 2xx response
  curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null
}

# Waits until "$@" succeeds. Fails early if pid $pid (optional, may be empty)
# dies, and on timeout. Prints nothing; callers explain.
wait_until() {
  local what=$1 pid=$2; shift 2
  local deadline=$((SECONDS + FERRY_START_TIMEOUT))
  until "$@"; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "$what exited during start-up"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$what did not answer within ${FERRY_START_TIMEOUT}s"
      return 1
    fi
    sleep 0.5
  done
}

show_log() { # last lines of a log, for a failed start
  log "last lines of $1:"
  tail -n 40 "$1" >&2 2>/dev/null || true
}

# --- pid files ----------------------------------------------------------------

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# Pid from run/$1.pid if that process is alive and its command line still
# contains $2 (a recycled pid must never be signalled).
live_pid() {
  local file pid
  file=$(pid_file "$1")
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  printf '%s' "$pid"
}

# Starts "$@" detached from this shell (own session, so a Ctrl-C or the end of
# a CI step's process group does not take it down), output to logs/$1.log.
spawn() {
  local name=$1; shift
  local logf=$LOG_DIR/$name.log
  printf '\n=== %s starting: %s\n' "$(date -Is)" "$*" >>"$logf"
  # setsid execs in place here (a background job is not a group leader), so
  # $! is the server's own pid.
  setsid nohup "$@" >>"$logf" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
}

stop_pid() { # stop_pid NAME MATCH: TERM, then KILL after 10 s
  local name=$1 match=$2 pid
  if pid=$(live_pid "$name" "$match"); then
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in {1..20}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ignored SIGTERM, killing"
      kill -9 "$pid" 2>/dev/null || true
    fi
  else
    log "$name: not started by this script, nothing to stop"
  fi
  rm -f "$(pid_file "$name")"
}

# --- Python tools (moto, osmem-server, awscli) ------------------------------------

requirements_hash() {
  { printf '%s\n' "${PY_REQUIREMENTS[@]}"; "$VENV/bin/python" -V; } | sha256sum | cut -d' ' -f1
}

# The venv is created once; packages are reinstalled only when the pins (or the
# interpreter) change, tracked by a stamp file holding the hash of both.
ensure_venv() {
  local stamp=$VENV/.ferry-requirements.sha256
  # A venv whose interpreter vanished (python upgraded) is rebuilt from scratch.
  if [[ -f $VENV/pyvenv.cfg ]] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "venv at $VENV is broken, recreating"
    rm -rf "$VENV"
  fi
  if [[ ! -x $VENV/bin/python ]]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV"
  fi
  if [[ $(cat "$stamp" 2>/dev/null) != "$(requirements_hash)" ]]; then
    log "installing ${PY_REQUIREMENTS[*]} (takes a minute the first time)"
    "$VENV/bin/pip" install --disable-pip-version-check -q "${PY_REQUIREMENTS[@]}" \
      >>"$LOG_DIR/pip.log" 2>&1 || { show_log "$LOG_DIR/pip.log"; die "pip install failed"; }
    "$VENV/bin/pip" freeze --disable-pip-version-check >"$VENV/.ferry-freeze.txt"
    requirements_hash >"$stamp"
  fi
}

# --- RabbitMQ -------------------------------------------------------------------

# A broker already answering (on this machine, the one started at boot) is
# reused and never managed. Otherwise we install and start our own node and
# leave run/rabbitmq.node behind, so that `down` stops only that.
rabbitmq_up() {
  if amqp_answers "$FERRY_AMQP_PORT"; then
    if [[ -s $RUN_DIR/rabbitmq.node ]]; then
      log "rabbitmq: our node $(<"$RUN_DIR/rabbitmq.node") is already running"
    else
      log "rabbitmq: already answering on $HOST:$FERRY_AMQP_PORT, reusing it"
    fi
    return
  fi
  if tcp_open "$FERRY_AMQP_PORT"; then
    die "port $FERRY_AMQP_PORT is taken by something that does not speak AMQP"
  fi
  if ! command -v rabbitmq-server >/dev/null; then
    log "rabbitmq: installing the Debian package"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server; } \
      >>"$LOG_DIR/apt.log" 2>&1 || { show_log "$LOG_DIR/apt.log"; die "apt-get install rabbitmq-server failed"; }
    # The package's postinst may start the default node (rabbit@localhost on
    # 5672); if that is the port we want, use it rather than start a second one.
    if amqp_answers "$FERRY_AMQP_PORT"; then
      log "rabbitmq: the package started a broker on $FERRY_AMQP_PORT, reusing it"
      return
    fi
  fi
  log "rabbitmq: starting node $FERRY_RABBIT_NODE on $HOST:$FERRY_AMQP_PORT"
  # Our node gets its own config file: the machine's /etc/rabbitmq/rabbitmq.conf
  # pins `listeners.tcp.local = 127.0.0.1:5672`, which beats RABBITMQ_NODE_PORT
  # and makes a second node die with eaddrinuse. It lives in the rabbitmq
  # user's home because the server runs as that user and cannot read ours.
  local conf
  conf=$(rabbitmq_conf)
  printf '# written by ferry infra/stack.sh for %s\nlisteners.tcp.default = %s:%s\n' \
    "$FERRY_RABBIT_NODE" "$HOST" "$FERRY_AMQP_PORT" >"$conf"
  chmod 644 "$conf"
  printf '%s\n' "$FERRY_RABBIT_NODE" >"$RUN_DIR/rabbitmq.node"
  # The Debian wrapper re-runs itself as the rabbitmq user through `su`, which
  # keeps these variables; they beat rabbitmq-env.conf. The distribution port
  # is AMQP port + 20000, so it does not collide with a node on another port.
  # RABBITMQ_CONFIG_FILES (the conf.d glob) is pointed at the same file so that
  # nothing from /etc/rabbitmq/conf.d can add a listener either. The last two
  # keep Erlang distribution and epmd on loopback too, even on a machine whose
  # rabbitmq-env.conf does not already say so.
  RABBITMQ_NODENAME=$FERRY_RABBIT_NODE \
    RABBITMQ_NODE_PORT=$FERRY_AMQP_PORT \
    RABBITMQ_NODE_IP_ADDRESS=$HOST \
    RABBITMQ_CONFIG_FILE=$conf \
    RABBITMQ_CONFIG_FILES=$conf \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    ERL_EPMD_ADDRESS=$HOST \
    rabbitmq-server -detached >>"$LOG_DIR/rabbitmq.log" 2>&1 ||
    { show_log "$LOG_DIR/rabbitmq.log"; die "rabbitmq-server -detached failed"; }
  # -detached returns before the node registers with epmd, and await_startup
  # fails at once for a node epmd does not know yet: retry it until the deadline.
  if ! wait_until rabbitmq "" rabbitmq_booted ||
    ! wait_until rabbitmq "" amqp_answers "$FERRY_AMQP_PORT"; then
    show_log "$LOG_DIR/rabbitmq.log"
    show_log "/var/log/rabbitmq/$FERRY_RABBIT_NODE.log"
    die "rabbitmq did not start"
  fi
}

rabbitmq_conf() { # config file of our node, in the rabbitmq user's home
  printf '%s/ferry-%s.conf' "$(getent passwd rabbitmq | cut -d: -f6)" "$FERRY_AMQP_PORT"
}

rabbitmq_booted() {
  rabbitmqctl -n "$FERRY_RABBIT_NODE" -q -t 10 await_startup >>"$LOG_DIR/rabbitmq.log" 2>&1
}

rabbitmq_down() {
  local node
  if [[ -s $RUN_DIR/rabbitmq.node ]]; then
    node=$(<"$RUN_DIR/rabbitmq.node")
    log "stopping rabbitmq node $node"
    rabbitmqctl -n "$node" stop >>"$LOG_DIR/rabbitmq.log" 2>&1 ||
      log "rabbitmqctl stop failed (already stopped?)"
    rm -f "$RUN_DIR/rabbitmq.node" "$(rabbitmq_conf)"
  else
    log "rabbitmq: not started by this script, leaving it running"
  fi
}

# --- moto (S3 + DynamoDB) -------------------------------------------------------

moto_url() { printf 'http://%s:%s' "$HOST" "$FERRY_AWS_PORT"; }

moto_up() {
  if http_answers "$(moto_url)/moto-api/"; then
    log "moto: already answering on $(moto_url)"
    return
  fi
  log "moto: starting on $(moto_url)"
  spawn moto "$VENV/bin/moto_server" -H "$HOST" -p "$FERRY_AWS_PORT"
  wait_until moto "$(<"$(pid_file moto)")" http_answers "$(moto_url)/moto-api/" ||
    { show_log "$LOG_DIR/moto.log"; die "moto did not start"; }
}

moto_down() { stop_pid moto moto_server; }

# --- osmem-server (OpenSearch API) ----------------------------------------------

index_url() { printf 'http://%s:%s' "$HOST" "${1:-$FERRY_INDEX_PORT}"; }

# osmem_up NAME PORT: one in-memory index server (a "cluster").
osmem_up() {
  local name=$1 port=$2 bin url
  url=$(index_url "$port")
  if http_ok "$url/"; then
    log "$name: already answering on $url"
    return
  fi
  # The wheel ships a Go binary but no console script; the package knows where.
  bin=$("$VENV/bin/python" -c 'import osmem_server; print(osmem_server.resolve_binary())') ||
    die "cannot locate the osmem-server binary in $VENV"
  log "$name: starting on $url"
  # -no-stdin-watch: by default it exits when stdin closes (it expects to be a
  # child of a test process); ours is /dev/null.
  spawn "$name" "$bin" -addr "$HOST:$port" -no-stdin-watch
  wait_until "$name" "$(<"$(pid_file "$name")")" http_ok "$url/" ||
    { show_log "$LOG_DIR/$name.log"; die "osmem-server ($name) did not start"; }
}

osmem_down() { stop_pid "$1" osmem; }

# --- stores: bucket and tables ------------------------------------------------

# The same script LocalStack runs as a ready hook, pointed at moto through the
# variables that `env` prints.
stores_up() {
  log "creating the S3 bucket and DynamoDB tables"
  (eval "$(cmd_env)" && bash "$STORES_SCRIPT")
}

# --- fast profile: Garage (S3) and dynoxide (DynamoDB) -----------------------

TOOLS=$FERRY_CACHE/tools
GARAGE_VERSION=2.5.0
DYNOXIDE_VERSION=3.2.0
GARAGE_DIR=$FERRY_CACHE/garage
GARAGE_CONF=$GARAGE_DIR/garage.toml
# Fixed test credentials for a loopback-only server: Garage key ids are "GK"
# and 24 hex digits, secrets 64 hex digits.
GARAGE_KEY_ID=GK666572727966617374000001
GARAGE_KEY_SECRET=6665727279666173746c6f63616c73336b657900000000000000000000000001
GARAGE_RPC_SECRET=6665727279666173746c6f63616c727063736563726574000000000000000001

# ensure_tool BIN CRATE VERSION [cargo install args...]: builds BIN once into
# $TOOLS/bin (outside the clone) unless that version is already there.
ensure_tool() {
  local bin=$1 crate=$2 version=$3; shift 3
  local stamp=$TOOLS/.$bin-version
  if [[ -x $TOOLS/bin/$bin && $(cat "$stamp" 2>/dev/null) == "$version" ]]; then
    return
  fi
  command -v cargo >/dev/null || die "cargo is needed to build $crate"
  log "$bin: building $crate $version with cargo install (once; log in $LOG_DIR/install-$bin.log)"
  CARGO_TARGET_DIR=$FERRY_CACHE/tools-build-$bin \
    cargo install --root "$TOOLS" --locked "$crate@$version" "$@" \
    >>"$LOG_DIR/install-$bin.log" 2>&1 ||
    { show_log "$LOG_DIR/install-$bin.log"; die "cargo install $crate failed"; }
  printf '%s\n' "$version" >"$stamp"
}

fast_s3_url() { printf 'http://%s:%s' "$HOST" "$FERRY_FAST_S3_PORT"; }
fast_dynamo_url() { printf 'http://%s:%s' "$HOST" "$FERRY_FAST_DYNAMO_PORT"; }

garage() { "$TOOLS/bin/garage" -c "$GARAGE_CONF" "$@"; }

garage_conf() {
  mkdir -p "$GARAGE_DIR/meta" "$GARAGE_DIR/data"
  cat >"$GARAGE_CONF" <<EOF
# written by ferry infra/stack.sh (fast profile): one node, loopback only
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "$HOST:$FERRY_GARAGE_RPC_PORT"
rpc_public_addr = "$HOST:$FERRY_GARAGE_RPC_PORT"
rpc_secret = "$GARAGE_RPC_SECRET"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "$HOST:$FERRY_FAST_S3_PORT"
root_domain = ".s3.garage.localhost"
EOF
}

garage_answers() { garage status >/dev/null 2>&1; }

garage_up() {
  ensure_tool garage garage "$GARAGE_VERSION"
  if http_answers "$(fast_s3_url)/"; then
    log "garage: already answering on $(fast_s3_url)"
  else
    garage_conf
    log "garage: starting on $(fast_s3_url)"
    # Garage logs every request at info: that is work a benchmark should
    # not pay for (FERRY_GARAGE_LOG=info to see them).
    spawn garage env RUST_LOG="${FERRY_GARAGE_LOG:-warn}" "$TOOLS/bin/garage" -c "$GARAGE_CONF" server
    wait_until garage "$(<"$(pid_file garage)")" garage_answers ||
      { show_log "$LOG_DIR/garage.log"; die "garage did not start"; }
  fi
  # One node, one zone: the layout is applied once and kept in metadata_dir.
  if garage status 2>/dev/null | grep -q 'NO ROLE ASSIGNED'; then
    local node
    node=$(garage node id -q | cut -d@ -f1)
    garage layout assign -z dc1 -c 1G "$node" >>"$LOG_DIR/garage.log" 2>&1
    garage layout apply --version 1 >>"$LOG_DIR/garage.log" 2>&1 ||
      die "garage layout apply failed (see $LOG_DIR/garage.log)"
  fi
  if ! garage key info "$GARAGE_KEY_ID" >/dev/null 2>&1; then
    garage key import --yes -n ferry-local "$GARAGE_KEY_ID" "$GARAGE_KEY_SECRET" \
      >>"$LOG_DIR/garage.log" 2>&1 || die "garage key import failed"
  fi
  # Tests create their own buckets through the S3 API.
  garage key allow --create-bucket "$GARAGE_KEY_ID" >>"$LOG_DIR/garage.log" 2>&1
  wait_until garage "" http_answers "$(fast_s3_url)/" ||
    { show_log "$LOG_DIR/garage.log"; die "garage's S3 API does not answer"; }
}

dynoxide_up() {
  ensure_tool dynoxide dynoxide-rs "$DYNOXIDE_VERSION" \
    --no-default-features --features native-sqlite,http-server,cli
  if http_answers "$(fast_dynamo_url)/"; then
    log "dynoxide: already answering on $(fast_dynamo_url)"
    return
  fi
  log "dynoxide: starting on $(fast_dynamo_url) (in memory)"
  spawn dynoxide "$TOOLS/bin/dynoxide" serve --host "$HOST" --port "$FERRY_FAST_DYNAMO_PORT"
  wait_until dynoxide "$(<"$(pid_file dynoxide)")" http_answers "$(fast_dynamo_url)/" ||
    { show_log "$LOG_DIR/dynoxide.log"; die "dynoxide did not start"; }
}

fast_up() {
  garage_up
  dynoxide_up
}

fast_down() {
  stop_pid dynoxide dynoxide
  stop_pid garage garage
}

fast_status() {
  local who
  who=external; live_pid garage garage >/dev/null && who="ours (pid $(<"$(pid_file garage)"))"
  status_line garage "$(http_answers "$(fast_s3_url)/" && echo up)" "$(fast_s3_url)" "$who"
  who=external; live_pid dynoxide dynoxide >/dev/null && who="ours (pid $(<"$(pid_file dynoxide)"))"
  status_line dynoxide "$(http_answers "$(fast_dynamo_url)/" && echo up)" "$(fast_dynamo_url)" "$who"
}

fast_env() {
  cat <<EOF
export FERRY_S3_ENDPOINT=$(fast_s3_url)
export FERRY_DYNAMO_ENDPOINT=$(fast_dynamo_url)
export AWS_ACCESS_KEY_ID=$GARAGE_KEY_ID AWS_SECRET_ACCESS_KEY=$GARAGE_KEY_SECRET
EOF
}

# --- commands -----------------------------------------------------------------

# up and down hold a lock so that two test runners starting the stack at once
# do not both spawn servers.
lock() {
  exec 9>"$RUN_DIR/stack.lock"
  flock -w 300 9 || die "another stack.sh is still running (lock $RUN_DIR/stack.lock)"
}

cmd_up() {
  lock
  ensure_venv
  # 9>&-: servers (and epmd, which rabbitmq starts) must not inherit the lock
  # descriptor, or they would hold the lock for as long as they run.
  rabbitmq_up 9>&-
  moto_up 9>&-
  osmem_up osmem "$FERRY_INDEX_PORT" 9>&-
  osmem_up osmem2 "$FERRY_SECOND_INDEX_PORT" 9>&-
  if [[ $FERRY_PROFILE == fast ]]; then fast_up 9>&-; fi
  stores_up
  cmd_status >&2 || die "some service is down"
  # shellcheck disable=SC2016 # printed literally, for the user to paste
  printf '\nstack is up. For a shell or test runner:\n  eval "$(%s env)"\n' "$0" >&2
}

cmd_down() {
  lock
  # The fast profile's down stops only its own servers: the rest is shared.
  if [[ $FERRY_PROFILE == fast ]]; then fast_down; return; fi
  osmem_down osmem
  osmem_down osmem2
  moto_down
  rabbitmq_down
}

cmd_status() {
  local rc=0 who
  status_line() { # name, up?, endpoint, who manages it
    if [[ $2 == up ]]; then
      printf '%-9s up    %-40s %s\n' "$1" "$3" "$4"
    else
      printf '%-9s DOWN  %s\n' "$1" "$3"
      rc=1
    fi
  }
  who=external; [[ -s $RUN_DIR/rabbitmq.node ]] && who="ours ($(<"$RUN_DIR/rabbitmq.node"))"
  status_line rabbitmq "$(amqp_answers "$FERRY_AMQP_PORT" && echo up)" \
    "amqp://$HOST:$FERRY_AMQP_PORT" "$who"
  who=external; live_pid moto moto_server >/dev/null && who="ours (pid $(<"$(pid_file moto)"))"
  status_line moto "$(http_answers "$(moto_url)/moto-api/" && echo up)" "$(moto_url)" "$who"
  local name port
  for name in osmem osmem2; do
    port=$FERRY_INDEX_PORT; [[ $name == osmem2 ]] && port=$FERRY_SECOND_INDEX_PORT
    who=external; live_pid "$name" osmem >/dev/null && who="ours (pid $(<"$(pid_file "$name")"))"
    status_line "$name" "$(http_ok "$(index_url "$port")/" && echo up)" \
      "$(index_url "$port")" "$who"
  done
  if [[ $FERRY_PROFILE == fast ]]; then fast_status; fi
  return "$rc"
}

cmd_env() {
  cat <<EOF
export FERRY_INDEX_URL=$(index_url)
export FERRY_SECOND_INDEX_URL=$(index_url "$FERRY_SECOND_INDEX_PORT")
export FERRY_AMQP_URL=amqp://guest:guest@$HOST:$FERRY_AMQP_PORT/%2f
export FERRY_AWS_ENDPOINT=$(moto_url)
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export FERRY_VENV=$(printf '%q' "$VENV")
EOF
  if [[ $FERRY_PROFILE == fast ]]; then fast_env; fi
}

main() {
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) sed -n '2,/^set -euo/{/^set/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2 ;;
  esac
}

main "$@"
