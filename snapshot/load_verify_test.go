package snapshot

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestLoadVerify loads a snapshot with verification: a good load compares
// every chunk; a row changed on the target while it loads (by a trigger
// created after the table's first chunk) fails the load naming the one
// chunk that holds the row; and so does a chunk whose checksum in the
// manifest is not the data's.
func TestLoadVerify(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	for _, q := range []string{
		"CREATE DATABASE d",
		"CREATE DATABASE e",
		"CREATE TABLE d.big (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), k INT, KEY (k))",
		"CREATE TABLE d.small (id INT PRIMARY KEY, v VARCHAR(20))",
		"CREATE TABLE e.x (id INT PRIMARY KEY, v VARCHAR(20), UNIQUE KEY (v))",
		"CREATE VIEW d.v AS SELECT id FROM d.small",
		"INSERT INTO d.big SELECT seq, CONCAT('v', seq), seq % 7 FROM d.seq_1_to_2000",
		"INSERT INTO d.small SELECT seq, CONCAT('s', seq) FROM d.seq_1_to_50",
		"INSERT INTO e.x SELECT seq, CONCAT('x', seq) FROM d.seq_1_to_300",
		"ANALYZE TABLE d.big, d.small, e.x",
	} {
		p.Exec(t, q)
	}
	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2, ChunkRows: 500})
	if err != nil {
		t.Fatal(err)
	}
	big, x := findTable(m, "d", "big"), findTable(m, "e", "x")
	if len(big.Chunks) < 3 {
		t.Fatalf("d.big has %d chunks, want several", len(big.Chunks))
	}
	chunks := 0
	for _, d := range m.Databases {
		for _, tb := range d.Tables {
			chunks += len(tb.Chunks)
		}
	}

	good := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	var n int
	if err := Load(ctx, good.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true, Verified: &n}); err != nil {
		t.Fatalf("load with verification: %v", err)
	}
	if n != chunks {
		t.Fatalf("%d chunks verified, want every one of %d", n, chunks)
	}
	if want, got := p.Checksums(t, "d", "e"), good.Checksums(t, "d", "e"); fmt.Sprint(want) != fmt.Sprint(got) {
		t.Fatalf("checksums on the target %v, on the primary %v", got, want)
	}

	// One worker loads d.big (the biggest table) first, chunk by chunk in
	// key order: after its first chunk a trigger changes row 2000, which
	// is in the last chunk.
	damaged := mariadbtest.Start(t, mariadbtest.Options{ServerID: 3, NoBinlog: true})
	db := damaged.DB(t)
	var once sync.Once
	var trigErr error
	n = -1
	err = Load(ctx, db, dir, m, LoadOptions{Threads: 1, Verify: true, Verified: &n, Progress: func(Progress) {
		once.Do(func() {
			_, trigErr = db.ExecContext(ctx, "CREATE TRIGGER d.bad BEFORE INSERT ON d.big FOR EACH ROW SET NEW.v = IF(NEW.id = 2000, 'changed', NEW.v)")
		})
	}})
	if trigErr != nil {
		t.Fatalf("creating the trigger: %v", trigErr)
	}
	last := big.Chunks[len(big.Chunks)-1]
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("d.big chunk %q: %d rows, checksum ", last.Where, last.Rows)) ||
		!strings.Contains(err.Error(), fmt.Sprintf(" on the target; the snapshot has %d rows, %s", last.Rows, last.Checksum)) {
		t.Fatalf("load of a changed row: %v, want an error naming chunk %q", err, last.Where)
	}
	t.Logf("a changed row: %v", err)
	if n < 0 || n >= chunks {
		t.Fatalf("%d chunks verified before the changed one, want fewer than %d", n, chunks)
	}
	if got := damaged.QueryString(t, "SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'd'"); got != "0" {
		t.Fatalf("the snapshot's view was created after a failed verification")
	}

	// A checksum in the manifest that is not the data's: the load on two
	// connections fails naming that chunk.
	saved := x.Chunks[0].Checksum
	x.Chunks[0].Checksum = "12345"
	defer func() { x.Chunks[0].Checksum = saved }()
	other := mariadbtest.Start(t, mariadbtest.Options{ServerID: 4, NoBinlog: true})
	err = Load(ctx, other.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true})
	if want := fmt.Sprintf("e.x chunk %q: 300 rows, checksum %s on the target; the snapshot has 300 rows, 12345", x.Chunks[0].Where, saved); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("load against a wrong checksum: %v, want %q", err, want)
	}
	t.Logf("a wrong checksum: %v", err)
}

