package drill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlog"
	"github.com/understudy-db/understudy/internal/labtest"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

func logger(t *testing.T) *slog.Logger { return mariadbtest.Logger(t, slog.LevelWarn) }

// archiveSource archives p as source "db" into dir until the returned
// function is called, which first waits until the archive holds p's
// gtid_binlog_pos.
func archiveSource(t *testing.T, p *mariadbtest.Server, dir string) (stop func()) {
	return labtest.Archive(t, labtest.Source(p, "db", 9100), dir, p, logger(t))
}

func takeSnapshot(t *testing.T, p *mariadbtest.Server, root string) *snapshot.Manifest {
	return labtest.TakeSnapshot(t, p, "db", root, 100)
}

func options(t *testing.T, dir string, target *mariadbtest.Server) Options {
	o := Options{Source: "db", ArchiveDir: dir, SnapshotRoot: filepath.Join(dir, "snapshots"), Threads: 2, Log: logger(t)}
	if target != nil {
		o.Target, o.TargetAddr = target.DB(t), fmt.Sprintf("127.0.0.1:%d", target.Port)
	}
	return o
}

func chunks(m *snapshot.Manifest) int {
	n := 0
	for _, d := range m.Databases {
		for _, tb := range d.Tables {
			n += len(tb.Chunks)
		}
	}
	return n
}

func record(t *testing.T, dir string) Record {
	t.Helper()
	r, ok, err := ReadRecord(dir)
	if err != nil || !ok {
		t.Fatalf("drill.json: ok=%v err=%v", ok, err)
	}
	return r
}

