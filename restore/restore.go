// Package restore brings a source back on a target server to a point in
// time: it loads the newest snapshot before the point, then replays the
// archive up to the point through the target's own replication applier,
// fed by an in-process binlog server held at the stop point.
package restore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlogserver"
	"github.com/understudy-db/understudy/history"
	"github.com/understudy-db/understudy/replica"
	"github.com/understudy-db/understudy/snapshot"
)

// ConnName is the replication connection restore creates on the target.
const ConnName = "understudy_restore"

// Options configures Run.
type Options struct {
	Source       string
	ArchiveDir   string // the source's archive directory
	SnapshotRoot string // the source's snapshots directory
	// Fetch, when set, is called once the snapshot and the archived files
	// that the restore reads are known, before any is read: a restore from
	// the store fetches them into ArchiveDir and the snapshot's directory.
	Fetch      func(ctx context.Context, snapshotDir string, files []archive.FileInfo) error
	Target     *sql.DB
	TargetAddr string // host:port, for messages and the state file
	Stop       understudy.StopPoint
	// SnapshotID, if set, picks the snapshot instead of the newest one
	// before the point.
	SnapshotID string
	Databases  []string
	Force      bool
	// Users also creates the snapshot's accounts and roles with their
	// grants, before the replay.
	Users   bool
	Threads int
	// Listen is where the binlog server that feeds the target listens
	// (HOST:PORT). By default it listens on this host's address that faces
	// the target, with a free port: the local address of the route to
	// TargetAddr, the one the target reaches this host at when no NAT lies
	// between them (127.0.0.1 for a target on this host).
	Listen string
	// Advertise is where the target connects to: HOST, or HOST:PORT when
	// a NAT or a container maps the port. By default it is the listen
	// host, or the address facing the target when Listen's host is
	// unspecified (0.0.0.0, ::, or none).
	Advertise string
	// ConnectTimeout is how long the target may try to connect to the
	// binlog server before the restore fails (default 30 s).
	// Throwaway says the target is a scratch server, used once (a check's
	// reference, a drill): no state is read or kept for a rerun, and a
	// rerun loads again.
	Throwaway      bool
	ConnectTimeout time.Duration
	Log            *slog.Logger
	// Progress reports a stage's progress ("load" or "replay").
	Progress func(stage string, done, total int64)
}

// Result says what Run did.
type Result struct {
	Snapshot     string              `json:"snapshot"`
	SnapshotPos  understudy.Position `json:"snapshot_gtid_position"`
	Position     understudy.Position `json:"gtid_position"`
	Transactions int64               `json:"transactions_replayed"`
	Resumed      bool                `json:"resumed"`
	// Generation is the archive generation restored from.
	Generation int `json:"generation"`
	// Verified counts the chunk checksums compared on the target right
	// after the load, at the snapshot's position, before any replay (-1:
	// the load was done by an earlier run of the same restore).
	Verified int           `json:"chunks_verified"`
	Load     time.Duration `json:"load_ns"`
	Replay   time.Duration `json:"replay_ns"`
	// DisabledEvents are the restored databases' events (db.name) that
	// are DISABLE ON SLAVE on the target: the ones the source ran, which
	// the load creates so (the target replicates during the replay, and a
	// copy at a past point must not start changing itself), and those the
	// replay created, as MariaDB creates the events a replica receives.
	// ALTER EVENT … ENABLE turns them on once the target takes over.
	DisabledEvents []string `json:"events_disabled_on_replica,omitempty"`
}

// state is kept next to the archive so that a rerun of the same restore
// resumes instead of refusing the databases it created itself.
type state struct {
	Target   string `json:"target"`
	Snapshot string `json:"snapshot"`
	Stop     string `json:"stop"`
	// Databases and Users are what the load loaded: a rerun that asks
	// for others is another restore.
	Databases []string `json:"databases,omitempty"`
	Users     bool     `json:"users,omitempty"`
	// Stage is loading, positioned (loaded, and the target's
	// gtid_slave_pos set to the snapshot's position: the replay continues
	// from the target's position), or done. A state file of an older
	// version says loaded: its position was set only by the replay, so it
	// is loaded again.
	Stage string `json:"stage"`
}

