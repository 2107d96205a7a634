#!/usr/bin/env bash
# Paired catch-up timing: an older understudy and this checkout's, alternately, six times each, on the
# same sysbench binlog (8 tables x 250k rows), so that the disk's variation hits both alike.
# Usage: git worktree add /tmp/old <commit> && OLD=/tmp/old bench/paired-catchup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TABLES=${TABLES:-8} ROWS=${ROWS:-250000} PORT=${PORT:-33081}
bench_start paired
(cd "${OLD:?set OLD to a checkout of the older commit}" && go build -o "$WORK/understudy-old" ./cmd/understudy)
start_server "$WORK/primary" "$PORT" 1 --log-bin="$WORK/primary/mariadb-bin" --binlog-format=ROW \
  --max-binlog-size=1073741824 --sync-binlog=0 --gtid-domain-id=1
create_bench_user
sql "$PORT" -e "CREATE DATABASE sbtest"
sysbench_prepare
write_config </dev/null
for i in 1 2 3 4 5 6; do
  for v in old new; do
    bin="$WORK/understudy"; [ $v = old ] && bin="$WORK/understudy-old"
    rm -rf "$WORK/archive"; sync
    t0=$(now_ms); "$bin" run --config "$WORK/understudy.yaml" --until-caught-up 2>"$WORK/$v.log"; t1=$(now_ms)
    echo "$v $((t1 - t0))"
  done
done
