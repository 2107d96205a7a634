package restore

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/history"
	"github.com/understudy-db/understudy/snapshot"
)

func pos(t *testing.T, s string) understudy.Position {
	t.Helper()
	p, err := understudy.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// gapArchive writes the manifest of an archive with two generations: files
// 1 and 2 (up to 1-1-200), a gap, files 3 and 4 (1-1-500 to 1-1-700).
func gapArchive(t *testing.T) *archive.Archive {
	t.Helper()
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	gap := &understudy.Gap{Generation: 2, From: pos(t, "1-1-200"), To: pos(t, "1-1-500"), Detected: t0.Add(5 * time.Hour)}
	m := archive.Manifest{Version: 1, Generations: []archive.Generation{
		{ID: 1, FirstFile: archive.FileName(1), Reason: "archive began"},
		{ID: 2, FirstFile: archive.FileName(3), StartPosition: pos(t, "1-1-500"), Reason: "gap", Gap: gap},
	}}
	for i, f := range []struct {
		start, end string
		h          int
	}{{"", "1-1-100", 0}, {"1-1-100", "1-1-200", 1}, {"1-1-500", "1-1-600", 6}, {"1-1-600", "1-1-700", 7}} {
		fi := archive.FileInfo{Name: archive.FileName(i + 1), StartPosition: pos(t, f.start), EndPosition: pos(t, f.end), Transactions: 100,
			FirstTime: uint32(t0.Add(time.Duration(f.h) * time.Hour).Unix()), LastTime: uint32(t0.Add(time.Duration(f.h)*time.Hour + 50*time.Minute).Unix()), Sealed: true}
		m.Files = append(m.Files, fi)
		os.WriteFile(filepath.Join(dir, fi.Name), nil, 0o644)
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, archive.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestChooseSnapshotInTheWindowOfThePoint(t *testing.T) {
	a := gapArchive(t)
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var snaps []snapshot.Listed
	for _, s := range []struct {
		id, pos string
		h       float64
	}{{"g1a", "1-1-50", 0.5}, {"g1b", "1-1-150", 1.5}, {"g2a", "1-1-550", 6.5}, {"g2b", "1-1-650", 7.5}} {
		snaps = append(snaps, snapshot.Listed{Dir: "/s/" + s.id, Manifest: &snapshot.Manifest{ID: s.id, Position: pos(t, s.pos), Started: t0.Add(time.Duration(s.h * float64(time.Hour)))}})
	}
	tl := history.NewTimeline("db", a, snaps)
	for _, tc := range []struct {
		stop     understudy.StopPoint
		id       string
		want     string
		firstOut string // the first file of the replay
		err      string
	}{
		{understudy.StopPoint{UntilGTID: pos(t, "1-1-180")}, "", "g1b", "binlog.000002", ""},
		{understudy.StopPoint{UntilGTID: pos(t, "1-1-120")}, "", "g1a", "binlog.000001", ""},
		{understudy.StopPoint{UntilGTID: pos(t, "1-1-680")}, "", "g2b", "binlog.000004", ""},
		{understudy.StopPoint{UntilGTID: pos(t, "1-1-680")}, "g2a", "g2a", "binlog.000003", ""},
		{understudy.StopPoint{}, "", "g2b", "binlog.000004", ""},
		{understudy.StopPoint{}, "g1a", "g1a", "binlog.000001", ""},
		// A snapshot of generation 1 never restores a point of generation 2.
		{understudy.StopPoint{UntilGTID: pos(t, "1-1-680")}, "g1b", "", "", "snapshot g1b cannot restore the point until GTID 1-1-680"},
		{understudy.StopPoint{UntilGTID: pos(t, "1-1-560")}, "g2b", "", "", "older than snapshot g2b"},
		{understudy.StopPoint{UntilGTID: pos(t, "1-1-300")}, "", "", "", "outside every restore window of source db"},
	} {
		wi, err := tl.Locate(tc.stop, tc.id)
		var got snapshot.Listed
		if err == nil {
			got, err = chooseSnapshot(snaps, tc.stop, tl, wi, tc.id)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("%s with %q: %v, want an error about %q", tc.stop, tc.id, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s with %q: %v", tc.stop, tc.id, err)
		}
		if got.Manifest.ID != tc.want {
			t.Fatalf("%s with %q: snapshot %s, want %s", tc.stop, tc.id, got.Manifest.ID, tc.want)
		}
		files, err := replayFiles(a, tl.Windows[wi].Generation, got.Manifest.Position)
		if err != nil {
			t.Fatal(err)
		}
		if files[0].Name != tc.firstOut {
			t.Fatalf("%s: replay from %s, want %s", tc.stop, files[0].Name, tc.firstOut)
		}
		for _, f := range files {
			if f.Generation != tl.Windows[wi].Generation {
				t.Fatalf("%s: the replay reads %s of generation %d", tc.stop, f.Name, f.Generation)
			}
		}
	}
	if _, err := replayFiles(a, 2, pos(t, "1-1-450")); !errors.Is(err, understudy.ErrGap) {
		t.Fatalf("a position before generation 2's first file: %v", err)
	}
}

// TestUntilTimeUsesTheSnapshotsPositionTime: a snapshot started at 10:00:00
// whose position was read at 10:00:05 holds commits up to 10:00:05; it can
// restore --until-time 10:00:05 or later, never 10:00:02 (the restore
// would land after the point). A snapshot without position_time counts as
// consistent when it finished.
func TestUntilTimeUsesTheSnapshotsPositionTime(t *testing.T) {
	at := func(sec int) time.Time { return time.Date(2026, 11, 20, 10, 0, sec, 0, time.UTC) }
	m := &snapshot.Manifest{Started: at(0), PositionTime: at(5).Add(300 * time.Millisecond), Finished: at(9)}
	for _, tc := range []struct {
		until time.Time
		ok    bool
	}{{at(2), false}, {at(4), false}, {at(5), true}, {at(6), true}} {
		if got := atOrBefore(m, understudy.StopPoint{UntilTime: tc.until}); got != tc.ok {
			t.Fatalf("until %s: usable %v, want %v", tc.until.Format(time.TimeOnly), got, tc.ok)
		}
	}
	old := &snapshot.Manifest{Started: at(0), Finished: at(9)}
	if atOrBefore(old, understudy.StopPoint{UntilTime: at(5)}) || !atOrBefore(old, understudy.StopPoint{UntilTime: at(9)}) {
		t.Fatal("a snapshot without position_time is not judged by its finish time")
	}
}
