package snapshot

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/klauspost/compress/zstd"
)

// LoadOptions configures Load.
type LoadOptions struct {
	Threads int // default 4
	// Databases, if set, limits the load to these databases.
	Databases []string
	// Verify has every loaded chunk's checksum recomputed on the target
	// and compared with the manifest, as Verify does, table by table as
	// soon as a table is complete (its last chunk loaded, its secondary
	// indexes built), on the load's connections while other tables load.
	// The first chunk that differs fails the load, named as Verify names
	// it.
	Verify bool
	// Verified, if set, receives the number of chunks verified.
	Verified *int
	// Replica says that the target will replicate the source (a
	// restore's replay, a provisioned replica): the events the source
	// runs are created DISABLE ON SLAVE, as MariaDB creates the events a
	// replica receives, so that they do not run on the target as well.
	// (If they did, with event_scheduler=ON there, their changes would
	// reach the target twice, or break its replication.)
	Replica  bool
	Log      *slog.Logger
	Progress func(Progress)
}

// textOnly are the types whose text form the data files hold but which
// take a binary string as their binary form.
var textOnly = map[string]bool{"uuid": true, "inet4": true, "inet6": true}

// loadSeq makes reader names unique in go-sql-driver's registry, which is
// process-wide.
var loadSeq atomic.Int64

