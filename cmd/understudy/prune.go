package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/history"
	"github.com/understudy-db/understudy/snapshot"
)

type pruneOptions struct {
	config, source string
	dryRun, json   bool
	debug          bool
}

// errRunning is the refusal of `prune` while `understudy run` holds an
// archive.
var errRunning = errors.New("understudy run is running and prunes by itself; use --dry-run to see the plan")

func cmdPrune(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o pruneOptions
	fs := newFlagSet("prune", stderr)
	fs.config(&o.config)
	fs.sourceOrEvery(&o.source)
	fs.dryRun(&o.dryRun)
	fs.json(&o.json)
	fs.debug(&o.debug)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, sources, err := loadSources(o.config, o.source)
	if err != nil {
		return err
	}
	log := newLogger(stderr, o.debug, false)
	var reports []pruneReport
	for _, s := range sources {
		rep, err := pruneCommand(ctx, cfg, s, o.dryRun, log)
		if err != nil {
			return err
		}
		reports = append(reports, rep)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	for _, r := range reports {
		printPrune(stdout, r)
	}
	return nil
}

// pruneCommand is one source of `understudy prune`: without dryRun it
// takes the archive's lock (refused while `understudy run` holds it).
func pruneCommand(ctx context.Context, cfg *config.Config, s *config.Source, dryRun bool, log *slog.Logger) (pruneReport, error) {
	dir := cfg.SourceDir(s.Name)
	var w *archive.Writer
	if _, err := os.Stat(dir); err == nil && !dryRun && cfg.ResolveRetention(s).Enabled {
		var err error
		w, err = archive.OpenWriter(dir, archive.WriterOptions{Logger: log.With("source", s.Name)})
		if errors.Is(err, understudy.ErrLocked) {
			return pruneReport{}, fmt.Errorf("source %s: %w", s.Name, errRunning)
		}
		if err != nil {
			return pruneReport{}, fmt.Errorf("source %s: %w", s.Name, err)
		}
		defer w.Close()
	}
	rep, err := pruneSource(ctx, cfg, s, w, dryRun, log)
	if err != nil {
		return rep, fmt.Errorf("source %s: %w", s.Name, err)
	}
	return rep, nil
}

// loadSources loads the config at path and returns it with the named
// source, or with every source when name is "".
func loadSources(path, name string) (*config.Config, []*config.Source, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	if name != "" {
		s, err := cfg.Source(name)
		if err != nil {
			return nil, nil, err
		}
		return cfg, []*config.Source{s}, nil
	}
	var out []*config.Source
	for i := range cfg.Sources {
		out = append(out, &cfg.Sources[i])
	}
	return cfg, out, nil
}

// pruneReport is what prune planned for one source and, unless it was a
// dry run, what it removed.
type pruneReport struct {
	Source  string `json:"source"`
	DryRun  bool   `json:"dry_run"`
	Enabled bool   `json:"retention_enabled"`
	Policy  string `json:"policy"`
	// Note says why nothing was planned (no retention, nothing archived).
	Note string `json:"note,omitempty"`
	// Anchor is the snapshot the retention window rests on.
	Anchor       string              `json:"anchor,omitempty"`
	Snapshots    []pruneSnapshot     `json:"snapshots"`
	Files        []pruneFile         `json:"files"`
	KeepFromFile string              `json:"keep_from_file,omitempty"`
	FilesReason  string              `json:"files_reason,omitempty"`
	Bytes        int64               `json:"bytes"` // what the plan frees
	Removed      *pruneRemoved       `json:"removed,omitempty"`
	Windows      []understudy.Window `json:"restore_windows_after"`
}

type pruneSnapshot struct {
	ID       string    `json:"id"`
	Position string    `json:"gtid_position"`
	Time     time.Time `json:"time"`
	Bytes    int64     `json:"bytes"`
	Remove   bool      `json:"remove"`
	Reasons  []string  `json:"reasons"`
}

type pruneFile struct {
	Name          string `json:"name"`
	Generation    int    `json:"generation"`
	Bytes         int64  `json:"bytes"`
	StartPosition string `json:"start_position"`
	EndPosition   string `json:"end_position"`
}

type pruneRemoved struct {
	Snapshots     []string `json:"snapshots"`
	HeldSnapshots []string `json:"held_snapshots"`
	Files         []string `json:"files"`
	// HeldFiles counts planned files left because a reader holds one.
	HeldFiles int `json:"held_files"`
}

// pruneSource plans retention for source s and, unless dryRun, applies it
// through w, the archive's writer (held by `understudy run`, or opened by
// `understudy prune`). w may be nil for a dry run; otherwise without a
// writer only snapshots go.
func pruneSource(ctx context.Context, cfg *config.Config, s *config.Source, w *archive.Writer, dryRun bool, log *slog.Logger) (pruneReport, error) {
	enabled := cfg.ResolveRetention(s).Enabled
	p := retentionPolicy(cfg, s)
	rep := pruneReport{Source: s.Name, DryRun: dryRun, Enabled: enabled, Policy: p.String(), Snapshots: []pruneSnapshot{}, Files: []pruneFile{}}
	if !enabled {
		rep.Policy = "none"
		rep.Note = "no retention is configured for this source (see docs/config.md): nothing is removed"
		return rep, nil
	}
	dir := cfg.SourceDir(s.Name)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		rep.Note = "nothing is archived yet"
		return rep, nil
	}
	a, err := archive.Open(dir)
	if err != nil {
		return rep, err
	}
	snaps, err := snapshot.List(cfg.SnapshotDir(s.Name))
	if err != nil {
		return rep, err
	}
	plan := history.Plan(time.Now(), a, snaps, p)
	rep.Anchor, rep.KeepFromFile, rep.FilesReason = plan.Anchor, plan.KeepFromFile, plan.FilesReason
	for _, d := range plan.Decisions {
		m := d.Snapshot.Manifest
		rep.Snapshots = append(rep.Snapshots, pruneSnapshot{ID: m.ID, Position: m.Position.String(), Time: m.Started.UTC(), Bytes: m.Size(), Remove: d.Remove, Reasons: d.Reasons})
		if d.Remove {
			rep.Bytes += m.Size()
		}
	}
	for _, f := range plan.Files {
		rep.Files = append(rep.Files, pruneFile{Name: f.Name, Generation: f.Generation, Bytes: f.Size, StartPosition: f.StartPosition.String(), EndPosition: f.EndPosition.String()})
		rep.Bytes += f.Size
	}
	if !dryRun && w == nil && len(plan.Files) > 0 {
		// The archive is `understudy run`'s: it prunes the files itself.
		plan.KeepFromFile, plan.Files = "", nil
		rep.Files, rep.FilesReason = []pruneFile{}, "binlog files are pruned by the running `understudy run`"
	}
	rep.Windows = nonNil(plan.WindowsAfter(a))
	if dryRun || (len(plan.Snapshots) == 0 && len(plan.Files) == 0) {
		return rep, nil
	}
	res, err := history.Apply(ctx, plan, w, cfg.SnapshotDir(s.Name), cfg.Storage != nil, log.With("source", s.Name))
	rep.Removed = &pruneRemoved{Snapshots: res.Snapshots, HeldSnapshots: res.HeldSnapshots, HeldFiles: len(plan.Files) - len(res.Files)}
	for _, f := range res.Files {
		rep.Removed.Files = append(rep.Removed.Files, f.Name)
	}
	return rep, err
}

