package main

import (
	"context"
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
