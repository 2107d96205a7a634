package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestServeReplicaFromScratch: a fresh MariaDB replica replicates the whole
// archive from understudy, follows live writes, and ends with the
// primary's checksums.
func TestServeReplicaFromScratch(t *testing.T) {
	p := startPrimary(t, 1, 1)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	workload(ctx, t, p, "app", 1)
	cancel()
	startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)

	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplicaOf(t, r, "u", addr, "")
	waitReplica(t, r, "u", p.GTIDBinlogPos(t), 60*time.Second)
	// live tailing
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	workload(ctx, t, p, "app", 2)
	cancel()
	waitReplica(t, r, "u", p.GTIDBinlogPos(t), 60*time.Second)
	sameChecksums(t, p, r, "app")
}

// TestServeAfterPurge: the primary purged its binlogs; a new replica still
// catches up from the archive.
func TestServeAfterPurge(t *testing.T) {
	p := startPrimary(t, 1, 1)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: addr})
	startRun(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	workload(ctx, t, p, "app", 3)
	cancel()
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	p.PurgeBinlogs(t)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplicaOf(t, r, "u", addr, "")
	waitReplica(t, r, "u", p.GTIDBinlogPos(t), 60*time.Second)
	sameChecksums(t, p, r, "app")
}

// TestServeRestartMidStream kills understudy with -9 while a replica
// streams from it during writes; the replica reconnects and ends equal.
func TestServeRestartMidStream(t *testing.T) {
	p := startPrimary(t, 1, 1)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: addr})
	pr := startProc(t, cfg)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	time.Sleep(500 * time.Millisecond)
	startReplicaOf(t, r, "u", addr, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); workload(ctx, t, p, "app", 4) }()
	for i := 0; i < 3; i++ {
		time.Sleep(900 * time.Millisecond)
		pr.kill9()
		time.Sleep(300 * time.Millisecond)
		pr = startProc(t, cfg)
	}
	cancel()
	<-done
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	waitReplica(t, r, "u", p.GTIDBinlogPos(t), 90*time.Second)
	sameChecksums(t, p, r, "app")
	if got, want := r.QueryString(t, "SELECT @@gtid_slave_pos"), p.GTIDBinlogPos(t); got != want {
		t.Fatalf("replica gtid_slave_pos %s, primary %s", got, want)
	}
}

