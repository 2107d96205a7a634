package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

// addSnapshotConfig appends a snapshot block to source name in cfg.
func addSnapshotConfig(t *testing.T, cfg, block string) {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(b, []byte(block)...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshotSource starts a primary whose replication user may also take
// snapshots, and writes a config with it as source "db" in dir, with the
// snapshot block given ("" for none).
func snapshotSource(t *testing.T, snapshotBlock string) (p *mariadbtest.Server, dir, cfg string) {
	t.Helper()
	p = startPrimary(t, 1, 1)
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	dir = t.TempDir()
	cfg = writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001})
	if snapshotBlock != "" {
		addSnapshotConfig(t, cfg, snapshotBlock)
	}
	return p, dir, cfg
}

func takeSnapshotCmd(t *testing.T, cfg string) *snapshot.Manifest {
	t.Helper()
	var so, se strings.Builder
	if code := run([]string{"snapshot", "--config", cfg, "--source", "db"}, &so, &se); code != 0 {
		t.Fatalf("snapshot exited %d: %s", code, se.String())
	}
	t.Log(strings.TrimSpace(so.String()))
	list, err := snapshot.List(filepath.Join(filepath.Dir(cfg), "archive", "db", "snapshots"))
	if err != nil || len(list) == 0 {
		t.Fatalf("no snapshot listed: %v", err)
	}
	return list[len(list)-1].Manifest
}

// verifyAtPosition starts a replica from understudy's binlog server held at
// the snapshot's GTID position and checks every chunk checksum of the
// manifest against it: the snapshot is exactly that position.
func verifyAtPosition(t *testing.T, cfg string, m *snapshot.Manifest) *mariadbtest.Server {
	t.Helper()
	addr := freeAddr(t)
	serveInProcess(t, cfg, "--listen", addr, "--until-gtid", m.Position.String())
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 60})
	startReplicaOf(t, r, "u", addr, "")
	waitReplica(t, r, "u", m.Position.String(), 90*time.Second)
	time.Sleep(300 * time.Millisecond)
	if got := r.QueryString(t, "SELECT @@gtid_slave_pos"); got != m.Position.String() {
		t.Fatalf("replica at %s, snapshot at %s", got, m.Position)
	}
	checkChunks(t, r, m)
	return r
}

