#!/usr/bin/env bash
# Demo of understudy's main job: two throwaway MariaDB primaries on loopback
# (gtid_domain_id 1 and 2), writes on both, `understudy run` archiving them
# into ./demo-data/archive, then `understudy status` and a look at the
# archived binlogs with stock mariadb-binlog. Then the accident: a snapshot,
# a DROP DATABASE, `understudy events` finding it and `understudy restore`
# bringing the data back, to just before the DROP, on a third server.
# Everything lives in ./demo-data and is stopped when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_OF_WRITES=${SECONDS_OF_WRITES:-8}
PORT1=${PORT1:-33061}
PORT2=${PORT2:-33062}
PORT3=${PORT3:-33063}
HTTP_PORT=${HTTP_PORT:-9307}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }

if [ -z "$(find_bin mariadbd)" ] || [ -z "$(find_bin mariadb-install-db)" ] || [ -z "$(find_bin mariadb)" ]; then
  say "installing MariaDB (apt-get install -y mariadb-server mariadb-client)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mariadb-server mariadb-client >/dev/null
fi
MARIADBD=$(find_bin mariadbd)
INSTALL_DB=$(find_bin mariadb-install-db)

say "building understudy"
go build -o bin/understudy ./cmd/understudy

WORK=$PWD/demo-data
rm -rf "$WORK"
mkdir -p "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_primary() { # name port server_id domain
  local dir=$WORK/$1
  "$INSTALL_DB" --no-defaults --datadir="$dir" --user="$(id -un)" --auth-root-authentication-method=normal \
    --skip-test-db >"$WORK/$1-install.log" 2>&1
  "$MARIADBD" --no-defaults --user="$(id -un)" --datadir="$dir" --socket="$dir/mysqld.sock" --port="$2" \
    --bind-address=127.0.0.1 --server-id="$3" --gtid-domain-id="$4" --log-bin="$dir/mariadb-bin" \
    --binlog-format=ROW --innodb-buffer-pool-size=64M --skip-name-resolve --log-error="$dir/error.log" >"$WORK/$1-stdout.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    mariadb --no-defaults -h127.0.0.1 -P"$2" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
  done
  mariadb --no-defaults -h127.0.0.1 -P"$2" -uroot -e "
    CREATE USER understudy@'%' IDENTIFIED BY 'demo-password';
    GRANT REPLICATION SLAVE, SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO understudy@'%';
    CREATE DATABASE shop;
    CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(64), qty INT, at DATETIME(6));"
  echo "primary $1 on 127.0.0.1:$2 (server_id $3, gtid_domain_id $4)"
}

say "starting two primaries"
start_primary primary1 "$PORT1" 1 1
start_primary primary2 "$PORT2" 2 2

cat >"$WORK/understudy.yaml" <<YAML
archive:
  dir: archive
http:
  listen: 127.0.0.1:$HTTP_PORT
sources:
  - name: primary1
    host: 127.0.0.1
    port: $PORT1
    user: understudy
    password_env: DEMO_PASSWORD
    server_id: 9001
  - name: primary2
    host: 127.0.0.1
    port: $PORT2
    user: understudy
    password_env: DEMO_PASSWORD
    server_id: 9002
YAML
export DEMO_PASSWORD=demo-password

say "understudy run --config $WORK/understudy.yaml (log: demo-data/understudy.log)"
bin/understudy run --config "$WORK/understudy.yaml" >"$WORK/understudy.log" 2>&1 &
PIDS+=($!)
sleep 1

say "writing to both primaries for ${SECONDS_OF_WRITES}s"
write() { # port
  local end=$((SECONDS + SECONDS_OF_WRITES))
  while [ $SECONDS -lt $end ]; do
    mariadb --no-defaults -h127.0.0.1 -P"$1" -uroot shop -e "
      INSERT INTO orders (item, qty, at) VALUES ('widget', FLOOR(RAND()*10), NOW(6)), ('gadget', 1, NOW(6));
      UPDATE orders SET qty = qty + 1 WHERE id % 7 = 0;"
  done
}
write "$PORT1" & W1=$!
write "$PORT2" & W2=$!
wait $W1 $W2
sleep 1

