package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestDDLWhileSnapshotOpens: DDL just before the snapshot's position or
// just after it, before the definitions are read (a column added and
// filled, a table or a sequence created or dropped, a column added in
// place), abandons the snapshot, which opens again: its definitions might
// not have been those of its position. (A column added just before the
// position used to be left out of the chunks with the checksums agreeing;
// one added just after made a restore's replay fail.) DDL at every
// attempt gives up, naming the table, and leaves nothing behind. Every
// snapshot taken restores equal to the source at its position.
func TestDDLWhileSnapshotOpens(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE TABLE d.t (id INT PRIMARY KEY, v INT)")
	p.Exec(t, "INSERT INTO d.t SELECT seq, seq FROM d.seq_1_to_50")
	root := t.TempDir()
	var m *Manifest
	var dir string
	for _, tc := range []struct {
		name, ddl string
		after     bool
	}{
		{"column added and filled before", "ALTER TABLE d.t ADD COLUMN w INT NOT NULL DEFAULT 0; UPDATE d.t SET w = id * 10", false},
		{"table created before", "CREATE TABLE d.fresh (id INT PRIMARY KEY); INSERT INTO d.fresh VALUES (1), (2)", false},
		{"column added after", "ALTER TABLE d.t ADD COLUMN x INT NOT NULL DEFAULT 7", true},
		{"column added in place after", "ALTER TABLE d.t ADD COLUMN y INT NOT NULL DEFAULT 7, ALGORITHM=INPLACE", true},
		{"table created after", "CREATE TABLE d.late (id INT PRIMARY KEY)", true},
		{"sequence created after", "CREATE SEQUENCE d.s", true},
		{"table dropped after", "DROP TABLE d.late", true},
		{"index added after", "ALTER TABLE d.t ADD INDEX iv (v)", true},
		{"default changed after", "ALTER TABLE d.t ALTER COLUMN v SET DEFAULT 5", true},
		{"procedure created after", "CREATE PROCEDURE d.p() SELECT 1", true},
		{"trigger created after", "CREATE TRIGGER d.tr BEFORE INSERT ON d.t FOR EACH ROW SET NEW.v = NEW.v", true},
		{"check constraint added after", "ALTER TABLE d.t ADD CONSTRAINT pos CHECK (v > 0)", true},
		{"index added as the definitions are read", "ALTER TABLE d.t ADD INDEX iw (w)", true},
		{"table dropped as the definitions are read", "DROP TABLE d.fresh", true},
	} {
		var logs bytes.Buffer
		o := Options{Source: "s", DB: p.DB(t), Root: root, Threads: 2, Log: slog.New(slog.NewTextHandler(&logs, nil))}
		var once sync.Once
		hook := func() { once.Do(func() { p.Exec(t, tc.ddl) }) }
		if tc.after {
			o.afterBackupStage = hook
		} else {
			o.beforeBackupStage = hook
		}
		var err error
		if m, dir, err = Take(ctx, o); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !strings.Contains(logs.String(), "snapshot opened again") {
			t.Fatalf("%s: the snapshot did not open again:\n%s", tc.name, logs.String())
		}
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
		if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mariadbtest.SameChecksums(t, tc.name, p.Checksums(t, "d"), target.Checksums(t, "d"))
		target.Stop(t)
	}
	if tb := findTable(m, "d", "t"); tb == nil || strings.Join(tb.Columns, ",") != "id,v,w,x,y" {
		t.Fatalf("d.t in the last manifest: %+v", tb)
	}

	// DDL at every attempt: given up.
	n := 0
	o := Options{Source: "s", DB: p.DB(t), Root: root, Threads: 2}
	o.afterBackupStage = func() { n++; p.Exec(t, fmt.Sprintf("CREATE TABLE d.churn%d (id INT PRIMARY KEY)", n)) }
	before, _ := os.ReadDir(root)
	if _, _, err := Take(ctx, o); !errors.Is(err, ErrDDLDuring) || !strings.Contains(err.Error(), "d.churn") || n != ddlAttempts {
		t.Fatalf("DDL at every attempt (%d attempts): %v", n, err)
	}
	if after, _ := os.ReadDir(root); len(after) != len(before) {
		t.Fatalf("the abandoned snapshot left something in %s: %d entries, %d before", root, len(after), len(before))
	}
}

func TestChangedTables(t *testing.T) {
	mk := func(db, name string, cols ...string) tableInfo {
		ti := tableInfo{db: db}
		ti.t.Name, ti.t.Engine, ti.t.Columns, ti.shape = name, "InnoDB", cols, cols
		return ti
	}
	before := []tableInfo{mk("d", "a", "id"), mk("d", "b", "id", "v"), mk("d", "gone", "id")}
	after := []tableInfo{mk("d", "a", "id"), mk("d", "b", "id", "v", "w"), mk("d", "new", "id")}
	after[0].rowsEst = 1000 // row counts change without DDL
	if got := strings.Join(changedTables(before, after), ","); got != "d.b,d.gone,d.new" {
		t.Fatalf("changed: %s", got)
	}
	if got := changedTables(before, before); len(got) != 0 {
		t.Fatalf("no change: %v", got)
	}
}

// TestDDLDuringDump: a table emptied (TRUNCATE) or dropped while the rows
// are copied cannot be read in the snapshot's read view (1412, 1146): the
// snapshot is taken again, and holds the tables as they are then.
func TestDDLDuringDump(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE TABLE d.t (id INT PRIMARY KEY, v INT)")
	p.Exec(t, "CREATE TABLE d.gone (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO d.t SELECT seq, seq FROM d.seq_1_to_500")
	p.Exec(t, "INSERT INTO d.gone SELECT seq FROM d.seq_1_to_50")
	for _, ddl := range []string{"TRUNCATE TABLE d.t", "DROP TABLE d.gone"} {
		var logs bytes.Buffer
		o := Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2, Log: slog.New(slog.NewTextHandler(&logs, nil))}
		var once sync.Once
		o.beforeDump = func() { once.Do(func() { p.Exec(t, ddl) }) }
		m, dir, err := Take(ctx, o)
		if err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
		if !strings.Contains(logs.String(), "snapshot opened again") || !strings.Contains(logs.String(), "while its rows were copied") {
			t.Fatalf("%s: the snapshot did not open again:\n%s", ddl, logs.String())
		}
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
		if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true}); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
		mariadbtest.SameChecksums(t, ddl, p.Checksums(t, "d"), target.Checksums(t, "d"))
		target.Stop(t)
	}
}