// checkChunks recomputes every chunk checksum on s.
func checkChunks(t *testing.T, s *mariadbtest.Server, m *snapshot.Manifest) {
	t.Helper()
	conn, err := s.DB(t).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.ExecContext(context.Background(), "SET SESSION time_zone = '+00:00'")
	n := 0
	for _, d := range m.Databases {
		for _, tb := range d.Tables {
			for _, c := range tb.Chunks {
				rows, sum, err := snapshot.ChunkChecksum(context.Background(), conn, m.Checksum, d.Name, tb, c.Where)
				if err != nil {
					t.Fatal(err)
				}
				if rows != c.Rows || sum != c.Checksum {
					t.Fatalf("%s.%s chunk %q: %d rows, checksum %s; the snapshot recorded %d rows, %s", d.Name, tb.Name, c.Where, rows, sum, c.Rows, c.Checksum)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("snapshot has no chunks")
	}
	t.Logf("%d chunk checksums match at %s", n, m.Position)
}

func loadInto(t *testing.T, dir string, m *snapshot.Manifest) *mariadbtest.Server {
	t.Helper()
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 70, NoBinlog: true})
	if err := snapshot.Load(context.Background(), target.DB(t), dir, m, snapshot.LoadOptions{Threads: 2}); err != nil {
		t.Fatalf("load: %v", err)
	}
	return target
}

// TestSnapshotUnderLoad takes a snapshot while the primary takes writes,
// proves its position exact against a replica stopped there, and loads it.
func TestSnapshotUnderLoad(t *testing.T) {
	p := startPrimary(t, 1, 1)
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: freeAddr(t)})
	addSnapshotConfig(t, cfg, "    snapshot:\n      threads: 3\n      chunk_rows: 2000\n")
	p.Exec(t, "CREATE DATABASE big")
	p.Exec(t, "CREATE TABLE big.t (id INT PRIMARY KEY, v VARCHAR(100), n INT) ENGINE=InnoDB")
	p.Exec(t, "INSERT INTO big.t SELECT seq, CONCAT('row ', seq), seq % 97 FROM big.seq_1_to_20000")
	p.Exec(t, "ANALYZE TABLE big.t")
	stop := startRun(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); workload(ctx, t, p, "app", 9) }()
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			p.DB(t).Exec("UPDATE big.t SET n = n + 1 WHERE id = ?", 1+i%20000)
		}
	}()
	time.Sleep(700 * time.Millisecond)
	m := takeSnapshotCmd(t, cfg)
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()
	if m.CommitBlockMillis <= 0 || m.CommitBlockMillis > 2000 {
		t.Fatalf("commit block %.1f ms", m.CommitBlockMillis)
	}
	if len(findChunks(m, "big", "t")) < 5 {
		t.Fatalf("big.t in %d chunks, want it cut by primary key", len(findChunks(m, "big", "t")))
	}
	r := verifyAtPosition(t, cfg, m)
	// run took a base snapshot when the archive began: load the one taken
	// under load.
	target := loadInto(t, filepath.Join(dir, "archive", "db", "snapshots", m.ID), m)
	sameChecksums(t, r, target, "app", "big")
	checkChunks(t, target, m)

	var so, se strings.Builder
	if code := run([]string{"snapshots", "--config", cfg, "--source", "db"}, &so, &se); code != 0 || !strings.Contains(so.String(), m.Position.String()) {
		t.Fatalf("snapshots listing (%d): %s %s", code, so.String(), se.String())
	}
}

func findChunks(m *snapshot.Manifest, db, table string) []snapshot.Chunk {
	for _, d := range m.Databases {
		for _, tb := range d.Tables {
			if d.Name == db && tb.Name == table {
				return tb.Chunks
			}
		}
	}
	return nil
}

// TestSnapshotFromReplica takes the snapshot from a replica of the source
// while the primary takes writes; the recorded position is the replica's
// gtid_slave_pos in the source's domain.
func TestSnapshotFromReplica(t *testing.T) {
	p := startPrimary(t, 1, 4)
	rep := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, DomainID: 4})
	rep.Exec(t, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos", p.Port, replUser, replPassword))
	rep.Exec(t, "START SLAVE")
	rep.Exec(t, "CREATE USER snap@'%' IDENTIFIED BY 'snap-pw'")
	rep.Exec(t, "GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT, SLAVE MONITOR ON *.* TO snap@'%'")
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: freeAddr(t)})
	addSnapshotConfig(t, cfg, fmt.Sprintf("    snapshot:\n      from:\n        host: 127.0.0.1\n        port: %d\n        user: snap\n        password: snap-pw\n", rep.Port))
	stop := startRun(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); workload(ctx, t, p, "app", 10) }()
	time.Sleep(1500 * time.Millisecond)
	m := takeSnapshotCmd(t, cfg)
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()
	if !m.FromReplica || m.From != fmt.Sprintf("127.0.0.1:%d", rep.Port) || len(m.Position.GTIDs()) != 1 || m.Position.GTIDs()[0].Domain != 4 {
		t.Fatalf("manifest from=%s replica=%v position=%s", m.From, m.FromReplica, m.Position)
	}
	verifyAtPosition(t, cfg, m)
}

