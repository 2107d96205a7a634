package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/drill"
	"github.com/understudy-db/understudy/history"
	"github.com/understudy-db/understudy/replication"
	"github.com/understudy-db/understudy/snapshot"
)

// cmdDrill proves that a source's backups restore (see package drill and
// docs/drills.md).
func cmdDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o struct {
		config, source    string
		target, replica   serverFlags
		listen, advertise string
		threads           int
		keep, json, debug bool
	}
	fs := newFlagSet("drill", stderr)
	fs.config(&o.config)
	fs.source(&o.source)
	fs.server(&o.target, "target", "UNDERSTUDY_TARGET_PASSWORD", "the target server")
	fs.defaults["target"] = "the source's drill.target, else auto: a throwaway mariadbd started on this host and removed afterwards"
	fs.server(&o.replica, "replica", "UNDERSTUDY_REPLICA_PASSWORD", "a live backup replica of the source (see provision), held for a moment at a GTID and compared with the backups restored to that GTID")
	fs.BoolVar(&o.keep, "keep", false, "leave the restored data on the target, for a look (by default the databases the drill restored are dropped; the next drill refuses a target that holds data)")
	fs.feed(&o.listen, &o.advertise)
	fs.threads(&o.threads, 0, "the source's drill.threads, else 4")
	fs.json(&o.json)
	fs.debug(&o.debug)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, s, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	ds, err := cfg.ResolveDrill(s)
	if err != nil {
		return err
	}
	if o.threads > 0 {
		ds.Threads = o.threads
	}
	// From the store when the archive directory is empty; files held only
	// in the store are fetched as the restores need them.
	d, err := readDirs(ctx, cfg, s.Name, false, newLogger(stderr, false, false))
	if err != nil {
		return err
	}
	opts := drill.Options{Source: s.Name, ArchiveDir: d.dir, SnapshotRoot: d.snapRoot, Keep: o.keep,
		ScratchDir: ds.ScratchDir, Threads: ds.Threads, Listen: o.listen, Advertise: o.advertise, Fetch: d.fetch}
	switch {
	case o.target.addr != "":
		db, src, err := openServer(ctx, o.target, ds.Threads+4)
		if err != nil {
			return err
		}
		defer db.Close()
		opts.Target, opts.TargetAddr = db, src.Addr()
	case ds.Target != nil:
		db, err := openDrillTarget(ctx, *ds.Target, ds.Threads)
		if err != nil {
			return err
		}
		defer db.Close()
		opts.Target, opts.TargetAddr = db, ds.Target.Addr()
	case o.keep:
		return fmt.Errorf("%w: --keep keeps the data on a given target; a throwaway server is always removed (give --target)", errUsage)
	}
	if o.replica.addr != "" {
		db, src, err := openServer(ctx, o.replica, ds.Threads+2)
		if err != nil {
			return err
		}
		defer db.Close()
		opts.Replica, opts.ReplicaAddr = db, src.Addr()
	}
	bar := newProgressBar(stderr)
	opts.Log = quietLogger(stderr, o.debug, bar)
	stage := ""
	opts.Progress = func(s string, done, total int64) {
		if s != stage && stage != "" {
			bar.done()
			bar.start = time.Now()
		}
		stage = s
		bar.update(fmt.Sprintf("%-6s", s), done, total, fmt.Sprintf("%d/%d", done, total))
	}
	began := time.Now()
	res, err := drill.Run(ctx, opts)
	bar.done()
	if res.Time.IsZero() {
		return err // refused: nothing ran, nothing was recorded
	}
	if o.json {
		if jerr := json.NewEncoder(stdout).Encode(res); jerr != nil && err == nil {
			return jerr
		}
	} else {
		printDrill(stdout, s.Name, res, time.Since(began), filepath.Join(opts.ArchiveDir, drill.FileName))
	}
	if errors.Is(err, drill.ErrProblem) {
		return fmt.Errorf("%w: %w", errProblem, err)
	}
	return err
}

// openDrillTarget connects to the drill.target of the configuration.
func openDrillTarget(ctx context.Context, t understudy.Source, threads int) (*sql.DB, error) {
	db, err := replication.Open(t, "")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(threads + 4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("drill.target %s: %w", t.Addr(), err)
	}
	return db, nil
}