// Run restores. Everything it refuses, it refuses before writing anything.
func Run(ctx context.Context, o Options) (Result, error) {
	res := Result{Verified: -1}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(string, int64, int64) {}
	}
	if err := o.Stop.Validate(); err != nil {
		return res, err
	}
	a, err := archive.Open(o.ArchiveDir)
	if err != nil {
		return res, err
	}
	if err := a.CheckContinuity(); err != nil {
		return res, err
	}
	snaps, err := snapshot.List(o.SnapshotRoot)
	if err != nil {
		return res, err
	}
	if o.SnapshotID != "" && !hasSnapshot(snaps, o.SnapshotID) {
		return res, fmt.Errorf("there is no snapshot %s (see `understudy snapshots`)", o.SnapshotID)
	}
	// Only a point inside a restore window can be restored: never across a
	// gap, never from a snapshot whose binlogs are gone.
	tl := history.NewTimeline(o.Source, a, snaps)
	wi, err := tl.Locate(o.Stop, o.SnapshotID)
	if err != nil {
		return res, err
	}
	win := tl.Windows[wi]
	if files := a.Files(); o.Stop.IsZero() && len(files) > 0 && files[len(files)-1].Generation != win.Generation {
		last := files[len(files)-1]
		o.Log.Warn("restoring to the end of an older generation: the archive's newest transactions come after a gap, in a generation no snapshot covers yet; take a snapshot to make them restorable",
			"restored_generation", win.Generation, "newest_generation", last.Generation, "archive_position", last.EndPosition.String())
	}
	snap, err := chooseSnapshot(snaps, o.Stop, tl, wi, o.SnapshotID)
	if err != nil {
		return res, err
	}
	release, err := snapshot.Hold(snap.Dir) // not pruned while restored
	if err != nil {
		return res, fmt.Errorf("snapshot %s: %w", snap.Manifest.ID, err)
	}
	defer release()
	m := snap.Manifest
	res.Snapshot, res.SnapshotPos, res.Generation = m.ID, m.Position, win.Generation
	if o.Users && m.Users == "" {
		return res, fmt.Errorf("--users: snapshot %s has no accounts (it was taken without snapshot.users: true)", m.ID)
	}
	end, txs, ids := m.Position, int64(0), map[uint32]bool{}
	var files []archive.FileInfo
	if !win.PointOnly {
		if files, err = replayFiles(a, win.Generation, m.Position); err != nil {
			return res, err
		}
	}
	if o.Fetch != nil {
		if err := o.Fetch(ctx, snap.Dir, files); err != nil {
			return res, err
		}
	}
	if !win.PointOnly {
		// The first file the replay needs, and with it every later one, is
		// not pruned while restored.
		releaseFiles, err := a.Hold(files[0])
		if err != nil {
			return res, fmt.Errorf("archived file %s: %w", files[0].Name, err)
		}
		defer releaseFiles()
		if end, txs, ids, err = plan(a, files, m.Position, o.Stop); err != nil {
			return res, err
		}
	}
	res.Position, res.Transactions = end, txs

	// The target.
	var serverID uint32
	if err := o.Target.QueryRowContext(ctx, "SELECT @@server_id").Scan(&serverID); err != nil {
		return res, fmt.Errorf("target %s: %w", o.TargetAddr, err)
	}
	if ids[serverID] && txs > 0 {
		return res, fmt.Errorf("target %s has server_id %d, the server_id of transactions to replay: a replica skips its own server_id's events; give the target another server_id", o.TargetAddr, serverID)
	}
	dbs := o.Databases
	if len(dbs) == 0 {
		for _, d := range m.Databases {
			dbs = append(dbs, d.Name)
		}
	}
	known := map[string]bool{}
	for _, d := range m.Databases {
		known[d.Name] = true
	}
	for _, d := range dbs {
		if !known[d] {
			return res, fmt.Errorf("database %q is not in snapshot %s", d, m.ID)
		}
	}
	if _, err := wildDoTables(o.Databases); err != nil {
		return res, err
	}
	st, stPath := loadState(o, m.ID, dbs)
	if o.Throwaway {
		st = state{}
	}
	save := func(st state) error {
		if o.Throwaway {
			return nil
		}
		return saveState(stPath, st)
	}
	resuming := st.Stage != ""
	res.Resumed = resuming
	existing, err := replica.UserDatabases(ctx, o.Target, dbs)
	if err != nil {
		return res, err
	}
	if len(existing) > 0 && !o.Force && !resuming {
		return res, fmt.Errorf("target %s already has databases %s: restore refuses to overwrite them without --force", o.TargetAddr, strings.Join(existing, ", "))
	}
	o.Log.Info("restore plan", "generation", win.Generation, "snapshot", m.ID, "snapshot_position", m.Position.String(), "stop", o.Stop.String(),
		"target_position", end.String(), "transactions", txs, "databases", dbs, "resuming", resuming)

	// Load (again, unless an interrupted run of this restore loaded it;
	// then its replay continues from the target's gtid_slave_pos, which
	// must lie between the snapshot's position and the end: otherwise the
	// target changed since, and it is loaded again).
	fresh := st.Stage != "positioned"
	if !fresh {
		cur, err := replica.GTIDSlavePos(ctx, o.Target)
		if err != nil {
			return res, fmt.Errorf("target %s: %w", o.TargetAddr, err)
		}
		var domains []uint32
		for _, g := range end.GTIDs() {
			domains = append(domains, g.Domain)
		}
		if at := cur.Only(domains); !at.ContainsPosition(m.Position) || !end.ContainsPosition(at) {
			o.Log.Warn("the target's gtid_slave_pos is not between the snapshot's position and the end: it changed since the interrupted restore, which is loaded again",
				"gtid_slave_pos", at.String(), "snapshot_position", m.Position.String(), "end", end.String())
			fresh = true
		}
	}
	if fresh {
		st = state{Target: o.TargetAddr, Snapshot: m.ID, Stop: o.Stop.String(), Databases: dbs, Users: o.Users, Stage: "loading"}
		if err := save(st); err != nil {
			return res, err
		}
		for _, d := range dbs {
			if _, err := o.Target.ExecContext(ctx, "SET STATEMENT sql_log_bin=0 FOR DROP DATABASE IF EXISTS `"+strings.ReplaceAll(d, "`", "``")+"`"); err != nil {
				return res, fmt.Errorf("target %s: %w", o.TargetAddr, err)
			}
		}
		t0 := time.Now()
		// Every chunk is verified as its table completes, at the
		// snapshot's position, before any replay. (A restore resumed
		// after the load was verified by its first run.)
		err := snapshot.Load(ctx, o.Target, snap.Dir, m, snapshot.LoadOptions{Threads: o.Threads, Databases: dbs, Log: o.Log,
			Verify: true, Verified: &res.Verified, Replica: true,
			Progress: func(p snapshot.Progress) { o.Progress("load", p.Rows, p.RowsEstimate) }})
		if err != nil {
			return res, fmt.Errorf("loading snapshot %s into %s: %w", m.ID, o.TargetAddr, err)
		}
		if o.Users {
			n, err := snapshot.LoadUsers(ctx, o.Target, snap.Dir, m, o.Log)
			if err != nil {
				return res, fmt.Errorf("accounts of snapshot %s into %s: %w", m.ID, o.TargetAddr, err)
			}
			o.Log.Info("accounts restored", "created", n, "in_snapshot", m.Accounts)
		}
		res.Load = time.Since(t0)
		// The target is at the snapshot's position before the state says
		// so: a rerun continues from the target's position, and one left
		// by an earlier restore would skip transactions.
		o.Target.ExecContext(ctx, "STOP SLAVE '"+ConnName+"'")
		o.Target.ExecContext(ctx, "RESET SLAVE '"+ConnName+"' ALL")
		if err := replica.SetSlavePos(ctx, o.Target, "target "+o.TargetAddr, m.Position, []understudy.Position{end}, []string{ConnName}, o.Log); err != nil {
			return res, err
		}
		st.Stage = "positioned"
		if err := save(st); err != nil {
			return res, err
		}
	}

	// Replay.
	t0 := time.Now()
	if err := replay(ctx, o, m.Position, end, txs, serverID, dbs); err != nil {
		return res, err
	}
	res.Replay = time.Since(t0)
	if len(dbs) > 0 {
		if res.DisabledEvents, err = replica.DisabledEvents(ctx, o.Target, dbs); err != nil {
			return res, fmt.Errorf("target %s: %w", o.TargetAddr, err)
		}
	}
	// Kept: running the same restore again redoes it without --force.
	st.Stage = "done"
	return res, save(st)
}

