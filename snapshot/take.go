package snapshot

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// Root is the source's snapshots directory.
	Root      string
	Threads   int   // default 4
	ChunkRows int64 // default 200000
	// Users also saves accounts, roles and grants (see dumpUsers).
	Users bool
	Log   *slog.Logger
	// Progress, if set, is called as chunks complete.
	Progress func(Progress)
}

// Progress reports a snapshot's progress.
type Progress struct {
	Tables, TablesDone int
	Chunks, ChunksDone int
	RowsEstimate, Rows int64
	Bytes              int64
}

var systemSchemas = map[string]bool{"mysql": true, "information_schema": true, "performance_schema": true, "sys": true}

// Take takes a consistent snapshot and returns its manifest. On any error
// the partial snapshot is removed; a crash leaves a NAME.partial directory
// that List ignores and the next Take removes.
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
	if err := os.MkdirAll(o.Root, 0o755); err != nil {
		return nil, "", fmt.Errorf("snapshot directory: %w", err)
	}
	removePartials(o.Root, o.Log)
	started := time.Now().UTC()
	// The ID is the start time; a second snapshot in the same second gets
	// a suffix.
	id := started.Format("20060102T150405Z")
	for n := 1; ; n++ {
		if _, err := os.Lstat(filepath.Join(o.Root, id)); errors.Is(err, fs.ErrNotExist) {
			break
		}
		id = fmt.Sprintf("%s-%d", started.Format("20060102T150405Z"), n)
	}
	final := filepath.Join(o.Root, id)
	partial := final + partialSuffix
	if err := os.Mkdir(partial, 0o755); err != nil {
		return nil, "", fmt.Errorf("snapshot directory: %w", err)
	}
	m, err := take(ctx, o, partial, id, started)
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
}

type job struct {
	db    string
	table *Table
	chunk *Chunk
}

