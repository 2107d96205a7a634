package replica

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/history"
	"github.com/understudy-db/understudy/replication"
	"github.com/understudy-db/understudy/snapshot"
)

// What a provisioned connection replicates from.
const (
	ViaArchive = "archive" // the binlog server of `understudy run`
	ViaPrimary = "primary" // the source's primary
)

// Master is where a replication connection connects.
type Master struct {
	Host     string
	Port     int
	User     string
	Password string
	// SSL makes the connection use TLS (MASTER_SSL=1).
	SSL bool
	// What names the master in messages, e.g. "the binlog server of
	// `understudy run` (serve.listen 127.0.0.1:3310)".
	What string
}

// Addr is host:port.
func (m Master) Addr() string { return understudy.Source{Host: m.Host, Port: m.Port}.Addr() }

// Source is one source to provision.
type Source struct {
	Name         string
	ArchiveDir   string
	SnapshotRoot string
	Master       Master
	// ServerIDs are server_ids the target must not have: the binlog
	// server's, for one.
	ServerIDs []uint32
}

// ProvisionOptions configures Provision.
type ProvisionOptions struct {
	Target     *sql.DB
	TargetAddr string // host:port, for messages and the state file
	Sources    []Source
	Via        string
	// StateDir holds the state files that let an interrupted run finish.
	StateDir string
	Threads  int
	Log      *slog.Logger
	// Progress reports a stage ("load", which verifies too, "catch-up")
	// of a source.
	Progress func(stage, source string, done, total int64)
}

// SourceResult is what Provision did for one source.
type SourceResult struct {
	Source      string              `json:"source"`
	Snapshot    string              `json:"snapshot"`
	SnapshotPos understudy.Position `json:"snapshot_gtid_position"`
	// Verified counts the chunk checksums compared after the load (-1:
	// loaded and verified by an earlier, interrupted run).
	Verified int                 `json:"chunks_verified"`
	Load     time.Duration       `json:"load_ns"`
	Master   string              `json:"master"`
	Position understudy.Position `json:"gtid_position"`
}

// ProvisionResult says what Provision did.
type ProvisionResult struct {
	Target   string         `json:"target"`
	Via      string         `json:"via"`
	Resumed  bool           `json:"resumed"`
	Sources  []SourceResult `json:"sources"`
	Warnings []string       `json:"warnings,omitempty"`
	CatchUp  time.Duration  `json:"catch_up_ns"`
	// Connections are the rows of SHOW ALL SLAVES STATUS of the
	// provisioned connections at the end.
	Connections []Status `json:"connections"`
}

// The stages of a source in the state file, in order.
const (
	stageLoading     = "loading"     // its databases may be half loaded
	stageVerified    = "verified"    // loaded and checked at the snapshot's position
	stagePositioned  = "positioned"  // gtid_slave_pos holds the snapshot's position
	stageConnecting  = "connecting"  // CHANGE MASTER may have run
	stageReplicating = "replicating" // START SLAVE ran
)

var stageOrder = []string{"", stageLoading, stageVerified, stagePositioned, stageConnecting, stageReplicating}

func stageAtLeast(have, want string) bool {
	return slices.Index(stageOrder, have) >= slices.Index(stageOrder, want)
}

// provisionState is kept in StateDir so that a rerun of an interrupted
// provisioning recognises its own half-done work and finishes it.
type provisionState struct {
	Target  string                  `json:"target"`
	Sources map[string]*sourceState `json:"sources"`
}

type sourceState struct {
	Snapshot string `json:"snapshot"`
	Stage    string `json:"stage"`
}

// plan is one source, resolved.
type planned struct {
	Source
	snap    snapshot.Listed
	dbs     []string // databases of the snapshot
	domains []uint32
	head    understudy.Position // the archive's position when planned
	st      *sourceState
}