// TestSchedule: the biggest table first, one loader per table (a worker
// waits rather than load a table another one is loading), a chunk on the
// primary key verified as soon as it is loaded, the chunks on a secondary
// index once their table is complete, checks before loads, and a worker
// with nothing to do waits until the last table is complete or the load is
// cancelled.
func TestSchedule(t *testing.T) {
	table := func(name, index string, bytes ...int64) *Table {
		tb := &Table{Name: name, ChunkIndex: index}
		for _, b := range bytes {
			tb.Chunks = append(tb.Chunks, Chunk{File: fmt.Sprintf("%s.%d", name, len(tb.Chunks)), Bytes: b})
		}
		return tb
	}
	a, b, c := table("a", "", 100, 100), table("b", "k", 300, 300, 200), table("c", "", 50)
	var jobs []job
	for _, tb := range []*Table{a, b, c} {
		for k := range tb.Chunks {
			jobs = append(jobs, job{db: "d", table: tb, chunk: &tb.Chunks[k]})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSchedule(ctx, jobs, true, nil)
	take := func(want string, wantCheck bool) job {
		t.Helper()
		j, check, ok := s.next()
		if !ok || j.chunk.File != want || check != wantCheck {
			t.Fatalf("next: %s check=%v ok=%v, want %s check=%v", j.chunk.File, check, ok, want, wantCheck)
		}
		return j
	}
	got := make(chan job)
	waiting := func(what string) {
		t.Helper()
		go func() {
			j, _, ok := s.next()
			if !ok {
				j = job{}
			}
			got <- j
		}()
		select {
		case j := <-got:
			t.Fatalf("next returned %+v while %s", j.chunk, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
	b0 := take("b.0", false)
	a0 := take("a.0", false) // b is being loaded
	c0 := take("c.0", false)
	waiting("every table left was being loaded")
	s.loaded(b0, true) // b's chunks are verified once b is complete
	b1 := <-got
	if b1.chunk == nil || b1.chunk.File != "b.1" {
		t.Fatalf("the waiting worker got %+v, want b.1 to load", b1.chunk)
	}
	s.loaded(a0, true)
	take("a.0", true) // on the primary key: verified at once
	a1 := take("a.1", false)
	s.loaded(c0, true)
	take("c.0", true)
	s.loaded(b1, true)
	b2 := take("b.2", false)
	s.loaded(a1, true)
	s.loaded(b2, true)
	take("a.1", true)
	s.complete(b2)
	take("b.0", true) // b's checks, the biggest chunks first
	take("b.1", true)
	take("b.2", true)
	s.complete(a1) // a's chunks were verified as they were loaded

	// Nothing left to take while c is not complete: next waits.
	waiting("c was not complete")
	s.complete(c0)
	if j := <-got; j.chunk != nil {
		t.Fatalf("a waiting next got %+v, with everything done", j.chunk)
	}
	if _, _, ok := s.next(); ok {
		t.Fatal("next returned a job with everything done")
	}
	// A worker waiting for a table being loaded returns when the load is
	// cancelled.
	s = newSchedule(ctx, jobs, true, nil)
	take("b.0", false)
	a0 = take("a.0", false)
	take("c.0", false)
	s.loaded(a0, false)
	take("a.1", false) // a failed load is not verified
	ok := make(chan bool)
	go func() {
		_, _, k := s.next()
		ok <- k
	}()
	cancel()
	select {
	case k := <-ok:
		if k {
			t.Fatal("next returned a job after the load was cancelled")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting next did not return when the load was cancelled")
	}
}

// TestChecksumNotNull: the server's checksum needs no NULL test for a
// NOT NULL column, and its result is the same as with one (and as the
// snapshot's own, computed from the rows it wrote); a NULL that such a
// column gets on a target still changes the checksum.
func TestChecksumNotNull(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	for _, q := range []string{
		"CREATE DATABASE d",
		`CREATE TABLE d.t (id INT PRIMARY KEY, a VARCHAR(10) NOT NULL, b VARCHAR(10), c INT NOT NULL,
			e DATETIME NOT NULL, f DECIMAL(6,2), g BLOB NOT NULL)`,
		`INSERT INTO d.t VALUES (1, '', NULL, 0, '2020-01-01 00:00:00', NULL, ''),
			(2, 'x', '', 5, '2021-02-03 04:05:06', 1.5, 'bytes'), (3, '#', '#', -1, '1999-12-31 23:59:59', -0.01, x'00ff')`,
	} {
		p.Exec(t, q)
	}
	m, _, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	tb := findTable(m, "d", "t")
	if got, want := fmt.Sprint(tb.NotNull), "[true true false true true false true]"; got != want {
		t.Fatalf("not_null %s, want %s", got, want)
	}
	q, err := ChecksumSQL(m.Checksum, "d", *tb, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "CONCAT('00', ISNULL(`b`), '00', ISNULL(`f`), '0')"; !strings.Contains(q, want) {
		t.Fatalf("checksum query %s, want NULL flags %s", q, want)
	}
	c, err := p.DB(t).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseSession(c)
	if err := SetupSession(ctx, c); err != nil {
		t.Fatal(err)
	}
	old := *tb
	old.NotNull = nil // a manifest from before not_null: every column tested
	for _, table := range []Table{*tb, old} {
		rows, sum, err := ChunkChecksum(ctx, c, m.Checksum, "d", table, "")
		if err != nil {
			t.Fatal(err)
		}
		if rows != 3 || sum != tb.Chunks[0].Checksum {
			t.Fatalf("not_null %v: %d rows, checksum %s on the server; the snapshot has 3, %s", table.NotNull, rows, sum, tb.Chunks[0].Checksum)
		}
	}
	// Row 1's a is '' in the snapshot; NULL on a target that lets it be.
	p.Exec(t, "ALTER TABLE d.t MODIFY a VARCHAR(10) NULL")
	p.Exec(t, "UPDATE d.t SET a = NULL WHERE id = 1")
	if _, sum, err := ChunkChecksum(ctx, c, m.Checksum, "d", *tb, ""); err != nil || sum == tb.Chunks[0].Checksum {
		t.Fatalf("a NULL where the snapshot has '': checksum %s (err %v), the snapshot's %s: want a difference", sum, err, tb.Chunks[0].Checksum)
	}

	// ('x', 'y') in the snapshot, ('x#y', NULL) on a target where b may be
	// NULL: without b's flag both rows are the string "x#y#000". Verify
	// tests for NULL where the target allows one, and finds the change.
	p.Exec(t, "CREATE TABLE d.u (id INT PRIMARY KEY, a VARCHAR(10) NOT NULL, b VARCHAR(10) NOT NULL)")
	p.Exec(t, "INSERT INTO d.u VALUES (1, 'x', 'y')")
	m, _, err = Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, p.DB(t), m, nil, 1); err != nil {
		t.Fatalf("verify against the snapshot's own server: %v", err)
	}
	p.Exec(t, "ALTER TABLE d.u MODIFY b VARCHAR(10) NULL")
	p.Exec(t, "UPDATE d.u SET a = 'x#y', b = NULL")
	u := findTable(m, "d", "u")
	if _, sum, err := ChunkChecksum(ctx, c, m.Checksum, "d", *u, ""); err != nil || sum != u.Chunks[0].Checksum {
		t.Fatalf("the manifest's NOT NULL flags on the changed row: checksum %s (err %v), want the collision with %s that Verify avoids", sum, err, u.Chunks[0].Checksum)
	}
	if _, err := Verify(ctx, p.DB(t), m, nil, 1); err == nil || !strings.Contains(err.Error(), "d.u chunk") {
		t.Fatalf("verify of ('x#y', NULL) against ('x', 'y'): %v, want a difference in d.u", err)
	}
}

func TestAlsoNotNull(t *testing.T) {
	a := Table{Columns: []string{"id", "a", "b", "c"}, NotNull: []bool{true, true, true, false}}
	b := Table{Columns: []string{"b", "a", "id"}, NotNull: []bool{false, true, true}}
	if got := fmt.Sprint(a.AlsoNotNull(b).NotNull); got != "[true true false false]" {
		t.Fatalf("AlsoNotNull: %s", got)
	}
	if got := fmt.Sprint(a.NotNull); got != "[true true true false]" {
		t.Fatalf("AlsoNotNull changed its receiver: %s", got)
	}
	old := Table{Columns: []string{"id"}} // a manifest without not_null
	if got := fmt.Sprint(old.AlsoNotNull(a).NotNull, a.AlsoNotNull(old).NotNull); got != "[false] [false false false false]" {
		t.Fatalf("AlsoNotNull with a manifest without not_null: %s", got)
	}
}

// TestChecksumLargeRow: a row whose string is longer than the server's
// max_allowed_packet has no hash on that server (NULL, warning 1301):
// verification and row comparison say so, with the setting to raise,
// rather than leave the row out of the checksum.
func TestChecksumLargeRow(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE TABLE d.big (id INT PRIMARY KEY, b LONGBLOB)")
	p.Exec(t, "INSERT INTO d.big VALUES (1, REPEAT('x', 3000000)), (2, 'small')")
	m, _, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(ctx, p.DB(t), m, nil, 1); err != nil || n != 1 {
		t.Fatalf("verify with a large enough max_allowed_packet: %d chunks, %v", n, err)
	}
	p.Exec(t, "SET GLOBAL max_allowed_packet = 1048576")
	defer p.Exec(t, "SET GLOBAL max_allowed_packet = 1073741824")
	db, err := sql.Open("mysql", p.DSN("")) // new sessions, with the new setting
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Verify(ctx, db, m, nil, 1)
	if err == nil || !strings.Contains(err.Error(), "d.big chunk") || !strings.Contains(err.Error(), "too large for the server to checksum") || !strings.Contains(err.Error(), "now 1048576") {
		t.Fatalf("verify of a row longer than max_allowed_packet: %v", err)
	}
	t.Logf("verify: %v", err)
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseSession(c)
	if err := SetupSession(ctx, c); err != nil {
		t.Fatal(err)
	}
	err = RowSums(ctx, c, m.Checksum, "d", *findTable(m, "d", "big"), "", func(RowSum) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "d.big: a row is too large") || !strings.Contains(err.Error(), "max_allowed_packet") {
		t.Fatalf("row sums with a row longer than max_allowed_packet: %v", err)
	}
}
