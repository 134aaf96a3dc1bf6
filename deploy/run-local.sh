#!/usr/bin/env bash
# Starts a local cluster on loopback: Redis, PostgreSQL (the machine's), two or three
# Switchboard instances and nginx in front. Ctrl-C stops everything it started.
#
#   deploy/run-local.sh [INSTANCES]        # default 2; clients use http://127.0.0.1:8000
#
# Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/switchboard),
# REDIS_PORT (default 6379; a redis-server is started there if none answers),
# JWT_SECRET (default: a random one for this run).
set -euo pipefail
cd "$(dirname "$0")/.."

instances=${1:-2}
if [ "$instances" -lt 2 ] || [ "$instances" -gt 3 ]; then
  echo "usage: $0 [2|3]" >&2
  exit 2
fi
database_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/switchboard}
redis_port=${REDIS_PORT:-6379}
secret=${JWT_SECRET:-$(head -c 32 /dev/urandom | base64)}
run_dir=/tmp/switchboard-nginx
mkdir -p "$run_dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$run_dir/redis.log" 2>&1 &
  pids+=($!)
  sleep 0.5
fi
if pg_isready -q -h 127.0.0.1 -p 5432; then
  db_name=${database_url##*/}
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db_name" >/dev/null
else
  echo "PostgreSQL is not answering on 127.0.0.1:5432" >&2
  exit 1
fi

cargo build --release --bin switchboard
upstreams=""
for n in $(seq 1 "$instances"); do
  port=$((8080 + n))
  SWITCHBOARD__SERVER__PORT=$port \
  SWITCHBOARD__SERVER__INSTANCE_ID="local-$n" \
  SWITCHBOARD__SERVER__DEV_MODE=false \
  SWITCHBOARD__DATABASE__URL="$database_url" \
  SWITCHBOARD__REDIS__URL="redis://127.0.0.1:$redis_port" \
  SWITCHBOARD__AUTH__JWT_SECRET="$secret" \
  SWITCHBOARD__LIMITS__TRUST_FORWARDED_FOR=true \
    ./target/release/switchboard --config config.toml >"$run_dir/instance-$n.log" 2>&1 &
  pids+=($!)
  upstreams+="        server 127.0.0.1:$port max_fails=1 fail_timeout=5s;\n"
done
# The shipped config lists 8081 and 8082; write the upstreams for this run.
awk -v servers="$upstreams" '
  /server 127\.0\.0\.1:808[0-9]/ { if (!done) { printf "%s", servers; done = 1 } next }
  { print }
' deploy/nginx.conf >"$run_dir/nginx.conf"
nginx -c "$run_dir/nginx.conf" -p "$run_dir" -e stderr &
pids+=($!)

echo "Switchboard: $instances instances behind nginx on http://127.0.0.1:8000 (logs in $run_dir)"
echo "Who is online: SWITCHBOARD__REDIS__URL=redis://127.0.0.1:$redis_port SWITCHBOARD__DATABASE__URL=$database_url ./target/release/switchboard presence"
wait
