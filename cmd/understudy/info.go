package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/drill"
	"github.com/understudy-db/understudy/history"
	"github.com/understudy-db/understudy/remote"
	"github.com/understudy-db/understudy/snapshot"
)

type infoOptions struct {
	config, source string
	json           bool
}

// cmdInfo describes what each source's archive holds and what can be
// restored from it, in the spirit of `pgbackrest info`. It reads the disk
// only, and works while `understudy run` runs.
func cmdInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o infoOptions
	fs := newFlagSet("info", stderr)
	fs.config(&o.config)
	fs.sourceOrEvery(&o.source)
	fs.json(&o.json)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, sources, err := loadSources(o.config, o.source)
	if err != nil {
		return err
	}
	var out []sourceInfo
	for _, s := range sources {
		out = append(out, collectInfo(ctx, cfg, s, newLogger(stderr, false, false)))
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for i, si := range out {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printInfo(stdout, si)
	}
	return nil
}

// sourceInfo is `understudy info` of one source. Its JSON keys are stable.
type sourceInfo struct {
	Source string `json:"source"`
	Dir    string `json:"dir"`
	// Error is set when the archive could not be read, Note when there is
	// nothing to read yet.
	Error     string `json:"error,omitempty"`
	Note      string `json:"note,omitempty"`
	Retention string `json:"retention"`
	// Position is the archive position after the last durable
	// transaction.
	Position     string                 `json:"gtid_position"`
	FirstCommit  *time.Time             `json:"first_commit,omitempty"`
	LastCommit   *time.Time             `json:"last_commit,omitempty"`
	Files        int                    `json:"files"`
	Bytes        int64                  `json:"bytes"`
	Transactions int64                  `json:"transactions"`
	Disk         *understudy.DiskStatus `json:"disk,omitempty"`
	Generations  []generationInfo       `json:"generations"`
	Gaps         []gapInfo              `json:"gaps"`
	Windows      []understudy.Window    `json:"restore_windows"`
	Snapshots    []snapshotInfo         `json:"snapshots"`
	// LastDrill is the source's last restore drill, and
	// LastSuccessfulDrill the last one that passed (see docs/drills.md).
	LastDrill           *understudy.DrillResult `json:"last_drill,omitempty"`
	LastSuccessfulDrill *understudy.DrillResult `json:"last_successful_drill,omitempty"`
	// Store is what the store (storage.s3) holds of the source.
	Store *storeInfo `json:"store,omitempty"`
}

// storeInfo is what the store holds of a source.
type storeInfo struct {
	// Read is set when the archive directory was empty and the rest of
	// the information comes from the store.
	Read        bool   `json:"read_from_store"`
	Position    string `json:"gtid_position"`
	SealedFiles int    `json:"sealed_files"`
	ActiveFile  string `json:"active_file,omitempty"`
	ActiveBytes int64  `json:"active_bytes,omitempty"`
	Snapshots   int    `json:"snapshots"`
	Manifest    int64  `json:"manifest"`
	Error       string `json:"error,omitempty"`
}

type generationInfo struct {
	ID            int        `json:"id"`
	FirstFile     string     `json:"first_file"`
	StartPosition string     `json:"start_position"`
	Started       *time.Time `json:"started,omitempty"`
	Reason        string     `json:"reason"`
	Gap           *gapInfo   `json:"gap,omitempty"`
	// What the archive still holds of it (retention may have removed its
	// oldest files): from ArchivedFrom through ArchivedTo.
	Files        int        `json:"files"`
	Bytes        int64      `json:"bytes"`
	Transactions int64      `json:"transactions"`
	ArchivedFrom string     `json:"archived_from"`
	ArchivedTo   string     `json:"archived_to"`
	FirstCommit  *time.Time `json:"first_commit,omitempty"`
	LastCommit   *time.Time `json:"last_commit,omitempty"`
}