say "understudy status --config demo-data/understudy.yaml"
bin/understudy status --config "$WORK/understudy.yaml"
echo
echo "primary1 gtid_binlog_pos: $(mariadb --no-defaults -h127.0.0.1 -P"$PORT1" -uroot -N -e 'SELECT @@gtid_binlog_pos')"
echo "primary2 gtid_binlog_pos: $(mariadb --no-defaults -h127.0.0.1 -P"$PORT2" -uroot -N -e 'SELECT @@gtid_binlog_pos')"

say "the archive: native binlog files, read by stock mariadb-binlog"
ls -l "$WORK/archive/primary1"
mariadb-binlog "$WORK/archive/primary1/binlog.000001" | grep -a -E '^#[0-9]{6}.*(GTID|Start|Gtid list|Xid)' | head -n 8 || true

say "the accident: snapshot, more writes, DROP DATABASE shop on primary1"
bin/understudy snapshot --config "$WORK/understudy.yaml" --source primary1
mariadb --no-defaults -h127.0.0.1 -P"$PORT1" -uroot shop -e "INSERT INTO orders (item, qty, at) VALUES ('after the snapshot', 1, NOW(6))"
BEFORE=$(mariadb --no-defaults -h127.0.0.1 -P"$PORT1" -uroot -N -e 'SELECT COUNT(*), SUM(qty) FROM shop.orders')
mariadb --no-defaults -h127.0.0.1 -P"$PORT1" -uroot -e "DROP DATABASE shop; CREATE DATABASE later; CREATE TABLE later.t (id INT PRIMARY KEY); INSERT INTO later.t VALUES (1)"
echo "shop.orders before the DROP: rows, sum(qty) = $BEFORE"
sleep 1

say "understudy events --grep 'drop database'"
bin/understudy events --config "$WORK/understudy.yaml" --source primary1 --grep 'drop database'
DROP_GTID=$(bin/understudy events --config "$WORK/understudy.yaml" --source primary1 --grep 'drop database' --json | grep -o '"gtid":"[^"]*"' | cut -d'"' -f4)

say "understudy restore --before-gtid $DROP_GTID into a fresh server on port $PORT3"
"$INSTALL_DB" --no-defaults --datadir="$WORK/restored" --user="$(id -un)" --auth-root-authentication-method=normal \
  --skip-test-db >"$WORK/restored-install.log" 2>&1
"$MARIADBD" --no-defaults --user="$(id -un)" --datadir="$WORK/restored" --socket="$WORK/restored/mysqld.sock" \
  --port="$PORT3" --bind-address=127.0.0.1 --server-id=3 --skip-name-resolve --log-error="$WORK/restored/error.log" \
  --innodb-buffer-pool-size=64M >"$WORK/restored-stdout.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  mariadb --no-defaults -h127.0.0.1 -P"$PORT3" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.2
done
UNDERSTUDY_TARGET_PASSWORD= bin/understudy restore --config "$WORK/understudy.yaml" --source primary1 \
  --target "root@127.0.0.1:$PORT3" --before-gtid "$DROP_GTID"
AFTER=$(mariadb --no-defaults -h127.0.0.1 -P"$PORT3" -uroot -N -e 'SELECT COUNT(*), SUM(qty) FROM shop.orders')
echo "shop.orders restored:         rows, sum(qty) = $AFTER"
[ "$AFTER" = "$BEFORE" ] && echo "the restored table equals the primary's just before the DROP"

say "stopping understudy with SIGTERM"
kill -TERM "${PIDS[2]}"
wait "${PIDS[2]}" || true
tail -n 3 "$WORK/understudy.log"
bin/understudy status --config "$WORK/understudy.yaml"

say "understudy info --source primary1: generations, restore windows, snapshots, files, disk"
bin/understudy info --config "$WORK/understudy.yaml" --source primary1
