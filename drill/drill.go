// Package drill proves that a source's backups restore, without touching
// its primary: a restore drill.
//
// By default a drill restores the older of the source's two newest
// snapshots onto an empty server (a throwaway mariadbd on this host, see
// package scratch, or a given one) and verifies its chunk checksums at its
// position; then it replays the archive onto it up to the exact position
// of the newest snapshot and verifies the result against that snapshot's
// chunk checksums. A snapshot and the binlog chain after it are proven
// with no live server involved. With one snapshot (or when the two newest
// do not lie in one restore window), it verifies the newest snapshot and
// replays the archive up to its head, checking that every transaction
// applied. With a backup replica, it also compares the restored data with
// the replica held at one GTID (as replica.Check does).
//
// The load and the replay are restore.Run's; the checks are
// snapshot.Verify's and replica.Check's. Every drill that ran is recorded
// in the source's archive directory (drill.json, see Record), whether it
// ran from the command line or on the schedule of `understudy run`
// (Schedule), and Metrics exports the record. docs/drills.md describes it
// for users.
package drill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/history"
	"github.com/understudy-db/understudy/replica"
	"github.com/understudy-db/understudy/restore"
	"github.com/understudy-db/understudy/scratch"
	"github.com/understudy-db/understudy/snapshot"
)

var (
	// ErrProblem is wrapped by the error of a drill that found a problem
	// with the backups: a snapshot that does not load or whose chunk
	// checksums do not match, an archive that does not replay, a
	// transaction that did not apply, a backup replica that differs.
	ErrProblem = errors.New("the drill found a problem")
	// ErrBusy means another drill of the source is running.
	ErrBusy = errors.New("another drill of the source is running")
)

// problem is an error of the backups: it wraps ErrProblem and its cause,
// and reads as its cause.
type problem struct{ err error }

func (p problem) Error() string   { return p.err.Error() }
func (p problem) Unwrap() []error { return []error{ErrProblem, p.err} }

// Options configures Run.
type Options struct {
	Source       string
	ArchiveDir   string // the source's archive directory; drill.json is kept there
	SnapshotRoot string // the source's snapshots directory
	// Target is the server the backups are restored onto. It must hold
	// no user data (a table, view, sequence, routine or event outside the
	// system databases): the drill refuses it otherwise. After the drill
	// the databases it restored are dropped, unless Keep is set. Nil: a
	// throwaway mariadbd is started on this host (package scratch) and
	// removed afterwards.
	Target     *sql.DB
	TargetAddr string // host:port of Target
	Keep       bool
	// ScratchDir is where the throwaway server's temporary directory is
	// made (default: the system's temporary directory).
	ScratchDir string
	// Replica, if set, is a live backup replica of the source (a
	// replication connection named like the source): it is held for a
	// moment at a GTID and compared with the backups restored to that
	// GTID.
	Replica     *sql.DB
	ReplicaAddr string
	Threads     int // parallel load and checksum threads (default 4)
	// Listen and Advertise are restore's: where the binlog server that
	// feeds the target listens, and where the target connects to it.
	Listen, Advertise string
	Log               *slog.Logger
	// Progress reports the progress of a stage ("load" or "replay").
	Progress func(stage string, done, total int64)
	// Fetch is restore's (restore.Options.Fetch): it brings the files a
	// restore needs from the store (files held only there, or an archive
	// read from the store).
	Fetch func(ctx context.Context, snapshotDir string, files []archive.FileInfo) error
}

