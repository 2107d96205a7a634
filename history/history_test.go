package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/snapshot"
)

var t0 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func at(h float64) time.Time { return t0.Add(time.Duration(h * float64(time.Hour))) }

func mustPos(t *testing.T, s string) understudy.Position {
	t.Helper()
	p, err := understudy.ParsePosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testFile is an archived file: its number, generation, start and end
// sequence numbers in domain 1 (-1: the empty position) and its first and
// last commit, in hours after t0.
type testFile struct {
	n, gen      int
	start, end  int
	first, last float64
	sealed      bool
}

func seqPos(t *testing.T, seq int) understudy.Position {
	if seq < 0 {
		return understudy.Position{}
	}
	return mustPos(t, fmt.Sprintf("1-1-%d", seq))
}

func (f testFile) info(t *testing.T) archive.FileInfo {
	return archive.FileInfo{Name: archive.FileName(f.n), Size: 1000, StartPosition: seqPos(t, f.start), EndPosition: seqPos(t, f.end),
		Transactions: int64(f.end - max(f.start, 0)), FirstTime: uint32(at(f.first).Unix()), LastTime: uint32(at(f.last).Unix()),
		Sealed: f.sealed, Generation: f.gen}
}

// writeArchive writes a manifest with sealed files (the binlog files
// themselves are empty placeholders) and the generations, and opens it.
func writeArchive(t *testing.T, gens []archive.Generation, prunedThrough int, files ...testFile) *archive.Archive {
	t.Helper()
	dir := t.TempDir()
	m := archive.Manifest{Version: 1, Generations: gens, PrunedThrough: prunedThrough}
	for _, f := range files {
		fi := f.info(t)
		fi.Sealed = true
		m.Files = append(m.Files, fi)
		if err := os.WriteFile(filepath.Join(dir, fi.Name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, archive.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func snap(t *testing.T, id string, seq int, h float64) snapshot.Listed {
	return snapshot.Listed{Dir: "/snapshots/" + id, Manifest: &snapshot.Manifest{Version: 1, ID: id, Position: seqPos(t, seq), Started: at(h), PositionTime: at(h), Finished: at(h).Add(time.Minute)}}
}

// gapArchive is generation 1 (from the empty position to 1-1-900, commits
// from t0 to t0+10h), a gap (1-1-900 to 1-1-1400, found at t0+30h), then
// generation 2 (1-1-1400 to 1-1-1600, commits t0+32h to t0+34h).
func gapArchive(t *testing.T) *archive.Archive {
	gap := &understudy.Gap{Generation: 2, From: mustPos(t, "1-1-900"), To: mustPos(t, "1-1-1400"), Detected: at(30), Reason: "Could not find GTID state requested by slave in any binlog files"}
	gens := []archive.Generation{
		{ID: 1, FirstFile: archive.FileName(1), Started: t0, Reason: "archive began"},
		{ID: 2, FirstFile: archive.FileName(4), StartPosition: mustPos(t, "1-1-1400"), Started: at(30), Reason: "gap", Gap: gap},
	}
	return writeArchive(t, gens, 0,
		testFile{n: 1, gen: 1, start: -1, end: 100, first: 0, last: 1},
		testFile{n: 2, gen: 1, start: 100, end: 300, first: 1, last: 2},
		testFile{n: 3, gen: 1, start: 300, end: 900, first: 2, last: 10},
		testFile{n: 4, gen: 2, start: 1400, end: 1500, first: 32, last: 33},
		testFile{n: 5, gen: 2, start: 1500, end: 1600, first: 33, last: 34},
	)
}

func gapSnapshots(t *testing.T) []snapshot.Listed {
	return []snapshot.Listed{
		snap(t, "s1", 50, 0.5),    // generation 1, opens its window
		snap(t, "s2", 300, 2),     // inside it
		snap(t, "s3", 1200, 20),   // taken during the gap: generation 1, point-only
		snap(t, "s4", 1450, 32.5), // generation 2, opens its window
		snap(t, "s5", 1700, 40),   // beyond the archive: point-only
	}
}

func window(t *testing.T, gen int, id string, from, to int, fromH, toH float64, pointOnly bool) understudy.Window {
	return understudy.Window{Generation: gen, Snapshot: id, From: seqPos(t, from), FromTime: at(fromH), To: seqPos(t, to), ToTime: at(toH), PointOnly: pointOnly}
}

func sameWindows(t *testing.T, got, want []understudy.Window) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d windows %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Generation != w.Generation || g.Snapshot != w.Snapshot || !g.From.Equal(w.From) || !g.To.Equal(w.To) ||
			!g.FromTime.Equal(w.FromTime) || !g.ToTime.Equal(w.ToTime) || g.PointOnly != w.PointOnly {
			t.Fatalf("window %d: %+v\nwant %+v", i, g, w)
		}
	}
}

func TestWindowsGapsAndPointOnly(t *testing.T) {
	a := gapArchive(t)
	tl := NewTimeline("db1", a, gapSnapshots(t))
	sameWindows(t, tl.Windows, []understudy.Window{
		window(t, 1, "s1", 50, 900, 0.5, 10, false),
		window(t, 1, "s3", 1200, 1200, 20, 20, true),
		window(t, 2, "s4", 1450, 1600, 32.5, 34, false),
		window(t, 2, "s5", 1700, 1700, 40, 40, true),
	})
	if got, want := tl.WindowOf, map[string]int{"s1": 0, "s2": 0, "s3": 1, "s4": 2, "s5": 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("WindowOf %v, want %v", got, want)
	}
	if got := Windows(a, gapSnapshots(t)); len(got) != 4 {
		t.Fatalf("Windows: %v", got)
	}
	// Listed in any order, the same windows.
	rev := gapSnapshots(t)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	sameWindows(t, Windows(a, rev), tl.Windows)
}

func TestWindowsPrunedBinlogs(t *testing.T) {
	// Files 1 and 2 were pruned: s1 keeps its data but not its binlogs.
	a := writeArchive(t, nil, 2,
		testFile{n: 3, gen: 1, start: 300, end: 900, first: 2, last: 10},
		testFile{n: 4, gen: 1, start: 900, end: 1000, first: 10, last: 11},
	)
	ws := Windows(a, []snapshot.Listed{snap(t, "s1", 50, 0.5), snap(t, "s2", 300, 2), snap(t, "s3", 950, 10.5)})
	sameWindows(t, ws, []understudy.Window{
		window(t, 1, "s1", 50, 50, 0.5, 0.5, true),
		window(t, 1, "s2", 300, 1000, 2, 11, false),
	})
}

func TestWindowsSnapshotNewerThanLastCommit(t *testing.T) {
	// A snapshot taken after the last commit: the window ends at the
	// snapshot's time, not before it.
	a := writeArchive(t, nil, 0, testFile{n: 1, gen: 1, start: -1, end: 100, first: 0, last: 1})
	sameWindows(t, Windows(a, []snapshot.Listed{snap(t, "s1", 100, 5)}), []understudy.Window{window(t, 1, "s1", 100, 100, 5, 5, false)})
	// An empty archive: point-only.
	empty := writeArchive(t, nil, 0)
	sameWindows(t, Windows(empty, []snapshot.Listed{snap(t, "s1", 100, 5)}), []understudy.Window{window(t, 1, "s1", 100, 100, 5, 5, true)})
}

func TestLocate(t *testing.T) {
	tl := NewTimeline("db1", gapArchive(t), gapSnapshots(t))
	until := func(h float64) understudy.StopPoint { return understudy.StopPoint{UntilTime: at(h)} }
	untilGTID := func(seq int) understudy.StopPoint { return understudy.StopPoint{UntilGTID: seqPos(t, seq)} }
	before := func(seq int) understudy.StopPoint {
		return understudy.StopPoint{BeforeGTID: understudy.GTID{Domain: 1, ServerID: 1, Seq: uint64(seq)}}
	}
	for _, tc := range []struct {
		name     string
		stop     understudy.StopPoint
		snapshot string
		want     int    // window index, or -1
		errWant  string // substring of the refusal
		cause    Cause
	}{
		{"until a time in generation 1", until(5), "", 0, "", 0},
		{"until the first snapshot's time", until(0.5), "", 0, "", 0},
		{"until the last commit of generation 1", until(10), "", 0, "", 0},
		{"until a time in generation 2", until(33.5), "", 2, "", 0},
		{"until a time in the gap", until(26), "", -1, "the point until 2026-11-21T02:00:00Z is outside every restore window of source db1: 2026-11-20T00:30:00Z (GTID 1-1-50) to 2026-11-20T10:00:00Z (GTID 1-1-900); snapshot s3 only", Between},
		{"until a time before every snapshot", until(0.25), "", -1, "older than the oldest snapshot (s1 at 2026-11-20T00:30:00Z, GTID position 1-1-50)", Older},
		{"until a time after the last commit", until(50), "", -1, "beyond the archive: its last transaction was committed at 2026-11-21T10:00:00Z", Beyond},
		{"until a GTID in generation 1", untilGTID(600), "", 0, "", 0},
		{"until a GTID in generation 2", untilGTID(1550), "", 2, "", 0},
		{"until the position of a point-only snapshot", untilGTID(1200), "", 1, "", 0},
		{"until a GTID in the gap", untilGTID(1100), "", -1, "there is a gap between generations 1 and 2: the transactions after GTID position 1-1-900 through 1-1-1400 (500 in domain 1) were purged on the primary before they were archived", Between},
		{"until a GTID beyond the archive", untilGTID(1650), "", -1, "beyond the archive, which ends at GTID position 1-1-1600", Beyond},
		{"until a GTID before every snapshot", untilGTID(10), "", -1, "older than the oldest snapshot", Older},
		{"before a GTID in generation 1", before(60), "", 0, "", 0},
		{"before a GTID of generation 2", before(1500), "", 2, "", 0},
		{"before the first snapshot", before(20), "", -1, "older than the oldest snapshot", Older},
		{"before a GTID archived before the first snapshot of generation 2", before(1401), "", -1, "outside every restore window", Between},
		{"before a GTID beyond the archive", before(2000), "", -1, "beyond the archive", Beyond},
		{"to the end", understudy.StopPoint{}, "", 2, "", 0},
		{"to the end from an older snapshot", understudy.StopPoint{}, "s2", 0, "", 0},
		{"a point-only snapshot by its ID", understudy.StopPoint{}, "s3", 1, "", 0},
		{"a time with the snapshot's own window", until(5), "s2", 0, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tl.Locate(tc.stop, tc.snapshot)
			if tc.want >= 0 {
				if err != nil || got != tc.want {
					t.Fatalf("Locate(%s) = %d, %v; want window %d", tc.stop, got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Locate(%s) = window %d (%s), want a refusal", tc.stop, got, tl.Windows[got])
			}
			if !errors.Is(err, ErrOutsideWindows) {
				t.Fatalf("error %v does not wrap ErrOutsideWindows", err)
			}
			var oe *OutsideError
			if !errors.As(err, &oe) || oe.Cause != tc.cause {
				t.Fatalf("cause %v, want %v", oe.Cause, tc.cause)
			}
			if !strings.Contains(err.Error(), tc.errWant) {
				t.Fatalf("refusal %q\nlacks %q", err, tc.errWant)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("refusal on several lines: %q", err)
			}
			t.Log(err)
		})
	}
}

func TestLocateNoFullWindow(t *testing.T) {
	if err := Check(nil, understudy.StopPoint{}); !errors.Is(err, ErrNoSnapshot) || !strings.Contains(err.Error(), "take one with `understudy snapshot`") {
		t.Fatalf("no snapshot: %v", err)
	}
	ws := Windows(writeArchive(t, nil, 0), []snapshot.Listed{snap(t, "s1", 100, 5)})
	err := Check(ws, understudy.StopPoint{})
	if !errors.Is(err, ErrOutsideWindows) || !strings.Contains(err.Error(), "--snapshot ID") {
		t.Fatalf("only point-only windows, no point: %v", err)
	}
	if err := Check(ws, understudy.StopPoint{UntilGTID: seqPos(t, 100)}); err != nil {
		t.Fatalf("the point-only window's own position: %v", err)
	}
}

func TestCheckArchived(t *testing.T) {
	a := gapArchive(t)
	for _, tc := range []struct {
		stop understudy.StopPoint
		ok   bool
	}{
		{understudy.StopPoint{}, true},
		{understudy.StopPoint{UntilGTID: seqPos(t, 500)}, true},
		{understudy.StopPoint{UntilGTID: seqPos(t, 1500)}, true},
		{understudy.StopPoint{UntilGTID: seqPos(t, 1000)}, false}, // in the gap
		{understudy.StopPoint{UntilGTID: seqPos(t, 1601)}, false}, // beyond
		{understudy.StopPoint{UntilGTID: mustPos(t, "2-1-5")}, false},
		{understudy.StopPoint{UntilTime: at(5)}, true},
		{understudy.StopPoint{UntilTime: at(20)}, false}, // between the spans
		{understudy.StopPoint{UntilTime: at(35)}, false}, // after the last commit
		{understudy.StopPoint{UntilTime: at(-1)}, false}, // before the first
		{understudy.StopPoint{BeforeGTID: understudy.GTID{Domain: 1, ServerID: 1, Seq: 1401}}, true},
		{understudy.StopPoint{BeforeGTID: understudy.GTID{Domain: 1, ServerID: 1, Seq: 1000}}, false},
	} {
		err := CheckArchived(a, tc.stop)
		if (err == nil) != tc.ok {
			t.Fatalf("CheckArchived(%s) = %v, want ok=%v", tc.stop, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrNotArchived) || !strings.Contains(err.Error(), "the archive holds generation 1")) {
			t.Fatalf("CheckArchived(%s) = %v", tc.stop, err)
		}
	}
}

// daily is one snapshot a day for n days, at noon, snapshot i at 1-1-(i*100+50),
// with one archived file per day: file i+1 holds 1-1-(i*100) to
// 1-1-((i+1)*100); the last file is active.
func daily(t *testing.T, n int) ([]archive.FileInfo, []snapshot.Listed) {
	var files []archive.FileInfo
	var snaps []snapshot.Listed
	for i := 0; i < n; i++ {
		start := i * 100
		if i == 0 {
			start = -1
		}
		files = append(files, testFile{n: i + 1, gen: 1, start: start, end: (i + 1) * 100, first: float64(24 * i), last: float64(24*i + 23), sealed: i < n-1}.info(t))
		snaps = append(snaps, snap(t, fmt.Sprintf("d%d", i), i*100+50, float64(24*i+12)))
	}
	return files, snaps
}

func ids(ls []snapshot.Listed) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Manifest.ID)
	}
	return out
}

func names(fs []archive.FileInfo) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func TestPlan(t *testing.T) {
	files, snaps := daily(t, 10)
	gens := []archive.Generation{{ID: 1, FirstFile: archive.FileName(1)}}
	now := at(24*9 + 13) // an hour after the newest snapshot
	day := 24 * time.Hour
	for _, tc := range []struct {
		name         string
		files        []archive.FileInfo
		snaps        []snapshot.Listed
		policy       Policy
		anchor       string
		removed      []string
		keepFromFile string
		gone         []string
		reason       string
	}{
		{name: "window: the newest snapshot before it is the anchor", files: files, snaps: snaps,
			policy: Policy{Window: 3 * day, MinSnapshots: 1, PruneBinlogs: true}, anchor: "d6",
			removed: []string{"d0", "d1", "d2", "d3", "d4", "d5"}, keepFromFile: "binlog.000007",
			gone: []string{"binlog.000001", "binlog.000002", "binlog.000003", "binlog.000004", "binlog.000005", "binlog.000006"}},
		{name: "keep_daily keeps older snapshots, not their binlogs", files: files, snaps: snaps,
			policy: Policy{Window: 3 * day, MinSnapshots: 1, KeepDaily: 5, PruneBinlogs: true}, anchor: "d6",
			removed: []string{"d0", "d1", "d2", "d3", "d4"}, keepFromFile: "binlog.000007",
			gone: []string{"binlog.000001", "binlog.000002", "binlog.000003", "binlog.000004", "binlog.000005", "binlog.000006"}},
		{name: "min_snapshots beyond the window", files: files, snaps: snaps,
			policy: Policy{Window: 30 * time.Minute, MinSnapshots: 3, PruneBinlogs: true}, anchor: "d9",
			removed: []string{"d0", "d1", "d2", "d3", "d4", "d5", "d6"}, keepFromFile: "binlog.000010",
			gone: []string{"binlog.000001", "binlog.000002", "binlog.000003", "binlog.000004", "binlog.000005", "binlog.000006", "binlog.000007", "binlog.000008", "binlog.000009"}},
		{name: "no snapshot before the window: the oldest is the anchor", files: files, snaps: snaps,
			policy: Policy{Window: 30 * day, MinSnapshots: 1, PruneBinlogs: true}, anchor: "d0",
			reason: "no archived file ends before the anchor d0"},
		{name: "without binlog pruning", files: files, snaps: snaps,
			policy: Policy{Window: 3 * day, MinSnapshots: 1}, anchor: "d6",
			removed: []string{"d0", "d1", "d2", "d3", "d4", "d5"}, reason: "retention does not remove binlogs"},
		{name: "no snapshot: no file goes", files: files,
			policy: Policy{Window: 3 * day, MinSnapshots: 1, PruneBinlogs: true},
			reason: "the archived binlogs are the only copy"},
		{name: "snapshot.keep shorthand: the newest N, never files", files: files, snaps: snaps,
			policy:  Policy{KeepLast: 2, MinSnapshots: 2},
			removed: []string{"d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7"}, reason: "never removed with snapshot.keep"},
		{name: "no rule: nothing goes", files: files, snaps: snaps, policy: Policy{PruneBinlogs: true}, reason: "no retention rule"},
		{name: "no window, keep_daily: the newest snapshot is the anchor, and no binlog goes", files: files, snaps: snaps,
			policy: Policy{MinSnapshots: 1, KeepDaily: 2, PruneBinlogs: true}, anchor: "d9",
			removed: []string{"d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7"}, reason: "only with a retention window"},
		{name: "the active file never goes, nor an unsealed one", files: unsealed(files, 4), snaps: snaps,
			policy: Policy{Window: 3 * day, MinSnapshots: 1, PruneBinlogs: true}, anchor: "d6",
			removed: []string{"d0", "d1", "d2", "d3", "d4", "d5"}, keepFromFile: "binlog.000004",
			gone: []string{"binlog.000001", "binlog.000002", "binlog.000003"}},
		{name: "the anchor's binlogs are gone: no file goes", files: files[7:], snaps: snaps,
			policy: Policy{Window: 3 * day, MinSnapshots: 1, PruneBinlogs: true}, anchor: "d6",
			removed: []string{"d0", "d1", "d2", "d3", "d4", "d5"}, reason: "are not in the archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plan(now, tc.files, gens, tc.snaps, tc.policy)
			if p.Anchor != tc.anchor {
				t.Fatalf("anchor %q, want %q", p.Anchor, tc.anchor)
			}
			if got := ids(p.Snapshots); !reflect.DeepEqual(got, tc.removed) {
				t.Fatalf("snapshots removed %v, want %v", got, tc.removed)
			}
			if p.KeepFromFile != tc.keepFromFile {
				t.Fatalf("KeepFromFile %q, want %q", p.KeepFromFile, tc.keepFromFile)
			}
			if got := names(p.Files); !reflect.DeepEqual(got, tc.gone) {
				t.Fatalf("files removed %v, want %v", got, tc.gone)
			}
			if !strings.Contains(p.FilesReason, tc.reason) {
				t.Fatalf("files reason %q, want %q in it", p.FilesReason, tc.reason)
			}
			if len(p.Decisions) != len(tc.snaps) {
				t.Fatalf("%d decisions for %d snapshots", len(p.Decisions), len(tc.snaps))
			}
			for _, d := range p.Decisions {
				if len(d.Reasons) == 0 {
					t.Fatalf("snapshot %s: no reason given", d.Snapshot.Manifest.ID)
				}
			}
			if again := plan(now, tc.files, gens, tc.snaps, tc.policy); !reflect.DeepEqual(again, p) {
				t.Fatal("the same input gave another plan")
			}
		})
	}
}

