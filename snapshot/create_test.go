package snapshot

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"regexp"
	"testing"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestLoadCreatesTables: the workers create the tables, each before its
// first chunk, in any order and at once; a big table without its
// secondary indexes, added after its rows, the small ones with theirs. Many tables, a foreign key to a
// table that may not exist yet, a DEFAULT NEXTVAL of a sequence, and
// TIMESTAMP defaults all come back as the source has them: the target runs
// in another time zone (+05:00), and the defaults are still the source's
// instants, because the snapshot writes them in UTC and the load reads
// them in UTC.
func TestLoadCreatesTables(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE SEQUENCE d.s START WITH 1000 NOCACHE")
	// the child's name sorts before its parent's
	p.Exec(t, "CREATE TABLE d.z_parent (id INT PRIMARY KEY)")
	p.Exec(t, "CREATE TABLE d.a_child (id INT PRIMARY KEY, parent INT, n BIGINT NOT NULL DEFAULT NEXTVAL(d.s), KEY (parent), FOREIGN KEY (parent) REFERENCES d.z_parent (id))")
	p.Exec(t, "CREATE TABLE d.ts (id INT PRIMARY KEY, t TIMESTAMP NOT NULL DEFAULT '2020-01-01 12:00:00', u TIMESTAMP NULL DEFAULT '2021-06-30 23:30:00', KEY (t))")
	p.Exec(t, "INSERT INTO d.z_parent SELECT seq FROM d.seq_1_to_10")
	p.Exec(t, "INSERT INTO d.a_child (id, parent) SELECT seq, seq % 10 + 1 FROM d.seq_1_to_50")
	p.Exec(t, "INSERT INTO d.ts (id) VALUES (1)")
	p.Exec(t, "INSERT INTO d.ts VALUES (2, '2024-02-29 08:00:00', NULL)")
	// Big enough for its secondary indexes to be added after its rows.
	p.Exec(t, "CREATE TABLE d.big (id INT PRIMARY KEY, k INT NOT NULL, u VARCHAR(20), KEY k (k), UNIQUE KEY u (u))")
	p.Exec(t, fmt.Sprintf("INSERT INTO d.big SELECT seq, seq %% 977, CONCAT('u', seq) FROM d.seq_1_to_%d", deferMinRows+5000))
	const many = 60
	for i := range many {
		p.Exec(t, fmt.Sprintf("CREATE TABLE d.t%02d (id INT PRIMARY KEY, v VARCHAR(20), KEY (v))", i))
		p.Exec(t, fmt.Sprintf("INSERT INTO d.t%02d SELECT seq, CONCAT('v', seq) FROM d.seq_1_to_%d", i, i+1))
	}
	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true, Args: []string{"--default-time-zone=+05:00"}})
	if got := target.QueryString(t, "SELECT @@global.time_zone"); got != "+05:00" {
		t.Fatalf("the target's time zone is %s", got)
	}
	var verified int
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 4, Verify: true, Verified: &verified, Log: log}); err != nil {
		t.Fatal(err)
	}
	// Only the big table's indexes came after its rows; the small ones
	// were created with theirs.
	built := regexp.MustCompile(`msg="secondary indexes built" table=(\S+)`).FindAllStringSubmatch(logs.String(), -1)
	if len(built) != 1 || built[0][1] != "d.big" {
		t.Fatalf("secondary indexes added after the rows of %v, want d.big alone", built)
	}
	if want := len(m.Databases[0].Tables) - 1; verified < want { // the sequence's chunk aside
		t.Fatalf("%d chunks verified, want at least %d", verified, want)
	}
	// No connection that the load leaves in the pool carries its session
	// settings (sql_log_bin=0 and the like, a default database).
	conns := make([]*sql.Conn, 6)
	for i := range conns {
		c, err := target.DB(t).Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		var state string
		q := "SELECT CONCAT_WS(' ', IFNULL(DATABASE(), '-'), @@session.sql_log_bin, @@session.foreign_key_checks, @@session.unique_checks, @@session.time_zone = @@global.time_zone)"
		if err := c.QueryRowContext(ctx, q).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if state != "- ON ON ON 1" {
			t.Errorf("pooled connection %d after the load: database, sql_log_bin, foreign_key_checks, unique_checks, default time zone = %s", i, state)
		}
	}
	// The same definitions, read in UTC on both.
	for _, tb := range []string{"a_child", "z_parent", "ts", "big", "t00", fmt.Sprintf("t%02d", many-1)} {
		src, tgt := showCreateUTC(t, p, tb), showCreateUTC(t, target, tb)
		if src != tgt {
			t.Errorf("d.%s differs:\nsource: %s\ntarget: %s", tb, src, tgt)
		}
	}
	// The defaults are the same instants: a row that takes them.
	p.Exec(t, "INSERT INTO d.ts (id) VALUES (3)")
	target.Exec(t, "INSERT INTO d.ts (id) VALUES (3)")
	q := "SELECT CONCAT(UNIX_TIMESTAMP(t), ' ', UNIX_TIMESTAMP(u)) FROM d.ts WHERE id = 3"
	if src, tgt := p.QueryString(t, q), target.QueryString(t, q); src != tgt {
		t.Fatalf("a row with the defaults: %s on the source, %s on the target", src, tgt)
	}
	q = "SELECT GROUP_CONCAT(CONCAT(id, ':', UNIX_TIMESTAMP(t), ':', IFNULL(UNIX_TIMESTAMP(u), '-')) ORDER BY id) FROM d.ts"
	if src, tgt := p.QueryString(t, q), target.QueryString(t, q); src != tgt {
		t.Fatalf("d.ts: %s on the source, %s on the target", src, tgt)
	}
	// The sequence was there for the child's DEFAULT, and goes on.
	target.Exec(t, "INSERT INTO d.a_child (id, parent) VALUES (51, 1)")
	if got := target.QueryString(t, "SELECT n > 1049 FROM d.a_child WHERE id = 51"); got != "1" {
		t.Fatalf("the restored DEFAULT NEXTVAL gave %s", target.QueryString(t, "SELECT n FROM d.a_child WHERE id = 51"))
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'd'"); got != fmt.Sprint(many+5) {
		t.Fatalf("the target has %s tables in d, want %d", got, many+5)
	}
}

// showCreateUTC returns the CREATE TABLE of SHOW CREATE TABLE d.table,
// read with the session time zone UTC.
func showCreateUTC(t *testing.T, s *mariadbtest.Server, table string) string {
	t.Helper()
	ctx := context.Background()
	c, err := s.DB(t).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "SET SESSION time_zone = '+00:00'"); err != nil {
		t.Fatal(err)
	}
	cols, err := showCreateColumns(ctx, c, "SHOW CREATE TABLE d."+table)
	stmt := cols.create()
	if err != nil {
		t.Fatalf("port %d: d.%s: %v", s.Port, table, err)
	}
	return stmt
}
