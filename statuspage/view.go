package statuspage

import (
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/history"
)

// Level is how much a source (or one of its facts) needs a human.
type Level int

// The levels, in increasing order of trouble.
const (
	OK Level = iota
	Warn
	Bad
)

// Class is the level's CSS class.
func (l Level) Class() string { return [...]string{"ok", "warn", "bad"}[l] }

// recent is how long a gap or a binlog server error keeps a source marked
// as needing attention; it is listed on its card for as long as the status
// holds it.
const recent = 24 * time.Hour

// maxWindows is how many restore windows a card lists.
const maxWindows = 4

// page is what the template renders.
type page struct {
	Title   string
	Host    string
	Now     time.Time
	Refresh int // seconds
	Level   Level
	Summary string
	Icon    template.URL
	Sources []card
	Style   template.CSS
	Script  template.JS
}

// card is one source.
type card struct {
	Name    string
	State   string
	Primary string
	Version string
	Level   Level
	// Reasons say why the source needs attention.
	Reasons []string
	Rows    []row
}

// row is one labelled fact of a card, in one or more lines.
type row struct {
	Label string
	Lines []line
}

// line is a line of text with a style: "" plain, "absent" for what does
// not exist yet, "mono" for positions, or a Level's class; Title is shown
// on hover.
type line struct {
	Text  string
	Class string
	Title string
}

func (p page) Generated() string { return stamp(p.Now) }

// build lays out the page for the statuses at now, the sources that need
// attention first (worst first, otherwise in the config's order).
func build(sts []understudy.SourceStatus, now time.Time, lagWarn time.Duration) page {
	p := page{Now: now}
	for _, s := range sts {
		p.Sources = append(p.Sources, buildCard(s, now, lagWarn))
	}
	sort.SliceStable(p.Sources, func(i, j int) bool { return p.Sources[i].Level > p.Sources[j].Level })
	var trouble []string
	for _, c := range p.Sources {
		p.Level = max(p.Level, c.Level)
		if c.Level > OK {
			trouble = append(trouble, c.Name+" ("+strings.Join(c.Reasons, "; ")+")")
		}
	}
	switch {
	case len(sts) == 0:
		p.Level, p.Summary, p.Title = Warn, "No sources are configured.", "understudy: no sources"
	case len(trouble) == 0 && len(sts) == 1:
		p.Summary = sts[0].Name + " is streaming; nothing needs attention."
		p.Title = "understudy: all streaming"
	case len(trouble) == 0:
		p.Summary = fmt.Sprintf("All %d sources are streaming; nothing needs attention.", len(sts))
		p.Title = "understudy: all streaming"
	default:
		p.Summary = fmt.Sprintf("%d of %s %s attention: %s.", len(trouble), plural(len(sts), "source"),
			map[bool]string{true: "needs", false: "need"}[len(trouble) == 1], strings.Join(trouble, ", "))
		mark := "⚠"
		if p.Level == Bad {
			mark = "✖"
		}
		p.Title = fmt.Sprintf("%s %d need attention · understudy", mark, len(trouble))
	}
	p.Icon = icons[p.Level]
	return p
}

// icons are the tab's favicon: a dot in the page's colour.
var icons = [...]template.URL{
	OK:   dot("#1a7f37"),
	Warn: dot("#bf8700"),
	Bad:  dot("#cf222e"),
}

func dot(colour string) template.URL {
	svg := `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="` + colour + `"/></svg>`
	return template.URL("data:image/svg+xml," + strings.NewReplacer("#", "%23", "<", "%3C", ">", "%3E", `"`, "'", " ", "%20").Replace(svg))
}