func take(ctx context.Context, o Options, dir, id string, started time.Time) (*Manifest, error) {
	m := &Manifest{Version: 1, ID: id, Source: o.Source, From: o.From, FromReplica: o.FromReplica, Started: started,
		Threads: o.Threads, Compression: "zstd", Checksum: ChecksumName, Files: map[string]string{}}
	main, err := o.DB.Conn(ctx)
	if err != nil {
		return nil, explain(err)
	}
	defer main.Close()
	if err := main.QueryRowContext(ctx, "SELECT @@version").Scan(&m.ServerVersion); err != nil {
		return nil, explain(err)
	}
	if err := checkGrants(ctx, main); err != nil {
		return nil, err
	}
	if o.FromReplica {
		if err := checkReplica(ctx, main, o); err != nil {
			return nil, err
		}
	}
	tables, err := listTables(ctx, main)
	if err != nil {
		return nil, err
	}
	for _, ti := range tables {
		if !strings.EqualFold(ti.t.Engine, "InnoDB") {
			m.NonTransactional = append(m.NonTransactional, ti.db+"."+ti.t.Name+" ("+ti.t.Engine+")")
		}
	}
	if len(m.NonTransactional) > 0 {
		o.Log.Warn("tables outside the consistent snapshot (not InnoDB): they are copied as they are while read", "tables", m.NonTransactional)
	}

	// Open the workers' connections and set them up before blocking commits.
	workers := make([]*sql.Conn, o.Threads)
	for i := range workers {
		c, err := o.DB.Conn(ctx)
		if err != nil {
			return nil, explain(err)
		}
		defer c.Close()
		for _, q := range append(sessionSetup, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ") {
			if _, err := c.ExecContext(ctx, q); err != nil {
				return nil, explain(err)
			}
		}
		workers[i] = c
	}
	// Block commits only while the workers open their snapshots and the
	// position is read.
	if _, err := main.ExecContext(ctx, "SET SESSION lock_wait_timeout = 30"); err != nil {
		return nil, explain(err)
	}
	if _, err := main.ExecContext(ctx, "BACKUP STAGE START"); err != nil {
		return nil, explain(err)
	}
	endStage := func() { main.ExecContext(context.Background(), "BACKUP STAGE END") }
	if _, err := main.ExecContext(ctx, "BACKUP STAGE BLOCK_COMMIT"); err != nil {
		endStage()
		return nil, explain(err)
	}
	blockStart := time.Now()
	for _, c := range workers {
		if _, err := c.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
			endStage()
			return nil, explain(err)
		}
	}
	var pos string
	q := "SELECT @@global.gtid_binlog_pos"
	if o.FromReplica {
		q = "SELECT @@global.gtid_slave_pos"
	}
	err = main.QueryRowContext(ctx, q).Scan(&pos)
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
	o.Log.Info("snapshot opened", "gtid_position", p.String(), "commit_block_ms", m.CommitBlockMillis, "tables", len(tables))

	// Schema, read in worker 0's transaction.
	if err := dumpSchema(ctx, workers[0], dir, m, tables); err != nil {
		return nil, err
	}
	if o.Users {
		if err := dumpUsers(ctx, workers[0], dir, m, o.Log); err != nil {
			return nil, err
		}
	}
	// Plan chunks in the snapshot.
	var jobs []job
	var rowsEst int64
	for _, ti := range tables {
		chunks, err := planChunks(ctx, workers[0], ti, o.ChunkRows)
		if err != nil {
			return nil, err
		}
		db := findDB(m, ti.db)
		t := ti.t
		t.Schema = filepath.Join(ti.db, ti.t.Name+".schema.sql")
		for i, where := range chunks {
			t.Chunks = append(t.Chunks, Chunk{File: filepath.Join(ti.db, fmt.Sprintf("%s.%05d.tsv.zst", ti.t.Name, i)), Where: where})
		}
		db.Tables = append(db.Tables, t)
		rowsEst += ti.rowsEst
	}
	for i := range m.Databases {
		d := &m.Databases[i]
		for j := range d.Tables {
			for k := range d.Tables[j].Chunks {
				jobs = append(jobs, job{db: d.Name, table: &d.Tables[j], chunk: &d.Tables[j].Chunks[k]})
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

	prog := &progress{p: Progress{Tables: len(tables), Chunks: len(jobs), RowsEstimate: rowsEst}, fn: o.Progress, left: map[*Table]int{}}
	for _, j := range jobs {
		prog.left[j.table]++
	}
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		errMu  sync.Mutex
		first  error
		sumsMu sync.Mutex
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One compressor per worker, reset for each chunk.
	encoders := make([]*compressor, len(workers))
	for w := range encoders {
		zw, err := newCompressor()
		if err != nil {
			return nil, err
		}
		encoders[w] = zw
	}
	for w, c := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zw := encoders[w]
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) || wctx.Err() != nil {
					return
				}
				j := jobs[i]
				sum, err := dumpChunk(wctx, c, zw, dir, j)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("%s.%s (%s): %w", j.db, j.table.Name, j.chunk.File, explain(err))
					}
					errMu.Unlock()
					cancel()
					return
				}
				sumsMu.Lock()
				m.Files[j.chunk.File] = sum
				sumsMu.Unlock()
				prog.done(j)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, c := range workers {
		c.ExecContext(ctx, "COMMIT")
	}
	m.Finished = time.Now().UTC()
	return m, nil
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

// checkReplica makes sure the replica replicates from the source: it must
// have one of the source's GTID domains in gtid_slave_pos and a running
// replication connection.
func checkReplica(ctx context.Context, c *sql.Conn, o Options) error {
	if len(o.Domains) == 0 {
		return errors.New("snapshot from a replica: the source's GTID domain is unknown (is the source reachable?)")
	}
	var pos string
	if err := c.QueryRowContext(ctx, "SELECT @@global.gtid_slave_pos").Scan(&pos); err != nil {
		return explain(err)
	}
	p, err := understudy.ParsePosition(pos)
	if err != nil {
		return err
	}
	for _, d := range o.Domains {
		if _, ok := p.Domain(d); ok {
			return nil
		}
	}
	return fmt.Errorf("%s is not replicating from source %s: its gtid_slave_pos %q has none of the source's GTID domains %v", o.From, o.Source, pos, o.Domains)
}

// checkGrants names every missing global privilege a snapshot needs.
func checkGrants(ctx context.Context, c *sql.Conn) error {
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
	if len(missing) > 0 {
		return fmt.Errorf("the snapshot user lacks %s: run GRANT %s ON *.* TO '<user>'@'<understudy host>'", strings.Join(missing, ", "), strings.Join(missing, ", "))
	}
	return nil
}

