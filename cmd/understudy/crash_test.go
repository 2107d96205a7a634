package main

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/archiver"
)

// TestKill9DuringWrites kills `understudy run` with SIGKILL at random
// moments while the primary takes writes and DDL, restarts it each time,
// and proves that nothing was lost or doubled.
func TestKill9DuringWrites(t *testing.T) {
	p := startPrimary(t, 1, 3)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9100})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); workload(ctx, t, p, "app", 42) }()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	pr := startProc(t, cfg)
	for i := 0; i < 8; i++ {
		time.Sleep(time.Duration(200+rng.Intn(900)) * time.Millisecond)
		pr.kill9()
		pr = startProc(t, cfg)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 60*time.Second)
	pr.stop(t)
	n := checkExactlyOnce(t, p, filepath.Join(dir, "archive", "db"))
	t.Logf("%d transactions archived exactly once across 8 kill -9", n)
	log, _ := os.ReadFile(filepath.Join(dir, "understudy.log"))
	if !strings.Contains(string(log), "archive opened") {
		t.Fatalf("no run log: %s", log)
	}
	checkReplay(t, cfg, "db", p, "app")
}

// TestPrimaryRestart restarts the primary, gracefully and with SIGKILL,
// while understudy streams from it.
func TestPrimaryRestart(t *testing.T) {
	p := startPrimary(t, 1, 4)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9200})
	stop := startRun(t, cfg)
	for round, kill := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		workload(ctx, t, p, "app", int64(round))
		cancel()
		if kill {
			p.Kill(t)
		} else {
			p.Stop(t)
		}
		time.Sleep(700 * time.Millisecond) // understudy sees the primary gone
		p.Restart(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	workload(ctx, t, p, "app", 7)
	cancel()
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 60*time.Second)
	stop()
	checkExactlyOnce(t, p, filepath.Join(dir, "archive", "db"))
	checkReplay(t, cfg, "db", p, "app")
}

// TestLargeTransaction streams a transaction of more than 200 MB and checks
// that understudy's memory stays bounded.
func TestLargeTransaction(t *testing.T) {
	p := startPrimary(t, 1, 5)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9300})
	pr := startProc(t, cfg)
	p.Exec(t, "CREATE DATABASE big")
	p.Exec(t, "CREATE TABLE big.t (id INT PRIMARY KEY, pad VARCHAR(2000)) ENGINE=InnoDB")
	p.Exec(t, "SET SESSION max_statement_time=0")
	// 220,000 rows of ~1 KB in one transaction: ~225 MB of row events.
	p.Exec(t, "INSERT INTO big.t SELECT seq, REPEAT(SHA2(seq, 256), 16) FROM big.seq_1_to_220000")
	p.Exec(t, "UPDATE big.t SET pad = 'small' WHERE id <= 10")
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 120*time.Second)
	rss := pr.peakRSS(t)
	pr.stop(t)
	a, err := archive.Open(filepath.Join(dir, "archive", "db"))
	if err != nil {
		t.Fatal(err)
	}
	var biggest uint32
	for _, fi := range a.Files() {
		recs, _ := a.Records(fi)
		for _, r := range recs {
			biggest = max(biggest, r.End-r.Start)
		}
	}
	t.Logf("largest archived transaction %d MB, peak RSS %d MB", biggest>>20, rss>>20)
	if biggest < 200<<20 {
		t.Fatalf("largest transaction is %d bytes, want > 200 MB", biggest)
	}
	if rss > 96<<20 {
		t.Fatalf("peak RSS %d MB while archiving a %d MB transaction; memory is not bounded", rss>>20, biggest>>20)
	}
	checkExactlyOnce(t, p, filepath.Join(dir, "archive", "db"))
	checkReplay(t, cfg, "db", p, "big")
}

// TestSemiSyncKill9 kills understudy right after each commit returns to the
// client on a semi-sync primary: the transaction must already be archived.
func TestSemiSyncKill9(t *testing.T) {
	p := startPrimary(t, 1, 6, "--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-master-timeout=30000", "--rpl-semi-sync-master-wait-point=AFTER_SYNC")
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9400, semiSync: true})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(100))")
	archDir := filepath.Join(dir, "archive", "db")
	noTx := func() string {
		return p.QueryString(t, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_MASTER_NO_TX'")
	}
	var before string
	for i := 1; i <= 6; i++ {
		pr := startProc(t, cfg)
		waitArchived(t, archDir, p, 30*time.Second)
		waitSemiSyncClients(t, p)
		if i == 1 {
			before = noTx() // the setup ran before any semi-sync replica
		}
		start := time.Now()
		p.Exec(t, "INSERT INTO app.t VALUES (?, 'committed')", i)
		pr.kill9() // right after the commit returned
		t.Logf("round %d: commit took %s", i, time.Since(start))
		g, err := understudy.ParsePosition(p.GTIDBinlogPos(t))
		if err != nil {
			t.Fatal(err)
		}
		a, err := archive.Open(archDir)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Position().ContainsPosition(g) {
			t.Fatalf("round %d: commit returned at %s but the archive after kill -9 holds only %s", i, g, a.Position())
		}
	}
	if got := noTx(); got != before {
		t.Fatalf("Rpl_semi_sync_master_no_tx went from %s to %s: some commits were not acknowledged semi-synchronously", before, got)
	}
	checkExactlyOnce(t, p, archDir)
}

func waitSemiSyncClients(t *testing.T, p interface {
	QueryString(testing.TB, string, ...any) string
}) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.QueryString(t, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_MASTER_CLIENTS'") == "1" &&
			p.QueryString(t, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_MASTER_STATUS'") == "ON" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("understudy never registered as a semi-sync replica")
}

// TestSilentPrimary: a primary that goes silent without closing the
// connection (SIGSTOP, as behind a partition) is noticed by the heartbeat
// watchdog; once it is back, archiving resumes without loss.
func TestSilentPrimary(t *testing.T) {
	p := startPrimary(t, 1, 1)
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	src := testSrc(p, replUser, replPassword, 9900)
	dir := t.TempDir()
	a := archiver.New(src, dir, newLogger(testWriter{t}, false, false), nil)
	a.MaxBackoff = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitArchived(t, dir, p, 20*time.Second)
	p.Pause(t)
	resumed := false
	defer func() {
		if !resumed {
			p.Resume(t)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(a.Status().LastError, "no event or heartbeat") {
		if time.Now().After(deadline) {
			t.Fatalf("the silent primary was not noticed: %+v", a.Status())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("noticed: %s", a.Status().LastError)
	p.Resume(t)
	resumed = true
	p.Exec(t, "INSERT INTO app.t VALUES (1), (2)")
	waitArchived(t, dir, p, 60*time.Second)
	if st := a.Status(); st.State != understudy.StateStreaming {
		t.Fatalf("state %s after the primary came back", st.State)
	}
	checkExactlyOnce(t, p, dir)
}
