package history

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/snapshot"
)

// Policy says what retention keeps of a source.
type Policy struct {
	// Window keeps whatever restores any point in the last Window: the
	// anchor (the newest snapshot taken at or before now − Window), every
	// snapshot after it, and, with PruneBinlogs, the binlogs from the
	// anchor's position on.
	Window time.Duration
	// MinSnapshots keeps the newest N snapshots in any case.
	MinSnapshots int
	// KeepDaily, KeepWeekly and KeepMonthly keep the newest snapshot of
	// each of the last N days, ISO weeks and months (UTC) that have one,
	// as restic does. Their binlogs are not kept.
	KeepDaily, KeepWeekly, KeepMonthly int
	// KeepLast is the snapshot.keep shorthand: with Window 0 it keeps the
	// newest N snapshots, removes the others and never removes binlogs.
	KeepLast int
	// PruneBinlogs removes the sealed archived files that end before the
	// anchor.
	PruneBinlogs bool
}

// keepsAll reports whether the policy names no rule: then nothing goes.
func (p Policy) keepsAll() bool {
	return p.Window <= 0 && p.MinSnapshots <= 0 && p.KeepDaily <= 0 && p.KeepWeekly <= 0 && p.KeepMonthly <= 0 && p.KeepLast <= 0
}

// shorthand reports whether the policy is snapshot.keep's: a count, no
// window, no binlogs.
func (p Policy) shorthand() bool { return p.Window <= 0 && p.KeepLast > 0 }

// String describes the policy in the config's words.
func (p Policy) String() string {
	if p.keepsAll() {
		return "no retention (everything is kept)"
	}
	if p.shorthand() && p.KeepDaily <= 0 && p.KeepWeekly <= 0 && p.KeepMonthly <= 0 {
		return fmt.Sprintf("snapshot.keep %d (binlogs are never removed)", p.KeepLast)
	}
	var parts []string
	if p.Window > 0 {
		parts = append(parts, "window "+FormatDuration(p.Window))
	}
	for _, f := range []struct {
		key string
		n   int
	}{{"min_snapshots", p.MinSnapshots}, {"keep_daily", p.KeepDaily}, {"keep_weekly", p.KeepWeekly}, {"keep_monthly", p.KeepMonthly}, {"snapshot.keep", p.KeepLast}} {
		if f.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", f.key, f.n))
		}
	}
	if !p.PruneBinlogs {
		parts = append(parts, "binlogs are never removed")
	}
	return strings.Join(parts, ", ")
}

// FormatDuration writes a duration the way the config does: whole days
// as "14d", else Go's notation.
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	if d >= day {
		return fmt.Sprintf("%dd%s", d/day, (d % day).String())
	}
	return d.String()
}

// Decision is what a plan does with one snapshot, and why.
type Decision struct {
	Snapshot snapshot.Listed
	Remove   bool
	Reasons  []string
}

// PrunePlan is what retention removes from a source.
type PrunePlan struct {
	Policy Policy
	// Anchor is the ID of the snapshot the window rests on ("" when there
	// is none: no snapshot, no rule, or the snapshot.keep shorthand).
	Anchor string
	// Decisions covers every snapshot, oldest first.
	Decisions []Decision
	// Snapshots are those to remove, oldest first.
	Snapshots []snapshot.Listed
	// KeepFromFile is the first archived file kept: the sealed files
	// numbered below it go. "" when no file goes.
	KeepFromFile string
	// Files are the files that go, oldest first.
	Files []archive.FileInfo
	// FilesReason says why these files go, or why none do.
	FilesReason string
}

// Plan decides what retention removes at time now from an archive and its
// snapshots (as listed by snapshot.List). It is pure: nothing is read
// beyond the values given, nothing is changed.
//
// With a Window, the anchor is the newest snapshot started at or before
// now − Window (the oldest snapshot if none is). Snapshots older than the
// anchor go, except the newest max(MinSnapshots, KeepLast) and the
// grandfather-father-son picks. A policy without a Window but with other
// rules works the same with an anchor at now: the newest snapshot. With
// PruneBinlogs, the files that end before the anchor go: every file before
// the newest file of the anchor's generation whose start position the
// anchor's position contains (older generations included). Files go only
// with a Window, and no file goes when there is no snapshot (the binlogs are the only copy then), nor when
// the anchor's binlogs are not in the archive, and the active file never
// goes.
//
// The snapshot.keep shorthand (Window 0, KeepLast N) keeps the newest N
// snapshots and removes the others, never files. A policy with no rule at
// all removes nothing.
func Plan(now time.Time, a *archive.Archive, snaps []snapshot.Listed, p Policy) PrunePlan {
	return plan(now, a.Files(), completeGenerations(a.Generations(), a.Spans()), snaps, p)
}