func printDrill(w io.Writer, source string, res understudy.DrillResult, took time.Duration, recorded string) {
	if res.OK {
		fmt.Fprintf(w, "drill of source %s PASSED (took %s)\n", source, took.Round(time.Millisecond))
		fmt.Fprintf(w, "  proved: %s\n", res.Proved)
	} else {
		fmt.Fprintf(w, "drill of source %s FAILED (took %s)\n", source, took.Round(time.Millisecond))
		fmt.Fprintf(w, "  error: %s\n", res.Error)
		if res.Proved != "" {
			fmt.Fprintf(w, "  proved before that: %s\n", res.Proved)
		}
	}
	if res.OK {
		fmt.Fprintf(w, "  RTO %s (load %s, replay %s) for %s of data: snapshot %s and %d transactions, to GTID %s; %d chunk checksums compared\n",
			seconds(res.RTOSeconds), seconds(res.LoadSeconds), seconds(res.ReplaySeconds), humanBytes(res.Bytes), res.Snapshot, res.Transactions, res.Position, res.Chunks)
	}
	fmt.Fprintf(w, "  recorded in %s\n", recorded)
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// describeDrill is a drill result in one line, for status and info.
func describeDrill(d *understudy.DrillResult) string {
	if d == nil {
		return "none yet (understudy drill, or drill.every in run)"
	}
	at := d.Time.UTC().Format(time.RFC3339)
	if !d.OK {
		return fmt.Sprintf("FAILED at %s: %s", at, d.Error)
	}
	return fmt.Sprintf("passed at %s: RTO %s (load %s, replay %s) for %s, snapshot %s to GTID %s, %d chunk checksums compared",
		at, seconds(d.RTOSeconds), seconds(d.LoadSeconds), seconds(d.ReplaySeconds), humanBytes(d.Bytes), d.Snapshot, d.Position, d.Chunks)
}

// describeSnapshot is a source's last snapshot in one line.
func describeSnapshot(s *understudy.SnapshotStatus) string {
	if s == nil {
		return "none (understudy snapshot, or snapshot.every in run)"
	}
	return fmt.Sprintf("%s at GTID %s, finished %s, %s", s.ID, fmtPos(s.Position.String()), s.Finished.UTC().Format(time.RFC3339), humanBytes(s.Bytes))
}

// lastBackups reads a source's newest snapshot and its last drill from
// disk, for status; warnings say what could not be read.
func lastBackups(cfg *config.Config, name string) (*understudy.SnapshotStatus, *understudy.DrillResult, []string) {
	var warns []string
	var snap *understudy.SnapshotStatus
	if snaps, err := snapshot.List(cfg.SnapshotDir(name)); err != nil {
		warns = append(warns, "snapshots: "+err.Error())
	} else if len(snaps) > 0 {
		snap = snapshotStatus(snaps[len(snaps)-1].Manifest)
	}
	var last *understudy.DrillResult
	if r, ok, err := drill.ReadRecord(cfg.SourceDir(name)); err != nil {
		warns = append(warns, "drill: "+err.Error())
	} else if ok {
		last = &r.Last
	}
	return snap, last, warns
}

func snapshotStatus(m *snapshot.Manifest) *understudy.SnapshotStatus {
	return &understudy.SnapshotStatus{ID: m.ID, Position: m.Position, Finished: m.Finished.UTC(), Bytes: m.Size()}
}

// startDrill starts a source's drill schedule in run (drill.every).
func startDrill(ctx context.Context, wg *sync.WaitGroup, cfg *config.Config, s *config.Source, m *drill.Metrics, log *slog.Logger) {
	ds, err := cfg.ResolveDrill(s)
	if err != nil {
		log.Error("drill settings", "source", s.Name, "err", err)
		return
	}
	if ds.Every <= 0 {
		return
	}
	dir := cfg.SourceDir(s.Name)
	once := func(ctx context.Context) error {
		o := drill.Options{Source: s.Name, ArchiveDir: dir, SnapshotRoot: cfg.SnapshotDir(s.Name), ScratchDir: ds.ScratchDir, Threads: ds.Threads, Log: log}
		// Files held only in the store (storage.local_keep) are fetched
		// back for the drill's restores: that needs the identity.
		if d, err := readDirs(ctx, cfg, s.Name, false, log); err == nil && !d.fromStore() {
			o.Fetch = d.fetch
		}
		if ds.Target != nil {
			db, err := openDrillTarget(ctx, *ds.Target, ds.Threads)
			if err != nil {
				m.Failed(s.Name)
				return err
			}
			defer db.Close()
			o.Target, o.TargetAddr = db, ds.Target.Addr()
		}
		res, err := drill.Run(ctx, o)
		switch {
		case ctx.Err() != nil:
		case !res.Time.IsZero():
			m.Refresh(s.Name)
			if err != nil {
				log.Error("DRILL FAILED: the backups are not proven to restore", "source", s.Name, "err", err)
			} else {
				log.Info("drill passed", "source", s.Name, "rto_seconds", res.RTOSeconds, "proved", res.Proved)
			}
		case errors.Is(err, history.ErrNoSnapshot), errors.Is(err, drill.ErrBusy):
			// Not a failure: no snapshot yet, or a drill from the
			// command line runs.
		default:
			m.Failed(s.Name)
		}
		return err
	}
	last := func() (time.Time, bool) {
		r, ok, _ := drill.ReadRecord(dir)
		return r.Last.Time, ok
	}
	sch := drill.NewSchedule(s.Name, ds.Every, once, last, log)
	wg.Add(1)
	go func() { defer wg.Done(); sch.Run(ctx) }()
}

// newBackupMetrics registers the drill and snapshot metrics of run. Both
// are read from the files on disk when scraped: a drill or a snapshot
// from the command line shows as one run on run's schedule does.
func newBackupMetrics(reg prometheus.Registerer, cfg *config.Config) (*drill.Metrics, *snapshotMetrics) {
	dirs, roots := map[string]string{}, map[string]string{}
	for _, s := range cfg.Sources {
		dirs[s.Name], roots[s.Name] = cfg.SourceDir(s.Name), cfg.SnapshotDir(s.Name)
	}
	return drill.NewMetrics(reg, dirs), newSnapshotMetrics(reg, roots)
}

// snapshotMetrics describe each source's newest snapshot, read from disk
// when scraped (the snapshots directory is listed again only when it
// changed), and count the scheduled snapshots that failed.
type snapshotMetrics struct {
	lastSuccess, lastDuration, lastBytes *prometheus.GaugeVec
	failures                             *prometheus.CounterVec

	roots map[string]string // source → snapshots directory
	mu    sync.Mutex
	cache map[string]newestSnapshot
}

type newestSnapshot struct {
	mtime time.Time
	m     *snapshot.Manifest
}

var _ prometheus.Collector = (*snapshotMetrics)(nil)

func newSnapshotMetrics(reg prometheus.Registerer, roots map[string]string) *snapshotMetrics {
	m := &snapshotMetrics{
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_snapshot_last_success_timestamp_seconds", Help: "When the source's newest snapshot finished.",
		}, []string{"source"}),
		lastDuration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_snapshot_last_duration_seconds", Help: "How long the source's newest snapshot took.",
		}, []string{"source"}),
		lastBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_snapshot_last_bytes", Help: "Compressed size of the data files of the source's newest snapshot.",
		}, []string{"source"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_snapshot_failures_total", Help: "Snapshots on run's schedule that failed.",
		}, []string{"source"}),
		roots: roots, cache: map[string]newestSnapshot{},
	}
	for name := range roots {
		m.failures.WithLabelValues(name).Add(0)
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

func (m *snapshotMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.lastSuccess, m.lastDuration, m.lastBytes, m.failures}
}