// TestServeStopPoints: understudy serve holds a replica exactly at a GTID,
// a time or just before a GTID; START SLAVE UNTIL master_gtid_pos works.
func TestServeStopPoints(t *testing.T) {
	p := startPrimary(t, 1, 1)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: freeAddr(t)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	workload(ctx, t, p, "app", 5)
	cancel()
	time.Sleep(1100 * time.Millisecond)
	mid := p.GTIDBinlogPos(t)
	midSums := p.Checksums(t, "app")
	at := time.Now().UTC().Truncate(time.Second)
	time.Sleep(1100 * time.Millisecond)
	p.Exec(t, "INSERT INTO app.t (k, v) VALUES (1, 'after the stop point')")
	next := p.GTIDBinlogPos(t)
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	workload(ctx, t, p, "app", 6)
	cancel()
	stop := startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()

	for _, tc := range []struct{ name, flag, value string }{
		{"until-gtid", "--until-gtid", mid},
		{"until-time", "--until-time", at.Format(time.RFC3339)},
		{"before-gtid", "--before-gtid", next},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			serveInProcess(t, cfg, "--listen", addr, tc.flag, tc.value)
			r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
			startReplicaOf(t, r, "u", addr, "")
			waitReplica(t, r, "u", mid, 60*time.Second)
			time.Sleep(1500 * time.Millisecond) // it must stay there
			if got := r.QueryString(t, "SELECT @@gtid_slave_pos"); got != mid {
				t.Fatalf("replica at %s, want exactly %s", got, mid)
			}
			if e := replicaError(t, r, "u"); e != "" {
				t.Fatalf("replica error at the stop point: %s", e)
			}
			got := r.Checksums(t, "app")
			for k, v := range midSums {
				if got[k] != v {
					t.Fatalf("table %s: checksum %q at the stop point, %q on the primary then", k, got[k], v)
				}
			}
		})
	}

	t.Run("start slave until", func(t *testing.T) {
		addr := freeAddr(t)
		serveInProcess(t, cfg, "--listen", addr)
		r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
		host, port, _ := net.SplitHostPort(addr)
		r.Exec(t, "CHANGE MASTER 'u' TO MASTER_HOST='"+host+"', MASTER_PORT="+port+", MASTER_USER='"+serveUser+"', MASTER_PASSWORD='"+servePassword+"', MASTER_USE_GTID=slave_pos")
		r.Exec(t, "START SLAVE 'u' UNTIL master_gtid_pos='"+mid+"'")
		waitReplica(t, r, "u", mid, 60*time.Second)
		deadline := time.Now().Add(10 * time.Second)
		for replicaStatus(t, r, "u")["Slave_IO_Running"] == "Yes" {
			if time.Now().After(deadline) {
				t.Fatal("the replica's IO thread did not stop at its UNTIL position")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := r.QueryString(t, "SELECT @@gtid_slave_pos"); got != mid {
			t.Fatalf("replica at %s, want %s", got, mid)
		}
	})
}

// serveInProcess runs `understudy serve --source db ARGS` until the test
// ends, and waits until it listens.
func serveInProcess(t *testing.T, cfg string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cmdServe(ctx, append([]string{"--config", cfg, "--source", "db"}, args...), testWriter{t}, testWriter{t})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	addr := ""
	for i, a := range args {
		if a == "--listen" {
			addr = args[i+1]
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never listened on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeRefusals: a wrong password is refused, and GTIDs the archive
// does not have get a clear ERR 1236 that stops the replica.
func TestServeRefusals(t *testing.T) {
	p := startPrimary(t, 1, 1)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: addr})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO app.t VALUES (1), (2)")
	startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	end := p.GTIDBinlogPos(t) // 1-1-N
	host, port, _ := net.SplitHostPort(addr)

	waitIOError := func(r *mariadbtest.Server, want string) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if e := replicaStatus(t, r, "u")["Last_IO_Error"]; strings.Contains(e, want) {
				return e
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("replica never reported %q; status: %s", want, replicaError(t, r, "u"))
		return ""
	}

	t.Run("wrong password", func(t *testing.T) {
		r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
		r.Exec(t, "CHANGE MASTER 'u' TO MASTER_HOST='"+host+"', MASTER_PORT="+port+", MASTER_USER='"+serveUser+"', MASTER_PASSWORD='wrong', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1")
		r.Exec(t, "START SLAVE 'u'")
		t.Log(waitIOError(r, "Access denied"))
	})
	t.Run("GTID beyond the archive", func(t *testing.T) {
		r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
		r.Exec(t, "SET GLOBAL gtid_slave_pos = '1-1-999999'")
		startReplicaOf(t, r, "u", addr, "")
		e := waitIOError(r, "1236")
		if !strings.Contains(e, "beyond the archive of source db, which ends at "+end) {
			t.Fatalf("unclear error: %s", e)
		}
		if st := replicaStatus(t, r, "u"); st["Slave_IO_Running"] != "No" {
			t.Fatalf("IO thread %s after ERR 1236, want it stopped", st["Slave_IO_Running"])
		}
	})
	t.Run("GTID from another server", func(t *testing.T) {
		r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
		r.Exec(t, "SET GLOBAL gtid_slave_pos = '1-7-2'")
		startReplicaOf(t, r, "u", addr, "")
		e := waitIOError(r, "1236")
		if !strings.Contains(e, "1-7-2 is not in the archive of source db") {
			t.Fatalf("unclear error: %s", e)
		}
	})
	t.Run("file and position mode", func(t *testing.T) {
		r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
		r.Exec(t, "CHANGE MASTER 'u' TO MASTER_HOST='"+host+"', MASTER_PORT="+port+", MASTER_USER='"+serveUser+"', MASTER_PASSWORD='"+servePassword+"', MASTER_USE_GTID=no, MASTER_CONNECT_RETRY=1")
		r.Exec(t, "START SLAVE 'u'")
		waitIOError(r, "MASTER_USE_GTID=slave_pos")
	})
}

// TestServeMultiSource: one MariaDB replica follows two sources served by
// understudy, one connection each.
func TestServeMultiSource(t *testing.T) {
	p1 := startPrimary(t, 1, 1)
	p2 := startPrimary(t, 2, 2)
	dir := t.TempDir()
	a1, a2 := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db1", p: p1, serverID: 9001, serve: a1}, testSource{name: "db2", p: p2, serverID: 9002, serve: a2})
	startRun(t, cfg)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplicaOf(t, r, "one", a1, "")
	startReplicaOf(t, r, "two", a2, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	done := make(chan struct{})
	go func() { defer close(done); workload(ctx, t, p1, "app1", 7) }()
	workload(ctx, t, p2, "app2", 8)
	<-done
	cancel()
	waitReplica(t, r, "one", p1.GTIDBinlogPos(t), 60*time.Second)
	waitReplica(t, r, "two", p2.GTIDBinlogPos(t), 60*time.Second)
	sameChecksums(t, p1, r, "app1")
	sameChecksums(t, p2, r, "app2")
}