// unsealed returns files with file n (1-based) unsealed, as a file is
// between being sealed and being recorded in the manifest.
func unsealed(files []archive.FileInfo, n int) []archive.FileInfo {
	out := append([]archive.FileInfo(nil), files...)
	out[n-1].Sealed = false
	return out
}

func TestPlanGrandfatherFatherSon(t *testing.T) {
	d := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	mk := func(stamps ...string) []snapshot.Listed {
		var out []snapshot.Listed
		for i, s := range stamps {
			out = append(out, snapshot.Listed{Dir: "/s/" + s, Manifest: &snapshot.Manifest{ID: s[:16], Position: seqPos(t, i*10), Started: d(s), PositionTime: d(s)}})
		}
		return out
	}
	t.Run("weekly, ISO weeks", func(t *testing.T) {
		snaps := mk("2026-02-28T10:00:00Z", "2026-03-02T10:00:00Z", "2026-03-08T10:00:00Z", "2026-03-09T10:00:00Z", "2026-03-15T23:00:00Z", "2026-03-16T10:00:00Z")
		p := plan(d("2026-03-16T12:00:00Z"), nil, nil, snaps, Policy{KeepWeekly: 3})
		if got, want := ids(p.Snapshots), []string{"2026-02-28T10:00", "2026-03-02T10:00", "2026-03-09T10:00"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("removed %v, want %v", got, want)
		}
		if r := p.Decisions[2].Reasons; len(r) != 1 || !strings.Contains(r[0], "2026-W10 (keep_weekly 3)") {
			t.Fatalf("reasons of 2026-03-08: %v", r)
		}
	})
	t.Run("monthly, with a window", func(t *testing.T) {
		snaps := mk("2026-01-15T10:00:00Z", "2026-02-10T10:00:00Z", "2026-02-20T10:00:00Z", "2026-03-05T10:00:00Z", "2026-03-25T10:00:00Z")
		p := plan(d("2026-03-26T12:00:00Z"), nil, nil, snaps, Policy{Window: 24 * time.Hour, MinSnapshots: 1, KeepMonthly: 2})
		if got, want := ids(p.Snapshots), []string{"2026-01-15T10:00", "2026-02-10T10:00", "2026-03-05T10:00"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("removed %v, want %v", got, want)
		}
		if p.Anchor != "2026-03-25T10:00" {
			t.Fatalf("anchor %s", p.Anchor)
		}
	})
	t.Run("daily counts days that have snapshots, the newest of each", func(t *testing.T) {
		snaps := mk("2026-03-01T08:00:00Z", "2026-03-01T20:00:00Z", "2026-03-04T08:00:00Z", "2026-03-04T09:00:00Z", "2026-03-09T08:00:00Z")
		p := plan(d("2026-03-10T00:00:00Z"), nil, nil, snaps, Policy{KeepDaily: 3})
		if got, want := ids(p.Snapshots), []string{"2026-03-01T08:00", "2026-03-04T08:00"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("removed %v, want %v", got, want)
		}
	})
}

