#!/usr/bin/env bash
# Runs issue 7's scenarios against release builds, on SQLite and on PostgreSQL, appends every
# result to a CSV file and draws the README's plots from it.
#
#   cargo build --release -p switchboard -p switchboard-load
#   loadgen/bench.sh [all|dm|dm-max|fanout|idle|cross|search|upload] [sqlite|postgres|both]
#
# Needs redis-server (cross) and PostgreSQL at $BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432). Writes target/bench/results.csv, target/bench/*.log
# and docs/plots/*.svg (with a copy of the CSV they were drawn from). Each server gets a
# fresh database; rate limits are off, since the generator registers and sends far beyond
# them.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SERVER=$ROOT/target/release/switchboard
LOAD=$ROOT/target/release/switchboard-load
OUT=$ROOT/target/bench
CSV=$OUT/results.csv
POSTGRES=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
WHAT=${1:-all}
BACKENDS=${2:-both}
mkdir -p "$OUT"
# The server and the generator each hold up to ~18,000 sockets in `idle`.
ulimit -n 20000

export SWITCHBOARD__LIMITS__ENABLED=false
export RUST_LOG=${RUST_LOG:-warn}

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# fresh_url BACKEND NAME: a new, empty database.
fresh_url() {
    case $1 in
        sqlite)
            rm -rf "$OUT/$2"; mkdir -p "$OUT/$2"
            echo "sqlite://$OUT/$2/switchboard.db?mode=rwc" ;;
        postgres)
            PGOPTIONS=--client-min-messages=warning psql "$POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS bench_$2" -c "CREATE DATABASE bench_$2" >/dev/null
            echo "$POSTGRES/bench_$2" ;;
    esac
}

# start PORT DATABASE_URL [REDIS_URL]: starts a server and sets $PID.
start() {
    SWITCHBOARD__SERVER__PORT=$1 SWITCHBOARD__DATABASE__URL=$2 SWITCHBOARD__REDIS__URL=${3:-} \
        SWITCHBOARD__SERVER__INSTANCE_ID=bench-$1 SWITCHBOARD__ATTACHMENTS__DIR=$OUT/files-$1 \
        "$SERVER" >>"$OUT/server-$1.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$1/health/ready" >/dev/null && return 0
        sleep 0.1
    done
    echo "server on port $1 did not start; see $OUT/server-$1.log" >&2
    exit 1
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
}

run() {
    echo "+ switchboard-load $*" | tee -a "$OUT/bench.log"
    "$LOAD" "$@" 2>&1 | tee -a "$OUT/bench.log"
}

backends() {
    case $BACKENDS in
        both) echo sqlite postgres ;;
        *) echo "$BACKENDS" ;;
    esac
}

want() { [[ $WHAT == all || $WHAT == "$1" ]]; }

for backend in $(backends); do
    if want dm; then
        # Latency against rate, up to saturation; 500/s for 20 s is the issue's target row.
        for rate in 250 500 1000 2000 3000 4000; do
            start 8080 "$(fresh_url "$backend" dm)"
            duration=10; [[ $rate == 500 ]] && duration=20
            run dm --users 1000 --rate "$rate" --duration "$duration" --pid "$PID" --csv "$CSV" --label "$backend"
            stop
        done
    fi
    if want dm-max; then
        # Steady-state chat (fixed pairs), then first contact (random pairs over 1,000
        # receivers with a socket each: most messages open a conversation).
        start 8080 "$(fresh_url "$backend" dmmax)"
        run dm-max --senders 64 --duration 10 --pid "$PID" --csv "$CSV" --label "$backend"
        stop
        start 8080 "$(fresh_url "$backend" dmmaxrandom)"
        run dm-max --senders 64 --receivers 1000 --pairs random --duration 10 --pid "$PID" --csv "$CSV" --label "$backend"
        stop
    fi
    if want fanout; then
        # Fan-out time against group size, 20 messages/s.
        for members in 10 100 250 500 1000; do
            start 8080 "$(fresh_url "$backend" fanout)"
            run fanout --members "$members" --rate 20 --duration 10 --pid "$PID" --csv "$CSV" --label "$backend"
            stop
        done
    fi
    if want search; then
        start 8080 "$(fresh_url "$backend" search)"
        run search --messages 100000 --senders 32 --queries 500
        stop
    fi
    if want upload; then
        start 8080 "$(fresh_url "$backend" upload)"
        run upload --megabytes 10 --count 10
        stop
    fi
    if want idle; then
        # Memory against sockets: one worker process per 1,000 sockets, each from its own
        # loopback address; first 18,000 sockets over 100 users (what an extra socket costs).
        start 8080 "$(fresh_url "$backend" idle)"
        run idle --pid "$PID" --sockets 18000 --step 1000 --csv "$CSV" --label "$backend"
        stop
        # One socket per user, as people connect: what a user costs, not only a socket.
        start 8080 "$(fresh_url "$backend" idleusers)"
        run idle --pid "$PID" --sockets 10000 --users 10000 --step 1000 --csv "$CSV" --label "$backend one socket per user"
        stop
    fi
done

if want cross; then
    # Two instances sharing Redis and PostgreSQL: receivers on the other instance, against
    # the same run with both ends on one instance (also through Redis).
    REDIS_PORT=6390
    redis-server --port $REDIS_PORT --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
    PIDS+=($!)
    sleep 0.5
    url=$(fresh_url postgres cross)
    start 8081 "$url" "redis://127.0.0.1:$REDIS_PORT"
    first=$PID
    start 8082 "$url" "redis://127.0.0.1:$REDIS_PORT"
    run dm --url http://127.0.0.1:8081 --users 1000 --rate 500 --duration 20 --pid "$first" --csv "$CSV" --label "postgres+redis one instance"
    run cross --url http://127.0.0.1:8081 --receiver-url http://127.0.0.1:8082 --users 1000 --rate 500 --duration 20 --pid "$first" --csv "$CSV" --label "postgres+redis two instances"
fi

if [[ -f $CSV ]]; then
    cp "$CSV" docs/plots/results.csv
    "$LOAD" plot --csv "$CSV" --out docs/plots
fi