// listTables lists the base tables outside the system schemas with their
// stored columns and the key their chunks are cut on, in three queries
// whatever the number of tables.
func listTables(ctx context.Context, c *sql.Conn) ([]tableInfo, error) {
	var out []tableInfo
	index := map[[2]string]*tableInfo{}
	err := queryRows(ctx, c, `SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(ENGINE, ''), COALESCE(TABLE_ROWS, 0)
		FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME`, func(rows *sql.Rows) error {
		var ti tableInfo
		if err := rows.Scan(&ti.db, &ti.t.Name, &ti.t.Engine, &ti.rowsEst); err != nil {
			return err
		}
		if !systemSchemas[strings.ToLower(ti.db)] {
			out = append(out, ti)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		index[[2]string{out[i].db, out[i].t.Name}] = &out[i]
	}
	type column struct {
		typ, charset string
		nullable     bool
	}
	columns := map[[3]string]column{}
	err = queryRows(ctx, c, `SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COALESCE(GENERATION_EXPRESSION, ''), EXTRA, DATA_TYPE, COLUMN_TYPE,
		IS_NULLABLE, COALESCE(CHARACTER_SET_NAME, '') FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
		ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION`, func(rows *sql.Rows) error {
		var db, table, name, gen, extra, typ, colType, nullable, charset string
		if err := rows.Scan(&db, &table, &name, &gen, &extra, &typ, &colType, &nullable, &charset); err != nil {
			return err
		}
		typ = strings.ToLower(typ)
		columns[[3]string{db, table, name}] = column{typ, charset, nullable == "YES"}
		ti := index[[2]string{db, table}]
		if ti != nil && gen == "" && !strings.Contains(strings.ToUpper(extra), "GENERATED") {
			ti.t.Columns = append(ti.t.Columns, name)
			ti.t.Types = append(ti.t.Types, typ)
			ti.t.selects = append(ti.t.selects, dumpExpr(quote(name), typ, strings.ToLower(colType)))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The chunk key is the first column of the primary key, else of a
	// unique key, else of any index: ranges of it partition the rows
	// whether or not it is unique.
	rank := map[*tableInfo]int{}
	err = queryRows(ctx, c, `SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME
		FROM information_schema.STATISTICS WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
		ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`, func(rows *sql.Rows) error {
		var db, table, index_, name string
		var nonUnique, seq int
		if err := rows.Scan(&db, &table, &index_, &nonUnique, &seq, &name); err != nil {
			return err
		}
		ti := index[[2]string{db, table}]
		if ti == nil {
			return nil
		}
		if index_ == "PRIMARY" {
			ti.t.PrimaryKey = append(ti.t.PrimaryKey, name)
		}
		col, ok := columns[[3]string{db, table, name}]
		if seq != 1 || !ok || chunkKind(col.typ) == chunkNone {
			return nil
		}
		r := 3 // any index
		switch {
		case index_ == "PRIMARY":
			r = 1
		case nonUnique == 0:
			r = 2
		}
		if old, seen := rank[ti]; !seen || r < old {
			rank[ti] = r
			ti.key = chunkKey{column: name, typ: col.typ, charset: col.charset, nullable: col.nullable}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// queryRows runs q and calls fn for each row.
func queryRows(ctx context.Context, c *sql.Conn, q string, fn func(*sql.Rows) error) error {
	rows, err := c.QueryContext(ctx, q)
	if err != nil {
		return explain(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// chunkKey is the column a table's chunks are ranges of.
type chunkKey struct {
	column, typ, charset string
	nullable             bool
}

const (
	chunkNone = iota
	chunkInt
	chunkKeyset
)

// chunkKind tells how a column of type typ can cut chunks: integer ranges
// from MIN to MAX, boundaries found by walking the index, or not at all.
func chunkKind(typ string) int {
	switch typ {
	case "tinyint", "smallint", "mediumint", "int", "bigint":
		return chunkInt
	case "char", "varchar", "binary", "varbinary", "decimal", "date", "datetime", "timestamp", "time", "year", "uuid", "inet6", "inet4":
		return chunkKeyset
	}
	return chunkNone
}

// planChunks cuts a table into ranges of its chunk key: an integer key
// evenly from MIN to MAX, any other by boundaries read from its index every
// chunkRows rows. NULLs of a nullable key go with the first chunk. A table
// without a usable key, or small, is one chunk, streamed.
func planChunks(ctx context.Context, c *sql.Conn, ti tableInfo, chunkRows int64) ([]string, error) {
	kind := chunkKind(ti.key.typ)
	if ti.key.column == "" || kind == chunkNone || ti.rowsEst <= chunkRows {
		return []string{""}, nil
	}
	var bounds []string
	var err error
	if kind == chunkInt {
		bounds, err = intBounds(ctx, c, ti, chunkRows)
	} else {
		bounds, err = keysetBounds(ctx, c, ti, chunkRows)
	}
	if err != nil || len(bounds) == 0 {
		return []string{""}, err
	}
	col := quote(ti.key.column)
	out := make([]string, 0, len(bounds)+1)
	first := fmt.Sprintf("%s < %s", col, bounds[0])
	if ti.key.nullable {
		first = fmt.Sprintf("(%s OR %s IS NULL)", first, col)
	}
	out = append(out, first)
	for i := 1; i < len(bounds); i++ {
		out = append(out, fmt.Sprintf("%s >= %s AND %s < %s", col, bounds[i-1], col, bounds[i]))
	}
	return append(out, fmt.Sprintf("%s >= %s", col, bounds[len(bounds)-1])), nil
}

// intBounds returns the boundaries between integer ranges of about
// chunkRows rows each, from the key's MIN and MAX.
func intBounds(ctx context.Context, c *sql.Conn, ti tableInfo, chunkRows int64) ([]string, error) {
	col := quote(ti.key.column)
	var lo, hi sql.NullString
	if err := c.QueryRowContext(ctx, fmt.Sprintf("SELECT MIN(%s), MAX(%s) FROM %s", col, col, qualified(ti.db, ti.t.Name))).Scan(&lo, &hi); err != nil {
		return nil, explain(err)
	}
	if !lo.Valid {
		return nil, nil
	}
	min, err1 := strconv.ParseInt(lo.String, 10, 64)
	max, err2 := strconv.ParseInt(hi.String, 10, 64)
	if err1 != nil || err2 != nil { // unsigned beyond int64: walk the index
		return keysetBounds(ctx, c, ti, chunkRows)
	}
	n := (ti.rowsEst + chunkRows - 1) / chunkRows
	step := (max - min + 1) / n
	if step < 1 {
		return nil, nil
	}
	var out []string
	for i := int64(1); i < n; i++ {
		out = append(out, strconv.FormatInt(min+i*step, 10))
	}
	return out, nil
}

// keysetBounds walks the key's index inside the snapshot and returns every
// chunkRows-th distinct value, as SQL literals. Each step reads chunkRows
// index entries from the previous boundary, so the walk reads the index
// once in all.
func keysetBounds(ctx context.Context, c *sql.Conn, ti tableInfo, chunkRows int64) ([]string, error) {
	col, table := quote(ti.key.column), qualified(ti.db, ti.t.Name)
	var out []string
	for {
		q := fmt.Sprintf("SELECT %s FROM %s WHERE %s IS NOT NULL ORDER BY %s LIMIT 1 OFFSET %d", col, table, col, col, chunkRows)
		if len(out) > 0 {
			q = fmt.Sprintf("SELECT %s FROM %s WHERE %s > %s ORDER BY %s LIMIT 1 OFFSET %d", col, table, col, out[len(out)-1], col, chunkRows-1)
		}
		var v []byte
		err := c.QueryRowContext(ctx, q).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return out, nil
		}
		if err != nil {
			return nil, explain(err)
		}
		out = append(out, keyLiteral(v, ti.key))
	}
}

// keyLiteral writes a key value as a literal that compares with the column
// as the column's own values do: numbers as they are, hex with the
// column's character set introducer for strings (so their collation
// applies), hex for binary strings, quoted text for the rest (dates, times,
// UUIDs are plain ASCII).
func keyLiteral(v []byte, k chunkKey) string {
	numeric := len(v) > 0 && strings.Trim(string(v), "0123456789.-") == ""
	switch {
	case numeric && (chunkKind(k.typ) == chunkInt || k.typ == "decimal" || k.typ == "year"):
		// Unquoted: compared as a number of the column's kind, exactly.
		return string(v)
	case k.typ == "binary" || k.typ == "varbinary":
		return "X'" + hex.EncodeToString(v) + "'"
	case k.charset != "":
		return "_" + k.charset + " X'" + hex.EncodeToString(v) + "'"
	}
	return "'" + strings.ReplaceAll(string(v), "'", "''") + "'"
}

// dumpChunk streams a chunk's rows into a zstd-compressed TSV file that
// LOAD DATA reads with its defaults, and returns the file's sha256.
func dumpChunk(ctx context.Context, c *sql.Conn, zw *compressor, dir string, j job) (string, error) {
	path := filepath.Join(dir, j.chunk.File)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	zw.Reset(cw)
	buf := make([]byte, 0, 512<<10)
	cols := j.table.Columns
	q := fmt.Sprintf("SELECT %s FROM %s", strings.Join(j.table.selects, ", "), qualified(j.db, j.table.Name))
	if j.chunk.Where != "" {
		q += " WHERE " + j.chunk.Where
	}
	// The chunk checksum is computed from the rows as they are read, in
	// the snapshot transaction. The driver's rows are read directly: its
	// values point into its read buffer, with no copy or conversion.
	var hr chunkHasher
	var raw int64
	err = c.Raw(func(dc any) error {
		rows, err := dc.(driver.QueryerContext).QueryContext(ctx, q, nil)
		if err != nil {
			return err
		}
		defer rows.Close()
		dest := make([]driver.Value, len(cols))
		vals := make([][]byte, len(cols))
		nums := make([][]byte, len(cols)) // integers formatted back
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
				case int64:
					nums[i] = strconv.AppendInt(nums[i][:0], v, 10)
					vals[i] = nums[i]
				case uint64:
					nums[i] = strconv.AppendUint(nums[i][:0], v, 10)
					vals[i] = nums[i]
				default:
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
			if len(buf) >= 256<<10 {
				if _, err := zw.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	})
	if err != nil {
		return "", err
	}
	if _, err := zw.Write(buf); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	j.chunk.Bytes, j.chunk.Compressed = raw, cw.n
	j.chunk.Rows, j.chunk.Checksum = hr.rows, hr.String()
	return hex.EncodeToString(h.Sum(nil)), f.Close()
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

// dumpSchema writes CREATE DATABASE, CREATE TABLE and the other objects.
func dumpSchema(ctx context.Context, c *sql.Conn, dir string, m *Manifest, tables []tableInfo) error {
	dbs := map[string]bool{}
	for _, ti := range tables {
		dbs[ti.db] = true
	}
	// Databases without tables still count.
	rows, err := c.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
	if err != nil {
		return explain(err)
	}
	for rows.Next() {
		var name string
		rows.Scan(&name)
		if !systemSchemas[strings.ToLower(name)] {
			dbs[name] = true
		}
	}
	rows.Close()
	var names []string
	for n := range dbs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		var n, create string
		if err := c.QueryRowContext(ctx, "SHOW CREATE DATABASE "+quote(name)).Scan(&n, &create); err != nil {
			return explain(err)
		}
		d := Database{Name: name, Schema: filepath.Join(name, "schema.sql")}
		if err := writeFile(dir, d.Schema, create+";\n", m); err != nil {
			return err
		}
		objects, err := dumpObjects(ctx, c, name)
		if err != nil {
			return err
		}
		if objects != "" {
			d.Objects = filepath.Join(name, "objects.sql")
			if err := writeFile(dir, d.Objects, objects, m); err != nil {
				return err
			}
		}
		m.Databases = append(m.Databases, d)
	}
	for _, ti := range tables {
		var n, create string
		if err := c.QueryRowContext(ctx, "SHOW CREATE TABLE "+qualified(ti.db, ti.t.Name)).Scan(&n, &create); err != nil {
			return explain(err)
		}
		if err := writeFile(dir, filepath.Join(ti.db, ti.t.Name+".schema.sql"), create+";\n", m); err != nil {
			return err
		}
	}
	return nil
}

// UsersFile holds a snapshot's accounts, roles and grants, if saved.
const UsersFile = "users.sql"

// dumpUsers writes every account and role (but the server's own
// mariadb.sys and PUBLIC) with its grants to UsersFile: CREATE ROLE or
// CREATE USER (with its authentication as SHOW CREATE USER gives it), then
// its GRANTs, statements separated by lines "$$".
func dumpUsers(ctx context.Context, c *sql.Conn, dir string, m *Manifest, log *slog.Logger) error {
	type account struct {
		user, host string
		role       bool
	}
	var accounts []account
	err := queryRows(ctx, c, "SELECT User, Host, is_role FROM mysql.user ORDER BY is_role DESC, User, Host", func(rows *sql.Rows) error {
		var a account
		var role string
		if err := rows.Scan(&a.user, &a.host, &role); err != nil {
			return err
		}
		a.role = role == "Y"
		if a.user != "mariadb.sys" && a.user != "PUBLIC" {
			accounts = append(accounts, a)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading accounts (the snapshot user needs SELECT on the mysql database for snapshot.users): %w", err)
	}
	// Every account and role first, then the grants, which may name
	// roles and users that sort after the grantee.
	var creates, grants strings.Builder
	skipped := 0
	for _, a := range accounts {
		name := "'" + strings.ReplaceAll(a.user, "'", "''") + "'"
		if a.role {
			creates.WriteString("CREATE ROLE IF NOT EXISTS " + name + "\n$$\n")
		} else {
			name += "@'" + strings.ReplaceAll(a.host, "'", "''") + "'"
			var create string
			if err := c.QueryRowContext(ctx, "SHOW CREATE USER "+name).Scan(&create); err != nil {
				var me *mysql.MySQLError
				if errors.As(err, &me) && me.Number == 1133 {
					// In mysql.user but not in use: a host name under
					// skip-name-resolve, for one.
					log.Warn("account not saved: the server ignores it", "account", name, "error", me.Message)
					skipped++
					continue
				}
				return fmt.Errorf("SHOW CREATE USER %s: %w", name, explain(err))
			}
			if rest, ok := strings.CutPrefix(create, "CREATE USER "); ok {
				create = "CREATE USER IF NOT EXISTS " + rest
			}
			creates.WriteString(create + "\n$$\n")
		}
		err := queryRows(ctx, c, "SHOW GRANTS FOR "+name, func(rows *sql.Rows) error {
			var g string
			if err := rows.Scan(&g); err != nil {
				return err
			}
			grants.WriteString(g + "\n$$\n")
			return nil
		})
		if err != nil {
			return fmt.Errorf("SHOW GRANTS FOR %s: %w", name, err)
		}
	}
	m.Users = UsersFile
	m.Accounts = len(accounts) - skipped
	return writeFile(dir, UsersFile, creates.String()+grants.String(), m)
}

// dumpObjects returns the views, routines, triggers and events of a
// database as SQL separated by lines with a single "$$" delimiter marker.
func dumpObjects(ctx context.Context, c *sql.Conn, db string) (string, error) {
	var b strings.Builder
	type obj struct{ kind, list, show string }
	kinds := []obj{
		{"VIEW", "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", "SHOW CREATE VIEW %s"},
		{"PROCEDURE", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = 'PROCEDURE' ORDER BY ROUTINE_NAME", "SHOW CREATE PROCEDURE %s"},
		{"FUNCTION", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = 'FUNCTION' ORDER BY ROUTINE_NAME", "SHOW CREATE FUNCTION %s"},
		{"TRIGGER", "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME", "SHOW CREATE TRIGGER %s"},
		{"EVENT", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME", "SHOW CREATE EVENT %s"},
	}
	for _, k := range kinds {
		rows, err := c.QueryContext(ctx, k.list, db)
		if err != nil {
			return "", explain(err)
		}
		var names []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		rows.Close()
		for _, n := range names {
			r, err := c.QueryContext(ctx, fmt.Sprintf(k.show, qualified(db, n)))
			if err != nil {
				return "", explain(err)
			}
			cols, _ := r.Columns()
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if r.Next() {
				r.Scan(ptrs...)
			}
			r.Close()
			// The statement is the column whose name starts with "Create "
			// but is not a charset/collation column.
			for i, name := range cols {
				if strings.HasPrefix(name, "Create ") || name == "SQL Original Statement" {
					if vals[i].Valid && vals[i].String != "" {
						b.WriteString(vals[i].String)
						b.WriteString("\n$$\n")
						break
					}
				}
			}
		}
	}
	return b.String(), nil
}

func writeFile(dir, rel, content string, m *Manifest) error {
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	sum := sha256.Sum256([]byte(content))
	m.Files[rel] = hex.EncodeToString(sum[:])
	return f.Close()
}

// finish writes the manifest, syncs the directories and renames the
// snapshot into place.
func finish(partial, final string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := archive.WriteFileAtomic(filepath.Join(partial, ManifestName), append(b, '\n')); err != nil {
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
		}
		return fmt.Errorf("%w (the snapshot user needs: GRANT %s ON *.* TO '<user>'@'<understudy host>')", err, grant)
	case 1045:
		return fmt.Errorf("%w (wrong user or password)", err)
	}
	return err
}

var _ hash.Hash = sha256.New()