// Provision makes the target a live replica of every source: it loads each
// source's newest snapshot, verifies it against its chunk checksums, sets
// gtid_slave_pos to the snapshots' positions (keeping the target's other
// domains), creates one replication connection per source named like the
// source, starts it and waits until every connection has caught up with
// the archive. Everything it refuses, it refuses before writing anything;
// an interrupted run, run again, finishes the job.
func Provision(ctx context.Context, o ProvisionOptions) (ProvisionResult, error) {
	res, err := provision(ctx, o)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// Interrupted: the driver may report a cancelled query as a bad
		// connection. The cause is the interruption; a rerun finishes.
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return res, err
}

func provision(ctx context.Context, o ProvisionOptions) (ProvisionResult, error) {
	res := ProvisionResult{Target: o.TargetAddr, Via: o.Via}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(string, string, int64, int64) {}
	}
	if len(o.Sources) == 0 {
		return res, errors.New("no source to provision")
	}
	stPath := filepath.Join(o.StateDir, strings.NewReplacer(":", "_", "/", "_").Replace(o.TargetAddr)+".json")
	st := loadProvisionState(stPath, o.TargetAddr)

	// Pre-flight: nothing is written before every check passed.
	plan, err := planSources(o, st)
	if err != nil {
		return res, err
	}
	for _, p := range plan {
		if p.st.Stage != "" {
			res.Resumed = true
		}
	}
	warnings, err := preflight(ctx, o, plan)
	if err != nil {
		return res, err
	}
	res.Warnings = warnings
	for _, w := range warnings {
		o.Log.Warn(w)
	}
	for _, p := range plan {
		o.Log.Info("provision plan", "source", p.Name, "snapshot", p.snap.Manifest.ID, "snapshot_position", p.snap.Manifest.Position.String(),
			"databases", p.dbs, "master", p.Master.Addr(), "stage", p.st.Stage)
	}
	save := func() error {
		if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		return archive.WriteFileAtomic(stPath, b)
	}
	for _, p := range plan {
		st.Sources[p.Name] = p.st
	}
	if err := save(); err != nil {
		return res, fmt.Errorf("provisioning state %s: %w", stPath, err)
	}

	// Load and verify, source by source.
	results := map[string]*SourceResult{}
	for _, p := range plan {
		m := p.snap.Manifest
		r := &SourceResult{Source: p.Name, Snapshot: m.ID, SnapshotPos: m.Position, Verified: -1, Master: p.Master.Addr()}
		results[p.Name] = r
		if stageAtLeast(p.st.Stage, stageVerified) {
			o.Log.Info("already loaded and verified by an earlier run", "source", p.Name, "snapshot", m.ID)
			continue
		}
		release, err := snapshot.Hold(p.snap.Dir)
		if err != nil {
			return res, fmt.Errorf("source %s: snapshot %s: %w", p.Name, m.ID, err)
		}
		p.st.Stage = stageLoading
		if err := save(); err != nil {
			release()
			return res, err
		}
		t0 := time.Now()
		r.Verified, err = load(ctx, o, p)
		r.Load = time.Since(t0)
		release()
		if err != nil {
			return res, err
		}
		o.Log.Info("snapshot loaded and verified", "source", p.Name, "snapshot", m.ID, "chunks", r.Verified, "load", r.Load.Round(time.Millisecond))
		p.st.Stage = stageVerified
		if err := save(); err != nil {
			return res, err
		}
	}

	// The handover point: gtid_slave_pos takes every loaded snapshot's
	// position at once, in its source's domains only.
	var pos []understudy.GTID
	var names []string
	for _, p := range plan {
		names = append(names, p.Name)
		if p.st.Stage == stageVerified {
			pos = append(pos, p.snap.Manifest.Position.GTIDs()...)
		}
	}
	if len(pos) > 0 {
		if err := SetSlavePos(ctx, o.Target, o.TargetAddr, understudy.NewPosition(pos...), nil, names, o.Log); err != nil {
			return res, err
		}
		for _, p := range plan {
			if p.st.Stage == stageVerified {
				p.st.Stage = stagePositioned
			}
		}
		if err := save(); err != nil {
			return res, err
		}
	}

	// One connection per source.
	for _, p := range plan {
		if p.st.Stage == stageReplicating {
			s, ok, err := ConnStatus(ctx, o.Target, p.Name)
			if err != nil {
				return res, fmt.Errorf("target %s: %w", o.TargetAddr, err)
			}
			if ok && s.Running() {
				continue
			}
		}
		p.st.Stage = stageConnecting
		if err := save(); err != nil {
			return res, err
		}
		if err := connect(ctx, o, p); err != nil {
			return res, err
		}
		p.st.Stage = stageReplicating
		if err := save(); err != nil {
			return res, err
		}
	}

	// Catch up with the archive as it stood when the connections started.
	t0 := time.Now()
	if err := catchUp(ctx, o, plan); err != nil {
		return res, err
	}
	res.CatchUp = time.Since(t0)
	cur, err := GTIDSlavePos(ctx, o.Target)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", o.TargetAddr, err)
	}
	all, err := AllStatus(ctx, o.Target)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", o.TargetAddr, err)
	}
	for _, p := range plan {
		r := results[p.Name]
		r.Position = cur.Only(p.domains)
		res.Sources = append(res.Sources, *r)
		for _, s := range all {
			if strings.EqualFold(s.Name(), p.Name) {
				res.Connections = append(res.Connections, s)
			}
		}
	}
	return res, nil
}