// Load creates the snapshot's databases and tables on db and loads the data
// in parallel with LOAD DATA LOCAL INFILE streamed from the compressed
// chunks, with sql_log_bin=0. Every file's sha256 is checked as it is read.
// A table's secondary indexes are built after its last chunk, and with
// o.Verify its chunks are verified then, while other tables load (see
// schedule). Views, routines, triggers and events are created after the
// data.
func Load(ctx context.Context, db *sql.DB, dir string, m *Manifest, o LoadOptions) error {
	if o.Threads <= 0 {
		o.Threads = 4
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	want := map[string]bool{}
	for _, d := range o.Databases {
		want[d] = true
	}
	var dbs []*Database
	for i := range m.Databases {
		if len(want) == 0 || want[m.Databases[i].Name] {
			dbs = append(dbs, &m.Databases[i])
		}
	}
	objects, err := readAllObjects(dir, m, dbs, o.Replica)
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer CloseSession(conn)
	// Tables are created in any order: a foreign key may name a table
	// created after it. A TIMESTAMP default is written in UTC, as the
	// snapshot read it (sessionSetup).
	if err := SetupSession(ctx, conn, "SET SESSION sql_log_bin = 0", "SET SESSION foreign_key_checks = 0"); err != nil {
		return err
	}
	for _, d := range dbs {
		if err := execFile(ctx, conn, dir, d.Schema, m, ""); err != nil {
			return err
		}
	}
	var jobs []job
	history := false // a system-versioned table's history is loaded
	// The other tables are created by the workers, each just before its
	// first chunk (docs/restore.md, step 2): one CREATE
	// TABLE takes milliseconds (InnoDB creates and syncs its file), and
	// thousands of them one after another took longer than their rows.
	created := map[*Table]bool{}
	// Sequences first, in every database, here: a column's DEFAULT
	// NEXTVAL(s) needs s when its table is created. A table without a
	// chunk (none in snapshots made now) has no job to create it either.
	for _, d := range dbs {
		for j := range d.Tables {
			t := &d.Tables[j]
			if t.Kind != KindSequence && len(t.Chunks) > 0 {
				continue
			}
			// with its indexes: no chunk of it comes to add them
			if _, err := createTable(ctx, conn, dir, t.Schema, m, d.Name, false); err != nil {
				return err
			}
			created[t] = true
		}
	}
	for _, seqs := range []bool{true, false} {
		for _, d := range dbs {
			for j := range d.Tables {
				t := &d.Tables[j]
				if (t.Kind == KindSequence) != seqs {
					continue
				}
				for k := range t.Chunks {
					jobs = append(jobs, job{db: d.Name, table: t, chunk: &t.Chunks[k]})
				}
				history = history || t.Kind == KindVersioned
			}
		}
	}
	// The secondary indexes that createTable left out, per table, added
	// by the worker that loads its last chunk.
	var deferredMu sync.Mutex
	deferred := map[*Table][]string{}
	// Rows are loaded as the source has them: without checking foreign
	// keys or CHECK constraints again (a row may predate its constraint),
	// and with the history of system-versioned tables, ROW START and ROW
	// END included.
	setup := []string{"SET SESSION sql_log_bin = 0", "SET SESSION foreign_key_checks = 0", "SET SESSION unique_checks = 0",
		"SET SESSION check_constraint_checks = 0"}
	if history {
		setup = append(setup, "SET SESSION system_versioning_insert_history = ON")
	}
	prog := &progress{p: Progress{Chunks: len(jobs)}, fn: o.Progress, left: map[*Table]int{}}
	for _, j := range jobs {
		prog.left[j.table]++
		prog.p.RowsEstimate += j.chunk.Rows
	}
	prog.p.Tables = len(prog.left)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := newSchedule(wctx, jobs, o.Verify, created)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		first    error
		verified atomic.Int64
	)
	for w := 0; w < o.Threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := db.Conn(wctx)
			if err == nil {
				defer CloseSession(c)
				err = SetupSession(wctx, c, setup...)
			}
			var zr *zstd.Decoder
			if err == nil {
				if zr, err = newChunkDecoder(); err == nil {
					defer zr.Close()
				}
			}
			for err == nil {
				j, check, ok := s.next()
				if !ok {
					return
				}
				if check {
					t0 := time.Now()
					if err = verifyChunk(wctx, c, m, j.db, j.table, *j.chunk); err == nil {
						verified.Add(1)
						o.Log.Debug("chunk verified", "table", j.db+"."+j.table.Name, "where", j.chunk.Where, "rows", j.chunk.Rows, "took", time.Since(t0))
					}
					continue
				}
				if s.create(j.table) {
					// One loader per table: no other chunk of it is taken
					// until this one is loaded.
					var keys []string
					if keys, err = createTable(wctx, c, dir, j.table.Schema, m, j.db, deferIndexes(j.table)); err != nil {
						s.loaded(j, false)
						continue
					}
					deferredMu.Lock()
					deferred[j.table] = keys
					deferredMu.Unlock()
				}
				t0 := time.Now()
				err = loadChunkRetrying(wctx, c, zr, dir, m, j, o.Log)
				s.loaded(j, err == nil)
				if err != nil || !prog.done(j) {
					o.Log.Debug("chunk loaded", "file", j.chunk.File, "rows", j.chunk.Rows, "took", time.Since(t0))
					continue
				}
				o.Log.Debug("chunk loaded", "file", j.chunk.File, "rows", j.chunk.Rows, "took", time.Since(t0), "table_complete", true)
				deferredMu.Lock()
				keys := deferred[j.table]
				deferredMu.Unlock()
				if len(keys) > 0 {
					// The table's last chunk is in: build its secondary
					// indexes in one pass.
					t0 := time.Now()
					_, err = c.ExecContext(wctx, fmt.Sprintf("ALTER TABLE %s %s", qualified(j.db, j.table.Name), strings.Join(keys, ", ")))
					if err != nil {
						err = fmt.Errorf("adding the secondary indexes of %s.%s: %w", j.db, j.table.Name, err)
						continue
					}
					o.Log.Debug("secondary indexes built", "table", j.db+"."+j.table.Name, "took", time.Since(t0))
				}
				s.complete(j)
			}
			mu.Lock()
			if first == nil {
				first = explain(err)
			}
			mu.Unlock()
			cancel()
		}()
	}
	wg.Wait()
	if o.Verified != nil {
		*o.Verified = int(verified.Load())
	}
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := loadObjects(ctx, conn, objects, o.Log); err != nil {
		return err
	}
	return ctx.Err()
}