// userDatabases lists the databases of a server outside the system ones.
func userDatabases(t *testing.T, db *sql.DB) []string {
	t.Helper()
	dbs, err := userSchemas(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return dbs
}

// TestDrill follows a source through its drills. With one snapshot, the
// drill verifies it and replays the archive to its head, and the data it
// restored equals the primary's. With two snapshots and writes between
// them, it restores the older one on a given target and on a throwaway
// server, replays to the newer one's exact position and verifies it
// there, reports the RTO and records the result. A flipped byte in an
// archived transaction or in a snapshot's chunk is a problem (ErrProblem),
// recorded as failed, and the last success is kept. A target with data
// of its own is refused and left as it was.
func TestDrill(t *testing.T) {
	ctx := context.Background()
	p := labtest.StartPrimary(t, mariadbtest.Options{ServerID: 1, DomainID: 1})
	p.Exec(t, "CREATE DATABASE a")
	p.Exec(t, "CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(20), KEY v (v))")
	p.Exec(t, "CREATE TABLE a.nokey (n INT, s TEXT)")
	p.Exec(t, "INSERT INTO a.t SELECT seq, CONCAT('v', seq) FROM a.seq_1_to_500")
	p.Exec(t, "INSERT INTO a.nokey SELECT seq % 7, REPEAT('x', seq) FROM a.seq_1_to_50")

	dir := t.TempDir()
	root := filepath.Join(dir, "snapshots")
	stop := archiveSource(t, p, dir)
	m1 := takeSnapshot(t, p, root)
	for i := 0; i < 20; i++ {
		p.Exec(t, fmt.Sprintf("UPDATE a.t SET v = 'u%d' WHERE id %% 20 = %d", i, i))
	}
	p.Exec(t, "CREATE DATABASE b")
	p.Exec(t, "CREATE TABLE b.u (id INT AUTO_INCREMENT PRIMARY KEY, w INT)")
	p.Exec(t, "INSERT INTO b.u (w) SELECT seq FROM b.seq_1_to_300")
	p.Exec(t, "DELETE FROM a.nokey WHERE n = 3")
	stop()

	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 70, NoBinlog: true})

	t.Run("one snapshot: verified, then replayed to the archive's head", func(t *testing.T) {
		a, err := archive.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		head := a.Position()
		o := options(t, dir, target)
		o.Keep = true
		res, err := Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("proved: %s", res.Proved)
		if !res.OK || res.Snapshot != m1.ID || !res.Position.Equal(head) || res.Transactions != 24 || res.Chunks != chunks(m1) ||
			!strings.Contains(res.Proved, "up to the archive's head") {
			t.Fatalf("drill %+v; want snapshot %s replayed with 24 transactions to the head %s, %d chunks verified", res, m1.ID, head, chunks(m1))
		}
		if got := target.QueryString(t, "SELECT @@global.gtid_slave_pos"); got != head.String() {
			t.Fatalf("gtid_slave_pos %s, want the archive's head %s", got, head)
		}
		// Kept: what the drill restored is the primary's data.
		want, got := p.Checksums(t, "a", "b"), target.Checksums(t, "a", "b")
		if len(want) != 3 || fmt.Sprint(want) != fmt.Sprint(got) {
			t.Fatalf("restored tables %v, want the primary's %v", got, want)
		}
		target.Exec(t, "DROP DATABASE a")
		target.Exec(t, "DROP DATABASE b")
	})

	stop = archiveSource(t, p, dir)
	m2 := takeSnapshot(t, p, root)
	p.Exec(t, "INSERT INTO b.u (w) VALUES (-1)") // after the newest snapshot: not replayed
	stop()
	var between []archive.Record // the transactions between the snapshots
	var betweenFile archive.FileInfo
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range a.Files() {
		recs, err := a.Records(fi)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !m1.Position.Contains(r.GTID) && m2.Position.Contains(r.GTID) {
				between, betweenFile = append(between, r), fi
			}
		}
	}
	if len(between) != 24 {
		t.Fatalf("%d transactions between the snapshots, want 24", len(between))
	}
	var lastOK understudy.DrillResult

	t.Run("two snapshots on a given target", func(t *testing.T) {
		began := time.Now()
		res, err := Run(ctx, options(t, dir, target))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("drill took %s; proved: %s", time.Since(began).Round(time.Millisecond), res.Proved)
		if !res.OK || res.Snapshot != m1.ID || !res.Position.Equal(m2.Position) || res.Transactions != int64(len(between)) ||
			res.Chunks != chunks(m1)+chunks(m2) || res.Bytes <= 0 || res.Error != "" {
			t.Fatalf("drill %+v; want snapshot %s replayed with %d transactions to %s, %d chunks", res, m1.ID, len(between), m2.Position, chunks(m1)+chunks(m2))
		}
		if res.LoadSeconds <= 0 || res.ReplaySeconds <= 0 || res.RTOSeconds != res.LoadSeconds+res.ReplaySeconds {
			t.Fatalf("RTO %v = load %v + replay %v", res.RTOSeconds, res.LoadSeconds, res.ReplaySeconds)
		}
		for _, want := range []string{"snapshot " + m1.ID, "up to snapshot " + m2.ID + "'s position", "snapshot " + m2.ID + "'s " + fmt.Sprint(chunks(m2)) + " chunk checksums match"} {
			if !strings.Contains(res.Proved, want) {
				t.Errorf("proved %q; want it to say %q", res.Proved, want)
			}
		}
		r := record(t, dir)
		if !r.Last.Time.Equal(res.Time) || !r.Last.OK || r.LastSuccess == nil || !r.LastSuccess.Time.Equal(res.Time) {
			t.Fatalf("drill.json %+v; want this drill, passed", r)
		}
		if dbs := userDatabases(t, target.DB(t)); len(dbs) != 0 {
			t.Fatalf("the target keeps databases %v after the drill", dbs)
		}
		lastOK = res
	})

	t.Run("two snapshots on a throwaway server", func(t *testing.T) {
		began := time.Now()
		res, err := Run(ctx, options(t, dir, nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("drill with a scratch server took %s; RTO %.3fs", time.Since(began).Round(time.Millisecond), res.RTOSeconds)
		if !res.OK || !res.Position.Equal(m2.Position) || res.Chunks != chunks(m1)+chunks(m2) || res.RTOSeconds <= 0 {
			t.Fatalf("drill %+v", res)
		}
		lastOK = res
	})

	t.Run("a target with data of its own is refused", func(t *testing.T) {
		other := mariadbtest.Start(t, mariadbtest.Options{ServerID: 71, NoBinlog: true})
		other.Exec(t, "CREATE DATABASE mine")
		other.Exec(t, "CREATE TABLE mine.t (id INT PRIMARY KEY)")
		other.Exec(t, "INSERT INTO mine.t VALUES (1), (2)")
		before := other.Checksums(t, "mine")
		res, err := Run(ctx, options(t, dir, other))
		if err == nil || errors.Is(err, ErrProblem) || !strings.Contains(err.Error(), "holds data in databases mine") || strings.Contains(err.Error(), "\n") || !res.Time.IsZero() {
			t.Fatalf("drill onto a target with mine.t: %+v, %v; want a one-line refusal", res, err)
		}
		t.Log(err)
		if dbs := userDatabases(t, other.DB(t)); fmt.Sprint(dbs) != "[mine]" || fmt.Sprint(other.Checksums(t, "mine")) != fmt.Sprint(before) {
			t.Fatalf("the refused target was changed: %v", dbs)
		}
		if r := record(t, dir); !r.Last.Time.Equal(lastOK.Time) {
			t.Fatalf("a refused drill was recorded: %+v", r.Last)
		}
	})

	problem := func(t *testing.T, want ...string) {
		t.Helper()
		res, err := Run(ctx, options(t, dir, target))
		if !errors.Is(err, ErrProblem) || res.OK || res.Error != err.Error() {
			t.Fatalf("drill: %+v, %v; want a problem", res, err)
		}
		t.Log(err)
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q; want it to say %q", err, w)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error of several lines: %q", err)
		}
		r := record(t, dir)
		if r.Last.OK || !r.Last.Time.Equal(res.Time) || r.Last.Error != res.Error || r.LastSuccess == nil || !r.LastSuccess.Time.Equal(lastOK.Time) {
			t.Fatalf("drill.json %+v; want the failed drill last, and the success before it kept", r)
		}
		if dbs := userDatabases(t, target.DB(t)); len(dbs) != 0 {
			t.Fatalf("the target keeps databases %v after the failed drill", dbs)
		}
	}

	t.Run("a damaged archived transaction is a problem", func(t *testing.T) {
		bad := between[len(between)/2]
		path := filepath.Join(dir, betweenFile.Name)
		off := int64(bad.Start) + binlog.HeaderSize + 2
		mariadbtest.FlipByte(t, path, off)
		defer mariadbtest.FlipByte(t, path, off)
		problem(t, "the archive did not replay from snapshot "+m1.ID, "damage found: archived file "+betweenFile.Name, bad.GTID.String())
	})

	t.Run("a changed snapshot chunk is a problem", func(t *testing.T) {
		var file string
		for _, d := range m1.Databases {
			if d.Name == "a" {
				file = d.Tables[len(d.Tables)-1].Chunks[0].File
			}
		}
		path := filepath.Join(root, m1.ID, file)
		mariadbtest.FlipByte(t, path, 20)
		defer mariadbtest.FlipByte(t, path, 20)
		problem(t, "snapshot "+m1.ID+" did not restore", "damage found: snapshot "+m1.ID+": "+file)
	})

	t.Run("after the repair, the drill passes again", func(t *testing.T) {
		res, err := Run(ctx, options(t, dir, target))
		if err != nil || !res.OK {
			t.Fatalf("drill: %+v, %v", res, err)
		}
	})
}
