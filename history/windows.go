// Package history answers what can be restored of a source, and what
// retention may remove without losing that.
//
// Glossary (the values themselves live in the root package and in archive):
//
//   - A generation is an unbroken stretch of a source's archive. A new one
//     begins when the archive is adopted and after a gap: the primary purged
//     binlogs that understudy had not archived yet.
//   - A snapshot belongs to the newest generation whose start position its
//     own position contains (to the first generation when it contains
//     none). A snapshot taken while understudy was down, inside what became
//     a gap, therefore belongs to the generation before the gap.
//   - A snapshot's following binlogs are complete when its generation still
//     has the archived file in which its position lies (a file whose start
//     position the snapshot's position contains) and the generation's end
//     contains the snapshot's position.
//   - A restore window (understudy.Window) is every point from the oldest
//     snapshot of a generation whose following binlogs are complete to the
//     last durable transaction of that generation. Every later snapshot of
//     the generation lies inside it.
//   - A snapshot whose following binlogs are gone (pruned, kept by a
//     grandfather-father-son rule) or not archived yet (the archive has not
//     reached its position) is a point-only window: it restores to its own
//     position and nothing else.
//
// Windows computes the windows in one walk over the snapshots, oldest
// first: each is assigned to its generation and either opens that
// generation's full window, falls inside it, or stands alone as a
// point-only window. Timeline.Locate finds the window that holds a stop
// point and refuses, naming the windows, when none does.
//
// Plan decides what retention removes (see Policy), and Apply removes it.
package history

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/snapshot"
)

// Errors classified by cause.
var (
	// ErrOutsideWindows means a restore point lies in no restore window.
	ErrOutsideWindows = errors.New("outside every restore window")
	// ErrNoSnapshot means there is no snapshot to restore from.
	ErrNoSnapshot = errors.New("there is no snapshot to restore from")
	// ErrNotArchived means the archive does not hold a stop point (export
	// and serve).
	ErrNotArchived = errors.New("not in the archive")
)

// Timeline is what can be restored of one source.
type Timeline struct {
	Source string
	// Windows are the restore windows, oldest first.
	Windows []understudy.Window
	// Gaps are the gaps between generations, oldest first.
	Gaps []understudy.Gap
	// WindowOf maps the ID of each snapshot to the index in Windows of the
	// window it lies in.
	WindowOf map[string]int
}

// NewTimeline computes the timeline of a source from its archive and its
// snapshots (as listed by snapshot.List).
func NewTimeline(source string, a *archive.Archive, snaps []snapshot.Listed) Timeline {
	ws, of := windows(generationsOf(a), a.Spans(), snaps)
	return Timeline{Source: source, Windows: ws, Gaps: a.Gaps(), WindowOf: of}
}

// Windows returns the restore windows of an archive and its snapshots,
// oldest first (see the package documentation).
func Windows(a *archive.Archive, snaps []snapshot.Listed) []understudy.Window {
	ws, _ := windows(generationsOf(a), a.Spans(), snaps)
	return ws
}

// generationsOf returns the archive's generations, adding one for a span
// whose generation is not recorded.
func generationsOf(a *archive.Archive) []archive.Generation {
	return completeGenerations(a.Generations(), a.Spans())
}

