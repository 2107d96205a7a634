package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/archiver"
	"github.com/understudy-db/understudy/binlogserver"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/remote"
	"github.com/understudy-db/understudy/replication"
	"github.com/understudy-db/understudy/schedule"
	"github.com/understudy-db/understudy/snapshot"
	"github.com/understudy-db/understudy/statuspage"
	"github.com/understudy-db/understudy/storage/lease"
	"github.com/understudy-db/understudy/storage/s3"
)

type runOptions struct {
	config        string
	debug         bool
	logJSON       bool
	untilCaughtUp bool
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o runOptions
	fs := newFlagSet("run", stderr)
	fs.config(&o.config)
	fs.debug(&o.debug)
	fs.BoolVar(&o.logJSON, "log-json", false, "log as JSON lines")
	fs.BoolVar(&o.untilCaughtUp, "until-caught-up", false, "exit once every source's archive holds the primary's position as of start (one-shot catch-up; exit status 1 at once on a permanent error)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return runArchive(ctx, o, newLogger(stderr, o.debug, o.logJSON))
}

// runArchive archives every source until ctx ends.
func runArchive(ctx context.Context, o runOptions, log *slog.Logger) error {
	cfg, err := config.Load(o.config)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := archiver.NewMetrics(reg)
	serveMetrics := binlogserver.NewMetrics(reg)
	registerRunMetrics(reg, cfg, !o.untilCaughtUp)
	drillMetrics, snapMetrics := newBackupMetrics(reg, cfg)

	var archivers []*archiver.Archiver
	var servers []*binlogServer
	served := map[string]*binlogserver.Server{} // by source, for statuses
	for i := range cfg.Sources {
		src, err := cfg.Resolve(&cfg.Sources[i])
		if err != nil {
			return err
		}
		a := archiver.New(src, cfg.SourceDir(src.Name), log, metrics)
		if cfg.Archive.SyncInterval > 0 {
			a.SyncInterval = cfg.Archive.SyncInterval.D()
		}
		a.MaxFileSize = int64(cfg.Archive.MaxFileSize)
		a.MaxFileAge = cfg.Archive.FileAge()
		a.StartMode, a.GapMode = cfg.Archive.StartMode(), cfg.Archive.GapMode()
		minFree := cfg.Archive.MinFreeSpace()
		a.LowDisk, a.MinFree = minFree.Below, minFree.String()
		a.UntilCaughtUp = o.untilCaughtUp
		archivers = append(archivers, a)
		if cfg.Sources[i].Serve != nil && !o.untilCaughtUp {
			srv, err := newBinlogServer(cfg, &cfg.Sources[i], understudy.StopPoint{}, log)
			if err != nil {
				return err
			}
			srv.cfg.Notify = func() <-chan struct{} {
				if w := a.Writer(); w != nil {
					return w.Notify()
				}
				return nil
			}
			srv.cfg.Metrics = serveMetrics
			if srv.srv, err = binlogserver.New(srv.cfg); err != nil {
				return err
			}
			served[src.Name] = srv.srv
			servers = append(servers, srv)
		}
	}
	warnSharedDomains(ctx, archivers, log)
	shippers := &sync.Map{} // source → *remote.Shipper, once its lease is held
	reg.MustRegister(&storeCollector{shippers: shippers})

	if addr := cfg.HTTPListen(); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("http.listen %s: %w", addr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(statuses(cfg, archivers, served, shippers))
		})
		mux.Handle("/", statuspage.New(func() []understudy.SourceStatus { return statuses(cfg, archivers, served, shippers) }))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving the status page at /, /status and /metrics", "addr", ln.Addr().String())
	}

	var wg sync.WaitGroup
	serveErrs := make([]error, len(servers))
	for i, bs := range servers {
		srv := bs.srv
		ln, err := net.Listen("tcp", bs.listen)
		if err != nil {
			return fmt.Errorf("source %s: serve.listen %s: %w", bs.cfg.Source, bs.listen, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveErrs[i] = srv.Serve(ctx, ln)
		}()
	}
	if !o.untilCaughtUp {
		for i := range cfg.Sources {
			startSchedules(ctx, &wg, cfg, &cfg.Sources[i], archivers[i], snapMetrics, log)
			startDrill(ctx, &wg, cfg, &cfg.Sources[i], drillMetrics, log)
		}
	}
	// One writer per source: with a store, each source's lease is held
	// for as long as its archiver runs, and its loss stops the archiver.
	leases, err := takeLeases(ctx, cfg, log)
	if err != nil {
		return err
	}
	store, settings, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	if store != nil {
		for _, a := range archivers {
			if err := continueFromStore(ctx, store, a.Source.Name, cfg.SourceDir(a.Source.Name), log); err != nil {
				for _, l := range leases {
					l.Release(context.WithoutCancel(ctx))
				}
				return err
			}
		}
	}
	errs := make([]error, len(archivers))
	for i, a := range archivers {
		// The archiver stops when the lease is lost; the lease is released
		// when the archiver stops.
		actx, stopArchiver := context.WithCancel(ctx)
		lctx, stopLease := context.WithCancel(ctx)
		if l := leases[a.Source.Name]; l != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer stopArchiver()
				if err := l.Run(lctx); err != nil {
					log.Error("the source's lease in the store is lost: archiving stops, so that another understudy can take over", "source", a.Source.Name, "err", err)
				}
				l.Release(context.WithoutCancel(ctx))
			}()
			go func() {
				select {
				case <-l.Context().Done():
					stopArchiver()
				case <-lctx.Done():
				}
			}()
		}
		// With a store, the shipper uploads what the archiver writes, under
		// the lease, and ships the last durable bytes before the lease is
		// released.
		var sh *remote.Shipper
		if l := leases[a.Source.Name]; l != nil && store != nil {
			sh = &remote.Shipper{Source: a.Source.Name, Dir: cfg.SourceDir(a.Source.Name), SnapshotRoot: cfg.SnapshotDir(a.Source.Name),
				Store: *store, Interval: settings.UploadInterval, Writer: l.Generation(), Check: l.Check, Log: log,
				LocalKeep: settings.LocalKeep, Evict: func(keepFrom string) ([]archive.FileInfo, error) {
					if w := a.Writer(); w != nil {
						return w.Evict(keepFrom)
					}
					return nil, nil
				}}
			shippers.Store(a.Source.Name, sh)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stopLease()
			defer stopArchiver()
			shipped := make(chan struct{})
			if sh != nil {
				go func() {
					defer close(shipped)
					sh.Run(actx)
				}()
			} else {
				close(shipped)
			}
			errs[i] = a.Run(actx)
			if errs[i] != nil {
				log.Error("archiver stopped", "source", a.Source.Name, "err", errs[i])
			}
			stopArchiver()
			<-shipped
			if sh != nil {
				// On a signal, for up to 30 s; a one-shot catch-up
				// (--until-caught-up) ships everything before it exits.
				limit := 30 * time.Second
				if o.untilCaughtUp {
					limit = 24 * time.Hour
				}
				fctx, cancel := context.WithTimeout(leases[a.Source.Name].Context(), limit)
				if err := sh.Flush(fctx); err != nil {
					log.Warn("the last bytes archived could not be shipped to the store; the next run ships them", "source", a.Source.Name, "err", err)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	log.Info("stopped")
	return errors.Join(append(errs, serveErrs...)...)
}

// takeLeases takes the single-writer lease of every source in the store,
// when there is one (storage.s3): a second `understudy run` for the same
// source, on any host, refuses to start until the first stops or its
// lease expires (docs/storage.md). Without a store it returns none.
func takeLeases(ctx context.Context, cfg *config.Config, log *slog.Logger) (map[string]*lease.Lease, error) {
	st, err := cfg.ResolveStorage()
	if err != nil || st == nil {
		return nil, err
	}
	b, err := s3.Open(st, log)
	if err != nil {
		return nil, err
	}
	holder, err := lease.NewHolder(version)
	if err != nil {
		return nil, err
	}
	out := map[string]*lease.Lease{}
	for _, s := range cfg.Sources {
		l, err := lease.Acquire(ctx, b, s.Name+"/lease", holder, lease.DefaultTTL)
		if err != nil {
			for _, held := range out {
				held.Release(context.WithoutCancel(ctx))
			}
			if errors.Is(err, lease.ErrHeld) {
				return nil, &understudy.Error{Source: s.Name, Err: fmt.Errorf("%w: %w", understudy.ErrLocked, err)}
			}
			return nil, &understudy.Error{Source: s.Name, Op: "lease in the store", Err: err}
		}
		l.Log = log.With("source", s.Name)
		out[s.Name] = l
		log.Info("holding the source's lease in the store", "source", s.Name, "generation", l.Generation(), "expires", l.Record().Expires)
	}
	return out, nil
}

func statuses(cfg *config.Config, as []*archiver.Archiver, served map[string]*binlogserver.Server, shippers *sync.Map) []understudy.SourceStatus {
	out := make([]understudy.SourceStatus, len(as))
	for i, a := range as {
		out[i] = a.Status()
		if sh, ok := shippers.Load(a.Source.Name); ok {
			out[i].Store = storeStatus(sh.(*remote.Shipper).Status())
		}
		if srv := served[a.Source.Name]; srv != nil {
			if msg, at := srv.LastError(); msg != "" {
				out[i].ServeLastError, out[i].ServeLastErrorTime = msg, &at
			}
		}
		ws, _, err := sourceWindows(cfg, a.Source.Name)
		if err != nil {
			out[i].Warnings = append(out[i].Warnings, "restore windows: "+err.Error())
		}
		out[i].RestoreWindows = ws
		var warns []string
		out[i].LastSnapshot, out[i].LastDrill, warns = lastBackups(cfg, a.Source.Name)
		out[i].Warnings = append(out[i].Warnings, warns...)
	}
	return out
}

// warnSharedDomains warns when two reachable primaries use the same
// gtid_domain_id: their GTIDs would collide in a multi-source replica.
func warnSharedDomains(ctx context.Context, as []*archiver.Archiver, log *slog.Logger) {
	if len(as) < 2 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	domains := make([]int64, len(as))
	var wg sync.WaitGroup
	for i, a := range as {
		domains[i] = -1
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p, _, err := replication.Check(ctx, a.Source); err == nil {
				domains[i] = int64(p.DomainID)
			}
		}()
	}
	wg.Wait()
	by := map[int64][]string{}
	for i, d := range domains {
		if d >= 0 {
			by[d] = append(by[d], as[i].Source.Name)
		}
	}
	for d, names := range by {
		if len(names) > 1 {
			sort.Strings(names)
			log.Warn("sources share a gtid_domain_id; give each primary its own gtid_domain_id or a multi-source replica mixes their GTIDs",
				"gtid_domain_id", d, "sources", names)
		}
	}
}

// binlogServer is a binlog server to start, with its address.
type binlogServer struct {
	cfg    binlogserver.Config
	listen string
	srv    *binlogserver.Server // in run: created from cfg before the HTTP server starts
}

// newBinlogServer prepares the binlog server of a source from its serve
// block.
func newBinlogServer(cfg *config.Config, s *config.Source, stop understudy.StopPoint, log *slog.Logger) (*binlogServer, error) {
	sv, err := cfg.ResolveServe(s)
	if err != nil {
		return nil, err
	}
	return &binlogServer{listen: sv.Listen, cfg: binlogserver.Config{
		Source: s.Name, Dir: cfg.SourceDir(s.Name), User: sv.User, Password: sv.Password,
		ServerID: sv.ServerID, TLS: sv.TLS, TLSOptional: sv.TLSOptional, Stop: stop, Logger: log,
	}}, nil
}

// startSchedules starts the snapshot schedule and the pruning of a source
// (see package schedule), when its config asks for them.
func startSchedules(ctx context.Context, wg *sync.WaitGroup, cfg *config.Config, s *config.Source, a *archiver.Archiver, sm *snapshotMetrics, log *slog.Logger) {
	ret := cfg.ResolveRetention(s)
	var pruner *schedule.Pruner
	if ret.Enabled {
		pruner = schedule.NewPruner(s.Name, func(ctx context.Context) error {
			w := a.Writer()
			if w == nil {
				return nil // the archive is not open yet: next pass
			}
			rep, err := pruneSource(ctx, cfg, s, w, false, log)
			if rep.Removed != nil && (len(rep.Removed.Snapshots) > 0 || len(rep.Removed.Files) > 0) {
				log.Info("retention removed", "source", s.Name, "snapshots", rep.Removed.Snapshots, "files", rep.Removed.Files,
					"anchor", rep.Anchor, "policy", rep.Policy)
			}
			return err
		}, log)
		wg.Add(1)
		go func() { defer wg.Done(); pruner.Run(ctx) }()
	}
	if s.Snapshot == nil {
		return
	}
	st, err := cfg.ResolveSnapshot(s)
	if err != nil {
		log.Error("snapshot settings", "source", s.Name, "err", err)
		return
	}
	if st.Every <= 0 && !st.OnStart {
		return
	}
	sn := schedule.NewSnapshotter(s.Name, log)
	sn.Every, sn.OnStart = st.Every, st.OnStart
	sn.Take = func(ctx context.Context) (*snapshot.Manifest, error) {
		m, _, err := takeSnapshot(ctx, cfg, s, 0, log, nil)
		if err != nil && ctx.Err() == nil {
			sm.failed(s.Name)
		}
		return m, err
	}
	sn.List = func() ([]snapshot.Listed, error) { return snapshot.List(cfg.SnapshotDir(s.Name)) }
	sn.Generation = func() (int, understudy.Position, bool) {
		w := a.Writer()
		if w == nil || !w.Began() {
			return 0, understudy.Position{}, false
		}
		g := w.Generation()
		return g.ID, g.StartPosition, true
	}
	if pruner != nil {
		sn.After = func(context.Context) { pruner.Kick() }
	}
	prev := a.OnGeneration
	a.OnGeneration = func(g archive.Generation) {
		if prev != nil {
			prev(g)
		}
		sn.GenerationBegan()
	}
	wg.Add(1)
	go func() { defer wg.Done(); sn.Run(ctx) }()
}

// storeStatus is the status of a source's shipping.
func storeStatus(s remote.Status) *understudy.StoreStatus {
	out := &understudy.StoreStatus{Position: s.Position, LagSeconds: s.Lag(time.Now()).Seconds(), BehindBytes: s.Behind, LastError: s.LastError}
	if !s.LastUpload.IsZero() {
		t := s.LastUpload.UTC()
		out.LastUpload = &t
	}
	if !s.LastErrorAt.IsZero() {
		t := s.LastErrorAt.UTC()
		out.LastErrorTime = &t
	}
	return out
}

// storeCollector exports the shipping of each source to the store.
type storeCollector struct{ shippers *sync.Map }

var (
	storeLagDesc = prometheus.NewDesc("understudy_store_upload_lag_seconds",
		"How long the store (storage.s3) has been behind the local archive of the source: 0 when it holds every durable transaction.", []string{"source"}, nil)
	storeBehindDesc = prometheus.NewDesc("understudy_store_behind_bytes",
		"Durable bytes of the source's local archive that the store does not hold yet.", []string{"source"}, nil)
	storeLastDesc = prometheus.NewDesc("understudy_store_last_upload_timestamp_seconds",
		"When a commit point (manifest or tip) of the source was last written to the store (unix time).", []string{"source"}, nil)
	storeBytesDesc = prometheus.NewDesc("understudy_store_uploaded_bytes_total",
		"Bytes of the source stored in the store (as stored: compressed, encrypted).", []string{"source"}, nil)
	storeErrorsDesc = prometheus.NewDesc("understudy_store_upload_errors_total",
		"Failed attempts to ship the source to the store (each is retried).", []string{"source"}, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{storeLagDesc, storeBehindDesc, storeLastDesc, storeBytesDesc, storeErrorsDesc} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	c.shippers.Range(func(k, v any) bool {
		name, s := k.(string), v.(*remote.Shipper).Status()
		ch <- prometheus.MustNewConstMetric(storeLagDesc, prometheus.GaugeValue, s.Lag(now).Seconds(), name)
		ch <- prometheus.MustNewConstMetric(storeBehindDesc, prometheus.GaugeValue, float64(s.Behind), name)
		if !s.LastUpload.IsZero() {
			ch <- prometheus.MustNewConstMetric(storeLastDesc, prometheus.GaugeValue, float64(s.LastUpload.UnixMilli())/1000, name)
		}
		ch <- prometheus.MustNewConstMetric(storeBytesDesc, prometheus.CounterValue, float64(s.Uploaded), name)
		ch <- prometheus.MustNewConstMetric(storeErrorsDesc, prometheus.CounterValue, float64(s.Errors), name)
		return true
	})
}

// continueFromStore brings the store's archive of a source into its empty
// archive directory (a new host, a lost disk), so that run continues it:
// the same files, generations and position. It needs the identity of an
// encrypted store.
func continueFromStore(ctx context.Context, st *remote.Store, name, dir string, log *slog.Logger) error {
	if hasLocalArchive(dir) {
		return nil
	}
	v, err := remote.OpenView(ctx, *st, name)
	if err != nil {
		return &understudy.Error{Source: name, Op: "read the store", Err: err}
	}
	if v.Empty() {
		return nil
	}
	if st.Enc != nil && !st.Enc.CanRead() {
		return &understudy.Error{Source: name, Err: fmt.Errorf("the archive directory %s is empty, but the store holds the source's archive up to GTID position %s: bringing it back needs storage.encryption.identity_file (run once with it), or move the store's objects of %s away to start a new archive", dir, v.Position(), name)}
	}
	log.Info("the archive directory is empty: continuing the store's archive", "source", name, "position", v.Position().String(), "files", len(v.Man.Files))
	if err := v.Materialize(ctx, dir, nil); err != nil {
		return &understudy.Error{Source: name, Op: "bring the archive back from the store", Err: err}
	}
	return nil
}