func loadProvisionState(path, target string) *provisionState {
	st := &provisionState{}
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, st) != nil || st.Target != target {
		st = &provisionState{Target: target}
	}
	if st.Sources == nil {
		st.Sources = map[string]*sourceState{}
	}
	return st
}

// planSources picks each source's snapshot: the one an interrupted run
// began with, else the newest snapshot of the archive's current
// generation from which the archive is complete (so that the binlogs after
// it can be served). Sources must not share a GTID domain nor a database
// that holds anything.
func planSources(o ProvisionOptions, st *provisionState) ([]*planned, error) {
	var plan []*planned
	seen := map[string]bool{}
	for _, s := range o.Sources {
		if seen[strings.ToLower(s.Name)] {
			return nil, fmt.Errorf("source %s is named twice", s.Name)
		}
		seen[strings.ToLower(s.Name)] = true
		a, err := archive.Open(s.ArchiveDir)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", s.Name, err)
		}
		snaps, err := snapshot.List(s.SnapshotRoot)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", s.Name, err)
		}
		ss := st.Sources[s.Name]
		if ss == nil || ss.Stage == "" {
			ss = &sourceState{}
		}
		p := &planned{Source: s, st: ss, head: a.Position()}
		if ss.Snapshot != "" {
			for _, l := range snaps {
				if l.Manifest.ID == ss.Snapshot {
					p.snap = l
				}
			}
			if p.snap.Manifest == nil {
				// The snapshot the earlier run loaded is gone: start over.
				o.Log.Warn("the snapshot an earlier provisioning began with is gone; starting this source over", "source", s.Name, "snapshot", ss.Snapshot)
				*ss = sourceState{}
			}
		}
		if p.snap.Manifest == nil {
			if p.snap, err = newestServable(s.Name, a, snaps); err != nil {
				return nil, err
			}
			ss.Snapshot = p.snap.Manifest.ID
		}
		for _, d := range p.snap.Manifest.Databases {
			p.dbs = append(p.dbs, d.Name)
		}
		for _, g := range p.snap.Manifest.Position.GTIDs() {
			p.domains = append(p.domains, g.Domain)
		}
		for _, g := range p.head.GTIDs() {
			if !slices.Contains(p.domains, g.Domain) {
				p.domains = append(p.domains, g.Domain)
			}
		}
		plan = append(plan, p)
	}
	// One GTID domain per source, and no database holding anything in two
	// sources' snapshots.
	for i, p := range plan {
		for _, q := range plan[:i] {
			for _, d := range p.domains {
				if slices.Contains(q.domains, d) {
					return nil, fmt.Errorf("sources %s and %s both write GTID domain %d: a multi-source replica needs one domain per source (set gtid_domain_id on the primaries)", q.Name, p.Name, d)
				}
			}
			for _, d := range p.snap.Manifest.Databases {
				if !holdsData(d) {
					continue
				}
				for _, e := range q.snap.Manifest.Databases {
					if e.Name == d.Name && holdsData(e) {
						return nil, fmt.Errorf("sources %s and %s both have database %q: one replica cannot hold both", q.Name, p.Name, d.Name)
					}
				}
			}
		}
	}
	return plan, nil
}