func nonNil(ws []understudy.Window) []understudy.Window {
	if ws == nil {
		return []understudy.Window{}
	}
	return ws
}

func printPrune(w io.Writer, r pruneReport) {
	fmt.Fprintf(w, "source %s: retention %s\n", r.Source, r.Policy)
	if r.Note != "" {
		fmt.Fprintf(w, "  %s\n", r.Note)
		return
	}
	verb := "remove"
	if r.DryRun {
		verb = "would remove"
	}
	if r.Anchor != "" {
		for _, s := range r.Snapshots {
			if s.ID == r.Anchor {
				fmt.Fprintf(w, "  anchor: snapshot %s (%s, GTID position %s): the retention window rests on it\n", s.ID, s.Time.Format(time.RFC3339), s.Position)
			}
		}
	}
	if len(r.Snapshots) == 0 {
		fmt.Fprintln(w, "  no snapshot")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range r.Snapshots {
		action := "keep"
		if s.Remove {
			action = verb
		}
		fmt.Fprintf(tw, "  %s\tsnapshot %s\t%s\tGTID %s\t%s\t%s\n", action, s.ID, s.Time.Format(time.RFC3339), s.Position, humanBytes(s.Bytes), strings.Join(s.Reasons, "; "))
	}
	tw.Flush()
	switch n := len(r.Files); {
	case n == 0:
		fmt.Fprintf(w, "  keep every archived file: %s\n", r.FilesReason)
	case n == 1:
		fmt.Fprintf(w, "  %s archived file %s (%s): %s\n", verb, r.Files[0].Name, humanBytes(r.Files[0].Bytes), r.FilesReason)
	default:
		var b int64
		for _, f := range r.Files {
			b += f.Bytes
		}
		fmt.Fprintf(w, "  %s %d archived files, %s to %s (%s): %s\n", verb, n, r.Files[0].Name, r.Files[n-1].Name, humanBytes(b), r.FilesReason)
	}
	if len(r.Windows) > 0 {
		fmt.Fprintf(w, "  restore windows after: %s\n", describeWindows(r.Windows))
	}
	switch {
	case r.DryRun:
		fmt.Fprintf(w, "  dry run: nothing was removed (%s would be freed)\n", humanBytes(r.Bytes))
	case r.Removed == nil:
		fmt.Fprintln(w, "  nothing to remove")
	default:
		fmt.Fprintf(w, "  removed %d snapshots and %d archived files\n", len(r.Removed.Snapshots), len(r.Removed.Files))
		for _, id := range r.Removed.HeldSnapshots {
			fmt.Fprintf(w, "  snapshot %s is in use by a restore or verify: it is removed at a later pass\n", id)
		}
		if r.Removed.HeldFiles > 0 {
			fmt.Fprintf(w, "  %d archived files are in use by a reader: they are removed at a later pass\n", r.Removed.HeldFiles)
		}
	}
}

// describeWindows lists windows in one line, each with its generation.
func describeWindows(ws []understudy.Window) string {
	if len(ws) == 0 {
		return "none (no snapshot)"
	}
	out := ""
	for i, w := range ws {
		if i > 0 {
			out += "; "
		}
		out += fmt.Sprintf("[generation %d] %s", w.Generation, w)
	}
	return out
}