// dbObject is an object of a database's objects file, ready to create.
type dbObject struct {
	db, file string
	SchemaObject
}

// readAllObjects reads the objects of dbs, before anything is loaded: a
// damaged objects file, or an event that cannot be made DISABLE ON SLAVE
// (replica), fails the load at its start, not after hours of rows.
func readAllObjects(dir string, m *Manifest, dbs []*Database, replica bool) ([]dbObject, error) {
	var out []dbObject
	for _, d := range dbs {
		if d.Objects == "" {
			continue
		}
		objs, err := readObjects(dir, d.Objects, m)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if replica {
				stmt, name, _, isEvent, ok := eventOnReplica(o.Create)
				if isEvent && !ok {
					return nil, fmt.Errorf("%s: cannot create the event %s.%s DISABLE ON SLAVE: its statement is not as SHOW CREATE EVENT writes it", d.Objects, d.Name, name)
				}
				o.Create = stmt
			}
			out = append(out, dbObject{d.Name, d.Objects, o})
		}
	}
	return out, nil
}

// loadObjects creates the databases' views, routines, packages, triggers
// and events, each in the sql_mode, collation_connection and (events)
// time zone it was created in; objects of snapshots that did not record
// them are created in the target's defaults. A statement that fails is
// tried again after the others, as long as each round creates something:
// a view may name a view (or, in snapshots before routines came first, a
// function) that is created after it, in its own database or another one.
func loadObjects(ctx context.Context, c *sql.Conn, todo []dbObject, log *slog.Logger) error {
	if len(todo) == 0 {
		return nil
	}
	if _, err := c.ExecContext(ctx, "SET NAMES utf8mb4"); err != nil {
		return explain(err)
	}
	var defaults SchemaObject
	err := c.QueryRowContext(ctx, "SELECT @@global.sql_mode, @@session.collation_connection, @@global.time_zone").
		Scan(&defaults.SQLMode, &defaults.CollationConnection, &defaults.TimeZone)
	if err != nil {
		return explain(err)
	}
	for len(todo) > 0 {
		var failed []dbObject
		var first error
		for _, o := range todo {
			set := o.SchemaObject
			if set.CollationConnection == "" {
				set = defaults // a bare statement of an older snapshot
			}
			if set.TimeZone == "" {
				set.TimeZone = defaults.TimeZone
			}
			if _, err := c.ExecContext(ctx, "USE "+quote(o.db)); err != nil {
				return explain(err)
			}
			_, err := c.ExecContext(ctx, "SET SESSION sql_mode = ?, collation_connection = ?, time_zone = ?", set.SQLMode, set.CollationConnection, set.TimeZone)
			var me *mysql.MySQLError
			if errors.As(err, &me) && me.Number == 1298 && set.TimeZone != defaults.TimeZone {
				// A named time zone the target's time zone tables lack:
				// the event is created in the target's, as by earlier
				// versions, rather than failing the restore at its end.
				log.Warn("the target does not know an event's time zone (load its time zone tables with mariadb-tzinfo-to-sql): the event is created in the target's, so its STARTS and ENDS may be off by the zones' difference",
					"file", o.file, "time_zone", set.TimeZone, "target_time_zone", defaults.TimeZone, "event", fmt.Sprintf("%.80s", o.Create))
				_, err = c.ExecContext(ctx, "SET SESSION sql_mode = ?, collation_connection = ?, time_zone = ?", set.SQLMode, set.CollationConnection, defaults.TimeZone)
			}
			if err != nil {
				return fmt.Errorf("%s: the settings of %.60q: %w", o.file, o.Create, explain(err))
			}
			if _, err := c.ExecContext(ctx, o.Create); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if first == nil {
					first = fmt.Errorf("%s: %w", o.file, explain(err))
				}
				failed = append(failed, o)
			}
		}
		if len(failed) == len(todo) {
			return first
		}
		todo = failed
	}
	return nil
}