func holdsData(d snapshot.Database) bool { return len(d.Tables) > 0 || d.Objects != "" }

// newestServable is the newest snapshot in the restore window of the
// archive's current generation: the binlogs from its position on are all
// in the archive.
func newestServable(name string, a *archive.Archive, snaps []snapshot.Listed) (snapshot.Listed, error) {
	tl := history.NewTimeline(name, a, snaps)
	gens := a.Generations()
	cur := 0
	if len(gens) > 0 {
		cur = gens[len(gens)-1].ID
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		j, ok := tl.WindowOf[snaps[i].Manifest.ID]
		if !ok {
			continue
		}
		if w := tl.Windows[j]; !w.PointOnly && w.Generation == cur {
			return snaps[i], nil
		}
	}
	if len(snaps) == 0 {
		return snapshot.Listed{}, fmt.Errorf("source %s has no snapshot: take one with `understudy snapshot --source %s` (run takes one when the archive begins)", name, name)
	}
	return snapshot.Listed{}, fmt.Errorf("source %s has no snapshot from which the archive's current generation %d is complete: take one with `understudy snapshot --source %s`", name, cur, name)
}

// preflight checks the target and the masters. It returns warnings about
// settings that do not stop provisioning but would stop a promotion.
func preflight(ctx context.Context, o ProvisionOptions, plan []*planned) ([]string, error) {
	t, addr := o.Target, o.TargetAddr
	var serverID uint32
	var logBin, logSlaveUpdates, strict, readOnly int
	if err := t.QueryRowContext(ctx, "SELECT @@server_id, @@log_bin, @@log_slave_updates, @@gtid_strict_mode, @@read_only").
		Scan(&serverID, &logBin, &logSlaveUpdates, &strict, &readOnly); err != nil {
		return nil, fmt.Errorf("target %s: %w", addr, err)
	}
	all, err := AllStatus(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("target %s: SHOW ALL SLAVES STATUS: %w", addr, err)
	}
	for _, p := range plan {
		ids := slices.Clone(p.ServerIDs)
		for _, g := range append(p.snap.Manifest.Position.GTIDs(), p.head.GTIDs()...) {
			ids = append(ids, g.ServerID)
		}
		if slices.Contains(ids, serverID) {
			return nil, fmt.Errorf("target %s has server_id %d, which source %s's transactions or binlog server use: a replica skips its own server_id's events; give the target another server_id", addr, serverID, p.Name)
		}
		for _, s := range all {
			if strings.EqualFold(s.Name(), p.Name) && !stageAtLeast(p.st.Stage, stageConnecting) {
				return nil, fmt.Errorf("target %s already has a replication connection named %s (master %s:%s): provision names its connection after the source; remove it (STOP SLAVE %s; RESET SLAVE %s ALL) or provision another source",
					addr, QuoteName(s.Name()), s["Master_Host"], s["Master_Port"], QuoteName(s.Name()), QuoteName(s.Name()))
			}
		}
		if !stageAtLeast(p.st.Stage, stageLoading) {
			busy, err := UserDatabases(ctx, t, p.dbs)
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", addr, err)
			}
			if len(busy) > 0 {
				return nil, fmt.Errorf("target %s already has databases %s that source %s's snapshot would overwrite: provision a target without them (or drop them)", addr, strings.Join(busy, ", "), p.Name)
			}
		}
		if err := pingMaster(ctx, p.Master); err != nil {
			return nil, fmt.Errorf("source %s: %s at %s does not answer: %w", p.Name, p.Master.What, p.Master.Addr(), err)
		}
	}
	var warn []string
	if logBin == 0 {
		warn = append(warn, fmt.Sprintf("target %s has log_bin OFF: it cannot be promoted to a primary without a restart (set log_bin in its configuration)", addr))
	}
	if logSlaveUpdates == 0 {
		warn = append(warn, fmt.Sprintf("target %s has log_slave_updates OFF: after a promotion, its binlog would lack the replicated transactions (set log_slave_updates)", addr))
	}
	if strict == 0 {
		warn = append(warn, fmt.Sprintf("target %s has gtid_strict_mode OFF: an errant transaction would go unnoticed (set gtid_strict_mode=1)", addr))
	}
	if readOnly == 0 {
		warn = append(warn, fmt.Sprintf("target %s has read_only OFF: a write on the replica would make it drift (set read_only=1)", addr))
	}
	return warn, nil
}

