package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

const replUser, replPassword = "understudy", "s3cret-pw"

// startPrimary starts a primary with a replication user for understudy.
func startPrimary(t *testing.T, serverID, domain uint32, args ...string) *mariadbtest.Server {
	t.Helper()
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: serverID, DomainID: domain, Args: args})
	// Not binlogged: a multi-source replica of several primaries would
	// otherwise apply the same CREATE USER twice.
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER "+replUser+"@'%' IDENTIFIED BY '"+replPassword+"'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO "+replUser+"@'%'")
	return p
}

type testSource struct {
	name     string
	p        *mariadbtest.Server
	serverID uint32
	semiSync bool
	serve    string // serve.listen, if set
}

const serveUser, servePassword = "replica", "replica-pw"

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeConfig writes an understudy.yaml for the sources and returns its path.
func writeConfig(t *testing.T, dir string, srcs ...testSource) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "archive:\n  dir: %s\n  max_file_size: 4MiB\n  sync_interval: 100ms\nhttp:\n  listen: \"off\"\nsources:\n", filepath.Join(dir, "archive"))
	for _, s := range srcs {
		fmt.Fprintf(&b, "  - name: %s\n    host: 127.0.0.1\n    port: %d\n    user: %s\n    password: %s\n    server_id: %d\n    heartbeat: 500ms\n    semi_sync: %v\n",
			s.name, s.p.Port, replUser, replPassword, s.serverID, s.semiSync)
		if s.serve != "" {
			fmt.Fprintf(&b, "    serve:\n      listen: %s\n      user: %s\n      password: %s\n", s.serve, serveUser, servePassword)
		}
	}
	path := filepath.Join(dir, "understudy.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startRun runs `understudy run` in this process until the returned stop
// function is called.
func startRun(t *testing.T, cfg string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runArchive(ctx, runOptions{config: cfg}, newLogger(testWriter{t}, false, false))
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// waitLocked waits until a process holds the archive dir's lock (a
// Writer, as `understudy run` opens it), probing it with a lock of its own
// that it releases at once.
func waitLocked(t *testing.T, dir string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		f, err := os.Open(filepath.Join(dir, archive.LockName))
		if err == nil {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			f.Close() // releases the probe's lock, if it got it
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing holds the archive %s after %s", dir, timeout)
}

// waitArchived waits until the archive of src holds the primary's whole
// binlog position.
func waitArchived(t *testing.T, dir string, p *mariadbtest.Server, timeout time.Duration) {
	t.Helper()
	want, err := understudy.ParsePosition(p.GTIDBinlogPos(t))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	var have understudy.Position
	for time.Now().Before(deadline) {
		if a, err := archive.Open(dir); err == nil {
			have = a.Position()
			if have.ContainsPosition(want) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("archive %s at %q after %s, primary at %q", dir, have, timeout, want)
}

// archivedGTIDs lists the GTIDs in the archive's indexes, in order, and
// checks every sealed file's sha256.
func archivedGTIDs(t *testing.T, dir string) []understudy.GTID {
	t.Helper()
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []understudy.GTID
	for _, fi := range a.Files() {
		recs, err := a.Records(fi)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out = append(out, r.GTID)
		}
		// the data must agree with the index
		gs := mariadbtest.FileGTIDs(t, filepath.Join(dir, fi.Name))
		if got, want := len(gs), len(recs); got != want {
			t.Fatalf("%s: %d GTID events in the file, %d in the index", fi.Name, got, want)
		}
	}
	return out
}

// checkExactlyOnce proves every GTID the primary committed is archived
// exactly once and in order.
func checkExactlyOnce(t *testing.T, p *mariadbtest.Server, dir string) int {
	t.Helper()
	want := p.BinlogGTIDs(t)
	got := archivedGTIDs(t, dir)
	seen := map[understudy.GTID]int{}
	for _, g := range got {
		seen[g]++
		if seen[g] > 1 {
			t.Fatalf("GTID %s archived %d times", g, seen[g])
		}
	}
	if len(got) != len(want) {
		for _, g := range want {
			if seen[g] == 0 {
				t.Fatalf("GTID %s committed on the primary is missing from the archive (%d archived, %d on the primary)", g, len(got), len(want))
			}
		}
		t.Fatalf("archive has %d transactions, primary %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("transaction %d: archived %s, primary %s", i, got[i], want[i])
		}
	}
	return len(got)
}

// checkReplay exports the archive, replays it with mariadb-binlog | mariadb
// onto a fresh server and compares table checksums with the primary's.
func checkReplay(t *testing.T, cfg, source string, p *mariadbtest.Server, dbs ...string) {
	t.Helper()
	out := t.TempDir()
	var so, se strings.Builder
	if code := run([]string{"binlog", "export", "--config", cfg, "--source", source, "--dir", out}, &so, &se); code != 0 {
		t.Fatalf("export exited %d: %s", code, se.String())
	}
	files, _ := filepath.Glob(filepath.Join(out, "binlog.*"))
	if len(files) == 0 {
		t.Fatalf("export wrote no files: %s", so.String())
	}
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 999, NoBinlog: true})
	replay(t, target, files)
	sameChecksums(t, p, target, dbs...)
}

func replay(t *testing.T, target *mariadbtest.Server, files []string) {
	t.Helper()
	mb := exec.Command("mariadb-binlog", files...)
	my := exec.Command("mariadb", "--no-defaults", "-h127.0.0.1", fmt.Sprintf("-P%d", target.Port), "-uroot", "--max-allowed-packet=1G")
	pipe, err := mb.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	my.Stdin = pipe
	var e1, e2 strings.Builder
	mb.Stderr, my.Stderr = &e1, &e2
	if err := my.Start(); err != nil {
		t.Fatal(err)
	}
	if err := mb.Run(); err != nil {
		t.Fatalf("mariadb-binlog: %v: %s", err, e1.String())
	}
	if err := my.Wait(); err != nil {
		t.Fatalf("mariadb: %v: %s", err, e2.String())
	}
}

// workload writes to db on p until ctx ends: inserts, updates, deletes,
// multi-statement transactions and DDL. It returns the number of commits.
func workload(ctx context.Context, t *testing.T, p *mariadbtest.Server, db string, seed int64) int {
	t.Helper()
	conn := p.DB(t)
	mustExec(t, conn, fmt.Sprintf("CREATE DATABASE IF NOT EXISTS %s", db))
	mustExec(t, conn, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.t (id INT AUTO_INCREMENT PRIMARY KEY, k INT, v VARCHAR(200), b BLOB, d DECIMAL(12,3), j JSON, ts DATETIME(6), KEY k (k), UNIQUE KEY idk (id, k)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4", db))
	rng := rand.New(rand.NewSource(seed))
	n := 0
	for ctx.Err() == nil {
		var err error
		switch r := rng.Intn(20); {
		case r < 10:
			_, err = conn.Exec(fmt.Sprintf("INSERT INTO %s.t (k, v, b, d, j, ts) VALUES (?, ?, ?, ?, ?, NOW(6))", db),
				rng.Intn(1000), fmt.Sprintf("väl-%d-😀", rng.Int()), randBytes(rng, rng.Intn(2000)), fmt.Sprintf("%d.%03d", rng.Intn(1e6), rng.Intn(1000)), fmt.Sprintf(`{"n": %d}`, rng.Intn(100)))
		case r < 14:
			_, err = conn.Exec(fmt.Sprintf("UPDATE %s.t SET v = CONCAT(v, 'x'), k = k + 1 WHERE k = ?", db), rng.Intn(1000))
		case r < 16:
			_, err = conn.Exec(fmt.Sprintf("DELETE FROM %s.t WHERE k = ?", db), rng.Intn(1000))
		case r < 19:
			var tx *sql.Tx
			if tx, err = conn.Begin(); err == nil {
				for i := 0; i < 5 && err == nil; i++ {
					_, err = tx.Exec(fmt.Sprintf("INSERT INTO %s.t (k, v) VALUES (?, ?)", db), rng.Intn(1000), "tx")
				}
				if err == nil {
					err = tx.Commit()
				} else {
					tx.Rollback()
				}
			}
		default:
			tbl := fmt.Sprintf("%s.ddl_%d", db, rng.Intn(3))
			if _, err = conn.Exec("CREATE TABLE IF NOT EXISTS " + tbl + " (id INT PRIMARY KEY, c INT)"); err == nil {
				_, err = conn.Exec("ALTER TABLE " + tbl + " ADD COLUMN IF NOT EXISTS extra INT")
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			t.Errorf("workload on %s: %v", db, err)
			return n
		}
		n++
	}
	return n
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// loadSource loads a config and resolves one source.
func loadSource(path, name string) (understudy.Source, error) {
	c, err := config.Load(path)
	if err != nil {
		return understudy.Source{}, err
	}
	s, err := c.Source(name)
	if err != nil {
		return understudy.Source{}, err
	}
	return c.Resolve(s)
}

// startReplica points a fresh MariaDB replica at understudy's binlog
// server for a source (connection name conn) and starts it.
func startReplicaOf(t *testing.T, r *mariadbtest.Server, conn, addr string, extra string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	r.Exec(t, fmt.Sprintf("CHANGE MASTER '%s' TO MASTER_HOST='%s', MASTER_PORT=%s, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1%s",
		conn, host, port, serveUser, servePassword, extra))
	r.Exec(t, fmt.Sprintf("START SLAVE '%s'", conn))
}

// waitReplica waits until the replica's gtid_slave_pos contains want, and
// fails early with the replica's own error.
func waitReplica(t *testing.T, r *mariadbtest.Server, conn, want string, timeout time.Duration) {
	t.Helper()
	w, err := understudy.ParsePosition(want)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	var have string
	for time.Now().Before(deadline) {
		have = r.QueryString(t, "SELECT @@global.gtid_slave_pos")
		if p, err := understudy.ParsePosition(have); err == nil && p.ContainsPosition(w) {
			return
		}
		// Connection errors while understudy restarts are retried by the
		// replica; a fatal stream error or an applier error is final.
		if st := replicaStatus(t, r, conn); st["Last_SQL_Error"] != "" || strings.Contains(st["Last_IO_Error"], "fatal error") {
			t.Fatalf("replica connection %q failed: %s", conn, replicaError(t, r, conn))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("replica at %q after %s, want %q; status: %s", have, timeout, want, replicaError(t, r, conn))
}

// replicaError returns the IO or SQL error of a replica connection.
func replicaError(t *testing.T, r *mariadbtest.Server, conn string) string {
	t.Helper()
	st := replicaStatus(t, r, conn)
	if st == nil {
		return "no such connection"
	}
	var out []string
	for _, c := range []string{"Last_IO_Error", "Last_SQL_Error"} {
		if st[c] != "" {
			out = append(out, c+": "+st[c])
		}
	}
	return strings.Join(out, "; ")
}

// replicaStatus returns SHOW SLAVE 'conn' STATUS as a map, nil if none.
func replicaStatus(t *testing.T, r *mariadbtest.Server, conn string) map[string]string {
	t.Helper()
	rows, err := r.DB(t).Query(fmt.Sprintf("SHOW SLAVE '%s' STATUS", conn))
	if err != nil {
		if strings.Contains(err.Error(), "Error 1617") { // no such connection
			return nil
		}
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if !rows.Next() {
		return nil
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for i, c := range cols {
		out[c] = vals[i].String
	}
	return out
}

// sameChecksums compares the table checksums of a copy (replica, replay
// target) with the primary's.
func sameChecksums(t *testing.T, p, copy *mariadbtest.Server, dbs ...string) {
	t.Helper()
	checksumsEqual(t, p.Checksums(t, dbs...), copy.Checksums(t, dbs...), fmt.Sprintf("copy of %v on port %d", dbs, copy.Port))
}

// checksumsEqual compares table checksums; want must not be empty.
func checksumsEqual(t *testing.T, want, got map[string]string, what string) {
	t.Helper()
	mariadbtest.SameChecksums(t, what, want, got)
}
