package binlogserver

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/archiver"
	"github.com/understudy-db/understudy/binlog"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

const (
	replUser, replPassword   = "repl", "repl-pw"
	serveUser, servePassword = "replica", "replica-pw"
)

// TestDamagedTransaction: one damaged transaction in a sealed or in the
// active file of an archive of a real primary. A MariaDB replica of the
// binlog server receives every transaction before it and then stops within
// seconds with ERR 1236 naming the file, the offset of the bad event and
// the transaction's GTID, never part of the damaged transaction; the
// server counts the error and keeps it as its last error.
func TestDamagedTransaction(t *testing.T) {
	pristine := archivePrimary(t)
	a, err := archive.Open(pristine)
	if err != nil {
		t.Fatal(err)
	}
	files := a.Files()
	var sealed, large, active archive.FileInfo
	var largeRec archive.Record
	for _, fi := range files {
		if fi.Sealed && sealed.Name == "" && fi.Transactions > 4 {
			sealed = fi
		}
		recs, err := a.Records(fi)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.End-rec.Start > maxBuffered && fi.Sealed {
				large, largeRec = fi, rec
			}
		}
	}
	if last := files[len(files)-1]; !last.Sealed && last.Transactions > 4 {
		active = last
	}
	if sealed.Name == "" || active.Name == "" || large.Name == "" {
		t.Fatalf("want a sealed and an active file of more than 4 transactions: %+v", files)
	}
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})

	for _, tc := range []struct {
		name   string
		file   archive.FileInfo
		pick   func(recs []archive.Record) archive.Record // default: the middle one
		damage func(t *testing.T, path string, ev event)  // ev: an event inside the transaction
		reason string
		// short: the file ends inside the transaction. The archive's
		// reader may see that first, when it checks the index against the
		// file: its message names the file and the transaction too.
		short bool
	}{
		{"sealed file, flipped byte", sealed, nil, func(t *testing.T, path string, ev event) {
			mariadbtest.FlipByte(t, path, ev.off+int64(ev.size)/2)
		}, "event checksum mismatch", false},
		{"large transaction (read twice), flipped byte", large, func([]archive.Record) archive.Record { return largeRec }, func(t *testing.T, path string, ev event) {
			mariadbtest.FlipByte(t, path, ev.off+int64(ev.size)-100)
		}, "event checksum mismatch", false},
		{"active file, flipped byte", active, nil, func(t *testing.T, path string, ev event) {
			mariadbtest.FlipByte(t, path, ev.off+binlog.HeaderSize)
		}, "event checksum mismatch", false},
		{"active file, event length past the transaction", active, nil, func(t *testing.T, path string, ev event) {
			mariadbtest.FlipByte(t, path, ev.off+11) // the third byte of the event's length
		}, "runs past the transaction's end", false},
		{"active file, short", active, nil, func(t *testing.T, path string, ev event) {
			if err := os.Truncate(path, ev.off+int64(ev.size)/2); err != nil {
				t.Fatal(err)
			}
		}, "short read: the file ends at offset", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(pristine)); err != nil {
				t.Fatal(err)
			}
			a, err := archive.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			recs, err := a.Records(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			// A transaction in the middle of the file; its second-to-last
			// event (the rows event before the XID) is damaged.
			i := len(recs) / 2
			if tc.pick != nil {
				for i = range recs {
					if recs[i] == tc.pick(recs) {
						break
					}
				}
			}
			bad := recs[i]
			evs := events(t, filepath.Join(dir, tc.file.Name), bad)
			ev := evs[len(evs)-2]
			before := understudy.Position{}
			for _, fi := range a.Files() {
				if fi.Name == tc.file.Name {
					before = fi.StartPosition
				}
			}
			for _, rec := range recs[:i] {
				before = before.With(rec.GTID)
			}
			tc.damage(t, filepath.Join(dir, tc.file.Name), ev)

			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			srv := serve(t, dir, m)
			resetReplica(t, r)
			began := time.Now()
			startReplica(t, r, srv.Addr().String())
			st := waitIOError(t, r, 15*time.Second)
			took := time.Since(began)

			want := fmt.Sprintf("the archive of source db is damaged: %s at offset %d (transaction %s): ", tc.file.Name, ev.off, bad.GTID)
			ioErr := st["Last_IO_Error"]
			if tc.short && !strings.Contains(ioErr, want) {
				// The archive's reader found it: the message names the
				// file and the transaction.
				want = "the archive of source db is damaged: "
				if !strings.Contains(ioErr, tc.file.Name) || !strings.Contains(ioErr, bad.GTID.String()) {
					t.Fatalf("Last_IO_Error %q names neither %s nor %s", ioErr, tc.file.Name, bad.GTID)
				}
				tc.reason = ""
			}
			if !strings.Contains(ioErr, "Got fatal error 1236 from master") || !strings.Contains(ioErr, want) ||
				!strings.Contains(ioErr, tc.reason) || !strings.Contains(ioErr, "run understudy verify") {
				t.Fatalf("Last_IO_Error %q, want ERR 1236 with %q … %q", ioErr, want, tc.reason)
			}
			if st["Slave_IO_Running"] != "No" || st["Last_IO_Errno"] != "1236" {
				t.Fatalf("Slave_IO_Running %q, Last_IO_Errno %q: want No, 1236", st["Slave_IO_Running"], st["Last_IO_Errno"])
			}
			t.Logf("replica stopped in %v: %s", took.Round(time.Millisecond), ioErr)

			// Everything before the damaged transaction arrives, none of it.
			if tc.reason != "" {
				waitPos(t, r, before.String(), 15*time.Second)
			}
			time.Sleep(300 * time.Millisecond)
			got, err := understudy.ParsePosition(r.QueryString(t, "SELECT @@global.gtid_slave_pos"))
			if err != nil {
				t.Fatal(err)
			}
			if got.Contains(bad.GTID) || tc.reason != "" && got.String() != before.String() {
				t.Fatalf("replica at %s, want %s (just before %s)", got, before, bad.GTID)
			}

			msg, at := srv.LastError()
			if !strings.Contains(msg, want) || at.Before(began) {
				t.Fatalf("LastError %q at %v, want %q after %v", msg, at, want, began)
			}
			if got := testutil.ToFloat64(m.Errors.WithLabelValues("db", KindCorrupt)); got < 1 {
				t.Fatalf("understudy_binlog_server_errors_total{kind=corrupt} %v, want at least 1", got)
			}
			if got := testutil.ToFloat64(m.Errors.WithLabelValues("db", KindPosition)); got != 0 {
				t.Fatalf("understudy_binlog_server_errors_total{kind=position} %v, want 0", got)
			}
		})
	}
}

