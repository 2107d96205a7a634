package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/history"
)

type statusOptions struct {
	config string
	json   bool
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o statusOptions
	fs := newFlagSet("status", stderr)
	fs.config(&o.config)
	fs.json(&o.json)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		return err
	}
	st, err := collectStatus(ctx, cfg)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(stdout, st)
	return nil
}

// collectStatus asks the running `understudy run` over HTTP and falls back
// to reading the archives on disk (state "stopped").
func collectStatus(ctx context.Context, cfg *config.Config) ([]understudy.SourceStatus, error) {
	if addr := cfg.HTTPListen(); addr != "" {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			defer resp.Body.Close()
			var st []understudy.SourceStatus
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&st) == nil && sameSources(cfg, st) {
				return st, nil
			}
		}
	}
	var out []understudy.SourceStatus
	for _, s := range cfg.Sources {
		st := understudy.SourceStatus{Name: s.Name, State: understudy.StateStopped, Primary: fmt.Sprintf("%s:%d", s.Host, s.Port)}
		a, err := archive.Open(cfg.SourceDir(s.Name))
		if err != nil {
			st.LastError = err.Error()
			out = append(out, st)
			continue
		}
		st.Position = a.Position().String()
		st.BytesArchived = a.Bytes()
		if t := a.LastTime(); t != 0 {
			tt := time.Unix(int64(t), 0).UTC()
			st.LastCommit = &tt
		}
		if fs := a.Files(); len(fs) > 0 {
			st.ArchiveFile = fs[len(fs)-1].Name
		}
		if gens := a.Generations(); len(gens) > 0 {
			g := gens[len(gens)-1]
			st.Generation, st.ArchiveStart, st.ArchiveStartReason = g.ID, g.StartPosition.String(), g.Reason
		}
		st.RestoreWindows, st.Gaps, err = sourceWindows(cfg, s.Name)
		if err != nil {
			st.LastError = err.Error()
		}
		var warns []string
		st.LastSnapshot, st.LastDrill, warns = lastBackups(cfg, s.Name)
		st.Warnings = append(st.Warnings, warns...)
		out = append(out, st)
	}
	return out, nil
}

func sameSources(cfg *config.Config, st []understudy.SourceStatus) bool {
	if len(st) != len(cfg.Sources) {
		return false
	}
	for i := range st {
		if st[i].Name != cfg.Sources[i].Name {
			return false
		}
	}
	return true
}

func printStatus(w io.Writer, st []understudy.SourceStatus) {
	// The table is laid out first, then each source's row is followed by
	// its restore windows and gaps, which would break the columns.
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSTATE\tGTID POSITION\tLAST COMMIT\tBEHIND\tARCHIVED\tLAST ERROR")
	for _, s := range st {
		last, behind := "-", "-"
		if s.LastCommit != nil {
			last = s.LastCommit.Format(time.RFC3339)
		}
		if s.SecondsBehind != nil {
			behind = fmt.Sprintf("%ds", *s.SecondsBehind)
		}
		pos := s.Position
		if pos == "" {
			pos = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.State, pos, last, behind, humanBytes(s.BytesArchived), s.LastError)
	}
	tw.Flush()
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	fmt.Fprintln(w, lines[0])
	for i, s := range st {
		if i+1 < len(lines) {
			fmt.Fprintln(w, lines[i+1])
		}
		for _, g := range s.Gaps {
			fmt.Fprintf(w, "  GAP before generation %d: %s\n", g.Generation, history.GapDetail(g))
		}
		fmt.Fprintf(w, "  restore windows: %s\n", describeWindows(s.RestoreWindows))
		fmt.Fprintf(w, "  last snapshot: %s\n", describeSnapshot(s.LastSnapshot))
		fmt.Fprintf(w, "  last drill: %s\n", describeDrill(s.LastDrill))
		for _, warn := range s.Warnings {
			fmt.Fprintf(w, "  WARNING: %s\n", warn)
		}
		if st := s.Store; st != nil {
			line := fmt.Sprintf("store: GTID position %s", orNone(st.Position.String()))
			if st.BehindBytes > 0 {
				line += fmt.Sprintf(", %s behind for %.1fs", humanBytes(st.BehindBytes), st.LagSeconds)
			} else {
				line += ", holds everything archived"
			}
			if st.LastUpload != nil {
				line += ", last upload " + st.LastUpload.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "  %s\n", line)
			if st.LastError != "" && st.LastErrorTime != nil {
				fmt.Fprintf(w, "  STORE UPLOAD ERROR at %s: %s\n", st.LastErrorTime.Format(time.RFC3339), st.LastError)
			}
		}
		if s.ServeLastError != "" && s.ServeLastErrorTime != nil {
			fmt.Fprintf(w, "  BINLOG SERVER ERROR at %s: %s\n", s.ServeLastErrorTime.Format(time.RFC3339), s.ServeLastError)
		}
	}
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
