#!/usr/bin/env bash
# Creates ferry's primary stores, idempotently:
#   S3 bucket       ${FERRY_S3_BUCKET:-ferry-originals}    one JSON original per document id
#   DynamoDB table  ${FERRY_DYNAMO_TABLE:-ferry-edits}     key id (S), user edits
#   DynamoDB table  ${FERRY_LEASE_TABLE:-ferry-leases}     key name (S), scanner lease
#
# Runs unchanged
#   (a) as a LocalStack ready hook (/etc/localstack/init/ready.d/): awslocal is
#       on PATH and no endpoint variable is set, so awslocal is used;
#   (b) against any other endpoint, e.g. moto from infra/stack.sh: plain `aws`
#       (from PATH, else $FERRY_VENV/bin/aws) with --endpoint-url
#       ${AWS_ENDPOINT_URL:-${FERRY_AWS_ENDPOINT:-http://127.0.0.1:4566}};
#       FERRY_S3_ENDPOINT / FERRY_DYNAMO_ENDPOINT, when set, override it for
#       the bucket / the tables (the fast stack serves them apart).
set -euo pipefail

BUCKET=${FERRY_S3_BUCKET:-ferry-originals}
EDITS_TABLE=${FERRY_DYNAMO_TABLE:-ferry-edits}
LEASE_TABLE=${FERRY_LEASE_TABLE:-ferry-leases}
REGION=${AWS_REGION:-us-east-1}
# Emulators accept any credentials, but the CLI refuses to sign without some.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_PAGER="" # CLI v2 would otherwise page output through less

log() { printf 'ferry-stores: %s\n' "$*" >&2; }

# awslocal only when no endpoint was given: with one set (as infra/stack.sh
# does), the caller means that endpoint, and awslocal would pick its own.
if command -v awslocal >/dev/null &&
  [[ -z ${AWS_ENDPOINT_URL:-}${FERRY_AWS_ENDPOINT:-}${FERRY_S3_ENDPOINT:-}${FERRY_DYNAMO_ENDPOINT:-} ]]; then
  AWS=(awslocal --region "$REGION")
  AWS_S3=("${AWS[@]}")
  AWS_DDB=("${AWS[@]}")
  WHERE="awslocal"
else
  endpoint=${AWS_ENDPOINT_URL:-${FERRY_AWS_ENDPOINT:-http://127.0.0.1:4566}}
  if command -v aws >/dev/null; then
    cli=aws
  elif [[ -x ${FERRY_VENV:-$HOME/.cache/ferry/venv}/bin/aws ]]; then
    cli=${FERRY_VENV:-$HOME/.cache/ferry/venv}/bin/aws
  else
    log "no aws CLI: install awscli, or run infra/stack.sh up (puts one in \$FERRY_VENV)"
    exit 1
  fi
  AWS_S3=("$cli" --endpoint-url "${FERRY_S3_ENDPOINT:-$endpoint}" --region "$REGION")
  AWS_DDB=("$cli" --endpoint-url "${FERRY_DYNAMO_ENDPOINT:-$endpoint}" --region "$REGION")
  WHERE="S3 ${FERRY_S3_ENDPOINT:-$endpoint}, DynamoDB ${FERRY_DYNAMO_ENDPOINT:-$endpoint}"
fi

# Runs the CLI command "${@:2}"; on failure succeeds anyway if stderr matches $1 (the error
# codes that mean "it is already there", e.g. when two runs race).
aws_tolerating() {
  local ok=$1 err; shift
  if err=$("$@" 2>&1 >/dev/null); then return 0; fi
  if grep -qE "$ok" <<<"$err"; then return 0; fi
  printf '%s\n' "$err" >&2
  return 1
}

ensure_bucket() {
  if "${AWS_S3[@]}" s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
    log "bucket $BUCKET exists"
    return
  fi
  # Outside us-east-1 S3 wants the region spelled out again.
  local cfg=()
  [[ $REGION == us-east-1 ]] || cfg=(--create-bucket-configuration "LocationConstraint=$REGION")
  aws_tolerating 'BucketAlreadyOwnedByYou|BucketAlreadyExists' \
    "${AWS_S3[@]}" s3api create-bucket --bucket "$BUCKET" "${cfg[@]}"
  log "bucket $BUCKET created"
}

# ensure_table NAME KEY: a PAY_PER_REQUEST table with string partition key KEY,
# ACTIVE before we return. An existing table with another key is an error:
# ferry would fail later in a less obvious way.
ensure_table() {
  local table=$1 key=$2 have status deadline
  if have=$("${AWS_DDB[@]}" dynamodb describe-table --table-name "$table" \
      --query 'Table.KeySchema[0].AttributeName' --output text 2>/dev/null); then
    [[ $have == "$key" ]] || { log "table $table exists with key '$have', expected '$key'"; exit 1; }
    log "table $table exists"
  else
    aws_tolerating 'ResourceInUseException' "${AWS_DDB[@]}" dynamodb create-table --table-name "$table" \
      --attribute-definitions "AttributeName=$key,AttributeType=S" \
      --key-schema "AttributeName=$key,KeyType=HASH" \
      --billing-mode PAY_PER_REQUEST
    log "table $table created"
  fi
  # Poll ourselves: the CLI's table-exists waiter sleeps 20 s between tries.
  deadline=$((SECONDS + 60))
  while :; do
    status=$("${AWS_DDB[@]}" dynamodb describe-table --table-name "$table" \
      --query 'Table.TableStatus' --output text 2>/dev/null || true)
    [[ $status == ACTIVE ]] && break
    if ((SECONDS >= deadline)); then
      log "table $table not ACTIVE after 60 s (status: ${status:-unknown})"
      exit 1
    fi
    sleep 1
  done
}

log "using $WHERE (region $REGION)"
ensure_bucket
ensure_table "$EDITS_TABLE" id
ensure_table "$LEASE_TABLE" name
log "done"