// archivePrimary archives a real primary into a directory of small files
// and returns it: sealed files and an active one, each of many single-row
// transactions.
func archivePrimary(t *testing.T) string {
	t.Helper()
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, DomainID: 3})
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER "+replUser+"@'%' IDENTIFIED BY '"+replPassword+"'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO "+replUser+"@'%'")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(2000))")
	p.Exec(t, "CREATE TABLE app.big (id INT PRIMARY KEY, b LONGBLOB)")
	for i := 0; i < 60; i++ {
		p.Exec(t, "INSERT INTO app.t (v) VALUES (REPEAT(CHAR(65 + ? % 26), 1000))", i)
		if i == 30 {
			// a transaction larger than maxBuffered, in the middle of a file
			p.Exec(t, "INSERT INTO app.big VALUES (1, REPEAT('b', ?))", maxBuffered+maxBuffered/2)
		}
	}
	dir := t.TempDir()
	src := understudy.Source{Name: "db", Host: "127.0.0.1", Port: p.Port, User: replUser, Password: replPassword, ServerID: 9100, Heartbeat: 300 * time.Millisecond}
	ar := archiver.New(src, dir, testLogger(t), nil)
	ar.MaxFileSize = 20 << 10
	ar.UntilCaughtUp = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := ar.Run(ctx); err != nil {
		t.Fatalf("archiving the primary: %v", err)
	}
	return dir
}

// event is an event's place in an archived file.
type event struct {
	off  int64
	size uint32
}

// events lists the events of rec in the file at path.
func events(t *testing.T, path string, rec archive.Record) []event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, rec.End-rec.Start)
	if _, err := f.ReadAt(b, int64(rec.Start)); err != nil {
		t.Fatal(err)
	}
	var out []event
	for off := 0; off < len(b); {
		h, err := binlog.ParseHeader(b[off:])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, event{off: int64(rec.Start) + int64(off), size: h.Size})
		off += int(h.Size)
	}
	if len(out) < 3 {
		t.Fatalf("transaction %s has %d events, want a GTID, a rows event and more", rec.GTID, len(out))
	}
	return out
}

// serve runs a binlog server on dir until the test ends.
func serve(t *testing.T, dir string, m *Metrics) *Server {
	t.Helper()
	return runServer(t, Config{Source: "db", Dir: dir, User: serveUser, Password: servePassword, ServerID: 9001, Logger: testLogger(t), Metrics: m})
}

// runServer serves cfg on a loopback port until the test ends.
func runServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return srv
}

func resetReplica(t *testing.T, r *mariadbtest.Server) {
	t.Helper()
	db := r.DB(t)
	db.Exec("STOP SLAVE 'u'")
	db.Exec("RESET SLAVE 'u' ALL")
	r.Exec(t, "SET GLOBAL gtid_slave_pos = ''")
	r.Exec(t, "SET STATEMENT sql_log_bin=0 FOR DROP DATABASE IF EXISTS app")
}

func startReplica(t *testing.T, r *mariadbtest.Server, addr string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	r.Exec(t, fmt.Sprintf("CHANGE MASTER 'u' TO MASTER_HOST='%s', MASTER_PORT=%s, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
		host, port, serveUser, servePassword))
	r.Exec(t, "START SLAVE 'u'")
}

// waitIOError waits until the replica's IO thread reports an error.
func waitIOError(t *testing.T, r *mariadbtest.Server, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := replicaStatus(t, r)
		if st["Last_IO_Error"] != "" && st["Slave_IO_Running"] == "No" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("no IO error on the replica after %v: %v", timeout, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitPos(t *testing.T, r *mariadbtest.Server, want string, timeout time.Duration) {
	t.Helper()
	w, err := understudy.ParsePosition(want)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		have := r.QueryString(t, "SELECT @@global.gtid_slave_pos")
		if p, err := understudy.ParsePosition(have); err == nil && p.ContainsPosition(w) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica at %q after %v, want %s: %v", have, timeout, want, replicaStatus(t, r))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func replicaStatus(t *testing.T, r *mariadbtest.Server) map[string]string {
	t.Helper()
	rows, err := r.DB(t).Query("SHOW SLAVE 'u' STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	out := map[string]string{}
	if rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, c := range cols {
			out[c] = vals[i].String
		}
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger { return mariadbtest.Logger(t, slog.LevelInfo) }
