#!/usr/bin/env bash
# Benchmark of provisioning a backup replica (issue: live replicas), side by side on the same data:
#  - understudy provision --via archive: load the newest snapshot, verify its chunk checksums, start
#    replicating from understudy's binlog server, wait until caught up (the snapshot already exists:
#    `run` takes them on schedule; its time is printed apart);
#  - the manual path of the seeds: mariadb-dump --single-transaction --master-data=2 --gtid | mariadb,
#    SET GLOBAL gtid_slave_pos, CHANGE MASTER … MASTER_USE_GTID=slave_pos, START SLAVE, wait until caught up.
# Both replicas catch up with the same $EXTRA sysbench write transactions committed after the snapshot.
# Then `understudy check` of the provisioned replica, timed: against a scratch server restored from the archive, and
# against the primary.
# Usage: bench/provision.sh     (TABLES, ROWS, THREADS, EXTRA_SECONDS override)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
TABLES=${TABLES:-8} ROWS=${ROWS:-250000} THREADS=${THREADS:-2} EXTRA_SECONDS=${EXTRA_SECONDS:-10}
PORT=${PORT:-33201}
bench_start provision
start_server "$WORK/primary" "$PORT" 1 --log-bin="$WORK/primary/mariadb-bin" --binlog-format=ROW \
  --max-binlog-size=1073741824 --sync-binlog=0 --gtid-domain-id=1
create_bench_user
sql "$PORT" -e "CREATE DATABASE sbtest"
SERVE_PORT=$((PORT + 50))
write_config <<YAML
    serve:
      listen: 127.0.0.1:$SERVE_PORT
      user: understudy
      password: servepw
    snapshot:
      threads: $THREADS
      on_start: false
YAML
U="$WORK/understudy"
sysbench_prepare
$U snapshot --config "$WORK/understudy.yaml" --source bench --threads "$THREADS" >"$WORK/snapshot.log" 2>&1
t0=$(now_ms)
$U snapshot --config "$WORK/understudy.yaml" --source bench --threads "$THREADS" >"$WORK/snapshot.log" 2>&1
TS=$(( $(now_ms) - t0 ))
# Writes after the snapshot, which both replicas must catch up with.
sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT" --mysql-user=root \
  --tables="$TABLES" --table-size="$ROWS" --threads=2 --time="$EXTRA_SECONDS" run >/dev/null
END_POS=$(sql "$PORT" -N -e 'SELECT @@gtid_binlog_pos')
$U run --config "$WORK/understudy.yaml" 2>"$WORK/run.log" &
BENCH_PIDS+=($!)
for _ in $(seq 300); do
  $U status --config "$WORK/understudy.yaml" --json 2>/dev/null | grep -q "\"gtid_position\": \"$END_POS\"" && break
  sleep 0.2
done
echo "data: $TABLES x $ROWS rows; $(( ${END_POS##*-} )) transactions in the binlog; after the snapshot: ${EXTRA_SECONDS}s of sysbench writes, up to $END_POS"

TARGET_ARGS=(--log-bin --log-slave-updates --gtid-strict-mode=1 --read-only=1 --innodb-flush-log-at-trx-commit=2)
n=0
target() { n=$((n + 1)); start_server "$WORK/target$n" $((PORT + n)) $((100 + n)) --log-bin="$WORK/target$n/bin" "${TARGET_ARGS[@]}"; P=$((PORT + n)); }
caught_up() { # PORT: waits until the replica holds END_POS
  for _ in $(seq 6000); do
    [ "$(sql "$1" -N -e "SELECT @@gtid_slave_pos")" = "$END_POS" ] && return 0
    sleep 0.05
  done
  echo "replica on port $1 did not catch up" >&2; exit 1
}
export UNDERSTUDY_TARGET_PASSWORD=

echo
echo "== provision a replica"
target
t0=$(now_ms)
$U provision --config "$WORK/understudy.yaml" --source bench --target root@127.0.0.1:$P --threads "$THREADS" >"$WORK/provision.log" 2>&1 \
  || { cat "$WORK/provision.log" >&2; exit 1; }
caught_up "$P"
TU=$(( $(now_ms) - t0 ))
UP=$P

target
t0=$(now_ms)
mariadb-dump --no-defaults -h127.0.0.1 -P"$PORT" -uroot --single-transaction --master-data=2 --gtid --databases sbtest >"$WORK/dump.sql"
POS=$(grep -o "gtid_slave_pos='[^']*'" "$WORK/dump.sql" | head -1 | cut -d"'" -f2)
sql "$P" --init-command="SET SESSION sql_log_bin=0" <"$WORK/dump.sql"   # not binlogged on the replica, as the seeds advise
sql "$P" -e "SET GLOBAL gtid_slave_pos='$POS'; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PORT, MASTER_USER='bench', MASTER_PASSWORD='benchpw', MASTER_USE_GTID=slave_pos; START SLAVE"
caught_up "$P"
TM=$(( $(now_ms) - t0 ))
echo "understudy provision (load + verify + catch-up from the archive): ${TU} ms  (its snapshot, taken earlier by run: ${TS} ms)"
echo "mariadb-dump --single-transaction | mariadb + CHANGE MASTER:   ${TM} ms"
echo "ratio manual/understudy: $(ratio "$TM" "$TU")x   with the snapshot counted: $(ratio "$TM" $((TU + TS)))x"

echo
echo "== check the provisioned replica"
t0=$(now_ms)
$U check --config "$WORK/understudy.yaml" --source bench --target root@127.0.0.1:$UP --threads "$THREADS" >"$WORK/check.log" 2>&1 \
  || { cat "$WORK/check.log" >&2; exit 1; }
TC=$(( $(now_ms) - t0 ))
grep -E "equal|held" "$WORK/check.log" | head -3 || true
echo "understudy check (a scratch server restored to the replica's position, then every chunk compared): ${TC} ms"
t0=$(now_ms)
$U check --config "$WORK/understudy.yaml" --source bench --target root@127.0.0.1:$UP --threads "$THREADS" --against primary >"$WORK/check.log" 2>&1 \
  || { cat "$WORK/check.log" >&2; exit 1; }
TCP=$(( $(now_ms) - t0 ))
grep -E "equal" "$WORK/check.log" | head -1 || true
echo "understudy check --against primary (one consistent read of the primary, the replica run up to its position): ${TCP} ms"
