package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

// statusJSON runs `understudy status --json` (the on-disk view when run
// is stopped) and returns the source's status.
func statusJSON(t *testing.T, cfg string) understudy.SourceStatus {
	t.Helper()
	var so, se strings.Builder
	if code := run([]string{"status", "--config", cfg, "--json"}, &so, &se); code != 0 {
		t.Fatalf("status exited %d: %s", code, se.String())
	}
	var st []understudy.SourceStatus
	if err := json.Unmarshal([]byte(so.String()), &st); err != nil || len(st) != 1 {
		t.Fatalf("status --json: %v: %s", err, so.String())
	}
	return st[0]
}

// waitSnapshots waits until the source has n snapshots.
func waitSnapshots(t *testing.T, dir string, n int, timeout time.Duration) []snapshot.Listed {
	t.Helper()
	root := filepath.Join(dir, "archive", "db", "snapshots")
	deadline := time.Now().Add(timeout)
	for {
		list, err := snapshot.List(root)
		if err == nil && len(list) >= n {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d snapshots after %s, want %d", len(list), timeout, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func insertRows(t *testing.T, p *mariadbtest.Server, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		p.Exec(t, "INSERT INTO app.t (v) VALUES (?)", fmt.Sprintf("row-%d-%d", time.Now().UnixNano(), i))
	}
}

// restoreRefused runs a restore that must be refused before anything is
// written, with an error that contains want.
func restoreRefused(t *testing.T, cfg string, target *mariadbtest.Server, want string, args ...string) string {
	t.Helper()
	var so, se strings.Builder
	all := append([]string{"restore", "--config", cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port)}, args...)
	if code := run(all, &so, &se); code == 0 || !strings.Contains(se.String(), want) || strings.Count(strings.TrimSpace(se.String()), "\n") > 0 {
		t.Fatalf("restore %v: exit %d, %q; want a one-line refusal containing %q", args, code, se.String(), want)
	}
	if n := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'"); n != "0" {
		t.Fatalf("a refused restore created database app on the target")
	}
	return se.String()
}

// TestAdoptPurgedPrimary: a primary installed the usual way, which flushed
// its binlogs several times and purged all but the newest, with data
// written before and after. A fresh archive adopts it at the oldest
// position it still holds, takes a base snapshot at once, and a restore to
// a later GTID equals the primary.
func TestAdoptPurgedPrimary(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "    snapshot:\n      threads: 2\n")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100))")
	for i := 0; i < 3; i++ {
		insertRows(t, p, 20)
		p.Exec(t, "FLUSH BINARY LOGS")
	}
	insertRows(t, p, 10)
	p.PurgeBinlogs(t)
	oldest := p.GTIDBinlogPos(t)
	insertRows(t, p, 15)

	stop := startRun(t, cfg)
	list := waitSnapshots(t, dir, 1, 60*time.Second)
	if !list[0].Manifest.Position.ContainsPosition(mustPos(t, oldest)) {
		t.Fatalf("base snapshot at %s, before the archive's start %s", list[0].Manifest.Position, oldest)
	}
	insertRows(t, p, 25)
	p.Exec(t, "UPDATE app.t SET v = CONCAT(v, '!') WHERE id % 3 = 0")
	want, wantPos := p.Checksums(t, "app"), p.GTIDBinlogPos(t)
	insertRows(t, p, 5) // after the point
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()

	st := statusJSON(t, cfg)
	if st.Generation != 1 || st.ArchiveStart != oldest || !strings.Contains(st.ArchiveStartReason, "oldest") {
		t.Fatalf("status: generation %d starting at %q (%s); want 1 at %s, the oldest position the primary held", st.Generation, st.ArchiveStart, st.ArchiveStartReason, oldest)
	}
	if len(st.RestoreWindows) != 1 || st.RestoreWindows[0].PointOnly {
		t.Fatalf("restore windows %+v, want one", st.RestoreWindows)
	}

	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
	restoreInto(t, cfg, target, "--until-gtid", wantPos)
	checksumsEqual(t, want, target.Checksums(t, "app"), "restore of an adopted primary")

	// A point before the adoption was purged before understudy ever saw it.
	other := mariadbtest.Start(t, mariadbtest.Options{ServerID: 81, NoBinlog: true})
	restoreRefused(t, cfg, other, "restore window", "--until-gtid", "1-1-3")
}