// TestSnapshotKill9 kills a snapshot midway: nothing complete-looking is
// left, and the next snapshot cleans up and completes.
func TestSnapshotKill9(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "    snapshot:\n      threads: 2\n      chunk_rows: 5000\n")
	p.Exec(t, "CREATE DATABASE big")
	p.Exec(t, "CREATE TABLE big.t (id INT PRIMARY KEY, pad VARCHAR(500)) ENGINE=InnoDB")
	p.Exec(t, "INSERT INTO big.t SELECT seq, REPEAT(SHA2(seq, 256), 6) FROM big.seq_1_to_300000")
	p.Exec(t, "ANALYZE TABLE big.t")
	root := filepath.Join(dir, "archive", "db", "snapshots")
	for _, after := range []time.Duration{150 * time.Millisecond, 600 * time.Millisecond} {
		cmd := exec.Command(binary, "snapshot", "--config", cfg, "--source", "db")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		cmd.Process.Kill()
		cmd.Wait()
		if list, err := snapshot.List(root); err != nil || len(list) != 0 {
			t.Fatalf("after kill -9 at %s: %d complete snapshots listed (%v)", after, len(list), err)
		}
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".partial") {
				t.Fatalf("after kill -9 at %s: %s looks complete", after, e.Name())
			}
		}
	}
	m := takeSnapshotCmd(t, cfg)
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 || ents[0].Name() != m.ID {
		t.Fatalf("snapshot dir holds %v, want only %s", ents, m.ID)
	}
	if m.Rows() != 300000 {
		t.Fatalf("snapshot has %d rows", m.Rows())
	}
}