func buildCard(s understudy.SourceStatus, now time.Time, lagWarn time.Duration) card {
	c := card{Name: s.Name, State: string(s.State), Primary: s.Primary, Version: s.PrimaryVersion}
	flag := func(l Level, reason string) {
		c.Level = max(c.Level, l)
		c.Reasons = append(c.Reasons, reason)
	}
	switch s.State {
	case understudy.StateStreaming:
	case understudy.StateStarting:
		flag(Warn, "starting")
	case understudy.StateReconnecting:
		flag(Warn, "not connected to the primary")
	case understudy.StateStopped:
		flag(Bad, "archiving stopped")
	default:
		flag(Bad, "archiving failing")
	}

	// GTID position
	if s.Position != "" {
		c.add("GTID position", line{Text: s.Position, Class: "mono"})
	} else {
		c.add("GTID position", line{Text: "nothing archived yet", Class: "absent"})
	}

	// Lag
	switch {
	case s.SecondsBehind == nil:
		c.add("Lag", line{Text: "unknown (not connected to the primary)", Class: "absent"})
	case time.Duration(*s.SecondsBehind)*time.Second > lagWarn:
		flag(Warn, "lagging "+seconds(*s.SecondsBehind))
		c.add("Lag", line{Text: seconds(*s.SecondsBehind) + " behind the primary", Class: Warn.Class()})
	default:
		c.add("Lag", line{Text: seconds(*s.SecondsBehind) + " behind the primary", Class: OK.Class()})
	}
	if s.LastCommit != nil {
		c.add("Last commit", line{Text: when(*s.LastCommit, now), Title: s.LastCommit.UTC().Format(time.RFC3339)})
	} else {
		c.add("Last commit", line{Text: "none archived yet", Class: "absent"})
	}

	// Restore windows
	if len(s.RestoreWindows) == 0 {
		flag(Warn, "no restore window")
		c.add("Restore windows", line{Text: "none: nothing can be restored yet (no snapshot)", Class: "absent " + Warn.Class()})
	} else {
		// The newest first; a long list of point-only windows (kept by
		// keep_daily and the like) is cut short.
		ws := append([]understudy.Window(nil), s.RestoreWindows...)
		sort.SliceStable(ws, func(i, j int) bool { return ws[i].ToTime.After(ws[j].ToTime) })
		var ls []line
		for i, w := range ws {
			if i == maxWindows && len(ws) > maxWindows+1 {
				ls = append(ls, line{Text: fmt.Sprintf("and %d older (understudy info lists them all)", len(ws)-i), Class: "absent"})
				break
			}
			ls = append(ls, windowLines(w)...)
		}
		c.add("Restore windows", ls...)
	}
	for _, g := range s.Gaps {
		l := Warn
		if now.Sub(g.Detected) >= recent {
			l = OK
		} else {
			flag(Warn, "gap in the archive")
		}
		c.add("Gap", line{Text: fmt.Sprintf("before generation %d, found %s: %s", g.Generation, when(g.Detected, now), history.GapDetail(g)), Class: l.Class()})
	}

	// Last snapshot
	if sn := s.LastSnapshot; sn != nil {
		c.add("Last snapshot",
			line{Text: fmt.Sprintf("%s, finished %s, %s", sn.ID, when(sn.Finished, now), humanBytes(sn.Bytes)), Title: sn.Finished.UTC().Format(time.RFC3339)},
			line{Text: "GTID " + orNone(sn.Position.String()), Class: "mono"})
	} else {
		c.add("Last snapshot", line{Text: "none yet", Class: "absent"})
	}

	// Last drill
	if d := s.LastDrill; d != nil {
		var ls []line
		if d.OK {
			ls = append(ls, line{Text: fmt.Sprintf("passed %s: RTO %s (load %s, replay %s), %s", when(d.Time, now),
				secs(d.RTOSeconds), secs(d.LoadSeconds), secs(d.ReplaySeconds), humanBytes(d.Bytes)), Class: OK.Class(), Title: d.Time.UTC().Format(time.RFC3339)})
			if d.Proved != "" {
				ls = append(ls, line{Text: d.Proved})
			}
		} else {
			flag(Bad, "last drill failed")
			ls = append(ls, line{Text: "FAILED " + when(d.Time, now), Class: Bad.Class(), Title: d.Time.UTC().Format(time.RFC3339)})
			if d.Error != "" {
				ls = append(ls, line{Text: d.Error, Class: Bad.Class()})
			}
		}
		if d.Snapshot != "" || !d.Position.IsZero() {
			ls = append(ls, line{Text: fmt.Sprintf("snapshot %s, replayed to GTID %s", orNone(d.Snapshot), orNone(d.Position.String())), Class: "mono"})
		}
		c.add("Last drill", ls...)
	} else {
		c.add("Last drill", line{Text: "never run", Class: "absent"})
	}

	// The store
	if st := s.Store; st != nil {
		l := OK
		text := "holds everything archived"
		if st.BehindBytes > 0 {
			text = fmt.Sprintf("%s behind for %s", humanBytes(st.BehindBytes), secs(st.LagSeconds))
			if st.LagSeconds > 60 {
				l = Warn
				flag(Warn, "store lagging")
			}
		}
		ls := []line{{Text: text, Class: l.Class()}, {Text: "GTID " + orNone(st.Position.String()), Class: "mono"}}
		if st.LastUpload != nil {
			ls = append(ls, line{Text: "last upload " + whenPtr(st.LastUpload, now), Class: "absent"})
		}
		if st.LastError != "" {
			ls = append(ls, line{Text: st.LastError, Class: Warn.Class()}, line{Text: whenPtr(st.LastErrorTime, now), Class: "absent"})
		}
		c.add("Store", ls...)
	}

	// Last error
	switch {
	case s.LastError == "":
		c.add("Last error", line{Text: "none", Class: "absent"})
	case s.State == understudy.StateStreaming:
		c.add("Last error", line{Text: s.LastError}, line{Text: "recovered; it happened " + whenPtr(s.LastErrorTime, now), Class: "absent"})
	default:
		l := Warn
		if c.Level == Bad {
			l = Bad
		}
		c.add("Last error", line{Text: s.LastError, Class: l.Class()}, line{Text: whenPtr(s.LastErrorTime, now), Class: "absent"})
	}
	if s.ServeLastError != "" {
		l := OK
		if s.ServeLastErrorTime == nil || now.Sub(*s.ServeLastErrorTime) < recent {
			l = Warn
			flag(Warn, "binlog server error")
		}
		c.add("Binlog server error", line{Text: s.ServeLastError, Class: l.Class()}, line{Text: whenPtr(s.ServeLastErrorTime, now), Class: "absent"})
	}
	for _, w := range s.Warnings {
		flag(Warn, "warning")
		c.add("Warning", line{Text: w, Class: Warn.Class()})
	}

	// Archive
	arch := []line{{Text: fmt.Sprintf("%s archived, %d transactions since start, %d reconnects", humanBytes(s.BytesArchived), s.Transactions, s.Reconnects)}}
	if s.Generation > 0 {
		from := "from GTID " + s.ArchiveStart
		if s.ArchiveStart == "" {
			from = "from the beginning"
		}
		if s.ArchiveStartReason != "" {
			from += ": " + s.ArchiveStartReason
		}
		arch = append(arch, line{Text: fmt.Sprintf("generation %d, %s", s.Generation, from)})
	}
	if s.ArchiveFile != "" {
		arch = append(arch, line{Text: "writing " + s.ArchiveFile, Class: "mono"})
	}
	c.add("Archive", arch...)
	if d := s.Disk; d != nil {
		c.add("Disk", line{Text: fmt.Sprintf("%s used by this source, %s free of %s", humanBytes(d.UsedBytes), humanBytes(int64(d.FreeBytes)), humanBytes(int64(d.TotalBytes)))})
	}
	return c
}