// pingMaster logs in to the master as the replica will.
func pingMaster(ctx context.Context, m Master) error {
	src := understudy.Source{Host: m.Host, Port: m.Port, User: m.User, Password: m.Password}
	if m.SSL {
		// Only whether it answers and takes the login is checked here;
		// the replica checks the certificate as its own settings say.
		src.TLS = &tls.Config{InsecureSkipVerify: true}
	}
	db, err := replication.Open(src, "")
	if err != nil {
		return err
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return db.PingContext(cctx)
}

// load drops the source's databases on the target (an earlier, interrupted
// run may have half loaded them), loads the snapshot and compares every
// chunk with the snapshot's checksum as its table completes: nothing
// replicates into the source's databases yet, so the target holds exactly
// the snapshot's position. It returns the number of chunks compared.
func load(ctx context.Context, o ProvisionOptions, p *planned) (int, error) {
	m := p.snap.Manifest
	for _, d := range p.dbs {
		if _, err := o.Target.ExecContext(ctx, "SET STATEMENT sql_log_bin=0 FOR DROP DATABASE IF EXISTS "+quoteIdent(d)); err != nil {
			return 0, fmt.Errorf("target %s: %w", o.TargetAddr, err)
		}
	}
	var n int
	err := snapshot.Load(ctx, o.Target, p.snap.Dir, m, snapshot.LoadOptions{Threads: o.Threads, Databases: p.dbs, Log: o.Log,
		Verify: true, Verified: &n, Replica: true,
		Progress: func(pr snapshot.Progress) { o.Progress("load", p.Name, pr.Rows, pr.RowsEstimate) }})
	if err != nil {
		return n, fmt.Errorf("source %s: loading snapshot %s into %s: %w", p.Name, m.ID, o.TargetAddr, err)
	}
	return n, nil
}

// connect (re)creates the source's connection and starts it.
func connect(ctx context.Context, o ProvisionOptions, p *planned) error {
	t, name := o.Target, QuoteName(p.Name)
	exec := func(q string, args ...any) error {
		if _, err := t.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("target %s: %s: %w", o.TargetAddr, redactPassword(q), err)
		}
		return nil
	}
	t.ExecContext(ctx, "STOP SLAVE "+name)
	ssl := "0"
	if p.Master.SSL {
		ssl = "1"
	}
	q := fmt.Sprintf("CHANGE MASTER %s TO MASTER_HOST=%s, MASTER_PORT=%d, MASTER_USER=%s, MASTER_PASSWORD=%s, MASTER_SSL=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=5, MASTER_HEARTBEAT_PERIOD=5",
		name, quoteString(p.Master.Host), p.Master.Port, quoteString(p.Master.User), quoteString(p.Master.Password), ssl)
	if err := exec(q); err != nil {
		return err
	}
	// A connection's filters outlive RESET SLAVE ALL: none is left from
	// an earlier use of the name.
	ident := "`" + strings.ReplaceAll(p.Name, "`", "``") + "`"
	for _, f := range []string{"replicate_do_db", "replicate_ignore_db", "replicate_do_table", "replicate_ignore_table", "replicate_wild_do_table", "replicate_wild_ignore_table"} {
		if err := exec("SET GLOBAL " + ident + "." + f + " = ''"); err != nil {
			return err
		}
	}
	return exec("START SLAVE " + name)
}