// readObjects reads a database's objects file: SchemaObjects, bare
// statements (snapshots before the settings were recorded), or statements
// separated by lines "$$" (snapshots before objects.json).
func readObjects(dir, rel string, m *Manifest) ([]SchemaObject, error) {
	if !strings.HasSuffix(rel, ".json") {
		stmts, err := readStatements(dir, rel, m)
		if err != nil {
			return nil, err
		}
		out := make([]SchemaObject, len(stmts))
		for i, s := range stmts {
			out[i].Create = s
		}
		return out, nil
	}
	b, err := readChecked(dir, rel, m)
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	var out []SchemaObject
	for _, r := range raw {
		var o SchemaObject
		if len(r) > 0 && r[0] == '"' {
			err = json.Unmarshal(r, &o.Create)
		} else {
			err = json.Unmarshal(r, &o)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		if o.Create = strings.TrimSpace(o.Create); o.Create == "" {
			return nil, fmt.Errorf("%s: an object without its CREATE statement: the snapshot file is damaged", rel)
		}
		out = append(out, o)
	}
	return out, nil
}

// loadChunkRetrying loads a chunk, again if InnoDB picked its LOAD DATA
// as a deadlock victim or it timed out on a lock: two loaders filling one
// table can deadlock. The statement was rolled back whole (autocommit), so
// loading it again adds nothing twice.
func loadChunkRetrying(ctx context.Context, c *sql.Conn, zr *zstd.Decoder, dir string, m *Manifest, j job, log *slog.Logger) error {
	const attempts = 5
	for n := 1; ; n++ {
		err := loadChunk(ctx, c, zr, dir, m, j)
		var me *mysql.MySQLError
		if n == attempts || !errors.As(err, &me) || (me.Number != 1213 && me.Number != 1205) {
			return err
		}
		log.Warn("loading a chunk again", "file", j.chunk.File, "attempt", n+1, "error", me.Message)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(n) * 100 * time.Millisecond):
		}
	}
}

// newChunkDecoder returns a worker's zstd decoder, which loadChunk resets
// for each chunk: a new decoder per chunk would allocate (and zero) its
// buffers again, which for many small tables costs more than the load.
func newChunkDecoder() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
}

func loadChunk(ctx context.Context, c *sql.Conn, zr *zstd.Decoder, dir string, m *Manifest, j job) error {
	f, err := os.Open(filepath.Join(dir, j.chunk.File))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	tr := io.TeeReader(f, h)
	if err := zr.Reset(tr); err != nil {
		return err
	}
	name := fmt.Sprintf("understudy-%d", loadSeq.Add(1))
	mysql.RegisterReaderHandler(name, func() io.Reader { return zr })
	defer mysql.DeregisterReaderHandler(name)
	cols := make([]string, len(j.table.Columns))
	var sets []string
	for i, col := range j.table.Columns {
		cols[i] = quote(col)
		if i < len(j.table.Types) && textOnly[j.table.Types[i]] {
			// These types read a binary string as their binary form; the
			// data holds their text form.
			v := fmt.Sprintf("@c%d", i)
			cols[i] = v
			sets = append(sets, fmt.Sprintf("%s = CONVERT(%s USING utf8mb4)", quote(col), v))
		}
	}
	q := fmt.Sprintf("LOAD DATA LOCAL INFILE 'Reader::%s' INTO TABLE %s CHARACTER SET binary (%s)", name, qualified(j.db, j.table.Name), strings.Join(cols, ", "))
	if len(sets) > 0 {
		q += " SET " + strings.Join(sets, ", ")
	}
	res, err := c.ExecContext(ctx, q)
	if err != nil {
		return fmt.Errorf("loading %s: %w", j.chunk.File, err)
	}
	// A value the column would not take is only a warning for LOAD DATA:
	// make it an error, nothing may change silently.
	var warnings int
	if err := c.QueryRowContext(ctx, "SELECT @@warning_count").Scan(&warnings); err != nil {
		return err
	}
	if warnings > 0 {
		var level, msg string
		var code int
		c.QueryRowContext(ctx, "SHOW WARNINGS LIMIT 1").Scan(&level, &code, &msg)
		return fmt.Errorf("loading %s: %d warnings, the first: %s %d: %s", j.chunk.File, warnings, level, code, msg)
	}
	io.Copy(io.Discard, tr) // the hash covers the whole file
	if err := checkSum(h, m.Files[j.chunk.File], j.chunk.File); err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != j.chunk.Rows {
		return fmt.Errorf("loading %s: %d rows loaded, the manifest says %d", j.chunk.File, n, j.chunk.Rows)
	}
	return nil
}

