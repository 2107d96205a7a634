package snapshot

import (
	"context"
	"strings"
	"testing"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestDDLJustBeforeSnapshot: DDL that ends just before the snapshot
// blocks DDL (a column added and filled, a table created and filled, a
// procedure created) is in the snapshot: the tables, columns and objects
// are read while DDL is blocked, and the restored data equals the
// source's at the snapshot's position.
func TestDDLJustBeforeSnapshot(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE TABLE d.t (id INT PRIMARY KEY, v INT)")
	p.Exec(t, "INSERT INTO d.t SELECT seq, seq FROM d.seq_1_to_50")
	o := Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2}
	o.beforeBackupStage = func() {
		p.Exec(t, "ALTER TABLE d.t ADD COLUMN w INT NOT NULL DEFAULT 0")
		p.Exec(t, "UPDATE d.t SET w = id * 10")
		p.Exec(t, "CREATE TABLE d.fresh (id INT PRIMARY KEY)")
		p.Exec(t, "INSERT INTO d.fresh VALUES (1), (2)")
		p.Exec(t, "CREATE PROCEDURE d.p() SELECT 1")
	}
	m, dir, err := Take(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if tb := findTable(m, "d", "t"); tb == nil || strings.Join(tb.Columns, ",") != "id,v,w" {
		t.Fatalf("d.t in the manifest: %+v", tb)
	}
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true}); err != nil {
		t.Fatal(err)
	}
	want, got := p.Checksums(t, "d"), target.Checksums(t, "d")
	if len(want) != 2 || len(got) != 2 {
		t.Fatalf("tables: %v on the source, %v on the target", want, got)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: checksum %q on the target, %q on the source", name, got[name], w)
		}
	}
	if got := target.QueryString(t, "SELECT SUM(w) FROM d.t"); got != "12750" {
		t.Errorf("d.t.w on the target sums to %s, want 12750", got)
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'd'"); got != "1" {
		t.Errorf("%s procedures on the target", got)
	}
}