func mustPos(t *testing.T, s string) understudy.Position {
	t.Helper()
	p, err := understudy.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGapGeneration: understudy is stopped, the primary writes, flushes and
// purges, understudy starts again. A new generation begins with a base
// snapshot; the gap is shown by status, info and verify; a restore to a
// point inside the gap is refused naming the windows; a restore in the new
// generation equals the primary, and the old generation still restores at
// its own points.
func TestGapGeneration(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "    snapshot:\n      threads: 2\n")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100))")
	insertRows(t, p, 10)
	stop := startRun(t, cfg)
	waitSnapshots(t, dir, 1, 60*time.Second)
	insertRows(t, p, 10)
	gen1, gen1Pos := p.Checksums(t, "app"), p.GTIDBinlogPos(t)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()

	insertRows(t, p, 10) // purged before understudy sees them
	inGap := p.GTIDBinlogPos(t)
	insertRows(t, p, 5)
	p.PurgeBinlogs(t)
	insertRows(t, p, 10)

	stop = startRun(t, cfg)
	list := waitSnapshots(t, dir, 2, 60*time.Second)
	insertRows(t, p, 10)
	gen2, gen2Pos := p.Checksums(t, "app"), p.GTIDBinlogPos(t)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()
	if !list[1].Manifest.Position.ContainsPosition(mustPos(t, inGap)) {
		t.Fatalf("the new generation's base snapshot is at %s, inside the gap", list[1].Manifest.Position)
	}

	st := statusJSON(t, cfg)
	if st.Generation != 2 || len(st.Gaps) != 1 || st.Gaps[0].From.String() != gen1Pos || len(st.RestoreWindows) != 2 {
		t.Fatalf("status: generation %d, gaps %+v, windows %+v; want generation 2 after one gap from %s and two windows", st.Generation, st.Gaps, st.RestoreWindows, gen1Pos)
	}
	var so, se strings.Builder
	if code := run([]string{"status", "--config", cfg}, &so, &se); code != 0 || !strings.Contains(strings.ToLower(so.String()), "gap") {
		t.Fatalf("status text does not show the gap (exit %d): %s%s", code, so.String(), se.String())
	}
	so.Reset()
	if code := run([]string{"info", "--config", cfg, "--json"}, &so, &se); code != 0 || !strings.Contains(so.String(), gen1Pos) || !strings.Contains(so.String(), "\"gap\"") {
		t.Fatalf("info --json (exit %d) does not show the gap from %s: %s%s", code, gen1Pos, so.String(), se.String())
	}
	so.Reset()
	if code := run([]string{"verify", "--config", cfg, "--source", "db"}, &so, &se); code != 0 || !strings.Contains(strings.ToLower(so.String()), "gap") {
		t.Fatalf("verify (exit %d) does not show the gap, or fails on it: %s%s", code, so.String(), se.String())
	}
	t.Log(so.String())

	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
	msg := restoreRefused(t, cfg, target, "restore window", "--until-gtid", inGap)
	if !strings.Contains(msg, gen1Pos) || !strings.Contains(msg, gen2Pos) {
		t.Fatalf("the refusal does not name both windows (%s, %s): %s", gen1Pos, gen2Pos, msg)
	}
	restoreInto(t, cfg, target, "--until-gtid", gen2Pos)
	checksumsEqual(t, gen2, target.Checksums(t, "app"), "restore in the new generation")

	old := mariadbtest.Start(t, mariadbtest.Options{ServerID: 81, NoBinlog: true})
	restoreInto(t, cfg, old, "--until-gtid", gen1Pos)
	checksumsEqual(t, gen1, old.Checksums(t, "app"), "restore in the old generation")

	// Without the new generation's snapshot, a restore without a point
	// goes to the end of the old generation, and says that the newest
	// transactions are not restorable.
	if err := os.RemoveAll(list[1].Dir); err != nil {
		t.Fatal(err)
	}
	third := mariadbtest.Start(t, mariadbtest.Options{ServerID: 82, NoBinlog: true})
	t.Setenv("UNDERSTUDY_TARGET_PASSWORD", "")
	so.Reset()
	se.Reset()
	if code := run([]string{"restore", "--config", cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", third.Port), "--threads", "2"}, &so, &se); code != 0 {
		t.Fatalf("restore without a point (exit %d): %s", code, se.String())
	}
	if !strings.Contains(so.String(), gen1Pos) || !strings.Contains(se.String(), "restoring to the end of an older generation") {
		t.Fatalf("restore without a point, the new generation without a snapshot:\n%s%s", so.String(), se.String())
	}
	checksumsEqual(t, gen1, third.Checksums(t, "app"), "restore to the end of the old generation")
}

