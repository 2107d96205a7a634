package archive

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
)

// TestGenerationsAndGap writes generation 1 (3-7-1..3), a gap, generation 2
// (3-7-6..8), and checks what readers see: two spans, no continuity error,
// the gap recorded, SpanFor refusing points in the gap, and recovery of a
// generation whose first file was never created.
func TestGenerationsAndGap(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Began() {
		t.Fatal("an empty archive has begun")
	}
	g1, err := w.StartGeneration(understudy.Position{}, "archive.start: oldest", nil)
	if err != nil || g1.ID != 1 || g1.FirstFile != "binlog.000001" {
		t.Fatalf("first generation %+v, %v", g1, err)
	}
	if !w.Began() {
		t.Fatal("archive has not begun after StartGeneration")
	}
	write(t, w, fde)
	for _, g := range groups[:3] {
		writeGroup(t, w, g)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	gap := &understudy.Gap{From: pos(t, "3-7-3"), To: pos(t, "3-7-5"), Detected: time.Now(), Reason: "purged"}
	g2, err := w.StartGeneration(pos(t, "3-7-5"), "after a gap", gap)
	if err != nil || g2.ID != 2 || g2.FirstFile != "binlog.000002" || g2.Gap.Generation != 2 {
		t.Fatalf("second generation %+v, %v", g2, err)
	}
	// A crash before the generation's first file exists, and before the
	// previous file's seal was recorded: recovery seals that file (it
	// belongs to generation 1) and resumes at the generation's start.
	crash(w)
	m, _ := readManifest(dir)
	if len(m.Files) != 1 {
		t.Fatalf("manifest files %+v", m.Files)
	}
	m.Files = nil
	writeManifest(dir, m)
	w, err = OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Position().String(); got != "3-7-5" {
		t.Fatalf("position after recovery %q, want the generation's start 3-7-5", got)
	}
	if m, _ := readManifest(dir); len(m.Files) != 1 || m.Files[0].Name != "binlog.000001" || m.Files[0].EndPosition.String() != "3-7-3" {
		t.Fatalf("recovery did not seal generation 1's last file: %+v", m.Files)
	}
	write(t, w, fde)
	for _, g := range groups[5:] {
		writeGroup(t, w, g)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CheckContinuity(); err != nil {
		t.Fatalf("a recorded gap is reported as a break: %v", err)
	}
	spans := a.Spans()
	if len(spans) != 2 || spans[0].End.String() != "3-7-3" || spans[1].Start.String() != "3-7-5" || spans[1].End.String() != "3-7-8" {
		t.Fatalf("spans %+v", spans)
	}
	if gaps := a.Gaps(); len(gaps) != 1 || gaps[0].From.String() != "3-7-3" || gaps[0].To.String() != "3-7-5" || gaps[0].Missing()[3] != 2 {
		t.Fatalf("gaps %+v", gaps)
	}
	for _, tc := range []struct {
		stop understudy.StopPoint
		gen  int
	}{
		{understudy.StopPoint{}, 2},
		{understudy.StopPoint{UntilGTID: pos(t, "3-7-2")}, 1},
		{understudy.StopPoint{UntilGTID: pos(t, "3-7-7")}, 2},
		{understudy.StopPoint{BeforeGTID: understudy.GTID{Domain: 3, ServerID: 7, Seq: 3}}, 1},
		{understudy.StopPoint{BeforeGTID: understudy.GTID{Domain: 3, ServerID: 7, Seq: 4}}, 0}, // in the gap
		{understudy.StopPoint{UntilGTID: pos(t, "3-7-4")}, 0},                                  // in the gap
		{understudy.StopPoint{UntilGTID: pos(t, "3-7-9")}, 0},                                  // beyond
	} {
		s, err := a.SpanFor(tc.stop)
		if tc.gen == 0 {
			if !errors.Is(err, ErrNotHeld) || !strings.Contains(err.Error(), "generation 2") {
				t.Fatalf("%s: span %d, err %v; want a refusal naming the spans", tc.stop, s.Generation, err)
			}
			continue
		}
		if err != nil || s.Generation != tc.gen {
			t.Fatalf("%s: span %d, err %v; want generation %d", tc.stop, s.Generation, err, tc.gen)
		}
	}
	if rep, err := Verify(a); err != nil || len(rep.Problems) > 0 || rep.Transactions != 6 {
		t.Fatalf("verify of an archive with a recorded gap: %+v, %v", rep, err)
	}
	// An export never crosses the gap.
	res, err := Export(a, t.TempDir(), understudy.StopPoint{})
	if err != nil || res.Transactions != 3 || res.Position.String() != "3-7-8" {
		t.Fatalf("export of the newest generation: %+v, %v", res, err)
	}
	// A break that is not a recorded gap is still an error.
	m, _ = readManifest(dir)
	m.Generations = m.Generations[:1]
	writeManifest(dir, m)
	a, _ = Open(dir)
	if err := a.CheckContinuity(); !errors.Is(err, understudy.ErrGap) {
		t.Fatalf("unrecorded break: %v, want ErrGap", err)
	}
	if rep, _ := Verify(a); len(rep.Problems) == 0 {
		t.Fatal("verify found no problem in a break that is not a recorded gap")
	}
}

// TestMaxFileAge seals a file at the first transaction boundary after its
// age, and an idle one at once; an empty file is never sealed; the age
// survives a restart (it is read from the file's header).
func TestMaxFileAge(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	w, err := OpenWriter(dir, WriterOptions{MaxFileAge: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, fde)
	if sealed, _ := w.RotateIfDue(); sealed {
		t.Fatal("sealed a new file")
	}
	now = now.Add(2 * time.Hour)
	if sealed, _ := w.RotateIfDue(); sealed {
		t.Fatal("sealed an empty file")
	}
	writeGroup(t, w, groups[0]) // the file is old: sealed at the next boundary
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := w.Durable().File; got != "binlog.000001" {
		t.Fatalf("durable file %s", got)
	}
	writeGroup(t, w, groups[1])
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := w.Durable().File; got != "binlog.000002" {
		t.Fatalf("after an old file's boundary, active file %s, want binlog.000002", got)
	}
	now = now.Add(30 * time.Minute)
	writeGroup(t, w, groups[2])
	if sealed, _ := w.RotateIfDue(); sealed {
		t.Fatal("sealed a 30-minute-old file")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Restart 31 minutes later: the file is 61 minutes old.
	now = now.Add(31 * time.Minute)
	w, err = OpenWriter(dir, WriterOptions{MaxFileAge: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sealed, err := w.RotateIfDue()
	if err != nil || !sealed {
		t.Fatalf("idle old file after restart: sealed %v, %v", sealed, err)
	}
	w.Close()
	a, _ := Open(dir)
	var names []string
	for _, fi := range a.Files() {
		names = append(names, fi.Name)
		if fi.Name != "binlog.000003" && !fi.Sealed {
			t.Fatalf("%s not sealed", fi.Name)
		}
	}
	if strings.Join(names, ",") != "binlog.000001,binlog.000002,binlog.000003" {
		t.Fatalf("files %v", names)
	}
}

// TestPruneStopsAtAHeldFile removes the oldest files, never one that a
// reader holds nor any after it, and a crash after the manifest was
// rewritten leaves files that recovery deletes.
func TestPruneStopsAtAHeldFile(t *testing.T) {
	fde, groups := fixtureGroups(t)
	dir := t.TempDir()
	w, err := OpenWriter(dir, WriterOptions{MaxFileSize: 1}) // a file per transaction
	if err != nil {
		t.Fatal(err)
	}
	write(t, w, fde)
	for _, g := range groups {
		writeGroup(t, w, g)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	w.sealing.Wait()
	a, _ := Open(dir)
	files := a.Files()
	release, err := a.Hold(files[2]) // binlog.000003
	if err != nil {
		t.Fatal(err)
	}
	gone, err := w.Prune("binlog.000005")
	if err != nil || len(gone) != 2 || gone[1].Name != "binlog.000002" {
		t.Fatalf("prune with binlog.000003 held removed %v, %v; want binlog.000001 and 2", gone, err)
	}
	// A cursor on a removed file fails clearly.
	if _, err := OpenCursor(dir, "binlog.000001"); !errors.Is(err, ErrPruned) {
		t.Fatalf("cursor on a pruned file: %v, want ErrPruned", err)
	}
	release()
	gone, err = w.Prune("binlog.000005")
	if err != nil || len(gone) != 2 || gone[0].Name != "binlog.000003" {
		t.Fatalf("second prune removed %v, %v", gone, err)
	}
	// The active file is never removed, whatever is asked.
	if _, err := w.Prune("binlog.999999"); err != nil {
		t.Fatal(err)
	}
	a, _ = Open(dir)
	if got := a.Files(); len(got) == 0 || got[len(got)-1].Sealed || a.Position().String() != "3-7-8" {
		t.Fatalf("after pruning everything sealed: %+v", got)
	}
	if err := a.CheckContinuity(); err != nil {
		t.Fatal(err)
	}
	crash(w)

	// A crash between the manifest and the deletion: the file is back on
	// disk but numbered below pruned_through.
	m, _ := readManifest(dir)
	os.WriteFile(filepath.Join(dir, FileName(m.PrunedThrough)), []byte("leftover"), 0o600)
	w, err = OpenWriter(dir, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := os.Stat(filepath.Join(dir, FileName(m.PrunedThrough))); !os.IsNotExist(err) {
		t.Fatalf("leftover pruned file not deleted on recovery: %v", err)
	}
	if got := w.Position().String(); got != "3-7-8" {
		t.Fatalf("position %q after recovery", got)
	}
}
