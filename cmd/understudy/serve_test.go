package main

import (
	"context"
	"net"
	"path/filepath"
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
	purgeBinlogs(t, p)
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
