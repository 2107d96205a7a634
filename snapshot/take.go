package snapshot

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
)

// Options configures Take.
type Options struct {
	// Source names the source the snapshot belongs to.
	Source string
	// DB reads the data: the primary, or a replica of it.
	DB          *sql.DB
	From        string // host:port of DB, for the manifest
	FromReplica bool
	// Domains restricts a replica's gtid_slave_pos to the source's GTID
	// domains; required with FromReplica.
	Domains []uint32
	// SourceAddrs are the host:port addresses a replica may replicate the
	// source from (the primary, its binlog server): they pick the
	// replica's connections that checkReplica checks.
	SourceAddrs []string
	// MaxLag is how far behind its primary a replica may be
	// (Seconds_Behind_Master); 0 means DefaultMaxLag.
	MaxLag time.Duration
	// Root is the source's snapshots directory.
	Root      string
	Threads   int   // default 4
	ChunkRows int64 // default 200000
	// Users also saves accounts, roles and grants (see dumpUsers).
	Users bool
	// LockWait is how long Take waits for another snapshot of the source
	// to finish before it refuses with ErrInProgress: default 10 minutes,
	// negative not at all.
	LockWait time.Duration
	Log      *slog.Logger
	// Progress, if set, is called as chunks complete.
	Progress func(Progress)

	// beforeBackupStage, if set, runs just before BACKUP STAGE START,
	// afterBackupStage just after BACKUP STAGE END, and beforeDump before
	// the first row is copied: the tests run DDL there.
	beforeBackupStage, afterBackupStage, beforeDump func()
}

// Progress reports a snapshot's progress.
type Progress struct {
	Tables, TablesDone int
	Chunks, ChunksDone int
	RowsEstimate, Rows int64
	Bytes              int64
}

// UserSchemas is the SQL condition on col, a column naming a database,
// that keeps the user's databases. information_schema and
// performance_schema are names of any case; mysql and sys only in lower
// case: on a server with lower_case_table_names=0, a database MySQL is the
// user's (information_schema's columns compare without case).
func UserSchemas(col string) string {
	return "(" + col + " NOT IN ('information_schema', 'performance_schema') AND BINARY " + col + " NOT IN ('mysql', 'sys'))"
}

// isSystemSchema is UserSchemas's rule, negated, in Go.
func isSystemSchema(name string) bool {
	switch strings.ToLower(name) {
	case "information_schema", "performance_schema":
		return true
	}
	return name == "mysql" || name == "sys"
}

// ErrInProgress is returned by Take while another snapshot of the same
// source is being taken.
var ErrInProgress = errors.New("another snapshot of this source is in progress")

// Take takes a consistent snapshot and returns its manifest. One snapshot
// of a source is taken at a time: Take holds an exclusive flock on the
// source's snapshots directory (o.Root itself) while it runs. While
// another holds it, Take waits for it up to o.LockWait, then refuses with
// ErrInProgress, naming the snapshot in progress. On any error the
// partial snapshot is removed; a crash leaves a NAME.partial directory
// that List ignores and the next Take removes (its lock died with it).
func Take(ctx context.Context, o Options) (*Manifest, string, error) {
	if o.Threads <= 0 {
		o.Threads = 4
	}
	if o.ChunkRows <= 0 {
		o.ChunkRows = 200000
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Root, 0o700); err != nil {
		return nil, "", fmt.Errorf("snapshot directory: %w", err)
	}
	if o.LockWait == 0 {
		o.LockWait = 10 * time.Minute
	}
	lock, err := lockRoot(ctx, o.Root, o.Source, max(o.LockWait, 0), o.Log)
	if err != nil {
		return nil, "", err
	}
	defer lock.Close()
	started := time.Now().UTC()
	// With the lock held, no other snapshot is being written: every
	// .partial directory is a crashed snapshot's, or a removed one's.
	removePartials(o.Root, o.Log)
	// The ID is the start time; a second snapshot in the same second gets
	// a suffix.
	id := started.Format("20060102T150405Z")
	for n := 1; ; n++ {
		free := true
		for _, name := range []string{id, id + partialSuffix} {
			_, err := os.Lstat(filepath.Join(o.Root, name))
			if err == nil {
				free = false
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, "", fmt.Errorf("snapshot directory: %w", err)
			}
		}
		if free {
			break
		}
		id = fmt.Sprintf("%s-%d", started.Format("20060102T150405Z"), n)
	}
	final := filepath.Join(o.Root, id)
	partial := final + partialSuffix
	if err := os.Mkdir(partial, 0o700); err != nil {
		return nil, "", fmt.Errorf("snapshot directory: %w", err)
	}
	// DDL while the snapshot opens abandons it (see take): it is opened
	// again at once, a few times, as a DDL statement is over in moments.
	var m *Manifest
	for attempt := 1; ; attempt++ {
		m, err = take(ctx, o, partial, id, started)
		if err == nil || !errors.Is(err, ErrDDLDuring) || attempt == ddlAttempts {
			break
		}
		o.Log.Warn("snapshot opened again: DDL ran while it opened", "attempt", attempt+1, "of", ddlAttempts, "error", err)
		if err = resetDir(partial); err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
				continue
			}
		}
		break
	}
	if err != nil {
		os.RemoveAll(partial)
		return nil, "", err
	}
	if err := finish(partial, final, m); err != nil {
		os.RemoveAll(partial)
		return nil, "", err
	}
	return m, final, nil
}