// Run runs one drill and records its result in drill.json (see Record).
//
// A drill that cannot begin (another drill of the source runs, there is no
// snapshot, the target holds data or does not answer, no scratch server can
// be started) is refused: Run returns the zero DrillResult and an error,
// and records nothing, writes nothing. So does a drill interrupted by ctx.
// Once begun, the result is recorded, passed or failed, and returned; its
// error wraps ErrProblem when the backups were found wrong, and not when
// the target stopped answering.
func Run(ctx context.Context, o Options) (understudy.DrillResult, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(string, int64, int64) {}
	}
	if o.Threads <= 0 {
		o.Threads = 4
	}
	if _, err := os.Stat(o.ArchiveDir); err != nil {
		return understudy.DrillResult{}, fmt.Errorf("source %s has nothing archived: %w", o.Source, err)
	}
	release, err := lock(o.ArchiveDir, o.Source)
	if err != nil {
		return understudy.DrillResult{}, err
	}
	defer release()
	p, err := choose(o)
	if err != nil {
		return understudy.DrillResult{}, err
	}
	unhold, err := p.hold(o.ArchiveDir)
	if err != nil {
		return understudy.DrillResult{}, err
	}
	defer unhold()
	if o.Replica != nil {
		st, ok, err := replica.ConnStatus(ctx, o.Replica, o.Source)
		if err != nil {
			return understudy.DrillResult{}, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
		}
		if !ok {
			return understudy.DrillResult{}, fmt.Errorf("replica %s has no replication connection named %s: --replica is a backup replica of the source (see `understudy provision`)", o.ReplicaAddr, replica.QuoteName(o.Source))
		}
		if e := st["Last_SQL_Error"]; e != "" {
			return understudy.DrillResult{}, fmt.Errorf("replica %s: the connection %s has stopped on an error: %s", o.ReplicaAddr, replica.QuoteName(o.Source), e)
		}
	}
	t, err := openTarget(ctx, o)
	if err != nil {
		return understudy.DrillResult{}, err
	}
	d := &drill{o: o, p: p, t: t}
	defer func() {
		t.close(o)
	}()
	first := p.first.Manifest
	res := understudy.DrillResult{Time: time.Now().UTC(), Snapshot: first.ID, Position: p.end, Bytes: dataBytes(first)}
	o.Log.Info("drill", "source", o.Source, "target", t.what, "snapshot", first.ID, "to", p.endWhat, "gtid_position", p.end.String(), "mode", p.mode)
	err = d.run(ctx, &res)
	if err != nil && ctx.Err() != nil {
		return understudy.DrillResult{}, fmt.Errorf("drill of source %s interrupted: %w", o.Source, err)
	}
	res.OK = err == nil
	res.RTOSeconds = res.LoadSeconds + res.ReplaySeconds
	if err != nil {
		res.Error = err.Error()
	}
	if serr := save(o.ArchiveDir, res); serr != nil {
		if err == nil {
			return res, fmt.Errorf("the drill passed, but its result could not be recorded: %w", serr)
		}
		o.Log.Error("the drill's result could not be recorded", "source", o.Source, "err", serr)
	}
	return res, err
}

// plan is what a drill restores and verifies.
type plan struct {
	mode string // "two snapshots", "one snapshot", "snapshot only"
	// first is the snapshot restored and verified at its position.
	first snapshot.Listed
	// second, in mode "two snapshots", is the snapshot the result is
	// verified against, at end.
	second *snapshot.Listed
	// end is the position the archive is replayed to (first's own
	// position when nothing follows it), and endWhat says what it is.
	end     understudy.Position
	endWhat string
	// note says why nothing is replayed, when nothing is.
	note string
	// domains are the source's GTID domains, and dbs the databases of its
	// newest snapshot (for the comparison with a replica).
	domains []uint32
	dbs     []string
	// firstFile is the archived file the replay begins in (nil when
	// nothing is replayed).
	firstFile *archive.FileInfo
}

// hold keeps retention (in run or prune) from removing the drill's
// snapshots and archived files until release is called: restore holds
// them only while each of its restores runs.
func (p plan) hold(dir string) (release func(), err error) {
	var releases []func()
	release = func() {
		for _, r := range releases {
			r()
		}
	}
	for _, l := range []*snapshot.Listed{&p.first, p.second} {
		if l == nil {
			continue
		}
		r, err := snapshot.Hold(l.Dir)
		if err != nil {
			release()
			return nil, fmt.Errorf("snapshot %s: %w", l.Manifest.ID, err)
		}
		releases = append(releases, r)
	}
	// A file held only in the store (storage.local_keep) is not here to
	// hold: the restore fetches it, then holds it.
	if p.firstFile != nil && !p.firstFile.Evicted || p.firstFile != nil && exists(filepath.Join(dir, p.firstFile.Name)) {
		a, err := archive.Open(dir)
		if err == nil {
			var r func()
			if r, err = a.Hold(*p.firstFile); err == nil {
				releases = append(releases, r)
			}
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("archived file %s: %w", p.firstFile.Name, err)
		}
	}
	return release, nil
}