type gapInfo struct {
	// Generation is the generation that begins after the gap.
	Generation int       `json:"generation"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	Detected   time.Time `json:"detected"`
	Reason     string    `json:"reason"`
	// Missing is the number of skipped transactions per GTID domain.
	Missing map[string]uint64 `json:"missing_transactions"`
	// Description is what the gap lacks, in words.
	Description string `json:"description"`
}

type snapshotInfo struct {
	ID         string    `json:"id"`
	Position   string    `json:"gtid_position"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	Bytes      int64     `json:"bytes"`
	Generation int       `json:"generation"`
	// PointOnly is set when the snapshot's binlogs are gone or not archived
	// yet: it restores to its own position only.
	PointOnly bool `json:"point_only"`
}

func newGapInfo(g understudy.Gap) *gapInfo {
	gi := &gapInfo{Generation: g.Generation, From: g.From.String(), To: g.To.String(), Detected: g.Detected.UTC(), Reason: g.Reason,
		Missing: map[string]uint64{}, Description: history.GapDetail(g)}
	for d, n := range g.Missing() {
		gi.Missing[strconv.FormatUint(uint64(d), 10)] = n
	}
	return gi
}

func unixTime(t uint32) *time.Time {
	if t == 0 {
		return nil
	}
	tt := time.Unix(int64(t), 0).UTC()
	return &tt
}

func collectInfo(ctx context.Context, cfg *config.Config, s *config.Source, log *slog.Logger) sourceInfo {
	dir, snapRoot := cfg.SourceDir(s.Name), cfg.SnapshotDir(s.Name)
	var store *storeInfo
	if cfg.Storage != nil {
		store = &storeInfo{}
		d, err := readDirs(ctx, cfg, s.Name, false, log)
		switch {
		case err != nil:
			store.Error = err.Error()
		case d.fromStore():
			store.Read = true
			dir, snapRoot = d.dir, d.snapRoot
			describeStore(store, d.view, len(d.snaps))
		default:
			if st, _, err := openStore(cfg, log); err != nil {
				store.Error = err.Error()
			} else if v, err := remote.OpenView(ctx, *st, s.Name); err != nil {
				store.Error = err.Error()
			} else if snaps, err := remote.ListSnapshots(ctx, *st, s.Name); err != nil {
				store.Error = err.Error()
			} else {
				describeStore(store, v, len(snaps))
			}
		}
	}
	si := sourceInfo{Store: store, Source: s.Name, Dir: dir, Retention: "none", Generations: []generationInfo{}, Gaps: []gapInfo{},
		Windows: []understudy.Window{}, Snapshots: []snapshotInfo{}}
	if cfg.ResolveRetention(s).Enabled {
		si.Retention = retentionPolicy(cfg, s).String()
	}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		si.Note = "nothing archived yet: " + dir + " does not exist"
		return si
	}
	si.Disk = diskStatus(dir)
	a, err := archive.Open(dir)
	if err != nil {
		si.Error = err.Error()
		return si
	}
	snaps, err := snapshot.List(snapRoot)
	if err != nil {
		si.Error = err.Error()
	}
	tl := history.NewTimeline(s.Name, a, snaps)
	si.Position = a.Position().String()
	si.Files, si.Bytes = len(a.Files()), a.Bytes()
	spans := map[int]archive.Span{}
	for _, sp := range a.Spans() {
		spans[sp.Generation] = sp
		si.Transactions += sp.Transactions
		if si.FirstCommit == nil {
			si.FirstCommit = unixTime(sp.FirstTime)
		}
		if t := unixTime(sp.LastTime); t != nil {
			si.LastCommit = t
		}
	}
	for _, g := range a.Generations() {
		gi := generationInfo{ID: g.ID, FirstFile: g.FirstFile, StartPosition: g.StartPosition.String(), Reason: g.Reason}
		if !g.Started.IsZero() {
			t := g.Started.UTC()
			gi.Started = &t
		}
		if g.Gap != nil {
			gi.Gap = newGapInfo(*g.Gap)
			si.Gaps = append(si.Gaps, *gi.Gap)
		}
		if sp, ok := spans[g.ID]; ok {
			gi.Files, gi.Bytes, gi.Transactions = len(sp.Files), sp.Bytes, sp.Transactions
			gi.ArchivedFrom, gi.ArchivedTo = sp.Start.String(), sp.End.String()
			gi.FirstCommit, gi.LastCommit = unixTime(sp.FirstTime), unixTime(sp.LastTime)
		}
		si.Generations = append(si.Generations, gi)
	}
	si.Windows = nonNil(tl.Windows)
	for _, l := range snaps {
		m := l.Manifest
		sn := snapshotInfo{ID: m.ID, Position: m.Position.String(), Started: m.Started.UTC(), Finished: m.Finished.UTC(), Bytes: m.Size()}
		if i, ok := tl.WindowOf[m.ID]; ok {
			sn.Generation, sn.PointOnly = tl.Windows[i].Generation, tl.Windows[i].PointOnly
		}
		si.Snapshots = append(si.Snapshots, sn)
	}
	if r, ok, err := drill.ReadRecord(dir); err != nil {
		si.Error = strings.TrimPrefix(si.Error+"; "+err.Error(), "; ")
	} else if ok {
		si.LastDrill, si.LastSuccessfulDrill = &r.Last, r.LastSuccess
	}
	return si
}