// editConfig replaces old with new in the config file.
func editConfig(t *testing.T, cfg, old, new string) {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("config lacks %q", old)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// point is a GTID position of the primary and its data then.
type point struct {
	pos  string
	at   time.Time
	sums map[string]string
}

// TestRetention: a window of 15 s, a snapshot every 3 s and files sealed
// every second. What lies beyond the window goes (snapshots and files);
// the oldest point inside it restores equal; a point before it is refused;
// and pruning that runs during a restore does not break that restore.
func TestRetention(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "    snapshot:\n      every: 3s\n      threads: 2\n")
	editConfig(t, cfg, "  sync_interval: 100ms\n", "  sync_interval: 100ms\n  max_file_age: 1s\n")
	editConfig(t, cfg, "sources:\n", "retention:\n  window: 15s\n  min_snapshots: 2\nsources:\n")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100))")
	stop := startRun(t, cfg)
	arch := filepath.Join(dir, "archive", "db")

	// Write for 30 s, noting the primary's data at each second.
	var points []point
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); {
		insertRows(t, p, 3)
		points = append(points, point{pos: p.GTIDBinlogPos(t), at: time.Now(), sums: p.Checksums(t, "app")})
		time.Sleep(time.Second)
	}
	waitArchived(t, arch, p, 30*time.Second)
	// The restore target, started before the window is read: the window
	// moves on while the test runs.
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})

	// What lies beyond the window is gone.
	a, err := archive.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	files := a.Files()
	if first := files[0].Name; first == archive.FileName(1) {
		t.Fatalf("no archived file was pruned (the archive still starts with %s)", first)
	}
	snaps, _ := snapshot.List(filepath.Join(arch, "snapshots"))
	if len(snaps) < 2 || time.Since(snaps[0].Manifest.Started) > 15*time.Second+20*time.Second {
		t.Fatalf("snapshots kept: %d, the oldest from %s", len(snaps), snaps[0].Manifest.Started)
	}
	st := statusJSON(t, cfg) // run is still running: this is its /status or the disk
	if len(st.RestoreWindows) != 1 {
		t.Fatalf("windows %+v, want one", st.RestoreWindows)
	}
	w := st.RestoreWindows[0]

	// The oldest noted point inside the window (with a margin of one
	// snapshot interval: the window moves on while the test runs), and one
	// before it.
	var inside, before *point
	for i := range points {
		pt := mustPos(t, points[i].pos)
		switch {
		case !pt.ContainsPosition(w.From):
			before = &points[i]
		case inside == nil && w.To.ContainsPosition(pt) && points[i].at.After(w.FromTime.Add(8*time.Second)):
			inside = &points[i]
		}
	}
	if inside == nil || before == nil {
		t.Fatalf("window %s: no noted point inside (%v) or before (%v) it", w, inside != nil, before != nil)
	}

	// Restore the oldest point while run keeps snapshotting and pruning: the
	// snapshot and files it reads are held.
	stopWrites, done := make(chan struct{}), make(chan error, 1)
	db := p.DB(t)
	go func() {
		for {
			select {
			case <-stopWrites:
				done <- nil
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := db.Exec("INSERT INTO app.t (v) VALUES ('during the restore')"); err != nil {
				done <- err
				return
			}
		}
	}()
	restoreInto(t, cfg, target, "--until-gtid", inside.pos)
	close(stopWrites)
	if err := <-done; err != nil {
		t.Fatalf("writes during the restore: %v", err)
	}
	checksumsEqual(t, inside.sums, target.Checksums(t, "app"), "restore of the oldest point in the window")

	other := mariadbtest.Start(t, mariadbtest.Options{ServerID: 81, NoBinlog: true})
	restoreRefused(t, cfg, other, "restore window", "--until-gtid", before.pos)
	stop()

	// The files the restore held go at a later pass, once the window has
	// moved past them (no snapshot is taken any more: the anchor becomes
	// the newest snapshot within 15 s).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		var so, se strings.Builder
		if code := run([]string{"prune", "--config", cfg}, &so, &se); code != 0 {
			t.Fatalf("prune exited %d: %s", code, se.String())
		}
		a2, err := archive.Open(arch)
		if err != nil {
			t.Fatal(err)
		}
		if a2.Files()[0].Name != files[0].Name {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restore, %s was never pruned; prune said:\n%s", files[0].Name, so.String())
		}
	}
}

// TestReplicaStopsAtAGap: a replica of understudy's binlog server that
// reaches the end of a generation gets ERR 1236 naming the gap, and never
// silently skips the purged transactions.
func TestReplicaStopsAtAGap(t *testing.T) {
	p := startPrimary(t, 1, 1)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: addr})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100))")
	insertRows(t, p, 10)
	stop := startRun(t, cfg)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplicaOf(t, r, "u", addr, "")
	gen1 := p.GTIDBinlogPos(t)
	waitReplica(t, r, "u", gen1, 60*time.Second)
	stop()

	insertRows(t, p, 10) // purged before understudy sees them
	p.PurgeBinlogs(t)
	insertRows(t, p, 10)
	startRun(t, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := replicaStatus(t, r, "u")
		if strings.Contains(st["Last_IO_Error"], "has a gap after") {
			t.Logf("replica: %s", st["Last_IO_Error"])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never got the gap error: %v", replicaError(t, r, "u"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := r.QueryString(t, "SELECT @@global.gtid_slave_pos"); got != gen1 {
		t.Fatalf("replica at %s, want it held at the end of generation 1 (%s)", got, gen1)
	}
}