// TestSnapshotColumnTypes: every common column type, NULLs and awkward
// bytes survive snapshot and load byte for byte.
func TestSnapshotColumnTypes(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	p.Exec(t, "CREATE DATABASE types")
	p.Exec(t, `CREATE TABLE types.t (
		id BIGINT UNSIGNED PRIMARY KEY, ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, i INT, bi BIGINT,
		d DECIMAL(30,10), f FLOAT, db DOUBLE, bt BIT(13), yr YEAR, dt DATE, tm TIME(3), dtm DATETIME(6), ts TIMESTAMP(6) NULL,
		c CHAR(10), vc VARCHAR(300) CHARACTER SET utf8mb4, l1 VARCHAR(50) CHARACTER SET latin1, tx TEXT CHARACTER SET utf8mb4,
		bin BINARY(8), vb VARBINARY(300), bl LONGBLOB, j JSON, e ENUM('a','b','c'), st SET('x','y','z'),
		g BIGINT AS (i * 2) VIRTUAL, gs BIGINT UNSIGNED AS (id DIV 2) STORED, u UUID, ip INET6
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`)
	p.Exec(t, `INSERT INTO types.t (id, ti, si, mi, i, bi, d, f, db, bt, yr, dt, tm, dtm, ts, c, vc, l1, tx, bin, vb, bl, j, e, st, u, ip) VALUES
		(1, -128, 65535, -8388608, -2147483648, -9223372036854775808, -12345678901234567890.0123456789, 3.14159, 2.718281828459045, b'1010101010101', 2026, '2026-11-22', '-838:59:59.999', '2026-11-22 14:15:16.123456', '2026-11-22 14:15:16.654321',
		 'abc', 'Grüße 😀 \t tab \n newline \\ backslash', 'café', REPEAT('long text ', 1000), UNHEX('00090A0D1A5C2700'), UNHEX('5C5C0A09001A'), RANDOM_BYTES(1024), '{"a": [1, 2.5, "x"], "b": null}', 'b', 'x,z', UUID(), '::1'),
		(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
		(18446744073709551615, 0, 0, 0, 0, 0, 0, 0, -0.0, b'0', 1901, '1000-01-01', '00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01', '', '', '', '', '', '', '', '[]', 'a', '', '00000000-0000-0000-0000-000000000000', '::ffff:0.0.0.0'),
		(4, 1, 1, 1, 1, 1, 1, 1, 1, b'1', 2000, '2000-02-29', '12:00:00', '2000-02-29 12:00:00', '2038-01-19 03:14:07', '\\N', 'NULL', '\\N', '\\\\N', UNHEX('5C4E'), UNHEX('5C4E'), UNHEX('5C4E'), '"\\\\N"', 'c', 'y', UUID(), '2001:db8::ff')`)
	for i := 0; i < 3; i++ {
		p.Exec(t, "INSERT INTO types.t (id, bl, vc) SELECT id + 100 * ?, RANDOM_BYTES(1000), CONCAT(vc, ?) FROM types.t WHERE id < 100 AND vc IS NOT NULL", i+1, i)
	}
	// Values that do not survive a trip through numbers, and other types.
	p.Exec(t, "CREATE TABLE types.more (id INT PRIMARY KEY, z INT(6) ZEROFILL, y YEAR, f FLOAT, d DOUBLE, geo POINT, ip4 INET4) ENGINE=InnoDB")
	p.Exec(t, `INSERT INTO types.more VALUES (1, 42, 0, 16777216, 0.1 + 0.2, POINT(1.5, -2), '10.0.0.1'),
		(2, 0, 1999, -3.4e38, 1.7976931348623157e308, ST_GeomFromText('POINT(0 0)', 4326), '0.0.0.0'),
		(3, NULL, NULL, NULL, NULL, NULL, NULL)`)
	// A table without a primary key, a MyISAM table, and the other objects.
	p.Exec(t, "CREATE TABLE types.nopk (a INT, b VARCHAR(20), KEY (a)) ENGINE=InnoDB")
	p.Exec(t, "INSERT INTO types.nopk VALUES (1, 'x'), (1, 'x'), (NULL, NULL), (2, 'tab\there')")
	p.Exec(t, "CREATE TABLE types.old (id INT PRIMARY KEY, v INT) ENGINE=MyISAM")
	p.Exec(t, "INSERT INTO types.old VALUES (1, 10), (2, 20)")
	p.Exec(t, "CREATE VIEW types.v AS SELECT id, i FROM types.t WHERE i IS NOT NULL")
	p.Exec(t, "CREATE FUNCTION types.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2")
	p.Exec(t, "CREATE PROCEDURE types.p() BEGIN SELECT 1; END")
	p.Exec(t, "CREATE TRIGGER types.trg BEFORE INSERT ON types.old FOR EACH ROW SET NEW.v = NEW.v + 1")
	p.Exec(t, "CREATE EVENT types.ev ON SCHEDULE EVERY 1 DAY DISABLE DO SELECT 1")
	m := takeSnapshotCmd(t, cfg)
	list, _ := snapshot.List(filepath.Join(dir, "archive", "db", "snapshots"))
	target := loadInto(t, list[0].Dir, m)
	// byte for byte, column by column
	cols := "id, HEX(ti), HEX(si), HEX(mi), HEX(i), HEX(bi), HEX(d), HEX(f), HEX(db), HEX(bt), yr, dt, tm, dtm, HEX(UNIX_TIMESTAMP(ts)), HEX(c), HEX(vc), HEX(l1), HEX(tx), HEX(bin), HEX(vb), HEX(bl), HEX(j), e, st, g, gs, u, ip"
	want := dumpRows(t, p.DB(t), "SELECT "+cols+" FROM types.t ORDER BY id")
	got := dumpRows(t, target.DB(t), "SELECT "+cols+" FROM types.t ORDER BY id")
	if len(want) != len(got) || len(want) < 10 {
		t.Fatalf("%d rows loaded, %d on the primary", len(got), len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("row %d differs:\nprimary %s\nloaded  %s", i, want[i], got[i])
		}
	}
	more := "id, z, HEX(y), CAST(f AS DOUBLE), d, HEX(geo), ip4" // a FLOAT as DOUBLE shows all its digits
	want, got = dumpRows(t, p.DB(t), "SELECT "+more+" FROM types.more ORDER BY id"), dumpRows(t, target.DB(t), "SELECT "+more+" FROM types.more ORDER BY id")
	if fmt.Sprint(want) != fmt.Sprint(got) {
		t.Fatalf("types.more after load:\n%v\nprimary:\n%v", got, want)
	}
	sameChecksums(t, p, target, "types")
	checkChunks(t, target, m)
	if len(m.NonTransactional) != 1 || !strings.Contains(m.NonTransactional[0], "types.old (MyISAM)") {
		t.Fatalf("non-transactional tables %v, want types.old", m.NonTransactional)
	}
	for _, q := range []struct{ query, want string }{
		{"SELECT COUNT(*) FROM types.v", p.QueryString(t, "SELECT COUNT(*) FROM types.v")},
		{"SELECT types.twice(21)", "42"},
		{"SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='types'", "2"},
		{"SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='types'", "1"},
		{"SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA='types'", "1"},
		{"SELECT COUNT(*) FROM types.nopk", "4"},
		{"SELECT SUM(v) FROM types.old", "30"}, // loaded as is: the trigger did not fire again
	} {
		if got := target.QueryString(t, q.query); got != q.want {
			t.Errorf("%s = %s after load, want %s", q.query, got, q.want)
		}
	}
}