func TestPlanAcrossAGap(t *testing.T) {
	a := gapArchive(t)
	snaps := gapSnapshots(t)
	// The window reaches back to t0+2h: s2 (t0+2h, at 1-1-300, the start
	// of file 3) is the anchor; files 1 and 2 go, s1 goes.
	p := Plan(at(27), a, snaps, Policy{Window: 25 * time.Hour, MinSnapshots: 1, PruneBinlogs: true})
	if p.Anchor != "s2" || !reflect.DeepEqual(ids(p.Snapshots), []string{"s1"}) || p.KeepFromFile != "binlog.000003" ||
		!reflect.DeepEqual(names(p.Files), []string{"binlog.000001", "binlog.000002"}) {
		t.Fatalf("plan: anchor %s, snapshots %v, keep from %s, files %v", p.Anchor, ids(p.Snapshots), p.KeepFromFile, names(p.Files))
	}
	// An anchor in generation 2: every file of generation 1 goes, and the
	// snapshots of generation 1 too.
	p = Plan(at(45), a, snaps, Policy{Window: 5 * time.Hour, MinSnapshots: 1, PruneBinlogs: true})
	if p.Anchor != "s5" {
		t.Fatalf("anchor %s", p.Anchor)
	}
	// s5 is beyond the archive's end, in generation 2: the newest file
	// that starts before it is file 5; files 1 to 4 go.
	if !reflect.DeepEqual(names(p.Files), []string{"binlog.000001", "binlog.000002", "binlog.000003", "binlog.000004"}) {
		t.Fatalf("files %v", names(p.Files))
	}
	p = Plan(at(38), a, snaps, Policy{Window: 5 * time.Hour, MinSnapshots: 1, PruneBinlogs: true})
	if p.Anchor != "s4" || p.KeepFromFile != "binlog.000004" || !reflect.DeepEqual(ids(p.Snapshots), []string{"s1", "s2", "s3"}) {
		t.Fatalf("anchor %s, keep from %s, snapshots %v", p.Anchor, p.KeepFromFile, ids(p.Snapshots))
	}
	// The windows left after that plan: generation 2 only.
	sameWindows(t, p.WindowsAfter(a), []understudy.Window{
		window(t, 2, "s4", 1450, 1600, 32.5, 34, false),
		window(t, 2, "s5", 1700, 1700, 40, 40, true),
	})
	var kept []snapshot.Listed
	for _, d := range p.Decisions {
		if !d.Remove {
			kept = append(kept, d.Snapshot)
		}
	}
	left := writeArchive(t, a.Generations(), 3,
		testFile{n: 4, gen: 2, start: 1400, end: 1500, first: 32, last: 33},
		testFile{n: 5, gen: 2, start: 1500, end: 1600, first: 33, last: 34})
	sameWindows(t, Windows(left, kept), []understudy.Window{
		window(t, 2, "s4", 1450, 1600, 32.5, 34, false),
		window(t, 2, "s5", 1700, 1700, 40, 40, true),
	})
}