func checkSum(h hash.Hash, want, file string) error {
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: sha256 %s, the manifest says %s: the snapshot file is corrupt", file, got, want)
	}
	return nil
}

// execFile runs the statements of a schema file, in database db if set.
func execFile(ctx context.Context, c *sql.Conn, dir, rel string, m *Manifest, db string) error {
	stmts, err := readStatements(dir, rel, m)
	if err != nil {
		return err
	}
	if db != "" {
		if _, err := c.ExecContext(ctx, "USE "+quote(db)); err != nil {
			return explain(err)
		}
	}
	for _, stmt := range stmts {
		if _, err := c.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", rel, explain(err))
		}
	}
	return nil
}

// readStatements reads the statements of a schema or objects file,
// checked against its sha256.
func readStatements(dir, rel string, m *Manifest) ([]string, error) {
	b, err := readChecked(dir, rel, m)
	if err != nil {
		return nil, err
	}
	// Statements separated by lines "$$" (a schema file has one).
	stmts := strings.Split(string(b), "\n$$\n")
	var out []string
	for _, stmt := range stmts {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out, nil
}

// readChecked reads a snapshot file and checks it against its sha256.
func readChecked(dir, rel string, m *Manifest) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != m.Files[rel] {
		return nil, fmt.Errorf("%s: sha256 %s, the manifest says %s: the snapshot file is corrupt", rel, got, m.Files[rel])
	}
	return b, nil
}

// LoadUsers creates the snapshot's accounts and roles that the target does
// not have, with their grants, unlogged, and returns how many it created.
// Accounts the target has are left exactly as they are: their saved GRANT
// lines would reset their passwords. The restoring user, which CREATE ROLE
// makes a member of each new role, is taken out of them again.
func LoadUsers(ctx context.Context, db *sql.DB, dir string, m *Manifest, log *slog.Logger) (int, error) {
	if m.Users == "" {
		return 0, fmt.Errorf("snapshot %s has no accounts: it was taken without snapshot.users", m.ID)
	}
	b, err := readChecked(dir, m.Users, m)
	if err != nil {
		return 0, err
	}
	var accounts []Account
	if err := json.Unmarshal(b, &accounts); err != nil {
		return 0, fmt.Errorf("%s: %w", m.Users, err)
	}
	c, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer CloseSession(c)
	if _, err := c.ExecContext(ctx, "SET SESSION sql_log_bin = 0"); err != nil {
		return 0, explain(err)
	}
	have := map[[2]string]bool{}
	err = queryRows(ctx, c, "SELECT User, IF(is_role = 'Y', '', Host) FROM mysql.user", func(rows *sql.Rows) error {
		var u, h string
		if err := rows.Scan(&u, &h); err != nil {
			return err
		}
		have[[2]string{u, h}] = true
		return nil
	})
	if err != nil {
		return 0, err
	}
	// All or nothing: on an error, the accounts made here are dropped
	// again, so that a rerun makes them whole (it keeps those it finds).
	var fresh []Account
	ok := false
	defer func() {
		if !ok {
			for _, a := range fresh {
				kind := "USER "
				if a.Role {
					kind = "ROLE "
				}
				if _, err := c.ExecContext(context.WithoutCancel(ctx), "DROP "+kind+a.name()); err != nil {
					log.Warn("could not drop a half-restored account", "account", a.name(), "error", explain(err))
				}
			}
		}
	}()
	for _, a := range accounts {
		if have[[2]string{a.User, a.Host}] {
			log.Info("account kept as the target has it", "account", a.name())
			continue
		}
		if _, err := c.ExecContext(ctx, a.Create); err != nil {
			return 0, fmt.Errorf("%s: creating %s: %w", m.Users, a.name(), explain(err))
		}
		fresh = append(fresh, a)
	}
	// Grants after every account and role exists: they name each other.
	for _, a := range fresh {
		for _, g := range a.Grants {
			if _, err := c.ExecContext(ctx, g); err != nil {
				return 0, fmt.Errorf("%s: %s: %w", m.Users, g, explain(err))
			}
		}
	}
	for _, a := range fresh {
		if a.Role {
			if _, err := c.ExecContext(ctx, "REVOKE "+a.name()+" FROM CURRENT_USER"); err != nil {
				log.Warn("the restoring user stays a member of a restored role", "role", a.User, "error", explain(err))
			}
		}
	}
	ok = true
	return len(fresh), nil
}

