package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/replica"
	"github.com/understudy-db/understudy/replication"
	"github.com/understudy-db/understudy/restore"
	"github.com/understudy-db/understudy/scratch"
	"github.com/understudy-db/understudy/snapshot"
)

// openServer connects to a server named on the command line and checks
// that it answers.
func openServer(ctx context.Context, f serverFlags, conns int) (*sql.DB, understudy.Source, error) {
	src, err := f.source()
	if err != nil {
		return nil, src, err
	}
	db, err := replication.Open(src, "")
	if err != nil {
		return nil, src, err
	}
	db.SetMaxOpenConns(conns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, src, fmt.Errorf("%s %s: %w", f.name, src.Addr(), err)
	}
	return db, src, nil
}

// quietLogger is the command's logger: silent while a progress bar draws.
func quietLogger(stderr io.Writer, debug bool, bar *progressBar) *slog.Logger {
	if bar.on {
		return newLogger(io.Discard, false, false)
	}
	return newLogger(stderr, debug, false)
}

func cmdProvision(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o struct {
		config  string
		sources stringList
		target  serverFlags
		via     string
		threads int
		json    bool
		debug   bool
	}
	fs := newFlagSet("provision", stderr)
	fs.config(&o.config)
	fs.sources(&o.sources)
	fs.target(&o.target)
	fs.StringVar(&o.via, "via", replica.ViaArchive, "the replica replicates from `WHERE`: archive (the binlog server of `understudy run`: serve block) or primary (the source's primary: replication_user)")
	fs.threads(&o.threads, 4, "")
	fs.json(&o.json)
	fs.debug(&o.debug)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.via != replica.ViaArchive && o.via != replica.ViaPrimary {
		return fmt.Errorf("%w: --via %q: want archive or primary", errUsage, o.via)
	}
	cfg, err := config.Load(o.config)
	if err != nil {
		return err
	}
	db, tsrc, err := openServer(ctx, o.target, o.threads+4)
	if err != nil {
		return err
	}
	defer db.Close()
	var srcs []replica.Source
	for _, name := range o.sources {
		s, err := cfg.Source(name)
		if err != nil {
			return err
		}
		m, err := provisionMaster(ctx, cfg, s, o.via, tsrc)
		if err != nil {
			return err
		}
		ids := []uint32{s.ServerID}
		if o.via == replica.ViaArchive {
			sv, _ := cfg.ResolveServe(s)
			ids = append(ids, sv.ServerID)
		}
		srcs = append(srcs, replica.Source{Name: s.Name, ArchiveDir: cfg.SourceDir(s.Name), SnapshotRoot: cfg.SnapshotDir(s.Name), Master: m, ServerIDs: ids})
	}
	bar := newProgressBar(stderr)
	log := quietLogger(stderr, o.debug, bar)
	stage := ""
	res, err := replica.Provision(ctx, replica.ProvisionOptions{
		Target: db, TargetAddr: tsrc.Addr(), Sources: srcs, Via: o.via, Threads: o.threads, Log: log,
		StateDir: filepath.Join(filepath.Dir(cfg.SourceDir("x")), "provisions"),
		Progress: func(s, source string, done, total int64) {
			if s+source != stage && stage != "" {
				bar.done()
				bar.start = time.Now()
			}
			stage = s + source
			bar.update(fmt.Sprintf("%-8s %s", s, source), done, total, fmt.Sprintf("%d/%d", done, total))
		},
	})
	bar.done()
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(res)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	for _, s := range res.Sources {
		loaded := fmt.Sprintf("loaded in %s, %d chunk checksums verified", s.Load.Round(time.Millisecond), s.Verified)
		if s.Verified < 0 {
			loaded = "loaded and verified by an earlier run"
		}
		fmt.Fprintf(stdout, "source %s: snapshot %s (%s) %s; replicating from %s, now at %s\n",
			s.Source, s.Snapshot, s.SnapshotPos, loaded, s.Master, s.Position)
	}
	fmt.Fprintf(stdout, "%s is a live replica of %d sources, caught up with the archive in %s:\n%s", res.Target, len(res.Sources), res.CatchUp.Round(time.Millisecond), replica.Summary(res.Connections))
	return nil
}