// firstFile returns the newest archived file of generation gen whose
// start position from contains: where a replay from there begins.
func firstFile(a *archive.Archive, gen int, from understudy.Position) *archive.FileInfo {
	files := a.Files()
	for i := len(files) - 1; i >= 0; i-- {
		if files[i].Generation == gen && from.ContainsPosition(files[i].StartPosition) {
			return &files[i]
		}
	}
	return nil
}

// choose picks the drill's snapshots: the two newest, when they lie in
// one restore window (so that the archive holds every transaction between
// them); else the newest snapshot whose window is full, replayed to the
// window's end (the archive's head); else the newest snapshot alone, at
// its own position (its binlogs are not in the archive).
func choose(o Options) (plan, error) {
	a, err := archive.Open(o.ArchiveDir)
	if err != nil {
		return plan{}, err
	}
	snaps, err := snapshot.List(o.SnapshotRoot)
	if err != nil {
		return plan{}, err
	}
	if len(snaps) == 0 {
		return plan{}, fmt.Errorf("source %s: %w: a drill restores snapshots (take one with `understudy snapshot`, or snapshot.every in run)", o.Source, history.ErrNoSnapshot)
	}
	tl := history.NewTimeline(o.Source, a, snaps)
	window := func(l snapshot.Listed) (understudy.Window, bool) {
		i, ok := tl.WindowOf[l.Manifest.ID]
		if !ok {
			return understudy.Window{}, false
		}
		return tl.Windows[i], true
	}
	newest := snaps[len(snaps)-1]
	p := plan{}
	for _, d := range newest.Manifest.Databases {
		p.dbs = append(p.dbs, d.Name)
	}
	for _, pos := range []understudy.Position{a.Position(), newest.Manifest.Position} {
		for _, g := range pos.GTIDs() {
			if !containsDomain(p.domains, g.Domain) {
				p.domains = append(p.domains, g.Domain)
			}
		}
	}
	wn, okN := window(newest)
	if len(snaps) >= 2 {
		older := snaps[len(snaps)-2]
		wo, okO := window(older)
		if okN && okO && !wn.PointOnly && !wo.PointOnly && wo.Generation == wn.Generation && wo.Snapshot == wn.Snapshot &&
			newest.Manifest.Position.ContainsPosition(older.Manifest.Position) {
			p.mode, p.first, p.second = "two snapshots", older, &newest
			p.end, p.endWhat = newest.Manifest.Position, "snapshot "+newest.Manifest.ID+"'s position"
			p.firstFile = firstFile(a, wo.Generation, older.Manifest.Position)
			return p, nil
		}
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		if w, ok := window(snaps[i]); ok && !w.PointOnly {
			p.mode, p.first = "one snapshot", snaps[i]
			p.end, p.endWhat = w.To, "the archive's head"
			p.firstFile = firstFile(a, w.Generation, snaps[i].Manifest.Position)
			if w.To.Equal(snaps[i].Manifest.Position) {
				p.note = "the archive holds no transaction after it"
			}
			return p, nil
		}
	}
	p.mode, p.first = "snapshot only", newest
	p.end, p.endWhat = newest.Manifest.Position, "its position"
	p.note = "its binlogs are not in the archive: it restores to its own position only"
	return p, nil
}

func containsDomain(ds []uint32, d uint32) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// dataBytes is the uncompressed size of a snapshot's data.
func dataBytes(m *snapshot.Manifest) int64 {
	var n int64
	for _, d := range m.Databases {
		for _, t := range d.Tables {
			for _, c := range t.Chunks {
				n += c.Bytes
			}
		}
	}
	return n
}