func hasSnapshot(snaps []snapshot.Listed, id string) bool {
	for _, l := range snaps {
		if l.Manifest.ID == id {
			return true
		}
	}
	return false
}

// chooseSnapshot picks the snapshot to restore from: the newest one at or
// before the stop point that lies in window wi of the timeline (the window
// that holds the point), so that the replay never crosses a gap nor needs
// binlogs that are gone. With id, that snapshot, if it qualifies.
func chooseSnapshot(snaps []snapshot.Listed, stop understudy.StopPoint, tl history.Timeline, wi int, id string) (snapshot.Listed, error) {
	win := tl.Windows[wi]
	for i := len(snaps) - 1; i >= 0; i-- {
		m := snaps[i].Manifest
		if id != "" && m.ID != id {
			continue
		}
		if j, ok := tl.WindowOf[m.ID]; !ok || j != wi {
			if id != "" {
				return snapshot.Listed{}, fmt.Errorf("snapshot %s cannot restore the point %s: the point lies in the restore window %s of generation %d, and the snapshot is not in it (%s)",
					id, stop, win, win.Generation, describeWindowOf(tl, m.ID))
			}
			continue
		}
		if !atOrBefore(m, stop) {
			if id != "" {
				return snapshot.Listed{}, fmt.Errorf("the point %s is older than snapshot %s (taken at %s, GTID position %s)",
					stop, m.ID, m.Started.UTC().Format(time.RFC3339), m.Position)
			}
			continue
		}
		return snaps[i], nil
	}
	// Locate found the window by its oldest snapshot, which is at or
	// before the point: not reached.
	return snapshot.Listed{}, fmt.Errorf("no snapshot of the restore window %s is at or before the point %s", win, stop)
}

