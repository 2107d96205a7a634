package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/replication"
	"github.com/understudy-db/understudy/snapshot"
)

type snapshotOptions struct {
	config, source string
	threads        int
	json, debug    bool
}

func cmdSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o snapshotOptions
	fs := newFlagSet("snapshot", stderr)
	fs.config(&o.config)
	fs.source(&o.source)
	fs.threads(&o.threads, 0, "the source's snapshot.threads, or 4")
	fs.json(&o.json)
	fs.debug(&o.debug)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, s, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	bar := newProgressBar(stderr)
	log := newLogger(stderr, o.debug, false)
	if bar.on {
		log = newLogger(io.Discard, false, false)
	}
	m, dir, err := takeSnapshot(ctx, cfg, s, o.threads, log, func(p snapshot.Progress) {
		bar.update("snapshot", p.Rows, max(p.RowsEstimate, p.Rows), fmt.Sprintf("tables %d/%d rows %d %s", p.TablesDone, p.Tables, p.Rows, humanBytes(p.Bytes)))
	})
	bar.done()
	if err != nil {
		return err
	}
	if cfg.ResolveRetention(s).Enabled {
		if rep, err := pruneOutsideRun(ctx, cfg, s, log); err != nil {
			return fmt.Errorf("snapshot %s of %s taken, but retention failed: %w", m.ID, o.source, err)
		} else if rep.Removed != nil && len(rep.Removed.Snapshots) > 0 {
			log.Info("older snapshots removed by retention", "source", o.source, "removed", rep.Removed.Snapshots)
		}
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(summarize(dir, m))
	}
	fmt.Fprintf(stdout, "snapshot %s of %s at GTID position %s: %d tables, %d rows, %s in %s (commits blocked %.1f ms)\n",
		m.ID, o.source, m.Position, m.Tables(), m.Rows(), humanBytes(m.Size()), m.Finished.Sub(m.Started).Round(time.Millisecond), m.CommitBlockMillis)
	return nil
}

// takeSnapshot takes a snapshot of source s as configured.
func takeSnapshot(ctx context.Context, cfg *config.Config, s *config.Source, threads int, log *slog.Logger, progress func(snapshot.Progress)) (*snapshot.Manifest, string, error) {
	st, err := cfg.ResolveSnapshot(s)
	if err != nil {
		return nil, "", err
	}
	if threads > 0 {
		st.Threads = threads
	}
	db, err := replication.Open(st.Conn, "")
	if err != nil {
		return nil, "", err
	}
	defer db.Close()
	db.SetMaxOpenConns(st.Threads + 2)
	o := snapshot.Options{
		Source: s.Name, DB: db, From: st.Conn.Addr(), FromReplica: st.FromReplica, Root: cfg.SnapshotDir(s.Name),
		Threads: st.Threads, ChunkRows: st.ChunkRows, Users: st.Users, Log: log.With("source", s.Name), Progress: progress,
	}
	if st.FromReplica {
		o.Domains = sourceDomains(ctx, cfg, s)
		o.MaxLag = st.MaxLag
		// The replica's connection to the source is the one to the primary
		// or to this source's binlog server.
		o.SourceAddrs = []string{net.JoinHostPort(s.Host, strconv.Itoa(s.Port))}
		if s.Serve != nil {
			o.SourceAddrs = append(o.SourceAddrs, s.Serve.Listen)
		}
	}
	m, dir, err := snapshot.Take(ctx, o)
	if err != nil {
		return nil, "", fmt.Errorf("snapshot of %s from %s: %w", s.Name, st.Conn.Addr(), err)
	}
	log.Info("snapshot taken", "source", s.Name, "id", m.ID, "gtid_position", m.Position.String(), "rows", m.Rows(),
		"bytes", m.Size(), "duration", m.Finished.Sub(m.Started).String(), "commit_block_ms", m.CommitBlockMillis)
	return m, dir, nil
}

// sourceDomains returns the GTID domains of a source: the primary's
// gtid_domain_id and the domains in its archive.
func sourceDomains(ctx context.Context, cfg *config.Config, s *config.Source) []uint32 {
	seen := map[uint32]bool{}
	var out []uint32
	if src, err := cfg.Resolve(s); err == nil {
		if p, _, err := replication.Check(ctx, src); err == nil {
			seen[p.DomainID] = true
			out = append(out, p.DomainID)
		}
	}
	if a, err := archive.Open(cfg.SourceDir(s.Name)); err == nil {
		for _, g := range a.Position().GTIDs() {
			if !seen[g.Domain] {
				seen[g.Domain] = true
				out = append(out, g.Domain)
			}
		}
	}
	return out
}

type snapshotSummary struct {
	ID         string    `json:"id"`
	Dir        string    `json:"dir"`
	Position   string    `json:"gtid_position"`
	Time       time.Time `json:"time"`
	Bytes      int64     `json:"bytes"`
	Duration   float64   `json:"duration_seconds"`
	Tables     int       `json:"tables"`
	Rows       int64     `json:"rows"`
	From       string    `json:"from"`
	BlockMilli float64   `json:"commit_block_ms"`
}

func summarize(dir string, m *snapshot.Manifest) snapshotSummary {
	return snapshotSummary{ID: m.ID, Dir: dir, Position: m.Position.String(), Time: m.Started, Bytes: m.Size(),
		Duration: m.Finished.Sub(m.Started).Seconds(), Tables: m.Tables(), Rows: m.Rows(), From: m.From, BlockMilli: m.CommitBlockMillis}
}

func cmdSnapshots(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o snapshotOptions
	fs := newFlagSet("snapshots", stderr)
	fs.config(&o.config)
	fs.source(&o.source)
	fs.json(&o.json)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, _, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	d, err := readDirs(ctx, cfg, o.source, false, newLogger(stderr, false, false))
	if err != nil {
		return err
	}
	list, err := snapshot.List(d.snapRoot)
	if err != nil {
		return err
	}
	out := []snapshotSummary{}
	for _, l := range list {
		out = append(out, summarize(l.Dir, l.Manifest))
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGTID POSITION\tTIME\tSIZE\tDURATION\tTABLES\tROWS\tFROM")
	for _, s := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fs\t%d\t%d\t%s\n", s.ID, s.Position, s.Time.Format(time.RFC3339), humanBytes(s.Bytes), s.Duration, s.Tables, s.Rows, s.From)
	}
	tw.Flush()
	if len(out) == 0 {
		fmt.Fprintln(stderr, "no snapshots yet: take one with `understudy snapshot --config", o.config, "--source", o.source+"`")
	}
	return nil
}