func (c *card) add(label string, ls ...line) { c.Rows = append(c.Rows, row{Label: label, Lines: ls}) }

// windowLines describes a restore window.
func windowLines(w understudy.Window) []line {
	if w.PointOnly {
		return []line{
			{Text: fmt.Sprintf("%s only (snapshot %s)", stamp(w.FromTime), w.Snapshot), Title: w.String()},
			{Text: "GTID " + orNone(w.From.String()), Class: "mono"},
		}
	}
	return []line{
		{Text: fmt.Sprintf("%s to %s", stamp(w.FromTime), stamp(w.ToTime)), Title: w.String()},
		{Text: fmt.Sprintf("GTID %s to %s", orNone(w.From.String()), orNone(w.To.String())), Class: "mono"},
	}
}

// stamp is a time as a person reads it, in UTC.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// when is a time and how long ago it was.
func when(t time.Time, now time.Time) string { return stamp(t) + " (" + ago(now.Sub(t)) + ")" }

func whenPtr(t *time.Time, now time.Time) string {
	if t == nil {
		return "at an unknown time"
	}
	return when(*t, now)
}

func ago(d time.Duration) string {
	if d < 0 {
		return "in the future: check the clocks"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h ago", d.Hours())
	default:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
}

func seconds(n int64) string {
	d := time.Duration(n) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", n)
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", n/60, n%60)
	default:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
}

func secs(f float64) string { return fmt.Sprintf("%.1f s", f) }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
