# Shared helpers for the benchmarks: a throwaway MariaDB primary on loopback.
# shellcheck shell=bash
set -euo pipefail

find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
MARIADBD=$(find_bin mariadbd)
INSTALL_DB=$(find_bin mariadb-install-db)
[ -n "$MARIADBD" ] || { echo "mariadbd not found: apt-get install -y mariadb-server mariadb-client sysbench" >&2; exit 1; }

BENCH_PIDS=()
bench_cleanup() {
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The work directory holds gigabytes of data directories and dumps:
  # removed unless KEEP_WORK=1.
  if [ -n "${WORK:-}" ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; fi
}
trap bench_cleanup EXIT

# start_server DIR PORT SERVER_ID [extra args...]
start_server() {
  local dir=$1 port=$2 id=$3; shift 3
  "$INSTALL_DB" --no-defaults --datadir="$dir" --user="$(id -un)" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir.install.log" 2>&1
  "$MARIADBD" --no-defaults --user="$(id -un)" --datadir="$dir" --socket="$dir/mysqld.sock" --port="$port" \
    --bind-address=127.0.0.1 --server-id="$id" --skip-name-resolve --log-error="$dir/error.log" \
    --innodb-buffer-pool-size=1G --innodb-log-file-size=512M --innodb-flush-log-at-trx-commit=2 \
    --max-allowed-packet=1G "$@" >"$dir.stdout.log" 2>&1 &
  BENCH_PIDS+=($!)
  for _ in $(seq 150); do
    mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on port $port did not start; see $dir/error.log" >&2
  exit 1
}

sql() { local port=$1; shift; mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot "$@"; }

# now_ms prints a monotonic-enough wall clock in milliseconds.
now_ms() { date +%s%3N; }

# ratio A B prints A/B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# median of the arguments
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# write_config writes $WORK/understudy.yaml for one source "bench" on $PORT
# (user bench, made by create_bench_user); the source's extra YAML lines
# come on stdin.
write_config() {
  {
    cat <<YAML
archive:
  dir: $WORK/archive
http:
  listen: "off"
sources:
  - name: bench
    host: 127.0.0.1
    port: $PORT
    user: bench
    password: benchpw
    server_id: 9901
YAML
    cat
  } >"$WORK/understudy.yaml"
}

# create_bench_user makes the user of write_config on $PORT, unlogged.
create_bench_user() {
  sql "$PORT" -e "SET STATEMENT sql_log_bin=0 FOR CREATE USER bench@'%' IDENTIFIED BY 'benchpw';
    SET STATEMENT sql_log_bin=0 FOR GRANT ALL ON *.* TO bench@'%';"
}

# bench_start NAME makes the work directory WORK (removed at exit) and
# builds understudy into it (GO_TAGS=profile: a profiling build, see
# cmd/understudy/profile.go).
bench_start() {
  WORK=$(mktemp -d "/tmp/understudy-bench-$1.XXXXXX")
  echo "work dir $WORK"
  go build ${GO_TAGS:+-tags "$GO_TAGS"} -o "$WORK/understudy" ./cmd/understudy
}

# sysbench_prepare fills database sbtest on $PORT with $TABLES tables of
# $ROWS rows (sysbench oltp_write_only prepare).
sysbench_prepare() {
  sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT" --mysql-user=root \
    --tables="$TABLES" --table-size="$ROWS" --threads=2 prepare >/dev/null
}

# small_tables_prepare: $SMALL_TABLES more tables in sbtest (sbtest.small1, ...), 20 rows each: the shape of a
# database with thousands of small tables, where each table's own cost counts, not its rows.
small_tables_prepare() {
  [ "${SMALL_TABLES:-0}" -gt 0 ] || return 0
  for ((i = 1; i <= SMALL_TABLES; i++)); do
    echo "CREATE TABLE sbtest.small$i (id INT PRIMARY KEY, v VARCHAR(50), KEY (v)) ENGINE=InnoDB;"
    echo "INSERT INTO sbtest.small$i SELECT seq, CONCAT('value ', seq) FROM seq_1_to_20;"
  done | sql "$PORT" sbtest
}
