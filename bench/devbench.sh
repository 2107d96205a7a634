#!/usr/bin/env bash
# Side-by-side benchmarks at scale (issue 15), for a larger machine without packages: catch-up archiving,
# snapshots, restore (load + verify) and serving, understudy against the stock tools on the same data,
# with CPU profiles and peak RSS of understudy's runs.
#
# Here:  bench/devbench-bundle.sh   packs .devbench/ (MariaDB, mydumper/myloader, libraries, a datadir
#                                   template, understudy built with -tags profile; BASE=<commit> and
#                                   VARIANTS add builds to compare, see that script)
# There: OUT=/dir TABLES=16 ROWS=500000 T=8 T2=16 RUNS=3 bash .devbench/devbench.sh
# SNAP_BINS, RESTORE_BINS, SERVE_BINS and CATCHUP_BINS name the builds (in the bundle's bin/) that each step
# runs, alternately, beside the stock tool; the default is understudy alone. SKIP_AFTER=<seconds> skips the
# whole-replica catch-up when the run has taken longer.
# One big table (a restore then has one table to load; myloader needs mydumper's chunks to load it in parallel):
#        TABLES=1 ROWS=8000000 MYDUMPER_ROWS=500000 ...
# Small trial here: TABLES=2 ROWS=20000 T=2 T2=4 RUNS=1 SERVE_FULL=0 bash .devbench/devbench.sh
# Results: $OUT/results.txt; logs, profiles and samples: $OUT/detail.tar.gz.
set -u
H=$(cd "$(dirname "$0")" && pwd)
W=${WDIR:-/tmp/devbench}; rm -rf "$W"; mkdir -p "$W"
OUT=${OUT:-$W/out}; mkdir -p "$OUT"
D=$W/detail; mkdir -p "$D"
TABLES=${TABLES:-16} ROWS=${ROWS:-500000} T=${T:-8} T2=${T2:-16} RUNS=${RUNS:-3} SERVE_FULL=${SERVE_FULL:-1}
tar -C "$W" -xzf "$H/bundle.tar.gz"
B=$W/b
LD="$B/lib/ld-linux-x86-64.so.2 --library-path $B/lib"
mariadbd() { exec $LD "$B/bin/mariadbd" "$@"; }   # exec: the background PID is the server itself
mdb() { $LD "$B/bin/mariadb" --no-defaults "$@"; }
mydumper() { $LD "$B/bin/mydumper" "$@"; }
myloader() { $LD "$B/bin/myloader" "$@"; }
mbinlog() { $LD "$B/bin/mariadb-binlog" --no-defaults "$@"; }
U=$B/bin/understudy
CATCHUP_BINS=${CATCHUP_BINS:-understudy} SNAP_BINS=${SNAP_BINS:-understudy} RESTORE_BINS=${RESTORE_BINS:-understudy}
SERVE_BINS=${SERVE_BINS:-understudy} SKIP_AFTER=${SKIP_AFTER:-100000}
T_START=$(date +%s)
TO=$(command -v timeout)   # a hung step must not eat the machine's time
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/results.txt"; }
now_ms() { date +%s%3N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rss() { grep -o 'peak RSS [0-9]* KiB, CPU user [0-9.]* s sys [0-9.]* s' "$1" | tail -1; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # a process's CPU, in 1/100 s
PIDS=()
declare -A PID
finish() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  cp "$W"/*.log "$W"/*.err "$D"/ 2>/dev/null
  tar -C "$W" -czf "$OUT/detail.tar.gz" detail
}
trap finish EXIT
start() { # start NAME PORT SID extra...
  local n=$1 p=$2 s=$3; shift 3
  cp -a "$B/tpl" "$W/$n"
  mariadbd --no-defaults --user=root --datadir="$W/$n" --port="$p" --bind-address=127.0.0.1 --socket="$W/$n.sock" \
    --server-id="$s" --lc-messages-dir="$B/share" --character-sets-dir="$B/share/charsets" --log-error="$W/$n.err" \
    --innodb-buffer-pool-size=8G --innodb-log-file-size=2G --innodb-flush-log-at-trx-commit=2 --max-allowed-packet=1G \
    --skip-name-resolve --max-connections=500 "$@" >/dev/null 2>&1 &
  PIDS+=($!); PID[$n]=$!
  for _ in $(seq 300); do
    mdb -h127.0.0.1 -P"$p" -uroot -e 'select 1' >/dev/null 2>&1 && return 0
    kill -0 "${PID[$n]}" 2>/dev/null || break
    sleep 0.2
  done
  log "server $n did not start: $(tail -3 "$W/$n.err")"; exit 1
}
# sample PORT FILE: the target's thread states every 0.5 s until stopped
sample() {
  while :; do
    echo "$(date +%T.%N | cut -c1-12) $(mdb -h127.0.0.1 -P"$1" -uroot -N -e "SELECT GROUP_CONCAT(CONCAT(c, 'x ', s) SEPARATOR '; ') FROM (SELECT COUNT(*) c, CONCAT(COMMAND, '/', IFNULL(STATE, ''), '/', LEFT(IFNULL(INFO, ''), 24)) s FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Sleep' AND ID <> CONNECTION_ID() GROUP BY s) x" 2>&1)" >>"$2"
    sleep 0.5
  done
}
log "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; TABLES=$TABLES ROWS=$ROWS T=$T T2=$T2 RUNS=$RUNS; builds: $(for b in "$B"/bin/understudy*; do echo -n "$(basename "$b")=$("$b" version 2>/dev/null | cut -d' ' -f2) "; done)"
# Ports below the ephemeral range (32768-60999): a client connection's local port once took a server's.
P=23001
start primary $P 1 --log-bin="$W/primary/bin" --binlog-format=ROW --gtid-domain-id=1 --sync-binlog=0 --max-binlog-size=1G
mdb -h127.0.0.1 -P$P -uroot -e "SET sql_log_bin=0; CREATE USER bench@'%' IDENTIFIED BY 'benchpw'; GRANT ALL ON *.* TO bench@'%'; SET sql_log_bin=1; CREATE DATABASE sbtest"
cfg() { # cfg FILE ARCHIVE_DIR
  cat >"$1" <<YAML
archive:
  dir: $2
http:
  listen: "off"
sources:
  - name: bench
    host: 127.0.0.1
    port: $P
    user: bench
    password: benchpw
    server_id: 9901
    snapshot:
      threads: $T
    serve:
      listen: 127.0.0.1:23090
      user: bench
      password: benchpw
YAML
}
cfg "$W/us.yaml" "$W/archive"
t0=$(now_ms)
R='LPAD(FLOOR(RAND()*99999999999),11,0)'
C="CONCAT_WS('-',$R,$R,$R,$R,$R,$R,$R,$R,$R,$R)"; PAD="CONCAT_WS('-',$R,$R,$R,$R,$R)"
BATCH=20000
GEN=()
for i in $(seq "$TABLES"); do
  ( mdb -h127.0.0.1 -P$P -uroot sbtest -e "CREATE TABLE sbtest$i (id INT NOT NULL AUTO_INCREMENT, k INT NOT NULL DEFAULT 0, c CHAR(120) NOT NULL DEFAULT '', pad CHAR(60) NOT NULL DEFAULT '', PRIMARY KEY (id), KEY k_$i (k)) ENGINE=InnoDB"
    for ((s = 1; s <= ROWS; s += BATCH)); do e=$((s + BATCH - 1)); [ $e -gt $ROWS ] && e=$ROWS
      mdb -h127.0.0.1 -P$P -uroot sbtest -e "INSERT INTO sbtest$i (id,k,c,pad) SELECT seq, FLOOR(RAND()*$ROWS), $C, $PAD FROM seq_${s}_to_${e}"
    done ) &
  GEN+=($!)
done
wait "${GEN[@]}"
mdb -h127.0.0.1 -P$P -uroot -N -e "ANALYZE TABLE $(seq -s, -f 'sbtest.sbtest%g' 1 "$TABLES")" >/dev/null
END_POS=$(mdb -h127.0.0.1 -P$P -uroot -N -e 'select @@gtid_binlog_pos')
log "data generated in $(( $(now_ms) - t0 )) ms: $(mdb -h127.0.0.1 -P$P -uroot -N -e "SELECT ROUND(SUM(DATA_LENGTH+INDEX_LENGTH)/1048576) FROM information_schema.TABLES WHERE TABLE_SCHEMA='sbtest'") MiB, binlog $(( $(mdb -h127.0.0.1 -P$P -uroot -N -e 'SHOW BINARY LOGS' | awk '{s+=$2} END {print s}') / 1048576 )) MiB, END_POS=$END_POS"

# 1. catch-up archiving: mariadb-binlog --raw + sync against each build, alternately
declare -A TS
tb=()
for r in 1 2 3; do
  rm -rf "$W/raw"; mkdir -p "$W/raw"; sync; t0=$(now_ms)
  (cd "$W/raw" && mbinlog --read-from-remote-server --raw --host=127.0.0.1 --port=$P --user=root --to-last-log bin.000001 && sync); tb+=($(( $(now_ms) - t0 )))
  for b in $CATCHUP_BINS; do
    [ $r = 3 ] && export UNDERSTUDY_CPU_PROFILE=$D/catchup-$b.cpu.prof
    cfg "$W/c-$b.yaml" "$W/archive-$b"; rm -rf "$W/archive-$b"; sync; t0=$(now_ms)
    "$B/bin/$b" run --config "$W/c-$b.yaml" --until-caught-up >"$W/run-$b-$r.log" 2>&1; TS[$b]="${TS[$b]:-} $(( $(now_ms) - t0 ))"
    unset UNDERSTUDY_CPU_PROFILE
  done
done
MB=$(median "${tb[@]}")
for b in $CATCHUP_BINS; do
  MU=$(median ${TS[$b]})
  log "catch-up: mariadb-binlog --raw + sync ${MB} ms (${tb[*]}); $b ${MU} ms (${TS[$b]# }; $(rss "$W/run-$b-2.log")); ratio mariadb-binlog/$b $(ratio $MB $MU)x"
done
rm -rf "$W/raw"
$U run --config "$W/us.yaml" --until-caught-up >"$W/run.log" 2>&1

# 2. snapshots at T and T2 threads, alternately with mydumper (uncompressed, no checksums)
snap() { # snap THREADS RUNS
  local tm=() r b; declare -A tu
  for r in $(seq "$2"); do
    rm -rf "$W/myd$1"; sync; t0=$(now_ms)
    mydumper -h 127.0.0.1 -P $P -u root -t "$1" ${MYDUMPER_ROWS:+--rows "$MYDUMPER_ROWS"} --trx-consistency-only -B sbtest -o "$W/myd$1" >/dev/null 2>&1; sync; tm+=($(( $(now_ms) - t0 )))
    for b in $SNAP_BINS; do
      [ "$r" = "$2" ] && export UNDERSTUDY_CPU_PROFILE=$D/snapshot$1-$b.cpu.prof
      sync; t0=$(now_ms)
      "$B/bin/$b" snapshot --config "$W/us.yaml" --source bench --threads "$1" >"$W/snap$1-$b-$r.log" 2>&1; tu[$b]="${tu[$b]:-} $(( $(now_ms) - t0 ))"
      unset UNDERSTUDY_CPU_PROFILE
    done
  done
  local M S; M=$(median "${tm[@]}")
  for b in $SNAP_BINS; do
    S=$(median ${tu[$b]})
    log "snapshot -t $1: mydumper ${M} ms (${tm[*]}; $(du -sm "$W/myd$1" | cut -f1) MiB); $b ${S} ms (${tu[$b]# }; $(rss "$W/snap$1-$b-1.log")); ratio mydumper/$b $(ratio $M $S)x"
  done
}
snap "$T" "$RUNS"
snap "$T2" "$RUNS"
SNAP_ID=$($U snapshots --config "$W/us.yaml" --source bench --json | grep -o '"id": "[^"]*"' | tail -1 | cut -d'"' -f4)
log "restoring snapshot $SNAP_ID: $(grep -o '"where"' "$W/archive/bench/snapshots/$SNAP_ID/manifest.json" | wc -l 2>/dev/null) chunks"

# 3. restore (load + verify) against myloader, at T and T2 threads
export UNDERSTUDY_TARGET_PASSWORD=
port=23010
restore() { # restore THREADS
  local n=$1 b c0 cu TU rc
  port=$((port + 1)); start "m$n" $port $port --log-bin=OFF
  c0=$(cpu_ticks "${PID[m$n]}")
  t0=$(now_ms); myloader -h 127.0.0.1 -P $port -u root -t "$n" -d "$W/myd$T" >"$W/myloader$n.log" 2>&1; local TM=$(( $(now_ms) - t0 ))
  local cm=$(( $(cpu_ticks "${PID[m$n]}") - c0 ))
  log "restore -t $n: myloader ${TM} ms (target CPU $((cm / 100)) s); checksum $(mdb -h127.0.0.1 -P$port -uroot -N -e 'checksum table sbtest.sbtest1' | cut -f2)"
  kill "${PID[m$n]}"
  for b in $RESTORE_BINS; do
    port=$((port + 1)); start "u$n$b" $port $port --log-bin=OFF
    c0=$(cpu_ticks "${PID[u$n$b]}")
    sample $port "$D/restore$n-$b.states" & local sp=$!
    export UNDERSTUDY_CPU_PROFILE=$D/restore$n-$b.cpu.prof
    t0=$(now_ms)
    ${TO:+$TO 150} "$B/bin/$b" restore --config "$W/us.yaml" --source bench --target root@127.0.0.1:$port --snapshot "$SNAP_ID" --threads "$n" --debug >"$W/restore$n-$b.log" 2>&1
    rc=$?; TU=$(( $(now_ms) - t0 ))
    unset UNDERSTUDY_CPU_PROFILE; kill $sp 2>/dev/null
    cu=$(( $(cpu_ticks "${PID[u$n$b]}") - c0 ))
    log "restore -t $n: $b (load + verify) ${TU} ms rc=$rc (target CPU $((cu / 100)) s; $(rss "$W/restore$n-$b.log")); ratio myloader/$b $(ratio $TM $TU)x; checksum $(mdb -h127.0.0.1 -P$port -uroot -N -e 'checksum table sbtest.sbtest1' | cut -f2)"
    grep -v 'level=DEBUG' "$W/restore$n-$b.log" | grep -v '^understudy: peak' | tail -2 | cut -c1-300 >>"$OUT/results.txt"
    kill "${PID[u$n$b]}"
  done
}
restore "$T"
restore "$T2"

# 4. serving: a fresh replica catches up from the primary and from understudy's binlog server. First the
# IO thread alone (the sending side's speed: relay log written to the end), then the whole replica.
BYTES=$(mdb -h127.0.0.1 -P$P -uroot -N -e 'SHOW BINARY LOGS' | awk '{s+=$2} END {print s}')
catchup() { # catchup NAME MASTER_PORT MODE(io|all)
  port=$((port + 1)); start "r$1$3" $port $port --log-bin=OFF --slave-parallel-threads=$T --slave-parallel-mode=optimistic --relay-log="$W/r$1$3/relay"
  t0=$(now_ms)
  if [ "$3" = io ]; then
    mdb -h127.0.0.1 -P$port -uroot -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$2, MASTER_USER='bench', MASTER_PASSWORD='benchpw', MASTER_USE_GTID=slave_pos; START SLAVE IO_THREAD"
    local st
    for ((i = 0; i < 6000; i++)); do
      st=$(mdb -h127.0.0.1 -P$port -uroot -e 'SHOW SLAVE STATUS\G')
      echo "$st" | grep -q "Gtid_IO_Pos: $END_POS\$" && break
      echo "$st" | grep -qE 'Last_IO_Error: .+' && { log "replica r$1$3 failed: $(echo "$st" | grep Last_IO_Error)"; break; }
      sleep 0.05
    done
  else
    mdb -h127.0.0.1 -P$port -uroot -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$2, MASTER_USER='bench', MASTER_PASSWORD='benchpw', MASTER_USE_GTID=slave_pos; START SLAVE"
    for ((i = 0; i < 3000; i++)); do
      [ "$(mdb -h127.0.0.1 -P$port -uroot -N -e 'SELECT @@gtid_slave_pos')" = "$END_POS" ] && break
      mdb -h127.0.0.1 -P$port -uroot -e 'SHOW SLAVE STATUS\G' | grep -qE 'Last_(IO|SQL)_Error: .+' && { log "replica r$1$3 failed"; break; }
      sleep 0.1
    done
  fi
  CT=$(( $(now_ms) - t0 ))
  mdb -h127.0.0.1 -P$port -uroot -e 'SHOW SLAVE STATUS\G' | grep -E 'Last_(IO|SQL)_Error|Gtid_IO_Pos' >>"$D/serve.status"
  kill "${PID[r$1$3]}"
}
serve_start() { # serve_start BUILD
  UNDERSTUDY_CPU_PROFILE=$D/serve-$1.cpu.prof "$B/bin/$1" serve --config "$W/us.yaml" --source bench >"$W/serve-$1.log" 2>&1 &
  SERVE=$!; PIDS+=($SERVE)
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/23090) 2>/dev/null && break; sleep 0.1; done
}
serve_stop() { SERVE_RSS=$(grep VmHWM /proc/$SERVE/status 2>/dev/null | tr -s ' \t' ' '); kill -INT $SERVE; wait $SERVE 2>/dev/null; }
declare -A TSV
ta=()
for r in 1 2 3; do
  catchup p$r $P io; ta+=($CT)
  for b in $SERVE_BINS; do serve_start $b; catchup u$r$b 23090 io; TSV[$b]="${TSV[$b]:-} $CT"; serve_stop; done
done
A=$(median "${ta[@]}")
for b in $SERVE_BINS; do
  Bm=$(median ${TSV[$b]})
  log "serve, IO thread only ($((BYTES / 1048576)) MiB): from the primary ${A} ms (${ta[*]}); from $b ${Bm} ms (${TSV[$b]# }); ratio primary/$b $(ratio $A $Bm)x"
done
if [ "$SERVE_FULL" = 1 ] && [ $(( $(date +%s) - T_START )) -lt "$SKIP_AFTER" ]; then
  b=${SERVE_BINS%% *}
  catchup p $P all; A=$CT; serve_start $b; catchup u 23090 all; Bm=$CT; serve_stop
  log "serve, whole replica ($T parallel appliers): from the primary ${A} ms; from $b ${Bm} ms; ratio $(ratio $A $Bm)x; serve $SERVE_RSS"
fi
log done