func describeWindowOf(tl history.Timeline, id string) string {
	j, ok := tl.WindowOf[id]
	if !ok {
		return "it is in no window"
	}
	w := tl.Windows[j]
	if w.PointOnly {
		return "its binlogs are not in the archive: it restores to its own position only"
	}
	return fmt.Sprintf("it is in the window %s of generation %d", w, w.Generation)
}

// atOrBefore reports whether the snapshot is at or before the stop point.
func atOrBefore(m *snapshot.Manifest, stop understudy.StopPoint) bool {
	switch {
	case !stop.UntilGTID.IsZero():
		return stop.UntilGTID.ContainsPosition(m.Position)
	case !stop.BeforeGTID.IsZero():
		return !m.Position.Contains(stop.BeforeGTID)
	case !stop.UntilTime.IsZero():
		// Commit times are whole seconds: a snapshot consistent at
		// 10:00:00.5 holds only commits stamped 10:00:00 or earlier.
		return !m.ConsistentAt().Truncate(time.Second).After(stop.UntilTime)
	}
	return true
}

// replayFiles returns the archived files a replay from the position from
// reads: from the newest file of generation gen whose start position from
// contains, to the generation's last file. Files of other generations are
// never included.
func replayFiles(a *archive.Archive, gen int, from understudy.Position) ([]archive.FileInfo, error) {
	var files []archive.FileInfo
	for _, fi := range a.Files() {
		if fi.Generation == gen {
			files = append(files, fi)
		}
	}
	for i := len(files) - 1; i >= 0; i-- {
		if from.ContainsPosition(files[i].StartPosition) {
			return files[i:], nil
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: generation %d of the archive has no file", understudy.ErrGap, gen)
	}
	return nil, fmt.Errorf("%w: the archive starts at %s, after the snapshot's position %s", understudy.ErrGap, files[0].StartPosition, from)
}

// plan walks the index of files (see replayFiles) from the snapshot's
// position to the stop point: the position the target will end at, the
// number of transactions to replay and the server_ids they carry.
func plan(a *archive.Archive, files []archive.FileInfo, from understudy.Position, stop understudy.StopPoint) (understudy.Position, int64, map[uint32]bool, error) {
	end := files[len(files)-1].EndPosition
	if !stop.UntilGTID.IsZero() && !end.ContainsPosition(stop.UntilGTID) {
		return from, 0, nil, fmt.Errorf("the point %s is beyond the archive, which ends at %s", stop.UntilGTID, end)
	}
	walk, n, ids := archive.NewWalker(stop, from), int64(0), map[uint32]bool{}
	for _, fi := range files {
		recs, err := a.Records(fi)
		if err != nil {
			return from, 0, nil, err
		}
		for _, r := range recs {
			if from.Contains(r.GTID) {
				continue
			}
			switch walk.Next(r.GTID, r.Time) {
			case archive.Stop:
				return walk.Reached(), n, ids, nil
			case archive.Apply:
				ids[r.GTID.ServerID] = true
				n++
			}
			if walk.Done() {
				return walk.Reached(), n, ids, nil
			}
		}
	}
	reached := walk.Reached()
	if !stop.BeforeGTID.IsZero() {
		return from, 0, nil, fmt.Errorf("GTID %s is not in the archive after the snapshot's position %s (the archive ends at %s)", stop.BeforeGTID, from, end)
	}
	return reached, n, ids, nil
}

// wildDoTables is the replicate_wild_do_table value that applies every
// change to the databases dbs and nothing else: a pattern `db.%` per
// database, with the wildcards of its name escaped. MariaDB matches it
// against the database of each table a statement or row event changes
// (not against the default database, as replicate_do_db does), and
// against the database CREATE, ALTER and DROP DATABASE name.
func wildDoTables(dbs []string) (string, error) {
	var pats []string
	for _, d := range dbs {
		if strings.Contains(d, ",") {
			return "", fmt.Errorf("--databases: database %q has a comma in its name, which the target's replication filter (replicate_wild_do_table, a comma-separated list) cannot name", d)
		}
		pats = append(pats, strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(d)+".%")
	}
	return strings.Join(pats, ","), nil
}

// loadState reads the state of an interrupted restore into the same
// target: the same snapshot, stop point, databases dbs and accounts, or
// none.
func loadState(o Options, snap string, dbs []string) (state, string) {
	name := strings.NewReplacer(":", "_", "/", "_").Replace(o.TargetAddr) + ".json"
	path := filepath.Join(o.ArchiveDir, "restores", name)
	var st state
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &st) != nil || st.Snapshot != snap || st.Stop != o.Stop.String() ||
		!slices.Equal(st.Databases, dbs) || st.Users != o.Users {
		return state{}, path
	}
	return st, path
}

