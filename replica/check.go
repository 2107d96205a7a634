package replica

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/snapshot"
)

// CheckOptions configures Check.
type CheckOptions struct {
	Replica     *sql.DB
	ReplicaAddr string
	// Source is the source's name, which is also the name of its
	// replication connection on the replica.
	Source string
	// Databases are the source's databases, and Domains its GTID domains.
	Databases []string
	Domains   []uint32
	// Snapshots are the source's snapshots: when the replica is held
	// exactly at one's position, its chunk checksums are the reference.
	Snapshots []snapshot.Listed
	// Reference returns a server holding the source at exactly the
	// position g (a scratch server restored from the archive), described
	// for messages, and a function releasing it. Nil: only a snapshot
	// can be the reference.
	Reference func(ctx context.Context, g understudy.Position) (db *sql.DB, what string, release func(), err error)
	// Primary, if set, is the reference instead (check --against
	// primary): the source's primary, read in one consistent snapshot at
	// its position P, with the replica's connection run up to exactly P
	// (START SLAVE UNTIL master_gtid_pos) before its reads open. It loads
	// the primary, which the default never reads. PrimaryAddr names it.
	Primary     *sql.DB
	PrimaryAddr string
	Threads     int   // parallel checksum connections (default 4)
	ChunkRows   int64 // rows a chunk (default the snapshot's 200000)
	// MaxKeys bounds the keys listed for each differing chunk (default 20).
	MaxKeys int
	Log     *slog.Logger
	// Progress reports chunks compared.
	Progress func(done, total int64)
}

// Diff is one chunk that differs between the replica and the reference,
// narrowed down to its rows.
type Diff struct {
	Table string `json:"table"`
	Chunk string `json:"chunk,omitempty"`
	// ReplicaRows and ReferenceRows count the chunk's rows on each side.
	ReplicaRows   int64 `json:"replica_rows"`
	ReferenceRows int64 `json:"reference_rows"`
	// Changed, Missing (on the replica) and Extra (only on the replica)
	// are the primary keys of the rows that differ, at most MaxKeys of
	// each; for a table without a primary key, the counts of rows only on
	// one side are in Missing and Extra as "N rows".
	Changed []string `json:"changed,omitempty"`
	Missing []string `json:"missing,omitempty"`
	Extra   []string `json:"extra,omitempty"`
	// Rows counts the rows that differ, listed or not.
	Rows int64 `json:"rows_differing"`
	// NoKey says the table has no primary key: rows are told apart by
	// their content only.
	NoKey bool `json:"no_primary_key,omitempty"`
	// Columns says how the table's stored columns differ between the
	// two sides (names, order or types); its rows are not compared.
	Columns string `json:"columns_differ,omitempty"`
}