// diskStatus measures a source's directory: the bytes of its files
// (archive and snapshots) and the free and total space of its filesystem.
func diskStatus(dir string) *understudy.DiskStatus {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil
	}
	d := &understudy.DiskStatus{FreeBytes: st.Bavail * uint64(st.Bsize), TotalBytes: st.Blocks * uint64(st.Bsize)}
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				d.UsedBytes += fi.Size()
			}
		}
		return nil
	})
	return d
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func fmtPos(p string) string {
	if p == "" {
		return "(empty: the primary's first transaction)"
	}
	return p
}

func printInfo(w io.Writer, si sourceInfo) {
	fmt.Fprintf(w, "source %s (%s)\n", si.Source, si.Dir)
	if si.Note != "" {
		fmt.Fprintf(w, "  %s\n", si.Note)
		return
	}
	if si.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", si.Error)
		if si.Files == 0 {
			return
		}
	}
	fmt.Fprintf(w, "  archive:     %d files, %s, %d transactions; GTID position %s\n", si.Files, humanBytes(si.Bytes), si.Transactions, fmtPos(si.Position))
	fmt.Fprintf(w, "  commits:     first %s, last %s\n", fmtTime(si.FirstCommit), fmtTime(si.LastCommit))
	if d := si.Disk; d != nil {
		pct := 0.0
		if d.TotalBytes > 0 {
			pct = 100 * float64(d.FreeBytes) / float64(d.TotalBytes)
		}
		fmt.Fprintf(w, "  disk:        %s used by this source; %s free of %s (%.0f%%) on its filesystem\n",
			humanBytes(d.UsedBytes), humanBytes(int64(d.FreeBytes)), humanBytes(int64(d.TotalBytes)), pct)
	}
	fmt.Fprintf(w, "  retention:   %s\n", si.Retention)
	if st := si.Store; st != nil {
		switch {
		case st.Error != "":
			fmt.Fprintf(w, "  store:       error: %s\n", st.Error)
		default:
			from := ""
			if st.Read {
				from = " (the archive directory is empty: read from the store)"
			}
			fmt.Fprintf(w, "  store:       GTID position %s; %d sealed files, active %s (%s), %d snapshots, manifest %d%s\n",
				fmtPos(st.Position), st.SealedFiles, orNone(st.ActiveFile), humanBytes(st.ActiveBytes), st.Snapshots, st.Manifest, from)
		}
	}
	fmt.Fprintln(w, "  generations:")
	if len(si.Generations) == 0 {
		fmt.Fprintln(w, "    none: the archive has not begun")
	}
	for _, g := range si.Generations {
		if g.Gap != nil {
			fmt.Fprintf(w, "    GAP before generation %d: %s (detected %s; the primary said: %s)\n", g.ID, g.Gap.Description, g.Gap.Detected.Format(time.RFC3339), g.Gap.Reason)
		}
		started := "-"
		if g.Started != nil {
			started = g.Started.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "    %d  begins at GTID %s (%s), started %s, first file %s\n", g.ID, fmtPos(g.StartPosition), g.Reason, started, g.FirstFile)
		if g.Files == 0 {
			fmt.Fprintln(w, "       no archived file left")
			continue
		}
		fmt.Fprintf(w, "       %d files, %s, %d transactions: GTID %s to %s, commits %s to %s\n", g.Files, humanBytes(g.Bytes), g.Transactions,
			fmtPos(g.ArchivedFrom), fmtPos(g.ArchivedTo), fmtTime(g.FirstCommit), fmtTime(g.LastCommit))
	}
	fmt.Fprintln(w, "  restore windows:")
	if len(si.Windows) == 0 {
		fmt.Fprintln(w, "    none: there is no snapshot (take one with `understudy snapshot`)")
	}
	for _, win := range si.Windows {
		kind := "from snapshot " + win.Snapshot
		if win.PointOnly {
			kind = "its binlogs are not in the archive"
		}
		fmt.Fprintf(w, "    generation %d: %s, %s\n", win.Generation, win, kind)
	}
	fmt.Fprintf(w, "  last drill:  %s\n", describeDrill(si.LastDrill))
	if d := si.LastDrill; d != nil && d.Proved != "" {
		fmt.Fprintf(w, "               proved: %s\n", d.Proved)
	}
	if d := si.LastDrill; d != nil && !d.OK {
		last := "never"
		if s := si.LastSuccessfulDrill; s != nil {
			last = describeDrill(s)
		}
		fmt.Fprintf(w, "               last passed: %s\n", last)
	}
	fmt.Fprintln(w, "  snapshots:")
	if len(si.Snapshots) == 0 {
		fmt.Fprintln(w, "    none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    ID\tGTID POSITION\tTAKEN\tSIZE\tGENERATION\tRESTORES")
	snaps := append([]snapshotInfo(nil), si.Snapshots...)
	sort.SliceStable(snaps, func(i, j int) bool { return snaps[i].Started.Before(snaps[j].Started) })
	for _, s := range snaps {
		restores := "any point of its window"
		if s.PointOnly {
			restores = "its own position only"
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%d\t%s\n", s.ID, fmtPos(s.Position), s.Started.Format(time.RFC3339), humanBytes(s.Bytes), s.Generation, restores)
	}
	tw.Flush()
}

// sourceWindows returns the restore windows and the gaps of a source, from
// its archive and snapshots on disk (nil, nil, nil when nothing is
// archived yet). `understudy run` serves them in /status.
func sourceWindows(cfg *config.Config, name string) ([]understudy.Window, []understudy.Gap, error) {
	dir := cfg.SourceDir(name)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return []understudy.Window{}, nil, nil
	}
	a, err := archive.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	snaps, err := snapshot.List(cfg.SnapshotDir(name))
	if err != nil {
		return nil, a.Gaps(), err
	}
	return nonNil(history.Windows(a, snaps)), a.Gaps(), nil
}

func describeStore(si *storeInfo, v *remote.View, snaps int) {
	si.Position, si.SealedFiles, si.Snapshots, si.Manifest = v.Position().String(), len(v.Man.Files), snaps, v.Man.Seq
	if v.Tip.Seq > 0 {
		si.ActiveFile, si.ActiveBytes = v.Tip.File, v.Tip.Size
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