// ddlAttempts is how many times Take opens a snapshot during which DDL
// changed a table before it gives up with ErrDDLDuring.
const ddlAttempts = 5

// resetDir empties a partial snapshot's directory for another attempt.
func resetDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	return nil
}

// lockRoot takes the exclusive flock of a source's snapshots directory.
// While another snapshot holds it, lockRoot waits up to wait, then fails
// with ErrInProgress naming the snapshot that holds it: the newest
// NAME.partial directory, the only one once the holder has removed the
// crashed ones. Locking the directory itself adds no file next to the
// snapshots, and the lock dies with the process that holds it.
func lockRoot(ctx context.Context, root, source string, wait time.Duration, log *slog.Logger) (*os.File, error) {
	f, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("snapshot directory: %w", err)
	}
	deadline := time.Now().Add(wait)
	for n := 0; ; n++ {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking the snapshot directory %s: %w", root, err)
		}
		holder := fmt.Sprintf("a snapshot of source %s", source)
		if partials, _ := filepath.Glob(filepath.Join(root, "*"+partialSuffix)); len(partials) > 0 {
			sort.Strings(partials)
			holder = fmt.Sprintf("snapshot %s of source %s", strings.TrimSuffix(filepath.Base(partials[len(partials)-1]), partialSuffix), source)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			waited := ""
			if wait > 0 {
				waited = " (waited " + wait.String() + ")"
			}
			return nil, inProgressError(fmt.Sprintf("%s is in progress%s: not starting another one at the same time", holder, waited))
		}
		if n == 0 {
			log.Info("waiting for the snapshot in progress to finish", "snapshot", holder, "up_to", wait.String())
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(min(200*time.Millisecond, time.Until(deadline))):
		}
	}
}

// inProgressError is ErrInProgress with the snapshot in progress named.
type inProgressError string

func (e inProgressError) Error() string        { return string(e) }
func (e inProgressError) Is(target error) bool { return target == ErrInProgress }