// provisionMaster is where the source's connection on the target
// replicates from.
func provisionMaster(ctx context.Context, cfg *config.Config, s *config.Source, via string, target understudy.Source) (replica.Master, error) {
	if via == replica.ViaPrimary {
		user, pw, err := cfg.ResolveReplication(s)
		if err != nil {
			return replica.Master{}, err
		}
		return replica.Master{Host: s.Host, Port: s.Port, User: user, Password: pw, SSL: s.TLS != nil, What: "the primary"}, nil
	}
	if s.Serve == nil {
		return replica.Master{}, fmt.Errorf("%s: source %s has no serve block: --via archive replicates from the binlog server that `understudy run` serves (serve.listen, serve.user, serve.password_env); add one, or give --via primary", cfg.Path, s.Name)
	}
	sv, err := cfg.ResolveServe(s)
	if err != nil {
		return replica.Master{}, err
	}
	host, port, err := net.SplitHostPort(sv.Listen)
	if err != nil {
		return replica.Master{}, fmt.Errorf("%s: source %s: serve.listen %q: %w", cfg.Path, s.Name, sv.Listen, err)
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		a, err := replica.FacingIP(ctx, target.Addr())
		if err != nil {
			return replica.Master{}, err
		}
		host = a.IP.String()
	case ip != nil && ip.IsLoopback() && !isLoopbackHost(target.Host):
		return replica.Master{}, fmt.Errorf("%s: source %s: serve.listen %s is on loopback, which the target %s on another host cannot reach: set serve.listen to an address the target reaches (or 0.0.0.0:%s)", cfg.Path, s.Name, sv.Listen, target.Addr(), port)
	}
	var p int
	fmt.Sscan(port, &p)
	return replica.Master{Host: host, Port: p, User: sv.User, Password: sv.Password, SSL: sv.TLS != nil,
		What: fmt.Sprintf("the binlog server of `understudy run` (serve.listen %s; is run running with this config?)", sv.Listen)}, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o struct {
		config, source  string
		target, scratch serverFlags
		against         string
		threads         int
		json, debug     bool
	}
	fs := newFlagSet("check", stderr)
	fs.config(&o.config)
	fs.source(&o.source)
	fs.target(&o.target)
	fs.server(&o.scratch, "scratch", "UNDERSTUDY_SCRATCH_PASSWORD", "a server to restore the source on at the replica's position, as the reference (default: a throwaway mariadbd that understudy starts on this host, when none of the source's snapshots is at that position); it must hold no data of its own")
	fs.StringVar(&o.against, "against", "archive", "compare with `WHAT`: archive (a snapshot or a server restored from the archive: no load on the primary) or primary (the primary itself, read in one consistent snapshot with the snapshot user, which loads it)")
	fs.threads(&o.threads, 4, "")
	fs.json(&o.json)
	fs.debug(&o.debug)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.against != "archive" && o.against != "primary" {
		return fmt.Errorf("%w: --against %q: want archive or primary", errUsage, o.against)
	}
	cfg, s, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	var primary *sql.DB
	var primaryAddr string
	if o.against == "primary" {
		st, err := cfg.ResolveSnapshot(s)
		if err != nil {
			return err
		}
		if st.FromReplica {
			return fmt.Errorf("--against primary reads the primary with the snapshot user, and source %s takes its snapshots from a replica (snapshot.from): give snapshot.user, or compare --against archive", o.source)
		}
		if primary, err = replication.Open(st.Conn, ""); err != nil {
			return err
		}
		defer primary.Close()
		primary.SetMaxOpenConns(o.threads + 2)
		primaryAddr = st.Conn.Addr()
	}
	db, tsrc, err := openServer(ctx, o.target, o.threads+2)
	if err != nil {
		return err
	}
	defer db.Close()
	dir, snapRoot := cfg.SourceDir(o.source), cfg.SnapshotDir(o.source)
	snaps, err := snapshot.List(snapRoot)
	if err != nil {
		return err
	}
	if len(snaps) == 0 {
		return fmt.Errorf("source %s has no snapshot: check compares the databases of the source's newest snapshot", o.source)
	}
	a, err := archive.Open(dir)
	if err != nil {
		return err
	}
	var dbs []string
	for _, d := range snaps[len(snaps)-1].Manifest.Databases {
		dbs = append(dbs, d.Name)
	}
	var domains []uint32
	for _, p := range []understudy.Position{a.Position(), snaps[len(snaps)-1].Manifest.Position} {
		for _, g := range p.GTIDs() {
			if !slices.Contains(domains, g.Domain) {
				domains = append(domains, g.Domain)
			}
		}
	}
	bar := newProgressBar(stderr)
	log := quietLogger(stderr, o.debug, bar)
	reference := func(ctx context.Context, g understudy.Position) (*sql.DB, string, func(), error) {
		rdb, addr, release, err := checkReference(ctx, o.scratch, o.threads, log)
		if err != nil {
			return nil, "", nil, err
		}
		_, err = restore.Run(ctx, restore.Options{Source: o.source, ArchiveDir: dir, SnapshotRoot: snapRoot, Target: rdb, TargetAddr: addr,
			Stop: understudy.StopPoint{UntilGTID: g}, Force: true, Threads: o.threads, Log: log, Throwaway: true})
		if err != nil {
			release()
			return nil, "", nil, fmt.Errorf("restoring the reference on %s: %w", addr, err)
		}
		return rdb, fmt.Sprintf("%s, restored to %s from the archive", addr, g), release, nil
	}
	res, err := replica.Check(ctx, replica.CheckOptions{Replica: db, ReplicaAddr: tsrc.Addr(), Source: o.source, Databases: dbs, Domains: domains,
		Snapshots: snaps, Reference: reference, Primary: primary, PrimaryAddr: primaryAddr, Threads: o.threads, Log: log,
		Progress: func(done, total int64) { bar.update("check", done, total, fmt.Sprintf("%d/%d chunks", done, total)) }})
	bar.done()
	if err != nil {
		return err
	}
	if o.json {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			return err
		}
	} else {
		verdict := "equal"
		if !res.Equal {
			verdict = fmt.Sprintf("DIFFERENT in %d chunks", len(res.Diffs))
		}
		fmt.Fprintf(stdout, "replica %s, source %s at GTID %s: %s to %s (%d tables, %d chunks; replication held %s, check took %s)\n",
			res.Replica, res.Source, res.At, verdict, res.Reference, res.Tables, res.Chunks, res.Held.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
		for _, d := range res.Diffs {
			fmt.Fprintln(stdout, "  "+d.Describe())
		}
	}
	if !res.Equal {
		return fmt.Errorf("%w: %w: %d chunks of %d tables differ (see above)", errProblem, replica.ErrDifferent, len(res.Diffs), res.Tables)
	}
	return nil
}