func dumpRows(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals))
	}
	return out
}

// TestSnapshotErrors: missing privileges are named, a replica of another
// primary is refused, and no partial snapshot is left behind.
func TestSnapshotErrors(t *testing.T) {
	p := startPrimary(t, 1, 1)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	var so, se strings.Builder
	if code := run([]string{"snapshot", "--config", cfg, "--source", "db"}, &so, &se); code == 0 || !strings.Contains(se.String(), "GRANT") {
		t.Fatalf("snapshot without privileges: exit %d: %s", code, se.String())
	}
	t.Log(strings.TrimSpace(se.String()))
	other := mariadbtest.Start(t, mariadbtest.Options{ServerID: 3, DomainID: 9})
	other.Exec(t, "CREATE USER snap@'%' IDENTIFIED BY 'pw'")
	other.Exec(t, "GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT, SLAVE MONITOR ON *.* TO snap@'%'")
	addSnapshotConfig(t, cfg, fmt.Sprintf("    snapshot:\n      from:\n        host: 127.0.0.1\n        port: %d\n        user: snap\n        password: pw\n", other.Port))
	se.Reset()
	if code := run([]string{"snapshot", "--config", cfg, "--source", "db"}, &so, &se); code == 0 || !strings.Contains(se.String(), "is not replicating from source db") {
		t.Fatalf("snapshot from an unrelated server: exit %d: %s", code, se.String())
	}
	t.Log(strings.TrimSpace(se.String()))
	ents, _ := os.ReadDir(filepath.Join(dir, "archive", "db", "snapshots"))
	if len(ents) != 0 {
		t.Fatalf("failed snapshots left %d entries", len(ents))
	}
}