// target is the server a drill restores onto.
type target struct {
	db   *sql.DB
	addr string // host:port
	what string // for messages
	// before are the (empty) databases a given target had.
	before map[string]bool
	// stop removes a scratch server; nil for a given target.
	stop func()
}

// openTarget checks the given target (it must hold no user data) or
// starts a scratch server.
func openTarget(ctx context.Context, o Options) (*target, error) {
	if o.Target != nil {
		t := &target{db: o.Target, addr: o.TargetAddr, what: "target " + o.TargetAddr, before: map[string]bool{}}
		dbs, err := userSchemas(ctx, o.Target)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", o.TargetAddr, err)
		}
		used, err := replica.UserDatabases(ctx, o.Target, dbs)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", o.TargetAddr, err)
		}
		if len(used) > 0 {
			return nil, fmt.Errorf("target %s holds data in databases %s: a drill restores onto a server without user data; give an empty one, or no target for a throwaway mariadbd on this host",
				o.TargetAddr, strings.Join(used, ", "))
		}
		for _, d := range dbs {
			t.before[d] = true
		}
		return t, nil
	}
	s, err := scratch.Start(ctx, scratch.Options{Dir: o.ScratchDir, Log: o.Log})
	if errors.Is(err, scratch.ErrNotInstalled) {
		return nil, fmt.Errorf("%w; or give the drill a target server that holds no user data", err)
	}
	if err != nil {
		return nil, err
	}
	db, err := s.Open()
	if err != nil {
		s.Close()
		return nil, err
	}
	db.SetMaxOpenConns(o.Threads + 4)
	return &target{db: db, addr: s.Addr(), what: "scratch server " + s.Addr(), stop: func() { db.Close(); s.Close() }}, nil
}