// checkReference is the server the reference is restored on: the one
// given with --scratch, else a throwaway one started here.
func checkReference(ctx context.Context, f serverFlags, threads int, log *slog.Logger) (*sql.DB, string, func(), error) {
	if f.addr != "" {
		db, src, err := openServer(ctx, f, threads+4)
		if err != nil {
			return nil, "", nil, err
		}
		return db, src.Addr(), func() { db.Close() }, nil
	}
	s, err := scratch.Start(ctx, scratch.Options{Log: log})
	if errors.Is(err, scratch.ErrNotInstalled) {
		return nil, "", nil, fmt.Errorf("%w; give --scratch USER@HOST:PORT", err)
	}
	if err != nil {
		return nil, "", nil, err
	}
	db, err := s.Open()
	if err != nil {
		s.Close()
		return nil, "", nil, err
	}
	db.SetMaxOpenConns(threads + 4)
	return db, s.Addr(), func() { db.Close(); s.Close() }, nil
}

func cmdPromote(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o struct {
		config, source    string
		target            serverFlags
		listen, advertise string
		dryRun            bool
		json, debug       bool
	}
	fs := newFlagSet("promote", stderr)
	fs.config(&o.config)
	fs.source(&o.source)
	fs.target(&o.target)
	fs.feed(&o.listen, &o.advertise)
	fs.dryRun(&o.dryRun)
	fs.json(&o.json)
	fs.debug(&o.debug)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, _, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	db, tsrc, err := openServer(ctx, o.target, 4)
	if err != nil {
		return err
	}
	defer db.Close()
	bar := newProgressBar(stderr)
	log := quietLogger(stderr, o.debug, bar)
	res, err := replica.Promote(ctx, replica.PromoteOptions{Target: db, TargetAddr: tsrc.Addr(), Source: o.source, ArchiveDir: cfg.SourceDir(o.source),
		Listen: o.listen, Advertise: o.advertise, DryRun: o.dryRun, Log: log,
		Progress: func(done, total int64) {
			bar.update("feed", done, total, fmt.Sprintf("%d/%d transactions", done, total))
		}})
	bar.done()
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(res)
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if res.DryRun {
		fmt.Fprintf(stdout, "promote %s to the primary of source %s would (the archive is at %s, the target at %s):\n", res.Target, res.Source, res.Archive, res.Before)
		for i, s := range res.Steps {
			fmt.Fprintf(stdout, "  %d. %s\n", i+1, s)
		}
		return nil
	}
	fmt.Fprintf(stdout, "promoted %s to the primary of source %s: %d transactions fed from the archive, writes in GTID domain %d, read_only OFF; gtid_binlog_pos %s\n",
		res.Target, res.Source, res.Fed, res.DomainID, res.Position)
	fmt.Fprintf(stdout, "to archive the new primary: set source %s's host and port to %s in %s and restart `understudy run` (see docs/replicas.md)\n", res.Source, res.Target, cfg.Path)
	return nil
}
