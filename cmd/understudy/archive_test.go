package main

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestMultiSource archives two primaries with their own GTID domains in one
// process while both take writes, then proves exactly-once and replays.
func TestMultiSource(t *testing.T) {
	p1 := startPrimary(t, 1, 1, "--max-binlog-size=1048576")
	p2 := startPrimary(t, 2, 2)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db1", p: p1, serverID: 9001}, testSource{name: "db2", p: p2, serverID: 9002})
	// some history before understudy starts, some while it runs
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	workload(ctx, t, p1, "app1", 1)
	cancel()
	stop := startRun(t, cfg)
	ctx, cancel = context.WithTimeout(context.Background(), 4*time.Second)
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, p := range []struct {
		s  interface{}
		db string
	}{{p1, "app1"}, {p2, "app2"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv := p1
			if i == 1 {
				srv = p2
			}
			counts[i] = workload(ctx, t, srv, p.db, int64(10+i))
		}()
	}
	wg.Wait()
	cancel()
	waitArchived(t, filepath.Join(dir, "archive", "db1"), p1, 30*time.Second)
	waitArchived(t, filepath.Join(dir, "archive", "db2"), p2, 30*time.Second)
	stop()
	n1 := checkExactlyOnce(t, p1, filepath.Join(dir, "archive", "db1"))
	n2 := checkExactlyOnce(t, p2, filepath.Join(dir, "archive", "db2"))
	t.Logf("archived %d + %d transactions (workload commits %v)", n1, n2, counts)
	if n1 < 100 || n2 < 100 {
		t.Fatalf("workload too small to prove anything: %d/%d transactions", n1, n2)
	}
	checkReplay(t, cfg, "db1", p1, "app1")
	checkReplay(t, cfg, "db2", p2, "app2")
}