func redactPassword(q string) string {
	i := strings.Index(q, "MASTER_PASSWORD=")
	if i < 0 {
		return q
	}
	j := strings.Index(q[i:], ", ")
	if j < 0 {
		return q[:i] + "MASTER_PASSWORD=<secret>"
	}
	return q[:i] + "MASTER_PASSWORD=<secret>" + q[i+j:]
}

// catchUp waits until the target's gtid_slave_pos holds, for every source,
// the archive's position as it stood when planned, and fails when a
// connection stops with an error.
func catchUp(ctx context.Context, o ProvisionOptions, plan []*planned) error {
	type goal struct {
		p     *planned
		from  understudy.Position
		total int64
	}
	cur, err := GTIDSlavePos(ctx, o.Target)
	if err != nil {
		return fmt.Errorf("target %s: %w", o.TargetAddr, err)
	}
	var goals []goal
	for _, p := range plan {
		// A fresh archive head: the snapshot's own position at least.
		a, err := archive.Open(p.ArchiveDir)
		if err == nil {
			p.head = a.Position()
		}
		from := cur.Only(p.domains)
		goals = append(goals, goal{p: p, from: from, total: behind(from, p.head)})
	}
	sort.SliceStable(goals, func(i, j int) bool { return goals[i].p.Name < goals[j].p.Name })
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := GTIDSlavePos(ctx, o.Target)
		if err != nil {
			return fmt.Errorf("target %s: %w", o.TargetAddr, err)
		}
		done := true
		for _, g := range goals {
			left := behind(cur, g.p.head)
			o.Progress("catch-up", g.p.Name, g.total-left, g.total)
			if !cur.ContainsPosition(g.p.head) {
				done = false
				s, ok, err := ConnStatus(ctx, o.Target, g.p.Name)
				if err != nil {
					return fmt.Errorf("target %s: %w", o.TargetAddr, err)
				}
				if !ok {
					return fmt.Errorf("target %s: the replication connection %s is gone (RESET SLAVE ALL?)", o.TargetAddr, QuoteName(g.p.Name))
				}
				if f := s.Failure(); f != "" {
					if o.Via == ViaPrimary && strings.Contains(f, "1236") {
						f += fmt.Sprintf(" (the primary no longer has the binlogs after snapshot %s: --via archive serves them from the archive)", g.p.snap.Manifest.ID)
					}
					return fmt.Errorf("source %s: replication on %s from %s stopped: %s", g.p.Name, o.TargetAddr, g.p.Master.Addr(), f)
				}
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// behind counts the transactions of to that from lacks, domain by domain.
func behind(from, to understudy.Position) int64 {
	var n int64
	for _, g := range to.GTIDs() {
		f, _ := from.Domain(g.Domain)
		if g.Seq > f.Seq {
			n += int64(g.Seq - f.Seq)
		}
	}
	return n
}

// Summary formats connections in the shape of SHOW ALL SLAVES STATUS\G,
// with the columns a DBA reads first.
func Summary(conns []Status) string {
	cols := []string{"Connection_name", "Master_Host", "Master_Port", "Master_User", "Using_Gtid", "Gtid_IO_Pos", "Slave_IO_Running", "Slave_SQL_Running",
		"Seconds_Behind_Master", "Last_IO_Error", "Last_SQL_Error", "Master_SSL_Allowed", "Gtid_Slave_Pos"}
	w := 0
	for _, c := range cols {
		w = max(w, len(c))
	}
	var b strings.Builder
	for i, s := range conns {
		fmt.Fprintf(&b, "*************************** %d. row ***************************\n", i+1)
		for _, c := range cols {
			fmt.Fprintf(&b, "%*s: %s\n", w, c, s[c])
		}
	}
	return b.String()
}