// TestSnapshotSchedule: run takes snapshots on the schedule of
// snapshot.every.
func TestSnapshotSchedule(t *testing.T) {
	p := startPrimary(t, 1, 1)
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001})
	addSnapshotConfig(t, cfg, "    snapshot:\n      every: 2s\n")
	stop := startRun(t, cfg)
	root := filepath.Join(dir, "archive", "db", "snapshots")
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := snapshot.List(root)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) >= 2 {
			if gap := list[1].Manifest.Started.Sub(list[0].Manifest.Started); gap < 1500*time.Millisecond {
				t.Fatalf("snapshots %s apart, want about 2s", gap)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d scheduled snapshots after 30s, want 2", len(list))
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
}

// TestSnapshotWriteFailure: a write error in the middle of a snapshot (the
// file size limit here, as a full disk would) fails it with a clear error,
// removes the partial snapshot and leaves the older one intact.
func TestSnapshotWriteFailure(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	p.Exec(t, "CREATE DATABASE big")
	p.Exec(t, "CREATE TABLE big.t (id INT PRIMARY KEY, pad VARCHAR(500)) ENGINE=InnoDB")
	p.Exec(t, "INSERT INTO big.t SELECT seq, 'small' FROM big.seq_1_to_100")
	old := takeSnapshotCmd(t, cfg)
	// Random data does not compress: the chunk passes the 1 MiB limit.
	p.Exec(t, "INSERT INTO big.t SELECT seq, TO_BASE64(RANDOM_BYTES(300)) FROM big.seq_101_to_20000")
	cmd := exec.Command("bash", "-c", `ulimit -f 1024 && exec "$0" snapshot --config "$1" --source db`, binary, cfg)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("snapshot succeeded past the file size limit: %s", out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	if !strings.Contains(string(out), "file too large") || strings.Count(strings.TrimSpace(string(out)), "\n") > 1 {
		t.Fatalf("unclear error: %s", out)
	}
	root := filepath.Join(dir, "archive", "db", "snapshots")
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 || ents[0].Name() != old.ID {
		t.Fatalf("snapshot directory holds %v, want only the older %s", ents, old.ID)
	}
	list, _ := snapshot.List(root)
	if problems := snapshot.VerifyFiles(list[0].Dir, list[0].Manifest); len(problems) > 0 {
		t.Fatalf("the older snapshot was harmed: %v", problems)
	}
}

// TestSnapshotChunkKeys cuts tables into chunks on keys that are not a
// single integer primary key: strings under a case-insensitive collation,
// binary strings, DATETIME, DECIMAL, a nullable non-unique index with
// duplicates and NULLs, and a composite key. The chunks must partition
// every table exactly: their checksums match the primary's, their rows add
// up, and the loaded copy equals the primary.
func TestSnapshotChunkKeys(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "    snapshot:\n      threads: 3\n      chunk_rows: 300\n")
	p.Exec(t, "CREATE DATABASE k")
	p.Exec(t, "CREATE TABLE k.seq (n INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO k.seq SELECT seq FROM k.seq_1_to_2000")
	for _, q := range []string{
		"CREATE TABLE k.str (id VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY, v INT)",
		// case-insensitive: 'key-1' and 'KEY-1b' sort together; 'é' and 'e' are equal under the collation's weights only in part
		"INSERT INTO k.str SELECT CONCAT(IF(n % 3 = 0, 'KEY-', 'key-'), IF(n % 7 = 0, 'é', ''), n, IF(n % 11 = 0, ' x', '')), n FROM k.seq",
		"CREATE TABLE k.bin (id VARBINARY(16) PRIMARY KEY, v INT)",
		"INSERT INTO k.bin SELECT UNHEX(MD5(n)), n FROM k.seq",
		"CREATE TABLE k.dt (at DATETIME(6) PRIMARY KEY, v INT)",
		"INSERT INTO k.dt SELECT '2026-01-01 00:00:00' + INTERVAL n * 1234567 MICROSECOND, n FROM k.seq",
		"CREATE TABLE k.dec (d DECIMAL(20,4) PRIMARY KEY, v INT)",
		"INSERT INTO k.dec SELECT n * 1.0001 - 1000, n FROM k.seq",
		"CREATE TABLE k.nopk (a INT NULL, b VARCHAR(20), KEY (a))",
		"INSERT INTO k.nopk SELECT IF(n % 10 = 0, NULL, n DIV 4), CONCAT('row ', n) FROM k.seq",
		"CREATE TABLE k.composite (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b))",
		"INSERT INTO k.composite SELECT n DIV 10, n % 10, n FROM k.seq",
		// no key that can order the rows: a prefix index and a FULLTEXT one
		"CREATE TABLE k.nokey (a INT, b VARCHAR(100), KEY (b(3)), FULLTEXT (b))",
		"INSERT INTO k.nokey SELECT n, REPEAT('z', n % 50) FROM k.seq",
		// outside the consistent snapshot: read in one statement
		"CREATE TABLE k.aria (id INT PRIMARY KEY, v INT) ENGINE=Aria",
		"INSERT INTO k.aria SELECT n, n FROM k.seq",
		"ANALYZE TABLE k.str, k.bin, k.dt, k.dec, k.nopk, k.composite, k.nokey, k.seq, k.aria",
	} {
		p.Exec(t, q)
	}
	m := takeSnapshotCmd(t, cfg)
	for _, d := range m.Databases {
		for _, tb := range d.Tables {
			var rows int64
			for _, c := range tb.Chunks {
				rows += c.Rows
			}
			if want := p.QueryString(t, "SELECT COUNT(*) FROM k."+tb.Name); fmt.Sprint(rows) != want {
				t.Errorf("k.%s: chunks hold %d rows, the table %s", tb.Name, rows, want)
			}
			t.Logf("k.%s: %d chunks, the second %q", tb.Name, len(tb.Chunks), tb.Chunks[min(1, len(tb.Chunks)-1)].Where)
			if want := map[string]string{"nopk": "a"}[tb.Name]; tb.ChunkIndex != want {
				t.Errorf("k.%s: chunks read through index %q, want %q", tb.Name, tb.ChunkIndex, want)
			}
			single := tb.Name == "nokey" || tb.Name == "aria"
			if !single && len(tb.Chunks) < 3 {
				t.Errorf("k.%s: %d chunks, want several: %+v", tb.Name, len(tb.Chunks), tb.Chunks)
			}
			if single && len(tb.Chunks) != 1 {
				t.Errorf("k.%s (no usable key, or not InnoDB): %d chunks, want 1", tb.Name, len(tb.Chunks))
			}
		}
	}
	checkChunks(t, p, m)
	list, _ := snapshot.List(filepath.Join(dir, "archive", "db", "snapshots"))
	target := loadInto(t, list[0].Dir, m)
	sameChecksums(t, p, target, "k")
	checkChunks(t, target, m)
}

// TestSnapshotKeep keeps the newest snapshots and removes the others,
// leaving nothing else behind.
func TestSnapshotKeep(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "    snapshot:\n      keep: 2\n")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	root := filepath.Join(dir, "archive", "db", "snapshots")
	var ids []string
	for i := 0; i < 4; i++ {
		p.Exec(t, "INSERT INTO app.t VALUES (?)", i)
		ids = append(ids, takeSnapshotCmd(t, cfg).ID)
		list, err := snapshot.List(root)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range list {
			got = append(got, l.Manifest.ID)
		}
		want := ids[max(0, len(ids)-2):]
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after snapshot %d: %v listed, want %v", i+1, got, want)
		}
		ents, _ := os.ReadDir(root)
		if len(ents) != len(want) {
			t.Fatalf("after snapshot %d: %d entries in %s, want %d", i+1, len(ents), root, len(want))
		}
	}
	list, _ := snapshot.List(root)
	if list[1].Manifest.Rows() != 4 {
		t.Fatalf("newest snapshot has %d rows, want 4", list[1].Manifest.Rows())
	}
	// A snapshot in use (a restore reading it) is kept until it is let go.
	release, err := snapshot.Hold(list[0].Dir)
	if err != nil {
		t.Fatal(err)
	}
	takeSnapshotCmd(t, cfg)
	if list, _ := snapshot.List(root); len(list) != 3 || list[0].Dir != filepath.Join(root, ids[2]) {
		t.Fatalf("with %s in use: %d snapshots listed, want it kept with the 2 newest", ids[2], len(list))
	}
	release()
	takeSnapshotCmd(t, cfg)
	if list, _ := snapshot.List(root); len(list) != 2 {
		t.Fatalf("after it was let go: %d snapshots listed, want 2", len(list))
	}
}