func saveState(path string, st state) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	return archive.WriteFileAtomic(path, b)
}

// replay makes the target a replica of an in-process binlog server held at
// the stop point, waits until it reaches end, then removes the connection.
func replay(ctx context.Context, o Options, from, end understudy.Position, txs int64, serverID uint32, dbs []string) error {
	t := o.Target
	exec := func(q string) error {
		if _, err := t.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("target %s: %s: %w", o.TargetAddr, q, err)
		}
		return nil
	}
	t.ExecContext(ctx, "STOP SLAVE '"+ConnName+"'")
	t.ExecContext(ctx, "RESET SLAVE '"+ConnName+"' ALL")
	// The replay starts at the target's gtid_slave_pos: the snapshot's
	// position after a load (set by Run before the state said so), or
	// where an interrupted replay got to (checked by Run to lie between
	// the snapshot's position and the end).
	if txs == 0 {
		return nil
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	password := hex.EncodeToString(pw)
	bsID := uint32(4000000001)
	if bsID == serverID {
		bsID++
	}
	// The server is held at the planned end, whatever the point was given
	// as: transactions archived after the plan (understudy run goes on)
	// are not sent, and the target ends exactly where the result says.
	srv, err := binlogserver.New(binlogserver.Config{Source: o.Source, Dir: o.ArchiveDir, User: ConnName, Password: password,
		ServerID: bsID, Stop: understudy.StopPoint{UntilGTID: end}, Logger: o.Log, Databases: o.Databases})
	if err != nil {
		return err
	}
	listen, err := replica.ListenAddr(ctx, o.Listen, o.TargetAddr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s for the target: %w", listen, err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	defer func() { stop(); <-served }()
	host, port, err := replica.AdvertiseAddr(ctx, o.Advertise, o.TargetAddr, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return err
	}
	o.Log.Info("binlog server for the target", "listen", ln.Addr().String(), "master_host", host, "master_port", port)
	var threads int
	t.QueryRowContext(ctx, "SELECT @@slave_parallel_threads").Scan(&threads)
	if threads == 0 && o.Threads > 1 {
		if _, err := t.ExecContext(ctx, "SET GLOBAL slave_parallel_threads = "+strconv.Itoa(o.Threads)); err == nil {
			defer func() {
				if _, err := t.ExecContext(context.Background(), "SET GLOBAL slave_parallel_threads = 0"); err != nil {
					o.Log.Warn("could not set the target's slave_parallel_threads back to 0", "target", o.TargetAddr, "err", err)
				}
			}()
		}
	}
	quote := strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace
	if err := exec(fmt.Sprintf("CHANGE MASTER '%s' TO MASTER_HOST='%s', MASTER_PORT=%s, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
		ConnName, quote(host), port, ConnName, password)); err != nil {
		return err
	}
	defer func() {
		t.ExecContext(context.Background(), "STOP SLAVE '"+ConnName+"'")
		if _, err := t.ExecContext(context.Background(), "RESET SLAVE '"+ConnName+"' ALL"); err != nil {
			o.Log.Warn("could not remove the restore's replication connection from the target; remove it with RESET SLAVE '"+ConnName+"' ALL", "target", o.TargetAddr, "err", err)
		}
	}()
	// The connection's filters outlive RESET SLAVE ALL: both are set, so
	// that none is left from an earlier restore. replicate_do_db would
	// filter by the default database, skipping `CREATE TABLE a.t2` issued
	// while another database is current: the databases are chosen by the
	// database of each change instead (see wildDoTables).
	do := ""
	if len(o.Databases) > 0 {
		if do, err = wildDoTables(dbs); err != nil {
			return err
		}
	}
	if err := exec(fmt.Sprintf("SET GLOBAL %s.replicate_do_db = ''", ConnName)); err != nil {
		return err
	}
	if _, err := t.ExecContext(ctx, fmt.Sprintf("SET GLOBAL %s.replicate_wild_do_table = ?", ConnName), do); err != nil {
		return fmt.Errorf("target %s: SET GLOBAL %s.replicate_wild_do_table = '%s': %w", o.TargetAddr, ConnName, do, err)
	}
	if err := exec("START SLAVE '" + ConnName + "'"); err != nil {
		return err
	}
	started, connected := time.Now(), false
	connectTimeout := o.ConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = 30 * time.Second
	}
	total := int64(0)
	for _, g := range end.GTIDs() {
		if f, ok := from.Domain(g.Domain); ok {
			total += int64(g.Seq - f.Seq)
		} else {
			total += int64(g.Seq)
		}
	}
	for {
		var pos string
		if err := t.QueryRowContext(ctx, "SELECT @@global.gtid_slave_pos").Scan(&pos); err != nil {
			return err
		}
		p, err := understudy.ParsePosition(pos)
		if err != nil {
			return err
		}
		done := int64(0)
		for _, g := range end.GTIDs() {
			h, _ := p.Domain(g.Domain)
			f, _ := from.Domain(g.Domain)
			if h.Seq > f.Seq {
				done += int64(min(h.Seq, g.Seq) - f.Seq)
			}
		}
		o.Progress("replay", done, total)
		if p.ContainsPosition(end) {
			o.Log.Info("replay reached the point", "gtid_position", end.String())
			return nil
		}
		st, ok, err := replica.ConnStatus(ctx, t, ConnName)
		if err != nil {
			return fmt.Errorf("replay on %s stopped: %w", o.TargetAddr, err)
		}
		if !ok {
			return fmt.Errorf("replay on %s stopped: its replication connection %s is gone (RESET SLAVE ALL?)", o.TargetAddr, replica.QuoteName(ConnName))
		}
		if e := st.Failure(); e != "" {
			return fmt.Errorf("replay on %s stopped: %s", o.TargetAddr, e)
		}
		// The target retries a connection that fails for ever: one that
		// never reached the binlog server (a firewall, a NAT, an address
		// the target cannot route to) ends the restore.
		connected = connected || st["Slave_IO_Running"] == "Yes"
		if e := st["Last_IO_Error"]; !connected && e != "" && time.Since(started) > connectTimeout {
			return fmt.Errorf("the target %s did not connect to understudy's binlog server at %s within %s: %s (the target must reach that address: give --listen and --advertise, see docs/restore.md)",
				o.TargetAddr, net.JoinHostPort(host, port), connectTimeout, e)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