func completeGenerations(gens []archive.Generation, spans []archive.Span) []archive.Generation {
	known := map[int]bool{}
	for _, g := range gens {
		known[g.ID] = true
	}
	out := append([]archive.Generation(nil), gens...)
	for _, s := range spans {
		if !known[s.Generation] {
			known[s.Generation] = true
			out = append(out, archive.Generation{ID: s.Generation, StartPosition: s.Start})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// generationOf returns the generation a snapshot at pos belongs to: the
// newest one whose start position pos contains, else the first (1 when
// none is recorded).
func generationOf(gens []archive.Generation, pos understudy.Position) int {
	if len(gens) == 0 {
		return 1
	}
	id := gens[0].ID
	for _, g := range gens {
		if pos.ContainsPosition(g.StartPosition) {
			id = g.ID
		}
	}
	return id
}

// complete reports whether the binlogs that follow pos are in span: a file
// of it starts at or before pos, and its end contains pos.
func complete(span *archive.Span, pos understudy.Position) bool {
	if span == nil || !span.End.ContainsPosition(pos) {
		return false
	}
	for _, f := range span.Files {
		if pos.ContainsPosition(f.StartPosition) {
			return true
		}
	}
	return false
}

// windows is the walk behind Windows, on plain values: the generations,
// the spans (one per generation that has files, with the files) and the
// snapshots. It also returns, for each snapshot, the index of its window.
func windows(gens []archive.Generation, spans []archive.Span, snaps []snapshot.Listed) ([]understudy.Window, map[string]int) {
	spanOf := map[int]*archive.Span{}
	for i := range spans {
		spanOf[spans[i].Generation] = &spans[i]
	}
	ordered := append([]snapshot.Listed(nil), snaps...)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].Manifest.Started.Before(ordered[j].Manifest.Started) })

	var ws []understudy.Window
	full := map[int]int{}  // generation → index in ws of its full window
	of := map[string]int{} // snapshot → index in ws (fixed up after sorting)
	for _, l := range ordered {
		m := l.Manifest
		g := generationOf(gens, m.Position)
		span := spanOf[g]
		if complete(span, m.Position) {
			if i, ok := full[g]; ok {
				of[m.ID] = i // inside the generation's full window
				continue
			}
			w := understudy.Window{Generation: g, Snapshot: m.ID, From: m.Position, FromTime: m.ConsistentAt().Truncate(time.Second).UTC(), To: span.End}
			w.ToTime = w.FromTime
			if span.LastTime != 0 {
				if t := time.Unix(int64(span.LastTime), 0).UTC(); t.After(w.ToTime) {
					w.ToTime = t
				}
			}
			full[g] = len(ws)
			of[m.ID] = len(ws)
			ws = append(ws, w)
			continue
		}
		of[m.ID] = len(ws)
		ws = append(ws, understudy.Window{Generation: g, Snapshot: m.ID, From: m.Position, FromTime: m.ConsistentAt().Truncate(time.Second).UTC(),
			To: m.Position, ToTime: m.ConsistentAt().Truncate(time.Second).UTC(), PointOnly: true})
	}
	idx := make([]int, len(ws))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		wa, wb := ws[idx[a]], ws[idx[b]]
		if wa.Generation != wb.Generation {
			return wa.Generation < wb.Generation
		}
		return wa.FromTime.Before(wb.FromTime)
	})
	moved := make([]int, len(ws)) // old index → new index
	sorted := make([]understudy.Window, len(ws))
	for newI, oldI := range idx {
		sorted[newI] = ws[oldI]
		moved[oldI] = newI
	}
	for id, i := range of {
		of[id] = moved[i]
	}
	return sorted, of
}

// Check reports whether a restore to stop is possible in one of windows:
// nil if so, else an error that wraps ErrOutsideWindows (or ErrNoSnapshot
// when there is no window at all) and names the windows.
func Check(windows []understudy.Window, stop understudy.StopPoint) error {
	_, err := Timeline{Windows: windows}.Locate(stop, "")
	return err
}

// Locate returns the index in t.Windows of the window that holds stop:
//   - until time T: FromTime <= T <= ToTime;
//   - until GTID P: P contains From and To contains P;
//   - before GTID G: From does not contain G and To contains G;
//   - no stop point: the newest full window, or with snapshotID the window
//     of that snapshot.
//
// A point-only window holds a point only when stop is exactly its position
// (until GTID), or when there is no stop point and snapshotID names its
// snapshot. With snapshotID, the window of that snapshot is preferred when
// it holds the point. The error wraps ErrOutsideWindows or ErrNoSnapshot
// and names the windows.
func (t Timeline) Locate(stop understudy.StopPoint, snapshotID string) (int, error) {
	if len(t.Windows) == 0 {
		return -1, fmt.Errorf("%w: take one with `understudy snapshot`", ErrNoSnapshot)
	}
	own, hasOwn := -1, false
	if snapshotID != "" {
		own, hasOwn = t.WindowOf[snapshotID]
	}
	if stop.IsZero() {
		if hasOwn {
			return own, nil
		}
		for i := len(t.Windows) - 1; i >= 0; i-- {
			if !t.Windows[i].PointOnly {
				return i, nil
			}
		}
		return -1, &OutsideError{Timeline: t, Stop: stop, Cause: NothingArchived}
	}
	if hasOwn && holds(t.Windows[own], stop) {
		return own, nil
	}
	for i := len(t.Windows) - 1; i >= 0; i-- {
		if holds(t.Windows[i], stop) {
			return i, nil
		}
	}
	return -1, &OutsideError{Timeline: t, Stop: stop, Cause: t.classify(stop)}
}