func (m *snapshotMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

func (m *snapshotMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	for name, root := range m.roots {
		m.refresh(name, root)
	}
	m.mu.Unlock()
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// refresh sets a source's gauges from its newest snapshot.
func (m *snapshotMetrics) refresh(name, root string) {
	fi, err := os.Stat(root)
	if err != nil {
		return
	}
	c, ok := m.cache[name]
	if !ok || !c.mtime.Equal(fi.ModTime()) {
		snaps, err := snapshot.List(root)
		if err != nil {
			return
		}
		c = newestSnapshot{mtime: fi.ModTime()}
		if len(snaps) > 0 {
			c.m = snaps[len(snaps)-1].Manifest
		}
		m.cache[name] = c
	}
	if c.m == nil {
		m.lastSuccess.DeleteLabelValues(name)
		m.lastDuration.DeleteLabelValues(name)
		m.lastBytes.DeleteLabelValues(name)
		return
	}
	m.lastSuccess.WithLabelValues(name).Set(float64(c.m.Finished.UnixNano()) / 1e9)
	m.lastDuration.WithLabelValues(name).Set(c.m.Finished.Sub(c.m.Started).Seconds())
	m.lastBytes.WithLabelValues(name).Set(float64(c.m.Size()))
}

// failed counts a scheduled snapshot that failed.
func (m *snapshotMetrics) failed(source string) { m.failures.WithLabelValues(source).Inc() }