// plan is Plan on plain values: the archived files (oldest first, each with
// its Generation) and the generations.
func plan(now time.Time, files []archive.FileInfo, gens []archive.Generation, snaps []snapshot.Listed, p Policy) PrunePlan {
	out := PrunePlan{Policy: p}
	list := append([]snapshot.Listed(nil), snaps...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Manifest.Started.Before(list[j].Manifest.Started) })
	reasons := make([][]string, len(list))
	keep := make([]bool, len(list))
	add := func(i int, format string, args ...any) {
		keep[i] = true
		reasons[i] = append(reasons[i], fmt.Sprintf(format, args...))
	}
	finish := func() PrunePlan {
		for i, l := range list {
			d := Decision{Snapshot: l, Remove: !keep[i], Reasons: reasons[i]}
			out.Decisions = append(out.Decisions, d)
			if d.Remove {
				out.Snapshots = append(out.Snapshots, l)
			}
		}
		return out
	}

	if p.keepsAll() {
		for i := range list {
			add(i, "no retention rule")
		}
		out.FilesReason = "no retention rule: nothing is removed"
		return finish()
	}

	// The newest N.
	if n := max(p.MinSnapshots, p.KeepLast); n > 0 {
		key := "min_snapshots"
		if p.KeepLast >= p.MinSnapshots {
			key = "snapshot.keep"
		}
		for i := max(0, len(list)-n); i < len(list); i++ {
			add(i, "one of the newest %d (%s %d)", n, key, n)
		}
	}
	// Grandfather-father-son, newest first, restic's way: each rule keeps
	// the newest snapshot of each of its last N periods that have one.
	for _, r := range []struct {
		name   string
		n      int
		period func(time.Time) string
	}{
		{"keep_daily", p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"keep_weekly", p.KeepWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%04d-W%02d", y, w) }},
		{"keep_monthly", p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
	} {
		left, last := r.n, ""
		for i := len(list) - 1; i >= 0 && left > 0; i-- {
			if v := r.period(list[i].Manifest.Started.UTC()); v != last {
				add(i, "the newest of %s (%s %d)", v, r.name, r.n)
				last = v
				left--
			}
		}
	}

	if p.shorthand() {
		for i := range list {
			if !keep[i] {
				reasons[i] = append(reasons[i], fmt.Sprintf("not one of the newest %d (snapshot.keep %d)", p.KeepLast, p.KeepLast))
			}
		}
		out.FilesReason = "binlogs are never removed with snapshot.keep"
		return finish()
	}

	if len(list) == 0 {
		out.FilesReason = "there is no snapshot: the archived binlogs are the only copy of the data, and none is removed"
		return finish()
	}
	cutoff := now.Add(-max(p.Window, 0))
	anchor := 0
	for i := len(list) - 1; i >= 0; i-- {
		if !list[i].Manifest.ConsistentAt().After(cutoff) {
			anchor = i
			break
		}
	}
	am := list[anchor].Manifest
	out.Anchor = am.ID
	var why string
	switch {
	case p.Window <= 0:
		why = "the anchor: the newest snapshot (no retention window)"
	case list[anchor].Manifest.ConsistentAt().After(cutoff):
		why = fmt.Sprintf("the anchor: the oldest snapshot, and none was taken before the window (%s, since %s)", FormatDuration(p.Window), cutoff.UTC().Format(time.RFC3339))
	default:
		why = fmt.Sprintf("the anchor: the newest snapshot taken before the window (%s, since %s)", FormatDuration(p.Window), cutoff.UTC().Format(time.RFC3339))
	}
	keep[anchor] = true
	reasons[anchor] = append([]string{why}, reasons[anchor]...)
	for i := anchor + 1; i < len(list); i++ {
		add(i, "newer than the anchor")
	}
	for i := 0; i < anchor; i++ {
		if !keep[i] {
			reasons[i] = append(reasons[i], fmt.Sprintf("older than the anchor %s, and kept by no rule", am.ID))
		}
	}

	if !p.PruneBinlogs {
		out.FilesReason = "retention does not remove binlogs"
		return finish()
	}
	if p.Window <= 0 {
		// Without a window nobody asked for a point-in-time horizon:
		// binlogs are only ever removed to bound one.
		out.FilesReason = "binlogs are removed only with a retention window (retention.window)"
		return finish()
	}
	g := generationOf(gens, am.Position)
	from := -1
	for i := len(files) - 1; i >= 0; i-- {
		if files[i].Generation == g && am.Position.ContainsPosition(files[i].StartPosition) {
			from = i
			break
		}
	}
	if from < 0 {
		out.FilesReason = fmt.Sprintf("the binlogs that follow the anchor %s (GTID position %s, generation %d) are not in the archive: no file is removed", am.ID, am.Position.String(), g)
		return finish()
	}
	n := 0
	for n < from && files[n].Sealed {
		n++
	}
	if n == 0 {
		out.FilesReason = fmt.Sprintf("no archived file ends before the anchor %s (GTID position %s, in %s)", am.ID, am.Position.String(), files[from].Name)
		return finish()
	}
	out.Files = append([]archive.FileInfo(nil), files[:n]...)
	out.KeepFromFile = files[n].Name
	out.FilesReason = fmt.Sprintf("they end before the anchor %s (GTID position %s), whose binlogs begin in %s", am.ID, am.Position.String(), files[from].Name)
	return finish()
}

// WindowsAfter returns the restore windows that the archive and its
// snapshots will have once the plan is applied (every planned snapshot and
// file removed).
func (p PrunePlan) WindowsAfter(a *archive.Archive) []understudy.Window {
	var kept []snapshot.Listed
	for _, d := range p.Decisions {
		if !d.Remove {
			kept = append(kept, d.Snapshot)
		}
	}
	gone := map[string]bool{}
	for _, f := range p.Files {
		gone[f.Name] = true
	}
	var spans []archive.Span
	for _, s := range a.Spans() {
		left := archive.Span{Generation: s.Generation, End: s.End, LastTime: s.LastTime}
		for _, f := range s.Files {
			if gone[f.Name] {
				continue
			}
			if len(left.Files) == 0 {
				left.Start = f.StartPosition
			}
			left.Files = append(left.Files, f)
			left.Transactions += f.Transactions
			left.Bytes += f.Size
			if f.Transactions > 0 && left.FirstTime == 0 {
				left.FirstTime = f.FirstTime
			}
		}
		if len(left.Files) > 0 {
			spans = append(spans, left)
		}
	}
	ws, _ := windows(completeGenerations(a.Generations(), a.Spans()), spans, kept)
	return ws
}