// Verify recomputes every chunk checksum of the databases dbs (all if
// empty) on db and compares them with the manifest, on threads connections
// at once (at least 1). It returns the number of chunks compared; the
// first chunk that differs ends it with an error naming the chunk.
func Verify(ctx context.Context, db *sql.DB, m *Manifest, dbs []string, threads int) (int, error) {
	want := map[string]bool{}
	for _, d := range dbs {
		want[d] = true
	}
	type job struct {
		db string
		t  *Table
		ch Chunk
	}
	var jobs []job
	for i := range m.Databases {
		d := &m.Databases[i]
		if len(want) > 0 && !want[d.Name] {
			continue
		}
		for j := range d.Tables {
			for _, ch := range d.Tables[j].Chunks {
				jobs = append(jobs, job{d.Name, &d.Tables[j], ch})
			}
		}
	}
	// The biggest chunks first keep every connection busy to the end.
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].ch.Bytes > jobs[j].ch.Bytes })
	if len(jobs) == 0 {
		return 0, ctx.Err()
	}
	conns := make([]*sql.Conn, max(1, min(threads, len(jobs))))

	for i := range conns {
		c, err := db.Conn(ctx)
		if err != nil {
			return 0, err
		}
		defer CloseSession(c)
		if err := SetupSession(ctx, c); err != nil {
			return 0, err
		}
		conns[i] = c
	}
	// The manifest's NOT NULL columns, as far as the target agrees: its
	// tables may not be the ones a load of m created. A column the target
	// does not list as NOT NULL under that name is tested for NULL.
	notNull := map[[3]string]bool{}
	err := queryRows(ctx, conns[0], "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE IS_NULLABLE = 'NO'", func(rows *sql.Rows) error {
		var k [3]string
		if err := rows.Scan(&k[0], &k[1], &k[2]); err != nil {
			return err
		}
		notNull[k] = true
		return nil
	})
	if err != nil {
		return 0, explain(err)
	}
	adjusted := map[*Table]*Table{}
	for i, j := range jobs {
		if adjusted[j.t] == nil {
			t := j.t.notNullWhere(func(col string) bool { return notNull[[3]string{j.db, j.t.Name, col}] })
			adjusted[j.t] = &t
		}
		jobs[i].t = adjusted[j.t]
	}
	var done atomic.Int64
	err = onWorkers(ctx, conns, len(jobs), func(ctx context.Context, w, i int) error {
		j := jobs[i]
		if err := verifyChunk(ctx, conns[w], m, j.db, j.t, j.ch); err != nil {
			return err
		}
		done.Add(1)
		return nil
	})
	return int(done.Load()), err
}