// CheckResult says what Check compared and found.
type CheckResult struct {
	Source  string              `json:"source"`
	Replica string              `json:"replica"`
	At      understudy.Position `json:"gtid_position"`
	// Reference says what the replica was compared with.
	Reference string `json:"reference"`
	Tables    int    `json:"tables"`
	Chunks    int    `json:"chunks"`
	Equal     bool   `json:"equal"`
	Diffs     []Diff `json:"diffs,omitempty"`
	// Held is how long the replica's SQL thread for the source was
	// stopped.
	Held    time.Duration `json:"held_ns"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// ErrDifferent is what a caller that stops on a difference returns:
// Check itself reports differences in its result, not as an error.
var ErrDifferent = errors.New("the replica differs from the reference")

// Check verifies a live replica without load on the primary. The
// replica's SQL thread for the source is stopped for a moment, at a GTID
// position G: the checksum connections open their consistent reads there,
// and replication resumes. The reference holds the source at exactly G: a
// snapshot taken at G, else the server Reference restores. Chunks that
// differ are narrowed down to the primary keys of their rows.
func Check(ctx context.Context, o CheckOptions) (CheckResult, error) {
	t0 := time.Now()
	res := CheckResult{Source: o.Source, Replica: o.ReplicaAddr}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(int64, int64) {}
	}
	if o.Threads <= 0 {
		o.Threads = 4
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 20
	}
	st, ok, err := ConnStatus(ctx, o.Replica, o.Source)
	if err != nil {
		return res, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
	}
	if !ok {
		return res, fmt.Errorf("replica %s has no replication connection named %s (see `understudy provision`)", o.ReplicaAddr, QuoteName(o.Source))
	}
	if e := st["Last_SQL_Error"]; e != "" {
		return res, fmt.Errorf("replica %s: the connection %s has stopped on an error: %s", o.ReplicaAddr, QuoteName(o.Source), e)
	}
	var conns, pconns []*sql.Conn
	var g understudy.Position
	var held time.Duration
	if o.Primary != nil {
		conns, pconns, g, held, err = holdAtPrimary(ctx, o)
		defer func() {
			for _, c := range pconns {
				snapshot.CloseSession(c)
			}
		}()
	} else {
		conns, g, held, err = hold(ctx, o, st["Slave_SQL_Running"] == "Yes")
	}
	res.Held = held
	if err != nil {
		return res, err
	}
	defer func() {
		for _, c := range conns {
			snapshot.CloseSession(c)
		}
	}()
	res.At = g
	o.Log.Info("replica held for the check", "replica", o.ReplicaAddr, "connection", o.Source, "gtid_position", g.String(), "held", held)

	// The reference: the primary (--against primary), else a snapshot at
	// G, else a server restored to G.
	var ref *snapshot.Manifest
	for i := len(o.Snapshots) - 1; i >= 0 && pconns == nil; i-- {
		if m := o.Snapshots[i].Manifest; m.Position.Only(o.Domains).Equal(g) {
			ref = m
			break
		}
	}
	var dbs []snapshot.Database
	var refDB *sql.DB
	var checksum string
	if pconns != nil {
		res.Reference, checksum = fmt.Sprintf("the primary %s at %s", o.PrimaryAddr, g), snapshot.ChecksumName
		var only []Diff
		if dbs, only, err = planBoth(ctx, conns[0], pconns[0], o); err != nil {
			return res, err
		}
		res.Diffs = append(res.Diffs, only...)
	} else if ref != nil {
		res.Reference = "snapshot " + ref.ID
		checksum = ref.Checksum
		var names []string
		for _, d := range ref.Databases {
			names = append(names, d.Name)
		}
		replicaDBs, err := snapshot.Tables(ctx, conns[0], names)
		if err != nil {
			return res, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
		}
		var only []Diff
		dbs, only = commonTables(replicaDBs, ref.Databases, true)
		res.Diffs = append(res.Diffs, only...)
	} else {
		if o.Reference == nil {
			return res, fmt.Errorf("no snapshot of source %s is at the replica's position %s, and no scratch server is given to restore that position on", o.Source, g)
		}
		db, what, release, err := o.Reference(ctx, g)
		if err != nil {
			return res, fmt.Errorf("reference at %s: %w", g, err)
		}
		defer release()
		refDB, res.Reference, checksum = db, what, snapshot.ChecksumName
		c, err := db.Conn(ctx)
		if err != nil {
			return res, fmt.Errorf("%s: %w", res.Reference, err)
		}
		var only []Diff
		dbs, only, err = planBoth(ctx, conns[0], c, o)
		c.Close()
		if err != nil {
			return res, err
		}
		res.Diffs = append(res.Diffs, only...)
	}
	type job struct {
		db string
		t  *snapshot.Table
		ch snapshot.Chunk
	}
	var jobs []job
	for i := range dbs {
		for j := range dbs[i].Tables {
			res.Tables++
			for _, ch := range dbs[i].Tables[j].Chunks {
				jobs = append(jobs, job{dbs[i].Name, &dbs[i].Tables[j], ch})
			}
		}
	}
	res.Chunks = len(jobs)
	refConns := pconns
	if refDB != nil {
		for range conns {
			c, err := refDB.Conn(ctx)
			if err != nil {
				return res, fmt.Errorf("%s: %w", res.Reference, err)
			}
			defer snapshot.CloseSession(c)
			if err := snapshot.SetupSession(ctx, c); err != nil {
				return res, fmt.Errorf("%s: %w", res.Reference, err)
			}
			refConns = append(refConns, c)
		}
	}
	var (
		mu    sync.Mutex
		next  int
		done  int64
		first error
		wg    sync.WaitGroup
	)
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= len(jobs) || first != nil {
					mu.Unlock()
					return
				}
				j := jobs[next]
				next++
				mu.Unlock()
				rows, sum, err := snapshot.ChunkChecksum(ctx, conns[w], checksum, j.db, *j.t, j.ch.Where)
				if err != nil {
					err = fmt.Errorf("replica %s: %s.%s: %w", o.ReplicaAddr, j.db, j.t.Name, err)
				}
				wantRows, wantSum := j.ch.Rows, j.ch.Checksum
				if err == nil && refConns != nil {
					if wantRows, wantSum, err = snapshot.ChunkChecksum(ctx, refConns[w], checksum, j.db, *j.t, j.ch.Where); err != nil {
						err = fmt.Errorf("%s: %s.%s: %w", res.Reference, j.db, j.t.Name, err)
					}
				}
				var d *Diff
				if err == nil && (rows != wantRows || sum != wantSum) {
					d = &Diff{Table: j.db + "." + j.t.Name, Chunk: j.ch.Where, ReplicaRows: rows, ReferenceRows: wantRows, NoKey: len(j.t.PrimaryKey) == 0}
					if refConns != nil {
						err = narrow(ctx, conns[w], refConns[w], checksum, j.db, *j.t, j.ch.Where, o.MaxKeys, d)
					} else {
						// A snapshot's rows are in its chunk file; the
						// replica's rows alone cannot say which differ.
						d.Rows = max(rows, wantRows)
					}
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if d != nil {
					res.Diffs = append(res.Diffs, *d)
				}
				done++
				o.Progress(done, int64(len(jobs)))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return res, first
	}
	sort.Slice(res.Diffs, func(i, j int) bool { return res.Diffs[i].Table < res.Diffs[j].Table })
	res.Equal = len(res.Diffs) == 0
	res.Elapsed = time.Since(t0)
	return res, nil
}

// planBoth cuts the replica's tables into chunks, and returns the tables
// both sides have, with a Diff for each table on one side only.
func planBoth(ctx context.Context, replica, ref *sql.Conn, o CheckOptions) ([]snapshot.Database, []Diff, error) {
	dbs, err := snapshot.Plan(ctx, replica, o.Databases, o.ChunkRows)
	if err != nil {
		return nil, nil, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
	}
	refDBs, err := snapshot.Plan(ctx, ref, o.Databases, o.ChunkRows)
	if err != nil {
		return nil, nil, fmt.Errorf("reference: %w", err)
	}
	dbs, only := commonTables(dbs, refDBs, false)
	return dbs, only, nil
}

// holdAtPrimary opens consistent reads on the primary at its position P
// and on the replica at exactly P: the replica's connection is stopped
// first (so that it is at or behind P), then run up to P with START SLAVE
// UNTIL, its reads opened, and started again.
func holdAtPrimary(ctx context.Context, o CheckOptions) (rconns, pconns []*sql.Conn, g understudy.Position, held time.Duration, err error) {
	// The connections, kept here: a failure returns nil for both, and
	// closeAll must still close them (their transactions hold read views
	// open on the primary).
	var rs, ps []*sql.Conn
	closeAll := func() {
		for _, c := range append(rs, ps...) {
			snapshot.CloseSession(c)
		}
	}
	open := func(db *sql.DB) (*sql.Conn, error) {
		c, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		if err := snapshot.SetupSession(ctx, c, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
			snapshot.CloseSession(c)
			return nil, err
		}
		return c, nil
	}
	for range o.Threads {
		r, err := open(o.Replica)
		if err != nil {
			closeAll()
			return nil, nil, g, 0, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
		}
		rs = append(rs, r)
		p, err := open(o.Primary)
		if err != nil {
			closeAll()
			return nil, nil, g, 0, fmt.Errorf("primary %s: %w", o.PrimaryAddr, err)
		}
		ps = append(ps, p)
	}
	name := QuoteName(o.Source)
	t0 := time.Now()
	if _, err := o.Replica.ExecContext(ctx, "STOP SLAVE "+name); err != nil {
		closeAll()
		return nil, nil, g, 0, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
	}
	defer func() {
		if _, serr := o.Replica.ExecContext(context.WithoutCancel(ctx), "START SLAVE "+name); serr != nil {
			o.Log.Error("could not start the replica's connection again after the check: start it by hand", "replica", o.ReplicaAddr, "connection", o.Source, "err", serr)
		}
		if err != nil {
			closeAll()
		}
	}()
	// The primary's snapshot: commits blocked while the reads open and
	// the position is read, as a snapshot does. The backup stage has a
	// connection of its own: a START TRANSACTION on the connection that
	// holds it would end its block.
	main, err := o.Primary.Conn(ctx)
	if err != nil {
		return nil, nil, g, 0, fmt.Errorf("primary %s: %w", o.PrimaryAddr, err)
	}
	defer main.Close()
	for _, q := range []string{"BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"} {
		if _, err = main.ExecContext(ctx, q); err != nil {
			main.ExecContext(context.WithoutCancel(ctx), "BACKUP STAGE END")
			return nil, nil, g, 0, fmt.Errorf("primary %s: %s: %w (--against primary needs the RELOAD privilege)", o.PrimaryAddr, q, err)
		}
	}
	var pos string
	for _, c := range ps {
		if err == nil {
			_, err = c.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
		}
	}
	if err == nil {
		err = main.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos)
	}
	main.ExecContext(context.WithoutCancel(ctx), "BACKUP STAGE END")
	if err != nil {
		return nil, nil, g, 0, fmt.Errorf("primary %s: %w", o.PrimaryAddr, err)
	}
	p, err := understudy.ParsePosition(pos)
	if err != nil {
		return nil, nil, g, 0, fmt.Errorf("primary %s: gtid_binlog_pos: %w", o.PrimaryAddr, err)
	}
	g = p.Only(o.Domains)
	if _, err = o.Replica.ExecContext(ctx, "START SLAVE "+name+" UNTIL master_gtid_pos = '"+g.String()+"'"); err != nil {
		return nil, nil, g, 0, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
	}
	for {
		var cur understudy.Position
		if cur, err = GTIDSlavePos(ctx, o.Replica); err != nil {
			return nil, nil, g, 0, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
		}
		st, _, serr := ConnStatus(ctx, o.Replica, o.Source)
		if serr != nil {
			err = serr
			return nil, nil, g, 0, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
		}
		if e := st["Last_SQL_Error"]; e != "" {
			err = errors.New(e)
			return nil, nil, g, 0, fmt.Errorf("replica %s: the connection %s stopped on an error on its way to %s: %s", o.ReplicaAddr, name, g, e)
		}
		if cur.Only(o.Domains).Equal(g) && st["Slave_SQL_Running"] == "No" {
			break
		}
		if cur.Only(o.Domains).ContainsPosition(g) && !cur.Only(o.Domains).Equal(g) {
			err = errors.New("past the point")
			return nil, nil, g, 0, fmt.Errorf("replica %s is at %s, past the primary's %s: it has transactions the primary does not", o.ReplicaAddr, cur.Only(o.Domains), g)
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
			return nil, nil, g, 0, err
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, c := range rs {
		if _, err = c.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
			return nil, nil, g, 0, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
		}
	}
	return rs, ps, g, time.Since(t0), nil
}

// hold stops the source's SQL thread, reads G, opens a consistent read on
// each checksum connection and starts the thread again (if it ran).
func hold(ctx context.Context, o CheckOptions, running bool) ([]*sql.Conn, understudy.Position, time.Duration, error) {
	var conns []*sql.Conn
	fail := func(err error) ([]*sql.Conn, understudy.Position, time.Duration, error) {
		for _, c := range conns {
			snapshot.CloseSession(c)
		}
		return nil, understudy.Position{}, 0, fmt.Errorf("replica %s: %w", o.ReplicaAddr, err)
	}
	for range o.Threads {
		c, err := o.Replica.Conn(ctx)
		if err != nil {
			return fail(err)
		}
		conns = append(conns, c)
		if err := snapshot.SetupSession(ctx, c, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
			return fail(err)
		}
	}
	name := QuoteName(o.Source)
	t0 := time.Now()
	if running {
		if _, err := o.Replica.ExecContext(ctx, "STOP SLAVE "+name+" SQL_THREAD"); err != nil {
			return fail(err)
		}
	}
	defer func() {
		if running {
			if _, serr := o.Replica.ExecContext(context.WithoutCancel(ctx), "START SLAVE "+name+" SQL_THREAD"); serr != nil {
				o.Log.Error("could not start the replica's SQL thread again after the check: start it by hand", "replica", o.ReplicaAddr, "connection", o.Source, "err", serr)
			}
		}
	}()
	pos, err := GTIDSlavePos(ctx, o.Replica)
	if err != nil {
		return fail(err)
	}
	for _, c := range conns {
		if _, err := c.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
			return fail(err)
		}
	}
	return conns, pos.Only(o.Domains), time.Since(t0), nil
}

// narrow compares a chunk's rows on both sides and fills d with the keys
// of the rows that differ.
func narrow(ctx context.Context, replica, ref *sql.Conn, checksum, db string, t snapshot.Table, where string, maxKeys int, d *Diff) error {
	if len(t.PrimaryKey) == 0 {
		// Rows without a key are told apart by content: count each hash.
		counts := map[uint64]int64{}
		if err := snapshot.RowSums(ctx, ref, checksum, db, t, where, func(r snapshot.RowSum) error { counts[r.Sum]++; return nil }); err != nil {
			return err
		}
		if err := snapshot.RowSums(ctx, replica, checksum, db, t, where, func(r snapshot.RowSum) error { counts[r.Sum]--; return nil }); err != nil {
			return err
		}
		var missing, extra int64
		for _, n := range counts {
			if n > 0 {
				missing += n
			} else {
				extra -= n
			}
		}
		d.Rows = missing + extra
		if missing > 0 {
			d.Missing = []string{fmt.Sprintf("%d rows", missing)}
		}
		if extra > 0 {
			d.Extra = []string{fmt.Sprintf("%d rows", extra)}
		}
		return nil
	}
	want := map[string]uint64{}
	if err := snapshot.RowSums(ctx, ref, checksum, db, t, where, func(r snapshot.RowSum) error {
		want[r.KeyString()] = r.Sum
		return nil
	}); err != nil {
		return err
	}
	add := func(list *[]string, k string) {
		d.Rows++
		if len(*list) < maxKeys {
			*list = append(*list, k)
		}
	}
	if err := snapshot.RowSums(ctx, replica, checksum, db, t, where, func(r snapshot.RowSum) error {
		k := r.KeyString()
		sum, ok := want[k]
		switch {
		case !ok:
			add(&d.Extra, k)
		case sum != r.Sum:
			add(&d.Changed, k)
		}
		delete(want, k)
		return nil
	}); err != nil {
		return err
	}
	var missing []string
	for k := range want {
		missing = append(missing, k)
	}
	sort.Strings(missing)
	for _, k := range missing {
		add(&d.Missing, k)
	}
	return nil
}

// Describe is the diff in one line: table, counts and keys.
func (d Diff) Describe() string {
	if d.Columns != "" {
		return fmt.Sprintf("%s: the stored columns differ, its rows were not compared: %s", d.Table, d.Columns)
	}
	var parts []string
	for _, p := range []struct {
		what string
		keys []string
	}{{"changed", d.Changed}, {"missing on the replica", d.Missing}, {"only on the replica", d.Extra}} {
		if len(p.keys) > 0 {
			parts = append(parts, p.what+" "+strings.Join(p.keys, " "))
		}
	}
	key := "primary key"
	if d.NoKey {
		key = "no primary key"
	}
	return fmt.Sprintf("%s (%s): %d rows on the replica, %d in the reference; %d rows differ: %s", d.Table, key, d.ReplicaRows, d.ReferenceRows, d.Rows, strings.Join(parts, "; "))
}

// commonTables pairs the tables of replica and ref by name. It returns
// one side of each pair (ref's with keepRef: its chunks are the ones to
// compare), with only the columns NOT NULL on both sides NOT NULL (see
// snapshot.Table.AlsoNotNull); a Diff for each table on one side only; and
// a Diff for each pair whose stored columns differ in names, order or
// types, whose rows are not compared: the checksum hashes the columns one
// side lists, and would not see a column only the other has.
func commonTables(replica, ref []snapshot.Database, keepRef bool) ([]snapshot.Database, []Diff) {
	index := func(dbs []snapshot.Database) map[string]snapshot.Table {
		m := map[string]snapshot.Table{}
		for _, d := range dbs {
			for _, t := range d.Tables {
				m[d.Name+"."+t.Name] = t
			}
		}
		return m
	}
	inRef, inReplica := index(ref), index(replica)
	var diffs []Diff
	var out []snapshot.Database
	side, other := replica, inRef
	if keepRef {
		side, other = ref, inReplica
	}
	for _, d := range side {
		keep := snapshot.Database{Name: d.Name}
		for _, t := range d.Tables {
			name := d.Name + "." + t.Name
			o, ok := other[name]
			if !ok {
				continue // a Diff below
			}
			if cols, ocols := columnList(t), columnList(o); cols != ocols {
				if keepRef {
					cols, ocols = ocols, cols
				}
				diffs = append(diffs, Diff{Table: name, Columns: "the replica has (" + cols + "), the reference (" + ocols + ")", NoKey: len(t.PrimaryKey) == 0})
				continue
			}
			keep.Tables = append(keep.Tables, t.AlsoNotNull(o))
		}
		out = append(out, keep)
	}
	for _, d := range replica {
		for _, t := range d.Tables {
			if _, ok := inRef[d.Name+"."+t.Name]; !ok {
				diffs = append(diffs, Diff{Table: d.Name + "." + t.Name, Extra: []string{"the whole table"}, NoKey: len(t.PrimaryKey) == 0})
			}
		}
	}
	for _, d := range ref {
		for _, t := range d.Tables {
			if _, ok := inReplica[d.Name+"."+t.Name]; !ok {
				diffs = append(diffs, Diff{Table: d.Name + "." + t.Name, Missing: []string{"the whole table"}, NoKey: len(t.PrimaryKey) == 0})
			}
		}
	}
	return out, diffs
}

// columnList is a table's stored columns with their types, for comparing.
func columnList(t snapshot.Table) string {
	parts := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		parts[i] = c
		if i < len(t.Types) {
			parts[i] += " " + t.Types[i]
		}
	}
	return strings.Join(parts, ", ")
}