// userSchemas lists the databases of a server outside the system ones.
func userSchemas(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE "+snapshot.UserSchemas("SCHEMA_NAME")+" ORDER BY SCHEMA_NAME")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// close removes a scratch server, or empties a given target again: the
// databases the drill restored are dropped, and those it had (empty) are
// created again, so that the next drill finds it empty.
func (t *target) close(o Options) {
	if t.stop != nil {
		t.stop()
		return
	}
	if o.Keep {
		o.Log.Info("the restored data is left on the target; the next drill refuses it until it is emptied", "target", t.addr)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := t.empty(ctx); err != nil {
		o.Log.Error("could not drop the restored databases from the target; drop them by hand before the next drill", "target", t.addr, "err", err)
	}
}

func (t *target) empty(ctx context.Context) error {
	dbs, err := userSchemas(ctx, t.db)
	if err != nil {
		return err
	}
	for _, d := range dbs {
		if t.before[d] {
			if used, err := replica.UserDatabases(ctx, t.db, []string{d}); err != nil || len(used) == 0 {
				continue
			}
		}
		name := "`" + strings.ReplaceAll(d, "`", "``") + "`"
		if _, err := t.db.ExecContext(ctx, "SET STATEMENT sql_log_bin=0 FOR DROP DATABASE "+name); err != nil {
			return err
		}
		if t.before[d] {
			if _, err := t.db.ExecContext(ctx, "SET STATEMENT sql_log_bin=0 FOR CREATE DATABASE "+name); err != nil {
				return err
			}
		}
	}
	return nil
}

// drill is one drill under way.
type drill struct {
	o Options
	p plan
	t *target
}

// run restores and verifies, filling res; it returns the first failure.
func (d *drill) run(ctx context.Context, res *understudy.DrillResult) error {
	o, p, t := d.o, d.p, d.t
	first := p.first.Manifest
	var proved []string
	defer func() { res.Proved = strings.Join(proved, "; ") }()

	// The first snapshot, loaded and verified at its own position (the
	// restore checks every chunk as its table completes, before any
	// replay), then the archive after it replayed to the end point: one
	// restore.
	replays := !p.end.Equal(first.Position)
	if replays {
		o.Log.Info("drill: restoring the snapshot, verifying it at its position, and replaying the archive", "source", o.Source, "snapshot", first.ID, "to", p.endWhat, "gtid_position", p.end.String())
	} else {
		o.Log.Info("drill: restoring the snapshot at its position", "source", o.Source, "snapshot", first.ID, "gtid_position", first.Position.String())
	}
	ra, err := restore.Run(ctx, d.restoreOptions(first.ID, p.end))
	res.LoadSeconds, res.ReplaySeconds, res.Transactions = ra.Load.Seconds(), ra.Replay.Seconds(), ra.Transactions
	if err != nil && ra.Load == 0 {
		return d.fail(ctx, err, fmt.Sprintf("snapshot %s did not restore", first.ID), d.snapshotDamage(p.first))
	}
	if ra.Load > 0 {
		res.Chunks = max(ra.Verified, 0)
		proved = append(proved, fmt.Sprintf("snapshot %s (GTID %s) restores and its %d chunk checksums match at its position", first.ID, first.Position, res.Chunks))
	}
	if err != nil {
		return d.fail(ctx, err, fmt.Sprintf("the archive did not replay from snapshot %s to %s", first.ID, p.end), d.archiveDamage(), d.snapshotDamage(p.first))
	}
	if replays {
		pos, err := replica.GTIDSlavePos(ctx, t.db)
		if err != nil {
			return d.fail(ctx, err, "reading the target's gtid_slave_pos")
		}
		if !pos.ContainsPosition(p.end) {
			return problem{fmt.Errorf("not every transaction applied: after the replay, the gtid_slave_pos of the %s is %s, which does not hold %s (%s)", t.what, pos, p.end, p.endWhat)}
		}
		proved = append(proved, fmt.Sprintf("the archive replays its %d transactions after it up to %s (GTID %s), every one applied", ra.Transactions, p.endWhat, p.end))
	} else if p.note != "" {
		proved = append(proved, p.note)
	}

	// The result, against the newest snapshot.
	if s := p.second; s != nil {
		n, err := snapshot.Verify(ctx, t.db, s.Manifest, nil, d.o.Threads)
		if err != nil {
			return d.fail(ctx, err, fmt.Sprintf("the restored data does not match snapshot %s at its position %s", s.Manifest.ID, s.Manifest.Position))
		}
		res.Chunks += n
		proved = append(proved, fmt.Sprintf("there, snapshot %s's %d chunk checksums match", s.Manifest.ID, n))
	}

	if o.Replica != nil {
		return d.compare(ctx, res, &proved)
	}
	return nil
}

// compare holds the backup replica at a GTID G, restores the backups on
// the target to G and compares the two, chunk by chunk.
func (d *drill) compare(ctx context.Context, res *understudy.DrillResult, proved *[]string) error {
	o := d.o
	var refErr error
	reference := func(ctx context.Context, g understudy.Position) (*sql.DB, string, func(), error) {
		what := fmt.Sprintf("the backups restored on the %s", d.t.what)
		if cur, err := replica.GTIDSlavePos(ctx, d.t.db); err == nil && cur.Only(d.p.domains).Equal(g) {
			return d.t.db, what, func() {}, nil
		}
		if err := d.waitArchived(ctx, g); err != nil {
			return nil, "", nil, err
		}
		o.Log.Info("drill: restoring the backups to the replica's position", "source", o.Source, "gtid_position", g.String())
		if _, err := restore.Run(ctx, d.restoreOptions("", g)); err != nil {
			refErr = err
			return nil, "", nil, err
		}
		return d.t.db, what, func() {}, nil
	}
	cr, err := replica.Check(ctx, replica.CheckOptions{Replica: o.Replica, ReplicaAddr: o.ReplicaAddr, Source: o.Source,
		Databases: d.p.dbs, Domains: d.p.domains, Reference: reference, Threads: o.Threads, Log: o.Log})
	if err != nil {
		if refErr != nil {
			return d.fail(ctx, refErr, "the backups did not restore to the position of the replica "+o.ReplicaAddr, d.archiveDamage())
		}
		return fmt.Errorf("comparing with the replica %s: %w", o.ReplicaAddr, err)
	}
	if !cr.Equal {
		var diffs []string
		for i, df := range cr.Diffs {
			if i == 3 {
				diffs = append(diffs, fmt.Sprintf("and %d more", len(cr.Diffs)-3))
				break
			}
			diffs = append(diffs, df.Describe())
		}
		return problem{fmt.Errorf("the backup replica %s differs from the backups restored at GTID %s in %d chunks: %s", o.ReplicaAddr, cr.At, len(cr.Diffs), strings.Join(diffs, "; "))}
	}
	res.Chunks += cr.Chunks
	*proved = append(*proved, fmt.Sprintf("the backup replica %s equals the backups restored at GTID %s (%d tables, %d chunks; its replication held %s)",
		o.ReplicaAddr, cr.At, cr.Tables, cr.Chunks, cr.Held.Round(time.Millisecond)))
	return nil
}

// waitArchived waits (a minute at most) until the archive holds g: a
// replica that replicates from the primary may be a moment ahead of it.
func (d *drill) waitArchived(ctx context.Context, g understudy.Position) error {
	deadline := time.Now().Add(time.Minute)
	for {
		a, err := archive.Open(d.o.ArchiveDir)
		if err != nil {
			return err
		}
		if a.Position().ContainsPosition(g) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the replica is at GTID %s, beyond the archive (at %s): is `understudy run` archiving source %s?", g, a.Position(), d.o.Source)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *drill) restoreOptions(snapshotID string, to understudy.Position) restore.Options {
	o := d.o
	return restore.Options{Source: o.Source, ArchiveDir: o.ArchiveDir, SnapshotRoot: o.SnapshotRoot, Target: d.t.db, TargetAddr: d.t.addr,
		Stop: understudy.StopPoint{UntilGTID: to}, SnapshotID: snapshotID, Force: true, Threads: o.Threads,
		Listen: o.Listen, Advertise: o.Advertise, Log: o.Log, Progress: o.Progress, Throwaway: true, Fetch: o.Fetch}
}

// fail classifies a failure of the drill's restore or checks. When the
// drill was interrupted or the target stopped answering, it is an error of
// the drill. Otherwise the backups did not restore: a problem, with what
// the damage checks find (damaged snapshot files, a damaged archive)
// named.
func (d *drill) fail(ctx context.Context, err error, what string, damage ...func() []string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	perr := d.t.db.PingContext(pctx)
	cancel()
	if perr != nil {
		return fmt.Errorf("%s: %w (the %s no longer answers: %v)", what, err, d.t.what, perr)
	}
	var found []string
	for _, f := range damage {
		found = append(found, f()...)
	}
	if len(found) > 3 {
		found = append(found[:3], fmt.Sprintf("and %d more", len(found)-3))
	}
	if len(found) > 0 {
		return problem{fmt.Errorf("%s: %w (damage found: %s)", what, err, strings.Join(found, "; "))}
	}
	return problem{fmt.Errorf("%s: %w", what, err)}
}

// snapshotDamage lists the files of the snapshot that do not match its
// manifest.
func (d *drill) snapshotDamage(l snapshot.Listed) func() []string {
	return func() []string {
		var out []string
		for _, p := range snapshot.VerifyFiles(l.Dir, l.Manifest) {
			out = append(out, "snapshot "+l.Manifest.ID+": "+p)
		}
		return out
	}
}

// archiveDamage lists what archive.Verify finds wrong in the archive.
func (d *drill) archiveDamage() func() []string {
	return func() []string {
		a, err := archive.Open(d.o.ArchiveDir)
		if err != nil {
			return []string{err.Error()}
		}
		rep, err := archive.Verify(a)
		if err != nil {
			return []string{err.Error()}
		}
		var out []string
		for _, p := range rep.Problems {
			out = append(out, "archived file "+p.File+": "+p.Detail)
		}
		return out
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