// holds reports whether w holds the stop point (not the zero one).
func holds(w understudy.Window, stop understudy.StopPoint) bool {
	if w.PointOnly {
		return !stop.UntilGTID.IsZero() && stop.UntilGTID.Equal(w.From)
	}
	switch {
	case !stop.UntilGTID.IsZero():
		return stop.UntilGTID.ContainsPosition(w.From) && w.To.ContainsPosition(stop.UntilGTID)
	case !stop.UntilTime.IsZero():
		return !stop.UntilTime.Before(w.FromTime) && !stop.UntilTime.After(w.ToTime)
	case !stop.BeforeGTID.IsZero():
		return !w.From.Contains(stop.BeforeGTID) && w.To.Contains(stop.BeforeGTID)
	}
	return false
}

// Cause says where a refused point lies.
type Cause int

// The causes of an OutsideError.
const (
	// Between: between windows, in a gap or where only point-only windows
	// are.
	Between Cause = iota
	// Older: before the oldest snapshot.
	Older
	// Beyond: after the end of the newest full window.
	Beyond
	// NothingArchived: no stop point, and no full window to go to the end
	// of (only point-only windows).
	NothingArchived
)

// OutsideError is a restore point that no window holds. It wraps
// ErrOutsideWindows.
type OutsideError struct {
	Timeline Timeline
	Stop     understudy.StopPoint
	Cause    Cause
}

func (e *OutsideError) Unwrap() error { return ErrOutsideWindows }

func (e *OutsideError) Error() string {
	t := e.Timeline
	of := ""
	if t.Source != "" {
		of = " of source " + t.Source
	}
	list := t.describeWindows()
	switch e.Cause {
	case Older:
		first := t.Windows[0]
		return fmt.Sprintf("the point %s is older than the oldest snapshot (%s at %s, GTID position %s); the restore windows%s are: %s",
			e.Stop, first.Snapshot, first.FromTime.Format(time.RFC3339), first.From.String(), of, list)
	case Beyond:
		last, _ := t.newestFull()
		if !e.Stop.UntilTime.IsZero() {
			return fmt.Sprintf("the point %s is beyond the archive: its last transaction was committed at %s; restore without a point to get everything archived; the restore windows%s are: %s",
				e.Stop, last.ToTime.Format(time.RFC3339), of, list)
		}
		return fmt.Sprintf("the point %s is beyond the archive, which ends at GTID position %s; the restore windows%s are: %s",
			e.Stop, last.To.String(), of, list)
	case NothingArchived:
		return fmt.Sprintf("nothing is archived after any snapshot, so there is no end to restore to: every restore window%s is a single snapshot: %s",
			of, list)
	}
	return fmt.Sprintf("the point %s is outside every restore window%s: %s", e.Stop, of, list)
}

// newestFull returns the newest window that is not point-only.
func (t Timeline) newestFull() (understudy.Window, bool) {
	for i := len(t.Windows) - 1; i >= 0; i-- {
		if !t.Windows[i].PointOnly {
			return t.Windows[i], true
		}
	}
	return understudy.Window{}, false
}

// classify says where a point outside every window lies.
func (t Timeline) classify(stop understudy.StopPoint) Cause {
	first := t.Windows[0]
	switch {
	case !stop.UntilGTID.IsZero() && !stop.UntilGTID.ContainsPosition(first.From),
		!stop.UntilTime.IsZero() && stop.UntilTime.Before(first.FromTime),
		!stop.BeforeGTID.IsZero() && first.From.Contains(stop.BeforeGTID):
		return Older
	}
	last, ok := t.newestFull()
	if !ok {
		return Between
	}
	switch {
	case !stop.UntilGTID.IsZero() && !last.To.ContainsPosition(stop.UntilGTID) && stop.UntilGTID.ContainsPosition(last.From),
		!stop.UntilTime.IsZero() && stop.UntilTime.After(last.ToTime),
		!stop.BeforeGTID.IsZero() && !last.To.Contains(stop.BeforeGTID) && !last.From.Contains(stop.BeforeGTID):
		return Beyond
	}
	return Between
}

