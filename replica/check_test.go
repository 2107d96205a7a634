package replica

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

// TestCheck checks a freshly provisioned replica against the snapshot it
// was provisioned from, then, once the primary moved on, against a
// reference held at the replica's position, and finds a row changed and
// a row deleted on the replica behind replication's back (sql_log_bin=0),
// naming the table and the key. The replica replicates again after each
// check.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	one := startLab(t, "one", 1, 1, "alpha")
	target := startTarget(t)
	if _, err := Provision(ctx, provisionOpts(t, target, t.TempDir(), one)); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.List(one.snapshots())
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	opts := CheckOptions{Replica: target.DB(t), ReplicaAddr: fmt.Sprintf("127.0.0.1:%d", target.Port), Source: "one",
		Databases: []string{"alpha"}, Domains: []uint32{1}, Snapshots: snaps, Threads: 2, ChunkRows: 500, Log: testLogger(t)}

	// Right after provisioning the replica is at the snapshot's position.
	res, err := Check(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Equal || res.Reference != "snapshot "+snaps[0].Manifest.ID || res.Chunks == 0 || !res.At.Equal(snaps[0].Manifest.Position) {
		t.Fatalf("check against the snapshot: %+v", res)
	}

	// The primary moves on; the idle primary is the reference at G.
	one.primary.Exec(t, "INSERT INTO alpha.t (v, n) SELECT CONCAT('more', seq), seq FROM alpha.seq_1_to_1000")
	one.primary.Exec(t, "UPDATE alpha.t SET n = n * 2 WHERE id % 7 = 0")
	want, _ := understudy.ParsePosition(one.primary.GTIDBinlogPos(t))
	mariadbtest.Eventually(t, "the replica at "+want.String(), 30*time.Second, func() bool {
		p, err := GTIDSlavePos(ctx, target.DB(t))
		return err == nil && p.ContainsPosition(want)
	})
	opts.Reference = func(ctx context.Context, g understudy.Position) (*sql.DB, string, func(), error) {
		want, _ := understudy.ParsePosition(one.primary.GTIDBinlogPos(t))
		if !g.Equal(want) {
			return nil, "", nil, fmt.Errorf("asked for %s; the primary is at %s", g, want)
		}
		return one.primary.DB(t), "the idle primary", func() {}, nil
	}
	res, err = Check(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Equal || res.Reference != "the idle primary" || res.Chunks < 6 || res.Tables != 2 {
		t.Fatalf("check of a good replica: %+v", res)
	}

	// Against the primary under write load: the replica is run up to the
	// primary's consistent point.
	stop := one.writeLoad(t, "alpha")
	time.Sleep(300 * time.Millisecond)
	against := opts
	against.Reference, against.Primary, against.PrimaryAddr = nil, one.primary.DB(t), "the primary"
	res, err = Check(ctx, against)
	if n := stop(); n == 0 {
		t.Fatal("no load ran during the check against the primary")
	}
	if err != nil {
		t.Fatal(err)
	}
	if !res.Equal || !strings.HasPrefix(res.Reference, "the primary the primary at 1-1-") || res.Chunks < 6 {
		t.Fatalf("check against the primary under load: %+v", res)
	}
	t.Logf("against the primary: held %s at %s", res.Held, res.At)
	want, _ = understudy.ParsePosition(one.primary.GTIDBinlogPos(t))
	mariadbtest.Eventually(t, "the replica at "+want.String(), 30*time.Second, func() bool {
		p, err := GTIDSlavePos(ctx, target.DB(t))
		return err == nil && p.ContainsPosition(want)
	})

	// Drift behind replication's back.
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR UPDATE alpha.t SET v = 'drift' WHERE id = 42")
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR DELETE FROM alpha.t WHERE id = 2500")
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR DELETE FROM alpha.nokey WHERE a = 3 LIMIT 1")
	res, err = Check(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Equal || len(res.Diffs) != 3 {
		t.Fatalf("check of a drifted replica: %+v", res)
	}
	for _, d := range res.Diffs {
		t.Log(d.Describe())
	}
	var changed, missing, nokey bool
	for _, d := range res.Diffs {
		switch {
		case d.Table == "alpha.t" && slices.Equal(d.Changed, []string{"(42)"}) && d.Rows == 1:
			changed = true
		case d.Table == "alpha.t" && slices.Equal(d.Missing, []string{"(2500)"}) && d.Rows == 1:
			missing = true
		case d.Table == "alpha.nokey" && d.NoKey && slices.Equal(d.Missing, []string{"1 rows"}):
			nokey = true
		}
	}
	if !changed || !missing || !nokey {
		t.Fatalf("diffs %+v: want id 42 changed, id 2500 missing and one row of nokey missing", res.Diffs)
	}
	// A column only the replica has: the table's rows are not compared
	// (the checksum would hash the replica's columns on both sides), the
	// difference is reported.
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR ALTER TABLE alpha.t ADD COLUMN extra INT")
	res, err = Check(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	columns := false
	for _, d := range res.Diffs {
		t.Log(d.Describe())
		if d.Table == "alpha.t" {
			if !strings.Contains(d.Columns, "extra int), the reference (") || strings.Contains(d.Columns[strings.Index(d.Columns, "the reference"):], "extra") {
				t.Fatalf("alpha.t with a column only on the replica: %+v", d)
			}
			columns = true
		}
	}
	if res.Equal || !columns {
		t.Fatalf("check of a replica with an extra column: %+v", res)
	}
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR ALTER TABLE alpha.t DROP COLUMN extra")
	// Replication goes on.
	one.primary.Exec(t, "INSERT INTO alpha.t (v, n) VALUES ('after', 1)")
	want, _ = understudy.ParsePosition(one.primary.GTIDBinlogPos(t))
	mariadbtest.Eventually(t, "the replica replicating after the checks", 30*time.Second, func() bool {
		p, err := GTIDSlavePos(ctx, target.DB(t))
		return err == nil && p.ContainsPosition(want)
	})
	if st, _, _ := ConnStatus(ctx, target.DB(t), "one"); !st.Running() {
		t.Fatalf("connection after the checks: %v", st)
	}

	// A check against the primary that fails after opening its reads
	// (the replica is past the primary: it has a GTID the primary lacks)
	// closes them all: none stays open holding a read view on the primary.
	target.Exec(t, "STOP SLAVE 'one'")
	past := want.With(understudy.GTID{Domain: 1, ServerID: 1, Seq: want.GTIDs()[0].Seq + 1000})
	target.Exec(t, "SET GLOBAL gtid_slave_pos = '"+past.String()+"'")
	target.Exec(t, "START SLAVE 'one'")
	if _, err := Check(ctx, against); err == nil || !strings.Contains(err.Error(), "past the primary") {
		t.Fatalf("check of a replica past the primary: %v", err)
	}
	for name, db := range map[string]*sql.DB{"primary": one.primary.DB(t), "replica": target.DB(t)} {
		if n := db.Stats().InUse; n != 0 {
			t.Errorf("%d connections to the %s are still in use after the failed check", n, name)
		}
	}
}

// TestCommonTables: tables are paired by name; a table on one side only,
// or whose stored columns differ, is a Diff; a pair keeps the side asked
// for, NOT NULL only where both sides are.
func TestCommonTables(t *testing.T) {
	tb := func(name string, cols, types []string, notNull []bool, chunks int) snapshot.Table {
		t := snapshot.Table{Name: name, Columns: cols, Types: types, NotNull: notNull, PrimaryKey: cols[:1]}
		for range chunks {
			t.Chunks = append(t.Chunks, snapshot.Chunk{Where: "x"})
		}
		return t
	}
	replica := []snapshot.Database{{Name: "d", Tables: []snapshot.Table{
		tb("same", []string{"id", "a"}, []string{"int", "varchar"}, []bool{true, true}, 1),
		tb("typed", []string{"id", "a"}, []string{"int", "bigint"}, []bool{true, true}, 1),
		tb("mine", []string{"id"}, []string{"int"}, []bool{true}, 1),
	}}}
	ref := []snapshot.Database{{Name: "d", Tables: []snapshot.Table{
		tb("same", []string{"id", "a"}, []string{"int", "varchar"}, []bool{true, false}, 3),
		tb("typed", []string{"id", "a"}, []string{"int", "int"}, []bool{true, true}, 3),
		tb("theirs", []string{"id"}, []string{"int"}, []bool{true}, 3),
	}}}
	for _, keepRef := range []bool{false, true} {
		out, diffs := commonTables(replica, ref, keepRef)
		if len(out) != 1 || len(out[0].Tables) != 1 || out[0].Tables[0].Name != "same" {
			t.Fatalf("keepRef %v: tables %+v", keepRef, out)
		}
		kept := out[0].Tables[0]
		if want := map[bool]int{false: 1, true: 3}[keepRef]; len(kept.Chunks) != want {
			t.Fatalf("keepRef %v: the kept table has %d chunks, want %d (its side's)", keepRef, len(kept.Chunks), want)
		}
		if fmt.Sprint(kept.NotNull) != "[true false]" {
			t.Fatalf("keepRef %v: not_null %v, want [true false]", keepRef, kept.NotNull)
		}
		var got []string
		for _, d := range diffs {
			got = append(got, d.Describe())
		}
		slices.Sort(got)
		want := []string{
			"d.mine (primary key): 0 rows on the replica, 0 in the reference; 0 rows differ: only on the replica the whole table",
			"d.theirs (primary key): 0 rows on the replica, 0 in the reference; 0 rows differ: missing on the replica the whole table",
			"d.typed: the stored columns differ, its rows were not compared: the replica has (id int, a bigint), the reference (id int, a int)",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("keepRef %v: diffs\n%s\nwant\n%s", keepRef, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