// verifyChunk recomputes a chunk's checksum on c, whose session uses
// time_zone '+00:00', and compares it with the manifest's.
func verifyChunk(ctx context.Context, c *sql.Conn, m *Manifest, db string, t *Table, ch Chunk) error {
	rows, sum, err := ChunkChecksum(ctx, c, m.Checksum, db, *t, ch.Where)
	if err != nil {
		return fmt.Errorf("%s.%s chunk %q: %w", db, t.Name, ch.Where, err)
	}
	if rows != ch.Rows || sum != ch.Checksum {
		return fmt.Errorf("%s.%s chunk %q: %d rows, checksum %s on the target; the snapshot has %d rows, %s", db, t.Name, ch.Where, rows, sum, ch.Rows, ch.Checksum)
	}
	return nil
}

// schedule hands a load's work to its workers. Chunks are loaded table
// by table, the biggest tables first, so that the last jobs (the small
// tables' loads, index builds and verification) are short. A table is
// loaded by one worker at a time: a second LOAD DATA into it would only
// wait (InnoDB locks an empty table for the first insert until it commits,
// and a table with an AUTO_INCREMENT column for each LOAD DATA until it
// ends), and where it would not, two loads into one B-tree cost twice the
// CPU of one (BENCHMARKS.md, issue 15). With verification, a chunk is
// verified as soon as it is loaded, unless its range is one of a
// secondary index, which comes only with the complete table; chunks to
// verify come before chunks to load, and a worker with nothing to do
// waits while work may still come.
type schedule struct {
	ctx        context.Context
	mu         sync.Mutex
	cond       *sync.Cond
	loads      []job
	busy       map[*Table]int // chunks being loaded
	checks     []job
	incomplete int // tables whose chunks to verify are still to come
	verify     bool
	created    map[*Table]bool // tables created, or being created
}

// newSchedule schedules jobs; created names the tables that exist
// already.
func newSchedule(ctx context.Context, jobs []job, verify bool, created map[*Table]bool) *schedule {
	s := &schedule{ctx: ctx, busy: map[*Table]int{}, verify: verify, created: map[*Table]bool{}}
	for t := range created {
		s.created[t] = true
	}
	s.cond = sync.NewCond(&s.mu)
	size := map[*Table]int64{}
	for _, j := range jobs {
		size[j.table] += max(j.chunk.Bytes, 1)
	}
	s.loads = slices.Clone(jobs)
	slices.SortStableFunc(s.loads, func(a, b job) int { return cmp.Compare(size[b.table], size[a.table]) })
	if verify {
		s.incomplete = len(size)
	}
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	return s
}

// next returns the next job and whether it is a chunk to verify; false
// when there is nothing left to do or the load is cancelled.
func (s *schedule) next() (j job, check, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.ctx.Err() == nil {
		if len(s.checks) > 0 {
			j, s.checks = s.checks[0], s.checks[1:]
			return j, true, true
		}
		for i, l := range s.loads {
			if s.busy[l.table] == 0 {
				s.loads = slices.Delete(s.loads, i, i+1)
				s.busy[l.table]++
				return l, false, true
			}
		}
		if len(s.loads) == 0 && s.incomplete == 0 {
			return job{}, false, false
		}
		s.cond.Wait()
	}
	return job{}, false, false
}

// create reports whether t is still to be created, by the caller, which
// is loading its first chunk: true only once for each table.
func (s *schedule) create(t *Table) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.created[t] {
		return false
	}
	s.created[t] = true
	return true
}

// loaded records that a chunk's load ended, and whether it succeeded.
func (s *schedule) loaded(j job, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy[j.table]--
	if ok && s.verify && j.table.ChunkIndex == "" {
		s.checks = append(s.checks, j)
	}
	s.cond.Broadcast()
}

// complete records that j's table is complete, its indexes built: the
// chunks that are ranges of a secondary index, the biggest first, are
// to be verified.
func (s *schedule) complete(j job) {
	if !s.verify {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.checks)
	for k := range j.table.Chunks {
		if j.table.ChunkIndex == "" {
			break // verified as they were loaded
		}
		s.checks = append(s.checks, job{db: j.db, table: j.table, chunk: &j.table.Chunks[k]})
	}
	slices.SortStableFunc(s.checks[n:], func(a, b job) int { return cmp.Compare(b.chunk.Bytes, a.chunk.Bytes) })
	s.incomplete--
	s.cond.Broadcast()
}