func removePartials(root string, log *slog.Logger) {
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.IsDir() && strings.HasSuffix(e.Name(), partialSuffix) {
			log.Warn("removing an unfinished snapshot", "dir", filepath.Join(root, e.Name()))
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

type tableInfo struct {
	db      string
	t       Table
	rowsEst int64
	key     chunkKey // the column chunks are cut on; none if empty
	options string   // information_schema.TABLES.CREATE_OPTIONS
	// shape is every column's and index's definition as
	// information_schema gives it, to find DDL (see changedTables).
	shape []string
}

type job struct {
	db    string
	table *Table
	chunk *Chunk
	// row is a sequence's state, read while commits were blocked; the
	// chunk holds it instead of a query's rows.
	row []sql.RawBytes
}

func take(ctx context.Context, o Options, dir, id string, started time.Time) (*Manifest, error) {
	m := &Manifest{Version: 1, ID: id, Source: o.Source, From: o.From, FromReplica: o.FromReplica, Started: started,
		Threads: o.Threads, Compression: "zstd", Checksum: ChecksumName, Files: map[string]string{}}
	main, err := o.DB.Conn(ctx)
	if err != nil {
		return nil, explain(err)
	}
	defer CloseSession(main)
	if err := SetupSession(ctx, main); err != nil {
		return nil, err
	}
	if err := main.QueryRowContext(ctx, "SELECT @@version").Scan(&m.ServerVersion); err != nil {
		return nil, explain(err)
	}
	if err := checkGrants(ctx, main, o.FromReplica); err != nil {
		return nil, err
	}
	if o.FromReplica {
		if err := checkReplica(ctx, main, o); err != nil {
			return nil, err
		}
	}
	// Open the workers' connections and set them up before blocking commits.
	workers := make([]*sql.Conn, o.Threads)
	for i := range workers {
		c, err := o.DB.Conn(ctx)
		if err != nil {
			return nil, explain(err)
		}
		defer CloseSession(c)
		if err := SetupSession(ctx, c, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
			return nil, err
		}
		workers[i] = c
	}
	// Block commits only while the workers open their snapshots and the
	// position is read.
	if _, err := main.ExecContext(ctx, "SET SESSION lock_wait_timeout = 30"); err != nil {
		return nil, explain(err)
	}
	// The schema as it stands just before the snapshot: the chunks use
	// its tables and columns, its sequences' states are read while commits
	// are blocked, and it is read again after the definitions
	// (readDefinitions), to find DDL in between.
	pre, err := readSchemaState(ctx, main)
	if err != nil {
		return nil, err
	}
	if o.beforeBackupStage != nil {
		o.beforeBackupStage()
	}
	if _, err := main.ExecContext(ctx, "BACKUP STAGE START"); err != nil {
		return nil, explain(err)
	}
	endStage := func() { main.ExecContext(context.Background(), "BACKUP STAGE END") }
	// The stages before BLOCK_COMMIT, which it would otherwise run itself,
	// go first: FLUSH and BLOCK_DDL (which waits for DDL in progress) do
	// not hold commits, and stay outside the commit block.
	for _, q := range []string{"BACKUP STAGE FLUSH", "BACKUP STAGE BLOCK_DDL"} {
		if _, err := main.ExecContext(ctx, q); err != nil {
			endStage()
			return nil, explain(err)
		}
	}
	// Commits wait from the moment BLOCK_COMMIT asks for its lock: while
	// it waits for the commits in progress to finish, new ones queue
	// behind it. The commit block is timed from before the statement is
	// sent to after BACKUP STAGE END returns.
	blockStart := time.Now()
	if _, err := main.ExecContext(ctx, "BACKUP STAGE BLOCK_COMMIT"); err != nil {
		endStage()
		return nil, explain(err)
	}
	blockWait := time.Since(blockStart)
	for _, c := range workers {
		if _, err := c.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
			endStage()
			return nil, explain(err)
		}
	}
	// The position's time is the later of this host's clock and the
	// server's: commit times come from the server's clock, and a host
	// clock behind it would date the snapshot before commits it holds (a
	// restore --until-time would then pick it for a point before them).
	var pos string
	var serverMicros int64
	q := "SELECT @@global.gtid_binlog_pos, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
	if o.FromReplica {
		q = "SELECT @@global.gtid_slave_pos, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
	}
	err = main.QueryRowContext(ctx, q).Scan(&pos, &serverMicros)
	m.PositionTime = time.Now().UTC()
	if st := time.UnixMicro(serverMicros).UTC(); st.After(m.PositionTime) {
		m.PositionTime = st
	}
	var sequences map[[2]string][]sql.RawBytes
	if err == nil {
		sequences, err = readSequences(ctx, main, pre.tables)
		err = ddlError(err)
	}
	if _, eerr := main.ExecContext(ctx, "BACKUP STAGE END"); err == nil {
		err = eerr
	}
	m.CommitBlockMillis = float64(time.Since(blockStart).Microseconds()) / 1000
	if err != nil {
		return nil, explain(err)
	}
	p, err := understudy.ParsePosition(pos)
	if err != nil {
		return nil, err
	}
	if o.FromReplica {
		m.ReplicaGTIDSlavePos = pos
		var keep []understudy.GTID
		for _, d := range o.Domains {
			if g, ok := p.Domain(d); ok {
				keep = append(keep, g)
			}
		}
		p = understudy.NewPosition(keep...)
	}
	m.Position = p
	o.Log.Info("snapshot opened", "gtid_position", p.String(), "commit_block_ms", m.CommitBlockMillis,
		"block_commit_wait_ms", float64(blockWait.Microseconds())/1000)

	// The definitions are read now, in the open snapshot, from the live
	// server, and the schema's state is read again after them: it must be
	// the state read just before the snapshot (pre), whose tables and
	// columns the chunks use. A table, column, index or other object
	// created, dropped or changed in between may have changed before the
	// snapshot's position or after it: the chunks would miss a column
	// added and filled just before it (earlier versions lost its values
	// with the checksums agreeing), or the definitions would be newer than
	// the position (a restore's replay fails on that DDL). Then the
	// snapshot is abandoned with ErrDDLDuring, and Take opens it again.
	// Reading the definitions while DDL is blocked, between BLOCK_DDL and
	// BLOCK_COMMIT, would avoid the window, but a DDL statement waiting for
	// the backup lock can hold the metadata lock of the table that SHOW
	// CREATE TABLE then waits for: a deadlock the server cannot see, which
	// hung a snapshot under a DDL workload.
	if o.afterBackupStage != nil {
		o.afterBackupStage()
	}
	tables, sy, err := readDefinitions(ctx, o, m, main, workers, dir, pre)
	if err != nil {
		return nil, err
	}
	defer sy.wait()

	if o.Users {
		if err := dumpUsers(ctx, workers[0], sy, dir, m, o.Log); err != nil {
			return nil, err
		}
	}
	// Chunks are planned in the snapshot, on any worker: their snapshots
	// are the same.
	plans := make([][]string, len(tables))
	err = onWorkers(ctx, workers, len(tables), func(ctx context.Context, w, i int) error {
		ti := tables[i]
		if ti.definitionOnly() {
			return nil // no chunk: Load creates it with the chunkless tables
		}
		var err error
		if plans[i], err = planChunks(ctx, workers[w], ti, o.ChunkRows); err != nil {
			return fmt.Errorf("%s.%s: %w", ti.db, ti.t.Name, explain(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var jobs []job
	var rowsEst int64
	for i, ti := range tables {
		db := findDB(m, ti.db)
		t := ti.t
		t.Schema = ti.schemaFile()
		chunks := plans[i]
		if len(chunks) > 1 && ti.key.index != "PRIMARY" {
			t.ChunkIndex = ti.key.index
		}
		for i, where := range chunks {
			t.Chunks = append(t.Chunks, Chunk{File: tableFile(ti.db, ti.t.Name, fmt.Sprintf(".%05d.tsv.zst", i)), Where: where})
		}
		db.Tables = append(db.Tables, t)
		rowsEst += ti.rowsEst
	}
	for i := range m.Databases {
		d := &m.Databases[i]
		for j := range d.Tables {
			for k := range d.Tables[j].Chunks {
				jobs = append(jobs, job{db: d.Name, table: &d.Tables[j], chunk: &d.Tables[j].Chunks[k], row: sequences[[2]string{d.Name, d.Tables[j].Name}]})
			}
		}
	}
	// Biggest tables first keeps the workers busy to the end.
	est := map[string]int64{}
	for _, ti := range tables {
		est[ti.db+"."+ti.t.Name] = ti.rowsEst / int64(max(1, len(findTable(m, ti.db, ti.t.Name).Chunks)))
	}
	sort.SliceStable(jobs, func(i, j int) bool {
		return est[jobs[i].db+"."+jobs[i].table.Name] > est[jobs[j].db+"."+jobs[j].table.Name]
	})

	prog := &progress{p: Progress{Chunks: len(jobs), RowsEstimate: rowsEst}, fn: o.Progress, left: map[*Table]int{}}
	for _, j := range jobs {
		prog.left[j.table]++
	}
	prog.p.Tables = len(prog.left) // the tables with rows to copy
	// One compressor and one pipe per worker, for all its chunks.
	encoders := make([]*compressor, len(workers))
	pipes := make([]*chunkPipe, len(workers))
	for w := range encoders {
		zw, err := newCompressor()
		if err != nil {
			return nil, err
		}
		encoders[w], pipes[w] = zw, newChunkPipe()
	}
	var sumsMu sync.Mutex
	if o.beforeDump != nil {
		o.beforeDump()
	}
	err = onWorkers(ctx, workers, len(jobs), func(ctx context.Context, w, i int) error {
		j := jobs[i]
		sum, err := dumpChunk(ctx, workers[w], encoders[w], pipes[w], sy, dir, j)
		if err != nil {
			return fmt.Errorf("%s.%s (%s): %w", j.db, j.table.Name, j.chunk.File, explain(ddlDuringDump(err)))
		}
		sumsMu.Lock()
		m.Files[j.chunk.File] = sum
		sumsMu.Unlock()
		prog.done(j)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range workers {
		c.ExecContext(ctx, "COMMIT")
	}
	t0 := time.Now()
	if err := sy.wait(); err != nil {
		return nil, err
	}
	o.Log.Debug("snapshot files durable", "fsynced", sy.synced, "batch_synced", sy.batched, "wait", time.Since(t0))
	m.Finished = time.Now().UTC()
	return m, nil
}

// ErrDDLDuring is the error of a snapshot during which DDL changed a table
// (see take): it is not damaged, only to be taken again.
var ErrDDLDuring = errors.New("snapshot abandoned")

// changedTables names the tables that are in only one of the lists, or
// whose definitions (engine, options, kind, every column and index) differ.
func changedTables(before, after []tableInfo) []string {
	def := func(ti tableInfo) string {
		return strings.Join([]string{ti.t.Engine, ti.t.Kind, ti.options, strings.Join(ti.shape, "\x00")}, "\x01")
	}
	was := map[[2]string]string{}
	for _, ti := range before {
		was[[2]string{ti.db, ti.t.Name}] = def(ti)
	}
	var out []string
	for _, ti := range after {
		k := [2]string{ti.db, ti.t.Name}
		if d, ok := was[k]; !ok || d != def(ti) {
			out = append(out, ti.db+"."+ti.t.Name)
		}
		delete(was, k)
	}
	for k := range was {
		out = append(out, k[0]+"."+k[1])
	}
	sort.Strings(out)
	return out
}

// readDefinitions writes the schemas of the databases, their objects and
// pre's tables, in the open snapshot, the tables' on every worker at once
// (a thousand small tables cost a query and a file each). The schema's
// state read afterwards must be pre's, read before the snapshot opened:
// otherwise DDL ran meanwhile, and ErrDDLDuring says so (see take). The files go to the syncer
// it returns, which makes them durable before the manifest is written.
func readDefinitions(ctx context.Context, o Options, m *Manifest, main *sql.Conn, workers []*sql.Conn, dir string, pre schemaState) ([]tableInfo, *syncer, error) {
	// The tables as listed before the snapshot; the state read after the
	// definitions must be the same, so they were the same while the
	// definitions were read too.
	tables := pre.tables
	for _, ti := range tables {
		switch {
		case ti.definitionOnly():
			m.DefinitionOnly = append(m.DefinitionOnly, ti.db+"."+ti.t.Name+" ("+ti.t.Engine+")")
		case !strings.EqualFold(ti.t.Engine, "InnoDB"):
			m.NonTransactional = append(m.NonTransactional, ti.db+"."+ti.t.Name+" ("+ti.t.Engine+")")
		}
	}
	if len(m.NonTransactional) > 0 {
		o.Log.Warn("tables outside the consistent snapshot (not InnoDB): they are copied as they are while read", "tables", m.NonTransactional)
	}
	if len(m.DefinitionOnly) > 0 {
		o.Log.Warn("tables saved without their rows: their engine keeps the data elsewhere (another server, the tables under a MERGE table, a file), and a restore would write it there a second time", "tables", m.DefinitionOnly)
	}
	var noHistory []string
	for _, ti := range tables {
		if ti.t.Kind == KindVersionedTrx {
			noHistory = append(noHistory, ti.db+"."+ti.t.Name)
		}
	}
	if len(noHistory) > 0 {
		o.Log.Warn("system-versioned tables with transaction-precise history: only their current rows are saved (their history names this server's transaction IDs)", "tables", noHistory)
	}

	sy := newSyncer(dir)
	if err := dumpDatabases(ctx, workers[0], sy, dir, m, tables); err != nil {
		sy.wait()
		return nil, nil, ddlError(err)
	}
	sums := make([]string, len(tables))
	err := onWorkers(ctx, workers, len(tables), func(ctx context.Context, w, i int) error {
		var err error
		sums[i], err = dumpTableSchema(ctx, workers[w], sy, dir, tables[i])
		return err
	})
	if err == nil {
		// The definitions were read from the live server: nothing may
		// have changed while they were.
		var final schemaState
		if final, err = readSchemaState(ctx, main); err == nil {
			err = pre.changed(final)
		}
	}
	if err != nil {
		sy.wait()
		return nil, nil, ddlError(err)
	}
	for i, ti := range tables {
		m.Files[ti.schemaFile()] = sums[i]
	}
	return tables, sy, nil
}

// schemaState is what a snapshot compares before it opens and after it
// reads the definitions, to find DDL in between: the tables with every
// column and index, and the other objects.
type schemaState struct {
	tables  []tableInfo
	objects map[string]string // "kind db.name" → its definition's fingerprint
}

func readSchemaState(ctx context.Context, c *sql.Conn) (schemaState, error) {
	tables, err := listTables(ctx, c)
	if err != nil {
		return schemaState{}, err
	}
	objects := map[string]string{}
	err = queryRows(ctx, c, `SELECT CONCAT('database ', SCHEMA_NAME), CONCAT_WS(' ', DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME)
		FROM information_schema.SCHEMATA WHERE `+UserSchemas("SCHEMA_NAME")+`
		UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_SCHEMA, '.', ROUTINE_NAME), CONCAT_WS(' ', LAST_ALTERED, MD5(ROUTINE_DEFINITION))
		FROM information_schema.ROUTINES WHERE `+UserSchemas("ROUTINE_SCHEMA")+`
		UNION ALL SELECT CONCAT('event ', EVENT_SCHEMA, '.', EVENT_NAME), CONCAT_WS(' ', LAST_ALTERED, STATUS, MD5(EVENT_DEFINITION))
		FROM information_schema.EVENTS WHERE `+UserSchemas("EVENT_SCHEMA")+`
		UNION ALL SELECT CONCAT('trigger ', TRIGGER_SCHEMA, '.', TRIGGER_NAME), CONCAT_WS(' ', EVENT_OBJECT_TABLE, CREATED, MD5(ACTION_STATEMENT))
		FROM information_schema.TRIGGERS WHERE `+UserSchemas("TRIGGER_SCHEMA")+`
		UNION ALL SELECT CONCAT('view ', TABLE_SCHEMA, '.', TABLE_NAME), MD5(VIEW_DEFINITION)
		FROM information_schema.VIEWS WHERE `+UserSchemas("TABLE_SCHEMA")+`
		UNION ALL SELECT CONCAT('constraint ', CONSTRAINT_SCHEMA, '.', TABLE_NAME, '.', CONSTRAINT_NAME), CONSTRAINT_TYPE
		FROM information_schema.TABLE_CONSTRAINTS WHERE `+UserSchemas("CONSTRAINT_SCHEMA"), func(rows *sql.Rows) error {
		var k string
		var v sql.NullString
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		objects[k] = v.String
		return nil
	})
	return schemaState{tables, objects}, err
}

// changed returns ErrDDLDuring, naming what changed, if the two states
// differ.
func (s schemaState) changed(later schemaState) error {
	changed := changedTables(s.tables, later.tables)
	for k, v := range s.objects {
		if w, ok := later.objects[k]; !ok || w != v {
			changed = append(changed, k)
		}
	}
	for k := range later.objects {
		if _, ok := s.objects[k]; !ok {
			changed = append(changed, k)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	sort.Strings(changed)
	return fmt.Errorf("%w: DDL while the snapshot opened changed %s: its definitions may not be those of its position; take the snapshot again", ErrDDLDuring, strings.Join(changed, ", "))
}

// ddlError makes a table or database that vanished while the snapshot
// opened (1146, 1049) an ErrDDLDuring: it is taken again.
func ddlError(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == 1146 || me.Number == 1049) {
		return fmt.Errorf("%w: DDL while the snapshot opened: %v; take the snapshot again", ErrDDLDuring, err)
	}
	return err
}

// ddlDuringDump makes the error of a chunk's dump that DDL on its table
// caused an ErrDDLDuring, so that the snapshot is taken again: the table
// was dropped or renamed (1146), or changed after the snapshot's read view
// opened, which InnoDB cannot read it through (1412: TRUNCATE, ALTER).
func ddlDuringDump(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == 1146 || me.Number == 1412) {
		return fmt.Errorf("%w: DDL on the table while its rows were copied: %v; take the snapshot again", ErrDDLDuring, err)
	}
	return err
}

// onWorkers calls fn for every i below n, in order of i, on the workers'
// connections (w is the worker's index), one call per worker at a time.
// The first error stops the others and is returned.
func onWorkers(ctx context.Context, workers []*sql.Conn, n int, fn func(ctx context.Context, w, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, w, i); err != nil {
					once.Do(func() { first = err })
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func findDB(m *Manifest, name string) *Database {
	for i := range m.Databases {
		if m.Databases[i].Name == name {
			return &m.Databases[i]
		}
	}
	panic("database " + name + " not in manifest")
}

func findTable(m *Manifest, db, name string) *Table {
	d := findDB(m, db)
	for i := range d.Tables {
		if d.Tables[i].Name == name {
			return &d.Tables[i]
		}
	}
	panic("table not in manifest")
}

type progress struct {
	mu   sync.Mutex
	p    Progress
	fn   func(Progress)
	left map[*Table]int
}

// done records a finished chunk and reports whether it was its table's
// last.
func (p *progress) done(j job) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.ChunksDone++
	p.p.Rows += j.chunk.Rows
	p.p.Bytes += j.chunk.Compressed
	p.left[j.table]--
	if p.left[j.table] == 0 {
		p.p.TablesDone++
	}
	if p.fn != nil {
		p.fn(p.p)
	}
	return p.left[j.table] == 0
}

// readSequences reads the state of every sequence. It runs while commits
// are blocked: a NEXTVAL that takes a new range of values commits its
// sequence's new state (and logs it), so it waits, and the state read is
// the state at the snapshot's position. InnoDB does not version a
// sequence's row: read in the workers' snapshots, it would be its state
// at the time of reading. A few sequences are read per query.
func readSequences(ctx context.Context, c *sql.Conn, tables []tableInfo) (map[[2]string][]sql.RawBytes, error) {
	var seqs []*tableInfo
	for i := range tables {
		if tables[i].t.Kind == KindSequence {
			seqs = append(seqs, &tables[i])
		}
	}
	out := map[[2]string][]sql.RawBytes{}
	const batch = 100
	for len(seqs) > 0 {
		n := min(batch, len(seqs))
		var parts []string
		for i, ti := range seqs[:n] {
			parts = append(parts, fmt.Sprintf("SELECT %d, %s FROM %s", i, strings.Join(ti.t.selects, ", "), qualified(ti.db, ti.t.Name)))
		}
		err := queryRows(ctx, c, strings.Join(parts, " UNION ALL "), func(rows *sql.Rows) error {
			var i int
			ti := seqs[0]
			vals := make([]sql.RawBytes, len(ti.t.Columns))
			dest := []any{&i}
			for k := range vals {
				dest = append(dest, &vals[k])
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			if i < 0 || i >= n {
				return fmt.Errorf("reading sequences: row %d of %d", i, n)
			}
			row := make([]sql.RawBytes, len(vals))
			for k, v := range vals {
				row[k] = append(sql.RawBytes{}, v...) // RawBytes point into the driver's buffer
			}
			out[[2]string{seqs[i].db, seqs[i].t.Name}] = row
			return nil
		})
		if err != nil {
			return nil, err
		}
		seqs = seqs[n:]
	}
	return out, nil
}

// checkGrants names every missing global privilege a snapshot needs; from
// a replica, also SLAVE MONITOR (or SUPER) for SHOW ALL SLAVES STATUS.
func checkGrants(ctx context.Context, c *sql.Conn, replica bool) error {
	rows, err := c.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return explain(err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return err
		}
		g = strings.ToUpper(g)
		on := strings.Index(g, " ON *.* ")
		if on < 0 || !strings.HasPrefix(g, "GRANT ") {
			continue
		}
		for _, p := range strings.Split(g[len("GRANT "):on], ",") {
			have[strings.TrimSpace(p)] = true
		}
	}
	if have["ALL PRIVILEGES"] {
		return nil
	}
	var missing []string
	for _, p := range []string{"SELECT", "RELOAD", "SHOW VIEW", "TRIGGER", "EVENT"} {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	if replica && !have["SLAVE MONITOR"] && !have["SUPER"] {
		missing = append(missing, "SLAVE MONITOR")
	}
	if len(missing) > 0 {
		return fmt.Errorf("the snapshot user lacks %s: run GRANT %s ON *.* TO '<user>'@'<understudy host>'", strings.Join(missing, ", "), strings.Join(missing, ", "))
	}
	return nil
}

// dumpChunk streams a chunk's rows into a zstd-compressed TSV file that
// LOAD DATA reads with its defaults, and returns the file's sha256.
func dumpChunk(ctx context.Context, c *sql.Conn, zw *compressor, pipe *chunkPipe, sy *syncer, dir string, j job) (string, error) {
	path := filepath.Join(dir, j.chunk.File)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	handed := false // to the syncer, which closes it
	defer func() {
		if !handed {
			f.Close()
		}
	}()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	zw.Reset(cw)
	// Rows are read, checksummed and escaped here; a second goroutine
	// compresses and writes, so that the two overlap where cores are free.
	buf := pipe.start(zw)
	defer func() { pipe.finish(buf) }() // buf is nil once handed over
	cols := j.table.Columns
	q := fmt.Sprintf("SELECT %s FROM %s", strings.Join(j.table.selects, ", "), j.table.from(j.db, j.chunk.Where))
	if j.chunk.Where != "" {
		q += " WHERE " + j.chunk.Where
	}
	// The chunk checksum is computed from the rows as they are read, in
	// the snapshot transaction. The driver's rows are read directly: its
	// values point into its read buffer, with no copy or conversion.
	var hr chunkHasher
	var raw int64
	if j.row != nil {
		vals := make([][]byte, len(j.row))
		for i, v := range j.row {
			vals[i] = v
		}
		hr.add(vals)
		for i, v := range vals {
			if i > 0 {
				buf = append(buf, '\t')
			}
			buf = appendEscaped(buf, v)
			raw += int64(len(v))
		}
		buf = append(buf, '\n')
	}
	err = c.Raw(func(dc any) error {
		if j.row != nil {
			return nil
		}
		rows, err := dc.(driver.QueryerContext).QueryContext(ctx, q, nil)
		if err != nil {
			return err
		}
		defer rows.Close()
		dest := make([]driver.Value, len(cols))
		vals := make([][]byte, len(cols))
		for {
			if err := rows.Next(dest); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
			for i, v := range dest {
				switch v := v.(type) {
				case nil:
					vals[i] = nil
				case []byte:
					vals[i] = v
				default: // every column is selected as bytes (dumpExpr)
					return fmt.Errorf("column %s: unexpected %T from the driver", cols[i], v)
				}
			}
			hr.add(vals)
			for i, v := range vals {
				if i > 0 {
					buf = append(buf, '\t')
				}
				if v == nil {
					buf = append(buf, '\\', 'N')
					continue
				}
				buf = appendEscaped(buf, v)
				raw += int64(len(v))
			}
			buf = append(buf, '\n')
			if len(buf) >= pipeBlock {
				if buf, err = pipe.send(buf); err != nil {
					return err
				}
			}
		}
	})
	if err != nil {
		return "", err
	}
	last := buf
	buf = nil
	if err := pipe.finish(last); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	j.chunk.Bytes, j.chunk.Compressed = raw, cw.n
	j.chunk.Rows, j.chunk.Checksum = hr.rows, hr.String()
	handed = true
	sy.add(f, cw.n)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// pipeBlock is how much escaped text the reader hands over at a time;
// pipeBuffers of them are in flight, so a thread holds about
// pipeBuffers × pipeBlock of text, plus a row bigger than that while it
// passes through.
const (
	pipeBlock   = 256 << 10
	pipeBuffers = 3
)

// chunkPipe hands the reader's filled buffers to a goroutine that writes
// them to the compressor, and hands them back empty. A worker keeps one
// for all its chunks: its buffers are allocated once, not once per chunk
// (a thousand small tables would zero a gigabyte).
type chunkPipe struct {
	free    chan []byte // pipeBuffers buffers, all of them while no chunk runs
	full    chan []byte
	done    chan struct{}
	running bool
	failed  atomic.Bool
	err     error // set by the writing goroutine, read after done
}

func newChunkPipe() *chunkPipe {
	p := &chunkPipe{free: make(chan []byte, pipeBuffers)}
	for range pipeBuffers {
		p.free <- make([]byte, 0, pipeBlock+pipeBlock/2)
	}
	return p
}

// start starts a chunk's writing goroutine, writing to w, and returns the
// reader's first buffer.
func (p *chunkPipe) start(w io.Writer) []byte {
	p.full, p.done, p.err, p.running = make(chan []byte, pipeBuffers), make(chan struct{}), nil, true
	p.failed.Store(false)
	go func() {
		defer close(p.done)
		for b := range p.full {
			if p.err == nil {
				if _, err := w.Write(b); err != nil {
					p.err = err
					p.failed.Store(true)
				}
			}
			if cap(b) > 4*pipeBlock {
				// It held a huge row: keep the thread's memory to one
				// such row at a time, not one per buffer.
				b = make([]byte, 0, pipeBlock+pipeBlock/2)
			}
			p.free <- b[:0]
		}
	}()
	return <-p.free
}

// send hands b over and returns an empty buffer. Once a write has failed
// it returns b and that write's error.
func (p *chunkPipe) send(b []byte) ([]byte, error) {
	if p.failed.Load() {
		return b[:0], p.finish(nil)
	}
	p.full <- b
	return <-p.free, nil
}

// finish hands over the reader's last buffer b (nil if it gave it back
// already), lets the goroutine write everything, stops it and returns the
// first write error. Every buffer is back when it returns. It may be
// called more than once; a chunk that fails calls it with its buffer to
// give it back unwritten.
func (p *chunkPipe) finish(b []byte) error {
	if b != nil {
		if p.running && !p.failed.Load() {
			p.full <- b
		} else {
			p.free <- b[:0]
		}
	}
	if p.running {
		p.running = false
		close(p.full)
		<-p.done
	}
	return p.err
}

// appendEscaped appends v escaped for LOAD DATA's defaults (ESCAPED BY
// '\\'): backslash, tab, newline, carriage return, NUL and Ctrl-Z. It
// skips eight bytes at a time while none of them needs escaping: all but
// the backslash are below 0x20.
func appendEscaped(dst, v []byte) []byte {
	const lo, hi, bs = 0x0101010101010101, 0x8080808080808080, 0x5c5c5c5c5c5c5c5c
	start, i := 0, 0
	for {
		for ; i+8 <= len(v); i += 8 {
			x := binary.LittleEndian.Uint64(v[i:])
			y := x ^ bs
			if ((x-0x20*lo)&^x|(y-lo)&^y)&hi != 0 {
				break
			}
		}
		end := min(i+8, len(v))
		for ; i < end; i++ {
			var esc byte
			switch v[i] {
			case '\\':
				esc = '\\'
			case '\t':
				esc = 't'
			case '\n':
				esc = 'n'
			case '\r':
				esc = 'r'
			case 0:
				esc = '0'
			case 0x1a:
				esc = 'Z'
			default:
				continue
			}
			dst = append(dst, v[start:i]...)
			dst = append(dst, '\\', esc)
			start = i + 1
		}
		if i >= len(v) {
			return append(dst, v[start:]...)
		}
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeFile writes a small file of the snapshot, hands it to the syncer
// and returns its sha256 for the manifest.
func writeFile(sy *syncer, dir, rel, content string, perm os.FileMode) (string, error) {
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return "", err
	}
	sy.add(f, int64(len(content)))
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:]), nil
}

// syncer makes a snapshot's files durable without holding up the
// workers. A file of batchMin bytes or more is fsynced and closed in the
// background as soon as it is written. Smaller ones (a thousand small
// tables make two thousand), where the filesystem allows it
// (archive.OpenBatchSync), are closed at once and made durable together by
// one syncfs in wait; elsewhere they are fsynced too. Every file is
// durable when wait returns, before the manifest is written.
type syncer struct {
	files chan *os.File
	done  chan struct{}
	once  sync.Once
	batch *archive.BatchSync // nil: every file is fsynced

	mu      sync.Mutex
	err     error
	batched int // files left to the batch sync
	synced  int // files fsynced
}

// batchMin is the size from which a file is fsynced on its own, in the
// background, rather than left to the batch sync at the end.
const batchMin = 1 << 20

// newSyncer returns a syncer for the files of dir, which must exist and
// must not have any yet.
func newSyncer(dir string) *syncer {
	s := &syncer{files: make(chan *os.File, 256), done: make(chan struct{}), batch: archive.OpenBatchSync(dir)}
	go func() {
		defer close(s.done)
		for f := range s.files {
			err := f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			s.record(f, err, false)
		}
	}()
	return s
}

func (s *syncer) record(f *os.File, err error, batched bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("%s: %w", f.Name(), err)
	}
	if batched {
		s.batched++
	} else {
		s.synced++
	}
}

// add hands over a written file of size bytes, which the syncer closes.
func (s *syncer) add(f *os.File, size int64) {
	if s.batch != nil && size < batchMin {
		s.record(f, f.Close(), true)
		return
	}
	s.files <- f
}

// wait syncs what is left and returns the first error. It may be called
// more than once.
func (s *syncer) wait() error {
	s.once.Do(func() {
		close(s.files)
		<-s.done
		if s.batch == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.batched > 0 && s.err == nil {
			s.err = s.batch.Sync()
		}
		s.batch.Close()
	})
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// finish writes the manifest, syncs the directories and renames the
// snapshot into place.
func finish(partial, final string, m *Manifest) error {
	if err := writeManifest(partial, m); err != nil {
		return err
	}
	if err := filepath.WalkDir(partial, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			return archive.SyncDir(p)
		}
		return err
	}); err != nil {
		return err
	}
	if err := os.Rename(partial, final); err != nil {
		return err
	}
	return archive.SyncDir(filepath.Dir(final))
}

// explain adds the missing GRANT to privilege errors.
func explain(err error) error {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return err
	}
	switch me.Number {
	case 1227, 1044, 1142, 1143:
		grant := "SELECT, SHOW VIEW, TRIGGER, EVENT, RELOAD"
		if strings.Contains(me.Message, "RELOAD") {
			grant = "RELOAD"
		} else if strings.Contains(me.Message, "SLAVE MONITOR") {
			grant = "SLAVE MONITOR"
		}
		return fmt.Errorf("%w (the snapshot user needs: GRANT %s ON *.* TO '<user>'@'<understudy host>')", err, grant)
	case 1045:
		return fmt.Errorf("%w (wrong user or password)", err)
	case 1286:
		return fmt.Errorf("%w (the server lacks this storage engine: install its plugin, e.g. INSTALL SONAME 'ha_federatedx' for FEDERATED, 'ha_spider' for SPIDER, 'ha_connect' for CONNECT)", err)
	}
	return err
}

var _ hash.Hash = sha256.New()