// TestApply removes planned snapshots and files for real, leaving held
// ones.
func TestApply(t *testing.T) {
	dir := t.TempDir()
	// An archive of four sealed placeholder files.
	m := archive.Manifest{Version: 1}
	for i := 1; i <= 4; i++ {
		start := (i - 1) * 100
		if i == 1 {
			start = -1
		}
		fi := testFile{n: i, gen: 1, start: start, end: i * 100, first: float64(i), last: float64(i) + 0.5}.info(t)
		fi.Sealed = true
		m.Files = append(m.Files, fi)
		os.WriteFile(filepath.Join(dir, fi.Name), nil, 0o644)
	}
	b, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, archive.ManifestName), b, 0o644)
	root := filepath.Join(dir, "snapshots")
	var snaps []snapshot.Listed
	for i, id := range []string{"a", "b", "c"} {
		sd := filepath.Join(root, id)
		os.MkdirAll(sd, 0o755)
		man := snapshot.Manifest{Version: 1, ID: id, Position: seqPos(t, i*100+50), Started: at(float64(i) + 0.75), PositionTime: at(float64(i) + 0.75)}
		b, _ := json.Marshal(man)
		if err := os.WriteFile(filepath.Join(sd, snapshot.ManifestName), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	snaps, err := snapshot.List(root)
	if err != nil || len(snaps) != 3 {
		t.Fatalf("list: %v, %v", snaps, err)
	}
	arch, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The anchor is c (at 1-1-250, in file 3): a and b go, files 1 and 2.
	p := Plan(at(10), arch, snaps, Policy{Window: 5 * time.Hour, MinSnapshots: 1, PruneBinlogs: true})
	if p.Anchor != "c" || p.KeepFromFile != "binlog.000003" || len(p.Snapshots) != 2 {
		t.Fatalf("plan: anchor %s, keep from %s, snapshots %v", p.Anchor, p.KeepFromFile, ids(p.Snapshots))
	}
	// A restore holds b and file 2.
	releaseSnap, err := snapshot.Hold(filepath.Join(root, "b"))
	if err != nil {
		t.Fatal(err)
	}
	releaseFile, err := arch.Hold(arch.Files()[1])
	if err != nil {
		t.Fatal(err)
	}
	w, err := archive.OpenWriter(dir, archive.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res, err := Apply(context.Background(), p, w, root, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Snapshots, []string{"a"}) || !reflect.DeepEqual(res.HeldSnapshots, []string{"b"}) || !reflect.DeepEqual(names(res.Files), []string{"binlog.000001"}) {
		t.Fatalf("applied: snapshots %v, held %v, files %v", res.Snapshots, res.HeldSnapshots, names(res.Files))
	}
	// With a store, the removal is marked for the store's shipper; the
	// held snapshot, which stays, is not.
	if marked, err := snapshot.Removed(root); err != nil || len(marked) != 1 || marked["a"].IsZero() {
		t.Fatalf("markers after the pass with a store: %v, %v; want a only", marked, err)
	}
	if _, err := os.Stat(filepath.Join(root, "a")); !os.IsNotExist(err) {
		t.Fatalf("snapshot a still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "a.partial")); !os.IsNotExist(err) {
		t.Fatalf("snapshot a left as .partial: %v", err)
	}
	// The file is released but the snapshot is still held (a restore
	// that has not held its binlogs yet): its binlogs stay.
	releaseFile()
	res, err = Apply(context.Background(), p, w, root, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 0 || !reflect.DeepEqual(res.HeldSnapshots, []string{"b"}) {
		t.Fatalf("with snapshot b held: files %v removed, held %v", names(res.Files), res.HeldSnapshots)
	}
	// Released, the next pass removes the rest.
	releaseSnap()
	res, err = Apply(context.Background(), p, w, root, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Snapshots, []string{"b"}) || !reflect.DeepEqual(names(res.Files), []string{"binlog.000002"}) {
		t.Fatalf("second pass: snapshots %v, files %v", res.Snapshots, names(res.Files))
	}
	after, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(after.Files()); !reflect.DeepEqual(got, []string{"binlog.000003", "binlog.000004"}) {
		t.Fatalf("files left %v", got)
	}
	left, _ := snapshot.List(root)
	if got := ids(left); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("snapshots left %v", got)
	}
	// A snapshot outside the root is refused.
	bad := PrunePlan{Snapshots: []snapshot.Listed{{Dir: "/elsewhere/x", Manifest: &snapshot.Manifest{ID: "x"}}}}
	if _, err := Apply(context.Background(), bad, w, root, false, nil); err == nil {
		t.Fatal("a snapshot outside the root was not refused")
	}
}

// TestWindowsAfter: a snapshot that keep_daily keeps older than the anchor
// loses its binlogs and restores its own position only; the anchor opens
// the window.
func TestWindowsAfter(t *testing.T) {
	var tf []testFile
	for i := 0; i < 10; i++ {
		start := i * 100
		if i == 0 {
			start = -1
		}
		tf = append(tf, testFile{n: i + 1, gen: 1, start: start, end: (i + 1) * 100, first: float64(24 * i), last: float64(24*i + 23)})
	}
	a := writeArchive(t, nil, 0, tf...)
	_, snaps := daily(t, 10)
	p := Plan(at(24*9+13), a, snaps, Policy{Window: 3 * 24 * time.Hour, MinSnapshots: 1, KeepDaily: 5, PruneBinlogs: true})
	if p.Anchor != "d6" || p.KeepFromFile != "binlog.000007" {
		t.Fatalf("anchor %s, keep from %s", p.Anchor, p.KeepFromFile)
	}
	if r := p.Decisions[6].Reasons; !strings.HasPrefix(r[0], "the anchor: the newest snapshot taken before the window (3d, since ") {
		t.Fatalf("the anchor's reasons: %v", r)
	}
	sameWindows(t, p.WindowsAfter(a), []understudy.Window{
		window(t, 1, "d5", 550, 550, 24*5+12, 24*5+12, true),
		window(t, 1, "d6", 650, 1000, 24*6+12, 24*9+23, false),
	})
	// Before the plan, one window from d0.
	sameWindows(t, Windows(a, snaps), []understudy.Window{window(t, 1, "d0", 50, 1000, 12, 24*9+23, false)})
}