// deferMinRows is the size from which a table's secondary indexes are
// added after its rows rather than kept in its CREATE TABLE. An ALTER
// TABLE … ADD KEY costs milliseconds however small the table (20 tables of
// 20 rows: 0.24–0.33 s deferred against 0.13–0.19 s inline), and up to
// 100k rows the inline index costs no more (8 tables of 100k rows: 3.2–3.8 s
// and 4.4–6.1 s of server CPU deferred, 2.6–3.5 s and 4.5–6.3 s inline);
// from 250k rows, the sorted build after the rows costs less CPU
// (BENCHMARKS.md, issue 15).
const deferMinRows = 100_000

// deferIndexes reports whether t's secondary indexes are added after its
// rows.
func deferIndexes(t *Table) bool {
	var rows int64
	for _, c := range t.Chunks {
		rows += c.Rows
	}
	return rows >= deferMinRows
}

// createTable runs a table's CREATE TABLE, with deferKeys without its
// secondary indexes, which it returns as ALTER TABLE clauses to run after
// the data (a big table loads faster with only its primary key, and the
// indexes are then built sorted). Tables with foreign keys, or whose
// AUTO_INCREMENT column is not first in the primary key, are created as
// they are.
func createTable(ctx context.Context, c *sql.Conn, dir, rel string, m *Manifest, db string, deferKeys bool) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != m.Files[rel] {
		return nil, fmt.Errorf("%s: sha256 %s, the manifest says %s: the snapshot file is corrupt", rel, got, m.Files[rel])
	}
	create, keys := splitKeys(strings.TrimSuffix(strings.TrimSpace(string(b)), ";"))
	if !deferKeys {
		create, keys = strings.TrimSuffix(strings.TrimSpace(string(b)), ";"), nil
	}
	if _, err := c.ExecContext(ctx, "USE "+quote(db)); err != nil {
		return nil, explain(err)
	}
	if _, err := c.ExecContext(ctx, create); err != nil {
		return nil, fmt.Errorf("%s: %w", rel, explain(err))
	}
	return keys, nil
}

// splitKeys takes the secondary index lines out of a CREATE TABLE
// statement as SHOW CREATE TABLE writes it.
func splitKeys(create string) (string, []string) {
	if strings.Contains(create, "FOREIGN KEY") {
		return create, nil
	}
	lines := strings.Split(create, "\n")
	var keep, keys []string
	autoInc, pkFirst := "", ""
	for _, l := range lines {
		tl := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(tl, "KEY ") || strings.HasPrefix(tl, "UNIQUE KEY ") || strings.HasPrefix(tl, "FULLTEXT KEY ") || strings.HasPrefix(tl, "SPATIAL KEY "):
			keys = append(keys, "ADD "+strings.TrimSuffix(tl, ","))
			continue
		case strings.HasPrefix(tl, "`") && strings.Contains(tl, " AUTO_INCREMENT"):
			autoInc = tl[:strings.Index(tl[1:], "`")+2]
		case strings.HasPrefix(tl, "PRIMARY KEY ("):
			rest := tl[len("PRIMARY KEY ("):]
			if i := strings.IndexAny(rest, ",)"); i > 0 {
				pkFirst = rest[:i]
			}
		}
		keep = append(keep, l)
	}
	if len(keys) == 0 || (autoInc != "" && autoInc != pkFirst) {
		return create, nil
	}
	// The line before the closing parenthesis must not end with a comma.
	for i := len(keep) - 1; i > 0; i-- {
		if strings.HasPrefix(strings.TrimSpace(keep[i]), ")") {
			keep[i-1] = strings.TrimSuffix(keep[i-1], ",")
			break
		}
	}
	return strings.Join(keep, "\n"), keys
}