// maxPointOnly is how many point-only windows a message lists by name.
const maxPointOnly = 3

// describeWindows lists the windows in one line, then the gaps.
func (t Timeline) describeWindows() string {
	var parts []string
	pointOnly := 0
	for _, w := range t.Windows {
		if w.PointOnly {
			pointOnly++
			if pointOnly > maxPointOnly {
				continue
			}
		}
		parts = append(parts, w.String())
	}
	if pointOnly > maxPointOnly {
		parts = append(parts, fmt.Sprintf("and %d more single snapshots (see `understudy info`)", pointOnly-maxPointOnly))
	}
	var notes []string
	for _, g := range t.Gaps {
		notes = append(notes, "there is "+DescribeGap(g))
	}
	if pointOnly > 0 {
		notes = append(notes, "a single snapshot restores only with --snapshot ID, or --until-gtid at its position")
	}
	out := strings.Join(parts, "; ")
	if len(notes) > 0 {
		out += " (" + strings.Join(notes, "; ") + ")"
	}
	return out
}

// DescribeGap describes a gap in one line: "a gap between generations 1
// and 2: " followed by GapDetail.
func DescribeGap(g understudy.Gap) string {
	return fmt.Sprintf("a gap between generations %d and %d: %s", g.Generation-1, g.Generation, GapDetail(g))
}

// GapDetail says what a gap lacks: "the transactions after GTID position
// 1-1-900 through 1-1-1400 (500 in domain 1) were purged on the primary
// before they were archived".
func GapDetail(g understudy.Gap) string {
	var missing []string
	m := g.Missing()
	for _, t := range g.To.GTIDs() {
		if n, ok := m[t.Domain]; ok {
			missing = append(missing, fmt.Sprintf("%d in domain %d", n, t.Domain))
		}
	}
	n := ""
	if len(missing) > 0 {
		n = " (" + strings.Join(missing, ", ") + ")"
	}
	from := g.From.String()
	if from == "" {
		from = "the beginning"
	} else {
		from = "GTID position " + from
	}
	return fmt.Sprintf("the transactions after %s through %s%s were purged on the primary before they were archived", from, g.To.String(), n)
}

// CheckArchived refuses a stop point that the archive does not hold, for
// export and serve: an until GTID beyond the end, inside a gap or before
// the start; a before GTID in no span; an until time before the first or
// after the last commit of every span. The zero stop point is always held.
// The error wraps ErrNotArchived and says what the archive holds.
func CheckArchived(a *archive.Archive, stop understudy.StopPoint) error {
	if err := checkSpans(a.Spans(), stop); err != nil {
		return fmt.Errorf("%w; %s", err, a.DescribeSpans())
	}
	return nil
}

func checkSpans(spans []archive.Span, stop understudy.StopPoint) error {
	if stop.IsZero() {
		return nil
	}
	for _, s := range spans {
		if spanHolds(s, stop) {
			return nil
		}
	}
	return fmt.Errorf("the point %s is %w", stop, ErrNotArchived)
}

// spanHolds reports whether the span holds the (non-zero) stop point.
func spanHolds(s archive.Span, stop understudy.StopPoint) bool {
	switch {
	case !stop.UntilGTID.IsZero():
		if !s.End.ContainsPosition(stop.UntilGTID) {
			return false
		}
		// Only the domains named by the point count: a domain missing from
		// it is not replayed.
		for _, g := range stop.UntilGTID.GTIDs() {
			if st, ok := s.Start.Domain(g.Domain); ok && st.Seq > g.Seq {
				return false
			}
		}
		return true
	case !stop.UntilTime.IsZero():
		if s.Transactions == 0 || s.LastTime == 0 {
			return false
		}
		t := stop.UntilTime.Unix()
		return int64(s.FirstTime) <= t && t <= int64(s.LastTime)
	case !stop.BeforeGTID.IsZero():
		return s.End.Contains(stop.BeforeGTID) && !s.Start.Contains(stop.BeforeGTID)
	}
	return true
}
