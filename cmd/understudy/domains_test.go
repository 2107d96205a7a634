package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestRestoreUntilGTIDTwoDomains: a primary writes in two GTID domains,
// interleaved. A restore --until-gtid with a point in each domain, where
// domain 2 passes its point long before domain 1 reaches its own, applies
// exactly the transactions up to each domain's point: the replay neither
// hangs at domain 2's later transactions nor applies them.
func TestRestoreUntilGTIDTwoDomains(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.a (id INT PRIMARY KEY)")
	p.Exec(t, "CREATE TABLE app.b (id INT PRIMARY KEY)")
	stop := startRun(t, cfg)
	takeSnapshotCmd(t, cfg)

	ctx := context.Background()
	d2, err := p.DB(t).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	mustExecConn := func(q string) {
		if _, err := d2.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mustExecConn("SET SESSION gtid_domain_id = 2")
	domainPos := func(d uint32) string {
		g, ok := mustPos(t, p.GTIDBinlogPos(t)).Domain(d)
		if !ok {
			t.Fatalf("no domain %d in %s", d, p.GTIDBinlogPos(t))
		}
		return g.String()
	}
	p.Exec(t, "INSERT INTO app.a VALUES (1)")
	mustExecConn("INSERT INTO app.b VALUES (1)")
	point2 := domainPos(2)
	mustExecConn("INSERT INTO app.b VALUES (2)")
	mustExecConn("INSERT INTO app.b VALUES (3)")
	p.Exec(t, "INSERT INTO app.a VALUES (2)")
	point1 := domainPos(1)
	p.Exec(t, "INSERT INTO app.a VALUES (3)")
	mustExecConn("INSERT INTO app.b VALUES (4)")
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()

	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
	done := make(chan struct{})
	go func() {
		defer close(done)
		restoreInto(t, cfg, target, "--until-gtid", point1+","+point2)
	}()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("restore --until-gtid %s,%s hung", point1, point2)
	}
	for table, want := range map[string]string{"a": "1,2", "b": "1"} {
		if got := target.QueryString(t, fmt.Sprintf("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.%s", table)); got != want {
			t.Fatalf("app.%s holds %s after the restore, want %s", table, got, want)
		}
	}
}
